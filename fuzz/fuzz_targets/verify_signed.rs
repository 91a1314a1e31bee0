//! Verification of everything signed on arbitrary input: root metadata chains (`Trust::new`,
//! `Trust::update`), released versions (`Trust::verify_release`), the director's statements of
//! every kind (`Trust::verify_statement` with each domain), the agent's deploy check
//! (`trust::check_deploy`) and the agent session's own checks (`AgentSession::handle_hub`), fed
//! with `HubMsg`s decoded from the network bytes (`decode_hub_msg`).
//!
//! The agent trusts a fixed root: root role `{K0, K1}` threshold 2, release role `{K2, K3}`
//! threshold 2, director `K4`; `K5` is a stranger. Input layout: `[flags, keys, state, hub
//! message bytes...]`. Random bytes never carry a valid ed25519 signature, so `flags` has parts
//! re-signed with these keys and made consistent, to reach the checks after the signature:
//!
//! | flags bit | effect                                                                       |
//! |-----------|------------------------------------------------------------------------------|
//! | 0 | re-sign every statement (assignment, ack, snapshot, command) with the statement signer   |
//! | 1 | re-sign the bundle header with the release signers                                       |
//! | 2 | set the bundle header's `content_hash` to the content's hash (if the header decodes)     |
//! | 3 | copy the header's workflow/version/hash into the assignment (if both decode)             |
//! | 4 | set the assignment's `agent_id` to this agent's                                          |
//! | 5 | check the deploy against a snapshot listing the assignment (else: no snapshot)           |
//! | 6 | rewrite root `i` (if its body decodes) as version `2 + i` with the trusted roles         |
//! | 7 | re-sign every root with the root signers                                                 |
//!
//! | keys bits | choice                                                                       |
//! |-----------|------------------------------------------------------------------------------|
//! | 0-1 | statement signer: K4 (director), K0 (root), K2 (release), K5 (stranger)                |
//! | 2-3 | release signers: K2; K2 + K3; K2 + K2 + K4; K3 + K5                                    |
//! | 4-5 | root signers: K0; K0 + K1; K1 + K5; K0 + K0                                            |
//! | 6   | bit 6's roots name K5 as the director (a director rotation)                            |
//!
//! `state` gives the workflow's anti-rollback state: `last_epoch = state & 15`,
//! `highest_version = state >> 4`, held versions `[1, highest_version]`.
//!
//! Properties checked besides "never panics": whatever is accepted was really signed by the
//! right role: a root (first or successor) only with a threshold of root keys (K0 and K1, bit 7),
//! a release only with a threshold of release keys (K2 and K3, bit 1), a statement only by the
//! key that is the director of the trust in force and only for the domain it was signed for
//! (bit 0); an accepted deploy satisfies every documented check (agent, epoch, snapshot,
//! removal without bundle, content hash, header = assignment, no stale version); `update` is all
//! or nothing, idempotent when the chain is resent, and reports a change exactly when the
//! version moved.
//!
//! Seeds (`fuzz/seeds/verify_signed/`): `[flags, keys, state]` followed by the bytes of a golden
//! fixture (`common/tests/fixtures/hub_*.hex`), named `<fixture>_<flags>_<keys>_<state>` (hex):
//! e.g. `hub_deploy_ff_04_00` is a deploy with every fix-up, assigned by the director and
//! released by K2 + K3 (accepted), `hub_welcome_c1_53_00` a Welcome whose roots rotate the
//! director to K5, signed by K0 + K1, with statements by K5 (accepted). To make one:
//! `(printf '\xff\x04\x00'; xxd -r -p common/tests/fixtures/hub_deploy.hex) > seeds/...`.
//!
//! Run with `cargo +nightly fuzz run verify_signed` from the repository root.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use minicbor::Decode;
use outpost_common::frame::decode_hub_msg;
use outpost_common::proto::{
    AckBody, Assignment, BundleHeader, CommandBody, DOMAIN_ACK, DOMAIN_ASSIGNMENT, DOMAIN_COMMAND,
    DOMAIN_ROOT, DOMAIN_SNAPSHOT, HubMsg, Rejection, SignedAssignment, SignedBundle, Snapshot,
    SnapshotEntry, Statement,
};
use outpost_common::sync::{AgentEvent, AgentSession, AgentSessionConfig};
use outpost_common::trust::{
    Director, Role, RootBody, SignedRoot, SigningKey, Trust, WorkflowTrustState, check_deploy,
    content_hash, sign_release,
};

