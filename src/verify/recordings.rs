//! `auditrail verify --recordings DIR`: checks every session recording in DIR (`<sid>.raw`, `<sid>.cast`,
//! `<sid>.done`) against the digests that the recorder's events carry (`session.end`'s final digests and the
//! `auditrail.recording` checkpoints' prefix digests), read from the same NDJSON inputs as the chain check.
//!
//! Only events whose chain verifies vouch for a recording ([`Chains::trust`]): the event's own hash
//! recomputes from its content, no second copy of its seq differs, and either a good seal signs it (every
//! link from it up to the seal holds, with no conflicting copy on the way: the seal signs the hash of the
//! event before it, so it signs this one through the links) or, in the unsealed tail, the links on both of
//! its sides hold (trusted as the chain check trusts its unsealed tail; such events are counted per
//! recording). So an event edited in place, or edited and re-hashed (which breaks the next event's link),
//! vouches for nothing, and neither does what no good seal signs before a broken link. Events that do not
//! vouch are listed per recording and their digests ignored; the verdict comes from the others, and a
//! recording that a tampered event names is not ok (exit 1) whatever its files show. A recording that only
//! such events (or unchained ones) name is *unverifiable*.
//!
//! Verdicts, per file then per recording (the worst file wins): *intact* (session.end's sizes and SHA-256s
//! match; also when the recording was cut at `max_bytes`, which the report names with its reason),
//! *unfinished* (no session.end, as after a kill -9: the prefix up to the last matching checkpoint is proven,
//! the rest unproven, not tampered), *truncated* (shorter than session.end or the last checkpoint says),
//! *altered* (a digest differs, or bytes follow session.end's end; the last checkpoint whose prefix still
//! matches is named: the change is after it), *missing*, *unreadable*; per recording also *unrecorded*
//! (files no event names: nothing in the audit trail vouches for them), *unverifiable*, *conflicting*
//! (two verified session.ends disagree) and *not recorded* (the recorder reported why, and no file is
//! there). Intact, unfinished and not recorded leave the exit status 0; anything else makes it 1.
//!
//! Files are streamed once each, in constant memory: every checkpoint's prefix digest comes from the one
//! pass, by cloning the SHA-256 state at each checkpoint's offset. Nothing in DIR is followed out of it:
//! symbolic links and non-regular files are reported, not opened (and files are opened with `O_NOFOLLOW`);
//! names that are not UTF-8 or not a valid sid are reported and skipped; a sid from an event names a file
//! only after it is checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use auditrail_core::integrity::chain::{content_digest, link, read_field, Hash};
use auditrail_core::integrity::verify::Report;
use memchr::memmem;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::VerifyArgs;

/// The most recording events (session.start/end, auditrail.recording; session.upload for a store) kept from the inputs; beyond it verify
/// stops with an input error rather than grow without bound (a checkpoint every 10 s is 8,640 a day).
pub const MAX_EVENTS: usize = 1_000_000;
/// The most problems listed.
const MAX_PROBLEMS: usize = 50;
/// How much of a recording is read at once.
const READ_CHUNK: usize = 1 << 20;

const START: &str = "session.start";
const END: &str = "session.end";
const RECORDING: &str = "auditrail.recording";
const SEAL: &str = auditrail_core::integrity::seal::SEAL_EVENT;
const UPLOAD: &str = "session.upload";
/// The most objects one `session.upload` may name (the uploader sends a session's three or four files).
const MAX_OBJECTS_PER_EVENT: usize = 64;

/// Whether `sid` is a valid session id (`[A-Za-z0-9_-]{1,128}`, the contract's): only such names build paths.
pub fn valid_sid(sid: &str) -> bool {
    (1..=128).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A size and the SHA-256 of that many bytes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Digest {
    pub(super) bytes: u64,
    pub(super) sha: Hash,
}

/// What a recording event says, once its fields are read.
#[derive(Clone, Debug)]
pub(super) enum Said {
    Start,
    /// A `session.upload` T2005I: the objects stored, by URL.
    Stored(Vec<(String, Digest)>),
    End {
        raw: Digest,
        cast: Digest,
        truncated: bool,
        reason: Option<String>,
    },
    Checkpoint {
        raw: Digest,
        cast: Digest,
    },
    Cut {
        raw: Digest,
        cast: Digest,
        reason: String,
        action: String,
    },
    Error {
        reason: String,
    },
}

/// A recording event as found in an input.
#[derive(Clone, Debug)]
pub(super) struct Noted {
    pub(super) location: String,
    pub(super) sid: String,
    pub(super) said: Said,
    /// Chain field and whether its hash recomputes; `None` for an unchained event.
    pub(super) chain: Option<(String, u64, bool)>,
}

/// A seal event's place in its stream, and whether its own hash recomputes.
pub(super) struct SealSeen {
    stream: String,
    seq: u64,
    valid: bool,
}

/// Gathers recording events (and seal positions) from the lines `verify` reads, beside the chain check.
pub struct Collector {
    pub(super) events: Vec<Noted>,
    pub(super) seals: Vec<SealSeen>,
    pub(super) problems: Vec<String>,
    pub(super) problem_count: u64,
    pub(super) too_many: bool,
    scratch: Vec<u8>,
    finders: [memmem::Finder<'static>; 4],
    /// The events gathered besides seals: the recorder's, or (for a store) `session.upload`.
    wanted: &'static [&'static str],
}

impl Collector {
    /// Gathers the uploader's `session.upload` events (and seals), for checking a store.
    pub fn for_store() -> Collector {
        Collector {
            finders: [
                memmem::Finder::new(b"\"session.upload\""),
                memmem::Finder::new(b"\"auditrail.seal\""),
                memmem::Finder::new(b"\"auditrail.seal\""),
                memmem::Finder::new(b"\"auditrail.seal\""),
            ],
            wanted: &[UPLOAD],
            ..Collector::default()
        }
    }
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            wanted: &[START, END, RECORDING],
            events: Vec::new(),
            seals: Vec::new(),
            problems: Vec::new(),
            problem_count: 0,
            too_many: false,
            scratch: Vec::with_capacity(4096),
            finders: [
                memmem::Finder::new(b"\"session.start\""),
                memmem::Finder::new(b"\"session.end\""),
                memmem::Finder::new(b"\"auditrail.recording\""),
                memmem::Finder::new(b"\"auditrail.seal\""),
            ],
        }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// The fields of a recording event that are read; everything else is ignored.
#[derive(serde::Deserialize)]
struct Wire {
    event: Option<serde_json::Value>,
    sid: Option<serde_json::Value>,
    kind: Option<serde_json::Value>,
    code: Option<serde_json::Value>,
    objects: Option<serde_json::Value>,
    raw_bytes: Option<serde_json::Value>,
    raw_sha256: Option<serde_json::Value>,
    cast_bytes: Option<serde_json::Value>,
    cast_sha256: Option<serde_json::Value>,
    truncated: Option<serde_json::Value>,
    truncated_reason: Option<serde_json::Value>,
    reason: Option<serde_json::Value>,
    action: Option<serde_json::Value>,
}

fn digest_of(
    bytes: &Option<serde_json::Value>,
    sha: &Option<serde_json::Value>,
    which: &str,
) -> Result<Digest, String> {
    let n = bytes
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("`{which}_bytes` is missing or not a non-negative integer"))?;
    let s = sha
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("`{which}_sha256` is missing or not a string"))?;
    let mut h = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut h).is_err() {
        return Err(format!(
            "`{which}_sha256` is not a SHA-256 in hex (64 hex digits)"
        ));
    }
    Ok(Digest { bytes: n, sha: h })
}

