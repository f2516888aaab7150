//! `[sources.NAME] type = "splunk_hec"`: Splunk's HTTP Event Collector protocol, so any HEC client (another
//! agent's `splunk_hec` sink, a script with curl, a shipper) can send audit events to this agent.

use std::net::SocketAddr;
use std::time::Duration;

use auditrail_core::units::{ByteSize, Interval};
use auditrail_core::Secret;
use serde::Deserialize;

use crate::sources::http::config as http_defaults;
use crate::sources::http::{RateLimitConfig, TlsConfig};

/// Settings of the splunk_hec source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecSourceConfig {
    /// Listen address, e.g. `"127.0.0.1:8088"` (Splunk's HEC port). Required. A non-loopback address needs
    /// `tokens`, `tls` with a `client_ca_file`, or `allow_unauthenticated = true`.
    pub address: SocketAddr,
    /// The HEC tokens a request may carry in `Authorization: Splunk <token>`; any one of them is accepted. They
    /// are checked on the request head, in constant time, before a byte of the body is read. Use `${VAR}` to
    /// keep them out of the file; never logged. Default: none, and then no token is asked for.
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// Accept requests without a token or client certificate on a non-loopback address. Default `false`.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Largest request body as sent (compressed or not); a larger one is answered 413. Default `"10MiB"`.
    #[serde(default = "http_defaults::default_max_body")]
    pub max_body_bytes: ByteSize,
    /// Largest request body once gzip is undone; a body that inflates past it is answered 413 (a gzip bomb
    /// costs this much memory at most). Default `"50MiB"`.
    #[serde(default = "default_max_decompressed")]
    pub max_decompressed_bytes: ByteSize,
    /// Largest single event. Default `"1MiB"`.
    #[serde(default = "http_defaults::default_max_line")]
    pub max_line_bytes: ByteSize,
    /// The key under which the envelope's `time`, `host`, `source`, `sourcetype`, `index` and `fields` are
    /// appended to the event, e.g. `"hec"`. Default: none, and the envelope is dropped: the audit event is
    /// kept byte for byte, so an event that went agent → HEC → agent is the event the first agent read (its
    /// `uid`, its integrity fields and its digest unchanged), and everything auditrail's own sink puts in the
    /// envelope is taken from the event anyway.
    #[serde(default)]
    pub metadata_key: Option<String>,
    /// What becomes of an `event` (or a `/raw` line) that is not an audit event (a string such as Splunk's
    /// `"Hello, world!"` examples, or an object without `event` and `time`): `"wrap"` (default) makes it the
    /// `data` of an audit event `{"event":"splunk_hec.event","time":...,"data":...}` timed by the envelope's
    /// `time` (or the arrival time), counted in `auditrail_source_splunk_hec_wrapped_total`, so any HEC
    /// client's data arrives; `"reject"` refuses the request with `{"text":"Invalid data format","code":6}`.
    #[serde(default)]
    pub other_events: OtherEvents,
    /// Indexer acknowledgement: `acknowledgements = { enabled = true }` gives each accepted request an `ackId`
    /// that `/services/collector/ack` reports `true` once every sink has the request's events. Off by default,
    /// as on a new Splunk token.
    #[serde(default)]
    pub acknowledgements: AckConfig,
    /// How long a request waits for room in full `block` buffers before it is answered
    /// `{"text":"Server is busy","code":9}` (503, Retry-After). Default `"1s"`.
    #[serde(default = "http_defaults::default_accept_timeout")]
    pub accept_timeout: Interval,
    /// Most connections open at once (see the http source). Default 256.
    #[serde(default = "http_defaults::default_max_connections")]
    pub max_connections: usize,
    /// Time a new connection gets to send a complete request head. Default `"10s"`.
    #[serde(default = "http_defaults::default_header_read_timeout")]
    pub header_read_timeout: Interval,
    /// Time a request gets to send its whole body once its head is in. Default `"30s"`.
    #[serde(default = "http_defaults::default_body_read_timeout")]
    pub body_read_timeout: Interval,
    /// How long a kept-alive connection may sit idle. Default `"30s"`.
    #[serde(default = "http_defaults::default_idle_timeout")]
    pub idle_timeout: Interval,
    /// Requests per client IP address; over it a request is answered "Server is busy" (code 9, 503,
    /// Retry-After) before its body is read. Default 1000 per second with bursts of 2000.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Serve HTTPS (as the http source's `tls`).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// What to do with data that is not an audit event.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OtherEvents {
    /// Wrap it in an audit event of kind `splunk_hec.event`.
    #[default]
    Wrap,
    /// Refuse the request (code 6).
    Reject,
}