/// The agent and session the statements are checked against (the golden fixtures').
const ME: &str = "agent-00112233aabbccdd";
const SESSION: [u8; 16] = [0x5a; 16];
/// The agent's time floor (the fixtures' hub time).
const NOW: i64 = 1_767_225_600_000;

struct Fixture {
    /// K0..K5.
    keys: [SigningKey; 6],
    /// The first root: root {K0, K1}/2, release {K2, K3}/2, director K4.
    body: RootBody,
    trust: Trust,
}

/// The ed25519 key with a 32-byte seed (PKCS#8 v1).
fn key(seed: u8) -> SigningKey {
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&[seed; 32]);
    SigningKey::from_pkcs8(&v1).expect("a 32-byte seed is a key")
}

/// Fixed keys and root (deterministic, so a crash reproduces).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let keys: [SigningKey; 6] = std::array::from_fn(|i| key(i as u8 + 1));
        let body = RootBody::first(
            &[keys[0].trusted(), keys[1].trusted()],
            2,
            &[keys[2].trusted(), keys[3].trusted()],
            2,
            &keys[4].trusted(),
            0,
            NOW + 10 * 365 * 86_400_000,
        );
        let trust = Trust::new(body.sign(&[&keys[0], &keys[1]])).expect("a valid first root");
        Fixture { keys, body, trust }
    })
}

fn bit(flags: u8, n: u8) -> bool {
    flags & (1 << n) != 0
}

/// What the input's flags and key choices ask for.
#[derive(Clone, Copy)]
struct Plan {
    flags: u8,
    keys: u8,
}

impl Plan {
    fn statement_signer(self) -> &'static SigningKey {
        let k = &fixture().keys;
        [&k[4], &k[0], &k[2], &k[5]][usize::from(self.keys & 3)]
    }

    fn release_signers(self) -> Vec<&'static SigningKey> {
        let k = &fixture().keys;
        match (self.keys >> 2) & 3 {
            0 => vec![&k[2]],
            1 => vec![&k[2], &k[3]],
            2 => vec![&k[2], &k[2], &k[4]],
            _ => vec![&k[3], &k[5]],
        }
    }

    /// Whether the release signers are a threshold of the release role.
    fn released(self) -> bool {
        bit(self.flags, 1) && (self.keys >> 2) & 3 == 1
    }

    fn root_signers(self) -> Vec<&'static SigningKey> {
        let k = &fixture().keys;
        match (self.keys >> 4) & 3 {
            0 => vec![&k[0]],
            1 => vec![&k[0], &k[1]],
            2 => vec![&k[1], &k[5]],
            _ => vec![&k[0], &k[0]],
        }
    }

    /// Whether the roots were re-signed by a threshold of the (unchanged) root role.
    fn root_signed(self) -> bool {
        bit(self.flags, 7) && (self.keys >> 4) & 3 == 1
    }

    /// Sign `body_bytes` as a statement of `domain` if bit 0 asks for it.
    fn statement(self, domain: &[u8], st: &mut Statement) {
        if bit(self.flags, 0) {
            st.signature = self.statement_signer().sign(domain, &st.body_bytes);
        }
    }

    /// Whether a statement accepted under `trust` was really signed by its director.
    fn signed_by_director(self, trust: &Trust) -> bool {
        bit(self.flags, 0)
            && trust
                .root()
                .director
                .key_ids
                .iter()
                .any(|id| id == self.statement_signer().key_id())
    }

    /// Apply bits 6 and 7 to a chain of roots.
    fn roots(self, chain: &mut [SignedRoot]) {
        let f = fixture();
        for (i, r) in chain.iter_mut().enumerate() {
            if bit(self.flags, 6)
                && let Ok(mut body) = r.body_unverified()
            {
                body.version = 2 + i as u64;
                body.keys = f.body.keys.clone();
                body.root = f.body.root.clone();
                body.release = f.body.release.clone();
                body.director = f.body.director.clone();
                if bit(self.keys, 6) {
                    body.set_key(Role::Director, &f.keys[4].trusted(), false);
                    body.set_key(Role::Director, &f.keys[5].trusted(), true);
                }
                r.body_bytes = minicbor::to_vec(&body).expect("encodes");
            }
            if bit(self.flags, 7) {
                r.signatures = self
                    .root_signers()
                    .iter()
                    .map(|k| k.sign(DOMAIN_ROOT, &r.body_bytes))
                    .collect();
            }
        }
    }
}

