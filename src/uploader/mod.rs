//! `auditrail upload`: ships finished session recordings to S3-compatible storage — resumable, verified,
//! rate-limited, with retention.
//!
//! The loop: watch the recordings directories ([`notify`] events, plus a full rescan every
//! `rescan_interval`, so nothing is missed across restarts or when inotify is unreliable or out of
//! watches) → [`scan`] finds sessions that are ready (`<sid>.done`, or untouched for `stale_after`) and
//! not yet verified in the [`state`] file → at most `concurrency` sessions at once, each file through
//! [`upload`] (hash, HEAD, PUT or resumable multipart, HEAD again) under one bandwidth limit → when every
//! object of a session is verified: a `session.upload` event ([`events`]) to the agent, then retention
//! ([`retention`]). A failure is retried with exponential backoff; failures of the session's own count, and
//! after `max_attempts` the session is quarantined (moved aside, a T2005W event says so), never deleted.
//! A store that is down is retried without limit, logged once per `report_interval`.

pub mod budget;
pub mod config;
pub mod events;
pub mod key;
pub mod retention;
pub mod scan;
pub mod state;
pub mod store;
pub mod upload;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{TimeZone, Utc};
use notify::Watcher;
use tokio::task::JoinSet;

use config::{AfterUpload, UploaderConfig};
use events::Who;
use key::{KeyParts, Template};
use scan::Found;
use state::{StateFile, Verified};
use upload::{Meta, UploadError, Uploaded, Uploader};

/// `auditrail upload --config F`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Config file: its `data_dir` and `[uploader]` table (`${VAR}` expanded).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Upload what is ready now, then exit (0: everything verified; 1: something was quarantined). Retries
    /// are waited out. Without it, runs until SIGTERM or SIGINT.
    #[arg(long)]
    pub once: bool,
}

