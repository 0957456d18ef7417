//! What a probe found: a [`ProbeResult`] per kind of answer or failure, each with its
//! own name, and the local resources whose exhaustion is this node's fault (SPEC S13).

use std::error::Error as StdError;
use std::time::Duration;

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// A success: a 2xx answer with this code (for `grpc`, a `SERVING` answer, which
    /// comes in HTTP/2's 200).
    Ok(u16),
    /// A non-2xx answer.
    HttpStatus(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection was refused.
    Refused,
    /// Another connection failure (unreachable, reset, DNS).
    ConnectError,
    /// The TLS handshake failed (bad certificate, protocol error).
    TlsError,
    /// Anything else (malformed response, body error).
    Error,
    /// The address it would dial is outside `--allow-worker-cidr`: nothing was sent.
    NotAllowed,
    /// `models`: a 2xx listing that does not hold the worker's `model_id` (or is not a
    /// model listing at all).
    ModelMismatch,
    /// `grpc`: the health service answered `NOT_SERVING`.
    NotServing,
    /// `grpc`: the health service answered `UNKNOWN` (or a status this client does not
    /// know).
    ServingUnknown,
    /// `grpc`: the server has no health status for the service asked about (status
    /// `NOT_FOUND`).
    UnknownService,
    /// `grpc`: the call failed with another gRPC status (its code, e.g. 12
    /// `UNIMPLEMENTED` for a server without the health service).
    GrpcStatus(i32),
    /// `grpc`: the connection was made but HTTP/2 or gRPC framing failed (a server
    /// that does not speak gRPC, a reset stream).
    Transport,
    /// This node ran out of a local resource before the worker was reached: the node's
    /// fault, never counted against the worker (SPEC S13).
    Local(LocalResource),
}

/// A local resource whose exhaustion fails a probe on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalResource {
    /// `EMFILE`/`ENFILE`: the process or the system is out of file descriptors.
    Descriptors,
    /// `ENOBUFS`: the kernel is out of socket buffers.
    Buffers,
    /// `EADDRNOTAVAIL` on connect: no local port is free.
    Ports,
    /// `ENOMEM`.
    Memory,
}

impl LocalResource {
    /// A bounded label (`probemesh_probe_local_errors_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            LocalResource::Descriptors => "descriptors",
            LocalResource::Buffers => "buffers",
            LocalResource::Ports => "ports",
            LocalResource::Memory => "memory",
        }
    }

    /// The resource an OS error number says is exhausted, if it is one of ours.
    pub fn from_errno(errno: i32) -> Option<LocalResource> {
        // Linux numbers; probemesh runs on Linux (docs/operations.md).
        match errno {
            23 | 24 => Some(LocalResource::Descriptors), // ENFILE, EMFILE
            105 => Some(LocalResource::Buffers),         // ENOBUFS
            99 => Some(LocalResource::Ports),            // EADDRNOTAVAIL
            12 => Some(LocalResource::Memory),           // ENOMEM
            _ => None,
        }
    }
}

impl ProbeResult {
    /// Whether this counts as a success for the state machine.
    pub fn is_success(self) -> bool {
        matches!(self, ProbeResult::Ok(_))
    }

    /// A bounded label for metrics.
    pub fn class(self) -> &'static str {
        match self {
            ProbeResult::Ok(_) => "ok",
            ProbeResult::HttpStatus(_) => "http_error",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Refused => "refused",
            ProbeResult::ConnectError => "connect_error",
            ProbeResult::TlsError => "tls_error",
            ProbeResult::Error => "error",
            ProbeResult::NotAllowed => "not_allowed",
            ProbeResult::ModelMismatch => "model_mismatch",
            ProbeResult::NotServing => "not_serving",
            ProbeResult::ServingUnknown => "serving_unknown",
            ProbeResult::UnknownService => "unknown_service",
            ProbeResult::GrpcStatus(_) => "grpc_error",
            ProbeResult::Transport => "transport_error",
            ProbeResult::Local(_) => "local_error",
        }
    }

    /// The `last_result` shown in the API: the class, with the status code for HTTP
    /// errors (`http_503`) and the code's name for gRPC ones (`grpc_unimplemented`).
    pub fn describe(self) -> String {
        match self {
            ProbeResult::HttpStatus(code) => format!("http_{code}"),
            ProbeResult::GrpcStatus(code) => format!("grpc_{}", grpc_code_name(code)),
            ProbeResult::Local(r) => format!("local_{}", r.as_str()),
            other => other.class().to_string(),
        }
    }

    /// The result of an answer with `status`.
    pub fn of_status(status: u16) -> ProbeResult {
        if (200..300).contains(&status) {
            ProbeResult::Ok(status)
        } else {
            ProbeResult::HttpStatus(status)
        }
    }
}

/// The name of a gRPC status code in `last_result` (the codes of the gRPC spec, lower
/// case), or the number for one outside it.
fn grpc_code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| code.to_string(), |n| (*n).to_string())
}

/// A probe's result and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct ProbeReport {
    /// What was found.
    pub result: ProbeResult,
    /// Time from request start to the end of the body (or the failure).
    pub latency: Duration,
}

/// The local resource whose exhaustion caused `e`, found in its cause chain.
pub fn local_resource(e: &(dyn StdError + 'static)) -> Option<LocalResource> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .and_then(LocalResource::from_errno)
        {
            return Some(r);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_have_distinct_names_and_only_2xx_succeeds() {
        let all = [
            ProbeResult::Ok(204),
            ProbeResult::HttpStatus(503),
            ProbeResult::Timeout,
            ProbeResult::Refused,
            ProbeResult::ConnectError,
            ProbeResult::TlsError,
            ProbeResult::Error,
            ProbeResult::NotAllowed,
            ProbeResult::ModelMismatch,
            ProbeResult::NotServing,
            ProbeResult::ServingUnknown,
            ProbeResult::UnknownService,
            ProbeResult::GrpcStatus(12),
            ProbeResult::Transport,
            ProbeResult::Local(LocalResource::Descriptors),
            ProbeResult::Local(LocalResource::Ports),
        ];
        let names: std::collections::HashSet<String> = all.iter().map(|r| r.describe()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(ProbeResult::HttpStatus(503).describe(), "http_503");
        assert_eq!(ProbeResult::GrpcStatus(12).describe(), "grpc_unimplemented");
        assert_eq!(ProbeResult::GrpcStatus(99).describe(), "grpc_99");
        assert_eq!(ProbeResult::GrpcStatus(-1).describe(), "grpc_-1");
        assert!(all.iter().filter(|r| r.is_success()).count() == 1);
        assert_eq!(ProbeResult::of_status(299), ProbeResult::Ok(299));
        assert_eq!(ProbeResult::of_status(302), ProbeResult::HttpStatus(302));
    }

    /// An error that wraps another, as hyper does.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn resource_exhaustion_deep_in_the_cause_chain_is_local() {
        for (errno, want) in [
            (24, Some(LocalResource::Descriptors)),
            (23, Some(LocalResource::Descriptors)),
            (105, Some(LocalResource::Buffers)),
            (99, Some(LocalResource::Ports)),
            (12, Some(LocalResource::Memory)),
            (111, None), // ECONNREFUSED: the worker's answer
            (113, None), // EHOSTUNREACH: the network's
        ] {
            let e = Wrapped(Box::new(Wrapped(Box::new(
                std::io::Error::from_raw_os_error(errno),
            ))));
            assert_eq!(local_resource(&e), want, "errno {errno}");
        }
        assert_eq!(
            ProbeResult::Local(LocalResource::Descriptors).describe(),
            "local_descriptors"
        );
    }
}
