//! A small blocking HTTP client for the hub API (ureq), used by the ops CLI.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::views::ErrorBody;

/// Largest response body the client reads.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// Client errors. `Transport` and `Unauthorized` are usage/setup problems (exit 2); `Api` is a
/// refused or failed operation (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub could not be reached or the exchange failed.
    #[error("cannot reach the hub at {url}: {message}")]
    Transport {
        /// The base URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// 401.
    #[error("the hub refused the API token: {0}")]
    Unauthorized(String),
    /// Any other error status.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The hub's message.
        message: String,
    },
    /// The answer did not parse.
    #[error("unexpected answer from the hub: {0}")]
    Decode(String),
}

/// A hub API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Percent-encode one path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// A client for the hub at `base` (e.g. `http://127.0.0.1:7070`) with an API token. For an
    /// `https://` URL, `ca_der` (the hub CA) is the only trusted root; without it the platform's
    /// web roots are used.
    pub fn new(base: &str, token: &str, ca_der: Option<Vec<u8>>) -> Client {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(90)));
        if let Some(der) = ca_der {
            let root = ureq::tls::Certificate::from_der(&der).to_owned();
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[root]))
                    .build(),
            );
        }
        let agent: ureq::Agent = cfg.build().into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent,
        }
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            url: self.base.clone(),
            message: e.to_string(),
        }
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let mut resp = r.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| self.transport(e))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = serde_json::from_str::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| format!("HTTP {status}: {}", body.trim()));
        if status == 401 {
            Err(ClientError::Unauthorized(message))
        } else {
            Err(ClientError::Api { status, message })
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The operator credential as the bearer token (the hub audits everything done with it
    /// under the credential's name).
    fn authed<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        req.header("Authorization", &self.auth())
    }

    /// GET `path` with query pairs (empty values are skipped) and return the body text.
    pub fn get_text(&self, path: &str, query: &[(&str, String)]) -> Result<String, ClientError> {
        let mut req = self.authed(self.agent.get(&self.url(path)));
        for (k, v) in query {
            if !v.is_empty() {
                req = req.query(*k, v);
            }
        }
        self.finish(req.call())
    }

    /// GET and decode JSON.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let text = self.get_text(path, query)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// POST a JSON body and decode the JSON answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let req = self.authed(self.agent.post(&self.url(path)));
        let r = req.send_json(body);
        let text = self.finish(r)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// POST an empty body to `path` and write the (binary) answer to `dest`, a new file
    /// (mode 0600). Returns the bytes written.
    pub fn post_download(&self, path: &str, dest: &std::path::Path) -> Result<u64, ClientError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let req = self.authed(self.agent.post(&self.url(path)));
        let mut resp = req.send_empty().map_err(|e| self.transport(e))?;
        if !resp.status().is_success() {
            return self.finish(Ok(resp)).map(|_| 0);
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| ClientError::Decode(format!("cannot create {}: {e}", dest.display())))?;
        let mut body = resp.body_mut().as_reader();
        let n = std::io::copy(&mut body, &mut file).map_err(|e| self.transport(e))?;
        file.sync_all()
            .map_err(|e| ClientError::Decode(format!("writing {}: {e}", dest.display())))?;
        Ok(n)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let req = self.authed(self.agent.delete(&self.url(path)));
        let text = self.finish(req.call())?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
