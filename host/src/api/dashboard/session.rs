//! Dashboard sessions: an API key exchanged once for a cookie.
//!
//! - The key is sent once, to `POST /ui/signin`, and never reaches the
//!   browser's storage: the browser keeps only a random session token in an
//!   `HttpOnly`, `SameSite=Strict` cookie (`Secure` under TLS).
//! - Sessions live in the server's memory, by the SHA-256 of their token,
//!   for [`SESSION_TTL`]; at most [`MAX_SESSIONS`], the least recently used
//!   forgotten first. A restart or an upgrade in place signs everyone out,
//!   which costs a sign-in and keeps no bearer of a key's rights on disk.
//! - A session acts as its key's [`Caller`], so it sees exactly what the
//!   key's scope and role allow: every page and every API call goes through
//!   the same checks as a bearer request. Its caller's `revoked` token is a
//!   child of the key's: a reload that revokes the key, or a sign-out, ends
//!   the session and every stream it holds open.
//! - A state-changing request made with the cookie must carry the
//!   session's CSRF token (`X-CSRF-Token`, or the `csrf` field of a form)
//!   and, when the browser says where it comes from, come from this very
//!   origin (`Sec-Fetch-Site: same-origin`, `Origin` naming this host).
//!   `SameSite=Strict` already keeps the cookie off cross-site requests;
//!   the token and the origin check hold where it does not (older browsers,
//!   a sibling subdomain).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use hashlink::LruCache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::super::auth::Caller;
use super::super::error::ApiError;

/// The session cookie's name over plain HTTP.
const COOKIE: &str = "bosun_session";

/// Its name under TLS: a `__Host-` cookie is `Secure`, has `Path=/` and no
/// `Domain`, so a sibling subdomain cannot plant one (which would sign the
/// operator into the planter's session).
const HOST_COOKIE: &str = "__Host-bosun_session";

/// How long a session lasts from its sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once; past this the least recently used is ended.
const MAX_SESSIONS: usize = 10_000;

/// Sessions one key may hold; a sign-in past this ends the key's oldest,
/// so no key can push another key's sessions out.
const MAX_SESSIONS_PER_KEY: usize = 8;

/// The header a script sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Every open session.
pub struct Sessions {
    open: Mutex<LruCache<[u8; 32], Session>>,
}

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// Who it acts as.
    pub caller: Caller,
    /// The token its state-changing requests must carry.
    pub csrf: String,
    expires: Instant,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            // Evicted by hand in `open`, so each eviction ends its streams.
            open: Mutex::new(LruCache::new_unbounded()),
        }
    }
}

impl Sessions {
    /// Open a session for `caller`: its cookie token, kept by the browser.
    /// It ends by itself after [`SESSION_TTL`], streams included.
    pub fn open(&self, caller: &Caller) -> Result<String, ApiError> {
        let token = random_token()?;
        let session = Session {
            caller: caller.for_session(),
            csrf: random_token()?,
            expires: Instant::now() + SESSION_TTL,
        };
        let ends = session.caller.revoked().clone();
        {
            let mut open = self.lock();
            let of_key: Vec<[u8; 32]> = open
                .iter()
                .filter(|(_, s)| s.caller.name == caller.name)
                .map(|(id, _)| *id)
                .collect();
            // Oldest use first: the key's least recently used go.
            let over = (of_key.len() + 1).saturating_sub(MAX_SESSIONS_PER_KEY);
            for id in of_key.iter().take(over) {
                end(open.remove(id));
            }
            while open.len() >= MAX_SESSIONS {
                end(open.remove_lru().map(|(_, s)| s));
            }
            open.insert(digest(&token), session);
        }
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(SESSION_TTL) => ends.cancel(),
                () = ends.cancelled() => {}
            }
        });
        Ok(token)
    }

    /// The live session of `token`: none once it expired, was signed out,
    /// or its key was revoked.
    pub fn find(&self, token: &str) -> Option<Session> {
        let mut open = self.lock();
        let id = digest(token);
        let session = open.get(&id)?.clone();
        if session.expires <= Instant::now() || session.caller.revoked().is_cancelled() {
            end(open.remove(&id));
            return None;
        }
        Some(session)
    }

    /// Sign out: the session ends, and so does every stream it holds.
    pub fn close(&self, token: &str) {
        end(self.lock().remove(&digest(token)));
    }

    /// The caller of a request made with the session cookie `token`: 401
    /// when the session is gone; 403 when the browser says another site
    /// made the request (of any method: a sibling subdomain's `<img>` must
    /// not hold the key's streams), or a state-changing request lacks the
    /// CSRF token or a same-origin `Origin`.
    pub fn caller(
        &self,
        token: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        let session = self.find(token).ok_or_else(|| {
            ApiError::unauthorized(
                "unauthorized",
                "the session has ended; sign in again (or send `Authorization: Bearer <key>`)",
            )
        })?;
        if from_elsewhere(headers) {
            return Err(csrf_refused(
                "a request from another site is refused for a session",
            ));
        }
        if !is_safe(method) {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            session.check(sent, uri, headers)?;
        }
        Ok(session.caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// End a session taken out of the map: its streams end with it.
fn end(session: Option<Session>) {
    if let Some(s) = session {
        s.caller.revoked().cancel();
    }
}

impl Session {
    /// Check a state-changing request: `sent` must be the session's CSRF
    /// token, and the request must come from this origin.
    pub fn check(&self, sent: &str, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        same_origin(uri, headers)?;
        if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Err(csrf_refused(
                "a state-changing request with a session needs its CSRF token",
            ));
        }
        Ok(())
    }
}

/// Methods that change nothing, so need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the browser says another site (a sibling subdomain included)
/// made the request: `Sec-Fetch-Site` other than `same-origin` or `none`
/// (typed in the address bar).
pub fn from_elsewhere(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| !matches!(site.as_bytes(), b"same-origin" | b"none"))
}

