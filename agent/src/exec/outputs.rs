//! Parsing of the `$OUTPOST_OUTPUT` file (`outputs.env`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The most bytes of `outputs.env` that are read; the rest is ignored (with a warning).
pub const OUTPUTS_MAX_BYTES: u64 = 64 * 1024;

/// Outputs a task declared, plus warnings about lines that were ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedOutputs {
    /// `(key, value)` in order of first appearance; a repeated key keeps its last value.
    pub outputs: Vec<(String, String)>,
    /// One human-readable line per ignored line or other problem.
    pub warnings: Vec<String>,
}

/// Is `key` a valid output key (`[A-Za-z_][A-Za-z0-9_]*`)?
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse `key=value` lines. Blank lines and lines starting with `#` (after leading whitespace)
/// are ignored; the value is everything after the first `=` (a trailing `\r` is removed);
/// malformed lines are skipped and reported in [`ParsedOutputs::warnings`].
pub fn parse_outputs(text: &str) -> ParsedOutputs {
    let mut parsed = ParsedOutputs::default();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lineno = idx + 1;
        let Some((key, value)) = line.split_once('=') else {
            parsed.warnings.push(format!(
                "outputs line {lineno} ignored: no '=' (expected key=value)"
            ));
            continue;
        };
        if !is_valid_key(key) {
            parsed.warnings.push(format!(
                "outputs line {lineno} ignored: invalid key {key:?} (expected [A-Za-z_][A-Za-z0-9_]*)"
            ));
            continue;
        }
        match parsed.outputs.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => parsed.outputs.push((key.to_string(), value.to_string())),
        }
    }
    parsed
}

/// Replace the task's outputs file (if it left one) with `outputs` as `key=value` lines: used
/// when its values were redacted, so no secret stays on disk there. The new file is the agent's
/// (0600, created beside it and renamed over the path, which replaces a symlink the task may
/// have planted rather than writing through it).
pub fn rewrite(path: &Path, outputs: &[(String, String)]) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".redacted");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = crate::private_fs::file_options()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let mut text = String::new();
    for (k, v) in outputs {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Read and parse an outputs file, reading at most [`OUTPUTS_MAX_BYTES`]. A missing file yields
/// no outputs (the task may have deleted it); non-UTF-8 bytes are replaced.
pub fn read_outputs(path: &Path) -> ParsedOutputs {
    // The task owns this file: do not follow a symlink it planted, and never block on a FIFO.
    let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path);
    let file = match opened.and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ))
        }
    }) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ParsedOutputs::default(),
        Err(e) => {
            return ParsedOutputs {
                outputs: Vec::new(),
                warnings: vec![format!("outputs file {} unreadable: {e}", path.display())],
            };
        }
    };
    let mut bytes = Vec::new();
    // Read one byte past the cap to learn whether the file was longer.
    if let Err(e) = file.take(OUTPUTS_MAX_BYTES + 1).read_to_end(&mut bytes) {
        return ParsedOutputs {
            outputs: Vec::new(),
            warnings: vec![format!("outputs file {} unreadable: {e}", path.display())],
        };
    }
    let mut truncated = false;
    if bytes.len() as u64 > OUTPUTS_MAX_BYTES {
        truncated = true;
        bytes.truncate(OUTPUTS_MAX_BYTES as usize);
        // Drop the partial last line.
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(pos) => bytes.truncate(pos + 1),
            None => bytes.clear(),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut parsed = parse_outputs(&text);
    if truncated {
        parsed.warnings.push(format!(
            "outputs file larger than {OUTPUTS_MAX_BYTES} bytes: only the first {} bytes were read",
            bytes.len()
        ));
    }
    parsed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_comments_blanks_and_duplicates() {
        let p = parse_outputs("a=1\n\n# comment\n  # indented comment\nb=x=y\r\na=2\n_k9=\n");
        assert_eq!(
            p.outputs,
            vec![
                ("a".to_string(), "2".to_string()),
                ("b".to_string(), "x=y".to_string()),
                ("_k9".to_string(), String::new())
            ]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn invalid_lines_are_skipped_with_warnings() {
        let p = parse_outputs("novalue\n9a=1\nok=1\nbad key=2\n=3\n");
        assert_eq!(p.outputs, vec![("ok".to_string(), "1".to_string())]);
        assert_eq!(p.warnings.len(), 4, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("line 1"));
        assert!(p.warnings[1].contains("line 2") && p.warnings[1].contains("\"9a\""));
    }

    #[test]
    fn key_validation() {
        for k in ["a", "_", "A_1", "abc_DEF"] {
            assert!(is_valid_key(k), "{k}");
        }
        for k in ["", "1a", "a-b", "a b", "é"] {
            assert!(!is_valid_key(k), "{k}");
        }
    }

    #[test]
    fn oversized_file_is_capped_at_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outputs.env");
        let mut text = String::from("first=1\n");
        while text.len() < (OUTPUTS_MAX_BYTES as usize) + 100 {
            text.push_str("filler=0123456789\n");
        }
        text.push_str("last=never\n");
        std::fs::write(&path, &text).unwrap();
        let p = read_outputs(&path);
        assert!(p.outputs.iter().any(|(k, v)| k == "first" && v == "1"));
        assert!(!p.outputs.iter().any(|(k, _)| k == "last"));
        assert!(
            p.warnings.iter().any(|w| w.contains("larger than")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn fifo_and_symlink_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let p = read_outputs(&fifo);
        assert!(p.outputs.is_empty());
        assert!(
            p.warnings[0].contains("not a regular file"),
            "{:?}",
            p.warnings
        );

        let target = dir.path().join("target");
        std::fs::write(&target, "k=v\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let p = read_outputs(&link);
        assert!(p.outputs.is_empty());
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert_eq!(
            read_outputs(&target).outputs,
            vec![("k".to_string(), "v".to_string())]
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_outputs(&dir.path().join("nope")),
            ParsedOutputs::default()
        );
    }
}
