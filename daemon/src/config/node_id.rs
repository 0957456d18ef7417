//! The node id from the configuration and the certificate (SPEC S10): with
//! `--tls-cert`, the node name in the certificate, which an explicit `--node-id` must
//! equal; without, `--node-id` or the host name.

use super::{ConfigProblem, Resolver, Source, TlsSource, validate_node_id};

/// The node id (SPEC S10): with `--tls-cert`, the node name in the certificate, which an
/// explicit `--node-id` must equal; without, `--node-id` or the host name (the auto
/// TLS material is then made for that id, so the two always agree).
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    picked: Option<(String, Source)>,
    tls: Option<&TlsSource>,
) -> String {
    let Some(TlsSource::Files { cert, .. }) = tls else {
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
    use super::super::load;
    use crate::cli::AgentArgs;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

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

    fn with_tls(files: (PathBuf, PathBuf, PathBuf), node_id: Option<&str>) -> AgentArgs {
        AgentArgs {
            tls_ca: Some(files.0),
            tls_cert: Some(files.1),
            tls_key: Some(files.2),
            node_id: node_id.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_node_id_is_the_certificates_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let beta = node_cert(dir.path(), "beta");
        let c = load(&with_tls(beta.clone(), None), &env_of(&[])).unwrap();
        assert_eq!(c.node_id, "beta", "defaults to the certificate's name");
        let c = load(&with_tls(beta.clone(), Some("beta")), &env_of(&[])).unwrap();
        assert_eq!(c.node_id, "beta", "an equal --node-id is fine");
        let msg = load(&with_tls(beta.clone(), Some("alpha")), &env_of(&[]))
            .unwrap_err()
            .to_string();
        for needle in ["flag --node-id", "`alpha`", "`beta`", "beta.pem"] {
            assert!(msg.contains(needle), "missing {needle} in:\n{msg}");
        }
        // From the environment too, named as such.
        let msg = load(
            &with_tls(beta, None),
            &env_of(&[("PROBEMESH_NODE_ID", "alpha")]),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("PROBEMESH_NODE_ID"), "{msg}");
        // A certificate file that is not one is reported under tls_cert.
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "x").unwrap();
        let (ca, _, key) = node_cert(dir.path(), "gamma");
        let msg = load(&with_tls((ca, junk, key), None), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("tls_cert") && msg.contains("junk.pem"),
            "{msg}"
        );
    }
}
