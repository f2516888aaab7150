//! `[sources.NAME] type = "http"`: events POSTed to `/v1/events`.

use std::net::SocketAddr;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use serde::Deserialize;

/// Settings of the http source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Listen address, e.g. `"127.0.0.1:8686"`. Required.
    pub address: SocketAddr,
    /// Largest request body; a larger one is answered 413. Default `"10MiB"`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Largest single event. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// When set, requests must carry `Authorization: Bearer <token>`. Use `${VAR}` to keep it out of the file.
    #[serde(default)]
    pub token: Option<String>,
    /// How long a request waits for room in full `block` buffers before it is answered 503 with Retry-After.
    /// Default `"1s"`.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout: Interval,
}

fn default_max_body() -> ByteSize {
    ByteSize(10 << 20)
}
fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_accept_timeout() -> Interval {
    Interval(Duration::from_secs(1))
}

impl HttpSourceConfig {
    /// Checks limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes.0 == 0 || self.max_line_bytes.0 == 0 {
            return Err("`max_body_bytes` and `max_line_bytes` must be at least 1".into());
        }
        if self.token.as_deref() == Some("") {
            return Err(
                "`token` is empty: remove it to accept requests without a token, or set one".into(),
            );
        }
        Ok(())
    }
}
