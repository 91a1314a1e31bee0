//! Run-as through the real `outpost-agent __exec` wrapper. Needs root (CI runs the tests as
//! root): the test fails, never passes silently, without it.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use outpost_agent::exec::{ExecConfig, SpawnRequest, script_argv, spawn};
use outpost_common::model::Limits;
use outpost_common::record::AttemptOutcome;

fn cfg(dir: &Path) -> ExecConfig {
    let mut c = ExecConfig::new(dir.join("logs"), env!("CARGO_BIN_EXE_outpost-agent"));
    c.run_as.allowed_users = vec!["nobody".into()];
    c
}

fn req(script: &str) -> SpawnRequest {
    SpawnRequest {
        run_id: "wf@v1@20261125T073000.000Z".into(),
        task_id: "t".into(),
        attempt: 1,
        program: script_argv(None, script),
        env: Vec::new(),
        working_dir: Some("/".into()),
        limits: Limits::default(),
        timeout: None,
        secret_env: Vec::new(),
        user: Some("nobody".into()),
        group: None,
    }
}

#[tokio::test]
async fn a_task_run_as_nobody_has_its_ids_no_groups_no_capabilities_and_no_access() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test must run as root (it runs a task as `nobody`); CI runs the tests as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "private").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let script = format!(
        "echo \"ids=$(id -u):$(id -g) groups=$(id -G)\"; grep -E '^Cap(Eff|Prm|Amb):' /proc/self/status; cat {} && echo READ-IT; exit 0",
        key.display()
    );
    let c = cfg(dir.path());
    let run = spawn(&c, req(&script)).await.unwrap();
    let log_path = run.log_path.clone();
    let exit = run.wait().await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(exit.outcome, AttemptOutcome::Exited(0), "{exit:?}\n{log}");
    assert!(log.contains("ids=65534:65534 groups=65534\n"), "{log}");
    for set in ["CapEff", "CapPrm", "CapAmb"] {
        assert!(
            log.contains(&format!("{set}:\t0000000000000000")),
            "{set} not empty: {log}"
        );
    }
    assert!(
        !log.contains("READ-IT") && !log.contains("private"),
        "{log}"
    );

    // With a group as well.
    let mut r = req("id -g");
    r.attempt = 2;
    r.group = Some("nogroup".into());
    let run = spawn(&c, r).await.unwrap();
    let log_path = run.log_path.clone();
    run.wait().await;
    assert_eq!(std::fs::read_to_string(&log_path).unwrap(), "65534\n");
}
