//! Test harness for Outpost's end-to-end tests and benchmarks: real `outpost-agent` processes,
//! real stores, in temporary directories. Nothing here mocks the store or the processes.
pub mod bench;
pub mod etcd;
pub mod history;
pub mod loadgen;
pub mod postgres;
pub mod relay;
pub mod tcprelay;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// Directory holding the workspace's built binaries (`target/debug` when run by `cargo test`).
/// `OUTPOST_BIN_DIR` overrides it (the benchmark harness points it at `target/release`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OUTPOST_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub fn agent_bin() -> PathBuf {
    bin_dir().join("outpost-agent")
}

/// Repository root (for `examples/`, `deploy/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A scratch directory removed on drop (kept when `OUTPOST_KEEP_TEST_DIRS` is set).
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(tag: &str) -> anyhow::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("outpost-{tag}-"))
            .tempdir()?;
        Ok(Scratch { dir })
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn write(&self, rel: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, contents)?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("OUTPOST_KEEP_TEST_DIRS").is_some() {
            let p = self.dir.path().to_path_buf();
            eprintln!("kept test dir {}", p.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::TempDir::new().unwrap_or_else(|_| std::process::abort()),
            ));
        }
    }
}

/// Run `outpost-agent ARGS` to completion.
pub fn agent(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(agent_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {:?}", agent_bin().display(), args))?;
    Ok(out)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `outpost-agent run FILE --output json --state-dir DIR ...` → (exit code, parsed summary).
pub fn run_json(
    file: &Path,
    state_dir: &Path,
    extra: &[&str],
) -> anyhow::Result<(i32, serde_json::Value)> {
    let f = file.display().to_string();
    let s = state_dir.display().to_string();
    let mut args = vec![
        "run",
        f.as_str(),
        "--output",
        "json",
        "--state-dir",
        s.as_str(),
    ];
    args.extend_from_slice(extra);
    let out = agent(&args)?;
    let code = out.status.code().unwrap_or(-1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "run output is not JSON (exit {code}); stdout: {} stderr: {}",
            stdout(&out),
            stderr(&out)
        )
    })?;
    Ok((code, v))
}

