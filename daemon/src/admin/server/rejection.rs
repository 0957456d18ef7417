//! Answers the admin server writes itself, below the router: the fast 503 for a
//! connection over the cap, and the JSON replacements for hyper's own rejections.
//!
//! hyper answers a request head it cannot parse by itself, before any service sees it
//! (`proto/h1/role.rs`, `Server::on_error`): 400 for a bad method, URI, version or
//! header, 414 for a URI over 65,534 bytes, 431 for a head over the size or count
//! limits. That answer is a bare head with an empty body. [`hyper_error_status`]
//! recognises it in the bytes hyper writes, so that the connection's IO wrapper can
//! swallow it and the connection task can send [`Rejection::response`] instead, in the
//! API's JSON error shape. Every answer of the router carries a JSON body with a
//! `content-type`, so a 400/414/431 head without one, with no body, can only be hyper's.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A rejection made below the router, with its status and stable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// 400: a request line or header hyper could not parse.
    BadRequest,
    /// 414: the request target is longer than hyper accepts (65,534 bytes) or the
    /// request line alone fills the head limit.
    UriTooLong,
    /// 431: the request head is larger than the head limit, or has too many headers.
    HeadersTooLarge,
    /// 505: a request line naming an HTTP version other than 1.0 and 1.1 (also the
    /// HTTP/2 connection preface).
    VersionNotSupported,
    /// 503: the connection cap is reached (sent before anything is read).
    TooManyConnections,
}

impl Rejection {
    /// Every rejection (for the OpenAPI document, which lists them under every route).
    pub const ALL: [Rejection; 5] = [
        Rejection::BadRequest,
        Rejection::UriTooLong,
        Rejection::HeadersTooLarge,
        Rejection::VersionNotSupported,
        Rejection::TooManyConnections,
    ];