/// Verify `st` under every statement domain: accepted only under `signed_for` (the domain it
/// was re-signed for) and only when its director signed it.
fn statements(plan: Plan, trust: &Trust, st: &Statement, signed_for: &[u8]) {
    fn one<T: for<'b> Decode<'b, ()>>(
        plan: Plan,
        trust: &Trust,
        st: &Statement,
        domain: &[u8],
        signed_for: &[u8],
    ) {
        if trust.verify_statement::<T>(domain, st).is_ok() {
            assert_eq!(
                domain, signed_for,
                "a statement verified under another domain"
            );
            assert!(
                plan.signed_by_director(trust),
                "a statement not signed by the director verified"
            );
        }
    }
    one::<Assignment>(plan, trust, st, DOMAIN_ASSIGNMENT, signed_for);
    one::<Snapshot>(plan, trust, st, DOMAIN_SNAPSHOT, signed_for);
    one::<CommandBody>(plan, trust, st, DOMAIN_COMMAND, signed_for);
    one::<AckBody>(plan, trust, st, DOMAIN_ACK, signed_for);
}

/// Follow `chain` from the fixed root; returns the trust reached (the fixed one on error).
fn chain(plan: Plan, chain: &[SignedRoot]) -> Trust {
    let before = fixture().trust.clone();
    // Each root as a first root.
    for r in chain {
        if let Ok(t) = Trust::new(r.clone()) {
            assert!(
                bit(plan.flags, 7),
                "a first root not signed by the fixture's root keys was trusted"
            );
            assert!(t.root().check().is_ok());
        }
    }
    let mut trust = before.clone();
    match trust.update(chain) {
        Err(_) => {
            assert_eq!(trust, before, "a refused chain changed the trust");
            before
        }
        Ok(u) => {
            assert_eq!(u.changed, trust.version() != before.version());
            assert!(trust.version() >= before.version());
            assert!(!u.reset_counters || u.changed);
            if u.changed {
                assert!(
                    plan.root_signed(),
                    "the trust moved along roots not signed by a threshold of root keys"
                );
                assert!(trust.root().check().is_ok());
            }
            let once = trust.clone();
            assert_eq!(
                trust.update(chain).map(|u| u.changed),
                Ok(false),
                "a resent chain is not idempotent"
            );
            assert_eq!(trust, once);
            trust
        }
    }
}

