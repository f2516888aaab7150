//! The HTTP side: one keep-alive connection pool (reqwest with rustls), `Authorization: Splunk <token>` (a
//! sensitive header, never printed), the channel in `X-Splunk-Request-Channel`, the indexer's cookies, and a
//! verdict on each whole answer ([`super::response::verdict`]).
//!
//! Every [`HecNode`] is one indexer (one of `endpoints`); the nodes of a sink share one client. Response bodies
//! are read up to `max_response_bytes` and no further. Error texts start with the indexer's URL and never hold
//! the token.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, COOKIE, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};

use super::acks::Acks;
use super::config::{Compression, EndpointTarget, SplunkHecSinkConfig};
use super::cookies::CookieJar;
use super::response::{verdict, AckQueryError};
use crate::http::client::{error_chain, read_limited, retry_after};
use crate::http::{Node, Reply};
use crate::SinkConfigError;

/// The header that carries the channel.
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";

/// What every request to one indexer carries: client, credentials, channel, cookies.
#[derive(Clone)]
pub struct Conn {
    client: reqwest::Client,
    /// The indexer's base URL (never holds credentials).
    pub base: Url,
    auth: HeaderValue,
    channel: HeaderValue,
    cookies: Arc<CookieJar>,
    max_response: usize,
    ack_url: Url,
    /// The sink's name, for log lines.
    pub sink: Arc<str>,
}

impl Conn {
    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL_HEADER, self.channel.clone());
        match self.cookies.header() {
            Some(c) => req.header(COOKIE, c),
            None => req,
        }
    }

    /// Sends `req` and reads the answer: `(status, Retry-After, body)`; `Err` with the reason on a transport
    /// failure (`Ok(false)`) or a body too large (`Ok(true)`: not the node's fault).
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Option<std::time::Duration>, Bytes), (String, bool)> {
        let resp = self
            .request(req)
            .send()
            .await
            .map_err(|e| (format!("{}: {}", self.base, error_chain(&e)), true))?;
        self.cookies.store(resp.headers());
        let status = resp.status();
        let after = retry_after(resp.headers().get(RETRY_AFTER));
        let body = read_limited(resp, self.max_response).await.map_err(|e| {
            let down = matches!(e, crate::http::client::ReadError::Transport(_));
            (e.describe(&self.base), down)
        })?;
        Ok((status, after, body))
    }

    /// POSTs an ack query body to `/services/collector/ack?channel=<guid>`.
    pub async fn ack_query(&self, body: Vec<u8>) -> Result<(u16, Bytes), AckQueryError> {
        let req = self
            .client
            .post(self.ack_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        self.exchange(req)
            .await
            .map(|(s, _, b)| (s.as_u16(), b))
            .map_err(|(why, _)| AckQueryError::Failed(why))
    }
}

/// One indexer.
#[derive(Clone)]
pub struct HecNode {
    /// Requests to it.
    pub conn: Conn,
    send_url: Url,
    health_url: Url,
    gzip: bool,
    /// Its pending acknowledgements (`None` with `acknowledgements = false`).
    pub acks: Option<Arc<Acks>>,
}

fn cfg_err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

/// The parts of a node that are built before the sink runs (the ack pollers start when it runs).
pub struct NodeParts {
    /// The connection of each indexer, in config order.
    pub conns: Vec<Conn>,
    send_urls: Vec<Url>,
    health_urls: Vec<Url>,
    gzip: bool,
}

