//! What one connection is doing, for its timers: how many requests are in flight, when
//! the head being read began, and since when the connection has been idle.
//!
//! [`TrackedService`] wraps the router: a call marks a request in flight until its
//! response body is dropped (so a blocking query or an event stream, however long, is
//! in flight all along). The IO wrapper (`io.rs`) reports bytes arriving while nothing
//! is in flight as the start of a new head. [`ConnShared::next_deadline`] turns that
//! into the one deadline the connection task waits for.
//!
//! Everything here is touched from the connection's own task only (hyper polls the IO,
//! the service future and the response body there); atomics make it `Send` and `Sync`
//! without a lock.

use axum::Router;
use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::Oneshot;

/// Marks "no head is being read" in [`ConnShared::head_since`].
const NONE: u64 = u64::MAX;

/// Why the server closes a connection on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request head within the head timeout.
    HeadTimeout,
    /// Keep-alive connection idle (no request in flight, nothing sent) for the idle
    /// timeout.
    IdleTimeout,
}

impl CloseReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeadTimeout => "head_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
        }
    }
}

/// The two connection timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a head (or the accept, for a new connection) to the end
    /// of that head.
    pub head: Duration,
    /// From the end of the last response to the first byte of the next head.
    pub idle: Duration,
}

/// State of one connection shared by its IO wrapper, its service and its task. Times
/// are milliseconds since `base`, on tokio's clock (so tests can pause it).
#[derive(Debug)]
pub struct ConnShared {
    base: Instant,
    in_flight: AtomicU32,
    calls: AtomicU64,
    head_since: AtomicU64,
    idle_since: AtomicU64,
    changed: Notify,
}

impl Default for ConnShared {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnShared {
    /// A connection just accepted: a head is expected from now on (a connection that
    /// never sends anything is closed by the head timeout, not the idle one).
    pub fn new() -> ConnShared {
        ConnShared {
            base: Instant::now(),
            in_flight: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Requests handed to the router so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Requests in flight (handler running or response body not finished).
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Bytes arrived from the client. Returns true when they start a new head: nothing
    /// is in flight and no head is being read yet.
    pub fn bytes_arrived(&self) -> bool {
        if self.in_flight() > 0 || self.head_since.load(Ordering::SeqCst) != NONE {
            return false;
        }
        self.head_since.store(self.now_ms(), Ordering::SeqCst);
        // The head deadline is earlier than the idle one the task may be sleeping on.
        self.changed.notify_one();
        true
    }

    fn request_started(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_since.store(NONE, Ordering::SeqCst);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// Resolves after a change that may move the deadline earlier (a head started, the
    /// last request ended). A change made while nobody waits is kept for the next call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The instant the connection must be closed at, and why; `None` while a request
    /// is in flight (no timer cuts a request).
    pub fn next_deadline(&self, t: Timeouts) -> Option<(Instant, CloseReason)> {
        if self.in_flight() > 0 {
            return None;
        }
        let at = |ms: u64, d: Duration| self.base + Duration::from_millis(ms) + d;
        match self.head_since.load(Ordering::SeqCst) {
            NONE => Some((
                at(self.idle_since.load(Ordering::SeqCst), t.idle),
                CloseReason::IdleTimeout,
            )),
            since => Some((at(since, t.head), CloseReason::HeadTimeout)),
        }
    }
}

/// One request in flight; ends when dropped (with the response body, or with the
/// handler's future if hyper drops it first).
#[derive(Debug)]
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn enter(shared: &Arc<ConnShared>) -> InFlight {
        shared.request_started();
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The router as a hyper service that keeps [`ConnShared`] up to date.
#[derive(Clone, Debug)]
pub struct TrackedService {
    router: Router,
    shared: Arc<ConnShared>,
}

impl TrackedService {
    /// Wraps `router` for the connection `shared` describes.
    pub fn new(router: Router, shared: Arc<ConnShared>) -> TrackedService {
        TrackedService { router, shared }
    }
}

impl hyper::service::Service<Request<Incoming>> for TrackedService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedFuture;

    fn call(&self, req: Request<Incoming>) -> TrackedFuture {
        let guard = InFlight::enter(&self.shared);
        TrackedFuture {
            inner: Box::pin(self.router.clone().oneshot(req)),
            guard: Some(guard),
        }
    }
}

/// The router's answer; hands the in-flight mark on to the response body.
pub struct TrackedFuture {
    inner: Pin<Box<Oneshot<Router, Request<Incoming>>>>,
    guard: Option<InFlight>,
}

impl Future for TrackedFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = match ready!(this.inner.as_mut().poll(cx)) {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

/// A response body that keeps its request in flight until hyper drops it.
pub struct TrackedBody {
    inner: Body,
    _guard: Option<InFlight>,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Keeps hyper's content-length for full bodies.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        head: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_heads_requests_and_idle_periods() {
        let s = Arc::new(ConnShared::new());
        let start = Instant::now();
        // New connection: the head timer runs from the accept; bytes do not restart it.
        assert_eq!(
            s.next_deadline(T),
            Some((start + T.head, CloseReason::HeadTimeout))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(!s.bytes_arrived());
        assert_eq!(s.next_deadline(T).unwrap().0, start + T.head);

        // A request in flight has no deadline, whatever arrives meanwhile (its body).
        let req = InFlight::enter(&s);
        assert_eq!(s.calls(), 1);
        assert_eq!(s.next_deadline(T), None);
        tokio::time::advance(Duration::from_secs(300)).await;
        assert!(!s.bytes_arrived());
        assert_eq!(s.next_deadline(T), None);

        // Its end starts the idle timer.
        drop(req);
        let idle_from = Instant::now();
        assert_eq!(
            s.next_deadline(T),
            Some((idle_from + T.idle, CloseReason::IdleTimeout))
        );
        s.changed().await; // the end was signalled

        // The first byte of the next head starts the head timer, once.
        tokio::time::advance(Duration::from_secs(20)).await;
        let head_from = Instant::now();
        assert!(s.bytes_arrived());
        s.changed().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!s.bytes_arrived());
        assert_eq!(
            s.next_deadline(T),
            Some((head_from + T.head, CloseReason::HeadTimeout))
        );

        // Two requests in flight (pipelined): idle only after both ended.
        let (a, b) = (InFlight::enter(&s), InFlight::enter(&s));
        drop(a);
        assert_eq!(s.next_deadline(T), None);
        drop(b);
        assert_eq!(s.next_deadline(T).unwrap().1, CloseReason::IdleTimeout);
        assert_eq!(s.in_flight(), 0);
    }
}
