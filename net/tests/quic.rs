//! Real quinn connections on 127.0.0.1 with certificates made in memory.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers outside #[test] fns too)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minicbor::{Decode, Encode};
use outpost_common::proto::MAX_FRAME;
use outpost_net::pki::{self, Ca};
use outpost_net::stream::{self, FramedRecv, FramedSend};
use outpost_net::tls::{self, Transport};
use outpost_net::{NetError, endpoint};
use tokio::sync::mpsc;

const HUB: &str = "outpost-hub";
const T: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
struct Msg {
    #[n(0)]
    seq: u64,
    #[n(1)]
    text: String,
}

fn msg(seq: u64, text: &str) -> Msg {
    Msg {
        seq,
        text: text.to_string(),
    }
}

fn any_addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Certificate of a new agent `id` issued by `ca`: (chain, key).
fn agent_cert(ca: &Ca, id: &str) -> (Vec<Vec<u8>>, Vec<u8>) {
    let (key, csr) = pki::generate_agent_key_and_csr().unwrap();
    let cert = ca.sign_csr(&csr, id, outpost_net::pki::days(30)).unwrap();
    (vec![cert], key)
}

/// What the test server observed on one connection.
#[derive(Debug)]
enum Seen {
    /// Connection accepted; the peer's agent id.
    Connected(Option<String>),
    /// A message arrived.
    Msg(Option<String>, Msg),
    /// The framed stream failed; the server closed the connection.
    FrameError(String),
    /// The handshake failed.
    HandshakeFailed(String),
    /// The peer finished its stream.
    End,
}

/// A hub-like server: for each connection, reads framed `Msg`s on the first bidi stream and
/// answers each with `Msg { seq: seq + 1, text: "<agent id or anonymous>:<text>" }`. A framing
/// error closes only that connection (code 1). Reports everything on the channel.
fn start_server(
    chain: &[Vec<u8>],
    key: &[u8],
    ca_der: &[u8],
    transport: quinn::TransportConfig,
) -> (quinn::Endpoint, SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let rustls = tls::server_config(chain, key, ca_der).unwrap();
    let mut cfg = tls::quinn_server_config(rustls, Transport::default()).unwrap();
    cfg.transport_config(Arc::new(transport));
    let ep = endpoint::server_endpoint(any_addr(), cfg).unwrap();
    let addr = ep.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let acc = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acc.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Seen::HandshakeFailed(e.to_string()));
                        return;
                    }
                };
                let who = tls::peer_agent_id(&conn);
                let _ = tx.send(Seen::Connected(who.clone()));
                let Ok((mut s, mut r)) = stream::accept_bi(&conn).await else {
                    return;
                };
                loop {
                    match r.recv::<Msg>().await {
                        Ok(Some(m)) => {
                            let _ = tx.send(Seen::Msg(who.clone(), m.clone()));
                            let name = who.clone().unwrap_or_else(|| "anonymous".into());
                            let reply = msg(m.seq + 1, &format!("{name}:{}", m.text));
                            if s.send(&reply).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            let _ = tx.send(Seen::End);
                            let _ = s.finish();
                            conn.closed().await;
                            return;
                        }
                        Err(e) => {
                            conn.close(quinn::VarInt::from_u32(1), b"bad frame");
                            let _ = tx.send(Seen::FrameError(e.to_string()));
                            return;
                        }
                    }
                }
            });
        }
    });
    (ep, addr, rx)
}

fn default_transport() -> quinn::TransportConfig {
    Transport::default().quinn().unwrap()
}

