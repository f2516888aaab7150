//! The verifier's tests: every check on chains built with the agent's primitives, crash windows, the JSON
//! shape, and properties: random edits are found and located exactly; clean streams verify in any order and
//! with copies.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::seals::OUTSIDE;
use super::*;
use crate::event::Event;
use crate::integrity::chain::{append_member, content_digest, link, Hash, Integrity, GENESIS};
use crate::integrity::keys::EpochKey;
use crate::integrity::seal::{Seal, CRASH_CODE, CRASH_EVENT};

const A: &str = "node-1/teleport";
const B: &str = "node-1/local";

#[derive(Clone, Debug)]
struct Entry {
    seq: u64,
    body: Vec<u8>,
    line: Vec<u8>,
    hash: Hash,
    prev: Hash,
    seal_epoch: Option<u64>,
}

/// One stream, built the way the agent builds it.
struct Chain {
    stream: String,
    entries: Vec<Entry>,
    last_seal: u64,
}

fn member(stream: &str, seq: u64, prev: Hash, hash: Hash) -> Vec<u8> {
    let mut m = Vec::new();
    Integrity {
        stream: stream.into(),
        seq,
        prev,
        hash,
    }
    .write_member(&mut m);
    m
}

/// `body` chained as `seq` of `stream` after `prev`: the line and its hash.
fn chain_line(stream: &str, seq: u64, prev: Hash, body: &[u8]) -> (Vec<u8>, Hash) {
    let d = content_digest(body, &mut Vec::new()).unwrap();
    let hash = link(stream, seq, &prev, &d);
    (append_member(body, &member(stream, seq, prev, hash)), hash)
}

fn event_body(stream: &str, n: u64, tag: &str) -> Vec<u8> {
    format!(
        r#"{{"event":"session.start","uid":"{tag}{stream}-{n}","code":"T2000I","time":"2017-02-03T06:54:05.{:03}Z","user":"alice@example.com","cmd":"a \u003c b","n":{n}}}"#,
        n % 1000
    )
    .into_bytes()
}

impl Chain {
    fn new(stream: &str) -> Chain {
        Chain {
            stream: stream.into(),
            entries: Vec::new(),
            last_seal: 0,
        }
    }

    fn prev(&self) -> Hash {
        self.entries.last().map_or(GENESIS, |e| e.hash)
    }

    fn next(&self) -> u64 {
        self.entries.len() as u64 + 1
    }

    fn push(&mut self, body: Vec<u8>, seal_epoch: Option<u64>) -> u64 {
        let (seq, prev) = (self.next(), self.prev());
        let (line, hash) = chain_line(&self.stream, seq, prev, &body);
        self.entries.push(Entry {
            seq,
            body,
            line,
            hash,
            prev,
            seal_epoch,
        });
        seq
    }

    fn events(&mut self, n: usize) {
        for _ in 0..n {
            let body = event_body(&self.stream, self.next(), "");
            self.push(body, None);
        }
    }

    /// The seal the agent would make now with `key`.
    fn seal_now(&self, key: &EpochKey) -> Seal {
        Seal::sign(
            key,
            &self.stream,
            self.last_seal + 1,
            self.next() - 1,
            self.prev(),
        )
    }

    fn push_seal(&mut self, s: &Seal) -> u64 {
        let q = self.push(s.to_event(), Some(s.epoch));
        self.last_seal = q;
        q
    }

    fn seal(&mut self, key: &EpochKey) -> u64 {
        let s = self.seal_now(key);
        self.push_seal(&s)
    }

    fn lines(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(|e| e.line.clone()).collect()
    }

    /// The lines but those of `lost` (events that never reached a store, or were deleted from it).
    fn lines_without(&self, lost: impl Fn(u64) -> bool) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .filter(|e| !lost(e.seq))
            .map(|e| e.line.clone())
            .collect()
    }

    /// The first event of a new life after a crash: seqs `from..=` the last one numbered may be lost.
    fn announce_crash(&mut self, from: u64) -> u64 {
        let body = crash_body(&self.stream.clone(), from, self.next() - 1);
        self.push(body, None)
    }

    fn entry(&self, seq: u64) -> &Entry {
        &self.entries[seq as usize - 1]
    }
}

/// Streams over `per_epoch.len()` epochs: in epoch k each stream gets `per_epoch[k].0` events, a mid-epoch
/// seal, `per_epoch[k].1` events and its end-of-epoch seal; then the key evolves. Returns the keys.
fn build(chains: &mut [&mut Chain], per_epoch: &[(usize, usize)]) -> Vec<EpochKey> {
    let mut keys = vec![EpochKey::generate()];
    for (k, &(a, b)) in per_epoch.iter().enumerate() {
        for c in chains.iter_mut() {
            c.events(a);
            c.seal(&keys[k]);
            c.events(b);
            c.seal(&keys[k]);
        }
        if k + 1 < per_epoch.len() {
            let next = keys[k].evolve();
            keys.push(next);
        }
    }
    keys
}

/// A crash window announcement as the agent builds it.
fn crash_body(stream: &str, from: u64, to: u64) -> Vec<u8> {
    Event::internal(
        CRASH_EVENT,
        CRASH_CODE,
        &[
            ("source", "teleport".into()),
            ("stream", stream.into()),
            ("window", serde_json::json!({ "from": from, "to": to })),
            ("reason", "events held in a memory buffer were lost".into()),
        ],
    )
    .raw()
    .to_vec()
}

