//! What the hub's integration tests share: a hub over a real store with a fresh 1-of-1 root (no
//! network), and enrolled agent records.
#![allow(dead_code, clippy::unwrap_used)]

pub mod console;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_common::trust::{Director, SigningKey};
use outpost_hub::gateway::Connections;
use outpost_hub::hub::{Hub, now_ms};
use outpost_hub::store::{AgentRecord, Store};
use outpost_net::pki::Ca;

/// The director and release keys (PKCS#8) of a test hub, kept across a reopen.
#[derive(Clone)]
pub struct Keys {
    pub director: Vec<u8>,
    pub release: Vec<u8>,
}

/// A hub in a directory, with its store and connection registry.
pub struct TestHub {
    pub hub: Arc<Hub>,
    pub store: Arc<Store>,
    pub conns: Arc<Connections>,
    pub keys: Keys,
}

/// A hub in `dir`: a new 1-of-1 root with new keys, or (reopening) the keys it had.
pub fn open(dir: &Path, keys: Option<Keys>) -> TestHub {
    let store = Arc::new(Store::open(&dir.join("hub.redb")).unwrap());
    let keys = keys.unwrap_or_else(|| {
        let (director, d) = SigningKey::generate().unwrap();
        let (release, r) = SigningKey::generate().unwrap();
        outpost_hub::init::publish_first_root(
            &store,
            &[SigningKey::generate().unwrap().0],
            &[release],
            &director,
            outpost_hub::init::KeyPlan::default(),
            now_ms(),
        )
        .unwrap();
        Keys {
            director: d,
            release: r,
        }
    });
    let director = Arc::new(Director::new(
        SigningKey::from_pkcs8(&keys.director).unwrap(),
    ));
    let ca = Arc::new(Ca::generate("hub CA").unwrap());
    let conns = Connections::new(Duration::from_secs(5));
    let hub = Hub::new(store.clone(), director, None, ca, conns.clone(), "hub").unwrap();
    TestHub {
        hub,
        store,
        conns,
        keys,
    }
}

/// An agent record as enrollment makes it.
pub fn agent_record(id: &str, labels: Vec<(String, String)>) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        labels,
        enrolled_ms: 1,
        cert_serial: "01".into(),
        cert_fingerprint: "ff".into(),
        revoked_ms: None,
        last_seen_ms: None,
        software_version: "0.1.0".into(),
        active: vec![],
        committed_seq: 0,
        hostname: "h".into(),
        clock_offset: None,
        telemetry: None,
        cert_not_after_ms: None,
        previous_cert_fingerprint: None,
        pinned_roots: None,
        name: None,
        decommissioned_ms: None,
    }
}

/// Enroll an agent with a one-use token.
pub fn enroll(store: &Store, id: &str, labels: Vec<(String, String)>) {
    let (tid, secret) = store.create_token(vec![], i64::MAX, "t", 0).unwrap();
    store
        .enroll(&tid, &secret, agent_record(id, labels), 1)
        .unwrap();
}
