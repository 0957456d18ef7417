//! Worker identity: the normalized URL and the id derived from it (SPEC S1).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Longest URL accepted, in bytes, before normalization.
pub const MAX_URL_LEN: usize = 2048;

/// Why a string is not a usable worker URL. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not parseable as an absolute URL.
    #[error("`{url}` is not a valid absolute URL ({reason}); write it like http://10.0.0.5:8000")]
    Parse {
        /// The input as given.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// A scheme other than http, https or grpc.
    #[error("`{url}` uses the scheme `{scheme}`; only http, https and grpc workers can be probed")]
    Scheme {
        /// The input as given.
        url: String,
        /// The rejected scheme.
        scheme: String,
    },
    /// No host part.
    #[error("`{url}` has no host; write it like http://10.0.0.5:8000")]
    NoHost {
        /// The input as given.
        url: String,
    },
    /// A user name or password in the URL.
    #[error(
        "`{url}` carries user information (user:password@); remove it, credentials do not belong in a worker URL"
    )]
    Userinfo {
        /// The input as given.
        url: String,
    },
    /// A query string or fragment.
    #[error(
        "`{url}` has a query or fragment; a worker URL is a base address, put probe details in health.path"
    )]
    QueryOrFragment {
        /// The input as given.
        url: String,
    },
    /// A `grpc://` URL without a port (gRPC has no default port).
    #[error("`{url}` has no port; gRPC has no default port, write it like grpc://10.0.0.5:50051")]
    GrpcPort {
        /// The input as given.
        url: String,
    },
    /// A `grpc://` URL with a path (a gRPC server has none).
    #[error(
        "`{url}` has a path; a gRPC worker is a host and port, write it like grpc://10.0.0.5:50051"
    )]
    GrpcPath {
        /// The input as given.
        url: String,
    },
    /// Longer than [`MAX_URL_LEN`].
    #[error("the URL is {len} bytes long; at most {MAX_URL_LEN} are accepted")]
    TooLong {
        /// The input's length in bytes.
        len: usize,
    },
}

/// Why no probe URL could be built from a worker URL and a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeUrlError {
    /// The path is not a plain absolute path.
    #[error(transparent)]
    Path(super::InvalidField),
    /// Setting the path changed more than the path (never seen; refused, not probed).
    #[error("setting the probe path changed the worker's scheme, host or port")]
    Changed,
}

/// A worker's normalized base URL: scheme and host lower-cased, port explicit, no
/// trailing slash, no user information, query or fragment. `grpc://host:port` (smg's
/// form for gRPC workers, SPEC S3) is normalized like `http://` with the same host and
/// port, and has no path.
///
/// Invariant: the inner string is the output of [`WorkerUrl::parse`], so two URLs that
/// name the same worker compare equal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkerUrl(String);

