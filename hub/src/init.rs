//! `outpost-hub init`: create a hub's data directory (mode 0700) with its store, intermediate
//! CA, server certificate, operator API token (all files mode 0600) and an example `hub.toml`;
//! the director key beside the data directory; and, in an OFFLINE directory that `serve` never
//! reads, the root CA key, the root keys, the release keys and the first root metadata (signed
//! by the root keys). Refuses to touch a directory that already holds a hub.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::config::{HubConfig, example_toml};
use crate::store::{Role, Store};
use outpost_common::trust::{RootBody, SigningKey, TrustedKey};
use outpost_net::pki::{Ca, chain_to_pem, create_private_file, key_to_pem};

/// Lifetime of an intermediate CA made by `init` or `ca rotate-intermediate` (two years).
pub const INTERMEDIATE_LIFETIME: std::time::Duration = outpost_net::pki::days(730);

/// The root CA certificate in the offline directory.
pub const ROOT_CA_CERT_FILE: &str = "root-ca.pem";
/// The root CA key in the offline directory.
pub const ROOT_CA_KEY_FILE: &str = "root-ca.key";

/// The default offline directory of a hub: the sibling `<data_dir>.offline` (for
/// `/var/lib/outpost-hub`, `/var/lib/outpost-hub.offline`). Move it off the hub host.
pub fn default_offline_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "outpost-hub".into());
    name.push(".offline");
    data_dir.with_file_name(name)
}

/// Default lifetime of root metadata: a year. Agents refuse new deploys once the root they
/// trust has expired (and keep running what they run), so the root keys' holders sign a new
/// version before then.
pub const DEFAULT_ROOT_DAYS: u32 = 365;

/// Load an ed25519 key file (PKCS#8, DER): the director key, a root or release key.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let bytes = fs::read(path).map_err(|e| anyhow::anyhow!("key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8(&bytes).map_err(|e| anyhow::anyhow!("key {}: {e}", path.display()))
}

/// Make a new ed25519 key and write it to `path` (PKCS#8 DER, mode 0600), refusing to overwrite
/// a file.
pub fn create_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let (key, pkcs8) = SigningKey::generate()?;
    create_private_file(path, &pkcs8)
        .map_err(|e| anyhow::anyhow!("key {}: {e}", path.display()))?;
    Ok(key)
}

/// The root and release keys `init` makes: how many, and how many must sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPlan {
    pub root_keys: u32,
    pub root_threshold: u32,
    pub release_keys: u32,
    pub release_threshold: u32,
    pub root_days: u32,
}

impl Default for KeyPlan {
    /// One root key and one release key: `dev` and a single-operator lab. A fleet uses m-of-n.
    fn default() -> Self {
        KeyPlan {
            root_keys: 1,
            root_threshold: 1,
            release_keys: 1,
            release_threshold: 1,
            root_days: DEFAULT_ROOT_DAYS,
        }
    }
}

/// The name of the first admin operator, whose credential `init` writes to the API token file.
pub const FIRST_ADMIN: &str = "admin";

/// Write an operator credential to `path` (mode 0600), replacing the file atomically (a new
/// file beside it, renamed over it).
pub fn write_credential(path: &Path, credential: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("new-{}", hex::encode(rand::random::<[u8; 4]>())));
    create_private_file(&tmp, format!("{credential}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::anyhow!("cannot replace {}: {e}", path.display())
    })
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The example config written.
    pub config: PathBuf,
    /// SHA-256 of the root CA certificate (what bootstrap tokens pin).
    pub ca_sha256: String,
    /// Id of the director key.
    pub director_key_id: String,
    /// The director key file.
    pub director_key: PathBuf,
    /// The offline directory (root keys, release keys, root metadata).
    pub offline_dir: PathBuf,
    /// Ids of the root keys and of the release keys.
    pub root_key_ids: Vec<String>,
    pub release_key_ids: Vec<String>,
    /// The file holding the first admin's operator credential (the CLI's API token).
    pub api_token_file: PathBuf,
}