fn deploy(
    plan: Plan,
    state: &WorkflowTrustState,
    mut sa: SignedAssignment,
    mut b: Option<SignedBundle>,
) -> HubMsg {
    let flags = plan.flags;
    let trust = &fixture().trust;
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
        b.release = plan
            .release_signers()
            .iter()
            .map(|k| sign_release(k, &b.header_bytes))
            .collect();
    }
    let mut assignment = minicbor::decode::<Assignment>(&sa.body_bytes).ok();
    if let Some(a) = assignment.as_mut()
        && (bit(flags, 3) || bit(flags, 4))
    {
        if bit(flags, 3)
            && let Some(h) = &header
        {
            a.workflow = h.workflow.clone();
            a.version = h.version;
            a.content_hash = h.content_hash.clone();
        }
        if bit(flags, 4) {
            a.agent_id = ME.to_string();
        }
        sa.body_bytes = minicbor::to_vec(&*a).expect("encodes");
    }
    plan.statement(DOMAIN_ASSIGNMENT, &mut sa);
    statements(plan, trust, &sa, DOMAIN_ASSIGNMENT);
    let snapshot = assignment.filter(|_| bit(flags, 5)).map(|a| Snapshot {
        agent_id: ME.into(),
        session: SESSION.to_vec(),
        issued_ms: NOW,
        expires_ms: NOW + 60_000,
        workflows: if a.remove {
            vec![]
        } else {
            vec![SnapshotEntry {
                workflow: a.workflow,
                version: a.version,
                epoch: a.epoch,
                content_hash: a.content_hash,
            }]
        },
    });

    if let Some(b) = &b {
        match trust.verify_release(b) {
            Ok(h) => {
                assert!(
                    plan.released(),
                    "a bundle without a threshold of release signatures verified"
                );
                assert_eq!(h.content_hash, content_hash(&b.content));
            }
            Err(Rejection::Threshold { .. }) => assert!(!plan.released()),
            Err(_) => {}
        }
    }

    let got = check_deploy(ME, trust, state, snapshot.as_ref(), &sa, b.as_ref(), NOW);
    if let Ok(acc) = got {
        assert!(
            plan.signed_by_director(trust),
            "accepted an assignment not signed by the director"
        );
        let a = &acc.assignment;
        assert_eq!(a.agent_id, ME);
        assert!(a.epoch > state.last_epoch, "stale epoch accepted");
        let listed = snapshot
            .as_ref()
            .expect("accepted without a snapshot")
            .workflows
            .iter()
            .find(|e| e.workflow == a.workflow);
        if a.remove {
            assert!(listed.is_none(), "a removal of a workflow still listed");
            assert!(b.is_none() && acc.header.is_none() && acc.content.is_none());
        } else {
            let e = listed.expect("accepted an assignment the snapshot does not list");
            assert_eq!(
                (e.version, e.epoch, &e.content_hash),
                (a.version, a.epoch, &a.content_hash)
            );
            let held = state.held_versions.contains(&a.version);
            assert!(
                a.version >= state.highest_version || held,
                "stale version accepted"
            );
            match (&acc.header, &acc.content, &b) {
                (Some(h), Some(c), Some(b)) => {
                    assert!(plan.released(), "accepted a bundle not released");
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
    }
    HubMsg::Deploy {
        assignment: sa,
        bundle: b,
    }
}

/// The fixed director's Welcome for `ME` in `SESSION` (nothing acknowledged, empty snapshot).
fn welcome() -> HubMsg {
    let director = Director::new(key(5));
    HubMsg::Welcome {
        ack: director.sign_ack(&AckBody {
            agent_id: ME.into(),
            session: SESSION.to_vec(),
            seq: 0,
            hub_time_ms: NOW,
        }),
        roots: vec![],
        paused: vec![],
        snapshot: director.sign_snapshot(&Snapshot {
            agent_id: ME.into(),
            session: SESSION.to_vec(),
            issued_ms: NOW,
            expires_ms: NOW + 60_000,
            workflows: vec![],
        }),
        replicas: None,
    }
}

/// Feed the (fixed-up) message to an agent session trusting the fixed root, after the fixed
/// director's Welcome unless it is a Welcome itself (an Ack replaces the Welcome's own); what
/// the session accepts was signed by the director of the trust in force.
fn session(plan: Plan, msg: HubMsg) {
    let mut s = AgentSession::new(AgentSessionConfig {
        agent_id: ME.into(),
        software_version: "fuzz".into(),
        labels: vec![],
        active: vec![],
        acked_seq: 0,
        last_seq: 0,
        trust: fixture().trust.clone(),
        session: SESSION.to_vec(),
        window: 1,
        batch: 1,
    });
    // An Ack of anything beyond what the session sent is a violation whatever its signature:
    // the fuzzed Ack goes in the fixed Welcome instead, where any seq is taken.
    let msg = match (msg, welcome()) {
        (
            HubMsg::Ack { ack },
            HubMsg::Welcome {
                roots,
                paused,
                snapshot,
                ..
            },
        ) => HubMsg::Welcome {
            ack,
            roots,
            paused,
            snapshot,
            replicas: None,
        },
        (msg, _) => msg,
    };
    let signed = matches!(
        msg,
        HubMsg::Welcome { .. }
            | HubMsg::Ack { .. }
            | HubMsg::Snapshot { .. }
            | HubMsg::Command { .. }
    );
    if !matches!(msg, HubMsg::Welcome { .. }) {
        s.handle_hub(welcome(), 0)
            .expect("the fixed Welcome is valid");
        while s.poll_event().is_some() {}
    }
    let ok = s.handle_hub(msg, 0).is_ok();
    let mut trust = fixture().trust.clone();
    while let Some(ev) = s.poll_event() {
        if let AgentEvent::Roots { trust: t, .. } = ev {
            assert!(plan.root_signed(), "the session followed roots not signed");
            trust = t;
        }
    }
    if ok && signed {
        assert!(
            plan.signed_by_director(&trust),
            "the session accepted a statement not signed by the director"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, keys, state, msg @ ..] = data else {
        return;
    };
    let plan = Plan {
        flags: *flags,
        keys: *keys,
    };
    let highest = u64::from(state >> 4);
    let state = WorkflowTrustState {
        highest_version: highest,
        last_epoch: u64::from(state & 15),
        held_versions: vec![1, highest],
    };
    let msg = match decode_hub_msg(msg) {
        Ok(Some(HubMsg::Deploy { assignment, bundle })) => deploy(plan, &state, assignment, bundle),
        Ok(Some(HubMsg::Welcome {
            mut ack,
            mut roots,
            paused,
            mut snapshot,
            replicas,
        })) => {
            plan.roots(&mut roots);
            let trust = chain(plan, &roots);
            plan.statement(DOMAIN_ACK, &mut ack);
            plan.statement(DOMAIN_SNAPSHOT, &mut snapshot);
            statements(plan, &trust, &ack, DOMAIN_ACK);
            statements(plan, &trust, &snapshot, DOMAIN_SNAPSHOT);
            HubMsg::Welcome {
                ack,
                roots,
                paused,
                snapshot,
                replicas,
            }
        }
        Ok(Some(HubMsg::Roots { mut roots })) => {
            plan.roots(&mut roots);
            chain(plan, &roots);
            HubMsg::Roots { roots }
        }
        Ok(Some(HubMsg::Ack { mut ack })) => {
            plan.statement(DOMAIN_ACK, &mut ack);
            statements(plan, &fixture().trust, &ack, DOMAIN_ACK);
            HubMsg::Ack { ack }
        }
        Ok(Some(HubMsg::Snapshot { mut snapshot })) => {
            plan.statement(DOMAIN_SNAPSHOT, &mut snapshot);
            statements(plan, &fixture().trust, &snapshot, DOMAIN_SNAPSHOT);
            HubMsg::Snapshot { snapshot }
        }
        Ok(Some(HubMsg::Command { id, mut command })) => {
            plan.statement(DOMAIN_COMMAND, &mut command);
            statements(plan, &fixture().trust, &command, DOMAIN_COMMAND);
            HubMsg::Command { id, command }
        }
        Ok(Some(other)) => other,
        _ => return,
    };
    session(plan, msg);
});
