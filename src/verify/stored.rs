//! `auditrail verify --recordings s3://bucket/prefix INPUT…`: checks the objects the uploader stored against
//! the sizes and SHA-256s that its `session.upload` events (T2005I) carry, read from the same NDJSON inputs
//! as the chain check. (`gs://`, `az://` and `file://` URLs work the same way; only S3 is tested against a
//! server.) The store is reached as the uploader reaches it: the standard environment (`AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`, a profile, the instance's
//! credentials), never secrets on the command line.
//!
//! Only events whose chain verifies vouch for an object, as for a recordings directory
//! ([`super::recordings`]): an event edited in place, or edited and re-hashed, vouches for nothing. Every
//! object a vouching event names under the URL is read whole (streamed, in constant memory) and its size
//! and SHA-256 compared with the newest vouching event's. Then the URL's prefix is listed, so objects that
//! nothing in the audit trail vouches for are named too.
//!
//! Verdicts: *intact* (the newest vouching event's size and SHA-256); *altered* (other content, including
//! the content of an earlier upload of the same file that a later event superseded); *missing*;
//! *unreadable* (the store refused or failed: the error is given); *unrecorded* (an object under the
//! prefix that no event names); *unverifiable* (only events that do not verify name it). Only intact
//! leaves the exit status 0, and an intact object that a tampered event also names is not ok.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

use auditrail_core::integrity::verify::Report;
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::recordings::{Chains, Collector, Digest, Said};
use super::VerifyArgs;
use crate::uploader::store::Store;

/// The most objects listed under the prefix; beyond it the listing stops with a problem noted (verify a
/// narrower prefix).
pub const MAX_LISTED: usize = 1_000_000;
/// The most problems listed.
const MAX_PROBLEMS: usize = 50;

/// Whether `--recordings` names a store (`s3://`, `gs://`, `az://`, `file://`) rather than a directory.
pub fn is_store_url(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        ["s3://", "gs://", "az://", "file://"]
            .iter()
            .any(|scheme| s.starts_with(scheme))
    })
}

/// One object's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectVerdict {
    /// As the newest vouching event says.
    Intact,
    /// Other content.
    Altered,
    /// Not in the store.
    Missing,
    /// The store refused or failed.
    Unreadable,
    /// In the store; no event names it.
    Unrecorded,
    /// Only events that do not verify name it.
    Unverifiable,
}

/// One object.
#[derive(Debug, Serialize)]
pub struct ObjectReport {
    /// Its URL, as the events give it.
    pub url: String,
    /// The session, when an event names it.
    pub sid: Option<String>,
    /// The verdict.
    pub verdict: ObjectVerdict,
    /// Whether this object leaves the exit status 0.
    pub ok: bool,
    /// What the newest vouching event says: bytes and SHA-256.
    pub expected_size: Option<u64>,
    /// Hex.
    pub expected_sha256: Option<String>,
    /// What the store holds, when it was read.
    pub stored_size: Option<u64>,
    /// Hex.
    pub stored_sha256: Option<String>,
    /// Vouching events that name it (identical copies count once).
    pub events: usize,
    /// Why, when not intact.
    pub detail: Option<String>,
    /// Events naming it that do not vouch, with why.
    pub untrusted: Vec<String>,
}

/// The whole check.
#[derive(Debug, Serialize)]
pub struct StoredReport {
    /// Every object intact.
    pub ok: bool,
    /// The URL checked.
    pub url: String,
    /// By URL.
    pub objects: Vec<ObjectReport>,
    /// Objects that events name outside the URL (not checked).
    pub outside: u64,
    /// Events passed over, with why (the first few).
    pub problems: Vec<String>,
}

/// What the vouching events say of one object.
#[derive(Default)]
struct Claim {
    sid: String,
    /// Distinct digests, in input order; the last is the newest.
    digests: Vec<Digest>,
    events: usize,
    untrusted: Vec<String>,
}

fn push(problems: &mut Vec<String>, p: String) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(p);
    }
}

