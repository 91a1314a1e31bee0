//! The alert channels against real receivers on 127.0.0.1: an HTTP server (axum) that records
//! what it gets and checks the webhook's HMAC itself, a real SMTP server (Python's aiosmtpd,
//! with STARTTLS under a test CA made here), and Debian's `prometheus-alertmanager`. A missing
//! tool fails the test and says what to install.
#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use outpost_alerts::{AlertItem, AlertStatus, Notification};
use outpost_hub::channels::Channels;
use outpost_hub::config::HubConfig;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A grouped failure with one delayed item; the summary tries to break out of JSON and chat
/// markup.
fn notification() -> Notification {
    let now = now_ms();
    Notification {
        dedup_key: format!("run_failed/line-a/plc-sync/{now}"),
        rule: "line-a-failures".into(),
        status: AlertStatus::Firing,
        event: "run_failed".into(),
        summary: "plc-sync failed \"twice\" <!channel> {{summary}}".into(),
        items: vec![AlertItem {
            agent: Some("edge-1".into()),
            workflow: Some("plc-sync".into()),
            run_id: Some("r-1".into()),
            task: Some("extract".into()),
            detail: "run failed: task extract exited 2".into(),
            at_ms: now - 3 * 3600 * 1000,
            delayed_ms: Some(3 * 3600 * 1000),
        }],
        labels: vec![
            ("event".into(), "run_failed".into()),
            ("pool".into(), "line-a".into()),
            ("rule".into(), "line-a-failures".into()),
            ("workflow".into(), "plc-sync".into()),
        ],
        starts_ms: now - 60_000,
        ends_ms: None,
        created_ms: now,
        suppressed: 0,
    }
}

/// The channels of a hub.toml written to `dir` (with `files` beside it).
fn channels(dir: &Path, toml: &str, files: &[(&str, &str)]) -> Channels {
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let cfg = HubConfig::parse(toml, &dir.join("hub.toml")).unwrap();
    Channels::from_config(&cfg).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// A real HTTP receiver

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// An HTTP server on 127.0.0.1 that records every request. `/status/NNN` answers NNN, `/slow`
/// answers after 3 s, anything else 200.
struct Receiver {
    _rt: tokio::runtime::Runtime,
    base: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(seen): State<Arc<Mutex<Vec<Received>>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let path = uri.path().to_string();
    seen.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body: body.to_vec(),
    });
    if let Some(code) = path.strip_prefix("/status/") {
        let code = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return (code, "refused by the test receiver");
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    (StatusCode::OK, "ok")
}

impl Receiver {
    fn start() -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(seen.clone());
        rt.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            _rt: rt,
            base,
            seen,
        }
    }

    fn take(&self) -> Vec<Received> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The receiver's own check of the signature: HMAC-SHA256 of the raw body under the shared
/// secret, compared in constant time (what docs/operations.md tells a receiver to do).
fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &sig).is_ok()
}

#[test]
fn webhook_posts_signed_json_that_the_receiver_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let ch = channels(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{}/outpost\"\n\
             secret_file = \"hook.secret\"\n\
             [[channel]]\nname = \"templated\"\nkind = \"webhook\"\nurl = \"{}/t\"\n\
             template = '{{\"text\": {{{{summary}}}}, \"key\": {{{{dedup_key}}}}, \"at\": {{{{starts_at}}}}}}'\n\
             [[channel]]\nname = \"unsigned\"\nkind = \"webhook\"\nurl = \"{}/u\"\n",
            rx.base, rx.base, rx.base
        ),
        &[("hook.secret", "a-shared-secret\n")],
    );
    let n = notification();
    ch.send("hook", &n).unwrap();
    ch.send("templated", &n).unwrap();
    ch.send("unsigned", &n).unwrap();
    let got = rx.take();
    assert_eq!(got.len(), 3, "{got:?}");

    // The default body: the notification as JSON, signed, with its dedup key.
    let r = &got[0];
    assert_eq!(r.path, "/outpost");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("x-outpost-dedup-key"), Some(n.dedup_key.clone()));
    let sig = r.header("x-outpost-signature").expect("a signature header");
    assert!(verify_signature(b"a-shared-secret", &r.body, &sig), "{sig}");
    assert!(!verify_signature(b"another-secret", &r.body, &sig));
    let v = r.json();
    assert_eq!(v["dedup_key"], n.dedup_key.as_str());
    assert_eq!(v["rule"], "line-a-failures");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["summary"], n.summary.as_str());
    assert_eq!(v["items"][0]["delayed_ms"], 3 * 3600 * 1000);
    assert_eq!(v["labels"][1][0], "pool");

    // The template: values JSON-encoded (the summary's quotes and braces stay in one string).
    let v = got[1].json();
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    assert_eq!(v["text"], n.summary.as_str());
    assert_eq!(v["key"], n.dedup_key.as_str());
    assert!(v["at"].as_str().unwrap().ends_with('Z'));
    assert!(got[1].header("x-outpost-signature").is_none());
    assert_eq!(got[2].header("x-outpost-dedup-key"), Some(n.dedup_key));
}