    /// The HTTP status line (code and reason).
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Rejection::BadRequest => (400, "Bad Request"),
            Rejection::UriTooLong => (414, "URI Too Long"),
            Rejection::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            Rejection::VersionNotSupported => (505, "HTTP Version Not Supported"),
            Rejection::TooManyConnections => (503, "Service Unavailable"),
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::BadRequest => "BAD_REQUEST",
            Rejection::UriTooLong => "URI_TOO_LONG",
            Rejection::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Rejection::VersionNotSupported => "HTTP_VERSION_NOT_SUPPORTED",
            Rejection::TooManyConnections => "TOO_MANY_CONNECTIONS",
        }
    }

    /// The sentence of the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::BadRequest => {
                "the request line or a header is malformed; send an HTTP/1.1 request (see docs/api.md)"
            }
            Rejection::UriTooLong => "the request target is too long; at most 65,534 bytes",
            Rejection::HeadersTooLarge => {
                "the request head is too large: at most 80 KiB and 100 headers"
            }
            Rejection::VersionNotSupported => "this API speaks HTTP/1.1 (and HTTP/1.0) only",
            Rejection::TooManyConnections => {
                "the admin API holds its maximum number of connections (--admin-max-connections); retry in a moment and reuse connections"
            }
        }
    }

    /// The complete response: JSON error body, `Connection: close` (the connection is
    /// closed after it), and `Retry-After` for the cap.
    pub fn response(self) -> Vec<u8> {
        let (status, reason) = self.status();
        let body = serde_json::json!({"error": {"code": self.code(), "message": self.message()}})
            .to_string();
        let retry = if self == Rejection::TooManyConnections {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// The status of hyper's own parse-error answer, if `buf` (one write hyper makes) is
/// exactly such an answer: a complete `HTTP/1.x 400|414|431` head and nothing after it,
/// without `content-type` or `transfer-encoding`, and with no or a zero
/// `content-length` (hyper writes `content-length: 0` unless the previous request's
/// method forbids it).
pub fn hyper_error_status(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    for line in head.split("\r\n").skip(1) {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
        {
            return None;
        }
    }
    Some(status)
}

/// What the IO wrapper saw of the request line of the head being read, for telling a
/// version problem from other 400s and an over-long target from other 431s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirstLine {
    /// The first bytes of the line (at most [`FirstLine::KEEP`]).
    pub start: Vec<u8>,
    /// Bytes of the line seen so far (kept or not).
    pub len: usize,
    /// Whether the line ended (a `\n` arrived).
    pub complete: bool,
    /// Whether any byte other than leading blank lines arrived.
    pub begun: bool,
}

impl FirstLine {
    /// Bytes of the line kept: a request line with a short target fits.
    pub const KEEP: usize = 1024;
    /// hyper's limit on a request target (`MAX_URI_LEN` in `proto/h1/role.rs`).
    pub const MAX_TARGET: usize = 65_534;

    /// Whether the request line alone is longer than any target hyper accepts (or
    /// never ended within the head limit).
    pub fn too_long(&self) -> bool {
        self.begun && (!self.complete || self.len > Self::MAX_TARGET)
    }

    /// Feeds bytes read from the client (the start of a head, then what follows).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.complete {
            return;
        }
        if !self.begun {
            // HTTP/1.1 lets a server ignore blank lines before a request line (RFC 9112
            // section 2.2), and hyper does.
            let skip = bytes
                .iter()
                .position(|b| *b != b'\r' && *b != b'\n')
                .unwrap_or(bytes.len());
            bytes = &bytes[skip..];
            if bytes.is_empty() {
                return;
            }
            self.begun = true;
        }
        let (line, complete) = match bytes.iter().position(|b| *b == b'\n') {
            Some(i) => (&bytes[..i], true),
            None => (bytes, false),
        };
        let room = Self::KEEP.saturating_sub(self.start.len());
        self.start.extend_from_slice(&line[..line.len().min(room)]);
        self.len = self.len.saturating_add(line.len());
        self.complete = complete;
    }

    /// Whether the line is complete and names a version other than HTTP/1.0 or 1.1.
    pub fn names_unsupported_version(&self) -> bool {
        if !self.complete {
            return false;
        }
        let line = String::from_utf8_lossy(&self.start);
        let mut tokens = line.split_ascii_whitespace();
        let (Some(_method), Some(_target), Some(version)) =
            (tokens.next(), tokens.next(), tokens.next())
        else {
            return false;
        };
        tokens.next().is_none()
            && version.starts_with("HTTP/")
            && version != "HTTP/1.1"
            && version != "HTTP/1.0"
    }
}

/// The rejection to answer for hyper's `status`, refined with the request line seen
/// (`None` when the IO wrapper could not follow this head from its start).
pub fn classify(status: u16, line: Option<&FirstLine>) -> Rejection {
    match status {
        414 => Rejection::UriTooLong,
        // The head limit was reached by the request line itself: the target is what is
        // too long.
        431 if line.is_some_and(FirstLine::too_long) => Rejection::UriTooLong,
        431 => Rejection::HeadersTooLarge,
        _ if line.is_some_and(FirstLine::names_unsupported_version) => {
            Rejection::VersionNotSupported
        }
        _ => Rejection::BadRequest,
    }
}

/// Most bytes read (and dropped) from the client after an answer, before closing.
const LINGER_BYTES: usize = 64 * 1024;

