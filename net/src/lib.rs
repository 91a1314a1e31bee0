//! Outpost transport: QUIC endpoints with mutual TLS, certificates, framed streams, backoff.
//!
//! # Public surface
//!
//! What the hub, the agent and the tests use, and nothing more (the rest is `pub(crate)`):
//! [`endpoint`] (server and client endpoints, [`connect`]), [`tls`] (the rustls/quinn configs of
//! each side, [`tls::Transport`], the peer's agent id), [`pki`] (the hub CA [`Ca`], agent keys
//! and CSRs, certificate facts, PEM files), [`stream`] (length-prefixed CBOR frames:
//! [`FramedSend`], [`FramedRecv`]), [`backoff::Backoff`], and [`NetError`].
//!
//! # Trust model at the TLS layer
//!
//! There is exactly one trust root per hub: the hub CA (ECDSA P-256, made once by
//! [`pki::Ca::generate`] when `outpost-hub init` runs, loaded by the hub with [`pki::Ca::load`]). There
//! is no plaintext mode and no "skip verification" option anywhere in this crate; every
//! constructor returns a typed error naming what is missing or invalid instead of falling back.
//! Every rustls object is built with [`rustls::crypto::ring::default_provider`] explicitly; no
//! process-wide default provider is installed or relied upon.
//!
//! What **rustls** checks (during the handshake, before any application byte flows):
//! - *agent → hub, session* ([`tls::client_session_config`]): the hub's certificate chains to the
//!   pinned hub CA (no system roots), is valid now, has the server-auth usage, and names the hub
//!   name the agent dials (`outpost-hub` by default). The agent presents its own certificate.
//! - *agent → hub, enrollment* ([`tls::client_enroll_config`]): the agent has no CA yet, only the
//!   SHA-256 of the CA certificate from its bootstrap token. The hub's presented chain must contain
//!   a certificate with that exact hash, and the hub's end-entity certificate must verify against
//!   that certificate as the only root, for the expected name. The matched CA DER is exposed so
//!   enrollment can cross-check the CA the hub returns in its answer.
//! - *hub side* ([`tls::server_config`]): ALPN `outpost/1` only; a client certificate, **if
//!   presented**, must chain to the hub CA, be valid now, and carry the client-auth usage.
//!   A connection without a client certificate is accepted by rustls, because enrollment
//!   connections carry none.
//!
//! What **the hub** checks (per connection, in its session driver, not in rustls):
//! - whether the connection carries a client certificate at all ([`tls::peer_agent_id`] is
//!   `None` for enrollment connections, which may carry one enrollment request and nothing else);
//! - which agent it is (the certificate's CN, see [`pki::agent_id_from_cert`]), whether that agent
//!   is known and not revoked — at connect and again while connected, so a revocation cuts a live
//!   connection within seconds (rustls has no revocation list here on purpose: revocation is a
//!   hub database fact, not a CRL).
//!
//! Above TLS, messages are length-prefixed CBOR frames ([`stream`]); a frame longer than
//! [`outpost_common::proto::MAX_FRAME`] or undecodable bytes are errors that the caller answers by
//! closing that one connection.

pub mod backoff;
pub mod endpoint;
pub mod pki;
pub mod stream;
pub mod tls;

pub use endpoint::{client_endpoint, connect, server_endpoint};
pub use pki::{Ca, PkiError};
pub use stream::{FramedRecv, FramedSend};

/// Errors of connections and framed streams.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Binding or configuring a UDP socket / endpoint failed.
    #[error("endpoint: {0}")]
    Io(#[from] std::io::Error),
    /// The connection attempt could not start (bad address, endpoint closing, bad config).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (includes handshake failures such as a refused
    /// certificate).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The handshake did not complete within the allowed time.
    #[error("connection attempt timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Writing to a stream failed.
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Finishing a stream failed (already finished or reset).
    #[error("stream finish: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// Reading from a stream failed.
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadError),
    /// A frame announced (or would have) more bytes than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced or encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({got} of {want} bytes)")]
    Truncated {
        /// Bytes received of the current part (length prefix or body).
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// A message could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// A frame's bytes are not a valid message.
    #[error("decode: {0}")]
    Decode(#[from] minicbor::decode::Error),
    /// A frame held bytes after its message.
    #[error("{0} trailing bytes after the message in a frame")]
    TrailingBytes(usize),
}
