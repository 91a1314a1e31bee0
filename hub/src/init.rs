//! `outpost-hub init`: create a hub's data directory (mode 0700) with its store, CA, server
//! certificate, workflow-signing key, operator API token (all files mode 0600) and an example
//! `hub.toml`. Refuses to touch a directory that already holds a hub.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::config::{HubConfig, example_toml};
use crate::store::{KeyRecord, Role, Store};
use outpost_common::sign::SigningKey;
use outpost_net::pki::{Ca, chain_to_pem, create_private_file, key_to_pem};

/// Validity of the hub's server certificate made by `init`, days (ten years).
pub const SERVER_CERT_DAYS: u32 = 3650;

/// Load the workflow-signing key file (ed25519 PKCS#8, DER).
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let bytes =
        fs::read(path).map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8(&bytes)
        .map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))
}

/// Make a new workflow-signing key and write it to `path` (PKCS#8 DER, mode 0600), refusing to
/// overwrite a file.
pub fn create_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let (key, pkcs8) = SigningKey::generate()?;
    create_private_file(path, &pkcs8)
        .map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))?;
    Ok(key)
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
    /// Id of the workflow-signing key.
    pub signing_key_id: String,
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
/// addresses the HTTPS API is reached at.
pub fn init(dir: &Path, hub_name: &str, extra_sans: &[String]) -> anyhow::Result<InitReport> {
    use anyhow::Context as _;
    if hub_name.is_empty() || hub_name.contains(char::is_whitespace) {
        anyhow::bail!("invalid hub name {hub_name:?}");
    }
    if is_initialised(dir) {
        anyhow::bail!(
            "{} already holds a hub (hub.redb, ca.key or signing.key exists); refusing to overwrite",
            dir.display()
        );
    }
    private_data_dir(dir)
        .with_context(|| format!("cannot create {} with mode 0700", dir.display()))?;
    let cfg = HubConfig::defaults(dir);
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
    let signer = create_signing_key(&cfg.signing_key)?;
    let store = Store::open(&cfg.store_path())?;
    let (_, credential) =
        store.create_operator(FIRST_ADMIN, Role::Admin, Vec::new(), "init", now_ms())?;
    write(&cfg.api_token_file, format!("{credential}\n").as_bytes())?;
    store.record_signing_key(
        KeyRecord {
            key_id: signer.key_id().to_string(),
            public_key: signer.public_key().to_vec(),
            created_ms: now_ms(),
            endorsement: None,
        },
        "init",
    )?;
    store.audit("init", "hub.init", hub_name, "", now_ms())?;
    drop(store);

    let config = dir.join("hub.toml");
    let abs = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    write(&config, example_toml(&abs, hub_name).as_bytes())?;
    Ok(InitReport {
        data_dir: abs,
        config,
        ca_sha256: ca.sha256_hex(),
        signing_key_id: signer.key_id().to_string(),
        api_token_file: cfg.api_token_file,
    })
}

/// Whether a data directory already holds a hub.
pub fn is_initialised(dir: &Path) -> bool {
    dir.join("hub.redb").exists() || dir.join("ca.key").exists() || dir.join("signing.key").exists()
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
        let r = init(&dir, "outpost-hub", &[]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for f in [
            "ca.pem",
            "ca.key",
            "hub.pem",
            "hub.key",
            "signing.key",
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
            load_signing_key(&cfg.signing_key).unwrap().key_id(),
            r.signing_key_id
        );
        let before = fs::read(dir.join("ca.key")).unwrap();
        assert!(init(&dir, "outpost-hub", &[]).is_err());
        assert_eq!(fs::read(dir.join("ca.key")).unwrap(), before);
    }

    /// The hub authenticates operators from its store: once the first admin's credential is
    /// kept elsewhere, `api.token` can go and the hub still opens.
    #[test]
    fn a_hub_opens_without_the_cli_token_file() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "outpost-hub", &[]).unwrap();
        fs::remove_file(&r.api_token_file).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let (hub, _) = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(hub.operators().unwrap().len(), 1);
    }

    #[test]
    fn opening_a_hub_makes_its_data_dir_private_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "outpost-hub", &[]).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let _opened = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}

