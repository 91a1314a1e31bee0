//! The hub configuration file (`hub.toml`).
//!
//! Relative paths are resolved against `data_dir`. Unknown keys are an error. The hub fails
//! closed: [`HubConfig::check_files`] names the first missing certificate, key, CA or signing
//! key, and `serve` refuses to start. The API token file is the CLI's (the first admin's
//! operator credential); the hub authenticates operators from its store and does not need it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_common::duration::parse_duration;
use serde::Deserialize;

/// Default name of the hub (the name in its server certificate).
pub const DEFAULT_HUB_NAME: &str = "outpost-hub";
/// Default QUIC listen address.
pub const DEFAULT_QUIC_LISTEN: &str = "0.0.0.0:7443";
/// Default longest time to live of a bootstrap token.
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default lifetime of agent certificates (90 days; renewed over the session at two thirds).
pub const DEFAULT_AGENT_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Default grace after an agent certificate's expiry in which it may still renew (30 days).
pub const DEFAULT_AGENT_CERT_GRACE: Duration = Duration::from_secs(30 * 86_400);
/// Default lifetime of the hub's server certificate (90 days; renewed at two thirds).
pub const DEFAULT_SERVER_CERT_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// Default lead time of expiry warnings (14 days).
pub const DEFAULT_CERT_WARNING_LEAD: Duration = Duration::from_secs(14 * 86_400);
/// Default HTTP API listen address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7070";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    data_dir: Option<PathBuf>,
    hub_name: Option<String>,
    quic_listen: Option<String>,
    http_listen: Option<String>,
    api_token_file: Option<PathBuf>,
    offline_after: Option<String>,
    keep_alive_interval: Option<String>,
    max_idle_timeout: Option<String>,
    max_token_ttl: Option<String>,
    director_ttl: Option<String>,
    agent_cert_lifetime: Option<String>,
    agent_cert_grace: Option<String>,
    server_cert_lifetime: Option<String>,
    cert_warning_lead: Option<String>,
    firing_grace: Option<String>,
    alert_delayed_after: Option<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    keys: RawKeys,
    /// `[[channel]]`: alert channels (see [`crate::channels::config`]).
    #[serde(default)]
    channel: Vec<crate::channels::config::RawChannel>,
    /// `[[rule]]`: alert rules.
    #[serde(default)]
    rule: Vec<crate::alerts::config::RawRule>,
    #[serde(default)]
    metrics: RawMetrics,
    /// `[retention]`: run-history retention (see [`crate::retention`]).
    #[serde(default)]
    retention: crate::retention::RawRetention,
    /// `replicas`: the QUIC addresses (`host:port`) of every replica of this hub.
    replicas: Option<Vec<String>>,
    /// `[ha]`: leader election on etcd (see [`crate::ha`]).
    ha: Option<RawHa>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHa {
    etcd: Option<Vec<String>>,
    name: Option<String>,
    prefix: Option<String>,
    lease_ttl: Option<String>,
    postgres: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    per_agent_limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    director_key: Option<PathBuf>,
    release_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_cert: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    intermediate_cert: Option<PathBuf>,
    intermediate_key: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file the hub needs is missing.
    #[error("refusing to start: {what} {path} is missing or unreadable ({reason})")]
    Missing {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
}

/// The resolved hub configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Directory of the store and key files.
    pub data_dir: PathBuf,
    /// The hub's name (in its certificate; agents verify it).
    pub hub_name: String,
    /// QUIC listen address.
    pub quic_listen: SocketAddr,
    /// HTTP API listen address.
    pub http_listen: SocketAddr,
    /// File with an operator credential for the CLI (`init` writes the first admin's there).
    pub api_token_file: PathBuf,
    /// Silence after which an agent counts as offline.
    pub offline_after: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive_interval: Duration,
    /// QUIC idle timeout.
    pub max_idle_timeout: Duration,
    /// Longest time to live a bootstrap token may have (`token create --ttl`).
    pub max_token_ttl: Duration,
    /// Lifetime of the agent certificates the hub issues (renewed at two thirds of it).
    pub agent_cert_lifetime: Duration,
    /// How long after its expiry an agent certificate still opens a session that may only renew.
    pub agent_cert_grace: Duration,
    /// Lifetime of the hub's own server certificate (renewed at two thirds of it).
    pub server_cert_lifetime: Duration,
    /// The hub warns this long before a certificate expires.
    pub cert_warning_lead: Duration,
    /// Root CA certificate (PEM): the trust anchor agents and bootstrap tokens pin.
    pub ca_cert: PathBuf,
    /// Root CA private key (PEM) of a hub made before the intermediate CA existed; `serve` reads
    /// it only when there is no intermediate CA. New hubs keep the root key offline.
    pub ca_key: PathBuf,
    /// Intermediate CA certificate (PEM), signed by the root: issues agent and hub certificates.
    pub intermediate_cert: PathBuf,
    /// Intermediate CA private key (PEM).
    pub intermediate_key: PathBuf,
    /// Hub server certificate chain (PEM).
    pub cert: PathBuf,
    /// Hub server private key (PEM).
    pub key: PathBuf,
    /// The director key (ed25519 PKCS#8 DER): signs assignments, snapshots, commands and
    /// acknowledgements. Default: next to the data directory (`<data_dir>.director.key`), so a
    /// copy or backup of the data directory does not carry it.
    pub director_key: PathBuf,
    /// A release key the hub signs every applied version with (`None`: release keys stay with
    /// the operators, the default). For a lab or a single-operator site; `dev` sets it. It
    /// puts the release authority on the hub, so a compromised hub can deploy anything.
    pub release_key: Option<PathBuf>,
    /// How long a director snapshot stays fresh (agents report themselves stale after it).
    pub director_ttl: Duration,
    /// How long after its instant a connected agent's run must reach the hub before the firing
    /// counts as missed (and how long an agent must be connected before its cut-off firings
    /// are judged).
    pub firing_grace: Duration,
    /// An agent's event that reaches the hub more than this after it happened (the site was
    /// cut off) is marked delayed in notifications.
    pub alert_delayed_after: Duration,
    /// `[[channel]]`: where alert notifications go, in configuration order.
    pub channels: Vec<crate::channels::config::ChannelConfig>,
    /// `[[rule]]`: alert rules.
    pub rules: Vec<outpost_alerts::Rule>,
    /// `[metrics] per_agent_limit`: agents with their own `/metrics` series (in id order; the
    /// others are counted in `outpost_agents_unlisted`).
    pub metrics_per_agent_limit: usize,
    /// `[retention]`: how much run history the hub keeps (default: all of it).
    pub retention: crate::retention::RetentionConfig,
    /// `replicas`: the QUIC addresses (`host:port`) agents may connect to, sent at enrollment
    /// and in every Welcome (empty: none sent; agents keep the address they enrolled at).
    pub replicas: Vec<String>,
    /// `[ha]`: this hub is one replica of several, with a leader elected on etcd (`None`: the
    /// embedded hub, which always leads).
    pub ha: Option<crate::ha::HaConfig>,
}

