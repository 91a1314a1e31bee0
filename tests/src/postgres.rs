//! A real PostgreSQL server on loopback for the HA tests: Debian's `postgresql` (installed by
//! scripts/test-deps.sh), a fresh cluster in a scratch directory on a free port, set up with
//! the shipped deploy/ha/postgres.sql (the hub's role and database), killed on drop. PostgreSQL refuses to run as root: run as root, the server runs as the `postgres` user
//! the package creates (its uid set before exec, so the server is the process the test holds).

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::free_port;

/// PostgreSQL's programs: `OUTPOST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin` (Debian
/// keeps them off the PATH).
pub fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("OUTPOST_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql): apt-get install postgresql")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .context("no /usr/lib/postgresql/*/bin/initdb: apt-get install postgresql")
}

/// A running PostgreSQL server with a database `outpost` owned by the role `outpost`, as
/// deploy/ha/postgres.sql makes them (every local connection is trusted).
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// (uid, gid) to run the server as (root runs it as `postgres`).
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let o = Command::new("id").args([flag, "postgres"]).output()?;
        if !o.status.success() {
            bail!(
                "no `postgres` user to run PostgreSQL as (apt-get install postgresql creates it)"
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    /// Create a cluster in `dir` and start it; returns once the `outpost` database exists.
    pub fn start(dir: &Path) -> anyhow::Result<Postgres> {
        let bin = pg_bin_dir()?;
        std::fs::create_dir_all(dir)?;
        let user = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let data = dir.join("data");
        if let Some((uid, gid)) = user {
            // The server's user must reach its directory: every ancestor the scratch directory
            // made private gets search permission only.
            let mut p = dir.to_path_buf();
            loop {
                let mode = std::fs::metadata(&p)?.permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode | 0o011))?;
                }
                if !p.pop() || p.as_os_str().is_empty() || p == Path::new("/") {
                    break;
                }
            }
            std::fs::create_dir_all(&data)?;
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.stdin(Stdio::null()).output().context("initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut pg = Postgres {
            bin,
            log: dir.join("postgres.log"),
            data,
            port: free_port(),
            user,
            child: None,
        };
        pg.spawn()?;
        pg.wait_ready()?;
        pg.psql_as(
            "postgres",
            "postgres",
            &[
                "-f",
                &crate::repo_root()
                    .join("deploy/ha/postgres.sql")
                    .display()
                    .to_string(),
            ],
        )?;
        Ok(pg)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().context("starting postgres")?);
        Ok(())
    }

    /// Wait until it answers; a server that exits meanwhile is started again (after a crash
    /// the old server's processes may hold its shared memory for a moment).
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .psql_as("postgres", "postgres", &["-c", "SELECT 1"])
                .is_ok()
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "postgres did not accept connections in 60 s\n{}",
                    self.log_tail()
                );
            }
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.spawn()?;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection string of the `outpost` database (`[ha] postgres`).
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=outpost dbname=outpost",
            self.port
        )
    }

    /// Run `sql` in `db` as the hub's role with psql; its unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        self.psql_as("outpost", db, &["-c", sql])
    }

    fn psql_as(&self, user: &str, db: &str, args: &[&str]) -> anyhow::Result<String> {
        let out: Output = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!("psql {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Kill the server with SIGKILL (a crash: what it committed survives in its WAL), then
    /// start it again on the same port and wait until it answers.
    pub fn crash_and_restart(&mut self, down_for: Duration) -> anyhow::Result<()> {
        self.kill9();
        std::thread::sleep(down_for);
        // The postmaster's children end once they see it gone; a new one waits for them.
        self.spawn()?;
        self.wait_ready()
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        s.get(start..).unwrap_or(&s).to_string()
    }
}

/// For the benchmarks: with `on`, a PostgreSQL in `dir/pg`, and the `[ha]` table `ha` with its
/// `postgres` line (keep the server until the end: dropping it stops it).
pub fn bench_postgres(
    on: bool,
    dir: &Path,
    ha: String,
) -> anyhow::Result<(Option<Postgres>, String)> {
    if !on {
        return Ok((None, ha));
    }
    let pg = Postgres::start(&dir.join("pg"))?;
    let ha = format!("{ha}postgres = \"{}\"\n", pg.conninfo());
    Ok((Some(pg), ha))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill9();
    }
}
