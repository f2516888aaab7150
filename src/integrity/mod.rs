//! The agent's side of the integrity chain: loading the key, resuming (or, when its state is lost, resetting)
//! each source's chain at start, and the sealer that seals every stream each epoch and evolves the key.
//!
//! Resuming is decided by [`auditrail_core::integrity::resume`] from the state file and what the buffers of
//! the source's sinks say ([`recover`]): with disk buffers only, right after the newest record any of them got,
//! so no crash leaves a gap or reuses a seq; with a memory buffer, after the last number given, declaring first
//! the window of numbers that may have died with the process (an `auditrail.integrity_crash` event).

pub mod config;
mod recover;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::integrity::keys::{self, EpochKey, KeyError};
use auditrail_core::integrity::resume::{resume, Resumed};
use auditrail_core::integrity::ring::KeyRing;
use auditrail_core::integrity::seal::{CRASH_CODE, CRASH_EVENT, RESET_CODE, RESET_EVENT};
use auditrail_core::integrity::state::{ChainState, Loaded, StateFile};
use auditrail_core::integrity::stream::StreamChain;
use auditrail_core::{Event, Fanout};

pub use config::IntegrityConfig;
pub use recover::{sink_buffers, SinkBuffer};

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
}

/// The chains of all sources and the key that seals them.
pub struct Chains {
    ring: Arc<KeyRing>,
    chains: BTreeMap<String, Arc<StreamChain>>,
    interval: Duration,
}

const REGISTRY: &str = "streams.json";

/// The least time between two seals of a memory-buffered stream made because `seal_events` were numbered.
const COUNT_SEAL_SPACING: Duration = Duration::from_secs(1);

/// How long a seal of a memory-buffered stream waits for its sinks to finish what was numbered before it.
const TRACKED_SEAL_WAIT: Duration = Duration::from_secs(30);