/// Refuse a request that says it comes from another site: a
/// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` that is not
/// this host (the `Host` header, or the authority of an HTTP/2 request,
/// which has none). A request saying neither (an old browser, a script)
/// is left to the CSRF token. Either scheme names this host: behind a
/// proxy that ends TLS, bosun hears `http` where the browser says `https`.
pub fn same_origin(uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() != b"same-origin")
    {
        return Err(csrf_refused("a cross-site request is refused"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let named = origin.to_str().ok().and_then(|o| {
            o.strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
        });
        if host.is_empty() || named != Some(host) {
            return Err(csrf_refused("a request from another origin is refused"));
        }
    }
    Ok(())
}

fn csrf_refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "csrf", message)
}

/// The session token in `headers`, if any: the `__Host-` cookie, or, when
/// bosun does not serve TLS itself, the plain one. A name sent twice (one
/// planted beside the real one) counts as none.
pub fn cookie(headers: &HeaderMap, tls: bool) -> Option<&str> {
    let named = |name: &str| {
        let mut found = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(move |(n, _)| *n == name)
            .map(|(_, value)| value);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    };
    let any = |name: &str| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(';')
                    .any(|p| p.trim().starts_with(&format!("{name}=")))
            })
    };
    let token = if any(HOST_COOKIE) || tls {
        named(HOST_COOKIE)
    } else {
        named(COOKIE)
    };
    token.filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that gives the browser `token`, or (empty) that
/// makes it forget the session; `secure` when the browser came over TLS.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    let (name, flag) = if secure {
        (HOST_COOKIE, "; Secure")
    } else {
        (COOKIE, "")
    };
    format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flag}")
}

fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(hex::encode(bytes))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    #[test]
    fn only_this_origin_passes() {
        let uri = Uri::from_static("/ui/signin");
        let here = [("host", "127.0.0.1:8750")];
        assert!(same_origin(&uri, &headers(&here)).is_ok());
        let ok = [
            ("host", "127.0.0.1:8750"),
            ("origin", "http://127.0.0.1:8750"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(same_origin(&uri, &headers(&ok)).is_ok());
        let proxied = [
            ("host", "bosun.example"),
            ("origin", "https://bosun.example"),
        ];
        assert!(same_origin(&uri, &headers(&proxied)).is_ok());
        // HTTP/2 has no Host: the request's authority names this host.
        let h2 = Uri::from_static("https://bosun.example/v1/jobs");
        let origin_only = [("origin", "https://bosun.example")];
        assert!(same_origin(&h2, &headers(&origin_only)).is_ok());
        assert!(same_origin(&uri, &headers(&origin_only)).is_err());
        for bad in [
            [
                ("origin", "http://127.0.0.1:8750.evil"),
                ("host", "127.0.0.1:8750"),
            ],
            [
                ("origin", "ftp://127.0.0.1:8750"),
                ("host", "127.0.0.1:8750"),
            ],
            [
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8750"),
            ],
            [("sec-fetch-site", "cross-site"), ("host", "127.0.0.1:8750")],
            [("sec-fetch-site", "same-site"), ("host", "127.0.0.1:8750")],
            [("origin", "null"), ("host", "127.0.0.1:8750")],
        ] {
            let err = same_origin(&uri, &headers(&bad)).expect_err("refused");
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
        assert!(from_elsewhere(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!from_elsewhere(&headers(&[("sec-fetch-site", "none")])));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_a_planted_twin_voids_it() {
        let h = headers(&[("cookie", "a=1; bosun_session=abc; b=2")]);
        assert_eq!(cookie(&h, false), Some("abc"));
        assert_eq!(cookie(&h, true), None, "under TLS only the __Host- cookie");
        let both = headers(&[("cookie", "bosun_session=planted; __Host-bosun_session=real")]);
        assert_eq!(cookie(&both, false), Some("real"));
        let twins = headers(&[
            ("cookie", "__Host-bosun_session=planted"),
            ("cookie", "__Host-bosun_session=real"),
        ]);
        assert_eq!(cookie(&twins, true), None);
        let plain_twins = headers(&[("cookie", "bosun_session=planted; bosun_session=real")]);
        assert_eq!(cookie(&plain_twins, false), None);
        assert_eq!(
            cookie(&headers(&[("cookie", "bosun_session=")]), false),
            None
        );
        assert_eq!(
            cookie(&headers(&[("cookie", "xbosun_session=1")]), false),
            None
        );
        assert!(
            set_cookie("t", true)
                .starts_with("__Host-bosun_session=t; Path=/; HttpOnly; SameSite=Strict")
        );
        assert!(set_cookie("t", true).ends_with("; Secure"));
        assert!(set_cookie("t", false).starts_with("bosun_session=t;"));
        assert!(set_cookie("", false).contains("Max-Age=0"));
    }
}
