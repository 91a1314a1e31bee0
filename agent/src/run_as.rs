//! Who a task runs as (`user`, `group`) and the agent's checks of a workflow against what only
//! this agent knows: its secrets, its `[exec] allowed_users`, its capabilities.
//!
//! Names are resolved from `/etc/passwd` and `/etc/group` (numeric ids are taken as they are);
//! NSS sources such as LDAP are not consulted. The child gets the uid and gid through
//! `std::os::unix::process::CommandExt`; when the agent runs as root (or with CAP_SETUID and
//! CAP_SETGID), the standard library clears the supplementary groups before `setuid`.

use std::fs;
use std::path::{Path, PathBuf};

use outpost_common::model::Workflow;

use crate::secrets::SecretStore;

/// The agent's run-as policy (`[exec] allowed_users`).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Users (names or numeric uids) tasks may run as. Empty: run-as is disabled.
    pub allowed_users: Vec<String>,
    /// Base of a relative `working_dir` (`[exec] work_base`, default the agent's state dir).
    pub work_base: Option<PathBuf>,
}

/// A resolved user and group for a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// An `/etc/passwd` or `/etc/group` entry: (name, id, primary gid for passwd).
fn lookup(file: &Path, name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| {
            let id = f.get(2)?.parse().ok()?;
            let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((id, gid))
        })
}

/// The name of uid `uid` in `/etc/passwd`, if any (for matching `allowed_users`).
fn user_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2).and_then(|i| i.parse::<u32>().ok()) == Some(uid))
        .and_then(|f| f.first().map(|s| s.to_string()))
}

impl Policy {
    /// Is `user` (as written in a workflow) allowed here? Matches by name or by uid.
    fn allows(&self, user: &str, uid: u32) -> bool {
        let name = user_name(uid);
        self.allowed_users.iter().any(|a| {
            a == user || a.parse::<u32>().ok() == Some(uid) || name.as_deref() == Some(a.as_str())
        })
    }

    /// Resolve a task's `user`/`group` for a child process; `Ok(None)` when the task sets
    /// neither. Errors say what to change.
    pub fn resolve(
        &self,
        user: Option<&str>,
        group: Option<&str>,
    ) -> Result<Option<RunAs>, String> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let me = rustix::process::geteuid().as_raw();
        let (uid, primary) = match user {
            Some(u) => {
                let (uid, gid) = match u.parse::<u32>() {
                    Ok(n) => (
                        n,
                        lookup(Path::new("/etc/passwd"), &user_name(n).unwrap_or_default())
                            .map_or(n, |x| x.1),
                    ),
                    Err(_) => lookup(Path::new("/etc/passwd"), u).ok_or_else(|| {
                        format!("user `{u}` does not exist on this agent (/etc/passwd)")
                    })?,
                };
                if !self.allows(u, uid) {
                    return Err(if self.allowed_users.is_empty() {
                        format!(
                            "task user `{u}`: running tasks as another user is disabled on this agent (set `[exec] allowed_users` in its config)"
                        )
                    } else {
                        format!("task user `{u}` is not in this agent's `[exec] allowed_users`")
                    });
                }
                (uid, gid)
            }
            None => (me, rustix::process::getegid().as_raw()),
        };
        let gid = match group {
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup(Path::new("/etc/group"), g)
                    .map(|x| x.0)
                    .ok_or_else(|| {
                        format!("group `{g}` does not exist on this agent (/etc/group)")
                    })?,
            },
            None => primary,
        };
        if group.is_some() && user.is_none() && self.allowed_users.is_empty() {
            return Err("task group: running tasks as another user or group is disabled on this agent (set `[exec] allowed_users` in its config)".into());
        }
        if (uid != me || gid != rustix::process::getegid().as_raw()) && !can_switch_ids() {
            return Err("this agent lacks CAP_SETUID/CAP_SETGID, so it cannot run tasks as another user or group (install deploy/systemd/outpost-agent.service.d/run-as.conf; see docs/operations.md)".into());
        }
        Ok(Some(RunAs { uid, gid }))
    }

    /// A task's working directory: `working_dir` as is when absolute, else under the base.
    pub fn working_dir(&self, wd: Option<&Path>) -> Option<PathBuf> {
        let wd = wd?.to_path_buf();
        if wd.is_absolute() {
            return Some(wd);
        }
        Some(match &self.work_base {
            Some(b) => b.join(wd),
            None => wd,
        })
    }
}

/// Does this process hold CAP_SETUID and CAP_SETGID (bits 7 and 6 of `CapEff`)?
pub fn can_switch_ids() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 6) != 0 && caps & (1 << 7) != 0)
}

/// The agent-side check of a workflow: every secret it references exists here, and every
/// task's user and group may be used here. Returns one message per problem (empty: fine).
pub fn check_workflow(wf: &Workflow, secrets: &SecretStore, policy: &Policy) -> Vec<String> {
    let mut problems = Vec::new();
    let mut missing = std::collections::BTreeSet::new();
    for t in &wf.tasks {
        for (env, name) in &t.secret_env {
            match secrets.source(name) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    if missing.insert(name.clone()) {
                        problems.push(format!(
                            "task `{}`: secret `{name}` (for {env}) is not set on this agent (`outpost-agent secret set {name}`)",
                            t.id
                        ));
                    }
                }
                Err(e) => problems.push(format!("task `{}`: secret `{name}`: {e}", t.id)),
            }
        }
        if let Err(e) = policy.resolve(t.user.as_deref(), t.group.as_deref()) {
            problems.push(format!("task `{}`: {e}", t.id));
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_as_is_off_unless_allowed() {
        let p = Policy::default();
        assert_eq!(p.resolve(None, None).unwrap(), None);
        let e = p.resolve(Some("nobody"), None).unwrap_err();
        assert!(e.contains("disabled"), "{e}");
        let e = p.resolve(None, Some("0")).unwrap_err();
        assert!(e.contains("disabled"), "{e}");
        let p = Policy {
            allowed_users: vec!["daemon".into()],
            work_base: None,
        };
        let e = p.resolve(Some("nobody"), None).unwrap_err();
        assert!(e.contains("allowed_users"), "{e}");
        let e = p.resolve(Some("no-such-user-x"), None).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn working_dir_relative_to_the_base() {
        let p = Policy {
            allowed_users: vec![],
            work_base: Some("/var/lib/outpost".into()),
        };
        assert_eq!(p.working_dir(None), None);
        assert_eq!(p.working_dir(Some(Path::new("/srv"))), Some("/srv".into()));
        assert_eq!(
            p.working_dir(Some(Path::new("work/a"))),
            Some("/var/lib/outpost/work/a".into())
        );
    }
}
