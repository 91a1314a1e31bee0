//! `outpost-agent enroll`, unattended: the token from `--token`, `$OUTPOST_ENROLL_TOKEN` or
//! `--token-file`; idempotent (enrolled with the same token: a no-op success); and with the
//! agent service running, the running daemon enrolls itself through its control socket and
//! starts its hub link at once (no restart).
//!
//! Exit codes: 0 enrolled, or already enrolled with this token; 1 the hub could not be reached
//! (retry later); 2 bad input (no token, a malformed one, bad labels, enrolled with another
//! token); 3 the hub refused (token invalid, used up or expired, name taken, labels not
//! allowed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::AgentConfig;
use crate::control::{self, Request, Response};
use crate::hub_link::{EnrollArgs, EnrollRefused, Enrolled, HubUnreachable};
use crate::store::Store;

/// The hub could not be reached.
pub const EXIT_UNREACHABLE: u8 = 1;
/// Bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// The hub refused.
pub const EXIT_REFUSED: u8 = 3;

/// What the daemon prefixes to an error of an enrollment it could not reach the hub for.
const UNREACHABLE_PREFIX: &str = "hub unreachable: ";

/// The `enroll` command line.
#[derive(Debug)]
pub struct EnrollCli {
    pub hub: String,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub name: Option<String>,
    pub labels: String,
    pub hub_name: Option<String>,
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// How an enrollment failed, for the exit code.
enum Failure {
    Unreachable(String),
    BadInput(String),
    Refused(String),
}

impl Failure {
    fn of(e: anyhow::Error) -> Failure {
        if let Some(r) = e.downcast_ref::<EnrollRefused>() {
            return Failure::Refused(r.to_string());
        }
        if e.downcast_ref::<HubUnreachable>().is_some() {
            return Failure::Unreachable(format!("{e:#}"));
        }
        Failure::BadInput(format!("{e:#}"))
    }
}

/// Run `enroll`: print what happened, exit with its code.
pub fn run(a: EnrollCli) -> anyhow::Result<ExitCode> {
    let (code, message) = match enroll(a) {
        Ok(msg) => {
            println!("{msg}");
            return Ok(ExitCode::SUCCESS);
        }
        Err(Failure::Unreachable(m)) => (EXIT_UNREACHABLE, m),
        Err(Failure::BadInput(m)) => (EXIT_BAD_INPUT, m),
        Err(Failure::Refused(m)) => (EXIT_REFUSED, m),
    };
    eprintln!("error: {message}");
    Ok(ExitCode::from(code))
}

/// The token: `--token-file` first, then `--token` / `$OUTPOST_ENROLL_TOKEN`.
fn token(a: &EnrollCli) -> Result<String, String> {
    if let Some(f) = &a.token_file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| format!("reading the token file {}: {e}", f.display()))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(format!("the token file {} is empty", f.display()));
        }
        return Ok(t.to_string());
    }
    match a.token.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(
            "no bootstrap token: pass --token-file FILE or --token TOKEN, or set \
                  OUTPOST_ENROLL_TOKEN"
                .into(),
        ),
    }
}

fn summary(e: &Enrolled) -> String {
    let id = &e.identity;
    let labels: Vec<String> = id.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let name = id
        .name
        .as_deref()
        .map(|n| format!(" named {n}"))
        .unwrap_or_default();
    if e.already {
        format!(
            "already enrolled as {}{name} with hub {} (same token): nothing to do",
            id.agent_id, id.hub_address
        )
    } else {
        let replicas = match id.replicas.as_deref() {
            Some(r) if !r.is_empty() => format!("; hub replicas: {}", r.join(", ")),
            _ => String::new(),
        };
        format!(
            "enrolled as {}{name} with hub {} (labels: {}){replicas}",
            id.agent_id,
            id.hub_address,
            labels.join(",")
        )
    }
}

