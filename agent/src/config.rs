//! The agent's configuration file (`agent.toml`).
//!
//! Every key has a default, so an empty file is a valid configuration. Unknown keys are an error
//! (a typo must not silently fall back to a default on a factory machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Raw file form; see [`AgentConfig`] for the resolved form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    workflows_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    max_running: Option<usize>,
    dispatch_ahead: Option<usize>,
    precommit_lead: Option<String>,
    rescan_interval: Option<String>,
    min_free_disk: Option<String>,
    #[serde(default)]
    resources: BTreeMap<String, u32>,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default)]
    logs: RawLogs,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    exec: RawExec,
    hub: Option<RawHub>,
    #[serde(default)]
    metrics: RawMetrics,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    report_interval: Option<String>,
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    address: Option<String>,
    keep_alive: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    max_bytes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_age: Option<String>,
    max_runs_per_workflow: Option<usize>,
    interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    kill_grace: Option<String>,
    cgroup_root: Option<PathBuf>,
    #[serde(default)]
    allowed_users: Vec<String>,
    work_base: Option<PathBuf>,
}

/// The resolved agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the store (`agent.redb`), logs and the control socket live.
    pub state_dir: PathBuf,
    /// Standalone mode: every `*.yaml`, `*.yml` and `*.toml` file here is a workflow.
    pub workflows_dir: Option<PathBuf>,
    /// The local control socket (mode 0600).
    pub socket: PathBuf,
    /// Agent-wide limit on running tasks.
    pub max_running: usize,
    /// How many ready attempts may be committed ahead of a free slot, so that they start without
    /// a commit when a slot frees (0 turns it off). `None`: the default,
    /// [`DISPATCH_AHEAD_PER_SLOT`] per slot; see [`AgentConfig::dispatch_ahead`] and
    /// docs/operations.md.
    pub dispatch_ahead: Option<usize>,
    /// How long before a cron instant its run is committed, so that the process starts at the
    /// instant (see `driver::PRECOMMIT_LEAD`, the default; at most `driver::MAX_PRECOMMIT_LEAD`).
    pub precommit_lead: Duration,
    /// How often the workflows directory is rescanned for changes.
    pub rescan_interval: Duration,
    /// Named local semaphores and their capacities (e.g. `plc-bus = 1`).
    pub resources: BTreeMap<String, u32>,
    /// How long running tasks may finish after SIGTERM/SIGINT before they are terminated.
    pub shutdown_grace: Duration,
    pub log_max_bytes: u64,
    pub retention_max_age: Option<Duration>,
    pub retention_max_runs: Option<usize>,
    pub retention_interval: Duration,
    pub kill_grace: Duration,
    pub cgroup_root: Option<PathBuf>,
    /// `[hub] address`: run under a hub (requires enrollment). Overrides the enrolled address.
    pub hub_address: Option<String>,
    /// `[hub] keep_alive`: interval of the agent's keep-alive packets on an idle connection. It
    /// bounds how long the agent takes to notice a hub that was killed and restarted (the
    /// restarted hub answers the next packet with a stateless reset).
    pub hub_keep_alive: Duration,
    /// `min_free_disk`: below this much free space on the state directory's file system no
    /// attempt starts (see [`crate::disk`]).
    pub min_free_disk: crate::disk::MinFree,
    /// `[metrics] report_interval`: how often the agent sends its figures (telemetry) to the
    /// hub over an open session (the hub's `/metrics` shows them).
    pub metrics_report_interval: Duration,
    /// `[metrics] listen`: where the agent serves its own `GET /metrics` (off when `None`). A
    /// loopback address only: the endpoint has no authentication.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[exec] allowed_users`: users (names or uids) a task's `user` may name; empty (the
    /// default): tasks run as the agent's user only.
    pub allowed_users: Vec<String>,
    /// `[exec] work_base`: base of a relative `working_dir` (default: the state directory).
    pub work_base: Option<PathBuf>,
}

/// Default `[metrics] report_interval`.
pub const DEFAULT_METRICS_REPORT_INTERVAL: Duration = Duration::from_secs(15);

/// Default `[hub] keep_alive`: a killed and restarted hub is noticed within this interval plus a
/// round trip; idle, it costs about two small packets per interval (docs/operations.md).
pub const DEFAULT_HUB_KEEP_ALIVE: Duration = outpost_net::tls::Transport::DEFAULT_KEEP_ALIVE;
const MIN_HUB_KEEP_ALIVE: Duration = Duration::from_millis(100);
/// Below the QUIC idle timeout (15 s) with room for two lost keep-alives.
const MAX_HUB_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A configuration error, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Value {
        path: String,
        key: &'static str,
        message: String,
    },
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/outpost-agent")
}

