//! The connections a probe dials: TCP, or TLS over TCP (rustls, the platform's roots
//! as reqwest had them), and the cheap check made on a kept one before it is reused.
//!
//! [`Dialer::connect`] is the only place a probe socket is connected, and it refuses
//! any address outside `--allow-worker-cidr` ([`super::allow`]), whatever path gave it.

use super::allow::{Allowlist, NotAllowed};
use super::origin::{Host, Origin};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// An open connection to a worker.
#[derive(Debug)]
pub enum Stream {
    /// Plain HTTP.
    Plain(TcpStream),
    /// HTTPS (boxed: a TLS session is large next to a socket).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// Drops any waker the runtime keeps for this socket's readiness, so that an idle
    /// connection holds no reference to the probe that last used it: a read left
    /// pending would keep that finished probe's memory alive as long as the
    /// connection is idle (3 KiB a connection when probes were tasks and hyper left
    /// its read registered). A no-op waker takes its place; nothing polls an idle
    /// connection.
    pub fn release_waker(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = self.tcp().poll_read_ready(&mut cx);
        let _ = self.tcp().poll_write_ready(&mut cx);
    }

    /// Whether a kept connection can carry another request: the worker has neither
    /// closed it (EOF, reset) nor sent anything unasked (a TLS alert, stray bytes)
    /// while it was idle. Costs at most one non-blocking `read`, and none when the
    /// runtime saw no readiness since the last read. A connection closed after this
    /// check is caught by the caller's one retry.
    pub fn looks_alive(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.tcp().try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The address is outside `--allow-worker-cidr`: nothing was sent.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The TCP connect failed.
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(#[source] io::Error),
}

/// What a connection will carry, which TLS negotiates (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (`http` and `models` probes).
    Http1,
    /// HTTP/2 (`grpc` probes).
    Http2,
}

/// Opens probe connections.
#[derive(Clone)]
pub struct Dialer {
    allow: Allowlist,
    tls: TlsConnector,
    tls_h2: TlsConnector,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer for `allow` whose TLS trusts the platform's roots plus `extra_roots`.
    pub fn new(
        allow: Allowlist,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Dialer, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = if extra_roots.is_empty() {
            rustls_platform_verifier::Verifier::new(Arc::clone(&provider))?
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                extra_roots,
                Arc::clone(&provider),
            )?
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let mut h2 = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        h2.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer {
            allow,
            tls: TlsConnector::from(Arc::new(config)),
            tls_h2: TlsConnector::from(Arc::new(h2)),
        })
    }

    /// Connects to the first of `addrs` that answers, on `origin`'s port, and makes
    /// the TLS handshake for `https`. Refuses an address outside the allowlist before
    /// any packet is sent. The last connect error is returned when none answers.
    pub async fn connect(
        &self,
        origin: &Origin,
        addrs: &[IpAddr],
    ) -> Result<(Stream, SocketAddr), DialError> {
        self.connect_for(origin, addrs, Protocol::Http1).await
    }

    /// [`Dialer::connect`] for a connection that will carry `protocol`.
    pub async fn connect_for(
        &self,
        origin: &Origin,
        addrs: &[IpAddr],
        protocol: Protocol,
    ) -> Result<(Stream, SocketAddr), DialError> {
        let mut last = None;
        for ip in addrs {
            let addr = SocketAddr::new(*ip, origin.port);
            if !self.allow.contains(addr.ip()) {
                return Err(NotAllowed::new(&addr.ip().to_string()).into());
            }
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    // A probe is one small request: do not wait for Nagle.
                    let _ = tcp.set_nodelay(true);
                    return Ok((self.wrap(origin, tcp, protocol).await?, addr));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(DialError::Connect(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no address to dial")
        })))
    }

    async fn wrap(
        &self,
        origin: &Origin,
        tcp: TcpStream,
        protocol: Protocol,
    ) -> Result<Stream, DialError> {
        if !origin.tls {
            return Ok(Stream::Plain(tcp));
        }
        let name = match &origin.host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(name) => ServerName::try_from(name.to_string())
                .map_err(|e| DialError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?,
        };
        let connector = match protocol {
            Protocol::Http1 => &self.tls,
            Protocol::Http2 => &self.tls_h2,
        };
        let tls = connector.connect(name, tcp).await.map_err(DialError::Tls)?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}
