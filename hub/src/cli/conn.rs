//! Where the hub API is and how to authenticate: the global flags, and the one API client every
//! resource's commands use.

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
    /// CA certificate (PEM) to verify an https:// hub URL with [default: the config's CA].
    #[arg(long, global = true, env = "OUTPOST_HUB_CA")]
    pub ca: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Log format of `serve` and `dev` on stderr: text, or JSON lines (one object per event).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "OUTPOST_LOG_FORMAT")]
    pub log_format: Output,
}

/// Resolve the hub URL, token and CA: flags/env first, then `--config hub.toml`, then
/// defaults. A config whose API is not on loopback means HTTPS (to 127.0.0.1 when it listens on
/// all addresses).
pub(crate) fn client(conn: &ConnOpts) -> Result<Client, CliError> {
    let config = match &conn.config {
        Some(p) => Some(HubConfig::load(p).map_err(|e| CliError::Usage(e.to_string()))?),
        None => None,
    };
    let url = match (&conn.hub, &config) {
        (Some(u), _) => u.clone(),
        (None, Some(c)) => config_url(c.http_listen),
        (None, None) => "http://127.0.0.1:7070".to_string(),
    };
    let token = match (&conn.token, &config) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => c
            .read_api_token()
            .map_err(|e| CliError::Usage(e.to_string()))?,
        (None, None) => {
            return Err(CliError::Usage(
                "no API token: pass --token, set OUTPOST_HUB_TOKEN, or pass --config hub.toml"
                    .into(),
            ));
        }
    };
    let ca_path = conn
        .ca
        .clone()
        .or_else(|| config.as_ref().map(|c| c.ca_cert.clone()));
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
