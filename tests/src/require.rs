//! What a test needs from the machine (root, a tool, a mount, a download), checked in
//! one place so that CI cannot turn green by skipping.
//!
//! A test asks first and returns when told no:
//!
//! ```no_run
//! # fn t() {
//! if !probemesh_tests::require::root("create network namespaces") {
//!     return;
//! }
//! # }
//! ```
//!
//! Normally a missing requirement prints `SKIPPED: <reason>` (visible with
//! `--nocapture`) and the test returns early. With [`REQUIRE_ENV`]`=1`, as `.ci/run`
//! sets it, the same call panics with the reason instead, so the test fails.

use std::path::{Path, PathBuf};

/// Environment variable that turns every skip into a failure: set to `1` (any value
/// other than empty or `0`) in CI.
pub const REQUIRE_ENV: &str = "PROBEMESH_REQUIRE_ROOT_TESTS";

/// Whether skips are failures here ([`REQUIRE_ENV`] is set to something other than
/// empty or `0`).
pub fn strict() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0"
    })
}

/// A requirement is missing: panics with `reason` under [`REQUIRE_ENV`], else prints
/// `SKIPPED: <reason>`. Returns `false` so callers can `return` on it.
pub fn skip_or_fail(reason: &str) -> bool {
    if strict() {
        panic!("{REQUIRE_ENV} is set, so this test may not skip: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Whether the tests run as root (uid 0 in `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `true` when running as root; otherwise skips or fails with "needs root to `why`".
pub fn root(why: &str) -> bool {
    is_root() || skip_or_fail(&format!("needs root to {why}"))
}

/// `true` when network-namespace tests can run here: root, and `ip` (iproute2).
pub fn netns() -> bool {
    root("create network namespaces") && tool("ip", "create network namespaces")
}

/// The path of executable `name` found in `PATH` (and the sbin directories, which a
/// non-login root shell may lack), if any.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `true` when executable `name` is installed; otherwise skips or fails with
/// "needs `name` to `why`".
pub fn tool(name: &str, why: &str) -> bool {
    find_tool(name).is_some() || skip_or_fail(&format!("needs `{name}` to {why}"))
}

/// `Some(value)` when `what` succeeded; otherwise skips or fails with
/// "`need` is not available: <error>". For requirements that are set up on first use,
/// such as a gateway installed from PyPI.
pub fn ok<T>(what: Result<T, String>, need: &str) -> Option<T> {
    match what {
        Ok(v) => Some(v),
        Err(e) => {
            skip_or_fail(&format!("{need} is not available: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_on_every_machine_is_found_and_a_made_up_one_is_not() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("probemesh-no-such-tool-7f3a").is_none());
    }
}
