//! What a setting is: [`Key`] (one value) and [`ListKey`] (a list), and [`Setting`], the
//! view of either that `--help`, the file check and the documentation need.
//!
//! A setting is named once, by its TOML key (`probe_interval`); its flag
//! (`--probe-interval`) and environment variable (`PROBEMESH_PROBE_INTERVAL`) are
//! derived from that name, as SPEC section 2 says they are.

use clap::{Arg, ArgAction};

/// Prefix of every environment variable the agent reads.
pub const ENV_PREFIX: &str = "PROBEMESH_";

/// The TOML type a setting's value must have in the file. Integers and booleans are
/// turned back into text and go through the same parser as flag and environment text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    /// `key = "text"`: durations, addresses, paths, names.
    String,
    /// `key = 64`.
    Integer,
    /// `key = true`. Its flag may be given without a value, meaning `true`.
    Boolean,
    /// `key = 0.8` (an integer is accepted too).
    Float,
}

/// How a setting's default is documented.
pub enum Shown<T: 'static> {
    /// The default is a value: shown by this function in `--help` and the docs, and
    /// read back through the setting's parser by a unit test.
    Value(fn(&T) -> String),
    /// The default is not a value (none, or derived at start): this Markdown, as the
    /// docs' table cell says it.
    Text(&'static str),
}

/// A setting with one value.
pub struct Key<T: 'static> {
    /// The TOML key, in snake_case.
    pub name: &'static str,
    /// Placeholder of the value in `--help` and the docs (`DURATION`).
    pub value_name: &'static str,
    /// One line for `--help`; the default is appended from [`Key::default`].
    pub help: &'static str,
    /// The TOML type of the file value.
    pub file_type: FileType,
    /// Text to value, with the setting's limits; the message names the value only.
    pub parse: fn(&str) -> Result<T, String>,
    /// The value when no source sets the key: the one home of each default.
    pub default: fn() -> T,
    /// How [`Key::default`] is documented.
    pub shown: Shown<T>,
}

/// A setting with a list of values: a repeatable flag, a comma list in the environment,
/// an array of strings in the file. Sources are not merged: the first source that has
/// the key gives the whole list. The default is the empty list.
pub struct ListKey<T: 'static> {
    /// The TOML key, in snake_case.
    pub name: &'static str,
    /// Placeholder of one value in `--help` and the docs.
    pub value_name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether one flag may also carry a comma list (`--seeds a:1,b:2`), as the
    /// environment always does. URLs are not split, so `--worker` is repeated instead.
    pub flag_takes_commas: bool,
    /// Text of one element to its value.
    pub parse: fn(&str) -> Result<T, String>,
    /// What the empty default means, as the docs' table cell says it (Markdown).
    pub empty: &'static str,
}

/// Any setting, as `--help`, the file's unknown-key check and the docs see it.
pub trait Setting: Sync {
    /// The TOML key.
    fn name(&self) -> &'static str;
    /// Placeholder of the value.
    fn value_name(&self) -> &'static str;
    /// The TOML type of the file value (of each element, for a list).
    fn file_type(&self) -> FileType;
    /// Whether the key holds a list.
    fn is_list(&self) -> bool;
    /// Whether the flag may be given without a value (booleans).
    fn optional_value(&self) -> bool;
    /// Whether the flag also takes a comma list.
    fn flag_takes_commas(&self) -> bool;
    /// The default as documented: `Ok(value)` for a value, `Err(markdown)` otherwise.
    fn default_doc(&self) -> Result<String, &'static str>;
    /// The `clap` argument of the setting's flag, which keeps the value as text.
    fn arg(&self) -> Arg;
    /// Whether a documented default reads back through the parser to the default
    /// itself (so `--help` and the docs show a value the agent would accept).
    fn default_reads_back(&self) -> Result<(), String>;
}

