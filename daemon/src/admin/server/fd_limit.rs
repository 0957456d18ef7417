//! The open-file limit (`RLIMIT_NOFILE`): raised to the hard limit at start (SPEC S13),
//! and the admin connection cap kept below it, so that a flood of local connections
//! can never take the descriptors that probes, gossip and the store need.

/// Descriptors kept out of the admin server's reach: probe sockets, the QUIC socket,
/// the store's files, the runtime's own (epoll, eventfd), log files, and the sockets
/// being refused over the cap. Capped at half the limit for tiny limits.
pub const FD_RESERVE: u64 = 256;

/// Most connections being answered the over-cap 503 at once; past it they are closed
/// without an answer. A quarter of the reserve, so they cannot eat into what probes need.
pub const MAX_REFUSING: usize = 64;

/// The limit before and after [`raise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found at start.
    pub before: u64,
    /// The soft limit in force now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit (an unprivileged process may).
pub fn raise() -> std::io::Result<NofileLimit> {
    use rlimit::Resource;
    let (before, hard) = Resource::NOFILE.get()?;
    let mut soft = before;
    if soft < hard {
        Resource::NOFILE.set(hard, hard)?;
        soft = Resource::NOFILE.get()?.0;
    }
    Ok(NofileLimit { before, soft, hard })
}

/// The descriptors reserved for the rest of the agent under a soft limit of `soft`.
pub fn reserve(soft: u64) -> u64 {
    FD_RESERVE.min(soft / 2)
}

/// The connection cap in force: the one asked for, lowered to leave [`reserve`]
/// descriptors free; at least 1.
pub fn effective_max_connections(requested: u32, soft: u64) -> usize {
    let room = soft.saturating_sub(reserve(soft)).max(1);
    usize::try_from(u64::from(requested).min(room)).unwrap_or(usize::MAX)
}

/// How many over-cap connections may be answered at once under `soft`.
pub fn max_refusing(soft: u64) -> usize {
    usize::try_from(reserve(soft) / 4)
        .unwrap_or(MAX_REFUSING)
        .clamp(1, MAX_REFUSING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        // Plenty of descriptors: the flag rules.
        assert_eq!(effective_max_connections(1024, 1_048_576), 1024);
        assert_eq!(effective_max_connections(8, 20_000), 8);
        // The common default of 1024: 256 stay free.
        assert_eq!(effective_max_connections(1024, 1024), 768);
        // A tiny limit keeps half for the rest of the agent.
        assert_eq!(effective_max_connections(1024, 256), 128);
        assert_eq!(effective_max_connections(1024, 3), 2);
        assert_eq!(effective_max_connections(1024, 0), 1);
        assert_eq!(
            effective_max_connections(u32::MAX, u64::MAX),
            u32::MAX as usize
        );
    }

    #[test]
    fn refusals_fit_in_the_reserve() {
        assert_eq!(max_refusing(1_048_576), MAX_REFUSING);
        assert_eq!(max_refusing(256), 32);
        assert_eq!(max_refusing(4), 1);
        for soft in [4u64, 64, 256, 1024, 65_536] {
            let used = effective_max_connections(u32::MAX, soft) as u64 + max_refusing(soft) as u64;
            assert!(used < soft.max(2), "soft {soft}: {used}");
        }
    }

    #[test]
    fn raising_reaches_the_hard_limit() {
        let l = raise().unwrap();
        assert_eq!(l.soft, l.hard);
        assert!(l.soft >= l.before);
    }
}
