//! A workflow's task graph as inline SVG: a layered layout computed here (longest-path layers
//! from the dependencies, left to right; the order within a layer by barycentre sweeps), edges
//! as curves with arrow heads, each task a `g.node` coloured by its state in the most recent
//! run. Built with maud like every page (every value escaped); colours are SVG presentation
//! attributes (the CSP allows no `style=`).

use maud::{Markup, html};

/// Width of a task's box.
const NODE_W: f64 = 184.0;
/// Height of a task's box.
const NODE_H: f64 = 58.0;
/// Between layers (room for the edges).
const GAP_X: f64 = 64.0;
/// Between the boxes of one layer.
const GAP_Y: f64 = 18.0;
/// Around the drawing.
const MARGIN: f64 = 12.0;
/// Characters of a line of text that fit in a box (longer text is cut with `…`).
const FIT: usize = 25;

/// One task to draw.
#[derive(Debug, Clone)]
pub(crate) struct DagNode {
    /// The task id.
    pub(crate) id: String,
    /// Indices (into the node list) of the tasks it depends on.
    pub(crate) upstream: Vec<usize>,
    /// Its state in the most recent run (`None`: not in it, or no run yet).
    pub(crate) state: Option<String>,
    /// Its trigger rule when not the default (`all_done`, ...).
    pub(crate) rule: Option<&'static str>,
    /// Short facts drawn on the box (semaphores, priority, retries).
    pub(crate) facts: Vec<String>,
    /// Longer facts, in the node's `<title>` only.
    pub(crate) more: Vec<String>,
}

/// An edge: from, to, and the top-left corners of the slots it passes through.
pub(crate) type Edge = (usize, usize, Vec<(f64, f64)>);

/// Where each node goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// Layer (column) of each node: every node is right of all its upstream nodes.
    pub(crate) layer: Vec<usize>,
    /// Position within its layer (row).
    pub(crate) row: Vec<usize>,
    /// Top-left corner of each node's box.
    pub(crate) at: Vec<(f64, f64)>,
    /// Every edge: from, to, and the top-left corners of the slots it passes through in the
    /// layers between (laid out like nodes, so a long edge goes round the boxes in its way).
    pub(crate) edges: Vec<Edge>,
    /// Size of the whole drawing.
    pub(crate) width: f64,
    pub(crate) height: f64,
}

