//! One HTTP/1.1 `GET` over an open [`Stream`], with hyper's connection-level client.
//!
//! Each exchange makes a fresh hyper connection state over the stream and takes the
//! stream back when the answer is complete (`without_shutdown` + `into_parts`), so a
//! kept connection between probes is only its socket: hyper's buffers (an 8 KiB write
//! buffer, a read buffer of [`READ_BUF`]) live for the exchange alone, and no task
//! drives an idle connection. Redirects are never followed (a 3xx is an answer), and
//! at most [`MAX_BODY`] bytes of the body are read.

use super::conn::Stream;
use bytes::Bytes;
use http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::Builder;
use hyper_util::rt::TokioIo;

/// Largest health body read; past it the rest is not read and the connection is not
/// kept.
pub const MAX_BODY: usize = 64 * 1024;
/// hyper's read buffer for one exchange, exact: a health answer (head and a short
/// body, typically 100-300 bytes) arrives in one `read`; a longer one takes more.
pub const READ_BUF: usize = 4096;

const USER_AGENT_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("probemesh/", env!("CARGO_PKG_VERSION")));

/// What one request gave.
#[derive(Debug)]
pub enum Outcome {
    /// An answer with this status code; `keep` is the stream when it can carry the
    /// next request (complete body, HTTP/1.1, no `Connection: close`, nothing left
    /// over).
    Answer {
        /// The status code.
        status: u16,
        /// The connection, when it can be kept.
        keep: Option<Stream>,
    },
    /// No answer head arrived: the connection failed (closed, reset, malformed
    /// answer) before it. On a kept connection this is retried once on a new one.
    NoAnswer(hyper::Error),
    /// The head arrived but the body failed.
    BodyFailed(hyper::Error),
}

/// The request a probe sends: `GET path_and_query` with `Host`, a `User-Agent`, and
/// `Connection: close` when `close` (the connection will not be kept).
pub fn request(
    path_and_query: &str,
    host: HeaderValue,
    close: bool,
) -> Result<Request<Empty<Bytes>>, http::Error> {
    let mut req = Request::builder()
        .method(Method::GET)
        .version(Version::HTTP_11)
        .uri(path_and_query)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, HeaderValue::from_static("*/*"));
    if close {
        req = req.header(CONNECTION, HeaderValue::from_static("close"));
    }
    req.body(Empty::new())
}

/// Sends `req` on `stream` and reads the answer (its body bounded by [`MAX_BODY`]).
pub async fn exchange(stream: Stream, req: Request<Empty<Bytes>>) -> Outcome {
    let asked_close = req.headers().contains_key(CONNECTION);
    let mut builder = Builder::new();
    builder.read_buf_exact_size(Some(READ_BUF));
    let (mut sender, conn) = match builder.handshake(TokioIo::new(stream)).await {
        Ok(pair) => pair,
        Err(e) => return Outcome::NoAnswer(e),
    };
    // The connection state is driven here, next to the request, not by a task of its
    // own; it ends (handing the stream back) once the answer is read and `sender` is
    // dropped.
    let conn = conn.without_shutdown();
    let talk = async move {
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => return Err(Outcome::NoAnswer(e)),
        };
        let status = resp.status().as_u16();
        let reusable = !asked_close && reusable(resp.version(), resp.headers(), status);
        let mut body = resp.into_body();
        let mut read = 0usize;
        let mut complete = true;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    read += frame.data_ref().map_or(0, Bytes::len);
                    if read > MAX_BODY {
                        complete = false;
                        break;
                    }
                }
                Err(e) => return Err(Outcome::BodyFailed(e)),
            }
        }
        drop(body);
        drop(sender);
        Ok((status, reusable && complete))
    };
    let (talked, ended) = tokio::join!(talk, conn);
    match talked {
        Err(outcome) => outcome,
        Ok((status, reusable)) => {
            let keep = match ended {
                Ok(parts) if reusable && parts.read_buf.is_empty() => Some(parts.io.into_inner()),
                _ => None,
            };
            Outcome::Answer { status, keep }
        }
    }
}

/// Whether the worker lets the connection carry another request after this answer:
/// HTTP/1.1 without `Connection: close`, and a body whose end is marked (a length or
/// chunks), not one that ends when the worker closes.
fn reusable(version: Version, headers: &HeaderMap, status: u16) -> bool {
    let closes = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"));
    let framed = status == 204
        || status == 304
        || (100..200).contains(&status)
        || headers.contains_key(CONTENT_LENGTH)
        || headers.contains_key(TRANSFER_ENCODING);
    version == Version::HTTP_11 && !closes && framed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_framed_http11_answers_without_close_are_reusable() {
        let len = headers(&[("content-length", "2")]);
        assert!(reusable(Version::HTTP_11, &len, 200));
        assert!(reusable(
            Version::HTTP_11,
            &headers(&[("transfer-encoding", "chunked")]),
            503
        ));
        assert!(reusable(Version::HTTP_11, &HeaderMap::new(), 204));
        assert!(!reusable(Version::HTTP_10, &len, 200));
        assert!(
            !reusable(Version::HTTP_11, &HeaderMap::new(), 200),
            "ends at close"
        );
        assert!(!reusable(
            Version::HTTP_11,
            &headers(&[("content-length", "2"), ("connection", "keep-alive, Close")]),
            200
        ));
    }
}
