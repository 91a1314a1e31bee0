//! Bootstrap tokens: create, revoke, list.

use std::time::Duration;

use outpost_common::duration::parse_duration;
use outpost_common::record::UnixMillis;

use super::agents::check_label;
use super::{EventKind, OpError, OpResult};
use crate::hub::{Hub, format_bootstrap_token, now_ms};
use crate::store::TokenRecord;

/// Most agents one bootstrap token may enroll.
pub const MAX_TOKEN_USES: u32 = 10_000;

/// A bootstrap token just created: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    /// Token id.
    pub id: String,
    /// The full token to hand to agents (secret, CA hash, hub name).
    pub token: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_ms: UnixMillis,
    /// Agents it may enroll.
    pub uses: u32,
}

impl Hub {
    /// `token create`: a token enrolling up to `uses` agents (default 1) with `labels`, valid
    /// for `ttl` (default 1h, at most the hub's `max_token_ttl`).
    pub fn create_token(
        &self,
        actor: &str,
        labels: Vec<(String, String)>,
        ttl: Option<&str>,
        uses: Option<u32>,
    ) -> OpResult<CreatedToken> {
        let ttl_d = match ttl {
            None => Duration::from_secs(3600),
            Some(s) => {
                parse_duration(s).map_err(|e| OpError::Invalid(format!("ttl {s:?}: {e}")))?
            }
        };
        if ttl_d.is_zero() {
            return Err(OpError::Invalid("ttl must be positive".into()));
        }
        if ttl_d > self.max_token_ttl() {
            return Err(OpError::Invalid(format!(
                "ttl {} is longer than the hub's max_token_ttl ({}s); use a shorter --ttl or \
                 raise max_token_ttl in hub.toml",
                ttl.unwrap_or_default(),
                self.max_token_ttl().as_secs()
            )));
        }
        let uses = uses.unwrap_or(1);
        if !(1..=MAX_TOKEN_USES).contains(&uses) {
            return Err(OpError::Invalid(format!(
                "uses must be between 1 and {MAX_TOKEN_USES}"
            )));
        }
        for (k, v) in &labels {
            check_label(k, v)?;
        }
        let now = now_ms();
        let expires_ms = now.saturating_add(i64::try_from(ttl_d.as_millis()).unwrap_or(i64::MAX));
        let (id, secret) =
            self.store()
                .create_token_uses(labels.clone(), expires_ms, uses, actor, now)?;
        self.emit(
            actor,
            EventKind::TokenCreated {
                token: id.clone(),
                labels,
                uses,
                expires_ms,
            },
        );
        Ok(CreatedToken {
            token: format_bootstrap_token(&id, &secret, &self.ca_sha256_hex(), self.hub_name()),
            id,
            expires_ms,
            uses,
        })
    }

    /// `token revoke`: the token enrolls nobody from now on. Returns whether it was newly
    /// revoked.
    pub fn revoke_token(&self, actor: &str, id: &str) -> OpResult<bool> {
        let changed = self.store().revoke_token(id, actor, now_ms())?;
        self.emit(
            actor,
            EventKind::TokenRevoked {
                token: id.to_string(),
                changed,
            },
        );
        Ok(changed)
    }

    /// Every bootstrap token (secrets are stored hashed).
    pub fn tokens(&self) -> OpResult<Vec<TokenRecord>> {
        Ok(self.store().tokens()?)
    }
}
