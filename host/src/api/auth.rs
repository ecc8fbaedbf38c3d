//! Who is calling, and what they may touch.
//!
//! - `Authorization: Bearer <key>`; the key's SHA-256 is compared with every
//!   configured hash in constant time, and the loop never stops early, so
//!   timing says nothing about which key (or how much of one) matched.
//! - 401 for a missing or wrong key, with `WWW-Authenticate`; 403 for a valid
//!   key out of scope. Scope is checked before the project is looked up, so
//!   a caller who may not see a project cannot learn whether it exists.
//! - A project with `key_hash` also needs `X-Project-Key`.
//! - Each address may fail `auth_fail_limit` times per window; after that it
//!   is refused with 429 until the window ends, which makes guessing keys
//!   over the network pointless.
//! - Keys are never logged or stored; jobs record the key's *name*.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::config::{Config, KeyHash, Role, Scope};

/// Addresses remembered by the brake; past this, expired entries are dropped.
const BRAKE_MAX_ADDRESSES: usize = 10_000;

/// The configured keys and the failure brake.
pub struct Auth {
    keys: Vec<Key>,
    project_keys: HashMap<String, KeyHash>,
    brake: Brake,
}

struct Key {
    name: String,
    hash: [u8; 32],
    projects: Scope,
    actions: Scope,
    role: Role,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's name.
    pub name: String,
    projects: Scope,
    actions: Scope,
    role: Role,
    ip: IpAddr,
    project_key: Option<[u8; 32]>,
}

impl Auth {
    /// The keys of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            keys: config
                .keys
                .iter()
                .map(|k| Key {
                    name: k.name.clone(),
                    hash: k.hash.0,
                    projects: k.projects.clone(),
                    actions: k.actions.clone(),
                    role: k.role,
                })
                .collect(),
            project_keys: config
                .projects
                .iter()
                .filter_map(|(name, p)| p.key_hash.map(|h| (name.clone(), h)))
                .collect(),
            brake: Brake {
                limit: config.server.auth_fail_limit,
                window: config.server.auth_fail_window,
                failures: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Identify the caller of a request from `ip` with `headers`.
    pub fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, ApiError> {
        self.brake.check(ip)?;
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "unauthorized",
                "this endpoint needs `Authorization: Bearer <key>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.hash.ct_eq(&digest)) {
                found = Some(key);
            }
        }
        let Some(key) = found.filter(|_| !token.is_empty()) else {
            self.brake.fail(ip);
            return Err(ApiError::unauthorized(
                "unauthorized",
                "the bearer key is not valid",
            ));
        };
        let project_key = headers
            .get("x-project-key")
            .map(|v| Sha256::digest(v.as_bytes()).into());
        Ok(Caller {
            name: key.name.clone(),
            projects: key.projects.clone(),
            actions: key.actions.clone(),
            role: key.role,
            ip,
            project_key,
        })
    }

    /// Check that `caller` may reach `project`: in its key's scope, and with
    /// the project's own key when it has one. Says nothing of whether the
    /// project exists.
    pub fn project(&self, caller: &Caller, project: &str) -> Result<(), ApiError> {
        if !caller.projects.allows(project) {
            return Err(ApiError::forbidden(format!(
                "key `{}` may not reach project `{project}`",
                caller.name
            )));
        }
        self.project_key(caller, project)
    }

    /// Whether `caller` may see `project` in a listing, silently.
    pub fn sees(&self, caller: &Caller, project: &str) -> bool {
        caller.projects.allows(project) && self.project_key_matches(caller, project)
    }

    fn project_key_matches(&self, caller: &Caller, project: &str) -> bool {
        match (self.project_keys.get(project), caller.project_key) {
            (None, _) => true,
            (Some(want), Some(got)) => bool::from(want.0.ct_eq(&got)),
            (Some(_), None) => false,
        }
    }

    fn project_key(&self, caller: &Caller, project: &str) -> Result<(), ApiError> {
        match (self.project_keys.get(project), caller.project_key) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(ApiError::unauthorized(
                "project_key_required",
                format!("project `{project}` also needs its key in `X-Project-Key`"),
            )),
            (Some(_), Some(_)) if self.project_key_matches(caller, project) => Ok(()),
            (Some(_), Some(_)) => {
                self.brake.fail(caller.ip);
                Err(ApiError::unauthorized(
                    "bad_project_key",
                    format!("the `X-Project-Key` is not project `{project}`'s key"),
                ))
            }
        }
    }
}

impl Caller {
    /// Check the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "key `{}` has the role `{}`; this needs `{}`",
            self.name,
            role_name(self.role),
            role_name(role)
        )))
    }

    /// Check the caller may run `action`.
    pub fn action(&self, action: &str) -> Result<(), ApiError> {
        self.require(Role::Run)?;
        if self.actions.allows(action) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "key `{}` may not run the action `{action}`",
            self.name
        )))
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    /// The projects the caller's key reaches, when it is not every project.
    pub fn project_scope(&self) -> &Scope {
        &self.projects
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Read => "read",
        Role::Run => "run",
        Role::Admin => "admin",
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        state.auth.authenticate(&parts.headers, ip)
    }
}

/// Failed authentications per address, in fixed windows.
struct Brake {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Brake {
    fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&ip) {
            Some((since, n)) if *n >= self.limit && since.elapsed() < self.window => {
                let left = self.window.saturating_sub(since.elapsed());
                Err(ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_auth_failures",
                    "too many failed authentications from this address; try again later",
                )
                .retry_after(left.as_secs_f64().ceil() as u64))
            }
            _ => Ok(()),
        }
    }

    fn fail(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= BRAKE_MAX_ADDRESSES {
            failures.retain(|_, (since, _)| since.elapsed() < self.window);
        }
        let entry = failures.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= self.window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
        if entry.1 == self.limit {
            tracing::warn!(%ip, "too many failed authentications; refusing this address for a while");
        }
    }
}
