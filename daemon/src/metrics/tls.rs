//! Expiry of the node's TLS certificates (`probemesh_tls_certificate_expiry_timestamp_seconds`).
//!
//! The agent loads its certificates once, at start, so the gauge is set once: the
//! `notAfter` of the node certificate (the first of its chain) and of the cluster CA,
//! as Unix seconds. An alert compares it with `time()`; a renewed certificate takes
//! effect, and shows here, at the next restart.

use super::Metrics;
use crate::config::TlsSource;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};

/// The CA and node certificate files the agent loads.
pub fn certificate_files(tls: &TlsSource, data_dir: &Path, node_id: &str) -> (PathBuf, PathBuf) {
    match tls {
        TlsSource::Files { ca, cert, .. } => (ca.clone(), cert.clone()),
        TlsSource::Auto => {
            let dir = data_dir.join("tls");
            (
                dir.join(probemesh_gossip::tls::CA_CERT_FILE),
                dir.join(format!("{node_id}.pem")),
            )
        }
    }
}

/// `notAfter` of the first certificate in the PEM file at `path`, in Unix seconds.
pub fn not_after(path: &Path) -> Result<i64, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("{}: no PEM certificate", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Records the expiry of the certificates the agent loaded; a file that cannot be
/// read again is logged and left out (the gauge then lacks that series, which the
/// alert's `absent` rule reports).
pub fn record_certificate_expiry(
    metrics: &Metrics,
    tls: &TlsSource,
    data_dir: &Path,
    node_id: &str,
) {
    let (ca, node) = certificate_files(tls, data_dir, node_id);
    for (which, path) in [("node", node), ("ca", ca)] {
        match not_after(&path) {
            Ok(t) => metrics.certificate_expiry(which, t),
            Err(e) => {
                tracing::warn!(certificate = which, error = %e, "cannot read the expiry of a TLS certificate")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_generated_material_is_exported() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        probemesh_gossip::tls::ensure_auto_material(&tls_dir, "node-x").unwrap();
        let m = Metrics::new();
        record_certificate_expiry(&m, &TlsSource::Auto, dir.path(), "node-x");
        let text = m.render(&crate::registry::View::default());
        for which in ["node", "ca"] {
            let line = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "probemesh_tls_certificate_expiry_timestamp_seconds{{certificate=\"{which}\"}}"
                    ))
                })
                .unwrap_or_else(|| panic!("no {which} series in\n{text}"));
            let t: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            // Generated material is valid until 2124.
            assert!(t > 4_800_000_000.0, "{line}");
        }
    }
}
