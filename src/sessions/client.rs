//! The recorder's side of the sessions socket: [`join_session_cgroup`] puts the calling process into its
//! session's cgroup. Blocking std code (the recorder is not async), bounded by the caller's timeout.
//!
//! Normally it asks the agent (which runs as root) over the sessions socket and keeps the connection open in the
//! returned [`SessionCgroupGuard`]; the agent removes the cgroup once the connection closes and the cgroup is
//! empty. When the agent cannot be reached and the caller is root, it creates and joins the cgroup itself; the
//! guard then, on drop, moves the process back to the cgroup it came from and removes the session's cgroup if
//! nothing else is left in it (children that outlive the recorder keep it; the agent's sweep removes it later).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::{self, CgroupRoot};
use super::sid;

/// The cgroup the caller is now in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedCgroup {
    /// The cgroup id (its directory's inode number; what eBPF's `bpf_get_current_cgroup_id` returns).
    pub id: u64,
    /// Its directory.
    pub path: PathBuf,
}

/// Why the caller is not in a session cgroup. The session goes on without one; `session.start` carries
/// `cgroup_id: null` and this message as `cgroup_error`.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The sid is not `[A-Za-z0-9_-]{1,128}`.
    #[error("invalid sid: {0}")]
    InvalidSid(#[from] sid::InvalidSid),
    /// The agent's sessions socket cannot be reached, and the caller is not root (so cannot make the cgroup).
    #[error("cannot reach the agent's sessions socket {socket}: {source} (is the agent running with [sessions] configured?)")]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The agent answered with an error.
    #[error("the agent refused the session cgroup: {0}")]
    Refused(String),
    /// The agent's answer could not be read or understood.
    #[error("bad answer from the agent on {socket}: {message}")]
    Protocol {
        /// The socket.
        socket: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The agent was unreachable and creating the cgroup directly (as root) failed too.
    #[error("cannot reach the agent's sessions socket {socket} ({unreachable}), and creating the cgroup directly failed: {direct}")]
    Direct {
        /// The socket.
        socket: PathBuf,
        /// Why the agent was not reached.
        unreachable: io::Error,
        /// Why the direct way failed.
        direct: String,
    },
}

/// Keeps the session's cgroup for as long as it lives. Drop it when the session is over.
#[derive(Debug)]
pub struct SessionCgroupGuard {
    kind: GuardKind,
}

#[derive(Debug)]
enum GuardKind {
    /// The open connection to the agent: closing it tells the agent the session is over.
    Agent(#[allow(dead_code)] UnixStream),
    /// Made without the agent.
    Direct {
        path: PathBuf,
        /// The cgroup directory the process came from.
        back_to: Option<PathBuf>,
    },
}

impl SessionCgroupGuard {
    /// Whether the agent made the cgroup (false: made directly, as root, without the agent).
    pub fn via_agent(&self) -> bool {
        matches!(self.kind, GuardKind::Agent(_))
    }
}

impl Drop for SessionCgroupGuard {
    fn drop(&mut self) {
        if let GuardKind::Direct { path, back_to } = &self.kind {
            if let Some(back) = back_to {
                let _ = cgroup::move_pid(back, std::process::id());
            }
            // Busy while children of the session still run there: the agent's sweep removes it later.
            let _ = cgroup::remove(path);
        }
    }
}

/// Puts the calling process into the session's own cgroup v2 (asking the agent over `socket`; or, when the
/// caller is root and the agent is unreachable, creating it directly). The returned guard keeps the agent
/// connection open for the session's lifetime (the agent removes the cgroup when it closes).
pub fn join_session_cgroup(
    socket: &Path,
    sid: &str,
    timeout: Duration,
) -> Result<(JoinedCgroup, SessionCgroupGuard), JoinError> {
    sid::validate(sid)?;
    let deadline = Instant::now() + timeout;
    let stream = match crate::unix_connect::connect_before(socket, deadline) {
        Ok(s) => s,
        Err(unreachable) => {
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                return Err(JoinError::Unreachable {
                    socket: socket.to_path_buf(),
                    source: unreachable,
                });
            }
            return join_directly(sid).map_err(|direct| JoinError::Direct {
                socket: socket.to_path_buf(),
                unreachable,
                direct,
            });
        }
    };
    ask(stream, socket, sid, deadline)
}

fn ask(
    mut stream: UnixStream,
    socket: &Path,
    sid: &str,
    deadline: Instant,
) -> Result<(JoinedCgroup, SessionCgroupGuard), JoinError> {
    let protocol = |message: String| JoinError::Protocol {
        socket: socket.to_path_buf(),
        message,
    };
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(left()))
        .map_err(|e| protocol(e.to_string()))?;
    let request = format!("{}\n", serde_json::json!({ "sid": sid }));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| protocol(format!("sending the request: {e}")))?;
    let mut reply = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        if memchr::memchr(b'\n', &reply).is_some() {
            break;
        }
        if reply.len() > 4096 {
            return Err(protocol("reply longer than 4096 bytes".into()));
        }
        stream
            .set_read_timeout(Some(left()))
            .map_err(|e| protocol(e.to_string()))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(protocol(
                    "the agent closed the connection without answering".into(),
                ))
            }
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(protocol("no answer within the timeout".into()))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(protocol(format!("reading the answer: {e}"))),
        }
    }
    let line = &reply[..memchr::memchr(b'\n', &reply).unwrap_or(reply.len())];
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| protocol(format!("not JSON: {e}")))?;
    if let Some(message) = v.get("error") {
        return Err(JoinError::Refused(
            message
                .as_str()
                .map_or_else(|| message.to_string(), str::to_string),
        ));
    }
    let id = v
        .get("cgroup_id")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| protocol(format!("no cgroup_id in {v}")))?;
    let path = v
        .get("path")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| protocol(format!("no path in {v}")))?;
    // The connection now only marks the session's lifetime: no timeout on it.
    let _ = stream.set_read_timeout(None);
    Ok((
        JoinedCgroup {
            id,
            path: PathBuf::from(path),
        },
        SessionCgroupGuard {
            kind: GuardKind::Agent(stream),
        },
    ))
}

