//! How the ops CLI answers: the output format, exit codes and errors, and the text helpers every
//! resource's views share.
//!
//! Exit codes (the table in docs/operations.md, "Exit codes"): 0 success; 1 failure (an
//! operation the hub refused or that failed on an agent); 2 bad input, usage or setup (wrong
//! token, bad configuration); 3 not found; 4 conflict with the hub's state (pinned, rollout in
//! progress, exists); 5 hub unreachable (no connection, TLS failure); 65 invalid workflow files.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

use crate::client::ClientError;

pub(crate) use outpost_common::text::table;

/// Exit code of a failed or refused operation.
pub(crate) const EXIT_FAIL: u8 = 1;
/// Exit code of bad input, usage or setup.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of a thing named that does not exist (HTTP 404).
pub(crate) const EXIT_NOT_FOUND: u8 = 3;
/// Exit code of an operation the hub's state does not allow now (HTTP 409).
pub(crate) const EXIT_CONFLICT: u8 = 4;
/// Exit code of a hub that cannot be reached (connection, TLS).
pub(crate) const EXIT_UNREACHABLE: u8 = 5;
/// Exit code of invalid workflow files (`EX_DATAERR`).
pub(crate) const EXIT_DATA: u8 = 65;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Aligned tables and plain text.
    #[default]
    Text,
    /// JSON.
    Json,
}

/// Failure categories mapped to exit codes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Exit 1.
    #[error("{0}")]
    Fail(String),
    /// Exit 2.
    #[error("{0}")]
    Usage(String),
    /// Another documented exit code (`EXIT_*`).
    #[error("{1}")]
    Code(u8, String),
}

impl CliError {
    /// The process exit code of this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Fail(_) => EXIT_FAIL,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Code(c, _) => *c,
        }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { status: 404, .. } => CliError::Code(EXIT_NOT_FOUND, e.to_string()),
            ClientError::Api { status: 409, .. } => CliError::Code(EXIT_CONFLICT, e.to_string()),
            ClientError::Api { .. } | ClientError::Decode(_) => CliError::Fail(e.to_string()),
            ClientError::Transport { .. } => CliError::Code(EXIT_UNREACHABLE, e.to_string()),
            ClientError::Unauthorized(_) => CliError::Usage(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Usage(format!("{e:#}"))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Fail(e.to_string())
    }
}

/// What a command handler returns.
pub(crate) type CliResult = Result<ExitCode, CliError>;

/// Print a value as pretty JSON (`--output json`).
pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    out(&format!("{}\n", serde_json::to_string_pretty(v)?))
}

/// Write to stdout and flush. A closed pipe (`| head`) ends the process with exit 0: the
/// reader has what it wanted.
pub(crate) fn out(s: &str) -> Result<(), CliError> {
    out_bytes(s.as_bytes())
}

/// [`out`] for bytes (a task's log is not necessarily UTF-8).
pub(crate) fn out_bytes(b: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    match o.write_all(b).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(CliError::Fail(format!("writing to stdout: {e}"))),
    }
}

/// From now on Ctrl-C (SIGINT) ends the process with exit 0: for the commands that run until
/// interrupted (`--watch`, `run logs -f`), an interrupt is how they are meant to end.
pub(crate) fn exit_zero_on_interrupt() {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt.block_on(async {
            let sig = tokio::signal::ctrl_c();
            tokio::pin!(sig);
            // Registered once the future is first polled: say so before waiting.
            let _ = futures_poll_once(&mut sig).await;
            let _ = tx.send(());
            if sig.await.is_ok() {
                std::process::exit(0);
            }
        });
    });
    // Wait (briefly) until the handler is installed, so an early Ctrl-C is not lost.
    let _ = rx.recv_timeout(std::time::Duration::from_secs(1));
}

/// Poll a future once (installs tokio's signal handler) without waiting for it.
async fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx).is_ready())
    })
    .await
}

/// `--watch`: run `draw` every `every` until interrupted (Ctrl-C: exit 0). Text output clears
/// a terminal before each redraw (or separates the draws with a blank line when not a
/// terminal); JSON output prints one compact JSON document per refresh (one a line).
pub(crate) fn watch(
    every: std::time::Duration,
    mut draw: impl FnMut() -> Result<(), CliError>,
    output: Output,
) -> CliResult {
    use std::io::IsTerminal as _;
    exit_zero_on_interrupt();
    let tty = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        if output == Output::Text {
            if tty {
                out("\x1b[H\x1b[2J")?;
            } else if !first {
                out("\n")?;
            }
        }
        first = false;
        draw()?;
        std::thread::sleep(every);
    }
}

/// Print rows as JSON: pretty once, or one compact line per refresh under `--watch`.
pub(crate) fn print_json_rows<T: Serialize>(v: &T, watching: bool) -> Result<(), CliError> {
    if watching {
        out(&format!("{}\n", serde_json::to_string(v)?))
    } else {
        print_json(v)
    }
}

/// `--watch [SECS]`: the redraw interval (at least 0.1 s).
pub(crate) fn watch_interval(secs: f64) -> Result<std::time::Duration, CliError> {
    if !(0.1..=86_400.0).contains(&secs) {
        return Err(CliError::Usage(format!(
            "--watch {secs}: expected seconds between 0.1 and 86400"
        )));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `-` for an empty cell.
pub(crate) fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

/// `k=v,k=v` as a map (labels on the command line).
pub(crate) fn fmt_labels(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
