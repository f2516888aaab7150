//! Reading events back from Elasticsearch or OpenSearch for `auditrail verify --elasticsearch URL --index I`.
//!
//! Every document's `_source` is read with a scroll sorted by `_doc` (the cheapest full read, which both
//! Elasticsearch and OpenSearch serve), a page at a time, the next page fetched while the current one is
//! verified. The `_source` text is verified as the server gives it back: the chain hashes canonical JSON, so a
//! store that re-encodes or reorders members does not break it, and one that changes a value does.
//!
//! Credentials ([`super::credentials`]): the user in the URL with the password from the environment or a file
//! (HTTP basic), or an API key (`Authorization: ApiKey …`); a password in the URL is refused. They are never
//! printed: messages name the URL without the user.

use std::borrow::Cow;
use std::time::Duration;

use anyhow::Context;
use auditrail_core::integrity::verify::{Item, Verifier};
use reqwest::{Client, RequestBuilder, Url};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::credentials::{CredentialError, Credentials, Secret, PASSWORD_ENV};

/// Documents per page.
pub const PAGE: usize = 5000;
/// How long the server keeps the scroll between pages.
const KEEP_ALIVE: &str = "5m";

/// Where to read and how to authenticate.
#[derive(Clone)]
struct Server {
    client: Client,
    /// The URL without credentials.
    base: Url,
    basic: Option<(String, Secret)>,
    api_key: Option<Secret>,
}

