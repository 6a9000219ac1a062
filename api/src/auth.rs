//! Login, sessions and API tokens.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Name of the session cookie.
pub const TICKET_COOKIE: &str = "KeelAuthCookie";
/// Header that must carry the session's CSRF token on mutating requests.
pub const CSRF_HEADER: &str = "CSRFPreventionToken";
/// Scheme of the `Authorization` header for API tokens: `KeelAPIToken user!tokenid=secret`.
pub const TOKEN_SCHEME: &str = "KeelAPIToken";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub username: String,
    /// Also set as the `KeelAuthCookie` cookie (HttpOnly, Secure, SameSite=Strict).
    pub ticket: String,
    /// Send back as the `CSRFPreventionToken` header on POST/PUT/DELETE.
    pub csrf_token: String,
    /// Unix seconds.
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Token id: letters, digits, `-`, `_`.
    pub tokenid: String,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// `user!tokenid`
    pub full_tokenid: String,
    /// Shown once; only a hash is stored.
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub full_tokenid: String,
    pub comment: Option<String>,
    pub created: i64,
}
