//! Signing, verification, key rotation and the agent's deploy acceptance check.
#![allow(clippy::unwrap_used)]

use outpost_common::proto::{
    Assignment, BundleHeader, DOMAIN_ASSIGNMENT, Rejection, SignedAssignment, SignedBundle,
};
use outpost_common::sign::{
    SignError, SigningKey, Trust, WorkflowTrustState, check_deploy, content_hash,
};

const CONTENT: &[u8] = b"name: etl\ntasks:\n  a:\n    command: [\"true\"]\n";

fn header(version: u64, content: &[u8]) -> BundleHeader {
    BundleHeader {
        workflow: "etl".into(),
        version,
        content_hash: content_hash(content),
        created_ms: 1_700_000_000_000,
        target: vec![("site".into(), "north".into())],
        format: "yaml".into(),
    }
}

fn assignment(agent: &str, version: u64, epoch: u64, content: &[u8]) -> Assignment {
    Assignment {
        agent_id: agent.into(),
        workflow: "etl".into(),
        version,
        content_hash: content_hash(content),
        epoch,
        issued_ms: 1_700_000_000_000,
        remove: false,
        previous_version: None,
        probation: None,
        rollout_id: None,
    }
}

fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

fn deploy(k: &SigningKey, version: u64, epoch: u64) -> (SignedAssignment, SignedBundle) {
    (
        k.sign_assignment(&assignment("agent-1", version, epoch, CONTENT)),
        k.sign_bundle(&header(version, CONTENT), CONTENT.to_vec()),
    )
}

#[test]
fn pkcs8_roundtrip_keeps_the_key() {
    let (k, pkcs8) = SigningKey::generate().unwrap();
    let k2 = SigningKey::from_pkcs8(&pkcs8).unwrap();
    assert_eq!(k.public_key(), k2.public_key());
    assert_eq!(k.key_id(), k2.key_id());
    assert_eq!(k.key_id().len(), 16);
    assert!(matches!(
        SigningKey::from_pkcs8(b"junk"),
        Err(SignError::BadKey(_))
    ));
    assert_eq!(Trust::new(&[0; 31]), Err(SignError::BadPublicKey(31)));
}

#[test]
fn pkcs8_v1_key_files_load_and_a_v2_with_a_wrong_public_key_does_not() {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};
    // PKCS#8 v1 (RFC 8410): version 0, the ed25519 OID, the 32-byte seed; no public key.
    let seed = [7u8; 32];
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&seed);
    let k = SigningKey::from_pkcs8(&v1).unwrap();
    let expected = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    assert_eq!(k.public_key().as_slice(), expected.public_key().as_ref());
    // A v2 file whose public key is not the private key's is refused.
    let (_, mut v2) = SigningKey::generate().unwrap();
    let last = v2.len() - 1;
    v2[last] ^= 1;
    assert!(matches!(
        SigningKey::from_pkcs8(&v2),
        Err(SignError::BadKey(_))
    ));
}

#[test]
fn bundle_verifies_and_every_bit_flip_is_refused() {
    let k = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let b = k.sign_bundle(&header(3, CONTENT), CONTENT.to_vec());
    assert_eq!(trust.verify_bundle(&b).unwrap(), header(3, CONTENT));

    for i in 0..b.header_bytes.len() * 8 {
        let mut t = b.clone();
        t.header_bytes[i / 8] ^= 1 << (i % 8);
        assert_eq!(
            trust.verify_bundle(&t),
            Err(Rejection::BadSignature),
            "header bit {i}"
        );
    }
    for i in 0..b.sig.len() * 8 {
        let mut t = b.clone();
        t.sig[i / 8] ^= 1 << (i % 8);
        assert_eq!(
            trust.verify_bundle(&t),
            Err(Rejection::BadSignature),
            "sig bit {i}"
        );
    }
    for i in [0, CONTENT.len() * 4, CONTENT.len() * 8 - 1] {
        let mut t = b.clone();
        t.content[i / 8] ^= 1 << (i % 8);
        assert_eq!(
            trust.verify_bundle(&t),
            Err(Rejection::HashMismatch),
            "content bit {i}"
        );
    }
}

