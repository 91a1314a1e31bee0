//! A run's timeline (Gantt) as inline SVG: one row per task, one bar per attempt at its own
//! time on a shared axis (a task's retries side by side on its row), a running attempt reaching
//! "now". The geometry is computed here ([`layout`], tested on its own); the SVG is drawn with
//! maud, so every task id, state and reason is escaped. Colours are SVG presentation attributes
//! (the CSP allows no `style=`); each bar also says its state in its `<title>`.

use maud::{Markup, html};
use outpost_common::record::{AttemptOutcome, AttemptRecord, RunRecord, TaskInstanceRecord};

use super::i18n::Lang;

/// The drawing's width (viewBox units; the SVG scales to its container).
pub(crate) const WIDTH: f64 = 960.0;
/// The task names' column.
pub(crate) const LABEL_W: f64 = 180.0;
/// Right margin (the last tick's label).
const PAD_R: f64 = 24.0;
/// One task's row.
pub(crate) const ROW_H: f64 = 26.0;
/// A bar's height.
const BAR_H: f64 = 16.0;
/// The time axis above the rows.
pub(crate) const AXIS_H: f64 = 26.0;
/// The narrowest bar drawn (an attempt of a few milliseconds stays visible).
pub(crate) const MIN_BAR_W: f64 = 3.0;
/// The gap kept between a task's consecutive attempts.
const GAP: f64 = 1.0;

/// The plotting area's width.
pub(crate) const PLOT_W: f64 = WIDTH - LABEL_W - PAD_R;

/// One attempt's bar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) task: String,
    pub(crate) attempt: u32,
    /// `running`, `dispatched`, `succeeded`, `failed`, `timed_out`, `cancelled`,
    /// `interrupted`.
    pub(crate) state: &'static str,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    /// Still running: its end is "now".
    pub(crate) running: bool,
    pub(crate) reason: Option<String>,
    pub(crate) x: f64,
    pub(crate) w: f64,
    pub(crate) y: f64,
}

/// One task's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) task: String,
    /// The task's state (as the API shows it).
    pub(crate) state: &'static str,
    /// The row's top.
    pub(crate) y: f64,
    /// Whether it has no attempt (pending, skipped, upstream failed...).
    pub(crate) empty: bool,
}

/// A tick of the time axis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    pub(crate) x: f64,
    /// Time since the timeline's start (`0`, `30 s`, `2 min`...).
    pub(crate) label: String,
}

/// The timeline's geometry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gantt {
    /// The axis' start and end (ms since the epoch).
    pub(crate) t0: i64,
    pub(crate) t1: i64,
    pub(crate) height: f64,
    pub(crate) rows: Vec<Row>,
    /// By row, then attempt.
    pub(crate) bars: Vec<Bar>,
    pub(crate) ticks: Vec<Tick>,
    /// "Now" on the axis, while the run is not over.
    pub(crate) now_x: Option<f64>,
}

/// The state an attempt's bar shows.
pub(crate) fn attempt_state(a: &AttemptRecord) -> &'static str {
    match &a.outcome {
        None if a.dispatched_ms.is_some() => "dispatched",
        None => "running",
        Some(o) if o.is_success() => "succeeded",
        Some(AttemptOutcome::TimedOut) => "timed_out",
        Some(AttemptOutcome::Cancelled) => "cancelled",
        Some(AttemptOutcome::Interrupted) => "interrupted",
        Some(_) => "failed",
    }
}

/// An attempt's outcome for people (`exit 0`, `signal 9`, ...).
pub(crate) fn outcome_text(a: &AttemptRecord) -> String {
    match &a.outcome {
        None => String::new(),
        Some(AttemptOutcome::Exited(c)) => format!("exit {c}"),
        Some(AttemptOutcome::Signaled(s)) => format!("signal {s}"),
        Some(AttemptOutcome::TimedOut) => "timed out".into(),
        Some(AttemptOutcome::Cancelled) => "cancelled".into(),
        Some(AttemptOutcome::Interrupted) => "interrupted".into(),
        Some(AttemptOutcome::SpawnFailed(e)) => format!("not started: {e}"),
    }
}

/// A duration for people: `850 ms`, `42 s`, `2 min 5 s`, `1 h 20 min`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ if s % 3600 == 0 => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Axis steps to choose from (ms).
const STEPS: [i64; 20] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
];

