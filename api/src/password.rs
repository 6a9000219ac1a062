//! Password changes: the request and the rules a new password must meet (shared by hostd, the
//! CLI and the UI, so they refuse the same passwords with the same words).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

/// Shortest password accepted.
pub const PASSWORD_MIN: usize = 8;
/// Longest password accepted (the login endpoint reads at most 4 KiB).
pub const PASSWORD_MAX: usize = 1024;

/// `PUT /api/v1/access/password`: a user changes their own password (giving the current one);
/// root sets another user's.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Whose password; the caller's own when absent.
    #[serde(default)]
    pub userid: Option<String>,
    /// The new password.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// The caller's current password: required to change one's own password.
    #[serde(default)]
    pub old_password: Option<String>,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange")
            .field("userid", &self.userid)
            .field("password", &"<redacted>")
            .field(
                "old_password",
                &self.old_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A new password: at least [`PASSWORD_MIN`] and at most [`PASSWORD_MAX`] characters, no
/// control characters (they cannot be typed reliably at a login prompt).
pub fn validate_password(field: &str, pw: &str) -> Result<(), FieldError> {
    let n = pw.chars().count();
    if n < PASSWORD_MIN {
        return Err(FieldError::new(
            field,
            format!("a password needs at least {PASSWORD_MIN} characters (this one has {n})"),
        ));
    }
    if n > PASSWORD_MAX {
        return Err(FieldError::new(
            field,
            format!("a password has at most {PASSWORD_MAX} characters (this one has {n})"),
        ));
    }
    if pw.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "a password cannot contain control characters (newline, tab, …)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules_and_messages() {
        assert_eq!(validate_password("password", "correct horse"), Ok(()));
        assert_eq!(validate_password("password", "çà-été-ok"), Ok(()));
        assert_eq!(
            validate_password("password", "short"),
            Err(FieldError::new(
                "password",
                "a password needs at least 8 characters (this one has 5)"
            ))
        );
        let long = "x".repeat(PASSWORD_MAX + 1);
        assert_eq!(
            validate_password("password", &long),
            Err(FieldError::new(
                "password",
                "a password has at most 1024 characters (this one has 1025)"
            ))
        );
        assert!(validate_password("password", "line one\nline two").is_err());
    }

    #[test]
    fn debug_redacts_passwords() {
        let c = PasswordChange {
            userid: Some("alice".into()),
            password: "new-secret".into(),
            old_password: Some("old-secret".into()),
        };
        let d = format!("{c:?}");
        assert!(!d.contains("secret"), "{d}");
    }
}
