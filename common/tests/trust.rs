//! Roles and thresholds (root, release, director), root rotation and reset, the director's
//! statements and the agent's deploy acceptance check: one test per attack the trust model
//! refuses (docs/security.md, "Attacks and the tests that refuse them").
#![allow(clippy::unwrap_used)]

use outpost_common::proto::{
    AckBody, Assignment, BundleHeader, Command, CommandBody, DOMAIN_ACK, DOMAIN_ASSIGNMENT,
    DOMAIN_COMMAND, Rejection, SignedBundle, Snapshot, SnapshotEntry, Statement,
};
use outpost_common::trust::{
    Director, Role, RootBody, SignError, SignedRoot, SigningKey, Trust, TrustedKey,
    WorkflowTrustState, check_deploy, content_hash, sign_release,
};

const CONTENT: &[u8] = b"name: etl\ntasks:\n  a:\n    command: [\"true\"]\n";
const NOW: i64 = 1_700_000_000_000;
const DAY: i64 = 86_400_000;

fn key() -> SigningKey {
    SigningKey::generate().unwrap().0
}

/// A fleet: 2-of-3 root keys, 2-of-3 release keys, one director key.
struct Fleet {
    roots: Vec<SigningKey>,
    releasers: Vec<SigningKey>,
    director: Director,
    signed: SignedRoot,
    body: RootBody,
}

fn trusted(ks: &[SigningKey]) -> Vec<TrustedKey> {
    ks.iter().map(|k| k.trusted()).collect()
}

impl Fleet {
    fn new() -> Fleet {
        let roots: Vec<SigningKey> = (0..3).map(|_| key()).collect();
        let releasers: Vec<SigningKey> = (0..3).map(|_| key()).collect();
        let director = key();
        let body = RootBody::first(
            &trusted(&roots),
            2,
            &trusted(&releasers),
            2,
            &director.trusted(),
            NOW,
            NOW + 365 * DAY,
        );
        let signed = body.sign(&[&roots[0], &roots[1]]);
        Fleet {
            roots,
            releasers,
            director: Director::new(director),
            signed,
            body,
        }
    }

    fn trust(&self) -> Trust {
        Trust::new(self.signed.clone()).unwrap()
    }

    fn bundle(&self, version: u64, signers: &[&SigningKey]) -> SignedBundle {
        let header = BundleHeader {
            workflow: "etl".into(),
            version,
            content_hash: content_hash(CONTENT),
            created_ms: NOW,
            target: vec![],
            format: "yaml".into(),
        };
        let header_bytes = minicbor::to_vec(&header).unwrap();
        SignedBundle {
            release: signers
                .iter()
                .map(|k| sign_release(k, &header_bytes))
                .collect(),
            header_bytes,
            content: CONTENT.to_vec(),
        }
    }

    fn released(&self, version: u64) -> SignedBundle {
        self.bundle(version, &[&self.releasers[0], &self.releasers[2]])
    }
}

fn assignment(version: u64, epoch: u64) -> Assignment {
    Assignment {
        agent_id: "agent-1".into(),
        workflow: "etl".into(),
        version,
        content_hash: content_hash(CONTENT),
        epoch,
        issued_ms: NOW,
        remove: false,
        previous_version: None,
        probation: None,
        rollout_id: None,
    }
}

fn snapshot_of(a: &Assignment) -> Snapshot {
    Snapshot {
        agent_id: a.agent_id.clone(),
        session: vec![7; 16],
        issued_ms: NOW,
        expires_ms: NOW + DAY,
        workflows: vec![SnapshotEntry {
            workflow: a.workflow.clone(),
            version: a.version,
            epoch: a.epoch,
            content_hash: a.content_hash.clone(),
        }],
    }
}

fn deploy(
    f: &Fleet,
    trust: &Trust,
    state: &WorkflowTrustState,
    a: &Assignment,
    b: &SignedBundle,
) -> Result<(), Rejection> {
    let st = f.director.sign_assignment(a);
    check_deploy(
        "agent-1",
        trust,
        state,
        Some(&snapshot_of(a)),
        &st,
        Some(b),
        NOW,
    )
    .map(|_| ())
}

