//! The agent's side of the integrity chain: loading the key, resuming (or, when its state is lost, resetting)
//! each source's chain at start, and the sealer that seals every stream each epoch and evolves the key.
//!
//! Resuming: the state file of each stream is written before any numbered event leaves the fan-out, so it is
//! never behind. It can be ahead: numbers given to a batch that a crash stopped before it reached the buffers.
//! When every sink of a source has a disk buffer, nothing but those buffers ever saw the chain, so the chain
//! resumes right after the newest event they hold and no gap appears. With a memory buffer such numbers may be
//! lost with the process: the chain then shows the gap, which is the truth.

pub mod config;
mod recover;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::integrity::keys::{self, EpochKey, KeyError};
use auditrail_core::integrity::ring::KeyRing;
use auditrail_core::integrity::seal::{RESET_CODE, RESET_EVENT};
use auditrail_core::integrity::state::{ChainState, Loaded, StateFile};
use auditrail_core::integrity::stream::StreamChain;
use auditrail_core::{Event, Fanout};

pub use config::IntegrityConfig;
pub use recover::{scan_buffers, BufferedTail};

/// What keeps the chains from starting.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The key file.
    #[error("[integrity] key: {0}")]
    Key(#[from] KeyError),
    /// A state file.
    #[error("[integrity] chain state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading a disk buffer to resume the chain.
    #[error("[integrity] reading the disk buffer of sink `{sink}` to resume the chain: {message}")]
    Buffer {
        /// The sink.
        sink: String,
        /// Why.
        message: String,
    },
}

/// The chains of all sources and the key that seals them.
pub struct Chains {
    ring: Arc<KeyRing>,
    chains: BTreeMap<String, Arc<StreamChain>>,
    interval: Duration,
}

const REGISTRY: &str = "streams.json";