/// Which `session.upload` events vouch, per object URL.
fn claims(c: Collector, events: &Report) -> (BTreeMap<String, Claim>, Vec<String>) {
    let chains = Chains::new(events, &c.seals);
    let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    for n in c.events {
        let Said::Stored(objects) = n.said else {
            continue;
        };
        let why = match &n.chain {
            None => Some(format!(
                "{}: not chained (no \"auditrail.integrity\" field)",
                n.location
            )),
            Some((stream, seq, false)) => Some(format!(
                "{}: stream {stream} seq {seq}: its hash does not match its content (altered)",
                n.location
            )),
            Some((stream, seq, true)) => match chains.trust(stream, *seq) {
                Ok(_) => None,
                Err(why) => Some(format!("{}: stream {stream} seq {seq}: {why}", n.location)),
            },
        };
        if why.is_none() {
            let (stream, seq, _) = n.chain.as_ref().expect("a vouching event is chained");
            // Identical copies (at-least-once delivery) count once.
            if !seen.insert((stream.clone(), *seq)) {
                continue;
            }
        }
        for (url, d) in objects {
            let cl = claims.entry(url).or_default();
            cl.sid = n.sid.clone();
            match &why {
                Some(w) => cl.untrusted.push(w.clone()),
                None => {
                    cl.events += 1;
                    if cl.digests.last() != Some(&d) {
                        cl.digests.retain(|x| *x != d);
                        cl.digests.push(d);
                    }
                }
            }
        }
    }
    let mut problems = c.problems;
    if c.problem_count > problems.len() as u64 {
        problems.push(format!("… ({} events passed over in all)", c.problem_count));
    }
    (claims, problems)
}

