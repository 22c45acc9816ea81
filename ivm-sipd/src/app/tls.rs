//! The certificate of SIP over TLS (`[sip] tls_cert_file`, `tls_key_file`): read from PEM
//! files, or for a local run generated self-signed (rcgen) into the data directory at the
//! first start; made into the rustls acceptor the transport uses.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The generated certificate and key in the data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
pub const KEY_FILE: &str = "tls-key.pem";

/// The configured files, or the generated pair (made now when missing).
fn files(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    let sip = &config.sip;
    if !sip.tls_cert_file.as_os_str().is_empty() {
        return Ok((sip.tls_cert_file.clone(), sip.tls_key_file.clone()));
    }
    let dir = &config.storage.data_dir;
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !(cert.exists() && key.exists()) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into(), "::1".into()])
            .context("generating a self-signed TLS certificate")?;
        crate::store::secret_file::write(&key, &made.signing_key.serialize_pem(), true)
            .with_context(|| format!("cannot write {}", key.display()))?;
        std::fs::write(&cert, made.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
        tracing::warn!(cert = %cert.display(), "TLS: self-signed certificate generated (for a local run; configure tls_cert_file for phones that verify)");
    }
    Ok((cert, key))
}

/// The acceptor for SIP over TLS.
pub fn acceptor(config: &Config) -> anyhow::Result<TlsAcceptor> {
    let (cert, key) = files(config)?;
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{}: no certificate in it", cert.display());
    let key = PrivateKeyDer::from_pem_file(&key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    // The crate's one crypto provider (ring: no C toolchain beyond cc, no cmake).
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
