//! Where secret files come from: an absolute path, or a bare name looked up as a systemd
//! credential, `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`). Secrets never sit in the
//! config text; the config only says where to read them.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretPathError {
    #[error("not an absolute path nor a credential name")]
    NotAPathOrName,
    #[error("CREDENTIALS_DIRECTORY is not set")]
    NoCredentialsDirectory,
}

/// Checks the form of a secret file setting without reading anything.
pub fn check(value: &str) -> Result<(), SecretPathError> {
    let path = Path::new(value);
    // systemd credential names are single path components.
    let bare = !value.is_empty() && !value.contains('/') && value != "." && value != "..";
    if path.is_absolute() || bare {
        Ok(())
    } else {
        Err(SecretPathError::NotAPathOrName)
    }
}

/// The file a secret setting names; `credentials_dir` is `$CREDENTIALS_DIRECTORY`, passed in
/// for testability (see `credentials_dir`).
pub fn resolve(value: &str, credentials_dir: Option<&Path>) -> Result<PathBuf, SecretPathError> {
    check(value)?;
    let path = Path::new(value);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    credentials_dir
        .map(|d| d.join(value))
        .ok_or(SecretPathError::NoCredentialsDirectory)
}

/// `$CREDENTIALS_DIRECTORY` of this process, if systemd set one.
pub fn credentials_dir() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_and_credential_names_resolve() {
        let creds = Path::new("/run/credentials/calltrackd.service");
        assert_eq!(
            resolve("/etc/calltrackd/tls/key.pem", None).unwrap(),
            Path::new("/etc/calltrackd/tls/key.pem")
        );
        assert_eq!(
            resolve("sip-key.pem", Some(creds)).unwrap(),
            creds.join("sip-key.pem")
        );
        assert_eq!(
            resolve("sip-key.pem", None),
            Err(SecretPathError::NoCredentialsDirectory)
        );
        for bad in ["", ".", "..", "tls/key.pem", "../key"] {
            assert_eq!(check(bad), Err(SecretPathError::NotAPathOrName), "{bad}");
        }
    }
}
