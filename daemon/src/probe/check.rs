//! One health check: `GET url + path` with a timeout, over a kept connection when the
//! worker has one; for `models`, the answer's listing must hold the worker's model
//! ([`super::models`]); `grpc` goes to [`super::grpc`] after the same address
//! resolution. A failed probe is a value, not an error; each kind of failure gets
//! its own result name ([`ProbeResult`]). The URL comes from `WorkerUrl::probe_url`
//! (the worker's own scheme, host and port), and the allowlist is checked on the
//! address dialled ([`super::allow`], [`super::conn::Dialer::connect`]).
//!
//! A probe, all within its timeout (resolving, connecting, TLS, request and body):
//! 1. the addresses: an IP literal as it is, a name through [`super::dns`];
//! 2. the worker's kept connection ([`super::pool`]), if it was dialled at one of those
//!    addresses and looks alive; if it turns out dead before an answer head arrives
//!    (the worker closed it just then), the probe goes on to step 3 once;
//! 3. otherwise a new connection, kept after the answer when the worker allows it
//!    (see [`super::http1`]); past the pool's bound the request asks the worker to
//!    close it.

use super::allow::Allowlist;
use super::conn::{DialError, Dialer, Stream};
use super::dns::{DNS_TTL, ResolveError, Resolver};
use super::http1::{self, ExchangeError, Outcome};
use super::models::lists_model;
use super::origin::{Host, Origin};
use super::pool::{IDLE_TIMEOUT, Idle, Pool};
use super::ports::{Expect, Target};
pub use super::result::{LocalResource, ProbeReport, ProbeResult, local_resource};
use rustls::pki_types::CertificateDer;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::http1::MAX_BODY;

/// Idle connections kept at most when nothing lower is asked for: far above any
/// fleet a node probes, below any sane open-file limit it would be raised to.
pub const DEFAULT_MAX_IDLE: usize = 65_536;

/// How a [`Checker`] is built.
#[derive(Clone, Debug)]
pub struct CheckerConfig {
    /// `--allow-worker-cidr`: the networks probes may dial; empty allows all.
    pub allow: Vec<ipnet::IpNet>,
    /// Idle connections kept at most (one per worker origin). The agent keeps it
    /// below the open-file limit.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
    /// Trust anchors for `https` workers on top of the platform's (tests; the agent
    /// uses the platform's alone, as reqwest did).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl CheckerConfig {
    /// The defaults with this allowlist.
    pub fn new(allow: Vec<ipnet::IpNet>) -> CheckerConfig {
        CheckerConfig {
            allow,
            max_idle: DEFAULT_MAX_IDLE,
            idle_timeout: IDLE_TIMEOUT,
            extra_roots: Vec::new(),
        }
    }
}

/// Why a [`Checker`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    /// The TLS client could not be set up (no root certificate found, bad extra root).
    #[error("setting up TLS for https workers: {0}")]
    Tls(#[from] rustls::Error),
}

/// Makes health checks, keeping one idle connection per worker origin between probes
/// (plain HTTP and HTTPS alike; `docs/decisions.md`, "probe connections").
///
/// Cloning shares the connections.
#[derive(Clone, Debug)]
pub struct Checker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    allow: Allowlist,
    resolver: Resolver,
    dialer: Dialer,
    pool: Pool,
}

/// What a probe's request names: path (and query), and `Host`: the URL's host and
/// port as the URL serializes them (a default port left out); for `models`, the model
/// id the listing must hold.
struct Head<'a> {
    path: &'a str,
    host: &'a str,
    model: Option<&'a str>,
}

/// The host and port of `url` as it serializes them (`Host`, `:authority`).
fn head_host(url: &reqwest::Url) -> &str {
    &url[url::Position::BeforeHost..url::Position::AfterPort]
}

/// The addresses a probe may use: one literal, or a name's answer.
enum Addrs {
    One([IpAddr; 1]),
    Resolved(Arc<[IpAddr]>),
}

impl Addrs {
    fn as_slice(&self) -> &[IpAddr] {
        match self {
            Addrs::One(ip) => ip,
            Addrs::Resolved(ips) => ips,
        }
    }
}

impl Checker {
    /// A checker that follows no redirects (a 3xx is not healthy), ignores proxy
    /// environment variables and, with a non-empty `allow` (`--allow-worker-cidr`),
    /// dials only addresses inside it.
    pub fn new(allow: Vec<ipnet::IpNet>) -> Result<Checker, CheckerError> {
        Checker::with_config(CheckerConfig::new(allow))
    }

    /// A checker with these settings.
    pub fn with_config(config: CheckerConfig) -> Result<Checker, CheckerError> {
        crate::install_crypto_provider();
        let allow = Allowlist::new(config.allow);
        Ok(Checker {
            inner: Arc::new(Inner {
                resolver: Resolver::new(allow.clone(), DNS_TTL),
                dialer: Dialer::new(allow.clone(), config.extra_roots)?,
                pool: Pool::new(config.max_idle, config.idle_timeout),
                allow,
            }),
        })
    }

    /// Probes `url` once with an `http` check (any 2xx).
    pub async fn probe(&self, url: &reqwest::Url, timeout: Duration) -> ProbeReport {
        self.check_target(&Target::http(url.clone(), timeout)).await
    }

