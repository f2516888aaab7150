//! Sessions: the live-session registry (sid ↔ cgroup ↔ uid/pid) and the session cgroups the agent owns.
//!
//! Each recorded session runs in its own cgroup v2, `<cgroup2 mount>/auditrail/<sid>` (`[sessions] cgroup_parent` names the parent), so that host events can be
//! tied to it by cgroup id (what `bpf_get_current_cgroup_id` returns: the directory's inode number). The
//! recorder runs as the logged-in user, who may not create cgroups; the agent, which runs as root, does it for
//! it: the recorder connects to the agent's sessions socket and asks for its sid ([`client`]); the agent takes
//! the caller's pid and uid from the kernel (`SO_PEERCRED`), so a caller can only ever move itself, creates the
//! cgroup, moves that pid in, and replies with the id ([`server`]). The connection stays open for the session's
//! lifetime; when it closes the agent removes the cgroup once its last process is gone ([`cgroup`]). See
//! docs/sessions.md.

pub mod cgroup;
pub mod client;
pub mod config;
pub mod directory;
pub mod mountinfo;
pub mod registry;
pub mod server;
pub mod shared_dirs;
pub mod sid;

pub use client::{join_session_cgroup, JoinError, JoinedCgroup, SessionCgroupGuard};
pub use config::SessionsConfig;
pub use registry::{Registry, SessionEntry};
