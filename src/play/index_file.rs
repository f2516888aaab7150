//! The seek index kept on disk beside its recording, `<sid>.index`, so that only the first `play` of a
//! recording pays for running it through the terminal emulator and every later one seeks at once.
//!
//! The file is as untrusted as the `.cast` it indexes, and may be stale (the recording grew, was replaced or
//! copied) or damaged (a torn write, a flipped bit). So it is never used blindly:
//! - it is at most [`MAX_FILE`] bytes, read in one bounded read, and ends with the SHA-256 of everything
//!   before it; a wrong checksum, magic or version is "damaged" and the index is rebuilt;
//! - every count and length is bounded before anything is allocated for it, and the keyframes must be in
//!   file order, on line starts, inside the recording, with sizes a header may have;
//! - it names the recording it was built from: the `.cast`'s length and mtime when the index was written,
//!   and a fingerprint — SHA-256 of the `.cast`'s first and last 64 KiB of the indexed prefix and of 4 KiB
//!   at every keyframe — so a different or rewritten file is seen as stale at the cost of reading a few
//!   hundred KiB, not the whole recording.
//!
//! Layout (little-endian): magic `AUDITRAILSEEKIDX`, version `u32`, the `.cast`'s length `u64`, mtime seconds
//! `i64` and nanoseconds `u32`, the indexed prefix's length `u64`, complete `u8`, fingerprint `[u8; 32]`, the
//! time covered `f64`, the problem count `u64`, problems (`u32` count, then line `u64`, length `u32`, UTF-8),
//! keyframes (`u32` count, then offset `u64`, line `u64`, time `f64`, problems before it `u64`, cols `u16`,
//! rows `u16`, length `u32`, the screen's bytes), the SHA-256 of all of it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cast::Position;
use super::index::Keyframe;

/// The file's first bytes.
pub const MAGIC: &[u8; 16] = b"AUDITRAILSEEKIDX";
/// The layout's version; another one is rebuilt.
pub const VERSION: u32 = 1;
/// The largest index file read. A 1-hour, 245 MB recording's index is about 300 KiB; a screen of the
/// largest size a header may give (1000×500) with every cell styled is a few MiB.
pub const MAX_FILE: u64 = 64 << 20;
/// The most keyframes (one per 30 s is 1.2 million years of session; one per 4 MiB is 4 TiB of `.cast`).
pub const MAX_KEYFRAMES: usize = 1 << 20;
/// The largest keyframe screen.
pub const MAX_SCREEN: usize = 16 << 20;
/// The longest problem text kept.
pub const MAX_WHAT: usize = 4096;
/// How much of the `.cast` the fingerprint hashes at its head and at the end of the indexed prefix.
const EDGE: u64 = 64 << 10;
/// How much it hashes at each keyframe.
const AT_KEYFRAME: u64 = 4 << 10;

/// An index as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    /// The `.cast`'s length when the index was written.
    pub cast_len: u64,
    /// Its mtime then (seconds, nanoseconds).
    pub cast_mtime: (i64, u32),
    /// How much of the `.cast` the index covers: the whole file when `complete`, else up to the last
    /// keyframe (what follows it is read again when the index is continued).
    pub prefix: u64,
    /// The whole file was read.
    pub complete: bool,
    /// The fingerprint of the `.cast`'s first `prefix` bytes.
    pub fingerprint: [u8; 32],
    /// Recorded time covered.
    pub covered: f64,
    /// Problems found in the prefix, in all.
    pub problem_count: u64,
    /// The first of them: line and what.
    pub problems: Vec<(u64, String)>,
    /// The keyframes, in file order.
    pub keyframes: Vec<Keyframe>,
}

