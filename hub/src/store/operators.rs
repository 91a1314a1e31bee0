//! Operator credentials: a name, a role (and for a deployer, optionally the pools it may act
//! on), and the blake3 hash of a 256-bit random secret. The credential an operator holds is
//! `opo1.<id>.<secret>`: the id finds the record with one lookup, the secret is compared by
//! hash in constant time. The secret itself is never stored.

use minicbor::{Decode, Encode};
use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::audit::audit_in;
use super::error::{StoreError, decode, decode_all, encode};
use super::file::Store;

/// `operators`: `id -> cbor OperatorRecord`.
pub(crate) const OPERATORS: TableDefinition<&str, &[u8]> = TableDefinition::new("operators");

/// Prefix of an operator credential (its format version).
pub const CREDENTIAL_PREFIX: &str = "opo1";

/// What an operator may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
#[cbor(index_only)]
pub enum Role {
    /// Read only.
    #[n(0)]
    Viewer,
    /// + trigger, cancel, pause, resume, fetch logs.
    #[n(1)]
    Operator,
    /// + workflow apply and rollback, deploy, pin, rollouts (optionally in named pools only).
    #[n(2)]
    Deployer,
    /// + operators, bootstrap tokens, agents (revoke, labels), pools, backup.
    #[n(3)]
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Deployer, Role::Admin];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operator credential.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct OperatorRecord {
    /// Credential id (16 hex digits), the key of the record.
    #[n(0)]
    pub id: String,
    /// The operator's name: the actor of everything done with this credential.
    #[n(1)]
    pub name: String,
    /// Its role.
    #[n(2)]
    pub role: Role,
    /// For a deployer: the only pools it may act on (empty: every pool).
    #[n(3)]
    pub pools: Vec<String>,
    /// blake3 hex of the secret.
    #[n(4)]
    pub secret_hash: String,
    /// When it was made.
    #[n(5)]
    pub created_ms: UnixMillis,
    /// Who made it.
    #[n(6)]
    pub created_by: String,
    /// When it was revoked (refused from then on).
    #[n(7)]
    pub revoked_ms: Option<UnixMillis>,
}

/// Split a credential `opo1.<id>.<secret>` into (id, secret).
pub fn parse_credential(s: &str) -> Option<(&str, &str)> {
    let rest = s.strip_prefix(CREDENTIAL_PREFIX)?.strip_prefix('.')?;
    let (id, secret) = rest.split_once('.')?;
    let hexy = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id) && hexy(secret)).then_some((id, secret))
}

/// An operator name: 1 to 64 of `[A-Za-z0-9._@-]`, starting with a letter or digit.
pub fn check_operator_name(name: &str) -> Result<(), StoreError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Refused(format!(
            "invalid operator name {name:?}: 1 to 64 letters, digits, '.', '_', '@' or '-', \
             starting with a letter or digit"
        )))
    }
}

impl Store {
    /// Create an operator credential; returns the record and the full credential (the only
    /// time the secret exists outside the caller). Names are unique among credentials that are
    /// not revoked.
    pub fn create_operator(
        &self,
        name: &str,
        role: Role,
        pools: Vec<String>,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(OperatorRecord, String), StoreError> {
        check_operator_name(name)?;
        if !pools.is_empty() && role != Role::Deployer {
            return Err(StoreError::Refused(
                "only a deployer can be limited to pools (--pools)".into(),
            ));
        }
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let mut pools = pools;
        pools.sort();
        pools.dedup();
        let rec = OperatorRecord {
            id: id.clone(),
            name: name.into(),
            role,
            pools,
            secret_hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            created_ms: now_ms,
            created_by: actor.into(),
            revoked_ms: None,
        };
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(OPERATORS)?;
            for e in t.iter()? {
                let (k, v) = e?;
                let other: OperatorRecord = decode(v.value(), "operators", k.value())?;
                if other.name == name && other.revoked_ms.is_none() {
                    return Err(StoreError::Conflict(format!(
                        "operator {name} already exists (revoke it first to replace it)"
                    )));
                }
            }
            t.insert(id.as_str(), encode(&rec)?.as_slice())?;
        }
        let mut detail = format!("role {role}");
        if !rec.pools.is_empty() {
            detail.push_str(&format!(", pools {}", rec.pools.join(",")));
        }
        audit_in(&txn, now_ms, actor, "operator.create", name, &detail)?;
        txn.commit()?;
        let credential = format!("{CREDENTIAL_PREFIX}.{id}.{secret}");
        Ok((rec, credential))
    }

    /// The operator a credential belongs to, if it is well-formed, known, its secret right
    /// (constant-time comparison) and it is not revoked. One lookup by id, no scan.
    pub fn authenticate_operator(
        &self,
        credential: &str,
    ) -> Result<Option<OperatorRecord>, StoreError> {
        let Some((id, secret)) = parse_credential(credential) else {
            return Ok(None);
        };
        let Some(rec) = self.live_operator(id)? else {
            return Ok(None);
        };
        // blake3::Hash equality is constant-time.
        let same = blake3::Hash::from_hex(&rec.secret_hash)
            .is_ok_and(|stored| stored == blake3::hash(secret.as_bytes()));
        Ok(same.then_some(rec))
    }

