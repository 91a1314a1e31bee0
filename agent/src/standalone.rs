//! Standalone mode: workflows come from files in a directory, re-read when they change.
//!
//! A file that fails validation is reported (every diagnostic) and the previously loaded version
//! of that workflow, if any, keeps running: a typo saved at 3 a.m. does not stop a line's jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outpost_common::model::Workflow;
use outpost_common::workflow::{Diagnostic, Format, ValidateOptions};

fn file_diag(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        field: String::new(),
        message,
    }
}

pub struct Loaded {
    pub path: PathBuf,
    pub source: Vec<u8>,
    pub format: Format,
    pub workflow: Workflow,
}

pub struct Scan {
    pub ok: Vec<Loaded>,
    pub bad: Vec<(PathBuf, Vec<Diagnostic>)>,
}

pub fn is_workflow_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "toml")
    )
}

/// Read and validate every workflow file in `dir` (not recursive). Two files that define the same
/// workflow name: the first by path wins and the second is reported.
pub fn scan(dir: &Path, opts: &ValidateOptions) -> std::io::Result<Scan> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_workflow_file(p))
        .collect();
    paths.sort();
    let mut ok: Vec<Loaded> = Vec::new();
    let mut bad = Vec::new();
    let mut names: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let source = match std::fs::read(&path) {
            Ok(s) => s,
            Err(e) => {
                bad.push((path.clone(), vec![file_diag(&path, e.to_string())]));
                continue;
            }
        };
        let format = Format::from_path(&path);
        let text = String::from_utf8_lossy(&source);
        match outpost_common::workflow::parse(&path.display().to_string(), &text, format, opts) {
            Ok(wf) => {
                if let Some(first) = names.get(&wf.name) {
                    bad.push((
                        path.clone(),
                        vec![file_diag(
                            &path,
                            format!(
                                "workflow name `{}` is already defined by {}",
                                wf.name,
                                first.display()
                            ),
                        )],
                    ));
                    continue;
                }
                names.insert(wf.name.clone(), path.clone());
                ok.push(Loaded {
                    path,
                    source,
                    format,
                    workflow: wf,
                });
            }
            Err(d) => bad.push((path, d)),
        }
    }
    Ok(Scan { ok, bad })
}
