//! Scenarios as data: a TOML file with a name, a seed, settings and a list of `[[op]]`
//! tables, each naming what it does in `do`. [`load`] parses it with serde and compiles
//! it into typed [`Step`]s ([`compile`]), checking every node index, URL, network and
//! duration first, so a bad file is reported with its path and the op's number and
//! the runner never meets bad input.
//!
//! ```toml
//! name = "a dead worker is evicted everywhere"
//! seed = 7
//! [settings]
//! gossip_interval = "100ms"
//!
//! [[op]]
//! do = "start"
//! nodes = 5
//!
//! [[op]]
//! do = "register"
//! on = 0
//! url = "http://10.0.0.1:8000"
//!
//! [[op]]
//! do = "assert_within"
//! deadline = "10s"
//! condition = { check = "status", worker = "http://10.0.0.1:8000", status = "ready" }
//! ```
//!
//! The ops and conditions are listed in docs/testing.md.

pub mod compile;
mod raw;
pub mod steps;

pub use compile::{Cond, Sel, Settings, Step, Worker, WorkerStatus};
use std::path::Path;

/// A scenario ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name (in failures and traces).
    pub name: String,
    /// The file it came from (or `<inline>`).
    pub file: String,
    /// The seed it runs with unless another is given.
    pub seed: u64,
    /// Cluster and probe settings.
    pub settings: Settings,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario document.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An op is invalid.
    #[error("{file}: op {index} (`{kind}`): {message}")]
    Op {
        /// The file.
        file: String,
        /// 1-based position of the op.
        index: usize,
        /// Its `do`.
        kind: String,
        /// What is wrong.
        message: String,
    },
    /// A setting is invalid.
    #[error("{file}: settings: {message}")]
    Settings {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and compiles the scenario in `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// Compiles the scenario text `text`, naming it `file` in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let raw: raw::RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    compile::compile(file, raw)
}

/// Every scenario in `dir` (files ending in `.toml`), in file name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let read_err = |source| ScenarioError::Read {
        file: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_the_op_and_the_problem() {
        let head = "name = \"x\"\n[[op]]\ndo = \"start\"\nnodes = 2\n";
        assert!(err("nam = 1").starts_with("t.toml: "), "{}", err("nam = 1"));
        let e = err(&format!("{head}[[op]]\ndo = \"kill\"\nnode = 2\n"));
        assert!(e.contains("op 2 (`kill`)") && e.contains("node 2"), "{e}");
        let e = err(&format!(
            "{head}[[op]]\ndo = \"register\"\non = 0\nurl = \"ftp://x\"\n"
        ));
        assert!(e.contains("op 2 (`register`)") && e.contains("url"), "{e}");
        let e = err(&format!("{head}[[op]]\ndo = \"advance\"\nby = \"soon\"\n"));
        assert!(e.contains("op 2 (`advance`)"), "{e}");
        let e = err(&format!("{head}[[op]]\ndo = \"teleport\"\n"));
        assert!(e.contains("teleport"), "{e}");
        let e = err(&format!(
            "{head}[[op]]\ndo = \"cut\"\na = \"0..9\"\nb = 1\n"
        ));
        assert!(
            e.contains("op 2 (`cut`)") && e.contains("node 2 does not exist"),
            "{e}"
        );
        let e = err(
            "name = \"x\"\n[settings]\ngossip_interval = \"0s\"\n[[op]]\ndo = \"start\"\nnodes = 1\n",
        );
        assert!(e.contains("settings"), "{e}");
    }

    #[test]
    fn a_valid_scenario_compiles_to_typed_steps() {
        let s = parse(
            "t.toml",
            r#"
            name = "ok"
            seed = 9
            [[op]]
            do = "start"
            nodes = 3
            [[op]]
            do = "unreachable"
            worker = "http://10.0.0.1:8000"
            from = [0, "1..3"]
            how = "timeout"
            [[op]]
            do = "assert_within"
            deadline = "5s"
            condition = { check = "status", worker = "http://10.0.0.1:8000", status = "failed", on = "all" }
            "#,
        )
        .unwrap();
        assert_eq!(s.seed, 9);
        assert_eq!(s.steps.len(), 3);
        assert!(
            matches!(&s.steps[1], Step::Unreachable { from: Sel::Nodes(v), .. } if v == &[0, 1, 2])
        );
    }
}
