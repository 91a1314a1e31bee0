//! `release ...`: a version becomes deployable only with a threshold of release signatures over
//! its exact header bytes. `export` (online) writes a release request file; `sign` (OFFLINE: no
//! hub access needed, the operator's own key) reads it, shows what is signed, and writes a
//! signature file; `submit` (online) uploads signature files; `approve` does the three at once
//! on a machine that has both the hub and the key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use minicbor::{Decode, Encode};
use outpost_common::proto::BundleHeader;
use outpost_common::trust::{Signature, content_hash, sign_release};

use super::conn::{ConnOpts, client};
use super::output::{CliError, CliResult, Output, print_json, table};
use crate::client::{Client, seg};
use crate::views::{PendingView, ReleaseSignRequest, ReleaseSignResponse, SignatureView};

/// `release ...`
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Versions waiting for release signatures (all, or one workflow's).
    Status { workflow: Option<String> },
    /// Write the release request of WORKFLOW's pending version (its exact header bytes and the
    /// workflow file) to FILE, for signing on another machine.
    Export {
        workflow: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a release request with a release key (works offline); writes FILE.sig-<key id>
    /// (or --out).
    Sign {
        request: PathBuf,
        /// The release key (PKCS#8 DER, from `outpost-hub key generate` or `init`).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Upload signature files to the hub; the version is deployable once the threshold signed.
    Submit {
        #[arg(required = true)]
        signatures: Vec<PathBuf>,
    },
    /// Export, sign with --key and submit in one step (needs the hub and the key).
    Approve {
        workflow: String,
        #[arg(long)]
        key: PathBuf,
    },
}

/// A release request file: what a release key signs, with the content it hashes.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ReleaseRequest {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    #[cbor(with = "minicbor::bytes")]
    pub header_bytes: Vec<u8>,
    #[n(3)]
    #[cbor(with = "minicbor::bytes")]
    pub content: Vec<u8>,
}

/// A signature file.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ReleaseSignatureFile {
    #[n(0)]
    pub workflow: String,
    #[n(1)]
    pub version: u64,
    #[n(2)]
    pub signature: Signature,
}

