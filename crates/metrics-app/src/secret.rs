//! The admin password: from the environment or a mounted file (re-read when the file changes,
//! so a rotated Kubernetes Secret takes effect without a restart), compared in constant time,
//! and impossible to print by accident (secrecy's `SecretString` shows `[REDACTED]`).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Why no password could be loaded. Messages never contain the secret itself.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Neither source is configured.
    #[error(
        "no admin password: set PASSWORD, or PASSWORD_FILE / --password-file to the path of a file holding it"
    )]
    NotConfigured,
    /// Both sources are configured, so which one is meant is unclear.
    #[error(
        "both PASSWORD and a password file (--password-file / PASSWORD_FILE) are set: set only one"
    )]
    Conflict,
    /// The file (path, I/O error) could not be read.
    #[error("cannot read the password file {0}: {1}")]
    Unreadable(String, #[source] std::io::Error),
    /// The source is configured but empty.
    #[error("the admin password from {0} is empty")]
    Empty(&'static str),
}

/// Loads the password from `PASSWORD` (`env_value`) or from a password file; both at once is
/// an error, as neither would obviously win.
pub fn load_password(
    env_value: Option<String>,
    file: Option<&Path>,
) -> Result<Password, PasswordError> {
    match (env_value, file) {
        (Some(_), Some(_)) => Err(PasswordError::Conflict),
        (Some(value), None) if value.is_empty() => Err(PasswordError::Empty("PASSWORD")),
        (Some(value), None) => Ok(Password::fixed(SecretString::from(value))),
        (None, Some(path)) => Ok(Password {
            file: Some(path.into()),
            current: Arc::new(Mutex::new(read_file(path)?)),
        }),
        (None, None) => Err(PasswordError::NotConfigured),
    }
}

/// The admin password as configured: a fixed value, or the content of a file that is read
/// again at each check (the kubelet replaces a mounted Secret's file when the Secret is
/// rotated). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Password {
    /// The password file; `None` for a fixed password.
    file: Option<Arc<Path>>,
    /// The password in force: the last one read successfully.
    current: Arc<Mutex<SecretString>>,
}

impl Password {
    /// A password that never changes.
    pub fn fixed(secret: SecretString) -> Self {
        Self {
            file: None,
            current: Arc::new(Mutex::new(secret)),
        }
    }

    /// Compares `candidate` with the current password in constant time. A password file is
    /// read again first (admin requests are rare and rate limited); if it cannot be read now,
    /// the last good password stays in force.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = &self.file {
            match read_file(path) {
                Ok(read) if read.expose_secret() != current.expose_secret() => {
                    tracing::info!(path = %path.display(), "the password file changed: the new password is in force");
                    *current = read;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "keeping the previous admin password"),
            }
        }
        // Lengths are not secret enough to matter here, and ct_eq needs equal lengths.
        current.expose_secret().as_bytes().ct_eq(candidate).into()
    }
}

fn read_file(path: &Path) -> Result<SecretString, PasswordError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|error| PasswordError::Unreadable(path.display().to_string(), error))?;
    // Secrets written with `echo` or by editors end with a newline that is not part of them.
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(PasswordError::Empty("PASSWORD_FILE"));
    }
    Ok(SecretString::from(value.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let password = Password::fixed("MYPASSWORD".into());
        assert!(
            !format!("{password:?}").contains("MYPASSWORD"),
            "{password:?}"
        );
    }

    #[test]
    fn comparison_accepts_only_the_exact_value() {
        let password = Password::fixed("MYPASSWORD".into());
        assert!(password.matches(b"MYPASSWORD"));
        assert!(!password.matches(b"MYPASSWORd"));
        assert!(!password.matches(b"MYPASSWORDX"));
        assert!(!password.matches(b""));
    }

    #[test]
    fn the_file_has_its_trailing_newline_trimmed_and_both_sources_at_once_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "from-file\n").unwrap();
        let password = load_password(None, Some(&path)).unwrap();
        assert!(password.matches(b"from-file"));
        assert!(!password.matches(b"from-file\n"));
        let err = load_password(Some("from-env".into()), Some(&path)).unwrap_err();
        assert!(matches!(err, PasswordError::Conflict), "{err}");
        assert!(
            load_password(Some("from-env".into()), None)
                .unwrap()
                .matches(b"from-env")
        );
    }

    #[test]
    fn a_rotated_password_file_is_picked_up_and_a_vanished_one_keeps_the_last_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "old").unwrap();
        let password = load_password(None, Some(&path)).unwrap();
        assert!(password.matches(b"old"));
        // As the kubelet does: a new file moved into place (new inode, maybe same mtime).
        let next = dir.path().join("password.new");
        std::fs::write(&next, "new-secret").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(password.matches(b"new-secret"));
        assert!(!password.matches(b"old"));
        std::fs::remove_file(&path).unwrap();
        assert!(password.matches(b"new-secret"));
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