/// The task object named `id` in a run summary.
pub fn task<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["task"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

/// Poll `f` until it returns `Some`, or fail after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `outpost-agent serve` daemon.
pub struct Daemon {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub stderr_path: PathBuf,
    /// `RUST_LOG` for the daemon (default: `$OUTPOST_TEST_LOG`, else `info`).
    pub rust_log: Option<String>,
    /// More environment for the process from its next (re)start (e.g. libfaketime).
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Write `agent.toml` (state in `dir/state`, workflows in `dir/workflows`) with `extra` TOML
    /// appended, and start the daemon; waits until its control socket answers.
    pub fn start(dir: &Path, extra: &str) -> anyhow::Result<Daemon> {
        Daemon::start_logged(dir, extra, None)
    }

    /// [`Daemon::start`] with an explicit `RUST_LOG` filter (the benchmark harness parses the
    /// driver's debug events).
    pub fn start_logged(dir: &Path, extra: &str, rust_log: Option<&str>) -> anyhow::Result<Daemon> {
        let state_dir = dir.join("state");
        let wf = dir.join("workflows");
        std::fs::create_dir_all(&wf)?;
        let config = dir.join("agent.toml");
        if !config.exists() {
            std::fs::write(
                &config,
                format!(
                    "state_dir = \"{}\"\nworkflows_dir = \"{}\"\nrescan_interval = \"200ms\"\n{extra}\n",
                    state_dir.display(),
                    wf.display()
                ),
            )?;
        }
        let socket = state_dir.join("agent.sock");
        let mut d = Daemon {
            child: None,
            config,
            socket,
            state_dir,
            stderr_path: dir.join("agent.stderr"),
            rust_log: rust_log.map(str::to_string),
            env: Vec::new(),
        };
        d.restart()?;
        Ok(d)
    }

    /// Start (again) with the same config and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)?;
        let child = Command::new(agent_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .env(
                "RUST_LOG",
                self.rust_log.clone().unwrap_or_else(|| {
                    std::env::var("OUTPOST_TEST_LOG").unwrap_or_else(|_| "info".into())
                }),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning outpost-agent serve")?;
        self.child = Some(child);
        let sock = self.socket.clone();
        let cfg = self.config.clone();
        let r = wait_for(
            Duration::from_secs(20),
            "the agent's control socket",
            || {
                if let Some(c) = self.child.as_mut()
                    && let Ok(Some(st)) = c.try_wait()
                {
                    return Some(Err(anyhow::anyhow!("agent exited early: {st}")));
                }
                if !sock.exists() {
                    return None;
                }
                let out = agent(&["status", "--config", cfg.to_str().unwrap_or_default()]).ok()?;
                out.status.success().then_some(Ok(()))
            },
        );
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => bail!("{e}\n--- agent stderr ---\n{}", self.stderr_tail()),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `outpost-agent CMD --config CFG ARGS...`
    pub fn ctl(&self, cmd: &str, args: &[&str]) -> anyhow::Result<Output> {
        let cfg = self.config.display().to_string();
        let mut all = vec![cmd, "--config", cfg.as_str()];
        all.extend_from_slice(args);
        agent(&all)
    }

    pub fn ctl_json(&self, cmd: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--output", "json"]);
        let out = self.ctl(cmd, &a)?;
        if !out.status.success() {
            bail!("{cmd} {args:?} failed: {}{}", stdout(&out), stderr(&out));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// All runs (newest first), as JSON objects.
    pub fn runs(&self, workflow: Option<&str>) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut args = vec!["--limit", "10000"];
        if let Some(w) = workflow {
            args.extend_from_slice(&["--workflow", w]);
        }
        let v = self.ctl_json("runs", &args)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// kill -9.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a graceful exit (up to `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            bail!("not running")
        };
        let pid = rustix::process::Pid::from_raw(c.id() as i32).context("pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if start.elapsed() > timeout {
                let _ = c.kill();
                bail!("agent did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        let start = s.len().saturating_sub(4000);
        s[s.floor_char_boundary(start)..].to_string()
    }

    pub fn workflows_dir(&self) -> PathBuf {
        self.config
            .parent()
            .map(|p| p.join("workflows"))
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn hub_bin() -> PathBuf {
    bin_dir().join("outpost-hub")
}

/// A free port on 127.0.0.1 (UDP and TCP are probed; the port is released for the caller).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(u) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = u.local_addr() else { continue };
        if std::net::TcpListener::bind(("127.0.0.1", addr.port())).is_ok() {
            return addr.port();
        }
    }
    0
}

/// A running `outpost-hub serve`, initialised in its own data directory, bound to loopback.
pub struct Hub {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    /// Where `init` put the root and release keys (`root-1.key`, `release-1.key`).
    pub offline_dir: PathBuf,
    pub config: PathBuf,
    pub http_url: String,
    pub quic_addr: std::net::SocketAddr,
    pub api_token: String,
    pub stderr_path: PathBuf,
    /// More environment for `serve` from its next (re)start (e.g. libfaketime).
    pub env: Vec<(String, String)>,
}

/// Copy the directory tree `from` to `to` (directories and regular files; sockets are left).
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        let ty = e.file_type()?;
        if ty.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else if ty.is_file() {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

impl Hub {
    /// A replica of this (stopped) hub in `dir`: a copy of its data directory and director key,
    /// on its own loopback ports, with its configuration otherwise. Not started.
    pub fn replica(&self, dir: &Path) -> anyhow::Result<Hub> {
        let data_dir = dir.join("hub");
        copy_dir(&self.data_dir, &data_dir)?;
        let key = |d: &Path| format!("{}.director.key", d.display());
        std::fs::copy(key(&self.data_dir), key(&data_dir))?;
        let quic_port = free_port();
        let http_port = free_port();
        let config = dir.join("hub.toml");
        let text = std::fs::read_to_string(&self.config)?
            .replace(
                &format!("\"{}\"", self.data_dir.display()),
                &format!("\"{}\"", data_dir.display()),
            )
            .replace(
                &format!("quic_listen = \"{}\"", self.quic_addr),
                &format!("quic_listen = \"127.0.0.1:{quic_port}\""),
            )
            .replace(
                &format!(
                    "http_listen = \"{}\"",
                    self.http_url.trim_start_matches("http://")
                ),
                &format!("http_listen = \"127.0.0.1:{http_port}\""),
            );
        std::fs::write(&config, text)?;
        Ok(Hub {
            child: None,
            data_dir,
            offline_dir: self.offline_dir.clone(),
            config,
            http_url: format!("http://127.0.0.1:{http_port}"),
            quic_addr: format!("127.0.0.1:{quic_port}").parse()?,
            api_token: self.api_token.clone(),
            stderr_path: dir.join("hub.stderr"),
            env: Vec::new(),
        })
    }

    /// `outpost-hub init` in `dir/hub`, a config on free loopback ports (`extra` TOML appended),
    /// then `serve`; waits until the HTTP API answers.
    pub fn start(dir: &Path, extra: &str) -> anyhow::Result<Hub> {
        Hub::start_init(dir, &[], extra)
    }

    /// [`Hub::start`] with extra `outpost-hub init` arguments (e.g. `--name`).
    ///
    /// Unless `extra` has its own `[keys]` table, the hub signs what is applied with the
    /// release key `init` left in the offline directory (`[keys] release_key`, the lab setup
    /// `dev` uses), so a test that is not about releases deploys with `workflow apply` alone.
    /// [`Hub::start_offline_release`] keeps the release key off the hub.
    pub fn start_init(dir: &Path, init_args: &[&str], extra: &str) -> anyhow::Result<Hub> {
        let auto = !extra.contains("[keys]");
        Hub::start_with(dir, init_args, extra, auto)
    }

    /// A hub whose release keys stay in the offline directory: an applied version waits for
    /// `release approve` (or `sign` + `submit`).
    pub fn start_offline_release(
        dir: &Path,
        init_args: &[&str],
        extra: &str,
    ) -> anyhow::Result<Hub> {
        Hub::start_with(dir, init_args, extra, false)
    }

    fn start_with(
        dir: &Path,
        init_args: &[&str],
        extra: &str,
        auto_release: bool,
    ) -> anyhow::Result<Hub> {
        let data_dir = dir.join("hub");
        let out = Command::new(hub_bin())
            .args(["init", "--data-dir"])
            .arg(&data_dir)
            .args(init_args)
            .output()?;
        if !out.status.success() {
            bail!("outpost-hub init failed: {}{}", stdout(&out), stderr(&out));
        }
        let quic_port = free_port();
        let http_port = free_port();
        let config = dir.join("hub.toml");
        // `init`'s offline directory: `--offline-dir`, else `<data_dir>.offline` beside it.
        let offline_dir = init_args
            .iter()
            .position(|a| *a == "--offline-dir")
            .and_then(|i| init_args.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(format!("{}.offline", data_dir.display())));
        // The lab setup: a copy of the release key beside the config (the hub never reads the
        // offline directory).
        let keys = if auto_release {
            let lab_key = dir.join("release-1.key");
            std::fs::copy(offline_dir.join("release-1.key"), &lab_key)?;
            format!("\n[keys]\nrelease_key = \"{}\"\n", lab_key.display())
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\nquic_listen = \"127.0.0.1:{quic_port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\noffline_after = \"3s\"\n{extra}\n{keys}",
                data_dir.display()
            ),
        )?;
        let api_token = std::fs::read_to_string(data_dir.join("api.token"))?
            .trim()
            .to_string();
        let mut hub = Hub {
            child: None,
            offline_dir,
            data_dir,
            config,
            http_url: format!("http://127.0.0.1:{http_port}"),
            quic_addr: format!("127.0.0.1:{quic_port}").parse()?,
            api_token,
            stderr_path: dir.join("hub.stderr"),
            env: Vec::new(),
        };
        hub.restart()?;
        Ok(hub)
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)?;
        let child = Command::new(hub_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().cloned())
            .env(
                "RUST_LOG",
                std::env::var("OUTPOST_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning outpost-hub serve")?;
        self.child = Some(child);
        let r = wait_for(Duration::from_secs(20), "the hub's API", || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(Err(anyhow::anyhow!("hub exited early: {st}")));
            }
            let out = self.cli(&["agent", "list", "--output", "json"]).ok()?;
            out.status.success().then_some(Ok(()))
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => bail!("{e}\n--- hub stderr ---\n{}", self.stderr_tail()),
        }
    }

    /// `outpost-hub ARGS` against this hub (address and token through the environment), as
    /// the first admin (`init`'s credential).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.cli_as(&self.api_token, args)
    }

    /// `outpost-hub ARGS` against this hub with the operator credential `credential`.
    pub fn cli_as(&self, credential: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(hub_bin())
            .args(args)
            .env("OUTPOST_HUB_URL", &self.http_url)
            .env("OUTPOST_HUB_TOKEN", credential)
            .stdin(Stdio::null())
            .output()?)
    }

    /// A new operator credential: `operator create NAME --role ROLE [--pools POOLS]`.
    pub fn operator(&self, name: &str, role: &str, pools: &str) -> anyhow::Result<String> {
        let mut args = vec!["operator", "create", name, "--role", role];
        if !pools.is_empty() {
            args.extend_from_slice(&["--pools", pools]);
        }
        let v = self.json(&args)?;
        v["credential"]
            .as_str()
            .map(String::from)
            .context("operator create: no credential in the answer")
    }

    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        self.json_as(&self.api_token, args)
    }

    /// [`Hub::json`] with the operator credential `credential`.
    pub fn json_as(&self, credential: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--output", "json"]);
        let out = self.cli_as(credential, &a)?;
        if !out.status.success() {
            bail!(
                "outpost-hub {args:?} failed: {}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("outpost-hub {args:?}: not JSON: {}", stdout(&out)))
    }

    /// A single-use bootstrap token.
    pub fn token(&self, labels: &str) -> anyhow::Result<String> {
        let mut args = vec!["token", "create", "--ttl", "10m"];
        if !labels.is_empty() {
            args.extend_from_slice(&["--labels", labels]);
        }
        let v = self.json(&args)?;
        v["token"]
            .as_str()
            .map(String::from)
            .context("token create: no token in the answer")
    }

    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        s[s.floor_char_boundary(start)..].to_string()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Enroll an agent whose directory is `dir` with `hub_addr` (the hub itself or a relay in front
/// of it), then start it: its config points at `hub_addr`.
pub fn enrolled_agent(
    dir: &Path,
    hub: &Hub,
    hub_addr: std::net::SocketAddr,
    labels: &str,
    extra: &str,
) -> anyhow::Result<Daemon> {
    std::fs::create_dir_all(dir)?;
    let state_dir = dir.join("state");
    let wf = dir.join("workflows");
    std::fs::create_dir_all(&wf)?;
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\nrescan_interval = \"200ms\"\n{extra}\n[hub]\naddress = \"{hub_addr}\"\n",
            state_dir.display(),
            wf.display()
        ),
    )?;
    let token = hub.token(labels)?;
    let cfg = config.display().to_string();
    let addr = hub_addr.to_string();
    let mut args = vec![
        "enroll",
        "--config",
        cfg.as_str(),
        "--hub",
        addr.as_str(),
        "--token",
        token.as_str(),
    ];
    if !labels.is_empty() {
        args.extend_from_slice(&["--labels", labels]);
    }
    let out = agent(&args)?;
    if !out.status.success() {
        bail!("enroll failed: {}{}", stdout(&out), stderr(&out));
    }
    Daemon::start(dir, extra)
}

/// The load average (1, 5, 15 min) as `/proc/loadavg` gives it, for benchmark reports.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// This machine for benchmark reports: nproc, CPU model, memory, kernel.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "mem_total": mem,
        "kernel": kernel,
    })
}

/// The multi-threaded runtime of a benchmark binary; exits with code 2 if it cannot start.
pub fn bench_runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            std::process::exit(2);
        }
    }
}

/// Run a benchmark to its JSON report on [`bench_runtime`]: print it, or the error (exit 1).
pub fn bench_main(f: impl std::future::Future<Output = anyhow::Result<serde_json::Value>>) {
    match bench_runtime().block_on(f) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