/// Default delay after which an agent's event is marked delayed in notifications.
pub const DEFAULT_ALERT_DELAYED_AFTER: Duration = Duration::from_secs(120);

/// Default grace period of missed-firing detection.
pub const DEFAULT_FIRING_GRACE: Duration = Duration::from_secs(120);

/// Default lifetime of a director snapshot: an agent that has not heard the director for a day
/// reports itself stale (its schedules run on).
pub const DEFAULT_DIRECTOR_TTL: Duration = Duration::from_secs(24 * 3600);

/// The default director key file of a data directory: `<data_dir>.director.key`, beside it.
pub fn default_director_key(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_os_string();
    s.push(".director.key");
    PathBuf::from(s)
}

impl HubConfig {
    /// The configuration with every default, for `data_dir`.
    pub fn defaults(data_dir: &Path) -> HubConfig {
        HubConfig::resolve(
            Raw::default(),
            data_dir.to_path_buf(),
            Path::new("<defaults>"),
        )
        .unwrap_or_else(|_| unreachable_defaults(data_dir))
    }

    /// The store file.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("hub.redb")
    }

    /// Load `hub.toml`. `data_dir` defaults to the directory of the file.
    pub fn load(path: &Path) -> Result<HubConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse config text; `path` is for messages and the default `data_dir`.
    pub fn parse(text: &str, path: &Path) -> Result<HubConfig, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let data_dir = match &raw.data_dir {
            Some(d) if d.is_relative() => base.join(d),
            Some(d) => d.clone(),
            None => base,
        };
        Self::resolve(raw, data_dir, path)
    }

    fn resolve(raw: Raw, data_dir: PathBuf, path: &Path) -> Result<HubConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let addr =
            |v: Option<String>, default: &str, key: &str| -> Result<SocketAddr, ConfigError> {
                let s = v.unwrap_or_else(|| default.to_string());
                s.parse()
                    .map_err(|e| invalid(format!("{key} = {s:?}: not an address ip:port ({e})")))
            };
        let dur = |v: Option<String>,
                   default: Duration,
                   key: &str|
         -> Result<Duration, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => parse_duration(&s).map_err(|e| invalid(format!("{key} = {s:?}: {e}"))),
            }
        };
        let positive = |d: Duration, key: &str| -> Result<Duration, ConfigError> {
            if d.as_secs() == 0 {
                return Err(invalid(format!("{key} must be at least one second")));
            }
            Ok(d)
        };
        let file = |v: Option<PathBuf>, default: &str| -> PathBuf {
            let p = v.unwrap_or_else(|| PathBuf::from(default));
            if p.is_relative() { data_dir.join(p) } else { p }
        };
        let hub_name = raw
            .hub_name
            .clone()
            .unwrap_or_else(|| DEFAULT_HUB_NAME.to_string());
        if hub_name.is_empty() {
            return Err(invalid("hub_name is empty".into()));
        }
        let channels = crate::channels::config::resolve(raw.channel, &data_dir).map_err(invalid)?;
        Ok(HubConfig {
            quic_listen: addr(raw.quic_listen, DEFAULT_QUIC_LISTEN, "quic_listen")?,
            http_listen: addr(raw.http_listen, DEFAULT_HTTP_LISTEN, "http_listen")?,
            api_token_file: file(raw.api_token_file, "api.token"),
            offline_after: dur(raw.offline_after, Duration::from_secs(30), "offline_after")?,
            keep_alive_interval: dur(
                raw.keep_alive_interval,
                Duration::from_secs(5),
                "keep_alive_interval",
            )?,
            max_idle_timeout: dur(
                raw.max_idle_timeout,
                Duration::from_secs(15),
                "max_idle_timeout",
            )?,
            max_token_ttl: dur(raw.max_token_ttl, DEFAULT_MAX_TOKEN_TTL, "max_token_ttl")?,
            agent_cert_lifetime: positive(
                dur(
                    raw.agent_cert_lifetime,
                    DEFAULT_AGENT_CERT_LIFETIME,
                    "agent_cert_lifetime",
                )?,
                "agent_cert_lifetime",
            )?,
            agent_cert_grace: dur(
                raw.agent_cert_grace,
                DEFAULT_AGENT_CERT_GRACE,
                "agent_cert_grace",
            )?,
            server_cert_lifetime: positive(
                dur(
                    raw.server_cert_lifetime,
                    DEFAULT_SERVER_CERT_LIFETIME,
                    "server_cert_lifetime",
                )?,
                "server_cert_lifetime",
            )?,
            cert_warning_lead: dur(
                raw.cert_warning_lead,
                DEFAULT_CERT_WARNING_LEAD,
                "cert_warning_lead",
            )?,
            ca_cert: file(raw.tls.ca_cert, "ca.pem"),
            ca_key: file(raw.tls.ca_key, "ca.key"),
            intermediate_cert: file(raw.tls.intermediate_cert, "intermediate.pem"),
            intermediate_key: file(raw.tls.intermediate_key, "intermediate.key"),
            cert: file(raw.tls.cert, "hub.pem"),
            key: file(raw.tls.key, "hub.key"),
            director_key: raw
                .keys
                .director_key
                .map(|p| data_dir.join(p))
                .unwrap_or_else(|| default_director_key(&data_dir)),
            release_key: raw.keys.release_key.map(|p| data_dir.join(p)),
            director_ttl: dur(raw.director_ttl, DEFAULT_DIRECTOR_TTL, "director_ttl")?,
            firing_grace: positive(
                dur(raw.firing_grace, DEFAULT_FIRING_GRACE, "firing_grace")?,
                "firing_grace",
            )?,
            alert_delayed_after: dur(
                raw.alert_delayed_after,
                DEFAULT_ALERT_DELAYED_AFTER,
                "alert_delayed_after",
            )?,
            channels,
            rules: crate::alerts::config::parse_rules(raw.rule).map_err(invalid)?,
            metrics_per_agent_limit: raw
                .metrics
                .per_agent_limit
                .unwrap_or(crate::metrics::DEFAULT_PER_AGENT_LIMIT),
            retention: crate::retention::resolve(raw.retention).map_err(invalid)?,
            replicas: replicas(raw.replicas.unwrap_or_default()).map_err(invalid)?,
            ha: match raw.ha {
                None => None,
                Some(h) => Some(ha(h).map_err(invalid)?),
            },
            hub_name,
            data_dir,
        })
    }

    /// Fail closed: every file the hub needs must exist and be readable.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        // A hub made before the intermediate CA existed still has its CA key online.
        let (issuer_what, issuer_cert, issuer_key) = if self.has_intermediate() {
            (
                "intermediate CA key",
                &self.intermediate_cert,
                &self.intermediate_key,
            )
        } else {
            ("CA key", &self.ca_cert, &self.ca_key)
        };
        for (what, path) in [
            ("CA certificate", &self.ca_cert),
            ("intermediate CA certificate", issuer_cert),
            (issuer_what, issuer_key),
            ("hub certificate", &self.cert),
            ("hub key", &self.key),
            ("director key", &self.director_key),
        ] {
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError::Missing {
                    what,
                    path: path.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether this hub has an intermediate CA (every hub `init` makes now): then `serve`
    /// never reads the root CA key.
    pub fn has_intermediate(&self) -> bool {
        self.intermediate_cert.exists() || !self.ca_key.exists()
    }

    /// Read the operator API token (trimmed; empty is an error).
    pub fn read_api_token(&self) -> Result<String, ConfigError> {
        let t =
            std::fs::read_to_string(&self.api_token_file).map_err(|e| ConfigError::Missing {
                what: "API token file",
                path: self.api_token_file.clone(),
                reason: e.to_string(),
            })?;
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(ConfigError::Missing {
                what: "API token file",
                path: self.api_token_file.clone(),
                reason: "it is empty".into(),
            });
        }
        Ok(t)
    }
}

