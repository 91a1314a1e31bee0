//! Golden byte fixtures pinning the wire format: one representative value of every message type
//! is encoded and compared with `tests/fixtures/<name>.hex`, and each fixture decodes back to the
//! value. Plus the compatibility rules between neighbouring releases: unknown trailing fields are
//! skipped, missing optional fields decode as `None`, a missing required field is an error, and
//! an unknown top-level variant is reported as such (not as garbage).
//!
//! To (re)generate after an intended, compatible change: `OUTPOST_BLESS=1 cargo test -p
//! outpost-common --test proto_golden`, then read the diff.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use minicbor::{Decode, Encode};
use outpost_common::frame::{decode_agent_msg, decode_enroll_response, decode_hub_msg};
use outpost_common::proto::*;
use outpost_common::record::*;
use outpost_common::trust::{RoleKeys, RootBody, Signature, SignedRoot, TrustedKey};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.hex"))
}

/// Compare `value`'s encoding with the fixture and decode the fixture back.
fn golden<T>(name: &str, value: &T)
where
    T: Encode<()> + for<'b> Decode<'b, ()> + PartialEq + std::fmt::Debug,
{
    let bytes = minicbor::to_vec(value).unwrap();
    let path = fixture_path(name);
    if std::env::var_os("OUTPOST_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{}\n", hex(&bytes))).unwrap();
    }
    let fixture = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate with OUTPOST_BLESS=1)", path.display()));
    assert_eq!(hex(&bytes), fixture.trim(), "encoding of {name} changed");
    let decoded: T = minicbor::decode(&unhex(&fixture)).unwrap();
    assert_eq!(&decoded, value, "fixture {name} decodes to the value");
}

fn header() -> BundleHeader {
    BundleHeader {
        workflow: "etl".into(),
        version: 3,
        content_hash: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262".into(),
        created_ms: 1_767_225_600_000,
        target: vec![("site".into(), "north".into())],
        format: "yaml".into(),
    }
}

fn bundle() -> SignedBundle {
    SignedBundle {
        header_bytes: minicbor::to_vec(header()).unwrap(),
        content: b"name: etl\n".to_vec(),
        release: vec![sig("0123456789abcdef", 0xab), sig("1123456789abcdef", 0xac)],
    }
}

fn assignment() -> Assignment {
    Assignment {
        agent_id: "agent-00112233aabbccdd".into(),
        workflow: "etl".into(),
        version: 3,
        content_hash: header().content_hash,
        epoch: 7,
        issued_ms: 1_767_225_600_001,
        remove: false,
        previous_version: Some(2),
        probation: Some(Probation {
            runs: 5,
            max_failures: 1,
        }),
        rollout_id: Some("r-1".into()),
    }
}

fn sig(key_id: &str, byte: u8) -> Signature {
    Signature {
        key_id: key_id.into(),
        sig: vec![byte; 64],
    }
}

fn signed_assignment() -> SignedAssignment {
    SignedAssignment {
        body_bytes: minicbor::to_vec(assignment()).unwrap(),
        signature: sig("0123456789abcdef", 0xcd),
    }
}

fn statement<T: Encode<()>>(body: &T) -> Statement {
    Statement {
        body_bytes: minicbor::to_vec(body).unwrap(),
        signature: sig("2123456789abcdef", 0xce),
    }
}

fn root() -> SignedRoot {
    let k = |b: u8| TrustedKey {
        key_id: format!("{b:016x}"),
        public_key: vec![b; 32],
    };
    let body = RootBody {
        version: 2,
        issued_ms: 1_767_225_600_000,
        expires_ms: 1_798_761_600_000,
        keys: vec![k(1), k(2), k(3)],
        root: RoleKeys {
            key_ids: vec![k(1).key_id],
            threshold: 1,
        },
        release: RoleKeys {
            key_ids: vec![k(2).key_id],
            threshold: 1,
        },
        director: RoleKeys {
            key_ids: vec![k(3).key_id],
            threshold: 1,
        },
        reset_counters: false,
    };
    SignedRoot {
        body_bytes: minicbor::to_vec(&body).unwrap(),
        signatures: vec![sig(&k(1).key_id, 0xee)],
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        agent_id: "agent-00112233aabbccdd".into(),
        session: vec![0x5a; 16],
        issued_ms: 1_767_225_600_000,
        expires_ms: 1_767_312_000_000,
        workflows: vec![SnapshotEntry {
            workflow: "etl".into(),
            version: 3,
            epoch: 7,
            content_hash: header().content_hash,
        }],
    }
}

