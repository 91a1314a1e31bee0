//! Contexts: the CLI's own config file of named hubs (like a kubeconfig), and `config ...`
//! (`use-context`, `get-contexts`, `set-context`, `current-context`, `delete-context`).
//!
//! The file is `$OUTPOST_CONFIG`, else `$XDG_CONFIG_HOME/outpost/config.toml`, else
//! `~/.config/outpost/config.toml`:
//!
//! ```toml
//! current-context = "plant-a"
//! [contexts.plant-a]
//! server = "https://hub-a.example:7070"
//! token-file = "/home/me/.config/outpost/plant-a.token"
//! ca = "/home/me/.config/outpost/plant-a-ca.pem"
//! ```
//!
//! It names files only (a token file, a CA file), never holds a secret itself.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::output::{CliError, CliResult, EXIT_NOT_FOUND, Output, print_json, table};

/// The CLI config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CliConfig {
    /// The context used when no `--context` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Named hubs.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One named hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Context {
    /// Hub API URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File holding the operator credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) of an https:// server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// `config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Make NAME the current context (used when no --context is given).
    UseContext {
        /// Context name.
        name: String,
    },
    /// List the contexts (`*` marks the current one).
    GetContexts,
    /// Print the current context's name.
    CurrentContext,
    /// Create or change a context (only the fields given change).
    SetContext {
        /// Context name.
        name: String,
        /// Hub API URL, e.g. https://hub-a.example:7070.
        #[arg(long)]
        server: Option<String>,
        /// File holding the operator credential (`opo1.<id>.<secret>`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// CA certificate (PEM) of an https:// server.
        #[arg(long = "ca-file")]
        ca: Option<PathBuf>,
    },
    /// Remove a context.
    DeleteContext {
        /// Context name.
        name: String,
    },
}

/// Where the CLI config file is.
pub(crate) fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OUTPOST_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(x).join("outpost/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .map(|h| PathBuf::from(h).join(".config/outpost/config.toml"))
}

/// Read the CLI config file (absent: empty).
pub(crate) fn load(path: &Path) -> Result<CliConfig, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
        Err(e) => Err(CliError::Usage(format!("{}: {e}", path.display()))),
    }
}

/// Write the CLI config file (mode 0600, replaced atomically).
fn save(path: &Path, cfg: &CliConfig) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Usage(format!("{}: {e}", path.display()));
    let text = toml::to_string(cfg).map_err(|e| CliError::Fail(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("toml.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// The context to use: `name` (from `--context` / `OUTPOST_CONTEXT`), else the file's current
/// context, else none. A named context that does not exist is an error.
pub(crate) fn resolve(name: Option<&str>) -> Result<Option<(String, Context)>, CliError> {
    let Some(path) = config_path() else {
        return match name {
            Some(n) => Err(CliError::Usage(format!(
                "context {n}: no CLI config file (set OUTPOST_CONFIG or HOME)"
            ))),
            None => Ok(None),
        };
    };
    let cfg = load(&path)?;
    let Some(n) = name.map(str::to_string).or(cfg.current_context.clone()) else {
        return Ok(None);
    };
    match cfg.contexts.get(&n) {
        Some(c) => Ok(Some((n, c.clone()))),
        None => Err(CliError::Usage(format!(
            "context {n} is not in {} (`outpost-hub config get-contexts`)",
            path.display()
        ))),
    }
}

/// `config ...`
pub(super) fn handle(output: Output, cmd: ConfigCmd) -> CliResult {
    let path = config_path()
        .ok_or_else(|| CliError::Usage("no CLI config file: set OUTPOST_CONFIG or HOME".into()))?;
    let mut cfg = load(&path)?;
    let missing = |n: &str| {
        CliError::Code(
            EXIT_NOT_FOUND,
            format!("context {n} is not in {}", path.display()),
        )
    };
    match cmd {
        ConfigCmd::UseContext { name } => {
            if !cfg.contexts.contains_key(&name) {
                return Err(missing(&name));
            }
            cfg.current_context = Some(name.clone());
            save(&path, &cfg)?;
            println!("current context: {name}");
        }
        ConfigCmd::GetContexts => {
            if output == Output::Json {
                print_json(&cfg)?;
            } else {
                let t: Vec<Vec<String>> = cfg
                    .contexts
                    .iter()
                    .map(|(n, c)| {
                        let shown = |p: &Option<PathBuf>| {
                            p.as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_else(|| "-".into())
                        };
                        vec![
                            if cfg.current_context.as_deref() == Some(n.as_str()) {
                                "*".into()
                            } else {
                                String::new()
                            },
                            n.clone(),
                            c.server.clone().unwrap_or_else(|| "-".into()),
                            shown(&c.token_file),
                            shown(&c.ca),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["CURRENT", "NAME", "SERVER", "TOKEN FILE", "CA"], &t)
                );
            }
        }
        ConfigCmd::CurrentContext => match &cfg.current_context {
            Some(n) => println!("{n}"),
            None => {
                return Err(CliError::Code(
                    EXIT_NOT_FOUND,
                    "no current context (`outpost-hub config use-context NAME`)".into(),
                ));
            }
        },
        ConfigCmd::SetContext {
            name,
            server,
            token_file,
            ca,
        } => {
            if name.is_empty() {
                return Err(CliError::Usage("a context needs a name".into()));
            }
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            let c = cfg.contexts.entry(name.clone()).or_default();
            if let Some(s) = server {
                c.server = Some(s);
            }
            if let Some(t) = token_file {
                c.token_file = Some(absolute(t));
            }
            if let Some(a) = ca {
                c.ca = Some(absolute(a));
            }
            save(&path, &cfg)?;
            println!("context {name} set in {}", path.display());
        }
        ConfigCmd::DeleteContext { name } => {
            if cfg.contexts.remove(&name).is_none() {
                return Err(missing(&name));
            }
            if cfg.current_context.as_deref() == Some(name.as_str()) {
                cfg.current_context = None;
            }
            save(&path, &cfg)?;
            println!("context {name} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_round_trips_and_refuses_unknown_keys() {
        let text = "current-context = \"a\"\n[contexts.a]\nserver = \"http://127.0.0.1:1\"\n\
                    token-file = \"/t\"\n";
        let cfg: CliConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.current_context.as_deref(), Some("a"));
        assert_eq!(
            cfg.contexts["a"].token_file.as_deref(),
            Some(Path::new("/t"))
        );
        let again: CliConfig = toml::from_str(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
        assert!(toml::from_str::<CliConfig>("[contexts.a]\ntoken = \"x\"\n").is_err());
    }
}