fn unreachable_defaults(data_dir: &Path) -> HubConfig {
    // The defaults above are constants that parse; this is only a total fallback.
    HubConfig {
        data_dir: data_dir.to_path_buf(),
        hub_name: DEFAULT_HUB_NAME.into(),
        quic_listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
        api_token_file: data_dir.join("api.token"),
        offline_after: Duration::from_secs(30),
        keep_alive_interval: Duration::from_secs(5),
        max_idle_timeout: Duration::from_secs(15),
        max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
        agent_cert_lifetime: DEFAULT_AGENT_CERT_LIFETIME,
        agent_cert_grace: DEFAULT_AGENT_CERT_GRACE,
        server_cert_lifetime: DEFAULT_SERVER_CERT_LIFETIME,
        cert_warning_lead: DEFAULT_CERT_WARNING_LEAD,
        ca_cert: data_dir.join("ca.pem"),
        ca_key: data_dir.join("ca.key"),
        intermediate_cert: data_dir.join("intermediate.pem"),
        intermediate_key: data_dir.join("intermediate.key"),
        cert: data_dir.join("hub.pem"),
        key: data_dir.join("hub.key"),
        director_key: default_director_key(data_dir),
        release_key: None,
        director_ttl: DEFAULT_DIRECTOR_TTL,
        firing_grace: DEFAULT_FIRING_GRACE,
        alert_delayed_after: DEFAULT_ALERT_DELAYED_AFTER,
        channels: Vec::new(),
        rules: Vec::new(),
        metrics_per_agent_limit: crate::metrics::DEFAULT_PER_AGENT_LIMIT,
        retention: crate::retention::RetentionConfig::default(),
        replicas: Vec::new(),
        ha: None,
    }
}