/// `--probe-interval` for `probe_interval`.
pub fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// `PROBEMESH_PROBE_INTERVAL` for `probe_interval`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase())
}

fn base_arg(name: &'static str, value_name: &'static str, help: String) -> Arg {
    Arg::new(name)
        .long(flag_name(name))
        .value_name(value_name)
        .help(help)
}

impl<T: PartialEq + std::fmt::Debug> Setting for Key<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn value_name(&self) -> &'static str {
        self.value_name
    }
    fn file_type(&self) -> FileType {
        self.file_type
    }
    fn is_list(&self) -> bool {
        false
    }
    fn optional_value(&self) -> bool {
        self.file_type == FileType::Boolean
    }
    fn flag_takes_commas(&self) -> bool {
        false
    }
    fn default_doc(&self) -> Result<String, &'static str> {
        match &self.shown {
            Shown::Value(show) => Ok(show(&(self.default)())),
            Shown::Text(text) => Err(text),
        }
    }
    fn arg(&self) -> Arg {
        let mut help = match self.default_doc() {
            Ok(value) => format!("{} [default: {value}]", self.help),
            Err(_) => self.help.to_string(),
        };
        if self.file_type == FileType::Boolean {
            // What clap shows for a typed boolean; the value is text here.
            help.push_str(" [possible values: true, false]");
        }
        let arg = base_arg(self.name, self.value_name, help).action(ArgAction::Set);
        match self.file_type {
            FileType::Boolean => arg.num_args(0..=1).default_missing_value("true"),
            // A negative number is a bad value to report, not a flag.
            FileType::Integer | FileType::Float => arg.allow_negative_numbers(true),
            FileType::String => arg,
        }
    }
    fn default_reads_back(&self) -> Result<(), String> {
        let Ok(text) = self.default_doc() else {
            return Ok(());
        };
        let value = (self.parse)(&text).map_err(|e| format!("{}: {e}", self.name))?;
        if value != (self.default)() {
            return Err(format!("{}: `{text}` reads back as {value:?}", self.name));
        }
        Ok(())
    }
}

impl<T> Setting for ListKey<T> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn value_name(&self) -> &'static str {
        self.value_name
    }
    fn file_type(&self) -> FileType {
        FileType::String
    }
    fn is_list(&self) -> bool {
        true
    }
    fn optional_value(&self) -> bool {
        false
    }
    fn flag_takes_commas(&self) -> bool {
        self.flag_takes_commas
    }
    fn default_doc(&self) -> Result<String, &'static str> {
        Err(self.empty)
    }
    fn arg(&self) -> Arg {
        let arg =
            base_arg(self.name, self.value_name, self.help.to_string()).action(ArgAction::Append);
        if self.flag_takes_commas {
            arg.value_delimiter(',')
        } else {
            arg
        }
    }
    fn default_reads_back(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The four cells docs/configuration.md starts each setting's row with: flag, environment
/// variable, TOML key and default. A unit test holds the docs to them.
#[cfg(test)]
pub(super) fn doc_cells(s: &dyn Setting) -> [String; 4] {
    let (name, value) = (s.name(), s.value_name());
    let flag = flag_name(name);
    let flag = match (s.is_list(), s.flag_takes_commas(), s.optional_value()) {
        (true, true, _) => format!("`--{flag} {value},…`"),
        (true, false, _) => format!("`--{flag} {value}` (repeatable)"),
        (false, _, true) => format!("`--{flag} [{value}]`"),
        (false, _, false) => format!("`--{flag} {value}`"),
    };
    let (env, key) = if s.is_list() {
        (
            format!("`{}` (comma list)", env_name(name)),
            format!("`{name}` (array)"),
        )
    } else {
        (format!("`{}`", env_name(name)), format!("`{name}`"))
    };
    let default = match s.default_doc() {
        Ok(value) => format!("`{value}`"),
        Err(text) => text.to_string(),
    };
    [flag, env, key, default]
}
