//! The agent's own `GET /metrics` (`[metrics] listen` in agent.toml, loopback only), for sites
//! with a local Prometheus; works with or without a hub.
//!
//! A minimal HTTP/1.1 server (the agent carries no HTTP framework): one request head per
//! connection (at most [`MAX_REQUEST_HEAD`] bytes, within [`REQUEST_TIMEOUT`]); `GET /metrics`
//! gets the exposition, any other request 404; then the connection closes. A malformed or
//! oversized request drops its connection only. The figures come from the driver
//! ([`Event::Figures`], which does not reset the window of the hub's telemetry report); the
//! exposition is written by `prometheus-client`, with the hub's names for the same figures
//! (`outpost_agent_*`, without the hub's `agent` label).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::driver::{Event, LocalFigures};

/// Largest request head read; a longer one drops the connection.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head (and to take the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// The content type of the exposition (OpenMetrics text, as `prometheus-client` writes it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn gauge(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, g),
        None => reg.register(name, help, g),
    }
}

/// The exposition of the agent's figures (OpenMetrics text, ending `# EOF`).
pub fn render(f: &LocalFigures) -> String {
    let t = &f.now;
    let mut reg = Registry::with_prefix("outpost");
    gauge(
        &mut reg,
        "agent_outbox_pending",
        "Outbox entries not yet acknowledged by the hub",
        None,
        t.outbox_pending,
    );
    gauge(
        &mut reg,
        "agent_queue_depth",
        "Tasks ready and waiting for a slot",
        None,
        t.queue_depth,
    );
    gauge(
        &mut reg,
        "agent_running_tasks",
        "Task attempts running",
        None,
        t.running,
    );
    gauge(
        &mut reg,
        "agent_store",
        "Size of the agent's store file",
        Some(Unit::Bytes),
        t.store_bytes,
    );
    gauge(
        &mut reg,
        "agent_disk_free",
        "Free space of the file system holding the agent's store",
        Some(Unit::Bytes),
        t.disk_free_bytes,
    );
    gauge(
        &mut reg,
        "agent_disk_total",
        "Total space of the file system holding the agent's store",
        Some(Unit::Bytes),
        t.disk_total_bytes,
    );
    reg.register_with_unit(
        "agent_run_start_lateness",
        "Start lateness of the scheduled and catch-up runs started since the agent started",
        Unit::Seconds,
        f.lateness.clone(),
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        tracing::warn!("encoding the agent's metrics: {e}");
    }
    out
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    Other,
}

/// Parse a request head (up to its blank line). `None`: not an HTTP/1.x request.
fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(if method == "GET" && path == "/metrics" {
        Request::Metrics
    } else {
        Request::Other
    })
}

/// Serve `GET /metrics` on `listener` until the driver stops.
pub async fn serve(listener: TcpListener, tx: mpsc::UnboundedSender<Event>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &tx)).await
                    {
                        tracing::debug!("metrics connection: {e}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if tx.is_closed() {
            break;
        }
    }
}

/// One connection: read one request head, answer, close. A bad request drops the connection.
async fn handle(mut stream: TcpStream, tx: &mpsc::UnboundedSender<Event>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if head.len() > MAX_REQUEST_HEAD {
            tracing::debug!("metrics request head too long: connection dropped");
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    };
    let Some(req) = parse_head(&head[..end]) else {
        tracing::debug!("malformed metrics request: connection dropped");
        return;
    };
    let (status, ctype, body) = match req {
        Request::Metrics => {
            let (reply, rx) = oneshot::channel();
            if tx.send(Event::Figures(reply)).is_err() {
                return;
            }
            let Ok(figures) = rx.await else { return };
            ("200 OK", CONTENT_TYPE, render(&figures))
        }
        Request::Other => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the agent serves GET /metrics only\n".to_string(),
        ),
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.write_all(answer.as_bytes()).await {
        tracing::debug!("metrics answer: {e}");
        return;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn exposition_names_the_agent_figures_as_the_hub_does_without_an_agent_label() {
        let lateness = Histogram::new([0.1, 1.0]);
        lateness.observe(0.25);
        let f = LocalFigures {
            now: outpost_common::proto::AgentTelemetry {
                at_ms: 0,
                outbox_pending: 3,
                queue_depth: 2,
                running: 1,
                store_bytes: 4096,
                disk_free_bytes: 1000,
                disk_total_bytes: 5000,
                max_lateness_ms: 0,
                runs_started: 0,
            },
            lateness,
        };
        let text = render(&f);
        for line in [
            "# TYPE outpost_agent_outbox_pending gauge",
            "outpost_agent_outbox_pending 3",
            "outpost_agent_queue_depth 2",
            "outpost_agent_running_tasks 1",
            "# UNIT outpost_agent_store_bytes bytes",
            "outpost_agent_store_bytes 4096",
            "outpost_agent_disk_free_bytes 1000",
            "outpost_agent_disk_total_bytes 5000",
            "# TYPE outpost_agent_run_start_lateness_seconds histogram",
            "outpost_agent_run_start_lateness_seconds_count 1",
            "outpost_agent_run_start_lateness_seconds_bucket{le=\"0.1\"} 0",
            "outpost_agent_run_start_lateness_seconds_bucket{le=\"1.0\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("agent=\""), "no agent label: {text}");
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Some(Request::Metrics)
        );
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0"),
            Some(Request::Metrics)
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1"), Some(Request::Other));
        assert_eq!(parse_head(b"POST /metrics HTTP/1.1"), Some(Request::Other));
        for bad in [
            &b"garbage"[..],
            b"GET /metrics",
            b"GET /metrics HTTP/2 extra",
            b"GET /metrics SPDY/3",
            b"\xff\xfe /metrics HTTP/1.1",
        ] {
            assert_eq!(parse_head(bad), None, "{bad:?}");
        }
    }
}
