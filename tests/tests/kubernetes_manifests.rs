//! The Kubernetes manifests (`deploy/kubernetes`, issue 17), checked offline: the base
//! and the example overlay render with `kubectl kustomize`, every rendered object
//! validates (strict: no unknown field) against the Kubernetes 1.30 and 1.37 schemas
//! of PyPI `kubernetes-validate`, and the rendering keeps the promises docs/deploy.md
//! makes (sidecar, admin API on localhost with exec probes, seeds from a headless
//! Service, node id from the pod name, per-pod certificates, PDB, gossip-only
//! NetworkPolicy, resources).
//!
//! Needs `kubectl` and python3 with venv; without them it prints SKIPPED, or fails
//! under `PROBEMESH_REQUIRE_ROOT_TESTS=1` (CI).

use probemesh_tests::kube::{render, to_json, validate, validator_python};
use probemesh_tests::require;
use serde_json::Value;
use std::path::PathBuf;

/// The Kubernetes versions the manifests are validated against (stated in
/// docs/deploy.md): the oldest minor they claim and the newest schemas available.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// Kinds without a published schema (custom resources), allowed to be skipped by the
/// validator; anything else it cannot find a schema for is an error.
const CUSTOM_KINDS: [&str; 1] = ["Issuer"];
const DIRS: [&str; 2] = [
    "deploy/kubernetes/base",
    "deploy/kubernetes/overlays/example",
];

fn setup() -> Option<PathBuf> {
    if !require::tool("kubectl", "render the kustomizations (kubectl kustomize)") {
        return None;
    }
    require::ok(validator_python(), "kubernetes-validate (PyPI, in a venv)")
}

/// Validates one YAML text for every version; panics on any error or unexpected skip.
fn validate_all(python: &std::path::Path, name: &str, yaml: &str, objects: &[Value]) {
    let file = tempfile::Builder::new()
        .prefix("probemesh-k8s-")
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), yaml).expect("write rendering");
    let builtin = objects
        .iter()
        .filter(|o| !CUSTOM_KINDS.contains(&o["kind"].as_str().unwrap_or("")))
        .count();
    for version in KUBERNETES_VERSIONS {
        let v = validate(python, file.path(), version).expect("run kubernetes-validate");
        let report = v.lines.join("\n");
        assert_eq!(v.code, Some(0), "{name} against {version}:\n{report}");
        for line in &v.lines {
            assert!(
                !line.starts_with("ERROR") && !line.starts_with("FATAL"),
                "{name} against {version}: {line}"
            );
            if line.starts_with("WARN") {
                assert!(
                    CUSTOM_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("kind {k} "))),
                    "{name} against {version}: no schema for a built-in kind: {line}"
                );
            }
        }
        let passed = v.lines.iter().filter(|l| l.contains(" passed ")).count();
        assert_eq!(
            passed, builtin,
            "{name} against {version}: every built-in object must pass:\n{report}"
        );
        println!("{name}: {passed} objects valid against Kubernetes {version} (strict)");
    }
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let all = find(objects, kind);
    assert_eq!(all.len(), 1, "one {kind} expected, found {}", all.len());
    all[0]
}

fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

fn env_value(container: &Value, name: &str) -> String {
    env_of(container, name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("env {name} has no value in {container}"))
        .to_string()
}

/// Whether every label of `selector` (a `matchLabels` map) is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

