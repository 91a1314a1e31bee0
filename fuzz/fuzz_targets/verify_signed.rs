//! Signed-statement verification on arbitrary input: the agent's deploy acceptance check
//! (`sign::check_deploy`) and key-rotation chain (`Trust::apply_chain`), fed with `HubMsg`s
//! decoded from the network bytes (`decode_hub_msg`).
//!
//! Input layout: `[flags, state, hub message bytes...]`. Random bytes never carry a valid
//! ed25519 signature, so `flags` lets the fuzzer have parts re-signed with known keys
//! (`KEYS[0]` is the trusted one) and made consistent, to reach the checks after the signature:
//!
//! | bit | effect                                                                             |
//! |-----|------------------------------------------------------------------------------------|
//! | 0   | re-sign the assignment body with `KEYS[0]`                                         |
//! | 1   | re-sign the bundle header with `KEYS[0]`                                           |
//! | 2   | set the bundle header's `content_hash` to the content's hash (if the header decodes) |
//! | 3   | copy the header's workflow/version/hash into the assignment (if both decode)       |
//! | 4   | rewrite endorsement `i` (if its body decodes) as the link `KEYS[i] -> KEYS[i+1]`   |
//! | 5   | re-sign endorsement `i` with `KEYS[min(i, 3)]`                                     |
//! | 6   | set the assignment's `agent_id` to this agent's                                    |
//!
//! `state` gives the workflow's anti-rollback state: `last_epoch = state & 15`,
//! `highest_version = state >> 4`, held versions `[1, highest_version]`.
//!
//! Properties checked besides "never panics":
//! - no forgery: without re-signing (bit 0 / bit 5 clear), nothing is accepted and the trusted
//!   key never changes;
//! - an accepted deploy satisfies every documented check (agent, epoch, removal without bundle,
//!   content hash, header = assignment, no stale version);
//! - `apply_chain` is all or nothing, reports a change exactly when the key changed, keeps
//!   `key_id(current) == current.key_id` and never trusts a retired key, and a chain it
//!   accepted is accepted again without change (resent from the start).
//!
//! Run with `cargo +nightly fuzz run verify_signed` from `fuzz/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use outpost_common::frame::decode_hub_msg;
use outpost_common::proto::{
    Assignment, BundleHeader, DOMAIN_ASSIGNMENT, DOMAIN_BUNDLE, DOMAIN_KEY_ENDORSEMENT, HubMsg,
    KeyEndorsement, KeyEndorsementBody, SignedAssignment, SignedBundle, key_id,
};
use outpost_common::sign::{Trust, WorkflowTrustState, check_deploy, content_hash};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// The agent id the deploys are checked against (the golden fixtures' agent).
const ME: &str = "agent-00112233aabbccdd";

struct Key {
    pair: Ed25519KeyPair,
    id: String,
}

impl Key {
    fn public(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
    fn sign(&self, domain: &[u8], body: &[u8]) -> Vec<u8> {
        let mut m = domain.to_vec();
        m.extend_from_slice(body);
        self.pair.sign(&m).as_ref().to_vec()
    }
}

/// Four fixed keys (deterministic, so a crash reproduces).
fn keys() -> &'static [Key; 4] {
    static KEYS: OnceLock<[Key; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        std::array::from_fn(|i| {
            let pair = Ed25519KeyPair::from_seed_unchecked(&[i as u8 + 1; 32])
                .expect("a 32-byte seed is a key");
            let id = key_id(pair.public_key().as_ref());
            Key { pair, id }
        })
    })
}

fn bit(flags: u8, n: u8) -> bool {
    flags & (1 << n) != 0
}

