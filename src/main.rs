//! The `auditrail` command line: `run`, `validate`, `keygen`, `verify`, `record`, `play`, `export`, `upload`,
//! `buffer inspect`, `--version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use auditrail::config::{self, Config};
use auditrail_core::buffer::{disk, BufferConfig};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "auditrail",
    version,
    about = "Node agent and forwarder for security audit data"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGTERM or SIGINT.
    Run {
        /// Config file; without it, the embedded default (config/auditrail.toml) is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a config file without starting anything; exits non-zero with the problem. Also reports what
    /// each sink's disk buffer holds and any damage a start would skip.
    Validate {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make the signing key pair of the integrity chain: DIR/auditrail.key (secret, mode 0600, for the agent's
    /// `[integrity] key`) and DIR/auditrail.pub (for auditors and `auditrail verify --key`).
    Keygen {
        /// Directory to write the two files into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check chained events read back from sinks: per stream what is missing, altered, reordered, duplicated
    /// or forged, and whether the seals prove the rest. Exit status 0: intact; 1: tampered; 2: usage or input
    /// error.
    Verify(auditrail::verify::VerifyArgs),
    /// Record a terminal session: run CMD in a PTY, write <sid>.raw and <sid>.cast to the recordings
    /// directory, send session events to the agent. Exit status: the program's (128+N for signal N).
    Record(auditrail::recording::RecordArgs),
    /// Upload finished session recordings to object storage (S3): resumable, verified, rate-limited, with
    /// retention; configured by the `[uploader]` table.
    Upload(auditrail::uploader::UploadArgs),
    /// Replay a session recording on this terminal (space pause, ←/→ seek 5 s, +/- speed, q quit), dump it
    /// (`--raw`), or serve the web player for the recordings directory (`--web`).
    Play(auditrail::play::PlayArgs),
    /// Write one self-contained HTML file of a session (player, recording, events) for auditors.
    Export(auditrail::play::ExportArgs),
    /// Work with sinks' disk buffers.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
}

#[derive(Subcommand)]
enum BufferCommand {
    /// Show segments, records pending, the acknowledged position and damage; changes nothing.
    Inspect {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Only this sink.
        sink: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The recorder runs on the user's terminal: only warnings and errors there, unless AUDITRAIL_LOG says.
    let default_level = match cli.command {
        Command::Record(_) | Command::Play(_) | Command::Export(_) => "warn",
        _ => "info",
    };
    init_logs(cli.log_format, default_level);
    let result = match cli.command {
        Command::Verify(args) => return auditrail::verify::main(args),
        Command::Record(args) => return auditrail::recording::main(args),
        Command::Upload(args) => return auditrail::uploader::main(args),
        Command::Play(args) => return auditrail::play::main(args),
        Command::Export(args) => return auditrail::play::export_main(args),
        Command::Run { config } => run(config.as_deref()),
        Command::Validate { config } => validate(&config),
        Command::Keygen { out } => keygen(&out),
        Command::Buffer {
            command: BufferCommand::Inspect { config, sink },
        } => inspect(&config, sink.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let config = match path {
        Some(p) => Config::load(p)?,
        None => Config::parse(
            Path::new(config::EMBEDDED_NAME),
            config::EMBEDDED_DEFAULT,
            &|n| std::env::var(n).ok(),
        )?,
    };
    Ok(config)
}

fn keygen(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (secret, public) = (dir.join("auditrail.key"), dir.join("auditrail.pub"));
    auditrail_core::integrity::keys::keygen(&secret, &public)?;
    println!(
        "secret key: {} (mode 0600; for the agent's [integrity] key)\npublic key: {} (for auditors: auditrail verify --key)",
        secret.display(),
        public.display()
    );
    Ok(())
}

fn validate(path: &Path) -> anyhow::Result<()> {
    let config = load(Some(path))?;
    // The key is checked as the agent will read it: a loose or wrong key file fails here, not at start.
    if let Some(i) = &config.integrity {
        if i.key.exists() {
            let key = auditrail_core::integrity::keys::EpochKey::load(&i.key)?;
            println!(
                "integrity: key {} (epoch {}), streams named {}/<source>",
                i.key.display(),
                key.epoch,
                i.node_id()
            );
        } else {
            println!(
                "integrity: key {} does not exist yet; the agent creates it (and its .pub) at the first start",
                i.key.display()
            );
        }
    }
    // What an ebpf source needs of the host, checked without loading anything: the agent would run with the
    // source failed, so this is a warning, not an invalid config.
    for (name, source) in &config.sources {
        if let auditrail::sources::SourceConfig::Ebpf(_) = source {
            if let Err(e) = auditrail_ebpf::loader::preflight() {
                eprintln!("warning: source `{name}`: {e}");
            }
        }
    }
    println!(
        "{}: ok ({} sources, {} sinks)",
        path.display(),
        config.sources.len(),
        config.sinks.len()
    );
    for (name, inspection) in disk_buffers(&config, None)? {
        let Some(i) = inspection else { continue };
        println!(
            "sink `{name}`: disk buffer {}: {} records pending in {} segments ({} bytes)",
            i.dir.display(),
            i.pending_records,
            i.segments.len(),
            i.total_bytes
        );
        if i.is_damaged() {
            print_damage(&i.damage, "a start would skip");
        }
    }
    Ok(())
}

/// The disk buffer of every sink that has one (or only of `only`), inspected; `None` when it has no files yet.
fn disk_buffers(
    config: &Config,
    only: Option<&str>,
) -> anyhow::Result<Vec<(String, Option<disk::Inspection>)>> {
    if let Some(s) = only {
        anyhow::ensure!(
            config.sinks.contains_key(s),
            "no sink `{s}` in the config; the sinks are {}",
            config
                .sinks
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut out = Vec::new();
    for (name, entry) in &config.sinks {
        if only.is_some_and(|s| s != name) || !matches!(entry.buffer, BufferConfig::Disk(_)) {
            continue;
        }
        let dir = auditrail_core::buffer::disk_dir(&config.data_dir, name);
        let inspection = if dir.exists() {
            Some(disk::inspect(&dir).with_context(|| format!("sink `{name}`"))?)
        } else {
            None
        };
        out.push((name.clone(), inspection));
    }
    Ok(out)
}

fn print_damage(d: &disk::Recovery, what: &str) {
    println!(
        "  damage ({what}): {} corrupt records, {} torn tail bytes, {} missing segments",
        d.corrupt_records, d.torn_tail_bytes, d.missing_segments
    );
    for m in &d.messages {
        println!("  - {m}");
    }
}

fn inspect(path: &Path, sink: Option<&str>) -> anyhow::Result<()> {
    let config = load(Some(path))?;
    let buffers = disk_buffers(&config, sink)?;
    if buffers.is_empty() {
        println!("no sink has a disk buffer");
    }
    for (name, inspection) in buffers {
        println!("sink `{name}`:");
        let Some(i) = inspection else {
            println!("  no buffer files yet");
            continue;
        };
        println!("  directory: {}", i.dir.display());
        match i.acked {
            Some(p) => println!("  acknowledged up to: {p}"),
            None => println!("  acknowledged up to: nothing yet"),
        }
        println!("  records pending: {}", i.pending_records);
        println!("  segments: {} ({} bytes)", i.segments.len(), i.total_bytes);
        for s in &i.segments {
            println!("    {:020}.seg  {} bytes", s.id, s.bytes);
        }
        if i.is_damaged() {
            print_damage(&i.damage, "the next start skips it");
        } else {
            println!("  damage: none");
        }
    }
    Ok(())
}

fn run(path: Option<&Path>) -> anyhow::Result<()> {
    let config = load(path)?;
    auditrail::api::install_recorder();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("auditrail")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = auditrail::pipeline::start(config).await?;
        auditrail::systemd::notify("READY=1");
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "auditrail running");
        let result = running.run_until(signals()).await;
        auditrail::systemd::notify("STOPPING=1");
        result.map_err(anyhow::Error::from)
    })?;
    tracing::info!("auditrail stopped");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT; a second one exits at once.
async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("second signal: exiting without waiting for the drain (unacknowledged file input is read again on the next start)");
        std::process::exit(130);
    });
}
