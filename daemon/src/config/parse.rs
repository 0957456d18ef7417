//! Text to value: the parser of every setting, and the limits they enforce.
//!
//! A flag, an environment variable and a file value all reach these functions as text
//! (a TOML integer or boolean is turned back into its text first, see `layers.rs`), so
//! each setting has one parser and one set of messages whatever its source. The
//! messages name the bad value, never the key: the resolver prefixes the key and the
//! source. [`parse_duration`] is also the admin API's (`health.interval`, `wait`).

use super::LogFormat;
use probemesh_gossip::model::{Field, WorkerUrl, validate};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Bounds on settings that would make the agent useless or dangerous. Where the API
/// has the same rule, the bound is the cluster validator's constant
/// (`probemesh_gossip::model::validate`), so the two cannot drift apart.
pub mod limits {
    use probemesh_gossip::model::validate;
    use std::time::Duration;
    /// Shortest node-wide probe interval. Lower than the per-worker minimum
    /// (`validate::MIN_INTERVAL_MS`, 100 ms) on purpose: an operator may probe their
    /// own workers harder than a registration from anywhere in the cluster may ask.
    pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
    /// Shortest probe timeout (the cluster validator's).
    pub const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(validate::MIN_TIMEOUT_MS);
    /// Largest success or failure threshold (the cluster validator's).
    pub const MAX_THRESHOLD: u32 = validate::MAX_THRESHOLD;
    /// Longest probe path (the cluster validator's).
    pub const MAX_PATH_LEN: usize = validate::MAX_PATH_LEN;
    /// Longest node id (the cluster validator's).
    pub const MAX_NODE_ID_LEN: usize = validate::MAX_NODE_ID_LEN;
    /// Largest `--admin-max-connections`: far above any sensible local client count;
    /// each connection may hold up to ~100 KiB of buffers.
    pub const MAX_ADMIN_MAX_CONNECTIONS: u32 = 1 << 20;
    /// Shortest tombstone TTL: a shorter one lets deleted workers come back before
    /// every peer has seen the deletion.
    pub const MIN_TOMBSTONE_TTL: Duration = Duration::from_secs(1);
    /// Gossip round interval bounds: below, chitchat spins; above, the failure
    /// detector (tuned from the interval) takes minutes.
    pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(10);
    /// See [`MIN_GOSSIP_INTERVAL`].
    pub const MAX_GOSSIP_INTERVAL: Duration = Duration::from_secs(60);
    /// Shortest dead-node grace period.
    pub const MIN_DEAD_NODE_GRACE_PERIOD: Duration = Duration::from_secs(1);
}

pub use crate::duration::{format_duration, parse_duration};

/// Node ids appear in URLs, metrics labels and logs: printable, no spaces. The rule is
/// the cluster validator's, which peers' records are checked against too.
pub fn validate_node_id(id: &str) -> Result<(), String> {
    validate::node_id(Field::Owner, id).map_err(|e| e.detail().to_string())
}

/// Probe intervals below the minimum would turn the agent into a load generator.
pub fn check_interval(d: Duration) -> Result<(), String> {
    if d < limits::MIN_PROBE_INTERVAL {
        return Err(format!(
            "{} is too short; the minimum is {}",
            humantime::format_duration(d),
            format_duration(&limits::MIN_PROBE_INTERVAL)
        ));
    }
    Ok(())
}

/// Probe timeouts must be positive.
pub fn check_timeout(d: Duration) -> Result<(), String> {
    if d < limits::MIN_PROBE_TIMEOUT {
        return Err(format!(
            "must be at least {}",
            format_duration(&limits::MIN_PROBE_TIMEOUT)
        ));
    }
    Ok(())
}

/// Thresholds between 1 and [`limits::MAX_THRESHOLD`] (the cluster validator's rule).
pub fn check_threshold(v: u32) -> Result<(), String> {
    validate::threshold(Field::HealthSuccessThreshold, v).map_err(|e| e.detail().to_string())
}

/// `--probe-path` follows the rule of a worker's `health.path` (the cluster
/// validator's): it is joined to every worker's address the same way.
pub fn check_probe_path(p: &str) -> Result<(), String> {
    validate::health_path(p).map_err(|e| e.detail().to_string())
}

/// The admin connection cap: at least 1 (0 would refuse every client), at most
/// [`limits::MAX_ADMIN_MAX_CONNECTIONS`].
pub fn check_admin_max_connections(v: u32) -> Result<(), String> {
    if v == 0 || v > limits::MAX_ADMIN_MAX_CONNECTIONS {
        return Err(format!(
            "{v} is out of range; use 1 to {}",
            limits::MAX_ADMIN_MAX_CONNECTIONS
        ));
    }
    Ok(())
}

