//! The agent's local secrets: values a workflow's tasks receive in environment variables
//! (`secret_env`), kept on this machine only.
//!
//! # Where a secret's value comes from
//!
//! 1. The secret directory, `<state_dir>/secrets/` (mode 0700), one file per secret named after
//!    it (mode 0600), written by `outpost-agent secret set NAME` (value from stdin). The CLI
//!    writes the files directly, so it works with the daemon running: the daemon reads the
//!    value each time an attempt starts (a change applies to the next attempt).
//! 2. systemd credentials: `$CREDENTIALS_DIRECTORY/NAME` (`LoadCredential=`/`SetCredential=`
//!    in the unit), when the directory does not hold the secret.
//!
//! Files are refused if group or others have any access, or if another user owns them (like
//! the agent's key: a secret others could read or replace is not a secret).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use outpost_common::workflow::valid_secret_name;

/// Longest secret value accepted (it goes into an environment variable).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;
/// Environment variable systemd sets to the unit's credentials directory.
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Where secrets are looked up. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SecretStore {
    /// `<state_dir>/secrets`; `None`: no local secrets (tests, `ExecConfig::new`).
    pub dir: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY` when the agent started.
    pub credentials: Option<PathBuf>,
}

/// A secret resolved for one attempt.
#[derive(Clone)]
pub struct Secret {
    /// The environment variable that receives it.
    pub env: String,
    /// The secret's name (shown in redactions).
    pub name: String,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("env", &self.env)
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

impl Secret {
    /// The value as an environment value.
    pub fn os_value(&self) -> OsString {
        OsString::from_vec(self.value.clone())
    }
}

/// Errors of the secret store.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "invalid secret name `{0}` (letters, digits, `.`, `_` and `-`, not starting with `.` or `-`)"
    )]
    Name(String),
    #[error("secret `{0}` is not set on this agent (`outpost-agent secret set {0}`)")]
    Missing(String),
    #[error("{path}: {message}")]
    Unsafe { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the value is empty")]
    Empty,
    #[error("the value is longer than {MAX_SECRET_BYTES} bytes")]
    TooLong,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuse a file or directory that others may access or that a user other than `owner` (the
/// owner of the state directory, i.e. the agent's user) or this process's owns.
fn check_private(path: &Path, meta: &fs::Metadata, owner: u32) -> Result<(), SecretError> {
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Unsafe {
            path: path.to_path_buf(),
            message: format!(
                "mode {mode:04o} lets other users in; secrets must be 0600 in a 0700 directory (chmod go= it)"
            ),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != owner {
        return Err(SecretError::Unsafe {
            path: path.to_path_buf(),
            message: format!(
                "owned by uid {}, not the agent's user (uid {owner})",
                meta.uid()
            ),
        });
    }
    Ok(())
}

impl SecretStore {
    /// The store of an agent whose state directory is `state_dir`, with systemd credentials
    /// from the environment.
    pub fn for_state_dir(state_dir: &Path) -> SecretStore {
        SecretStore {
            dir: Some(state_dir.join("secrets")),
            credentials: std::env::var_os(CREDENTIALS_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The agent's user: the owner of the state directory (else this process's user).
    fn owner(&self) -> u32 {
        self.dir
            .as_deref()
            .and_then(Path::parent)
            .and_then(|p| fs::metadata(p).ok())
            .map_or_else(|| rustix::process::geteuid().as_raw(), |m| m.uid())
    }

    fn name_ok(name: &str) -> Result<(), SecretError> {
        if valid_secret_name(name) {
            Ok(())
        } else {
            Err(SecretError::Name(name.to_string()))
        }
    }

    /// Check the secret directory, if it exists: 0700, the agent's own (called at start).
    pub fn check(&self) -> Result<(), SecretError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        match fs::symlink_metadata(dir) {
            Ok(m) => check_private(dir, &m, self.owner()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(dir)(e)),
        }
    }

    /// Read a file of the store; `None` if absent.
    fn read_file(&self, path: &Path, check_mode: bool) -> Result<Option<Vec<u8>>, SecretError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        if check_mode {
            check_private(path, &meta, self.owner())?;
        }
        if meta.len() > MAX_SECRET_BYTES as u64 {
            return Err(SecretError::TooLong);
        }
        fs::read(path).map(Some).map_err(io_err(path))
    }

    /// Where `name`'s value would come from, if it is set (for validation and `list`).
    pub fn source(&self, name: &str) -> Result<Option<&'static str>, SecretError> {
        Self::name_ok(name)?;
        if let Some(dir) = &self.dir {
            self.check()?;
            if dir.join(name).exists() {
                return Ok(Some("store"));
            }
        }
        if let Some(c) = &self.credentials
            && c.join(name).exists()
        {
            return Ok(Some("systemd-credential"));
        }
        Ok(None)
    }

    /// The value of `name`: the store's file, else the systemd credential.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, SecretError> {
        Self::name_ok(name)?;
        if let Some(dir) = &self.dir {
            self.check()?;
            if let Some(v) = self.read_file(&dir.join(name), true)? {
                return Ok(v);
            }
        }
        if let Some(c) = &self.credentials
            && let Some(v) = self.read_file(&c.join(name), false)?
        {
            return Ok(v);
        }
        Err(SecretError::Missing(name.to_string()))
    }

    /// Resolve a task's `secret_env` (variable -> name) for one attempt.
    pub fn resolve<'a>(
        &self,
        secret_env: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Vec<Secret>, SecretError> {
        secret_env
            .into_iter()
            .map(|(env, name)| {
                Ok(Secret {
                    env: env.clone(),
                    name: name.clone(),
                    value: self.get(name)?,
                })
            })
            .collect()
    }

    fn dir(&self) -> Result<&Path, SecretError> {
        self.dir.as_deref().ok_or_else(|| SecretError::Unsafe {
            path: PathBuf::new(),
            message: "no secret directory configured".into(),
        })
    }

    /// Store `value` as `name` (replacing it): written to a 0600 temporary file, synced, renamed.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), SecretError> {
        Self::name_ok(name)?;
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong);
        }
        let dir = self.dir()?;
        crate::private_fs::create_dir_all(dir).map_err(io_err(dir))?;
        self.check()?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(name);
        let _ = fs::remove_file(&tmp);
        let mut f = crate::private_fs::file_options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        // Run by root for an agent with its own user: the file is the agent's.
        let owner = self.owner();
        if rustix::process::geteuid().is_root() && owner != 0 {
            let uid = rustix::process::Uid::from_raw(owner);
            for p in [dir, tmp.as_path()] {
                rustix::fs::chown(p, Some(uid), None).map_err(|e| io_err(p)(io::Error::from(e)))?;
            }
        }
        f.write_all(value).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    }

    /// Remove `name` from the store; `false` if it was not there.
    pub fn remove(&self, name: &str) -> Result<bool, SecretError> {
        Self::name_ok(name)?;
        let dir = self.dir()?;
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every secret name available, with its source (`store` or `systemd-credential`), sorted.
    pub fn list(&self) -> Result<Vec<(String, &'static str)>, SecretError> {
        let mut out: std::collections::BTreeMap<String, &'static str> = Default::default();
        let mut scan = |dir: &Path, what: &'static str| -> Result<(), SecretError> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err(dir)(e)),
            };
            for e in entries {
                let e = e.map_err(io_err(dir))?;
                if let Some(n) = e.file_name().to_str()
                    && valid_secret_name(n)
                {
                    out.entry(n.to_string()).or_insert(what);
                }
            }
            Ok(())
        };
        if let Some(d) = &self.dir {
            self.check()?;
            scan(d, "store")?;
        }
        if let Some(c) = &self.credentials {
            scan(c, "systemd-credential")?;
        }
        Ok(out.into_iter().collect())
    }
}

/// Read a secret's value from stdin: everything up to EOF, one trailing newline (`\n` or
/// `\r\n`) removed. When stdin is a terminal, echo is off while the value is typed.
pub fn read_value_from_stdin() -> anyhow::Result<Vec<u8>> {
    use std::io::{IsTerminal as _, Read as _};
    let stdin = io::stdin();
    let mut buf = Vec::new();
    if stdin.is_terminal() {
        eprint!("value (input hidden, end with Enter): ");
        let _ = io::stderr().flush();
        // `stty` on the inherited terminal (no shell involved): echo off while typing.
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status()
                .is_ok_and(|s| s.success())
        };
        let quiet = stty("-echo");
        let mut line = String::new();
        let r = stdin.read_line(&mut line);
        if quiet {
            stty("echo");
        }
        eprintln!();
        r?;
        buf = line.into_bytes();
    } else {
        stdin
            .lock()
            .take(MAX_SECRET_BYTES as u64 + 3)
            .read_to_end(&mut buf)?;
    }
    if buf.ends_with(b"\r\n") {
        buf.truncate(buf.len() - 2);
    } else if buf.ends_with(b"\n") {
        buf.truncate(buf.len() - 1);
    }
    Ok(buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> SecretStore {
        SecretStore {
            dir: Some(dir.join("secrets")),
            credentials: None,
        }
    }

    #[test]
    fn set_get_list_remove_with_private_modes() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        assert!(matches!(s.get("plc"), Err(SecretError::Missing(_))));
        s.set("plc", b"hunter2").unwrap();
        assert_eq!(s.get("plc").unwrap(), b"hunter2");
        let dir = t.path().join("secrets");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("plc")), 0o600);
        s.set("plc", b"new").unwrap();
        assert_eq!(s.get("plc").unwrap(), b"new");
        assert_eq!(s.list().unwrap(), vec![("plc".to_string(), "store")]);
        assert!(s.remove("plc").unwrap());
        assert!(!s.remove("plc").unwrap());
        assert!(s.list().unwrap().is_empty());
        assert!(matches!(s.set("../x", b"v"), Err(SecretError::Name(_))));
        assert!(matches!(s.set("x", b""), Err(SecretError::Empty)));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = store(t.path());
        s.set("plc", b"v").unwrap();
        let f = t.path().join("secrets/plc");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.get("plc").unwrap_err().to_string();
        assert!(e.contains("0644"), "{e}");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let dir = t.path().join("secrets");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(s.check().is_err());
        assert!(s.get("plc").is_err());
    }

    #[test]
    fn systemd_credentials_are_a_fallback() {
        let t = tempfile::tempdir().unwrap();
        let creds = t.path().join("creds");
        fs::create_dir(&creds).unwrap();
        fs::write(creds.join("db"), b"from-systemd").unwrap();
        let s = SecretStore {
            dir: Some(t.path().join("secrets")),
            credentials: Some(creds),
        };
        assert_eq!(s.get("db").unwrap(), b"from-systemd");
        assert_eq!(s.source("db").unwrap(), Some("systemd-credential"));
        s.set("db", b"local").unwrap();
        assert_eq!(s.get("db").unwrap(), b"local");
        let env = [("DB".to_string(), "db".to_string())];
        let r = s.resolve(env.iter().map(|(a, b)| (a, b))).unwrap();
        assert_eq!(r[0].value, b"local");
        assert!(!format!("{r:?}").contains("local"));
    }
}
