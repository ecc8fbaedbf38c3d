//! The listener: plain TCP or TLS (rustls), HTTP/1.1 and HTTP/2, with a
//! deadline on request headers and on TLS handshakes so a slow client cannot
//! hold a connection for free, and graceful shutdown.
//!
//! hyper-util's server is used directly rather than `axum::serve` because
//! the latter offers neither TLS nor a header read timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

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
    read_timeout: Duration,
}

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
            read_timeout: cfg.read_timeout,
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
    /// to `grace` and return.
    pub async fn serve(self, app: Router, stop: CancellationToken, grace: Duration) {
        let graceful = GracefulShutdown::new();
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.read_timeout);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
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
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                app: app.clone(),
                builder: builder.clone(),
                watcher: graceful.watcher(),
                peer,
            };
            let tls = self.tls.clone();
            let handshake = self.read_timeout;
            tokio::spawn(async move {
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
        drop(self.tcp);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections were still open after {grace:?}; closing them");
        }
    }
}

struct Connection {
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            app,
            builder,
            watcher,
            peer,
        } = self;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(%peer, "connection ended: {e}");
        }
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
