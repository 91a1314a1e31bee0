//! Two versions of a workflow side by side (`div#diff`): rows from `similar`'s line diff,
//! grouped into hunks with three lines of context; a removed line on the left, an added one on
//! the right, a changed one on both. Each changed side says so in text too (`−`, `+`), not by
//! colour alone.

use maud::{Markup, html};
use similar::{DiffOp, TextDiff};

/// Lines of unchanged context around each change.
const CONTEXT: usize = 3;

/// A line of one side: its number (from 1) and its text (without the line end).
pub(crate) type Line = (usize, String);

/// One row of the side-by-side view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Row {
    /// The start of a hunk: the first line numbers of each side.
    Hunk(usize, usize),
    /// The same line on both sides.
    Same(Line, Line),
    /// Changed: the old line (if any) and the new one (if any).
    Changed(Option<Line>, Option<Line>),
}

fn line_of(lines: &[&str], i: usize) -> Line {
    let text = lines.get(i).copied().unwrap_or("");
    (i + 1, text.trim_end_matches(['\n', '\r']).to_string())
}

/// The rows of the diff of `a` (old) and `b` (new); empty when they are equal.
pub(crate) fn rows(a: &str, b: &str) -> Vec<Row> {
    let diff = TextDiff::from_lines(a, b);
    let old: Vec<&str> = diff.old_slices().to_vec();
    let new: Vec<&str> = diff.new_slices().to_vec();
    let mut out = Vec::new();
    for group in diff.grouped_ops(CONTEXT) {
        let Some(first) = group.first() else { continue };
        out.push(Row::Hunk(
            first.old_range().start + 1,
            first.new_range().start + 1,
        ));
        for op in group {
            match op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for k in 0..len {
                        out.push(Row::Same(
                            line_of(&old, old_index + k),
                            line_of(&new, new_index + k),
                        ));
                    }
                }
                DiffOp::Delete {
                    old_index, old_len, ..
                } => {
                    for k in 0..old_len {
                        out.push(Row::Changed(Some(line_of(&old, old_index + k)), None));
                    }
                }
                DiffOp::Insert {
                    new_index, new_len, ..
                } => {
                    for k in 0..new_len {
                        out.push(Row::Changed(None, Some(line_of(&new, new_index + k))));
                    }
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    for k in 0..old_len.max(new_len) {
                        out.push(Row::Changed(
                            (k < old_len).then(|| line_of(&old, old_index + k)),
                            (k < new_len).then(|| line_of(&new, new_index + k)),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The side-by-side view: a header per side, then the rows (`same` says the versions have the
/// same text).
pub(crate) fn render(
    rows: &[Row],
    left_head: &str,
    right_head: &str,
    label: &str,
    same: &str,
) -> Markup {
    html! {
        div id="diff" class="diff" role="region" aria-label=(label) {
            div class="hdr" { (left_head) }
            div class="hdr" { (right_head) }
            @if rows.is_empty() {
                div class="ctx" { (same) }
                div class="ctx" { (same) }
            }
            @for row in rows {
                @match row {
                    Row::Hunk(a, b) => {
                        div class="hdr hunk" { "@@ " (a) }
                        div class="hdr hunk" { "@@ " (b) }
                    }
                    Row::Same(l, r) => {
                        div class="ctx" { span class="ln" { (l.0) } "  " (l.1) }
                        div class="ctx" { span class="ln" { (r.0) } "  " (r.1) }
                    }
                    Row::Changed(l, r) => {
                        @match l {
                            Some(l) => { div class="del" { span class="ln" { (l.0) } "− " (l.1) } }
                            None => { div class="gap" {} }
                        }
                        @match r {
                            Some(r) => { div class="add" { span class="ln" { (r.0) } "+ " (r.1) } }
                            None => { div class="gap" {} }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(n: usize, s: &str) -> Line {
        (n, s.to_string())
    }

    #[test]
    fn rows_pair_changes_and_keep_context() {
        let a = "name: x\nschedule: '0 3 * * *'\ntasks:\n  a:\n    command: [true]\n";
        let b = "name: x\nschedule: '0 4 * * *'\ntasks:\n  a:\n    command: [true]\n  b:\n    command: [false]\n";
        let r = rows(a, b);
        assert_eq!(r[0], Row::Hunk(1, 1));
        assert_eq!(r[1], Row::Same(l(1, "name: x"), l(1, "name: x")));
        assert_eq!(
            r[2],
            Row::Changed(
                Some(l(2, "schedule: '0 3 * * *'")),
                Some(l(2, "schedule: '0 4 * * *'"))
            )
        );
        assert_eq!(r[3], Row::Same(l(3, "tasks:"), l(3, "tasks:")));
        assert!(r.contains(&Row::Changed(None, Some(l(6, "  b:")))));
        assert_eq!(
            r.last(),
            Some(&Row::Changed(None, Some(l(7, "    command: [false]"))))
        );
        assert!(rows(a, a).is_empty());
    }

    #[test]
    fn far_apart_changes_make_two_hunks() {
        let a: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let b = a.replace("line 2\n", "line two\n").replace("line 28\n", "");
        let r = rows(&a, &b);
        let hunks: Vec<&Row> = r.iter().filter(|x| matches!(x, Row::Hunk(..))).collect();
        assert_eq!(hunks, vec![&Row::Hunk(1, 1), &Row::Hunk(25, 25)]);
        assert!(r.contains(&Row::Changed(Some(l(28, "line 28")), None)));
        // Lines far from both changes are left out.
        assert!(!r.iter().any(|x| matches!(x, Row::Same((15, _), _))));
    }

    #[test]
    fn text_is_escaped() {
        let r = rows("a: 1\n", "a: \"<script>x</script>\"\n");
        let html = render(&r, "v1", "v2 <b>", "diff", "same").into_string();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("v2 &lt;b&gt;"));
        assert!(html.contains("class=\"del\""));
        assert!(html.contains("class=\"add\""));
    }
}
