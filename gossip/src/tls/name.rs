//! The node name a certificate was issued for: its subject common name (CN).
//!
//! A node's id is the name in its certificate (SPEC S10): `probemesh tls cert create`
//! and the auto CA write the node name as the CN (and as a DNS name when it is one).
//! The CN is the one place every certificate of the cluster has the name, whatever
//! characters it holds, so it is what both the agent (for `--node-id`) and the transport
//! (for each peer) read.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;

/// Longest node name accepted from a certificate (the agent's node-id limit).
pub const MAX_NODE_NAME: usize = 128;

/// Why a certificate names no usable node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The bytes are not an X.509 certificate.
    #[error("not a valid X.509 certificate")]
    NotACertificate,
    /// No subject common name.
    #[error("the certificate has no subject common name (CN), so it names no node")]
    NoCommonName,
    /// More than one CN: which one is the node would be ambiguous.
    #[error("the certificate has more than one subject common name (CN)")]
    SeveralCommonNames,
    /// The CN is not text, is empty, is too long or holds control characters.
    #[error("the certificate's common name is not a usable node name")]
    BadCommonName,
}

/// The node name of a DER certificate: its one subject CN.
pub fn node_name(cert: &CertificateDer<'_>) -> Result<String, NameError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| NameError::NotACertificate)?;
    let mut names = parsed.subject().iter_common_name();
    let first = names.next().ok_or(NameError::NoCommonName)?;
    if names.next().is_some() {
        return Err(NameError::SeveralCommonNames);
    }
    let name = first.as_str().map_err(|_| NameError::BadCommonName)?;
    if name.is_empty() || name.len() > MAX_NODE_NAME || name.chars().any(char::is_control) {
        return Err(NameError::BadCommonName);
    }
    Ok(name.to_string())
}

/// Why the node name of a certificate file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CertFileNameError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No PEM certificate in it.
    #[error("{0} does not contain a PEM certificate")]
    NoCertificate(std::path::PathBuf),
    /// The certificate names no usable node.
    #[error("{path}: {source}")]
    Name {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: NameError,
    },
}

/// The node name in the first certificate of a PEM file (a node certificate or chain).
pub fn cert_file_node_name(path: &Path) -> Result<String, CertFileNameError> {
    let pem = std::fs::read(path).map_err(|source| CertFileNameError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| CertFileNameError::NoCertificate(path.to_path_buf()))?;
    node_name(&cert).map_err(|source| CertFileNameError::Name {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{create_ca, create_node_cert};

    #[test]
    fn the_node_name_is_the_common_name_of_certificates_we_issue() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(dir.path()).unwrap();
        // A name that is not a DNS name (':' and '_') still round-trips through the CN.
        for node in ["gw-1", "rack_2:gw.3"] {
            let (cert, _) = create_node_cert(
                dir.path(),
                node,
                &["127.0.0.1".parse().unwrap()],
                &["extra.example".into()],
                &dir.path().join("out"),
            )
            .unwrap();
            assert_eq!(cert_file_node_name(&cert).unwrap(), node);
        }
    }

    #[test]
    fn certificates_without_a_usable_name_are_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x.example".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let no_cn = params.self_signed(&key).unwrap();
        assert_eq!(node_name(no_cn.der()).unwrap_err(), NameError::NoCommonName);
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "gw\n1");
        params.distinguished_name = dn;
        let control = params.self_signed(&key).unwrap();
        assert_eq!(
            node_name(control.der()).unwrap_err(),
            NameError::BadCommonName
        );
        assert_eq!(
            node_name(&CertificateDer::from(vec![1u8, 2, 3])).unwrap_err(),
            NameError::NotACertificate
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "nothing here").unwrap();
        assert!(matches!(
            cert_file_node_name(&junk),
            Err(CertFileNameError::NoCertificate(_))
        ));
    }
}
