//! Faults made for real between the hub and its agents: a partition (UDP relay blackhole) across
//! many firings, the hub killed (-9) during a backlog drain, an agent killed (-9) during a sync,
//! an agent certificate from another CA, and garbage frames. After every fault the hub must hold
//! exactly the runs the agent made: none missing, none twice.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_common::proto::{AgentMsg, EnrollRequest, EnrollResponse, HubMsg, MAX_FRAME};
use outpost_tests::relay::{Mode, Relay};
use outpost_tests::{Hub, Scratch, enrolled_agent, wait_for};

use crate::hub::{
    FAST_HUB, agent_id_by_name, agent_runs, agent_show, agent_status, apply,
    assert_every_second_fired, assert_hub_has_exactly_agent_runs, assert_sequences_match,
    committed_seq, hub_runs, now_ms, scheduled_ms, ticker,
};

fn relay_to(hub: &Hub) -> Relay {
    Relay::start("127.0.0.1:0".parse().unwrap(), hub.quic_addr).unwrap()
}

fn wait_online(hub: &Hub, id: &str, online: bool, within: Duration) {
    wait_for(within, if online { "online" } else { "offline" }, || {
        (agent_show(hub, id)["online"] == online).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
}

/// Partition the relay for ~12 s (≥ 10 firings), checking the hub really lost the agent.
/// Returns the window (ms) the partition lasted.
fn partition(hub: &Hub, relay: &Relay, id: &str) -> (i64, i64) {
    let t0 = now_ms();
    relay.set_mode(Mode::Blackhole);
    // The hub notices the silence (idle timeout 3 s) and marks the agent offline.
    wait_online(hub, id, false, Duration::from_secs(10));
    let frozen = hub_runs(hub, id, "tick").len();
    let rest = 12_500 - (now_ms() - t0);
    if rest > 0 {
        std::thread::sleep(Duration::from_millis(rest as u64));
    }
    assert_eq!(
        hub_runs(hub, id, "tick").len(),
        frozen,
        "runs reached the hub through a partition"
    );
    (t0, now_ms())
}

#[test]
fn a_partition_across_a_dozen_firings_loses_nothing_and_counts_nothing_twice() {
    let s = Scratch::new("hubpart").unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let relay = relay_to(&hub);
    let mut d = enrolled_agent(&s.join("a"), &hub, relay.addr(), "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(30), "runs at the hub", || {
        (hub_runs(&hub, &id, "tick").len() >= 2).then_some(())
    })
    .unwrap();

    let (t0, t1) = partition(&hub, &relay, &id);
    assert!(agent_status(&d)["outbox_pending"].as_u64().unwrap() > 0);
    relay.set_mode(Mode::Pass);
    wait_online(&hub, &id, true, Duration::from_secs(30));
    // Cut off, the agent fired every second on its own: at least 10 firings, none missed.
    let own = agent_runs(&d, "tick");
    assert_every_second_fired(&own, t0, t1);
    let during = scheduled_ms(&own)
        .into_iter()
        .filter(|t| *t > t0 && *t < t1)
        .count();
    assert!(during >= 10, "{during} firings during the partition");
    let n = assert_hub_has_exactly_agent_runs(&hub, &d, &id, "tick");
    assert!(n >= 14, "{n}");
    assert_sequences_match(&hub, &mut d, &id, "tick");
}

/// Set up a hub, a relay and an agent with a backlog of ~12 s of runs (10 tasks each) built
/// behind a partition, then heal the link slowly (1.5 s each way), so that the backlog drains
/// while acknowledgements are still on the way back.
fn backlog(tag: &str) -> (Scratch, Hub, Relay, outpost_tests::Daemon, String, u64, u64) {
    let s = Scratch::new(tag).unwrap();
    let hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let relay = relay_to(&hub);
    let d = enrolled_agent(&s.join("a"), &hub, relay.addr(), "name=a", "").unwrap();
    let id = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 10, "v1", ""));
    wait_for(Duration::from_secs(30), "runs at the hub", || {
        (hub_runs(&hub, &id, "tick").len() >= 2).then_some(())
    })
    .unwrap();
    partition(&hub, &relay, &id);
    let c0 = committed_seq(&hub, &id);
    let b = agent_status(&d)["outbox_pending"].as_u64().unwrap();
    // More than one batch (256 entries), and, through a link with a 3 s round trip and QUIC's
    // congestion window, several round trips to drain.
    assert!(b > 256, "backlog of only {b} entries");
    relay.set_mode(Mode::Delay(Duration::from_millis(1500)));
    (s, hub, relay, d, id, c0, b)
}

