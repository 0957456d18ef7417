//! One admin connection: hyper's HTTP/1 state machine over the IO wrapper, with a
//! watchdog for the head and idle timeouts, graceful and forced shutdown, and the JSON
//! answer for requests hyper rejected itself.

use super::io::AdminIo;
use super::rejection::{self, Rejection};
use super::tracking::{CloseReason, ConnShared, Timeouts, TrackedService};
use crate::metrics::AdminMetrics;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Largest request head (request line and headers). Above hyper's URI limit (65,534
/// bytes), so that a long URI is answered 414 rather than 431.
pub const MAX_HEAD_BYTES: usize = 80 * 1024;
/// Largest read or write buffer hyper keeps per connection (it starts at 8 KiB and
/// grows only as a head or a response needs it).
pub const MAX_BUF_BYTES: usize = 96 * 1024;
/// Deadline for writing a rejection and lingering before the close.
pub const REJECTION_DEADLINE: Duration = Duration::from_secs(1);

/// What a connection task needs besides its socket.
#[derive(Clone, Debug)]
pub struct ConnContext {
    /// The API.
    pub router: Router,
    /// The two timers.
    pub timeouts: Timeouts,
    /// Metrics.
    pub metrics: AdminMetrics,
    /// Cancelled at shutdown: stop taking requests, finish those in flight.
    pub graceful: CancellationToken,
    /// Cancelled when the drain deadline has passed: close now.
    pub force: CancellationToken,
}

/// How the hyper connection ended.
enum End {
    Served(Result<(), hyper::Error>),
    Closed(CloseReason),
    Forced,
}

fn builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    // The timers are ours (see `tracking.rs`): hyper's header timeout also runs on an
    // idle keep-alive connection, which must stay open for the idle timeout instead.
    b.header_read_timeout(None)
        .keep_alive(true)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_BUF_BYTES);
    b
}

/// Serves one connection until the client leaves, a timer closes it, or shutdown.
pub async fn serve_connection<S>(stream: S, cx: ConnContext)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::new(ConnShared::new());
    let mut io = AdminIo::new(stream, Arc::clone(&shared));
    let service = TrackedService::new(cx.router.clone(), Arc::clone(&shared));
    let end = {
        let conn = builder().serve_connection(TokioIo::new(&mut io), service);
        tokio::pin!(conn);
        let mut draining = cx.graceful.is_cancelled();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = shared.next_deadline(cx.timeouts);
            let sleep = async {
                match deadline {
                    Some((at, _)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = conn.as_mut() => break End::Served(r),
                () = sleep => {
                    // Re-read: a request may have started since the deadline was taken.
                    if let Some((at, reason)) = shared.next_deadline(cx.timeouts)
                        && at <= tokio::time::Instant::now()
                    {
                        break End::Closed(reason);
                    }
                }
                () = shared.changed() => {}
                () = cx.graceful.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = cx.force.cancelled() => break End::Forced,
            }
        }
    };
    match end {
        End::Served(Ok(())) | End::Forced => {}
        End::Closed(reason) => {
            cx.metrics.connection_closed(reason.as_str());
            tracing::debug!(reason = reason.as_str(), "closed an admin connection");
        }
        End::Served(Err(e)) => {
            // hyper's own parse-error answer was swallowed: send ours. The HTTP/2
            // preface ends the connection without one; answer it too.
            let owed = io.rejection().or_else(|| {
                (e.is_parse()
                    && io
                        .current_line()
                        .is_some_and(|l| l.names_unsupported_version()))
                .then_some(Rejection::VersionNotSupported)
            });
            match owed {
                Some(r) => {
                    cx.metrics.request_rejected(r.code());
                    tracing::debug!(code = r.code(), error = %e, "rejected a malformed request head");
                    rejection::send_and_close(io.inner_mut(), &r.response(), REJECTION_DEADLINE)
                        .await;
                }
                None => tracing::debug!(error = %e, "admin connection ended with an error"),
            }
        }
    }
}
