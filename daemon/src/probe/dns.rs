//! Names resolved for probes: the system resolver (`getaddrinfo` on a blocking
//! thread), the allowlist applied to every answer ([`super::allow`]), and the answer
//! kept for [`DNS_TTL`] so that a probe of a kept connection costs no lookup.
//!
//! `getaddrinfo` gives no TTL, so answers are kept for a fixed time: a worker whose
//! name moves to another address is probed at the new one within [`DNS_TTL`] (a kept
//! connection to an address no longer in the answer is dropped). Failed lookups are
//! not kept: the next probe asks again.

use super::allow::{Allowlist, NotAllowed};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long an answer is used.
pub const DNS_TTL: Duration = Duration::from_secs(30);
/// Most names kept; past it, expired answers are dropped, and if none has expired the
/// new answer is used but not kept.
pub const MAX_NAMES: usize = 16_384;

/// Why a name gave no address to dial.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Every address it resolved to is outside `--allow-worker-cidr`.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The lookup failed or found nothing.
    #[error("cannot resolve `{host}`: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// What the resolver said.
        source: std::io::Error,
    },
}

/// A kept answer: when it was resolved, and its allowed addresses.
type Answer = (Instant, Arc<[IpAddr]>);

/// A resolver that keeps answers and filters them through the allowlist.
#[derive(Debug)]
pub struct Resolver {
    allow: Allowlist,
    ttl: Duration,
    /// Name -> (when resolved, allowed addresses). Bounded by [`MAX_NAMES`].
    cache: Mutex<HashMap<Box<str>, Answer>>,
}

impl Resolver {
    /// A resolver for `allow` that keeps answers for `ttl`.
    pub fn new(allow: Allowlist, ttl: Duration) -> Resolver {
        Resolver {
            allow,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The allowed addresses of `host`, in the resolver's order.
    pub async fn resolve(&self, host: &str) -> Result<Arc<[IpAddr]>, ResolveError> {
        if let Some(hit) = self.cached(host) {
            return Ok(hit);
        }
        let lookup = |source| ResolveError::Lookup {
            host: host.to_string(),
            source,
        };
        // Port 0: only the addresses are used; the port is the URL's.
        let found: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(lookup)?
            .map(|a| a.ip())
            .collect();
        if found.is_empty() {
            return Err(lookup(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no address",
            )));
        }
        let mut kept: Vec<IpAddr> = Vec::with_capacity(found.len());
        for ip in found {
            if self.allow.contains(ip) && !kept.contains(&ip) {
                kept.push(ip);
            }
        }
        if kept.is_empty() {
            return Err(NotAllowed::new(host).into());
        }
        let kept: Arc<[IpAddr]> = kept.into();
        self.keep(host, Arc::clone(&kept));
        Ok(kept)
    }

    fn cached(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(host) {
            Some((at, addrs)) if at.elapsed() < self.ttl => Some(Arc::clone(addrs)),
            _ => None,
        }
    }

    fn keep(&self, host: &str, addrs: Arc<[IpAddr]>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_NAMES && !cache.contains_key(host) {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_NAMES {
                return;
            }
        }
        cache.insert(host.into(), (Instant::now(), addrs));
    }

    /// Names with a kept answer (expired ones included until they are replaced).
    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> Allowlist {
        Allowlist::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[tokio::test]
    async fn names_resolving_outside_the_list_are_refused() {
        let r = Resolver::new(list(&["10.0.0.0/8"]), DNS_TTL);
        let err = r.resolve("localhost").await.unwrap_err();
        assert!(matches!(err, ResolveError::NotAllowed(_)), "{err}");
        assert!(r.is_empty(), "a refusal is not kept");
        let r = Resolver::new(list(&["127.0.0.0/8"]), DNS_TTL);
        let kept = r.resolve("localhost").await.expect("127.0.0.1 is inside");
        assert!(!kept.is_empty());
        assert!(
            kept.iter().all(|a| a.is_loopback() && a.is_ipv4()),
            "{kept:?}"
        );
    }

    #[tokio::test]
    async fn answers_are_kept_for_the_ttl_and_asked_again_after() {
        let r = Resolver::new(Allowlist::default(), Duration::from_millis(50));
        let first = r.resolve("localhost").await.unwrap();
        let again = r.resolve("localhost").await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second answer came from the cache"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let later = r.resolve("localhost").await.unwrap();
            if !Arc::ptr_eq(&first, &later) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never asked again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.len(), 1);
    }
}