fn ack(seq: u64) -> AckBody {
    AckBody {
        agent_id: "agent-00112233aabbccdd".into(),
        session: vec![0x5a; 16],
        seq,
        hub_time_ms: 1_767_225_600_000,
    }
}

fn run_record() -> RunRecord {
    RunRecord {
        run_id: "etl@v3@20260101T000000.000Z".into(),
        workflow: "etl".into(),
        version: 3,
        kind: RunKind::Scheduled,
        scheduled_ms: 1_767_225_600_000,
        state: RunState::Failed,
        params: vec![("day".into(), "2026-01-01".into())],
        created_ms: 1_767_225_600_000,
        started_ms: Some(1_767_225_600_010),
        ended_ms: Some(1_767_225_601_000),
        agent_id: Some("agent-00112233aabbccdd".into()),
        skip_reason: None,
    }
}

fn task_record() -> TaskInstanceRecord {
    TaskInstanceRecord {
        run_id: "etl@v3@20260101T000000.000Z".into(),
        task_id: "extract".into(),
        state: TaskState::Failed,
        attempts: vec![AttemptRecord {
            attempt: 1,
            started_ms: 1_767_225_600_010,
            ended_ms: Some(1_767_225_601_000),
            pid: Some(4242),
            outcome: Some(AttemptOutcome::Signaled(9)),
            limits: LimitsMode::Rlimit,
            reason: Some("killed by SIGKILL".into()),
            log_path: None,
            dispatched_ms: None,
        }],
        outputs: vec![("rows".into(), "10".into())],
        retry_at_ms: None,
        updated_ms: 1_767_225_601_000,
    }
}

fn missed() -> MissedFirings {
    MissedFirings {
        workflow: "etl".into(),
        count: 12,
        first_ms: 1_767_225_600_000,
        last_ms: 1_767_229_200_000,
        reason: "catchup=latest".into(),
        recorded_ms: 1_767_229_200_001,
    }
}

#[test]
fn signed_statements() {
    golden("bundle_header", &header());
    golden("signed_bundle", &bundle());
    golden("assignment", &assignment());
    golden("signed_assignment", &signed_assignment());
    golden("signed_root", &root());
    golden("snapshot", &snapshot());
    golden("ack_body", &ack(41));
    golden(
        "probation",
        &Probation {
            runs: 5,
            max_failures: 1,
        },
    );
}

#[test]
fn enrollment() {
    golden(
        "enroll_request",
        &EnrollRequest {
            token: "tok1.s3cret".into(),
            csr_der: vec![0x30, 0x82, 0x01, 0x0a],
            labels: vec![("site".into(), "north".into())],
            hostname: "edge-7".into(),
            software_version: "0.1.0".into(),
            name: None,
        },
    );
    golden(
        "enroll_response_ok",
        &EnrollResponse::Ok {
            agent_id: "agent-00112233aabbccdd".into(),
            cert_der: vec![0x30, 0x82, 0x02],
            ca_der: vec![0x30, 0x82, 0x03],
            hub_name: "outpost-hub".into(),
            root: root(),
            labels: vec![("site".into(), "north".into())],
            name: None,
            replicas: None,
        },
    );
    golden(
        "enroll_response_ok_replicas",
        &EnrollResponse::Ok {
            agent_id: "agent-00112233aabbccdd".into(),
            cert_der: vec![0x30, 0x82, 0x02],
            ca_der: vec![0x30, 0x82, 0x03],
            hub_name: "outpost-hub".into(),
            root: root(),
            labels: vec![("site".into(), "north".into())],
            name: Some("edge-7".into()),
            replicas: Some(vec!["hub-a.example:7443".into(), "10.0.0.2:7443".into()]),
        },
    );
    golden(
        "enroll_response_refused",
        &EnrollResponse::Refused {
            reason: "token expired".into(),
        },
    );
}