/// Names every hub certificate carries besides the hub name, so that the HTTPS API can be
/// reached on the hub itself.
pub const DEFAULT_API_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// The hub's data directory holds its keys and store: make sure it is 0700 (an installer may
/// have created it 0755). Called by `init` and whenever the hub opens its data directory.
pub fn private_data_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if fs::metadata(dir)?.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Initialise a hub in `dir` for the name `hub_name`; `extra_sans` are further DNS names or IP
/// addresses the HTTPS API is reached at. The root CA key and the root and release keys (`plan`)
/// go to `offline`.
pub fn init(
    dir: &Path,
    hub_name: &str,
    extra_sans: &[String],
    offline: &Path,
    plan: KeyPlan,
) -> anyhow::Result<InitReport> {
    use anyhow::Context as _;
    if hub_name.is_empty() || hub_name.contains(char::is_whitespace) {
        anyhow::bail!("invalid hub name {hub_name:?}");
    }
    if plan.root_threshold == 0
        || plan.root_threshold > plan.root_keys
        || plan.release_threshold == 0
        || plan.release_threshold > plan.release_keys
    {
        anyhow::bail!(
            "thresholds must be between 1 and the number of keys (root {}-of-{}, release {}-of-{})",
            plan.root_threshold,
            plan.root_keys,
            plan.release_threshold,
            plan.release_keys
        );
    }
    if is_initialised(dir) {
        anyhow::bail!(
            "{} already holds a hub (hub.redb, ca.key or intermediate.key exists); refusing to overwrite",
            dir.display()
        );
    }
    let cfg = HubConfig::defaults(dir);
    if cfg.director_key.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite a director key",
            cfg.director_key.display()
        );
    }
    private_data_dir(dir)
        .with_context(|| format!("cannot create {} with mode 0700", dir.display()))?;
    private_data_dir(offline)
        .with_context(|| format!("cannot create {} with mode 0700", offline.display()))?;
    let write = |path: &Path, bytes: &[u8]| {
        create_private_file(path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };

    let root = Ca::generate(&format!("{hub_name} root CA"))?;
    write(&offline.join(ROOT_CA_KEY_FILE), root.key_pem().as_bytes())?;
    write(&offline.join(ROOT_CA_CERT_FILE), root.cert_pem().as_bytes())?;
    let ca = root.issue_intermediate(
        &format!("{hub_name} intermediate CA"),
        INTERMEDIATE_LIFETIME,
    )?;
    let mut sans: Vec<String> = DEFAULT_API_SANS.iter().map(|s| s.to_string()).collect();
    sans.extend(extra_sans.iter().cloned());
    let (chain, key) = ca.issue_server_with_sans(hub_name, &sans, cfg.server_cert_lifetime)?;
    write(&cfg.ca_cert, root.cert_pem().as_bytes())?;
    write(&cfg.intermediate_cert, ca.cert_pem().as_bytes())?;
    write(&cfg.intermediate_key, ca.key_pem().as_bytes())?;
    drop(root);
    write(&cfg.cert, chain_to_pem(&chain).as_bytes())?;
    write(&cfg.key, key_to_pem(&key).as_bytes())?;
    let director = create_signing_key(&cfg.director_key)?;

    let make = |role: &str, n: u32| -> anyhow::Result<Vec<SigningKey>> {
        (1..=n)
            .map(|i| create_signing_key(&offline.join(format!("{role}-{i}.key"))))
            .collect()
    };
    let roots = make("root", plan.root_keys)?;
    let releasers = make("release", plan.release_keys)?;
    let now = now_ms();
    let store = Store::open(&cfg.store_path())?;
    let (_, credential) =
        store.create_operator(FIRST_ADMIN, Role::Admin, Vec::new(), "init", now)?;
    write(&cfg.api_token_file, format!("{credential}\n").as_bytes())?;
    let signed = publish_first_root(&store, &roots, &releasers, &director, plan, now)?;
    write(
        &offline.join("root-v1.cbor"),
        &minicbor::to_vec(&signed).unwrap_or_default(),
    )?;
    store.audit("init", "hub.init", hub_name, "", now)?;
    drop(store);

    let config = dir.join("hub.toml");
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    write(&config, example_toml(&abs, hub_name).as_bytes())?;
    let ids = |ks: &[SigningKey]| ks.iter().map(|k| k.key_id().to_string()).collect();
    Ok(InitReport {
        data_dir: abs,
        config,
        ca_sha256: outpost_net::pki::sha256_hex(ca.root_der()),
        director_key_id: director.key_id().to_string(),
        director_key: cfg.director_key,
        offline_dir: fs::canonicalize(offline).unwrap_or_else(|_| offline.to_path_buf()),
        root_key_ids: ids(&roots),
        release_key_ids: ids(&releasers),
        api_token_file: cfg.api_token_file,
    })
}