// The parsers below are the schema's (`schema.rs` names one per setting).

/// A node or cluster id: surrounding spaces trimmed, then the node-id rule.
pub(super) fn node_id(s: &str) -> Result<String, String> {
    let id = s.trim();
    validate_node_id(id)?;
    Ok(id.to_string())
}

fn address(s: &str, example: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an address; write it like {example}"))
}

/// `admin_listen`: an `IP:port`; host names are refused (nothing is resolved here).
pub(super) fn admin_listen(s: &str) -> Result<SocketAddr, String> {
    address(s, "127.0.0.1:7801")
}

/// `gossip_listen`: an `IP:port` with a fixed port, since peers dial the advertised
/// port.
pub(super) fn gossip_listen(s: &str) -> Result<SocketAddr, String> {
    let a = address(s, "0.0.0.0:7800")?;
    if a.port() == 0 {
        return Err("needs a fixed port: peers dial the advertised address".into());
    }
    Ok(a)
}

/// `gossip_advertise`: a concrete `IP:port` that peers can dial.
pub(super) fn gossip_advertise(s: &str) -> Result<Option<SocketAddr>, String> {
    match s.trim().parse::<SocketAddr>() {
        Ok(a) if !a.ip().is_unspecified() && a.port() != 0 => Ok(Some(a)),
        _ => Err(format!(
            "`{s}` must be a concrete ip:port that peers can dial"
        )),
    }
}

fn number(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|e| format!("`{s}`: {e}"))
}

/// `success_threshold`, `failure_threshold`.
pub(super) fn threshold(s: &str) -> Result<u32, String> {
    let v = number(s)?;
    check_threshold(v)?;
    Ok(v)
}

/// `admin_max_connections`.
pub(super) fn admin_max_connections(s: &str) -> Result<u32, String> {
    let v = number(s)?;
    check_admin_max_connections(v)?;
    Ok(v)
}

/// `probe_kind`: `http`, `models` or `grpc`.
pub(super) fn probe_kind(s: &str) -> Result<probemesh_gossip::model::ProbeKind, String> {
    probemesh_gossip::model::ProbeKind::parse(s.trim())
        .ok_or_else(|| format!("`{s}` is not a probe kind; use http, models or grpc"))
}

/// `fence_ratio`: a number from 0 (self-fencing off) to 1.
pub(super) fn fence_ratio(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a ratio from 0 (off) to 1, e.g. 0.8"))?;
    check_fence_ratio(v)?;
    Ok(v)
}

/// The bounds of `--fence-ratio`.
pub fn check_fence_ratio(v: f64) -> Result<(), String> {
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "{v} is outside 0..=1; give a ratio from 0 (self-fencing off) to 1, e.g. 0.8"
        ));
    }
    Ok(())
}

/// `true` or `false` (a flag given without a value arrives as `true`).
pub(super) fn boolean(s: &str) -> Result<bool, String> {
    s.trim().parse().map_err(|e| format!("`{s}`: {e}"))
}

/// `probe_interval`.
pub(super) fn probe_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    check_interval(d)?;
    Ok(d)
}

/// `probe_timeout`.
pub(super) fn probe_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    check_timeout(d)?;
    Ok(d)
}

/// `probe_path`, as written (no trimming: spaces would be part of the path).
pub(super) fn probe_path(s: &str) -> Result<String, String> {
    check_probe_path(s)?;
    Ok(s.to_string())
}

/// `tombstone_ttl`.
pub(super) fn tombstone_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < limits::MIN_TOMBSTONE_TTL {
        return Err(format!(
            "must be at least {}; a shorter TTL lets deleted workers come back",
            format_duration(&limits::MIN_TOMBSTONE_TTL)
        ));
    }
    Ok(d)
}

/// `gossip_interval`.
pub(super) fn gossip_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < limits::MIN_GOSSIP_INTERVAL || d > limits::MAX_GOSSIP_INTERVAL {
        return Err(format!(
            "must be between {} and {}s",
            format_duration(&limits::MIN_GOSSIP_INTERVAL),
            limits::MAX_GOSSIP_INTERVAL.as_secs()
        ));
    }
    Ok(d)
}

/// `dead_node_grace_period`.
pub(super) fn dead_node_grace_period(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < limits::MIN_DEAD_NODE_GRACE_PERIOD {
        return Err(format!(
            "must be at least {}",
            format_duration(&limits::MIN_DEAD_NODE_GRACE_PERIOD)
        ));
    }
    Ok(d)
}