impl Chains {
    /// Loads (or creates) the key and resumes the chain of every source in `sources`. `buffers` holds, for each
    /// source, what the buffers of its sinks say about the chain (see [`sink_buffers`]).
    pub fn open(
        config: &IntegrityConfig,
        data_dir: &Path,
        sources: &[String],
        buffers: &BTreeMap<String, Vec<SinkBuffer>>,
    ) -> Result<Chains, IntegrityError> {
        let key = load_or_create_key(&config.key)?;
        let epoch = key.epoch;
        let ring = Arc::new(KeyRing::new(key, &config.key));
        let dir = data_dir.join("integrity");
        auditrail_core::private_fs::create_dir_all(&dir).map_err(|source| {
            IntegrityError::State {
                path: dir.clone(),
                source,
            }
        })?;
        let registry_path = dir.join(REGISTRY);
        let registry: Option<Vec<String>> = std::fs::read(&registry_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let node = config.node_id();
        let resets = metrics::counter!("auditrail_integrity_resets_total");
        resets.increment(0);
        let crash_windows = metrics::counter!("auditrail_integrity_crash_windows_total");
        crash_windows.increment(0);
        let mut chains = BTreeMap::new();
        for source in sources {
            let path = dir.join(format!("{source}.chain"));
            let (mut file, loaded) = StateFile::open(&path).map_err(|e| IntegrityError::State {
                path: path.clone(),
                source: e,
            })?;
            let sinks: &[SinkBuffer] = buffers.get(source).map_or(&[], |b| b.as_slice());
            let known = registry
                .as_ref()
                .is_some_and(|r| r.iter().any(|s| s == source));
            let stream = format!("{node}/{source}");
            // Any chained event of this source in a buffer proves the chain ran before.
            let buffered = sinks
                .iter()
                .filter_map(|b| b.newest_of(&stream))
                .max_by_key(|b| b.1);
            let mut lost = match &loaded {
                Loaded::Found(_) => None,
                Loaded::Damaged(why) => Some(format!(
                    "chain state file {} is damaged: {why}",
                    path.display()
                )),
                Loaded::Missing if known => Some(format!(
                    "chain state file {} is missing",
                    path.display()
                )),
                Loaded::Missing if buffered.is_some() => Some(format!(
                    "chain state file {} is missing but a disk buffer holds or held events of the stream",
                    path.display()
                )),
                Loaded::Missing if registry.is_none() && epoch > 0 => Some(format!(
                    "chain state directory {} was lost (the key is at epoch {epoch}, so the chain ran before)",
                    dir.display()
                )),
                Loaded::Missing => None,
            };
            let mut window = None;
            let mut resumed = None;
            if let Loaded::Found(found) = loaded {
                let views: Vec<_> = sinks.iter().map(|b| b.view(&found.stream)).collect();
                match resume(found, &views) {
                    Resumed::Continue {
                        state,
                        window: w,
                        rolled_back,
                    } => {
                        if rolled_back > 0 {
                            tracing::info!(
                                source = %source,
                                stream = %state.stream,
                                resumes_after = state.seq,
                                taken_back = rolled_back,
                                "integrity chain resumes after the newest event its disk buffers got; numbers given to events that never reached them are given again"
                            );
                        }
                        window = w;
                        resumed = Some(state);
                    }
                    Resumed::StateBehind(why) => lost = Some(why),
                }
            }
            let (state, pending) = match (resumed, lost) {
                (_, Some(reason)) => {
                    let previous = buffered.as_ref().map_or(stream.clone(), |b| b.0.clone());
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
                            ("last_buffered_seq", buffered.map(|b| b.1).into()),
                        ],
                    );
                    event.set_source(source.as_str().into());
                    let mut state = ChainState::new(new_stream);
                    state.base = Some(state.mark());
                    (state, vec![event])
                }
                (Some(state), None) => {
                    let mut pending = Vec::new();
                    if let Some((from, to)) = window {
                        let reason = "the agent stopped without shutting down (a crash or kill) while a memory-buffered sink held events: those events died with the process and are read again where their source can (file), under new seqs";
                        tracing::warn!(
                            source = %source,
                            stream = %state.stream,
                            from,
                            to,
                            "integrity chain: declaring the seqs that may have been numbered but not delivered before a crash"
                        );
                        crash_windows.increment(1);
                        let mut event = Event::internal(
                            CRASH_EVENT,
                            CRASH_CODE,
                            &[
                                ("source", source.as_str().into()),
                                ("stream", state.stream.clone().into()),
                                ("window", serde_json::json!({ "from": from, "to": to })),
                                ("reason", reason.into()),
                            ],
                        );
                        event.set_source(source.as_str().into());
                        pending.push(event);
                    }
                    (state, pending)
                }
                (None, None) => {
                    let mut state = ChainState::new(stream);
                    state.base = Some(state.mark());
                    (state, Vec::new())
                }
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
                    sinks.iter().any(|b| matches!(b, SinkBuffer::Memory { .. })),
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
        let mut last_count_seal: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
        let key_errors = metrics::counter!("auditrail_integrity_key_errors_total");
        key_errors.increment(0);
        while !open.is_empty() {
            tokio::select! {
                _ = tick.tick() => {
                    let mut sealed = 0;
                    for f in &open {
                        let t = wait_for(f, timeout);
                        if f.seal(t).await.is_err() {
                            tracing::warn!(
                                source = f.chain().map_or("?", |c| c.source()),
                                "no room in a sink buffer for this epoch's seal within {t:?}; the stream is sealed at the next one"
                            );
                        } else {
                            sealed += 1;
                        }
                    }
                    auditrail_core::crash::point(auditrail_core::crash::CrashPoint::SealAfterDeliver);
                    // The verifier walks from the root key to each epoch's key through the seals: an epoch without
                    // any seal leaves the next one's certificate unanchored. So the key moves on only after an
                    // epoch that sealed something.
                    if sealed == 0 && !open.is_empty() {
                        tracing::warn!("no stream could be sealed this epoch: the integrity key stays in its epoch until one is");
                        continue;
                    }
                    match self.ring.evolve() {
                        Ok(epoch) => tracing::debug!(epoch, "integrity key moved to its next epoch"),
                        Err(e) => {
                            key_errors.increment(1);
                            tracing::error!(error = %e, "cannot evolve the integrity key; sealing goes on with the current epoch's key");
                        }
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    // Streams with a memory-buffered sink are sealed here after `seal_events`, never inline:
                    // their seal waits for the sinks, so at most once a second.
                    for f in &open {
                        let Some(c) = f.chain() else { continue };
                        let recent = last_count_seal
                            .get(c.source())
                            .is_some_and(|t: &tokio::time::Instant| t.elapsed() < COUNT_SEAL_SPACING);
                        if !recent && c.wants_seal() {
                            last_count_seal.insert(c.source().to_string(), tokio::time::Instant::now());
                            let _ = f.seal(wait_for(f, timeout)).await;
                        }
                    }
                }
            }
            let (closed, still): (Vec<Fanout>, Vec<Fanout>) = open
                .into_iter()
                .partition(|f| f.chain().is_some_and(|c| c.is_closed()));
            open = still;
            for f in closed {
                let timeout = wait_for(&f, timeout);
                if f.seal(timeout).await.is_err() {
                    tracing::warn!(
                        source = f.chain().map_or("?", |c| c.source()),
                        "no room for the stream's final seal; its last events stay unsealed"
                    );
                }
                if !f.settle(timeout).await {
                    tracing::warn!(
                        source = f.chain().map_or("?", |c| c.source()),
                        "the sinks did not finish the stream's last events within {timeout:?}: the next start declares them as possibly lost"
                    );
                }
            }
        }
    }
}

/// How long a seal of `f`'s stream may wait: a stream with a memory-buffered sink waits for its sinks to finish
/// what is numbered (with a slow sink that takes a while, during which the source is held, not the sink).
fn wait_for(f: &Fanout, timeout: Duration) -> Duration {
    if f.chain().is_some_and(|c| c.is_tracked()) {
        TRACKED_SEAL_WAIT.max(timeout)
    } else {
        timeout
    }
}

fn write_registry(path: &Path, sources: &[String]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    auditrail_core::private_fs::write_replacing(
        &tmp,
        &serde_json::to_vec(sources).expect("serializable"),
    )?
    .sync_all()?;
    std::fs::rename(&tmp, path)
}

fn load_or_create_key(path: &Path) -> Result<EpochKey, KeyError> {
    if path.exists() {
        return EpochKey::load(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        auditrail_core::private_fs::create_dir_all(dir).map_err(|source| KeyError::Io {
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
