//! `script:` tasks: their placeholders are quoted for POSIX shells, so another `shell` is refused
//! while the script has placeholders.

use super::*;

/// Shells whose quoting the script placeholders are written for (POSIX `sh` and its relatives).
const POSIX_SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "yash", "posh",
];

/// A script with placeholders needs a POSIX shell: with another interpreter a placeholder's
/// reference would not mean "this value".
pub(super) fn script_shell_check(
    v: &mut V<'_>,
    pos: Pos,
    field: &str,
    script: &str,
    shell: Option<&(Pos, String)>,
) {
    let Some((_, shell)) = shell else { return };
    let base = shell.rsplit('/').next().unwrap_or(shell);
    if POSIX_SHELLS.contains(&base) {
        return;
    }
    if let Ok(phs) = template::placeholders(script)
        && let Some(ph) = phs.first()
    {
        v.err(
            pos,
            field,
            format!(
                "`{{{{ {ph} }}}}`: placeholders in `script` need a POSIX shell (`shell: {shell}` is not one); read the value from the environment variable {} instead",
                template::env_var_of(ph)
            ),
        );
    }
}