#[test]
fn agent_messages() {
    golden(
        "agent_hello",
        &AgentMsg::Hello {
            agent_id: "agent-00112233aabbccdd".into(),
            software_version: "0.1.0".into(),
            labels: vec![("site".into(), "north".into())],
            active: vec![ActiveWorkflow {
                workflow: "etl".into(),
                version: 3,
                epoch: 7,
                paused: true,
                highest_version: None,
            }],
            acked_seq: 41,
            last_seq: 57,
            root_version: 2,
            session: vec![0x5a; 16],
        },
    );
    golden(
        "agent_status",
        &AgentMsg::Status {
            entries: vec![
                OutboxEntry {
                    seq: 42,
                    event: StatusEvent::Run(run_record()),
                },
                OutboxEntry {
                    seq: 43,
                    event: StatusEvent::Task(task_record()),
                },
                OutboxEntry {
                    seq: 44,
                    event: StatusEvent::Missed(missed()),
                },
            ],
        },
    );
    let rejections = [
        Rejection::BadSignature,
        Rejection::UnknownKey("0123456789abcdef".into()),
        Rejection::HashMismatch,
        Rejection::StaleVersion {
            offered: 2,
            highest: 3,
        },
        Rejection::StaleEpoch {
            offered: 6,
            last: 7,
        },
        Rejection::WrongAgent("agent-ffffffffffffffff".into()),
        Rejection::Invalid("tasks: empty".into()),
        Rejection::Mismatch,
        Rejection::Malformed("bundle header".into()),
        Rejection::Threshold {
            role: "release".into(),
            valid: 1,
            needed: 2,
        },
        Rejection::Expired {
            what: "root metadata".into(),
            at_ms: 1_798_761_600_000,
        },
        Rejection::NotInSnapshot,
    ];
    golden(
        "agent_deploy_result_ok",
        &AgentMsg::DeployResult {
            workflow: "etl".into(),
            version: 3,
            epoch: 7,
            rejected: None,
        },
    );
    for (i, r) in rejections.into_iter().enumerate() {
        golden(
            &format!("agent_deploy_result_rejected_{i}"),
            &AgentMsg::DeployResult {
                workflow: "etl".into(),
                version: 3,
                epoch: 7,
                rejected: Some(r),
            },
        );
    }
    golden(
        "agent_command_result",
        &AgentMsg::CommandResult {
            id: 9,
            ok: true,
            message: "triggered".into(),
            run_id: Some("etl@v3@m20260101T000000.000Z".into()),
        },
    );
    golden(
        "agent_log_chunk",
        &AgentMsg::LogChunk {
            id: 9,
            data: b"hello\n".to_vec(),
            eof: true,
        },
    );
    golden(
        "agent_clock_offset",
        &AgentMsg::ClockOffset {
            offset_ms: -1250,
            at_ms: 1_767_225_600_000,
        },
    );
    golden(
        "agent_reverted",
        &AgentMsg::Reverted {
            workflow: "etl".into(),
            from_version: 4,
            to_version: 3,
            reason: "2 of 5 runs failed".into(),
            at_ms: 1_767_225_700_000,
        },
    );
}

