//! Seal checks: the chain of epoch keys from the auditors' root key, and what each seal must satisfy.
//!
//! The epoch keys are established from all seals of all streams: epoch 0's key is the root; epoch `k+1`'s is
//! named by a seal of epoch `k` signed by epoch `k`'s key (its `next_pub`) or by a seal of epoch `k+1` whose
//! certificate verifies under epoch `k`'s key (its `epoch_pub`, with the epoch's certified start). Only seals
//! whose chain entry checks out and whose signature is good take part. Two different claims for one epoch can
//! only come from someone holding that epoch's secret; the claim with fewer seals behind it is the forged one.
//!
//! A seal is then bad when any of these fails: its chain entry is not altered; it is readable; its signature is
//! good; its key is the established key of its epoch, certified by the previous one; it was made within its
//! epoch (not before the epoch's certified start, not at or after the next epoch's); no later seal of the same
//! stream is of an earlier epoch (someone who holds today's key can re-sign an old range, and may date it
//! today, but cannot make the seals that follow it older: the check journald's verifier lacked,
//! CVE-2023-31439); it names its stream; it covers the events since the previous seal up to just before itself
//! and its `last_hash` is the hash of the last of them.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset};
use ed25519_dalek::VerifyingKey;

use super::slots::{trunc, Slots, Trunc, SEAL};
use crate::integrity::chain::GENESIS;
use crate::integrity::keys::check_cert;
use crate::integrity::seal::Seal;

/// One distinct copy of a seal event.
#[derive(Debug)]
pub(crate) struct SealCopy {
    pub seq: u64,
    /// The copy's chain hash checks out.
    pub valid_chain: bool,
    pub seal: Result<Seal, String>,
}

/// Why each copy of a seal is bad (`[stream][copy]`; empty when it is good).
pub(crate) struct Verdicts {
    pub reasons: Vec<Vec<Vec<String>>>,
}

/// The reason prefix of every check of an epoch key used where it must not be.
pub(crate) const OUTSIDE: &str = "epoch key used outside its epoch";

struct Pre {
    sig_ok: bool,
    sealed_at: Option<DateTime<FixedOffset>>,
}

/// The established epoch keys and certified starts.
struct Epochs {
    keys: Vec<VerifyingKey>,
    /// Certified start of each epoch (`None` for epoch 0 or when no certificate was seen).
    starts: Vec<Option<DateTime<FixedOffset>>>,
    /// `(stream, copy)` → why its claims lost.
    losers: HashMap<(usize, usize), Vec<String>>,
}

impl Epochs {
    fn lose(&mut self, who: (usize, usize), why: String) {
        self.losers.entry(who).or_default().push(why);
    }
}

fn time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// Checks every seal copy of every stream. `streams[i]` is `(name, copies, slots)`.
pub(crate) fn check(root: VerifyingKey, streams: &[(&str, &[SealCopy], &Slots)]) -> Verdicts {
    let pre: Vec<Vec<Pre>> = streams
        .iter()
        .map(|(_, copies, _)| {
            copies
                .iter()
                .map(|c| match &c.seal {
                    Ok(s) => Pre {
                        sig_ok: s.signature_ok(),
                        sealed_at: time(&s.sealed_at),
                    },
                    Err(_) => Pre {
                        sig_ok: false,
                        sealed_at: None,
                    },
                })
                .collect()
        })
        .collect();
    let epochs = establish(root, streams, &pre);
    let mut reasons = Vec::with_capacity(streams.len());
    for (si, (name, copies, slots)) in streams.iter().enumerate() {
        let mut seal_seqs: Vec<u64> = copies.iter().map(|c| c.seq).collect();
        seal_seqs.sort_unstable();
        seal_seqs.dedup();
        let mut r: Vec<Vec<String>> = copies
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let lost = epochs.losers.get(&(si, ci));
                check_copy(name, c, &pre[si][ci], &epochs, lost, slots, &seal_seqs)
            })
            .collect();
        // Epochs must not go back along the stream: compare each seal with the authentic seals after it.
        let mut order: Vec<usize> = (0..copies.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(copies[i].seq));
        let mut later_min: Option<(u64, u64)> = None; // (epoch, seq) of the earliest-epoch authentic seal after
        let mut i = 0;
        while i < order.len() {
            let seq = copies[order[i]].seq;
            let mut j = i;
            while j < order.len() && copies[order[j]].seq == seq {
                j += 1;
            }
            for &ci in &order[i..j] {
                if let (Ok(s), Some((e, at))) = (&copies[ci].seal, later_min) {
                    if s.epoch > e {
                        r[ci].push(format!(
                            "{OUTSIDE}: the later seal at seq {at} is of earlier epoch {e}"
                        ));
                    }
                }
            }
            for &ci in &order[i..j] {
                if let (Ok(s), true) = (&copies[ci].seal, r[ci].is_empty()) {
                    if later_min.is_none_or(|(e, _)| s.epoch < e) {
                        later_min = Some((s.epoch, seq));
                    }
                }
            }
            i = j;
        }
        reasons.push(r);
    }
    Verdicts { reasons }
}

