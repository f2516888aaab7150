//! What every HTTP sink does the same way on the wire: one reqwest client (rustls, keep-alive pool, timeouts,
//! an extra CA file), error texts that keep their causes, `Retry-After`, and response bodies read up to a
//! bound and no further.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderValue;

use crate::SinkConfigError;

/// Longest part of an error body kept in a log line or dead-letter record.
pub const MAX_ERROR_BODY: usize = 2048;

/// How the shared client is set up; each sink fills it from its own config.
pub struct ClientSettings<'a> {
    /// Longest wait for one request (connect, send, response).
    pub request_timeout: Duration,
    /// Idle connections are kept open for reuse this long.
    pub keepalive_idle_timeout: Duration,
    /// Idle connections kept per host (the sink's concurrency).
    pub max_idle_per_host: usize,
    /// PEM file of extra CA certificates, trusted besides the system's roots.
    pub ca_file: Option<&'a Path>,
    /// Whether the server certificate is checked.
    pub verify_certificate: bool,
}

fn cfg_err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

/// The HTTP client of one sink, shared by all its endpoints (one CA file read, one connection pool).
pub fn client(s: &ClientSettings<'_>) -> Result<reqwest::Client, SinkConfigError> {
    let mut builder = reqwest::Client::builder()
        .timeout(s.request_timeout)
        .connect_timeout(s.request_timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(s.keepalive_idle_timeout)
        .pool_max_idle_per_host(s.max_idle_per_host)
        .tcp_keepalive(Duration::from_secs(60))
        .tcp_nodelay(true)
        .user_agent(concat!("auditrail/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = s.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            cfg_err(
                "tls",
                format!("cannot read ca_file `{}`: {e}", ca.display()),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            cfg_err(
                "tls",
                format!("ca_file `{}` is not PEM certificates: {e}", ca.display()),
            )
        })?;
        if certs.is_empty() {
            return Err(cfg_err(
                "tls",
                format!("ca_file `{}` holds no certificate", ca.display()),
            ));
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    if !s.verify_certificate {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| {
        cfg_err(
            "tls",
            format!("cannot set up the HTTP client: {}", error_chain(&e)),
        )
    })
}

/// `error` and every error it was caused by, joined: reqwest's own message alone omits the cause
/// ("error sending request" without "connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut cur = error.source();
    while let Some(e) = cur {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = e.source();
    }
    s
}

/// `text` trimmed and cut to [`MAX_ERROR_BODY`] bytes (on a character boundary).
pub fn cut(text: &str) -> String {
    if text.len() <= MAX_ERROR_BODY {
        return text.trim().to_string();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text[..end].trim())
}

/// A `Retry-After` in seconds (the HTTP-date form is not used by these servers), at most an hour.
pub fn retry_after(h: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = h?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// A marked-sensitive header value (reqwest and hyper then never print it).
pub fn sensitive(field: &'static str, value: &str) -> Result<HeaderValue, SinkConfigError> {
    let mut h = HeaderValue::from_str(value).map_err(|_| {
        cfg_err(
            field,
            "the credential holds characters that cannot go in an HTTP header",
        )
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// How a response body could not be had.
#[derive(Debug)]
pub enum ReadError {
    /// The connection failed while reading.
    Transport(String),
    /// Longer than the bound.
    TooLarge(usize),
}

impl ReadError {
    /// The log text, starting with the endpoint's URL.
    pub fn describe(&self, base: &reqwest::Url) -> String {
        match self {
            ReadError::Transport(why) => format!("{base}: reading the response: {why}"),
            ReadError::TooLarge(max) => format!(
                "{base}: the response is larger than max_response_bytes ({max} bytes); not read, the request is retried (raise max_response_bytes if this node's answers are legitimately that big)"
            ),
        }
    }
}

/// Reads `resp`'s body, at most `max` bytes of it, whatever its `Content-Length` says.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = bytes::BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(ReadError::TooLarge(max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(ReadError::Transport(error_chain(&e))),
        }
    }
}
