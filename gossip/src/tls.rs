//! Mutual TLS for gossip: cluster CA and node certificates (rcgen), and the rustls
//! configurations quinn uses (ring provider, TLS 1.3 only, fixed ALPN, no 0-RTT, client
//! certificates required).
//!
//! Trust is membership in the cluster CA: a peer is accepted when its certificate chains
//! to the CA, whatever name it carries, because peers are dialed by the addresses they
//! gossip, not by names. See docs/security.md.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fs;
use std::net::IpAddr;
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

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    if path.exists() {
        return Err(TlsError::Exists(path.to_path_buf()));
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    let mut f = opts.open(path).map_err(io_err("cannot create", path))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err("cannot write", path))
}

/// Creates a cluster CA in `dir`: `ca.pem` and `ca-key.pem` (mode 0600).
pub fn create_ca(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    fs::create_dir_all(dir).map_err(io_err("cannot create directory", dir))?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TlsError::Exists(p.clone()));
        }
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "probemesh cluster CA");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.self_signed(&key)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// Creates a node certificate signed by the CA in `ca_dir`: `out/NAME.pem` and
/// `out/NAME-key.pem`. The certificate names the node, `ips` and `dns_names`; it is valid
/// as both TLS server and client, as every node is both.
pub fn create_node_cert(
    ca_dir: &Path,
    node: &str,
    ips: &[IpAddr],
    dns_names: &[String],
    out: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_pem = fs::read_to_string(&ca_cert_path).map_err(io_err("cannot read", &ca_cert_path))?;
    let ca_key_pem =
        fs::read_to_string(&ca_key_path).map_err(io_err("cannot read", &ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|_| TlsError::Pem {
        path: ca_key_path.clone(),
        what: "private key",
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|_| TlsError::Pem {
        path: ca_cert_path.clone(),
        what: "CA certificate",
    })?;
    fs::create_dir_all(out).map_err(io_err("cannot create directory", out))?;
    let cert_path = out.join(format!("{node}.pem"));
    let key_path = out.join(format!("{node}-key.pem"));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TlsError::Exists(p.clone()));
        }
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    let mut sans = vec![SanType::DnsName(SERVER_NAME.try_into()?)];
    if let Ok(name) = node.try_into() {
        sans.push(SanType::DnsName(name));
    }
    for d in dns_names {
        sans.push(SanType::DnsName(d.as_str().try_into()?));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// The agent's automatic TLS when no TLS flags are given: a private CA and a node
/// certificate under `dir` (normally `--data-dir/tls`), created on first start and
/// reused after. Returns the material and whether it was just created.
pub fn ensure_auto_material(dir: &Path, node: &str) -> Result<(TlsMaterial, bool), TlsError> {
    let ca = dir.join(CA_CERT_FILE);
    let cert = dir.join(format!("{node}.pem"));
    let key = dir.join(format!("{node}-key.pem"));
    let mut created = false;
    if !ca.exists() {
        create_ca(dir)?;
        created = true;
    }
    if !cert.exists() {
        create_node_cert(dir, node, &[], &[], dir)?;
        created = true;
    }
    Ok((TlsMaterial::load(&ca, &cert, &key)?, created))
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
    }

    #[test]
    fn existing_material_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path()).unwrap();
        assert!(matches!(create_ca(dir.path()), Err(TlsError::Exists(_))));
        create_node_cert(dir.path(), "n", &[], &[], dir.path()).unwrap();
        assert!(matches!(
            create_node_cert(dir.path(), "n", &[], &[], dir.path()),
            Err(TlsError::Exists(_))
        ));
    }

    #[test]
    fn auto_material_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, created) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert!(created);
        let ca_before = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        let (_, created) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert!(!created);
        assert_eq!(fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_before);
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
