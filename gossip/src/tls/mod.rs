//! Mutual TLS for gossip: cluster CA and node certificates (rcgen), and the rustls
//! configurations quinn uses (ring provider, TLS 1.3 only, fixed ALPN, no 0-RTT, client
//! certificates required).
//!
//! Trust is membership in the cluster CA: a peer is accepted when its certificate chains
//! to the CA, because peers are dialed by the addresses they gossip, not by names. The
//! name a certificate carries ([`name`]) is the node's identity: the agent's node id
//! must equal it, and the transport binds each connection to it. See docs/security.md.

mod generate;
pub mod name;

pub use generate::{AutoTls, create_ca, create_node_cert, ensure_auto_material};
pub use name::{CertFileNameError, NameError, cert_file_node_name, node_name};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ALPN protocol of probemesh gossip; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"probemesh-gossip/1";
/// Server name sent in the handshake (peers are verified by CA, not by name).
pub const SERVER_NAME: &str = "probemesh";
/// File name of the CA certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// What went wrong with TLS material. Messages name the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error(
        "{path} does not contain a PEM {what}; create one with `probemesh tls ca create` / `probemesh tls cert create`"
    )]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// Refusing to overwrite existing material.
    #[error("{0} already exists; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    /// A certificate whose private key is missing: it cannot be used or completed.
    #[error(
        "{cert} exists but its private key {key} is missing, so it cannot be used; restore the key, or move the certificate away to have a new pair made"
    )]
    KeyMissing {
        /// The certificate.
        cert: PathBuf,
        /// The key that should be beside it.
        key: PathBuf,
    },
    /// rcgen failed to make a certificate.
    #[error("cannot create certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("invalid TLS material: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA certificate cannot be used as a trust anchor.
    #[error("the CA certificate in {path} is not usable: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> TlsError + 'a {
    move |source| TlsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The loaded TLS identity of a node: the cluster CA, its certificate chain and key.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsMaterial {
    /// Loads PEM files: the CA certificate, the node certificate (chain) and its key.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
        let read = |p: &Path| fs::read(p).map_err(io_err("cannot read", p));
        let ca_pem = read(ca)?;
        let ca_der = CertificateDer::pem_slice_iter(&ca_pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| TlsError::Pem {
                path: ca.to_path_buf(),
                what: "certificate",
            })?;
        let cert_pem = read(cert)?;
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert.to_path_buf(),
                what: "certificate",
            });
        }
        let key_pem = read(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
            path: key.to_path_buf(),
            what: "private key",
        })?;
        let m = TlsMaterial {
            ca: ca_der,
            chain,
            key: key_der,
        };
        // Fail at start-up, not at the first handshake.
        m.roots().map_err(|e| TlsError::BadCa {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
        m.server_config()?;
        Ok(m)
    }

    /// The node name of this node's certificate (its CN), which is its node id.
    pub fn node_name(&self) -> Result<String, NameError> {
        self.chain
            .first()
            .ok_or(NameError::NotACertificate)
            .and_then(node_name)
    }

    /// Bytes that stay the same across restarts and are secret: used to derive the
    /// QUIC stateless-reset key, so a restarted node can reset its peers' stale
    /// connections at once.
    pub fn stable_secret(&self) -> &[u8] {
        self.key.secret_der()
    }

    fn roots(&self) -> Result<RootCertStore, rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| rustls::Error::General(format!("CA certificate rejected: {e}")))?;
        Ok(roots)
    }

    /// The rustls server side: client certificates from the CA required.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.max_early_data_size = 0;
        Ok(cfg)
    }

    /// The rustls client side: server certificates must chain to the CA; this node
    /// presents its own certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CaOnlyVerifier { inner }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.enable_early_data = false;
        Ok(cfg)
    }
}

/// Verifies the chain to the cluster CA like WebPKI, but does not require the
/// certificate to name the dialed address (membership is the CA, see module docs).
#[derive(Debug)]
struct CaOnlyVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for CaOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_node_certificates_load_into_rustls() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path()).unwrap();
        let (c, k) = create_node_cert(
            dir.path(),
            "node-a",
            &["127.0.0.1".parse().unwrap()],
            &["a.example".into()],
            &dir.path().join("out"),
        )
        .unwrap();
        let m = TlsMaterial::load(&dir.path().join(CA_CERT_FILE), &c, &k).unwrap();
        m.client_config().unwrap();
        m.server_config().unwrap();
        assert!(!m.stable_secret().is_empty());
        assert_eq!(m.node_name().unwrap(), "node-a");
    }

    #[test]
    fn garbage_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not pem").unwrap();
        let err = TlsMaterial::load(&junk, &junk, &junk).unwrap_err();
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let missing = TlsMaterial::load(&dir.path().join("nope"), &junk, &junk).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