#[test]
fn slack_and_teams_get_their_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let ch = channels(
        dir.path(),
        "[[channel]]\nname = \"chat\"\nkind = \"slack\"\nurl_file = \"slack.url\"\n\
         [[channel]]\nname = \"teams\"\nkind = \"teams\"\nurl_file = \"teams.url\"\n\
         [[channel]]\nname = \"teams-legacy\"\nkind = \"teams\"\nurl_file = \"teams.url\"\n\
         format = \"messagecard\"\n",
        &[
            ("slack.url", &format!("{}/services/T0/B0/XYZ\n", rx.base)),
            ("teams.url", &format!("{}/webhookb2/abc\n", rx.base)),
        ],
    );
    let n = notification();
    for c in ["chat", "teams", "teams-legacy"] {
        ch.send(c, &n).unwrap();
    }
    let got = rx.take();
    assert_eq!(got.len(), 3);

    let slack = got[0].json();
    assert_eq!(got[0].path, "/services/T0/B0/XYZ");
    let text = slack["text"].as_str().unwrap();
    assert!(text.starts_with("[FIRING] plc-sync failed"), "{text}");
    // Slack markup in a value is escaped: no @channel ping.
    assert!(
        text.contains("&lt;!channel&gt;") && !text.contains("<!channel>"),
        "{text}"
    );
    assert!(text.contains("delayed by 3h 0m"), "{text}");
    assert_eq!(slack["blocks"][0]["type"], "header");
    assert_eq!(slack["blocks"][1]["type"], "section");
    assert!(
        slack["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("workflow plc-sync, agent edge-1, task extract")
    );

    let teams = got[1].json();
    assert_eq!(teams["type"], "message");
    let att = &teams["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    let body = att["content"]["body"].as_array().unwrap();
    // Markdown in a card is escaped, the title's brackets too.
    assert!(
        body[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("\\[FIRING\\] plc-sync")
    );
    assert!(
        body[1]["text"]
            .as_str()
            .unwrap()
            .contains("delayed by 3h 0m")
    );

    let legacy = got[2].json();
    assert_eq!(legacy["@type"], "MessageCard");
    assert!(
        legacy["text"]
            .as_str()
            .unwrap()
            .contains("delayed by 3h 0m")
    );
}

#[test]
fn failures_map_to_retryable_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let refused = free_port();
    let mut toml = String::new();
    for (name, path) in [
        ("s500", "/status/500"),
        ("s503", "/status/503"),
        ("s429", "/status/429"),
        ("s400", "/status/400"),
        ("s404", "/status/404"),
        ("s301", "/status/301"),
        ("slow", "/slow"),
    ] {
        toml.push_str(&format!(
            "[[channel]]\nname = \"{name}\"\nkind = \"webhook\"\nurl = \"{}{path}\"\ntimeout = \"1s\"\n",
            rx.base
        ));
    }
    toml.push_str(&format!(
        "[[channel]]\nname = \"refused\"\nkind = \"alertmanager\"\nurl = \"http://127.0.0.1:{refused}\"\n"
    ));
    let ch = channels(dir.path(), &toml, &[]);
    let n = notification();
    for (name, retryable) in [
        ("s500", true),
        ("s503", true),
        ("s429", true),
        ("slow", true),
        ("refused", true),
        ("s400", false),
        ("s404", false),
        ("s301", false),
    ] {
        let e = ch.send(name, &n).unwrap_err();
        assert_eq!(e.retryable, retryable, "{name}: {e:?}");
        if name.starts_with('s') && name != "slow" {
            assert!(e.message.contains(&name[1..]), "{name}: {e:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server

/// A Python 3 with aiosmtpd, or a failure saying what to install.
fn python_with_aiosmtpd() -> PathBuf {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return PathBuf::from(py);
        }
    }
    panic!(
        "the e-mail channel tests need a real SMTP server: Python 3 with aiosmtpd \
         (Debian: apt-get install python3-aiosmtpd; or: pip install aiosmtpd)"
    );
}

/// `support/smtp_server.py` on `port`, writing mail to `out` (STARTTLS with `tls` = cert, key).
fn smtp_server(port: u16, out: &Path, tls: Option<(&Path, &Path)>) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
    let mut cmd = Command::new(python_with_aiosmtpd());
    cmd.arg(&script).arg(port.to_string()).arg(out);
    if let Some((cert, key)) = tls {
        cmd.arg(cert).arg(key);
    }
    let mut child = cmd
        .env("SMTP_PASSWORD", "pw-123")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "the SMTP server did not start");
    Proc(child)
}

/// A test CA and a server certificate for 127.0.0.1 under it, as PEM files in `dir`.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (ca, cert, key) = (
        dir.join("test-ca.pem"),
        dir.join("smtp.pem"),
        dir.join("smtp.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca, cert, key)
}

/// Mail number `i` the server wrote: (raw message, metadata).
fn mail(out: &Path, i: usize) -> (String, Value) {
    let eml = out.join(format!("{i}.eml"));
    wait_until("the mail", Duration::from_secs(10), || {
        eml.exists().then_some(())
    });
    let raw = std::fs::read_to_string(&eml).unwrap();
    let meta = std::fs::read_to_string(out.join(format!("{i}.json"))).unwrap();
    (raw, serde_json::from_str(&meta).unwrap())
}

fn count_mail(out: &Path) -> usize {
    std::fs::read_dir(out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count()
}

#[test]
fn email_over_starttls_reaches_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, cert, key) = test_pki(dir.path());
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let _server = smtp_server(port, &out, Some((&cert, &key)));
    let ch = channels(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"mail\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{port}\"\n\
             ca_file = \"test-ca.pem\"\nfrom = \"Outpost <outpost@example.com>\"\n\
             to = [\"oncall@example.com\", \"lead@example.com\"]\nusername = \"outpost\"\n\
             password_file = \"smtp.password\"\n\
             [[channel]]\nname = \"untrusted\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{port}\"\n\
             from = \"outpost@example.com\"\nto = [\"oncall@example.com\"]\n\
             [[channel]]\nname = \"cleartext\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{port}\"\n\
             starttls = \"none\"\nfrom = \"outpost@example.com\"\nto = [\"oncall@example.com\"]\n"
        ),
        &[("smtp.password", "pw-123\n")],
    );
    let mut n = notification();
    ch.send("mail", &n).unwrap();
    let (raw, meta) = mail(&out, 0);
    assert_eq!(meta["tls"], true, "{meta}");
    assert_eq!(meta["auth"], true, "{meta}");
    assert_eq!(meta["login"], "outpost", "{meta}");
    assert_eq!(meta["mail_from"], "outpost@example.com");
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "lead@example.com"])
    );
    assert!(raw.contains("Subject: [FIRING] plc-sync failed"), "{raw}");
    assert!(raw.contains("delayed by 3h 0m"), "{raw}");
    let id = raw
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("a Message-ID")
        .to_string();
    assert!(id.ends_with(".firing@example.com>"), "{id}");

    // The same notification again (a retried delivery): the same Message-ID. Its resolved
    // notice threads under it.
    n.status = AlertStatus::Resolved;
    n.ends_ms = Some(now_ms());
    ch.send("mail", &n).unwrap();
    let (raw, _) = mail(&out, 1);
    assert!(raw.contains(&format!("In-Reply-To: {id}")), "{raw}");
    assert!(raw.contains("Subject: [RESOLVED]"), "{raw}");

    // A certificate the channel does not trust: nothing is sent.
    let e = ch.send("untrusted", &n).unwrap_err();
    assert!(e.message.contains("SMTP"), "{e:?}");
    // A server that requires STARTTLS refuses a cleartext session for good.
    let e = ch.send("cleartext", &n).unwrap_err();
    assert!(!e.retryable, "{e:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count_mail(&out), 2);
}

