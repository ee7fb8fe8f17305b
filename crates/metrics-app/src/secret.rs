//! The admin password: loaded once from the environment or a mounted file, compared in
//! constant time, and impossible to print by accident.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;

/// A secret string. `Debug` and `Display` print `[redacted]`; the value is reachable only
/// through [`Secret::expose`], so a stray `{:?}` in a log line cannot leak it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret value; call sites are the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a candidate in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // Lengths are not secret enough to matter here, and ct_eq needs equal lengths.
        self.0.as_bytes().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why no password could be loaded. Messages never contain the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Neither source is configured.
    #[error(
        "no admin password: set PASSWORD, or PASSWORD_FILE / --password-file to the path of a file holding it"
    )]
    NotConfigured,
    /// The file could not be read.
    #[error("cannot read the password file {path}: {source}")]
    Unreadable {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The source is configured but empty.
    #[error("the admin password from {0} is empty")]
    Empty(&'static str),
}

/// Loads the password: `PASSWORD` (the env value) wins over a password file.
pub fn load_password(
    env_value: Option<String>,
    file: Option<&Path>,
) -> Result<Secret, PasswordError> {
    if let Some(value) = env_value {
        if value.is_empty() {
            return Err(PasswordError::Empty("PASSWORD"));
        }
        return Ok(Secret::new(value));
    }
    let Some(path) = file else {
        return Err(PasswordError::NotConfigured);
    };
    let raw = std::fs::read_to_string(path).map_err(|source| PasswordError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    // Secrets written with `echo` or by editors end with a newline that is not part of them.
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(PasswordError::Empty("PASSWORD_FILE"));
    }
    Ok(Secret::new(value.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("MYPASSWORD".into());
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn comparison_accepts_only_the_exact_value() {
        let s = Secret::new("MYPASSWORD".into());
        assert!(s.matches(b"MYPASSWORD"));
        assert!(!s.matches(b"MYPASSWORd"));
        assert!(!s.matches(b"MYPASSWORDX"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn env_wins_and_file_has_its_trailing_newline_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(
            load_password(None, Some(&path)).unwrap().expose(),
            "from-file"
        );
        assert_eq!(
            load_password(Some("from-env".into()), Some(&path))
                .unwrap()
                .expose(),
            "from-env"
        );
    }

    #[test]
    fn missing_empty_and_unreadable_sources_are_errors_naming_both_options() {
        let msg = load_password(None, None).unwrap_err().to_string();
        assert!(
            msg.contains("PASSWORD") && msg.contains("PASSWORD_FILE"),
            "{msg}"
        );
        assert!(load_password(Some(String::new()), None).is_err());
        let err = load_password(None, Some(Path::new("/nonexistent/pw"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pw"));
    }
}
