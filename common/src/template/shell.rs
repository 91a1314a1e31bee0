//! Placeholders in a POSIX shell `script`: values are data, never shell syntax.
//!
//! A placeholder in a script is never replaced by its value. It is replaced by a reference to an
//! environment variable (`OUTPOST_TEMPLATE_1`, `OUTPOST_TEMPLATE_2`, ... one per distinct
//! placeholder) that the task's process receives with the value. The text that reaches the shell
//! therefore depends only on the script the author signed, never on a run-time value, and the
//! shell does not parse the result of a parameter expansion again (no quotes, `;`, `$(...)` in a
//! value has any effect). How the reference is written depends on where the placeholder sits, so
//! that the value comes out as written:
//!
//! | position | written as | e.g. `{{ params.site }}` with value `a b` |
//! |---|---|---|
//! | outside quotes | `"${V}"` (one word) | `echo {{ params.site }}` -> `echo "${V}"` -> `a b` |
//! | inside `"..."` | `${V}` | `echo "x {{ params.site }}"` -> `x a b` |
//! | inside `'...'` | `'"${V}"'` | `echo 'x {{ params.site }}'` -> `x a b` |
//! | here-document (unquoted delimiter) | `${V}` | |
//!
//! Positions where no reference is both safe and literal are refused (validation reports them):
//! after a `\\` or a `$`, inside `${...}`, inside `` `...` ``, inside arithmetic `$((...))` /
//! `((...))`, and in a here-document whose delimiter is quoted (nothing expands there).
//!
//! The scanner follows POSIX quoting (`'`, `"`, `\\`), comments, `$(...)` nesting and
//! here-documents. It is only used to pick the form of the reference: a script it misreads can
//! get a value with the wrong quoting around it, never a value parsed as shell.

use std::collections::HashMap;

use super::{Placeholder, Segment, TemplateError, env_var_of, parse};

/// Where a placeholder sits in a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellContext {
    /// Outside any quotes (also in a comment or in `$(...)`).
    Unquoted,
    /// Inside `"..."`.
    DoubleQuoted,
    /// Inside `'...'`.
    SingleQuoted,
    /// In the body of a here-document with an unquoted delimiter.
    Heredoc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Outside quotes; `Some(depth)` inside `$(...)` with `depth` open parentheses.
    Unquoted(Option<u32>),
    Double,
    Single,
    /// `${...}`
    Brace,
    /// `` `...` ``
    Backtick,
    /// `$((...))` / `((...))`, with the open parentheses inside.
    Arith(u32),
}

struct PendingHeredoc {
    delim: String,
    strip_tabs: bool,
    quoted: bool,
}

struct Scanner {
    stack: Vec<Frame>,
    /// The previous character was an unquoted (or double-quoted) backslash.
    escape: bool,
    /// The previous character was `$`.
    dollar: bool,
    /// At the start of a word (a `#` starts a comment).
    word_start: bool,
    comment: bool,
    pending: Vec<PendingHeredoc>,
    /// In a here-document body: its delimiter and the current line so far.
    heredoc: Option<(PendingHeredoc, String)>,
}

/// A character that stands for a placeholder in a here-document line (never equal to a delimiter).
const PLACEHOLDER_MARK: char = '\u{FFFF}';

impl Scanner {
    fn new() -> Scanner {
        Scanner {
            stack: vec![Frame::Unquoted(None)],
            escape: false,
            dollar: false,
            word_start: true,
            comment: false,
            pending: Vec::new(),
            heredoc: None,
        }
    }

    fn top(&self) -> Frame {
        self.stack.last().copied().unwrap_or(Frame::Unquoted(None))
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    /// Where a placeholder at this point sits, or why none may sit here.
    fn context(&self) -> Result<ShellContext, &'static str> {
        if let Some((h, _)) = &self.heredoc {
            if h.quoted {
                return Err("is in a here-document with a quoted delimiter, where nothing expands");
            }
        } else if self.comment {
            return Ok(ShellContext::Unquoted);
        }
        if self.escape {
            return Err("follows a backslash");
        }
        if self.dollar {
            return Err("follows a `$`");
        }
        if self.heredoc.is_some() {
            return Ok(ShellContext::Heredoc);
        }
        match self.top() {
            Frame::Unquoted(_) => Ok(ShellContext::Unquoted),
            Frame::Double => Ok(ShellContext::DoubleQuoted),
            Frame::Single => Ok(ShellContext::SingleQuoted),
            Frame::Brace => Err("is inside `${...}`"),
            Frame::Backtick => Err("is inside backquotes (use `$(...)`)"),
            Frame::Arith(_) => Err(
                "is inside shell arithmetic (declare the parameter `type: integer` and use its environment variable)",
            ),
        }
    }

