//! `agent ...`: list, show, revoke, label, rename, decommission. Every agent argument is an id or
//! a name.

use std::process::ExitCode;

use clap::Subcommand;

use super::args::parse_kv;
use super::output::{
    CliError, CliResult, Output, fmt_labels, or_dash, out, print_json, print_json_rows, table,
    watch as watch_loop, watch_interval,
};
use crate::client::{Client, seg};
use crate::views::{
    AgentDetail, AgentView, DecommissionResponse, LabelRequest, RenameRequest, RenameResponse,
    RevokeResponse,
};

/// `agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// List agents.
    List {
        /// Redraw every SECS seconds (default 2) until Ctrl-C; with `--output json`, one JSON
        /// document a line per refresh.
        #[arg(short = 'w', long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// Show one agent.
    Show {
        /// Agent id or name.
        id: String,
    },
    /// Revoke an agent: its session is closed and it is refused from then on.
    Revoke {
        /// Agent id or name.
        id: String,
    },
    /// Change an agent's labels: `k=v` adds or replaces, `k-` removes (pool membership
    /// follows at once).
    Label {
        /// Agent id or name.
        id: String,
        /// `k=v` or `k-`, one or more.
        #[arg(required = true, num_args = 1.., value_name = "K=V|K-")]
        labels: Vec<String>,
    },
    /// Give an agent a new unique name (its id, in its certificate, never changes).
    Rename {
        /// Agent id or current name.
        id: String,
        /// The new name: 1 to 63 of A-Z a-z 0-9 . _ -, not starting with `agent-`.
        name: String,
    },
    /// Decommission an agent: revoked for good, its assignments removed, dropped from pools and
    /// metrics, its name freed; its run history stays.
    Decommission {
        /// Agent id or name.
        id: String,
    },
}

