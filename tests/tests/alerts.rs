//! The Prometheus alert rules and the Grafana dashboard (`deploy/prometheus`,
//! `deploy/grafana`): promtool's own unit tests of the rules, a runbook section for
//! every alert, and every metric they use present on a live agent's `/metrics`.

use probemesh_tests::binary::workspace_root;
use probemesh_tests::rules::{exposes, metric_names};
use probemesh_tests::{Agent, require};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool(args: &[&str]) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(workspace_root().join("deploy/prometheus"))
        .output()
        .expect("run promtool")
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    if !require::tool(
        "promtool",
        "check and unit-test the alert rules (Debian package prometheus)",
    ) {
        return;
    }
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let out = promtool(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("promtool {}:\n{text}", args.join(" "));
        assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_is_tested_and_links_to_its_runbook_section() {
    let rules = read("deploy/prometheus/alerts.yml");
    let tests = read("deploy/prometheus/alerts_test.yml");
    let ops = read("docs/operations.md");
    let anchors: BTreeSet<String> = ops
        .lines()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(anchor)
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let runbooks: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    assert_eq!(
        alerts.len(),
        runbooks.len(),
        "an alert without a runbook_url"
    );
    for url in &runbooks {
        let (_, frag) = url
            .split_once("docs/operations.md#")
            .unwrap_or_else(|| panic!("{url} does not point into docs/operations.md"));
        assert!(
            anchors.contains(frag),
            "no section #{frag} in docs/operations.md"
        );
    }
    for alert in &alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no promtool unit test in alerts_test.yml"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_alerts_and_the_dashboard_exists_on_a_live_agent() {
    let dashboard_text = read("deploy/grafana/probemesh.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    for e in &exprs {
        assert!(
            metric_names(e).iter().len() > 0,
            "a query without a probemesh metric: {e}"
        );
    }
    let mut used = BTreeSet::new();
    for (file, text) in [
        (
            "deploy/prometheus/alerts.yml",
            read("deploy/prometheus/alerts.yml"),
        ),
        (
            "deploy/prometheus/alerts_test.yml",
            read("deploy/prometheus/alerts_test.yml"),
        ),
        ("deploy/grafana/probemesh.json", dashboard_text.clone()),
    ] {
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        used.extend(names.into_iter().map(|n| (n, file)));
    }
    let agent = Agent::start(&[]).await;
    let metrics = agent.api().metrics().await;
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !exposes(&metrics, name))
        .map(|(name, file)| format!("{name} (in {file})"))
        .collect();
    println!(
        "{} metric names used by the rules and the dashboard, all checked against {}",
        used.iter().map(|(n, _)| n).collect::<BTreeSet<_>>().len(),
        agent.url()
    );
    assert!(
        missing.is_empty(),
        "used but not exported by the agent: {missing:#?}\n--- /metrics ---\n{metrics}"
    );
}
