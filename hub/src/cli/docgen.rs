//! `completion SHELL` and `man [--dir D]`: shell completions (clap_complete) and man pages
//! (clap_mangen), generated from the same clap definitions the binary parses with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::Cli;
use super::output::{CliError, CliResult};

/// `completion SHELL`
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `man [--dir D]`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command and subcommand into this directory (`outpost-hub.1`,
    /// `outpost-hub-workflow-apply.1`, ...) [default: the top page on stdout].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `completion SHELL`: the script on stdout.
pub(super) fn completion(a: &CompletionArgs) -> CliResult {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "outpost-hub", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `man [--dir D]`
pub(super) fn man(a: &ManArgs) -> CliResult {
    let cmd = Cli::command();
    match &a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .map_err(|e| CliError::Fail(format!("writing the man page: {e}")))?,
        Some(dir) => {
            let n = write_pages(cmd, dir)
                .map_err(|e| CliError::Usage(format!("{}: {e}", dir.display())))?;
            println!("{n} man pages written to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Write a man page for `cmd` and each of its subcommands into `dir`; returns how many.
pub(crate) fn write_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir)?;
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_name_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_pages(Cli::command(), dir.path()).unwrap();
        assert!(n > 20, "{n}");
        for page in [
            "outpost-hub.1",
            "outpost-hub-workflow.1",
            "outpost-hub-workflow-apply.1",
            "outpost-hub-workflow-delete.1",
            "outpost-hub-config-use-context.1",
        ] {
            assert!(dir.path().join(page).is_file(), "{page}");
        }
        let top = std::fs::read_to_string(dir.path().join("outpost-hub.1")).unwrap();
        assert!(
            top.contains("workflow") && top.contains("completion"),
            "{top}"
        );
    }
}