/// Default dispatch depth per slot (`dispatch_ahead` = this × `max_running`).
///
/// A refill of the dispatch queue is committed once half of it is used, so with four per slot
/// each commit carries about two dispatches per slot (and the exits that came meanwhile). On
/// the benchmark machine (2 CPUs, a 202-task fan-out) one per slot needed a commit per task;
/// four per slot cut the run from ~160 to ~140 ms, while eight per slot was slower again
/// (docs/BENCHMARKS.md).
pub const DISPATCH_AHEAD_PER_SLOT: usize = 4;

impl AgentConfig {
    /// The dispatch depth in effect: as configured, else [`DISPATCH_AHEAD_PER_SLOT`] per slot.
    pub fn dispatch_ahead(&self) -> usize {
        self.dispatch_ahead
            .unwrap_or(DISPATCH_AHEAD_PER_SLOT.saturating_mul(self.max_running))
    }

    /// Defaults rooted at `state_dir`.
    pub fn with_state_dir(state_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            socket: state_dir.join("agent.sock"),
            state_dir,
            workflows_dir: None,
            max_running: default_max_running(),
            dispatch_ahead: None,
            precommit_lead: crate::driver::PRECOMMIT_LEAD,
            rescan_interval: Duration::from_secs(2),
            resources: BTreeMap::new(),
            shutdown_grace: Duration::from_secs(30),
            log_max_bytes: 4 * 1024 * 1024,
            retention_max_age: Some(Duration::from_secs(30 * 86_400)),
            retention_max_runs: Some(1000),
            retention_interval: Duration::from_secs(3600),
            kill_grace: Duration::from_secs(10),
            cgroup_root: None,
            hub_address: None,
            hub_keep_alive: DEFAULT_HUB_KEEP_ALIVE,
            min_free_disk: crate::disk::DEFAULT_MIN_FREE,
            metrics_report_interval: DEFAULT_METRICS_REPORT_INTERVAL,
            metrics_listen: None,
            allowed_users: Vec::new(),
            work_base: None,
        }
    }

    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&p, &text, path.parent())
    }

    /// Parse a config; relative paths are resolved against `base` (the config file's folder).
    pub fn parse(path: &str, text: &str, base: Option<&Path>) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let resolve = |p: PathBuf| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p,
        };
        let state_dir = resolve(raw.state_dir.unwrap_or_else(default_state_dir));
        let mut cfg = AgentConfig::with_state_dir(state_dir);
        cfg.workflows_dir = raw.workflows_dir.map(resolve);
        if let Some(s) = raw.socket {
            cfg.socket = resolve(s);
        }
        if let Some(n) = raw.max_running {
            if n == 0 {
                cfg.max_running = default_max_running();
            } else {
                cfg.max_running = n;
            }
        }
        cfg.dispatch_ahead = raw.dispatch_ahead;
        let dur =
            |key: &'static str, v: &Option<String>| -> Result<Option<Duration>, ConfigError> {
                match v {
                    None => Ok(None),
                    Some(s) => outpost_common::duration::parse_duration(s)
                        .map(Some)
                        .map_err(|e| ConfigError::Value {
                            path: path.to_string(),
                            key,
                            message: e.to_string(),
                        }),
                }
            };
        if let Some(d) = dur("precommit_lead", &raw.precommit_lead)? {
            if d > crate::driver::MAX_PRECOMMIT_LEAD {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "precommit_lead",
                    message: format!(
                        "`{}` is too long; at most {} ms",
                        raw.precommit_lead.as_deref().unwrap_or_default(),
                        crate::driver::MAX_PRECOMMIT_LEAD.as_millis()
                    ),
                });
            }
            cfg.precommit_lead = d;
        }
        if let Some(d) = dur("rescan_interval", &raw.rescan_interval)? {
            cfg.rescan_interval = d.max(Duration::from_millis(100));
        }
        for (name, cap) in &raw.resources {
            if *cap == 0 {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "resources",
                    message: format!("resource `{name}` has capacity 0; it must be at least 1"),
                });
            }
        }
        cfg.resources = raw.resources;
        if let Some(d) = dur("shutdown.grace", &raw.shutdown.grace)? {
            cfg.shutdown_grace = d;
        }
        if let Some(s) = &raw.logs.max_bytes {
            cfg.log_max_bytes =
                outpost_common::size::parse_bytes(s).ok_or_else(|| ConfigError::Value {
                    path: path.to_string(),
                    key: "logs.max_bytes",
                    message: format!("`{s}` is not a size (e.g. 4MiB, 512KiB, 1000000)"),
                })?;
        }
        if let Some(d) = dur("retention.max_age", &raw.retention.max_age)? {
            cfg.retention_max_age = Some(d);
        }
        if let Some(n) = raw.retention.max_runs_per_workflow {
            cfg.retention_max_runs = Some(n);
        }
        if let Some(d) = dur("retention.interval", &raw.retention.interval)? {
            cfg.retention_interval = d.max(Duration::from_secs(1));
        }
        if let Some(d) = dur("exec.kill_grace", &raw.exec.kill_grace)? {
            cfg.kill_grace = d;
        }
        cfg.cgroup_root = raw.exec.cgroup_root.map(resolve);
        for u in &raw.exec.allowed_users {
            if !outpost_common::workflow::valid_run_as_id(u) {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "exec.allowed_users",
                    message: format!("`{u}` is not a user name or a numeric uid"),
                });
            }
        }
        cfg.allowed_users = raw.exec.allowed_users;
        cfg.work_base = raw.exec.work_base.map(resolve);
        let hub = raw.hub.unwrap_or_default();
        if let Some(d) = dur("hub.keep_alive", &hub.keep_alive)? {
            if d < MIN_HUB_KEEP_ALIVE || d > MAX_HUB_KEEP_ALIVE {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "hub.keep_alive",
                    message: format!(
                        "{} is out of range (allowed: 100ms to 10s)",
                        hub.keep_alive.as_deref().unwrap_or_default()
                    ),
                });
            }
            cfg.hub_keep_alive = d;
        }
        cfg.hub_address = hub.address;
        if let Some(d) = dur("metrics.report_interval", &raw.metrics.report_interval)? {
            if d < Duration::from_secs(1) {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "metrics.report_interval",
                    message: "must be at least 1s".into(),
                });
            }
            cfg.metrics_report_interval = d;
        }
        if let Some(l) = &raw.metrics.listen {
            let addr: std::net::SocketAddr = l.parse().map_err(|_| ConfigError::Value {
                path: path.to_string(),
                key: "metrics.listen",
                message: format!("`{l}` is not an address and port (e.g. 127.0.0.1:9464)"),
            })?;
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Value {
                    path: path.to_string(),
                    key: "metrics.listen",
                    message: format!(
                        "`{l}` is not a loopback address: the agent's /metrics has no authentication, so it listens on 127.0.0.1 or ::1 only"
                    ),
                });
            }
            cfg.metrics_listen = Some(addr);
        }
        if let Some(m) = &raw.min_free_disk {
            cfg.min_free_disk =
                crate::disk::MinFree::parse(m).ok_or_else(|| ConfigError::Value {
                    path: path.to_string(),
                    key: "min_free_disk",
                    message: format!("`{m}` is not a size or a share (e.g. 256MiB, 2%)"),
                })?;
        }
        Ok(cfg)
    }

    pub fn store_path(&self) -> PathBuf {
        self.state_dir.join("agent.redb")
    }

    /// The agent's local secrets (`<state_dir>/secrets`, then systemd credentials).
    pub fn secrets(&self) -> crate::secrets::SecretStore {
        crate::secrets::SecretStore::for_state_dir(&self.state_dir)
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// How attempts are run under this configuration (shared by `run` and `serve`).
    pub fn exec_config(&self) -> anyhow::Result<crate::exec::ExecConfig> {
        use anyhow::Context as _;
        let mut exec = crate::exec::ExecConfig::new(
            self.log_dir(),
            std::env::current_exe().context("locating the outpost-agent executable")?,
        );
        exec.log_max_bytes = self.log_max_bytes;
        exec.kill_grace = self.kill_grace;
        exec.cgroup_root = self.cgroup_root.clone();
        exec.clock = std::sync::Arc::new(outpost_common::clock::SystemClock::default());
        exec.secrets = self.secrets();
        exec.run_as = crate::run_as::Policy {
            allowed_users: self.allowed_users.clone(),
            work_base: Some(
                self.work_base
                    .clone()
                    .unwrap_or_else(|| self.state_dir.clone()),
            ),
        };
        Ok(exec)
    }
}

