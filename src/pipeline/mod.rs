//! The running topology: sources → fan-out → one buffer per sink → sinks, and the order things stop in.
//!
//! Start: every sink and its buffer first, then every source with a fan-out to the buffers of the sinks that
//! read it, then the sessions socket (`[sessions]`, see [`crate::sessions`]), then the API. Everything that can
//! fail (binding sockets, damaged checkpoints) fails before the agent says it is ready.
//!
//! Every source and sink has an entry in the component registry behind `/ready` ([`auditrail_core::status`]):
//! a source is `running` once it is built (its sockets bound, its checkpoints loaded) and `stopped` or `failed`
//! when its task ends; a sink that talks to a server ([`auditrail_core::Sink::reports_contact`]) reports its
//! own contact and errors, the others (file, console, blackhole) count as in contact from their start, since a
//! destination they cannot write stops them with an error; a sink that ends is `stopped` or `failed`.
//!
//! Stop (SIGTERM/SIGINT): sources stop reading and drop their fan-outs; each buffer closes when its last
//! source is gone, and each sink drains it and returns. Sinks get `shutdown_timeout` for that; a sink still
//! running then is stopped, its unacknowledged events count as failed, and the file source does not checkpoint
//! past them, so they are read again on the next start. Sources then write their final checkpoints.

mod data_dir;
mod dead_letters;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::buffer;
use auditrail_core::dead_letter::DeadLetter;
use auditrail_core::shutdown::{shutdown_channel, ShutdownTrigger};
use auditrail_core::status::Registry;
use auditrail_core::{Fanout, SinkContext};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::sources;