/// Poll the hub's committed seq for the agent until it moves past `c0`.
fn wait_commit_past(hub: &Hub, id: &str, c0: u64) -> u64 {
    wait_for(
        Duration::from_secs(40),
        "the hub to commit part of the backlog",
        || {
            let c = committed_seq(hub, id);
            (c > c0).then_some(c)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()))
}

#[test]
fn hub_killed_during_a_backlog_drain_loses_nothing_and_counts_nothing_twice() {
    let (_s, mut hub, relay, mut d, id, c0, b) = backlog("hubkill");
    let c1 = wait_commit_past(&hub, &id, c0);
    hub.kill9().unwrap();
    eprintln!("hub killed after committing seq {c1} (was {c0}); backlog at heal: {b}");
    // It died with part of the backlog committed and the rest still on the agent.
    assert!(
        c1 < c0 + b,
        "the backlog was already drained when the hub died"
    );
    std::thread::sleep(Duration::from_secs(1));
    relay.set_mode(Mode::Pass);
    hub.restart().unwrap();
    // Everything the hub committed before dying survived the kill.
    assert!(committed_seq(&hub, &id) >= c1);
    wait_online(&hub, &id, true, Duration::from_secs(30));
    let n = assert_hub_has_exactly_agent_runs(&hub, &d, &id, "tick");
    assert!(n >= 14, "{n}");
    assert_sequences_match(&hub, &mut d, &id, "tick");
}

#[test]
fn agent_killed_during_a_sync_loses_nothing_and_counts_nothing_twice() {
    let (_s, hub, relay, mut d, id, c0, b) = backlog("agentkill");
    let c1 = wait_commit_past(&hub, &id, c0);
    // The hub committed part of the backlog; its acknowledgement is still in flight (1.5 s).
    d.kill9().unwrap();
    // The agent died holding entries the hub had already committed (their acknowledgement never
    // reached it) and entries the hub never got: after its restart it must send them again, and
    // the hub must take the new ones and not count the others twice.
    let (acked, last) = {
        let st = outpost_agent::store::Store::open(&d.state_dir.join("agent.redb")).unwrap();
        (st.acked_seq().unwrap(), st.last_seq().unwrap())
    };
    eprintln!(
        "agent killed: hub committed {c1} (was {c0}, backlog {b}); agent acked {acked}, last {last}"
    );
    assert!(
        acked < c1 && c1 < last,
        "not killed in the middle of a sync"
    );
    relay.set_mode(Mode::Pass);
    d.restart().unwrap();
    wait_online(&hub, &id, true, Duration::from_secs(30));
    let n = assert_hub_has_exactly_agent_runs(&hub, &d, &id, "tick");
    assert!(n >= 14, "{n}");
    assert_sequences_match(&hub, &mut d, &id, "tick");
}

// ----- raw QUIC peers ---------------------------------------------------------------------------

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn hub_ca(hub: &Hub) -> Vec<u8> {
    outpost_net::pki::read_certs_file(&hub.data_dir.join("ca.pem"), "hub CA")
        .unwrap()
        .remove(0)
}

fn endpoint() -> quinn::Endpoint {
    outpost_net::endpoint::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap()
}

async fn connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    tls: std::sync::Arc<rustls_config::ClientConfig>,
) -> Result<quinn::Connection, outpost_net::NetError> {
    let q =
        outpost_net::tls::quinn_client_config(tls, outpost_net::tls::Transport::default()).unwrap();
    outpost_net::endpoint::connect(ep, addr, "outpost-hub", q, Duration::from_secs(10)).await
}

/// rustls, as re-exported through quinn (the tests do not depend on rustls directly).
mod rustls_config {
    pub use quinn::rustls::ClientConfig;
}

/// Write raw bytes on a new stream of `conn` and wait for the hub to close the connection;
/// returns its application close code.
async fn send_raw_expect_close(conn: &quinn::Connection, bytes: &[u8]) -> u64 {
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let _ = send.write_all(bytes).await;
    expect_closed(conn).await
}

async fn expect_closed(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => c.error_code.into_inner(),
        Ok(other) => panic!("connection ended otherwise: {other}"),
        Err(_) => panic!("the hub did not close the connection"),
    }
}

