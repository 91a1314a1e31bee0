//! The task graph: which tasks a task's templates read outputs from, reachability over
//! `depends_on`, and a topological order (a cycle is reported as its shortest loop).

use super::*;

/// The task indices whose outputs a template of `t` names (`{{ tasks.X.outputs.K }}`, X known).
pub(super) fn output_refs(t: &RawTask, index: &HashMap<&str, usize>) -> Vec<usize> {
    let p = &t.partial;
    let argv = p
        .command
        .iter()
        .flat_map(|(_, argv)| argv.iter().map(|(_, a)| a));
    let texts = argv.chain(p.script.iter().map(|(_, s)| s));
    let mut out = Vec::new();
    for text in texts {
        for ph in template::placeholders(text).unwrap_or_default() {
            if let Placeholder::TaskOutput { task, .. } = ph
                && let Some(&ti) = index.get(task.as_str())
            {
                out.push(ti);
            }
        }
    }
    out
}

/// Transitive reachability for the tasks whose outputs are read: one bit set per task over those
/// tasks only, filled in topological order. O((tasks + edges) * referenced / 64) time and
/// tasks * referenced / 8 bytes; nothing at all for a workflow that reads no outputs (a full
/// ancestor set per task would be quadratic in a long chain).
pub(super) struct Reach {
    /// Task index -> column, for the tasks whose outputs are read.
    column: HashMap<usize, usize>,
    words: usize,
    /// `words` words per task: the columns of its transitive upstream tasks.
    bits: Vec<u64>,
}

impl Reach {
    pub(super) fn new(
        tasks: &[RawTask],
        index: &HashMap<&str, usize>,
        deps: &[Vec<usize>],
        order: &[usize],
    ) -> Reach {
        let mut column = HashMap::new();
        for t in tasks {
            for ti in output_refs(t, index) {
                let next = column.len();
                column.entry(ti).or_insert(next);
            }
        }
        let words = column.len().div_ceil(64);
        let mut bits = vec![0u64; words * tasks.len()];
        if words > 0 {
            for &i in order {
                for &d in &deps[i] {
                    // `d` comes before `i` in `order`: its row is complete.
                    for w in 0..words {
                        let up = bits[d * words + w];
                        bits[i * words + w] |= up;
                    }
                    if let Some(&c) = column.get(&d) {
                        bits[i * words + c / 64] |= 1 << (c % 64);
                    }
                }
            }
        }
        Reach {
            column,
            words,
            bits,
        }
    }

    /// Whether task `up` is a transitive upstream task of task `task`.
    pub(super) fn is_upstream(&self, up: usize, task: usize) -> bool {
        match self.column.get(&up) {
            Some(&c) => self
                .bits
                .get(task * self.words + c / 64)
                .is_some_and(|w| w & (1 << (c % 64)) != 0),
            None => false,
        }
    }
}

/// A topological order (ties by file order), or `None` after reporting every cycle.
pub(super) fn topo_order(
    v: &mut V<'_>,
    tasks: &[RawTask],
    deps: &[Vec<usize>],
) -> Option<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..tasks.len()).map(|i| g.add_node(i)).collect();
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            // Edge i -> d reads "i depends on d".
            g.add_edge(nodes[i], nodes[d], ());
        }
    }
    let mut cyclic = false;
    let mut sccs: Vec<Vec<usize>> = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(|n| g[n]).collect();
            c.sort_unstable();
            c
        })
        .collect();
    sccs.sort();
    // Dependents (downstream edges), for naming cycles in execution order.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    for scc in sccs {
        cyclic = true;
        let start = scc[0];
        let path = shortest_cycle(start, &scc, &dependents);
        let names: Vec<&str> = path.iter().map(|&i| tasks[i].id.as_str()).collect();
        let t = &tasks[start];
        let pos = t.partial.depends_on.as_ref().map_or(t.pos, |(p, _)| *p);
        v.err(
            pos,
            &format!("tasks.{}.depends_on", t.id),
            format!(
                "dependency cycle: {} (each task depends on the one before it)",
                names.join(" -> ")
            ),
        );
    }
    if cyclic {
        return None;
    }
    // Kahn, smallest file index first.
    let n = tasks.len();
    let mut remaining: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| remaining[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    (order.len() == n).then_some(order)
}

/// The shortest path `start -> ... -> start` along `edges` inside `scc`.
pub(super) fn shortest_cycle(start: usize, scc: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    let inside: BTreeSet<usize> = scc.iter().copied().collect();
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::new();
    queue.push_back(start);
    while let Some(cur) = queue.pop_front() {
        for &d in &edges[cur] {
            if !inside.contains(&d) {
                continue;
            }
            if d == start {
                // Walk back from `cur` to `start`.
                let mut back = vec![cur];
                let mut at = cur;
                while at != start {
                    match prev.get(&at) {
                        Some(&p) => {
                            back.push(p);
                            at = p;
                        }
                        None => break,
                    }
                }
                back.reverse();
                back.push(start);
                return back;
            }
            if d != start && !prev.contains_key(&d) {
                prev.insert(d, cur);
                queue.push_back(d);
            }
        }
    }
    scc.to_vec()
}