#[test]
fn hub_messages() {
    golden(
        "hub_welcome",
        &HubMsg::Welcome {
            ack: statement(&ack(41)),
            roots: vec![root()],
            paused: vec!["backup".into()],
            snapshot: statement(&snapshot()),
            replicas: None,
        },
    );
    golden(
        "hub_welcome_replicas",
        &HubMsg::Welcome {
            ack: statement(&ack(41)),
            roots: vec![root()],
            paused: vec!["backup".into()],
            snapshot: statement(&snapshot()),
            replicas: Some(vec!["hub-a.example:7443".into(), "10.0.0.2:7443".into()]),
        },
    );
    golden(
        "hub_deploy",
        &HubMsg::Deploy {
            assignment: signed_assignment(),
            bundle: Some(bundle()),
        },
    );
    golden(
        "hub_deploy_no_bundle",
        &HubMsg::Deploy {
            assignment: signed_assignment(),
            bundle: None,
        },
    );
    golden(
        "hub_ack",
        &HubMsg::Ack {
            ack: statement(&ack(44)),
        },
    );
    let commands = [
        Command::Trigger {
            workflow: "etl".into(),
            params: vec![("day".into(), "2026-01-01".into())],
        },
        Command::Pause {
            workflow: "etl".into(),
        },
        Command::Resume {
            workflow: "etl".into(),
        },
        Command::Cancel {
            run_id: "etl@v3@20260101T000000.000Z".into(),
        },
        Command::FetchLog {
            run_id: "etl@v3@20260101T000000.000Z".into(),
            task: "extract".into(),
            attempt: Some(1),
        },
        Command::Retry {
            run_id: "etl@v3@20260101T000000.000Z".into(),
            task: Some("extract".into()),
            downstream: true,
            if_ended_ms: Some(1_767_225_660_000),
        },
        Command::Backfill {
            workflow: "etl".into(),
            instants: vec![1_767_225_600_000, 1_767_229_200_000],
            max_active: 2,
        },
        Command::TriggerAt {
            workflow: "etl".into(),
            params: vec![("day".into(), "2026-01-01".into())],
            at_ms: 1_767_225_600_000,
        },
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let body = CommandBody {
            agent_id: "agent-00112233aabbccdd".into(),
            session: vec![0x5a; 16],
            id: 9,
            issued_ms: 1_767_225_600_000,
            expires_ms: 1_767_225_660_000,
            command,
        };
        golden(&format!("command_body_{i}"), &body);
        golden(
            &format!("hub_command_{i}"),
            &HubMsg::Command {
                id: 9,
                command: statement(&body),
            },
        );
    }
    golden(
        "hub_goodbye",
        &HubMsg::Goodbye {
            reason: "revoked".into(),
        },
    );
    golden(
        "hub_roots",
        &HubMsg::Roots {
            roots: vec![root()],
        },
    );
    golden(
        "hub_snapshot",
        &HubMsg::Snapshot {
            snapshot: statement(&snapshot()),
        },
    );
}

/// Every fixture of an enum message decodes through the `frame` helpers as a known variant (so
/// their known-variant ranges keep up with the enums).
#[test]
fn frame_helpers_know_every_variant() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let bytes = unhex(&std::fs::read_to_string(&path).unwrap());
        if name.starts_with("agent_") {
            assert!(decode_agent_msg(&bytes).unwrap().is_some(), "{name}");
            n += 1;
        } else if name.starts_with("hub_") {
            assert!(decode_hub_msg(&bytes).unwrap().is_some(), "{name}");
            n += 1;
        } else if name.starts_with("enroll_response") {
            assert!(decode_enroll_response(&bytes).unwrap().is_some(), "{name}");
            n += 1;
        }
    }
    assert!(n >= 25, "only {n} message fixtures");
}

// ----- compatibility between neighbouring releases ----------------------------------------------

/// `ActiveWorkflow` as a newer release might define it: one more field.
#[derive(Encode)]
struct ActiveWorkflowNext {
    #[n(0)]
    workflow: String,
    #[n(1)]
    version: u64,
    #[n(2)]
    epoch: u64,
    #[n(3)]
    paused: bool,
    #[n(4)]
    highest_version: Option<u64>,
    #[n(5)]
    pinned_until: Option<i64>,
    #[n(6)]
    notes: Vec<String>,
}