/// What a test-side agent needs for a session: its id, certificate, key, the hub CA, and the
/// version of the root metadata it trusts.
struct Identity {
    agent_id: String,
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
    /// The root metadata version enrollment handed out.
    root_version: u64,
}

/// Enroll over QUIC exactly as an agent does (pinned CA, CSR, token), from the test.
async fn enroll(hub: &Hub, token: &str) -> Identity {
    let parts: Vec<&str> = token.split('.').collect();
    let (credential, pin) = (format!("{}.{}", parts[1], parts[2]), parts[3]);
    let (tls, _) = outpost_net::tls::client_enroll_config(pin).unwrap();
    let ep = endpoint();
    let conn = connect(&ep, hub.quic_addr, tls).await.unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let (key, csr_der) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
    let req = EnrollRequest {
        token: credential,
        csr_der,
        // The token's labels are authoritative: an agent may only repeat them.
        labels: vec![],
        hostname: "test".into(),
        software_version: "0.1.0".into(),
        name: None,
    };
    send.write_all(&outpost_net::stream::encode_frame(&req, MAX_FRAME).unwrap())
        .await
        .unwrap();
    let mut recv = outpost_net::stream::FramedRecv::new(recv);
    let resp: EnrollResponse = recv.recv().await.unwrap().unwrap();
    conn.close(0u32.into(), b"enrolled");
    let EnrollResponse::Ok {
        agent_id,
        cert_der,
        ca_der,
        root,
        ..
    } = resp
    else {
        panic!("enrollment refused: {resp:?}")
    };
    let trust = outpost_common::trust::Trust::new(root).unwrap();
    Identity {
        agent_id,
        cert: cert_der,
        key,
        ca: ca_der,
        root_version: trust.version(),
    }
}