/// `acknowledgements = { enabled = true, max_channels = 10000, max_pending_acks = 100000, ack_ttl = "5m" }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckConfig {
    /// Give ackIds and answer `/services/collector/ack`. Default `false`; with it, `/event` and `/raw`
    /// requests must name a channel (`X-Splunk-Request-Channel` or `?channel=`), as Splunk asks.
    #[serde(default)]
    pub enabled: bool,
    /// Most channels remembered; a new channel past it displaces the one unused longest (its acks are then
    /// unknown: its client resends after its own ack timeout — duplicates, never loss). Default 10000.
    #[serde(default = "default_max_channels")]
    pub max_channels: usize,
    /// Most ackIds one channel remembers, pending or confirmed and not yet asked for; past it the oldest is
    /// forgotten (counted in `auditrail_source_splunk_hec_acks_forgotten_total`). Default 100000.
    #[serde(default = "default_max_pending_acks")]
    pub max_pending_acks: usize,
    /// How long an ackId is remembered; older ones are forgotten, and a channel without ackIds and unused this
    /// long is forgotten too. Default `"5m"`.
    #[serde(default = "default_ack_ttl")]
    pub ack_ttl: Interval,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            enabled: false,
            max_channels: default_max_channels(),
            max_pending_acks: default_max_pending_acks(),
            ack_ttl: default_ack_ttl(),
        }
    }
}

fn default_max_decompressed() -> ByteSize {
    ByteSize(50 << 20)
}
fn default_max_channels() -> usize {
    10_000
}
fn default_max_pending_acks() -> usize {
    100_000
}
fn default_ack_ttl() -> Interval {
    Interval(Duration::from_secs(300))
}

impl SplunkHecSourceConfig {
    /// Checks limits, authentication on exposed addresses, and that the TLS files load.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes.0 == 0
            || self.max_line_bytes.0 == 0
            || self.max_decompressed_bytes.0 == 0
        {
            return Err(
                "`max_body_bytes`, `max_decompressed_bytes` and `max_line_bytes` must be at least 1"
                    .into(),
            );
        }
        if self.tokens.iter().any(Secret::is_empty) {
            return Err("`tokens` holds an empty token: remove it or set it".into());
        }
        if self.max_connections == 0 {
            return Err("`max_connections` must be at least 1".into());
        }
        if self.acknowledgements.max_channels == 0 || self.acknowledgements.max_pending_acks == 0 {
            return Err(
                "`acknowledgements.max_channels` and `acknowledgements.max_pending_acks` must be at least 1"
                    .into(),
            );
        }
        for (name, value) in [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("acknowledgements.ack_ttl", self.acknowledgements.ack_ttl),
        ] {
            if value.0.is_zero() {
                return Err(format!("`{name}` must be longer than 0s"));
            }
        }
        if let Some(key) = &self.metadata_key {
            if key.is_empty() || matches!(key.as_str(), "event" | "time" | "uid") {
                return Err(format!(
                    "`metadata_key` = {key:?} would clash with the event's own fields: pick another name, e.g. \"hec\""
                ));
            }
        }
        let mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        if !self.address.ip().is_loopback()
            && self.tokens.is_empty()
            && !mtls
            && !self.allow_unauthenticated
        {
            return Err(format!(
                "`address` {} is reachable from other hosts but requests need no credentials: set `tokens`, \
                 or `tls.client_ca_file` for client certificates, or `allow_unauthenticated = true` to \
                 accept anyone who can connect",
                self.address
            ));
        }
        if let Some(tls) = &self.tls {
            crate::sources::http::tls::server_config(tls).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> SplunkHecSourceConfig {
        toml::from_str(&format!("address = \"0.0.0.0:8088\"\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_and_exposure() {
        let e = parse("").validate().unwrap_err();
        assert!(e.contains("allow_unauthenticated"), "{e}");
        let c = parse("tokens = [\"t0k-secret\"]");
        c.validate().unwrap();
        assert!(!format!("{c:?}").contains("t0k-secret"));
        assert!(!c.acknowledgements.enabled);
        assert_eq!(c.acknowledgements.max_channels, 10_000);
        assert_eq!(c.other_events, OtherEvents::Wrap);
        assert!(c.metadata_key.is_none());
        assert!(parse("tokens = [\"\"]").validate().is_err());
        assert!(parse("tokens = [\"t\"]\nmetadata_key = \"uid\"")
            .validate()
            .is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<SplunkHecSourceConfig>(
            "address = \"127.0.0.1:1\"\ntoken = \"x\""
        )
        .is_err());
        assert!(toml::from_str::<SplunkHecSourceConfig>(
            "address = \"127.0.0.1:1\"\nacknowledgements = { enabled = true, max_chanels = 1 }"
        )
        .is_err());
    }
}
