//! The audit log, newest first, 100 entries a page (a cursor on the entries' sequence numbers,
//! so a page costs the same on any size of log), and on request the verdict of walking its
//! whole hash chain ([`crate::hub::Hub::verify_audit`], which reads every entry).

use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, badge};
use super::{ConsoleState, Ctx, UiResult, blocking, time};
use crate::store::{AuditEntry, AuditVerdict};

/// Entries per page.
const PAGE: u64 = 100;

pub(super) fn routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/ui/audit", get(audit))
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    /// Show the entries before this sequence number (the next page).
    before: Option<u64>,
    /// Walk the hash chain (`1`).
    verify: Option<String>,
}

/// The page's entries, newest first: the latest `PAGE`, or those before `before`.
fn page_of(hub: &crate::hub::Hub, before: Option<u64>) -> crate::ops::OpResult<Vec<AuditEntry>> {
    let mut entries = match before {
        None => hub.audit_log(PAGE as usize)?,
        Some(b) => {
            let from = b.saturating_sub(PAGE).max(1);
            let n = b.saturating_sub(from);
            if n == 0 {
                Vec::new()
            } else {
                hub.audit_range(from, n as usize)?
                    .into_iter()
                    .filter(|e| e.seq < b)
                    .collect()
            }
        }
    };
    entries.reverse();
    Ok(entries)
}

async fn audit(ctx: Ctx, Query(q): Query<AuditQuery>) -> UiResult<Markup> {
    let hub = ctx.hub.clone();
    let before = q.before;
    let verify = q
        .verify
        .as_deref()
        .is_some_and(|v| !v.is_empty() && v != "0");
    let (entries, verdict) = blocking(move || {
        let entries = page_of(&hub, before)?;
        let verdict = if verify {
            Some(hub.verify_audit()?)
        } else {
            None
        };
        Ok::<(Vec<AuditEntry>, Option<AuditVerdict>), crate::ops::OpError>((entries, verdict))
    })
    .await?;
    let oldest = entries.last().map(|e| e.seq);
    let newest = entries.first().map(|e| e.seq);
    let verify_href = match before {
        Some(b) => format!("/ui/audit?before={b}&verify=1"),
        None => "/ui/audit?verify=1".to_string(),
    };
    let body = html! {
        div id="audit-verify-result" {
            @match &verdict {
                None => {
                    p {
                        a href=(verify_href) id="audit-verify" { (ctx.tr("Verify the hash chain", "校验哈希链")) }
                        " " span class="hint" { (ctx.tr("(reads the whole log; may take a while on a large one)", "(读取整个日志;日志很大时可能较慢)")) }
                    }
                },
                Some(v) => {
                    @match &v.broken {
                        None => {
                            p id="audit-verdict" data-ok="true" role="status" {
                                (badge("ok", ctx.tr("intact", "完整"))) " "
                                (v.entries) " " (ctx.tr("entries verified; head", "条记录已校验;链头"))
                                " " code { (hex::encode(v.head)) }
                            }
                        },
                        Some(b) => {
                            p id="audit-verdict" data-ok="false" role="alert" class="error" {
                                (badge("failed", ctx.tr("broken", "已损坏"))) " "
                                (ctx.tr("the chain breaks at entry", "哈希链断于记录")) " " (b.seq) ": " (b.reason)
                            }
                        },
                    }
                },
            }
        }
        div id="audit-table" data-live-region class="scroll" {
            p class="muted" {
                @match (newest, oldest) {
                    (Some(n), Some(o)) => { (ctx.tr("Entries", "记录")) " " (n) " – " (o) ", " (ctx.tr("newest first", "最新在前")) },
                    _ => { (ctx.tr("No entries.", "没有记录。")) },
                }
            }
            table id="audit" {
                thead { tr {
                    th scope="col" class="num" { "#" }
                    th scope="col" { (ctx.tr("When", "时间")) }
                    th scope="col" { (ctx.tr("Actor", "操作者")) }
                    th scope="col" { (ctx.tr("Action", "操作")) }
                    th scope="col" { (ctx.tr("Target", "对象")) }
                    th scope="col" { (ctx.tr("Detail", "详情")) }
                } }
                tbody {
                    @for e in &entries {
                        tr data-seq=(e.seq) data-action=(e.action) {
                            td class="num" { (e.seq) }
                            td { (time(e.at_ms)) }
                            td { (e.actor) }
                            td class="mono" { (e.action) }
                            td class="mono" { (e.target) }
                            td { (e.detail) }
                        }
                    }
                }
            }
            nav class="pager" aria-label=(ctx.tr("Pages", "分页")) {
                @if before.is_some() {
                    a href="/ui/audit" rel="first" { (ctx.tr("↑ Newest", "↑ 最新")) } " "
                }
                @if let Some(o) = oldest.filter(|o| *o > 1) {
                    a href={"/ui/audit?before=" (o)} rel="next" id="audit-older" { (ctx.tr("Older →", "更早 →")) }
                }
            }
        }
    };
    // Only the first page follows new entries; an older page stays put.
    let live = if before.is_none() { "audit" } else { "" };
    Ok(layout::page(
        &ctx,
        Nav::Audit,
        ctx.tr("Audit log", "审计日志"),
        live,
        body,
    ))
}
