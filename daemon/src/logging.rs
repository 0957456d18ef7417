//! Tracing set-up: text or JSON lines on stderr, filtered by `RUST_LOG` (default
//! `info`).
//!
//! The filter is tracing-subscriber's `Targets`: comma-separated `target=level`
//! directives and one bare default level (`info,probemesh_gossip=debug`). It has no span
//! or field directives, which `EnvFilter` has; in exchange it needs no regular
//! expressions, which kept about 0.43 MB of code in the binary (docs/decisions.md).

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::filter::{ParseError, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level filter when `RUST_LOG` is unset, empty or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. An invalid `RUST_LOG` is logged (as a warning, once
/// the subscriber is up) and replaced by [`DEFAULT_FILTER`]: a typo in a log level must
/// not keep the agent from starting, nor silence it.
pub fn init(format: LogFormat) {
    let requested = std::env::var("RUST_LOG");
    let (filter, problem) = match requested.as_deref().map(parse_filter) {
        Ok(Ok(filter)) => (filter, None),
        Ok(Err(e)) => (default_filter(), Some(e.to_string())),
        Err(std::env::VarError::NotPresent) => (default_filter(), None),
        Err(e @ std::env::VarError::NotUnicode(_)) => (default_filter(), Some(e.to_string())),
    };
    // The filter is the subscriber's only level limit: a `fmt()` subscriber would add
    // its own (`info`) and hide the debug lines `RUST_LOG` asked for.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed stderr (agent piped into `head`) must not panic a task.
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
    if let Some(error) = problem {
        tracing::warn!(
            %error,
            default = DEFAULT_FILTER,
            "RUST_LOG is not a valid log filter (comma-separated `target=level` and one bare level, e.g. `info,probemesh=debug`); logging at the default"
        );
    }
}

/// Parses a `RUST_LOG` value; blank means [`DEFAULT_FILTER`].
pub fn parse_filter(value: &str) -> Result<Targets, ParseError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(default_filter());
    }
    value.parse()
}

fn default_filter() -> Targets {
    Targets::new().with_default(tracing::Level::INFO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;

    #[test]
    fn a_bare_level_and_per_target_levels_are_understood() {
        let f = parse_filter("probemesh_gossip=debug,warn").unwrap();
        assert_eq!(f.default_level(), Some(LevelFilter::WARN));
        assert!(f.would_enable("probemesh_gossip::quic", &tracing::Level::DEBUG));
        assert!(!f.would_enable("probemesh::node", &tracing::Level::INFO));
        assert!(f.would_enable("quinn", &tracing::Level::WARN));
    }

    #[test]
    fn blank_means_the_default() {
        for value in ["", "  "] {
            let f = parse_filter(value).unwrap();
            assert_eq!(f.default_level(), Some(LevelFilter::INFO));
            assert!(!f.would_enable("probemesh", &tracing::Level::DEBUG));
        }
        assert_eq!(
            default_filter().default_level(),
            parse_filter(DEFAULT_FILTER).unwrap().default_level()
        );
    }

    #[test]
    fn a_typo_is_an_error_not_a_silent_default() {
        for value in ["probemesh=loud", "a=b=c", "probemesh=debug,quinn=3rd"] {
            assert!(parse_filter(value).is_err(), "{value:?} should be refused");
        }
    }
}
