//! The object store the uploader writes to, built from `[uploader]` and the standard environment
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`, `AWS_PROFILE`…, falling back to the instance's credentials): keys in the table win
//! over the environment.
//!
//! S3, GCS and Azure give both object_store interfaces: `ObjectStore` (put, head) and `MultipartStore`
//! (create an upload, put part N, complete, abort — by upload id), which is what lets a multipart upload be
//! resumed after a crash from the ids recorded in the state file. `file://` has no resumable multipart; its
//! large files go up through `put_multipart` in one go. object_store's own retries are kept short (two
//! retries within 30 s): the uploader's backoff, which the operator configures, does the long waiting.

use std::sync::Arc;
use std::time::Duration;

use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, RetryConfig};

use super::config::{url_scheme, UploaderConfig};

/// The store and where under it the keys go.
pub struct Store {
    /// Put, head, delete.
    pub object: Arc<dyn ObjectStore>,
    /// Resumable multipart uploads, when the store has them.
    pub multipart: Option<Arc<dyn MultipartStore>>,
    /// The URL's path, prepended to every key (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// `scheme://bucket`, for the URLs in events.
    pub base: String,
}

impl Store {
    /// The full object key for a rendered key.
    pub fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The URL of an object, as events report it.
    pub fn url_of(&self, full_key: &str) -> String {
        format!("{}/{full_key}", self.base)
    }
}

/// Builds the store; the error says which setting is wrong.
pub fn build(c: &UploaderConfig) -> Result<Store, String> {
    let scheme = url_scheme(&c.url)?;
    let rest = c.url.split_once("://").map_or("", |(_, r)| r);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/').to_string();
    if !prefix.is_empty() {
        super::key::check_key(&prefix)
            .map_err(|e| format!("the prefix of url `{}`: {e}", c.url))?;
    }
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300));
    let err = |e: object_store::Error| format!("cannot use {}: {e}", c.url);
    let (object, multipart): (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) = match scheme
    {
        "s3" => {
            // As AmazonS3Builder::from_env, but over our client options (from_env's would be replaced by
            // them): every AWS_* variable that names a setting applies.
            let mut b = object_store::aws::AmazonS3Builder::new().with_client_options(client);
            for (k, v) in std::env::vars_os() {
                if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
                    if k.starts_with("AWS_") {
                        if let Ok(key) = k.to_ascii_lowercase().parse() {
                            b = b.with_config(key, v);
                        }
                    }
                }
            }
            b = b
                .with_bucket_name(bucket)
                .with_retry(retry)
                .with_virtual_hosted_style_request(!c.path_style);
            if c.allow_http {
                b = b.with_allow_http(true);
            }
            if let Some(e) = &c.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &c.region {
                b = b.with_region(r);
            }
            if let (Some(k), Some(s)) = (&c.access_key_id, &c.secret_access_key) {
                b = b
                    .with_access_key_id(k.expose())
                    .with_secret_access_key(s.expose());
            }
            if let Some(t) = &c.session_token {
                b = b.with_token(t.expose());
            }
            // Over TLS the transport already protects the body, so the SigV4 payload hash (a SHA-256 pass
            // over every byte sent, on top of the one the metadata needs) is skipped, as awscli does; over
            // plain http the signature is the body's only protection in transit, so it stays.
            let plain_http = b
                .get_config_value(&object_store::aws::AmazonS3ConfigKey::Endpoint)
                .is_some_and(|e| e.starts_with("http://"));
            b = b.with_unsigned_payload(!plain_http);
            let s3 = Arc::new(b.build().map_err(err)?);
            (s3.clone(), Some(s3))
        }
        "gs" => {
            let g = Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(err)?,
            );
            (g.clone(), Some(g))
        }
        "az" => {
            let a = Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(err)?,
            );
            (a.clone(), Some(a))
        }
        _ => {
            // file:///dir: the whole path is the root; keys go under it.
            let root = format!("/{}", rest.trim_start_matches('/'));
            auditrail_core::private_fs::create_dir_all(std::path::Path::new(&root))
                .map_err(|e| format!("cannot create {root}: {e}"))?;
            let l = object_store::local::LocalFileSystem::new_with_prefix(&root).map_err(err)?;
            return Ok(Store {
                object: Arc::new(l),
                multipart: None,
                prefix: String::new(),
                base: format!("file://{}", root.trim_end_matches('/')),
            });
        }
    };
    Ok(Store {
        object,
        multipart,
        prefix,
        base: format!("{scheme}://{bucket}"),
    })
}