/// Check `[ha]`: etcd URLs (`http://host:port`), a replica name, a key prefix, a lease TTL of
/// 2 s to 60 s, and the shared run history's connection string if one is given (parsed when
/// the hub starts: its parser is the `ha` feature's).
fn ha(raw: RawHa) -> Result<crate::ha::HaConfig, String> {
    let etcd = raw.etcd.unwrap_or_default();
    if etcd.is_empty() {
        return Err(
            "[ha] etcd: list the etcd members' client URLs, e.g. [\"http://10.0.0.5:2379\"]".into(),
        );
    }
    for u in &etcd {
        let rest = u
            .strip_prefix("http://")
            .ok_or_else(|| format!("[ha] etcd: {u:?} is not an http://host:port URL"))?;
        check_replica(rest)
            .map_err(|_| format!("[ha] etcd: {u:?} is not an http://host:port URL"))?;
    }
    let name = raw.name.ok_or_else(|| {
        "[ha] name: give this replica a name (unique among the replicas)".to_string()
    })?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(format!(
            "[ha] name = {name:?}: 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| crate::ha::DEFAULT_PREFIX.to_string());
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
        return Err(format!(
            "[ha] prefix = {prefix:?}: a key path like \"/outpost\" (starts with '/', no trailing '/')"
        ));
    }
    let lease_ttl = match raw.lease_ttl {
        None => crate::ha::DEFAULT_LEASE_TTL,
        Some(s) => parse_duration(&s).map_err(|e| format!("[ha] lease_ttl = {s:?}: {e}"))?,
    };
    if lease_ttl < Duration::from_secs(2) || lease_ttl > Duration::from_secs(60) {
        return Err(format!("[ha] lease_ttl = {:?}: from 2s to 60s", lease_ttl));
    }
    let postgres = match raw.postgres {
        Some(p) if p.trim().is_empty() => {
            return Err("[ha] postgres: empty; give a connection string, e.g. \"host=10.0.0.7 user=outpost dbname=outpost\", or leave it out".into());
        }
        p => p,
    };
    Ok(crate::ha::HaConfig {
        etcd,
        name,
        prefix,
        lease_ttl,
        postgres,
    })
}

/// Most replica addresses `replicas` may list.
pub const MAX_REPLICAS: usize = 32;

/// Check `replicas`: each a `host:port` (a name, an IPv4 address or a bracketed IPv6 address,
/// and a port from 1 to 65535), none twice, at most [`MAX_REPLICAS`].
fn replicas(list: Vec<String>) -> Result<Vec<String>, String> {
    if list.len() > MAX_REPLICAS {
        return Err(format!(
            "replicas: {} addresses, at most {MAX_REPLICAS}",
            list.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        check_replica(&a).map_err(|e| format!("replicas: {a:?} {e}"))?;
        if out.contains(&a) {
            return Err(format!("replicas: {a:?} is listed twice"));
        }
        out.push(a);
    }
    Ok(out)
}

fn check_replica(a: &str) -> Result<(), String> {
    const EXPECTED: &str = "is not an address host:port (e.g. hub-b.example:7443)";
    let Some((host, port)) = a.rsplit_once(':') else {
        return Err(EXPECTED.into());
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        ip6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(EXPECTED.into()),
    }
}

/// The example `hub.toml` that `init` writes.
pub fn example_toml(data_dir: &Path, hub_name: &str) -> String {
    format!(
        "# Outpost hub configuration. Relative paths are relative to data_dir.\n\
         data_dir = {dir:?}\n\
         hub_name = {hub_name:?}\n\
         # QUIC endpoint for agents (mutual TLS, ALPN outpost/2).\n\
         quic_listen = \"{DEFAULT_QUIC_LISTEN}\"\n\
         # Operator HTTP API: plain HTTP on loopback; HTTPS with the hub certificate on any other\n\
         # address (add its names/IPs with `outpost-hub init --san`).\n\
         http_listen = \"{DEFAULT_HTTP_LISTEN}\"\n\
         # The CLI's operator credential (`init` writes the first admin's here).\n\
         api_token_file = \"api.token\"\n\
         # An agent silent this long counts as offline.\n\
         offline_after = \"30s\"\n\
         keep_alive_interval = \"5s\"\n\
         max_idle_timeout = \"15s\"\n\
         # Longest time to live of a bootstrap token (`token create --ttl`).\n\
         max_token_ttl = \"30d\"\n\
         # Agents report themselves stale when they have not heard the director this long.\n\
         director_ttl = \"1d\"\n\
         # Agent certificates live this long and renew over the session at two thirds of it;\n\
         # an agent offline past expiry may still renew within the grace (unless revoked).\n\
         agent_cert_lifetime = \"90d\"\n\
         agent_cert_grace = \"30d\"\n\
         # The hub's own certificate (renewed by the hub at two thirds of it).\n\
         server_cert_lifetime = \"90d\"\n\
         # Warn this long before any certificate expires (logs, `outpost-hub status`).\n\
         cert_warning_lead = \"14d\"\n\
         # Replicas of this hub: the QUIC addresses agents may use, sent at enrollment and on\n\
         # every connection (agents move to the next when one fails). Default: none.\n\
         # replicas = [\"hub-a.example:7443\", \"hub-b.example:7443\"]\n\
         \n\
         [tls]\n\
         # The root CA certificate (its key stays in the offline directory).\n\
         ca_cert = \"ca.pem\"\n\
         intermediate_cert = \"intermediate.pem\"\n\
         intermediate_key = \"intermediate.key\"\n\
         cert = \"hub.pem\"\n\
         key = \"hub.key\"\n\
         \n\
         [keys]\n\
         # The director key (signs assignments, snapshots, commands, acknowledgements), kept\n\
         # outside the data directory. Root and release keys are never here.\n\
         director_key = {director:?}\n",
        dir = data_dir.display().to_string(),
        director = default_director_key(data_dir).display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let c = HubConfig::parse("", Path::new("/etc/outpost/hub.toml")).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/outpost"));
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:7070");
        assert_eq!(c.quic_listen.to_string(), "0.0.0.0:7443");
        assert_eq!(c.offline_after, Duration::from_secs(30));
        assert_eq!(c.ca_cert, PathBuf::from("/etc/outpost/ca.pem"));
        let c = HubConfig::parse(
            "data_dir = \"/var/lib/hub\"\noffline_after = \"1m\"\n[tls]\ncert = \"/x/hub.pem\"\n",
            Path::new("hub.toml"),
        )
        .unwrap();
        assert_eq!(c.director_key, PathBuf::from("/var/lib/hub.director.key"));
        assert_eq!(c.release_key, None);
        assert_eq!(c.director_ttl, DEFAULT_DIRECTOR_TTL);
        assert_eq!(c.cert, PathBuf::from("/x/hub.pem"));
        assert_eq!(c.offline_after, Duration::from_secs(60));
        assert_eq!(
            HubConfig::defaults(Path::new("/d")).store_path(),
            PathBuf::from("/d/hub.redb")
        );
    }

    #[test]
    fn bad_values_and_unknown_keys_are_errors() {
        for text in [
            "http_listen = \"nope\"",
            "offline_after = \"soon\"",
            "colour = 1",
            "[tls]\nskip_verify = true",
        ] {
            assert!(
                matches!(
                    HubConfig::parse(text, Path::new("h.toml")),
                    Err(ConfigError::Invalid { .. })
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = HubConfig::defaults(dir.path());
        let e = c.check_files().unwrap_err().to_string();
        assert!(e.contains("ca.pem"), "{e}");
        let example = example_toml(dir.path(), "h");
        let parsed = HubConfig::parse(&example, &dir.path().join("hub.toml")).unwrap();
        assert_eq!(parsed.hub_name, "h");
        assert_eq!(parsed.ca_key, dir.path().join("ca.key"));
        assert_eq!(parsed.intermediate_key, dir.path().join("intermediate.key"));
    }

    #[test]
    fn certificate_lifecycle_defaults_are_stated_and_configurable() {
        let day = 86_400;
        let c = HubConfig::parse("", Path::new("/h/hub.toml")).unwrap();
        assert_eq!(c.agent_cert_lifetime, Duration::from_secs(90 * day));
        assert_eq!(c.agent_cert_grace, Duration::from_secs(30 * day));
        assert_eq!(c.server_cert_lifetime, Duration::from_secs(90 * day));
        assert_eq!(c.cert_warning_lead, Duration::from_secs(14 * day));
        // The example file states the same defaults.
        let example =
            HubConfig::parse(&example_toml(Path::new("/h"), "h"), Path::new("/h/x")).unwrap();
        assert_eq!(example.agent_cert_lifetime, c.agent_cert_lifetime);
        assert_eq!(example.agent_cert_grace, c.agent_cert_grace);
        assert_eq!(example.server_cert_lifetime, c.server_cert_lifetime);
        assert_eq!(example.cert_warning_lead, c.cert_warning_lead);
        let c = HubConfig::parse(
            "agent_cert_lifetime = \"30s\"\nagent_cert_grace = \"0s\"",
            Path::new("h.toml"),
        )
        .unwrap();
        assert_eq!(c.agent_cert_lifetime, Duration::from_secs(30));
        assert_eq!(c.agent_cert_grace, Duration::ZERO);
        assert!(HubConfig::parse("agent_cert_lifetime = \"0s\"", Path::new("h.toml")).is_err());
    }

    #[test]
    fn ha_names_etcd_members_a_replica_and_a_lease() {
        let c = HubConfig::parse(
            "[ha]\netcd = [\"http://127.0.0.1:2379\", \"http://[::1]:2381\"]\nname = \"hub-a\"\n",
            Path::new("/x/hub.toml"),
        )
        .unwrap();
        let ha = c.ha.unwrap();
        assert_eq!(ha.etcd.len(), 2);
        assert_eq!(
            (ha.name.as_str(), ha.prefix.as_str()),
            ("hub-a", "/outpost")
        );
        assert_eq!(ha.lease_ttl, crate::ha::DEFAULT_LEASE_TTL);
        assert_eq!(ha.election(), "/outpost/leader");
        assert_eq!(ha.postgres, None);
        let with_pg = HubConfig::parse(
            "[ha]\netcd = [\"http://e:2379\"]\nname = \"a\"\npostgres = \"host=db user=outpost\"",
            Path::new("/x/hub.toml"),
        )
        .unwrap();
        assert_eq!(
            with_pg.ha.unwrap().postgres.as_deref(),
            Some("host=db user=outpost")
        );
        assert!(
            HubConfig::parse("", Path::new("/x/hub.toml"))
                .unwrap()
                .ha
                .is_none()
        );
        for (bad, says) in [
            ("[ha]\nname = \"a\"", "[ha] etcd"),
            (
                "[ha]\netcd = [\"127.0.0.1:2379\"]\nname = \"a\"",
                "http://host:port",
            ),
            ("[ha]\netcd = [\"http://e:2379\"]", "[ha] name"),
            (
                "[ha]\netcd = [\"http://e:2379\"]\nname = \"a b\"",
                "[ha] name",
            ),
            (
                "[ha]\netcd = [\"http://e:2379\"]\nname = \"a\"\nprefix = \"x/\"",
                "[ha] prefix",
            ),
            (
                "[ha]\netcd = [\"http://e:2379\"]\nname = \"a\"\nlease_ttl = \"1s\"",
                "from 2s to 60s",
            ),
            (
                "[ha]\netcd = [\"http://e:2379\"]\nname = \"a\"\nttl = \"5s\"",
                "unknown field",
            ),
            (
                "[ha]\netcd = [\"http://e:2379\"]\nname = \"a\"\npostgres = \" \"",
                "[ha] postgres",
            ),
        ] {
            let e = HubConfig::parse(bad, Path::new("/x/hub.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn replicas_are_host_port_addresses_listed_once() {
        let c = HubConfig::parse("", Path::new("h.toml")).unwrap();
        assert!(c.replicas.is_empty());
        let c = HubConfig::parse(
            "replicas = [\"hub-a.example:7443\", \"10.0.0.2:7443\", \"[::1]:7444\"]",
            Path::new("h.toml"),
        )
        .unwrap();
        assert_eq!(
            c.replicas,
            vec!["hub-a.example:7443", "10.0.0.2:7443", "[::1]:7444"]
        );
        for bad in [
            "replicas = [\"hub-a\"]",
            "replicas = [\"hub-a:0\"]",
            "replicas = [\":7443\"]",
            "replicas = [\"hub a:7443\"]",
            "replicas = [\"[nope]:7443\"]",
            "replicas = [\"a:7443\", \"a:7443\"]",
            "replicas = \"a:7443\"",
        ] {
            let e = HubConfig::parse(bad, Path::new("h.toml"));
            assert!(matches!(e, Err(ConfigError::Invalid { .. })), "{bad}");
        }
    }
}
