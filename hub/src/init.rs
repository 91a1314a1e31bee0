//! `outpost-hub init`: create a hub's data directory (mode 0700) with its store, intermediate
//! CA, server certificate, workflow-signing key, operator API token (all files mode 0600) and an
//! example `hub.toml`, and its offline directory with the root CA key (which `serve` never
//! reads). Refuses to touch a directory that already holds a hub.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::clock::now_ms;
use crate::config::{HubConfig, example_toml};
use crate::store::{KeyRecord, Store};
use outpost_common::sign::SigningKey;
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

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The example config written.
    pub config: PathBuf,
    /// SHA-256 of the root CA certificate (what bootstrap tokens pin).
    pub ca_sha256: String,
    /// The offline directory (the root CA key).
    pub offline_dir: PathBuf,
    /// Id of the workflow-signing key.
    pub signing_key_id: String,
    /// The operator API token file.
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
/// addresses the HTTPS API is reached at. The root CA key goes to `offline_dir` (default
/// [`default_offline_dir`]).
pub fn init(
    dir: &Path,
    hub_name: &str,
    extra_sans: &[String],
    offline_dir: Option<&Path>,
) -> anyhow::Result<InitReport> {
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

    let offline = offline_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_offline_dir(dir));
    private_data_dir(&offline)
        .with_context(|| format!("cannot create {} with mode 0700", offline.display()))?;
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
    let signer = create_signing_key(&cfg.signing_key)?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    write(&cfg.api_token_file, format!("{token}\n").as_bytes())?;

    let store = Store::open(&cfg.store_path())?;
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
        ca_sha256: outpost_net::pki::sha256_hex(ca.root_der()),
        offline_dir: fs::canonicalize(&offline).unwrap_or(offline),
        signing_key_id: signer.key_id().to_string(),
        api_token_file: cfg.api_token_file,
    })
}

/// Whether a data directory already holds a hub.
pub fn is_initialised(dir: &Path) -> bool {
    dir.join("hub.redb").exists()
        || dir.join("ca.key").exists()
        || dir.join("intermediate.key").exists()
        || dir.join("signing.key").exists()
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

    #[test]
    fn init_creates_private_files_and_refuses_twice() {
        // The modes are explicit, not the umask's: 022 would leave 0755/0644.
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "outpost-hub", &[], None).unwrap();
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
            "signing.key",
            "api.token",
            "hub.redb",
            "hub.toml",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let cfg = HubConfig::load(&r.config).unwrap();
        cfg.check_files().unwrap();
        assert_eq!(cfg.read_api_token().unwrap().len(), 64);
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
            load_signing_key(&cfg.signing_key).unwrap().key_id(),
            r.signing_key_id
        );
        let before = fs::read(dir.join("intermediate.key")).unwrap();
        assert!(init(&dir, "outpost-hub", &[], None).is_err());
        assert_eq!(fs::read(dir.join("intermediate.key")).unwrap(), before);
    }

    #[test]
    fn opening_a_hub_makes_its_data_dir_private_again() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "outpost-hub", &[], None).unwrap();
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
        let r = init(&dir, "hub", &[], None).unwrap();
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

#[cfg(test)]
mod intermediate_tests {
    use super::*;

    #[test]
    fn default_offline_dir_is_the_sibling() {
        assert_eq!(
            default_offline_dir(Path::new("/var/lib/outpost-hub")),
            PathBuf::from("/var/lib/outpost-hub.offline")
        );
        assert_eq!(
            default_offline_dir(Path::new("/var/lib/outpost-hub/")),
            PathBuf::from("/var/lib/outpost-hub.offline")
        );
    }

