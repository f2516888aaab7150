//! `auditrail record`: the session recorder (node and proxy modes), its files and its audit events.
//!
//! A session is: settle the settings ([`config`] + flags) and who it is ([`events::Identity`]); start event
//! delivery ([`sender`], which first drains old [`spool`] files); join the session's cgroup
//! ([`crate::sessions::client`]); emit `session.start`; run the program — in a PTY, recorded into
//! [`store`] through the asciicast encoder ([`cast`]) by the loop in [`session`], or, for a non-interactive
//! `ssh host cmd` in node mode, without a PTY and with its stdio untouched ([`exec`]); emit `session.end`
//! (or `exec`); pass the exit status through. Nothing about recording or delivery may stop the user's
//! session, except `when_full = "terminate"`, which is asked for.

pub mod cast;
pub mod config;
pub mod events;
mod exec;
pub mod index_after;
pub mod pty;
pub mod sender;
pub mod session;
pub mod spool;
pub mod store;
pub mod terminal;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use auditrail_core::units::ByteSize;
use serde_json::Value;

use config::{CastFormat, Mode, RecordingConfig, WhenFull};
use events::{EventLine, Identity};
use sender::Sender;

/// `auditrail record [OPTIONS] -- CMD [ARGS…]`.
#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The agent's config file; its `data_dir` and `[recording]` table are used (flags override them).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Session id (`[A-Za-z0-9_-]{1,128}`); default a new UUIDv7.
    #[arg(long)]
    pub sid: Option<String>,
    /// Recordings directory; default `<data_dir>/recordings`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The agent's unix source socket; default `<data_dir>/events.sock`.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The agent's sessions socket (cgroups); default `<data_dir>/sessions.sock`.
    #[arg(long)]
    pub sessions_socket: Option<PathBuf>,
    /// `server_id` of the events; default the host name (proxy mode: the ssh target).
    #[arg(long)]
    pub server_id: Option<String>,
    /// `node` (ForceCommand on the server) or `proxy` (on a bastion, around `ssh target`).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// asciicast version of the `.cast` file.
    #[arg(long, value_enum)]
    pub cast_format: Option<CastFormat>,
    /// Record keystrokes too (`"i"` events).
    #[arg(long)]
    pub record_input: bool,
    /// Most bytes this session may put on disk (`.raw` + `.cast`), e.g. `1GiB`.
    #[arg(long, value_parser = ByteSize::parse)]
    pub max_bytes: Option<ByteSize>,
    /// Free space to keep on the recordings file system, e.g. `256MiB`.
    #[arg(long, value_parser = ByteSize::parse)]
    pub min_free_bytes: Option<ByteSize>,
    /// What a full recording does.
    #[arg(long, value_enum)]
    pub when_full: Option<WhenFull>,
    /// The program and its arguments (default: the login shell; node mode runs `SSH_ORIGINAL_COMMAND`).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Everything a session needs, settled.
struct Settings {
    rec: RecordingConfig,
    dir: PathBuf,
    socket: PathBuf,
    sessions_socket: PathBuf,
}

/// Runs `auditrail record`; the exit status is the program's (128 + N for signal N), or 1/2 for the
/// recorder's own errors before the program started.
pub fn main(args: RecordArgs) -> ExitCode {
    match record(args) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("auditrail record: {e}");
            ExitCode::from(2)
        }
    }
}