fn text_of(v: &Option<serde_json::Value>) -> Option<String> {
    match v {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

impl Collector {
    fn problem(&mut self, what: impl FnOnce() -> String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(what());
        }
    }

    /// Looks at NDJSON text holding whole lines, numbered from `first_line` within `source`.
    pub fn scan(&mut self, text: &[u8], source: &str, first_line: u64) {
        let mut line = first_line;
        let mut start = 0;
        while start < text.len() {
            let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |n| start + n);
            self.scan_line(&text[start..end], source, line);
            start = end + 1;
            line += 1;
        }
    }

    /// Looks at one line (an event, or anything else, which is passed over).
    ///
    /// Lines are picked by their event name written plainly (as the recorder, the agent and Teleport write
    /// it) before anything is parsed, so the millions of other events cost a substring search each.
    pub fn scan_line(&mut self, text: &[u8], source: &str, line: u64) {
        if !self.finders.iter().any(|f| f.find(text).is_some()) {
            return;
        }
        let text = trim(text);
        let location = || {
            if line == 0 {
                source.to_string()
            } else {
                format!("{source}:{line}")
            }
        };
        let Ok(w) = serde_json::from_slice::<Wire>(text) else {
            // Not a JSON object: the chain check counts it as unreadable already.
            return;
        };
        let event = match &w.event {
            Some(serde_json::Value::String(e)) => e.as_str(),
            _ => return,
        };
        if event != SEAL && !self.wanted.contains(&event) {
            return;
        }
        let chain = read_field(text).ok().map(|f| {
            let valid = content_digest(text, &mut self.scratch)
                .map(|d| link(&f.stream, f.seq, &f.prev, &d) == f.hash)
                .unwrap_or(false);
            (f.stream, f.seq, valid)
        });
        if event == SEAL {
            if let Some((stream, seq, valid)) = chain {
                self.seals.push(SealSeen { stream, seq, valid });
            }
            return;
        }
        let sid = match &w.sid {
            Some(serde_json::Value::String(s)) if valid_sid(s) => s.clone(),
            Some(serde_json::Value::String(s)) => {
                let shown: String = s.chars().take(140).collect();
                self.problem(|| {
                    format!(
                        "{}: {event} names sid {shown:?}, which is not a valid sid ([A-Za-z0-9_-], 1 to 128 characters): ignored",
                        location()
                    )
                });
                return;
            }
            _ => {
                self.problem(|| format!("{}: {event} without a string `sid`: ignored", location()));
                return;
            }
        };
        let said = match read_said(event, &w) {
            Ok(s) => s,
            Err(why) => {
                self.problem(|| format!("{}: {event} for sid {sid}: {why}: ignored", location()));
                return;
            }
        };
        if self.events.len() >= MAX_EVENTS {
            self.too_many = true;
            return;
        }
        self.events.push(Noted {
            location: location(),
            sid,
            said,
            chain,
        });
    }
}

fn read_said(event: &str, w: &Wire) -> Result<Said, String> {
    let both = || -> Result<(Digest, Digest), String> {
        Ok((
            digest_of(&w.raw_bytes, &w.raw_sha256, "raw")?,
            digest_of(&w.cast_bytes, &w.cast_sha256, "cast")?,
        ))
    };
    match event {
        START => Ok(Said::Start),
        UPLOAD => read_stored(w),
        END => {
            let (raw, cast) = both()?;
            let truncated = match &w.truncated {
                None => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(_) => return Err("`truncated` is not a boolean".into()),
            };
            Ok(Said::End {
                raw,
                cast,
                truncated,
                reason: text_of(&w.truncated_reason),
            })
        }
        _ => match w.kind.as_ref().and_then(serde_json::Value::as_str) {
            Some("checkpoint") => {
                let (raw, cast) = both()?;
                Ok(Said::Checkpoint { raw, cast })
            }
            Some("cut") => {
                let (raw, cast) = both()?;
                Ok(Said::Cut {
                    raw,
                    cast,
                    reason: text_of(&w.reason).unwrap_or_else(|| "not given".into()),
                    action: text_of(&w.action).unwrap_or_else(|| "not given".into()),
                })
            }
            Some("error") => Ok(Said::Error {
                reason: text_of(&w.reason).unwrap_or_else(|| "not given".into()),
            }),
            Some(k) => Err(format!("`kind` {k:?} is none of checkpoint, cut, error")),
            None => Err("no string `kind`".into()),
        },
    }
}

