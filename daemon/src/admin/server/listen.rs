//! Binding the admin listener with an accept queue deeper than tokio's default.
//!
//! `TcpListener::bind` listens with a backlog of 1,024. The admin port also answers
//! bursts of new connections: every gateway replica's clients at start-up, and, on a
//! host where agents answer each other's probes (benchmarks, tests), a joining node's
//! first probe of every worker within a few hundred milliseconds. A full accept queue
//! drops the SYN and the client retries after a second, so the deeper queue costs
//! nothing in the calm case and saves a second in the burst. The kernel caps it at
//! `net.core.somaxconn` (4,096 by default since Linux 5.4).

use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket};

/// The accept queue the admin listener asks for.
pub const ADMIN_BACKLOG: u32 = 4_096;

/// Listens on `addr` with [`ADMIN_BACKLOG`], reusing a port in `TIME_WAIT` as
/// `TcpListener::bind` does (a restarted agent gets its port back at once).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ADMIN_BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More connections than tokio's default backlog (1,024) complete their handshake
    /// while the server accepts none: the kernel drops a SYN once the queue is full,
    /// so with the default queue the 1,026th connect would hang.
    #[tokio::test]
    async fn holds_more_unaccepted_connections_than_the_default_backlog() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4_096);
        let n = somaxconn.min(ADMIN_BACKLOG).min(1_500) as usize;
        let limit = crate::admin::server::fd_limit::raise().unwrap();
        assert!(
            limit.soft as usize > n + 64,
            "this test needs {} open files; raise the hard limit (ulimit -Hn)",
            n + 64
        );
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
                Ok(Ok(c)) => clients.push(c),
                Ok(Err(e)) => panic!("connection {i} of {n} failed: {e}"),
                Err(_) => panic!("connection {i} of {n} hung: the accept queue is full"),
            }
        }
        assert_eq!(clients.len(), n);
        let (_conn, _) = listener.accept().await.unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
