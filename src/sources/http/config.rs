//! `[sources.NAME] type = "http"`: events POSTed to `/v1/events`, and the limits that keep a slow, greedy or
//! unauthenticated client from costing the agent more than a few bytes and a bounded time.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use auditrail_core::Secret;
use serde::Deserialize;

/// Settings of the http source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Listen address, e.g. `"127.0.0.1:8686"`. Required. A non-loopback address needs `token`, `tls` with a
    /// `client_ca_file`, or `allow_unauthenticated = true`.
    pub address: SocketAddr,
    /// Largest request body; a larger one is answered 413. Default `"10MiB"`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Largest single event. Default `"1MiB"`.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: ByteSize,
    /// When set, requests must carry `Authorization: Bearer <token>`; it is checked on the headers, before a
    /// byte of the body is read. Use `${VAR}` to keep it out of the file. Never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Accept requests without a token or client certificate on a non-loopback address. Default `false`:
    /// such a config is refused, so an open ingestion port is always a decision written down.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// How long a request waits for room in full `block` buffers before it is answered 503 with Retry-After.
    /// Default `"1s"`.
    #[serde(default = "default_accept_timeout")]
    pub accept_timeout: Interval,
    /// Most connections open at once. At the cap a new connection displaces the one that has waited longest
    /// without sending a complete request head (never one whose request is being served); when none is idle it
    /// is closed at once. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time a new connection gets to complete its TLS handshake (with `tls`) and send a complete request
    /// head; a slower one (slowloris) is closed. Default `"10s"`.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: Interval,
    /// Time a request gets to send its whole body once its head is in; a slower one is answered 408 and
    /// closed. Default `"30s"`.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout: Interval,
    /// How long a kept-alive connection may sit idle between requests before it is closed. Default `"30s"`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Interval,
    /// Requests per client IP address; over it a request is answered 429 with Retry-After before its body
    /// is read. Default 1000 per second with bursts of 2000 (every local client shares 127.0.0.1).
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Serve HTTPS. Without it the source speaks plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `rate_limit = { per_second = 1000, burst = 2000 }`: a token bucket per client IP address.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second one client IP may send. Default 1000.
    #[serde(default = "default_per_second")]
    pub per_second: NonZeroU32,
    /// Requests one client IP may send at once above the sustained rate. Default 2000.
    #[serde(default = "default_burst")]
    pub burst: NonZeroU32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

/// `tls = { cert_file = "...", key_file = "...", client_ca_file = "..." }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then any intermediates. Required.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1). Required.
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that sign client certificates. When set, every client must present
    /// a certificate signed by one of them (mutual TLS); a client without one is refused in the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

pub(crate) fn default_max_body() -> ByteSize {
    ByteSize(10 << 20)
}
pub(crate) fn default_max_line() -> ByteSize {
    ByteSize(1 << 20)
}
pub(crate) fn default_accept_timeout() -> Interval {
    Interval(Duration::from_secs(1))
}
pub(crate) fn default_max_connections() -> usize {
    256
}
pub(crate) fn default_header_read_timeout() -> Interval {
    Interval(Duration::from_secs(10))
}
pub(crate) fn default_body_read_timeout() -> Interval {
    Interval(Duration::from_secs(30))
}
pub(crate) fn default_idle_timeout() -> Interval {
    Interval(Duration::from_secs(30))
}
fn default_per_second() -> NonZeroU32 {
    NonZeroU32::new(1000).unwrap()
}
fn default_burst() -> NonZeroU32 {
    NonZeroU32::new(2000).unwrap()
}

impl HttpSourceConfig {
    /// Checks limits, authentication on exposed addresses, and that the TLS files load.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes.0 == 0 || self.max_line_bytes.0 == 0 {
            return Err("`max_body_bytes` and `max_line_bytes` must be at least 1".into());
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            return Err(
                "`token` is empty: remove it to accept requests without a token, or set one".into(),
            );
        }
        if self.max_connections == 0 {
            return Err("`max_connections` must be at least 1".into());
        }
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.0.is_zero() {
                return Err(format!("`{name}` must be longer than 0s"));
            }
        }
        let mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if !self.address.ip().is_loopback()
            && self.token.is_none()
            && !mtls
            && !self.allow_unauthenticated
        {
            return Err(format!(
                "`address` {} is reachable from other hosts but requests need no credentials: set `token`, \
                 or `tls.client_ca_file` for client certificates, or `allow_unauthenticated = true` to \
                 accept anyone who can connect",
                self.address
            ));
        }
        if let Some(tls) = &self.tls {
            super::tls::server_config(tls).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> HttpSourceConfig {
        toml::from_str(&format!("address = \"0.0.0.0:8686\"\n{extra}")).unwrap()
    }

    #[test]
    fn non_loopback_needs_a_credential_or_an_explicit_opt_out() {
        let e = parse("").validate().unwrap_err();
        assert!(e.contains("allow_unauthenticated"), "{e}");
        parse("allow_unauthenticated = true").validate().unwrap();
        parse("token = \"t0k\"").validate().unwrap();
        let loopback: HttpSourceConfig = toml::from_str("address = \"127.0.0.1:1\"").unwrap();
        loopback.validate().unwrap();
        let v6: HttpSourceConfig = toml::from_str("address = \"[::1]:1\"").unwrap();
        v6.validate().unwrap();
        let exposed_v6: HttpSourceConfig = toml::from_str("address = \"[::]:1\"").unwrap();
        assert!(exposed_v6.validate().is_err());
    }

    #[test]
    fn mtls_counts_as_authentication_and_tls_alone_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, ca.cert.pem()).unwrap();
        std::fs::write(&key, ca.key_pair.serialize_pem()).unwrap();
        let tls = format!(
            "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}",
            cert.display(),
            key.display()
        );
        assert!(
            parse(&tls).validate().is_err(),
            "server TLS alone is not client auth"
        );
        let mtls = format!(
            "tls = {{ cert_file = \"{c}\", key_file = \"{k}\", client_ca_file = \"{c}\" }}",
            c = cert.display(),
            k = key.display()
        );
        parse(&mtls).validate().unwrap();
    }

    #[test]
    fn bad_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem").unwrap();
        let cfg = format!(
            "token = \"t\"\ntls = {{ cert_file = \"{j}\", key_file = \"{j}\" }}",
            j = junk.display()
        );
        let e = parse(&cfg).validate().unwrap_err();
        assert!(e.contains("junk.pem") && e.contains("certificate"), "{e}");
        let missing = format!(
            "token = \"t\"\ntls = {{ cert_file = \"{}/nope.pem\", key_file = \"{}\" }}",
            dir.path().display(),
            junk.display()
        );
        let e = parse(&missing).validate().unwrap_err();
        assert!(e.contains("nope.pem"), "{e}");
    }

    #[test]
    fn token_is_redacted_in_debug_and_unknown_fields_are_refused() {
        let c = parse("token = \"hunter2-secret\"");
        assert_eq!(c.token.as_ref().unwrap().expose(), "hunter2-secret");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(toml::from_str::<HttpSourceConfig>(
            "address = \"127.0.0.1:1\"\nmax_conections = 3"
        )
        .is_err());
        assert!(toml::from_str::<HttpSourceConfig>(
            "address = \"127.0.0.1:1\"\nrate_limit = { per_second = 0 }"
        )
        .is_err());
    }
}