/// A sid names files and cgroups: only `[A-Za-z0-9_-]{1,128}`.
pub fn valid_sid(sid: &str) -> bool {
    (1..=128).contains(&sid.len())
        && sid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn settings(args: &RecordArgs) -> Result<Settings, String> {
    let (data_dir, mut rec) = match &args.config {
        Some(p) => config::load(p).map_err(|e| e.to_string())?,
        None => (
            PathBuf::from(config::DEFAULT_DATA_DIR),
            RecordingConfig::defaults(),
        ),
    };
    if let Some(v) = &args.dir {
        rec.dir = Some(v.clone());
    }
    if let Some(v) = &args.socket {
        rec.socket = Some(v.clone());
    }
    if let Some(v) = &args.sessions_socket {
        rec.sessions_socket = Some(v.clone());
    }
    if let Some(v) = &args.server_id {
        rec.server_id = Some(v.clone());
    }
    if let Some(v) = args.mode {
        rec.mode = v;
    }
    if let Some(v) = args.cast_format {
        rec.cast_format = v;
    }
    if args.record_input {
        rec.record_input = true;
    }
    if let Some(v) = args.max_bytes {
        rec.max_bytes = v;
    }
    if let Some(v) = args.min_free_bytes {
        rec.min_free_bytes = v;
    }
    if let Some(v) = args.when_full {
        rec.when_full = v;
    }
    rec.validate()
        .map_err(|(field, m)| format!("recording `{field}`: {m}"))?;
    Ok(Settings {
        dir: rec.dir_in(&data_dir),
        socket: rec
            .socket
            .clone()
            .unwrap_or_else(|| data_dir.join("events.sock")),
        sessions_socket: rec
            .sessions_socket
            .clone()
            .unwrap_or_else(|| data_dir.join("sessions.sock")),
        rec,
    })
}

/// The host an `ssh` command line connects to: its first operand, without `user@` (and `ssh://`, `:port`).
pub fn ssh_target(args: &[String]) -> Option<String> {
    const WITH_VALUE: &str = "BbcDEeFIiJLlmOoPpQRSWw";
    let mut it = args.iter();
    let first = it.next()?;
    if first.rsplit('/').next() != Some("ssh") {
        return None;
    }
    while let Some(a) = it.next() {
        if a == "--" {
            return it.next().map(|h| host_of(h));
        }
        if let Some(opts) = a.strip_prefix('-') {
            // `-p22` carries its value; `-p 22` takes the next argument.
            for (i, c) in opts.char_indices() {
                if WITH_VALUE.contains(c) {
                    if i + c.len_utf8() == opts.len() {
                        it.next();
                    }
                    break;
                }
            }
            continue;
        }
        return Some(host_of(a));
    }
    None
}

fn host_of(arg: &str) -> String {
    let a = arg.strip_prefix("ssh://").unwrap_or(arg);
    let a = a.rsplit('@').next().unwrap_or(a);
    let a = if a.starts_with('[') {
        a.trim_start_matches('[').split(']').next().unwrap_or(a)
    } else if arg.starts_with("ssh://") {
        a.split(':').next().unwrap_or(a)
    } else {
        a
    };
    a.to_string()
}

/// How the session runs.
enum Plan {
    /// In a PTY, recorded.
    Pty { cmd: Command, command: String },
    /// Without a PTY, stdio passed through (node mode, `ssh host cmd` without a tty).
    Exec { cmd: Command, command: String },
}

fn plan(mode: Mode, args: &[String], shell: &str, sid: &str) -> Result<Plan, String> {
    let ssh_command = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let tty = rustix::termios::isatty(rustix::stdio::stdin());
    let make = |program: &str, rest: &[&str]| {
        let mut c = Command::new(program);
        c.args(rest).env("AUDITRAIL_SID", sid);
        c
    };
    match mode {
        Mode::Node => {
            if let Some(sc) = ssh_command {
                let cmd = make(shell, &["-c", &sc]);
                if !tty || std::env::var_os("SSH_TTY").is_none() {
                    return Ok(Plan::Exec { cmd, command: sc });
                }
                return Ok(Plan::Pty { cmd, command: sc });
            }
            if args.is_empty() {
                let mut cmd = make(shell, &[]);
                // A login shell, as sshd starts it: argv[0] is "-" + its name.
                let name = shell.rsplit('/').next().unwrap_or(shell);
                std::os::unix::process::CommandExt::arg0(&mut cmd, format!("-{name}"));
                return Ok(Plan::Pty {
                    cmd,
                    command: shell.to_string(),
                });
            }
            let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            Ok(Plan::Pty {
                cmd: make(&args[0], &rest),
                command: args.join(" "),
            })
        }
        Mode::Proxy => {
            if args.is_empty() {
                return Err("proxy mode needs the command to record: auditrail record --mode proxy -- ssh TARGET".into());
            }
            let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            Ok(Plan::Pty {
                cmd: make(&args[0], &rest),
                command: args.join(" "),
            })
        }
    }
}

fn record(args: RecordArgs) -> Result<i32, String> {
    let s = settings(&args)?;
    let sid = match &args.sid {
        Some(sid) if valid_sid(sid) => sid.clone(),
        Some(sid) => {
            return Err(format!(
                "`--sid {sid}` is not a valid session id: use 1 to 128 of A-Z a-z 0-9 _ -"
            ))
        }
        None => uuid::Uuid::now_v7().to_string(),
    };
    let account = events::account();
    let server_id = match (&s.rec.server_id, s.rec.mode) {
        (Some(id), _) => id.clone(),
        (None, Mode::Proxy) => ssh_target(&args.command).ok_or_else(|| {
            "proxy mode: cannot tell the target host from the command; give --server-id".to_string()
        })?,
        (None, Mode::Node) => events::hostname(),
    };
    let id = Identity {
        sid: sid.clone(),
        user: std::env::var("AUDITRAIL_USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| account.login.clone()),
        login: account.login.clone(),
        server_id,
        server_hostname: events::hostname(),
        addr: events::ssh_addresses(std::env::var("SSH_CONNECTION").ok().as_deref()),
    };
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| account.shell.clone());
    let plan = plan(s.rec.mode, &args.command, &account.shell, &sid)?;
    let signals = terminal::Signals::install().map_err(|e| format!("signal handlers: {e}"))?;

    match plan {
        Plan::Exec { cmd, command } => {
            let sender = Sender::start(s.socket.clone(), Some(s.dir.join("spool")), id.clone());
            let (cgroup, _guard) = join_cgroup(&s, &sid);
            let _ = cgroup;
            let code = exec::run(cmd, &signals);
            let code_value = match &code {
                Ok(c) => *c,
                Err(_) => 127,
            };
            sender.send(
                EventLine::new("exec", "T3002I", &id)
                    .field("command", command)
                    .field("exitCode", code_value.to_string())
                    .line(),
            );
            sender.finish(Duration::from_secs(3));
            code.map_err(|e| format!("cannot start the command: {e}"))
        }
        Plan::Pty { cmd, command } => {
            // The recordings directory first: the spool lives in it.
            let store =
                store::Store::create(&s.dir, &sid, s.rec.max_bytes.0, s.rec.min_free_bytes.0);
            let store = match store {
                Ok(st) => Ok(st),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(format!(
                    "session {sid} is already recorded in {}: {e}; a session id is never reused",
                    s.dir.display()
                ))
                }
                Err(e) => Err(e),
            };
            let spool_dir = store.as_ref().ok().map(|_| s.dir.join("spool"));
            let sender = Sender::start(s.socket.clone(), spool_dir, id.clone());
            let store = match store {
                Ok(st) => Some(st),
                Err(e) => {
                    let reason = format!("recordings directory {} unusable: {e}", s.dir.display());
                    sender.send(
                        EventLine::new("auditrail.recording", "AR1003W", &id)
                            .field("kind", "error")
                            .field("reason", reason.as_str())
                            .line(),
                    );
                    if s.rec.when_full == WhenFull::Terminate {
                        sender.finish(Duration::from_secs(3));
                        return Err(format!(
                            "{reason}; not starting the session (when_full = \"terminate\")"
                        ));
                    }
                    None
                }
            };
            let (cgroup, _guard) = join_cgroup(&s, &sid);
            let size = terminal::window_size();
            let mut start = EventLine::new("session.start", "T2000I", &id)
                .field("size", format!("{}:{}", size.ws_col, size.ws_row))
                .field("interactive", true)
                .field("session_recording", s.rec.mode.as_str());
            start = match &cgroup {
                Ok(id) => start.field("cgroup_id", *id),
                Err(why) => start
                    .field("cgroup_id", Value::Null)
                    .field("cgroup_error", why.as_str()),
            };
            let started_at = chrono::Utc::now();
            sender.send(start.line());
            let term = std::env::var("TERM").ok();
            let encoder = cast::CastEncoder::new(s.rec.cast_format);
            let mut header = Vec::new();
            encoder.header(
                &cast::Header {
                    width: size.ws_col,
                    height: size.ws_row,
                    timestamp: started_at.timestamp(),
                    term: term.as_deref(),
                    shell: Some(&shell),
                    command: &command,
                },
                &mut header,
            );
            let mut rec = session::Recorder::new(
                store,
                encoder,
                &sender,
                &id,
                session::Limits {
                    checkpoint_bytes: s.rec.checkpoint_bytes.0,
                    checkpoint_interval: s.rec.checkpoint_interval.0,
                    when_full: s.rec.when_full,
                    record_input: s.rec.record_input,
                },
            );
            rec.header(&header);
            let (outcome, bytes_written, d, truncated) = match session::start(cmd, signals) {
                Ok((mut running, _, _)) => {
                    let o = session::run(&mut running, rec);
                    drop(running.raw.take());
                    (
                        o.exit.map_err(|e| format!("the session failed: {e}")),
                        o.bytes_written,
                        o.digests,
                        o.truncated,
                    )
                }
                Err(e) => {
                    let (d, t) = rec.finish(127);
                    (Err(format!("cannot start `{command}`: {e}")), 0, d, t)
                }
            };
            let exit = *outcome.as_ref().unwrap_or(&127);
            let mut end = EventLine::new("session.end", "T2004I", &id)
                .field("session_start", events::rfc3339(started_at))
                .field("session_stop", events::now())
                .field("interactive", true)
                .field("participants", vec![id.user.clone()])
                .field("exit_code", exit)
                .field("bytes_written", bytes_written)
                .digests(&d)
                .field("truncated", truncated.is_some());
            if let Some(t) = truncated {
                end = end.field("truncated_reason", t);
            }
            sender.send(end.line());
            sender.finish(Duration::from_secs(3));
            // After session.end is handed over: the seek index, built apart from this process.
            index_after::spawn(&s.dir, &sid);
            outcome
        }
    }
}