/// Runs `auditrail upload`.
pub fn main(args: UploadArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("auditrail-upload")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A session the loop knows about.
struct Tracked {
    found: Found,
    /// Not before.
    next_try: Instant,
    in_flight: bool,
    /// Failures of the store in a row (backoff only; they never quarantine).
    store_failures: u32,
    last_report: Option<Instant>,
    /// Why it is uploaded again, when it was uploaded before.
    reupload: Option<String>,
}

/// Everything the loop shares with upload tasks.
struct Ctx {
    cfg: UploaderConfig,
    up: Uploader,
    template: Template,
    who: Who,
}

/// What a session task returns.
struct Outcome {
    id: String,
    objects: Vec<Uploaded>,
    error: Option<UploadError>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn run(args: UploadArgs) -> anyhow::Result<bool> {
    let (data_dir, cfg) = config::load(&args.config)?;
    let dirs = cfg.watch_dirs(&data_dir);
    let state = StateFile::open(&data_dir.join("uploader"))?;
    let store = store::build(&cfg).map_err(|e| anyhow::anyhow!("[uploader] {e}"))?;
    let template = Template::parse(&cfg.key_template).map_err(|e| anyhow::anyhow!(e))?;
    let (limiter, burst_kib) = match cfg.max_bytes_per_sec {
        Some(b) => {
            let (l, burst) = upload::limiter(b.0);
            (Some(l), burst)
        }
        None => (None, 0),
    };
    let hostname = crate::recording::events::hostname();
    let who = Who {
        login: crate::recording::events::account().login,
        server_id: cfg.server_id.clone().unwrap_or_else(|| hostname.clone()),
        hostname,
    };
    let (trigger, shutdown) = auditrail_core::shutdown::shutdown_channel();
    if let Some(addr) = cfg.api_address {
        crate::api::install_recorder();
        crate::api::serve(
            addr,
            shutdown.clone(),
            auditrail_core::status::Registry::new(),
        )
        .await?;
    }
    let socket = cfg
        .socket
        .clone()
        .unwrap_or_else(|| data_dir.join("events.sock"));
    let sender = crate::recording::sender::Sender::start(
        socket,
        dirs.first().map(|d| d.join("spool")),
        crate::recording::events::Identity {
            sid: "uploader".into(),
            user: who.login.clone(),
            login: who.login.clone(),
            server_id: who.server_id.clone(),
            server_hostname: who.hostname.clone(),
            addr: None,
        },
    );
    let attributes = !cfg.url.starts_with("file:");
    let ctx = Arc::new(Ctx {
        up: Uploader {
            store,
            threshold: cfg.multipart_threshold.0,
            part_size: cfg.part_size.0,
            part_concurrency: cfg.part_concurrency,
            limiter,
            burst_kib,
            state: Arc::new(Mutex::new(state)),
            attributes,
            budget: budget::Budget::new(cfg.max_buffered.0),
        },
        cfg,
        template,
        who,
    });
    tracing::info!(url = %ctx.cfg.url, dirs = ?dirs, "uploader started");

    // inotify (or the platform's watcher) says "look again"; the rescan timer covers what it misses.
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = wake_tx.try_send(());
    })
    .map_err(|e| tracing::warn!(error = %e, "no file watcher; relying on the periodic rescan"))
    .ok();
    let mut watched = vec![false; dirs.len()];

    let mut known: HashMap<String, Tracked> = HashMap::new();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut last_scan: Option<Instant> = None;
    let mut scan_soon = true;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut all_ok = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            Some(()) = wake_rx.recv() => scan_soon = true,
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(o) => all_ok &= finish(&ctx, &sender, &mut known, o),
                    Err(e) => tracing::error!(error = %e, "an upload task failed"),
                }
            }
            _ = tick.tick() => {
                upload::log_save(ctx.up.lock().flush());
            }
        }
        let now = Instant::now();
        if scan_soon || last_scan.is_none_or(|t| now.duration_since(t) >= ctx.cfg.rescan_interval.0)
        {
            // Coalesce a burst of file events into one scan.
            if !scan_soon
                || last_scan.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(200))
            {
                scan_soon = false;
                last_scan = Some(now);
                if let Some(w) = watcher.as_mut() {
                    for (i, d) in dirs.iter().enumerate() {
                        if !watched[i] && d.is_dir() {
                            match w.watch(d, notify::RecursiveMode::NonRecursive) {
                                Ok(()) => watched[i] = true,
                                Err(e) => {
                                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch; relying on the periodic rescan")
                                }
                            }
                        }
                    }
                }
                rescan(&ctx, &dirs, &mut known);
            }
        }
        schedule(&ctx, &mut known, &mut tasks);
        report_gauges(&known);
        if args.once && tasks.is_empty() && !known.values().any(|t| t.found.ready) {
            break;
        }
    }
    trigger.trigger();
    // Parts in flight are dropped: the state file has every finished part, so the next start continues.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(watcher);
    upload::log_save(ctx.up.lock().flush());
    sender.finish(Duration::from_secs(3));
    Ok(all_ok)
}