fn enroll(a: EnrollCli) -> Result<String, Failure> {
    let token = token(&a).map_err(Failure::BadInput)?;
    let labels = crate::cli::parse_labels(&a.labels).map_err(Failure::BadInput)?;
    let (dir, socket) = match (&a.state_dir, &a.config) {
        (Some(d), _) => (d.clone(), d.join("agent.sock")),
        (None, Some(c)) => {
            let cfg = AgentConfig::load(c).map_err(|e| Failure::BadInput(format!("{e:#}")))?;
            (cfg.state_dir, cfg.socket)
        }
        (None, None) => {
            let d = crate::config::default_state_dir();
            let s = d.join("agent.sock");
            (d, s)
        }
    };
    let args = EnrollArgs {
        hub: a.hub,
        hub_name: a.hub_name,
        token,
        labels,
        name: a.name,
    };
    // The service runs on this state directory: it enrolls itself (it holds the store).
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return through_daemon(&socket, args);
    }
    crate::app::enroll_leaving_nothing_on_failure(&dir, |store| {
        crate::app::runtime()?.block_on(crate::hub_link::enroll(store, &args))
    })
    .map(|e| summary(&e))
    .map_err(Failure::of)
}

fn through_daemon(socket: &Path, args: EnrollArgs) -> Result<String, Failure> {
    let req = Request::Enroll {
        hub: args.hub,
        token: args.token,
        labels: args.labels,
        hub_name: args.hub_name,
        name: args.name,
    };
    match control::call(socket, &req) {
        Ok(Response::Ok { message }) => Ok(message),
        Ok(Response::Error { message }) => {
            Err(if let Some(m) = message.strip_prefix(UNREACHABLE_PREFIX) {
                Failure::Unreachable(m.to_string())
            } else if message.starts_with("the hub refused enrollment") {
                Failure::Refused(message)
            } else {
                Failure::BadInput(message)
            })
        }
        Ok(other) => Err(Failure::BadInput(format!(
            "unexpected answer from the agent: {other:?}"
        ))),
        Err(e) => Err(Failure::Unreachable(format!(
            "asking the running agent to enroll: {e}"
        ))),
    }
}

/// The daemon's answer to an enroll request: enroll with its store (or say it is enrolled
/// already). `Ok` carries the identity when this request enrolled it.
pub(crate) async fn answer(
    store: &Arc<Store>,
    req: Request,
) -> (Response, Option<crate::identity::Identity>) {
    let Request::Enroll {
        hub,
        token,
        labels,
        hub_name,
        name,
    } = req
    else {
        return (
            Response::Error {
                message: "this agent is not enrolled yet: waiting for `outpost-agent enroll`"
                    .into(),
            },
            None,
        );
    };
    let args = EnrollArgs {
        hub,
        hub_name,
        token,
        labels,
        name,
    };
    match crate::hub_link::enroll(store, &args).await {
        Ok(e) => {
            let fresh = (!e.already).then(|| e.identity.clone());
            (
                Response::Ok {
                    message: summary(&e),
                },
                fresh,
            )
        }
        Err(e) => {
            let message = match Failure::of(e) {
                Failure::Unreachable(m) => format!("{UNREACHABLE_PREFIX}{m}"),
                Failure::Refused(m) | Failure::BadInput(m) => m,
            };
            (Response::Error { message }, None)
        }
    }
}

/// The answer of an enrolled daemon to an enroll request: the same token is a no-op success.
pub(crate) fn answer_enrolled(store: &Store, req: &Request) -> Response {
    let Request::Enroll { token, .. } = req else {
        return Response::Error {
            message: "not an enroll request".into(),
        };
    };
    let r = crate::identity::load(store)
        .context("reading the agent's identity")
        .and_then(|id| {
            let id = id.context("this agent is not enrolled")?;
            crate::hub_link::already_enrolled(&id, token)
        });
    match r {
        Ok(e) => Response::Ok {
            message: summary(&e),
        },
        Err(e) => Response::Error {
            message: format!("{e:#}"),
        },
    }
}
