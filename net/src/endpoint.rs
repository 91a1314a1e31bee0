//! quinn endpoints for the hub (server) and the agents (client).

use std::net::SocketAddr;
use std::time::Duration;

use crate::NetError;

/// Default time allowed for a handshake in [`connect`] callers that have no better value.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server endpoint bound to `bind` (e.g. `0.0.0.0:7443`), accepting with `config`.
/// Must be called inside a tokio runtime.
pub fn server_endpoint(
    bind: SocketAddr,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, NetError> {
    Ok(quinn::Endpoint::server(config, bind)?)
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