/// What stopped the agent abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A source could not start.
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    /// A sink could not be built.
    #[error("sink `{sink}`: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// Why.
        message: String,
    },
    /// `data_dir` is unusable.
    #[error("data_dir `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API could not start.
    #[error("api: cannot listen on {address}: {source}")]
    Api {
        /// The address.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sessions socket could not start.
    #[error(transparent)]
    Sessions(#[from] crate::sessions::server::SessionsError),
    /// The integrity chain could not start.
    #[error(transparent)]
    Integrity(#[from] crate::integrity::IntegrityError),
    /// A sink failed for good while running.
    #[error("sink `{sink}` failed: {message}")]
    SinkFailed {
        /// The sink.
        sink: String,
        /// Its error.
        message: String,
    },
}

/// A started pipeline.
pub struct Running {
    trigger: ShutdownTrigger,
    sources: JoinSet<()>,
    sinks: JoinSet<(String, Result<(), String>)>,
    shutdown_timeout: Duration,
    api: Option<tokio::task::JoinHandle<()>>,
    sealer: Option<tokio::task::JoinHandle<()>>,
    reporter: tokio::task::JoinHandle<()>,
    sessions: Option<crate::sessions::server::Sessions>,
}

/// Starts everything `config` describes.
pub async fn start(config: Config) -> Result<Running, PipelineError> {
    auditrail_core::private_fs::create_dir_all(&config.data_dir).map_err(|source| {
        PipelineError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        }
    })?;
    data_dir::check_mode(&config.data_dir);
    let (trigger, shutdown) = shutdown_channel();
    let components = Registry::new();
    let mut senders: BTreeMap<String, buffer::BufferSender> = BTreeMap::new();
    let mut recoveries = BTreeMap::new();
    let mut ready = Vec::new();
    for (name, entry) in &config.sinks {
        let sink = entry.kind.build().map_err(|e| PipelineError::Sink {
            sink: name.clone(),
            message: e.to_string(),
        })?;
        let built = buffer::build(name, &entry.buffer, &config.data_dir)
            .await
            .map_err(|e| PipelineError::Sink {
                sink: name.clone(),
                message: format!("buffer: {e}"),
            })?;
        let (tx, rx) = (built.sender, built.receiver);
        if let Some(report) = built.recovery.as_ref().and_then(|r| r.error_event(name)) {
            // The damage report travels to the sink like any event, so it lands where the audit trail is read.
            if tx.try_send(vec![report]).is_err() {
                tracing::warn!(sink = %name, "buffer full at start: the auditrail.error report of its recovery was not queued");
            }
        }
        senders.insert(name.clone(), tx);
        if let Some(r) = built.recovery {
            recoveries.insert(name.clone(), r);
        }
        ready.push((name.clone(), entry.kind.type_name(), sink, rx));
    }
    // The chains resume from what the buffers held at open, before any sink takes (and acknowledges, and
    // deletes) anything: read later, the newest records could be gone and the chain would give their seqs again.
    let chains = match &config.integrity {
        Some(ic) => {
            let buffers = crate::integrity::sink_buffers(&config, &recoveries);
            // A source that relays chains (kafka) has none of its own: its events keep their agents' chains.
            let names: Vec<String> = config
                .sources
                .iter()
                .filter(|(_, s)| !s.relays_chains())
                .map(|(n, _)| n.clone())
                .collect();
            Some(crate::integrity::Chains::open(
                ic,
                &config.data_dir,
                &names,
                &buffers,
            )?)
        }
        None => None,
    };
    drop(recoveries);
    let mut sinks = JoinSet::new();
    let mut watched = Vec::new();
    for (name, type_name, sink, rx) in ready {
        let mut cx =
            SinkContext::with_dead_letter(&name, config.data_dir.clone(), config.dead_letter);
        cx.status = components.sink(&name);
        if !sink.reports_contact() {
            cx.status.running();
        }
        let status = cx.status.clone();
        watched.push(dead_letters::Watched::new(
            cx.dead_letter.clone(),
            vec![senders[&name].clone()],
        ));
        tracing::info!(sink = %name, r#type = type_name, "sink started");
        sinks.spawn(async move {
            let r = sink.run(rx, cx).await.map_err(|e| e.to_string());
            match &r {
                Ok(()) => status.stopped(),
                Err(e) => status.failed(e),
            }
            (name, r)
        });
    }
    let mut sealers = Vec::new();
    let mut source_tasks = JoinSet::new();
    // After the buffers are open (and have fsynced what they recovered), before any source reads.
    let mut resume = sources::file::resume::gather(&config);
    // Session cgroups are where `[sessions]` makes them, or where a recorder running as root makes them
    // without the agent (the default parent); the directory takes only those.
    let cgroup_base = match &config.sessions {
        Some(c) => c.cgroups(),
        None => crate::sessions::cgroup::CgroupRoot::discover(),
    }
    .ok()
    .map(|r| r.base().to_path_buf());
    let directory = crate::sessions::directory::Directory::new(cgroup_base);
    for (name, source) in &config.sources {
        let outputs = config
            .sinks
            .iter()
            .filter(|(_, s)| s.inputs.iter().any(|i| i == name))
            .map(|(sink, _)| senders[sink].clone())
            .collect::<Vec<_>>();
        let dead_letter = Arc::new(DeadLetter::bounded(
            name,
            sources::ingest::dead_letter_path(&config.data_dir, name),
            config.dead_letter,
        ));
        watched.push(dead_letters::Watched::new(
            dead_letter.clone(),
            outputs.clone(),
        ));
        let fanout = match chains.as_ref().and_then(|c| c.chain(name)) {
            Some(chain) => {
                let (fanout, sealer) = Fanout::chained(outputs, chain);
                sealers.push(sealer);
                fanout
            }
            None => Fanout::new(outputs),
        };
        let status = components.source(name);
        let shared = sources::Shared {
            data_dir: config.data_dir.clone(),
            shutdown: shutdown.clone(),
            sessions: directory.clone(),
        };
        let task = match sources::build(
            name,
            source,
            shared,
            fanout,
            resume.remove(name),
            dead_letter,
        )
        .await
        {
            Ok(task) => task,
            // A host that cannot give what the source needs (eBPF) does not stop the agent.
            Err(e @ sources::SourceError::Unavailable { .. }) => {
                tracing::error!(source = %name, "{e}");
                status.failed(&e.to_string());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        status.running();
        let stopping = shutdown.clone();
        source_tasks.spawn(async move {
            task.await;
            if stopping.is_triggered() {
                status.stopped();
            } else {
                status.failed("the source stopped before shutdown (see the log for its error)");
            }
        });
    }
    drop(senders);
    let sessions = match &config.sessions {
        Some(c) => Some(crate::sessions::server::start(
            c,
            &config.data_dir,
            config.recording.as_ref().map_or_else(
                || config.data_dir.join("recordings"),
                |r| r.dir_in(&config.data_dir),
            ),
            shutdown.clone(),
        )?),
        None => None,
    };
    let reporter = tokio::spawn(dead_letters::run(watched, shutdown.clone()));
    // The sealer holds its own fan-outs: buffers close once it has given each stream its last seal.
    let sealer = chains.map(|c| tokio::spawn(c.run_sealer(sealers)));
    let api = match &config.api {
        Some(api) => Some(
            crate::api::serve(api.address, trigger.subscribe(), components.clone())
                .await
                .map_err(|source| PipelineError::Api {
                    address: api.address.to_string(),
                    source,
                })?,
        ),
        None => None,
    };
    Ok(Running {
        trigger,
        sources: source_tasks,
        sinks,
        shutdown_timeout: config.shutdown_timeout,
        api,
        sealer,
        reporter,
        sessions,
    })
}

impl Running {
    /// Runs until `stop` completes or a sink fails, then shuts down in order.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), PipelineError> {
        tokio::pin!(stop);
        let mut failure = None;
        tokio::select! {
            _ = &mut stop => tracing::info!("shutting down: stopping sources, draining sinks"),
            Some(done) = self.sinks.join_next() => {
                let (sink, result) = done.unwrap_or_else(|e| ("?".into(), Err(e.to_string())));
                let message = result.err().unwrap_or_else(|| "stopped unexpectedly".into());
                tracing::error!(sink = %sink, error = %message, "sink failed; shutting down");
                failure = Some(PipelineError::SinkFailed { sink, message });
            }
        }
        self.trigger.trigger();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            while let Some(done) = self.sinks.join_next().await {
                match done {
                    Ok((sink, Err(e))) => {
                        tracing::error!(sink = %sink, error = %e, "sink failed while draining")
                    }
                    Ok((sink, Ok(()))) => tracing::info!(sink = %sink, "sink drained"),
                    Err(e) => tracing::error!(error = %e, "sink task failed"),
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                sinks = self.sinks.len(),
                "shutdown_timeout reached with sinks still busy; stopping them: what they had not delivered is read again on the next start where the source allows it (file), otherwise counted in auditrail_buffer_discarded_events_total"
            );
            self.sinks.abort_all();
            while self.sinks.join_next().await.is_some() {}
        }
        // Sources finish once every event they sent has an outcome, which is now the case.
        if tokio::time::timeout(Duration::from_secs(10), async {
            while self.sources.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::error!("sources did not stop within 10s of the sinks; exiting anyway");
            self.sources.abort_all();
        }
        if let Some(api) = self.api {
            api.abort();
        }
        if let Some(sealer) = self.sealer {
            sealer.abort();
        }
        self.reporter.abort();
        if let Some(s) = self.sessions {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.task).await;
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// A handle that fires the same shutdown as `stop`, e.g. for a second signal handler.
    pub fn trigger(&self) -> &ShutdownTrigger {
        &self.trigger
    }
}