impl Server {
    fn new(url: &str, creds: &Credentials) -> anyhow::Result<Server> {
        let mut base = Url::parse(url).with_context(|| {
            format!("--elasticsearch {url:?} is not a URL (expected http[s]://host:port)")
        })?;
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https"),
            "--elasticsearch {url:?}: the scheme must be http or https"
        );
        if base.password().is_some() {
            return Err(CredentialError::PasswordInUrl.into());
        }
        let basic = match (base.username(), &creds.password) {
            ("", None) => None,
            ("", Some(_)) => anyhow::bail!(
                "{PASSWORD_ENV} or --es-password-file gives a password but the --elasticsearch URL names no user: write it as http[s]://USER@host:port"
            ),
            (user, None) => anyhow::bail!(
                "the --elasticsearch URL names the user {:?} but no password is given: set {PASSWORD_ENV} in the environment or use --es-password-file FILE (mode 0600)",
                percent_decode(user)
            ),
            (user, Some(p)) => Some((percent_decode(user), p.clone())),
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Server {
            client,
            base,
            basic,
            api_key: creds.api_key.clone(),
        })
    }

    fn url(&self, segments: &[&str], query: Option<(&str, &str)>) -> Url {
        let mut u = self.base.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
        }
        if let Some((k, v)) = query {
            u.query_pairs_mut().append_pair(k, v);
        }
        u
    }

    fn auth(&self, r: RequestBuilder) -> RequestBuilder {
        let r = match &self.basic {
            Some((u, p)) => r.basic_auth(u, Some(p.expose())),
            None => r,
        };
        match &self.api_key {
            Some(k) => r.header("Authorization", format!("ApiKey {}", k.expose())),
            None => r,
        }
    }

    async fn post(&self, url: Url, body: serde_json::Value) -> anyhow::Result<bytes::Bytes> {
        let shown = url.to_string();
        let resp = self
            .auth(self.client.post(url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("cannot reach {shown}"))?;
        let status = resp.status();
        let text = resp
            .bytes()
            .await
            .with_context(|| format!("{shown}: reading the response"))?;
        if !status.is_success() {
            let excerpt = String::from_utf8_lossy(&text[..text.len().min(500)]).into_owned();
            anyhow::bail!("{shown}: {status}: {excerpt}");
        }
        Ok(text)
    }

    async fn clear(&self, scroll_id: &str) {
        let url = self.url(&["_search", "scroll"], None);
        let body = serde_json::json!({ "scroll_id": [scroll_id] });
        let _ = self
            .auth(self.client.delete(url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    #[serde(borrow)]
    hits: Hits<'a>,
}

#[derive(Deserialize)]
struct Hits<'a> {
    #[serde(borrow)]
    hits: Vec<Hit<'a>>,
}

#[derive(Deserialize)]
struct Hit<'a> {
    #[serde(rename = "_index", borrow, default)]
    index: Cow<'a, str>,
    #[serde(rename = "_id", borrow, default)]
    id: Cow<'a, str>,
    #[serde(rename = "_source", borrow, default)]
    source: Option<&'a RawValue>,
}

/// Reads every document of `index` at `url` into `verifier`; returns how many were read.
pub fn feed(
    verifier: &mut Verifier,
    url: &str,
    index: &str,
    creds: &Credentials,
) -> anyhow::Result<u64> {
    let server = Server::new(url, creds)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(read_all(verifier, server, index))
}

async fn read_all(verifier: &mut Verifier, server: Server, index: &str) -> anyhow::Result<u64> {
    let first = server.url(&[index, "_search"], Some(("scroll", KEEP_ALIVE)));
    let shown = first.to_string();
    let mut body = server
        .post(first, serde_json::json!({ "size": PAGE, "sort": ["_doc"] }))
        .await
        .with_context(|| format!("cannot read index {index:?}"))?;
    let mut read = 0u64;
    let mut last_scroll: Option<String> = None;
    loop {
        let page: Page<'_> = serde_json::from_slice(&body)
            .with_context(|| format!("{shown}: not a search response"))?;
        if page.hits.hits.is_empty() {
            break;
        }
        let n = page.hits.hits.len();
        // Ask for the next page now; verify this one meanwhile.
        let next = match &page.scroll_id {
            Some(id) => {
                last_scroll = Some(id.clone());
                let server = server.clone();
                let url = server.url(&["_search", "scroll"], None);
                let body = serde_json::json!({ "scroll": KEEP_ALIVE, "scroll_id": id });
                Some(tokio::spawn(async move { server.post(url, body).await }))
            }
            None if n < PAGE => None,
            None => anyhow::bail!("{shown}: the server returned no scroll id; cannot read past the first {n} documents"),
        };
        let labels: Vec<String> = page
            .hits
            .hits
            .iter()
            .map(|h| format!("{}/_doc/{}", h.index, h.id))
            .collect();
        let items: Vec<Item<'_>> = page
            .hits
            .hits
            .iter()
            .zip(&labels)
            .filter_map(|(h, label)| match h.source {
                Some(s) => Some(Item {
                    text: s.get().as_bytes(),
                    source: label,
                    line: 0,
                }),
                None => {
                    verifier.note_unreadable(label, 0, "the document has no _source");
                    None
                }
            })
            .collect();
        verifier.feed_items(&items);
        read += n as u64;
        match next {
            None => break,
            Some(task) => {
                body = task
                    .await
                    .context("the page request stopped")?
                    .with_context(|| {
                        format!("cannot read index {index:?} past {read} documents")
                    })?;
            }
        }
    }
    if let Some(id) = last_scroll {
        server.clear(&id).await;
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let creds = Credentials {
            api_key: None,
            password: Some(Secret::new("p:ss")),
        };
        let s = Server::new("https://el%40stic@es.example:9200/prefix/", &creds).unwrap();
        assert_eq!(s.base.as_str(), "https://es.example:9200/prefix/");
        assert_eq!(s.basic, Some(("el@stic".into(), Secret::new("p:ss"))));
        assert_eq!(
            s.url(&["logs-*", "_search"], Some(("scroll", "5m")))
                .as_str(),
            "https://es.example:9200/prefix/logs-*/_search?scroll=5m"
        );
        let none = Credentials::default();
        assert!(Server::new("es.example:9200", &none).is_err());
        assert!(Server::new("ftp://es.example", &none).is_err());
        let e = Server::new("https://u:p@es.example", &none)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("set AUDITRAIL_ES_PASSWORD"), "{e}");
        assert!(!e.contains("u:p"), "{e}");
        let e = Server::new("https://u@es.example", &none)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no password is given"), "{e}");
        assert!(Server::new("https://es.example", &creds).is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
