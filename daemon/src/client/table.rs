//! Plain-text tables for the client commands.

use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns separated by two spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// The `workers list` table.
pub fn workers(list: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = list["workers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|w| {
            vec![
                text(&w["id"]),
                text(&w["url"]),
                text(&w["status"]),
                text(&w["model_id"]),
                text(&w["origin"]),
                text(&w["generation"]),
                text(&w["probe"]["last_result"]),
                text(&w["status_since"]),
            ]
        })
        .collect();
    let mut out = render(
        &[
            "ID", "URL", "STATUS", "MODEL", "ORIGIN", "GEN", "LAST", "SINCE",
        ],
        &rows,
    );
    out.push_str(&format!(
        "{} worker(s) on node {}\n",
        rows.len(),
        text(&list["node_id"])
    ));
    out
}

/// The `members` table.
pub fn members(list: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = list["members"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|m| {
            let name = if m["is_self"].as_bool() == Some(true) {
                format!("{} (self)", text(&m["node_id"]))
            } else {
                text(&m["node_id"])
            };
            vec![
                name,
                text(&m["gossip_addr"]),
                text(&m["state"]),
                text(&m["workers_owned"]),
                text(&m["version"]),
            ]
        })
        .collect();
    render(&["NODE", "GOSSIP_ADDR", "STATE", "OWNED", "VERSION"], &rows)
}

/// The `workers get` output: fields, then one line per member view.
pub fn worker_detail(w: &Value) -> String {
    let mut rows = Vec::new();
    for key in [
        "id",
        "url",
        "status",
        "routable",
        "model_id",
        "worker_type",
        "origin",
        "owner",
        "generation",
        "status_since",
        "priority",
        "cost",
        "bootstrap_port",
        "labels",
    ] {
        rows.push(vec![key.to_string(), text(&w[key])]);
    }
    for key in [
        "path",
        "interval",
        "timeout",
        "success_threshold",
        "failure_threshold",
        "disable",
        "kind",
    ] {
        rows.push(vec![format!("health.{key}"), text(&w["health"][key])]);
    }
    for key in [
        "consecutive_successes",
        "consecutive_failures",
        "pending_probes",
        "last_result",
        "last_probe_at",
        "last_latency_ms",
    ] {
        rows.push(vec![format!("probe.{key}"), text(&w["probe"][key])]);
    }
    let mut out = render(&["FIELD", "VALUE"], &rows);
    if let Some(views) = w["views"].as_object() {
        let vrows: Vec<Vec<String>> = views
            .iter()
            .map(|(node, v)| vec![node.clone(), text(&v["status"]), text(&v["updated_at"])])
            .collect();
        out.push('\n');
        out.push_str(&render(&["NODE", "STATUS", "SINCE"], &vrows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_and_missing_values_show_a_dash() {
        let v = json!({"node_id": "n1", "workers": [
            {"id": "a", "url": "http://long-host:1", "status": "ready", "model_id": null, "origin": "local", "generation": 1, "probe": {"last_result": "ok"}, "status_since": "t"},
            {"id": "bb", "url": "http://h:2", "status": "pending", "model_id": "m", "origin": "peer", "generation": 2, "probe": {"last_result": null}, "status_since": "t"}
        ]});
        let out = workers(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("ID  URL"));
        assert_eq!(lines[1].find("ready"), lines[2].find("pending"));
        assert!(lines[1].contains(" - "));
        assert!(out.ends_with("2 worker(s) on node n1\n"));
    }
}
