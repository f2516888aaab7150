//! `[dead_letter]`: how much disk each component's dead-letter files may take.
//!
//! Dead-lettered input is attacker-shaped (anyone who can write a log line or POST a body decides how much of it
//! is invalid), so the files that keep it are bounded: each component writes `<name>.ndjson` until it reaches
//! `max_size`, then rotates it to `<name>.ndjson.1` (shifting older ones up), keeping `max_files` files in all;
//! the records of the file removed by rotation are lost, and counted, logged and reported as such.

use serde::Deserialize;

use crate::units::ByteSize;

/// Limits of one component's dead-letter files.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Size at which a dead-letter file is rotated: a record that would take the file past it starts a new
    /// file. A single record larger than this goes alone in its own file (records are at most about 1 MiB of
    /// data, see [`super::MAX_RAW_BYTES`]), so a file exceeds `max_size` only by holding one such record.
    /// Default `"16MiB"`; at least `"4KiB"`.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Files kept per component, the one being written included (`<name>.ndjson`, `<name>.ndjson.1`, …
    /// `<name>.ndjson.<max_files - 1>`). The disk one component's dead letters may take is about
    /// `max_size × max_files`. Default `4` (64 MiB per component with the default `max_size`); at least `1`
    /// (then rotation removes the file being written).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

/// The smallest `max_size` accepted: below it, nearly every record would rotate a file.
pub const MIN_MAX_SIZE: u64 = 4 << 10;

fn default_max_size() -> ByteSize {
    ByteSize(16 << 20)
}

fn default_max_files() -> u32 {
    4
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            max_size: default_max_size(),
            max_files: default_max_files(),
        }
    }
}

impl DeadLetterConfig {
    /// What serde cannot check: the bounds of `max_size` and `max_files`, as a message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_size.0 < MIN_MAX_SIZE {
            return Err(format!(
                "`max_size` must be at least {MIN_MAX_SIZE} bytes (\"4KiB\"), got {}",
                self.max_size.0
            ));
        }
        if self.max_files == 0 {
            return Err(
                "`max_files` must be at least 1 (the file being written counts as one)".into(),
            );
        }
        Ok(())
    }
}