    #[test]
    fn rotate_intermediate_needs_the_root_and_keeps_the_old_certificate() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let offline = parent.path().join("keys");
        let r = init(&dir, "hub", &[], Some(&offline)).unwrap();
        assert!(!parent.path().join("hub.offline").exists());
        let cfg = HubConfig::load(&r.config).unwrap();
        let before = Ca::load(&cfg.intermediate_cert, &cfg.intermediate_key).unwrap();
        // A foreign offline directory is refused, and nothing changes.
        let other = parent.path().join("other");
        init(&parent.path().join("hub2"), "hub", &[], Some(&other)).unwrap();
        assert!(rotate_intermediate(&cfg, &other).is_err());
        assert!(rotate_intermediate(&cfg, &parent.path().join("missing")).is_err());
        assert_eq!(
            Ca::load(&cfg.intermediate_cert, &cfg.intermediate_key)
                .unwrap()
                .cert_der(),
            before.cert_der()
        );
        let rot = rotate_intermediate(&cfg, &offline).unwrap();
        assert_eq!(rot.old_sha256, before.sha256_hex());
        let after = Ca::load(&cfg.intermediate_cert, &cfg.intermediate_key).unwrap();
        assert_eq!(rot.new_sha256, after.sha256_hex());
        assert_ne!(rot.new_sha256, rot.old_sha256);
        let retired =
            outpost_net::pki::read_certs_file(&retired_intermediates_path(&cfg), "retired")
                .unwrap();
        assert_eq!(retired, vec![before.cert_der().to_vec()]);
        // Still signed by the same root: the pinned hash is unchanged.
        let root = outpost_net::pki::read_certs_file(&cfg.ca_cert, "root").unwrap();
        assert!(outpost_net::pki::signed_by(after.cert_der(), &root[0]));
        assert_eq!(outpost_net::pki::sha256_hex(&root[0]), r.ca_sha256);
    }

    #[test]
    fn rotate_root_adds_a_proven_anchor_and_retire_removes_it_in_order() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("hub");
        let r = init(&dir, "hub", &[], None).unwrap();
        let cfg = HubConfig::load(&r.config).unwrap();
        assert!(crate::certs::ca_roots(&cfg).unwrap().is_empty());
        let rot = rotate_root(&cfg, &r.offline_dir).unwrap();
        assert_eq!(rot.old_sha256, r.ca_sha256);
        let anchors = outpost_net::pki::read_certs_file(&cfg.ca_cert, "roots").unwrap();
        assert_eq!(anchors.len(), 2);
        // The old root is kept offline; the new one is the offline root now.
        let kept = r
            .offline_dir
            .join(format!("root-ca.{}.key", &rot.old_sha256[..16]));
        assert!(kept.exists());
        let new_root = Ca::load(
            &r.offline_dir.join(ROOT_CA_CERT_FILE),
            &r.offline_dir.join(ROOT_CA_KEY_FILE),
        )
        .unwrap();
        assert_eq!(new_root.sha256_hex(), rot.new_sha256);
        // What agents get: the new root with a proof from the old one.
        let roots = crate::certs::ca_roots(&cfg).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].cert_der, new_root.cert_der());
        assert!(outpost_net::pki::proves_successor(
            &roots[0].cert_der,
            &roots[0].cross_der,
            &[anchors[0].clone()]
        ));
        // The old root signs the intermediate: not retired yet.
        assert!(retire_root(&cfg, &rot.old_sha256).is_err());
        assert!(retire_root(&cfg, &"ab".repeat(32)).is_err());
        rotate_intermediate(&cfg, &r.offline_dir).unwrap();
        let (hub, _) = crate::hub::Hub::open(&cfg, std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(hub.ca_sha256_hex(), rot.new_sha256);
        drop(hub);
        retire_root(&cfg, &rot.old_sha256).unwrap();
        let anchors = outpost_net::pki::read_certs_file(&cfg.ca_cert, "roots").unwrap();
        assert_eq!(anchors, vec![new_root.cert_der().to_vec()]);
        // The last root stays.
        assert!(retire_root(&cfg, &rot.new_sha256).is_err());
        // No proof left to send (its signer is gone).
        assert!(crate::certs::ca_roots(&cfg).unwrap().is_empty());
    }
}
