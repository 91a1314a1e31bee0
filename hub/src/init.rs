//! `outpost-hub init`: create a hub's data directory (mode 0700) with its store, CA, server
//! certificate, operator API token (all files mode 0600) and an example `hub.toml`; the director
//! key beside the data directory; and, in an OFFLINE directory that `serve` never reads, the
//! root keys, the release keys and the first root metadata (signed by the root keys). Refuses to
//! touch a directory that already holds a hub.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::config::{HubConfig, example_toml};
use crate::store::{Role, Store};
use outpost_common::trust::{RootBody, SigningKey, TrustedKey};
use outpost_net::pki::{Ca, chain_to_pem, create_private_file, key_to_pem};

/// Validity of the hub's server certificate made by `init`, days (ten years).
pub const SERVER_CERT_DAYS: u32 = 3650;

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

/// The default offline directory of a data directory: `<data_dir>.offline`, beside it. Move it
/// to an offline machine (or removable media) once `init` is done.
pub fn default_offline_dir(data_dir: &Path) -> PathBuf {
    let mut s = data_dir.as_os_str().to_os_string();
    s.push(".offline");
    PathBuf::from(s)
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
    /// SHA-256 of the CA certificate (what bootstrap tokens pin).
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
/// addresses the HTTPS API is reached at. The root and release keys (`plan`) go to `offline`.
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
            "{} already holds a hub (hub.redb or ca.key exists); refusing to overwrite",
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

    let ca = Ca::generate(&format!("{hub_name} CA"))?;
    let mut sans: Vec<String> = DEFAULT_API_SANS.iter().map(|s| s.to_string()).collect();
    sans.extend(extra_sans.iter().cloned());
    let (chain, key) = ca.issue_server_with_sans(hub_name, &sans, SERVER_CERT_DAYS)?;
    write(&cfg.ca_cert, ca.cert_pem().as_bytes())?;
    write(&cfg.ca_key, ca.key_pem().as_bytes())?;
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
        ca_sha256: ca.sha256_hex(),
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
    dir.join("hub.redb").exists() || dir.join("ca.key").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for f in [
            "ca.pem",
            "ca.key",
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
        let ca = Ca::load(&cfg.ca_cert, &cfg.ca_key).unwrap();
        assert_eq!(ca.sha256_hex(), r.ca_sha256);
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
        let before = fs::read(dir.join("ca.key")).unwrap();
        assert!(init(&dir, "outpost-hub", &[], &offline, KeyPlan::default()).is_err());
        assert_eq!(fs::read(dir.join("ca.key")).unwrap(), before);
    }

    /// The hub authenticates operators from its store: once the first admin's credential is
    /// kept elsewhere, `api.token` can go and the hub still opens.
    #[test]
    fn a_hub_opens_without_the_cli_token_file() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(
            &dir,
            "outpost-hub",
            &[],
            &default_offline_dir(&dir),
            KeyPlan::default(),
        )
        .unwrap();
        fs::remove_file(&r.api_token_file).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let (hub, _) = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(hub.operators().unwrap().len(), 1);
    }

    #[test]
    fn opening_a_hub_makes_its_data_dir_private_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(
            &dir,
            "outpost-hub",
            &[],
            &default_offline_dir(&dir),
            KeyPlan::default(),
        )
        .unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let _opened = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