#[test]
fn unknown_trailing_fields_are_skipped() {
    let next = ActiveWorkflowNext {
        workflow: "etl".into(),
        version: 3,
        epoch: 7,
        paused: false,
        highest_version: Some(9),
        pinned_until: Some(5),
        notes: vec!["a".into()],
    };
    let bytes = minicbor::to_vec(&next).unwrap();
    let now: ActiveWorkflow = minicbor::decode(&bytes).unwrap();
    assert_eq!(
        now,
        ActiveWorkflow {
            workflow: "etl".into(),
            version: 3,
            epoch: 7,
            paused: false,
            highest_version: Some(9),
        }
    );
    // Inside an enum variant too: Goodbye { reason: "r", <new field 1: "x"> } is
    // [4, ["r", "x"]].
    let next = [0x82, 0x04, 0x82, 0x61, b'r', 0x61, b'x'];
    assert_eq!(
        decode_hub_msg(&next).unwrap(),
        Some(HubMsg::Goodbye { reason: "r".into() })
    );
}

/// `Assignment` as an older release defined it: without the issue-4 optional fields.
#[derive(Encode)]
struct AssignmentPrev {
    #[n(0)]
    agent_id: String,
    #[n(1)]
    workflow: String,
    #[n(2)]
    version: u64,
    #[n(3)]
    content_hash: String,
    #[n(4)]
    epoch: u64,
    #[n(5)]
    issued_ms: i64,
    #[n(6)]
    remove: bool,
}

#[test]
fn missing_optional_fields_decode_as_none() {
    let prev = AssignmentPrev {
        agent_id: "agent-1".into(),
        workflow: "etl".into(),
        version: 3,
        content_hash: "h".into(),
        epoch: 7,
        issued_ms: 1,
        remove: false,
    };
    let a: Assignment = minicbor::decode(&minicbor::to_vec(&prev).unwrap()).unwrap();
    assert_eq!(a.previous_version, None);
    assert_eq!(a.probation, None);
    assert_eq!(a.rollout_id, None);
    assert_eq!((a.version, a.epoch), (3, 7));
}

#[derive(Encode)]
struct ActiveWorkflowMissingRequired {
    #[n(0)]
    workflow: String,
    #[n(1)]
    version: u64,
}

#[test]
fn a_missing_required_field_is_an_error_not_a_default() {
    let bytes = minicbor::to_vec(ActiveWorkflowMissingRequired {
        workflow: "etl".into(),
        version: 3,
    })
    .unwrap();
    assert!(minicbor::decode::<ActiveWorkflow>(&bytes).is_err());
}

#[test]
fn unknown_top_level_variants_are_none_but_unknown_nested_variants_are_errors() {
    // HubMsg variant 17 with some fields: a newer hub's message.
    assert_eq!(decode_hub_msg(&[0x82, 0x11, 0x81, 0x01]).unwrap(), None);
    // A signed command body carrying an unknown command variant 9: cannot be read safely.
    let mut body = minicbor::to_vec(CommandBody {
        agent_id: "a".into(),
        session: vec![],
        id: 1,
        issued_ms: 0,
        expires_ms: 0,
        command: Command::Pause {
            workflow: "w".into(),
        },
    })
    .unwrap();
    // The command is the last field: [1, ["w"]] -> [9, ["w"]].
    let at = body.len() - 4;
    assert_eq!(body[at], 0x01);
    body[at] = 0x09;
    assert!(minicbor::decode::<CommandBody>(&body).is_err());
}

/// `HubMsg` as a release before replica addresses defined it (its Welcome only).
#[derive(Debug, Encode, Decode)]
enum HubMsgPrev {
    #[n(0)]
    Welcome {
        #[n(0)]
        ack: Statement,
        #[n(1)]
        roots: Vec<SignedRoot>,
        #[n(2)]
        paused: Vec<String>,
        #[n(3)]
        snapshot: Statement,
    },
}