pub fn default_max_running() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = AgentConfig::parse("a.toml", "", Some(Path::new("/etc/outpost"))).unwrap();
        assert_eq!(c.state_dir, default_state_dir());
        assert_eq!(c.socket, default_state_dir().join("agent.sock"));
        assert!(c.max_running >= 1);
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_loopback_only() {
        let c = AgentConfig::parse("a.toml", "", None).unwrap();
        assert_eq!(c.metrics_listen, None);
        let c =
            AgentConfig::parse("a.toml", "[metrics]\nlisten = \"127.0.0.1:9464\"\n", None).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let c = AgentConfig::parse("a.toml", "[metrics]\nlisten = \"[::1]:9464\"\n", None).unwrap();
        assert_eq!(c.metrics_listen, Some("[::1]:9464".parse().unwrap()));
        for bad in ["0.0.0.0:9464", "192.168.1.5:9464", "[::]:9464"] {
            let e = AgentConfig::parse("a.toml", &format!("[metrics]\nlisten = \"{bad}\"\n"), None)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("a.toml: metrics.listen:") && e.contains("not a loopback address"),
                "{bad}: {e}"
            );
        }
        let e = AgentConfig::parse("a.toml", "[metrics]\nlisten = \"localhost\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics.listen:") && e.contains("not an address"),
            "{e}"
        );
    }

    #[test]
    fn the_documented_metrics_listen_block_parses() {
        let doc = include_str!("../../docs/operations.md");
        let block = doc
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("[metrics]\nlisten ="))
            .expect("docs/operations.md has the [metrics] listen example");
        let c = AgentConfig::parse("operations.md", block, None).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn dispatch_depth_defaults_to_four_per_slot_and_can_be_turned_off() {
        let mut c = AgentConfig::parse("a.toml", "max_running = 3\n", None).unwrap();
        assert_eq!(c.dispatch_ahead(), 12);
        // `run --max-running` changes the slots after loading: the default follows.
        c.max_running = 5;
        assert_eq!(c.dispatch_ahead(), 20);
        let off =
            AgentConfig::parse("a.toml", "max_running = 3\ndispatch_ahead = 0\n", None).unwrap();
        assert_eq!(off.dispatch_ahead(), 0);
        let set = AgentConfig::parse("a.toml", "dispatch_ahead = 7\n", None).unwrap();
        assert_eq!(set.dispatch_ahead(), 7);
    }

    #[test]
    fn precommit_lead_defaults_to_50_ms_and_is_bounded() {
        let c = AgentConfig::parse("a.toml", "", None).unwrap();
        assert_eq!(c.precommit_lead, Duration::from_millis(50));
        let c = AgentConfig::parse("a.toml", "precommit_lead = \"400ms\"\n", None).unwrap();
        assert_eq!(c.precommit_lead, Duration::from_millis(400));
        let e = AgentConfig::parse("a.toml", "precommit_lead = \"1m\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.toml: precommit_lead:") && e.contains("at most"),
            "{e}"
        );
    }

    #[test]
    fn min_free_disk_takes_a_size_or_a_share_and_names_a_bad_value() {
        let c = AgentConfig::parse("a.toml", "min_free_disk = \"2%\"\n", None).unwrap();
        assert_eq!(c.min_free_disk, crate::disk::MinFree::Percent(2.0));
        let c = AgentConfig::parse("a.toml", "min_free_disk = \"1GiB\"\n", None).unwrap();
        assert_eq!(c.min_free_disk, crate::disk::MinFree::Bytes(1 << 30));
        let e = AgentConfig::parse("a.toml", "min_free_disk = \"plenty\"\n", None).unwrap_err();
        assert!(e.to_string().contains("min_free_disk"), "{e}");
    }

    #[test]
    fn hub_keep_alive_defaults_below_a_second_and_is_bounded() {
        let c = AgentConfig::parse("a.toml", "", None).unwrap();
        assert_eq!(c.hub_keep_alive, Duration::from_millis(700));
        let c = AgentConfig::parse("a.toml", "[hub]\nkeep_alive = \"5s\"\n", None).unwrap();
        assert_eq!(c.hub_keep_alive, Duration::from_secs(5));
        for bad in ["50ms", "12s"] {
            let e = AgentConfig::parse("a.toml", &format!("[hub]\nkeep_alive = \"{bad}\"\n"), None)
                .unwrap_err();
            assert!(
                e.to_string().contains("hub.keep_alive") && e.to_string().contains("out of range"),
                "{e}"
            );
        }
    }

    #[test]
    fn relative_paths_follow_the_file_and_values_parse() {
        let c = AgentConfig::parse(
            "a.toml",
            "state_dir = \"state\"\nworkflows_dir = \"wf\"\nmax_running = 3\n[resources]\nplc-bus = 1\n[logs]\nmax_bytes = \"1MiB\"\n[shutdown]\ngrace = \"5s\"\n",
            Some(Path::new("/srv/o")),
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/o/state"));
        assert_eq!(c.workflows_dir, Some(PathBuf::from("/srv/o/wf")));
        assert_eq!(c.max_running, 3);
        assert_eq!(c.resources.get("plc-bus"), Some(&1));
        assert_eq!(c.log_max_bytes, 1024 * 1024);
        assert_eq!(c.min_free_disk, crate::disk::DEFAULT_MIN_FREE);
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = AgentConfig::parse("a.toml", "max_runing = 3\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.toml") && e.contains("max_runing"), "{e}");
        let e = AgentConfig::parse("a.toml", "[shutdown]\ngrace = \"soon\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shutdown.grace"), "{e}");
        let e = AgentConfig::parse("a.toml", "[resources]\nplc = 0\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("capacity 0"), "{e}");
    }
}
