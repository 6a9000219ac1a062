//! hostd's error type: every failure says what failed and maps to one HTTP status.

use keel_api::FieldError;

use crate::hv::HvError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Validation(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Hypervisor(HvError),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Internal(String),
    /// A service this request needs is down or holding writes (the config store): 503.
    #[error("{0}")]
    Unavailable(String),
    /// A request body over the endpoint's limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// Too many attempts (failed logins from one address): 429 with `Retry-After`.
    #[error("{message}")]
    Throttled { message: String, retry_after_s: u64 },
    /// Too much work queued already (password hashing): 503 with `Retry-After`.
    #[error("{message}")]
    Busy { message: String, retry_after_s: u64 },
}

impl From<HvError> for Error {
    fn from(e: HvError) -> Self {
        match e {
            HvError::NotFound(m) => Error::NotFound(m),
            HvError::Conflict(m) => Error::Conflict(m),
            HvError::Refused(m) => Error::BadRequest(m),
            other => Error::Hypervisor(other),
        }
    }
}

impl From<crate::domain::DomainError> for Error {
    fn from(e: crate::domain::DomainError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<clusterd::store::StoreError> for Error {
    fn from(e: clusterd::store::StoreError) -> Self {
        use clusterd::store::StoreError as S;
        match e {
            S::NotQuorate | S::Syncing | S::Conflict { .. } => Error::Conflict(e.to_string()),
            S::NotFound { .. } => Error::NotFound(e.to_string()),
            S::Invalid { field, message } => Error::validation(&field, message),
            S::Unavailable { .. } => Error::Unavailable(e.to_string()),
        }
    }
}

impl Error {
    pub fn validation(field: &str, msg: impl Into<String>) -> Self {
        Error::Validation(FieldError::new(field, msg))
    }

    /// Seconds a client should wait before retrying (the `Retry-After` header), if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Throttled { retry_after_s, .. } | Error::Busy { retry_after_s, .. } => {
                Some(*retry_after_s)
            }
            _ => None,
        }
    }

    /// (HTTP status, stable code)
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Error::Validation(_) => (400, "validation"),
            Error::BadRequest(_) => (400, "bad_request"),
            Error::NotFound(_) => (404, "not_found"),
            Error::Conflict(_) => (409, "conflict"),
            Error::Unauthorized(_) => (401, "unauthorized"),
            Error::Forbidden(_) => (403, "forbidden"),
            Error::Hypervisor(_) => (502, "hypervisor"),
            Error::Unavailable(_) => (503, "unavailable"),
            Error::TooLarge(_) => (413, "too_large"),
            Error::Throttled { .. } => (429, "throttled"),
            Error::Busy { .. } => (503, "busy"),
            Error::Db(_) | Error::Io(_) | Error::Internal(_) => (500, "internal"),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
