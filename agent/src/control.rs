//! The local control socket: a Unix socket (mode 0600) in the state directory, speaking one JSON
//! object per line. The daemon answers each request line with one response line.
//!
//! **API Boundary**: `outpost-agent status|runs|show|logs|trigger|pause|resume|cancel` are
//! clients of this protocol.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::views::RunView;

/// Requests, tagged by `cmd`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Runs {
        workflow: Option<String>,
        limit: usize,
    },
    Show {
        run_id: String,
    },
    Logs {
        run_id: String,
        task: String,
        attempt: Option<u32>,
    },
    Trigger {
        workflow: String,
        params: Vec<(String, String)>,
    },
    Pause {
        workflow: String,
    },
    Resume {
        workflow: String,
    },
    Cancel {
        run_id: String,
    },
    /// `outpost-agent enroll` while the daemon runs: the daemon enrolls with its own store and
    /// starts its hub link, without a restart.
    Enroll {
        hub: String,
        token: String,
        labels: Vec<(String, String)>,
        hub_name: Option<String>,
        name: Option<String>,
    },
    /// Reopen a finished run and run its failed tasks again (`run retry`).
    Retry {
        run_id: String,
        #[serde(default)]
        task: Option<String>,
        #[serde(default)]
        downstream: bool,
        #[serde(default)]
        if_ended_ms: Option<i64>,
    },
    /// Queue runs for past schedule instants (`workflow backfill`).
    Backfill {
        workflow: String,
        instants: Vec<i64>,
        max_active: u32,
    },
    /// A manual run with a past logical time (`trigger --at`).
    TriggerAt {
        workflow: String,
        params: Vec<(String, String)>,
        at_ms: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Error {
        message: String,
    },
    Ok {
        message: String,
    },
    Status(StatusView),
    Runs {
        runs: Vec<RunView>,
    },
    Run(RunView),
    Log {
        path: String,
        attempt: u32,
        running: bool,
    },
    Triggered {
        run_id: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub pid: u32,
    pub started: String,
    pub state_dir: String,
    pub running_tasks: usize,
    pub max_running: usize,
    pub active_runs: usize,
    pub outbox_pending: u64,
    pub workflows: Vec<WorkflowStatus>,
    /// Set while free disk space is below `min_free_disk` (no attempt starts meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_low: Option<String>,
    /// What the agent last heard from the hub's director (`None`: enrolled, never connected,
    /// or not enrolled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub director: Option<DirectorStatus>,
    /// The link to the hub (`None`: not enrolled, or an older daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_link: Option<HubLinkStatus>,
}

/// The hub link as the daemon sees it (kept in memory: a restarted daemon starts afresh).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HubLinkStatus {
    /// The hub's address.
    pub hub: String,
    /// A session is open and the hub welcomed it.
    pub connected: bool,
    /// Since when (RFC 3339).
    pub connected_since: Option<String>,
    /// The last session's failure (why it could not connect, or why it ended).
    pub last_error: Option<String>,
    /// When that was (RFC 3339).
    pub last_error_at: Option<String>,
    /// Status events not yet acknowledged by the hub.
    pub outbox_pending: u64,
    /// The oldest of them: its sequence number...
    pub outbox_oldest_seq: Option<u64>,
    /// ...and when what it reports happened (RFC 3339).
    pub outbox_oldest_at: Option<String>,
    /// Every hub address the link may dial, in order (`[hub] address`, then the hub's
    /// replicas or the address enrolled at); `hub` is the one dialed now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// Freshness of the agent's view of the director, and its clock against the hub's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectorStatus {
    /// The director's metadata has expired (the hub not heard within its lifetime): new
    /// deploys wait; schedules run on.
    pub stale: bool,
    /// When the view expires (or expired), RFC 3339, hub time.
    pub fresh_until: String,
    /// The agent's clock minus the hub's, milliseconds, as last measured.
    pub clock_offset_ms: i64,
    /// The version of the root metadata trusted.
    pub root_version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowStatus {
    pub name: String,
    pub version: u64,
    pub schedule: Option<String>,
    pub paused: bool,
    pub next_fire: Option<String>,
    pub active_runs: usize,
    pub origin: String,
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the agent at {path}: {source} (is `outpost-agent serve` running? pass --config or --socket)"
    )]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad response from the agent: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("the agent closed the connection without answering")]
    Closed,
}

/// Send one request and read one response.
pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut resp = String::new();
    if reader.read_line(&mut resp)? == 0 {
        return Err(ClientError::Closed);
    }
    Ok(serde_json::from_str(&resp)?)
}

/// Largest request line the daemon reads; a longer one drops that connection.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
