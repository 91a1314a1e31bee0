//! The hub's key and certificate files go through the one implementation the tests and fuzzers
//! exercise (`outpost_common::trust`, `outpost_net::pki`): files written by earlier releases
//! still load, and a CA key that is not the CA certificate's key is refused at start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_hub::config::DEFAULT_AGENT_CERT_LIFETIME;
use outpost_hub::config::HubConfig;
use outpost_hub::hub::Hub;
use outpost_hub::init::{init, load_signing_key};
use outpost_net::pki::{Ca, agent_id_from_cert, generate_agent_key_and_csr, read_certs_file};

/// Files written by `outpost-hub init` of the release before the hub used `outpost_net::pki`
/// (rcgen's PEM, ring's PKCS#8 v2). Test keys, used nowhere else.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/files-from-init")
}

#[test]
fn files_written_by_an_earlier_init_still_load() {
    let dir = fixtures();
    let ca = Ca::load(&dir.join("ca.pem"), &dir.join("ca.key")).unwrap();
    // The pin printed by that `init` (and carried by its bootstrap tokens).
    assert_eq!(
        ca.sha256_hex(),
        "39fde76b3937659cc4b60cc43aadc290108f6e6ea8360c30193b7f611b6e29af"
    );
    let key = load_signing_key(&dir.join("signing.key")).unwrap();
    assert_eq!(key.key_id(), "ebbaf3ae79d1a420");
    let chain = read_certs_file(&dir.join("hub.pem"), "hub certificate").unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], ca.cert_der());
    outpost_net::pki::read_key_file(&dir.join("hub.key"), "hub key").unwrap();
    // The loaded CA still issues agent certificates.
    let (_key, csr) = generate_agent_key_and_csr().unwrap();
    let cert = ca
        .sign_csr(&csr, "agent-0011223344556677", DEFAULT_AGENT_CERT_LIFETIME)
        .unwrap();
    assert_eq!(
        agent_id_from_cert(&cert).as_deref(),
        Some("agent-0011223344556677")
    );
}

#[test]
fn a_hub_whose_ca_key_is_not_its_certificates_key_refuses_to_start() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("hub");
    let report = init(
        &dir,
        "outpost-hub",
        &[],
        &outpost_hub::init::default_offline_dir(&dir),
        outpost_hub::init::KeyPlan::default(),
    )
    .unwrap();
    let config = HubConfig::load(&report.config).unwrap();
    // Starts as made.
    drop(Hub::open(&config, Duration::from_secs(1)).unwrap());
    // Another CA's key in place of intermediate.key: certificates signed with it would not
    // verify against the intermediate certificate, nor the root every agent pins.
    let foreign = Ca::generate("foreign CA").unwrap();
    std::fs::write(&config.intermediate_key, foreign.key_pem()).unwrap();
    let Err(err) = Hub::open(&config, Duration::from_secs(1)) else {
        panic!("a hub with a foreign CA key must not start");
    };
    let err = err.to_string();
    assert!(
        err.contains("does not belong to the CA certificate") && err.contains("intermediate.pem"),
        "{err}"
    );
}

#[test]
fn a_signing_key_file_that_is_not_a_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    std::fs::write(&path, b"not a key").unwrap();
    let err = load_signing_key(&path).unwrap_err().to_string();
    assert!(err.contains("signing.key"), "{err}");
}
