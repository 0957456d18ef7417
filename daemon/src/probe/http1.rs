//! One HTTP/1.1 `GET` over an open [`Stream`], and its answer read within bounds.
//!
//! A health probe needs little of HTTP: send one fixed request, read the status and
//! the headers that say whether the connection can carry the next one, and skip a
//! bounded body. This does exactly that, with `httparse` (hyper's own parser) for the
//! status line, the headers and the chunk sizes, and one buffer per exchange: no
//! request or response objects, no channels, no task. hyper's connection-level client
//! cost about a third of the probe's CPU in that machinery (`docs/benchmarks.md`).
//!
//! Redirects are never followed (a 3xx is an answer), `1xx` interim answers are
//! skipped, and at most [`MAX_BODY`] bytes of a body are read.

use super::conn::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest health body read; past it the rest is not read and the connection is not
/// kept.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest body kept when the check reads it (a `models` listing: a few hundred bytes
/// per model, so room for thousands of adapters); past it the answer counts as
/// incomplete.
pub const MAX_KEPT_BODY: usize = 1024 * 1024;
/// The first read's size: a health answer (head and a short body, typically 100-300
/// bytes) arrives in one `read`; a longer one grows the buffer by as much again.
pub const READ_BUF: usize = 4096;
/// Longest answer head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in an answer head.
const MAX_HEADERS: usize = 64;

const USER_AGENT: &str = concat!("probemesh/", env!("CARGO_PKG_VERSION"));

/// Why an exchange got no complete answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The worker closed the connection before the answer was complete.
    #[error("the worker closed the connection before the answer was complete")]
    Closed,
    /// The answer is not HTTP/1.x as it should be.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
}

/// What one request gave.
#[derive(Debug)]
pub enum Outcome {
    /// An answer with this status code. `reusable`: the connection can carry the next
    /// request (HTTP/1.1, no `Connection: close` either way, a body whose end was
    /// marked and was read whole, nothing left over).
    Answer {
        /// The status code.
        status: u16,
        /// Whether the connection can be kept.
        reusable: bool,
        /// The body, when the exchange was asked to keep it and it was read whole
        /// within [`MAX_KEPT_BODY`]; `None` otherwise.
        body: Option<Vec<u8>>,
    },
    /// No answer head arrived: the connection failed (closed, reset, malformed answer)
    /// before it. On a kept connection this is retried once on a new one.
    NoAnswer(ExchangeError),
    /// The head arrived but the body failed.
    BodyFailed(ExchangeError),
}

/// The request a probe sends: `GET path_and_query` with `Host`, a `User-Agent`, and
/// `Connection: close` when `close`. Both strings come from a parsed URL (`url`
/// serializes them percent-encoded, so neither holds a space or a line break).
pub fn request(path_and_query: &str, host: &str, close: bool) -> Vec<u8> {
    let mut req = Vec::with_capacity(96 + path_and_query.len() + host.len());
    for part in [
        "GET ",
        path_and_query,
        " HTTP/1.1\r\nHost: ",
        host,
        "\r\nUser-Agent: ",
        USER_AGENT,
        "\r\nAccept: */*\r\n",
        if close { "Connection: close\r\n" } else { "" },
        "\r\n",
    ] {
        req.extend_from_slice(part.as_bytes());
    }
    req
}

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body (`1xx`, 204, 304).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the worker closes.
    UntilClose,
}

/// What the exchange needs of an answer head.
#[derive(Debug)]
struct Head {
    status: u16,
    /// HTTP/1.1 without `Connection: close`.
    keep_alive: bool,
    framing: Framing,
}

/// The answer's bytes as read so far; `pos` is where the next unread byte is. With a
/// `sink`, the body's bytes are copied into it as they are passed over.
struct Reader {
    buf: Vec<u8>,
    pos: usize,
    sink: Option<Vec<u8>>,
    /// Body bytes read at most.
    limit: usize,
}

impl Reader {
    fn unread(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Passes over `n` buffered body bytes, keeping them when there is a sink.
    fn consume(&mut self, n: usize) {
        if let Some(sink) = &mut self.sink {
            sink.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        }
        self.pos += n;
    }

    /// Reads more from `stream`; an end of stream is [`ExchangeError::Closed`].
    async fn fill(&mut self, stream: &mut Stream) -> Result<(), ExchangeError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_BUF / 2 {
            self.buf.reserve(READ_BUF);
        }
        match stream.read_buf(&mut self.buf).await? {
            0 => Err(ExchangeError::Closed),
            _ => Ok(()),
        }
    }

    /// Reads the next final answer head (skipping `1xx` interim answers).
    async fn head(&mut self, stream: &mut Stream) -> Result<Head, ExchangeError> {
        loop {
            match parse_head(self.unread())? {
                Some((len, head)) => {
                    self.pos += len;
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    return Ok(head);
                }
                None if self.unread().len() >= MAX_HEAD => {
                    return Err(ExchangeError::Malformed("answer head too long"));
                }
                None => self.fill(stream).await?,
            }
        }
    }

    /// Skips `n` body bytes.
    async fn skip(&mut self, stream: &mut Stream, mut n: u64) -> Result<(), ExchangeError> {
        while n > 0 {
            if self.pos == self.buf.len() {
                self.fill(stream).await?;
            }
            let have = u64::try_from(self.buf.len() - self.pos).unwrap_or(u64::MAX);
            let take = have.min(n);
            // `take` is at most what is buffered, so it fits in a usize.
            self.consume(usize::try_from(take).unwrap_or(0));
            n -= take;
        }
        Ok(())
    }

