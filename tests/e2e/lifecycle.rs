//! The workflow lifecycle from the ops CLI, end to end with the real binaries: `workflow apply
//! -f DIR` (all or nothing, `--dry-run`), `workflow delete` (removals reach the agent, history
//! kept, applying again revives it), contexts switching between two hubs, the documented exit
//! codes, and the completion scripts and man pages of both binaries.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use outpost_tests::{Daemon, Hub, Scratch, enrolled_agent, hub_bin, stderr, stdout, wait_for};

/// A workflow firing every second (`tag` changes its content: a new version at the hub).
fn ticker(name: &str, tag: &str) -> String {
    format!(
        "name: {name}\ndescription: '{tag}'\nschedule: '* * * * * *'\ncatchup: none\n\
         overlap: allow\ntasks:\n  t:\n    command: [/bin/true]\n"
    )
}

/// The names of the workflows the agent daemon has (its `status`).
fn agent_workflows(d: &Daemon) -> Option<Vec<String>> {
    let st = d.ctl_json("status", &[]).ok()?;
    Some(
        st["workflows"]
            .as_array()?
            .iter()
            .filter_map(|w| w["name"].as_str().map(String::from))
            .collect(),
    )
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn apply_dir_is_all_or_nothing_dry_run_changes_nothing_delete_sends_removals() {
    let s = Scratch::new("lifecycle-apply").unwrap();
    let hub = Hub::start(s.path(), "").unwrap();
    let d = enrolled_agent(&s.join("a1"), &hub, hub.quic_addr, "site=a", "").unwrap();
    let agent_id = hub.json(&["agent", "list"]).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = s.join("wfs");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("alpha.yaml"), ticker("alpha", "v1")).unwrap();
    std::fs::write(dir.join("beta.yml"), ticker("beta", "v1")).unwrap();
    std::fs::write(dir.join("README.md"), "not a workflow").unwrap();
    std::fs::write(dir.join("nested/gamma.yaml"), ticker("gamma", "v1")).unwrap();
    // The bad file: an unknown key on line 3.
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\nschedule = \"* * * * * *\"\nbogus = 1\n[tasks.t]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let d_str = dir.to_str().unwrap();

    // One bad file: nothing is applied, the error names file:line:col, exit 65.
    let out = hub.cli(&["workflow", "apply", "-f", d_str]).unwrap();
    assert_eq!(code(&out), 65, "{}{}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    let bad = format!("{}:", dir.join("bad.toml").display());
    assert!(
        err.lines()
            .any(|l| l.strip_prefix(&bad).is_some_and(|rest| {
                let mut p = rest.split(':');
                p.next().is_some_and(|n| n.parse::<u32>().is_ok())
                    && p.next().is_some_and(|n| n.parse::<u32>().is_ok())
            })),
        "file:line:col: {err}"
    );
    assert!(err.contains("nothing applied"), "{err}");
    assert!(names(&hub.json(&["workflow", "list"]).unwrap()).is_empty());

    // The same with --dry-run: refused the same way.
    let out = hub
        .cli(&["workflow", "apply", "-f", d_str, "--dry-run"])
        .unwrap();
    assert_eq!(code(&out), 65, "{}", stderr(&out));

    // Without the bad file, a dry run: new workflows, reaching the agent; nothing changes.
    std::fs::remove_file(dir.join("bad.toml")).unwrap();
    let out = hub
        .cli(&["workflow", "apply", "-f", d_str, "--dry-run"])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("alpha: new workflow"), "{text}");
    assert!(text.contains("beta: new workflow"), "{text}");
    assert!(!text.contains("gamma"), "not recursive without -R: {text}");
    assert!(
        text.contains(&format!("agents reached (1): {agent_id}")),
        "{text}"
    );
    assert!(text.contains("dry run: nothing changed"), "{text}");
    assert!(names(&hub.json(&["workflow", "list"]).unwrap()).is_empty());
    assert!(
        names(&hub.json(&["workflow", "list", "--all"]).unwrap()).is_empty(),
        "a dry run made no version"
    );

    // Apply for real (-R: gamma too), all three in one go.
    let v = hub.json(&["workflow", "apply", "-f", d_str, "-R"]).unwrap();
    assert_eq!(v["applied"], true, "{v}");
    let mut listed = names(&hub.json(&["workflow", "list"]).unwrap());
    listed.sort();
    assert_eq!(listed, ["alpha", "beta", "gamma"]);
    wait_for(Duration::from_secs(30), "alpha on the agent", || {
        let w = agent_workflows(&d)?;
        (w.contains(&"alpha".to_string()) && w.contains(&"beta".to_string())).then_some(())
    })
    .unwrap();

    // A changed file: the dry run prints the diff against the hub's version; nothing changes.
    std::fs::write(dir.join("alpha.yaml"), ticker("alpha", "v2")).unwrap();
    let out = hub
        .cli(&["workflow", "apply", "-f", d_str, "--dry-run"])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("alpha: changed (version 1"), "{text}");
    assert!(text.contains("-description: 'v1'"), "{text}");
    assert!(text.contains("+description: 'v2'"), "{text}");
    assert!(text.contains("beta: unchanged (version 1)"), "{text}");
    assert!(text.contains("follows apply"), "{text}");
    let hist = hub.json(&["workflow", "history", "alpha"]).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
    // A pinned pool keeps its version: the dry run says so and reaches no agent.
    let out = hub
        .cli(&[
            "workflow",
            "pin",
            "alpha",
            "--pool",
            "wf:alpha",
            "--version",
            "1",
        ])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(
        &hub.cli(&["workflow", "apply", "-f", d_str, "--dry-run"])
            .unwrap(),
    );
    assert!(text.contains("pinned to version 1"), "{text}");
    assert!(text.contains("agents reached: none"), "{text}");
    let out = hub
        .cli(&["workflow", "unpin", "alpha", "--pool", "wf:alpha"])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // Runs of alpha reach the hub before it is deleted.
    wait_for(Duration::from_secs(30), "a run of alpha at the hub", || {
        let runs = hub.json(&["run", "list", "--workflow", "alpha"]).ok()?;
        (!runs.as_array()?.is_empty()).then_some(())
    })
    .unwrap();

    // A deployer limited to other pools may not delete it (403: exit 1).
    let dana = hub.operator("dana", "deployer", "wf:beta").unwrap();
    let out = hub.cli_as(&dana, &["workflow", "delete", "alpha"]).unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("may act only on pools"),
        "{}",
        stderr(&out)
    );

    // Delete: the agent gets the removal and stops running it; history is kept.
    let out = hub.cli(&["workflow", "delete", "alpha"]).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removals sent to 1 agent(s): {agent_id}")),
        "{}",
        stdout(&out)
    );
    wait_for(
        Duration::from_secs(30),
        "alpha removed from the agent",
        || {
            let w = agent_workflows(&d)?;
            (!w.contains(&"alpha".to_string()) && w.contains(&"beta".to_string())).then_some(())
        },
    )
    .unwrap();
    let listed = names(&hub.json(&["workflow", "list"]).unwrap());
    assert!(!listed.contains(&"alpha".to_string()), "{listed:?}");
    let all = hub.json(&["workflow", "list", "--all"]).unwrap();
    let alpha = all
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "alpha")
        .unwrap_or_else(|| panic!("{all}"));
    assert!(alpha["deleted"].is_string(), "{all}");
    let text = stdout(&hub.cli(&["workflow", "list", "--all"]).unwrap());
    assert!(text.contains("DELETED"), "{text}");
    let hist = hub.json(&["workflow", "history", "alpha"]).unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 1, "history kept: {hist}");
    let runs = hub.json(&["run", "list", "--workflow", "alpha"]).unwrap();
    assert!(!runs.as_array().unwrap().is_empty(), "runs kept");
    let audit = stdout(&hub.cli(&["audit"]).unwrap());
    assert!(audit.contains("workflow.delete"), "{audit}");
    // Deleting it again: not found (exit 3).
    let out = hub.cli(&["workflow", "delete", "alpha"]).unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));

    // Applying it again revives it with a new version, and the agent runs it again.
    let a = dir.join("alpha.yaml");
    let out = hub
        .cli(&["workflow", "apply", "-f", a.to_str().unwrap(), "--dry-run"])
        .unwrap();
    assert!(
        stdout(&out).contains("deleted workflow applied again"),
        "{}",
        stdout(&out)
    );
    let v = hub
        .json(&["workflow", "apply", "-f", a.to_str().unwrap()])
        .unwrap();
    assert_eq!(v["results"][0]["version"], 2, "{v}");
    assert!(names(&hub.json(&["workflow", "list"]).unwrap()).contains(&"alpha".to_string()));
    wait_for(Duration::from_secs(30), "alpha back on the agent", || {
        agent_workflows(&d)?
            .contains(&"alpha".to_string())
            .then_some(())
    })
    .unwrap();
}