/// Root without the agent: create the cgroup and move ourselves in.
fn join_directly(sid: &str) -> Result<(JoinedCgroup, SessionCgroupGuard), String> {
    let root = CgroupRoot::discover().map_err(|e| e.to_string())?;
    let back_to = cgroup::own_cgroup()
        .ok()
        .map(|rel| root.mount().join(rel.trim_start_matches('/')));
    let (path, _) = root.create(sid).map_err(|e| e.to_string())?;
    cgroup::move_pid(&path, std::process::id()).map_err(|e| {
        let _ = cgroup::remove(&path);
        e.to_string()
    })?;
    let id = cgroup::id(&path).map_err(|e| e.to_string())?;
    Ok((
        JoinedCgroup {
            id,
            path: path.clone(),
        },
        SessionCgroupGuard {
            kind: GuardKind::Direct { path, back_to },
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A one-shot agent stand-in: reads the request line, answers `reply`, returns what it read.
    fn fake_agent(
        reply: &'static str,
    ) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
                got.push(b[0]);
            }
            s.write_all(reply.as_bytes()).unwrap();
            // Hold the connection until the client closes it.
            let _ = s.read(&mut b);
            String::from_utf8(got).unwrap()
        });
        (dir, path, h)
    }

    #[test]
    fn asks_and_reads_the_answer() {
        let (_d, path, h) = fake_agent("{\"cgroup_id\":4242,\"path\":\"/cg/auditrail/s1\"}\n");
        let (joined, guard) = join_session_cgroup(&path, "s1", Duration::from_secs(5)).unwrap();
        assert_eq!(
            joined,
            JoinedCgroup {
                id: 4242,
                path: "/cg/auditrail/s1".into()
            }
        );
        assert!(guard.via_agent());
        drop(guard);
        assert_eq!(h.join().unwrap(), r#"{"sid":"s1"}"#);
    }

    #[test]
    fn refusals_carry_the_agents_reason() {
        let (_d, path, _h) =
            fake_agent("{\"error\":\"uid 1000 already has max_per_uid = 64 sessions\"}\n");
        let e = join_session_cgroup(&path, "s2", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, JoinError::Refused(_)));
        assert!(e.to_string().contains("max_per_uid"), "{e}");
    }

    #[test]
    fn garbage_answers_and_silence_are_errors() {
        let (_d, path, _h) = fake_agent("not json\n");
        let e = join_session_cgroup(&path, "s3", Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, JoinError::Protocol { .. }), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("silent.sock");
        let _l = UnixListener::bind(&p).unwrap();
        let t = Instant::now();
        let e = join_session_cgroup(&p, "s4", Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn bad_sids_are_refused_before_connecting() {
        let e = join_session_cgroup(Path::new("/nonexistent"), "../x", Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, JoinError::InvalidSid(_)), "{e}");
    }

    #[test]
    fn an_absent_agent_is_unreachable_for_users() {
        if unsafe { libc::geteuid() } == 0 {
            println!(
                "root: the direct way applies instead (see root_joins_directly_without_the_agent)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let e = join_session_cgroup(&dir.path().join("none.sock"), "s5", Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, JoinError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("none.sock"), "{e}");
    }

    /// Runs [`direct_child`] in a process of its own (joining moves the whole process, and this one runs other
    /// tests), and checks what it saw.
    #[test]
    fn root_joins_directly_without_the_agent() {
        if unsafe { libc::geteuid() } != 0 || CgroupRoot::discover().is_err() {
            println!("not root or no cgroup2: direct join not tested");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sessions::client::tests::direct_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AUDITRAIL_DIRECT_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sid = text
            .lines()
            .find_map(|l| l.strip_prefix("sid="))
            .expect("child printed its sid");
        let inside = text
            .lines()
            .find_map(|l| l.strip_prefix("inside="))
            .unwrap();
        assert_eq!(inside, format!("/auditrail/{sid}"), "{text}");
        let after = text.lines().find_map(|l| l.strip_prefix("after=")).unwrap();
        assert_ne!(after, inside, "the guard moved the process back");
        assert!(text.contains("id_matches_inode=true"), "{text}");
        assert!(text.contains("removed=true"), "{text}");
    }

    #[test]
    #[ignore = "run by root_joins_directly_without_the_agent in its own process"]
    fn direct_child() {
        if std::env::var_os("AUDITRAIL_DIRECT_CHILD").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sid = format!("direct-{}", std::process::id());
        println!("\nsid={sid}");
        let (joined, guard) =
            join_session_cgroup(&dir.path().join("none.sock"), &sid, Duration::from_secs(1))
                .unwrap();
        assert!(!guard.via_agent());
        println!("inside={}", cgroup::own_cgroup().unwrap());
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&joined.path).unwrap());
        println!("id_matches_inode={}", ino == joined.id);
        drop(guard);
        println!("after={}", cgroup::own_cgroup().unwrap());
        println!("removed={}", !joined.path.exists());
    }
}
