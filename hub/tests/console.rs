//! The web console over HTTP: sign-in and sessions, the write guard (CSRF token, origin, role),
//! escaping, languages, security headers. Pages' own tests: console_*.rs.
#![allow(clippy::unwrap_used)]

mod common;

use common::console::{Browser, ConsoleHarness};
use outpost_hub::store::Role;

#[test]
fn pages_need_a_session_and_sign_in_sets_a_strict_cookie() {
    let h = ConsoleHarness::new();
    let anon = Browser::new(&h.url);
    let r = anon.get("/ui/fleet?pool=x");
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location.as_deref(),
        Some("/ui/login?next=%2Fui%2Ffleet%3Fpool%3Dx")
    );
    assert_eq!(anon.get("/").location.as_deref(), Some("/ui/"));
    let login = anon.get("/ui/login?next=%2Fui%2Ffleet");
    assert_eq!(login.status, 200);
    assert!(login.body.contains("id=\"credential\""), "{}", login.body);

    // A wrong or unknown credential: refused, no cookie.
    for bad in ["opo1.0000000000000000.nope", "garbage", ""] {
        let r = anon.post_form("/ui/login", &[("credential", bad)], false);
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.set_cookies.is_empty());
        assert!(
            r.body.contains("Unknown or revoked credential"),
            "{}",
            r.body
        );
    }
    // The right one: a session cookie, HttpOnly and SameSite=Strict (not Secure over HTTP), and
    // back to where the operator was going (only console paths are followed).
    let r = anon.post_form(
        "/ui/login",
        &[("credential", &h.admin), ("next", "/ui/fleet?state=online")],
        false,
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/ui/fleet?state=online"));
    let cookie = r.set_cookies.join("\n");
    assert!(cookie.starts_with("outpost_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let r = anon.post_form(
        "/ui/login",
        &[("credential", &h.admin), ("next", "https://evil.example/")],
        false,
    );
    assert_eq!(r.location.as_deref(), Some("/ui/fleet"));

    let b = h.browser(&h.admin);
    let fleet = b.get("/ui/fleet");
    assert_eq!(fleet.status, 200);
    assert!(fleet.body.contains("root (admin)"), "{}", fleet.body);
    let csp = fleet.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(fleet.header("x-frame-options"), Some("DENY"));
    assert_eq!(fleet.header("cache-control"), Some("no-store"));
    // The store keeps the session's hash, never its secret.
    let bytes = std::fs::read(h.dir.path().join("hub.redb")).unwrap();
    assert!(
        !bytes
            .windows(b.session.len())
            .any(|w| w == b.session.as_bytes()),
        "the session secret is in the store"
    );
    // Sign-in is audited.
    let audit: Vec<serde_json::Value> = h.api().get("/v1/audit", &[]).unwrap();
    assert!(
        audit.iter().any(|e| e["action"] == "console.signin"),
        "{audit:?}"
    );
}

#[test]
fn over_https_the_session_cookie_is_secure() {
    let h = ConsoleHarness::with_secure(true);
    let r = Browser::new(&h.url).post_form("/ui/login", &[("credential", &h.admin)], false);
    assert_eq!(r.status, 303);
    assert!(
        r.set_cookies.join("").contains("; Secure"),
        "{:?}",
        r.set_cookies
    );
}

#[test]
fn signing_out_or_revoking_the_credential_ends_the_session() {
    let h = ConsoleHarness::new();
    let viewer = h.operator("vera", Role::Viewer, &[]);
    let b = h.browser(&viewer);
    assert_eq!(b.get("/ui/fleet").status, 200);
    h.hub.revoke_operator("root", "vera").unwrap();
    assert_eq!(b.get("/ui/fleet").status, 303, "revoked: back to sign-in");

    let b = h.browser(&h.admin);
    let r = b.post_form("/ui/logout", &[], true);
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/ui/login"));
    assert!(r.set_cookies.join("").contains("Max-Age=0"));
    assert_eq!(b.get("/ui/fleet").status, 303, "signed out");
    let audit: Vec<serde_json::Value> = h.api().get("/v1/audit", &[]).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "console.signout" && e["actor"] == "root"),
        "{audit:?}"
    );
}