fn establish(
    root: VerifyingKey,
    streams: &[(&str, &[SealCopy], &Slots)],
    pre: &[Vec<Pre>],
) -> Epochs {
    // Seals that may vouch for keys: chain entry intact, readable, signature good.
    let mut by_epoch: BTreeMap<u64, Vec<(usize, usize)>> = BTreeMap::new();
    for (si, (_, copies, _)) in streams.iter().enumerate() {
        for (ci, c) in copies.iter().enumerate() {
            if let (true, Ok(s), true) = (c.valid_chain, &c.seal, pre[si][ci].sig_ok) {
                by_epoch.entry(s.epoch).or_default().push((si, ci));
            }
        }
    }
    let seal = |(si, ci): (usize, usize)| -> &Seal {
        streams[si].1[ci]
            .seal
            .as_ref()
            .expect("only readable seals are listed")
    };
    let mut e = Epochs {
        keys: vec![root],
        starts: vec![None],
        losers: HashMap::new(),
    };
    let empty = Vec::new();
    loop {
        let k = (e.keys.len() - 1) as u64;
        let Some(next) = k.checked_add(1) else { break };
        let pk = e.keys[k as usize];
        // Claims for epoch k+1's key: (key, seals that claim it, (seal, start) of those certifying it).
        let mut claims: Vec<(VerifyingKey, Vec<(usize, usize)>)> = Vec::new();
        let mut certified: Vec<((usize, usize), String)> = Vec::new();
        let mut vote = |key: VerifyingKey, who: (usize, usize)| match claims
            .iter_mut()
            .find(|(c, _)| *c == key)
        {
            Some((_, v)) => v.push(who),
            None => claims.push((key, vec![who])),
        };
        for &who in by_epoch.get(&k).unwrap_or(&empty) {
            let s = seal(who);
            if s.epoch_pub == pk {
                vote(s.next_pub, who);
            }
        }
        for &who in by_epoch.get(&next).unwrap_or(&empty) {
            let s = seal(who);
            if let Some(cert) = &s.epoch_cert {
                if check_cert(&pk, next, &s.epoch_pub, &s.epoch_start, cert) {
                    vote(s.epoch_pub, who);
                    certified.push((who, s.epoch_start.clone()));
                }
            }
        }
        if claims.is_empty() {
            break;
        }
        claims.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        if claims.len() > 1 && claims[0].1.len() == claims[1].1.len() {
            // A tie: nothing tells which claim is genuine, so none is believed.
            for (_, v) in &claims {
                for &who in v {
                    e.lose(
                        who,
                        format!("conflicting claims for epoch {next}'s key, none in the majority"),
                    );
                }
            }
            break;
        }
        let winner = claims[0].0;
        for (_, v) in &claims[1..] {
            for &who in v {
                e.lose(who, format!("a minority claim for epoch {next}'s key"));
            }
        }
        // The certified start of epoch k+1: from the winning key's certificates, the majority start.
        let mut starts: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
        for (who, start) in certified {
            if seal(who).epoch_pub != winner {
                continue;
            }
            match starts.iter_mut().find(|(s, _)| *s == start) {
                Some((_, v)) => v.push(who),
                None => starts.push((start, vec![who])),
            }
        }
        starts.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (_, v) in starts.iter().skip(1) {
            for &who in v {
                e.lose(who, format!("a minority certified start for epoch {next}"));
            }
        }
        e.keys.push(winner);
        e.starts.push(starts.first().and_then(|(s, _)| time(s)));
    }
    e
}

