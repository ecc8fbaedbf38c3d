//! Who is calling, and what they may touch.
//!
//! - `Authorization: Bearer <key>`; the key's SHA-256 is compared with every
//!   configured hash in constant time, and the loop never stops early, so
//!   timing says nothing about which key (or how much of one) matched.
//! - 401 for a missing or wrong key, with `WWW-Authenticate`; 403 for a valid
//!   key out of scope. Scope is checked before the project is looked up, so
//!   a caller who may not see a project cannot learn whether it exists.
//! - A project with `key_hash` also needs `X-Project-Key`; without it (or
//!   with a wrong one) the project answers 404 like one that does not exist.
//! - Each address may fail `auth_fail_limit` times per window; after that it
//!   is refused with 429 until the window ends, which makes guessing keys
//!   over the network pointless.
//! - Keys are never logged or stored; jobs record the key's *name*.
//! - A reload swaps the key table whole ([`Auth::replace`]): a request sees
//!   the old table or the new, never a mix. A key removed or changed ends
//!   the waits and streams it holds open through its `revoked` token; the
//!   brake's memory outlives reloads, so a reload buys no fresh guesses.

use std::collections::{BTreeSet, HashMap, HashSet};

use arc_swap::ArcSwap;
use hashlink::LruCache;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use super::connections::source;
use super::error::ApiError;
use crate::config::{Config, KeyHash, Role, Scope};
use crate::control::KeyChanges;

/// Sources remembered by the brake; past this, the one that failed least
/// recently is forgotten. 10,000 entries are well under a megabyte.
const BRAKE_MAX_SOURCES: usize = 10_000;

/// The configured keys and the failure brake.
pub struct Auth {
    table: ArcSwap<KeyTable>,
    brake: Brake,
}

/// The keys and projects of one config.
struct KeyTable {
    keys: Vec<Key>,
    projects: HashSet<String>,
    project_keys: HashMap<String, KeyHash>,
    /// Per project, cancelled when a reload removes it or changes its
    /// project key: what was opened on it with the old key ends.
    project_tokens: HashMap<String, CancellationToken>,
}

struct Key {
    name: String,
    hash: [u8; 32],
    projects: Scope,
    actions: Scope,
    role: Role,
    /// Cancelled when a reload removes or changes the key.
    revoked: CancellationToken,
}

impl Key {
    fn same_grant(&self, other: &Key) -> bool {
        self.name == other.name
            && self.hash == other.hash
            && self.projects == other.projects
            && self.actions == other.actions
            && self.role == other.role
    }
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
    revoked: CancellationToken,
}

impl Auth {
    /// The keys of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            table: ArcSwap::from_pointee(KeyTable::new(config)),
            brake: Brake {
                limit: config.server.auth_fail_limit,
                window: config.server.auth_fail_window,
                failures: Mutex::new(LruCache::new(BRAKE_MAX_SOURCES)),
            },
        }
    }

    /// Take the keys and projects of `config` from the next request on. A
    /// key whose name, hash, scope and role are all unchanged keeps its
    /// open waits and streams; every other old key is revoked.
    pub fn replace(&self, config: &Config) -> KeyChanges {
        let mut table = KeyTable::new(config);
        let old = self.table.load_full();
        let mut kept = HashSet::new();
        for key in &mut table.keys {
            if let Some(same) = old.keys.iter().find(|o| o.same_grant(key)) {
                key.revoked = same.revoked.clone();
                kept.insert(key.name.clone());
            }
        }
        for key in &old.keys {
            if !kept.contains(&key.name) {
                key.revoked.cancel();
            }
        }
        let mut project_keys = Vec::new();
        for (project, token) in &old.project_tokens {
            let same = table.projects.contains(project)
                && old.project_keys.get(project) == table.project_keys.get(project);
            if same {
                table.project_tokens.insert(project.clone(), token.clone());
            } else {
                token.cancel();
                if table.projects.contains(project) {
                    project_keys.push(project.clone());
                }
            }
        }
        project_keys.sort();
        let names =
            |t: &KeyTable| -> BTreeSet<String> { t.keys.iter().map(|k| k.name.clone()).collect() };
        let (before, after) = (names(&old), names(&table));
        let changes = KeyChanges {
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
            changed: after
                .intersection(&before)
                .filter(|n| !kept.contains(*n))
                .cloned()
                .collect(),
            project_keys,
        };
        self.table.store(Arc::new(table));
        changes
    }

    /// Cancelled when a reload removes `project` or changes its project
    /// key.
    pub fn project_revoked(&self, project: &str) -> Option<CancellationToken> {
        self.table.load().project_tokens.get(project).cloned()
    }

    /// Whether `ip` may deliver to `project`'s webhook: 429 once its
    /// deliveries there have failed too often.
    pub fn hook_allowed(&self, ip: IpAddr, project: &str) -> Result<(), ApiError> {
        self.brake.check_in(ip, project)
    }

    /// A delivery from `ip` to `project`'s webhook was not proven.
    pub fn hook_failed(&self, ip: IpAddr, project: &str) {
        // Never `""`: that is the API's own count.
        self.brake.fail_in(ip, project);
    }

    /// Whether `ip` may try to authenticate to the API now: 429 once its
    /// tries have failed too often.
    pub fn allowed(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.brake.check(ip)
    }

    /// Identify the caller of a request from `ip` with `headers`.
    pub fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, ApiError> {
        self.brake.check(ip)?;
        let table = self.table.load();
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
        for key in &table.keys {
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
            revoked: key.revoked.clone(),
        })
    }

    /// Check that `caller` may reach `project`: in its key's scope (403
    /// otherwise, whether it exists or not), then known and, when it has a
    /// key of its own, with that key. A project whose key is missing or
    /// wrong answers exactly as one that does not exist, and a presented
    /// `X-Project-Key` counts against the brake in both cases: no key can
    /// probe which projects exist.
    pub fn project(&self, caller: &Caller, project: &str) -> Result<(), ApiError> {
        if !caller.projects.allows(project) {
            return Err(ApiError::forbidden(format!(
                "key `{}` may not reach project `{project}`",
                caller.name
            )));
        }
        let table = self.table.load();
        let known = table.projects.contains(project);
        if known && table.project_key_matches(caller, project) {
            return Ok(());
        }
        if caller.project_key.is_some() {
            self.brake.fail(caller.ip);
        }
        Err(ApiError::not_found(format!(
            "no project `{project}` (a project with a key of its own also needs it in `X-Project-Key`)"
        )))
    }

    /// Whether `caller` may see `project` in a listing, silently.
    pub fn sees(&self, caller: &Caller, project: &str) -> bool {
        caller.projects.allows(project) && self.table.load().project_key_matches(caller, project)
    }
}

