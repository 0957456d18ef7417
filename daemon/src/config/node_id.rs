//! The node id from the configuration and the certificate (SPEC S10): with
//! `--tls-cert`, the node name in the certificate, which an explicit `--node-id` must
//! equal; without, `--node-id` or the host name. The one function that decides the id;
//! `--node-id` itself was already checked against the node-id rule by its parser.

use super::{ConfigProblem, Resolver, Source, TlsSource, validate_node_id};

/// The node id (SPEC S10): with `--tls-cert`, the node name in the certificate, which an
/// explicit `--node-id` must equal; without, `--node-id` or the host name (the auto
/// TLS material is then made for that id, so the two always agree).
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    picked: Option<(String, Source)>,
    tls: &TlsSource,
) -> String {
    let TlsSource::Files { cert, .. } = tls else {
        return picked.map_or_else(super::default_node_id, |(id, _)| id);
    };
    let name = match probemesh_gossip::tls::cert_file_node_name(cert) {
        Ok(name) => name,
        Err(e) => {
            r.problems.push(ConfigProblem(format!(
                "tls_cert: cannot read the node name (the subject CN) of the certificate, which is this node's id: {e}"
            )));
            return picked.map_or_else(super::default_node_id, |(id, _)| id);
        }
    };
    match picked {
        Some((id, src)) if id != name => {
            r.problem(
                "node_id",
                src,
                format!(
                    "`{id}` is not the node name `{name}` of the certificate {} (tls_cert); a node's id is the name its certificate was issued for. Leave node_id out to use `{name}`, or use a certificate made for `{id}` (probemesh tls cert create --node {id})",
                    cert.display()
                ),
            );
            id
        }
        Some((id, _)) => id,
        None => {
            if let Err(e) = validate_node_id(&name) {
                r.problems.push(ConfigProblem(format!(
                    "tls_cert: the certificate's node name `{}` cannot be a node id: {e}",
                    name.escape_debug()
                )));
            }
            name
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::load_from;
    use std::path::{Path, PathBuf};

    fn node_cert(dir: &Path, node: &str) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca");
        if !ca.join("ca.pem").exists() {
            probemesh_gossip::tls::create_ca(&ca).unwrap();
        }
        let (cert, key) =
            probemesh_gossip::tls::create_node_cert(&ca, node, &[], &[], &dir.join("certs"))
                .unwrap();
        (ca.join("ca.pem"), cert, key)
    }

    /// The TLS flags for `files`, and `--node-id` if given.
    fn with_tls(files: &(PathBuf, PathBuf, PathBuf), node_id: Option<&str>) -> Vec<String> {
        let mut argv = Vec::new();
        for (flag, path) in [
            ("--tls-ca", &files.0),
            ("--tls-cert", &files.1),
            ("--tls-key", &files.2),
        ] {
            argv.push(flag.to_string());
            argv.push(path.display().to_string());
        }
        if let Some(id) = node_id {
            argv.push("--node-id".into());
            argv.push(id.into());
        }
        argv
    }

    fn load_tls(
        argv: &[String],
        env: &[(&str, &str)],
    ) -> Result<super::super::AgentConfig, super::super::ConfigError> {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        load_from(&argv, env)
    }

    #[test]
    fn the_node_id_is_the_certificates_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let beta = node_cert(dir.path(), "beta");
        let c = load_tls(&with_tls(&beta, None), &[]).unwrap();
        assert_eq!(c.node_id, "beta", "defaults to the certificate's name");
        let c = load_tls(&with_tls(&beta, Some("beta")), &[]).unwrap();
        assert_eq!(c.node_id, "beta", "an equal --node-id is fine");
        let msg = load_tls(&with_tls(&beta, Some("alpha")), &[])
            .unwrap_err()
            .to_string();
        for needle in ["flag --node-id", "`alpha`", "`beta`", "beta.pem"] {
            assert!(msg.contains(needle), "missing {needle} in:\n{msg}");
        }
        // From the environment too, named as such.
        let msg = load_tls(&with_tls(&beta, None), &[("PROBEMESH_NODE_ID", "alpha")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("PROBEMESH_NODE_ID"), "{msg}");
        // A certificate file that is not one is reported under tls_cert.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "x").unwrap();
        let (ca, _, key) = node_cert(dir.path(), "gamma");
        let msg = load_tls(&with_tls(&(ca, junk, key), None), &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("tls_cert") && msg.contains("junk.pem"),
            "{msg}"
        );
    }
}