/// Scans every directory and brings `known` up to date: new sessions, changed files, retention due.
fn rescan(ctx: &Ctx, dirs: &[PathBuf], known: &mut HashMap<String, Tracked>) {
    let now = SystemTime::now();
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        let found = match scan::scan(dir, ctx.cfg.stale_after.0, now) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list the recordings directory");
                metrics::counter!("auditrail_uploader_scan_errors_total").increment(1);
                continue;
            }
        };
        for f in found {
            let id = f.id();
            seen.insert(id.clone());
            let (pending, reupload, retention_due) = {
                let st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
                let session = st.state.sessions.get(&id);
                if session.is_some_and(|s| s.quarantined.is_some()) {
                    continue;
                }
                let changed: Vec<String> = f
                    .files
                    .iter()
                    .filter(|l| {
                        !st.state
                            .files
                            .get(&l.path.to_string_lossy().into_owned())
                            .and_then(|s| s.verified.as_ref())
                            .is_some_and(|v| v.size == l.size && v.mtime_ns == l.mtime_ns)
                    })
                    .map(|l| l.name.clone())
                    .collect();
                let uploaded_at = session.and_then(|s| s.uploaded_at);
                let reupload = (uploaded_at.is_some() && !changed.is_empty())
                    .then(|| format!("changed after its upload: {}", changed.join(", ")));
                let pending = !changed.is_empty() || uploaded_at.is_none();
                let retention_due = !pending
                    && ctx.cfg.after_upload != AfterUpload::Keep
                    && uploaded_at
                        .is_some_and(|t| unix_now() - t >= ctx.cfg.keep_for.0.as_secs() as i64);
                (pending, reupload, retention_due)
            };
            if retention_due {
                if known.get(&id).is_some_and(|t| t.in_flight) {
                    continue;
                }
                apply_retention(ctx, &f);
                continue;
            }
            match known.get_mut(&id) {
                Some(t) => {
                    let in_flight = t.in_flight;
                    if !in_flight {
                        t.found = f;
                        if !pending {
                            t.found.ready = false;
                        }
                        if reupload.is_some() {
                            t.reupload = reupload;
                        }
                    }
                }
                None if pending => {
                    known.insert(
                        id,
                        Tracked {
                            found: f,
                            next_try: Instant::now(),
                            in_flight: false,
                            store_failures: 0,
                            last_report: None,
                            reupload,
                        },
                    );
                }
                None => {}
            }
        }
    }
    known.retain(|id, t| t.in_flight || seen.contains(id));
    // Forget files that are gone (deleted or moved by retention, quarantined): the state stays bounded.
    let mut st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
    let before = st.state.files.len();
    st.state
        .files
        .retain(|p, f| f.upload.is_some() || Path::new(p).exists());
    let in_dirs = |id: &str| {
        Path::new(id)
            .parent()
            .is_some_and(|d| dirs.iter().any(|x| x == d))
    };
    let sessions_before = st.state.sessions.len();
    st.state
        .sessions
        .retain(|id, s| s.quarantined.is_some() || !in_dirs(id) || seen.contains(id));
    if st.state.files.len() != before || st.state.sessions.len() != sessions_before {
        upload::log_save(st.save_soon());
    }
}

fn apply_retention(ctx: &Ctx, f: &Found) {
    match retention::apply(&ctx.cfg.after_upload, &f.dir, &f.sid) {
        Ok(()) => {
            metrics::counter!("auditrail_uploader_retention_total").increment(1);
            tracing::info!(sid = %f.sid, after_upload = ?ctx.cfg.after_upload, "retention applied after verification");
        }
        Err(e) => {
            metrics::counter!("auditrail_uploader_retention_errors_total").increment(1);
            tracing::warn!(sid = %f.sid, error = %e, "retention failed; tried again at the next rescan");
        }
    }
}

/// Starts uploads for ready sessions, up to `concurrency` at once.
fn schedule(ctx: &Arc<Ctx>, known: &mut HashMap<String, Tracked>, tasks: &mut JoinSet<Outcome>) {
    let now = Instant::now();
    let mut due: Vec<(&String, &mut Tracked)> = known
        .iter_mut()
        .filter(|(_, t)| t.found.ready && !t.in_flight && t.next_try <= now)
        .collect();
    // Oldest first.
    due.sort_by_key(|(_, t)| t.found.ended_ns);
    for (id, t) in due {
        if tasks.len() >= ctx.cfg.concurrency {
            break;
        }
        t.in_flight = true;
        let (ctx, found, id) = (ctx.clone(), t.found.clone(), id.clone());
        tasks.spawn(async move { upload_session(&ctx, id, found).await });
    }
}

