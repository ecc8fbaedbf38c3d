//! The listener: plain TCP or TLS (rustls), HTTP/1.1 and HTTP/2, and
//! graceful shutdown. A connection costs a file descriptor that spawns and
//! job logs need too, so none is held for free: at most `max_connections`
//! are open, TLS handshakes and request headers have a deadline, and a
//! connection with no request in flight for `read_timeout` is closed (see
//! [`idle`](super::idle)).
//!
//! hyper-util's server is used directly rather than `axum::serve` because
//! the latter offers neither TLS nor a header read timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::connections::{Connections, Full};
use super::idle;
use crate::config::{ServerConfig, TlsConfig};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate or key could not be used.
    #[error("TLS: {0:#}")]
    Tls(anyhow::Error),
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    /// Its limits: timeouts and connection caps.
    config: ServerConfig,
}

/// Streams one HTTP/2 connection may have open; requests overall are
/// bounded by `max_concurrent_requests` too.
const H2_STREAMS: u32 = 64;
/// How often an HTTP/2 connection is pinged; a peer that does not answer
/// within `read_timeout` is dropped.
const H2_PING: Duration = Duration::from_secs(30);
/// How long a connection accepted just before a stop may take to send its
/// first request, which is then answered before the connection closes.
const FIRST_REQUEST: Duration = Duration::from_secs(1);
/// Idle time before TCP keepalive probes start.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

impl Listener {
    /// Bind the configured address and load TLS material, if any.
    pub async fn bind(cfg: &ServerConfig) -> Result<Self, ServeError> {
        let tls = match &cfg.tls {
            Some(tls) => Some(acceptor(tls).map_err(ServeError::Tls)?),
            None => None,
        };
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.listen,
                source,
            })?;
        Ok(Self {
            tcp,
            tls,
            config: cfg.clone(),
        })
    }

    /// Serve on `fd`, a listening socket the previous bosun image handed
    /// over in an upgrade: the connections waiting on it are answered
    /// here, none refused.
    pub fn inherit(cfg: &ServerConfig, fd: std::os::fd::OwnedFd) -> Result<Self, ServeError> {
        let tls = match &cfg.tls {
            Some(tls) => Some(acceptor(tls).map_err(ServeError::Tls)?),
            None => None,
        };
        let bind_error = |source| ServeError::Bind {
            addr: cfg.listen,
            source,
        };
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true).map_err(bind_error)?;
        let tcp = TcpListener::from_std(std).map_err(bind_error)?;
        Ok(Self {
            tcp,
            tls,
            config: cfg.clone(),
        })
    }

    /// The bound address (the real port when the config said 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The URL clients reach it at.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.local_addr() {
            Ok(addr) => format!("{scheme}://{addr}"),
            Err(_) => format!("{scheme}://?"),
        }
    }

    /// Serve `app` until `stop` fires, then let open requests finish for up
    /// to `grace` and return. The socket is closed at once, unless `keep`
    /// is set by then (an upgrade): it is returned still listening, and the
    /// connections that arrive meanwhile wait in its backlog for the next
    /// image.
    pub async fn serve(
        self,
        app: Router,
        stop: CancellationToken,
        grace: Duration,
        keep: Arc<AtomicBool>,
    ) -> Option<std::net::TcpListener> {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS)
            .keep_alive_interval(H2_PING)
            .keep_alive_timeout(self.config.read_timeout);
        let builder = Arc::new(builder);
        let slots = Connections::new(&self.config);
        let mut full = None;
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off
                        // instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let slot = match slots.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(why) => {
                    // Said once per run of refusals, not per connection.
                    if full.replace(why) != Some(why) {
                        match why {
                            Full::Server => tracing::warn!(
                                "max_connections are open; refusing new connections until some close"
                            ),
                            Full::Source => tracing::warn!(
                                %peer,
                                "max_connections_per_address are open from this address; refusing its new ones"
                            ),
                        }
                    }
                    refuse(&stream, self.tls.is_some());
                    continue;
                }
            };
            full = None;
            let _ = stream.set_nodelay(true);
            // A peer that vanished without a FIN is found out even while
            // its request waits or its stream is quiet.
            let _ = SockRef::from(&stream).set_tcp_keepalive(
                &TcpKeepalive::new()
                    .with_time(TCP_KEEPALIVE)
                    .with_interval(TCP_KEEPALIVE / 4),
            );
            let conn = Connection {
                app: app.clone(),
                builder: builder.clone(),
                stop: stop.clone(),
                read_timeout: self.config.read_timeout,
                peer,
            };
            let tls = self.tls.clone();
            let handshake = self.config.read_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                match tls {
                    None => conn.serve(stream).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => conn.serve(tls).await,
                            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        let kept = keep.load(Ordering::SeqCst).then_some(self.tcp);
        if tokio::time::timeout(grace, slots.all_closed())
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open after {grace:?}; closing them");
        }
        kept.and_then(|tcp| {
            tcp.into_std()
                .inspect_err(|e| tracing::error!("keeping the listening socket: {e}"))
                .ok()
        })
    }
}

/// Past `max_connections`: a plain-HTTP client gets a 503 it can read (the
/// socket is new, so the write fits its buffer and cannot block); a TLS
/// client, which has no session to read one in, is closed. What the client
/// already sent is read first, so the close is a FIN, not a reset that
/// could discard the answer; nothing waits for more.
fn refuse(stream: &TcpStream, tls: bool) {
    let mut sent = [0u8; 4096];
    while matches!(stream.try_read(&mut sent), Ok(n) if n > 0) {}
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the server has too many open connections; try again shortly"}}"#;
    if !tls {
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = stream.try_write(answer.as_bytes());
    }
}

struct Connection {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    stop: CancellationToken,
    read_timeout: Duration,
    peer: SocketAddr,
}

impl Connection {
    /// Serve requests until the client leaves, bosun stops, or no request
    /// has been in flight for `read_timeout` (a silent new connection
    /// included); then shut the connection down gracefully.
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            app,
            builder,
            stop,
            read_timeout,
            peer,
        } = self;
        let (activity, mut idle) = idle::track();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = activity.begin();
            let answer = app.clone().oneshot(req);
            async move {
                let response = answer.await?;
                Ok::<_, Infallible>(response.map(|body| idle::tracked(body, busy)))
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let stopping = tokio::select! {
            ended = conn.as_mut() => return log_end(peer, ended),
            () = stop.cancelled() => true,
            () = idle.for_longer_than(read_timeout) => false,
        };
        if stopping {
            // A client that has just connected is sending its first
            // request: a close now would reset it (a stop, or an upgrade
            // whose socket stays open, must drop no request). Serve that
            // one first.
            tokio::select! {
                ended = conn.as_mut() => return log_end(peer, ended),
                () = idle.first_request() => {}
                () = tokio::time::sleep(FIRST_REQUEST.min(read_timeout)) => {}
            }
        }
        conn.as_mut().graceful_shutdown();
        if stopping {
            // The listener bounds this with the shutdown grace.
            log_end(peer, conn.await);
        } else if let Ok(ended) = tokio::time::timeout(read_timeout, conn).await {
            log_end(peer, ended);
        } else {
            tracing::debug!(%peer, "idle connection did not close in time; dropped");
        }
    }
}

fn log_end(peer: SocketAddr, ended: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = ended {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

fn acceptor(cfg: &TlsConfig) -> anyhow::Result<TlsAcceptor> {
    let certs = read_certs(&cfg.cert)?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key)
        .with_context(|| format!("reading the private key {}", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a valid pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the certificate {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing the certificate {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}