/// Reads an object whole: its size and SHA-256; `None` when it is not there.
async fn read_object(store: &Store, key: &str) -> Result<Option<Digest>, object_store::Error> {
    let path = ObjectPath::from(key);
    let got = match store
        .object
        .get_opts(&path, object_store::GetOptions::default())
        .await
    {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut h = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok(Some(Digest {
        bytes,
        sha: h.finalize().into(),
    }))
}

fn describe(d: &Digest) -> String {
    format!("{} bytes, sha256 {}", d.bytes, hex::encode(d.sha))
}

/// Judges one object that events name.
fn judge(url: String, cl: Claim, stored: Result<Option<Digest>, String>) -> ObjectReport {
    let newest = cl.digests.last().copied();
    let mut r = ObjectReport {
        url,
        sid: Some(cl.sid),
        verdict: ObjectVerdict::Intact,
        ok: false,
        expected_size: newest.map(|d| d.bytes),
        expected_sha256: newest.map(|d| hex::encode(d.sha)),
        stored_size: None,
        stored_sha256: None,
        events: cl.events,
        detail: None,
        untrusted: cl.untrusted,
    };
    let stored = match stored {
        Ok(Some(d)) => d,
        Ok(None) => {
            r.verdict = ObjectVerdict::Missing;
            r.detail = Some("not in the store".into());
            return r;
        }
        Err(e) => {
            r.verdict = ObjectVerdict::Unreadable;
            r.detail = Some(e);
            return r;
        }
    };
    r.stored_size = Some(stored.bytes);
    r.stored_sha256 = Some(hex::encode(stored.sha));
    let Some(newest) = newest else {
        r.verdict = ObjectVerdict::Unverifiable;
        r.detail = Some("only events that do not verify name it".into());
        return r;
    };
    if stored == newest {
        r.ok = r.untrusted.is_empty();
        if !r.ok {
            r.detail = Some("intact, but events that do not verify also name it".into());
        }
    } else if cl.digests[..cl.digests.len() - 1].contains(&stored) {
        r.verdict = ObjectVerdict::Altered;
        r.detail = Some(format!(
            "it holds an earlier upload's content ({}); the newest verified event says {}",
            describe(&stored),
            describe(&newest)
        ));
    } else {
        r.verdict = ObjectVerdict::Altered;
        r.detail = Some(format!(
            "it holds {}; the newest verified event says {}",
            describe(&stored),
            describe(&newest)
        ));
    }
    r
}

/// Builds the store for `url` as the uploader would, from the standard environment.
pub fn store_for(url: &str) -> anyhow::Result<Store> {
    if let Some(dir) = url.strip_prefix("file://") {
        // Checking must not create what it checks.
        anyhow::ensure!(Path::new(dir).is_dir(), "{url}: {dir} is not a directory");
    }
    // The uploader's own table with only `url` set: every other setting at its default, so the store is
    // the one the uploader builds from the same environment.
    let mut table = toml::Table::new();
    table.insert("url".into(), toml::Value::String(url.to_string()));
    let cfg: crate::uploader::config::UploaderConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    crate::uploader::store::build(&cfg).map_err(|e| anyhow::anyhow!("{url}: {e}"))
}

/// Checks `store` (built from `url` by [`store_for`]) against what `collector` gathered, trusting only
/// what `events` verifies.
pub fn check(
    url: &str,
    store: &Store,
    collector: Collector,
    events: &Report,
) -> anyhow::Result<StoredReport> {
    anyhow::ensure!(
        !collector.too_many,
        "more than {} upload events in the inputs: verify fewer inputs at once",
        super::recordings::MAX_EVENTS
    );
    let (claims, mut problems) = claims(collector, events);
    let under = if store.prefix.is_empty() {
        format!("{}/", store.base)
    } else {
        format!("{}/{}/", store.base, store.prefix)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (objects, outside) = rt.block_on(async {
        let mut objects = Vec::new();
        let mut outside = 0u64;
        let mut named = BTreeSet::new();
        for (u, cl) in claims {
            let Some(key) = u.strip_prefix(&format!("{}/", store.base)) else {
                outside += 1;
                continue;
            };
            if !u.starts_with(&under) {
                outside += 1;
                continue;
            }
            named.insert(key.to_string());
            let stored = read_object(store, key).await.map_err(|e| e.to_string());
            objects.push(judge(u.clone(), cl, stored));
        }
        let prefix = (!store.prefix.is_empty()).then(|| ObjectPath::from(store.prefix.as_str()));
        let mut listing = store.object.list(prefix.as_ref());
        let mut listed = 0usize;
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    push(
                        &mut problems,
                        format!("{under}: listing failed ({e}): objects no event names may be left out"),
                    );
                    break;
                }
            };
            listed += 1;
            if listed > MAX_LISTED {
                push(
                    &mut problems,
                    format!("{under}: more than {MAX_LISTED} objects; the rest are not listed (verify a narrower prefix)"),
                );
                break;
            }
            let key = meta.location.to_string();
            if named.contains(&key) {
                continue;
            }
            objects.push(ObjectReport {
                url: store.url_of(&key),
                sid: None,
                verdict: ObjectVerdict::Unrecorded,
                ok: false,
                expected_size: None,
                expected_sha256: None,
                stored_size: Some(meta.size),
                stored_sha256: None,
                events: 0,
                detail: Some("no event in the inputs names it".into()),
                untrusted: Vec::new(),
            });
        }
        (objects, outside)
    });
    let mut objects = objects;
    objects.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(StoredReport {
        ok: objects.iter().all(|o| o.ok),
        url: url.to_string(),
        objects,
        outside,
        problems,
    })
}

fn word(v: ObjectVerdict) -> &'static str {
    match v {
        ObjectVerdict::Intact => "intact",
        ObjectVerdict::Altered => "ALTERED",
        ObjectVerdict::Missing => "MISSING",
        ObjectVerdict::Unreadable => "UNREADABLE",
        ObjectVerdict::Unrecorded => "UNRECORDED",
        ObjectVerdict::Unverifiable => "UNVERIFIABLE",
    }
}

