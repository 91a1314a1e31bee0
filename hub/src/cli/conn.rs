//! Where the hub API is and how to authenticate: the global flags, and the one API client every
//! resource's commands use.
//!
//! Precedence, for each of the URL, the token and the CA: a flag (`--hub`, `--token`, `--ca`),
//! else its environment variable, else `--config hub.toml`, else the context (`--context`,
//! `OUTPOST_CONTEXT`, else the CLI config file's current context: [`super::contexts`]), else the
//! default (`http://127.0.0.1:7070`, no token).

use std::path::PathBuf;

use clap::Args;

use super::output::{CliError, Output};
use crate::client::Client;
use crate::config::HubConfig;

/// Where the hub API is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ConnOpts {
    /// Hub API URL [default: http://127.0.0.1:7070, or from --config].
    #[arg(long, global = true, env = "OUTPOST_HUB_URL")]
    pub hub: Option<String>,
    /// Operator credential (`opo1.<id>.<secret>`; its name is who the audit log records).
    #[arg(long, global = true, env = "OUTPOST_HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// hub.toml to take the API address, token file and CA from (and, for `serve`, the config).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// A named hub of the CLI config file (`outpost-hub config get-contexts`) [default: its
    /// current context].
    #[arg(long, global = true, env = "OUTPOST_CONTEXT")]
    pub context: Option<String>,
    /// CA certificate (PEM) to verify an https:// hub URL with [default: the config's CA].
    #[arg(long, global = true, env = "OUTPOST_HUB_CA")]
    pub ca: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Log format of `serve` and `dev` on stderr: text, or JSON lines (one object per event).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "OUTPOST_LOG_FORMAT")]
    pub log_format: Output,
}

/// Resolve the hub URL, token and CA (precedence: this module's doc). A config whose API is not
/// on loopback means HTTPS (to 127.0.0.1 when it listens on all addresses).
pub(crate) fn client(conn: &ConnOpts) -> Result<Client, CliError> {
    let config = match &conn.config {
        Some(p) => Some(HubConfig::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    // A context is read only when something is still missing after flags, env and --config
    // (a named --context must exist, though).
    let complete =
        (conn.hub.is_some() || config.is_some()) && (conn.token.is_some() || config.is_some());
    let context = if complete && conn.context.is_none() {
        None
    } else {
        super::contexts::resolve(conn.context.as_deref())?
    };
    let ctx = context.as_ref().map(|(_, c)| c);
    let url = match (&conn.hub, &config, ctx.and_then(|c| c.server.as_ref())) {
        (Some(u), _, _) => u.clone(),
        (None, Some(c), _) => config_url(c.http_listen),
        (None, None, Some(u)) => u.clone(),
        (None, None, None) => "http://127.0.0.1:7070".to_string(),
    };
    let token = match (
        &conn.token,
        &config,
        ctx.and_then(|c| c.token_file.as_ref()),
    ) {
        (Some(t), _, _) => t.clone(),
        (None, Some(c), _) => c
            .read_api_token()
            .map_err(|e| CliError::Usage(e.to_string()))?,
        (None, None, Some(f)) => {
            let name = context.as_ref().map(|(n, _)| n.as_str()).unwrap_or("");
            let t = std::fs::read_to_string(f).map_err(|e| {
                CliError::Usage(format!("context {name}: token file {}: {e}", f.display()))
            })?;
            let t = t.trim().to_string();
            if t.is_empty() {
                return Err(CliError::Usage(format!(
                    "context {name}: token file {} is empty",
                    f.display()
                )));
            }
            t
        }
        (None, None, None) => {
            return Err(CliError::Usage(
                "no API token: pass --token, set OUTPOST_HUB_TOKEN, pass --config hub.toml, or \
                 use a context (`outpost-hub config set-context`)"
                    .into(),
            ));
        }
    };
    let ca_path = conn
        .ca
        .clone()
        .or_else(|| config.as_ref().map(|c| c.ca_cert.clone()))
        .or_else(|| ctx.and_then(|c| c.ca.clone()));
    let ca = match ca_path {
        Some(p) if url.starts_with("https://") => {
            let pem = std::fs::read_to_string(&p)
                .map_err(|e| CliError::Usage(format!("CA certificate {}: {e}", p.display())))?;
            let mut certs = outpost_net::pki::certs_from_pem(&pem).map_err(|_| {
                CliError::Usage(format!(
                    "CA certificate {} holds no certificate",
                    p.display()
                ))
            })?;
            Some(certs.swap_remove(0))
        }
        _ => None,
    };
    Ok(Client::new(&url, &token, ca))
}

/// The API URL of a configuration's `http_listen`.
fn config_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_loopback() {
        return format!("http://{listen}");
    }
    let port = listen.port();
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("https://127.0.0.1:{port}"),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => format!("https://[::1]:{port}"),
        _ => format!("https://{listen}"),
    }
}