/// `release ...`
pub(super) fn handle(conn: &ConnOpts, cmd: ReleaseCmd) -> CliResult {
    let output = conn.output;
    match cmd {
        ReleaseCmd::Status { workflow } => status(&client(conn)?, output, workflow),
        ReleaseCmd::Export { workflow, out } => {
            let req = fetch_request(&client(conn)?, &workflow)?;
            write_new(&out, &minicbor::to_vec(&req).unwrap_or_default())?;
            if output == Output::Json {
                print_json(
                    &serde_json::json!({"workflow": workflow, "version": req.version, "file": out}),
                )?;
            } else {
                println!(
                    "{workflow} v{}: release request written to {}",
                    req.version,
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ReleaseCmd::Sign { request, key, out } => {
            let bytes = std::fs::read(&request)
                .map_err(|e| CliError::Fail(format!("{}: {e}", request.display())))?;
            let req: ReleaseRequest = minicbor::decode(&bytes).map_err(|e| {
                CliError::Fail(format!("{}: not a release request: {e}", request.display()))
            })?;
            let header = check_request(&req)?;
            let key = load_key(&key)?;
            let file = ReleaseSignatureFile {
                workflow: req.workflow.clone(),
                version: req.version,
                signature: sign_release(&key, &req.header_bytes),
            };
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("{}.sig-{}", request.display(), key.key_id()))
            });
            write_new(&out, &minicbor::to_vec(&file).unwrap_or_default())?;
            if output == Output::Json {
                print_json(&serde_json::json!({
                    "workflow": req.workflow, "version": req.version,
                    "content_hash": header.content_hash, "key_id": key.key_id(), "file": out,
                }))?;
            } else {
                println!(
                    "signed {} v{} (content blake3 {}, {} bytes, target {}) with release key {}",
                    req.workflow,
                    req.version,
                    header.content_hash,
                    req.content.len(),
                    super::output::fmt_labels(&header.target.iter().cloned().collect()),
                    key.key_id()
                );
                println!("signature written to {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ReleaseCmd::Submit { signatures } => {
            let c = client(conn)?;
            let mut last = None;
            for path in signatures {
                let bytes = std::fs::read(&path)
                    .map_err(|e| CliError::Fail(format!("{}: {e}", path.display())))?;
                let f: ReleaseSignatureFile = minicbor::decode(&bytes).map_err(|e| {
                    CliError::Fail(format!("{}: not a signature file: {e}", path.display()))
                })?;
                last = Some(submit(&c, &f.workflow, f.version, vec![f.signature])?);
            }
            report(output, last)
        }
        ReleaseCmd::Approve { workflow, key } => {
            let c = client(conn)?;
            let req = fetch_request(&c, &workflow)?;
            check_request(&req)?;
            let key = load_key(&key)?;
            let sig = sign_release(&key, &req.header_bytes);
            let r = submit(&c, &workflow, req.version, vec![sig])?;
            report(output, Some(r))
        }
    }
}

fn load_key(path: &Path) -> Result<outpost_common::trust::SigningKey, CliError> {
    crate::init::load_signing_key(path).map_err(|e| CliError::Fail(format!("{e:#}")))
}

/// A new file (an existing one is refused), mode 0600.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    outpost_net::pki::create_private_file(path, bytes)
        .map_err(|e| CliError::Fail(format!("{}: {e}", path.display())))
}

/// The header of a request, checked against its content (what the signer sees is what is
/// signed).
fn check_request(req: &ReleaseRequest) -> Result<BundleHeader, CliError> {
    let header: BundleHeader = minicbor::decode(&req.header_bytes)
        .map_err(|e| CliError::Fail(format!("the request's header does not decode: {e}")))?;
    if header.workflow != req.workflow
        || header.version != req.version
        || header.content_hash != content_hash(&req.content)
    {
        return Err(CliError::Fail(
            "the request's header does not match its workflow, version or content: not signing"
                .into(),
        ));
    }
    Ok(header)
}

fn fetch_request(c: &Client, workflow: &str) -> Result<ReleaseRequest, CliError> {
    let p: PendingView = c.get(&format!("/v1/releases/{}", seg(workflow)), &[])?;
    let header_bytes = hex::decode(p.header_hex.unwrap_or_default())
        .map_err(|_| CliError::Fail("the hub sent a header that is not hex".into()))?;
    Ok(ReleaseRequest {
        workflow: p.workflow,
        version: p.version,
        header_bytes,
        content: p.content.unwrap_or_default().into_bytes(),
    })
}

fn submit(
    c: &Client,
    workflow: &str,
    version: u64,
    sigs: Vec<Signature>,
) -> Result<ReleaseSignResponse, CliError> {
    Ok(c.post(
        &format!("/v1/releases/{}/signatures", seg(workflow)),
        &ReleaseSignRequest {
            version,
            signatures: sigs
                .into_iter()
                .map(|s| SignatureView {
                    key_id: s.key_id,
                    sig: hex::encode(s.sig),
                })
                .collect(),
        },
    )?)
}

fn report(output: Output, r: Option<ReleaseSignResponse>) -> CliResult {
    let Some(r) = r else {
        return Ok(ExitCode::SUCCESS);
    };
    if output == Output::Json {
        print_json(&r)?;
    } else if r.released {
        println!(
            "{} v{}: released ({} of {} release signatures); agents get it now",
            r.workflow,
            r.version,
            r.signed_by.len(),
            r.needed
        );
    } else {
        println!(
            "{} v{}: {} of {} release signatures ({}); waiting for more",
            r.workflow,
            r.version,
            r.signed_by.len(),
            r.needed,
            r.signed_by.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(c: &Client, output: Output, workflow: Option<String>) -> CliResult {
    let rows: Vec<PendingView> = c.get("/v1/releases", &[])?;
    let rows: Vec<PendingView> = rows
        .into_iter()
        .filter(|p| workflow.as_ref().is_none_or(|w| *w == p.workflow))
        .collect();
    if output == Output::Json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|p| {
            vec![
                p.workflow.clone(),
                p.version.to_string(),
                format!("{}/{}", p.signed_by.len(), p.needed),
                if p.signed_by.is_empty() {
                    "-".into()
                } else {
                    p.signed_by.join(",")
                },
                p.applied_by.clone(),
                p.applied.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "WORKFLOW",
                "VERSION",
                "SIGNED",
                "BY",
                "APPLIED BY",
                "APPLIED"
            ],
            &body
        )
    );
    Ok(ExitCode::SUCCESS)
}