/// Lay out the timeline of `run` with its `tasks` at `now_ms`.
pub(crate) fn layout(run: &RunRecord, tasks: &[TaskInstanceRecord], now_ms: i64) -> Gantt {
    let running = !run.state.is_terminal();
    // Where an unfinished attempt ends: now while the run goes on, else the run's end.
    let open_end = if running {
        now_ms
    } else {
        run.ended_ms.unwrap_or(now_ms)
    };
    let first = |t: &TaskInstanceRecord| t.attempts.iter().map(|a| a.started_ms).min();
    let mut order: Vec<&TaskInstanceRecord> = tasks.iter().collect();
    order.sort_by(|a, b| match (first(a), first(b)) {
        (Some(x), Some(y)) => (x, &a.task_id).cmp(&(y, &b.task_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.task_id.cmp(&b.task_id),
    });
    let spans: Vec<(i64, i64, bool)> = order
        .iter()
        .flat_map(|t| t.attempts.iter())
        .map(|a| {
            let open = a.ended_ms.is_none() && a.outcome.is_none();
            let end = a.ended_ms.unwrap_or(open_end).max(a.started_ms);
            (a.started_ms, end, open && running)
        })
        .collect();
    let t0 = spans
        .iter()
        .map(|s| s.0)
        .chain(run.started_ms)
        .min()
        .unwrap_or(run.created_ms);
    let mut t1 = spans
        .iter()
        .map(|s| s.1)
        .chain(run.ended_ms)
        .max()
        .unwrap_or(t0);
    if running {
        t1 = t1.max(now_ms);
    }
    // At least a second on the axis (an instant run still has a drawable scale).
    let t1 = t1.max(t0 + 1000);
    let scale = PLOT_W / (t1 - t0) as f64;
    let x_of = |t: i64| LABEL_W + (t - t0) as f64 * scale;

    let mut rows = Vec::new();
    let mut bars = Vec::new();
    for (i, t) in order.iter().enumerate() {
        let y = AXIS_H + i as f64 * ROW_H;
        rows.push(Row {
            task: t.task_id.clone(),
            state: t.display_state(),
            y,
            empty: t.attempts.is_empty(),
        });
        let mut attempts: Vec<&AttemptRecord> = t.attempts.iter().collect();
        attempts.sort_by_key(|a| (a.attempt, a.started_ms));
        let mut next_free = f64::MIN;
        for a in attempts {
            let open = a.ended_ms.is_none() && a.outcome.is_none();
            let end = a.ended_ms.unwrap_or(open_end).max(a.started_ms);
            let x = x_of(a.started_ms).max(next_free);
            let w = ((end - a.started_ms) as f64 * scale).max(MIN_BAR_W);
            next_free = x + w + GAP;
            bars.push(Bar {
                task: t.task_id.clone(),
                attempt: a.attempt,
                state: attempt_state(a),
                start_ms: a.started_ms,
                end_ms: end,
                running: open && running,
                reason: a.reason.clone(),
                x,
                w,
                y: y + (ROW_H - BAR_H) / 2.0,
            });
        }
    }
    let span = t1 - t0;
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or_else(|| (span / 8 + 1).max(1));
    let ticks = (0..)
        .map(|k| k * step)
        .take_while(|d| *d <= span)
        .map(|d| Tick {
            x: x_of(t0 + d),
            label: if d == 0 { "0".into() } else { duration(d) },
        })
        .collect();
    Gantt {
        t0,
        t1,
        height: AXIS_H + rows.len().max(1) as f64 * ROW_H + 4.0,
        rows,
        bars,
        ticks,
        now_x: running.then(|| x_of(now_ms.clamp(t0, t1))),
    }
}

/// The fill of a bar in `state`.
fn fill(state: &str) -> &'static str {
    match state {
        "succeeded" => "#2da44e",
        "failed" | "interrupted" => "#cf222e",
        "timed_out" => "#bc4c00",
        "cancelled" => "#9a6700",
        "dispatched" => "#54aeff",
        _ => "#0969da",
    }
}

/// A task name cut to fit the label column (the full name is in its `<title>`).
fn short(s: &str) -> String {
    const MAX: usize = 26;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX - 1).collect();
        out.push('…');
        out
    }
}

fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// Draw `g` (`svg#gantt`).
pub(crate) fn svg(g: &Gantt, lang: Lang) -> Markup {
    let bottom = g.height - 2.0;
    let label = lang.tr(
        "Timeline of the run's tasks and attempts",
        "运行中各任务及其尝试的时间线",
    );
    html! {
        svg id="gantt" xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            viewBox={"0 0 " (n(WIDTH)) " " (n(g.height))} width="100%" preserveAspectRatio="xMinYMin meet" {
            title { (label) }
            g class="axis" {
                @for t in &g.ticks {
                    line x1=(n(t.x)) x2=(n(t.x)) y1=(n(AXIS_H - 6.0)) y2=(n(bottom)) stroke="#d0d7de" stroke-width="1" {}
                    text x=(n(t.x)) y=(n(AXIS_H - 10.0)) text-anchor="middle" font-size="11" fill="#4d5660" { (t.label) }
                }
            }
            @for r in &g.rows {
                g class="row" data-row=(r.task) {
                    text x=(n(LABEL_W - 8.0)) y=(n(r.y + ROW_H / 2.0 + 4.0)) text-anchor="end" font-size="12" fill="#1b1f24" {
                        title { (r.task) }
                        (short(&r.task))
                    }
                    @if r.empty {
                        text x=(n(LABEL_W + 4.0)) y=(n(r.y + ROW_H / 2.0 + 4.0)) font-size="11" fill="#4d5660" { (r.state) }
                    }
                }
            }
            @for b in &g.bars {
                rect class={"bar s-" (b.state)} data-task=(b.task) data-attempt=(b.attempt) data-state=(b.state)
                    x=(n(b.x)) y=(n(b.y)) width=(n(b.w)) height=(n(BAR_H)) rx="2" fill=(fill(b.state)) {
                    title {
                        (b.task) " · " (lang.tr("attempt", "尝试")) " " (b.attempt) ": " (b.state)
                        " · " (duration(b.end_ms - b.start_ms))
                        @if b.running { " " (lang.tr("(running)", "(运行中)")) }
                        @if let Some(r) = &b.reason { " · " (r) }
                    }
                }
            }
            @if let Some(x) = g.now_x {
                line class="now" x1=(n(x)) x2=(n(x)) y1=(n(AXIS_H - 6.0)) y2=(n(bottom)) stroke="#bc4c00" stroke-width="1.5" stroke-dasharray="4 3" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use outpost_common::record::{
        LimitsMode, RunKind, RunRecord, RunState, TaskInstanceRecord, TaskState,
    };

    use super::*;

    fn run(state: RunState, started: i64, ended: Option<i64>) -> RunRecord {
        RunRecord {
            run_id: "r1".into(),
            workflow: "w".into(),
            version: 1,
            kind: RunKind::Manual,
            scheduled_ms: started,
            state,
            params: vec![],
            created_ms: started,
            started_ms: Some(started),
            ended_ms: ended,
            agent_id: None,
            skip_reason: None,
        }
    }

    fn attempt(
        n: u32,
        start: i64,
        end: Option<i64>,
        outcome: Option<AttemptOutcome>,
    ) -> AttemptRecord {
        AttemptRecord {
            attempt: n,
            started_ms: start,
            ended_ms: end,
            pid: None,
            outcome,
            limits: LimitsMode::None,
            reason: None,
            log_path: None,
            dispatched_ms: None,
        }
    }

    fn task(id: &str, state: TaskState, attempts: Vec<AttemptRecord>) -> TaskInstanceRecord {
        TaskInstanceRecord {
            run_id: "r1".into(),
            task_id: id.into(),
            state,
            attempts,
            outputs: vec![],
            retry_at_ms: None,
            updated_ms: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn rows_follow_start_order_and_widths_are_proportional() {
        // 0..100 s: b runs 10..30 s, a runs 0..10 s, c 30..100 s; d never started.
        let t0 = 1_000_000;
        let tasks = vec![
            task("d", TaskState::UpstreamFailed, vec![]),
            task(
                "c",
                TaskState::Succeeded,
                vec![attempt(
                    1,
                    t0 + 30_000,
                    Some(t0 + 100_000),
                    Some(AttemptOutcome::Exited(0)),
                )],
            ),
            task(
                "b",
                TaskState::Succeeded,
                vec![attempt(
                    1,
                    t0 + 10_000,
                    Some(t0 + 30_000),
                    Some(AttemptOutcome::Exited(0)),
                )],
            ),
            task(
                "a",
                TaskState::Succeeded,
                vec![attempt(
                    1,
                    t0,
                    Some(t0 + 10_000),
                    Some(AttemptOutcome::Exited(0)),
                )],
            ),
        ];
        let g = layout(
            &run(RunState::Succeeded, t0, Some(t0 + 100_000)),
            &tasks,
            t0 + 999_999,
        );
        let order: Vec<&str> = g.rows.iter().map(|r| r.task.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert!(g.rows.windows(2).all(|w| w[0].y < w[1].y));
        assert!(g.rows[3].empty);
        let bars: Vec<&str> = g.bars.iter().map(|b| b.task.as_str()).collect();
        assert_eq!(bars, ["a", "b", "c"]);
        assert!(g.bars.windows(2).all(|w| w[0].y < w[1].y), "bars by row");
        assert_eq!((g.t0, g.t1), (t0, t0 + 100_000));
        // The axis spans the plot: widths are in proportion to the durations.
        assert!(close(g.bars[0].x, LABEL_W));
        assert!(close(g.bars[0].w, PLOT_W * 0.1));
        assert!(close(g.bars[1].w, PLOT_W * 0.2));
        assert!(close(g.bars[2].w, PLOT_W * 0.7));
        assert!(close(g.bars[2].x + g.bars[2].w, LABEL_W + PLOT_W));
        assert!(close(g.bars[1].x, g.bars[0].x + g.bars[0].w));
        assert_eq!(g.now_x, None, "a finished run has no now line");
        // Ticks: from 0, evenly spaced, within the plot.
        assert_eq!(g.ticks[0].label, "0");
        assert!(g.ticks.len() >= 3 && g.ticks.len() <= 9, "{:?}", g.ticks);
        assert!(g.ticks.iter().all(|t| t.x <= LABEL_W + PLOT_W + 1e-6));
        assert_eq!(g.ticks[1].label, "15 s");
    }

    #[test]
    fn attempts_sit_side_by_side_on_their_task_row() {
        let t0 = 50_000;
        let tasks = vec![task(
            "flaky",
            TaskState::Succeeded,
            vec![
                attempt(
                    3,
                    t0 + 5_000,
                    Some(t0 + 9_000),
                    Some(AttemptOutcome::Exited(0)),
                ),
                attempt(1, t0, Some(t0 + 2), Some(AttemptOutcome::Exited(3))),
                attempt(2, t0 + 3, Some(t0 + 5), Some(AttemptOutcome::TimedOut)),
            ],
        )];
        let g = layout(&run(RunState::Succeeded, t0, Some(t0 + 10_000)), &tasks, t0);
        let attempts: Vec<u32> = g.bars.iter().map(|b| b.attempt).collect();
        assert_eq!(attempts, [1, 2, 3]);
        let states: Vec<&str> = g.bars.iter().map(|b| b.state).collect();
        assert_eq!(states, ["failed", "timed_out", "succeeded"]);
        // One row; no two bars overlap, however short an attempt was.
        assert!(g.bars.iter().all(|b| close(b.y, g.bars[0].y)));
        let mut by_x = g.bars.clone();
        by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
        for w in by_x.windows(2) {
            assert!(w[0].x + w[0].w <= w[1].x, "{w:?}");
        }
        assert!(g.bars.iter().all(|b| b.w >= MIN_BAR_W));
    }

    #[test]
    fn a_running_attempt_reaches_now() {
        let t0 = 0;
        let now = 60_000;
        let tasks = vec![
            task(
                "done",
                TaskState::Succeeded,
                vec![attempt(
                    1,
                    t0,
                    Some(t0 + 20_000),
                    Some(AttemptOutcome::Exited(0)),
                )],
            ),
            task(
                "busy",
                TaskState::Running,
                vec![attempt(1, t0 + 20_000, None, None)],
            ),
        ];
        let g = layout(&run(RunState::Running, t0, None), &tasks, now);
        assert_eq!(g.t1, now);
        let busy = g.bars.iter().find(|b| b.task == "busy").unwrap();
        assert!(busy.running);
        assert_eq!(busy.state, "running");
        assert!(close(busy.x + busy.w, LABEL_W + PLOT_W), "{busy:?}");
        assert!(close(g.now_x.unwrap(), LABEL_W + PLOT_W));
        // Later, the same bar is longer.
        let later = layout(&run(RunState::Running, t0, None), &tasks, now * 2);
        let busy2 = later.bars.iter().find(|b| b.task == "busy").unwrap();
        assert!(busy2.end_ms > busy.end_ms);
        assert!(close(busy2.x + busy2.w, LABEL_W + PLOT_W));
    }

    #[test]
    fn the_svg_escapes_what_it_draws() {
        let tasks = vec![task(
            "<script>alert(1)</script>",
            TaskState::Failed,
            vec![AttemptRecord {
                reason: Some("\"><img src=x onerror=alert(2)>".into()),
                ..attempt(1, 0, Some(10), Some(AttemptOutcome::Exited(1)))
            }],
        )];
        let g = layout(&run(RunState::Failed, 0, Some(10)), &tasks, 10);
        let s = svg(&g, Lang::En).into_string();
        assert!(!s.contains("<script>"), "{s}");
        assert!(!s.contains("<img"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
        assert!(
            s.contains(r#"data-task="&lt;script&gt;alert(1)&lt;/script&gt;""#),
            "{s}"
        );
        assert!(s.contains(r#"id="gantt""#));
        assert!(!s.contains("style="));
    }

    #[test]
    fn long_task_names_are_cut_to_their_column() {
        assert_eq!(short("extract"), "extract");
        let long = "a".repeat(40);
        assert_eq!(short(&long).chars().count(), 26);
        assert!(short(&long).ends_with('…'));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(42_000), "42 s");
        assert_eq!(duration(120_000), "2 min");
        assert_eq!(duration(125_000), "2 min 5 s");
        assert_eq!(duration(4_800_000), "1 h 20 min");
    }
}
