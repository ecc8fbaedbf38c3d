//! Requests that stay open: a `?wait` that holds its answer back, a log
//! followed with `follow`, a body still arriving. Each holds a socket and a
//! task for minutes (a body up to `read_timeout`), and
//! a streamed one no longer counts against `max_concurrent_requests` once
//! its headers are out, so they have limits of their own: at most
//! `max_long_requests` over every key, and `max_long_requests_per_key` per
//! key, so one tenant saturating its share gets 429 while others are still
//! served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;

use tokio_util::sync::CancellationToken;

use super::auth::Caller;
use super::error::ApiError;
use crate::config::ServerConfig;

/// Long requests open now, overall and per key.
pub struct LongRequests {
    total: usize,
    per_key: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_key: HashMap<String, usize>,
}

/// One long request; its place is given back on drop.
pub struct Held {
    owner: Arc<LongRequests>,
    key: String,
    revoked: CancellationToken,
    project: Option<CancellationToken>,
}

impl Held {
    /// On `project`: it also ends when a reload removes the project or
    /// changes its project key.
    pub fn on(mut self, project: Option<CancellationToken>) -> Self {
        self.project = project;
        self
    }

    /// Whether a reload has revoked the key holding this place, or the
    /// project it is on.
    pub fn is_revoked(&self) -> bool {
        self.revoked.is_cancelled() || self.project.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// Resolves once a reload revokes the key holding this place, or the
    /// project it is on: a wait or a stream then ends.
    pub fn revoked(&self) -> impl Future<Output = ()> + Send + 'static {
        let key = self.revoked.clone();
        let project = self.project.clone().unwrap_or_default();
        async move {
            tokio::select! {
                () = key.cancelled() => {}
                () = project.cancelled() => {}
            }
        }
    }
}

impl LongRequests {
    /// The limits of `server`.
    pub fn new(server: &ServerConfig) -> Arc<Self> {
        Arc::new(Self {
            total: server.max_long_requests,
            per_key: server.max_long_requests_per_key,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for a long request of `caller`'s key, or the reason there
    /// is none.
    pub fn hold(self: &Arc<Self>, caller: &Caller) -> Result<Held, ApiError> {
        self.hold_for(&caller.name, caller.revoked().clone())
    }

    fn hold_for(self: &Arc<Self>, key: &str, revoked: CancellationToken) -> Result<Held, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.per_key.get(key).copied().unwrap_or(0);
        if mine >= self.per_key {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_long_requests",
                format!(
                    "key `{key}` already has {mine} requests waiting or streaming; \
                     close one or try again shortly"
                ),
            )
            .retry_after(1));
        }
        if open.total >= self.total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server has too many requests waiting or streaming; try again shortly",
            )
            .retry_after(1));
        }
        open.total += 1;
        *open.per_key.entry(key.to_string()).or_insert(0) += 1;
        Ok(Held {
            owner: self.clone(),
            key: key.to_string(),
            revoked,
            project: None,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        super::count_down(&mut open.per_key, &self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_at_its_share_is_refused_while_others_are_served() {
        let limits = LongRequests::new(&ServerConfig {
            max_long_requests: 3,
            max_long_requests_per_key: 2,
            ..ServerConfig::default()
        });
        let hold = |key: &str| limits.hold_for(key, CancellationToken::new());
        let a1 = hold("a").expect("a1");
        let _a2 = hold("a").expect("a2");
        let Err(a3) = hold("a") else {
            panic!("a is at its share")
        };
        assert_eq!(a3.status(), StatusCode::TOO_MANY_REQUESTS);
        let _b1 = hold("b").expect("b is served");
        let Err(b2) = hold("b") else {
            panic!("the server is full")
        };
        assert_eq!(b2.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        hold("b").expect("a place was given back");
    }
}
