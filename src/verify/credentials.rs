//! Where `auditrail verify` takes the credentials of `--elasticsearch` from: the environment or a file, never
//! the command line, where `ps`, shell history and process accounting show them to every user of the host.
//!
//! - API key: `$AUDITRAIL_ES_API_KEY`, or `--es-api-key-file FILE`.
//! - Basic auth: the user in the URL (`http://elastic@host:9200`, not a secret), the password from
//!   `$AUDITRAIL_ES_PASSWORD` or `--es-password-file FILE`.
//!
//! `--es-api-key KEY` and a password in the URL (`http://user:pass@host`) are refused with a message saying what
//! to use instead. A file is refused when its group or others may read it (like the integrity secret key), when it
//! is empty, or larger than [`MAX_SECRET_FILE`]; one trailing newline is dropped. Secrets are kept in
//! [`Secret`], whose `Debug` never shows them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub use auditrail_sinks::elasticsearch::Secret;

/// Environment variable holding the API key.
pub const API_KEY_ENV: &str = "AUDITRAIL_ES_API_KEY";
/// Environment variable holding the password of the user named in the URL.
pub const PASSWORD_ENV: &str = "AUDITRAIL_ES_PASSWORD";
/// The largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 << 10;

/// The credentials `--elasticsearch` sends.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Sent as `Authorization: ApiKey …`.
    pub api_key: Option<Secret>,
    /// The password of the user in the URL (HTTP basic).
    pub password: Option<Secret>,
}

/// What refuses a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// `--es-api-key KEY`.
    #[error("--es-api-key puts the API key on the command line, where `ps` shows it to every user of this host: set {API_KEY_ENV} in the environment or use --es-api-key-file FILE (mode 0600)")]
    KeyOnCommandLine,
    /// `http://user:pass@host`.
    #[error("--elasticsearch: the URL holds a password, which puts it on the command line where `ps` shows it to every user of this host: keep only the user in the URL (http[s]://USER@host:port) and set {PASSWORD_ENV} in the environment or use --es-password-file FILE (mode 0600)")]
    PasswordInUrl,
    /// Both ways for one secret.
    #[error("both {env} and {flag} are set: use one")]
    Both {
        /// The variable.
        env: &'static str,
        /// The flag.
        flag: &'static str,
    },
    /// A secret file that cannot be used.
    #[error("{flag} {path}: {why}")]
    File {
        /// The flag naming it.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong and what to do.
        why: String,
    },
}

impl Credentials {
    /// Gathers the credentials from the environment (`env`) and the secret files; `key_on_argv` is whether
    /// `--es-api-key` was given (refused).
    pub fn gather(
        key_on_argv: bool,
        api_key_file: Option<&Path>,
        password_file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Credentials, CredentialError> {
        if key_on_argv {
            return Err(CredentialError::KeyOnCommandLine);
        }
        Ok(Credentials {
            api_key: one(API_KEY_ENV, "--es-api-key-file", api_key_file, env)?,
            password: one(PASSWORD_ENV, "--es-password-file", password_file, env)?,
        })
    }
}

fn one(
    var: &'static str,
    flag: &'static str,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, CredentialError> {
    let from_env = env(var).filter(|v| !v.is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => Err(CredentialError::Both { env: var, flag }),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(p)) => read_secret_file(flag, p).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a secret from `path`, refusing a file others may read.
pub fn read_secret_file(flag: &'static str, path: &Path) -> Result<Secret, CredentialError> {
    let fail = |why: String| CredentialError::File {
        flag,
        path: path.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "mode {mode:04o} lets its group or others read it: chmod 600 {}",
            path.display()
        )));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(fail(format!(
            "{} bytes, more than a secret holds (at most {MAX_SECRET_FILE})",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(format!("cannot read (expected UTF-8 text): {e}")))?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_private_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let e = Credentials::gather(true, None, None, &none).unwrap_err();
        assert!(e.to_string().contains("set AUDITRAIL_ES_API_KEY"), "{e}");
        let env = |v: &str| (v == API_KEY_ENV).then(|| "a2V5".to_string());
        let c = Credentials::gather(false, None, None, &env).unwrap();
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("a2V5"));
        assert!(c.password.is_none());
        assert_eq!(format!("{c:?}").matches("a2V5").count(), 0);
        let good = file(dir.path(), "pw", "s3cret\n", 0o600);
        let c = Credentials::gather(false, None, Some(&good), &none).unwrap();
        assert_eq!(c.password.unwrap().expose(), "s3cret");
        let open = file(dir.path(), "open", "s3cret", 0o644);
        let e = Credentials::gather(false, Some(&open), None, &none).unwrap_err();
        assert!(
            e.to_string().contains("mode 0644") && e.to_string().contains("chmod 600"),
            "{e}"
        );
        let empty = file(dir.path(), "empty", "\n", 0o600);
        assert!(Credentials::gather(false, Some(&empty), None, &none).is_err());
        let e = Credentials::gather(false, Some(&good), None, &env).unwrap_err();
        assert!(
            e.to_string()
                .contains("both AUDITRAIL_ES_API_KEY and --es-api-key-file"),
            "{e}"
        );
    }
}
