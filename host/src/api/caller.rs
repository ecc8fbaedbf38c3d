//! Who a request's caller is: the key of its `Authorization: Bearer`, or,
//! without one, the key behind its dashboard session's cookie. Both end in
//! the same [`Caller`], so every handler checks one thing whichever way
//! the caller came.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use super::auth::Caller;
use super::dashboard;
use super::error::ApiError;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        // A bearer key wins; without one, a dashboard session's cookie.
        let bearer = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION);
        if let Some(token) = dashboard::token(state, &parts.headers).filter(|_| !bearer) {
            state.auth.allowed(ip)?;
            return state
                .sessions
                .caller(token, &parts.method, &parts.uri, &parts.headers);
        }
        state.auth.authenticate(&parts.headers, ip)
    }
}
