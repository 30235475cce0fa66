//! Sending a request to the site unchanged, and its reply back unchanged.

use axum::body::Bytes;
use reqwest::StatusCode;

/// The site's reply, as it came.
#[derive(Debug, Clone)]
pub struct SiteReply {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Forwards raw request bodies to one site.
#[derive(Clone)]
pub struct Forwarder {
    http: reqwest::Client,
    endpoint: String,
}

impl Forwarder {
    pub fn new(site_url: &str) -> Result<Forwarder, sg_client::ClientError> {
        let endpoint = sg_client::endpoint_url(site_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .timeout(std::time::Duration::from_secs(600))
            // A redirect (to a login or maintenance page) is the site's
            // answer as it is: never followed, never taken for the API's.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| sg_client::ClientError::Transport {
                method: "connect".into(),
                source: e,
            })?;
        Ok(Forwarder { http, endpoint })
    }

    /// Sends `body` to the site's `/api3/json` once (never retried: a write
    /// must not reach the site twice) and returns what it answered.
    pub async fn send(&self, body: Bytes) -> Result<SiteReply, reqwest::Error> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await?;
        Ok(SiteReply {
            status,
            content_type,
            body,
        })
    }
}
