//! The Outpost hub: canonical workflows, enrollment, signed versions, status ingest, the HTTP
//! API and the ops CLI.
//!
//! Modules:
//! - [`store`]: the redb store (versions, agents, tokens, epochs, runs, audit).
//! - Workflow signing is `outpost_common::sign::SigningKey` and the certificate authority
//!   `outpost_net::pki::Ca` (the implementations the tests and fuzzers exercise);
//!   [`init`] reads and writes their files.
//! - [`gateway`]: commands to connected agents ([`gateway::AgentGateway`] seam and the
//!   [`gateway::Connections`] registry the QUIC driver registers sessions into).
//! - [`hub`]: shared state: desired state per agent, change notification.
//! - [`ops`]: the operations, the only way to change the hub (commit, audit, notify sessions,
//!   emit one domain event each); [`events`]: the domain events ([`hub::Hub::subscribe`]
//!   receives them).
//! - [`config`], [`init`], [`serve`]: `hub.toml`, `outpost-hub init`, `outpost-hub serve`.
//! - [`rollouts`]: the rollout driver (pools, gray releases; `docs/rollouts.md`).
//! - [`alerts`]: the alert driver and delivery task (rules, durable inbox and outbox).
//! - [`api`]: the HTTP API (axum); [`views`]: its JSON shapes; [`metrics`]: `/metrics`.
//! - [`cli`] (one file per resource), [`client`]: the ops CLI and its HTTP client.
//! - `dev` (the `dev` feature, default): `outpost-hub dev`, a hub and an agent in one process.

pub mod alerts;
pub mod api;
pub mod certs;
pub mod channels;
pub mod cli;
pub mod client;
pub(crate) mod clock;
pub mod config;
pub mod console;
#[cfg(feature = "dev")]
pub(crate) mod dev;
pub mod events;
pub mod firings;
pub mod gateway;
pub mod ha;
pub mod hub;
pub mod init;
pub mod metrics;
pub mod ops;
pub(crate) mod quic;
pub mod retention;
pub mod rollouts;
pub mod serve;
pub mod store;
pub mod views;