/// Open a session as `who` and read until `Welcome` (deploys may follow it).
async fn session(
    hub: &Hub,
    who: &Identity,
) -> (
    quinn::Connection,
    quinn::SendStream,
    outpost_net::FramedRecv,
) {
    let tls =
        outpost_net::tls::client_session_config(&who.ca, std::slice::from_ref(&who.cert), &who.key)
            .unwrap();
    let conn = connect(&endpoint(), hub.quic_addr, tls).await.unwrap();
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let hello = hello(&who.agent_id, who.root_version);
    send.write_all(&outpost_net::stream::encode_frame(&hello, MAX_FRAME).unwrap())
        .await
        .unwrap();
    let mut recv = outpost_net::FramedRecv::new(recv);
    let first = tokio::time::timeout(Duration::from_secs(10), recv.recv_frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let msg = outpost_common::frame::decode_hub_msg(&first)
        .unwrap()
        .unwrap();
    assert!(matches!(msg, HubMsg::Welcome { .. }), "{msg:?}");
    (conn, send, recv)
}

fn hello(agent_id: &str, root_version: u64) -> AgentMsg {
    AgentMsg::Hello {
        agent_id: agent_id.into(),
        software_version: "0.1.0".into(),
        labels: vec![("name".into(), "raw".into())],
        active: vec![],
        acked_seq: 0,
        last_seq: 0,
        root_version,
        session: rand::random::<[u8; 16]>().to_vec(),
    }
}

/// The hub keeps taking runs from a real agent.
fn assert_still_syncing(hub: &Hub, id: &str) {
    let before = hub_runs(hub, id, "tick").len();
    wait_for(
        Duration::from_secs(15),
        "the other agent still syncing",
        || (hub_runs(hub, id, "tick").len() >= before + 2).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", hub.stderr_tail()));
    assert_eq!(agent_show(hub, id)["online"], true);
}

#[test]
fn an_agent_certificate_from_another_ca_is_refused() {
    let s = Scratch::new("hubforeign").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let _d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let victim = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(30), "runs at the hub", || {
        (!hub_runs(&hub, &victim, "tick").is_empty()).then_some(())
    })
    .unwrap();

    // Another CA, even one with the same name as the hub's, issuing a certificate for the
    // enrolled agent's id (an impostor of that agent) with a key of its own.
    let foreign = outpost_net::pki::Ca::generate("outpost-hub CA").unwrap();
    let (key, csr) = outpost_net::pki::generate_agent_key_and_csr().unwrap();
    let cert = foreign
        .issue_intermediate("outpost-hub intermediate CA", outpost_net::pki::days(30))
        .unwrap()
        .sign_csr(&csr, &victim, outpost_net::pki::days(30))
        .unwrap();
    let tls = outpost_net::tls::client_session_config(&hub_ca(&hub), &[cert], &key).unwrap();
    let outcome = rt().block_on(async {
        let ep = endpoint();
        let conn = match connect(&ep, hub.quic_addr, tls).await {
            Err(e) => return format!("handshake failed: {e}"),
            Ok(c) => c,
        };
        // In TLS 1.3 the client may finish before the server has judged its certificate: the
        // verdict then arrives as a close. No Welcome may ever come.
        let attempt = async {
            let (mut send, recv) = conn.open_bi().await?;
            send.write_all(
                &outpost_net::stream::encode_frame(&hello(&victim, 0), MAX_FRAME).unwrap(),
            )
            .await?;
            let mut recv = outpost_net::FramedRecv::new(recv);
            let frame = recv.recv_frame().await?;
            anyhow::Ok(frame)
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(Some(f))) => panic!(
                "the hub answered an agent of another CA: {:?}",
                outpost_common::frame::decode_hub_msg(&f)
            ),
            Ok(Ok(None)) | Ok(Err(_)) => {}
            Err(_) => panic!("neither refused nor answered"),
        }
        // The hub's TLS stack refused the certificate: a crypto (TLS alert) close, 0x100-0x1ff.
        match conn.close_reason() {
            Some(quinn::ConnectionError::ConnectionClosed(c))
                if (0x100..0x200).contains(&u64::from(c.error_code)) =>
            {
                format!("refused after the handshake: {c}")
            }
            other => panic!("closed for another reason: {other:?}"),
        }
    });
    eprintln!("foreign-CA agent: {outcome}");
    // The impersonated agent is unaffected and the hub keeps serving.
    assert!(hub.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert_still_syncing(&hub, &victim);
    let log = hub.stderr_tail();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_garbage_frame_closes_only_its_own_connection() {
    let s = Scratch::new("hubgarbage").unwrap();
    let mut hub = Hub::start(s.path(), FAST_HUB).unwrap();
    let _d = enrolled_agent(&s.join("a"), &hub, hub.quic_addr, "name=a", "").unwrap();
    let other = agent_id_by_name(&hub, "a");
    apply(&hub, s.path(), "tick.yaml", &ticker("tick", 1, "v1", ""));
    wait_for(Duration::from_secs(30), "runs at the hub", || {
        (!hub_runs(&hub, &other, "tick").is_empty()).then_some(())
    })
    .unwrap();
    let token = hub.token("").unwrap();
    let pin = token.split('.').nth(3).unwrap().to_string();
    let rt = rt();
    rt.block_on(async {
        // 1. An enrollment connection (no client certificate) announcing a 4 GiB frame.
        let (tls, _) = outpost_net::tls::client_enroll_config(&pin).unwrap();
        let ep = endpoint();
        let conn = connect(&ep, hub.quic_addr, tls).await.unwrap();
        let code = send_raw_expect_close(&conn, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
        assert_eq!(code, 1, "protocol error close code");

        // 2. An enrolled session: a frame that is not CBOR after Welcome.
        let me = enroll(&hub, &token).await;
        let (conn, mut send, _recv) = session(&hub, &me).await;
        let mut junk = 5u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0xff, 0xfe, 0x00, b'a', b'b']);
        send.write_all(&junk).await.unwrap();
        assert_eq!(expect_closed(&conn).await, 1);

        // 3. Again (the agent is not banned for it): a frame longer than MAX_FRAME.
        let (conn, mut send, _recv) = session(&hub, &me).await;
        let too_long = u32::try_from(MAX_FRAME + 1).unwrap().to_be_bytes();
        send.write_all(&too_long).await.unwrap();
        assert_eq!(expect_closed(&conn).await, 1);

        // 4. A well-formed message that breaks the protocol: a second Hello.
        let (conn, mut send, _recv) = session(&hub, &me).await;
        send.write_all(
            &outpost_net::stream::encode_frame(&hello(&me.agent_id, me.root_version), MAX_FRAME)
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(expect_closed(&conn).await, 1);
    });
    assert!(hub.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert_still_syncing(&hub, &other);
    let log = hub.stderr_tail();
    assert!(!log.contains("panicked"), "{log}");
}
