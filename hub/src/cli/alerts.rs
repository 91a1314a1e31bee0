//! `alert ...`: the hub's alerts. `alert channels` lists the channels of hub.toml (never a
//! secret); `alert test CHANNEL` sends a test notification to one now and prints the outcome
//! (exit 1 when the receiver did not take it).

use std::process::ExitCode;

use clap::Subcommand;

use super::output::{CliResult, EXIT_FAIL, Output, print_json, table};
use crate::channels::ChannelInfo;
use crate::client::{Client, seg};
use crate::ops::channels::ChannelTestView;

/// `alert ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AlertCmd {
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
        AlertCmd::Channels => channels(c, output),
        AlertCmd::Test { channel } => test(c, output, &channel),
    }
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