fn window(announced_at: u64, from: u64, to: u64, missing: &[[u64; 2]]) -> CrashWindow {
    CrashWindow {
        announced_at,
        from,
        to,
        missing: missing.to_vec(),
    }
}

fn verify_with(root: &EpochKey, lines: &[Vec<u8>]) -> Report {
    let mut v = Verifier::new(root.public());
    for (i, l) in lines.iter().enumerate() {
        v.feed_line(l, "t.ndjson", i as u64 + 1);
    }
    v.finish()
}

fn stream<'a>(r: &'a Report, name: &str) -> &'a StreamReport {
    r.streams
        .iter()
        .find(|s| s.stream == name)
        .unwrap_or_else(|| panic!("no stream {name} in {r:#?}"))
}

fn bad_seqs(s: &StreamReport) -> Vec<u64> {
    s.bad_seals.iter().map(|b| b.seq).collect()
}

fn reason(s: &StreamReport, seq: u64) -> &str {
    &s.bad_seals.iter().find(|b| b.seq == seq).unwrap().reason
}

fn intact(s: &StreamReport) {
    assert!(!s.tampered(), "{s:#?}");
}

/// `seal` re-signed by `key` as a seal of `key`'s epoch (a forger holding `key`).
fn resign(seal: &Seal, key: &EpochKey, sealed_at: Option<String>) -> Seal {
    let mut s = seal.clone();
    s.epoch = key.epoch;
    s.epoch_start = key.epoch_start.clone();
    s.epoch_pub = key.public();
    s.epoch_cert = key.cert;
    s.next_pub = key.next_public();
    if let Some(t) = sealed_at {
        s.sealed_at = t;
    }
    s.sig = key.sign(&s.message());
    s
}

fn seal_of(e: &Entry) -> Seal {
    Seal::from_event(&e.body).unwrap().unwrap()
}

#[test]
fn a_clean_chain_over_three_epochs_verifies() {
    let (mut a, mut b) = (Chain::new(A), Chain::new(B));
    let keys = build(&mut [&mut a, &mut b], &[(3, 2), (0, 4), (5, 1)]);
    a.events(3);
    let mut lines = a.lines();
    lines.extend(b.lines());
    lines.push(br#"{"event":"auditrail.dropped","count":3}"#.to_vec());
    lines.push(b"".to_vec());
    let r = verify_with(&keys[0], &lines);
    assert!(r.ok, "{r:#?}");
    let sa = stream(&r, A);
    assert_eq!(sa.verified, a.entries.len() as u64);
    assert_eq!(sa.unsealed, 3);
    assert_eq!(stream(&r, B).unsealed, 0);
    assert_eq!((r.unchained, r.unreadable), (1, 0));
    assert_eq!(r.streams[0].stream, B, "streams are sorted by name");
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(4, 4), (4, 4)]);
    let mut lines = a.lines();
    lines.extend(a.lines()[3..9].iter().cloned());
    lines.reverse();
    let r = verify_with(&keys[0], &lines);
    assert!(r.ok, "{r:#?}");
    assert_eq!(stream(&r, A).duplicates, 6);
    assert_eq!(stream(&r, A).verified, a.entries.len() as u64);
}

#[test]
fn altered_deleted_and_conflicting_events_are_located() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(10, 10)]);
    let mut lines = a.lines();
    // seq 3 altered under its own chain field; 5..=7 and 9 deleted; seq 12 forged with a good hash and prev.
    lines[2] = String::from_utf8(lines[2].clone())
        .unwrap()
        .replace("alice", "mallory")
        .into_bytes();
    let forged = chain_line(A, 12, a.entry(12).prev, &event_body(A, 12, "forged-")).0;
    lines.push(forged);
    for i in [8, 6, 5, 4] {
        lines.remove(i);
    }
    let r = verify_with(&keys[0], &lines);
    assert!(!r.ok);
    let s = stream(&r, A);
    assert_eq!(s.altered, vec![3]);
    assert_eq!(s.gaps, vec![[5, 7], [9, 9]]);
    assert_eq!(s.conflicts, vec![12]);
    assert!(
        s.broken_links.is_empty() && s.bad_seals.is_empty(),
        "{s:#?}"
    );
    assert_eq!(s.verified, a.entries.len() as u64 - 4 - 1);
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("t.ndjson:3: stream node-1/teleport seq 3")),
        "{:?}",
        r.problems
    );
}

#[test]
fn inserted_and_moved_events_break_links() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(6, 0)]);
    let mut lines = a.lines();
    // Seq 4 replaced by an event whose hash is right for what it claims but whose prev is not seq 3's hash.
    lines[3] = chain_line(A, 4, [7; 32], &event_body(A, 4, "inserted-")).0;
    // Seq 1 claims a prev although it is the first.
    lines[0] = chain_line(A, 1, [1; 32], &a.entry(1).body).0;
    let r = verify_with(&keys[0], &lines);
    let s = stream(&r, A);
    assert_eq!(s.broken_links, vec![1, 2, 4, 5]);
    assert!(s.altered.is_empty() && s.conflicts.is_empty(), "{s:#?}");
}

