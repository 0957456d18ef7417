//! Build and protocol versions, printed by `probemesh version` and served in metrics.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from, when the build saw one.
pub const GIT_REVISION: &str = match option_env!("PROBEMESH_GIT_REVISION") {
    Some(rev) => rev,
    None => "unknown",
};

/// Version of the stored and gossiped record format (`major.minor`).
pub fn protocol_version() -> String {
    format!(
        "{}.{}",
        probemesh_gossip::codec::FORMAT_MAJOR,
        probemesh_gossip::codec::FORMAT_MINOR
    )
}
