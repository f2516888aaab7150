//! The web player's access rule: on a loopback address anyone on the machine may look (like any local
//! file viewer); bound anywhere else, every request carries the bearer token — `Authorization: Bearer T`,
//! or the `auditrail_token` cookie a browser gets from opening `/?token=T` once. Tokens are compared in
//! constant time ([`Secret::matches`]) and never logged.

use std::sync::Arc;

use auditrail_core::Secret;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie a browser keeps the token in.
pub const COOKIE: &str = "auditrail_token";

/// The token from `--token-file` (trimmed); refused when empty.
pub fn load_token(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let t = text.trim();
    if t.len() < 16 {
        return Err(format!(
            "the token in {} is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b";,\\\"".contains(&b))
    {
        return Err(format!(
            "the token in {} has characters a cookie cannot carry (space, `;`, `,`, `\\`, `\"`, non-ASCII)",
            path.display()
        ));
    }
    Ok(Secret::new(t))
}

fn presented(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in headers.get_all(header::AUTHORIZATION) {
        if let Some(t) = v.as_bytes().strip_prefix(b"Bearer ") {
            out.push(t.to_vec());
        }
    }
    for v in headers.get_all(header::COOKIE) {
        for part in v.as_bytes().split(|&b| b == b';') {
            let part = part.trim_ascii();
            if let Some(t) = part.strip_prefix(format!("{COOKIE}=").as_bytes()) {
                out.push(t.to_vec());
            }
        }
    }
    out
}

/// Lets a request through when no token is set or it carries the right one; `/?token=T` with the right
/// token sets the cookie and redirects to `/` (so the token leaves the address bar); anything else is 401.
pub async fn check(State(token): State<Arc<Option<Secret>>>, req: Request, next: Next) -> Response {
    let Some(token) = token.as_ref() else {
        return next.run(req).await;
    };
    if presented(req.headers()).iter().any(|t| token.matches(t)) {
        return next.run(req).await;
    }
    let query_token = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(|t| t.as_bytes().to_vec())
    });
    if let Some(t) = query_token {
        if token.matches(&t) {
            return (
                StatusCode::SEE_OTHER,
                [
                    (
                        header::SET_COOKIE,
                        format!(
                            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                            token.expose()
                        ),
                    ),
                    (header::LOCATION, "/".to_string()),
                ],
            )
                .into_response();
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "401: this player needs its bearer token (Authorization: Bearer T, or open /?token=T once)\n",
    )
        .into_response()
}
