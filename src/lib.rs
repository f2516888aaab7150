//! auditrail: a node agent and forwarder for security audit data.
//!
//! The binary (`main.rs`) is a thin CLI over this library: [`config`] loads and checks the TOML file,
//! [`pipeline`] runs sources → buffers → sinks, [`api`] serves metrics and health,
//! [`recording`] is `auditrail record` (the session recorder), [`play`] its players, [`uploader`] is
//! `auditrail upload` (ships finished recordings to object storage).

pub mod api;
pub mod config;
pub mod integrity;
pub mod pipeline;
pub mod play;
pub mod recording;
pub mod sessions;
pub mod sources;
pub mod systemd;
pub mod unix_connect;
pub mod uploader;
pub mod verify;
