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

use axum::http::{HeaderMap, Method, StatusCode, header};
use hashlink::LruCache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::super::auth::Caller;
use super::super::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "bosun_session";

/// How long a session lasts from its sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once; past this the least recently used is forgotten.
const MAX_SESSIONS: usize = 10_000;

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
            open: Mutex::new(LruCache::new(MAX_SESSIONS)),
        }
    }
}

impl Sessions {
    /// Open a session for `caller`: its cookie token, kept by the browser.
    pub fn open(&self, caller: &Caller) -> Result<String, ApiError> {
        let token = random_token()?;
        let session = Session {
            caller: caller.for_session(),
            csrf: random_token()?,
            expires: Instant::now() + SESSION_TTL,
        };
        self.lock().insert(digest(&token), session);
        Ok(token)
    }

    /// The live session of `token`: none once it expired, was signed out,
    /// or its key was revoked.
    pub fn find(&self, token: &str) -> Option<Session> {
        let mut open = self.lock();
        let id = digest(token);
        let session = open.get(&id)?.clone();
        if session.expires <= Instant::now() || session.caller.revoked().is_cancelled() {
            open.remove(&id);
            return None;
        }
        Some(session)
    }

    /// Sign out: the session ends, and so does every stream it holds.
    pub fn close(&self, token: &str) {
        if let Some(session) = self.lock().remove(&digest(token)) {
            session.caller.revoked().cancel();
        }
    }

    /// The caller of a request made with the session cookie `token`: 401
    /// when the session is gone, 403 when a state-changing request lacks
    /// its CSRF token or comes from another site.
    pub fn caller(
        &self,
        token: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Caller, ApiError> {
        let session = self.find(token).ok_or_else(|| {
            ApiError::unauthorized(
                "unauthorized",
                "the session has ended; sign in again (or send `Authorization: Bearer <key>`)",
            )
        })?;
        if !is_safe(method) {
            let sent = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            session.check(sent, headers)?;
        }
        Ok(session.caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<[u8; 32], Session>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Session {
    /// Check a state-changing request: `sent` must be the session's CSRF
    /// token, and the request must come from this origin.
    pub fn check(&self, sent: &str, headers: &HeaderMap) -> Result<(), ApiError> {
        same_origin(headers)?;
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

/// Refuse a request that says it comes from another site: a
/// `Sec-Fetch-Site` other than `same-origin`, or an `Origin` that is not
/// this host. A request saying neither (an old browser, a script) is left
/// to the CSRF token. Either scheme names this host: behind a proxy that
/// ends TLS, bosun hears `http` where the browser says `https`.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// The value of the session cookie in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The `Set-Cookie` value that gives the browser `token`, or (empty) that
/// makes it forget the session.
pub fn set_cookie(token: &str, tls: bool) -> String {
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
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
        let here = [("host", "127.0.0.1:8750")];
        assert!(same_origin(&headers(&here)).is_ok());
        let ok = [
            ("host", "127.0.0.1:8750"),
            ("origin", "http://127.0.0.1:8750"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(same_origin(&headers(&ok)).is_ok());
        let proxied = [
            ("host", "bosun.example"),
            ("origin", "https://bosun.example"),
        ];
        assert!(same_origin(&headers(&proxied)).is_ok());
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
            let err = same_origin(&headers(&bad)).expect_err("refused");
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; bosun_session=abc; b=2")]);
        assert_eq!(cookie(&h), Some("abc"));
        assert_eq!(cookie(&headers(&[("cookie", "bosun_session=")])), None);
        assert_eq!(cookie(&headers(&[("cookie", "xbosun_session=1")])), None);
        assert!(set_cookie("t", true).contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie("t", true).ends_with("; Secure"));
        assert!(set_cookie("", false).contains("Max-Age=0"));
    }
}
