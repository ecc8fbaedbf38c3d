//! The HTTP client behind the remote subcommands: where the server is, which
//! key to send, and the API's answers turned into values or typed errors.
//!
//! Settings come from, first to last: flags, then `BOSUN_URL`, `BOSUN_KEY`
//! and `BOSUN_PROJECT_KEY`, then the client config file (`$BOSUN_CLIENT_CONFIG`,
//! or `~/.config/bosun/client.toml`):
//!
//! ```toml
//! url = "https://deploy.example.com:8750"
//! key = "bsk_…"
//! [project_keys]
//! shop = "…"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ExitCode;

/// The default server: the example config's listen address.
const DEFAULT_URL: &str = "http://127.0.0.1:8750";

/// Flags every remote subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL [env: BOSUN_URL; default http://127.0.0.1:8750].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The API key; prefer the BOSUN_KEY environment variable, which other
    /// users cannot see in the process list.
    #[arg(long, global = true, hide_env_values = true)]
    pub key: Option<String>,
    /// The project's own key, for projects that require `X-Project-Key`
    /// [env: BOSUN_PROJECT_KEY].
    #[arg(long, global = true, hide_env_values = true)]
    pub project_key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    url: Option<String>,
    key: Option<String>,
    #[serde(default)]
    project_keys: BTreeMap<String, String>,
}

/// Why a remote command failed before it had a job to report on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with an error.
    #[error("{status} {code}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The settings are unusable (e.g. a malformed client config file).
    #[error("{0}")]
    Usage(String),
}

impl ClientError {
    /// The exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Unreachable { .. } => ExitCode::Unreachable,
            Self::Refused { .. } => ExitCode::Refused,
            Self::Usage(_) => ExitCode::Usage,
        }
    }
}

/// A connection to one bosun server.
pub struct Client {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
    project_key: Option<String>,
    project_keys: BTreeMap<String, String>,
}

fn client_file() -> Result<ClientFile, ClientError> {
    let path = match std::env::var_os("BOSUN_CLIENT_CONFIG") {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".config/bosun/client.toml"),
            None => return Ok(ClientFile::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| ClientError::Usage(format!("{}: {}", path.display(), e.message()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientFile::default()),
        Err(e) => Err(ClientError::Usage(format!("{}: {e}", path.display()))),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Client {
    /// A client from flags, environment and the client config file.
    pub fn new(args: &ClientArgs) -> Result<Self, ClientError> {
        let file = client_file()?;
        let url = args
            .url
            .clone()
            .or_else(|| env("BOSUN_URL"))
            .or(file.url)
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            key: args.key.clone().or_else(|| env("BOSUN_KEY")).or(file.key),
            project_key: args
                .project_key
                .clone()
                .or_else(|| env("BOSUN_PROJECT_KEY")),
            project_keys: file.project_keys,
        })
    }

    /// A request to `path`, with the key and, for `project`, its project key.
    pub fn request(&self, method: Method, path: &str, project: Option<&str>) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let project_key = self
            .project_key
            .as_ref()
            .or_else(|| project.and_then(|p| self.project_keys.get(p)));
        if let Some(pk) = project_key {
            req = req.header("X-Project-Key", pk);
        }
        req
    }

    /// Send `req`; a non-success answer becomes [`ClientError::Refused`].
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.url.clone(),
            message: error_chain(&e),
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Err(ClientError::Refused {
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("the server gave no reason")
                .to_string(),
        })
    }

    /// Send `req` and read a JSON answer.
    pub async fn json(&self, req: RequestBuilder) -> Result<Value, ClientError> {
        let resp = self.send(req).await?;
        resp.json().await.map_err(|e| ClientError::Unreachable {
            url: self.url.clone(),
            message: format!("the answer is not JSON: {e}"),
        })
    }

    /// Send `req`: the answer as the server wrote it (for `--json`), and
    /// read into the API's own type (`JobView`, `JobPage`), `what` naming
    /// it when the answer does not fit.
    pub async fn typed<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        what: &str,
    ) -> Result<(Value, T), ClientError> {
        let json = self.json(req).await?;
        let typed = serde_json::from_value(json.clone()).map_err(|e| ClientError::Unreachable {
            url: self.url.clone(),
            message: format!("the answer is not {what}: {e}"),
        })?;
        Ok((json, typed))
    }
}

/// reqwest's error and its causes, which hold the useful part
/// ("Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
