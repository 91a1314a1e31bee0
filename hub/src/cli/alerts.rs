//! `alert ...`: the notification history, silences, and the channels: `alert channels` lists
//! the channels of hub.toml (never a secret); `alert test CHANNEL` sends a test notification to
//! one now and prints the outcome (exit 1 when the receiver did not take it).

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{CliError, CliResult, EXIT_FAIL, Output, or_dash, print_json, table};
use crate::api::alerts::{AlertView, SilenceRequest, SilenceView};
use crate::channels::ChannelInfo;
use crate::client::{Client, seg};
use crate::ops::channels::ChannelTestView;

/// `alert ...`
#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// The notification history (newest first) and each one's deliveries per channel.
    List {
        /// firing, resolved or all.
        #[arg(long, default_value = "all")]
        state: String,
        /// Only this rule's notifications.
        #[arg(long)]
        rule: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Hold back notifications of what matches (every given matcher must match) for a while.
    Silence {
        /// A rule's name.
        #[arg(long)]
        rule: Option<String>,
        /// A workflow (or a glob with `*`).
        #[arg(long)]
        workflow: Option<String>,
        /// A pool.
        #[arg(long)]
        pool: Option<String>,
        /// An agent.
        #[arg(long)]
        agent: Option<String>,
        /// How long (`2h`, `30m`).
        #[arg(long = "for")]
        for_: String,
        /// Why (shown by `alert silences` and in the audit log).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// The silences in force.
    Silences,
    /// Remove a silence.
    Unsilence {
        /// Silence id (`s-1`).
        id: String,
    },
    /// List the alert channels (`[[channel]]` in hub.toml): name, kind, target.
    Channels,
    /// Send a test notification to a channel now and print the outcome (exit 1 on failure).
    Test {
        /// The channel's name.
        channel: String,
    },
}

/// `alert ...`
pub(super) fn handle(c: &Client, output: Output, cmd: AlertCmd) -> CliResult {
    match cmd {
        AlertCmd::Channels => return channels(c, output),
        AlertCmd::Test { channel } => return test(c, output, &channel),
        AlertCmd::List { state, rule, limit } => {
            if !matches!(state.as_str(), "firing" | "resolved" | "all") {
                return Err(CliError::Usage(format!(
                    "--state {state:?}: expected firing, resolved or all"
                )));
            }
            let mut q = vec![("state", state), ("limit", limit.to_string())];
            if let Some(r) = rule {
                q.push(("rule", r));
            }
            let rows: Vec<AlertView> = c.get("/v1/alerts", &q)?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|a| {
                        let n = &a.notification;
                        let s = |k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or("-");
                        vec![
                            a.created.clone(),
                            s("rule").to_string(),
                            s("status").to_string(),
                            s("summary").to_string(),
                            or_dash(
                                a.deliveries
                                    .iter()
                                    .map(|d| match &d.last_error {
                                        Some(e) if d.state != "delivered" => {
                                            format!("{}={} ({e})", d.channel, d.state)
                                        }
                                        _ => format!("{}={}", d.channel, d.state),
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["CREATED", "RULE", "STATE", "SUMMARY", "DELIVERIES"], &t)
                );
            }
        }
        AlertCmd::Silence {
            rule,
            workflow,
            pool,
            agent,
            for_,
            comment,
        } => {
            let s: SilenceView = c.post(
                "/v1/alerts/silences",
                &SilenceRequest {
                    rule,
                    workflow,
                    pool,
                    agent,
                    for_,
                    comment,
                },
            )?;
            if output == Output::Json {
                print_json(&s)?;
            } else {
                println!("silence {} ({}) until {}", s.id, s.matchers, s.expires);
            }
        }
        AlertCmd::Silences => {
            let rows: Vec<SilenceView> = c.get("/v1/alerts/silences", &[])?;
            if output == Output::Json {
                print_json(&rows)?;
            } else {
                let t: Vec<Vec<String>> = rows
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.clone(),
                            s.matchers.clone(),
                            s.expires.clone(),
                            s.created_by.clone(),
                            or_dash(s.comment.clone()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ID", "MATCHERS", "EXPIRES", "BY", "COMMENT"], &t)
                );
            }
        }
        AlertCmd::Unsilence { id } => {
            let s: SilenceView = c.delete(&format!("/v1/alerts/silences/{}", seg(&id)))?;
            if output == Output::Json {
                print_json(&s)?;
            } else {
                println!("silence {} ({}) removed", s.id, s.matchers);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn channels(c: &Client, output: Output) -> CliResult {
    let rows: Vec<ChannelInfo> = c.get("/v1/alerts/channels", &[])?;
    if output == Output::Json {
        print_json(&rows)?;
    } else {
        let t: Vec<Vec<String>> = rows
            .iter()
            .map(|r| vec![r.name.clone(), r.kind.clone(), r.target.clone()])
            .collect();
        print!("{}", table(&["NAME", "KIND", "TARGET"], &t));
    }
    Ok(ExitCode::SUCCESS)
}

fn test(c: &Client, output: Output, channel: &str) -> CliResult {
    let v: ChannelTestView = c.post(
        &format!("/v1/alerts/channels/{}/test", seg(channel)),
        &serde_json::json!({}),
    )?;
    if output == Output::Json {
        print_json(&v)?;
    } else if v.ok {
        println!(
            "sent a test notification to {} ({}): {}",
            v.channel, v.kind, v.message
        );
    } else {
        println!(
            "test notification to {} ({}) FAILED ({}): {}",
            v.channel,
            v.kind,
            if v.retryable {
                "retryable"
            } else {
                "permanent"
            },
            v.message
        );
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAIL)
    })
}