#[test]
fn email_without_starttls_to_a_loopback_relay() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mail");
    std::fs::create_dir(&out).unwrap();
    let port = free_port();
    let _server = smtp_server(port, &out, None);
    let ch = channels(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"relay\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{port}\"\n\
             starttls = \"none\"\nfrom = \"outpost@example.com\"\nto = [\"oncall@example.com\"]\n\
             [[channel]]\nname = \"tls\"\nkind = \"email\"\nsmtp = \"127.0.0.1:{port}\"\n\
             from = \"outpost@example.com\"\nto = [\"oncall@example.com\"]\n"
        ),
        &[],
    );
    let n = notification();
    ch.send("relay", &n).unwrap();
    let (raw, meta) = mail(&out, 0);
    assert_eq!(meta["tls"], false);
    assert!(raw.contains("Subject: [FIRING]"), "{raw}");
    // STARTTLS required and the relay offers none: no mail.
    assert!(ch.send("tls", &n).is_err());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count_mail(&out), 1);
}

// ---------------------------------------------------------------------------------------------
// A real Alertmanager

fn alertmanager_bin() -> PathBuf {
    for p in ["/usr/bin/prometheus-alertmanager", "alertmanager"] {
        if Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return PathBuf::from(p);
        }
    }
    panic!(
        "the Alertmanager channel test needs Alertmanager: apt-get install \
         prometheus-alertmanager (Debian) or put `alertmanager` on PATH"
    );
}