/// A path, as written; relative paths stay relative to the working directory.
pub(super) fn path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// An optional path (`tls_ca`, `tls_cert`, `tls_key`).
pub(super) fn some_path(s: &str) -> Result<Option<PathBuf>, String> {
    path(s).map(Some)
}

/// `admin_token`: an empty token means "no token", so an empty variable in a unit
/// file does not lock the API with an empty password.
pub(super) fn admin_token(s: &str) -> Result<Option<String>, String> {
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// One `worker` URL, normalized.
pub(super) fn worker_url(s: &str) -> Result<WorkerUrl, String> {
    WorkerUrl::parse(s).map_err(|e| e.to_string())
}

/// `smg_url`: under the worker-URL rules, kept as its normalized text.
pub(super) fn smg_url(s: &str) -> Result<Option<String>, String> {
    worker_url(s).map(|u| Some(u.to_string()))
}

/// `log_format`.
pub(super) fn log_format(s: &str) -> Result<LogFormat, String> {
    s.trim().parse()
}

/// One seed, `host:port` with a port above 0. The host is not resolved here: chitchat
/// resolves (and re-resolves) it once gossip runs.
pub(super) fn seed(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(s.to_string())
        }
        _ => Err(format!("`{s}` is not host:port")),
    }
}

/// One `allow_worker_cidr` network; a single IP is its own /32 or /128, and host bits
/// are dropped (`10.1.2.3/8` is `10.0.0.0/8`).
pub(super) fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("`{s}` is not a network; write it like 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_in_the_documented_form() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("500ms"));
        for (d, text) in [
            (Duration::from_secs(86_400), "24h"),
            (Duration::from_secs(900), "15m"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(format_duration(&d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text} reads back");
        }
    }

    #[test]
    fn messages_name_the_value_and_the_rule() {
        assert_eq!(
            admin_listen("nonsense").unwrap_err(),
            "`nonsense` is not an address; write it like 127.0.0.1:7801"
        );
        assert!(
            gossip_listen("127.0.0.1:0")
                .unwrap_err()
                .contains("fixed port")
        );
        assert!(
            gossip_advertise("0.0.0.0:7800")
                .unwrap_err()
                .contains("concrete")
        );
        assert_eq!(
            probe_interval("5ms").unwrap_err(),
            "5ms is too short; the minimum is 10ms"
        );
        assert_eq!(probe_timeout("0s").unwrap_err(), "must be at least 1ms");
        assert_eq!(
            gossip_interval("5ms").unwrap_err(),
            "must be between 10ms and 60s"
        );
        assert_eq!(
            tombstone_ttl("10ms").unwrap_err(),
            "must be at least 1s; a shorter TTL lets deleted workers come back"
        );
        assert_eq!(
            threshold("0").unwrap_err(),
            "0 is out of range; use 1 to 1000"
        );
        assert_eq!(
            admin_max_connections("0").unwrap_err(),
            "0 is out of range; use 1 to 1048576"
        );
        assert!(boolean("maybe").unwrap_err().contains("`maybe`"));
        assert_eq!(seed("b:0").unwrap_err(), "`b:0` is not host:port");
        assert_eq!(
            cidr("10.0.0.0/33").unwrap_err(),
            "`10.0.0.0/33` is not a network; write it like 10.0.0.0/8"
        );
    }

    #[test]
    fn values_are_normalized_the_same_way_from_every_source() {
        assert_eq!(node_id("  gw-1 "), Ok("gw-1".to_string()));
        assert_eq!(threshold(" 4 "), Ok(4));
        assert_eq!(log_format(" json"), Ok(LogFormat::Json));
        assert_eq!(admin_token(""), Ok(None));
        assert_eq!(cidr("10.1.2.3/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(cidr("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
        assert_eq!(probe_path("/ready"), Ok("/ready".to_string()));
        assert!(probe_path(" /ready").is_err(), "paths are not trimmed");
    }

    #[test]
    fn limits_shared_with_the_api_are_the_validators() {
        assert_eq!(limits::MAX_THRESHOLD, validate::MAX_THRESHOLD);
        assert_eq!(
            limits::MIN_PROBE_TIMEOUT,
            Duration::from_millis(validate::MIN_TIMEOUT_MS)
        );
        assert!(check_threshold(validate::MAX_THRESHOLD).is_ok());
        assert!(check_threshold(validate::MAX_THRESHOLD + 1).is_err());
        assert!(check_probe_path(&format!("/{}", "a".repeat(limits::MAX_PATH_LEN))).is_err());
        assert!(validate_node_id(&"n".repeat(limits::MAX_NODE_ID_LEN)).is_ok());
        assert!(validate_node_id(&"n".repeat(limits::MAX_NODE_ID_LEN + 1)).is_err());
    }
}