/// Joins the session cgroup before the program starts (the program inherits it); the guard lives as long
/// as the session.
fn join_cgroup(
    s: &Settings,
    sid: &str,
) -> (
    Result<u64, String>,
    Option<crate::sessions::client::SessionCgroupGuard>,
) {
    match crate::sessions::client::join_session_cgroup(
        &s.sessions_socket,
        sid,
        Duration::from_secs(2),
    ) {
        Ok((joined, guard)) => (Ok(joined.id), Some(guard)),
        Err(e) => (Err(e.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_ssh_target_is_the_first_operand() {
        assert_eq!(ssh_target(&v(&["ssh", "db1"])), Some("db1".into()));
        assert_eq!(
            ssh_target(&v(&[
                "/usr/bin/ssh",
                "-p",
                "2222",
                "-A",
                "alice@db1.example",
                "uptime"
            ])),
            Some("db1.example".into())
        );
        assert_eq!(
            ssh_target(&v(&["ssh", "-p2222", "-oStrictHostKeyChecking=no", "db2"])),
            Some("db2".into())
        );
        assert_eq!(
            ssh_target(&v(&["ssh", "ssh://bob@db3:22"])),
            Some("db3".into())
        );
        assert_eq!(ssh_target(&v(&["mosh", "db1"])), None);
        assert_eq!(ssh_target(&v(&["ssh", "-v"])), None);
    }

    #[test]
    fn sids_that_could_name_other_files_are_refused() {
        assert!(valid_sid("0192f1c4-aaaa_b"));
        assert!(!valid_sid("../x"));
        assert!(!valid_sid(""));
        assert!(!valid_sid(&"a".repeat(129)));
    }
}