impl Chains {
    /// Loads (or creates) the key and resumes the chain of every source in `sources`. `tails` holds, for each
    /// source whose sinks all have disk buffers, the newest chained event those buffers hold.
    pub fn open(
        config: &IntegrityConfig,
        data_dir: &Path,
        sources: &[String],
        tails: &BTreeMap<String, BufferedTail>,
    ) -> Result<Chains, IntegrityError> {
        let key = load_or_create_key(&config.key)?;
        let epoch = key.epoch;
        let ring = Arc::new(KeyRing::new(key, &config.key));
        let dir = data_dir.join("integrity");
        std::fs::create_dir_all(&dir).map_err(|source| IntegrityError::State {
            path: dir.clone(),
            source,
        })?;
        let registry_path = dir.join(REGISTRY);
        let registry: Option<Vec<String>> = std::fs::read(&registry_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let node = config.node_id();
        let resets = metrics::counter!("auditrail_integrity_resets_total");
        resets.increment(0);
        let mut chains = BTreeMap::new();
        for source in sources {
            let path = dir.join(format!("{source}.chain"));
            let (mut file, loaded) = StateFile::open(&path).map_err(|e| IntegrityError::State {
                path: path.clone(),
                source: e,
            })?;
            let tail = tails.get(source);
            let known = registry
                .as_ref()
                .is_some_and(|r| r.iter().any(|s| s == source));
            // Any chained event of this source in a buffer proves the chain ran before.
            let buffered = tail.and_then(|t| t.last.values().max_by_key(|b| b.seq));
            let (found, lost) = match loaded {
                Loaded::Found(s) => (Some(s), None),
                Loaded::Damaged(why) => (
                    None,
                    Some(format!("chain state file {} is damaged: {why}", path.display())),
                ),
                Loaded::Missing if known => (
                    None,
                    Some(format!("chain state file {} is missing", path.display())),
                ),
                Loaded::Missing if buffered.is_some() => (
                    None,
                    Some(format!(
                        "chain state file {} is missing but a disk buffer holds events of the stream",
                        path.display()
                    )),
                ),
                Loaded::Missing if registry.is_none() && epoch > 0 => (
                    None,
                    Some(format!(
                        "chain state directory {} was lost (the key is at epoch {epoch}, so the chain ran before)",
                        dir.display()
                    )),
                ),
                Loaded::Missing => (None, None),
            };
            let stream = format!("{node}/{source}");
            let (state, pending) = match (found, lost) {
                (_, Some(reason)) => {
                    let previous = buffered.map_or(stream.clone(), |b| b.stream.clone());
                    let new_stream = format!(
                        "{stream}~{}",
                        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                    );
                    tracing::error!(
                        source = %source,
                        previous_stream = %previous,
                        new_stream = %new_stream,
                        reason = %reason,
                        "integrity chain state lost: starting a new chain segment, announced by an auditrail.integrity_reset event"
                    );
                    resets.increment(1);
                    let mut event = Event::internal(
                        RESET_EVENT,
                        RESET_CODE,
                        &[
                            ("source", source.as_str().into()),
                            ("previous_stream", previous.into()),
                            ("new_stream", new_stream.clone().into()),
                            ("reason", reason.into()),
                            ("last_buffered_seq", buffered.map(|b| b.seq).into()),
                        ],
                    );
                    event.set_source(source.as_str().into());
                    (ChainState::new(new_stream), vec![event])
                }
                (Some(mut state), None) => {
                    if let Some(b) = tail.and_then(|t| t.last.get(&state.stream)) {
                        if b.seq < state.seq {
                            tracing::info!(
                                source = %source,
                                stream = %state.stream,
                                numbered = state.seq,
                                buffered = b.seq,
                                "integrity chain resumes after the newest event its disk buffers hold; numbers given to events that never reached them are given again"
                            );
                            let last_seal = state
                                .seals
                                .iter()
                                .chain(
                                    tail.and_then(|t| t.seals.get(&state.stream))
                                        .into_iter()
                                        .flatten(),
                                )
                                .copied()
                                .filter(|&s| s <= b.seq)
                                .max()
                                .unwrap_or(0);
                            let mut seals: Vec<u64> = state
                                .seals
                                .iter()
                                .copied()
                                .filter(|&s| s < last_seal)
                                .collect();
                            seals.push(last_seal);
                            seals.retain(|&s| s > 0);
                            state.seq = b.seq;
                            state.hash = b.hash;
                            state.since_seal = b.seq - last_seal;
                            state.seals = seals;
                        }
                    }
                    (state, Vec::new())
                }
                (None, None) => (ChainState::new(stream), Vec::new()),
            };
            file.write(&state).map_err(|e| IntegrityError::State {
                path: path.clone(),
                source: e,
            })?;
            tracing::info!(source = %source, stream = %state.stream, seq = state.seq, "integrity chain ready");
            chains.insert(
                source.clone(),
                Arc::new(StreamChain::new(
                    source,
                    state,
                    file,
                    ring.clone(),
                    config.seal_events,
                    pending,
                )),
            );
        }
        let mut all: Vec<String> = registry.unwrap_or_default();
        all.extend(sources.iter().cloned());
        all.sort();
        all.dedup();
        write_registry(&registry_path, &all).map_err(|source| IntegrityError::State {
            path: registry_path.clone(),
            source,
        })?;
        Ok(Chains {
            ring,
            chains,
            interval: config.seal_interval.0,
        })
    }

    /// The chain of `source`.
    pub fn chain(&self, source: &str) -> Option<Arc<StreamChain>> {
        self.chains.get(source).cloned()
    }

    /// Runs the sealer: every `seal_interval` it seals every stream, then evolves the key; when a stream's
    /// source is gone it gives the stream its last seal and lets go of its buffers. Returns when every stream
    /// is closed.
    pub async fn run_sealer(self, sealers: Vec<Fanout>) {
        let mut open = sealers;
        let timeout = self.interval.min(Duration::from_secs(5));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let key_errors = metrics::counter!("auditrail_integrity_key_errors_total");
        key_errors.increment(0);
        while !open.is_empty() {
            tokio::select! {
                _ = tick.tick() => {
                    for f in &open {
                        if f.seal(timeout).await.is_err() {
                            tracing::warn!(
                                source = f.chain().map_or("?", |c| c.source()),
                                "no room in a sink buffer for this epoch's seal within {timeout:?}; the stream is sealed at the next one"
                            );
                        }
                    }
                    match self.ring.evolve() {
                        Ok(epoch) => tracing::debug!(epoch, "integrity key moved to its next epoch"),
                        Err(e) => {
                            key_errors.increment(1);
                            tracing::error!(error = %e, "cannot evolve the integrity key; sealing goes on with the current epoch's key");
                        }
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            let (closed, still): (Vec<Fanout>, Vec<Fanout>) = open
                .into_iter()
                .partition(|f| f.chain().is_some_and(|c| c.is_closed()));
            open = still;
            for f in closed {
                if f.seal(timeout).await.is_err() {
                    tracing::warn!(
                        source = f.chain().map_or("?", |c| c.source()),
                        "no room for the stream's final seal; its last events stay unsealed"
                    );
                }
            }
        }
    }
}

fn write_registry(path: &Path, sources: &[String]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(sources).expect("serializable"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn load_or_create_key(path: &Path) -> Result<EpochKey, KeyError> {
    if path.exists() {
        return EpochKey::load(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let public = keys::public_path_for(path);
    let key = keys::keygen(path, &public)?;
    tracing::warn!(
        key = %path.display(),
        public_key = %public.display(),
        "created the integrity key pair: give the public key to whoever verifies this node's audit trail (auditrail verify --key)"
    );
    Ok(key)
}
