//! A real etcd cluster on loopback for the HA tests: `etcd` (Debian's `etcd-server`, installed
//! by scripts/test.sh) members in a scratch directory, on free ports, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{free_port, wait_for};

/// One member.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
}

/// The etcd binary (`OUTPOST_ETCD` overrides `etcd` on the PATH).
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("OUTPOST_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl EtcdCluster {
    /// Start `n` members in `dir` and wait until every one answers healthy.
    pub fn start(dir: &Path, n: usize) -> anyhow::Result<EtcdCluster> {
        std::fs::create_dir_all(dir)?;
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("etcd{i}");
            members.push(Member {
                data_dir: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                name,
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members,
            initial_cluster,
            token: format!("outpost-test-{}", std::process::id()),
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_healthy(i)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let (initial_cluster, token) = (self.initial_cluster.clone(), self.token.clone());
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_bin())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", "new"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            // A write of desired state is one transaction: a rollout step of many agents
            // has many records (docs/operations.md, "High availability").
            .args(["--max-txn-ops", "100000", "--max-request-bytes", "33554432"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (Debian's etcd-server; scripts/test.sh installs it)",
                    etcd_bin().display()
                )
            })?;
        m.child = Some(child);
        Ok(())
    }

    /// Wait until member `i` reports itself healthy (it has a leader and serves reads).
    pub fn wait_healthy(&mut self, i: usize) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/health", self.members[i].client_port);
        let r = wait_for(Duration::from_secs(30), "etcd member healthy", || {
            if let Some(c) = self.members[i].child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(Err(anyhow::anyhow!("etcd exited: {st}")));
            }
            let body = get_text(&url)?;
            body.contains("\"health\":\"true\"").then_some(Ok(()))
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => bail!(
                "{e}\n--- {} log ---\n{}",
                self.members[i].name,
                self.log_tail(i)
            ),
        }
    }

    /// The client URLs of every member, for `[ha] etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The members' client addresses.
    pub fn client_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.members
            .iter()
            .map(|m| std::net::SocketAddr::from(([127, 0, 0, 1], m.client_port)))
            .collect()
    }

    /// `etcd = [...]` as TOML.
    pub fn endpoints_toml(&self) -> String {
        let list: Vec<String> = self.endpoints().iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", list.join(", "))
    }

    /// Kill member `i` with SIGKILL (its data stays; [`EtcdCluster::restart`] brings it back).
    pub fn kill9(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Start member `i` again on its data directory and wait until it is healthy.
    ///
    /// Its ports were free while it was down, so another test's port probe (`free_port` binds
    /// for an instant) may hold one at that moment: a start that fails to bind is tried again
    /// for a few seconds.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            self.spawn(i)?;
            match self.wait_healthy(i) {
                Err(e) if tries < 20 && e.to_string().contains("address already in use") => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
                r => return r,
            }
        }
    }

    /// A v3 request through the member's JSON gateway (`POST /v3/...`).
    pub fn v3(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .context("no etcd member is running")?;
        let url = format!("http://127.0.0.1:{}/v3/{path}", m.client_port);
        let text = ureq::post(&url)
            .send_json(body)?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let r = self.v3(
            "kv/range",
            &serde_json::json!({ "key": b64(key.as_bytes()) }),
        )?;
        let Some(kv) = r["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let v = kv["value"].as_str().unwrap_or_default();
        Ok(Some(String::from_utf8_lossy(&unb64(v)?).into_owned()))
    }

    /// Set `key` to `value`; the revision of the write.
    pub fn put(&self, key: &str, value: &str) -> anyhow::Result<i64> {
        let r = self.v3(
            "kv/put",
            &serde_json::json!({ "key": b64(key.as_bytes()), "value": b64(value.as_bytes()) }),
        )?;
        r["header"]["revision"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .context("etcd sent no revision")
    }

    /// Delete every key under `prefix`.
    pub fn delete_prefix(&self, prefix: &str) -> anyhow::Result<u64> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let r = self.v3(
            "kv/deleterange",
            &serde_json::json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&end) }),
        )?;
        Ok(r["deleted"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0))
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The benchmarks' `--ha`: with `ha`, a three-member cluster in `dir/etcd` and the `[ha]` table
/// of a replica named `bench` on it (to prepend to the hub's configuration); without, nothing.
pub fn bench_ha(ha: bool, dir: &Path) -> anyhow::Result<(Option<EtcdCluster>, String)> {
    if !ha {
        return Ok((None, String::new()));
    }
    let c = EtcdCluster::start(&dir.join("etcd"), 3)?;
    let table = format!("[ha]\netcd = {}\nname = \"bench\"\n", c.endpoints_toml());
    Ok((Some(c), table))
}

/// The body of `GET url`, if it answers.
fn get_text(url: &str) -> Option<String> {
    ureq::get(url).call().ok()?.body_mut().read_to_string().ok()
}

/// Wait until the hub at `http_url` says (`GET /v1/health`) that it leads; how long it took.
pub fn wait_leading(http_url: &str, within: Duration) -> anyhow::Result<Duration> {
    let t = std::time::Instant::now();
    let url = format!("{http_url}/v1/health");
    wait_for(within, "the hub to lead", || {
        let h: serde_json::Value = serde_json::from_str(&get_text(&url)?).ok()?;
        (h["role"] == "leader").then_some(())
    })?;
    Ok(t.elapsed())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill9(i);
        }
    }
}

/// Standard base64 (the gateway's encoding of keys and values).
/// Base64, as etcd's JSON gateway wants keys and values.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}