impl fmt::Display for StoredReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let intact = self.objects.iter().filter(|o| o.ok).count();
        writeln!(
            f,
            "stored recordings at {}: {} object(s), {intact} intact{}",
            self.url,
            self.objects.len(),
            if self.ok { "" } else { "; NOT OK" }
        )?;
        for o in &self.objects {
            write!(f, "  {:<12} {}", word(o.verdict), o.url)?;
            if let Some(sid) = &o.sid {
                write!(f, " (sid {sid})")?;
            }
            writeln!(f)?;
            if let Some(d) = &o.detail {
                writeln!(f, "               {d}")?;
            }
            for u in &o.untrusted {
                writeln!(f, "               does not vouch: {u}")?;
            }
        }
        if self.outside > 0 {
            writeln!(
                f,
                "  {} object(s) named by the events are outside {} (not checked)",
                self.outside, self.url
            )?;
        }
        for p in &self.problems {
            writeln!(f, "  passed over: {p}")?;
        }
        Ok(())
    }
}

/// Runs `auditrail verify --recordings URL …` and prints both reports; returns the exit status.
pub fn main(args: VerifyArgs) -> ExitCode {
    let Some(url) = args
        .recordings
        .as_ref()
        .and_then(|p| p.to_str())
        .map(|s| s.trim_end_matches('/').to_string())
    else {
        return ExitCode::from(2);
    };
    let outcome = (|| -> anyhow::Result<(Report, StoredReport)> {
        super::print::ndjson_inputs_only(&args)?;
        // The store is built (and its URL checked) before the inputs are read.
        let store = store_for(&url)?;
        let mut collector = Collector::for_store();
        let events = super::run_tapped(&args, Some(&mut collector))?;
        let stored = check(&url, &store, collector, &events)?;
        Ok((events, stored))
    })();
    super::print::finish(args.json, "stored", outcome, |r| r.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> Digest {
        Digest {
            bytes: b.len() as u64,
            sha: Sha256::digest(b).into(),
        }
    }

    fn claim(digests: &[&[u8]]) -> Claim {
        Claim {
            sid: "s1".into(),
            digests: digests.iter().map(|b| d(b)).collect(),
            events: digests.len(),
            untrusted: Vec::new(),
        }
    }

    #[test]
    fn store_urls_are_told_from_directories() {
        for u in ["s3://b/p", "gs://b", "az://c/p", "file:///srv/rec"] {
            assert!(is_store_url(Path::new(u)), "{u}");
        }
        for p in ["/var/lib/auditrail/recordings", "s3:/b", "rec", "./s3://x"] {
            assert!(!is_store_url(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn each_verdict_is_given_for_what_the_store_holds() {
        let u = || "s3://b/k".to_string();
        let r = judge(u(), claim(&[b"v1"]), Ok(Some(d(b"v1"))));
        assert_eq!((r.verdict, r.ok), (ObjectVerdict::Intact, true));
        let r = judge(u(), claim(&[b"v1"]), Ok(Some(d(b"other"))));
        assert_eq!((r.verdict, r.ok), (ObjectVerdict::Altered, false));
        assert!(r.detail.unwrap().contains("5 bytes"));
        // The file was uploaded again: the store must hold the newest content, not the first.
        let r = judge(u(), claim(&[b"v1", b"v1+more"]), Ok(Some(d(b"v1"))));
        assert_eq!(r.verdict, ObjectVerdict::Altered);
        assert!(r.detail.unwrap().contains("earlier upload"), "superseded");
        let r = judge(u(), claim(&[b"v1"]), Ok(None));
        assert_eq!((r.verdict, r.ok), (ObjectVerdict::Missing, false));
        let r = judge(u(), claim(&[b"v1"]), Err("403 Forbidden".into()));
        assert_eq!(r.verdict, ObjectVerdict::Unreadable);
        assert_eq!(r.detail.as_deref(), Some("403 Forbidden"));
        // Only a tampered event names it: nothing vouches.
        let mut c = claim(&[]);
        c.untrusted.push("x: altered".into());
        let r = judge(u(), c, Ok(Some(d(b"v1"))));
        assert_eq!((r.verdict, r.ok), (ObjectVerdict::Unverifiable, false));
        // Intact, but also named by a tampered event: not ok.
        let mut c = claim(&[b"v1"]);
        c.untrusted.push("x: altered".into());
        let r = judge(u(), c, Ok(Some(d(b"v1"))));
        assert_eq!((r.verdict, r.ok), (ObjectVerdict::Intact, false));
    }
}