    /// Probes `target` once with its kind of check (SPEC S3).
    pub async fn check_target(&self, target: &Target) -> ProbeReport {
        let start = Instant::now();
        let url = &target.url;
        let result = match Origin::of(url) {
            None => ProbeResult::Error,
            Some(_) if !self.inner.allow.permits(url) => ProbeResult::NotAllowed,
            Some(origin) => {
                let attempt = self.attempt(origin, url, &target.expect, target.timeout);
                match tokio::time::timeout(target.timeout, attempt).await {
                    Ok(r) => r,
                    Err(_) => ProbeResult::Timeout,
                }
            }
        };
        ProbeReport {
            result,
            latency: start.elapsed(),
        }
    }

    /// Closes the idle connection kept for `url`'s origin, if any.
    pub fn forget_url(&self, url: &reqwest::Url) {
        if let Some(origin) = Origin::of(url) {
            self.inner.pool.forget(&origin);
        }
    }

    /// Idle connections kept now.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.len()
    }

    async fn attempt(
        &self,
        origin: Origin,
        url: &reqwest::Url,
        expect: &Expect,
        timeout: Duration,
    ) -> ProbeResult {
        let inner = &*self.inner;
        let addrs = match &origin.host {
            Host::Ip(ip) => Addrs::One([*ip]),
            Host::Name(name) => match inner.resolver.resolve(name).await {
                Ok(ips) => Addrs::Resolved(ips),
                Err(e) => return classify_resolve(&e),
            },
        };
        let model = match expect {
            Expect::Status => None,
            Expect::Model(m) => Some(&**m),
            Expect::GrpcServing => {
                let (dialer, authority) = (&inner.dialer, head_host(url));
                return super::grpc::check(dialer, &origin, addrs.as_slice(), authority, timeout)
                    .await;
            }
        };
        let head = Head {
            path: &url[url::Position::BeforePath..],
            host: head_host(url),
            model,
        };
        if let Some(idle) = inner.pool.take(&origin)
            && addrs.as_slice().contains(&idle.peer.ip())
            && idle.stream.looks_alive()
            && let Some(result) = self
                .send(&origin, &head, idle.stream, idle.peer, true)
                .await
        {
            return result;
        }
        let (stream, peer) = match inner.dialer.connect(&origin, addrs.as_slice()).await {
            Ok(pair) => pair,
            Err(e) => return classify_dial(&e),
        };
        self.send(&origin, &head, stream, peer, false)
            .await
            .unwrap_or(ProbeResult::Error)
    }

    /// One request on `stream`. `None` when a kept (`reused`) connection died before
    /// an answer head: the caller tries once more on a new one.
    async fn send(
        &self,
        origin: &Origin,
        head: &Head<'_>,
        mut stream: Stream,
        peer: SocketAddr,
        reused: bool,
    ) -> Option<ProbeResult> {
        let pool = &self.inner.pool;
        let close = !reused && !pool.has_room(origin);
        let req = http1::request(head.path, head.host, close);
        let keep_body = head.model.is_some();
        match http1::exchange(&mut stream, &req, close, keep_body).await {
            Outcome::Answer {
                status,
                reusable,
                body,
            } => {
                if reusable {
                    pool.put(origin.clone(), Idle::new(stream, peer));
                }
                let result = ProbeResult::of_status(status);
                Some(match head.model {
                    Some(model)
                        if result.is_success() && !body.is_some_and(|b| lists_model(&b, model)) =>
                    {
                        ProbeResult::ModelMismatch
                    }
                    _ => result,
                })
            }
            Outcome::NoAnswer(_) if reused => None,
            Outcome::NoAnswer(e) | Outcome::BodyFailed(e) => Some(classify_exchange(&e)),
        }
    }
}

impl super::ports::Check for Checker {
    async fn check(&self, target: &Target) -> ProbeReport {
        self.check_target(target).await
    }

    fn forget(&self, target: &super::ports::Target) {
        self.forget_url(&target.url);
    }
}

/// Whether an I/O error in `e`'s chain says the operation timed out.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A name that gave nothing to dial: outside the list, or a lookup failure (a
/// connection failure, as an unreachable host is), or this node out of a resource.
fn classify_resolve(e: &ResolveError) -> ProbeResult {
    match e {
        ResolveError::NotAllowed(_) => ProbeResult::NotAllowed,
        ResolveError::Lookup { source, .. } => {
            local_resource(source).map_or(ProbeResult::ConnectError, ProbeResult::Local)
        }
    }
}

/// A connection that could not be made.
pub(super) fn classify_dial(e: &DialError) -> ProbeResult {
    let io = match e {
        DialError::NotAllowed(_) => return ProbeResult::NotAllowed,
        DialError::Connect(io) | DialError::Tls(io) => io,
    };
    if let Some(r) = local_resource(io) {
        return ProbeResult::Local(r);
    }
    if timed_out(io) {
        return ProbeResult::Timeout;
    }
    match e {
        DialError::Connect(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ProbeResult::Refused
        }
        DialError::Tls(io) if tls_refusal(io) => ProbeResult::TlsError,
        _ => ProbeResult::ConnectError,
    }
}

/// Whether a failed TLS handshake failed as TLS: rustls refused (a certificate that
/// does not verify, such as `UnknownIssuer`; a protocol error; an alert from the
/// worker), or the worker closed in the middle of the handshake. A reset or an
/// unreachable host during it is a connection failure.
fn tls_refusal(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::UnexpectedEof
        || io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

/// An exchange that failed after the connection was made: a timeout, this node out of
/// a resource, or anything else (reset, closed, malformed answer, body error).
fn classify_exchange(e: &ExchangeError) -> ProbeResult {
    if let Some(r) = local_resource(e) {
        ProbeResult::Local(r)
    } else if timed_out(e) {
        ProbeResult::Timeout
    } else {
        ProbeResult::Error
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