/// Sign the first root metadata over these keys (every root key signs) and publish it in
/// `store`: `init`'s ceremony, and the start of a hub in a test.
pub fn publish_first_root(
    store: &Store,
    roots: &[SigningKey],
    releasers: &[SigningKey],
    director: &SigningKey,
    plan: KeyPlan,
    now: i64,
) -> anyhow::Result<outpost_common::trust::SignedRoot> {
    let trusted = |ks: &[SigningKey]| {
        ks.iter()
            .map(SigningKey::trusted)
            .collect::<Vec<TrustedKey>>()
    };
    let body = RootBody::first(
        &trusted(roots),
        plan.root_threshold,
        &trusted(releasers),
        plan.release_threshold,
        &director.trusted(),
        now,
        now.saturating_add(i64::from(plan.root_days) * 86_400_000),
    );
    let signed = body.sign(&roots.iter().collect::<Vec<_>>());
    store.publish_root(&signed, "init", now)?;
    Ok(signed)
}

/// Whether a data directory already holds a hub.
pub fn is_initialised(dir: &Path) -> bool {
    dir.join("hub.redb").exists()
        || dir.join("ca.key").exists()
        || dir.join("intermediate.key").exists()
}

/// The file of cross certificates: each later root CA in `ca.pem` certified by an earlier one
/// (the proof agents need before they pin it).
pub fn cross_certs_path(config: &HubConfig) -> PathBuf {
    config.data_dir.join("ca-cross.pem")
}

/// Replace `path` (mode 0600) with `bytes`: written to `<path>.new`, synced, renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    create_private_file(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot install {}", path.display()))?;
    Ok(())
}

/// What [`rotate_root`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedRoot {
    /// SHA-256 of the old root CA certificate.
    pub old_sha256: String,
    /// SHA-256 of the new one.
    pub new_sha256: String,
}

/// `outpost-hub ca rotate`: a new root CA. Its key replaces the old root's in `offline_dir`
/// (the old one is kept there as `root-ca.<sha256 prefix>.{pem,key}`); the hub's `ca.pem`
/// gains the new root (both are trust anchors) and `ca-cross.pem` the new root certified by
/// the old one. From its next start the hub sends the new root with that proof to every agent,
/// which pins it besides the old one and says so (`agent show`: pinned roots). Once every agent
/// pins it, `ca rotate-intermediate` (now signed by the new root) switches the hub's chain and
/// tokens to the new root; `ca retire` removes the old root later.
pub fn rotate_root(config: &HubConfig, offline_dir: &Path) -> anyhow::Result<RotatedRoot> {
    let old = Ca::load(
        &offline_dir.join(ROOT_CA_CERT_FILE),
        &offline_dir.join(ROOT_CA_KEY_FILE),
    )?;
    let mut anchors = outpost_net::pki::read_certs_file(&config.ca_cert, "root CA certificate")?;
    if !anchors.iter().any(|a| a.as_slice() == old.cert_der()) {
        anyhow::bail!(
            "the root CA in {} is not one of the hub's ({}): wrong offline directory?",
            offline_dir.display(),
            config.ca_cert.display()
        );
    }
    let suffix = hex::encode(rand::random::<[u8; 4]>());
    let new = Ca::generate(&format!("{} root CA {suffix}", config.hub_name))?;
    let cross = old.cross_sign(&new)?;
    // Keep the old root in the offline directory, then install the new one there.
    let old_sha = old.sha256_hex();
    let keep = |ext: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let p = offline_dir.join(format!("root-ca.{}.{ext}", &old_sha[..16]));
        if !p.exists() {
            create_private_file(&p, bytes)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
        }
        Ok(())
    };
    keep("pem", old.cert_pem().as_bytes())?;
    keep("key", old.key_pem().as_bytes())?;
    replace_file(
        &offline_dir.join(ROOT_CA_KEY_FILE),
        new.key_pem().as_bytes(),
    )?;
    replace_file(
        &offline_dir.join(ROOT_CA_CERT_FILE),
        new.cert_pem().as_bytes(),
    )?;
    // The hub: the proof first, then the new anchor.
    let crosses = cross_certs_path(config);
    let mut kept = fs::read_to_string(&crosses).unwrap_or_default();
    kept.push_str(&chain_to_pem(&[cross]));
    replace_file(&crosses, kept.as_bytes())?;
    anchors.push(new.cert_der().to_vec());
    replace_file(&config.ca_cert, chain_to_pem(&anchors).as_bytes())?;
    Ok(RotatedRoot {
        old_sha256: old_sha,
        new_sha256: new.sha256_hex(),
    })
}

