//! Every `outpost-hub` / `outpost-agent` command line in a fenced code block of README.md and
//! docs/*.md is accepted by the real binary's command-line parser (`Cli::try_parse_from` of each
//! binary, the parser `main` uses).
//!
//! The docs' notation is read as a reader would: `a | b` and `a / b` are alternatives (a bare
//! alternative such as `runs` continues the command before it: `outpost-agent runs`), `[...]` is
//! optional (checked with its contents), `FILE...` is one or more, `&&`, `;` and a trailing `&`
//! separate commands, `\` continues a line, `#` starts a comment, `sudo` is dropped. Placeholders
//! that must be numbers (`N`, `V`) are given one. Install steps (useradd, systemctl, install, ...)
//! are not outpost commands and are not run. A failure names the file and line.

use clap::Parser as _;
use outpost_tests::repo_root;

/// (file, line, command text) of every outpost command line in fenced blocks.
fn doc_commands() -> Vec<(String, usize, String)> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        let mut fenced = false;
        let mut pending: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                pending = None;
                continue;
            }
            if !fenced {
                continue;
            }
            let code = strip_comment(line);
            let (start, mut cmd) = match pending.take() {
                Some((start, before)) => (start, format!("{before} {}", code.trim())),
                None => (n, code.trim().to_string()),
            };
            if let Some(c) = cmd.strip_suffix('\\') {
                cmd = c.trim_end().to_string();
                pending = Some((start, cmd));
                continue;
            }
            let has_outpost = cmd
                .split_whitespace()
                .any(|w| w == "outpost-hub" || w == "outpost-agent");
            if has_outpost {
                out.push((rel.clone(), start, cmd));
            }
        }
    }
    out
}

/// The line without a shell comment (` #` outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match (quote, c) {
            (None, b'\'' | b'"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, b'#') if i == 0 || b[i - 1].is_ascii_whitespace() => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The commands a doc line stands for, each as argv (program first), with the alternatives it
/// offers; an alternative is a list of candidate argvs, any of which may parse.
fn expand(cmd: &str) -> Vec<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for part in cmd.split("&&").flat_map(|p| p.split(';')) {
        let part = part.trim().trim_end_matches('&').trim();
        let words: Vec<&str> = part.split_whitespace().collect();
        let Some(at) = words
            .iter()
            .position(|w| *w == "outpost-hub" || *w == "outpost-agent")
        else {
            continue;
        };
        // Only commands that begin with the binary (after `sudo` / `VAR=value`).
        if !words[..at]
            .iter()
            .all(|w| *w == "sudo" || (w.contains('=') && !w.starts_with('-')))
        {
            continue;
        }
        let bin = words[at].to_string();
        let rest = words[at + 1..].join(" ");
        let alts: Vec<String> = rest
            .split(" | ")
            .flat_map(|a| a.split(" / "))
            .map(|a| a.trim().to_string())
            .collect();
        let first = argv(&alts[0]);
        let group = first.first().cloned();
        for (k, alt) in alts.iter().enumerate() {
            let words = argv(alt);
            if words
                .first()
                .is_some_and(|w| w == "outpost-hub" || w == "outpost-agent")
            {
                out.push(vec![words]);
                continue;
            }
            let mut candidates = Vec::new();
            if k > 0
                && let Some(g) = &group
            {
                let mut c = vec![bin.clone(), g.clone()];
                c.extend(words.iter().cloned());
                candidates.push(c);
            }
            let mut c = vec![bin.clone()];
            c.extend(words.iter().cloned());
            candidates.push(c);
            out.push(candidates);
        }
    }
    out
}

