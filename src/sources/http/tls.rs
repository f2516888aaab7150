//! TLS for the http source: loads the certificate chain, the private key and (for mutual TLS) the client CA
//! certificates from PEM files into a rustls server config, with errors that name the file and what it
//! should have held.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::config::TlsConfig;

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no PEM item of the expected kind.
    #[error("tls.{field} {path}: {what}")]
    File {
        /// The config field (`cert_file`, `key_file`, `client_ca_file`).
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong and what was expected.
        what: String,
    },
    /// rustls refused the combination (e.g. the key does not belong to the certificate).
    #[error(
        "tls: {0}; check that key_file holds the private key of the first certificate in cert_file"
    )]
    Config(String),
}

fn file_error(field: &'static str, path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::File {
        field,
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text =
        std::fs::read(path).map_err(|e| file_error(field, path, format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(field, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            field,
            path,
            "no certificate found: expected one or more `-----BEGIN CERTIFICATE-----` PEM blocks",
        ));
    }
    Ok(certs)
}

/// The rustls server config for `tls` (ring provider, TLS 1.2 and 1.3).
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates("cert_file", &tls.cert_file)?;
    let key_text = std::fs::read(&tls.key_file)
        .map_err(|e| file_error("key_file", &tls.key_file, format!("cannot read: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| {
        file_error(
            "key_file",
            &tls.key_file,
            format!("no private key found ({e}): expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("client_ca_file", ca)? {
                roots.add(cert).map_err(|e| {
                    file_error(
                        "client_ca_file",
                        ca,
                        format!("not a usable CA certificate: {e}"),
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_error("client_ca_file", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