    fn placeholder(&mut self) {
        if let Some((_, line)) = &mut self.heredoc {
            line.push(PLACEHOLDER_MARK);
        }
        self.escape = false;
        self.dollar = false;
        self.word_start = false;
    }

    fn literal(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            i += self.step(&chars, i);
        }
    }

    /// Consume the character at `i` (and possibly more); returns how many were consumed.
    fn step(&mut self, c: &[char], i: usize) -> usize {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if let Some((h, line)) = &mut self.heredoc {
            if ch == '\n' {
                let body = if h.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    line.as_str()
                };
                if body == h.delim {
                    self.heredoc = self.take_pending();
                } else {
                    line.clear();
                }
                self.escape = false;
                self.dollar = false;
            } else {
                line.push(ch);
                self.escape = ch == '\\' && !self.escape;
                self.dollar = ch == '$';
            }
            return 1;
        }
        if self.comment {
            if ch == '\n' {
                self.comment = false;
                self.newline();
            }
            return 1;
        }
        let was_escape = self.escape;
        let was_dollar = self.dollar;
        self.escape = false;
        self.dollar = false;
        let frame = self.top();
        if was_escape {
            self.word_start = false;
            return 1;
        }
        match frame {
            Frame::Single => {
                if ch == '\'' {
                    self.pop();
                }
                1
            }
            Frame::Double => {
                match ch {
                    '\\' => self.escape = true,
                    '"' => self.pop(),
                    '$' => self.dollar = true,
                    '`' => self.stack.push(Frame::Backtick),
                    '(' if was_dollar => return self.open_paren(next),
                    '{' if was_dollar => self.stack.push(Frame::Brace),
                    _ => {}
                }
                1
            }
            Frame::Backtick => {
                match ch {
                    '\\' => self.escape = true,
                    '`' => self.pop(),
                    _ => {}
                }
                1
            }
            Frame::Arith(depth) => {
                match ch {
                    '(' => self.set_top(Frame::Arith(depth + 1)),
                    ')' if depth == 0 => {
                        self.pop();
                        return if next == Some(')') { 2 } else { 1 };
                    }
                    ')' => self.set_top(Frame::Arith(depth - 1)),
                    _ => {}
                }
                1
            }
            Frame::Brace | Frame::Unquoted(_) => {
                let at_word_start = self.word_start;
                self.word_start = false;
                match ch {
                    '\\' => self.escape = true,
                    '\'' => self.stack.push(Frame::Single),
                    '"' => self.stack.push(Frame::Double),
                    '`' => self.stack.push(Frame::Backtick),
                    '$' => self.dollar = true,
                    '(' if was_dollar => return self.open_paren(next),
                    '{' if was_dollar => self.stack.push(Frame::Brace),
                    '}' if frame == Frame::Brace => self.pop(),
                    '#' if at_word_start && frame != Frame::Brace => self.comment = true,
                    '(' if at_word_start && next == Some('(') => {
                        self.stack.push(Frame::Arith(0));
                        self.word_start = true;
                        return 2;
                    }
                    '(' => {
                        if let Frame::Unquoted(Some(d)) = frame {
                            self.set_top(Frame::Unquoted(Some(d + 1)));
                        }
                        self.word_start = true;
                    }
                    ')' => {
                        match frame {
                            Frame::Unquoted(Some(0)) => self.pop(),
                            Frame::Unquoted(Some(d)) => self.set_top(Frame::Unquoted(Some(d - 1))),
                            _ => {}
                        }
                        self.word_start = true;
                    }
                    '<' if next == Some('<') => return self.heredoc_operator(c, i),
                    '\n' => self.newline(),
                    ' ' | '\t' | ';' | '|' | '&' | '<' | '>' => self.word_start = true,
                    _ => {}
                }
                1
            }
        }
    }

    fn set_top(&mut self, f: Frame) {
        if let Some(t) = self.stack.last_mut() {
            *t = f;
        }
    }

    /// After `$(`: a command substitution, or `$((` arithmetic.
    fn open_paren(&mut self, next: Option<char>) -> usize {
        if next == Some('(') {
            self.stack.push(Frame::Arith(0));
            2
        } else {
            self.stack.push(Frame::Unquoted(Some(0)));
            self.word_start = true;
            1
        }
    }

    fn newline(&mut self) {
        self.word_start = true;
        if self.heredoc.is_none() {
            self.heredoc = self.take_pending();
        }
    }

    fn take_pending(&mut self) -> Option<(PendingHeredoc, String)> {
        if self.pending.is_empty() {
            None
        } else {
            Some((self.pending.remove(0), String::new()))
        }
    }

    /// At `<<`: read the operator and its delimiter word (`<<<` is a bash here-string, skipped).
    fn heredoc_operator(&mut self, c: &[char], i: usize) -> usize {
        let mut j = i + 2;
        if c.get(j) == Some(&'<') {
            self.word_start = true;
            return 3;
        }
        let strip_tabs = c.get(j) == Some(&'-');
        if strip_tabs {
            j += 1;
        }
        while matches!(c.get(j), Some(' ' | '\t')) {
            j += 1;
        }
        let mut delim = String::new();
        let mut quoted = false;
        let mut quote: Option<char> = None;
        while let Some(&ch) = c.get(j) {
            match quote {
                Some(q) if ch == q => quote = None,
                Some(_) => delim.push(ch),
                None => match ch {
                    '\'' | '"' => {
                        quoted = true;
                        quote = Some(ch);
                    }
                    '\\' => quoted = true,
                    ' ' | '\t' | '\n' | ';' | '|' | '&' | '<' | '>' | '(' | ')' => break,
                    _ => delim.push(ch),
                },
            }
            j += 1;
        }
        if !delim.is_empty() {
            self.pending.push(PendingHeredoc {
                delim,
                strip_tabs,
                quoted,
            });
        }
        self.word_start = true;
        j - i
    }
}