/// The objects of a `session.upload` T2005I (a T2005W says nothing was stored, and is an error here).
fn read_stored(w: &Wire) -> Result<Said, String> {
    match w.code.as_ref().and_then(serde_json::Value::as_str) {
        Some(super::super::uploader::events::CODE_UPLOADED) => {}
        Some(c) => return Err(format!("code {c:?}: not an upload that stored anything")),
        None => return Err("no string `code`".into()),
    }
    let objects = w
        .objects
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .ok_or("no `objects` array")?;
    if objects.len() > MAX_OBJECTS_PER_EVENT {
        return Err(format!(
            "{} objects (at most {MAX_OBJECTS_PER_EVENT} are read)",
            objects.len()
        ));
    }
    let mut out = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        let field = |k: &str| o.get(k).cloned();
        let url = field("url")
            .and_then(|u| u.as_str().map(str::to_string))
            .filter(|u| u.len() <= 2048)
            .ok_or_else(|| format!("objects[{i}]: no string `url` (of at most 2048 bytes)"))?;
        let bytes = field("size").and_then(|v| v.as_u64()).ok_or_else(|| {
            format!("objects[{i}]: `size` is missing or not a non-negative integer")
        })?;
        let mut sha = [0u8; 32];
        let hex_ok = field("sha256")
            .and_then(|v| v.as_str().map(str::to_string))
            .is_some_and(|h| h.len() == 64 && hex::decode_to_slice(&h, &mut sha).is_ok());
        if !hex_ok {
            return Err(format!(
                "objects[{i}]: `sha256` is missing or not a SHA-256 in hex (64 hex digits)"
            ));
        }
        out.push((url, Digest { bytes, sha }));
    }
    Ok(Said::Stored(out))
}

/// What the trusted events say about one sid.
#[derive(Default)]
struct Claims {
    start: bool,
    ends: Vec<(Digest, Digest, bool, Option<String>)>,
    /// Prefix digests of the .raw and the .cast (checkpoints and cuts).
    raw_points: Vec<Digest>,
    cast_points: Vec<Digest>,
    cut: Option<String>,
    errors: Vec<String>,
    /// Events naming the sid that do not verify, with where and why.
    untrusted: Vec<String>,
    /// Trusted events after their stream's last good seal.
    unsealed: u64,
    /// Events without a chain field.
    unchained: u64,
    trusted: u64,
}

/// The verdict on one file of a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileVerdict {
    /// Size and SHA-256 as session.end says.
    Intact,
    /// No session.end: proven up to the last matching checkpoint, the rest unproven (not tampered).
    Unfinished,
    /// Present but cannot be read, or not a regular file.
    Unreadable,
    /// The events say it was recorded, and it is gone.
    Missing,
    /// Shorter than session.end (or the last checkpoint) says.
    Truncated,
    /// A digest does not match.
    Altered,
}

/// The verdict on one recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every file matches session.end.
    Intact,
    /// No session.end: a proven prefix and an unproven tail; not tampered.
    Unfinished,
    /// The recorder reported it could not record (an `auditrail.recording` error) and no file is there.
    NotRecorded,
    /// A file is shorter than the events say.
    Truncated,
    /// A file's digest does not match.
    Altered,
    /// The events say it was recorded; a file is gone.
    Missing,
    /// A file cannot be read, or is not a regular file.
    Unreadable,
    /// Files in DIR that no event names.
    Unrecorded,
    /// Only events that do not verify name it: nothing proves it.
    Unverifiable,
    /// Verified events disagree on its final digests.
    Conflicting,
}

impl Verdict {
    /// Whether this verdict leaves the exit status 0.
    pub fn ok(self) -> bool {
        matches!(
            self,
            Verdict::Intact | Verdict::Unfinished | Verdict::NotRecorded
        )
    }
}

/// One file of a recording.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// `raw`, `cast` or `done`.
    pub file: &'static str,
    /// The verdict.
    pub verdict: FileVerdict,
    /// Its size, when it could be read.
    pub size: Option<u64>,
    /// The size session.end gives, when there is a verified one.
    pub expected_bytes: Option<u64>,
    /// The longest prefix a verified digest proves.
    pub proven_bytes: u64,
    /// Bytes after the proven prefix that no digest covers (a recording without session.end).
    pub unproven_bytes: u64,
    /// The offset of the last checkpoint whose prefix still matches, when a digest does not.
    pub last_matching_checkpoint: Option<u64>,
    /// What was found, in words.
    pub detail: String,
}

/// One recording.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingReport {
    /// The session id.
    pub sid: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict leaves the exit status 0 and no event naming it was tampered with (an altered or forged
    /// event about a recording fails it, whatever its files show: its verdict comes from the others).
    pub ok: bool,
    /// The .raw and .cast (and the .done when it disagrees with session.end).
    pub files: Vec<FileReport>,
    /// When the recorder cut the recording (`max_bytes`, disk floor): why.
    pub cut: Option<String>,
    /// Verified events that name this sid.
    pub trusted_events: u64,
    /// Of them, how many are after their stream's last good seal (verified by the chain, not yet signed).
    pub unsealed_events: u64,
    /// Events naming this sid that do not verify and were ignored, with where and why.
    pub untrusted_events: Vec<String>,
    /// Of them, how many are chained but altered or forged (the rest carry no chain field).
    pub tampered_events: u64,
    /// Other findings.
    pub notes: Vec<String>,
}

/// Every recording in DIR and every recording the events name.
#[derive(Clone, Debug, Serialize)]
pub struct RecordingsReport {
    /// No recording is truncated, altered, missing, unreadable, unrecorded, unverifiable or conflicting.
    pub ok: bool,
    /// The recordings directory.
    pub dir: String,
    /// By sid.
    pub recordings: Vec<RecordingReport>,
    /// Entries in DIR and events that were passed over, with why (the first few).
    pub problems: Vec<String>,
}

/// What a pass over one file found.
struct Hashed {
    size: u64,
    /// The SHA-256 of the prefix at each requested offset that is within the file, and at `size`.
    at: BTreeMap<u64, Hash>,
}

/// Reads the regular file `path` once (not following a link), giving the SHA-256 of the prefix at each of
/// `offsets` within it and of the whole file. Memory is constant: the state is cloned at each offset.
fn hash_file(path: &Path, offsets: &BTreeSet<u64>) -> Result<Hashed, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut h = Sha256::new();
    let mut at = BTreeMap::new();
    let mut pos: u64 = 0;
    let mut next = offsets.iter().copied().peekable();
    let mut buf = vec![0u8; READ_CHUNK];
    while next.peek() == Some(&0) {
        at.insert(0, h.clone().finalize().into());
        next.next();
    }
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read at byte {pos}: {e}")),
        };
        let mut chunk = &buf[..n];
        while let Some(&o) = next.peek() {
            if o > pos + chunk.len() as u64 {
                break;
            }
            let take = (o - pos) as usize;
            h.update(&chunk[..take]);
            chunk = &chunk[take..];
            pos = o;
            at.insert(o, h.clone().finalize().into());
            next.next();
        }
        h.update(chunk);
        pos += chunk.len() as u64;
    }
    at.insert(pos, h.finalize().into());
    Ok(Hashed { size: pos, at })
}

