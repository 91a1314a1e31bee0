//! docs/openapi.yaml and the hub's router agree: every (method, path) the router of
//! hub/src/api/ serves is described, and every described one is served. The routes are read from
//! the source of every file of the API module (each resource file declares its own; axum cannot
//! list its routes), the description from the file the hub embeds.

use std::collections::BTreeSet;

/// The source of every file of the API module, read at test time so that a new resource file is
/// checked without being listed here.
fn api_sources() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("listing hub/src/api").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// (METHOD, path) of every `.route("path", method(h).method(h))` in `src`.
fn router_routes(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find(".route(") {
        let call = &rest[at + ".route(".len()..];
        // The call's text up to its closing parenthesis.
        let mut depth = 1usize;
        let mut end = call.len();
        for (i, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &call[..end];
        let path = args
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("hub/src/api/: a .route( without a path: {args}"));
        let after = args.splitn(3, '"').nth(2).unwrap_or("");
        let mut methods = 0;
        for m in ["get", "post", "put", "delete", "patch"] {
            let mut t = after;
            while let Some(i) = t.find(&format!("{m}(")) {
                let before = t[..i].chars().last();
                if matches!(before, None | Some(',' | '.' | ' ' | '\n')) {
                    out.insert((m.to_uppercase(), path.to_string()));
                    methods += 1;
                }
                t = &t[i + m.len() + 1..];
            }
        }
        assert!(
            methods > 0,
            "hub/src/api/: no method found for route {path}: {args}"
        );
        rest = &call[end..];
    }
    out
}

/// (METHOD, path) of every operation under `paths:` in the description.
fn described_routes(spec: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in spec.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|m| m.strip_suffix(':'))
            && ["get", "post", "put", "delete", "patch"].contains(&m)
            && let Some(p) = &path
        {
            out.insert((m.to_uppercase(), p.clone()));
        } else if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_paths = false;
        }
    }
    out
}

#[test]
fn every_route_is_described_and_every_description_is_a_route() {
    let served = router_routes(&api_sources());
    let described = described_routes(outpost_hub::api::OPENAPI);
    assert!(
        served.len() > 20,
        "read only {} routes from hub/src/api/",
        served.len()
    );
    let undocumented: Vec<String> = served
        .difference(&described)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let unserved: Vec<String> = described
        .difference(&served)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "docs/openapi.yaml and the router of hub/src/api/ differ\n\
         served but not described in docs/openapi.yaml (add them under `paths:`):\n  {}\n\
         described but not served by hub/src/api/:\n  {}",
        undocumented.join("\n  "),
        unserved.join("\n  ")
    );
}

#[test]
fn the_readers_see_what_they_should() {
    let r = router_routes(
        r#".route("/a", post(x).get(y))
        .route(
            "/b/{n}",
            get(z),
        )
        .route("/c", get(show).delete(gone))"#,
    );
    let want: BTreeSet<(String, String)> = [
        ("POST", "/a"),
        ("GET", "/a"),
        ("GET", "/b/{n}"),
        ("GET", "/c"),
        ("DELETE", "/c"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(r, want);
    let d = described_routes(
        "paths:\n  /a:\n    get:\n      summary: x\n    post:\n      x: 1\ncomponents:\n  /z:\n    get:\n",
    );
    assert_eq!(
        d,
        [("GET", "/a"), ("POST", "/a")]
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect()
    );
}

/// Every route of the router is placed deliberately in `required_role` (hub/src/api/actor.rs):
/// its path is named there (the unauthenticated `/v1/health` and `/openapi.yaml` aside), so a new
/// route is given its role on purpose rather than by the fallback (admin).
#[test]
fn every_route_has_a_deliberate_role() {
    let roles = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/actor.rs"),
    )
    .expect("reading hub/src/api/actor.rs");
    let unplaced: Vec<String> = router_routes(&api_sources())
        .into_iter()
        .filter(|(_, p)| p != "/v1/health" && p != "/openapi.yaml")
        .filter(|(_, p)| !roles.contains(&format!("\"{p}\"")))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        unplaced.is_empty(),
        "routes without a role in required_role (hub/src/api/actor.rs): {unplaced:?}"
    );
}
