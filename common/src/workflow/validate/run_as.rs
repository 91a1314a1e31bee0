//! `secret_env`, `user` and `group` of a task or `defaults`: who a task runs as and which of the
//! agent's local secrets it receives. Only names are checked here (they are the same on every
//! agent); whether a secret exists and whether the user may be used is the agent's question
//! (`outpost-agent`'s deploy validation), since only the agent knows.

use super::*;

/// Longest secret name.
const MAX_SECRET_NAME: usize = 128;

/// A secret's name: 1 to 128 of `[A-Za-z0-9._-]`, not starting with `.` or `-` (it is a file
/// name in the agent's secret directory and under `$CREDENTIALS_DIRECTORY`).
pub fn valid_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SECRET_NAME
        && !s.starts_with('.')
        && !s.starts_with('-')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
}

/// A user or group: a numeric id, or a name `[a-z_][a-z0-9_-]*` (optionally ending in `$`),
/// at most 32 characters.
pub fn valid_run_as_id(s: &str) -> bool {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse::<u32>().is_ok_and(|n| n != u32::MAX);
    }
    let body = s.strip_suffix('$').unwrap_or(s);
    let b = body.as_bytes();
    !b.is_empty()
        && s.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

impl V<'_> {
    /// `secret_env:` a map of environment variable -> secret name.
    pub(super) fn secret_env(&mut self, node: &Node, field: &str) -> BTreeMap<String, String> {
        let map = self.string_map(
            node,
            field,
            valid_env_key,
            "letters, digits and `_`, not starting with a digit",
        );
        let mut out = BTreeMap::new();
        for (k, name) in map {
            let f = join_dot(field, &k);
            let pos = self.entry_pos(node, &k);
            if k.starts_with("OUTPOST_") {
                self.err(
                    pos,
                    &f,
                    "`OUTPOST_*` variables are set by the agent; choose another name",
                );
                continue;
            }
            if name.contains("{{") {
                self.err(
                    pos,
                    &f,
                    "a secret name is literal: templates are not expanded here",
                );
                continue;
            }
            if !valid_secret_name(&name) {
                self.err(
                    pos,
                    &f,
                    format!(
                        "invalid secret name `{name}` (1 to {MAX_SECRET_NAME} of letters, digits, `.`, `_` and `-`, not starting with `.` or `-`)"
                    ),
                );
                continue;
            }
            out.insert(k, name);
        }
        out
    }

    /// `user:` / `group:` a name or a numeric id.
    pub(super) fn run_as_id(&mut self, node: &Node, field: &str, what: &str) -> Option<String> {
        let s = self.scalar(node, field)?;
        if matches!(node.value, Value::Bool(_) | Value::Float(_)) || !valid_run_as_id(&s) {
            self.err(
                node.pos,
                field,
                format!(
                    "`{s}` is not a {what} name (`[a-z_][a-z0-9_-]*`, at most 32 characters) or a numeric id"
                ),
            );
            return None;
        }
        Some(s)
    }

    /// Where the value of `key` in the map `node` is written (the map's own position if not
    /// found).
    fn entry_pos(&self, node: &Node, key: &str) -> Pos {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_string().as_deref() == Some(key))
                .map_or(node.pos, |(_, v)| v.pos),
            _ => node.pos,
        }
    }
}

/// A variable set both in `env` and in `secret_env` is ambiguous: an error.
pub(super) fn env_clash(
    v: &mut V<'_>,
    pos: Pos,
    field: &str,
    env: &BTreeMap<String, String>,
    secret_env: &BTreeMap<String, String>,
) {
    for k in secret_env.keys().filter(|k| env.contains_key(*k)) {
        v.err(
            pos,
            &format!("{field}.secret_env.{k}"),
            format!("`{k}` is set in both `env` and `secret_env`; keep one"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{valid_run_as_id, valid_secret_name};

    #[test]
    fn secret_names() {
        for ok in ["plc-line3", "a", "db.password", "A_B-9"] {
            assert!(valid_secret_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!valid_secret_name(bad), "{bad}");
        }
    }

    #[test]
    fn run_as_ids() {
        for ok in [
            "nobody",
            "_svc",
            "plc-reader",
            "www-data",
            "0",
            "65534",
            "machine$",
        ] {
            assert!(valid_run_as_id(ok), "{ok}");
        }
        for bad in [
            "",
            "Root",
            "1abc",
            "a b",
            "4294967295",
            "-1",
            "a/b",
            &"x".repeat(33),
        ] {
            assert!(!valid_run_as_id(bad), "{bad}");
        }
    }

    fn parse(src: &str) -> Result<crate::model::Workflow, Vec<String>> {
        crate::workflow::parse(
            "w.yaml",
            src,
            crate::workflow::Format::Yaml,
            &Default::default(),
        )
        .map_err(|d| d.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn secret_env_user_and_group_with_defaults() {
        let wf = parse(
            "name: w\ndefaults:\n  secret_env: {PLC_PASSWORD: plc-line3}\n  user: plc-reader\ntasks:\n  a:\n    command: [a]\n    secret_env: {DB: db.main}\n    group: 20\n  b:\n    command: [b]\n    user: 65534\n    secret_env: {PLC_PASSWORD: other}\n",
        )
        .unwrap();
        let a = &wf.tasks[0];
        assert_eq!(
            a.secret_env.iter().collect::<Vec<_>>(),
            vec![
                (&"DB".to_string(), &"db.main".to_string()),
                (&"PLC_PASSWORD".to_string(), &"plc-line3".to_string())
            ]
        );
        assert_eq!(a.user.as_deref(), Some("plc-reader"));
        assert_eq!(a.group.as_deref(), Some("20"));
        let b = &wf.tasks[1];
        assert_eq!(b.secret_env["PLC_PASSWORD"], "other");
        assert_eq!(b.user.as_deref(), Some("65534"));
        assert_eq!(b.group, None);
        let none = parse("name: w\ntasks:\n  a:\n    command: [a]\n").unwrap();
        assert!(none.tasks[0].secret_env.is_empty() && none.tasks[0].user.is_none());
    }

    #[test]
    fn bad_secret_env_user_and_group_are_diagnosed() {
        let errs = parse(
            "name: w\ntasks:\n  a:\n    command: [a]\n    env: {X: 1}\n    secret_env: {X: x, OUTPOST_Y: y, Z: \"{{ params.p }}\", W: ../etc, 1A: a}\n    user: Root\n    group: true\n",
        )
        .unwrap_err()
        .join("\n");
        for want in [
            "tasks.a.secret_env.X: `X` is set in both `env` and `secret_env`",
            "tasks.a.secret_env.OUTPOST_Y: `OUTPOST_*` variables are set by the agent",
            "tasks.a.secret_env.Z: a secret name is literal",
            "tasks.a.secret_env.W: invalid secret name `../etc`",
            "tasks.a.secret_env.1A: invalid name `1A`",
            "tasks.a.user: `Root` is not a user name",
            "tasks.a.group: `true` is not a group name",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
    }
}
