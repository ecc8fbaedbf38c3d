//! `[server]` and `[jobs]`: the HTTP front end and the job queue.
//!
//! Every limit has a default that is safe on a small VPS; each one exists
//! because a peer lacked it: webhook has no queue bound (and drops runs), no
//! body limit and no brake on bad keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// How bosun listens for HTTP requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address to listen on. Default `127.0.0.1:8750`; port 0 picks a
    /// free port, printed at start.
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate and key. None: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Largest request body accepted. Default 64KiB.
    pub max_body: ByteSize,
    /// Time a client gets to send its request headers, and its body; a
    /// connection with no request in flight for this long is closed.
    /// Default 10s: a slow or silent client cannot hold a connection open
    /// for free.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// The longest `?wait=` a caller may ask for. Default 10m.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Requests handled at once; past it, new ones get 503 at once.
    /// Default 512.
    pub max_concurrent_requests: usize,
    /// Connections open at once; past it, new ones get a 503 and are closed
    /// while the open ones are served. Default 1024.
    pub max_connections: usize,
    /// Connections open at once from one address (an IPv6 /64); past it,
    /// that address is refused like past `max_connections`. Default 256;
    /// behind a reverse proxy, every client has the proxy's address.
    pub max_connections_per_address: usize,
    /// Requests that stay open (a `?wait`, a followed log) at once, over
    /// every key; past it, new ones get 503. Default 256.
    pub max_long_requests: usize,
    /// Requests that stay open at once per key; past it, that key gets 429
    /// while other keys are served. Default 32.
    pub max_long_requests_per_key: usize,
    /// Failed authentications one address may make per `auth_fail_window`
    /// before it is refused with 429 until the window ends. Default 20.
    pub auth_fail_limit: u32,
    /// The window of `auth_fail_limit`. Default 1m.
    #[serde(with = "humantime_serde")]
    pub auth_fail_window: Duration,
    /// On SIGTERM, how long running jobs may take to finish before they are
    /// cancelled and marked `interrupted`. Default 30s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8750)),
            tls: None,
            max_body: ByteSize::kib(64),
            read_timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(600),
            max_concurrent_requests: 512,
            max_connections: 1024,
            max_connections_per_address: 256,
            max_long_requests: 256,
            max_long_requests_per_key: 32,
            auth_fail_limit: 20,
            auth_fail_window: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The job queue and history.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs a project may have waiting (besides the one running); past it a
    /// request gets 429 and nothing is stored. Default 16.
    pub queue_depth: usize,
    /// Finished jobs kept per project; older ones are deleted. Default 1000.
    pub keep: u64,
    /// Bytes of finished jobs (params, result, error and log) kept per
    /// project; older ones are deleted. Default 256MiB.
    pub max_bytes: ByteSize,
    /// Finished jobs older than this are deleted. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
    /// Bytes of log kept per job: the first half and the last half, with a
    /// note of what was cut between. Default 1MiB.
    pub max_log: ByteSize,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            queue_depth: 16,
            keep: 1000,
            max_bytes: ByteSize::mib(256),
            keep_for: Duration::from_secs(30 * 24 * 3600),
            max_log: ByteSize::mib(1),
        }
    }
}

impl ServerConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let positive = [
            ("server.read_timeout", self.read_timeout),
            ("server.max_wait", self.max_wait),
            ("server.auth_fail_window", self.auth_fail_window),
        ];
        for (key, d) in positive {
            if d.is_zero() {
                return Err((key.into(), "must be more than 0".into()));
            }
        }
        if self.max_concurrent_requests == 0 {
            return Err((
                "server.max_concurrent_requests".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(("server.max_connections".into(), "must be 1-1000000".into()));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_address) {
            return Err((
                "server.max_connections_per_address".into(),
                format!(
                    "must be 1-{} (at most `max_connections`)",
                    self.max_connections
                ),
            ));
        }
        if self.max_long_requests == 0 {
            return Err((
                "server.max_long_requests".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=self.max_long_requests).contains(&self.max_long_requests_per_key) {
            return Err((
                "server.max_long_requests_per_key".into(),
                format!(
                    "must be 1-{} (at most `max_long_requests`)",
                    self.max_long_requests
                ),
            ));
        }
        if self.auth_fail_limit == 0 {
            return Err(("server.auth_fail_limit".into(), "must be at least 1".into()));
        }
        if self.max_body.as_u64() < 1024 {
            return Err(("server.max_body".into(), "must be at least 1KiB".into()));
        }
        Ok(())
    }
}

impl JobsConfig {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        if self.queue_depth == 0 {
            return Err(("jobs.queue_depth".into(), "must be at least 1".into()));
        }
        if self.keep == 0 {
            return Err(("jobs.keep".into(), "must be at least 1".into()));
        }
        if self.max_log.as_u64() < 1024 {
            return Err(("jobs.max_log".into(), "must be at least 1KiB".into()));
        }
        if self.max_bytes < self.max_log {
            return Err(("jobs.max_bytes".into(), "must be at least `max_log`".into()));
        }
        Ok(())
    }
}
