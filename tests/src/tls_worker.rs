//! [`TlsWorker`]: an HTTPS worker in the test process, for checking which TLS roots an
//! agent trusts (the container tests serve it on a Docker bridge's own address, where
//! containers reach it). Every `GET` answers 200; each request is counted.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running HTTPS worker; stops when dropped.
#[derive(Debug)]
pub struct TlsWorker {
    /// Address it listens on.
    pub addr: std::net::SocketAddr,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsWorker {
    /// Serves HTTPS on `ip:0` with the certificate chain and key in the PEM files.
    pub fn start(ip: &str, cert_pem: &Path, key_pem: &Path) -> Result<TlsWorker, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
            .map_err(|e| format!("{}: {e}", cert_pem.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert_pem.display()))?;
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .map_err(|e| format!("{}: {e}", key_pem.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        let config = Arc::new(config);
        let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}:0: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let (config, r) = (config.clone(), r.clone());
                std::thread::spawn(move || serve(tcp, config, &r));
            }
        });
        Ok(TlsWorker {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    /// Its base URL, `https://IP:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Requests that completed a TLS handshake and sent a request head.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(tcp: TcpStream, config: Arc<rustls::ServerConfig>, requests: &AtomicU64) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) if head.len() + n > 8192 => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let body = r#"{"status":"ok"}"#;
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(reply.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

impl Drop for TlsWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