    /// The operator credential with id `id`, if it exists and is not revoked (a console
    /// session re-reads it on every request).
    pub fn live_operator(&self, id: &str) -> Result<Option<OperatorRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        let t = match txn.open_table(OPERATORS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(StoreError::from(e)),
        };
        let rec: OperatorRecord = match t.get(id)? {
            Some(v) => decode(v.value(), "operators", id)?,
            None => return Ok(None),
        };
        Ok(rec.revoked_ms.is_none().then_some(rec))
    }

    /// Every operator credential (revoked ones included), by id.
    pub fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(decode_all(&txn.open_table(OPERATORS)?, "operators")?)
    }

    /// Revoke the credential of operator `name` (not revoked yet): refused from the next
    /// request on. Returns whether one was revoked (false: already revoked); an unknown name is
    /// [`StoreError::Refused`]. The last admin cannot be revoked (nobody could manage the hub).
    pub fn revoke_operator(
        &self,
        name: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let changed = {
            let mut t = txn.open_table(OPERATORS)?;
            let mut all: Vec<OperatorRecord> = Vec::new();
            for e in t.iter()? {
                let (k, v) = e?;
                all.push(decode(v.value(), "operators", k.value())?);
            }
            let named: Vec<&OperatorRecord> = all.iter().filter(|o| o.name == name).collect();
            if named.is_empty() {
                return Err(StoreError::NoOperator(name.into()));
            }
            match named.iter().find(|o| o.revoked_ms.is_none()) {
                None => false,
                Some(live) => {
                    let admins_left = all
                        .iter()
                        .filter(|o| {
                            o.role == Role::Admin && o.revoked_ms.is_none() && o.id != live.id
                        })
                        .count();
                    if live.role == Role::Admin && admins_left == 0 {
                        return Err(StoreError::Conflict(format!(
                            "{name} is the last admin: create another admin before revoking it"
                        )));
                    }
                    let mut rec = (*live).clone();
                    rec.revoked_ms = Some(now_ms);
                    t.insert(rec.id.as_str(), encode(&rec)?.as_slice())?;
                    true
                }
            }
        };
        if changed {
            audit_in(&txn, now_ms, actor, "operator.revoke", name, "")?;
        }
        txn.commit()?;
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("hub.redb")).unwrap();
        (dir, s)
    }

    #[test]
    fn credentials_authenticate_until_revoked() {
        let (_d, s) = store();
        let (admin, admin_cred) = s
            .create_operator("root", Role::Admin, vec![], "init", 1)
            .unwrap();
        let (rec, cred) = s
            .create_operator(
                "alice",
                Role::Deployer,
                vec!["b".into(), "a".into()],
                "root",
                2,
            )
            .unwrap();
        assert!(cred.starts_with("opo1."));
        assert_eq!(rec.pools, vec!["a".to_string(), "b".to_string()]);
        // Only the hash is stored.
        let (_, secret) = parse_credential(&cred).unwrap();
        assert_eq!(secret.len(), 64);
        assert!(!rec.secret_hash.contains(secret));
        assert_eq!(
            s.authenticate_operator(&cred).unwrap().unwrap().name,
            "alice"
        );
        assert_eq!(
            s.authenticate_operator(&admin_cred).unwrap().unwrap(),
            admin
        );
        // A wrong secret, another id, garbage: nobody.
        let mut wrong = cred.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        for bad in [
            wrong.as_str(),
            "opo1.00.00",
            "opo1",
            "",
            "x.y.z",
            "opo1..abc",
        ] {
            assert_eq!(s.authenticate_operator(bad).unwrap(), None, "{bad}");
        }
        // A duplicate live name is refused; revoke, then it is refused at once.
        assert!(matches!(
            s.create_operator("alice", Role::Viewer, vec![], "root", 3),
            Err(StoreError::Conflict(_))
        ));
        assert!(s.revoke_operator("alice", "root", 4).unwrap());
        assert!(!s.revoke_operator("alice", "root", 5).unwrap());
        assert_eq!(s.authenticate_operator(&cred).unwrap(), None);
        assert!(matches!(
            s.revoke_operator("nobody", "root", 5),
            Err(StoreError::NoOperator(_))
        ));
        // The last admin stays.
        assert!(matches!(
            s.revoke_operator("root", "root", 6),
            Err(StoreError::Conflict(_))
        ));
        // Pools are for deployers only; names are checked.
        assert!(
            s.create_operator("v", Role::Viewer, vec!["a".into()], "root", 7)
                .is_err()
        );
        assert!(
            s.create_operator("a b", Role::Viewer, vec![], "root", 7)
                .is_err()
        );
        let actions: Vec<String> = s
            .audit_log(100)
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {}", e.actor, e.action, e.target))
            .collect();
        assert!(
            actions.contains(&"root operator.create alice".to_string()),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"root operator.revoke alice".to_string()),
            "{actions:?}"
        );
    }
}