/// What is in DIR for one sid.
#[derive(Default)]
struct OnDisk {
    raw: Option<Entry>,
    cast: Option<Entry>,
    done: Option<Entry>,
}

enum Entry {
    File(PathBuf),
    /// There, but not something to open: why.
    Refused(String),
}

fn list_dir(dir: &Path, problems: &mut Vec<String>) -> anyhow::Result<BTreeMap<String, OnDisk>> {
    let mut out: BTreeMap<String, OnDisk> = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("{}: cannot list", dir.display()))?;
        let path = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            push(
                problems,
                format!(
                    "{}: the name is not UTF-8, so it is no recording: skipped",
                    path.display()
                ),
            );
            continue;
        };
        let ft = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.file_type(),
            Err(e) => {
                push(
                    problems,
                    format!("{}: cannot stat: {e}: skipped", path.display()),
                );
                continue;
            }
        };
        if ft.is_dir() {
            if name != "spool" && !name.starts_with('.') {
                push(
                    problems,
                    format!(
                        "{}: a directory, not examined (recordings are files directly in DIR)",
                        path.display()
                    ),
                );
            }
            continue;
        }
        let parsed = name
            .rsplit_once('.')
            .filter(|(sid, ext)| valid_sid(sid) && ["raw", "cast", "done"].contains(ext));
        let Some((sid, ext)) = parsed else {
            if !name.starts_with('.') {
                push(problems, format!(
                    "{}: not a recording file (<sid>.raw, .cast or .done, sid [A-Za-z0-9_-]{{1,128}}): skipped",
                    path.display()
                ));
            }
            continue;
        };
        let entry = if ft.is_symlink() {
            Entry::Refused(
                "a symbolic link: not followed (a recording is a regular file in DIR)".into(),
            )
        } else if !ft.is_file() {
            Entry::Refused("not a regular file".into())
        } else {
            Entry::File(path)
        };
        let slot = out.entry(sid.to_string()).or_default();
        match ext {
            "raw" => slot.raw = Some(entry),
            "cast" => slot.cast = Some(entry),
            _ => slot.done = Some(entry),
        }
    }
    Ok(out)
}

fn push(problems: &mut Vec<String>, p: String) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(p);
    }
}

/// What the chain report says about one stream, indexed for [`Chains::trust`].
struct StreamFacts {
    conflicts: BTreeSet<u64>,
    broken: BTreeSet<u64>,
    bad_seals: BTreeSet<u64>,
    /// Seqs of seal events that verify (hash, no conflict, seal check passed), sorted.
    good_seals: Vec<u64>,
}

/// The chain report, asked per event whether the event vouches.
pub(super) struct Chains {
    streams: HashMap<String, StreamFacts>,
}

impl Chains {
    pub(super) fn new(events: &Report, seals: &[SealSeen]) -> Chains {
        let mut streams: HashMap<String, StreamFacts> = events
            .streams
            .iter()
            .map(|s| {
                (
                    s.stream.clone(),
                    StreamFacts {
                        conflicts: s.conflicts.iter().copied().collect(),
                        broken: s.broken_links.iter().copied().collect(),
                        bad_seals: s.bad_seals.iter().map(|b| b.seq).collect(),
                        good_seals: Vec::new(),
                    },
                )
            })
            .collect();
        for seal in seals {
            if let Some(f) = streams.get_mut(&seal.stream) {
                if seal.valid
                    && !f.bad_seals.contains(&seal.seq)
                    && !f.conflicts.contains(&seal.seq)
                {
                    f.good_seals.push(seal.seq);
                }
            }
        }
        for f in streams.values_mut() {
            f.good_seals.sort_unstable();
            f.good_seals.dedup();
        }
        Chains { streams }
    }

    /// Whether the event at `seq` of `stream`, whose own hash recomputes, vouches: `Ok(true)` when a good seal
    /// signs it (the seal signs the hash of the event before it, and every link from this event up to that
    /// one holds, with no second copy of any of them), `Ok(false)` when it is in the unsealed tail and its
    /// links on both sides hold (intact as far as the chain shows), `Err(why)` otherwise.
    pub(super) fn trust(&self, stream: &str, seq: u64) -> Result<bool, String> {
        let Some(f) = self.streams.get(stream) else {
            return Err("its stream is not in the chain report".into());
        };
        if f.conflicts.contains(&seq) {
            return Err("a second copy of its seq differs (one of them is forged)".into());
        }
        let after = f.good_seals.partition_point(|&q| q <= seq);
        if let Some(&seal) = f.good_seals.get(after) {
            // Links seq+1 ..= seal-1 must hold and no copy in seq ..= seal-1 may conflict.
            if let Some(&b) = f.broken.range(seq + 1..seal).next() {
                return Err(if b == seq + 1 {
                    "the next event does not link to it (it was replaced)".into()
                } else {
                    format!("the link at seq {b}, between it and the seal at seq {seal}, is broken")
                });
            }
            if let Some(&c) = f.conflicts.range(seq..seal).next() {
                return Err(format!(
                    "seq {c}, between it and the seal at seq {seal}, has two different copies"
                ));
            }
            return Ok(true);
        }
        if f.broken.contains(&seq) {
            return Err("its link to the event before it is broken (moved or inserted), and no seal signs it".into());
        }
        if f.broken.contains(&(seq + 1)) {
            return Err("the next event does not link to it (it was replaced)".into());
        }
        Ok(false)
    }
}