/// Writes `response`, half-closes, then reads what the client still sends for a moment
/// before the socket is dropped: closing with unread bytes makes the kernel send a
/// reset, which can destroy the answer before the client reads it. All of it within
/// `deadline`; never waits for a request.
pub async fn send_and_close<S>(stream: &mut S, response: &[u8], deadline: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(deadline, async {
        if stream.write_all(response).await.is_err() || stream.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bytes: &[&[u8]]) -> FirstLine {
        let mut l = FirstLine::default();
        for b in bytes {
            l.feed(b);
        }
        l
    }

    #[test]
    fn recognises_hyper_parse_error_heads_only() {
        let date = "date: Tue, 01 Dec 2026 09:00:00 GMT";
        for status in [
            "400 Bad Request",
            "414 URI Too Long",
            "431 Request Header Fields Too Large",
        ] {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n{date}\r\n\r\n");
            let code: u16 = status[..3].parse().unwrap();
            assert_eq!(hyper_error_status(head.as_bytes()), Some(code), "{head}");
        }
        // After a HEAD request hyper leaves the zero length out.
        let bare = format!("HTTP/1.1 400 Bad Request\r\n{date}\r\n\r\n");
        assert_eq!(hyper_error_status(bare.as_bytes()), Some(400));
        // Our own answers: JSON body, content type, non-zero length.
        let ours = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(hyper_error_status(ours.as_bytes()), None);
        let head_only = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n";
        assert_eq!(
            hyper_error_status(head_only.as_bytes()),
            None,
            "HEAD of an error"
        );
        let sized = "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(hyper_error_status(sized.as_bytes()), None);
        let chunked = "HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(hyper_error_status(chunked.as_bytes()), None);
        for other in [
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n", // incomplete head
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore",
            "{\"error\":1}HTTP/1.1 400 Bad Request\r\n\r\n",
            "",
        ] {
            assert_eq!(hyper_error_status(other.as_bytes()), None, "{other:?}");
        }
    }

    #[test]
    fn classifies_with_the_request_line() {
        let v2 = line(&[b"GET / HTTP/2.0\r\nHost: x\r\n"]);
        assert!(v2.names_unsupported_version());
        assert_eq!(classify(400, Some(&v2)), Rejection::VersionNotSupported);
        let preface = line(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert_eq!(
            classify(400, Some(&preface)),
            Rejection::VersionNotSupported
        );
        let garbage = line(&[b"\r\n", b"hello world\r\n"]);
        assert!(garbage.begun && garbage.complete);
        assert_eq!(classify(400, Some(&garbage)), Rejection::BadRequest);
        let fine = line(&[b"GET / HT", b"TP/1.1\r\nBad Header\r\n"]);
        assert_eq!(fine.start, b"GET / HTTP/1.1\r");
        assert_eq!(classify(400, Some(&fine)), Rejection::BadRequest);
        assert_eq!(classify(400, None), Rejection::BadRequest);
        assert_eq!(classify(414, None), Rejection::UriTooLong);
        let long_target = line(&[b"GET /", &[b'a'; 5000]]);
        assert_eq!(long_target.start.len(), FirstLine::KEEP);
        assert_eq!(classify(431, Some(&long_target)), Rejection::UriTooLong);
        let ended = line(&[b"GET /", &[b'a'; 70_000], b" HTTP/1.1\r\n"]);
        assert!(ended.complete && ended.too_long());
        assert_eq!(classify(431, Some(&ended)), Rejection::UriTooLong);
        assert_eq!(classify(431, Some(&fine)), Rejection::HeadersTooLarge);
        assert_eq!(classify(431, None), Rejection::HeadersTooLarge);
    }

    #[test]
    fn responses_are_complete_json_errors_that_close() {
        for r in [
            Rejection::BadRequest,
            Rejection::UriTooLong,
            Rejection::HeadersTooLarge,
            Rejection::VersionNotSupported,
            Rejection::TooManyConnections,
        ] {
            let text = String::from_utf8(r.response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let (code, _) = r.status();
            assert!(head.starts_with(&format!("HTTP/1.1 {code} ")), "{head}");
            assert!(head.contains("content-type: application/json"));
            assert!(head.contains("connection: close"));
            assert!(head.contains(&format!("content-length: {}", body.len())));
            assert_eq!(head.contains("retry-after: 1"), code == 503);
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], r.code());
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
            assert_eq!(hyper_error_status(head.as_bytes()), None);
        }
    }
}