#[test]
fn swapped_bodies_are_altered_not_broken() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(6, 0)]);
    let mut lines = a.lines();
    let (e2, e5) = (a.entry(2).clone(), a.entry(5).clone());
    lines[1] = append_member(&e5.body, &member(A, 2, e2.prev, e2.hash));
    lines[4] = append_member(&e2.body, &member(A, 5, e5.prev, e5.hash));
    let r = verify_with(&keys[0], &lines);
    let s = stream(&r, A);
    assert_eq!(s.altered, vec![2, 5]);
    assert!(
        s.broken_links.is_empty() && s.bad_seals.is_empty(),
        "{s:#?}"
    );
}

#[test]
fn seals_with_bad_signatures_or_foreign_keys_are_bad() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(3, 3)]);
    let base = a.entries.len() as u64;
    // A seal whose signature does not verify, chained correctly.
    let mut s = a.seal_now(&keys[0]);
    s.sig = keys[0].sign(b"something else");
    a.push_seal(&s);
    // A seal by a key nobody certified.
    let stranger = EpochKey::generate();
    a.seal(&stranger);
    let r = verify_with(&keys[0], &a.lines());
    let st = stream(&r, A);
    assert_eq!(bad_seqs(st), vec![base + 1, base + 2]);
    assert_eq!(reason(st, base + 1), "bad signature");
    assert!(
        reason(st, base + 2).starts_with("uncertified epoch key"),
        "{st:#?}"
    );
    assert_eq!(st.unsealed, 2, "nothing after the last good seal is sealed");
    assert!(!r.ok);
}

#[test]
fn seals_must_cover_the_right_range_of_the_right_stream() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(3, 3)]);
    let q = a.next();
    a.events(2);
    // Wrong stream, wrong `to`, wrong `from`, wrong last_hash: each the only fault of its seal.
    let mut s = a.seal_now(&keys[0]);
    s.stream = B.into();
    let s = resign(&s, &keys[0], None);
    a.push_seal(&s);
    a.events(1);
    let mut s = a.seal_now(&keys[0]);
    s.to -= 1;
    let s = resign(&s, &keys[0], None);
    a.push_seal(&s);
    a.events(1);
    let mut s = a.seal_now(&keys[0]);
    s.from -= 1;
    let s = resign(&s, &keys[0], None);
    a.push_seal(&s);
    a.events(1);
    let mut s = a.seal_now(&keys[0]);
    s.last_hash = [3; 32];
    let s = resign(&s, &keys[0], None);
    a.push_seal(&s);
    let r = verify_with(&keys[0], &a.lines());
    let st = stream(&r, A);
    let (q1, q2, q3, q4) = (q + 2, q + 4, q + 6, q + 8);
    assert_eq!(bad_seqs(st), vec![q1, q2, q3, q4], "{st:#?}");
    assert!(reason(st, q1).starts_with("seals stream"), "{st:#?}");
    assert!(reason(st, q2).starts_with("covers up to seq"), "{st:#?}");
    assert!(
        reason(st, q3).contains(&format!("the seal at seq {q2} lies within its range")),
        "{st:#?}"
    );
    assert!(
        reason(st, q4).starts_with("last_hash is not the hash of seq"),
        "{st:#?}"
    );
    assert!(st.gaps.is_empty() && st.broken_links.is_empty() && st.altered.is_empty());
}

#[test]
fn a_seal_starting_after_a_plain_event_is_bad() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(3, 0)]);
    a.events(3);
    let mut s = a.seal_now(&keys[0]);
    s.from += 1; // seq from-1 is an event, not a seal
    let s = resign(&s, &keys[0], None);
    let q = a.push_seal(&s);
    let r = verify_with(&keys[0], &a.lines());
    let st = stream(&r, A);
    assert_eq!(bad_seqs(st), vec![q]);
    assert!(reason(st, q).contains("is not a seal"), "{st:#?}");
}

#[test]
fn an_old_key_used_after_its_epoch_is_refused() {
    // The agent's epoch-0 key, kept by someone after epoch 1 began, signs a fresh seal.
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(2, 2), (2, 2)]);
    a.events(2);
    let q = a.seal(&keys[0]);
    let r = verify_with(&keys[0], &a.lines());
    let st = stream(&r, A);
    assert_eq!(bad_seqs(st), vec![q]);
    assert_eq!(
        reason(st, q),
        format!("{OUTSIDE}: sealed after epoch 1 began")
    );
}

/// journald's CVE-2023-31439: whoever holds today's key re-seals an old range, whether dated then or today.
#[test]
fn an_old_seal_resigned_with_a_later_key_is_refused() {
    for fresh in [false, true] {
        let mut a = Chain::new(A);
        let keys = build(&mut [&mut a], &[(3, 3), (3, 3), (3, 3)]);
        let old = a
            .entries
            .iter()
            .find(|e| e.seal_epoch == Some(0))
            .unwrap()
            .clone();
        let sealed_at = fresh.then(|| chrono::Utc::now().to_rfc3339());
        let forged = resign(&seal_of(&old), &keys[2], sealed_at);
        // The forger rechains the seal itself (hashes need no key), so it is not merely altered.
        let mut lines = a.lines();
        let q = old.seq;
        lines[q as usize - 1] = chain_line(A, q, old.prev, &forged.to_event()).0;
        let r = verify_with(&keys[0], &lines);
        let st = stream(&r, A);
        assert_eq!(bad_seqs(st), vec![q], "fresh={fresh}: {st:#?}");
        let why = reason(st, q);
        assert!(
            why.starts_with(OUTSIDE) && !why.contains("altered"),
            "{why}"
        );
        if fresh {
            assert!(why.contains("is of earlier epoch 0"), "{why}");
        } else {
            assert!(why.contains("sealed before epoch 2 began"), "{why}");
        }
        // Its new hash no longer matches what the next event claims.
        assert_eq!(st.broken_links, vec![q + 1]);
    }
}