/// Every placeholder of `script` with its offset and the position it sits in, or the first one
/// that sits where it cannot be written safely ([`TemplateError::UnsafeInScript`]).
pub fn script_contexts(
    script: &str,
) -> Result<Vec<(Placeholder, usize, ShellContext)>, TemplateError> {
    let mut sc = Scanner::new();
    let mut out = Vec::new();
    for seg in parse(script)? {
        match seg {
            Segment::Literal(s) => sc.literal(&s),
            Segment::Placeholder {
                placeholder,
                offset,
            } => {
                match sc.context() {
                    Ok(ctx) => out.push((placeholder, offset, ctx)),
                    Err(reason) => {
                        let env = env_var_of(&placeholder);
                        return Err(TemplateError::UnsafeInScript {
                            offset,
                            placeholder,
                            reason,
                            env,
                        });
                    }
                }
                sc.placeholder();
            }
        }
    }
    Ok(out)
}

/// A rendered script: the text for the shell and the variables that carry the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRender {
    pub script: String,
    /// `(OUTPOST_TEMPLATE_<n>, value)`, one per distinct placeholder.
    pub env: Vec<(String, String)>,
}

/// Render a POSIX shell script: every placeholder becomes a reference to a variable (see the
/// module documentation), whose value `lookup` gives. A placeholder without a value is an error,
/// as in [`super::render`].
pub fn render_script(
    script: &str,
    lookup: &dyn Fn(&Placeholder) -> Option<String>,
) -> Result<ScriptRender, TemplateError> {
    let contexts = script_contexts(script)?;
    let mut names: HashMap<Placeholder, String> = HashMap::new();
    let mut env = Vec::new();
    for (p, _, _) in &contexts {
        if names.contains_key(p) {
            continue;
        }
        let Some(value) = lookup(p) else {
            return Err(TemplateError::Unresolved {
                placeholder: p.clone(),
            });
        };
        let name = format!("OUTPOST_TEMPLATE_{}", names.len() + 1);
        env.push((name.clone(), value));
        names.insert(p.clone(), name);
    }
    let mut out = String::with_capacity(script.len());
    let mut contexts = contexts.into_iter();
    for seg in parse(script)? {
        match seg {
            Segment::Literal(s) => out.push_str(&s),
            Segment::Placeholder { .. } => {
                let Some((p, _, ctx)) = contexts.next() else {
                    continue;
                };
                let name = names.get(&p).map(String::as_str).unwrap_or_default();
                match ctx {
                    ShellContext::Unquoted => out.push_str(&format!("\"${{{name}}}\"")),
                    ShellContext::DoubleQuoted | ShellContext::Heredoc => {
                        out.push_str(&format!("${{{name}}}"))
                    }
                    ShellContext::SingleQuoted => out.push_str(&format!("'\"${{{name}}}\"'")),
                }
            }
        }
    }
    Ok(ScriptRender { script: out, env })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctxs(s: &str) -> Vec<ShellContext> {
        script_contexts(s)
            .unwrap()
            .into_iter()
            .map(|(_, _, c)| c)
            .collect()
    }

    fn refused(s: &str) -> String {
        match script_contexts(s) {
            Err(e @ TemplateError::UnsafeInScript { .. }) => e.to_string(),
            other => panic!("{s:?} not refused: {other:?}"),
        }
    }

    use ShellContext::*;

    #[test]
    fn finds_the_quoting_of_each_placeholder() {
        assert_eq!(
            ctxs("echo {{ run.id }} \"a {{ run.id }}\" 'b {{ run.id }}' c{{ run.id }}"),
            [Unquoted, DoubleQuoted, SingleQuoted, Unquoted]
        );
        assert_eq!(
            ctxs("echo \"it's {{ run.id }}\" 'say \"{{ run.id }}' \\\" {{ run.id }}"),
            [DoubleQuoted, SingleQuoted, Unquoted]
        );
        assert_eq!(
            ctxs("echo \"$(echo {{ run.id }} \"{{ run.id }}\")\" {{ run.id }}"),
            [Unquoted, DoubleQuoted, Unquoted]
        );
        assert_eq!(
            ctxs("x=$(f (a) {{ run.id }}); echo \"{{ run.id }}\""),
            [Unquoted, DoubleQuoted]
        );
        // A comment's quote opens nothing.
        assert_eq!(ctxs("# it's\necho {{ run.id }}"), [Unquoted]);
        assert_eq!(ctxs("echo a#b'{{ run.id }}'"), [SingleQuoted]);
    }

    #[test]
    fn here_documents() {
        assert_eq!(
            ctxs("cat <<EOF\nit's \"{{ run.id }}\n  EOF\nEOF\necho '{{ run.id }}'"),
            [Heredoc, SingleQuoted]
        );
        assert_eq!(
            ctxs("cat <<-EOF; echo \"{{ run.id }}\"\n\tx {{ run.id }}\n\tEOF\necho {{ run.id }}"),
            [DoubleQuoted, Heredoc, Unquoted]
        );
        assert!(refused("cat <<'EOF'\n{{ run.id }}\nEOF\n").contains("quoted delimiter"));
        assert!(refused("cat <<\"E\"\n{{ run.id }}\nE\n").contains("quoted delimiter"));
        assert_eq!(ctxs("cat <<<'{{ run.id }}'"), [SingleQuoted]);
    }

    #[test]
    fn refuses_positions_without_a_safe_reference() {
        let m = refused("echo \\{{ params.site }}");
        assert!(
            m.contains("backslash") && m.contains("OUTPOST_PARAM_SITE"),
            "{m}"
        );
        assert!(refused("echo \"\\{{ run.id }}\"").contains("backslash"));
        assert!(refused("echo ${{ run.id }}").contains("`$`"));
        assert!(refused("echo ${x:-{{ run.id }}}").contains("${...}"));
        assert!(refused("echo \"${x:-{{ run.id }}}\"").contains("${...}"));
        assert!(refused("echo `echo {{ run.id }}`").contains("backquotes"));
        assert!(refused("echo $(( {{ run.id }} + 1 ))").contains("arithmetic"));
        assert!(refused("(( {{ run.id }} > 2 )) && echo").contains("arithmetic"));
        // After the arithmetic closes, positions are ordinary again.
        assert_eq!(ctxs("echo $((1+(2))) {{ run.id }}"), [Unquoted]);
        assert_eq!(ctxs("echo ${x} {{ run.id }}"), [Unquoted]);
    }

    #[test]
    fn rendered_text_does_not_depend_on_the_values() {
        let script = "echo {{ params.a }} \"x {{ params.a }}\" 'y {{ tasks.t.outputs.k }}'\ncat <<E\n{{ run.id }}\nE\n";
        let r1 = render_script(script, &|_| Some("plain".into())).unwrap();
        let r2 = render_script(script, &|_| Some("\"; id; echo '$(id)`id`\n".into())).unwrap();
        assert_eq!(r1.script, r2.script);
        assert_eq!(
            r1.script,
            "echo \"${OUTPOST_TEMPLATE_1}\" \"x ${OUTPOST_TEMPLATE_1}\" 'y '\"${OUTPOST_TEMPLATE_2}\"''\ncat <<E\n${OUTPOST_TEMPLATE_3}\nE\n"
        );
        assert_eq!(r2.env.len(), 3);
        assert_eq!(r2.env[0].0, "OUTPOST_TEMPLATE_1");
        assert_eq!(
            render_script("{{ params.x }}", &|_| None),
            Err(TemplateError::Unresolved {
                placeholder: Placeholder::Param("x".into())
            })
        );
    }

    /// The rendered script, run by the real `/bin/sh` with hostile values, prints the values
    /// exactly and runs nothing else.
    #[test]
    fn sh_prints_hostile_values_literally() {
        let values = [
            "x\"; echo INJECTED; echo \"",
            "x'; echo INJECTED; echo '",
            "$(echo INJECTED) `echo INJECTED` ${HOME} *",
            "a  b\tc\nd",
            "-n",
            "",
        ];
        for v in values {
            let script = "printf '%s|' {{ params.v }} \"{{ params.v }}\" '{{ params.v }}'\ncat <<E\n{{ params.v }}\nE\n";
            let r = render_script(script, &|_| Some(v.to_string())).unwrap();
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&r.script)
                .envs(r.env.iter().map(|(k, v)| (k, v)))
                .output()
                .unwrap();
            let got = String::from_utf8(out.stdout).unwrap();
            assert_eq!(got, format!("{v}|{v}|{v}|{v}\n"), "value {v:?}");
        }
    }
}