impl KeyTable {
    fn new(config: &Config) -> Self {
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
                    revoked: CancellationToken::new(),
                })
                .collect(),
            projects: config.projects.keys().cloned().collect(),
            project_keys: config
                .projects
                .iter()
                .filter_map(|(name, p)| p.key_hash.map(|h| (name.clone(), h)))
                .collect(),
            project_tokens: config
                .projects
                .keys()
                .map(|name| (name.clone(), CancellationToken::new()))
                .collect(),
        }
    }

    fn project_key_matches(&self, caller: &Caller, project: &str) -> bool {
        match (self.project_keys.get(project), caller.project_key) {
            (None, _) => true,
            (Some(want), Some(got)) => bool::from(want.0.ct_eq(&got)),
            (Some(_), None) => false,
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

    /// Check `action` is among the key's actions (any role: reading about
    /// an action is scoped as running it is).
    pub fn scoped_to(&self, action: &str) -> Result<(), ApiError> {
        if self.actions.allows(action) {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "key `{}` does not reach the action `{action}`",
            self.name
        )))
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }

    /// Whether the caller's key reaches every project.
    pub fn reaches_all(&self) -> bool {
        self.projects == Scope::All
    }

    /// Cancelled once a reload removes or changes the caller's key.
    pub fn revoked(&self) -> &CancellationToken {
        &self.revoked
    }

    /// The same caller for a dashboard session: revoked with its key, and
    /// apart from it when the session is signed out.
    pub fn for_session(&self) -> Caller {
        Caller {
            revoked: self.revoked.child_token(),
            ..self.clone()
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Read => "read",
        Role::Run => "run",
        Role::Admin => "admin",
    }
}

/// Failed authentications per source, in fixed windows. A source is an
/// IPv4 address or an IPv6 /64 (one host is commonly given a whole /64, so
/// a fresh address per guess must not buy a fresh budget), counted apart
/// for the API (`""`) and for each project's webhook: forges send from
/// shared addresses, so one tenant's misconfigured secret must not refuse
/// every other tenant's pushes, or the API. The map is a bounded LRU:
/// every operation is O(1) under the lock every request takes, and a flood
/// of sources forgets the stalest, not the memory.
struct Brake {
    limit: u32,
    window: Duration,
    failures: Mutex<LruCache<(IpAddr, String), (Instant, u32)>>,
}

impl Brake {
    fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.check_in(ip, "")
    }

    fn fail(&self, ip: IpAddr) {
        self.fail_in(ip, "");
    }

    fn check_in(&self, ip: IpAddr, scope: &str) -> Result<(), ApiError> {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.peek(&(source(ip), scope.to_string())) {
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

    fn fail_in(&self, ip: IpAddr, scope: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (source(ip), scope.to_string());
        let now = Instant::now();
        let (since, n) = match failures.remove(&key) {
            Some((since, n)) if since.elapsed() < self.window => (since, n + 1),
            _ => (now, 1),
        };
        // Back in as the most recent; a full map forgets its stalest.
        failures.insert(key, (since, n));
        if n == self.limit {
            tracing::warn!(%ip, scope, "too many failed authentications; refusing this address for a while");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn brake() -> Brake {
        Brake {
            limit: 2,
            window: Duration::from_secs(60),
            failures: Mutex::new(LruCache::new(BRAKE_MAX_SOURCES)),
        }
    }

    #[test]
    fn a_fresh_ipv6_address_per_guess_buys_no_fresh_budget() {
        let b = brake();
        b.fail("2001:db8:1:2::1".parse().expect("ip"));
        b.fail("2001:db8:1:2:ffff::9".parse().expect("ip"));
        assert!(b.check("2001:db8:1:2::77".parse().expect("ip")).is_err());
        assert!(b.check("2001:db8:1:3::1".parse().expect("ip")).is_ok());
        b.fail("10.0.0.1".parse().expect("ip"));
        b.fail("::ffff:10.0.0.1".parse().expect("ip"));
        assert!(b.check("10.0.0.1".parse().expect("ip")).is_err());
    }

    #[test]
    fn a_flood_of_sources_keeps_the_map_bounded() {
        let b = brake();
        let braked: IpAddr = "192.0.2.1".parse().expect("ip");
        b.fail(braked);
        b.fail(braked);
        for i in 0..BRAKE_MAX_SOURCES as u32 * 3 {
            b.fail(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)));
            if i % 1000 == 0 {
                // A source that keeps failing stays remembered.
                b.fail(braked);
            }
        }
        let failures = b.failures.lock().expect("lock");
        assert!(failures.len() <= BRAKE_MAX_SOURCES);
        drop(failures);
        assert!(b.check(braked).is_err());
    }
}
