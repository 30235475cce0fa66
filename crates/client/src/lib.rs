//! An async client of a Shotgun site's `/api3/json` endpoint: a real site or
//! `shotgun-cache sim`.
//!
//! One [`Client`] keeps one connection pool. Each call sends the envelope the
//! official client sends, retries what a hosted site does transiently (HTTP
//! 502/503/504, timeouts, connection errors) with capped exponential backoff,
//! and never retries a call the site answered with a fault: that answer is
//! returned as [`ClientError::Fault`] with the site's own message.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use sg_protocol::{Auth, Fault, Request};

/// What can go wrong talking to a site.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The site answered with a fault.
    #[error("site fault: {0}")]
    Fault(Fault),
    /// The site answered with an HTTP error status.
    #[error("{method}: HTTP {status} from the site")]
    Http { method: String, status: u16 },
    /// The site could not be reached, or the connection failed.
    #[error("{method}: can't reach the site: {source}")]
    Transport {
        method: String,
        #[source]
        source: reqwest::Error,
    },
    /// The site's reply was not what the protocol says.
    #[error("{method}: unexpected reply: {detail}")]
    Decode { method: String, detail: String },
    /// The site URL is not usable.
    #[error("invalid site URL '{0}': use http(s)://host[:port][/prefix]")]
    BadUrl(String),
}

impl ClientError {
    /// Whether trying the same call again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http { status, .. } => matches!(status, 502..=504),
            ClientError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// Retry policy for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// A client of one site with one set of credentials.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    auth: Auth,
    retry: RetryPolicy,
    /// How long one attempt may take before it counts as a transient failure.
    timeout: Duration,
    /// The newest `Date` header of the site's replies (seconds since the
    /// epoch), 0 before any; shared by the clones of a client.
    site_date: Arc<AtomicI64>,
}

impl std::fmt::Debug for Client {
    /// Credentials are left out, so a client can be logged safely.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The `/api3/json` URL of a site, joined as the official client joins it.
pub fn endpoint_url(base_url: &str) -> Result<String, ClientError> {
    let lower = base_url.trim().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(ClientError::BadUrl(base_url.to_string()));
    }
    let trimmed = base_url.trim().trim_end_matches('/');
    Ok(format!("{trimmed}/api3/json"))
}

/// A reply's `results` (or the whole body for methods the site answers
/// unwrapped), or the site's fault.
fn decode_reply(method: &str, body: &[u8]) -> Result<Value, ClientError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        method: method.to_string(),
        detail: format!("not JSON ({e})"),
    })?;
    if let Some(fault) = Fault::from_json(&value) {
        return Err(ClientError::Fault(fault));
    }
    match value {
        Value::Object(mut map) if map.contains_key("results") => {
            Ok(map.remove("results").unwrap_or(Value::Null))
        }
        other => Ok(other),
    }
}

/// Why the text of a reply got with [`Client::call_raw`] is not what the
/// caller expected (`detail`): the site's fault when it is one, else a
/// decode error.
pub fn reply_error(method: &str, body: &[u8], detail: &str) -> ClientError {
    match decode_reply(method, body) {
        Err(e) => e,
        Ok(_) => ClientError::Decode {
            method: method.to_string(),
            detail: detail.to_string(),
        },
    }
}