#[test]
fn a_released_version_with_its_assignment_is_accepted() {
    let f = Fleet::new();
    let ok = deploy(
        &f,
        &f.trust(),
        &WorkflowTrustState::default(),
        &assignment(1, 1),
        &f.released(1),
    );
    assert_eq!(ok, Ok(()));
}

#[test]
fn attack_arbitrary_workflow_from_a_hub_without_release_keys_is_refused() {
    // The director (the hub's online key) signs the bundle itself: not a release key.
    let f = Fleet::new();
    let b = f.bundle(1, &[f.director.key(), f.director.key()]);
    let r = deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b);
    assert_eq!(
        r,
        Err(Rejection::Threshold {
            role: "release".into(),
            valid: 0,
            needed: 2
        })
    );
    // A root key is not a release key either.
    let b = f.bundle(1, &[&f.roots[0], &f.roots[1]]);
    assert!(matches!(
        deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b),
        Err(Rejection::Threshold { valid: 0, .. })
    ));
}

#[test]
fn attack_one_stolen_release_key_below_threshold_is_refused() {
    let f = Fleet::new();
    let stolen = &f.releasers[1];
    // One key, or the same key twice, is one signature.
    for b in [f.bundle(1, &[stolen]), f.bundle(1, &[stolen, stolen])] {
        assert_eq!(
            deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b),
            Err(Rejection::Threshold {
                role: "release".into(),
                valid: 1,
                needed: 2
            })
        );
    }
    // A release signature over other bytes does not count for this header.
    let mut b = f.bundle(1, &[stolen]);
    let other = f.released(2);
    b.release.push(other.release[0].clone());
    assert!(matches!(
        deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b),
        Err(Rejection::Threshold { valid: 1, .. })
    ));
}

#[test]
fn released_content_cannot_be_swapped() {
    let f = Fleet::new();
    let mut b = f.released(1);
    b.content = b"name: etl\ntasks:\n  a:\n    command: [\"rm\", \"-rf\", \"/\"]\n".to_vec();
    assert_eq!(
        deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b),
        Err(Rejection::HashMismatch)
    );
    let mut b = f.released(1);
    b.header_bytes[3] ^= 1;
    assert!(matches!(
        deploy(&f, &f.trust(), &Default::default(), &assignment(1, 1), &b),
        Err(Rejection::Threshold { valid: 0, .. })
    ));
}

#[test]
fn attack_rollback_and_replayed_assignment_are_refused() {
    let f = Fleet::new();
    let state = WorkflowTrustState {
        highest_version: 5,
        last_epoch: 9,
        held_versions: vec![5],
    };
    // Replay: an epoch at or below the last accepted one.
    assert_eq!(
        deploy(&f, &f.trust(), &state, &assignment(6, 9), &f.released(6)),
        Err(Rejection::StaleEpoch {
            offered: 9,
            last: 9
        })
    );
    // Rollback: an older released version the agent does not hold.
    assert_eq!(
        deploy(&f, &f.trust(), &state, &assignment(3, 10), &f.released(3)),
        Err(Rejection::StaleVersion {
            offered: 3,
            highest: 5
        })
    );
}

#[test]
fn attack_mix_and_match_an_assignment_outside_the_snapshot_is_refused() {
    let f = Fleet::new();
    let a = assignment(2, 3);
    let st = f.director.sign_assignment(&a);
    // The session's snapshot says version 1 (epoch 2): a validly signed assignment of another
    // moment does not match it.
    let snap = snapshot_of(&assignment(1, 2));
    let r = check_deploy(
        "agent-1",
        &f.trust(),
        &Default::default(),
        Some(&snap),
        &st,
        Some(&f.released(2)),
        NOW,
    );
    assert_eq!(r, Err(Rejection::NotInSnapshot));
    // No snapshot in the session at all: nothing is accepted.
    let r = check_deploy(
        "agent-1",
        &f.trust(),
        &Default::default(),
        None,
        &st,
        Some(&f.released(2)),
        NOW,
    );
    assert_eq!(r, Err(Rejection::NotInSnapshot));
}