/// Why a stored index is not used.
#[derive(Debug, thiserror::Error)]
pub enum IndexFileError {
    /// It cannot be read.
    #[error("cannot read the seek index {path}: {source}")]
    Read {
        /// The index file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It cannot be written (the seeks of the next play rebuild it again).
    #[error("cannot keep the seek index at {path}: {source} (the next play builds it again; run as the recording's owner to keep it)")]
    Write {
        /// The index file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It is not a valid index file.
    #[error("the seek index {path} is damaged: {what}")]
    Damaged {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// It is valid but of another recording, or of this one before it changed.
    #[error("the seek index {path} is stale: {why}")]
    Stale {
        /// The index file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The index's extension beside its recording's `<sid>.cast` (the uploader's retention moves it along).
pub const EXTENSION: &str = "index";

/// `<dir>/<sid>.index` for `<dir>/<sid>.cast` (any other name: the name with `.index` appended).
pub fn path_for(cast: &Path) -> PathBuf {
    let name = cast
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".cast").unwrap_or(&name);
    cast.with_file_name(format!("{stem}.{EXTENSION}"))
}

/// The fingerprint of `cast`'s first `prefix` bytes, given the keyframes' offsets.
pub fn fingerprint(
    cast: &File,
    prefix: u64,
    offsets: impl Iterator<Item = u64>,
) -> std::io::Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(prefix.to_le_bytes());
    let mut buf = vec![0u8; EDGE as usize];
    let mut window = |h: &mut Sha256, from: u64, len: u64| -> std::io::Result<()> {
        let from = from.min(prefix);
        let len = len.min(prefix - from) as usize;
        let mut done = 0;
        while done < len {
            match cast.read_at(&mut buf[done..len], from + done as u64) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the recording is shorter than its index",
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        h.update(from.to_le_bytes());
        h.update(&buf[..len]);
        Ok(())
    };
    window(&mut h, 0, EDGE)?;
    for o in offsets {
        window(&mut h, o, AT_KEYFRAME)?;
    }
    window(&mut h, prefix.saturating_sub(EDGE), EDGE)?;
    Ok(h.finalize().into())
}

/// The file's bytes.
pub fn encode(s: &Saved) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        256 + s
            .keyframes
            .iter()
            .map(|k| 48 + k.screen.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&s.cast_len.to_le_bytes());
    out.extend_from_slice(&s.cast_mtime.0.to_le_bytes());
    out.extend_from_slice(&s.cast_mtime.1.to_le_bytes());
    out.extend_from_slice(&s.prefix.to_le_bytes());
    out.push(u8::from(s.complete));
    out.extend_from_slice(&s.fingerprint);
    out.extend_from_slice(&s.covered.to_le_bytes());
    out.extend_from_slice(&s.problem_count.to_le_bytes());
    out.extend_from_slice(&(s.problems.len() as u32).to_le_bytes());
    for (line, what) in &s.problems {
        let what = auditrail_sinks::name_rules::cut(what, MAX_WHAT);
        out.extend_from_slice(&line.to_le_bytes());
        out.extend_from_slice(&(what.len() as u32).to_le_bytes());
        out.extend_from_slice(what.as_bytes());
    }
    out.extend_from_slice(&(s.keyframes.len() as u32).to_le_bytes());
    for k in &s.keyframes {
        out.extend_from_slice(&k.at.offset.to_le_bytes());
        out.extend_from_slice(&k.at.line.to_le_bytes());
        out.extend_from_slice(&k.at.time.to_le_bytes());
        out.extend_from_slice(&k.problems_before.to_le_bytes());
        out.extend_from_slice(&k.cols.to_le_bytes());
        out.extend_from_slice(&k.rows.to_le_bytes());
        out.extend_from_slice(&(k.screen.len() as u32).to_le_bytes());
        out.extend_from_slice(&k.screen);
    }
    seal(&mut out);
    out
}

/// Appends the checksum an index file ends with to `body` (what [`encode`] does last; the fuzz target uses
/// it to reach the checks behind the checksum).
pub fn seal(body: &mut Vec<u8>) {
    let sum = Sha256::digest(&body[..]);
    body.extend_from_slice(&sum);
}

/// Reads fields off a byte slice, failing (never panicking) when it runs out.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("it ends in the middle of {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn f64(&mut self, what: &str) -> Result<f64, String> {
        let v = f64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes"));
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{what} is {v}, not a time"));
        }
        Ok(v)
    }
}