impl WorkerUrl {
    /// Validates and normalizes `input`.
    pub fn parse(input: &str) -> Result<WorkerUrl, UrlError> {
        let input = input.trim();
        if input.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong { len: input.len() });
        }
        let owned = || input.to_string();
        let url = url::Url::parse(input).map_err(|e| UrlError::Parse {
            url: owned(),
            reason: e.to_string(),
        })?;
        let scheme = url.scheme();
        if scheme == "grpc" {
            return WorkerUrl::parse_grpc(input, &url);
        }
        if scheme != "http" && scheme != "https" {
            return Err(UrlError::Scheme {
                url: owned(),
                scheme: scheme.to_string(),
            });
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h,
            _ => return Err(UrlError::NoHost { url: owned() }),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Userinfo { url: owned() });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::QueryOrFragment { url: owned() });
        }
        // Both schemes have a known default port, so this is always Some.
        let port = url.port_or_known_default().unwrap_or(80);
        let path = url.path().trim_end_matches('/');
        Ok(WorkerUrl(format!("{scheme}://{host}:{port}{path}")))
    }

    /// `grpc://host:port`: `url` crate parses a scheme it does not know with an opaque
    /// host (no lower-casing, no IP parsing), so the host and port are normalized by
    /// parsing the same authority as `http`.
    fn parse_grpc(input: &str, url: &url::Url) -> Result<WorkerUrl, UrlError> {
        let owned = || input.to_string();
        if url.port().is_none() {
            return Err(UrlError::GrpcPort { url: owned() });
        }
        if !url.path().trim_end_matches('/').is_empty() {
            return Err(UrlError::GrpcPath { url: owned() });
        }
        let rest = input.split_once("://").map_or(input, |(_, r)| r);
        let http = WorkerUrl::parse(&format!("http://{rest}")).map_err(|e| match e {
            UrlError::Parse { reason, .. } => UrlError::Parse {
                url: owned(),
                reason,
            },
            UrlError::NoHost { .. } => UrlError::NoHost { url: owned() },
            UrlError::Userinfo { .. } => UrlError::Userinfo { url: owned() },
            UrlError::QueryOrFragment { .. } => UrlError::QueryOrFragment { url: owned() },
            other => other,
        })?;
        let authority = http.0.trim_start_matches("http://");
        Ok(WorkerUrl(format!("grpc://{authority}")))
    }

    /// Whether this is a `grpc://` URL (probed with `grpc` unless it says otherwise).
    pub fn is_grpc(&self) -> bool {
        self.0.starts_with("grpc://")
    }

    /// The URL a `grpc` probe dials: this URL's own host and port, as `http` for a
    /// `grpc://` or `http://` worker (plaintext HTTP/2) and `https` for an `https://`
    /// one (HTTP/2 over TLS), with the root path (a gRPC call names its own path).
    pub fn grpc_target(&self) -> Result<url::Url, ProbeUrlError> {
        let as_http = match self.0.strip_prefix("grpc://") {
            Some(authority) => format!("http://{authority}"),
            None => self.0.clone(),
        };
        let mut target = url::Url::parse(&as_http).map_err(|_| ProbeUrlError::Changed)?;
        target.set_path("/");
        Ok(target)
    }

    /// The normalized URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part: a DNS name, an IPv4 address, or an IPv6 address in brackets.
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.rfind(':') {
            Some(i) if !authority[i..].contains(']') => &authority[..i],
            _ => authority,
        }
    }

    /// The URL a probe with `path` requests (SPEC S3): a copy of this URL in which only
    /// the path is set, to the base path followed by `path`. `path` must pass
    /// [`crate::model::validate::health_path`], and the result is checked to have this
    /// URL's own scheme, host and port and nothing else, so no path can send a probe
    /// to another address or carry credentials.
    /// A `grpc://` worker has no HTTP probe URL ([`ProbeUrlError::Changed`]): it is
    /// probed with [`WorkerUrl::grpc_target`].
    pub fn probe_url(&self, path: &str) -> Result<url::Url, ProbeUrlError> {
        super::validate::health_path(path).map_err(ProbeUrlError::Path)?;
        if self.is_grpc() {
            return Err(ProbeUrlError::Changed);
        }
        // The inner string came out of `parse`, so it parses again.
        let base = url::Url::parse(&self.0).map_err(|_| ProbeUrlError::Changed)?;
        let mut target = base.clone();
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        target.set_path(&joined);
        let same_address = target.scheme() == base.scheme()
            && target.host() == base.host()
            && target.port_or_known_default() == base.port_or_known_default()
            && target.username().is_empty()
            && target.password().is_none()
            && target.query().is_none()
            && target.fragment().is_none();
        if !same_address {
            return Err(ProbeUrlError::Changed);
        }
        Ok(target)
    }

    /// The id derived from this URL.
    pub fn id(&self) -> WorkerId {
        WorkerId::from_url(self)
    }
}

impl TryFrom<String> for WorkerUrl {
    type Error = UrlError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        WorkerUrl::parse(&s)
    }
}

impl From<WorkerUrl> for String {
    fn from(u: WorkerUrl) -> String {
        u.0
    }
}

impl fmt::Display for WorkerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerUrl({})", self.0)
    }
}

/// Length of a [`WorkerId`] in hex characters (64 bits of SHA-256).
pub const WORKER_ID_LEN: usize = 16;

/// A worker's id: the first 64 bits of SHA-256 over the normalized URL, in lower-case
/// hex. The same on every node, fixed length and safe in a URL path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkerId(String);

impl WorkerId {
    /// The id of `url`.
    pub fn from_url(url: &WorkerUrl) -> WorkerId {
        let digest = Sha256::digest(url.as_str().as_bytes());
        let mut hex = String::with_capacity(WORKER_ID_LEN);
        for b in &digest[..WORKER_ID_LEN / 2] {
            hex.push_str(&format!("{b:02x}"));
        }
        WorkerId(hex)
    }

    /// Accepts a string that has the shape of an id (16 lower-case hex digits).
    pub fn parse(s: &str) -> Option<WorkerId> {
        let ok = s.len() == WORKER_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| WorkerId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WorkerId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        WorkerId::parse(&s).ok_or_else(|| format!("`{s}` is not a worker id"))
    }
}

impl From<WorkerId> for String {
    fn from(id: WorkerId) -> String {
        id.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        WorkerUrl::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_case_port_and_trailing_slash() {
        let cases = [
            ("http://10.0.0.5:8000", "http://10.0.0.5:8000"),
            (
                "HTTP://Worker-1.Example.COM:8000/",
                "http://worker-1.example.com:8000",
            ),
            ("http://host", "http://host:80"),
            ("https://host/", "https://host:443"),
            ("http://host:80/v1/", "http://host:80/v1"),
            ("  http://host:9000  ", "http://host:9000"),
            ("http://[::1]:8000", "http://[::1]:8000"),
            ("http://[::1]", "http://[::1]:80"),
            (
                "grpc://Worker-1.Example.COM:50051/",
                "grpc://worker-1.example.com:50051",
            ),
            ("GRPC://10.0.0.5:50051", "grpc://10.0.0.5:50051"),
            ("grpc://[::1]:50051", "grpc://[::1]:50051"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), want, "input {input}");
        }
    }

