//! The one HTTP sender of the channels: ureq (rustls on ring), a timeout per channel, no
//! redirects (a webhook that moved is a configuration error, not something to follow with a
//! signed body), and the mapping of failures to [`DeliveryError::retryable`]: connection
//! errors, timeouts, 5xx, 408 and 429 are worth retrying; any other answer is not.

use std::time::Duration;

use super::DeliveryError;

/// Most of a failed answer's body kept for the delivery history.
const ERROR_BODY_LIMIT: u64 = 512;

/// A blocking HTTP client for one channel.
pub(super) struct Http {
    agent: ureq::Agent,
}

impl Http {
    pub(super) fn new(timeout: Duration) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("outpost-hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http { agent }
    }

    /// POST a JSON body with extra headers; `Ok` on a 2xx answer.
    pub(super) fn post_json(
        &self,
        url: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), DeliveryError> {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.send(body).map_err(transport_error)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp
            .body_mut()
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .read_to_string()
            .unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        let message = if text.trim().is_empty() {
            format!("the receiver answered HTTP {status}")
        } else {
            format!("the receiver answered HTTP {status}: {}", text.trim())
        };
        Err(DeliveryError {
            retryable: status_retryable(status),
            message,
        })
    }
}

/// Whether an HTTP status is worth retrying.
pub(super) fn status_retryable(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

fn transport_error(e: ureq::Error) -> DeliveryError {
    let retryable = !matches!(
        e,
        ureq::Error::BadUri(_) | ureq::Error::RequireHttpsOnly(_) | ureq::Error::InvalidProxyUrl
    );
    DeliveryError {
        retryable,
        message: format!("cannot deliver: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for s in [500, 502, 503, 429, 408] {
            assert!(status_retryable(s), "{s}");
        }
        for s in [300, 301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!status_retryable(s), "{s}");
        }
    }

    #[test]
    fn a_refused_connection_is_retryable() {
        // A port nothing listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Http::new(Duration::from_secs(2))
            .post_json(&format!("http://127.0.0.1:{port}/x"), b"{}", &[])
            .unwrap_err();
        assert!(e.retryable, "{e:?}");
    }
}