#[test]
fn a_statement_by_an_unknown_key_or_of_another_kind_is_refused() {
    let f = Fleet::new();
    let trust = f.trust();
    let a = assignment(1, 1);
    let stranger = Director::new(key());
    assert!(matches!(
        check_deploy(
            "agent-1",
            &trust,
            &Default::default(),
            Some(&snapshot_of(&a)),
            &stranger.sign_assignment(&a),
            Some(&f.released(1)),
            NOW
        ),
        Err(Rejection::UnknownKey(_))
    ));
    // Domain separation: an acknowledgement's signature does not verify as a command.
    let ack = f.director.sign_ack(&AckBody {
        agent_id: "agent-1".into(),
        session: vec![1; 16],
        seq: 5,
        hub_time_ms: NOW,
    });
    assert_eq!(
        trust.verify_statement::<CommandBody>(DOMAIN_COMMAND, &ack),
        Err(Rejection::BadSignature)
    );
    assert!(trust.verify_statement::<AckBody>(DOMAIN_ACK, &ack).is_ok());
    let cmd = f.director.sign_command(&CommandBody {
        agent_id: "agent-1".into(),
        session: vec![1; 16],
        id: 1,
        issued_ms: NOW,
        expires_ms: NOW + 1000,
        command: Command::Pause {
            workflow: "etl".into(),
        },
    });
    assert_eq!(
        trust.verify_statement::<Assignment>(DOMAIN_ASSIGNMENT, &cmd),
        Err(Rejection::BadSignature)
    );
    // A flipped bit in the body.
    let mut bad = cmd.clone();
    bad.body_bytes[4] ^= 1;
    assert_eq!(
        trust.verify_statement::<CommandBody>(DOMAIN_COMMAND, &bad),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn an_expired_root_refuses_new_deploys() {
    let f = Fleet::new();
    let a = assignment(1, 1);
    let r = check_deploy(
        "agent-1",
        &f.trust(),
        &Default::default(),
        Some(&snapshot_of(&a)),
        &f.director.sign_assignment(&a),
        Some(&f.released(1)),
        NOW + 366 * DAY,
    );
    assert!(matches!(r, Err(Rejection::Expired { .. })));
}

#[test]
fn a_first_root_needs_its_own_threshold_and_sane_roles() {
    let f = Fleet::new();
    let one = f.body.sign(&[&f.roots[0]]);
    assert!(matches!(
        Trust::new(one),
        Err(Rejection::Threshold { valid: 1, .. })
    ));
    let mut b = f.body.clone();
    b.release.threshold = 4;
    assert!(matches!(
        Trust::new(b.sign(&[&f.roots[0], &f.roots[1]])),
        Err(Rejection::Malformed(_))
    ));
    let mut b = f.body.clone();
    b.director.key_ids.push(f.roots[0].key_id().to_string());
    b.director.threshold = 2;
    assert!(matches!(
        Trust::new(b.sign(&[&f.roots[0], &f.roots[1]])),
        Err(Rejection::Malformed(_))
    ));
}

#[test]
fn root_rotation_needs_the_old_and_the_new_threshold() {
    let f = Fleet::new();
    let new_roots: Vec<SigningKey> = (0..2).map(|_| key()).collect();
    let mut next = f.body.successor(NOW + 1, NOW + 400 * DAY);
    for k in &f.roots {
        next.set_key(Role::Root, &k.trusted(), false);
    }
    for k in &new_roots {
        next.set_key(Role::Root, &k.trusted(), true);
    }
    next.root.threshold = 2;
    // Only the new quorum: refused (a thief of the new keys alone cannot take over).
    let only_new = next.sign(&[&new_roots[0], &new_roots[1]]);
    let mut t = f.trust();
    assert!(matches!(
        t.update(std::slice::from_ref(&only_new)),
        Err(Rejection::Threshold { .. })
    ));
    // Only the old quorum: refused too.
    let only_old = next.sign(&[&f.roots[0], &f.roots[2]]);
    assert!(matches!(
        t.update(std::slice::from_ref(&only_old)),
        Err(Rejection::Threshold { .. })
    ));
    assert_eq!(t.version(), 1);
    // Both: accepted; resending the chain changes nothing.
    let mut both = only_new.clone();
    both.add_signature(&f.roots[0]);
    both.add_signature(&f.roots[2]);
    let u = t.update(std::slice::from_ref(&both)).unwrap();
    assert!(u.changed && !u.reset_counters);
    assert_eq!(t.version(), 2);
    let u = t.update(&[f.signed.clone(), both.clone()]).unwrap();
    assert!(!u.changed);
    // Skipping a version is refused.
    let mut v4 = next.successor(NOW + 2, NOW + 400 * DAY);
    v4.version = 4;
    let v4 = v4.sign(&[&new_roots[0], &new_roots[1]]);
    assert!(matches!(t.update(&[v4]), Err(Rejection::Malformed(_))));
    assert_eq!(t.version(), 2);
}

#[test]
fn attack_fast_forward_blocks_updates_until_a_root_signed_reset() {
    let f = Fleet::new();
    // A stolen director key signed epoch u64::MAX; a threshold of stolen release keys signed
    // version u64::MAX. The agent accepted them: every later assignment is "stale".
    let stolen = &f.director;
    let a = assignment(u64::MAX, u64::MAX);
    let mut state = WorkflowTrustState::default();
    assert_eq!(
        deploy(&f, &f.trust(), &state, &a, &f.released(u64::MAX)),
        Ok(())
    );
    state.last_epoch = u64::MAX;
    state.highest_version = u64::MAX;
    let _ = stolen;
    assert!(matches!(
        deploy(&f, &f.trust(), &state, &assignment(7, 8), &f.released(7)),
        Err(Rejection::StaleEpoch { .. })
    ));
    // Recovery: the root quorum signs a new root with a new director key and the reset flag.
    let new_director = Director::new(key());
    let mut next = f.body.successor(NOW + 1, NOW + 400 * DAY);
    next.set_key(Role::Director, &f.director.key().trusted(), false);
    next.set_key(Role::Director, &new_director.key().trusted(), true);
    next.reset_counters = true;
    let signed = next.sign(&[&f.roots[1], &f.roots[2]]);
    let mut t = f.trust();
    let u = t.update(&[signed]).unwrap();
    assert!(u.changed && u.reset_counters);
    // The agent zeroes its counters in the same commit (the driver's part); then the new
    // director's ordinary epochs are accepted, and the stolen director key is not.
    let state = WorkflowTrustState {
        highest_version: 0,
        last_epoch: 0,
        held_versions: vec![],
    };
    let a = assignment(7, 8);
    let snap = snapshot_of(&a);
    let ok = check_deploy(
        "agent-1",
        &t,
        &state,
        Some(&snap),
        &new_director.sign_assignment(&a),
        Some(&f.released(7)),
        NOW,
    );
    assert!(ok.is_ok());
    let old = check_deploy(
        "agent-1",
        &t,
        &state,
        Some(&snap),
        &f.director.sign_assignment(&a),
        Some(&f.released(7)),
        NOW,
    );
    assert!(matches!(old, Err(Rejection::UnknownKey(_))));
}

#[test]
fn rotating_a_release_key_out_drops_its_signatures() {
    let f = Fleet::new();
    let mut next = f.body.successor(NOW + 1, NOW + 400 * DAY);
    next.set_key(Role::Release, &f.releasers[0].trusted(), false);
    let signed = next.sign(&[&f.roots[0], &f.roots[1]]);
    let mut t = f.trust();
    t.update(&[signed]).unwrap();
    // Signed by releasers 0 and 2 before; 0 is gone, one valid signature remains.
    assert!(matches!(
        t.verify_release(&f.released(1)),
        Err(Rejection::Threshold { valid: 1, .. })
    ));
    assert!(
        t.verify_release(&f.bundle(1, &[&f.releasers[1], &f.releasers[2]]))
            .is_ok()
    );
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
    assert_eq!(TrustedKey::new(&[0; 31]), Err(SignError::BadPublicKey(31)));
}

#[test]
fn a_statement_is_not_bound_to_stale_bytes() {
    // The statement envelope carries the exact bytes signed; re-encoding is never needed.
    let f = Fleet::new();
    let a = assignment(1, 1);
    let st: Statement = f.director.sign_assignment(&a);
    let back: Assignment = f.trust().verify_statement(DOMAIN_ASSIGNMENT, &st).unwrap();
    assert_eq!(back, a);
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
