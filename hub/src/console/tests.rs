//! Unit tests of the console's pure parts (the HTTP flows are in hub/tests/console.rs).

use axum::http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn same_origin_takes_fetch_metadata_then_origin() {
    assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
    assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
    assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
    assert!(same_origin(&headers(&[
        ("origin", "https://hub.example:8443"),
        ("host", "hub.example:8443")
    ])));
    assert!(!same_origin(&headers(&[
        ("origin", "https://evil.example"),
        ("host", "hub.example:8443")
    ])));
    // Not a browser: the CSRF token alone decides.
    assert!(same_origin(&headers(&[("host", "hub.example")])));
}

#[test]
fn every_write_route_is_placed_in_the_role_table() {
    assert_eq!(write_role("/ui/logout"), Some(None));
    assert_eq!(
        write_role("/ui/agents/{id}/labels"),
        Some(Some(Role::Admin))
    );
    assert_eq!(write_role("/ui/something-new"), None);
    for (ui, api) in WRITES {
        assert!(ui.starts_with("/ui/"), "{ui}");
        let api = api.strip_prefix("DELETE ").unwrap_or(api);
        assert!(api.is_empty() || api.starts_with("/v1/"), "{api}");
    }
}

#[test]
fn forms_decode_and_urls_encode() {
    assert_eq!(
        url_form(b"csrf=a%2Bb&x=1+2&empty="),
        vec![
            ("csrf".to_string(), "a+b".to_string()),
            ("x".to_string(), "1 2".to_string()),
            ("empty".to_string(), String::new()),
        ]
    );
    assert_eq!(enc("a b/<c>&é"), "a%20b%2F%3Cc%3E%26%C3%A9");
    assert_eq!(ago(10_000, 10_000 - 5_000), "5 s");
    assert_eq!(ago(10_000_000, 10_000_000 - 7_200_000), "2 h");
}

#[test]
fn rollout_and_silence_writes_need_their_api_twins_roles() {
    assert_eq!(
        write_role("/ui/rollouts/{workflow}/{pool}/{command}"),
        Some(Some(Role::Deployer))
    );
    assert_eq!(
        write_role("/ui/alerts/silences"),
        Some(Some(Role::Operator))
    );
    assert_eq!(
        write_role("/ui/alerts/silences/{id}/remove"),
        Some(Some(Role::Operator))
    );
}
