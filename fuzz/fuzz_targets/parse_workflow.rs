//! Feed arbitrary UTF-8 to the workflow parser in both formats. `parse` must never panic, and an
//! error must carry at least one diagnostic with a 1-based position.
//!
//! Run with `cargo +nightly fuzz run parse_workflow` from the repository root (or `fuzz/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_common::workflow::{Format, ValidateOptions, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let checked = ValidateOptions {
        known_resources: Some(["bus".to_string()].into()),
    };
    for format in [Format::Yaml, Format::Toml] {
        for opts in [&ValidateOptions::default(), &checked] {
            if let Err(diags) = parse("fuzz", source, format, opts) {
                assert!(!diags.is_empty(), "Err without diagnostics");
                for d in &diags {
                    assert!(d.line >= 1 && d.column >= 1, "bad position: {d:?}");
                }
            }
        }
    }
});
