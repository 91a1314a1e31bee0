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
//! - [`hub`]: shared state: enrollment, desired state per agent, change notification.
//! - [`config`], [`init`], [`serve`]: `hub.toml`, `outpost-hub init`, `outpost-hub serve`.
//! - [`rollouts`]: the rollout driver (pools, gray releases; `docs/rollouts.md`).
//! - [`api`]: the HTTP API (axum); [`views`]: its JSON shapes.
//! - [`cli`], [`app`], [`client`]: the ops CLI and its HTTP client.

pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod gateway;
pub mod hub;
pub mod init;
pub mod quic;
pub mod rollouts;
pub mod serve;
pub mod store;
pub mod views;
pub mod views_pools;
