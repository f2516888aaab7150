//! The HTTP side: one keep-alive connection pool to the cluster (reqwest with rustls), credentials on every
//! request, and a verdict on each whole response before its items are looked at.
//!
//! | whole response | verdict |
//! | --- | --- |
//! | 2xx | [`BulkReply::Ok`]: the body is a bulk response, classified item by item |
//! | connection refused/reset, timeout, 5xx | [`BulkReply::Transient`] with `node_down`: the node is taken out (with several endpoints) and the batch goes to another node, or again after a backoff |
//! | 408, 429, a body over `max_response_bytes` | [`BulkReply::Transient`]: the whole batch again after a backoff (`Retry-After` honoured) |
//! | 401, 403 | [`BulkReply::Auth`]: the batch is held and retried with backoff while the credentials are wrong |
//! | 400, 413 | [`BulkReply::Refused`]: the body itself is refused; the batch is split to find the document |
//! | anything else (404, 405…) | [`BulkReply::Unexpected`]: held and retried with backoff, logged as an error |
//!
//! Every service is one node (one of `endpoints`); the nodes of a sink share one connection pool. A response
//! body is read up to `max_response_bytes` and no further, whatever its `Content-Length` says. Error texts
//! start with the node's URL, so a log line or `/ready` says which node failed.
//!
//! Secrets are only ever put in the `Authorization` header, marked sensitive; URLs carry none (the config
//! refuses credentials in the endpoint), so an error message that names the URL never shows one.

use bytes::Bytes;
use reqwest::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{StatusCode, Url};

use super::config::{AuthConfig, Compression, ElasticsearchSinkConfig};
use super::response::FILTER_PATH;
use crate::SinkConfigError;

/// The verdict on one bulk request: the shared driver's [`crate::http::Reply`].
pub type BulkReply = crate::http::Reply;

/// The verdict on a request other than a bulk (templates).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Transport failure or 5xx/429: worth trying again.
    #[error("{0}")]
    Transient(String),
    /// Any other non-2xx status.
    #[error("{status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The response body (cut).
        body: String,
    },
}

/// How requests are authenticated. The values are only read to build the header.
#[derive(Clone)]
enum Auth {
    None,
    Basic { user: String, password: String },
    Header(HeaderValue),
}

/// One node of the cluster, cloned into every request task.
#[derive(Clone)]
pub struct Service {
    client: reqwest::Client,
    base: Url,
    bulk: Url,
    auth: Auth,
    gzip: bool,
    max_response: usize,
}

fn cfg_err(field: &'static str, message: impl Into<String>) -> SinkConfigError {
    SinkConfigError {
        field,
        message: message.into(),
    }
}

pub use crate::http::client::error_chain;
use crate::http::client::{cut, read_limited, retry_after, ReadError};

impl Service {
    /// The first node of `config` (validated). Reads the CA file.
    pub fn new(config: &ElasticsearchSinkConfig) -> Result<Service, SinkConfigError> {
        Ok(Service::nodes(config)?.swap_remove(0))
    }

    /// One service per node of `config` (validated), in the order given, sharing one client (one CA file
    /// read, one connection pool).
    pub fn nodes(config: &ElasticsearchSinkConfig) -> Result<Vec<Service>, SinkConfigError> {
        let urls = config.endpoint_urls()?;
        let field = if config.endpoints.is_empty() {
            "endpoint"
        } else {
            "endpoints"
        };
        let client = client(config)?;
        let auth = match &config.auth {
            None => Auth::None,
            Some(AuthConfig::Basic { user, password }) => Auth::Basic {
                user: user.clone(),
                password: password.expose().to_string(),
            },
            Some(AuthConfig::ApiKey { api_key }) => {
                Auth::Header(sensitive(&format!("ApiKey {}", api_key.expose()))?)
            }
            Some(AuthConfig::Bearer { token }) => {
                Auth::Header(sensitive(&format!("Bearer {}", token.expose()))?)
            }
        };
        urls.into_iter()
            .map(|base| {
                let mut base_dir = base;
                if !base_dir.path().ends_with('/') {
                    let p = format!("{}/", base_dir.path());
                    base_dir.set_path(&p);
                }
                let mut bulk = base_dir
                    .join("_bulk")
                    .map_err(|e| cfg_err(field, e.to_string()))?;
                bulk.query_pairs_mut()
                    .append_pair("filter_path", FILTER_PATH);
                Ok(Service {
                    client: client.clone(),
                    base: base_dir,
                    bulk,
                    auth: auth.clone(),
                    gzip: config.compression == Compression::Gzip,
                    max_response: config.max_response_bytes.as_usize(),
                })
            })
            .collect()
    }

