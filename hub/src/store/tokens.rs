//! Bootstrap tokens and enrollment (redeeming a token adds the agent).

use outpost_common::record::UnixMillis;
use redb::{ReadableDatabase, ReadableTable};

use super::audit::audit_in;
use super::error::{StoreError, decode, decode_all, encode};
use super::file::Store;
use super::names::claim_name;
use super::records::{AgentRecord, TokenRecord, sorted};
use super::schema::{AGENTS, TOKENS};

impl Store {
    /// Create a single-use bootstrap token; returns (token id, secret). Only blake3(secret) is
    /// stored.
    pub fn create_token(
        &self,
        labels: Vec<(String, String)>,
        expires_ms: UnixMillis,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(String, String), StoreError> {
        self.create_token_uses(labels, expires_ms, 1, actor, now_ms)
    }

    /// Create a bootstrap token that enrolls up to `max_uses` agents (one each use).
    pub(crate) fn create_token_uses(
        &self,
        labels: Vec<(String, String)>,
        expires_ms: UnixMillis,
        max_uses: u32,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<(String, String), StoreError> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = hex::encode(rand::random::<[u8; 24]>());
        let rec = TokenRecord {
            id: id.clone(),
            secret_hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            labels: sorted(labels),
            created_ms: now_ms,
            expires_ms,
            used_ms: None,
            used_by: None,
            max_uses: Some(max_uses.max(1)),
            uses: Some(0),
            revoked_ms: None,
        };
        let txn = self.begin_write()?;
        txn.open_table(TOKENS)?
            .insert(id.as_str(), encode(&rec)?.as_slice())?;
        let detail = format!("uses {}", max_uses.max(1));
        audit_in(&txn, now_ms, actor, "token.create", &id, &detail)?;
        txn.commit()?;
        Ok((id, secret))
    }

    fn valid_token(
        t: &impl ReadableTable<&'static str, &'static [u8]>,
        id: &str,
        secret: &str,
        now_ms: UnixMillis,
    ) -> Result<TokenRecord, StoreError> {
        let rec: TokenRecord = match t.get(id)? {
            Some(v) => decode(v.value(), "tokens", id)?,
            None => return Err(StoreError::BadToken),
        };
        // blake3::Hash equality is constant-time.
        let same = blake3::Hash::from_hex(&rec.secret_hash)
            .is_ok_and(|stored| stored == blake3::hash(secret.as_bytes()));
        if !same || !rec.usable(now_ms) {
            return Err(StoreError::BadToken);
        }
        Ok(rec)
    }

    /// Check a token without using it (to learn its labels before issuing a certificate).
    pub fn check_token(
        &self,
        id: &str,
        secret: &str,
        now_ms: UnixMillis,
    ) -> Result<TokenRecord, StoreError> {
        let txn = self.db().begin_read()?;
        let t = txn.open_table(TOKENS)?;
        Self::valid_token(&t, id, secret, now_ms)
    }

    /// Redeem a token and add the agent, atomically: the token must be valid (unused,
    /// unexpired, right secret) and the agent id new. The agent's `name`, if it has one, must be
    /// free (else [`StoreError::Conflict`]).
    pub fn enroll(
        &self,
        token_id: &str,
        secret: &str,
        agent: AgentRecord,
        now_ms: UnixMillis,
    ) -> Result<AgentRecord, StoreError> {
        self.enroll_named(token_id, secret, agent, true, now_ms)
    }

    /// [`Store::enroll`]; with `exact_name` false, a taken name gets the first free suffix
    /// (`name-2`, `name-3`, ...) instead of an error (the default name from the host name).
    pub(crate) fn enroll_named(
        &self,
        token_id: &str,
        secret: &str,
        mut agent: AgentRecord,
        exact_name: bool,
        now_ms: UnixMillis,
    ) -> Result<AgentRecord, StoreError> {
        let txn = self.begin_write_in(super::replicated::Scope::Only(&[
            "tokens",
            "agent_identities",
            "agent_names",
        ]))?;
        if let Some(wanted) = agent.name.take() {
            agent.name = Some(claim_name(&txn, &wanted, &agent.id, exact_name)?);
        }
        {
            let mut tokens = txn.open_table(TOKENS)?;
            let mut rec = Self::valid_token(&tokens, token_id, secret, now_ms)?;
            let mut agents = txn.open_table(AGENTS)?;
            if agents.get(agent.id.as_str())?.is_some() {
                return Err(StoreError::AgentExists(agent.id));
            }
            rec.uses = Some(rec.used() + 1);
            rec.used_ms = Some(now_ms);
            rec.used_by = Some(agent.id.clone());
            tokens.insert(token_id, encode(&rec)?.as_slice())?;
            agents.insert(agent.id.as_str(), encode(&agent)?.as_slice())?;
        }
        audit_in(
            &txn,
            now_ms,
            &agent.id,
            "agent.enroll",
            &agent.id,
            &format!("token {token_id}"),
        )?;
        txn.commit()?;
        Ok(agent)
    }

    /// Every bootstrap token (used, expired and revoked ones included), by id.
    pub(crate) fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let txn = self.db().begin_read()?;
        Ok(decode_all(&txn.open_table(TOKENS)?, "tokens")?)
    }

    /// Revoke a bootstrap token: it enrolls no more agents (those it enrolled stay). Returns
    /// whether it changed (false: already revoked); an unknown id is [`StoreError::NoToken`].
    pub(crate) fn revoke_token(
        &self,
        id: &str,
        actor: &str,
        now_ms: UnixMillis,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write()?;
        let changed = {
            let mut t = txn.open_table(TOKENS)?;
            let mut rec: TokenRecord = match t.get(id)? {
                Some(v) => decode(v.value(), "tokens", id)?,
                None => return Err(StoreError::NoToken(id.into())),
            };
            if rec.revoked_ms.is_some() {
                false
            } else {
                rec.revoked_ms = Some(now_ms);
                t.insert(id, encode(&rec)?.as_slice())?;
                true
            }
        };
        if changed {
            audit_in(&txn, now_ms, actor, "token.revoke", id, "")?;
        }
        txn.commit()?;
        Ok(changed)
    }
}