    /// Skips a line ending in CRLF; returns whether it was empty.
    async fn line(&mut self, stream: &mut Stream) -> Result<bool, ExchangeError> {
        loop {
            if let Some(at) = self.unread().windows(2).position(|w| w == b"\r\n") {
                self.pos += at + 2;
                return Ok(at == 0);
            }
            if self.unread().len() >= MAX_HEAD {
                return Err(ExchangeError::Malformed("line too long"));
            }
            self.fill(stream).await?;
        }
    }

    /// Reads a body as `framing` says, at most `limit` bytes of it; returns whether it
    /// was read to its end.
    async fn body(&mut self, stream: &mut Stream, framing: Framing) -> Result<bool, ExchangeError> {
        let max = self.limit as u64;
        match framing {
            Framing::Empty => Ok(true),
            Framing::Length(n) => {
                self.skip(stream, n.min(max)).await?;
                Ok(n <= max)
            }
            Framing::UntilClose => {
                let mut read = 0u64;
                while read <= max {
                    let have = self.buf.len() - self.pos;
                    read += have as u64;
                    if read > max {
                        break;
                    }
                    self.consume(have);
                    match self.fill(stream).await {
                        Ok(()) => {}
                        Err(ExchangeError::Closed) => return Ok(true),
                        Err(e) => return Err(e),
                    }
                }
                Ok(false)
            }
            Framing::Chunked => {
                let mut read = 0u64;
                loop {
                    let (len, size) = match httparse::parse_chunk_size(self.unread()) {
                        Ok(httparse::Status::Complete(c)) => c,
                        Ok(httparse::Status::Partial) if self.unread().len() < MAX_HEAD => {
                            self.fill(stream).await?;
                            continue;
                        }
                        _ => return Err(ExchangeError::Malformed("bad chunk size")),
                    };
                    self.pos += len;
                    if size == 0 {
                        // Trailers, if any, then the empty line.
                        for _ in 0..=MAX_HEADERS {
                            if self.line(stream).await? {
                                return Ok(true);
                            }
                        }
                        return Err(ExchangeError::Malformed("too many trailers"));
                    }
                    read = read.saturating_add(size);
                    if read > max {
                        return Ok(false);
                    }
                    self.skip(stream, size).await?;
                    if !self.line(stream).await? {
                        return Err(ExchangeError::Malformed("chunk longer than its size"));
                    }
                }
            }
        }
    }
}

/// Parses an answer head at the start of `buf`: its length and what matters of it, or
/// `None` if more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, ExchangeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ExchangeError::Malformed("too many headers"));
        }
        Err(_) => return Err(ExchangeError::Malformed("not an HTTP/1.x answer head")),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version != Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("connection") {
            close |= tokens(value).any(|t| t.eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides; anything but chunked ends at close.
            chunked = tokens(value)
                .last()
                .map(|t| t.eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| ExchangeError::Malformed("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ExchangeError::Malformed("conflicting content-lengths"));
            }
            length = Some(n);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        // Transfer-Encoding wins over Content-Length; a worker that sends both does
        // not get its connection kept.
        close |= length.is_some();
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        len,
        Head {
            status,
            keep_alive: !close,
            framing,
        },
    )))
}

fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Sends `request` on `stream` and reads the answer (its body bounded by
/// [`MAX_BODY`], or by [`MAX_KEPT_BODY`] and kept when `keep_body`). `asked_close`:
/// the request said `Connection: close`.
pub async fn exchange(
    stream: &mut Stream,
    request: &[u8],
    asked_close: bool,
    keep_body: bool,
) -> Outcome {
    let sent = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    if let Err(e) = sent.await {
        return Outcome::NoAnswer(e.into());
    }
    let mut r = Reader {
        buf: Vec::with_capacity(READ_BUF),
        pos: 0,
        sink: keep_body.then(Vec::new),
        limit: if keep_body { MAX_KEPT_BODY } else { MAX_BODY },
    };
    let head = match r.head(stream).await {
        Ok(head) => head,
        Err(e) => return Outcome::NoAnswer(e),
    };
    match r.body(stream, head.framing).await {
        Ok(complete) => Outcome::Answer {
            status: head.status,
            reusable: complete
                && head.keep_alive
                && !asked_close
                && head.framing != Framing::UntilClose
                && r.unread().is_empty(),
            body: r.sink.take().filter(|_| complete),
        },
        Err(e) => Outcome::BodyFailed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        match parse_head(text.as_bytes()) {
            Ok(Some((len, head))) => {
                assert_eq!(len, text.len());
                head
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn heads_say_how_the_body_ends_and_whether_the_connection_stays() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n");
        assert_eq!(
            (h.status, h.keep_alive, h.framing),
            (200, true, Framing::Length(2))
        );
        let h = head("HTTP/1.1 503 x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.keep_alive, h.framing), (true, Framing::Chunked));
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((h.keep_alive, h.framing), (false, Framing::Chunked));
        let h = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((h.keep_alive, h.framing), (true, Framing::Empty));
        let h = head("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n");
        assert!(!h.keep_alive, "HTTP/1.0 is not kept");
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        let h =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n");
        assert!(!h.keep_alive);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        for bad in [
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_request_is_one_fixed_head() {
        let r = request("/health?x=1", "10.0.0.1:8000", false);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            format!(
                "GET /health?x=1 HTTP/1.1\r\nHost: 10.0.0.1:8000\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
            )
        );
        let r = String::from_utf8(request("/", "h", true)).unwrap();
        assert!(r.ends_with("Connection: close\r\n\r\n"), "{r}");
    }
}