/// Longest-path layers: a node with no upstream is in layer 0, any other one layer right of its
/// furthest upstream node. Works in any node order; edges that would close a cycle (none in a
/// validated workflow) or name no node are ignored.
fn layers(ups: &[Vec<usize>]) -> Vec<usize> {
    let n = ups.len();
    let mut layer = vec![0usize; n];
    let mut indeg = vec![0usize; n];
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, us) in ups.iter().enumerate() {
        for &u in us.iter().filter(|&&u| u < n && u != v) {
            indeg[v] += 1;
            down[u].push(v);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    let mut done = vec![false; n];
    while let Some(u) = ready.pop() {
        done[u] = true;
        for &v in &down[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indeg[v] -= 1;
            if indeg[v] == 0 {
                ready.push(v);
            }
        }
    }
    // Nodes on a cycle (not in a validated workflow): right of everything else.
    let max = layer.iter().copied().max().unwrap_or(0);
    for (v, d) in done.iter().enumerate() {
        if !d {
            layer[v] = max + 1;
        }
    }
    layer
}

/// Compute the layout of a graph given as each node's upstream indices.
pub(crate) fn layout(ups: &[Vec<usize>]) -> Layout {
    let n = ups.len();
    let layer = layers(ups);
    // The graph the layers are ordered on: a long edge passes through one waypoint per layer
    // it crosses, ordered and placed like a node.
    let mut ext_layer = layer.clone();
    let mut ext_ups: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut edges: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (v, us) in ups.iter().enumerate() {
        for &u in us.iter().filter(|&&u| u < n && u != v) {
            let mut prev = u;
            let mut way = Vec::new();
            for l in layer[u] + 1..layer[v] {
                let d = ext_layer.len();
                ext_layer.push(l);
                ext_ups.push(vec![prev]);
                way.push(d);
                prev = d;
            }
            ext_ups[v].push(prev);
            edges.push((u, v, way));
        }
    }
    let m = ext_layer.len();
    let depth = ext_layer.iter().copied().max().map_or(0, |x| x + 1);
    let mut by_layer: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (v, &l) in ext_layer.iter().enumerate() {
        by_layer[l].push(v);
    }
    let mut downs: Vec<Vec<usize>> = vec![Vec::new(); m];
    for (v, us) in ext_ups.iter().enumerate() {
        for &u in us {
            downs[u].push(v);
        }
    }
    let mut row = vec![0usize; m];
    let place = |by_layer: &Vec<Vec<usize>>, row: &mut Vec<usize>| {
        for nodes in by_layer {
            for (i, &v) in nodes.iter().enumerate() {
                row[v] = i;
            }
        }
    };
    place(&by_layer, &mut row);
    // Barycentre sweeps: down by the upstream nodes' rows, then up by the downstream ones.
    for _ in 0..4 {
        for l in 1..depth {
            sort_by_barycentre(&mut by_layer[l], &ext_ups, &row);
            place(&by_layer, &mut row);
        }
        for l in (0..depth.saturating_sub(1)).rev() {
            sort_by_barycentre(&mut by_layer[l], &downs, &row);
            place(&by_layer, &mut row);
        }
    }
    let tallest = by_layer.iter().map(Vec::len).max().unwrap_or(0);
    let step_y = NODE_H + GAP_Y;
    let mut at = vec![(0.0, 0.0); m];
    for (l, nodes) in by_layer.iter().enumerate() {
        // Each layer centred on the tallest one.
        let off = (tallest - nodes.len()) as f64 * step_y / 2.0;
        for (i, &v) in nodes.iter().enumerate() {
            at[v] = (
                MARGIN + l as f64 * (NODE_W + GAP_X),
                MARGIN + off + i as f64 * step_y,
            );
        }
    }
    let width = if depth == 0 {
        2.0 * MARGIN
    } else {
        2.0 * MARGIN + depth as f64 * NODE_W + (depth - 1) as f64 * GAP_X
    };
    let height = if tallest == 0 {
        2.0 * MARGIN
    } else {
        2.0 * MARGIN + tallest as f64 * NODE_H + (tallest - 1) as f64 * GAP_Y
    };
    let edges = edges
        .into_iter()
        .map(|(u, v, way)| (u, v, way.iter().map(|&d| at[d]).collect()))
        .collect();
    row.truncate(n);
    at.truncate(n);
    Layout {
        layer,
        row,
        at,
        edges,
        width,
        height,
    }
}

/// Order `nodes` by the mean row of their neighbours `nb` (a node without neighbours keeps its
/// row); stable, so ties keep the previous order.
fn sort_by_barycentre(nodes: &mut [usize], nb: &[Vec<usize>], row: &[usize]) {
    let key = |v: usize| -> f64 {
        let ns: Vec<usize> = nb[v].iter().copied().filter(|&u| u < row.len()).collect();
        if ns.is_empty() {
            row[v] as f64
        } else {
            ns.iter().map(|&u| row[u] as f64).sum::<f64>() / ns.len() as f64
        }
    };
    let mut keyed: Vec<(f64, usize)> = nodes.iter().map(|&v| (key(v), v)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (slot, (_, v)) in nodes.iter_mut().zip(keyed) {
        *slot = v;
    }
}

/// Fill and stroke of a box by task state (presentation attributes, constants only).
fn colours(state: Option<&str>) -> (&'static str, &'static str) {
    match state {
        Some("succeeded") => ("#dafbe1", "#116329"),
        Some("failed") | Some("upstream_failed") => ("#ffebe9", "#a40e26"),
        Some("running") | Some("dispatched") | Some("ready") | Some("up_for_retry") => {
            ("#ddf4ff", "#0b5cad")
        }
        Some("skipped") | Some("cancelled") => ("#fff8c5", "#7d4e00"),
        Some("pending") => ("#ffffff", "#0b5cad"),
        _ => ("#eaeef2", "#4d5660"),
    }
}

/// `text` cut to `FIT` characters.
fn fit(text: &str) -> String {
    if text.chars().count() <= FIT {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(FIT - 1).collect();
        s.push('…');
        s
    }
}

/// The SVG (`svg#dag`, `role="img"` with `label` as its accessible name). `none` names the
/// state of a task that has none (in the page language).
pub(crate) fn render(nodes: &[DagNode], label: &str, none: &str) -> Markup {
    let ups: Vec<Vec<usize>> = nodes.iter().map(|n| n.upstream.clone()).collect();
    let lay = layout(&ups);
    let view = format!("0 0 {} {}", lay.width, lay.height);
    html! {
        svg id="dag" xmlns="http://www.w3.org/2000/svg" role="img" aria-label=(label)
            viewBox=(view) width=(lay.width) height=(lay.height) {
            title { (label) }
            defs {
                marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
                    markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a" {}
                }
            }
            g class="edges" {
                @for (u, v, via) in &lay.edges {
                    path class="edge" d=(edge_path(lay.at[*u], via, lay.at[*v])) fill="none"
                        stroke="#57606a" stroke-width="1.4" marker-end="url(#dag-arrow)"
                        data-from=(nodes[*u].id) data-to=(nodes[*v].id) {}
                }
            }
            @for (v, node) in nodes.iter().enumerate() {
                (node_svg(node, lay.at[v], none))
            }
        }
    }
}

/// A line from the right side of the box at `a` through the slots `via` (straight across
/// each) to the left side of the box at `b`, curved between layers.
fn edge_path(a: (f64, f64), via: &[(f64, f64)], b: (f64, f64)) -> String {
    let curve = |p: (f64, f64), q: (f64, f64)| {
        let mid = (p.0 + q.0) / 2.0;
        format!(" C {mid} {}, {mid} {}, {} {}", p.1, q.1, q.0, q.1)
    };
    let mut cur = (a.0 + NODE_W, a.1 + NODE_H / 2.0);
    let mut d = format!("M {} {}", cur.0, cur.1);
    for &(x, y) in via {
        let y = y + NODE_H / 2.0;
        d.push_str(&curve(cur, (x, y)));
        d.push_str(&format!(" L {} {y}", x + NODE_W));
        cur = (x + NODE_W, y);
    }
    d.push_str(&curve(cur, (b.0, b.1 + NODE_H / 2.0)));
    d
}

fn node_svg(node: &DagNode, (x, y): (f64, f64), none: &str) -> Markup {
    let state = node.state.as_deref().unwrap_or("none");
    let (fill, stroke) = colours(node.state.as_deref());
    let shown_state = node.state.as_deref().unwrap_or(none);
    let second = match node.rule {
        Some(r) => format!("{shown_state} · {r}"),
        None => shown_state.to_string(),
    };
    let facts = node.facts.join(" · ");
    let mut title = format!("{}: {shown_state}", node.id);
    if let Some(r) = node.rule {
        title.push_str(&format!("\ntrigger rule: {r}"));
    }
    for f in node.facts.iter().chain(&node.more) {
        title.push('\n');
        title.push_str(f);
    }
    let tx = x + 8.0;
    html! {
        g class="node" data-task=(node.id) data-state=(state) {
            title { (title) }
            rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="5" fill=(fill) stroke=(stroke)
                stroke-width="1.5" {}
            text x=(tx) y=(y + 18.0) font-size="13" font-weight="600" fill="#1b1f24" { (fit(&node.id)) }
            text x=(tx) y=(y + 34.0) font-size="11.5" fill="#1b1f24" class="state" { (fit(&second)) }
            @if !facts.is_empty() {
                text x=(tx) y=(y + 49.0) font-size="11" fill="#4d5660" class="facts" { (fit(&facts)) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: (f64, f64), b: (f64, f64)) -> bool {
        a.0 < b.0 + NODE_W && b.0 < a.0 + NODE_W && a.1 < b.1 + NODE_H && b.1 < a.1 + NODE_H
    }

    /// A 30-task graph: a fan-out, two chains, a join, some skip-level edges.
    fn thirty() -> Vec<Vec<usize>> {
        let mut ups: Vec<Vec<usize>> = vec![vec![]];
        for _ in 1..=10 {
            ups.push(vec![0]);
        }
        for i in 11..=20 {
            ups.push(vec![i - 10]);
        }
        for i in 21..=27 {
            ups.push(vec![i - 10, 0]);
        }
        ups.push((21..=27).collect());
        ups.push(vec![28, 5]);
        assert_eq!(ups.len(), 30);
        ups
    }

    #[test]
    fn layers_follow_edges() {
        let ups = thirty();
        let lay = layout(&ups);
        for (v, us) in ups.iter().enumerate() {
            for &u in us {
                assert!(lay.layer[u] < lay.layer[v], "{u} -> {v}");
                assert!(lay.at[u].0 + NODE_W < lay.at[v].0, "{u} drawn left of {v}");
            }
        }
        // Longest path: a node sits one layer right of its furthest upstream node.
        assert_eq!(lay.layer[0], 0);
        assert_eq!(lay.layer[1], 1);
        assert_eq!(lay.layer[11], 2);
        assert_eq!(lay.layer[21], 3);
        assert_eq!(lay.layer[28], 4);
        assert_eq!(lay.layer[29], 5);
        // Order does not matter: the same graph listed backwards lays out the same layers.
        let n = ups.len();
        let rev: Vec<Vec<usize>> = ups
            .iter()
            .rev()
            .map(|us| us.iter().map(|&u| n - 1 - u).collect())
            .collect();
        let lr = layout(&rev);
        for v in 0..n {
            assert_eq!(lr.layer[n - 1 - v], lay.layer[v]);
        }
    }

    #[test]
    fn no_two_nodes_overlap_and_thirty_tasks_fit() {
        let ups = thirty();
        let lay = layout(&ups);
        for a in 0..ups.len() {
            for b in a + 1..ups.len() {
                assert!(!overlaps(lay.at[a], lay.at[b]), "{a} and {b} overlap");
            }
            let (x, y) = lay.at[a];
            assert!(x >= 0.0 && y >= 0.0);
            assert!(
                x + NODE_W <= lay.width && y + NODE_H <= lay.height,
                "{a} outside"
            );
        }
        // 6 layers, at most 18 slots in one (10 tasks and 8 long edges passing through): a
        // drawing a page can scroll through.
        assert!(lay.width <= 6.0 * (NODE_W + GAP_X) + 2.0 * MARGIN);
        assert!(lay.height <= 18.0 * (NODE_H + GAP_Y) + 2.0 * MARGIN);
        // Long edges go round the boxes: their slots overlap no task and stay in the drawing.
        assert_eq!(lay.edges.len(), 10 + 10 + 14 + 7 + 2);
        let mut slots = 0;
        for (u, v, via) in &lay.edges {
            assert_eq!(via.len(), lay.layer[*v] - lay.layer[*u] - 1, "{u} -> {v}");
            for &p in via {
                slots += 1;
                assert!(p.1 + NODE_H <= lay.height);
                for (t, &q) in lay.at.iter().enumerate() {
                    assert!(!overlaps(p, q), "edge {u} -> {v} crosses task {t}");
                }
            }
        }
        assert_eq!(slots, 7 * 2 + 3);
        let svg = render(
            &ups.iter()
                .enumerate()
                .map(|(i, us)| DagNode {
                    id: format!("t{i}"),
                    upstream: us.clone(),
                    state: None,
                    rule: None,
                    facts: vec![],
                    more: vec![],
                })
                .collect::<Vec<_>>(),
            "graph",
            "none",
        )
        .into_string();
        assert_eq!(svg.matches("<g class=\"node\"").count(), 30);
        assert_eq!(svg.matches("class=\"edge\"").count(), 10 + 10 + 14 + 7 + 2);
        // Inline SVG in HTML: an element left open would swallow its siblings (no `/>` in
        // HTML syntax), so every path and rect is closed.
        assert_eq!(svg.matches("</path>").count(), 10 + 10 + 14 + 7 + 2 + 1);
        assert_eq!(svg.matches("</rect>").count(), 30);
    }

    #[test]
    fn barycentre_orders_a_layer_after_its_parents() {
        // a, b in layer 0; c (child of b) and d (child of a) in layer 1, listed c first.
        let ups = vec![vec![], vec![], vec![1], vec![0]];
        let lay = layout(&ups);
        assert!(lay.row[0] < lay.row[1]);
        assert!(
            lay.row[3] < lay.row[2],
            "no crossing: d beside a, c beside b"
        );
    }

    #[test]
    fn cycles_and_bad_indices_do_not_panic() {
        let lay = layout(&[vec![1], vec![0], vec![7]]);
        assert_eq!(lay.at.len(), 3);
        assert_eq!(layout(&[]).at.len(), 0);
    }

    #[test]
    fn values_are_escaped_and_states_drawn() {
        let nodes = vec![
            DagNode {
                id: "<script>alert(1)</script>".into(),
                upstream: vec![],
                state: Some("failed".into()),
                rule: None,
                facts: vec!["sem <x>×1".into()],
                more: vec![],
            },
            DagNode {
                id: "b\"onload=\"x".into(),
                upstream: vec![0],
                state: None,
                rule: Some("all_done"),
                facts: vec![],
                more: vec![],
            },
        ];
        let svg = render(&nodes, "DAG of <w>", "none").into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("sem &lt;x&gt;"));
        assert!(svg.contains("data-task=\"b&quot;onload=&quot;x\""));
        assert!(svg.contains("aria-label=\"DAG of &lt;w&gt;\""));
        assert!(svg.contains("data-state=\"failed\""));
        assert!(svg.contains("data-state=\"none\""));
        assert!(svg.contains("none · all_done"));
        assert!(!svg.contains("style="));
    }
}
