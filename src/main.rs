//! The `auditrail` command line: `run`, `validate`, `--version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use auditrail::config::{self, Config};
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
    /// Check a config file without starting anything; exits non-zero with the problem.
    Validate {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => run(config.as_deref()),
        Command::Validate { config } => validate(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AUDITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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

fn validate(path: &Path) -> anyhow::Result<()> {
    let config = load(Some(path))?;
    println!(
        "{}: ok ({} sources, {} sinks)",
        path.display(),
        config.sources.len(),
        config.sinks.len()
    );
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
