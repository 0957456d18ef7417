//! The three raw layers: flags (text, as clap kept them), the environment (text), and
//! the file (TOML values). Nothing here knows a setting's type beyond its TOML type:
//! a layer only finds what was written for a key, so that `resolve.rs` parses every
//! source through the same parser.

use super::ConfigProblem;
use super::key::{FileType, env_name};
use super::schema;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Where a value came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `PROBEMESH_*` environment variable.
    Env,
    /// A key of the `--config` file.
    File,
}

impl Source {
    /// How a problem names `key` from this source: `flag --probe-interval`,
    /// `environment variable PROBEMESH_PROBE_INTERVAL`, `config file key
    /// `probe_interval``.
    pub fn describe(self, key: &str) -> String {
        match self {
            Source::Flag => format!("flag --{}", super::key::flag_name(key)),
            Source::Env => format!("environment variable {}", env_name(key)),
            Source::File => format!("config file key `{key}`"),
        }
    }
}

/// What one source holds for a key, not yet parsed.
pub enum Raw<'a> {
    /// Every value of the flag, in order (clap refuses a second one for single-valued
    /// flags, and splits a comma list where the flag allows it).
    Flag(&'a [String]),
    /// The variable's text.
    Env(String),
    /// The file's value.
    File(&'a toml::Value),
}

impl Raw<'_> {
    /// The text of a one-value setting. A file value must have the setting's TOML type.
    pub fn text(&self, want: FileType) -> Result<String, String> {
        match (self, want) {
            (Raw::Flag(values), _) => Ok(values.last().cloned().unwrap_or_default()),
            (Raw::Env(text), _) => Ok(text.clone()),
            (Raw::File(toml::Value::String(s)), FileType::String) => Ok(s.clone()),
            (Raw::File(toml::Value::Integer(i)), FileType::Integer) => Ok(i.to_string()),
            (Raw::File(toml::Value::Boolean(b)), FileType::Boolean) => Ok(b.to_string()),
            (Raw::File(toml::Value::Float(f)), FileType::Float) => Ok(f.to_string()),
            (Raw::File(toml::Value::Integer(i)), FileType::Float) => Ok(i.to_string()),
            (Raw::File(other), want) => Err(format!(
                "expected {}, found {}",
                match want {
                    FileType::String => "a string (in quotes)",
                    FileType::Integer => "an integer",
                    FileType::Boolean => "true or false",
                    FileType::Float => "a number",
                },
                Found(other)
            )),
        }
    }

    /// The elements of a list setting: the flag's values, the variable's comma list
    /// (spaces around elements trimmed, empty ones dropped), or the file's array of
    /// strings.
    pub fn list(&self) -> Result<Vec<String>, String> {
        match self {
            Raw::Flag(values) => Ok(values.to_vec()),
            Raw::Env(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()),
            Raw::File(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "expected an array of strings, found an element that is {}",
                        Found(other)
                    )),
                })
                .collect(),
            Raw::File(other) => Err(format!(
                "expected an array of strings, found {}",
                Found(other)
            )),
        }
    }
}

/// A TOML value named for a message: `a string: "yes"`.
struct Found<'a>(&'a toml::Value);

impl fmt::Display for Found<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let article = match self.0 {
            toml::Value::Integer(_) | toml::Value::Array(_) => "an",
            _ => "a",
        };
        write!(f, "{article} {}: {}", self.0.type_str(), self.0)
    }
}

/// The file's top-level keys and values.
#[derive(Debug, Default)]
pub struct FileLayer {
    values: BTreeMap<String, toml::Value>,
}