/// `outpost-hub ca retire`: remove the root CA with SHA-256 `sha256` from the hub's trust
/// anchors (`ca.pem`). Refused for the root of the current intermediate and for the last root.
/// Agent certificates issued under the retired root are refused from the hub's next start:
/// retire a root once every agent has renewed from the new intermediate.
pub fn retire_root(config: &HubConfig, sha256: &str) -> anyhow::Result<()> {
    let anchors = outpost_net::pki::read_certs_file(&config.ca_cert, "root CA certificate")?;
    let sha = sha256.to_ascii_lowercase();
    let Some(pos) = anchors
        .iter()
        .position(|a| outpost_net::pki::sha256_hex(a) == sha)
    else {
        anyhow::bail!(
            "no root CA with SHA-256 {sha} in {}",
            config.ca_cert.display()
        );
    };
    let int = outpost_net::pki::read_certs_file(&config.intermediate_cert, "intermediate CA")?;
    if int
        .first()
        .is_some_and(|i| outpost_net::pki::signed_by(i, &anchors[pos]))
    {
        anyhow::bail!(
            "root {sha} signed the current intermediate CA: run `ca rotate-intermediate` with the new root first"
        );
    }
    let rest: Vec<Vec<u8>> = anchors
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .map(|(_, a)| a.clone())
        .collect();
    if rest.is_empty() {
        anyhow::bail!("refusing to retire the last root CA");
    }
    replace_file(&config.ca_cert, chain_to_pem(&rest).as_bytes())
}

/// What [`rotate_intermediate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedIntermediate {
    /// SHA-256 of the retired intermediate certificate.
    pub old_sha256: String,
    /// SHA-256 of the new one.
    pub new_sha256: String,
}

/// The file where retired intermediate certificates are kept (the hub still accepts agent
/// certificates they issued until those expire).
pub fn retired_intermediates_path(config: &HubConfig) -> PathBuf {
    config.data_dir.join("intermediates-retired.pem")
}

