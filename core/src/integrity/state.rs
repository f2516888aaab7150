//! The chain state of one stream on disk: where its chain stands, written before any event carrying it leaves.
//!
//! The fan-out writes the state after it has numbered a batch and before it hands the batch to the buffers, and
//! fdatasyncs it, so the state on disk is never behind a `seq` a sink could have seen: after any crash the chain
//! continues past every number it gave out, and no `seq` is ever given to other content.
//!
//! The file holds two fixed-size slots written alternately, each with a generation number and a CRC32C; a write
//! torn by a crash damages at most the slot being written, and the other one is still there. Loading takes the
//! sound slot with the higher generation.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chain::Hash;

const MAGIC: &[u8; 8] = b"ARCHAIN1";
const SLOT: usize = 1024;
const HEAD: usize = 8 + 8 + 4 + 4;

/// How many recent seal positions are kept (to resume correctly after rolling back past a seal).
pub const SEAL_HISTORY: usize = 8;

/// Where a stream's chain stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    /// The stream's name.
    pub stream: String,
    /// The last seq given out (0 before the first event).
    pub seq: u64,
    /// The hash of event `seq` (zeros before the first).
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// Events (seals included) numbered since the last seal.
    pub since_seal: u64,
    /// Seqs of the most recent seals, oldest first.
    pub seals: Vec<u64>,
    /// Where this life of the agent started the stream (the point a restart resumed at): every seq up to it is
    /// settled, and everything after it was numbered in this life. `None` in a state written by an older version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Mark>,
    /// For a stream with a memory-buffered sink: every seq up to this one was finished by every sink (delivered,
    /// or rejected or dropped on purpose). Numbers after it may die with the process; a restart declares them.
    #[serde(default)]
    pub acked: u64,
}

/// A point of the chain: a seq, its hash, and how many events (seals included) were numbered since the seal
/// before it (so that seal is at `seq - since_seal`, or there is none when that is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The seq.
    pub seq: u64,
    /// Its hash.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// Events numbered since the previous seal.
    pub since_seal: u64,
}

impl ChainState {
    /// The state of a stream that has not numbered anything yet.
    pub fn new(stream: String) -> ChainState {
        ChainState {
            stream,
            seq: 0,
            hash: super::chain::GENESIS,
            since_seal: 0,
            seals: Vec::new(),
            base: None,
            acked: 0,
        }
    }

    /// Where the chain stands, as a [`Mark`].
    pub fn mark(&self) -> Mark {
        Mark {
            seq: self.seq,
            hash: self.hash,
            since_seal: self.since_seal,
        }
    }

    /// The seq of the last seal (0 if none).
    pub fn last_seal(&self) -> u64 {
        self.seals.last().copied().unwrap_or(0)
    }
}

/// Serde of a hash as 64 hex digits.
pub(crate) mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut h = [0u8; 32];
        hex::decode_to_slice(&s, &mut h).map_err(serde::de::Error::custom)?;
        Ok(h)
    }
}

/// What was on disk.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: a stream never started here (or one whose state was lost: the caller decides).
    Missing,
    /// A sound state.
    Found(ChainState),
    /// A state file exists but neither slot is sound.
    Damaged(String),
}

/// An open state file.
pub struct StateFile {
    file: File,
    path: PathBuf,
    generation: u64,
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile")
            .field("path", &self.path)
            .finish()
    }
}

fn read_slot(bytes: &[u8]) -> Option<(u64, ChainState)> {
    if bytes.len() < HEAD || &bytes[..8] != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let len = u32::from_le_bytes(bytes[16..20].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[20..24].try_into().ok()?);
    let payload = bytes.get(HEAD..HEAD + len)?;
    let mut check = bytes[8..20].to_vec();
    check.extend_from_slice(payload);
    if crc32c::crc32c(&check) != crc {
        return None;
    }
    Some((generation, serde_json::from_slice(payload).ok()?))
}

impl StateFile {
    /// Opens (creating if needed) the state file at `path` and reads what it holds.
    pub fn open(path: &Path) -> io::Result<(StateFile, Loaded)> {
        let existed = path.exists();
        let file = crate::private_fs::open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = vec![0u8; 2 * SLOT];
        let n = read_full(&file, &mut bytes)?;
        bytes.truncate(n);
        let slots: Vec<(u64, ChainState)> = bytes.chunks(SLOT).filter_map(read_slot).collect();
        let best = slots.into_iter().max_by_key(|(g, _)| *g);
        let (generation, loaded) = match best {
            Some((g, s)) => (g, Loaded::Found(s)),
            None if !existed || n == 0 => (0, Loaded::Missing),
            None => (
                0,
                Loaded::Damaged(format!("{n} bytes, no sound slot (bad magic or checksum)")),
            ),
        };
        Ok((
            StateFile {
                file,
                path: path.to_path_buf(),
                generation,
            },
            loaded,
        ))
    }

    /// Writes `state` durably (fdatasync) into the slot not holding the current one.
    pub fn write(&mut self, state: &ChainState) -> io::Result<()> {
        let payload = serde_json::to_vec(state).expect("serializable");
        if HEAD + payload.len() > SLOT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "chain state of stream {:?} does not fit a {SLOT}-byte slot",
                    state.stream
                ),
            ));
        }
        let generation = self.generation + 1;
        let mut slot = vec![0u8; SLOT];
        slot[..8].copy_from_slice(MAGIC);
        slot[8..16].copy_from_slice(&generation.to_le_bytes());
        slot[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        slot[HEAD..HEAD + payload.len()].copy_from_slice(&payload);
        let mut check = slot[8..20].to_vec();
        check.extend_from_slice(&payload);
        slot[20..24].copy_from_slice(&crc32c::crc32c(&check).to_le_bytes());
        let offset = (generation % 2) * SLOT as u64;
        self.file.write_all_at(&slot, offset)?;
        self.file.sync_data()?;
        self.generation = generation;
        Ok(())
    }

    /// How many states were written to this file (the generation of the newest).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_full(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(seq: u64) -> ChainState {
        ChainState {
            stream: "n/s".into(),
            seq,
            hash: [seq as u8; 32],
            since_seal: seq % 5,
            seals: vec![1, seq],
            base: Some(Mark {
                seq: seq / 2,
                hash: [1; 32],
                since_seal: 0,
            }),
            acked: seq / 3,
        }
    }

    #[test]
    fn the_newest_sound_slot_wins_and_a_torn_one_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.chain");
        let (mut f, l) = StateFile::open(&path).unwrap();
        assert!(matches!(l, Loaded::Missing));
        for seq in 1..=5 {
            f.write(&state(seq)).unwrap();
        }
        drop(f);
        let (mut f, l) = StateFile::open(&path).unwrap();
        assert!(matches!(l, Loaded::Found(ref s) if *s == state(5)), "{l:?}");
        f.write(&state(6)).unwrap();
        // Tear the slot just written (generation 6 is in slot 0): the previous state is still there.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff; 40], 30).unwrap();
        let (_, l) = StateFile::open(&path).unwrap();
        assert!(matches!(l, Loaded::Found(ref s) if *s == state(5)), "{l:?}");
        // Both slots gone: damaged, not missing.
        file.write_all_at(&[0xff; 40], SLOT as u64 + 30).unwrap();
        let (_, l) = StateFile::open(&path).unwrap();
        assert!(matches!(l, Loaded::Damaged(_)), "{l:?}");
    }
}