fn get_json(url: &str) -> Option<Value> {
    let mut r = ureq::get(url).call().ok()?;
    r.body_mut().read_json().ok()
}

#[test]
fn alertmanager_receives_the_alert_with_its_labels_and_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("am.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
    let _am = Proc(
        Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until("Alertmanager to be ready", Duration::from_secs(30), || {
        ureq::get(&format!("{base}/-/ready"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
    });
    let ch = channels(
        dir.path(),
        &format!("[[channel]]\nname = \"am\"\nkind = \"alertmanager\"\nurl = \"{base}/\"\n"),
        &[],
    );
    let mut n = notification();
    ch.send("am", &n).unwrap();
    let find = |alerts: &Value| -> Option<Value> {
        alerts
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "line-a-failures")
            .cloned()
    };
    let alert = wait_until("the alert in Alertmanager", Duration::from_secs(10), || {
        find(&get_json(&format!("{base}/api/v2/alerts"))?)
    });
    assert_eq!(alert["labels"]["pool"], "line-a", "{alert}");
    assert_eq!(alert["labels"]["workflow"], "plc-sync");
    assert_eq!(alert["labels"]["event"], "run_failed");
    assert_eq!(alert["annotations"]["summary"], n.summary.as_str());
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("delayed by 3h 0m")
    );
    assert_eq!(alert["annotations"]["dedup_key"], n.dedup_key.as_str());
    assert_eq!(alert["status"]["state"], "active");

    // The resolved notice ends it: the alert leaves the active list.
    n.status = AlertStatus::Resolved;
    n.ends_ms = Some(now_ms() - 1000);
    ch.send("am", &n).unwrap();
    wait_until("the alert to resolve", Duration::from_secs(10), || {
        let alerts = get_json(&format!("{base}/api/v2/alerts"))?;
        find(&alerts).is_none().then_some(())
    });
}

/// The hub.toml example of docs/operations.md ("Alert channels") is what the hub accepts.
#[test]
fn the_documented_channel_config_parses() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let at = doc.find("### Alert channels").expect("the section");
    let block = &doc[at..];
    let start = block.find("```toml\n").expect("its toml block") + "```toml\n".len();
    let end = start + block[start..].find("```").unwrap();
    let cfg = HubConfig::parse(&block[start..end], Path::new("/etc/outpost/hub.toml")).unwrap();
    let kinds: Vec<&str> = cfg.channels.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["webhook", "slack", "teams", "email", "alertmanager"]
    );
}

/// The worked example of docs/operations.md ("Alerts": two pools, two channels) is what the hub
/// accepts, and its rules route as the text says.
#[test]
fn the_documented_routing_example_parses() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let at = doc
        .find("**A worked example: two pools, two channels.**")
        .expect("the example");
    let block = &doc[at..];
    let start = block.find("```toml\n").expect("its toml block") + "```toml\n".len();
    let end = start + block[start..].find("```").unwrap();
    let cfg = HubConfig::parse(&block[start..end], Path::new("/etc/outpost/hub.toml")).unwrap();
    let channels: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(channels, ["maintenance", "quality"]);
    let route: Vec<(String, Vec<String>, Vec<String>)> = cfg
        .rules
        .iter()
        .map(|r| (r.name.clone(), r.pools.clone(), r.channels.clone()))
        .collect();
    assert_eq!(route.len(), 5);
    for (name, pools, channels) in &route {
        if name.starts_with("line-a") {
            assert_eq!(
                (pools.as_slice(), channels.as_slice()),
                (
                    &["line-a".to_string()][..],
                    &["maintenance".to_string()][..]
                )
            );
        } else if name.starts_with("line-b") {
            assert_eq!(
                (pools.as_slice(), channels.as_slice()),
                (&["line-b".to_string()][..], &["quality".to_string()][..])
            );
        } else {
            assert_eq!(channels.len(), 2, "{name}");
        }
    }
}
