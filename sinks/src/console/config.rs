//! `[sinks.NAME] type = "console"`.

use serde::Deserialize;

/// Which standard stream the console sink writes to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleTarget {
    /// Standard output (default).
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// Settings of the console sink.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// `"stdout"` (default) or `"stderr"`.
    #[serde(default)]
    pub target: ConsoleTarget,
}
