//! The admin API's HTTP server: our own accept loop around hyper's HTTP/1 connections
//! instead of `axum::serve`, so that the API has limits (SPEC S13, issue 11):
//!
//! - a cap on open connections (`--admin-max-connections`, kept below the open-file
//!   limit, see [`fd_limit`]); a connection over it gets a fast JSON 503 and is closed;
//! - a 10 s request-head timeout and a 60 s keep-alive idle timeout that never cut a
//!   request in flight ([`tracking`]);
//! - accept errors (out of descriptors, memory, buffers; aborted handshakes) that never
//!   end the server: they are counted, logged at most every few seconds, and followed
//!   by a short back-off so the loop does not spin;
//! - hyper's own rejections rewritten into the API's JSON errors ([`rejection`]);
//! - graceful shutdown: stop accepting, let requests in flight finish (blocking queries
//!   and event streams end on the same token), close what is left after a deadline.
//!
//! Files: `listen.rs` binds the listener, `conn.rs` serves one connection, `io.rs` wraps its socket, `tracking.rs`
//! follows its requests, `rejection.rs` writes the answers made below the router.

pub mod conn;
pub mod fd_limit;
pub mod io;
pub mod listen;
pub mod rejection;
pub mod tracking;

use crate::metrics::AdminMetrics;
use axum::Router;
use conn::ConnContext;
use rejection::Rejection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracking::Timeouts;

/// A connection that has not sent a complete request head within this is closed (SPEC
/// S13). Also the time a new connection has for its first head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request in flight is closed after this (SPEC S13).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long requests in flight may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// First pause after an accept error; doubles while errors go on.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after an accept error.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(100);
/// At most one log line per this period for accept errors (with the count).
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// Settings of the admin server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections held at once (the effective cap, already below the fd limit).
    pub max_connections: usize,
    /// Over-cap connections being answered at once.
    pub max_refusing: usize,
    /// The head and idle timers.
    pub timeouts: Timeouts,
    /// Drain deadline at shutdown.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// The SPEC's timers with this connection cap.
    pub fn new(max_connections: usize, max_refusing: usize) -> ServerConfig {
        ServerConfig {
            max_connections: max_connections.max(1),
            max_refusing: max_refusing.max(1),
            timeouts: Timeouts {
                head: HEAD_TIMEOUT,
                idle: IDLE_TIMEOUT,
            },
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// Where connections come from: the admin `TcpListener`, or a fake in tests (to inject
/// accept errors).
pub trait Acceptor: Send + 'static {
    /// One accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection, or the error `accept(2)` gave. Must be cancel-safe.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Acceptor for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        let (stream, _peer) = TcpListener::accept(self).await?;
        // Small answers and event-stream lines should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then drains (at most
/// `config.shutdown_grace`). Never fails: accept errors are survived.
pub async fn serve<L: Acceptor>(
    mut listener: L,
    router: Router,
    config: ServerConfig,
    metrics: AdminMetrics,
    shutdown: CancellationToken,
) {
    metrics.set_max_connections(config.max_connections);
    for r in rejection::Rejection::ALL {
        metrics.declare_rejection(r.code());
    }
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let refusing = Arc::new(Semaphore::new(config.max_refusing));
    let tasks = TaskTracker::new();
    let force = CancellationToken::new();
    let cx = ConnContext {
        router,
        timeouts: config.timeouts,
        metrics: metrics.clone(),
        graceful: shutdown.clone(),
        force: force.clone(),
    };
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok(stream) => {
                errors.reset();
                stream
            }
            Err(e) => {
                metrics.connection_refused("accept_error");
                let pause = errors.record(&e);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let cx = cx.clone();
                let open = metrics.connections_open().clone();
                open.inc();
                tasks.spawn(async move {
                    conn::serve_connection(stream, cx).await;
                    open.dec();
                    drop(slot);
                });
            }
            Err(_) => {
                metrics.connection_refused("cap");
                // Bounded: past `max_refusing` answers in progress, just close.
                if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                    tasks.spawn(async move {
                        let mut stream = stream;
                        rejection::send_and_close(
                            &mut stream,
                            &Rejection::TooManyConnections.response(),
                            conn::REJECTION_DEADLINE,
                        )
                        .await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    tasks.close();
    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            "admin API stopped accepting; waiting for requests in flight"
        );
    }
    if tokio::time::timeout(config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            grace = %humantime::format_duration(config.shutdown_grace),
            "admin connections still open after the shutdown deadline; closing them"
        );
        force.cancel();
        tasks.wait().await;
    }
}

/// Accept-error bookkeeping: back-off and rate-limited logging.
#[derive(Debug, Default)]
struct AcceptErrors {
    streak: u32,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    fn reset(&mut self) {
        self.streak = 0;
    }

    /// Records one error; returns how long to pause before the next accept.
    fn record(&mut self, e: &std::io::Error) -> Duration {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(
                error = %e,
                errors = self.unlogged,
                kind = accept_error_kind(e),
                "admin API cannot accept connections (counted in probemesh_admin_connections_refused_total{{reason=\"accept_error\"}}); retrying"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        self.streak = self.streak.saturating_add(1);
        backoff(self.streak)
    }
}

/// The pause after the `streak`-th accept error in a row: 10, 20, 40, 80, 100, 100 ms.
fn backoff(streak: u32) -> Duration {
    let factor = 1u32 << streak.saturating_sub(1).min(4);
    (ACCEPT_BACKOFF_MIN * factor).min(ACCEPT_BACKOFF_MAX)
}

/// A word for the log: which resource ran out, or that the client went away.
fn accept_error_kind(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE) => "out_of_file_descriptors",
        Some(libc::ENOBUFS | libc::ENOMEM) => "out_of_memory",
        Some(libc::ECONNABORTED) => "connection_aborted",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