#[test]
fn writes_need_the_sessions_token_our_origin_and_the_role() {
    let h = ConsoleHarness::new();
    common::enroll(&h.store, "a1", vec![("site".into(), "berlin".into())]);
    let b = h.browser(&h.admin);
    let labels = |v: &str| vec![("labels".to_string(), v.to_string())];
    // No token, a wrong token, another site's origin: refused, nothing changed.
    let r = b.post_raw("/ui/agents/a1/labels", &labels("site=paris"), Some(&h.url));
    assert_eq!(r.status, 403, "{}", r.body);
    let mut forged = labels("site=paris");
    forged.push(("csrf".into(), "0".repeat(64)));
    assert_eq!(
        b.post_raw("/ui/agents/a1/labels", &forged, Some(&h.url))
            .status,
        403
    );
    let mut good = labels("site=paris");
    good.push(("csrf".into(), b.csrf()));
    assert_eq!(
        b.post_raw("/ui/agents/a1/labels", &good, Some("https://evil.example"))
            .status,
        403
    );
    assert_eq!(
        h.hub.agent("a1").unwrap().labels,
        vec![("site".to_string(), "berlin".to_string())]
    );
    // Another session's token does not work either.
    let other = h.browser(&h.admin);
    let mut theirs = labels("site=paris");
    theirs.push(("csrf".into(), other.csrf()));
    assert_eq!(
        b.post_raw("/ui/agents/a1/labels", &theirs, Some(&h.url))
            .status,
        403
    );
    // The page's own form: done, and back to the page with a notice.
    let r = b.post_form(
        "/ui/agents/a1/labels",
        &[("labels", "site=paris, line=3")],
        true,
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.location
            .as_deref()
            .unwrap()
            .starts_with("/ui/agents/a1?done=")
    );
    assert_eq!(
        h.hub.agent("a1").unwrap().labels,
        vec![
            ("line".to_string(), "3".to_string()),
            ("site".to_string(), "paris".to_string())
        ]
    );

    // A viewer sees no form for it, and the server refuses it anyway (audited).
    let viewer = h.operator("vera", Role::Viewer, &[]);
    let v = h.browser(&viewer);
    let page = v.get("/ui/agents/a1");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/labels\""), "{}", page.body);
    let r = v.post_form("/ui/agents/a1/labels", &[("labels", "site=x")], true);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("needs role admin"), "{}", r.body);
    assert_eq!(h.hub.agent("a1").unwrap().labels.len(), 2);
    let audit: Vec<serde_json::Value> = h.api().get("/v1/audit", &[]).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "access.denied" && e["actor"] == "vera"),
        "{audit:?}"
    );
}

#[test]
fn values_from_agents_are_shown_as_text() {
    let h = ConsoleHarness::new();
    let mut rec = common::agent_record("a1", vec![]);
    rec.hostname = "<script>alert(1)</script>".into();
    let (tid, secret) = h.store.create_token(vec![], i64::MAX, "t", 0).unwrap();
    h.store.enroll(&tid, &secret, rec, 1).unwrap();
    let b = h.browser(&h.admin);
    for path in ["/ui/fleet?q=%3Cscript", "/ui/agents/a1"] {
        let page = b.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
    }
    let page = b.get("/ui/agents/a1");
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn the_language_follows_the_browser_and_the_switch() {
    let h = ConsoleHarness::new();
    let mut b = h.browser(&h.admin);
    assert!(b.get("/ui/fleet").body.contains("<html lang=\"en\">"));
    let r = b.post_form(
        "/ui/lang",
        &[("lang", "zh-CN"), ("back", "/ui/fleet")],
        false,
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/ui/fleet"));
    let lang = r.set_cookies.join("");
    assert!(lang.starts_with("outpost_lang=zh-CN"), "{lang}");
    b.cookies.push("outpost_lang=zh-CN".into());
    let page = b.get("/ui/fleet");
    assert!(page.body.contains("<html lang=\"zh-CN\">"));
    assert!(page.body.contains("设备群"), "{}", page.body);
    // Cross-site language switching is refused too.
    let r = b.post_raw(
        "/ui/lang",
        &[("lang".into(), "en".into())],
        Some("https://evil.example"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn the_fleet_shows_state_drift_and_filters() {
    let h = ConsoleHarness::new();
    common::enroll(&h.store, "a1", vec![("site".into(), "berlin".into())]);
    common::enroll(&h.store, "a2", vec![("site".into(), "paris".into())]);
    let b = h.browser(&h.admin);
    let page = b.get("/ui/fleet");
    assert!(page.body.contains("data-agent=\"a1\""));
    assert!(page.body.contains("data-agent=\"a2\""));
    // Never connected: stale.
    assert!(page.body.contains("badge s-stale"), "{}", page.body);
    let page = b.get("/ui/fleet?label=site%3Dparis");
    assert!(!page.body.contains("data-agent=\"a1\""));
    assert!(page.body.contains("data-agent=\"a2\""));
    let page = b.get("/ui/fleet?state=online");
    assert!(!page.body.contains("data-agent=\"a1\""));
    // Page weight: small enough for a factory link.
    assert!(page.body.len() < 300 * 1024);
}
