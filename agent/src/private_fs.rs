//! Files and directories that only the agent's user may read: the state directory, the store,
//! the logs directory and its run directories, every log file and the start journal
//! (docs/security.md, "Files and modes").
//!
//! Modes are set explicitly rather than left to the umask: a directory is created 0700, a file
//! 0600 (the umask can only take bits away from those), and the state directory, which an
//! installer may have created 0755 beforehand, is set to 0700 when the agent opens it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of every directory the agent creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the agent creates.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` and its missing parents with mode 0700 (existing ones are left alone).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// The agent's state directory: created 0700 if missing, and set to 0700 if it exists with
/// more bits (it holds the store with the agent's private key).
pub fn state_dir(dir: &Path) -> io::Result<()> {
    create_dir_all(dir)?;
    let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Options that create a file with mode 0600 (writable, not truncating; add what you need).
pub fn file_options() -> fs::OpenOptions {
    let mut o = fs::OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_state_dir_is_0700_whatever_the_umask_and_its_prior_mode() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let parent = tempfile::tempdir().unwrap();
        let fresh = parent.path().join("a/b/state");
        state_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&parent.path().join("a")), 0o700);
        let installed = parent.path().join("installed");
        fs::create_dir(&installed).unwrap();
        fs::set_permissions(&installed, fs::Permissions::from_mode(0o755)).unwrap();
        state_dir(&installed).unwrap();
        assert_eq!(mode(&installed), 0o700);
        let f = installed.join("f");
        file_options().write(true).create(true).open(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