/// `outpost-hub ARGS` with only the environment given (no inherited hub URL, token, context).
fn hub_cmd(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(hub_bin())
        .args(args)
        .env_remove("OUTPOST_HUB_URL")
        .env_remove("OUTPOST_HUB_TOKEN")
        .env_remove("OUTPOST_HUB_CA")
        .env_remove("OUTPOST_CONTEXT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write_token(dir: &Path, name: &str, hub: &Hub) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n", hub.api_token)).unwrap();
    p.display().to_string()
}

#[test]
fn contexts_switch_between_two_hubs_and_exit_codes_are_documented() {
    let s = Scratch::new("lifecycle-contexts").unwrap();
    std::fs::create_dir_all(s.join("a")).unwrap();
    std::fs::create_dir_all(s.join("b")).unwrap();
    let hub_a = Hub::start(&s.join("a"), "").unwrap();
    let hub_b = Hub::start(&s.join("b"), "").unwrap();
    let wf = s.write("only-a.yaml", &ticker("only-a", "v1")).unwrap();
    let out = hub_a
        .cli(&["workflow", "apply", "-f", wf.to_str().unwrap()])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let cfg = s.join("cli/config.toml");
    let cfg_s = cfg.display().to_string();
    let env = [("OUTPOST_CONFIG", cfg_s.as_str())];
    let ta = write_token(s.path(), "a.token", &hub_a);
    let tb = write_token(s.path(), "b.token", &hub_b);
    for (name, url, tok) in [("a", &hub_a.http_url, &ta), ("b", &hub_b.http_url, &tb)] {
        let out = hub_cmd(
            &env,
            &[
                "config",
                "set-context",
                name,
                "--server",
                url,
                "--token-file",
                tok,
            ],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    // No current context yet, no flags: no token (usage, exit 2).
    let out = hub_cmd(&env, &["workflow", "list"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    let list = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["workflow", "list", "-o", "json"];
        args.extend_from_slice(extra);
        let out = hub_cmd(&env, &args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        names(&serde_json::from_slice(&out.stdout).unwrap())
    };
    assert_eq!(code(&hub_cmd(&env, &["config", "use-context", "a"])), 0);
    assert_eq!(list(&[]), ["only-a"]);
    assert!(list(&["--context", "b"]).is_empty());
    assert_eq!(code(&hub_cmd(&env, &["config", "use-context", "b"])), 0);
    assert!(list(&[]).is_empty());
    // A flag wins over the context.
    assert_eq!(
        list(&["--hub", &hub_a.http_url, "--token", &hub_a.api_token]),
        ["only-a"]
    );
    // The environment wins over the context too.
    let out = hub_cmd(
        &[
            ("OUTPOST_CONFIG", cfg_s.as_str()),
            ("OUTPOST_HUB_URL", hub_a.http_url.as_str()),
            ("OUTPOST_HUB_TOKEN", hub_a.api_token.as_str()),
        ],
        &["workflow", "list", "-o", "json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        names(&serde_json::from_slice(&out.stdout).unwrap()),
        ["only-a"]
    );
    let out = hub_cmd(&env, &["config", "current-context"]);
    assert_eq!(stdout(&out).trim(), "b");
    let text = stdout(&hub_cmd(&env, &["config", "get-contexts"]));
    let current: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(current.len(), 1, "{text}");
    assert!(current[0].contains(&hub_b.http_url), "{text}");
    // An unknown context: usage (2); use-context of one: not found (3).
    assert_eq!(
        code(&hub_cmd(&env, &["workflow", "list", "--context", "zz"])),
        2
    );
    assert_eq!(code(&hub_cmd(&env, &["config", "use-context", "zz"])), 3);

    // Exit codes: not found 3, conflict 4, unreachable 5, usage 2.
    let with_a = |args: &[&str]| hub_cmd(&env, &[&["--context", "a"], args].concat());
    assert_eq!(code(&with_a(&["workflow", "show", "nope"])), 3);
    let out = with_a(&["pool", "create", "line-1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&with_a(&["pool", "create", "line-1"])), 4);
    let out = hub_cmd(
        &[],
        &[
            "workflow",
            "list",
            "--hub",
            "http://127.0.0.1:1",
            "--token",
            "x",
        ],
    );
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot reach the hub"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&hub_cmd(&[], &["workflow", "nosuch"])), 2);
}

#[test]
fn completions_and_man_pages_for_both_binaries() {
    let s = Scratch::new("lifecycle-docgen").unwrap();
    for (bin, sub) in [
        (hub_bin(), "workflow"),
        (outpost_tests::agent_bin(), "status"),
    ] {
        let name = bin.file_name().unwrap().to_string_lossy().to_string();
        let out = Command::new(&bin)
            .args(["completion", "bash"])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let script = s.join(&format!("{name}.bash"));
        std::fs::write(&script, &out.stdout).unwrap();
        let check = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(check.status.success(), "{name}: {}", stderr(&check));
        assert!(stdout(&out).contains(sub), "{name}");
        for shell in ["zsh", "fish"] {
            let out = Command::new(&bin)
                .args(["completion", shell])
                .output()
                .unwrap();
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "{name} {shell}"
            );
        }
        let dir = s.join(&format!("man-{name}"));
        let out = Command::new(&bin)
            .args(["man", "--dir", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let top = std::fs::read_to_string(dir.join(format!("{name}.1"))).unwrap();
        assert!(top.contains(".TH") && top.contains(sub), "{top}");
        assert!(
            dir.join(format!("{name}-{sub}.1")).is_file(),
            "{name}-{sub}.1"
        );
    }
}
