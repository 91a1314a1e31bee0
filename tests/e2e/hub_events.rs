//! The hub's domain events as an in-process subscriber sees them while a real `outpost-agent`
//! process enrolls, connects over QUIC, runs a deployed workflow and stops: the events of the
//! session side (`AgentConnected`, `RunFinished`, `AgentDisconnected`) and of an operation
//! (`WorkflowApplied`, with the actor the CLI named). The hub runs in this process
//! (`outpost_hub::serve::run`, the code `outpost-hub serve` runs) so the test can subscribe.

use std::time::{Duration, Instant};

use outpost_hub::ops::{Event, EventKind};
use outpost_tests::{Hub, Scratch, enrolled_agent, free_port, stderr, stdout};
use tokio::sync::broadcast;

use crate::hub::{FAST_HUB, ticker};

/// The next event `pick` accepts, within `limit` (the events before it are skipped).
fn next_event<T>(
    rt: &tokio::runtime::Runtime,
    rx: &mut broadcast::Receiver<Event>,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rt.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
            Ok(Ok(e)) => {
                if let Some(t) = pick(&e) {
                    return t;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                panic!("the subscriber missed {n} events waiting for {what}")
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event channel closed"),
            Err(_) => panic!("no {what} within {limit:?}"),
        }
    }
}

#[test]
fn a_subscriber_sees_session_and_operation_events_with_their_actors() {
    let s = Scratch::new("hub-events").unwrap();
    let data_dir = s.join("hub");
    let offline_dir = outpost_hub::init::default_offline_dir(&data_dir);
    outpost_hub::init::init(
        &data_dir,
        outpost_hub::config::DEFAULT_HUB_NAME,
        &[],
        &offline_dir,
        outpost_hub::init::KeyPlan::default(),
    )
    .unwrap();
    let (quic_port, http_port) = (free_port(), free_port());
    let config_path = s.join("hub.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = \"{}\"\nquic_listen = \"127.0.0.1:{quic_port}\"\nhttp_listen = \"127.0.0.1:{http_port}\"\noffline_after = \"3s\"\n{FAST_HUB}\n\n[keys]\nrelease_key = \"{}\"\n",
            data_dir.display(),
            offline_dir.join("release-1.key").display()
        ),
    )
    .unwrap();
    let config = outpost_hub::config::HubConfig::load(&config_path).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(outpost_hub::serve::run(
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |served| {
            let _ = ready_tx.send(served.hub.subscribe());
        },
    ));
    let mut rx = ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let hub = Hub {
        child: None,
        api_token: std::fs::read_to_string(data_dir.join("api.token"))
            .unwrap()
            .trim()
            .to_string(),
        data_dir,
        offline_dir,
        config: config_path,
        http_url: format!("http://127.0.0.1:{http_port}"),
        quic_addr: format!("127.0.0.1:{quic_port}").parse().unwrap(),
        stderr_path: s.join("hub.stderr"),
        env: Vec::new(),
    };

    let mut agent = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let id = next_event(
        &rt,
        &mut rx,
        Duration::from_secs(30),
        "AgentEnrolled",
        |e| match &e.kind {
            EventKind::AgentEnrolled { agent, .. } => Some(agent.clone()),
            _ => None,
        },
    );
    // The session side: the agent's own session, the agent as the actor.
    let connected = next_event(
        &rt,
        &mut rx,
        Duration::from_secs(30),
        "AgentConnected",
        |e| {
            matches!(&e.kind, EventKind::AgentConnected { agent, .. } if *agent == id)
                .then(|| e.clone())
        },
    );
    assert_eq!(connected.actor, id);

    // An operation: the actor is the credential's name.
    let alice = hub.operator("alice", "deployer", "").unwrap();
    let file = s.join("tick.yaml");
    std::fs::write(&file, ticker("tick", 1, "v1", "")).unwrap();
    let out = hub
        .cli_as(&alice, &["workflow", "apply", "-f", file.to_str().unwrap()])
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let applied = next_event(
        &rt,
        &mut rx,
        Duration::from_secs(30),
        "WorkflowApplied",
        |e| matches!(&e.kind, EventKind::WorkflowApplied { .. }).then(|| e.clone()),
    );
    assert_eq!(applied.actor, "alice");
    match &applied.kind {
        EventKind::WorkflowApplied { versions } => {
            assert_eq!(versions.len(), 1, "{versions:?}");
            assert_eq!(
                (versions[0].workflow.as_str(), versions[0].version),
                ("tick", 1)
            );
            assert!(versions[0].changed);
        }
        other => panic!("{other:?}"),
    }

    // A status batch committed by the session: the run the agent finished.
    let (run_agent, state) = next_event(
        &rt,
        &mut rx,
        Duration::from_secs(60),
        "RunFinished",
        |e| match &e.kind {
            EventKind::RunFinished {
                agent,
                workflow,
                version,
                state,
                ..
            } if workflow == "tick" => {
                assert_eq!((e.actor.as_str(), *version), (agent.as_str(), 1));
                Some((agent.clone(), state.clone()))
            }
            _ => None,
        },
    );
    assert_eq!(
        (run_agent.as_str(), state.as_str()),
        (id.as_str(), "succeeded")
    );

    agent.terminate(Duration::from_secs(10)).unwrap();
    next_event(
        &rt,
        &mut rx,
        Duration::from_secs(30),
        "AgentDisconnected",
        |e| matches!(&e.kind, EventKind::AgentDisconnected { agent } if *agent == id).then_some(()),
    );

    let _ = stop_tx.send(());
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
    });
}