/// `outpost-hub ca rotate-intermediate`: the root CA (from `offline_dir`) signs a new
/// intermediate CA, which replaces the hub's. The old intermediate's certificate is kept in
/// [`retired_intermediates_path`], so agent certificates it issued keep working until they are
/// renewed. Agents pin the root: nothing changes for them. A running hub picks the new
/// intermediate up at its next start.
pub fn rotate_intermediate(
    config: &HubConfig,
    offline_dir: &Path,
) -> anyhow::Result<RotatedIntermediate> {
    use anyhow::Context as _;
    let root = Ca::load(
        &offline_dir.join(ROOT_CA_CERT_FILE),
        &offline_dir.join(ROOT_CA_KEY_FILE),
    )?;
    let pinned = outpost_net::pki::read_certs_file(&config.ca_cert, "root CA certificate")?;
    if !pinned.iter().any(|p| p.as_slice() == root.cert_der()) {
        anyhow::bail!(
            "the root CA in {} is not the hub's ({}): wrong offline directory?",
            offline_dir.display(),
            config.ca_cert.display()
        );
    }
    let old = outpost_net::pki::read_certs_file(
        &config.intermediate_cert,
        "intermediate CA certificate",
    )?;
    let name = config.hub_name.clone();
    let new = root.issue_intermediate(&format!("{name} intermediate CA"), INTERMEDIATE_LIFETIME)?;
    // Write the new files beside the old ones, keep the old certificate, then swap.
    let cert_new = config.intermediate_cert.with_extension("pem.new");
    let key_new = config.intermediate_key.with_extension("key.new");
    let _ = fs::remove_file(&cert_new);
    let _ = fs::remove_file(&key_new);
    create_private_file(&cert_new, new.cert_pem().as_bytes())
        .with_context(|| format!("cannot write {}", cert_new.display()))?;
    create_private_file(&key_new, new.key_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_new.display()))?;
    let retired = retired_intermediates_path(config);
    let mut kept = fs::read_to_string(&retired).unwrap_or_default();
    kept.push_str(&chain_to_pem(&old[..1]));
    let retired_new = retired.with_extension("pem.new");
    let _ = fs::remove_file(&retired_new);
    create_private_file(&retired_new, kept.as_bytes())
        .with_context(|| format!("cannot write {}", retired_new.display()))?;
    fs::rename(&retired_new, &retired)
        .with_context(|| format!("cannot install {}", retired.display()))?;
    fs::rename(&key_new, &config.intermediate_key)
        .with_context(|| format!("cannot install {}", config.intermediate_key.display()))?;
    fs::rename(&cert_new, &config.intermediate_cert)
        .with_context(|| format!("cannot install {}", config.intermediate_cert.display()))?;
    Ok(RotatedIntermediate {
        old_sha256: outpost_net::pki::sha256_hex(&old[0]),
        new_sha256: new.sha256_hex(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `init` with the default offline directory and key plan.
    fn init_default(dir: &Path) -> InitReport {
        init(
            dir,
            "outpost-hub",
            &[],
            &default_offline_dir(dir),
            KeyPlan::default(),
        )
        .unwrap()
    }

    #[test]
    fn init_creates_private_files_and_refuses_twice() {
        // The modes are explicit, not the umask's: 022 would leave 0755/0644.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let offline = default_offline_dir(&dir);
        let r = init(&dir, "outpost-hub", &[], &offline, KeyPlan::default()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // The root CA key is offline, never in the data directory.
        let offline = parent.path().join("hub.offline");
        assert_eq!(r.offline_dir, fs::canonicalize(&offline).unwrap());
        assert_eq!(mode(&offline), 0o700);
        assert_eq!(mode(&offline.join(ROOT_CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&offline.join(ROOT_CA_CERT_FILE)), 0o600);
        assert!(!dir.join("ca.key").exists());
        for f in [
            "ca.pem",
            "intermediate.pem",
            "intermediate.key",
            "hub.pem",
            "hub.key",
            "api.token",
            "hub.redb",
            "hub.toml",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let cfg = HubConfig::load(&r.config).unwrap();
        cfg.check_files().unwrap();
        // The token file holds the first admin's credential, which the store authenticates.
        let credential = cfg.read_api_token().unwrap();
        assert!(credential.starts_with("opo1."), "{credential}");
        let store = Store::open(&cfg.store_path()).unwrap();
        let admin = store.authenticate_operator(&credential).unwrap().unwrap();
        assert_eq!(
            (admin.name.as_str(), admin.role),
            (FIRST_ADMIN, Role::Admin)
        );
        drop(store);
        let root = Ca::load(
            &offline.join(ROOT_CA_CERT_FILE),
            &offline.join(ROOT_CA_KEY_FILE),
        )
        .unwrap();
        assert_eq!(root.sha256_hex(), r.ca_sha256);
        assert_eq!(fs::read(&cfg.ca_cert).unwrap(), root.cert_pem().as_bytes());
        // The intermediate is signed by the root; the hub's chain is leaf, intermediate, root.
        let int = Ca::load(&cfg.intermediate_cert, &cfg.intermediate_key).unwrap();
        assert!(outpost_net::pki::signed_by(int.cert_der(), root.cert_der()));
        let chain = outpost_net::pki::read_certs_file(&cfg.cert, "hub").unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[1], int.cert_der());
        assert_eq!(chain[2], root.cert_der());
        assert_eq!(
            load_signing_key(&cfg.director_key).unwrap().key_id(),
            r.director_key_id
        );
        // The director key is beside the data directory, the root and release keys offline.
        assert_eq!(cfg.director_key.parent(), dir.parent());
        assert_eq!(mode(&cfg.director_key), 0o600);
        assert_eq!(mode(&offline), 0o700);
        for f in ["root-1.key", "release-1.key", "root-v1.cbor"] {
            assert_eq!(mode(&offline.join(f)), 0o600, "{f}");
        }
        let store = Store::open(&cfg.store_path()).unwrap();
        let (_, root) = store.current_root().unwrap().unwrap();
        assert_eq!(root.version, 1);
        assert_eq!(root.root.key_ids, r.root_key_ids);
        assert_eq!(root.release.key_ids, r.release_key_ids);
        assert_eq!(root.director.key_ids, vec![r.director_key_id.clone()]);
        drop(store);
        let before = fs::read(dir.join("intermediate.key")).unwrap();
        assert!(init(&dir, "outpost-hub", &[], &offline, KeyPlan::default()).is_err());
        assert_eq!(fs::read(dir.join("intermediate.key")).unwrap(), before);
    }

    /// The hub authenticates operators from its store: once the first admin's credential is
    /// kept elsewhere, `api.token` can go and the hub still opens.
    #[test]
    fn a_hub_opens_without_the_cli_token_file() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init_default(&dir);
        fs::remove_file(&r.api_token_file).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let (hub, _) = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(hub.operators().unwrap().len(), 1);
    }

    #[test]
    fn opening_a_hub_makes_its_data_dir_private_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init_default(&dir);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let _opened = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