impl FileLayer {
    /// Reads and parses the file. A file that cannot be read or is not TOML is one
    /// problem, reported alone (`Err`): nothing in it can be trusted. A key that is not
    /// a setting, or whose value has the wrong TOML type, is a problem reported with
    /// every other (`Ok`), by line; the type is checked for every key, also for one a
    /// flag overrides, because the whole file must be a valid file.
    pub fn read(path: &Path) -> Result<(FileLayer, Vec<ConfigProblem>), ConfigProblem> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigProblem::new(format!("cannot read config file {}: {e}", path.display()))
        })?;
        Self::parse(&text)
            .map_err(|e| ConfigProblem::new(format!("config file {}: {e}", path.display())))
    }

    /// [`FileLayer::read`] on text already read.
    pub fn parse(text: &str) -> Result<(FileLayer, Vec<ConfigProblem>), toml::de::Error> {
        let table: BTreeMap<toml::Spanned<String>, toml::Value> = toml::from_str(text)?;
        let mut problems = Vec::new();
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let before = text.get(..key.span().start).unwrap_or_default();
            let line = 1 + before.matches('\n').count();
            let key = key.into_inner();
            let Some(setting) = schema::find(&key) else {
                problems.push(ConfigProblem::new(format!(
                    "{}: not a setting (line {line}){}",
                    Source::File.describe(&key),
                    suggestion(&key)
                )));
                continue;
            };
            let raw = Raw::File(&value);
            let typed = if setting.is_list() {
                raw.list().map(drop)
            } else {
                raw.text(setting.file_type()).map(drop)
            };
            if let Err(e) = typed {
                problems.push(ConfigProblem::new(format!(
                    "{}: {e} (line {line})",
                    Source::File.describe(&key)
                )));
                continue;
            }
            values.insert(key, value);
        }
        Ok((FileLayer { values }, problems))
    }
}

/// `; did you mean `probe_interval`?` for a key one or two edits away from a setting,
/// else a pointer to the list.
fn suggestion(key: &str) -> String {
    let near = schema::KEYS
        .iter()
        .map(|k| (edit_distance(key, k.name()), k.name()))
        .filter(|(d, _)| *d <= 2)
        .min();
    match near {
        Some((_, name)) => format!("; did you mean `{name}`?"),
        None => "; the keys are the agent's flags in snake_case (docs/configuration.md)".into(),
    }
}

/// Levenshtein distance, for the suggestion only (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The three layers of one start-up, looked up in precedence order.
pub struct Layers<'a> {
    /// Flag values by setting name (`cli::AgentArgs::values`).
    pub flags: &'a BTreeMap<String, Vec<String>>,
    /// Environment lookup by variable name.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The file, empty without `--config`.
    pub file: FileLayer,
}

impl Layers<'_> {
    /// What the first source that has `key` holds for it: flag > env > file.
    pub fn find(&self, key: &str) -> Option<(Raw<'_>, Source)> {
        if let Some(values) = self.flags.get(key).filter(|v| !v.is_empty()) {
            return Some((Raw::Flag(values), Source::Flag));
        }
        if let Some(text) = (self.env)(&env_name(key)) {
            return Some((Raw::Env(text), Source::Env));
        }
        self.file
            .values
            .get(key)
            .map(|v| (Raw::File(v), Source::File))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_their_line_and_a_near_setting() {
        let (layer, problems) =
            FileLayer::parse("probe_interval = \"1s\"\n\nprobe_intervall = \"5s\"\ncolour = 1\n")
                .unwrap();
        assert_eq!(layer.values.len(), 1);
        let texts: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            texts,
            [
                "config file key `colour`: not a setting (line 4); the keys are the agent's flags in snake_case (docs/configuration.md)",
                "config file key `probe_intervall`: not a setting (line 3); did you mean `probe_interval`?",
            ]
        );
    }

    #[test]
    fn file_values_must_have_the_settings_toml_type() {
        let v = |text: &str| text.parse::<toml::Table>().unwrap()["k"].clone();
        let yes = v("k = \"yes\"");
        assert_eq!(
            Raw::File(&yes).text(FileType::Boolean).unwrap_err(),
            "expected true or false, found a string: \"yes\""
        );
        let n = v("k = 64");
        assert_eq!(Raw::File(&n).text(FileType::Integer).unwrap(), "64");
        assert!(Raw::File(&n).text(FileType::String).is_err());
        let mixed = v("k = [\"a\", 2]");
        assert!(
            Raw::File(&mixed)
                .list()
                .unwrap_err()
                .contains("an integer: 2")
        );
        assert_eq!(
            Raw::Env(" a, ,b ".into()).list().unwrap(),
            ["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("seed", "seeds"), 1);
        assert_eq!(edit_distance("wroker", "worker"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
