//! The hub's `/metrics` with real parts: a real hub and agent (JSON logs) run a workflow; the
//! exposition passes `promtool check metrics`; a real `prometheus` on loopback scrapes the hub
//! with a viewer's credential and answers PromQL queries that show the run and the agent's
//! telemetry; and every metric the Grafana dashboard (deploy/grafana/) queries is in the scrape.
//! Debian's `prometheus` package provides both tools: a missing tool fails the test with what to
//! install.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_tests::{Hub, Scratch, enrolled_agent, free_port, repo_root, wait_for};

use crate::hub::{FAST_HUB, agent_id_by_name, apply, hub_runs, ticker};

/// A Debian `prometheus` tool, or a failure that says what to install.
fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `apt-get install prometheus` (Debian) provides it");
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GET `url` with an optional bearer credential: (status, body).
fn get(url: &str, credential: Option<&str>) -> (u16, String) {
    get_accepting(url, credential, "*/*").0
}

/// GET `url` with `Accept: accept`: ((status, body), content type).
fn get_accepting(url: &str, credential: Option<&str>, accept: &str) -> ((u16, String), String) {
    let mut req = http().get(url).header("Accept", accept);
    if let Some(c) = credential {
        req = req.header("Authorization", &format!("Bearer {c}"));
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    ((status, body), ctype)
}

/// The metric names of an exposition: every `# TYPE` family and every sample name.
fn scraped_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(n) = rest.split_whitespace().next() {
                out.insert(n.to_string());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
    out
}

/// Every `outpost_...` identifier in `expr` (a PromQL expression).
fn outpost_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("outpost_") {
        let before_ok = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if before_ok {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Every `expr` of the dashboard's panels' targets.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

/// A running `prometheus`, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One PromQL instant query: the result vector.
fn query(base: &str, promql: &str) -> Vec<serde_json::Value> {
    let url = format!("{base}/api/v1/query");
    let mut resp = match http().get(&url).query("query", promql).call() {
        Ok(r) => r,
        Err(_) => return Vec::new(),
    };
    let v: serde_json::Value = resp.body_mut().read_json().unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The value of a result sample.
fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Lines of `path` from byte `from` on.
fn lines_from(path: &Path, from: usize) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.get(from..)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// At least one line is a JSON event (`timestamp`, `level`, `fields`), and no line is a text
/// event (`... INFO target: message`).
fn assert_json_log(lines: &[String], who: &str) {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["timestamp"].is_string() && v["level"].is_string() && v["fields"].is_object())
        .collect();
    assert!(
        !events.is_empty(),
        "{who}: no JSON log line with --log-format json:\n{}",
        lines.join("\n")
    );
    let text: Vec<&String> = lines
        .iter()
        .filter(|l| {
            [" INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|k| l.contains(k))
        })
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    assert!(
        text.is_empty(),
        "{who}: text log lines under json: {text:?}"
    );
}

#[test]
fn prometheus_scrapes_the_hub_and_sees_runs_and_agent_telemetry() {
    let promtool = tool("promtool");
    let prometheus = tool("prometheus");
    let s = Scratch::new("metrics").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    // The hub again, logging JSON lines.
    hub.kill9().unwrap();
    let hub_from = std::fs::metadata(&hub.stderr_path).map_or(0, |m| m.len() as usize);
    hub.env.push(("OUTPOST_LOG_FORMAT".into(), "json".into()));
    hub.restart().unwrap();

    let mut agent = enrolled_agent(
        &s.join("a"),
        &hub,
        hub.quic_addr,
        "name=a",
        "[metrics]\nreport_interval = \"1s\"\n",
    )
    .unwrap();
    agent.terminate(Duration::from_secs(20)).unwrap();
    let agent_from = std::fs::metadata(&agent.stderr_path).map_or(0, |m| m.len() as usize);
    agent.env.push(("OUTPOST_LOG_FORMAT".into(), "json".into()));
    agent.restart().unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(60), "a finished run at the hub", || {
        hub_runs(&hub, &id, "tick")
            .iter()
            .any(|r| r["state"] == "succeeded")
            .then_some(())
    })
    .unwrap();

    // /metrics needs a credential; a viewer's is enough.
    let url = format!("{}/metrics", hub.http_url);
    assert_eq!(get(&url, None).0, 401);
    let viewer = hub.operator("prometheus", "viewer", "").unwrap();
    let text = wait_for(
        Duration::from_secs(30),
        "the agent's telemetry in /metrics",
        || {
            let (status, body) = get(&url, Some(&viewer));
            assert_eq!(status, 200, "{body}");
            body.contains(&format!("outpost_agent_store_bytes{{agent=\"{id}\"}}"))
                .then_some(body)
        },
    )
    .unwrap();
    // The classic text format for `curl` and promtool; OpenMetrics for a scraper asking for it.
    assert!(!text.contains("# EOF"), "{text}");
    let ((status, om), ctype) = get_accepting(
        &url,
        Some(&viewer),
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        text.contains("outpost_runs_total{workflow=\"tick\",pool=\"wf:tick\",state=\"succeeded\"}"),
        "{text}"
    );

    // promtool's check of the exposition (format and naming conventions).
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = check.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every metric the dashboard queries is one the hub exposes.
    let names = scraped_names(&text);
    let dashboard = repo_root().join("deploy/grafana/outpost-dashboard.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&v, &mut exprs);
    assert!(
        exprs.len() >= 10,
        "few expressions in {}",
        dashboard.display()
    );
    let unknown: Vec<String> = exprs
        .iter()
        .flat_map(|e| outpost_names(e))
        .filter(|n| !names.contains(n))
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the hub does not expose: {unknown:?}\nexposed: {names:?}"
    );

    // A real Prometheus scraping the hub with the viewer's credential.
    let prom_dir = s.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let cred_file = prom_dir.join("outpost.token");
    std::fs::write(&cred_file, &viewer).unwrap();
    let target = hub.http_url.trim_start_matches("http://");
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: outpost-hub\n    \
             metrics_path: /metrics\n    authorization:\n      credentials_file: {}\n    \
             static_configs:\n      - targets: ['{target}']\n",
            cred_file.display()
        ),
    )
    .unwrap();
    let out = Command::new(&promtool)
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let log = std::fs::File::create(prom_dir.join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let prom_log = || std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default();
    let runs = wait_for(
        Duration::from_secs(60),
        "Prometheus to see the runs",
        || {
            let r = query(
                &base,
                "sum(outpost_runs_total{workflow=\"tick\",state=\"succeeded\"})",
            );
            r.first().filter(|s| value(s) >= 1.0).cloned()
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- prometheus log ---\n{}", prom_log()));
    assert!(value(&runs) >= 1.0, "{runs}");
    let up = query(&base, "up{job=\"outpost-hub\"}");
    assert_eq!(up.first().map(value), Some(1.0), "{up:?}");
    let store = wait_for(
        Duration::from_secs(30),
        "the agent's telemetry in PromQL",
        || {
            query(
                &base,
                &format!("outpost_agent_store_bytes{{agent=\"{id}\"}} > 0"),
            )
            .into_iter()
            .next()
        },
    )
    .unwrap();
    assert!(value(&store) > 0.0, "{store}");
    let online = query(&base, "outpost_agents{state=\"online\"}");
    assert_eq!(online.first().map(value), Some(1.0), "{online:?}");

    // Both binaries logged JSON lines.
    assert_json_log(&lines_from(&hub.stderr_path, hub_from), "outpost-hub");
    assert_json_log(&lines_from(&agent.stderr_path, agent_from), "outpost-agent");
}

#[test]
fn the_readers_find_the_names() {
    assert_eq!(
        outpost_names("sum by (le) (rate(outpost_run_duration_seconds_bucket[5m])) / x_outpost_y"),
        vec!["outpost_run_duration_seconds_bucket".to_string()]
    );
    let names = scraped_names(
        "# TYPE outpost_runs counter\noutpost_runs_total{a=\"b\"} 1\noutpost_x 2\n# EOF\n",
    );
    assert!(names.contains("outpost_runs") && names.contains("outpost_runs_total"));
    assert!(names.contains("outpost_x"));
}
