//! The chain tail of every stream a disk buffer holds or has held: the newest chained record (its `seq` and
//! hash) and the newest seal of each stream, kept across the deletion of acknowledged segments.
//!
//! After a crash the integrity chain resumes right after the newest record the buffers got: numbers given to a
//! batch that never reached them are given again, and no number that reached them is ever given to other
//! content. The records themselves say where the chain stood as long as they exist; once the sink has
//! acknowledged them and their segment is deleted, only this file remembers. So the acknowledgement task writes
//! it (to a temporary file, synced, renamed over `tails`, directory synced) before it unlinks any segment, from
//! what the writer has made durable — which includes every record of the doomed segments, since a record is
//! handed to the sink only after its fsync. At open, the file and the records still present are merged.
//!
//! The file is `ARTAILS1`, a u32 LE length, a u32 LE CRC32C of the payload, and the payload: JSON
//! `{"streams":{"<stream>":{"seq":…,"hash":"<hex>","last_seal":…}}}`. A buffer created by this version writes an
//! empty one at once, so a missing file means the buffer's history is unknown (a new or wiped directory, or one
//! written by a version that did not keep tails) and a damaged one means it was lost.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::integrity::chain::{read_field, Hash, Integrity};
use crate::integrity::seal::SEAL_EVENT;
use crate::integrity::FIELD;

/// Name of the tails file in the buffer directory.
pub(crate) const TAILS_FILE: &str = "tails";
const TAILS_TMP: &str = "tails.tmp";
const MAGIC: &[u8; 8] = b"ARTAILS1";
const HEAD: usize = 16;

/// Where one stream's chain stood in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTail {
    /// The highest `seq` of the stream the buffer got.
    pub seq: u64,
    /// That event's hash.
    #[serde(with = "crate::integrity::state::hex_hash")]
    pub hash: Hash,
    /// The `seq` of the newest seal of the stream the buffer got, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seal: Option<u64>,
}

/// The chain tails of every stream, by stream name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTails {
    /// Stream name → its tail.
    pub streams: BTreeMap<String, ChainTail>,
}

/// What the tails file said at open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TailsFile {
    /// It was there and sound: the buffer knows every stream it ever held.
    Sound,
    /// There was none: the buffer's history before this open is unknown (new, wiped, or from an older version).
    #[default]
    Missing,
    /// It was there but unreadable: the history of deleted segments is lost. The text says why.
    Damaged(String),
}

impl ChainTails {
    /// Takes `field` (of a chained record; `seal` when the record is a seal) into account.
    pub fn observe(&mut self, field: &Integrity, seal: bool) {
        let tail = self
            .streams
            .entry(field.stream.clone())
            .or_insert(ChainTail {
                seq: 0,
                hash: crate::integrity::chain::GENESIS,
                last_seal: None,
            });
        if field.seq > tail.seq {
            tail.seq = field.seq;
            tail.hash = field.hash;
        }
        if seal && tail.last_seal.is_none_or(|s| field.seq > s) {
            tail.last_seal = Some(field.seq);
        }
    }

    /// Takes one record's bytes into account (records without a chain field are ignored).
    pub fn observe_raw(&mut self, raw: &[u8]) {
        if let Some(field) = last_field(raw) {
            self.observe(&field, is_seal(raw));
        }
    }

    /// Takes a group of events just made durable into account. Only the newest chained event and the newest seal
    /// of each source in the group are read, so this costs a few field reads per group, not one per event.
    pub fn observe_group(&mut self, events: &[Event]) {
        let mut tail_done: Vec<&str> = Vec::new();
        let mut seal_done: Vec<&str> = Vec::new();
        for e in events.iter().rev() {
            let source = e.source().unwrap_or("");
            let want_tail = !tail_done.contains(&source);
            let seal = e.kind() == SEAL_EVENT;
            let want_seal = seal && !seal_done.contains(&source);
            if !want_tail && !want_seal {
                continue;
            }
            // The newest event of a source is the one to read: a chained source's events all carry the field
            // (internal reports have no source), so one without it means an unchained source, not read again.
            if want_tail {
                tail_done.push(source);
            }
            if seal {
                seal_done.push(source);
            }
            if let Some(field) = last_field(e.raw()) {
                self.observe(&field, seal);
            }
        }
    }

    /// Merges `other` in (the newer of each).
    pub fn merge(&mut self, other: &ChainTails) {
        for (stream, t) in &other.streams {
            match self.streams.get_mut(stream) {
                None => {
                    self.streams.insert(stream.clone(), *t);
                }
                Some(mine) => {
                    if t.seq > mine.seq {
                        mine.seq = t.seq;
                        mine.hash = t.hash;
                    }
                    mine.last_seal = mine.last_seal.max(t.last_seal);
                }
            }
        }
    }
}

/// Whether `raw` is a seal event (the agent writes `event` first in the seals it makes).
fn is_seal(raw: &[u8]) -> bool {
    raw.starts_with(b"{\"event\":\"auditrail.seal\"")
}