/// Which events vouch: see the module documentation and [`Chains::trust`].
fn sort_claims(c: Collector, events: &Report) -> (BTreeMap<String, Claims>, Vec<String>) {
    let chains = Chains::new(events, &c.seals);
    let mut claims: BTreeMap<String, Claims> = BTreeMap::new();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    for n in c.events {
        let cl = claims.entry(n.sid.clone()).or_default();
        let Some((stream, seq, valid)) = n.chain else {
            cl.unchained += 1;
            cl.untrusted.push(format!(
                "{}: not chained (no \"auditrail.integrity\" field)",
                n.location
            ));
            continue;
        };
        if !valid {
            cl.untrusted.push(format!(
                "{}: stream {stream} seq {seq}: its hash does not match its content (altered)",
                n.location
            ));
            continue;
        }
        let sealed = match chains.trust(&stream, seq) {
            Ok(sealed) => sealed,
            Err(why) => {
                cl.untrusted
                    .push(format!("{}: stream {stream} seq {seq}: {why}", n.location));
                continue;
            }
        };
        // Identical copies (at-least-once delivery) count once.
        if !seen.insert((stream.clone(), seq)) {
            continue;
        }
        cl.trusted += 1;
        if !sealed {
            cl.unsealed += 1;
        }
        match n.said {
            Said::Start => cl.start = true,
            // Gathered only for a store (`stored`), never with the recorder's events.
            Said::Stored(_) => {}
            Said::End {
                raw,
                cast,
                truncated,
                reason,
            } => {
                if !cl.ends.iter().any(|e| e.0 == raw && e.1 == cast) {
                    cl.ends.push((raw, cast, truncated, reason));
                }
            }
            Said::Checkpoint { raw, cast } => {
                cl.raw_points.push(raw);
                cl.cast_points.push(cast);
            }
            Said::Cut {
                raw,
                cast,
                reason,
                action,
            } => {
                cl.raw_points.push(raw);
                cl.cast_points.push(cast);
                cl.cut = Some(format!(
                    "cut at {} bytes of output: {reason} (action: {action})",
                    raw.bytes
                ));
            }
            Said::Error { reason } => cl.errors.push(reason),
        }
    }
    let mut problems = c.problems;
    if c.problem_count > problems.len() as u64 {
        problems.push(format!("… ({} events passed over in all)", c.problem_count));
    }
    (claims, problems)
}

/// Judges one file against the final digest (`end`) and the checkpoints' prefix digests.
fn judge_file(
    file: &'static str,
    entry: Option<&Entry>,
    end: Option<Digest>,
    points: &[Digest],
) -> FileReport {
    let mut r = FileReport {
        file,
        verdict: FileVerdict::Missing,
        size: None,
        expected_bytes: end.map(|e| e.bytes),
        proven_bytes: 0,
        unproven_bytes: 0,
        last_matching_checkpoint: None,
        detail: String::new(),
    };
    let path = match entry {
        None => {
            r.detail = "gone: the events say it was recorded".into();
            return r;
        }
        Some(Entry::Refused(why)) => {
            r.verdict = FileVerdict::Unreadable;
            r.detail = why.clone();
            return r;
        }
        Some(Entry::File(p)) => p,
    };
    let mut offsets: BTreeSet<u64> = points.iter().map(|p| p.bytes).collect();
    if let Some(e) = end {
        offsets.insert(e.bytes);
    }
    let h = match hash_file(path, &offsets) {
        Ok(h) => h,
        Err(why) => {
            r.verdict = FileVerdict::Unreadable;
            r.detail = format!("{}: {why}", path.display());
            return r;
        }
    };
    r.size = Some(h.size);
    // Checkpoints by offset; the first one whose prefix differs, and the last one before it that matches.
    let mut sorted: Vec<Digest> = points.to_vec();
    sorted.sort_by_key(|p| p.bytes);
    sorted.dedup();
    let mut last_match: Option<u64> = None;
    let mut first_mismatch: Option<u64> = None;
    let mut longest_point: u64 = 0;
    for p in &sorted {
        longest_point = longest_point.max(p.bytes);
        match h.at.get(&p.bytes) {
            None => {} // beyond the end of the file
            Some(d) if *d == p.sha && first_mismatch.is_none() => last_match = Some(p.bytes),
            Some(d) if *d == p.sha => {}
            Some(_) => {
                first_mismatch.get_or_insert(p.bytes);
            }
        }
    }
    let proven = last_match.unwrap_or(0);
    r.proven_bytes = proven;
    let after = |what: &str| {
        match last_match {
        Some(o) => format!("{what}; the prefix to the checkpoint at {o} bytes still matches (the change is after it)"),
        None => format!("{what}; no checkpoint's prefix matches (the change is within the first checkpoint, or there is none)"),
    }
    };
    if let Some(e) = end {
        let end_ok = h.at.get(&e.bytes) == Some(&e.sha);
        if h.size < e.bytes {
            if let Some(m) = first_mismatch {
                r.verdict = FileVerdict::Altered;
                r.last_matching_checkpoint = last_match;
                r.detail = after(&format!(
                    "{} bytes where session.end says {}, and the prefix to the checkpoint at {m} bytes differs",
                    h.size, e.bytes
                ));
            } else {
                r.verdict = FileVerdict::Truncated;
                r.detail = format!(
                    "{} bytes where session.end says {}; the longest prefix a checkpoint proves: {proven} bytes",
                    h.size, e.bytes
                );
            }
        } else if end_ok && h.size == e.bytes && first_mismatch.is_none() {
            r.verdict = FileVerdict::Intact;
            r.proven_bytes = e.bytes;
            r.detail = format!("{} bytes, SHA-256 as session.end says", e.bytes);
        } else if end_ok && first_mismatch.is_none() {
            r.verdict = FileVerdict::Altered;
            r.proven_bytes = e.bytes;
            r.detail = format!(
                "{} bytes appended after the {} that session.end proves",
                h.size - e.bytes,
                e.bytes
            );
        } else {
            r.verdict = FileVerdict::Altered;
            r.last_matching_checkpoint = last_match;
            r.detail = after(&format!(
                "{} bytes (session.end says {}) and its SHA-256 differs from session.end's",
                h.size, e.bytes
            ));
        }
        return r;
    }
    if let Some(m) = first_mismatch {
        r.verdict = FileVerdict::Altered;
        r.last_matching_checkpoint = last_match;
        r.detail = after(&format!(
            "no session.end; the prefix to the checkpoint at {m} bytes differs"
        ));
    } else if h.size < longest_point {
        r.verdict = FileVerdict::Truncated;
        r.detail = format!(
            "no session.end; {} bytes, shorter than the last checkpoint's {longest_point}; the longest prefix a checkpoint proves: {proven} bytes",
            h.size
        );
    } else {
        r.verdict = FileVerdict::Unfinished;
        r.unproven_bytes = h.size - proven;
        r.detail = if sorted.is_empty() {
            format!(
                "no session.end and no checkpoint: all {} bytes unproven",
                h.size
            )
        } else {
            format!(
                "no session.end: {proven} bytes proven by the last checkpoint, {} bytes after it unproven (not tampered: the session did not end cleanly)",
                h.size - proven
            )
        };
    }
    r
}

