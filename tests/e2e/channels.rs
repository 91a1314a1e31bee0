//! Alert channels through the real `outpost-hub` binary: `alert channels` (names and kinds,
//! never a secret) and `alert test CHANNEL` (a test notification sent now by the serving hub to
//! a real HTTP receiver on 127.0.0.1 that checks the HMAC itself), its failures, its role, its
//! audit entry, and a hub that refuses to start without a channel's secret file.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_tests::{Hub, Scratch, free_port, repo_root, stderr, stdout, wait_for};

/// A webhook receiver (Python's standard library only): verifies `X-Outpost-Signature` with
/// the shared secret (with `verified`, the function docs/operations.md gives receivers), writes
/// each request to OUT/<n>.json, answers 500 under /fail, takes 4 s to answer under /slow,
/// else answers 200 at once.
const RECEIVER: &str = r#"
import http.server, json, os, sys, time
port, out, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        sig = self.headers.get("X-Outpost-Signature", "")
        rec = {"path": self.path, "sig_ok": verified(secret, body, sig),
               "dedup": self.headers.get("X-Outpost-Dedup-Key"), "body": json.loads(body)}
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        with open(os.path.join(out, "%d.tmp" % n), "w") as f:
            json.dump(rec, f)
        os.rename(os.path.join(out, "%d.tmp" % n), os.path.join(out, "%d.json" % n))
        if self.path.startswith("/slow"):
            time.sleep(4)
        code = 500 if self.path.startswith("/fail") else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
srv = http.server.HTTPServer(("127.0.0.1", port), H)
print("READY", flush=True)
srv.serve_forever()
"#;

pub(crate) struct Receiver {
    child: Child,
    out: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver's signature check as docs/operations.md shows it ("Verify the webhook
/// signature": its Python block).
fn documented_check() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/operations.md")).unwrap();
    let at = doc
        .find("**Verify the webhook signature**")
        .expect("docs/operations.md: the webhook signature check");
    let block = &doc[at..];
    let start = block.find("```python\n").expect("its python block") + "```python\n".len();
    let end = start + block[start..].find("```").expect("the block's end");
    block[start..end].to_string()
}

impl Receiver {
    pub(crate) fn start(dir: &Path, secret: &str) -> Receiver {
        let script = dir.join("receiver.py");
        std::fs::write(&script, format!("{}\n{RECEIVER}", documented_check())).unwrap();
        let out = dir.join("received");
        std::fs::create_dir_all(&out).unwrap();
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&out)
            .arg(secret)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("the channel e2e test needs python3 (apt-get install python3): {e}")
            });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "the HTTP receiver did not start");
        Receiver {
            child,
            out,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Request number `i` as the receiver recorded it.
    pub(crate) fn request(&self, i: usize) -> serde_json::Value {
        let p = self.out.join(format!("{i}.json"));
        wait_for(Duration::from_secs(10), "the receiver's record", || {
            std::fs::read_to_string(&p).ok()
        })
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap()
    }

    pub(crate) fn count(&self) -> usize {
        std::fs::read_dir(&self.out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
    }
}

fn run(hub: &Hub, credential: &str, args: &[&str]) -> (i32, String, String) {
    let out = hub.cli_as(credential, args).unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out), stderr(&out))
}

#[test]
fn alert_test_sends_a_signed_notification_through_the_serving_hub() {
    let s = Scratch::new("channels-test").unwrap();
    let secret = "e2e-shared-secret";
    let rx = Receiver::start(s.path(), secret);
    let secret_file = s.write("hook.secret", &format!("{secret}\n")).unwrap();
    let refused = free_port();
    let hub = Hub::start(
        s.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"{base}/outpost\"\n\
             secret_file = \"{secret}\"\n\
             [[channel]]\nname = \"broken\"\nkind = \"webhook\"\nurl = \"{base}/fail\"\n\
             [[channel]]\nname = \"am-down\"\nkind = \"alertmanager\"\n\
             url = \"http://127.0.0.1:{refused}\"\ntimeout = \"2s\"\n",
            base = rx.base,
            secret = secret_file.display()
        ),
    )
    .unwrap();
    let admin = hub.api_token.clone();

    // The channels, never their secrets.
    let (code, out, err) = run(&hub, &admin, &["alert", "channels"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hook") && out.contains("webhook") && out.contains("alertmanager"));
    assert!(!out.contains(secret), "{out}");
    let list = hub.json(&["alert", "channels"]).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hook", "broken", "am-down"]);

    // A test notification: delivered, signed with the secret, carrying its dedup key.
    let (code, out, err) = run(&hub, &admin, &["alert", "test", "hook"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("sent a test notification to hook (webhook)"),
        "{out}"
    );
    let r = rx.request(0);
    assert_eq!(r["path"], "/outpost");
    assert_eq!(r["sig_ok"], true, "{r}");
    let dedup = r["dedup"].as_str().unwrap();
    assert!(dedup.starts_with("test:hook:"), "{r}");
    assert_eq!(r["body"]["dedup_key"], dedup);
    assert_eq!(r["body"]["rule"], "test");
    assert_eq!(r["body"]["status"], "firing");
    assert!(
        r["body"]["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("operator admin"),
        "{r}"
    );

    // A receiver that fails: the outcome says so, exit 1.
    let (code, out, _) = run(&hub, &admin, &["alert", "test", "broken"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED (retryable)") && out.contains("HTTP 500"),
        "{out}"
    );
    let (code, out, _) = run(&hub, &admin, &["alert", "test", "am-down"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED (retryable)"), "{out}");
    let v = hub.json(&["alert", "test", "broken"]);
    assert!(v.is_err(), "exit 1 with --output json too");

    // An unknown channel: a clear error naming the configured ones.
    let (code, out, err) = run(&hub, &admin, &["alert", "test", "nope"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("no channel named \"nope\" (configured: hook, broken, am-down)"),
        "{err}"
    );

    // A viewer may list the channels but not send.
    let viewer = hub.operator("watcher", "viewer", "").unwrap();
    let (code, _, _) = run(&hub, &viewer, &["alert", "channels"]);
    assert_eq!(code, 0);
    let sent = rx.count();
    let (code, _, err) = run(&hub, &viewer, &["alert", "test", "hook"]);
    assert_ne!(code, 0);
    assert!(err.contains("needs role operator"), "{err}");
    assert_eq!(rx.count(), sent, "a refused test sends nothing");

    // Each test is in the audit log with its outcome.
    let log = hub.json(&["audit", "--limit", "100"]).unwrap();
    let tests: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "alert.test")
        .map(|e| {
            (
                e["target"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tests[0], ("hook".into(), "delivered".into()), "{tests:?}");
    assert!(
        tests[1].0 == "broken" && tests[1].1.contains("HTTP 500"),
        "{tests:?}"
    );
}

#[test]
fn a_missing_channel_secret_stops_the_hub() {
    let s = Scratch::new("channels-secret").unwrap();
    let missing = s.join("absent.secret");
    let Err(e) = Hub::start(
        s.path(),
        &format!(
            "[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             secret_file = \"{}\"\n",
            missing.display()
        ),
    ) else {
        panic!("the hub started without the channel's secret file");
    };
    let e = format!("{e:#}");
    assert!(
        e.contains("absent.secret") && e.contains("[[channel]] \"hook\" secret_file"),
        "{e}"
    );
}