fn report_gauges(known: &HashMap<String, Tracked>) {
    let pending: Vec<&Tracked> = known.values().filter(|t| t.found.ready).collect();
    metrics::gauge!("auditrail_uploader_queue_length").set(pending.len() as f64);
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let oldest = pending.iter().map(|t| t.found.ended_ns).min();
    metrics::gauge!("auditrail_uploader_oldest_pending_seconds")
        .set(oldest.map_or(0.0, |o| ((now_ns - o).max(0) / 1_000_000_000) as f64));
}

/// Uploads every file of one session (files verified earlier with the same size and mtime are not sent
/// again), stopping at the first error.
async fn upload_session(ctx: &Ctx, id: String, f: Found) -> Outcome {
    let date = Utc.timestamp_nanos((f.ended_ns).clamp(0, i64::MAX as i128) as i64);
    let events_file = f.dir.join(format!("{}.events.ndjson", f.sid));
    let meta = Meta {
        sid: f.sid.clone(),
        user: upload::user_from_events(&events_file),
        server_id: ctx.who.server_id.clone(),
        incomplete: f.incomplete,
    };
    let mut objects = Vec::new();
    for l in &f.files {
        let path_key = l.path.to_string_lossy().into_owned();
        let earlier = {
            let st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
            st.state.files.get(&path_key).and_then(|s| {
                s.verified
                    .clone()
                    .filter(|v| v.size == l.size && v.mtime_ns == l.mtime_ns)
                    .map(|v| (s.key.clone(), v))
            })
        };
        if let Some((key, v)) = earlier {
            objects.push(Uploaded {
                path: l.path.clone(),
                file: l.name.clone(),
                url: ctx.up.store.url_of(&key),
                key,
                size: v.size,
                sha256: v.sha256,
                etag: v.etag,
                mtime_ns: v.mtime_ns,
                sent: 0,
                already_present: false,
                replaced: false,
            });
            continue;
        }
        let rendered = ctx.template.render(&KeyParts {
            server_id: &ctx.who.server_id,
            hostname: &ctx.who.hostname,
            date,
            sid: &f.sid,
            file: &l.name,
        });
        let key = match rendered {
            Ok(k) => ctx.up.store.full_key(&k),
            Err(cause) => {
                return Outcome {
                    id,
                    objects,
                    error: Some(UploadError::Local {
                        path: l.path.clone(),
                        cause,
                    }),
                }
            }
        };
        match ctx.up.upload(&l.path, &l.name, &key, &meta).await {
            Ok(u) => {
                let mut st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
                let e = st.state.files.entry(path_key).or_default();
                e.key = key.clone();
                e.verified = Some(Verified {
                    size: u.size,
                    mtime_ns: u.mtime_ns,
                    sha256: u.sha256.clone(),
                    etag: u.etag.clone(),
                    at: crate::recording::events::now(),
                });
                upload::log_save(st.save_soon());
                drop(st);
                metrics::counter!("auditrail_uploader_files_total", "outcome" => if u.already_present { "already_present" } else { "uploaded" }).increment(1);
                metrics::counter!("auditrail_uploader_bytes_total").increment(u.sent);
                tracing::info!(file = %l.path.display(), url = %u.url, size = u.size, sha256 = %u.sha256, already_present = u.already_present, "uploaded and verified");
                objects.push(u);
            }
            Err(e) => {
                return Outcome {
                    id,
                    objects,
                    error: Some(e),
                }
            }
        }
    }
    Outcome {
        id,
        objects,
        error: None,
    }
}

