//! Argument parsing shared by the ops CLI's resources: `k=v` pairs (labels, selectors, run
//! parameters).

/// Parse `k=v` pairs separated by commas (`None`/empty: no pairs).
pub(crate) fn parse_kv_list(s: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(vec![]);
    };
    s.split(',').map(parse_kv).collect()
}

/// Parse one `k=v`.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_parsing() {
        assert_eq!(
            parse_kv_list(Some("site=a, role=edge")).unwrap(),
            vec![("site".into(), "a".into()), ("role".into(), "edge".into())]
        );
        assert!(parse_kv_list(Some("nope")).is_err());
        assert!(parse_kv_list(Some("=x")).is_err());
        assert!(parse_kv_list(None).unwrap().is_empty());
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
    }
}
