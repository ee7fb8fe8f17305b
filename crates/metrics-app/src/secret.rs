//! The admin password: from the environment or a mounted file (re-read when the file changes,
//! so a rotated Kubernetes Secret takes effect without a restart), compared in constant time,
//! and impossible to print by accident.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
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
    /// Both sources are configured, so which one is meant is unclear.
    #[error(
        "both PASSWORD and a password file (--password-file / PASSWORD_FILE) are set: set only one"
    )]
    Conflict,
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

/// Loads the password from `PASSWORD` (`env_value`) or from a password file; both at once is
/// an error, as neither would obviously win.
pub fn load_password(
    env_value: Option<String>,
    file: Option<&Path>,
) -> Result<Password, PasswordError> {
    match (env_value, file) {
        (Some(_), Some(_)) => Err(PasswordError::Conflict),
        (Some(value), None) if value.is_empty() => Err(PasswordError::Empty("PASSWORD")),
        (Some(value), None) => Ok(Password::fixed(Secret::new(value))),
        (None, Some(path)) => {
            let loaded = read_file(path)?;
            Ok(Password(Arc::new(Source::File {
                path: path.to_path_buf(),
                current: Mutex::new(loaded),
            })))
        }
        (None, None) => Err(PasswordError::NotConfigured),
    }
}

/// The admin password as configured: a fixed value, or the content of a file that is read
/// again when it changes (the kubelet replaces a mounted Secret's file when the Secret is
/// rotated). Cheap to clone.
#[derive(Clone)]
pub struct Password(Arc<Source>);

enum Source {
    Fixed(Secret),
    File {
        path: PathBuf,
        current: Mutex<Loaded>,
    },
}

/// A password read from a file, with what identified the file's version when it was read.
struct Loaded {
    stamp: Option<Stamp>,
    secret: Secret,
}

/// Modification time, size and inode: the kubelet swaps a symlink to a new file on rotation,
/// so one of them changes even within one second.
type Stamp = (Option<SystemTime>, u64, u64);

impl Password {
    /// A password that never changes.
    pub fn fixed(secret: Secret) -> Self {
        Self(Arc::new(Source::Fixed(secret)))
    }

    /// Compares `candidate` with the current password in constant time. A password file is
    /// checked for changes first (a `stat` per admin request; admin requests are rare and rate
    /// limited); if it cannot be read now, the last good password stays in force.
    pub(crate) fn matches(&self, candidate: &[u8]) -> bool {
        match &*self.0 {
            Source::Fixed(secret) => secret.matches(candidate),
            Source::File { path, current } => {
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                if stamp(path) != current.stamp {
                    match read_file(path) {
                        Ok(loaded) => {
                            tracing::info!(path = %path.display(), "the password file changed: the new password is in force");
                            *current = loaded;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "keeping the previous admin password");
                        }
                    }
                }
                current.secret.matches(candidate)
            }
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok(), meta.len(), inode))
}

fn read_file(path: &Path) -> Result<Loaded, PasswordError> {
    let stamp = stamp(path);
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
    Ok(Loaded {
        stamp,
        secret: Secret::new(value.to_string()),
    })
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
