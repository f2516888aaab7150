//! Errors of the disk buffer. Only what makes a buffer directory unusable is an error; damaged records, torn
//! tails, missing segments and a damaged cursor are skipped, counted and reported in
//! [`super::Recovery`] instead.

use std::io;
use std::path::PathBuf;

/// Why a disk buffer could not be opened or inspected. Every variant names the file or directory and the cause.
#[derive(Debug, thiserror::Error)]
pub enum DiskBufferError {
    /// The buffer directory does not exist and cannot be created.
    #[error("cannot create the disk buffer directory {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The buffer directory cannot be opened or listed.
    #[error("cannot read the disk buffer directory {}: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A segment file exists but cannot be read.
    #[error("cannot read the disk buffer segment {}: {source}", path.display())]
    ReadSegment {
        /// The segment file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A segment (or the directory) left by a previous run cannot be made durable at open.
    #[error(
        "cannot fsync {} while opening the disk buffer (the disk may be failing): {source}",
        path.display()
    )]
    Sync {
        /// The segment file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The cursor file exists but cannot be read (a cursor that reads but is damaged is not an error).
    #[error("cannot read the disk buffer cursor {}: {source}", path.display())]
    ReadCursor {
        /// The cursor file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock file cannot be created or locked.
    #[error("cannot lock the disk buffer directory with {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another buffer (in this or another process) has the directory open.
    #[error(
        "the disk buffer directory {} is in use by another auditrail buffer (its lock file is held); \
         give every sink its own data directory, or stop the other process",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// `open` was called outside a tokio runtime.
    #[error("the disk buffer in {} must be opened inside a tokio runtime", dir.display())]
    NoRuntime {
        /// The directory.
        dir: PathBuf,
    },
    /// A thread of the buffer could not be started.
    #[error("cannot start the {what} thread of the disk buffer in {}: {source}", dir.display())]
    Spawn {
        /// The directory.
        dir: PathBuf,
        /// Which thread.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
}
