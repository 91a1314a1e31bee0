//! Console sign-in: sessions made from an operator credential, found by the hash of their
//! secret, ended by signing out, by idleness or by revoking the credential.

use super::OpResult;
use crate::hub::{Hub, now_ms};
use crate::store::OperatorRecord;
use crate::store::console_sessions::ConsoleSession;

/// A session unused this long is over (the operator signs in again).
pub const SESSION_IDLE_MS: i64 = 12 * 3600 * 1000;
/// A session is renewed in the store at most this often.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A session found for a request: its operator and its CSRF token.
#[derive(Debug, Clone)]
pub struct ConsoleSignIn {
    /// The operator credential's record (re-read: not revoked).
    pub operator: OperatorRecord,
    /// The token every form of the session carries.
    pub csrf: String,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn key_of(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

impl Hub {
    /// Sign in with an operator credential: a new session (its secret, for the cookie), audited
    /// as `console.signin`; `None` for an unknown or revoked credential.
    pub fn console_sign_in(&self, credential: &str) -> OpResult<Option<(String, OperatorRecord)>> {
        let Some(op) = self.store().authenticate_operator(credential)? else {
            return Ok(None);
        };
        let secret = random_hex();
        let now = now_ms();
        let session = ConsoleSession {
            operator_id: op.id.clone(),
            created_ms: now,
            seen_ms: now,
            csrf: random_hex(),
        };
        self.store()
            .create_console_session(&key_of(&secret), &session, now - SESSION_IDLE_MS)?;
        self.store().audit(
            &op.name,
            "console.signin",
            &op.name,
            &format!("role {}", op.role),
            now,
        )?;
        Ok(Some((secret, op)))
    }

    /// The live session of a cookie's `secret`: not idle past [`SESSION_IDLE_MS`], its
    /// credential not revoked. Renews it (at most once a minute).
    pub fn console_session(&self, secret: &str) -> OpResult<Option<ConsoleSignIn>> {
        let key = key_of(secret);
        let Some(s) = self.store().console_session(&key)? else {
            return Ok(None);
        };
        let now = now_ms();
        if now - s.seen_ms > SESSION_IDLE_MS {
            self.store().remove_console_session(&key)?;
            return Ok(None);
        }
        let Some(operator) = self.store().live_operator(&s.operator_id)? else {
            return Ok(None);
        };
        if now - s.seen_ms > TOUCH_EVERY_MS {
            self.store().touch_console_session(&key, now)?;
        }
        Ok(Some(ConsoleSignIn {
            operator,
            csrf: s.csrf,
        }))
    }

    /// Sign out: the session of `secret` is removed, audited as `console.signout`.
    pub fn console_sign_out(&self, secret: &str) -> OpResult<()> {
        let key = key_of(secret);
        let Some(s) = self.store().console_session(&key)? else {
            return Ok(());
        };
        self.store().remove_console_session(&key)?;
        let name = match self.store().live_operator(&s.operator_id)? {
            Some(op) => op.name,
            None => s.operator_id,
        };
        self.store()
            .audit(&name, "console.signout", &name, "", now_ms())?;
        Ok(())
    }
}

/// One agent as the fleet page shows it.
#[derive(Debug, Clone)]
pub struct FleetAgent {
    /// Its record.
    pub agent: crate::store::AgentRecord,
    /// When its live session started (`None`: not connected).
    pub connected_since: Option<outpost_common::record::UnixMillis>,
    /// The pools whose selector its labels match.
    pub pools: Vec<String>,
    /// The versions the hub wants it to run, by workflow.
    pub wanted: Vec<(String, u64)>,
}

impl FleetAgent {
    /// Workflows whose running version differs from the wanted one (or that it lacks, or runs
    /// without being wanted): `(workflow, running, wanted)`.
    pub fn drift(&self) -> Vec<(String, Option<u64>, Option<u64>)> {
        let mut out = Vec::new();
        for (w, v) in &self.wanted {
            let running = self
                .agent
                .active
                .iter()
                .find(|a| a.workflow == *w)
                .map(|a| a.version);
            if running != Some(*v) {
                out.push((w.clone(), running, Some(*v)));
            }
        }
        for a in &self.agent.active {
            if !self.wanted.iter().any(|(w, _)| *w == a.workflow) {
                out.push((a.workflow.clone(), Some(a.version), None));
            }
        }
        out
    }
}

impl Hub {
    /// Every agent with its connection, pools and wanted versions.
    pub fn fleet(&self) -> OpResult<Vec<FleetAgent>> {
        let agents = self.store().agents()?;
        self.fleet_of(agents)
    }

    /// One agent (id or name) as [`Hub::fleet`] shows it.
    pub fn fleet_agent(&self, id_or_name: &str) -> OpResult<FleetAgent> {
        let id = self.resolve_agent(id_or_name)?;
        let agent = self.store().agent(&id)?;
        let mut one = self.fleet_of(vec![agent])?;
        one.pop()
            .ok_or_else(|| crate::store::StoreError::NoAgent(id).into())
    }

    /// `agents` with their connection, pools and wanted versions. Pools, decisions and content
    /// hashes are read once; agents with the same labels share one resolution (only an agent
    /// in a rollout's pool reads its own rollout assignments).
    fn fleet_of(&self, agents: Vec<crate::store::AgentRecord>) -> OpResult<Vec<FleetAgent>> {
        use std::collections::HashMap;
        let store = self.store();
        let pools = store.pools()?;
        let decisions = store.decisions()?;
        let connected: HashMap<String, i64> = self.connected().into_iter().collect();
        let mut hashes: HashMap<(String, u64), String> = HashMap::new();
        type Resolution = (Vec<String>, Vec<crate::hub::Resolved>);
        let mut by_labels: HashMap<Vec<(String, String)>, Resolution> = HashMap::new();
        // Without a rollout, the wanted versions follow from the labels alone.
        type Labels = Vec<(String, String)>;
        let mut same_labels: HashMap<Labels, Vec<(String, u64)>> = HashMap::new();
        let mut out = Vec::with_capacity(agents.len());
        for agent in agents {
            let (member, resolved) = by_labels
                .entry(agent.labels.clone())
                .or_insert_with(|| {
                    let member = pools
                        .iter()
                        .filter(|p| crate::store::selector_matches(&p.selector, &agent.labels))
                        .map(|p| p.name.clone())
                        .collect();
                    let resolved = crate::hub::resolve_decisions(&agent.labels, &pools, &decisions);
                    (member, resolved)
                })
                .clone();
            let in_rollout = resolved.iter().any(|r| r.decision.rollout.is_some());
            let wanted = if agent.revoked_ms.is_some() {
                Vec::new()
            } else if let (false, Some(w)) = (in_rollout, same_labels.get(&agent.labels)) {
                w.clone()
            } else {
                let assigns = if in_rollout {
                    store.rollout_assigns_for(&agent.id)?
                } else {
                    Vec::new()
                };
                let wanted: Vec<(String, u64)> =
                    crate::hub::desired_versions(&resolved, &assigns, &mut |w, v| {
                        if let Some(h) = hashes.get(&(w.to_string(), v)) {
                            return Ok(h.clone());
                        }
                        let h = store.version(w, Some(v))?.content_hash;
                        hashes.insert((w.to_string(), v), h.clone());
                        Ok(h)
                    })?
                    .into_iter()
                    .map(|d| (d.workflow, d.version))
                    .collect();
                if !in_rollout {
                    same_labels.insert(agent.labels.clone(), wanted.clone());
                }
                wanted
            };
            out.push(FleetAgent {
                connected_since: connected.get(&agent.id).copied(),
                pools: member,
                wanted,
                agent,
            });
        }
        Ok(out)
    }
}
