//! `hooks:` of a workflow, a task or `defaults`: each event's command, validated as a task's own.

use super::*;

impl V<'_> {
    /// `hooks:` a map of [`HOOK_KEYS`], each a command in the form a task declares its own
    /// (`command` argv or `script` with an optional `shell`) and an optional `timeout`.
    pub(super) fn hooks(&mut self, node: &Node, field: &str) -> Hooks {
        let mut hooks = Hooks::default();
        for (key, kpos, v) in self.map_entries(node, field, "key").unwrap_or_default() {
            let f = join_dot(field, &key);
            let event = match key.as_str() {
                "on_failure" => HookEvent::Failure,
                "on_retry" => HookEvent::Retry,
                "on_success" => HookEvent::Success,
                "on_deadline_miss" => HookEvent::DeadlineMiss,
                _ => {
                    self.unknown_key(kpos, &f, &key, &HOOK_KEYS);
                    continue;
                }
            };
            if matches!(v.value, Value::Null) {
                continue;
            }
            if let Some(hook) = self.hook(v, kpos, &f) {
                hooks.set(event, hook);
            }
        }
        hooks
    }

    fn hook(&mut self, node: &Node, kpos: Pos, field: &str) -> Option<Hook> {
        let entries = self.map_entries(node, field, "key")?;
        let mut command: Option<Vec<(Pos, String)>> = None;
        let mut script: Option<(Pos, String)> = None;
        let mut shell: Option<(Pos, String)> = None;
        let mut timeout = DEFAULT_HOOK_TIMEOUT;
        let mut written = false;
        let mut ok = true;
        for (key, kpos, v) in entries {
            let f = join_dot(field, &key);
            match key.as_str() {
                "command" => {
                    written = true;
                    command = self.command(v, &f);
                    ok &= command.is_some();
                }
                "script" => {
                    written = true;
                    match self.string(v, &f) {
                        Some(s) if s.trim().is_empty() => {
                            self.err(v.pos, &f, "script must not be empty");
                            ok = false;
                        }
                        Some(s) => script = Some((v.pos, s)),
                        None => ok = false,
                    }
                }
                "shell" => {
                    shell = self.non_empty_string(v, &f).map(|s| (kpos, s));
                    ok &= shell.is_some();
                }
                "timeout" => match self.duration(v, &f, false, MAX_HOOK_DAYS) {
                    Some(d) => timeout = d,
                    None => ok = false,
                },
                _ => {
                    self.unknown_key(kpos, &f, &key, &HOOK_EXEC_KEYS);
                    ok = false;
                }
            }
        }
        // Values reach a hook in `OUTPOST_*` variables only: a placeholder would be text.
        let texts = command
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, (p, a))| (*p, format!("{field}.command[{i}]"), a.as_str()))
            .chain(
                script
                    .iter()
                    .map(|(p, s)| (*p, format!("{field}.script"), s.as_str())),
            );
        let mut bad: Vec<(Pos, String)> = Vec::new();
        for (pos, f, text) in texts {
            if template::placeholders(text).is_ok_and(|p| !p.is_empty()) || text.contains("{{") {
                bad.push((pos, f));
            }
        }
        for (pos, f) in bad {
            self.err(pos, &f, "placeholders are not expanded in hooks: read the event from the OUTPOST_* environment variables (docs/workflows.md)");
            ok = false;
        }
        let exec = match (command, script) {
            (Some(_), Some((pos, _))) => {
                self.err(
                    pos,
                    field,
                    "set exactly one of `command` or `script`, not both",
                );
                return None;
            }
            (Some(argv), None) => {
                if let Some((pos, _)) = shell {
                    self.err(
                        pos,
                        &join_dot(field, "shell"),
                        "`shell` applies only to `script`, not to `command`",
                    );
                    return None;
                }
                Exec::Command(argv.into_iter().map(|(_, a)| a).collect())
            }
            (None, Some((_, script))) => Exec::Script {
                script,
                shell: shell.map(|(_, s)| s),
            },
            (None, None) => {
                if !written {
                    self.err(
                        kpos,
                        field,
                        "a hook needs `command` (an argv list) or `script`",
                    );
                }
                return None;
            }
        };
        ok.then_some(Hook { exec, timeout })
    }
}
