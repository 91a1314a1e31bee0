//! The signing-key history and the key chain agents follow.

use outpost_common::proto::KeyEndorsement;
use redb::{ReadableDatabase, ReadableTable};

use super::audit::audit_in;
use super::error::{StoreError, decode, decode_all, encode};
use super::file::Store;
use super::records::KeyRecord;
use super::schema::SIGNING_KEYS;

impl Store {
    /// Append a signing key to the history (idempotent for the current key).
    pub(crate) fn record_signing_key(&self, key: KeyRecord, actor: &str) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut t = txn.open_table(SIGNING_KEYS)?;
            let last = match t.last()? {
                Some((k, v)) => Some((
                    k.value(),
                    decode::<KeyRecord>(v.value(), "signing_keys", k.value())?,
                )),
                None => None,
            };
            if last.as_ref().is_some_and(|(_, r)| r.key_id == key.key_id) {
                return Ok(());
            }
            let idx = last.map(|(k, _)| k + 1).unwrap_or(0);
            t.insert(idx, encode(&key)?.as_slice())?;
        }
        audit_in(&txn, key.created_ms, actor, "keys.add", &key.key_id, "")?;
        txn.commit()?;
        Ok(())
    }

    /// The signing-key history, oldest first.
    pub(crate) fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(decode_all(&txn.open_table(SIGNING_KEYS)?, "signing_keys")?)
    }

    /// The endorsements leading from `trusted_key_id` to the current key, in order (empty when
    /// the agent trusts the current key or a key the hub does not know).
    pub(crate) fn key_chain_from(
        &self,
        trusted_key_id: &str,
    ) -> Result<Vec<KeyEndorsement>, StoreError> {
        let keys = self.signing_keys()?;
        let Some(pos) = keys.iter().position(|k| k.key_id == trusted_key_id) else {
            return Ok(Vec::new());
        };
        Ok(keys[pos + 1..]
            .iter()
            .filter_map(|k| k.endorsement.clone())
            .collect())
    }
}
