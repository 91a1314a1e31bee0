//! `outpost-hub dev` as a new user meets it: the port it prints is the one it listens on, and the
//! commands it prints run where it was started, and the web console it prints answers there and
//! signs in with the printed credential.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use outpost_tests::{Scratch, hub_bin};

/// The banner's lines, read until the Ctrl-C line (or `timeout`).
fn banner(out: std::process::ChildStdout, timeout: Duration) -> Vec<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let done = l.starts_with("Ctrl-C");
                lines.push(l);
                if done {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    lines
}

#[test]
fn dev_with_port_7070_taken_prints_the_port_it_listens_on_and_runnable_commands() {
    let s = Scratch::new("dev-port").unwrap();
    // Hold 7070 (if something else already holds it, it is taken all the same).
    let _hold = std::net::TcpListener::bind("127.0.0.1:7070");
    assert!(
        std::net::TcpListener::bind("127.0.0.1:7070").is_err(),
        "port 7070 should be taken for this test"
    );
    let mut child = Command::new(hub_bin())
        .args(["dev", "--dir"])
        .arg(s.join("dev"))
        .current_dir(s.path())
        .env_remove("OUTPOST_HUB_URL")
        .env_remove("OUTPOST_HUB_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = banner(child.stdout.take().unwrap(), Duration::from_secs(60));
    let export = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("export "))
        .unwrap_or_else(|| panic!("no export line in the banner: {lines:#?}"));
    let mut url = None;
    let mut token = None;
    for kv in export.split_whitespace() {
        match kv.split_once('=') {
            Some(("OUTPOST_HUB_URL", v)) => url = Some(v.to_string()),
            Some(("OUTPOST_HUB_TOKEN", v)) => token = Some(v.to_string()),
            _ => {}
        }
    }
    let (url, token) = (url.unwrap(), token.unwrap());
    let port: u16 = url
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"));
    assert!(port != 0 && port != 7070, "printed {url}");

    // The printed commands, run as printed from where dev was started.
    let hinted: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.contains(" run list") || l.contains(" agent list"))
        .collect();
    assert_eq!(hinted.len(), 2, "{lines:#?}");
    for cmd in hinted {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(s.path())
            .env("OUTPOST_HUB_URL", &url)
            .env("OUTPOST_HUB_TOKEN", &token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The console: at the printed address, signing in with the printed credential.
    let console = lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("http://") && l.ends_with("/ui/"))
        .unwrap_or_else(|| panic!("no console address in the banner: {lines:#?}"));
    assert_eq!(console, format!("{url}/ui/"), "{lines:#?}");
    let credential = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("credential: "))
        .unwrap_or_else(|| panic!("no console credential in the banner: {lines:#?}"));
    assert_eq!(
        credential, token,
        "the console signs in with the API credential"
    );
    console_signs_in(console, credential);

    let _ = child.kill();
    let _ = child.wait();
}

/// The console at `console` (`http://HOST:PORT/ui/`) answers, and `credential` signs in: the
/// sign-in form's POST answers 303 with a session cookie, which then opens the fleet page.
fn console_signs_in(console: &str, credential: &str) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = http.get(console).call().unwrap();
    assert_eq!(r.status().as_u16(), 303, "GET {console}");
    let base = console.trim_end_matches("/ui/");
    let mut r = http.get(&format!("{base}/ui/login")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.body_mut().read_to_string().unwrap();
    assert!(page.contains("id=\"credential\""), "{page}");
    let form: String = form_urlencoded_credential(credential);
    let r = http
        .post(&format!("{base}/ui/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Origin", base)
        .send(form.as_str())
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        303,
        "sign-in with the printed credential"
    );
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("outpost_session=") && !c.starts_with("outpost_session=;"))
        .unwrap_or_else(|| panic!("no session cookie: {:?}", r.headers()))
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut r = http
        .get(&format!("{base}/ui/fleet"))
        .header("Cookie", &cookie)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.body_mut().read_to_string().unwrap();
    assert!(page.contains("id=\"whoami\""), "{page}");
}

/// `credential=<value>` percent-encoded for a form body.
fn form_urlencoded_credential(v: &str) -> String {
    let mut out = String::from("credential=");
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