fn deploy(
    flags: u8,
    state: &WorkflowTrustState,
    mut sa: SignedAssignment,
    mut b: Option<SignedBundle>,
) {
    let k = &keys()[0];
    let trust = Trust::new(k.public()).expect("a 32-byte key");
    let mut header: Option<BundleHeader> = b
        .as_ref()
        .and_then(|b| minicbor::decode(&b.header_bytes).ok());
    if let (Some(b), Some(h)) = (b.as_mut(), header.as_mut())
        && bit(flags, 2)
    {
        h.content_hash = content_hash(&b.content);
        b.header_bytes = minicbor::to_vec(&*h).expect("encodes");
    }
    if bit(flags, 1)
        && let Some(b) = b.as_mut()
    {
        b.key_id = k.id.clone();
        b.sig = k.sign(DOMAIN_BUNDLE, &b.header_bytes);
    }
    if let Ok(mut a) = minicbor::decode::<Assignment>(&sa.body_bytes)
        && (bit(flags, 3) || bit(flags, 6))
    {
        if bit(flags, 3)
            && let Some(h) = &header
        {
            a.workflow = h.workflow.clone();
            a.version = h.version;
            a.content_hash = h.content_hash.clone();
        }
        if bit(flags, 6) {
            a.agent_id = ME.to_string();
        }
        sa.body_bytes = minicbor::to_vec(&a).expect("encodes");
    }
    if bit(flags, 0) {
        sa.key_id = k.id.clone();
        sa.sig = k.sign(DOMAIN_ASSIGNMENT, &sa.body_bytes);
    }

    let got = check_deploy(ME, &trust, state, &sa, b.as_ref());
    let Ok(acc) = got else { return };
    assert!(
        bit(flags, 0),
        "accepted an assignment not signed by the trusted key"
    );
    let a = &acc.assignment;
    assert_eq!(a.agent_id, ME);
    assert!(a.epoch > state.last_epoch, "stale epoch accepted");
    if a.remove {
        assert!(b.is_none() && acc.header.is_none() && acc.content.is_none());
        return;
    }
    let held = state.held_versions.contains(&a.version);
    assert!(
        a.version >= state.highest_version || held,
        "stale version accepted"
    );
    match (&acc.header, &acc.content, &b) {
        (Some(h), Some(c), Some(b)) => {
            assert!(
                bit(flags, 1),
                "accepted a bundle not signed by the trusted key"
            );
            assert_eq!(c, &b.content);
            assert_eq!(h.content_hash, content_hash(c));
            assert_eq!(
                (&h.workflow, h.version, &h.content_hash),
                (&a.workflow, a.version, &a.content_hash)
            );
        }
        (None, None, None) => assert!(held, "no bundle for a version not held"),
        other => panic!("inconsistent acceptance: {other:?}"),
    }
}

fn chain(flags: u8, mut chain: Vec<KeyEndorsement>) {
    let ks = keys();
    for (i, e) in chain.iter_mut().enumerate() {
        if bit(flags, 4)
            && let Ok(mut body) = minicbor::decode::<KeyEndorsementBody>(&e.body_bytes)
        {
            let (old, new) = (&ks[i.min(3)], &ks[(i + 1).min(3)]);
            body.old_key_id = old.id.clone();
            body.new_public_key = new.public().to_vec();
            body.new_key_id = new.id.clone();
            e.body_bytes = minicbor::to_vec(&body).expect("encodes");
        }
        if bit(flags, 5) {
            e.sig = ks[i.min(3)].sign(DOMAIN_KEY_ENDORSEMENT, &e.body_bytes);
        }
    }
    let before = Trust::new(ks[0].public()).expect("a 32-byte key");
    let mut trust = before.clone();
    match trust.apply_chain(&chain) {
        Err(_) => assert_eq!(trust, before, "a refused chain changed the trust"),
        Ok(changed) => {
            assert_eq!(changed, trust.current != before.current);
            if !bit(flags, 5) {
                assert!(
                    !changed,
                    "trust moved along a chain not signed by a known key"
                );
            }
            assert_eq!(trust.current.key_id, key_id(&trust.current.public_key));
            assert!(
                !trust.retired.contains(&trust.current.key_id),
                "current key retired"
            );
            assert!(trust.retired.len() >= before.retired.len());
            let once = trust.clone();
            assert_eq!(
                trust.apply_chain(&chain),
                Ok(false),
                "resent chain not idempotent"
            );
            assert_eq!(trust, once);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, state, msg @ ..] = data else {
        return;
    };
    let highest = u64::from(state >> 4);
    let state = WorkflowTrustState {
        highest_version: highest,
        last_epoch: u64::from(state & 15),
        held_versions: vec![1, highest],
    };
    match decode_hub_msg(msg) {
        Ok(Some(HubMsg::Deploy { assignment, bundle })) => {
            deploy(*flags, &state, assignment, bundle)
        }
        Ok(Some(HubMsg::Welcome { key_chain, .. })) => chain(*flags, key_chain),
        Ok(Some(HubMsg::KeyChain { endorsements })) => chain(*flags, endorsements),
        _ => {}
    }
});