    /// The cluster's base URL (never holds credentials).
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
            Auth::Header(h) => req.header(AUTHORIZATION, h.clone()),
        }
    }

    /// Sends one bulk body (already compressed when gzip is on) and judges the whole response.
    pub async fn bulk(&self, body: impl Into<reqwest::Body>) -> BulkReply {
        let mut req = self
            .authed(self.client.post(self.bulk.clone()))
            .header(CONTENT_TYPE, "application/x-ndjson")
            .header(ACCEPT, "application/json")
            .body(body);
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return BulkReply::Transient {
                    why: format!("{}: {}", self.base, error_chain(&e)),
                    retry_after: None,
                    node_down: true,
                }
            }
        };
        let status = resp.status();
        let after = retry_after(resp.headers().get(RETRY_AFTER));
        let body = match self.read(resp).await {
            Ok(b) => b,
            Err(e) => {
                let node_down = matches!(e, ReadError::Transport(_));
                return BulkReply::Transient {
                    why: self.read_error(e),
                    retry_after: None,
                    node_down,
                };
            }
        };
        if status.is_success() {
            return BulkReply::Ok(body);
        }
        let why = format!(
            "{}: {status}: {}",
            self.base,
            cut(&String::from_utf8_lossy(&body))
        );
        match status {
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => BulkReply::Transient {
                why,
                retry_after: after,
                node_down: false,
            },
            s if s.is_server_error() => BulkReply::Transient {
                why,
                retry_after: after,
                node_down: true,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BulkReply::Auth { why },
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => BulkReply::Refused {
                status: status.as_u16(),
                why,
                at: None,
            },
            _ => BulkReply::Unexpected { why },
        }
    }

    /// The health check of a node taken out: `GET /` of the endpoint. `Ok(status)` when it passes: 2xx, or
    /// 401/403 (the node answers; the credentials lack Elasticsearch's `monitor` privilege for this API, and
    /// bulk requests report a credentials problem on their own). `Err` with the reason otherwise.
    pub async fn health(&self) -> Result<StatusCode, String> {
        let (status, body) = self
            .exchange(
                self.client
                    .get(self.base.clone())
                    .header(ACCEPT, "application/json"),
            )
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success()
            || status == StatusCode::UNAUTHORIZED
            || status == StatusCode::FORBIDDEN
        {
            Ok(status)
        } else {
            Err(format!(
                "{}: {status}: {}",
                self.base,
                cut(&String::from_utf8_lossy(&body))
            ))
        }
    }

    /// Reads `resp`'s body, at most `max_response_bytes` of it.
    async fn read(&self, resp: reqwest::Response) -> Result<Bytes, ReadError> {
        read_limited(resp, self.max_response).await
    }

    fn read_error(&self, e: ReadError) -> String {
        e.describe(&self.base)
    }

    /// `GET path` (relative to the endpoint): `Ok(None)` on 404.
    pub async fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, RequestError> {
        let url = self.url(path)?;
        let (status, body) = self
            .exchange(self.client.get(url).header(ACCEPT, "application/json"))
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check(&self.base, status, &body)?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| RequestError::Status {
                status: status.as_u16(),
                body: format!("not JSON: {e}"),
            })
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), RequestError> {
        let url = self.url(path)?;
        let req = self
            .client
            .put(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(serde_json::to_vec(body).expect("a JSON value always serializes"));
        let (status, body) = self.exchange(req).await?;
        check(&self.base, status, &body)
    }

    fn url(&self, path: &str) -> Result<Url, RequestError> {
        self.base
            .join(path)
            .map_err(|e| RequestError::Transient(e.to_string()))
    }

    /// Sends `req` with the credentials and reads the whole response; a failure on the way is transient.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), RequestError> {
        let resp =
            self.authed(req).send().await.map_err(|e| {
                RequestError::Transient(format!("{}: {}", self.base, error_chain(&e)))
            })?;
        let status = resp.status();
        let body = self
            .read(resp)
            .await
            .map_err(|e| RequestError::Transient(self.read_error(e)))?;
        Ok((status, body))
    }
}