#[test]
fn conflicting_certificates_the_minority_is_bad() {
    // Someone holding epoch 1's key certifies the same next key again with another start.
    let (mut a, mut b, mut c) = (Chain::new(A), Chain::new(B), Chain::new("node-1/third"));
    let mut keys = build(&mut [&mut a, &mut b, &mut c], &[(1, 1), (1, 1)]);
    let genuine = keys[1].evolve();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let other = keys[1].evolve();
    a.seal(&genuine);
    b.seal(&genuine);
    let q = c.seal(&other);
    keys.push(genuine);
    let mut lines = a.lines();
    lines.extend(b.lines());
    lines.extend(c.lines());
    let r = verify_with(&keys[0], &lines);
    intact(stream(&r, A));
    intact(stream(&r, B));
    let st = stream(&r, "node-1/third");
    assert_eq!(bad_seqs(st), vec![q]);
    // The two keys of epoch 2 are the same (drawn in advance), their starts and next keys differ.
    assert!(
        reason(st, q).contains("a minority certified start for epoch 2"),
        "{st:#?}"
    );
    assert!(
        reason(st, q).contains("a minority claim for epoch 3's key"),
        "{st:#?}"
    );
}

#[test]
fn an_altered_or_unreadable_seal_is_a_bad_seal_not_an_altered_event() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(2, 2)]);
    let mut lines = a.lines();
    let q = a
        .entries
        .iter()
        .find(|e| e.seal_epoch.is_some())
        .unwrap()
        .seq;
    lines[q as usize - 1] = String::from_utf8(lines[q as usize - 1].clone())
        .unwrap()
        .replacen("\"uid\":\"", "\"uid\":\"x", 1)
        .into_bytes();
    a.events(1);
    let broken = chain_line(
        A,
        a.next(),
        a.prev(),
        br#"{"event":"auditrail.seal","seal":{"stream":"x"}}"#,
    )
    .0;
    lines.push(a.lines().pop().unwrap());
    lines.push(broken);
    let r = verify_with(&keys[0], &lines);
    let st = stream(&r, A);
    assert_eq!(bad_seqs(st), vec![q, a.next()]);
    assert_eq!(reason(st, q), "altered");
    assert!(
        reason(st, a.next()).starts_with("unreadable seal"),
        "{st:#?}"
    );
    assert!(st.altered.is_empty());
}

#[test]
fn unreadable_lines_are_counted_with_their_place() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(2, 0)]);
    let mut lines = a.lines();
    lines.insert(1, b"not json".to_vec());
    lines.insert(
        2,
        br#"{"event":"x","auditrail.integrity":{"stream":"s","seq":"one"}}"#.to_vec(),
    );
    let r = verify_with(&keys[0], &lines);
    assert!(!r.ok);
    assert_eq!(r.unreadable, 2);
    assert!(
        r.problems[0].starts_with("t.ndjson:2: not a JSON object"),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems[1].starts_with("t.ndjson:3: malformed \"auditrail.integrity\" field"),
        "{:?}",
        r.problems
    );
    intact(stream(&r, A));
}

#[test]
fn a_forged_huge_seq_costs_nothing_and_shows_as_a_gap() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(2, 0)]);
    let mut lines = a.lines();
    let far = 1u64 << 60;
    lines.push(chain_line(A, far, [5; 32], &event_body(A, far, "")).0);
    let r = verify_with(&keys[0], &lines);
    let st = stream(&r, A);
    assert_eq!(st.gaps, vec![[a.next(), far - 1]]);
    assert_eq!(st.unsealed, 1);
}

#[test]
fn json_has_the_documented_shape() {
    let mut a = Chain::new(A);
    let keys = build(&mut [&mut a], &[(2, 1)]);
    let mut lines = a.lines();
    lines.remove(0);
    let r = verify_with(&keys[0], &lines);
    let v = serde_json::to_value(&r).unwrap();
    let keys_of = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys_of(&v),
        ["ok", "problems", "streams", "unchained", "unreadable"]
    );
    assert_eq!(
        keys_of(&v["streams"][0]),
        [
            "altered",
            "bad_crash_windows",
            "bad_seals",
            "broken_links",
            "conflicts",
            "crash_windows",
            "duplicates",
            "gaps",
            "stream",
            "unsealed",
            "verified"
        ]
    );
    assert_eq!(v["ok"], false);
    assert_eq!(v["streams"][0]["gaps"], serde_json::json!([[1, 1]]));
    let back: Report = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
    let text = r.to_string();
    assert!(text.contains("stream node-1/teleport: TAMPERED"), "{text}");
    assert!(text.contains("gaps (missing seqs): 1"), "{text}");
    assert!(text.contains("result: TAMPERED (1 of 1 streams)"), "{text}");
}

