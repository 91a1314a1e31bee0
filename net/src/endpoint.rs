//! quinn endpoints for the hub (server) and the agents (client).

use std::net::SocketAddr;
use std::time::Duration;

use crate::NetError;

/// A server endpoint bound to `bind` (e.g. `0.0.0.0:7443`), accepting with `config`.
/// Must be called inside a tokio runtime.
pub fn server_endpoint(
    bind: SocketAddr,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, NetError> {
    Ok(quinn::Endpoint::server(config, bind)?)
}

/// A server endpoint like [`server_endpoint`] whose stateless-reset key is derived from
/// `reset_secret` (the hub's TLS private key, DER) by [`stateless_reset_key`]. The key is the same
/// after a restart, so a restarted hub answers a packet of a connection it no longer knows with a
/// stateless reset the peer accepts: agents drop the dead connection and reconnect at once, not
/// after the idle timeout.
pub fn server_endpoint_with_reset_key(
    bind: SocketAddr,
    config: quinn::ServerConfig,
    reset_secret: &[u8],
) -> Result<quinn::Endpoint, NetError> {
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.reset_key(std::sync::Arc::new(stateless_reset_key(reset_secret)));
    // quinn's default generator tags its connection ids with a key of the process, so a
    // restarted endpoint would drop the old connections' packets as invalid instead of
    // resetting them.
    endpoint_config.cid_generator(|| Box::new(RandomCids));
    // After a restart every connected agent needs one reset; quinn's default of one reset per
    // 20 ms made a fleet of 50 take 3 s to all get theirs (the others' packets were ignored
    // until their next keep-alive). A reset is smaller than the packet it answers, so it cannot
    // amplify; the limit stays, at 1,000 a second.
    endpoint_config.min_reset_interval(RESET_INTERVAL);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
    let socket = std::net::UdpSocket::bind(bind)?;
    grow_recv_buffer(&socket);
    Ok(quinn::Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        runtime,
    )?)
}

/// The receive buffer asked for the hub's one UDP socket (the kernel caps it at
/// `net.core.rmem_max`, and doubles it for its bookkeeping).
const SERVER_RECV_BUFFER: usize = 4 << 20;

/// Every agent's packets arrive on the hub's one socket. With Linux's default buffer (208 KiB,
/// a few hundred small datagrams) a busy moment of the hub's runtime overflowed it at 10,000
/// connected agents: the kernel dropped the keep-alives and acknowledgements of whole groups of
/// sessions, which then timed out and reconnected, all at once. Best effort: a smaller buffer
/// is still a working endpoint.
fn grow_recv_buffer(socket: &std::net::UdpSocket) {
    let grown = quinn::udp::UdpSocketState::new(socket.into())
        .and_then(|state| state.set_recv_buffer_size(socket.into(), SERVER_RECV_BUFFER));
    if let Err(e) = grown {
        tracing::warn!("cannot grow the QUIC socket's receive buffer: {e}");
    }
}

/// Minimum interval between the stateless resets one server endpoint sends.
const RESET_INTERVAL: Duration = Duration::from_millis(1);

/// Random 8-byte connection ids that every endpoint accepts as its own (the trait's default
/// `validate`): a packet for an unknown connection, from before a restart, is answered with a
/// stateless reset (quinn rate-limits them) rather than dropped.
struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The HMAC-SHA256 key quinn derives stateless-reset tokens from: HKDF-SHA256 of `secret`, with a
/// salt and an info string of its own, so the key reveals nothing of `secret` and serves no other
/// purpose.
pub(crate) fn stateless_reset_key(secret: &[u8]) -> ring::hmac::Key {
    use ring::{hkdf, hmac};
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"outpost/1 QUIC stateless reset").extract(secret);
    match prk.expand(&[b"stateless-reset key"], hmac::HMAC_SHA256) {
        Ok(okm) => hmac::Key::from(okm),
        // Unreachable: expand only fails for an output longer than 255 hash lengths (32 bytes
        // here). Falling back to a key keyed by the PRK's output keeps it deterministic.
        Err(_) => hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, secret),
                b"stateless reset",
            )
            .as_ref(),
        ),
    }
}

/// A client-only endpoint bound to `bind` (`0.0.0.0:0` or `[::]:0`). It has no default client
/// configuration: every connection names its own (see [`connect`]). Must be called inside a
/// tokio runtime.
pub fn client_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, NetError> {
    Ok(quinn::Endpoint::client(bind)?)
}

/// Connect to `addr`, verifying the server as `server_name` with `config`, and wait for the
/// handshake to complete (certificates verified both ways), at most `timeout`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    config: quinn::ClientConfig,
    timeout: Duration,
) -> Result<quinn::Connection, NetError> {
    let connecting = endpoint.connect_with(config, addr, server_name)?;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(NetError::Timeout(timeout)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(secret: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&stateless_reset_key(secret), b"connection id")
            .as_ref()
            .to_vec()
    }

    #[test]
    fn the_reset_key_depends_only_on_the_secret() {
        assert_eq!(tag(b"hub key one"), tag(b"hub key one"));
        assert_ne!(tag(b"hub key one"), tag(b"hub key two"));
        // Not the plain HMAC of the secret: derived, not reused.
        let plain = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"hub key one"),
            b"connection id",
        );
        assert_ne!(tag(b"hub key one"), plain.as_ref().to_vec());
    }
}
