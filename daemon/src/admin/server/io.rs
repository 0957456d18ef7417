//! The IO wrapper between a client socket and hyper.
//!
//! Reading: bytes that arrive while no request is in flight start a new head (the head
//! timer, see `tracking.rs`), and the request line of that head is followed (bounded)
//! so that a rejection can be classified.
//!
//! Writing: hyper's own answer to a head it cannot parse (an empty-bodied 400, 414 or
//! 431, see `rejection.rs`) is swallowed, and so is everything after it; the
//! connection task then sends the JSON answer on the same socket once hyper is done.
//! The wrapper does not claim vectored writes, so hyper flattens each message into one
//! buffer and its error head reaches `poll_write` whole.

use super::rejection::{self, FirstLine, Rejection};
use super::tracking::ConnShared;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client connection as hyper sees it.
#[derive(Debug)]
pub struct AdminIo<T> {
    inner: T,
    shared: Arc<ConnShared>,
    /// The request line of the head being read, and the number of router calls when
    /// that head began: it describes the current head only while no call came since.
    line: FirstLine,
    line_calls: u64,
    rejection: Option<Rejection>,
}

impl<T> AdminIo<T> {
    /// Wraps a just-accepted connection.
    pub fn new(inner: T, shared: Arc<ConnShared>) -> AdminIo<T> {
        AdminIo {
            inner,
            shared,
            line: FirstLine::default(),
            line_calls: 0,
            rejection: None,
        }
    }

    /// The socket, to write an answer after hyper is done with it.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// The JSON rejection owed to the client, if hyper wrote its own error answer.
    pub fn rejection(&self) -> Option<Rejection> {
        self.rejection
    }

    /// The request line of the head being read, while it is known to be that head's.
    pub fn current_line(&self) -> Option<&FirstLine> {
        (self.line_calls == self.shared.calls()).then_some(&self.line)
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        let calls = self.shared.calls();
        if self.shared.bytes_arrived() {
            self.line = FirstLine::default();
            self.line_calls = calls;
        }
        if self.line_calls == calls {
            self.line.feed(bytes);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AdminIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            this.on_bytes(new);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AdminIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rejection.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        if let Some(status) = rejection::hyper_error_status(buf) {
            this.rejection = Some(rejection::classify(status, this.current_line()));
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.rejection.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The JSON answer still has to go out; the task closes the socket after it.
        if this.rejection.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