/// `agent ...`
pub(super) fn handle(c: &Client, output: Output, cmd: AgentCmd) -> CliResult {
    match cmd {
        AgentCmd::List { watch } => match watch {
            Some(secs) => {
                return watch_loop(watch_interval(secs)?, || list(c, output, true), output);
            }
            None => list(c, output, false)?,
        },
        AgentCmd::Show { id } => {
            let a: AgentDetail = c.get(&format!("/v1/agents/{}", seg(&id)), &[])?;
            if output == Output::Json {
                print_json(&a)?;
            } else {
                let row = agent_row(&a.agent);
                println!("agent:        {}", a.agent.id);
                if let Some(n) = &a.agent.name {
                    println!("name:         {n}");
                }
                if let Some(d) = &a.agent.decommissioned {
                    println!("decommissioned: {d}");
                }
                println!("labels:       {}", row[2]);
                println!("status:       {} since {}", row[3], row[4]);
                println!("software:     {}", row[5]);
                println!("hostname:     {}", a.hostname);
                println!("enrolled:     {}", a.enrolled);
                println!(
                    "certificate:  serial {} sha256 {}",
                    a.cert_serial, a.cert_fingerprint
                );
                if let Some(exp) = &a.cert_expires {
                    println!("cert expires: {exp}");
                }
                if !a.pinned_roots.is_empty() {
                    println!("pinned roots: {}", a.pinned_roots.join(" "));
                }
                if let Some(w) = &a.cert_warning {
                    println!("WARNING:      {w}");
                }
                println!("status seq:   {}", a.committed_seq);
                if let (Some(o), Some(at)) = (a.clock_offset_ms, &a.clock_measured) {
                    println!("clock offset: {o} ms (agent minus hub, measured {at})");
                }
                println!("active:       {}", row[5]);
                if !a.deploys.is_empty() {
                    let t: Vec<Vec<String>> = a
                        .deploys
                        .iter()
                        .map(|d| {
                            vec![
                                d.workflow.clone(),
                                d.version.to_string(),
                                d.epoch.to_string(),
                                if d.accepted {
                                    "accepted".into()
                                } else {
                                    format!("rejected: {}", d.reason.clone().unwrap_or_default())
                                },
                                d.at.clone(),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        table(&["WORKFLOW", "VERSION", "EPOCH", "DEPLOY", "AT"], &t)
                    );
                }
            }
        }
        AgentCmd::Label { id, labels } => return label(c, output, &id, &labels),
        AgentCmd::Rename { id, name } => return rename(c, output, &id, &name),
        AgentCmd::Decommission { id } => return decommission(c, output, &id),
        AgentCmd::Revoke { id } => {
            let r: RevokeResponse = c.post(
                &format!("/v1/agents/{}/revoke", seg(&id)),
                &serde_json::json!({}),
            )?;
            if output == Output::Json {
                print_json(&r)?;
            } else if r.revoked {
                println!("{id}: revoked");
            } else {
                println!("{id}: already revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent list` (once; `watching`: compact JSON, one document a line).
fn list(c: &Client, output: Output, watching: bool) -> Result<(), CliError> {
    let rows: Vec<AgentView> = c.get("/v1/agents", &[])?;
    if output == Output::Json {
        return print_json_rows(&rows, watching);
    }
    let t: Vec<Vec<String>> = rows.iter().map(agent_row).collect();
    out(&table(
        &[
            "ID", "NAME", "LABELS", "STATUS", "SINCE", "VERSION", "ACTIVE",
        ],
        &t,
    ))
}

fn agent_row(a: &AgentView) -> Vec<String> {
    let status = if a.decommissioned.is_some() {
        "decommissioned"
    } else if a.revoked.is_some() {
        "revoked"
    } else if a.online {
        "online"
    } else {
        "offline"
    };
    vec![
        a.id.clone(),
        or_dash(a.name.clone().unwrap_or_default()),
        or_dash(fmt_labels(&a.labels)),
        status.into(),
        a.since.clone().unwrap_or_else(|| "never".into()),
        or_dash(a.software_version.clone()),
        or_dash(
            a.active
                .iter()
                .map(|w| format!("{}@v{}", w.workflow, w.version))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
}

/// Labels to set and keys to remove.
type LabelEdits = (Vec<(String, String)>, Vec<String>);

/// Parse `agent label` arguments: `k=v` (set) and `k-` (remove).
fn parse_label_edits(args: &[String]) -> Result<LabelEdits, String> {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for a in args {
        if let Some(k) = a.strip_suffix('-')
            && !a.contains('=')
        {
            if k.trim().is_empty() {
                return Err(format!("expected key=value or key-, got {a:?}"));
            }
            remove.push(k.trim().to_string());
        } else {
            set.push(parse_kv(a)?);
        }
    }
    Ok((set, remove))
}

/// `agent label ID k=v k- ...`
fn label(c: &Client, output: Output, id: &str, args: &[String]) -> CliResult {
    let (set, remove) = parse_label_edits(args).map_err(CliError::Usage)?;
    let v: serde_json::Value = c.post(
        &format!("/v1/agents/{}/labels", seg(id)),
        &LabelRequest {
            set: set.into_iter().collect(),
            remove,
        },
    )?;
    if output == Output::Json {
        print_json(&v)?;
    } else {
        let labels = v
            .get("labels")
            .and_then(|l| l.as_object())
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        println!("{id}: labels {}", or_dash(labels));
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent rename ID|NAME NEW`
fn rename(c: &Client, output: Output, id: &str, name: &str) -> CliResult {
    let r: RenameResponse = c.post(
        &format!("/v1/agents/{}/rename", seg(id)),
        &RenameRequest { name: name.into() },
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else {
        println!(
            "{}: renamed {} -> {}",
            r.id,
            r.old_name.as_deref().unwrap_or("(unnamed)"),
            r.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agent decommission ID|NAME`
fn decommission(c: &Client, output: Output, id: &str) -> CliResult {
    let r: DecommissionResponse = c.post(
        &format!("/v1/agents/{}/decommission", seg(id)),
        &serde_json::json!({}),
    )?;
    if output == Output::Json {
        print_json(&r)?;
    } else if r.decommissioned {
        println!(
            "{}: decommissioned ({} assignment(s) removed{}); its run history stays",
            r.id,
            r.assignments_removed,
            r.freed_name
                .as_deref()
                .map(|n| format!(", name {n} freed"))
                .unwrap_or_default()
        );
    } else {
        println!("{}: already decommissioned", r.id);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_edits() {
        let (set, rm) = parse_label_edits(&["a=1".into(), "b-".into(), "c=x-".into()]).unwrap();
        assert_eq!(
            set,
            vec![("a".into(), "1".into()), ("c".into(), "x-".into())]
        );
        assert_eq!(rm, vec!["b".to_string()]);
        assert!(parse_label_edits(&["-".into()]).is_err());
        assert!(parse_label_edits(&["nope".into()]).is_err());
    }
}
