//! Making TLS material: a cluster CA, node certificates signed by it, and the agent's
//! automatic material when no TLS flags are given.
//!
//! Every file is written atomically (a temporary file, fsync, rename, fsync of the
//! directory) and a private key is always published before its certificate. So a crash
//! at any moment leaves each file whole or absent, and the only half-made sets are a key
//! without its certificate, which [`ensure_auto_material`] completes by issuing the
//! certificate for the key that is there.

use super::{CA_CERT_FILE, CA_KEY_FILE, SERVER_NAME, TlsError, TlsMaterial, io_err};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What [`ensure_auto_material`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoTls {
    /// Everything was there from an earlier start.
    Reused,
    /// A new CA and node certificate were made (first start).
    Created,
    /// A set half-made by a crash during an earlier first start was completed: a
    /// certificate was issued for a key that had been written without it.
    Completed,
}

/// Writes `contents` to `path`, which must not exist, atomically.
fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    if path.exists() {
        return Err(TlsError::Exists(path.to_path_buf()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A temporary file can only be left by a crash of this very step: it is ours.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove", &tmp)(e)),
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
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("cannot write", &tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync directory", dir))
}

fn read_key(path: &Path) -> Result<KeyPair, TlsError> {
    let pem = fs::read_to_string(path).map_err(io_err("cannot read", path))?;
    KeyPair::from_pem(&pem).map_err(|_| TlsError::Pem {
        path: path.to_path_buf(),
        what: "private key",
    })
}

fn ca_certificate(key: &KeyPair) -> Result<Certificate, TlsError> {
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
    Ok(params.self_signed(key)?)
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
    let cert = ca_certificate(&key)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// The CA in `ca_dir`, ready to sign.
fn issuer(ca_dir: &Path) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_pem = fs::read_to_string(&ca_cert_path).map_err(io_err("cannot read", &ca_cert_path))?;
    let ca_key = read_key(&ca_key_path)?;
    Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|_| TlsError::Pem {
        path: ca_cert_path.clone(),
        what: "CA certificate",
    })
}

fn node_certificate(
    issuer: &Issuer<'_, KeyPair>,
    key: &KeyPair,
    node: &str,
    ips: &[IpAddr],
    dns_names: &[String],
) -> Result<Certificate, TlsError> {
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
    Ok(params.signed_by(key, issuer)?)
}

fn node_paths(out: &Path, node: &str) -> (PathBuf, PathBuf) {
    (
        out.join(format!("{node}.pem")),
        out.join(format!("{node}-key.pem")),
    )
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
    let issuer = issuer(ca_dir)?;
    fs::create_dir_all(out).map_err(io_err("cannot create directory", out))?;
    let (cert_path, key_path) = node_paths(out, node);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TlsError::Exists(p.clone()));
        }
    }
    let key = KeyPair::generate()?;
    let cert = node_certificate(&issuer, &key, node, ips, dns_names)?;
    write_new(&key_path, &key.serialize_pem(), true)?;
    write_new(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// The agent's automatic TLS when no TLS flags are given: a private CA and a node
/// certificate under `dir` (normally `--data-dir/tls`), created on first start and
/// reused after. A key left without its certificate by a crash gets its certificate
/// issued now; a certificate without its key is reported, never overwritten.
pub fn ensure_auto_material(dir: &Path, node: &str) -> Result<(TlsMaterial, AutoTls), TlsError> {
    let ca_cert = dir.join(CA_CERT_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    let (cert, key) = node_paths(dir, node);
    let mut outcome = AutoTls::Reused;
    match (ca_cert.exists(), ca_key.exists()) {
        (false, false) => {
            create_ca(dir)?;
            outcome = AutoTls::Created;
        }
        // The key was published, the crash came before its certificate. Nothing can
        // have been signed by a CA whose certificate never existed, so issuing it now
        // for the same key is the CA the first start meant to make.
        (false, true) => {
            let key = read_key(&ca_key)?;
            write_new(&ca_cert, &ca_certificate(&key)?.pem(), false)?;
            outcome = AutoTls::Completed;
        }
        // The CA key is only needed to sign; a node certificate may still be there.
        (true, _) => {}
    }
    match (cert.exists(), key.exists()) {
        (true, true) => {}
        (false, false) => {
            create_node_cert(dir, node, &[], &[], dir)?;
            if outcome == AutoTls::Reused {
                outcome = AutoTls::Created;
            }
        }
        (false, true) => {
            let node_key = read_key(&key)?;
            let signed = node_certificate(&issuer(dir)?, &node_key, node, &[], &[])?;
            write_new(&cert, &signed.pem(), false)?;
            outcome = AutoTls::Completed;
        }
        (true, false) => return Err(TlsError::KeyMissing { cert, key }),
    }
    Ok((TlsMaterial::load(&ca_cert, &cert, &key)?, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (_, outcome) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert_eq!(outcome, AutoTls::Created);
        let ca_before = fs::read(dir.path().join(CA_CERT_FILE)).unwrap();
        let (_, outcome) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert_eq!(outcome, AutoTls::Reused);
        assert_eq!(fs::read(dir.path().join(CA_CERT_FILE)).unwrap(), ca_before);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_crash_between_a_ca_key_and_its_certificate_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        ensure_auto_material(dir.path(), "n1").unwrap();
        let key_before = fs::read(dir.path().join(CA_KEY_FILE)).unwrap();
        // The state a crash after publishing the CA key leaves (nothing signed yet),
        // plus a temporary file of the interrupted certificate write.
        for f in [CA_CERT_FILE, "n1.pem", "n1-key.pem"] {
            fs::remove_file(dir.path().join(f)).unwrap();
        }
        fs::write(dir.path().join("ca.pem.tmp"), "-----BEGIN CERT").unwrap();
        let (m, outcome) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert_eq!(outcome, AutoTls::Completed);
        m.server_config().unwrap();
        assert_eq!(fs::read(dir.path().join(CA_KEY_FILE)).unwrap(), key_before);
        assert!(!dir.path().join("ca.pem.tmp").exists());
    }

    #[test]
    fn a_crash_between_a_node_key_and_its_certificate_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        ensure_auto_material(dir.path(), "n1").unwrap();
        let key_before = fs::read(dir.path().join("n1-key.pem")).unwrap();
        fs::remove_file(dir.path().join("n1.pem")).unwrap();
        let (m, outcome) = ensure_auto_material(dir.path(), "n1").unwrap();
        assert_eq!(outcome, AutoTls::Completed);
        m.client_config().unwrap();
        assert_eq!(fs::read(dir.path().join("n1-key.pem")).unwrap(), key_before);
    }

    #[test]
    fn a_certificate_without_its_key_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        ensure_auto_material(dir.path(), "n1").unwrap();
        let cert_before = fs::read(dir.path().join("n1.pem")).unwrap();
        fs::remove_file(dir.path().join("n1-key.pem")).unwrap();
        let err = ensure_auto_material(dir.path(), "n1").unwrap_err();
        assert!(matches!(err, TlsError::KeyMissing { .. }), "{err}");
        assert!(
            err.to_string().contains("move the certificate away"),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join("n1.pem")).unwrap(), cert_before);
    }
}