/// The promises of docs/deploy.md, on one rendering.
fn check_promises(name: &str, objects: &[Value]) {
    let deploy = one(objects, "Deployment");
    let pod = &deploy["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let smg = containers
        .iter()
        .find(|c| c["name"] == "smg")
        .expect("smg container");
    let pm = containers
        .iter()
        .find(|c| c["name"] == "probemesh")
        .expect("probemesh sidecar");

    // Push into the smg container of the same pod.
    let smg_port = smg["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "http"))
        .and_then(|p| p["containerPort"].as_u64())
        .expect("smg http port");
    assert_eq!(
        env_value(pm, "PROBEMESH_SMG_URL"),
        format!("http://127.0.0.1:{smg_port}"),
        "{name}"
    );

    // The admin API stays on localhost: not configured away from the default, no port
    // exposed, and the kubelet probes it with exec probes inside the container.
    assert!(
        env_of(pm, "PROBEMESH_ADMIN_LISTEN").is_none(),
        "{name}: admin listen set"
    );
    let ports = pm["ports"].as_array().expect("probemesh ports");
    assert!(
        ports
            .iter()
            .all(|p| p["protocol"] == "UDP" && p["containerPort"] == 7800),
        "{name}: only gossip is exposed: {ports:?}"
    );
    for (probe, what) in [("readinessProbe", "ready"), ("livenessProbe", "health")] {
        let command: Vec<&str> = pm[probe]["exec"]["command"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            command.get(..3),
            Some(&["probemesh", "check", what][..]),
            "{name}: {probe}"
        );
    }

    // Node id from the pod name (downward API), advertise from the pod IP.
    assert_eq!(env_value(pm, "PROBEMESH_NODE_ID"), "$(POD_NAME)", "{name}");
    assert_eq!(
        env_of(pm, "POD_NAME").map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&Value::from("metadata.name")),
        "{name}"
    );
    assert_eq!(
        env_value(pm, "PROBEMESH_GOSSIP_ADVERTISE"),
        "$(POD_IP):7800",
        "{name}"
    );
    assert_eq!(
        env_of(pm, "POD_IP").map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]),
        Some(&Value::from("status.podIP")),
        "{name}"
    );

    // Seeds: a headless Service of this rendering, selecting these pods, not-ready ones
    // included, on UDP 7800.
    let seeds = env_value(pm, "PROBEMESH_SEEDS");
    let (host, port) = seeds.rsplit_once(':').expect("host:port");
    assert_eq!(port, "7800", "{name}");
    let svc = find(objects, "Service")
        .into_iter()
        .find(|s| s["metadata"]["name"] == host)
        .unwrap_or_else(|| panic!("{name}: no Service named {host} for the seeds"));
    assert_eq!(
        svc["spec"]["clusterIP"], "None",
        "{name}: seeds need a headless Service"
    );
    assert_eq!(svc["spec"]["publishNotReadyAddresses"], true, "{name}");
    assert!(
        selects(&svc["spec"]["selector"], pod_labels),
        "{name}: {svc}"
    );
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "UDP", "{name}");

    // Certificates per pod: the CSI driver issues one with the pod name, and the TLS
    // flags point into its mount.
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let tls = volumes
        .iter()
        .find(|v| v["csi"]["driver"] == "csi.cert-manager.io")
        .expect("a cert-manager CSI volume");
    let attrs = &tls["csi"]["volumeAttributes"];
    assert_eq!(
        attrs["csi.cert-manager.io/common-name"], "${POD_NAME}",
        "{name}"
    );
    assert_eq!(attrs["csi.cert-manager.io/fs-group"], "65532", "{name}");
    let mount = pm["volumeMounts"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == tls["name"]))
        .expect("the TLS volume is mounted in the sidecar");
    assert_eq!(mount["readOnly"], true, "{name}");
    let dir = mount["mountPath"].as_str().expect("mountPath");
    for (var, file) in [
        ("PROBEMESH_TLS_CA", "ca.crt"),
        ("PROBEMESH_TLS_CERT", "tls.crt"),
        ("PROBEMESH_TLS_KEY", "tls.key"),
    ] {
        assert_eq!(env_value(pm, var), format!("{dir}/{file}"), "{name}");
    }
    // The data directory (the image's working directory /data) is a volume.
    assert!(
        pm["volumeMounts"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == "/data")),
        "{name}: /data must be mounted (read-only root filesystem)"
    );
    let sc = &pm["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(sc["runAsUser"], 65532, "{name}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");

    // Resources from the measured figures.
    let requests = &pm["resources"]["requests"];
    assert!(
        requests["cpu"].is_string() && requests["memory"].is_string(),
        "{name}"
    );
    assert!(pm["resources"]["limits"]["memory"].is_string(), "{name}");

    // PodDisruptionBudget for these pods.
    let pdb = one(objects, "PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels),
        "{name}: {pdb}"
    );

    // NetworkPolicy: UDP 7800 only from the gateway pods; nothing admits TCP 7801.
    let np = one(objects, "NetworkPolicy");
    assert!(
        selects(&np["spec"]["podSelector"]["matchLabels"], pod_labels),
        "{name}"
    );
    let rules = np["spec"]["ingress"].as_array().expect("ingress rules");
    let gossip = rules
        .iter()
        .find(|r| {
            r["ports"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["protocol"] == "UDP" && p["port"] == 7800)
            })
        })
        .unwrap_or_else(|| panic!("{name}: no ingress rule for UDP 7800"));
    let from = gossip["from"].as_array().expect("gossip rule has sources");
    assert!(
        !from.is_empty()
            && from
                .iter()
                .all(|f| selects(&f["podSelector"]["matchLabels"], pod_labels)),
        "{name}: gossip must come from the gateway pods only: {gossip}"
    );
    for r in rules {
        let ports = r["ports"].as_array().expect("every rule names its ports");
        assert!(
            ports.iter().all(|p| p["port"] != 7801),
            "{name}: the admin API must not be admitted: {r}"
        );
    }
}

#[test]
fn base_and_example_overlay_render_validate_and_keep_their_promises() {
    let Some(python) = setup() else { return };
    for dir in DIRS {
        let yaml = render(dir).unwrap_or_else(|e| panic!("{e}"));
        let objects = to_json(&python, &yaml).expect("rendering as JSON");
        validate_all(&python, dir, &yaml, &objects);
        check_promises(dir, &objects);
    }
    // The overlay changes what it says it changes.
    let overlay = to_json(&python, &render(DIRS[1]).expect("render overlay")).expect("JSON");
    let deploy = one(&overlay, "Deployment");
    assert_eq!(deploy["metadata"]["namespace"], "llm-gateway");
    assert_eq!(deploy["spec"]["replicas"], 4);
    let images: Vec<&str> = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert!(
        images.contains(&"registry.example.internal/probemesh:0.1.0"),
        "{images:?}"
    );
    assert_eq!(one(&overlay, "Issuer")["metadata"]["name"], "probemesh-ca");
}

#[test]
fn the_validator_rejects_what_kubernetes_would() {
    let Some(python) = setup() else { return };
    // A typo in a field name and a removed API version: both must be errors, or the
    // test above proves nothing.
    let broken = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  replica: 3
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: c, image: i}]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata:
  name: y
spec:
  maxUnavailable: 1
  selector: {matchLabels: {a: b}}
";
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), broken).expect("write");
    let v = validate(&python, file.path(), "1.37.0").expect("run kubernetes-validate");
    let report = v.lines.join("\n");
    assert_ne!(v.code, Some(0), "{report}");
    assert!(
        v.lines
            .iter()
            .any(|l| l.starts_with("ERROR") && l.contains("deployment/x")),
        "{report}"
    );
    // policy/v1beta1 is gone since 1.25: no schema, which validate_all treats as an
    // error for a built-in kind.
    assert!(
        v.lines
            .iter()
            .any(|l| l.starts_with("WARN") && l.contains("PodDisruptionBudget")),
        "{report}"
    );
}