#[test]
fn garbage_header_is_refused_by_signature_before_decoding() {
    let k = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let b = SignedBundle {
        header_bytes: vec![0xff; 10],
        content: vec![],
        key_id: k.key_id().to_string(),
        sig: vec![0; 64],
    };
    assert_eq!(trust.verify_bundle(&b), Err(Rejection::BadSignature));
    // Garbage signed by the trusted key gets past the signature and is then malformed.
    let (k, pkcs8) = SigningKey::generate().unwrap();
    let trust = Trust::new(&k.public_key()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8).unwrap();
    let garbage = vec![0xff; 10];
    let mut msg = outpost_common::proto::DOMAIN_BUNDLE.to_vec();
    msg.extend_from_slice(&garbage);
    let signed = SignedBundle {
        header_bytes: garbage,
        content: vec![],
        key_id: k.key_id().to_string(),
        sig: pair.sign(&msg).as_ref().to_vec(),
    };
    assert!(matches!(
        trust.verify_bundle(&signed),
        Err(Rejection::Malformed(_))
    ));
}

#[test]
fn domain_separation_an_assignment_signature_is_not_a_bundle_signature() {
    let k = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let a = k.sign_assignment(&assignment("agent-1", 1, 1, CONTENT));
    let forged = SignedBundle {
        header_bytes: a.body_bytes.clone(),
        content: CONTENT.to_vec(),
        key_id: a.key_id.clone(),
        sig: a.sig.clone(),
    };
    assert_eq!(trust.verify_bundle(&forged), Err(Rejection::BadSignature));
    assert!(DOMAIN_ASSIGNMENT.ends_with(b"\0"));
}

#[test]
fn other_key_is_unknown_or_bad_signature() {
    let k = key();
    let other = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let b = other.sign_bundle(&header(1, CONTENT), CONTENT.to_vec());
    assert_eq!(
        trust.verify_bundle(&b),
        Err(Rejection::UnknownKey(other.key_id().to_string()))
    );
    // Claiming the trusted key id does not help.
    let mut lying = b.clone();
    lying.key_id = k.key_id().to_string();
    assert_eq!(trust.verify_bundle(&lying), Err(Rejection::BadSignature));
}

#[test]
fn key_chain_rotation_retires_old_keys_and_is_idempotent() {
    let k1 = key();
    let k2 = key();
    let k3 = key();
    let e12 = k1.endorse(&k2.public_key(), 1);
    let e23 = k2.endorse(&k3.public_key(), 2);
    let mut trust = Trust::new(&k1.public_key()).unwrap();

    assert_eq!(trust.apply_chain(std::slice::from_ref(&e12)), Ok(true));
    assert_eq!(trust.current_key_id(), k2.key_id());
    // Resending the chain from the start: the known link is skipped.
    assert_eq!(trust.apply_chain(std::slice::from_ref(&e12)), Ok(false));
    assert_eq!(trust.apply_chain(&[e12.clone(), e23.clone()]), Ok(true));
    assert_eq!(trust.current_key_id(), k3.key_id());
    assert_eq!(
        trust.retired,
        vec![k1.key_id().to_string(), k2.key_id().to_string()]
    );
    assert_eq!(trust.apply_chain(&[e12, e23]), Ok(false));

    // Old keys are refused, the new one accepted.
    let old = k1.sign_bundle(&header(9, CONTENT), CONTENT.to_vec());
    assert_eq!(
        trust.verify_bundle(&old),
        Err(Rejection::UnknownKey(k1.key_id().to_string()))
    );
    let new = k3.sign_bundle(&header(9, CONTENT), CONTENT.to_vec());
    assert!(trust.verify_bundle(&new).is_ok());

    // Storage roundtrip.
    let bytes = minicbor::to_vec(&trust).unwrap();
    assert_eq!(minicbor::decode::<Trust>(&bytes).unwrap(), trust);
}

#[test]
fn key_chain_errors_leave_trust_unchanged() {
    let k1 = key();
    let k2 = key();
    let k3 = key();
    let mallory = key();
    let mut trust = Trust::new(&k1.public_key()).unwrap();
    let before = trust.clone();
    // A chain that skips a link.
    assert_eq!(
        trust.apply_chain(&[k2.endorse(&k3.public_key(), 1)]),
        Err(Rejection::BadSignature)
    );
    // A self-endorsed attacker key.
    assert_eq!(
        trust.apply_chain(&[mallory.endorse(&mallory.public_key(), 1)]),
        Err(Rejection::BadSignature)
    );
    // A good link followed by a bad one: all or nothing.
    let mut bad = k2.endorse(&k3.public_key(), 2);
    bad.sig[0] ^= 1;
    assert_eq!(
        trust.apply_chain(&[k1.endorse(&k2.public_key(), 1), bad]),
        Err(Rejection::BadSignature)
    );
    assert_eq!(trust, before);
}