fn check(base: &Url, status: StatusCode, body: &[u8]) -> Result<(), RequestError> {
    if status.is_success() {
        return Ok(());
    }
    let text = cut(&String::from_utf8_lossy(body));
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(RequestError::Transient(format!("{base}: {status}: {text}")))
    } else {
        Err(RequestError::Status {
            status: status.as_u16(),
            body: text,
        })
    }
}

/// The HTTP client every node of `config` shares.
fn client(config: &ElasticsearchSinkConfig) -> Result<reqwest::Client, SinkConfigError> {
    crate::http::client::client(&crate::http::client::ClientSettings {
        request_timeout: config.request_timeout.0,
        keepalive_idle_timeout: config.keepalive_idle_timeout.0,
        max_idle_per_host: config.concurrency,
        ca_file: config.tls.ca_file.as_deref(),
        verify_certificate: config.tls.verify_certificate,
    })
}

fn sensitive(value: &str) -> Result<HeaderValue, SinkConfigError> {
    crate::http::client::sensitive("auth", value)
}

impl crate::http::Node for Service {
    fn base(&self) -> &Url {
        &self.base
    }

    async fn health(&self) -> Result<StatusCode, String> {
        Service::health(self).await
    }

    fn health_check(&self) -> &'static str {
        "GET /"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Accepts one connection on loopback, answers `response`, and returns the request head it read.
    fn one_shot(response: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            s.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, h)
    }

    fn config(port: u16, auth: &str) -> ElasticsearchSinkConfig {
        let c: ElasticsearchSinkConfig = toml::from_str(&format!(
            "endpoint = \"http://127.0.0.1:{port}/es\"\ncompression = \"none\"\n{auth}"
        ))
        .unwrap();
        c.validate().unwrap();
        c
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\nconnection: close\r\n\r\n{\"errors\":false}";

    #[tokio::test]
    async fn sends_each_kind_of_credentials() {
        for (auth, header) in [
            (
                r#"auth = { strategy = "basic", user = "elastic", password = "changeme" }"#,
                "authorization: Basic ZWxhc3RpYzpjaGFuZ2VtZQ==",
            ),
            (
                r#"auth = { strategy = "api_key", api_key = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==" }"#,
                "authorization: ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
            ),
            (
                r#"auth = { strategy = "bearer", token = "t0ken" }"#,
                "authorization: Bearer t0ken",
            ),
        ] {
            let (port, h) = one_shot(OK);
            let s = Service::new(&config(port, auth)).unwrap();
            let r = s.bulk(b"{}\n".to_vec()).await;
            assert!(matches!(r, BulkReply::Ok(_)), "{r:?}");
            let head = h.join().unwrap().to_ascii_lowercase();
            assert!(head.contains(&header.to_ascii_lowercase()), "{head}");
            assert!(head.starts_with("post /es/_bulk?filter_path="), "{head}");
            assert!(head.contains("content-type: application/x-ndjson"), "{head}");
        }
    }

    #[tokio::test]
    async fn whole_response_verdicts() {
        for (resp, want) in [
            ("HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "transient 3s"),
            ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "transient"),
            ("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "auth"),
            ("HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "refused"),
            ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "unexpected"),
        ] {
            let (port, h) = one_shot(resp);
            let s = Service::new(&config(port, "")).unwrap();
            let got = match s.bulk(b"{}\n".to_vec()).await {
                BulkReply::Transient { retry_after: Some(d), .. } => format!("transient {}s", d.as_secs()),
                BulkReply::Transient { .. } => "transient".into(),
                BulkReply::Auth { .. } => "auth".into(),
                BulkReply::Refused { .. } => "refused".into(),
                BulkReply::Unexpected { .. } => "unexpected".into(),
                BulkReply::Ok(_) => "ok".into(),
            };
            assert_eq!(got, want);
            h.join().unwrap();
        }
        // Nobody listening: a transient error that names the cause.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Service::new(&config(port, "")).unwrap();
        match s.bulk(b"{}\n".to_vec()).await {
            BulkReply::Transient { why, .. } => {
                assert!(why.to_lowercase().contains("connect"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn responses_over_max_response_bytes_fail_naming_the_node() {
        // Announced too long, and too long without announcing it (chunked): neither is read past the limit.
        let big = "x".repeat(5000);
        let announced: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{big}",
                big.len()
            )
            .into_boxed_str(),
        );
        let chunked: &'static str = Box::leak(
            format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n", big.len())
                .into_boxed_str(),
        );
        for resp in [announced, chunked] {
            let (port, h) = one_shot(resp);
            let mut c = config(port, "");
            c.max_response_bytes = auditrail_core::units::ByteSize(4096);
            let s = Service::new(&c).unwrap();
            match s.bulk(b"{}\n".to_vec()).await {
                BulkReply::Transient { why, node_down, .. } => {
                    assert!(!node_down, "{why}");
                    assert!(
                        why.contains(&format!("http://127.0.0.1:{port}/es/")),
                        "{why}"
                    );
                    assert!(
                        why.contains("larger than max_response_bytes (4096 bytes)"),
                        "{why}"
                    );
                }
                other => panic!("{other:?}"),
            }
            h.join().unwrap();
        }
        // At the limit it is read.
        let (port, h) = one_shot(OK);
        let mut c = config(port, "");
        c.max_response_bytes = auditrail_core::units::ByteSize(4096);
        assert!(matches!(
            Service::new(&c).unwrap().bulk(b"{}\n".to_vec()).await,
            BulkReply::Ok(_)
        ));
        h.join().unwrap();
    }

    #[tokio::test]
    async fn node_failures_are_told_apart_from_busy_answers() {
        for (resp, down) in [
            ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", true),
            ("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", true),
            ("HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", false),
            ("HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", false),
        ] {
            let (port, h) = one_shot(resp);
            let s = Service::new(&config(port, "")).unwrap();
            match s.bulk(b"{}\n".to_vec()).await {
                BulkReply::Transient { node_down, why, .. } => assert_eq!(node_down, down, "{why}"),
                other => panic!("{other:?}"),
            }
            h.join().unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match Service::new(&config(port, ""))
            .unwrap()
            .bulk(b"{}\n".to_vec())
            .await
        {
            BulkReply::Transient { node_down, .. } => assert!(node_down),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn health_checks_pass_on_2xx_and_on_refused_credentials() {
        for (resp, passes) in [
            (OK, true),
            ("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", true),
            ("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", false),
            ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", false),
        ] {
            let (port, h) = one_shot(resp);
            let s = Service::new(&config(port, "")).unwrap();
            assert_eq!(s.health().await.is_ok(), passes, "{resp}");
            let head = h.join().unwrap().to_ascii_lowercase();
            assert!(head.starts_with("get /es/ http/1.1"), "{head}");
        }
    }

    #[test]
    fn bad_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(9, "");
        c.tls.ca_file = Some(dir.path().join("missing.pem"));
        let e = Service::new(&c).err().unwrap();
        assert!(e.message.contains("cannot read ca_file"), "{}", e.message);
        std::fs::write(dir.path().join("x.pem"), "not a cert").unwrap();
        c.tls.ca_file = Some(dir.path().join("x.pem"));
        let e = Service::new(&c).err().unwrap();
        assert!(e.message.contains("x.pem"), "{}", e.message);
    }
}