/// Words of one command: brackets of optional parts dropped, `X...` as `X`, numeric
/// placeholders filled.
fn argv(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            let w = w.trim_start_matches('[').trim_end_matches(']');
            let w = w.strip_suffix("...").unwrap_or(w);
            match w {
                "N" | "V" => "3".to_string(),
                "RFC3339" => "2026-01-01T00:00:00Z".to_string(),
                _ => w.to_string(),
            }
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn parses(argv: &[String]) -> Result<(), String> {
    let r = match argv[0].as_str() {
        "outpost-hub" => outpost_hub::cli::Cli::try_parse_from(argv).map(|_| ()),
        "outpost-agent" => outpost_agent::cli::Cli::try_parse_from(argv).map(|_| ()),
        other => panic!("not an outpost binary: {other}"),
    };
    r.map_err(|e| e.to_string())
}

#[test]
fn every_documented_command_line_parses() {
    let cmds = doc_commands();
    assert!(cmds.len() > 20, "found only {} command lines", cmds.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, line, cmd) in &cmds {
        for candidates in expand(cmd) {
            checked += 1;
            let errors: Vec<String> = candidates
                .iter()
                .filter_map(|c| parses(c).err().map(|e| format!("`{}`: {e}", c.join(" "))))
                .collect();
            if errors.len() == candidates.len() {
                failures.push(format!(
                    "{file}:{line}: `{cmd}` is not accepted by the parser:\n  {}",
                    errors.join("\n  ").replace('\n', "\n    ")
                ));
            }
        }
    }
    eprintln!(
        "{checked} documented commands checked in {} lines",
        cmds.len()
    );
    assert!(
        failures.is_empty(),
        "{} documented command(s) do not parse:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_notation_reader_expands_alternatives_and_options() {
    let e =
        expand("outpost-hub workflow pause NAME | resume NAME | trigger NAME [--agent A] [-p k=v]");
    assert_eq!(e.len(), 3);
    assert_eq!(
        e[2][0],
        [
            "outpost-hub",
            "workflow",
            "trigger",
            "NAME",
            "--agent",
            "A",
            "-p",
            "k=v"
        ]
    );
    let e = expand("outpost-hub init --data-dir /tmp/hub && outpost-hub serve --config hub.toml &");
    assert_eq!(e.len(), 2);
    assert_eq!(e[1][0], ["outpost-hub", "serve", "--config", "hub.toml"]);
    assert_eq!(strip_comment("a b   # c"), "a b   ");
    assert_eq!(strip_comment("a '#b' c"), "a '#b' c");
    // A parser error is a failure, not a pass.
    assert!(parses(&argv("outpost-hub workflow trigger W --no-such-flag")).is_err());
}

/// The README's standalone commands that need nothing but the repository (`run`, `validate`,
/// `schedule` on the example files) run for real, as written, from the repository root with the
/// built binaries first on the PATH; each exits 0. The state of `run` goes to a scratch
/// directory (XDG_STATE_HOME).
#[test]
fn the_readme_standalone_commands_run_as_written() {
    let root = repo_root();
    let s = outpost_tests::Scratch::new("readme-run").unwrap();
    let path = format!(
        "{}:{}",
        outpost_tests::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let runnable: Vec<_> = doc_commands()
        .into_iter()
        .filter(|(file, _, cmd)| {
            file == "README.md"
                && ["run ", "validate ", "schedule "]
                    .iter()
                    .any(|sub| cmd.starts_with(&format!("outpost-agent {sub}examples/")))
        })
        .collect();
    assert_eq!(
        runnable.len(),
        3,
        "README.md's run / validate / schedule examples on examples/: {runnable:#?}"
    );
    for (file, line, cmd) in runnable {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(&root)
            .env("PATH", &path)
            .env("XDG_STATE_HOME", s.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}:{line}: `{cmd}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The README's "A hub and its agents" sequence (init, serve, token create, enroll, workflow
/// apply) runs for real on loopback, each line as extracted from README.md with only these
/// substitutions: `/var/lib/outpost-hub` and `/etc/outpost/agent.toml` become scratch paths,
/// `hub.example.com:7443` the test hub's QUIC address, `opt1....` the token the `token create`
/// line printed; the hub.toml that `init` wrote gets free loopback ports (tests bind only to
/// loopback, and 7070 may be taken); `apply` runs in examples/, where plc-pull.yaml is.
#[test]
fn the_readme_hub_sequence_runs_on_loopback() {
    use std::process::{Command, Stdio};
    let root = repo_root();
    let s = outpost_tests::Scratch::new("readme-hub").unwrap();
    let hub_dir = s.join("hub");
    let agent_cfg = s.join("agent.toml");
    let path = format!(
        "{}:{}",
        outpost_tests::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let readme: Vec<_> = doc_commands()
        .into_iter()
        .filter(|(f, _, _)| f == "README.md")
        .collect();
    let find = |prefix: &str| {
        let found: Vec<_> = readme
            .iter()
            .filter(|(_, _, c)| c.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(
            found.len(),
            1,
            "README.md: one `{prefix}` line expected: {found:#?}"
        );
        found[0].clone()
    };
    let quic = format!("127.0.0.1:{}", outpost_tests::free_port());
    let http = format!("127.0.0.1:{}", outpost_tests::free_port());
    let url = format!("http://{http}");
    let subst = |c: &str, token: &str| {
        c.replace("/var/lib/outpost-hub", &hub_dir.display().to_string())
            .replace("/etc/outpost/agent.toml", &agent_cfg.display().to_string())
            .replace("hub.example.com:7443", &quic)
            .replace("opt2....", token)
    };
    let sh = |(file, line, cmd): &(String, usize, String),
              token: &str,
              dir: &std::path::Path,
              api_token: &str| {
        let c = subst(cmd, token);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&c)
            .current_dir(dir)
            .env("PATH", &path)
            .env("OUTPOST_HUB_URL", &url)
            .env("OUTPOST_HUB_TOKEN", api_token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}:{line}: `{cmd}` (run as `{c}`) failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    sh(&find("outpost-hub init"), "", &root, "");
    let cfg_path = hub_dir.join("data/hub.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let cfg = cfg
        .replace("0.0.0.0:7443", &quic)
        .replace("127.0.0.1:7070", &http);
    assert!(cfg.contains(&quic) && cfg.contains(&http), "{cfg}");
    std::fs::write(&cfg_path, cfg).unwrap();
    let api_token = std::fs::read_to_string(hub_dir.join("data/api.token"))
        .unwrap()
        .trim()
        .to_string();

    let (file, line, serve) = find("outpost-hub serve");
    let mut hub = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {}", subst(&serve, "")))
        .current_dir(&root)
        .env("PATH", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = outpost_tests::wait_for(std::time::Duration::from_secs(30), "the hub's API", || {
        Command::new(outpost_tests::hub_bin())
            .args(["agent", "list"])
            .env("OUTPOST_HUB_URL", &url)
            .env("OUTPOST_HUB_TOKEN", &api_token)
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    if up.is_err() {
        let _ = hub.kill();
        panic!("{file}:{line}: `{serve}`: the hub did not answer");
    }

    let token = sh(&find("outpost-hub token create"), "", &root, &api_token)
        .trim()
        .to_string();
    assert!(token.starts_with("opt2."), "token create printed {token:?}");
    std::fs::create_dir_all(s.join("workflows")).unwrap();
    std::fs::write(
        &agent_cfg,
        format!(
            "state_dir = \"{}\"\nworkflows_dir = \"{}\"\n[hub]\naddress = \"{quic}\"\n",
            s.join("state").display(),
            s.join("workflows").display()
        ),
    )
    .unwrap();
    sh(&find("outpost-agent enroll"), &token, &root, &api_token);
    sh(
        &find("outpost-hub workflow apply"),
        "",
        &root.join("examples"),
        &api_token,
    );
    let listed = sh(
        &(
            file.clone(),
            line,
            "outpost-hub agent list --output json".into(),
        ),
        "",
        &root,
        &api_token,
    );
    let _ = hub.kill();
    let _ = hub.wait();
    let agents: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
}