/// `EnrollResponse` as a release before replica addresses defined it (its Ok only).
#[derive(Debug, Encode, Decode)]
enum EnrollResponsePrev {
    #[n(0)]
    Ok {
        #[n(0)]
        agent_id: String,
        #[n(1)]
        #[cbor(with = "minicbor::bytes")]
        cert_der: Vec<u8>,
        #[n(2)]
        #[cbor(with = "minicbor::bytes")]
        ca_der: Vec<u8>,
        #[n(3)]
        hub_name: String,
        #[n(4)]
        root: SignedRoot,
        #[n(5)]
        labels: Vec<(String, String)>,
        #[n(6)]
        name: Option<String>,
    },
}

fn replicas() -> Vec<String> {
    vec!["hub-a.example:7443".into(), "10.0.0.2:7443".into()]
}

#[test]
fn replica_addresses_older_agents_read_newer_hubs() {
    let welcome = HubMsg::Welcome {
        ack: statement(&ack(41)),
        roots: vec![root()],
        paused: vec!["backup".into()],
        snapshot: statement(&snapshot()),
        replicas: Some(replicas()),
    };
    let old: HubMsgPrev = minicbor::decode(&minicbor::to_vec(&welcome).unwrap()).unwrap();
    let HubMsgPrev::Welcome {
        ack: a,
        roots,
        paused,
        snapshot: s,
    } = old;
    assert_eq!(a, statement(&ack(41)));
    assert_eq!(roots, vec![root()]);
    assert_eq!(paused, vec!["backup".to_string()]);
    assert_eq!(s, statement(&snapshot()));

    let ok = EnrollResponse::Ok {
        agent_id: "agent-1".into(),
        cert_der: vec![1],
        ca_der: vec![2],
        hub_name: "outpost-hub".into(),
        root: root(),
        labels: vec![],
        name: None,
        replicas: Some(replicas()),
    };
    let old: EnrollResponsePrev = minicbor::decode(&minicbor::to_vec(&ok).unwrap()).unwrap();
    let EnrollResponsePrev::Ok {
        agent_id,
        hub_name,
        name,
        ..
    } = old;
    assert_eq!(
        (agent_id.as_str(), hub_name.as_str(), name),
        ("agent-1", "outpost-hub", None)
    );
}

#[test]
fn replica_addresses_newer_agents_read_older_hubs_as_none() {
    let old = HubMsgPrev::Welcome {
        ack: statement(&ack(41)),
        roots: vec![],
        paused: vec![],
        snapshot: statement(&snapshot()),
    };
    let bytes = minicbor::to_vec(&old).unwrap();
    let Some(HubMsg::Welcome {
        ack: a, replicas, ..
    }) = decode_hub_msg(&bytes).unwrap()
    else {
        panic!("not a Welcome")
    };
    assert_eq!(a, statement(&ack(41)));
    assert_eq!(replicas, None);

    let old = EnrollResponsePrev::Ok {
        agent_id: "agent-1".into(),
        cert_der: vec![1],
        ca_der: vec![2],
        hub_name: "outpost-hub".into(),
        root: root(),
        labels: vec![],
        name: Some("edge-7".into()),
    };
    let bytes = minicbor::to_vec(&old).unwrap();
    let Some(EnrollResponse::Ok { name, replicas, .. }) = decode_enroll_response(&bytes).unwrap()
    else {
        panic!("not an Ok")
    };
    assert_eq!((name.as_deref(), replicas), (Some("edge-7"), None));
    // A hub without replicas configured sends exactly what an older hub sent.
    let none = EnrollResponse::Ok {
        agent_id: "agent-1".into(),
        cert_der: vec![1],
        ca_der: vec![2],
        hub_name: "outpost-hub".into(),
        root: root(),
        labels: vec![],
        name: Some("edge-7".into()),
        replicas: None,
    };
    assert_eq!(minicbor::to_vec(&none).unwrap(), bytes);
}
