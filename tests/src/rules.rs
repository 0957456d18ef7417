//! Metric names in the alert rules (`deploy/prometheus/alerts.yml`) and the Grafana
//! dashboard (`deploy/grafana/*.json`), and whether an agent's `/metrics` has them.
//!
//! Every `probemesh_…` token of a file counts, in expressions and text alike, so a
//! description cannot name a metric that does not exist either.

use std::collections::BTreeSet;

/// Every `probemesh_[a-z0-9_]+` token in `text`.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("probemesh_") {
        let start = i + off;
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut end = start + "probemesh_".len();
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok && end > start + "probemesh_".len() {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// Whether the exposition `metrics` (OpenMetrics text) has series `name`: a sample of
/// that name, or a family whose `# TYPE` makes it (`_total` of a counter; `_bucket`,
/// `_sum`, `_count` of a histogram; the name itself of a gauge or info), since a
/// labelled family shows no sample until its first labels are used.
pub fn exposes(metrics: &str, name: &str) -> bool {
    let sample = metrics.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    });
    if sample {
        return true;
    }
    let types: Vec<(&str, &str)> = metrics
        .lines()
        .filter_map(|l| {
            let mut p = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((p.next()?, p.next()?))
        })
        .collect();
    types.iter().any(|(family, kind)| match *kind {
        "counter" => name == format!("{family}_total"),
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name == format!("{family}{s}")),
        _ => name == *family,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_expressions_and_text() {
        let got = metric_names(
            "sum(rate(probemesh_probes_total{result!=\"ok\"}[5m])) / x_probemesh_no and probemesh_ (probemesh_workers)",
        );
        let want: BTreeSet<String> = ["probemesh_probes_total", "probemesh_workers"]
            .map(String::from)
            .into();
        assert_eq!(got, want);
    }

    #[test]
    fn families_without_samples_count_by_their_type() {
        let m = "# TYPE probemesh_evictions counter\n# TYPE probemesh_d histogram\nprobemesh_workers{status=\"ready\"} 1\n# EOF\n";
        for yes in [
            "probemesh_evictions_total",
            "probemesh_d_bucket",
            "probemesh_d_count",
            "probemesh_workers",
        ] {
            assert!(exposes(m, yes), "{yes}");
        }
        for no in ["probemesh_evictions", "probemesh_work", "probemesh_d_total"] {
            assert!(!exposes(m, no), "{no}");
        }
    }
}