struct Hub {
    ca: Ca,
    ep: quinn::Endpoint,
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

fn hub() -> Hub {
    let ca = Ca::generate("hub CA").unwrap();
    let (chain, key) = ca.issue_server(HUB, outpost_net::pki::days(30)).unwrap();
    let (ep, addr, seen) = start_server(&chain, &key, ca.cert_der(), default_transport());
    Hub { ca, ep, addr, seen }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("server reported nothing")
        .expect("server channel closed")
}

async fn session_client(
    ca_der: &[u8],
    cert: &(Vec<Vec<u8>>, Vec<u8>),
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, NetError> {
    let rustls = tls::client_session_config(ca_der, &cert.0, &cert.1).unwrap();
    let cfg = tls::quinn_client_config(rustls, Transport::default()).unwrap();
    let ep = endpoint::client_endpoint(any_addr()).unwrap();
    endpoint::connect(&ep, addr, name, cfg, T).await
}

/// Whether the connection is refused: either the handshake fails, or the connection is closed
/// right after (in TLS 1.3 the client may finish before the server rejects its certificate).
async fn refused(r: Result<quinn::Connection, NetError>) -> bool {
    match r {
        Err(_) => true,
        Ok(conn) => {
            // A stream round trip must fail.
            let attempt = async {
                let (mut s, mut rr) = stream::open_bi(&conn).await?;
                s.send(&msg(0, "hello?")).await?;
                rr.recv::<Msg>().await
            };
            matches!(tokio::time::timeout(T, attempt).await, Ok(Err(_)))
        }
    }
}

#[tokio::test]
async fn mutual_tls_session_exchanges_frames_both_ways() {
    let mut hub = hub();
    let cert = agent_cert(&hub.ca, "agent-00000000000000aa");
    let conn = session_client(hub.ca.cert_der(), &cert, hub.addr, HUB)
        .await
        .unwrap();
    // The agent sees the hub's certificate; the hub sees the agent id.
    assert_eq!(tls::peer_agent_id(&conn).as_deref(), Some(HUB));
    match next_seen(&mut hub.seen).await {
        Seen::Connected(who) => assert_eq!(who.as_deref(), Some("agent-00000000000000aa")),
        other => panic!("unexpected {other:?}"),
    }
    let (mut s, mut r) = stream::open_bi(&conn).await.unwrap();
    for i in 0..5u64 {
        s.send(&msg(i * 10, &format!("m{i}"))).await.unwrap();
    }
    for i in 0..5u64 {
        let reply: Msg = r.recv().await.unwrap().unwrap();
        assert_eq!(
            reply,
            msg(i * 10 + 1, &format!("agent-00000000000000aa:m{i}"))
        );
        match next_seen(&mut hub.seen).await {
            Seen::Msg(who, m) => {
                assert_eq!(who.as_deref(), Some("agent-00000000000000aa"));
                assert_eq!(m, msg(i * 10, &format!("m{i}")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A frame close to the limit passes.
    let big = msg(100, &"x".repeat(MAX_FRAME - 64));
    s.send(&big).await.unwrap();
    let reply: Msg = r.recv().await.unwrap().unwrap();
    assert_eq!(reply.seq, 101);
    assert!(matches!(next_seen(&mut hub.seen).await, Seen::Msg(..)));
    // Clean end of stream both ways.
    s.finish().unwrap();
    assert!(matches!(next_seen(&mut hub.seen).await, Seen::End));
    assert_eq!(r.recv::<Msg>().await.unwrap(), None);
    hub.ep.close(0u32.into(), b"");
}

#[tokio::test]
async fn client_with_cert_from_another_ca_is_refused() {
    let mut hub = hub();
    let other = Ca::generate("rogue CA").unwrap();
    let cert = agent_cert(&other, "agent-00000000000000bb");
    let r = session_client(hub.ca.cert_der(), &cert, hub.addr, HUB).await;
    assert!(refused(r).await);
    match next_seen(&mut hub.seen).await {
        Seen::HandshakeFailed(e) => assert!(!e.is_empty()),
        other => panic!("the hub accepted a foreign certificate: {other:?}"),
    }
    // Control: a certificate from the right CA on the same endpoint works.
    let good = agent_cert(&hub.ca, "agent-00000000000000cc");
    let conn = session_client(hub.ca.cert_der(), &good, hub.addr, HUB)
        .await
        .unwrap();
    assert!(!refused(Ok(conn)).await);
}

#[tokio::test]
async fn session_client_refuses_a_hub_from_another_ca_or_name() {
    let hub = hub();
    let cert = agent_cert(&hub.ca, "agent-00000000000000dd");
    // The agent pins a different CA.
    let other = Ca::generate("other").unwrap();
    let r = session_client(other.cert_der(), &cert, hub.addr, HUB).await;
    assert!(matches!(r, Err(NetError::Connection(_))), "{r:?}");
    // Right CA, wrong name.
    let r = session_client(hub.ca.cert_der(), &cert, hub.addr, "evil-hub").await;
    assert!(matches!(r, Err(NetError::Connection(_))), "{r:?}");
    // Right CA and name.
    let r = session_client(hub.ca.cert_der(), &cert, hub.addr, HUB).await;
    assert!(r.is_ok(), "{r:?}");
}

async fn enroll_client(
    pin: &str,
    addr: SocketAddr,
    name: &str,
) -> (Result<quinn::Connection, NetError>, tls::MatchedCa) {
    let (rustls, matched) = tls::client_enroll_config(pin).unwrap();
    let cfg = tls::quinn_client_config(rustls, Transport::default()).unwrap();
    let ep = endpoint::client_endpoint(any_addr()).unwrap();
    (endpoint::connect(&ep, addr, name, cfg, T).await, matched)
}

#[tokio::test]
async fn enrollment_without_client_cert_connects_with_the_right_pin() {
    let mut hub = hub();
    let (conn, matched) = enroll_client(&hub.ca.sha256_hex(), hub.addr, HUB).await;
    let conn = conn.unwrap();
    assert_eq!(matched.get().as_deref(), Some(hub.ca.cert_der()));
    match next_seen(&mut hub.seen).await {
        Seen::Connected(who) => assert_eq!(who, None),
        other => panic!("unexpected {other:?}"),
    }
    let (mut s, mut r) = stream::open_bi(&conn).await.unwrap();
    s.send(&msg(7, "enroll")).await.unwrap();
    assert_eq!(
        r.recv::<Msg>().await.unwrap(),
        Some(msg(8, "anonymous:enroll"))
    );
    // Upper-case hex is the same pin.
    let (conn, _) = enroll_client(&hub.ca.sha256_hex().to_uppercase(), hub.addr, HUB).await;
    assert!(conn.is_ok());
}

#[tokio::test]
async fn enrollment_with_a_wrong_pin_or_name_is_refused() {
    let hub = hub();
    let other = Ca::generate("other").unwrap();
    let (conn, matched) = enroll_client(&other.sha256_hex(), hub.addr, HUB).await;
    assert!(matches!(conn, Err(NetError::Connection(_))), "{conn:?}");
    assert_eq!(matched.get(), None);
    // Right pin, wrong name: the end-entity check is delegated to webpki with the name.
    let (conn, matched) = enroll_client(&hub.ca.sha256_hex(), hub.addr, "not-the-hub").await;
    assert!(matches!(conn, Err(NetError::Connection(_))), "{conn:?}");
    assert_eq!(matched.get(), None);
    // Malformed pins are refused before any connection.
    assert!(matches!(
        tls::client_enroll_config("abc"),
        Err(tls::TlsError::Pin(_))
    ));
    assert!(matches!(
        tls::client_enroll_config(&"zz".repeat(32)),
        Err(tls::TlsError::Pin(_))
    ));
}

#[tokio::test]
async fn enrollment_refuses_a_chain_that_merely_contains_the_pinned_ca() {
    // An impostor presents the real CA certificate in its chain, but its leaf is issued by its
    // own CA: the hash matches, the signature does not.
    let real = Ca::generate("real").unwrap();
    let rogue = Ca::generate("rogue").unwrap();
    let (rogue_chain, rogue_key) = rogue.issue_server(HUB, outpost_net::pki::days(30)).unwrap();
    let chain = vec![rogue_chain[0].clone(), real.cert_der().to_vec()];
    let (_ep, addr, _seen) =
        start_server(&chain, &rogue_key, rogue.cert_der(), default_transport());
    let (conn, matched) = enroll_client(&real.sha256_hex(), addr, HUB).await;
    assert!(matches!(conn, Err(NetError::Connection(_))), "{conn:?}");
    assert_eq!(matched.get(), None);
}

/// Open a session connection and its first stream on `hub`.
async fn session_stream(hub: &mut Hub, id: &str) -> (quinn::Connection, FramedSend, FramedRecv) {
    let cert = agent_cert(&hub.ca, id);
    let conn = session_client(hub.ca.cert_der(), &cert, hub.addr, HUB)
        .await
        .unwrap();
    assert!(matches!(next_seen(&mut hub.seen).await, Seen::Connected(_)));
    let (s, r) = stream::open_bi(&conn).await.unwrap();
    (conn, s, r)
}

async fn round_trip(s: &mut FramedSend, r: &mut FramedRecv, hub: &mut Hub, seq: u64) {
    s.send(&msg(seq, "ping")).await.unwrap();
    let reply: Msg = tokio::time::timeout(T, r.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.seq, seq + 1);
    assert!(matches!(next_seen(&mut hub.seen).await, Seen::Msg(..)));
}

async fn closed_by_server(conn: &quinn::Connection) -> quinn::ConnectionError {
    tokio::time::timeout(T, conn.closed()).await.unwrap()
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let mut hub = hub();
    let (_c2, mut s2, mut r2) = session_stream(&mut hub, "agent-0000000000000002").await;
    round_trip(&mut s2, &mut r2, &mut hub, 1).await;
    let (c1, mut s1, _r1) = session_stream(&mut hub, "agent-0000000000000001").await;
    // A length prefix just over the limit, then a few bytes.
    let len = u32::try_from(MAX_FRAME + 1).unwrap();
    s1.send.write_all(&len.to_be_bytes()).await.unwrap();
    s1.send.write_all(b"abcd").await.unwrap();
    match next_seen(&mut hub.seen).await {
        Seen::FrameError(e) => assert!(e.contains("exceeds the limit"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    match closed_by_server(&c1).await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1))
        }
        other => panic!("unexpected close {other:?}"),
    }
    // The other connection on the same endpoint still works.
    round_trip(&mut s2, &mut r2, &mut hub, 3).await;
    // And new connections are still accepted.
    let (_c3, mut s3, mut r3) = session_stream(&mut hub, "agent-0000000000000003").await;
    round_trip(&mut s3, &mut r3, &mut hub, 5).await;
}

#[tokio::test]
async fn garbage_frame_is_a_decode_error_and_closes_that_connection() {
    let mut hub = hub();
    let (_c2, mut s2, mut r2) = session_stream(&mut hub, "agent-0000000000000002").await;
    let (c1, mut s1, _r1) = session_stream(&mut hub, "agent-0000000000000001").await;
    s1.send_raw(b"\xff\xfe\xfd\xfc").await.unwrap();
    match next_seen(&mut hub.seen).await {
        Seen::FrameError(e) => assert!(e.starts_with("decode"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        closed_by_server(&c1).await,
        quinn::ConnectionError::ApplicationClosed(_)
    ));
    round_trip(&mut s2, &mut r2, &mut hub, 1).await;
}

#[tokio::test]
async fn truncated_frame_and_trailing_bytes_are_errors() {
    let mut hub = hub();
    // Valid message followed by extra bytes inside the same frame.
    let (_c, mut s, _r) = session_stream(&mut hub, "agent-0000000000000001").await;
    let mut payload = minicbor::to_vec(msg(1, "x")).unwrap();
    payload.push(0);
    s.send_raw(&payload).await.unwrap();
    match next_seen(&mut hub.seen).await {
        Seen::FrameError(e) => assert!(e.contains("trailing"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    // A stream that ends inside a frame.
    let (_c, mut s, _r) = session_stream(&mut hub, "agent-0000000000000002").await;
    s.send.write_all(&10u32.to_be_bytes()).await.unwrap();
    s.send.write_all(b"abc").await.unwrap();
    s.finish().unwrap();
    match next_seen(&mut hub.seen).await {
        Seen::FrameError(e) => assert!(e.contains("3 of 10"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    // Ends inside the length prefix.
    let (_c, mut s, _r) = session_stream(&mut hub, "agent-0000000000000003").await;
    s.send.write_all(&[0, 0]).await.unwrap();
    s.finish().unwrap();
    match next_seen(&mut hub.seen).await {
        Seen::FrameError(e) => assert!(e.contains("2 of 4"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn oversized_message_is_refused_on_send_without_writing() {
    let mut hub = hub();
    let (_c, mut s, mut r) = session_stream(&mut hub, "agent-0000000000000001").await;
    let huge = msg(1, &"y".repeat(MAX_FRAME));
    match s.send(&huge).await {
        Err(NetError::FrameTooLarge { len, max }) => {
            assert!(len > MAX_FRAME);
            assert_eq!(max, MAX_FRAME);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Nothing was written: the stream is still in sync.
    round_trip(&mut s, &mut r, &mut hub, 10).await;
}

fn short_transport(keep_alive: bool) -> quinn::TransportConfig {
    let t = Transport {
        keep_alive: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(1),
        ..Transport::default()
    };
    let mut q = t.quinn().unwrap();
    if !keep_alive {
        q.keep_alive_interval(None);
    }
    q
}

async fn idle_connection(keep_alive: bool) -> Option<quinn::ConnectionError> {
    let ca = Ca::generate("hub CA").unwrap();
    let (chain, key) = ca.issue_server(HUB, outpost_net::pki::days(30)).unwrap();
    let (_ep, addr, _seen) = start_server(&chain, &key, ca.cert_der(), short_transport(keep_alive));
    let cert = agent_cert(&ca, "agent-0000000000000001");
    let rustls = tls::client_session_config(ca.cert_der(), &cert.0, &cert.1).unwrap();
    let mut cfg = tls::quinn_client_config(rustls, Transport::default()).unwrap();
    cfg.transport_config(Arc::new(short_transport(keep_alive)));
    let ep = endpoint::client_endpoint(any_addr()).unwrap();
    let conn = endpoint::connect(&ep, addr, HUB, cfg, T).await.unwrap();
    let (mut s, mut r) = stream::open_bi(&conn).await.unwrap();
    s.send(&msg(1, "a")).await.unwrap();
    assert_eq!(
        r.recv::<Msg>().await.unwrap(),
        Some(msg(2, "agent-0000000000000001:a"))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(reason) = conn.close_reason() {
        return Some(reason);
    }
    s.send(&msg(3, "b")).await.unwrap();
    assert_eq!(
        r.recv::<Msg>().await.unwrap(),
        Some(msg(4, "agent-0000000000000001:b"))
    );
    None
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection_past_the_idle_timeout() {
    assert_eq!(idle_connection(true).await, None);
    // Control: the same idle period without keep-alives times the connection out.
    assert_eq!(
        idle_connection(false).await,
        Some(quinn::ConnectionError::TimedOut)
    );
}

#[tokio::test]
async fn connect_times_out_when_nobody_answers() {
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let ca = Ca::generate("ca").unwrap();
    let cert = agent_cert(&ca, "agent-0000000000000001");
    let rustls = tls::client_session_config(ca.cert_der(), &cert.0, &cert.1).unwrap();
    let cfg = tls::quinn_client_config(rustls, Transport::default()).unwrap();
    let ep = endpoint::client_endpoint(any_addr()).unwrap();
    let t0 = std::time::Instant::now();
    let r = endpoint::connect(&ep, addr, HUB, cfg, Duration::from_millis(300)).await;
    assert!(matches!(r, Err(NetError::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn transport_refuses_nonsense() {
    let t = Transport {
        keep_alive: Duration::from_secs(20),
        ..Transport::default()
    };
    assert!(matches!(t.quinn(), Err(tls::TlsError::Transport(_))));
    let t = Transport {
        keep_alive: Duration::ZERO,
        ..Transport::default()
    };
    assert!(t.quinn().is_err());
    assert!(Transport::default().quinn().is_ok());
}

#[test]
fn configs_fail_closed_on_missing_material() {
    let ca = Ca::generate("ca").unwrap();
    let (chain, key) = ca.issue_server(HUB, outpost_net::pki::days(1)).unwrap();
    assert!(matches!(
        tls::server_config(&chain, &key, &[]),
        Err(tls::TlsError::Ca(_))
    ));
    assert!(matches!(
        tls::server_config(&chain, &key, b"not a cert"),
        Err(tls::TlsError::Ca(_))
    ));
    assert!(matches!(
        tls::server_config(&[], &key, ca.cert_der()),
        Err(tls::TlsError::EmptyChain)
    ));
    assert!(matches!(
        tls::server_config(&chain, &[], ca.cert_der()),
        Err(tls::TlsError::CertKey(_))
    ));
    // A key that is not the certificate's.
    let (_, other_key) = ca.issue_server(HUB, outpost_net::pki::days(1)).unwrap();
    assert!(matches!(
        tls::server_config(&chain, &other_key, ca.cert_der()),
        Err(tls::TlsError::CertKey(_))
    ));
    assert!(matches!(
        tls::client_session_config(&[], &chain, &key),
        Err(tls::TlsError::Ca(_))
    ));
    assert!(matches!(
        tls::client_session_config(ca.cert_der(), &chain, b"garbage"),
        Err(tls::TlsError::CertKey(_))
    ));
    assert!(tls::server_config(&chain, &key, ca.cert_der()).is_ok());
}

/// Reading a frame is cancel-safe: a receive loop that drops `recv` futures all the time (as a
/// `tokio::select!` with other branches does) still gets every large frame intact.
#[tokio::test]
async fn receiving_a_frame_survives_cancellation_midway() {
    let mut hub = hub();
    let (_conn, mut s, mut r) = session_stream(&mut hub, "agent-cancel").await;
    for seq in 0..4u64 {
        // ~300 KB: the echo arrives in many packets over several round trips.
        let text = format!("{seq}").repeat(300_000);
        s.send(&msg(seq, &text)).await.unwrap();
        let mut cancelled = 0u32;
        let reply = tokio::time::timeout(T, async {
            loop {
                tokio::select! {
                    m = r.recv::<Msg>() => break m,
                    _ = tokio::task::yield_now() => cancelled += 1,
                }
            }
        })
        .await
        .expect("no reply in time")
        .expect("the stream broke: a cancelled read lost bytes")
        .expect("stream ended");
        assert_eq!(reply.seq, seq + 1);
        assert_eq!(reply.text, format!("agent-cancel:{text}"));
        assert!(cancelled > 0, "the receive was never cancelled midway");
    }
}