fn check_copy(
    stream: &str,
    c: &SealCopy,
    pre: &Pre,
    epochs: &Epochs,
    lost: Option<&Vec<String>>,
    slots: &Slots,
    seal_seqs: &[u64],
) -> Vec<String> {
    let mut r = Vec::new();
    if !c.valid_chain {
        r.push("altered".to_string());
    }
    let s = match &c.seal {
        Ok(s) => s,
        Err(e) => {
            r.push(format!("unreadable seal: {e}"));
            return r;
        }
    };
    if !pre.sig_ok {
        r.push("bad signature".into());
    }
    match epochs.keys.get(s.epoch as usize) {
        Some(k) if *k == s.epoch_pub => {
            if s.epoch > 0 {
                let prev = &epochs.keys[s.epoch as usize - 1];
                let ok = s.epoch_cert.as_ref().is_some_and(|cert| {
                    check_cert(prev, s.epoch, &s.epoch_pub, &s.epoch_start, cert)
                });
                if !ok {
                    r.push(format!("bad certificate of epoch {}'s key", s.epoch));
                }
            }
        }
        _ => r.push(format!(
            "uncertified epoch key (not the established key of epoch {})",
            s.epoch
        )),
    }
    if let Some(why) = lost {
        r.extend(why.iter().cloned());
    }
    match pre.sealed_at {
        None => r.push(format!(
            "sealed_at {:?} is not an RFC 3339 time",
            s.sealed_at
        )),
        Some(at) => {
            let e = s.epoch as usize;
            if let Some(Some(start)) = epochs.starts.get(e) {
                if at < *start {
                    r.push(format!("{OUTSIDE}: sealed before epoch {} began", s.epoch));
                }
            }
            if let Some(Some(end)) = e.checked_add(1).and_then(|n| epochs.starts.get(n)) {
                if at >= *end {
                    r.push(format!(
                        "{OUTSIDE}: sealed after epoch {} began",
                        s.epoch + 1
                    ));
                }
            }
        }
    }
    if s.stream != stream {
        r.push(format!("seals stream {:?}, not this one", s.stream));
    }
    if Some(s.to) != c.seq.checked_sub(1) {
        r.push(format!(
            "covers up to seq {}, not up to the seq before the seal",
            s.to
        ));
    }
    // The range starts right after the previous seal: seq from−1 is a seal (when present) and no seal lies
    // within the range.
    if s.from == 0 {
        r.push("covers from seq 0".into());
    } else if s.from > 1 {
        if let Some(slot) = slots.get(s.from - 1) {
            if !slot.has(SEAL) {
                r.push(format!(
                    "covers from seq {} but seq {} is not a seal",
                    s.from,
                    s.from - 1
                ));
            }
        }
    }
    let first_in_range = seal_seqs.partition_point(|&q| q < s.from);
    if let Some(&p) = seal_seqs.get(first_in_range).filter(|&&p| p < c.seq) {
        r.push(format!("the seal at seq {p} lies within its range"));
    }
    let want: Option<Vec<Trunc>> = if s.to == 0 {
        Some(vec![trunc(&GENESIS)])
    } else {
        slots
            .get(s.to)
            .map(|slot| slots.claims(s.to, slot).map(|(h, _)| h).collect())
    };
    if let Some(want) = want {
        if !want.contains(&trunc(&s.last_hash)) {
            r.push(format!("last_hash is not the hash of seq {}", s.to));
        }
    }
    r
}