    #[test]
    fn equal_workers_have_equal_ids() {
        let a = WorkerUrl::parse("http://HOST:80/").unwrap();
        let b = WorkerUrl::parse("http://host").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), WorkerUrl::parse("https://host").unwrap().id());
        let id = a.id();
        assert_eq!(id.as_str().len(), WORKER_ID_LEN);
        assert_eq!(WorkerId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn rejects_bad_urls_with_the_right_reason() {
        assert!(matches!(
            WorkerUrl::parse("not a url"),
            Err(UrlError::Parse { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("/relative"),
            Err(UrlError::Parse { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("ftp://host"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("file:///etc/passwd"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("http://"),
            Err(UrlError::Parse { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("http://u:p@host"),
            Err(UrlError::Userinfo { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("http://u@host"),
            Err(UrlError::Userinfo { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("http://host/?a=1"),
            Err(UrlError::QueryOrFragment { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("http://host/#x"),
            Err(UrlError::QueryOrFragment { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("grpc://host"),
            Err(UrlError::GrpcPort { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("grpc://host:50051/v1"),
            Err(UrlError::GrpcPath { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("grpc://u@host:50051"),
            Err(UrlError::Userinfo { .. })
        ));
        assert!(matches!(
            WorkerUrl::parse("grpc://:50051"),
            Err(UrlError::Parse { .. } | UrlError::NoHost { .. })
        ));
        let long = format!("http://host/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            WorkerUrl::parse(&long),
            Err(UrlError::TooLong { .. })
        ));
    }

    #[test]
    fn host_is_extracted_for_names_v4_and_v6() {
        assert_eq!(WorkerUrl::parse("http://a.b:1/x").unwrap().host(), "a.b");
        assert_eq!(
            WorkerUrl::parse("http://10.1.2.3").unwrap().host(),
            "10.1.2.3"
        );
        assert_eq!(
            WorkerUrl::parse("http://[fe80::1]:9/").unwrap().host(),
            "[fe80::1]"
        );
    }

    #[test]
    fn probe_urls_keep_the_workers_own_scheme_host_and_port() {
        let cases = [
            (
                "http://10.0.0.5:8000",
                "/health",
                "http://10.0.0.5:8000/health",
            ),
            ("http://h", "/health", "http://h/health"),
            (
                "https://h:8443/base/",
                "/v1/models",
                "https://h:8443/base/v1/models",
            ),
            ("http://[::1]:9", "/a%20b/c", "http://[::1]:9/a%20b/c"),
        ];
        for (base, path, want) in cases {
            let u = WorkerUrl::parse(base).unwrap().probe_url(path).unwrap();
            assert_eq!(u.as_str(), want, "{base} + {path}");
        }
        // gRPC workers: no HTTP probe URL; the gRPC target keeps host and port.
        let g = WorkerUrl::parse("grpc://10.0.0.5:50051").unwrap();
        assert!(g.is_grpc());
        assert_eq!(g.probe_url("/health"), Err(ProbeUrlError::Changed));
        assert_eq!(g.grpc_target().unwrap().as_str(), "http://10.0.0.5:50051/");
        let t = WorkerUrl::parse("https://h:8443/base").unwrap();
        assert_eq!(t.grpc_target().unwrap().as_str(), "https://h:8443/");
        let w = WorkerUrl::parse("http://10.255.255.1:9").unwrap();
        for smuggled in [
            "@127.0.0.1:47860/pwned",
            "/@127.0.0.1:47860/pwned",
            "//127.0.0.1:47860/pwned",
            "http://127.0.0.1:47860/pwned",
            "/x?redirect=http://127.0.0.1:47860",
            "/..",
            "/%2e%2e/x",
        ] {
            assert!(
                matches!(w.probe_url(smuggled), Err(ProbeUrlError::Path(_))),
                "{smuggled}"
            );
        }
        // Whatever the path, the host stays the worker's own (a string concatenation
        // would have sent "@127.0.0.1:47860/pwned" to 127.0.0.1).
        for p in ["/a", "/a@b", "/%40127.0.0.1:47860"] {
            if let Ok(u) = w.probe_url(p) {
                assert_eq!(u.host_str(), Some("10.255.255.1"), "{p}");
                assert_eq!(u.port_or_known_default(), Some(9), "{p}");
                assert!(u.username().is_empty() && u.password().is_none(), "{p}");
            }
        }
    }

    #[test]
    fn ids_reject_wrong_shapes() {
        assert_eq!(WorkerId::parse("0123456789abcdeF"), None);
        assert_eq!(WorkerId::parse("0123"), None);
        assert_eq!(WorkerId::parse("../../etc/passwd"), None);
        assert!(WorkerId::parse("0123456789abcdef").is_some());
    }

    #[test]
    fn deserializing_validates() {
        let ok: WorkerUrl = serde_json::from_str("\"http://H:1/\"").unwrap();
        assert_eq!(ok.as_str(), "http://h:1");
        assert!(serde_json::from_str::<WorkerUrl>("\"gopher://h\"").is_err());
        assert!(serde_json::from_str::<WorkerId>("\"zz\"").is_err());
    }
}
