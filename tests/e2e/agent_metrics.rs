//! The agent's own `/metrics` (`[metrics] listen`) with real parts: a standalone
//! `outpost-agent serve` runs a workflow; its exposition, fetched over TCP on loopback, passes
//! `promtool check metrics` (Debian's `prometheus` package) and shows the run's start; a garbage,
//! an oversized and a silent request each lose only their own connection, and the agent keeps
//! serving.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_tests::{Daemon, Scratch, free_port, wait_for};

/// Send `request` and read the answer to the end (the server closes): the raw bytes.
fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may drop the connection before it has read all of an oversized request.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// GET `path`: (status line, headers, body).
fn get(port: u16, path: &str) -> (String, String, String) {
    let raw = exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn promtool() -> &'static Path {
    let p = Path::new("/usr/bin/promtool");
    assert!(
        p.exists(),
        "promtool is not installed: `apt-get install prometheus` (Debian) provides it"
    );
    p
}

#[test]
fn standalone_agent_serves_its_metrics_and_survives_bad_requests() {
    let s = Scratch::new("agent-metrics").unwrap();
    let port = free_port();
    let d = Daemon::start(
        s.path(),
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    std::fs::write(
        d.workflows_dir().join("tick.yaml"),
        "name: tick\nschedule: '* * * * * *'\ncatchup: none\ntasks:\n  t:\n    command: [/bin/true]\n",
    )
    .unwrap();

    // A client that connects and says nothing holds its own connection only (until the
    // server's request timeout).
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();

    let body = wait_for(Duration::from_secs(30), "started runs in /metrics", || {
        let (status, headers, body) = get(port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
        assert!(
            headers.contains("Content-Type: application/openmetrics-text"),
            "{headers}"
        );
        let started = body
            .lines()
            .find_map(|l| l.strip_prefix("outpost_agent_run_start_lateness_seconds_count "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        (started >= 2).then_some(body)
    })
    .unwrap();
    for name in [
        "outpost_agent_outbox_pending",
        "outpost_agent_queue_depth",
        "outpost_agent_running_tasks",
        "outpost_agent_store_bytes",
        "outpost_agent_disk_free_bytes",
        "outpost_agent_disk_total_bytes",
    ] {
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{body}"));
        v.parse::<u64>()
            .unwrap_or_else(|e| panic!("{name} {v}: {e}"));
    }
    let store: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("outpost_agent_store_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(store > 0, "the store has a size:\n{body}");
    assert!(!body.contains("agent=\""), "no agent label:\n{body}");

    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Garbage and an oversized head are dropped without an answer; another path is a 404.
    assert_eq!(exchange(port, b"\x00\xffnot http at all\r\n\r\n"), b"");
    assert_eq!(exchange(port, b"GET /metrics\r\n\r\n"), b"");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(64 * 1024, b'a');
    assert_eq!(exchange(port, &huge), b"");
    {
        // A client that goes away mid-head.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /met").unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    }
    let (status, _, _) = get(port, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    // The agent keeps serving: metrics and its control socket.
    let (status, _, again) = get(port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(again.ends_with("# EOF\n"), "{again}");
    assert!(d.runs(Some("tick")).unwrap().len() >= 2);
}