impl Client {
    /// A client of the site at `base_url` (e.g. `https://studio.shotgrid.autodesk.com`).
    pub fn new(base_url: &str, auth: Auth) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("shotgun-cache/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport {
                method: "connect".into(),
                source: e,
            })?;
        Ok(Client {
            http,
            endpoint: endpoint_url(base_url)?,
            auth,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(120),
            site_date: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// The same client with another per-attempt timeout (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `method` and returns its result: the `results` value, or the
    /// whole body for methods the site answers unwrapped (`info`).
    pub async fn call(&self, method: &str, params: Option<Value>) -> Result<Value, ClientError> {
        let auth = if method == "info" {
            None
        } else {
            Some(self.auth.clone())
        };
        let text = self.send_with_retries(method, auth, params).await?;
        decode_reply(method, &text)
    }

    /// Calls `method` and returns the reply's text undecoded, for a caller
    /// that decodes large replies itself (the import decodes pages straight
    /// into stored form). Retried as [`Client::call`] is; when the text is not
    /// what the caller expects, [`reply_error`] tells the site's fault from
    /// other text.
    pub async fn call_raw(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<Vec<u8>, ClientError> {
        self.send_with_retries(method, Some(self.auth.clone()), params)
            .await
    }

    /// Sends one call, again after a transient failure (never after a fault:
    /// a fault is in the text, which is decoded after).
    async fn send_with_retries(
        &self,
        method: &str,
        auth: Option<Auth>,
        params: Option<Value>,
    ) -> Result<Vec<u8>, ClientError> {
        let body = Request {
            method_name: method.to_string(),
            auth,
            params,
        }
        .to_json();
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match self.send_raw(method, &body).await {
                Err(e) if e.is_transient() && attempt < self.retry.attempts => {
                    tracing::debug!(method, attempt, error = %e, "transient failure, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_raw(&self, method: &str, body: &Value) -> Result<Vec<u8>, ClientError> {
        let transport = |source| ClientError::Transport {
            method: method.to_string(),
            source,
        };
        let response = self
            .http
            .post(&self.endpoint)
            .timeout(self.timeout)
            .header("content-type", "application/json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .map_err(transport)?;
        if let Some(date) = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        {
            self.site_date
                .fetch_max(date.timestamp(), Ordering::Relaxed);
        }
        let status = response.status();
        if !status.is_success() {
            return Err(ClientError::Http {
                method: method.to_string(),
                status: status.as_u16(),
            });
        }
        Ok(Vec::from(response.bytes().await.map_err(transport)?))
    }

    /// The site's clock as the `Date` header of its newest reply gives it
    /// (seconds since the epoch, to the second, rounded down); `None` before a
    /// reply with one. A time taken this way before a step began is at or
    /// before every stamp the site puts on a change made after it began.
    pub fn site_clock(&self) -> Option<i64> {
        Some(self.site_date.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// The site's `info`.
    pub async fn info(&self) -> Result<Value, ClientError> {
        self.call("info", None).await
    }

    /// Reads every record a query matches, page after page.
    /// `params` are `read` params without `paging`.
    pub async fn read_all(
        &self,
        mut params: Value,
        page_size: u64,
    ) -> Result<Vec<Value>, ClientError> {
        let decode = |detail: &str| ClientError::Decode {
            method: "read".into(),
            detail: detail.into(),
        };
        let map = params
            .as_object_mut()
            .ok_or_else(|| decode("read params must be a dictionary"))?;
        map.insert("return_paging_info_without_counts".into(), json!(true));
        let mut records = Vec::new();
        let mut page = 1u64;
        loop {
            map.insert(
                "paging".into(),
                json!({"entities_per_page": page_size, "current_page": page}),
            );
            let result = self.call("read", Some(Value::Object(map.clone()))).await?;
            let entities = result["entities"]
                .as_array()
                .ok_or_else(|| decode("no 'entities' list"))?;
            records.extend(entities.iter().cloned());
            let has_next = result["paging_info"]["has_next_page"]
                .as_bool()
                .ok_or_else(|| decode("no paging_info.has_next_page"))?;
            if !has_next || entities.is_empty() {
                return Ok(records);
            }
            page += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keeps_the_prefix() {
        assert_eq!(
            endpoint_url("https://site.example/").unwrap(),
            "https://site.example/api3/json"
        );
        assert_eq!(
            endpoint_url("http://cache:8090/prefix/").unwrap(),
            "http://cache:8090/prefix/api3/json"
        );
        assert!(endpoint_url("ftp://x").is_err());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let http = |status| ClientError::Http {
            method: "read".into(),
            status,
        };
        assert!(http(502).is_transient() && http(503).is_transient() && http(504).is_transient());
        assert!(!http(500).is_transient() && !http(403).is_transient());
        assert!(!ClientError::Fault(Fault::bad_request("x")).is_transient());
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let client = Client::new("http://x", Auth::script("s", "very-secret")).unwrap();
        assert!(!format!("{client:?}").contains("very-secret"));
    }
}