/// Reads a `.done` marker (small: at most 64 KiB read) and compares it with session.end's digests.
fn check_done(entry: &Entry, raw: Digest, cast: Digest) -> Result<(), String> {
    let path = match entry {
        Entry::Refused(why) => return Err(why.clone()),
        Entry::File(p) => p,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    if !file.metadata().map(|m| m.is_file()).unwrap_or(false) {
        return Err("not a regular file".into());
    }
    let mut text = Vec::new();
    file.take(64 << 10)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    let w: Wire = serde_json::from_slice(trim(&text))
        .map_err(|e| format!("not the one JSON line expected: {e}"))?;
    let r = digest_of(&w.raw_bytes, &w.raw_sha256, "raw")?;
    let c = digest_of(&w.cast_bytes, &w.cast_sha256, "cast")?;
    if r != raw || c != cast {
        return Err("its sizes or digests differ from session.end's".into());
    }
    Ok(())
}

fn judge(sid: &str, claims: Option<Claims>, disk: Option<OnDisk>) -> RecordingReport {
    let mut r = judge_files(sid, claims, disk);
    r.ok = r.verdict.ok() && r.tampered_events == 0;
    r
}

fn judge_files(sid: &str, claims: Option<Claims>, disk: Option<OnDisk>) -> RecordingReport {
    let disk = disk.unwrap_or_default();
    let mut r = RecordingReport {
        sid: sid.to_string(),
        verdict: Verdict::Intact,
        ok: false,
        files: Vec::new(),
        cut: None,
        trusted_events: 0,
        unsealed_events: 0,
        untrusted_events: Vec::new(),
        tampered_events: 0,
        notes: Vec::new(),
    };
    let Some(c) = claims else {
        r.verdict = Verdict::Unrecorded;
        let present: Vec<&str> = [
            ("raw", &disk.raw),
            ("cast", &disk.cast),
            ("done", &disk.done),
        ]
        .into_iter()
        .filter(|(_, e)| e.is_some())
        .map(|(n, _)| n)
        .collect();
        r.notes
            .push(format!("no event names it (files: {})", present.join(", ")));
        return r;
    };
    r.trusted_events = c.trusted;
    r.unsealed_events = c.unsealed;
    r.untrusted_events = c.untrusted;
    r.tampered_events = r.untrusted_events.len() as u64 - c.unchained;
    if c.trusted == 0 {
        r.verdict = Verdict::Unverifiable;
        r.notes.push(format!(
            "{} events name it and none verifies ({} not chained): nothing proves the recording",
            r.untrusted_events.len(),
            c.unchained
        ));
        return r;
    }
    if c.ends.len() > 1 {
        r.verdict = Verdict::Conflicting;
        r.notes.push(format!(
            "{} verified session.end events give different digests",
            c.ends.len()
        ));
        return r;
    }
    let end = c.ends.first().cloned();
    if !r.untrusted_events.is_empty() {
        r.notes.push(format!(
            "{} events naming it do not verify and were ignored",
            r.untrusted_events.len()
        ));
    }
    if end.is_none()
        && c.raw_points.is_empty()
        && !c.errors.is_empty()
        && disk.raw.is_none()
        && disk.cast.is_none()
    {
        r.verdict = Verdict::NotRecorded;
        r.notes.push(format!(
            "the recorder said it could not record: {}",
            c.errors.join("; ")
        ));
        return r;
    }
    for e in &c.errors {
        r.notes.push(format!("the recorder reported: {e}"));
    }
    if !c.start && end.is_none() && c.raw_points.is_empty() {
        r.notes.push("no verified session.start".into());
    }
    let (raw_end, cast_end) = match &end {
        Some((raw, cast, truncated, reason)) => {
            if *truncated {
                r.cut = Some(match (&c.cut, reason) {
                    (Some(cut), _) => cut.clone(),
                    (None, Some(reason)) => format!("cut: {reason}"),
                    (None, None) => "cut (session.end says truncated, without a reason)".into(),
                });
            } else if let Some(cut) = &c.cut {
                r.cut = Some(cut.clone());
            }
            (Some(*raw), Some(*cast))
        }
        None => {
            r.cut = c.cut.clone();
            (None, None)
        }
    };
    r.files
        .push(judge_file("raw", disk.raw.as_ref(), raw_end, &c.raw_points));
    r.files.push(judge_file(
        "cast",
        disk.cast.as_ref(),
        cast_end,
        &c.cast_points,
    ));
    match (&end, &disk.done) {
        (Some((raw, cast, ..)), Some(done)) => {
            if let Err(why) = check_done(done, *raw, *cast) {
                r.files.push(FileReport {
                    file: "done",
                    verdict: FileVerdict::Altered,
                    size: None,
                    expected_bytes: None,
                    proven_bytes: 0,
                    unproven_bytes: 0,
                    last_matching_checkpoint: None,
                    detail: format!("the .done marker: {why}"),
                });
            }
        }
        (Some(_), None) => r
            .notes
            .push("no .done marker although session.end is there".into()),
        (None, Some(_)) => r
            .notes
            .push("a .done marker but no verified session.end".into()),
        (None, None) => {}
    }
    let worst = r
        .files
        .iter()
        .map(|f| f.verdict)
        .max()
        .unwrap_or(FileVerdict::Intact);
    r.verdict = match worst {
        FileVerdict::Intact => Verdict::Intact,
        FileVerdict::Unfinished => Verdict::Unfinished,
        FileVerdict::Unreadable => Verdict::Unreadable,
        FileVerdict::Missing => Verdict::Missing,
        FileVerdict::Truncated => Verdict::Truncated,
        FileVerdict::Altered => Verdict::Altered,
    };
    r
}

/// Checks DIR against what `collector` gathered, trusting only the events `events` (the chain report) verifies.
pub fn check(
    dir: &Path,
    collector: Collector,
    events: &Report,
) -> anyhow::Result<RecordingsReport> {
    anyhow::ensure!(
        !collector.too_many,
        "more than {MAX_EVENTS} recording events in the inputs: verify fewer inputs at once"
    );
    let mut problems = Vec::new();
    let disk = list_dir(dir, &mut problems)?;
    let (claims, event_problems) = sort_claims(collector, events);
    problems.extend(event_problems);
    let sids: BTreeSet<&String> = disk.keys().chain(claims.keys()).collect();
    let sids: Vec<String> = sids.into_iter().cloned().collect();
    let mut disk = disk;
    let mut claims = claims;
    let recordings: Vec<RecordingReport> = sids
        .iter()
        .map(|sid| judge(sid, claims.remove(sid), disk.remove(sid)))
        .collect();
    Ok(RecordingsReport {
        ok: recordings.iter().all(|r| r.ok),
        dir: dir.display().to_string(),
        recordings,
        problems,
    })
}

fn file_word(v: FileVerdict) -> &'static str {
    match v {
        FileVerdict::Intact => "intact",
        FileVerdict::Unfinished => "unfinished",
        FileVerdict::Unreadable => "UNREADABLE",
        FileVerdict::Missing => "MISSING",
        FileVerdict::Truncated => "TRUNCATED",
        FileVerdict::Altered => "ALTERED",
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Intact => "intact",
        Verdict::Unfinished => "unfinished (proven prefix, unproven tail)",
        Verdict::NotRecorded => "not recorded (the recorder said why)",
        Verdict::Truncated => "TRUNCATED",
        Verdict::Altered => "ALTERED",
        Verdict::Missing => "MISSING",
        Verdict::Unreadable => "UNREADABLE",
        Verdict::Unrecorded => "UNRECORDED",
        Verdict::Unverifiable => "UNVERIFIABLE",
        Verdict::Conflicting => "CONFLICTING",
    }
}