/// Takes a finished task's outcome: event and retention on success; backoff, report, quarantine on failure.
/// Returns false when the session was quarantined (or should have been and could not be), true otherwise
/// (uploaded, or to be retried).
fn finish(
    ctx: &Ctx,
    sender: &crate::recording::sender::Sender,
    known: &mut HashMap<String, Tracked>,
    o: Outcome,
) -> bool {
    let Some(t) = known.get_mut(&o.id) else {
        return o.error.is_none();
    };
    t.in_flight = false;
    let sid = t.found.sid.clone();
    let c = &ctx.cfg;
    match o.error {
        None => {
            let retain_now = c.after_upload != AfterUpload::Keep && c.keep_for.0.is_zero();
            let reupload = t.reupload.take();
            sender.send(events::uploaded(
                &ctx.who,
                &sid,
                &o.objects,
                t.found.incomplete,
                reupload.as_deref(),
            ));
            {
                let mut st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
                let s = st.state.sessions.entry(o.id.clone()).or_default();
                s.attempts = 0;
                s.last_error = None;
                s.uploaded_at = Some(unix_now());
                if reupload.is_some() {
                    s.reuploads += 1;
                }
                // Retention touches the files right away: the result goes to disk first.
                upload::log_save(if retain_now {
                    st.save()
                } else {
                    st.save_soon()
                });
            }
            metrics::counter!("auditrail_uploader_sessions_total").increment(1);
            if reupload.is_some() {
                metrics::counter!("auditrail_uploader_reuploads_total").increment(1);
            }
            tracing::info!(sid = %sid, objects = o.objects.len(), incomplete = t.found.incomplete, reupload = ?reupload, "session uploaded and verified");
            let found = known.remove(&o.id).expect("known").found;
            if retain_now {
                apply_retention(ctx, &found);
            }
            true
        }
        Some(e) => {
            metrics::counter!("auditrail_uploader_failures_total", "reason" => e.reason())
                .increment(1);
            let now = Instant::now();
            let report = t
                .last_report
                .is_none_or(|r| now.duration_since(r) >= c.report_interval.0);
            let backoff = |n: u32| {
                let d = c
                    .retry_initial
                    .0
                    .saturating_mul(1u32 << n.saturating_sub(1).min(20));
                d.min(c.retry_max.0)
            };
            if matches!(e, UploadError::Changed { .. }) {
                t.next_try = now + c.retry_initial.0;
                tracing::info!(sid = %sid, error = %e, "retrying");
                return true;
            }
            if !e.counts() {
                t.store_failures += 1;
                t.next_try = now + backoff(t.store_failures);
                if report {
                    t.last_report = Some(now);
                    tracing::warn!(sid = %sid, error = %e, failures = t.store_failures, retry_in = ?backoff(t.store_failures), "upload failed; retrying (store errors never quarantine)");
                }
                return true;
            }
            let attempts = {
                let mut st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
                let s = st.state.sessions.entry(o.id.clone()).or_default();
                s.attempts += 1;
                s.last_error = Some(e.to_string());
                let a = s.attempts;
                upload::log_save(st.save_soon());
                a
            };
            if attempts < c.max_attempts {
                t.next_try = now + backoff(attempts);
                if report {
                    t.last_report = Some(now);
                    tracing::warn!(sid = %sid, error = %e, attempts, max_attempts = c.max_attempts, "upload failed; retrying");
                }
                return true;
            }
            let dir = t.found.dir.clone();
            match retention::quarantine(&dir, &sid) {
                Ok(to) => {
                    let to = to.to_string_lossy().into_owned();
                    sender.send(events::quarantined(
                        &ctx.who,
                        &sid,
                        &e.to_string(),
                        attempts,
                        &to,
                        &o.objects,
                    ));
                    let mut st = ctx.up.state.lock().unwrap_or_else(|p| p.into_inner());
                    st.state
                        .sessions
                        .entry(o.id.clone())
                        .or_default()
                        .quarantined = Some(to.clone());
                    upload::log_save(st.save());
                    metrics::counter!("auditrail_uploader_quarantined_total").increment(1);
                    tracing::error!(sid = %sid, error = %e, attempts, quarantine = %to, "session quarantined after max_attempts; it is not uploaded and not deleted");
                    known.remove(&o.id);
                }
                Err(qe) => {
                    t.next_try = now + c.retry_max.0;
                    tracing::error!(sid = %sid, error = %e, quarantine_error = %qe, "session failed max_attempts times and cannot be quarantined; retrying later");
                }
            }
            false
        }
    }
}