/// The bytes of a keyframe with an empty screen: offset, line, time, problems before (8 each), cols, rows (2
/// each), the screen's length (4).
const KEYFRAME_FIXED: usize = 8 * 4 + 2 * 2 + 4;

/// The largest terminal a keyframe may have (what a `.cast` header may give).
const MAX_COLS: u16 = 1000;
const MAX_ROWS: u16 = 500;

/// Parses and checks an index file's bytes; the error says what is wrong. Never panics, and allocates only
/// what the bytes hold.
pub fn decode(bytes: &[u8]) -> Result<Saved, String> {
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!(
            "{} bytes, more than the {MAX_FILE} an index may have",
            bytes.len()
        ));
    }
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("it does not start with the seek index magic".into());
    }
    let version = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!(
            "layout version {version}, this player reads {VERSION}"
        ));
    }
    if bytes.len() < 20 + 32 {
        return Err("it is too short to hold a checksum".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("its checksum does not match (a torn or altered file)".into());
    }
    let mut f = Fields { rest: &body[20..] };
    let cast_len = f.u64("the recording's length")?;
    let secs = i64::from_le_bytes(
        f.take(8, "the recording's mtime")?
            .try_into()
            .expect("8 bytes"),
    );
    let nanos = f.u32("the recording's mtime")?;
    let prefix = f.u64("the indexed length")?;
    let complete = match f.u8("the complete flag")? {
        0 => false,
        1 => true,
        n => return Err(format!("complete flag {n} is neither 0 nor 1")),
    };
    if prefix > cast_len || (complete && prefix != cast_len) {
        return Err(format!(
            "indexed length {prefix} does not fit the recording's {cast_len} bytes"
        ));
    }
    let fingerprint: [u8; 32] = f.take(32, "the fingerprint")?.try_into().expect("32 bytes");
    let covered = f.f64("the time covered")?;
    let problem_count = f.u64("the problem count")?;
    let n = f.u32("the number of problems")? as usize;
    if n > super::index::MAX_PROBLEMS || n as u64 > problem_count {
        return Err(format!(
            "{n} problems listed (at most {} and the count, {problem_count})",
            super::index::MAX_PROBLEMS
        ));
    }
    let mut problems = Vec::with_capacity(n);
    for i in 0..n {
        let line = f.u64("a problem's line")?;
        let len = f.u32("a problem's length")? as usize;
        if len > MAX_WHAT {
            return Err(format!(
                "problem {i} is {len} bytes long (at most {MAX_WHAT})"
            ));
        }
        let what = std::str::from_utf8(f.take(len, "a problem")?)
            .map_err(|_| format!("problem {i} is not UTF-8"))?;
        problems.push((line, what.to_string()));
    }
    let n = f.u32("the number of keyframes")? as usize;
    if n == 0 || n > MAX_KEYFRAMES {
        return Err(format!("{n} keyframes (1 to {MAX_KEYFRAMES})"));
    }
    // Each keyframe takes at least KEYFRAME_FIXED bytes: a count beyond what the bytes can hold is a lie.
    if n > f.rest.len() / KEYFRAME_FIXED {
        return Err(format!(
            "{n} keyframes do not fit in {} bytes",
            f.rest.len()
        ));
    }
    let mut keyframes: Vec<Keyframe> = Vec::with_capacity(n);
    for i in 0..n {
        let at = Position {
            offset: f.u64("a keyframe's offset")?,
            line: f.u64("a keyframe's line")?,
            time: f.f64("a keyframe's time")?,
        };
        let problems_before = f.u64("a keyframe's problem count")?;
        let cols = f.u16("a keyframe's columns")?;
        let rows = f.u16("a keyframe's rows")?;
        let len = f.u32("a keyframe's length")? as usize;
        if !(1..=MAX_COLS).contains(&cols) || !(1..=MAX_ROWS).contains(&rows) {
            return Err(format!(
                "keyframe {i} is {cols}x{rows} (at most {MAX_COLS}x{MAX_ROWS})"
            ));
        }
        if len > MAX_SCREEN {
            return Err(format!(
                "keyframe {i} is {len} bytes (at most {MAX_SCREEN})"
            ));
        }
        let screen = f.take(len, "a keyframe's screen")?.to_vec();
        if at.line < 2 || at.offset > prefix || problems_before > problem_count {
            return Err(format!(
                "keyframe {i} (offset {}, line {}) is outside the indexed {prefix} bytes",
                at.offset, at.line
            ));
        }
        if let Some(p) = keyframes.last() {
            if at.offset < p.at.offset
                || at.line < p.at.line
                || at.time < p.at.time
                || problems_before < p.problems_before
            {
                return Err(format!("keyframe {i} is not after keyframe {}", i - 1));
            }
        }
        if at.time > covered {
            return Err(format!(
                "keyframe {i} is at {} s, after the {covered} s covered",
                at.time
            ));
        }
        keyframes.push(Keyframe {
            at,
            cols,
            rows,
            problems_before,
            screen,
        });
    }
    if !f.rest.is_empty() {
        return Err(format!("{} bytes follow the last keyframe", f.rest.len()));
    }
    Ok(Saved {
        cast_len,
        cast_mtime: (secs, nanos),
        prefix,
        complete,
        fingerprint,
        covered,
        problem_count,
        problems,
        keyframes,
    })
}