#[test]
fn check_deploy_accepts_a_good_deploy() {
    let k = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let (a, b) = deploy(&k, 2, 5);
    let ok = check_deploy(
        "agent-1",
        &trust,
        &WorkflowTrustState::default(),
        &a,
        Some(&b),
    )
    .unwrap();
    assert_eq!(ok.assignment.version, 2);
    assert_eq!(ok.header, Some(header(2, CONTENT)));
    assert_eq!(ok.content.as_deref(), Some(CONTENT));
}

#[test]
fn check_deploy_rules_in_order() {
    let k = key();
    let other = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let state = WorkflowTrustState {
        highest_version: 5,
        last_epoch: 10,
        held_versions: vec![3, 5],
    };
    let check = |a: &SignedAssignment, b: Option<&SignedBundle>| {
        check_deploy("agent-1", &trust, &state, a, b)
    };

    // 1. assignment signature.
    let (mut a, b) = deploy(&k, 6, 11);
    a.sig[3] ^= 0x10;
    assert_eq!(check(&a, Some(&b)), Err(Rejection::BadSignature));
    let (a, _) = deploy(&other, 6, 11);
    assert_eq!(
        check(&a, Some(&b)),
        Err(Rejection::UnknownKey(other.key_id().to_string()))
    );
    // 2. agent id (checked before the epoch).
    let a = k.sign_assignment(&assignment("agent-2", 6, 1, CONTENT));
    assert_eq!(
        check(&a, Some(&b)),
        Err(Rejection::WrongAgent("agent-2".into()))
    );
    // 3. epoch (a replay), checked before the bundle.
    let (a, _) = deploy(&k, 6, 10);
    let mut tampered = b.clone();
    tampered.sig[0] ^= 1;
    assert_eq!(
        check(&a, Some(&tampered)),
        Err(Rejection::StaleEpoch {
            offered: 10,
            last: 10
        })
    );
    // 4. bundle signature, 5. hash.
    let (a, b) = deploy(&k, 6, 11);
    assert_eq!(check(&a, Some(&tampered)), Err(Rejection::BadSignature));
    let mut t = b.clone();
    t.content.push(b'\n');
    assert_eq!(check(&a, Some(&t)), Err(Rejection::HashMismatch));
    // 6. the bundle must match the assignment.
    let b7 = k.sign_bundle(&header(7, CONTENT), CONTENT.to_vec());
    assert_eq!(check(&a, Some(&b7)), Err(Rejection::Mismatch));
    // 7. no bundle and not held.
    assert!(matches!(check(&a, None), Err(Rejection::Invalid(_))));
    // 8. version rule: lower than highest and not held → stale, even with a fresh epoch.
    let (a4, b4) = deploy(&k, 4, 11);
    assert_eq!(
        check(&a4, Some(&b4)),
        Err(Rejection::StaleVersion {
            offered: 4,
            highest: 5
        })
    );
    // A held older version is fine, with or without bundle; equal to highest too.
    let (a3, b3) = deploy(&k, 3, 11);
    assert!(check(&a3, None).is_ok());
    assert!(check(&a3, Some(&b3)).is_ok());
    let (a5, b5) = deploy(&k, 5, 11);
    assert!(check(&a5, Some(&b5)).is_ok());
    // Higher is fine.
    assert!(check(&a, Some(&b)).is_ok());
}

#[test]
fn check_deploy_removal() {
    let k = key();
    let trust = Trust::new(&k.public_key()).unwrap();
    let mut r = assignment("agent-1", 0, 3, b"");
    r.remove = true;
    let a = k.sign_assignment(&r);
    let state = WorkflowTrustState {
        highest_version: 5,
        last_epoch: 2,
        held_versions: vec![5],
    };
    let ok = check_deploy("agent-1", &trust, &state, &a, None).unwrap();
    assert!(ok.assignment.remove && ok.header.is_none());
    let (_, b) = deploy(&k, 5, 3);
    assert_eq!(
        check_deploy("agent-1", &trust, &state, &a, Some(&b)),
        Err(Rejection::Mismatch)
    );
}
