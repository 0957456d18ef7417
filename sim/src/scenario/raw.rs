//! The scenario file as serde reads it: strings and numbers, checked by
//! [`super::compile`].

use serde::Deserialize;
use std::collections::BTreeMap;

fn default_seed() -> u64 {
    1
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub description: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub settings: RawSettings,
    #[serde(default, rename = "op")]
    pub ops: Vec<toml::Value>,
}

/// `[settings]`: durations as `"200ms"`, `"5s"`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub gossip_interval: Option<String>,
    pub dead_node_grace: Option<String>,
    pub tombstone_ttl: Option<String>,
    pub probe_interval: Option<String>,
    pub probe_timeout: Option<String>,
    pub success_threshold: Option<u32>,
    pub failure_threshold: Option<u32>,
    pub remove_failed: Option<bool>,
    pub fence_ratio: Option<f64>,
    pub poll: Option<String>,
}

/// A node selection: an index, `"all"`, a range `"a..b"` / `"a..=b"`, or a list of
/// those.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawNodes {
    One(usize),
    Text(String),
    List(Vec<RawNodes>),
}

/// What an admin operation must answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// It succeeds (the default).
    #[default]
    Ok,
    /// It is refused.
    Refused,
    /// Either (random schedules).
    Any,
}

/// One `[[op]]`, by its `do`.
#[derive(Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawOp {
    Start {
        nodes: usize,
        #[serde(default)]
        seed_node: usize,
        #[serde(default)]
        allow: Vec<String>,
    },
    Register {
        on: usize,
        url: String,
        #[serde(default)]
        disable_checks: bool,
        #[serde(default)]
        expect: Expect,
    },
    Delete {
        on: usize,
        worker: String,
        #[serde(default)]
        expect: Expect,
    },
    Patch {
        on: usize,
        worker: String,
        #[serde(default)]
        expect: Expect,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        priority: Option<u32>,
        disable_checks: Option<bool>,
    },
    Kill {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Cut {
        a: RawNodes,
        b: RawNodes,
    },
    Heal {
        a: RawNodes,
        b: RawNodes,
    },
    Unreachable {
        worker: String,
        from: Option<RawNodes>,
        #[serde(default)]
        how: crate::check::Failure,
    },
    Reachable {
        worker: String,
        from: Option<RawNodes>,
    },
    Advance {
        by: String,
    },
    AssertWithin {
        deadline: String,
        condition: RawCond,
    },
    AssertFor {
        duration: String,
        condition: RawCond,
    },
    Mark {
        label: String,
    },
}

impl RawOp {
    /// The op's `do` (the tag).
    pub fn kind(v: &toml::Value) -> String {
        v.get("do")
            .and_then(toml::Value::as_str)
            .unwrap_or("?")
            .to_string()
    }
}

/// A condition, by its `check`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawCond {
    Status {
        worker: String,
        status: String,
        on: Option<RawNodes>,
    },
    Gone {
        worker: String,
        on: Option<RawNodes>,
    },
    MembersAlive {
        count: usize,
        on: Option<RawNodes>,
    },
    Count {
        status: String,
        count: usize,
        on: Option<RawNodes>,
    },
    Member {
        node: usize,
        state: String,
        on: Option<RawNodes>,
    },
    Tombstone {
        worker: String,
        generation: Option<u64>,
        on: Option<RawNodes>,
    },
    Advertised {
        worker: String,
        by: usize,
        label: Option<String>,
        on: Option<RawNodes>,
    },
    Verdict {
        worker: String,
        of: usize,
        status: String,
        on: Option<RawNodes>,
    },
    Owner {
        worker: String,
        node: usize,
        on: Option<RawNodes>,
    },
    Label {
        worker: String,
        key: String,
        value: String,
        on: Option<RawNodes>,
    },
    Generation {
        worker: String,
        generation: u64,
        on: Option<RawNodes>,
    },
    Verdicts {
        worker: String,
        count: usize,
        on: Option<RawNodes>,
    },
    Agree {
        on: Option<RawNodes>,
    },
    Degraded {
        node: usize,
        on: Option<RawNodes>,
    },
    NoResurrection {},
    Not {
        condition: Box<RawCond>,
    },
    All {
        of: Vec<RawCond>,
    },
}
