//! Redaction of secret values from a task's captured output and outputs.
//!
//! Every value the attempt received through `secret_env` is replaced by `[redacted:NAME]`. The
//! log is redacted as a stream: bytes that could be the start of a value are held back until
//! the next read decides, so a value split across two reads of the pipe is still caught.
//! Limits (docs/security.md): only the exact bytes are matched, not an encoding of them
//! (base64, hex, a value printed one character per line), and a task can always send a value
//! elsewhere; redaction keeps it out of the agent's log, not out of the task's reach.

use crate::secrets::Secret;

/// A streaming redactor (no patterns: passes bytes through).
#[derive(Default)]
pub struct Redactor {
    /// (value, replacement), longest value first (so a value that contains another wins).
    patterns: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes held back: a prefix of some value, waiting for the next chunk.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    pub fn new(secrets: &[Secret]) -> Redactor {
        let mut patterns: Vec<(Vec<u8>, Vec<u8>)> = secrets
            .iter()
            .filter(|s| !s.value.is_empty())
            .map(|s| {
                (
                    s.value.clone(),
                    format!("[redacted:{}]", s.name).into_bytes(),
                )
            })
            .collect();
        patterns.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        patterns.dedup_by(|a, b| a.0 == b.0);
        Redactor {
            patterns,
            pending: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Feed a chunk; returns what can be written now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.patterns.is_empty() {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let (out, keep) = self.scan(false);
        self.pending.drain(..keep);
        out
    }

    /// The end of the stream: whatever is held back (no value can complete any more).
    pub fn finish(&mut self) -> Vec<u8> {
        let (out, keep) = self.scan(true);
        self.pending.drain(..keep);
        let mut out = out;
        out.append(&mut self.pending);
        out
    }

    /// Redact `pending`; returns the output and how many bytes of `pending` it consumed (the
    /// rest could still become a value, unless `at_end`).
    fn scan(&self, at_end: bool) -> (Vec<u8>, usize) {
        let buf = &self.pending;
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'outer: while i < buf.len() {
            let rest = &buf[i..];
            for (value, repl) in &self.patterns {
                if rest.starts_with(value) {
                    out.extend_from_slice(repl);
                    i += value.len();
                    continue 'outer;
                }
            }
            if !at_end
                && self
                    .patterns
                    .iter()
                    .any(|(value, _)| rest.len() < value.len() && value.starts_with(rest))
            {
                // Could be the start of a value split across reads: decide on the next chunk.
                return (out, i);
            }
            out.push(buf[i]);
            i += 1;
        }
        (out, i)
    }

    /// Redact a complete string (an output value).
    pub fn redact_str(&self, s: &str) -> String {
        if self.patterns.is_empty() {
            return s.to_string();
        }
        let mut r = Redactor {
            patterns: self.patterns.clone(),
            pending: Vec::new(),
        };
        let mut out = r.push(s.as_bytes());
        out.extend(r.finish());
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &str) -> Secret {
        Secret {
            env: name.to_uppercase(),
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn run(r: &mut Redactor, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(r.push(c));
        }
        out.extend(r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_are_replaced_wherever_the_reads_split_them() {
        let secrets = [secret("plc", "hunter2"), secret("db", "s3cr3t-pa55")];
        let text = b"login hunter2 and s3cr3t-pa55; hunter2hunter2 end hunte";
        let want = "login [redacted:plc] and [redacted:db]; [redacted:plc][redacted:plc] end hunte";
        // Every split point, and every pair of split points.
        for a in 0..=text.len() {
            let mut r = Redactor::new(&secrets);
            assert_eq!(run(&mut r, &[&text[..a], &text[a..]]), want, "split at {a}");
            for b in a..=text.len() {
                let mut r = Redactor::new(&secrets);
                assert_eq!(
                    run(&mut r, &[&text[..a], &text[a..b], &text[b..]]),
                    want,
                    "split at {a},{b}"
                );
            }
        }
        // One byte at a time.
        let mut r = Redactor::new(&secrets);
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&mut r, &bytes), want);
    }

    #[test]
    fn a_value_at_a_16k_read_boundary() {
        let secrets = [secret("k", "ABCDEFGH")];
        let mut data = vec![b'x'; 16 * 1024 - 3];
        data.extend_from_slice(b"ABCDEFGH\n");
        let (a, b) = data.split_at(16 * 1024);
        let mut r = Redactor::new(&secrets);
        let out = run(&mut r, &[a, b]);
        assert!(
            out.ends_with("x[redacted:k]\n"),
            "{}",
            &out[out.len() - 20..]
        );
        assert!(!out.contains("ABC"));
    }

    #[test]
    fn overlapping_values_and_held_back_prefixes() {
        let secrets = [secret("short", "abc"), secret("long", "abcdef")];
        let mut r = Redactor::new(&secrets);
        assert_eq!(
            run(&mut r, &[b"xabcdefy abcz ab"]),
            "x[redacted:long]y [redacted:short]z ab"
        );
        // A held-back prefix that turns out not to be a value is written unchanged.
        let mut r = Redactor::new(&secrets);
        let first = r.push(b"1 ab");
        assert_eq!(first, b"1 ");
        assert_eq!(r.push(b"x"), b"abx");
        assert_eq!(
            Redactor::new(&secrets).redact_str("v=abcdef"),
            "v=[redacted:long]"
        );
        assert_eq!(Redactor::new(&[]).push(b"abc"), b"abc");
    }
}