/// What [`rotate_signing_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The key that endorsed its successor (kept as `signing.key.<id>`).
    pub old_key_id: String,
    /// The new current key.
    pub new_key_id: String,
}

/// `outpost-hub keys rotate`: make a new workflow-signing key, endorsed by the current one, and
/// make it current. The hub must be stopped (the store is opened exclusively). The old key file
/// is kept as `<signing_key>.<old id>`.
///
/// Order (crash-safe): the new key is written beside the old one, the endorsement is committed
/// to the store, then the files are swapped. A hub whose key file does not match the store's
/// current key refuses to start and says so.
pub fn rotate_signing_key(config: &HubConfig) -> anyhow::Result<Rotated> {
    use anyhow::Context as _;

    let old = load_signing_key(&config.signing_key)?;
    let store = Store::open(&config.store_path()).map_err(|e| match e {
        crate::store::StoreError::Db(outpost_common::store::DbError::AlreadyOpen { .. }) => {
            anyhow::anyhow!("the hub store is in use: stop the hub before rotating its key")
        }
        other => other.into(),
    })?;
    let current = store.signing_keys()?.last().map(|k| k.key_id.clone());
    if current.as_deref() != Some(old.key_id()) {
        anyhow::bail!(
            "{} holds key {} but the store's current key is {}; refusing to rotate",
            config.signing_key.display(),
            old.key_id(),
            current.unwrap_or_else(|| "none".into())
        );
    }
    let new_path = config.signing_key.with_extension("key.new");
    let _ = fs::remove_file(&new_path);
    let new = create_signing_key(&new_path)?;
    let now = now_ms();
    let endorsement = old.endorse(&new.public_key(), now);
    store.record_signing_key(
        KeyRecord {
            key_id: new.key_id().to_string(),
            public_key: new.public_key().to_vec(),
            created_ms: now,
            endorsement: Some(endorsement),
        },
        "keys.rotate",
    )?;
    let archive = PathBuf::from(format!("{}.{}", config.signing_key.display(), old.key_id()));
    fs::rename(&config.signing_key, &archive)
        .with_context(|| format!("cannot move the old key to {}", archive.display()))?;
    fs::rename(&new_path, &config.signing_key)
        .with_context(|| format!("cannot install {}", config.signing_key.display()))?;
    Ok(Rotated {
        old_key_id: old.key_id().to_string(),
        new_key_id: new.key_id().to_string(),
    })
}

#[cfg(test)]
mod rotate_tests {
    use super::*;
    use outpost_common::proto::KeyEndorsementBody;
    use outpost_common::sign::Trust;

    #[test]
    fn rotation_endorses_the_new_key_with_the_old_one() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "hub", &[]).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        let rot = rotate_signing_key(&cfg).unwrap();
        assert_eq!(rot.old_key_id, r.signing_key_id);
        assert_eq!(
            load_signing_key(&cfg.signing_key).unwrap().key_id(),
            rot.new_key_id
        );
        let archived = dir.join(format!("signing.key.{}", rot.old_key_id));
        let old = load_signing_key(&archived).unwrap();
        let store = Store::open(&cfg.store_path()).unwrap();
        let chain = store.key_chain_from(&rot.old_key_id).unwrap();
        assert_eq!(chain.len(), 1);
        // An agent trusting the old key follows the chain to the new one.
        let mut trust = Trust::new(&old.public_key()).unwrap();
        assert_eq!(trust.apply_chain(&chain), Ok(true));
        assert_eq!(trust.current_key_id(), rot.new_key_id);
        let body: KeyEndorsementBody = minicbor::decode(&chain[0].body_bytes).unwrap();
        assert_eq!(body.new_key_id, rot.new_key_id);
        assert_eq!(
            outpost_common::proto::key_id(&body.new_public_key),
            rot.new_key_id
        );
        // Refused while the store is open (a running hub).
        assert!(rotate_signing_key(&cfg).is_err());
        drop(store);
        // Twice: a chain of two.
        let rot2 = rotate_signing_key(&cfg).unwrap();
        assert_eq!(rot2.old_key_id, rot.new_key_id);
        let store = Store::open(&cfg.store_path()).unwrap();
        assert_eq!(store.key_chain_from(&r.signing_key_id).unwrap().len(), 2);
    }
}