/// The chain field of a record, which the chain appends last: found from the end, so that reading it costs the
/// field, not the event. Falls back to a full parse when the quick way does not apply.
fn last_field(raw: &[u8]) -> Option<Integrity> {
    const KEY: &[u8] = b"\"auditrail.integrity\":";
    debug_assert_eq!(&KEY[1..KEY.len() - 2], FIELD.as_bytes());
    let at = memchr::memmem::rfind(raw, KEY)?;
    let mut text = Vec::with_capacity(raw.len() - at + 2);
    text.push(b'{');
    text.extend_from_slice(&raw[at..]);
    read_field(&text).or_else(|_| read_field(raw)).ok()
}

/// The path of the tails file in `dir`.
pub(crate) fn tails_path(dir: &Path) -> PathBuf {
    dir.join(TAILS_FILE)
}

/// Reads the tails file of `dir`.
pub(crate) fn load(dir: &Path) -> io::Result<(ChainTails, TailsFile)> {
    let bytes = match std::fs::read(tails_path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((ChainTails::default(), TailsFile::Missing))
        }
        Err(e) => return Err(e),
    };
    Ok(match decode(&bytes) {
        Ok(t) => (t, TailsFile::Sound),
        Err(why) => (ChainTails::default(), TailsFile::Damaged(why)),
    })
}

fn decode(bytes: &[u8]) -> Result<ChainTails, String> {
    if bytes.len() < HEAD || &bytes[..8] != MAGIC {
        return Err("it does not start with ARTAILS1".into());
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let payload = bytes
        .get(HEAD..HEAD + len)
        .ok_or_else(|| format!("{} bytes, shorter than its length says", bytes.len()))?;
    if crc32c::crc32c(payload) != crc {
        return Err("its checksum does not match".into());
    }
    serde_json::from_slice(payload).map_err(|e| format!("unreadable: {e}"))
}

/// Replaces the tails file of `dir` with `tails`, durably.
pub(crate) fn store(dir: &Path, dir_handle: &File, tails: &ChainTails) -> io::Result<()> {
    let payload = serde_json::to_vec(tails).expect("serializable");
    let mut out = Vec::with_capacity(HEAD + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let tmp = dir.join(TAILS_TMP);
    let f = crate::private_fs::write_replacing(&tmp, &out)?;
    f.sync_data()?;
    drop(f);
    std::fs::rename(&tmp, tails_path(dir))?;
    dir_handle.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chained(stream: &str, seq: u64, kind: &str, source: &str) -> Event {
        let raw = format!(
            r#"{{"event":"{kind}","uid":"u{seq}","time":"2017-02-03T06:54:05Z","note":"\"auditrail.integrity\":{{\"stream\":\"fake\",\"seq\":9}}","auditrail.integrity":{{"stream":"{stream}","seq":{seq},"prev":"{z}","hash":"{h}"}}}}"#,
            z = "00".repeat(32),
            h = format!("{:02x}", seq as u8).repeat(32),
        );
        let mut e = Event::parse(Bytes::from(raw), 1 << 20).unwrap();
        e.set_source(source.into());
        e
    }

    #[test]
    fn a_group_gives_the_newest_event_and_seal_of_each_stream() {
        let mut t = ChainTails::default();
        let group = vec![
            chained("n/a", 1, "x", "a"),
            chained("n/a", 2, SEAL_EVENT, "a"),
            chained("n/b", 7, "x", "b"),
            chained("n/a", 3, "x", "a"),
            Event::internal("auditrail.dropped", "AR0001W", &[]),
        ];
        t.observe_group(&group);
        assert_eq!(t.streams["n/a"].seq, 3);
        assert_eq!(t.streams["n/a"].hash, [3; 32]);
        assert_eq!(t.streams["n/a"].last_seal, Some(2));
        assert_eq!(t.streams["n/b"].seq, 7);
        assert_eq!(t.streams["n/b"].last_seal, None);
        assert!(
            !t.streams.contains_key("fake"),
            "a lookalike inside a string is not the field"
        );
        // Older records never move a tail back.
        t.observe_raw(chained("n/a", 1, "x", "a").raw());
        assert_eq!(t.streams["n/a"].seq, 3);
    }

    #[test]
    fn stored_tails_load_back_and_damage_is_told_apart_from_absence() {
        let dir = tempfile::tempdir().unwrap();
        let handle = File::open(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap().1, TailsFile::Missing);
        let mut t = ChainTails::default();
        t.observe_raw(chained("n/a", 5, SEAL_EVENT, "a").raw());
        store(dir.path(), &handle, &t).unwrap();
        assert_eq!(load(dir.path()).unwrap(), (t.clone(), TailsFile::Sound));
        let mut bytes = std::fs::read(tails_path(dir.path())).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        std::fs::write(tails_path(dir.path()), &bytes).unwrap();
        assert!(matches!(load(dir.path()).unwrap().1, TailsFile::Damaged(_)));
    }

    #[test]
    fn merging_keeps_the_newer_of_each() {
        let mut a = ChainTails::default();
        a.observe_raw(chained("n/a", 5, "x", "a").raw());
        let mut b = ChainTails::default();
        b.observe_raw(chained("n/a", 4, SEAL_EVENT, "a").raw());
        b.observe_raw(chained("n/b", 2, "x", "b").raw());
        a.merge(&b);
        assert_eq!(a.streams["n/a"].seq, 5);
        assert_eq!(a.streams["n/a"].last_seal, Some(4));
        assert_eq!(a.streams["n/b"].seq, 2);
    }
}