/// How a stored index fits the recording as it is now.
#[derive(Debug)]
pub enum Fit {
    /// The whole recording, unchanged: seeks need nothing more.
    Whole(Saved),
    /// A prefix of it (the index was stopped early, or the recording grew since): continue from the last
    /// keyframe.
    Prefix(Saved),
}

/// Loads the index of `cast`: `Ok(None)` when there is none; an error (stale or damaged, to rebuild) when
/// it cannot be used.
pub fn load(cast: &Path) -> Result<Option<Fit>, IndexFileError> {
    let path = path_for(cast);
    let read = |source| IndexFileError::Read {
        path: path.clone(),
        source,
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    let damaged = |what: String| IndexFileError::Damaged {
        path: path.clone(),
        what,
    };
    let meta = file.metadata().map_err(read)?;
    if !meta.is_file() {
        return Err(damaged("it is not a regular file".into()));
    }
    if meta.len() > MAX_FILE {
        return Err(damaged(format!(
            "{} bytes, more than the {MAX_FILE} an index may have",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    let saved = decode(&bytes).map_err(damaged)?;
    drop(bytes);
    let stale = |why: String| IndexFileError::Stale {
        path: path.clone(),
        why,
    };
    let cast_file =
        File::open(cast).map_err(|e| stale(format!("cannot open {}: {e}", cast.display())))?;
    let cm = cast_file.metadata().map_err(read)?;
    if cm.len() < saved.prefix {
        return Err(stale(format!(
            "{} is {} bytes, shorter than the {} indexed",
            cast.display(),
            cm.len(),
            saved.prefix
        )));
    }
    let fp = fingerprint(
        &cast_file,
        saved.prefix,
        saved.keyframes.iter().map(|k| k.at.offset),
    )
    .map_err(|e| stale(format!("reading {}: {e}", cast.display())))?;
    if fp != saved.fingerprint {
        return Err(stale(format!(
            "the first {} bytes of {} are not those it was built from",
            saved.prefix,
            cast.display()
        )));
    }
    let unchanged =
        cm.len() == saved.cast_len && (cm.mtime(), cm.mtime_nsec() as u32) == saved.cast_mtime;
    Ok(Some(if saved.complete && unchanged {
        Fit::Whole(saved)
    } else {
        Fit::Prefix(saved)
    }))
}

/// Writes `saved` as the index of `cast`: a temporary file in the same directory, with the recording's
/// permission bits (never wider; at most `0644`'s read bits, never executable), synced, renamed over the old
/// index. Readers see the old index or the new one, never half of one.
pub fn save(cast: &Path, saved: &Saved) -> Result<(), IndexFileError> {
    let path = path_for(cast);
    let write = |source| IndexFileError::Write {
        path: path.clone(),
        source,
    };
    let mode = std::fs::metadata(cast).map_err(write)?.permissions().mode() & 0o644;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
    let bytes = encode(saved);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // The mode given at creation is narrowed by the umask; this sets exactly the recording's bits.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Saved {
        Saved {
            cast_len: 5000,
            cast_mtime: (1_700_000_000, 5),
            prefix: 5000,
            complete: true,
            fingerprint: [7; 32],
            covered: 99.5,
            problem_count: 3,
            problems: vec![(4, "not an event".into()), (9, "truncated é".into())],
            keyframes: vec![
                Keyframe {
                    at: Position {
                        offset: 40,
                        line: 2,
                        time: 0.0,
                    },
                    cols: 80,
                    rows: 24,
                    problems_before: 0,
                    screen: Vec::new(),
                },
                Keyframe {
                    at: Position {
                        offset: 2000,
                        line: 30,
                        time: 31.0,
                    },
                    cols: 100,
                    rows: 30,
                    problems_before: 1,
                    screen: b"\x1b[Hhello".to_vec(),
                },
            ],
        }
    }

    #[test]
    fn what_is_encoded_decodes_the_same() {
        let s = sample();
        assert_eq!(decode(&encode(&s)).unwrap(), s);
        // The smallest index: one keyframe with an empty screen (a recording of its header only, or a
        // live one played before its first keyframe).
        let mut one = sample();
        one.keyframes.truncate(1);
        one.problems.clear();
        assert_eq!(decode(&encode(&one)).unwrap(), one);
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_seen() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b).is_err(), "flip at {i}");
            assert!(decode(&bytes[..i]).is_err(), "cut at {i}");
        }
    }

    /// An index whose checksum is right but whose contents are not (made by hand, or by a bug) is
    /// refused by the checks, not trusted.
    #[test]
    fn a_valid_checksum_over_wrong_contents_is_refused() {
        type Change = Box<dyn Fn(&mut Saved)>;
        let cases: Vec<(&str, Change)> = vec![
            ("not after", Box::new(|s| s.keyframes[1].at.offset = 10)),
            ("outside", Box::new(|s| s.keyframes[1].at.offset = 6000)),
            ("0x24", Box::new(|s| s.keyframes[0].cols = 0)),
            ("after the", Box::new(|s| s.covered = 1.0)),
            ("does not fit", Box::new(|s| s.prefix = 4000)),
            ("problems listed", Box::new(|s| s.problem_count = 1)),
            ("keyframes (1 to", Box::new(|s| s.keyframes.clear())),
        ];
        for (want, change) in cases {
            let mut s = sample();
            change(&mut s);
            let e = decode(&encode(&s)).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let mut bytes = encode(&sample());
        bytes[16] = 9;
        assert!(decode(&bytes).unwrap_err().contains("version 9"));
    }

    #[test]
    fn names_sit_beside_the_recording() {
        assert_eq!(path_for(Path::new("/r/s1.cast")), Path::new("/r/s1.index"));
        assert_eq!(
            path_for(Path::new("/r/x.json")),
            Path::new("/r/x.json.index")
        );
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding never panics; and bytes that start like an index but were altered
        /// anywhere are refused.
        #[test]
        fn any_bytes_decode_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), at in 0usize..2000, flip in 1u8..=255) {
            let _ = decode(&body);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&VERSION.to_le_bytes());
            with_magic.extend_from_slice(&body);
            let _ = decode(&with_magic);
            let mut good = encode(&sample());
            let i = at % good.len();
            good[i] ^= flip;
            proptest::prop_assert!(decode(&good).is_err());
        }
    }
}