#[test]
fn ndjson_on_every_core_matches_line_by_line() {
    let (mut a, mut b) = (Chain::new(A), Chain::new(B));
    let keys = build(&mut [&mut a, &mut b], &[(300, 200), (250, 10)]);
    let mut lines = a.lines();
    lines.extend(b.lines());
    lines[77] = b"garbage".to_vec();
    lines[500] = String::from_utf8(lines[500].clone())
        .unwrap()
        .replace("alice", "eve")
        .into_bytes();
    let mut text = lines.join(&b"\n"[..]);
    text.extend_from_slice(b"\r\n");
    let mut v = Verifier::new(keys[0].public()).with_threads(4);
    assert_eq!(v.feed_ndjson(&text, "t.ndjson", 1), lines.len() as u64);
    let par = v.finish();
    assert_eq!(par, verify_with(&keys[0], &lines));
    assert_eq!(stream(&par, A).altered, vec![501]);
    assert_eq!(
        par.problems[0],
        format!("t.ndjson:78: not a JSON object: does not start with '{{'")
    );
}

// ---- crash windows ----

#[test]
fn a_declared_crash_window_excuses_its_missing_seqs() {
    let mut a = Chain::new(A);
    // 1..=3, seal 4, 5..=6, seal 7; then 8..=12, of which 10..=12 die in a memory buffer.
    let keys = build(&mut [&mut a], &[(3, 2)]);
    a.events(5);
    let c = a.announce_crash(8);
    a.events(2);
    // The first seal after the crash covers from after the last seal before it, through the window.
    let q = a.seal(&keys[0]);
    assert_eq!(seal_of(a.entry(q)).from, 8);
    // A second crash before anything was numbered: an empty window.
    let empty = a.announce_crash(a.next());
    a.events(1);
    let lines = a.lines_without(|s| (10..=12).contains(&s));
    let r = verify_with(&keys[0], &lines);
    assert!(r.ok, "{r:#?}");
    let st = stream(&r, A);
    intact(st);
    assert!(st.gaps.is_empty(), "{st:#?}");
    assert_eq!(
        st.crash_windows,
        vec![
            window(c, 8, 12, &[[10, 12]]),
            window(empty, empty, empty - 1, &[])
        ]
    );
    assert!(st.bad_crash_windows.is_empty());
    assert_eq!(st.verified, a.entries.len() as u64 - 3);
    assert_eq!(
        st.unsealed, 2,
        "the empty announcement and the event after it"
    );
    assert_eq!(st.lost_in_crashes(), 3);
    let v = serde_json::to_value(st).unwrap();
    assert_eq!(
        v["crash_windows"][0],
        serde_json::json!({"announced_at": c, "from": 8, "to": 12, "missing": [[10, 12]]})
    );
    let text = r.to_string();
    assert!(text.contains("stream node-1/teleport: intact"), "{text}");
    assert!(
        text.contains(&format!("    seq {c} declares 8-12; missing: 10-12\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "    seq {empty} declares nothing; missing: none\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("result: intact (1 streams; 3 seqs missing within 2 declared crash windows)"),
        "{text}"
    );
}

#[test]
fn a_seal_lost_in_the_crash_and_the_seal_after_it_are_clean() {
    let mut a = Chain::new(A);
    let key = EpochKey::generate();
    a.events(3);
    a.seal(&key); // 4, delivered: covers 1..=3
    a.events(3);
    let lost_seal = a.seal(&key); // 8, covers 5..=7: numbered, then lost with them
    a.events(2);
    let c = a.announce_crash(5);
    a.events(2);
    // The agent's state knew seal 8, so its next seal runs from 9: seq 8 is missing, not a plain event.
    let q = a.seal(&key);
    assert_eq!(seal_of(a.entry(q)).from, lost_seal + 1);
    let r = verify_with(&key, &a.lines_without(|s| (5..=10).contains(&s)));
    assert!(r.ok, "{r:#?}");
    let st = stream(&r, A);
    assert!(
        st.gaps.is_empty() && st.bad_seals.is_empty() && st.bad_crash_windows.is_empty(),
        "{st:#?}"
    );
    assert_eq!(st.crash_windows, vec![window(c, 5, 10, &[[5, 10]])]);
    assert_eq!(st.unsealed, 0);

    // The seal numbered just before the crash was delivered, the events after it were not: a window may
    // start at the seal's own seq, which its range does not reach.
    let mut d = Chain::new(A);
    d.events(3);
    d.seal(&key);
    d.events(3);
    let s8 = d.seal(&key);
    d.events(2);
    let c = d.announce_crash(s8);
    d.events(2);
    d.seal(&key);
    let r = verify_with(&key, &d.lines_without(|s| (9..=10).contains(&s)));
    assert!(r.ok, "{r:#?}");
    assert_eq!(
        stream(&r, A).crash_windows,
        vec![window(c, s8, c - 1, &[[9, 10]])]
    );
}

#[test]
fn a_window_over_sealed_seqs_is_tampering_and_excuses_nothing() {
    // Who kills the agent deletes sealed events and announces them lost: the seal before the announcement
    // still covers them.
    let mut a = Chain::new(A);
    let key = EpochKey::generate();
    a.events(5);
    let s = a.seal(&key); // 6, covers 1..=5
    a.events(2);
    let c = a.announce_crash(3);
    a.events(1);
    let r = verify_with(
        &key,
        &a.lines_without(|q| (3..=5).contains(&q) || (7..=8).contains(&q)),
    );
    assert!(!r.ok);
    let st = stream(&r, A);
    assert!(st.tampered());
    assert!(st.crash_windows.is_empty(), "{st:#?}");
    assert_eq!(
        st.bad_crash_windows,
        vec![BadCrashWindow {
            announced_at: c,
            reason: format!("declares seqs 3-8 lost, but the seal at seq {s} before it covers 1-5"),
        }]
    );
    assert_eq!(st.gaps, vec![[3, 5], [7, 8]]);
    assert!(st.bad_seals.is_empty() && st.altered.is_empty() && st.broken_links.is_empty());
    let text = r.to_string();
    assert!(text.contains("stream node-1/teleport: TAMPERED"), "{text}");
    assert!(
        text.contains(&format!(
            "  bad crash windows (not honoured):\n    seq {c}: declares"
        )),
        "{text}"
    );

    // Reaching one seq into the sealed range is enough; the window's own seqs after the seal do not save it.
    let mut b = Chain::new(A);
    b.events(5);
    b.seal(&key);
    b.events(2);
    let c = b.announce_crash(5);
    let r = verify_with(&key, &b.lines_without(|q| q == 5 || (7..=8).contains(&q)));
    let st = stream(&r, A);
    assert_eq!(
        st.bad_crash_windows
            .iter()
            .map(|b| b.announced_at)
            .collect::<Vec<_>>(),
        vec![c]
    );
    assert_eq!(st.gaps, vec![[5, 5], [7, 8]]);
    assert!(!r.ok);
}

#[test]
fn announcements_that_do_not_check_out_excuse_nothing() {
    #[derive(Clone, Copy, Debug)]
    enum Fault {
        WrongEnd,
        OtherStream,
        Altered,
        FromZero,
        StartsPastItsEnd,
        Unreadable,
        Rechained,
    }
    let key = EpochKey::generate();
    for fault in [
        Fault::WrongEnd,
        Fault::OtherStream,
        Fault::Altered,
        Fault::FromZero,
        Fault::StartsPastItsEnd,
        Fault::Unreadable,
        Fault::Rechained,
    ] {
        // 1..=3, seal 4, then 5..=8 lost and the announcement at 9, then 10..=11.
        let mut a = Chain::new(A);
        a.events(3);
        a.seal(&key);
        a.events(4);
        let c = a.next();
        let body = match fault {
            Fault::WrongEnd => crash_body(A, 5, 7),
            Fault::OtherStream => crash_body(B, 5, 8),
            Fault::FromZero => crash_body(A, 0, 8),
            Fault::StartsPastItsEnd => crash_body(A, 10, 8),
            Fault::Unreadable => String::from_utf8(crash_body(A, 5, 8))
                .unwrap()
                .replace("\"window\"", "\"windows\"")
                .into_bytes(),
            Fault::Altered | Fault::Rechained => crash_body(A, 5, 8),
        };
        if let Fault::Rechained = fault {
            // Seq 9 was a plain event, replaced by an announcement with a good hash: seq 10 claims the old one.
            a.events(1);
        } else {
            a.push(body.clone(), None);
        }
        a.events(2);
        let mut lines = a.lines_without(|s| (5..=8).contains(&s));
        let at = lines.iter().position(|l| read_field_seq(l) == c).unwrap();
        let want = match fault {
            Fault::WrongEnd => {
                "declares a window up to seq 7, not up to the seq before the announcement"
                    .to_string()
            }
            Fault::OtherStream => format!("announces stream {B:?}, not this one"),
            Fault::Altered => {
                lines[at] = String::from_utf8(lines[at].clone())
                    .unwrap()
                    .replace("were lost", "were not lost")
                    .into_bytes();
                "altered".into()
            }
            Fault::FromZero => "declares a window from seq 0".into(),
            Fault::StartsPastItsEnd => "declares a window from seq 10 past its end at seq 8".into(),
            Fault::Unreadable => {
                "unreadable announcement: an announcement without a `window` member".into()
            }
            Fault::Rechained => {
                lines[at] = chain_line(A, c, a.entry(c).prev, &body).0;
                format!("seq {} does not link to it", c + 1)
            }
        };
        let r = verify_with(&key, &lines);
        assert!(!r.ok, "{fault:?}");
        let st = stream(&r, A);
        assert!(st.crash_windows.is_empty(), "{fault:?}: {st:#?}");
        assert_eq!(
            st.bad_crash_windows,
            vec![BadCrashWindow {
                announced_at: c,
                reason: want
            }],
            "{fault:?}"
        );
        assert_eq!(st.gaps, vec![[5, 8]], "{fault:?}");
        // An altered announcement is a bad crash window, like an altered seal is a bad seal.
        assert!(st.altered.is_empty(), "{fault:?}: {st:#?}");
        let broken: &[u64] = if let Fault::Rechained = fault {
            &[10]
        } else {
            &[]
        };
        assert_eq!(st.broken_links, broken, "{fault:?}");
    }
}

/// The seq of a chained line.
fn read_field_seq(line: &[u8]) -> u64 {
    crate::integrity::chain::read_field(line).unwrap().seq
}

#[test]
fn a_second_copy_of_an_announcement_seq_with_other_content_is_refused() {
    let key = EpochKey::generate();
    let mut a = Chain::new(A);
    a.events(3);
    a.seal(&key);
    a.events(2);
    let c = a.announce_crash(5);
    a.events(1);
    let mut lines = a.lines_without(|s| (5..=6).contains(&s));
    // Duplicates of a genuine announcement change nothing.
    lines.push(a.entry(c).line.clone());
    let r = verify_with(&key, &lines);
    assert!(r.ok, "{r:#?}");
    assert_eq!(
        stream(&r, A).crash_windows,
        vec![window(c, 5, 6, &[[5, 6]])]
    );
    // A forged copy of the same seq, hash good, declaring more.
    lines.push(chain_line(A, c, a.entry(c).prev, &crash_body(A, 1, 6)).0);
    let r = verify_with(&key, &lines);
    let st = stream(&r, A);
    assert!(!r.ok && st.crash_windows.is_empty(), "{st:#?}");
    assert_eq!(st.conflicts, vec![c]);
    let why = &st.bad_crash_windows[0].reason;
    assert!(
        why.contains("two copies whose hashes check out but differ"),
        "{why}"
    );
    assert!(
        why.contains("the seal at seq 4 before it covers 1-3"),
        "{why}"
    );
    assert!(
        why.contains(&format!("seq {} does not link to it", c + 1)),
        "{why}"
    );
    assert_eq!(st.gaps, vec![[5, 6]]);
}

#[test]
fn gaps_outside_a_window_are_still_gaps() {
    let mut a = Chain::new(A);
    let key = EpochKey::generate();
    a.events(3);
    a.seal(&key); // 4
    a.events(5);
    a.seal(&key); // 10, covers 5..=9
    a.events(4); // 11..=14, 12..=14 lost in the crash
    let c = a.announce_crash(11);
    a.events(3); // 16..=18
    a.seal(&key); // 19, covers 11..=18
                  // Besides the crash, seq 7 (sealed) and seq 17 (after the announcement) were deleted.
    let r = verify_with(
        &key,
        &a.lines_without(|s| s == 7 || s == 17 || (12..=14).contains(&s)),
    );
    assert!(!r.ok);
    let st = stream(&r, A);
    assert_eq!(st.gaps, vec![[7, 7], [17, 17]]);
    assert_eq!(st.crash_windows, vec![window(c, 11, 14, &[[12, 14]])]);
    assert!(
        st.bad_crash_windows.is_empty() && st.bad_seals.is_empty(),
        "{st:#?}"
    );
    let text = r.to_string();
    assert!(text.contains("gaps (missing seqs): 7, 17"), "{text}");
    assert!(
        text.contains(&format!("seq {c} declares 11-14; missing: 12-14")),
        "{text}"
    );
}

// ---- properties ----

#[derive(Clone, Copy, Debug)]
enum Kind {
    Delete,
    Alter,
    Swap,
    Duplicate,
    Forge,
    Resign { fresh: bool },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Delete),
        Just(Kind::Alter),
        Just(Kind::Swap),
        Just(Kind::Duplicate),
        Just(Kind::Forge),
        any::<bool>().prop_map(|fresh| Kind::Resign { fresh }),
    ]
}

