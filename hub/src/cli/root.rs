//! `root ...` and `key ...`: the root metadata ceremony. `key generate` makes a key (offline);
//! `root show` reads the current root (online, `--out` saves its signed form); `root next`
//! writes the next version with changed keys, thresholds or expiry (offline, unsigned); `root
//! sign` adds one root key's signature (offline; a rotation needs the old root threshold AND
//! the new one); `root publish` uploads it (online): the hub checks it and agents follow it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use outpost_common::trust::{Role, SignedRoot, TrustedKey};

use super::conn::{ConnOpts, client};
use super::output::{CliError, CliResult, Output, print_json};
use crate::views::{RootPublishRequest, RootView};

/// `key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Make an ed25519 key: FILE (PKCS#8 DER, mode 0600, keep it offline) and FILE.pub (the
    /// public key, hex: what goes into root metadata).
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
}

/// `root ...`
#[derive(Debug, Subcommand)]
pub enum RootCmd {
    /// The current root metadata: version, expiry, the keys of each role.
    Show {
        /// Also write its signed form (CBOR) to this file (the input of `root next`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the next root version (unsigned) from the current one (offline).
    Next {
        /// The current signed root (`root show --out`, or `root-v1.cbor` from init).
        #[arg(long)]
        current: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Add a key to a role: ROLE=PUBFILE (a `.pub` from `key generate`) or ROLE=HEX.
        /// Roles: root, release, director. Repeatable.
        #[arg(long = "add")]
        add: Vec<String>,
        /// Take a key out of a role: ROLE=KEYID. Repeatable.
        #[arg(long = "remove")]
        remove: Vec<String>,
        /// A role's new threshold: ROLE=N. Repeatable.
        #[arg(long = "threshold")]
        threshold: Vec<String>,
        /// Days until the new version expires.
        #[arg(long, default_value_t = crate::init::DEFAULT_ROOT_DAYS)]
        expires_days: u32,
        /// Agents that accept this version forget their assignment epochs and highest
        /// versions: the recovery from a fast-forward (a stolen key that signed u64::MAX).
        #[arg(long)]
        reset_counters: bool,
    },
    /// Add a root key's signature to FILE (offline).
    Sign {
        file: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Upload a signed next root version to the hub.
    Publish { file: PathBuf },
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Fail(e.to_string())
}

/// `key ...`
pub(super) fn key(conn: &ConnOpts, cmd: KeyCmd) -> CliResult {
    match cmd {
        KeyCmd::Generate { out } => {
            let k = crate::init::create_signing_key(&out).map_err(|e| fail(format!("{e:#}")))?;
            let pub_path = PathBuf::from(format!("{}.pub", out.display()));
            std::fs::write(&pub_path, format!("{}\n", hex::encode(k.public_key())))
                .map_err(|e| fail(format!("{}: {e}", pub_path.display())))?;
            if conn.output == Output::Json {
                print_json(&serde_json::json!({
                    "key_id": k.key_id(), "key": out, "public_key": hex::encode(k.public_key()),
                }))?;
            } else {
                println!(
                    "key {} written to {} (public key in {})",
                    k.key_id(),
                    out.display(),
                    pub_path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_root(path: &Path) -> Result<SignedRoot, CliError> {
    let bytes = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    minicbor::decode(&bytes)
        .map_err(|e| fail(format!("{}: not root metadata: {e}", path.display())))
}

fn write_root(path: &Path, r: &SignedRoot) -> Result<(), CliError> {
    std::fs::write(path, minicbor::to_vec(r).unwrap_or_default())
        .map_err(|e| fail(format!("{}: {e}", path.display())))
}

fn role(name: &str) -> Result<Role, CliError> {
    match name {
        "root" => Ok(Role::Root),
        "release" => Ok(Role::Release),
        "director" => Ok(Role::Director),
        o => Err(CliError::Usage(format!(
            "unknown role {o:?} (root, release, director)"
        ))),
    }
}

fn split(arg: &str) -> Result<(&str, &str), CliError> {
    arg.split_once('=')
        .ok_or_else(|| CliError::Usage(format!("expected ROLE=VALUE, got {arg:?}")))
}

fn public_key(v: &str) -> Result<TrustedKey, CliError> {
    let text = if Path::new(v).exists() {
        std::fs::read_to_string(v).map_err(|e| fail(format!("{v}: {e}")))?
    } else {
        v.to_string()
    };
    let bytes = hex::decode(text.trim())
        .map_err(|_| CliError::Usage(format!("{v}: not a hex public key or a .pub file")))?;
    TrustedKey::new(&bytes).map_err(fail)
}

/// `root ...`
pub(super) fn root(conn: &ConnOpts, cmd: RootCmd) -> CliResult {
    let output = conn.output;
    match cmd {
        RootCmd::Show { out } => {
            let v: RootView = client(conn)?.get("/v1/root", &[])?;
            if let Some(out) = out {
                let bytes = hex::decode(&v.signed_hex).map_err(|_| fail("the hub sent bad hex"))?;
                std::fs::write(&out, bytes).map_err(|e| fail(format!("{}: {e}", out.display())))?;
            }
            if output == Output::Json {
                print_json(&v)?;
            } else {
                println!(
                    "root metadata v{} (issued {}, expires {})",
                    v.version, v.issued, v.expires
                );
                for (name, r) in [
                    ("root", &v.root),
                    ("release", &v.release),
                    ("director", &v.director),
                ] {
                    println!(
                        "  {name:<9} {}-of-{}: {}",
                        r.threshold,
                        r.key_ids.len(),
                        r.key_ids.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCmd::Next {
            current,
            out,
            add,
            remove,
            threshold,
            expires_days,
            reset_counters,
        } => {
            let cur = read_root(&current)?.body_unverified().map_err(fail)?;
            let now = crate::clock::now_ms();
            let mut next = cur.successor(
                now,
                now.saturating_add(i64::from(expires_days) * 86_400_000),
            );
            next.reset_counters = reset_counters;
            for a in &remove {
                let (r, id) = split(a)?;
                let k = next
                    .keys
                    .iter()
                    .find(|k| k.key_id == id)
                    .cloned()
                    .ok_or_else(|| {
                        CliError::Usage(format!("no key {id} in root v{}", cur.version))
                    })?;
                next.set_key(role(r)?, &k, false);
            }
            for a in &add {
                let (r, v) = split(a)?;
                next.set_key(role(r)?, &public_key(v)?, true);
            }
            for t in &threshold {
                let (r, n) = split(t)?;
                let n: u32 = n
                    .parse()
                    .map_err(|_| CliError::Usage(format!("bad threshold {t:?}")))?;
                match role(r)? {
                    Role::Root => next.root.threshold = n,
                    Role::Release => next.release.threshold = n,
                    Role::Director => next.director.threshold = n,
                }
            }
            next.check().map_err(fail)?;
            write_root(&out, &next.sign(&[]))?;
            if output == Output::Json {
                print_json(&serde_json::json!({"version": next.version, "file": out}))?;
            } else {
                println!(
                    "root metadata v{} written to {} (unsigned): sign it with `root sign` by {} of the v{} root keys and {} of its own",
                    next.version,
                    out.display(),
                    cur.root.threshold,
                    cur.version,
                    next.root.threshold
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCmd::Sign { file, key } => {
            let mut r = read_root(&file)?;
            let body = r.body_unverified().map_err(fail)?;
            let k = crate::init::load_signing_key(&key).map_err(|e| fail(format!("{e:#}")))?;
            r.add_signature(&k);
            write_root(&file, &r)?;
            if output == Output::Json {
                print_json(
                    &serde_json::json!({"version": body.version, "key_id": k.key_id(), "signatures": r.signatures.len()}),
                )?;
            } else {
                println!(
                    "root metadata v{}: signed by {} ({} signature(s))",
                    body.version,
                    k.key_id(),
                    r.signatures.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RootCmd::Publish { file } => {
            let r = read_root(&file)?;
            let v: RootView = client(conn)?.post(
                "/v1/root",
                &RootPublishRequest {
                    signed_hex: hex::encode(minicbor::to_vec(&r).unwrap_or_default()),
                },
            )?;
            if output == Output::Json {
                print_json(&v)?;
            } else {
                println!(
                    "root metadata v{} published; agents follow it at once",
                    v.version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
