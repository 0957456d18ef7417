//! The `grpc` check (SPEC S3): one `grpc.health.v1.Health/Check` call for the whole
//! server (the empty service name, the protocol's convention for "the server") over a
//! connection the probe [`Dialer`] made, so that the allowlist, the DNS cache, TLS on
//! ring with ALPN `h2`, and the local-resource rules are those of every other probe.
//!
//! Each probe opens its own HTTP/2 connection and closes it after the answer: gRPC
//! workers are one per inference server, so there are few of them, and a channel kept
//! between probes would reconnect by itself and hide the connection failures a probe
//! is meant to see.

use super::check::classify_dial;
use super::conn::{Dialer, Protocol, Stream};
use super::origin::Origin;
use super::result::{ProbeResult, local_resource};
use hyper_util::rt::TokioIo;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Largest health answer decoded: a `HealthCheckResponse` is a few bytes, so a
/// worker cannot make a probe hold tonic's default of 4 MiB (a larger one is a
/// `grpc_out_of_range` failure).
const MAX_ANSWER: usize = 4096;
/// Largest header block accepted from the worker (h2 would take 16 MiB).
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// One health call to the server at `origin` (one of `addrs`), whose `:authority` is
/// `authority`. The caller bounds it with the probe timeout; `timeout` also goes to
/// the server as the call's deadline.
pub(super) async fn check(
    dialer: &Dialer,
    origin: &Origin,
    addrs: &[IpAddr],
    authority: &str,
    timeout: Duration,
) -> ProbeResult {
    let (stream, _peer) = match dialer.connect_for(origin, addrs, Protocol::Http2).await {
        Ok(pair) => pair,
        Err(e) => return classify_dial(&e),
    };
    // tonic asks its connector for a connection; hand it the one made above, once. A
    // second ask (tonic reconnecting after the connection died) gets an error, so a
    // probe never dials anything the dialer did not.
    let slot = Mutex::new(Some(stream));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let stream: Option<Stream> = slot.lock().ok().and_then(|mut s| s.take());
        async move {
            stream
                .map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the probe's connection is gone"))
        }
    });
    let endpoint = match Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e
            .timeout(timeout)
            .http2_max_header_list_size(MAX_HEADER_LIST),
        Err(_) => return ProbeResult::Error,
    };
    let channel = match endpoint.connect_with_connector(connector).await {
        Ok(c) => c,
        Err(e) => return classify_transport(&e),
    };
    let call = HealthClient::new(channel)
        .max_decoding_message_size(MAX_ANSWER)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    match call {
        Ok(answer) => match answer.into_inner().status() {
            ServingStatus::Serving => ProbeResult::Ok(200),
            ServingStatus::NotServing => ProbeResult::NotServing,
            ServingStatus::Unknown | ServingStatus::ServiceUnknown => ProbeResult::ServingUnknown,
        },
        Err(status) => classify_status(&status),
    }
}

/// A call that ended with a gRPC status instead of an answer.
fn classify_status(status: &tonic::Status) -> ProbeResult {
    match status.code() {
        Code::NotFound => ProbeResult::UnknownService,
        Code::DeadlineExceeded => ProbeResult::Timeout,
        // No answer from the server's gRPC layer: the connection or HTTP/2 failed
        // (tonic reports those as a status with the transport error as its source).
        _ if StdError::source(status).is_some() => classify_transport(status),
        code => ProbeResult::GrpcStatus(code as i32),
    }
}

/// The connection was made but HTTP/2 or the call's framing failed.
fn classify_transport(e: &(dyn StdError + 'static)) -> ProbeResult {
    local_resource(e).map_or(ProbeResult::Transport, ProbeResult::Local)
}