impl fmt::Display for RecordingsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "recordings in {}:", self.dir)?;
        for r in &self.recordings {
            write!(f, "recording {}: {}", r.sid, verdict_word(r.verdict))?;
            if let Some(cut) = &r.cut {
                write!(f, " ({cut})")?;
            }
            if r.tampered_events > 0 {
                write!(
                    f,
                    "; {} events about it were TAMPERED with (ignored)",
                    r.tampered_events
                )?;
            }
            writeln!(f)?;
            for file in &r.files {
                writeln!(
                    f,
                    "  {}: {}: {}",
                    file.file,
                    file_word(file.verdict),
                    file.detail
                )?;
            }
            if r.unsealed_events > 0 {
                writeln!(
                    f,
                    "  {} of its {} verified events are not sealed yet",
                    r.unsealed_events, r.trusted_events
                )?;
            }
            for n in &r.notes {
                writeln!(f, "  {n}")?;
            }
            for u in r.untrusted_events.iter().take(20) {
                writeln!(f, "  ignored: {u}")?;
            }
        }
        if self.recordings.is_empty() {
            writeln!(f, "no recordings found and no event names one")?;
        }
        for p in &self.problems {
            writeln!(f, "  note: {p}")?;
        }
        let bad = self.recordings.iter().filter(|r| !r.ok).count();
        if self.ok {
            writeln!(
                f,
                "recordings result: intact ({} recordings)",
                self.recordings.len()
            )
        } else {
            writeln!(
                f,
                "recordings result: TAMPERED or UNPROVEN ({bad} of {} recordings)",
                self.recordings.len()
            )
        }
    }
}