#[derive(Default, Debug)]
struct Expected {
    deleted: BTreeSet<u64>,
    altered: BTreeSet<u64>,
    conflicts: BTreeSet<u64>,
    bad_seals: BTreeSet<u64>,
    duplicates: u64,
    /// Resigned seal whose reason must name the misuse of a later key.
    outside: Option<u64>,
    /// Seqs left without a copy whose hash checks out.
    unverified: BTreeSet<u64>,
}

fn ranges(seqs: &BTreeSet<u64>) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some(r) if r[1] + 1 == s => r[1] = s,
            _ => out.push([s, s]),
        }
    }
    out
}

fn shuffled<T>(mut v: Vec<T>, keys: &[u64]) -> Vec<T> {
    let mut order: Vec<(u64, usize)> = (0..v.len())
        .map(|i| (keys.get(i).copied().unwrap_or(i as u64), i))
        .collect();
    order.sort_unstable();
    let mut slots: Vec<Option<T>> = v.drain(..).map(Some).collect();
    order
        .into_iter()
        .map(|(_, i)| slots[i].take().unwrap())
        .collect()
}

fn layout() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((0usize..5, 1usize..5), 3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Clean streams with copies and in any order always verify, counting every copy.
    #[test]
    fn clean_streams_verify_in_any_order(
        per_epoch in layout(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        order in prop::collection::vec(any::<u64>(), 200),
    ) {
        let (mut a, mut b) = (Chain::new(A), Chain::new(B));
        let keys = build(&mut [&mut a, &mut b], &per_epoch);
        let mut lines = a.lines();
        lines.extend(b.lines());
        let n = lines.len();
        for d in &dups {
            lines.push(lines[d.index(n)].clone());
        }
        let r = verify_with(&keys[0], &shuffled(lines, &order));
        prop_assert!(r.ok, "{:#?}", r);
        let total: u64 = r.streams.iter().map(|s| s.duplicates).sum();
        prop_assert_eq!(total, dups.len() as u64);
        prop_assert_eq!(stream(&r, A).verified, a.entries.len() as u64);
        prop_assert_eq!(stream(&r, A).unsealed, 0);
    }

    /// Every edit is found, in its category, at exactly its seq, and nothing else is reported.
    #[test]
    fn edits_are_found_and_located_exactly(
        per_epoch in layout(),
        edits in prop::collection::vec((kind(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
        order in prop::collection::vec(any::<u64>(), 200),
    ) {
        let (mut a, mut b) = (Chain::new(A), Chain::new(B));
        let keys = build(&mut [&mut a, &mut b], &per_epoch);
        let newest = keys.last().unwrap();
        let n = a.entries.len() as u64;
        let mut lines: Vec<Option<Vec<u8>>> = a.entries.iter().map(|e| Some(e.line.clone())).collect();
        let mut extra: Vec<Vec<u8>> = b.lines();
        let mut used = BTreeSet::new();
        let mut seal_edited = false;
        let mut want = Expected::default();
        for (kind, pick, pick2) in edits {
            let is_seal = |s: u64| a.entry(s).seal_epoch.is_some();
            // The last event (the final seal) is never touched: a truncated tail cannot be seen.
            let eligible: Vec<u64> = (1..n)
                .filter(|s| !used.contains(s))
                .filter(|&s| match kind {
                    Kind::Delete | Kind::Alter => !is_seal(s) || !seal_edited,
                    Kind::Swap => !is_seal(s),
                    Kind::Duplicate | Kind::Forge => true,
                    Kind::Resign { .. } => !seal_edited && a.entry(s).seal_epoch.is_some_and(|e| e < newest.epoch),
                })
                .collect();
            if eligible.is_empty() {
                continue;
            }
            let s = eligible[pick.index(eligible.len())];
            let e = a.entry(s).clone();
            let text = String::from_utf8(e.line.clone()).unwrap();
            match kind {
                Kind::Delete => {
                    lines[s as usize - 1] = None;
                    want.deleted.insert(s);
                    seal_edited |= is_seal(s);
                }
                Kind::Alter => {
                    lines[s as usize - 1] = Some(text.replacen("\"uid\":\"", "\"uid\":\"forged-", 1).into_bytes());
                    if is_seal(s) {
                        want.bad_seals.insert(s);
                        seal_edited = true;
                    } else {
                        want.altered.insert(s);
                    }
                    want.unverified.insert(s);
                }
                Kind::Swap => {
                    let others: Vec<u64> = eligible.iter().copied().filter(|&o| o != s).collect();
                    if others.is_empty() {
                        continue;
                    }
                    let o = others[pick2.index(others.len())];
                    let f = a.entry(o).clone();
                    lines[s as usize - 1] = Some(append_member(&f.body, &member(A, s, e.prev, e.hash)));
                    lines[o as usize - 1] = Some(append_member(&e.body, &member(A, o, f.prev, f.hash)));
                    used.insert(o);
                    want.altered.extend([s, o]);
                    want.unverified.extend([s, o]);
                }
                Kind::Duplicate => {
                    extra.push(e.line.clone());
                    want.duplicates += 1;
                }
                Kind::Forge => {
                    extra.push(chain_line(A, s, e.prev, &event_body(A, s, "forged-")).0);
                    want.conflicts.insert(s);
                }
                Kind::Resign { fresh } => {
                    let sealed_at = fresh.then(|| chrono::Utc::now().to_rfc3339());
                    let forged = resign(&seal_of(&e), newest, sealed_at);
                    // The chain field is kept: the forger cannot rechain without breaking the next link.
                    lines[s as usize - 1] = Some(append_member(&forged.to_event(), &member(A, s, e.prev, e.hash)));
                    want.bad_seals.insert(s);
                    want.unverified.insert(s);
                    let later_older = a.entries.iter().any(|x| x.seq > s && x.seal_epoch.is_some_and(|k| k < newest.epoch));
                    if !fresh || later_older {
                        want.outside = Some(s);
                    }
                    seal_edited = true;
                }
            }
            used.insert(s);
        }
        let mut all: Vec<Vec<u8>> = lines.into_iter().flatten().collect();
        all.extend(extra);
        let r = verify_with(&keys[0], &shuffled(all, &order));
        intact(stream(&r, B));
        let st = stream(&r, A);
        prop_assert_eq!(&st.gaps, &ranges(&want.deleted));
        prop_assert_eq!(&st.altered, &want.altered.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(&st.conflicts, &want.conflicts.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(bad_seqs(st), want.bad_seals.iter().copied().collect::<Vec<_>>(), "{:#?}", st);
        prop_assert!(st.broken_links.is_empty(), "{:#?}", st);
        prop_assert_eq!(st.duplicates, want.duplicates);
        prop_assert_eq!(st.verified, n - want.deleted.len() as u64 - want.unverified.len() as u64);
        prop_assert_eq!(st.unsealed, 0);
        if let Some(q) = want.outside {
            prop_assert!(reason(st, q).contains(OUTSIDE), "{:#?}", st);
        }
        let edited = !(want.deleted.is_empty() && want.altered.is_empty() && want.conflicts.is_empty() && want.bad_seals.is_empty());
        prop_assert_eq!(r.ok, !edited);
        prop_assert_eq!((r.unreadable, r.unchained), (0, 0));
    }

    /// Whatever the bytes, examining a line never panics.
    #[test]
    fn arbitrary_lines_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut v = Verifier::new(EpochKey::generate().public());
        v.feed_line(&bytes, "x", 1);
        let mut framed = b"{\"auditrail.integrity\":".to_vec();
        framed.extend_from_slice(&bytes);
        v.feed_line(&framed, "x", 2);
        let _ = v.finish();
    }
}