impl NodeParts {
    /// The parts of `config` (validated) for sink `sink` on channel `channel`. Reads the CA file.
    pub fn new(
        config: &SplunkHecSinkConfig,
        sink: &str,
        channel: &str,
    ) -> Result<NodeParts, SinkConfigError> {
        let urls = config.endpoint_urls()?;
        let field = if config.endpoints.is_empty() {
            "endpoint"
        } else {
            "endpoints"
        };
        let client = crate::http::client::client(&crate::http::client::ClientSettings {
            request_timeout: config.request.timeout.0,
            keepalive_idle_timeout: config.request.keepalive_idle_timeout.0,
            max_idle_per_host: config.request.concurrency + 1,
            ca_file: config.tls.ca_file.as_deref(),
            verify_certificate: config.tls.verify,
        })?;
        let auth =
            crate::http::client::sensitive("token", &format!("Splunk {}", config.token.expose()))?;
        let channel_value = HeaderValue::from_str(channel).expect("a GUID is a header value");
        let sink: Arc<str> = sink.into();
        let mut parts = NodeParts {
            conns: Vec::new(),
            send_urls: Vec::new(),
            health_urls: Vec::new(),
            gzip: config.compression == Compression::Gzip,
        };
        for base in urls {
            let mut base_dir = base;
            if !base_dir.path().ends_with('/') {
                let p = format!("{}/", base_dir.path());
                base_dir.set_path(&p);
            }
            let join = |path: &str| {
                base_dir
                    .join(path)
                    .map_err(|e| cfg_err(field, e.to_string()))
            };
            let mut send = match config.endpoint_target {
                EndpointTarget::Event => join("services/collector/event")?,
                EndpointTarget::Raw => join("services/collector/raw")?,
            };
            if config.endpoint_target == EndpointTarget::Raw {
                let mut q = send.query_pairs_mut();
                q.append_pair("channel", channel);
                if let Some(h) = &config.host {
                    q.append_pair("host", h);
                }
                if let Some(s) = &config.source {
                    q.append_pair("source", s);
                }
                q.append_pair("sourcetype", &config.sourcetype);
                if let Some(i) = &config.index {
                    q.append_pair("index", i);
                }
            }
            let mut ack_url = join("services/collector/ack")?;
            ack_url.query_pairs_mut().append_pair("channel", channel);
            parts.health_urls.push(join("services/collector/health")?);
            parts.send_urls.push(send);
            parts.conns.push(Conn {
                client: client.clone(),
                base: base_dir,
                auth: auth.clone(),
                channel: channel_value.clone(),
                cookies: Arc::new(CookieJar::default()),
                max_response: config.max_response_bytes.as_usize(),
                ack_url,
                sink: sink.clone(),
            });
        }
        Ok(parts)
    }

    /// The URL event requests to indexer `i` go to.
    pub fn send_url(&self, i: usize) -> &Url {
        &self.send_urls[i]
    }

    /// The nodes, each with its pending acknowledgements from `acks` (one per conn, or none).
    pub fn nodes(self, mut acks: impl FnMut(&Conn) -> Option<Arc<Acks>>) -> Vec<HecNode> {
        let gzip = self.gzip;
        self.conns
            .into_iter()
            .zip(self.send_urls)
            .zip(self.health_urls)
            .map(|((conn, send_url), health_url)| HecNode {
                acks: acks(&conn),
                conn,
                send_url,
                health_url,
                gzip,
            })
            .collect()
    }
}

impl HecNode {
    /// Sends one body (already compressed when gzip is on) and judges the whole answer.
    pub async fn send(&self, body: Bytes) -> Reply {
        let mut req = self
            .conn
            .client
            .post(self.send_url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        match self.conn.exchange(req).await {
            Ok((status, after, body)) => {
                verdict(self.conn.base.as_str(), status.as_u16(), &body, after)
            }
            Err((why, node_down)) => Reply::Transient {
                why,
                retry_after: None,
                node_down,
            },
        }
    }

    /// `GET /services/collector/health` (with the token, so that a refused token shows here too): `Ok` on 2xx
    /// (HEC code 17, "HEC is healthy"), `Err` with Splunk's words otherwise (503 with code 18, 19 or 20 while
    /// its queues are full or the ack service is down; 400 "Invalid HEC token").
    pub async fn check_health(&self) -> Result<StatusCode, String> {
        let (status, _, body) = self
            .conn
            .exchange(self.conn.client.get(self.health_url.clone()))
            .await
            .map_err(|(why, _)| why)?;
        if status.is_success() {
            Ok(status)
        } else {
            Err(format!(
                "{}: health check answered {status}: {}",
                self.conn.base,
                crate::http::client::cut(&String::from_utf8_lossy(&body))
            ))
        }
    }
}

impl Node for HecNode {
    fn base(&self) -> &Url {
        &self.conn.base
    }

    async fn health(&self) -> Result<StatusCode, String> {
        self.check_health().await
    }

    fn health_check(&self) -> &'static str {
        "GET /services/collector/health"
    }
}