/// Runs `auditrail verify --recordings DIR …` and prints both reports; returns the exit status.
pub fn main(args: VerifyArgs) -> ExitCode {
    let Some(dir) = args.recordings.clone() else {
        return ExitCode::from(2);
    };
    if super::stored::is_store_url(&dir) {
        return super::stored::main(args);
    }
    let outcome = (|| -> anyhow::Result<(Report, RecordingsReport)> {
        super::print::ndjson_inputs_only(&args)?;
        let meta = std::fs::metadata(&dir)
            .with_context(|| format!("{}: cannot read the recordings directory", dir.display()))?;
        anyhow::ensure!(meta.is_dir(), "{}: not a directory", dir.display());
        let mut collector = Collector::default();
        let events = super::run_tapped(&args, Some(&mut collector))?;
        let recs = check(&dir, collector, &events)?;
        Ok((events, recs))
    })();
    super::print::finish(args.json, "recordings", outcome, |r| r.ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditrail_core::integrity::verify::{BadSeal, StreamReport};

    fn sha(b: &[u8]) -> Hash {
        Sha256::digest(b).into()
    }

    fn d(b: &[u8]) -> Digest {
        Digest {
            bytes: b.len() as u64,
            sha: sha(b),
        }
    }

    #[test]
    fn sids_are_checked_before_they_name_files() {
        assert!(valid_sid("0192f1c4-7e3a-7000-8000-0123456789ab"));
        assert!(valid_sid(&"a".repeat(128)));
        for bad in ["", "../x", "a/b", "a.b", "é", " a", &"a".repeat(129)] {
            assert!(!valid_sid(bad), "{bad:?}");
        }
    }

    #[test]
    fn one_pass_gives_every_prefix_digest_across_read_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.raw");
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 777))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&p, &data).unwrap();
        let offsets: BTreeSet<u64> = [
            0,
            1,
            READ_CHUNK as u64 - 1,
            READ_CHUNK as u64,
            READ_CHUNK as u64 + 1,
            2 * READ_CHUNK as u64 + 5,
            data.len() as u64,
            data.len() as u64 + 10,
        ]
        .into();
        let h = hash_file(&p, &offsets).unwrap();
        assert_eq!(h.size, data.len() as u64);
        for o in offsets {
            if o <= data.len() as u64 {
                assert_eq!(h.at[&o], sha(&data[..o as usize]), "offset {o}");
            } else {
                assert!(!h.at.contains_key(&o));
            }
        }
    }

    #[test]
    fn links_fifos_and_unreadable_files_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"abc").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("s-1.raw")).unwrap();
        let fifo = dir.path().join("s-2.raw");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opened directly (a race with a swap after the listing): O_NOFOLLOW, and no blocking on the fifo.
        assert!(hash_file(&dir.path().join("s-1.raw"), &BTreeSet::new()).is_err());
        assert_eq!(
            hash_file(&fifo, &BTreeSet::new()).err().unwrap(),
            "not a regular file"
        );
        let mut problems = Vec::new();
        let listed = list_dir(dir.path(), &mut problems).unwrap();
        assert!(
            matches!(listed["s-1"].raw, Some(Entry::Refused(ref w)) if w.contains("symbolic link"))
        );
        assert!(
            matches!(listed["s-2"].raw, Some(Entry::Refused(ref w)) if w == "not a regular file")
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("/t: not a recording file")),
            "{problems:?}"
        );
    }

    fn file_verdict(content: &[u8], end: Option<&[u8]>, points: &[&[u8]]) -> FileReport {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.raw");
        std::fs::write(&p, content).unwrap();
        let points: Vec<Digest> = points.iter().map(|b| d(b)).collect();
        judge_file("raw", Some(&Entry::File(p)), end.map(d), &points)
    }

    #[test]
    fn file_verdicts() {
        let full: &[u8] = b"0123456789abcdefghij";
        let cps: [&[u8]; 2] = [&full[..5], &full[..12]];
        let r = file_verdict(full, Some(full), &cps);
        assert_eq!((r.verdict, r.proven_bytes), (FileVerdict::Intact, 20));
        // Shorter than session.end: truncated, proven to the last checkpoint within it.
        let r = file_verdict(&full[..15], Some(full), &cps);
        assert_eq!((r.verdict, r.proven_bytes), (FileVerdict::Truncated, 12));
        // Same length, one byte changed after the second checkpoint.
        let mut x = full.to_vec();
        x[14] ^= 1;
        let r = file_verdict(&x, Some(full), &cps);
        assert_eq!(r.verdict, FileVerdict::Altered);
        assert_eq!(r.last_matching_checkpoint, Some(12));
        // ... before the first one: no checkpoint matches.
        let mut x = full.to_vec();
        x[1] ^= 1;
        let r = file_verdict(&x, Some(full), &cps);
        assert_eq!(
            (r.verdict, r.last_matching_checkpoint),
            (FileVerdict::Altered, None)
        );
        // Bytes appended after the end.
        let r = file_verdict(b"0123456789abcdefghijXX", Some(full), &cps);
        assert_eq!(r.verdict, FileVerdict::Altered);
        assert!(r.detail.contains("2 bytes appended"), "{}", r.detail);
        // No session.end: proven prefix and unproven tail; shorter than the last checkpoint is tampering.
        let r = file_verdict(full, None, &cps);
        assert_eq!(
            (r.verdict, r.proven_bytes, r.unproven_bytes),
            (FileVerdict::Unfinished, 12, 8)
        );
        let r = file_verdict(&full[..10], None, &cps);
        assert_eq!((r.verdict, r.proven_bytes), (FileVerdict::Truncated, 5));
        let r = file_verdict(&x, None, &cps);
        assert_eq!(r.verdict, FileVerdict::Altered);
        let r = file_verdict(full, None, &[]);
        assert_eq!(
            (r.verdict, r.proven_bytes, r.unproven_bytes),
            (FileVerdict::Unfinished, 0, 20)
        );
        let r = judge_file("raw", None, Some(d(full)), &[]);
        assert_eq!(r.verdict, FileVerdict::Missing);
    }

    fn chains(broken: &[u64], conflicts: &[u64], seals: &[u64], bad: &[u64]) -> Chains {
        let report = Report {
            ok: false,
            streams: vec![StreamReport {
                stream: "n/s".into(),
                broken_links: broken.to_vec(),
                conflicts: conflicts.to_vec(),
                bad_seals: bad
                    .iter()
                    .map(|&seq| BadSeal {
                        seq,
                        reason: "x".into(),
                    })
                    .collect(),
                ..StreamReport::default()
            }],
            unchained: 0,
            unreadable: 0,
            problems: Vec::new(),
        };
        let seals: Vec<SealSeen> = seals
            .iter()
            .map(|&seq| SealSeen {
                stream: "n/s".into(),
                seq,
                valid: true,
            })
            .collect();
        Chains::new(&report, &seals)
    }

    #[test]
    fn what_a_seal_signs_vouches_and_a_break_before_the_seal_does_not() {
        // Seals at 4 and 8; event 6 was replaced and re-hashed, so 7's link to it is broken, and seal 8 is bad.
        let c = chains(&[7], &[], &[4, 8, 12], &[8]);
        assert_eq!(c.trust("n/s", 2), Ok(true));
        assert!(c.trust("n/s", 5).unwrap_err().contains("seq 7"));
        assert!(c
            .trust("n/s", 6)
            .unwrap_err()
            .contains("does not link to it"));
        // 7 itself is signed by seal 12 through 8..11, whose links hold.
        assert_eq!(c.trust("n/s", 7), Ok(true));
        // After the last seal: the unsealed tail, trusted while its links hold.
        assert_eq!(c.trust("n/s", 14), Ok(false));
        let c = chains(&[15], &[10], &[4], &[]);
        assert!(c.trust("n/s", 14).is_err());
        assert!(c.trust("n/s", 15).is_err());
        assert!(c.trust("n/s", 10).unwrap_err().contains("second copy"));
        assert!(c.trust("x/y", 1).is_err());
    }

    #[test]
    fn only_recording_events_are_kept_and_bad_ones_are_reported() {
        let mut c = Collector::default();
        let h = "ab".repeat(32);
        let text = format!(
            concat!(
                "{{\"event\":\"user.login\",\"sid\":\"a\"}}\n",
                "{{\"event\":\"session.start\",\"sid\":\"s-1\",\"uid\":\"u\"}}\n",
                "{{\"event\":\"session.end\",\"sid\":\"s-1\",\"raw_bytes\":3,\"raw_sha256\":\"{h}\",\"cast_bytes\":4,\"cast_sha256\":\"{h}\"}}\n",
                "{{\"event\":\"session.end\",\"sid\":\"s-2\",\"raw_bytes\":-3,\"raw_sha256\":\"{h}\",\"cast_bytes\":4,\"cast_sha256\":\"{h}\"}}\n",
                "{{\"event\":\"auditrail.recording\",\"sid\":\"s-1\",\"kind\":\"checkpoint\",\"raw_bytes\":3,\"raw_sha256\":\"zz\",\"cast_bytes\":4,\"cast_sha256\":\"{h}\"}}\n",
                "{{\"event\":\"auditrail.recording\",\"sid\":\"s/1\",\"kind\":\"checkpoint\"}}\n",
                "not json \"session.end\"\n",
            ),
            h = h
        );
        c.scan(text.as_bytes(), "in", 1);
        assert_eq!(c.events.len(), 2);
        assert!(c.events.iter().all(|e| e.chain.is_none() && e.sid == "s-1"));
        assert_eq!(c.problems.len(), 3, "{:?}", c.problems);
        assert!(c.problems[0].starts_with("in:4: session.end for sid s-2: `raw_bytes`"));
        assert!(c.problems[1].contains("`raw_sha256` is not a SHA-256"));
        assert!(c.problems[2].contains("not a valid sid"));
    }
}
