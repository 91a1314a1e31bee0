//! deploy/: the systemd unit passes `systemd-analyze verify`; the example config loads.

use std::process::Command;

use outpost_tests::{Scratch, agent, agent_bin, hub_bin, repo_root, stderr};

#[test]
fn systemd_units_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        // CI installs systemd; a developer machine without it says so instead of pretending.
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is required in CI (.ci/run installs it)"
        );
        eprintln!("systemd-analyze not available here: unit NOT verified");
        return;
    };
    assert!(out.status.success());
    let s = Scratch::new("unit").unwrap();
    for (name, bin) in [("outpost-agent", agent_bin()), ("outpost-hub", hub_bin())] {
        let path = repo_root().join(format!("deploy/systemd/{name}.service"));
        let unit = std::fs::read_to_string(path).unwrap();
        // Point ExecStart at the binary we just built; everything else is verified as shipped.
        let unit = unit.replace(&format!("/usr/bin/{name}"), &bin.display().to_string());
        let p = s.write(&format!("{name}.service"), &unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Only complaints about this unit matter (the host's other units are not ours).
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(name)).collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {name}: {err}"
        );
    }
}

/// The drop-ins in deploy/systemd/outpost-agent.service.d/ (PLC serial ports, CAN, raw
/// Ethernet, and any other shipped there) each pass `systemd-analyze verify` on top of the
/// shipped agent unit, and a broken drop-in beside them is caught (so they are really read).
#[test]
fn agent_dropins_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is required in CI (.ci/run installs it)"
        );
        eprintln!("systemd-analyze not available here: drop-ins NOT verified");
        return;
    };
    assert!(out.status.success());
    let unit = std::fs::read_to_string(repo_root().join("deploy/systemd/outpost-agent.service"))
        .unwrap()
        .replace("/usr/bin/outpost-agent", &agent_bin().display().to_string());
    let dir = repo_root().join("deploy/systemd/outpost-agent.service.d");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    names.sort();
    for want in ["plc-can.conf", "plc-raw-ethernet.conf", "plc-serial.conf"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // What each PLC drop-in opens, as documented in docs/operations.md.
    let text = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    let serial = text("plc-serial.conf");
    for line in [
        "SupplementaryGroups=dialout",
        "DeviceAllow=char-ttyS rw",
        "DeviceAllow=char-ttyUSB rw",
    ] {
        assert!(serial.lines().any(|l| l == line), "plc-serial.conf: {line}");
    }
    assert!(
        text("plc-can.conf")
            .lines()
            .any(|l| l == "RestrictAddressFamilies=AF_CAN")
    );
    let raw = text("plc-raw-ethernet.conf");
    for line in [
        "RestrictAddressFamilies=AF_PACKET",
        "CapabilityBoundingSet=CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_RAW",
    ] {
        assert!(
            raw.lines().any(|l| l == line),
            "plc-raw-ethernet.conf: {line}"
        );
    }

    let verify = |s: &Scratch| {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(s.join("outpost-agent.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let ours: Vec<String> = err
            .lines()
            .filter(|l| l.contains("outpost-agent"))
            .map(str::to_string)
            .collect();
        (out.status.success() && ours.is_empty(), err)
    };
    for name in &names {
        let s = Scratch::new("dropin").unwrap();
        s.write("outpost-agent.service", &unit).unwrap();
        s.write(&format!("outpost-agent.service.d/{name}"), &text(name))
            .unwrap();
        let (ok, err) = verify(&s);
        assert!(ok, "systemd-analyze verify with {name}: {err}");
        s.write(
            "outpost-agent.service.d/zz-broken.conf",
            "[Service]\nRestrictAddressFamilies=AF_NOT_A_FAMILY\n",
        )
        .unwrap();
        let (ok, err) = verify(&s);
        assert!(!ok, "a broken drop-in beside {name} passed: {err}");
    }
}

#[test]
fn example_config_and_workflows_load() {
    let cfg = repo_root().join("deploy/examples/agent.toml");
    let hello = repo_root().join("examples/hello.yaml");
    let out = agent(&[
        "validate",
        "--config",
        cfg.to_str().unwrap(),
        hello.to_str().unwrap(),
    ])
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn example_hub_config_loads() {
    // The example config names files in /var/lib; point data_dir at a fresh hub and load it
    // through `serve`'s own checks (fail closed: every file must exist).
    let s = Scratch::new("hubcfg").unwrap();
    let data = s.join("data");
    let out = Command::new(hub_bin())
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example = std::fs::read_to_string(repo_root().join("deploy/examples/hub.toml")).unwrap();
    let cfg = example
        .replace("/var/lib/outpost-hub", &s.path().display().to_string())
        .replace(
            "0.0.0.0:7443",
            &format!("127.0.0.1:{}", outpost_tests::free_port()),
        );
    let cfg = cfg.replace(
        "127.0.0.1:7070",
        &format!("127.0.0.1:{}", outpost_tests::free_port()),
    );
    let p = s.write("hub.toml", &cfg).unwrap();
    let mut child = Command::new(hub_bin())
        .args(["serve", "--config"])
        .arg(&p)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        still_running,
        "outpost-hub serve exited with the example config"
    );
}

/// The README's first command: `outpost-hub dev` brings up a hub and an enrolled agent, applies
/// the example, and the example's runs reach the hub.
#[test]
fn dev_mode_runs_the_example_end_to_end() {
    use std::io::{BufRead as _, BufReader};
    let s = Scratch::new("dev").unwrap();
    let mut child = Command::new(hub_bin())
        .args(["dev", "--dir"])
        .arg(s.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut succeeded = false;
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(line) => {
                succeeded |= line.contains("hello@v1@") && line.trim_end().ends_with("succeeded");
                seen.push(line);
                if succeeded {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    let st = child.wait().unwrap();
    assert!(
        succeeded,
        "no successful run of the example reached the hub:\n{}",
        seen.join("\n")
    );
    assert!(seen.iter().any(|l| l.contains("enrolled")), "{seen:?}");
    assert!(st.success(), "dev exited with {st}");
}

/// Every config in deploy/examples/ loads with the real loader of its binary, as written and with
/// every commented-out key (`# key = value`, `# [section]`) uncommented: an operator who
/// uncomments an example line gets a config that loads. A new example file must be named here.
#[test]
fn every_deploy_example_loads_as_written_and_uncommented() {
    let dir = repo_root().join("deploy/examples");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented = uncomment(&text);
        assert_ne!(text, uncommented, "{name}: no commented-out example key");
        for (how, t) in [("as written", &text), ("uncommented", &uncommented)] {
            let r = match name.as_str() {
                "hub.toml" => outpost_hub::config::HubConfig::parse(t, &path)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "agent.toml" => outpost_agent::config::AgentConfig::parse(&name, t, None)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                other => panic!("deploy/examples/{other}: no loader known for it in this test"),
            };
            if let Err(e) = r {
                panic!("deploy/examples/{name} ({how}) does not load: {e}\n---\n{t}");
            }
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["agent.toml", "hub.toml"]);
}

/// `# key = value` and `# [section]` lines without their `# `.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty()
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}
