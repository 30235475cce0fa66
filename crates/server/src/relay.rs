//! Everything a site serves besides `/api3/json` (form uploads, thumbnails,
//! attachment downloads, the web pages a link may lead to) is relayed to the
//! site as it is: method, path, query, the caller's own headers and
//! credentials, and the body streamed both ways, so that a 2 GB upload or
//! download never sits in the proxy's memory.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};

/// Headers that describe one connection, not the message: never relayed.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn relayable(name: &HeaderName) -> bool {
    name != axum::http::header::HOST && !HOP_BY_HOP.contains(&name.as_str())
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if relayable(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Relays requests to one site.
#[derive(Clone)]
pub struct Relay {
    http: reqwest::Client,
    /// The site's URL without a trailing slash (`https://host[/prefix]`).
    base: String,
}

impl Relay {
    pub fn new(site_url: &str) -> Result<Relay, sg_client::ClientError> {
        // Checks the URL the same way the API client does.
        sg_client::endpoint_url(site_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            // The caller sees the site's redirects and encodings as they are.
            .redirect(reqwest::redirect::Policy::none())
            .no_gzip()
            .build()
            .map_err(|e| sg_client::ClientError::Transport {
                method: "connect".into(),
                source: e,
            })?;
        Ok(Relay {
            http,
            base: site_url.trim().trim_end_matches('/').to_string(),
        })
    }

    /// Sends `request` on to the site once and streams its answer back; a
    /// site that can't be reached is answered as a gateway would (502).
    pub async fn relay(&self, request: Request<Body>) -> Response {
        let (parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = format!("{}{}", self.base, path);
        let mut headers = HeaderMap::new();
        copy_headers(&parts.headers, &mut headers);
        let outgoing = self
            .http
            .request(parts.method.clone(), &url)
            .headers(headers)
            .body(reqwest::Body::wrap_stream(body.into_data_stream()));
        let reply = match outgoing.send().await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!(path = parts.uri.path(), "relaying to the site failed: {e}");
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("can't reach the site: {e}"),
                )
                    .into_response();
            }
        };
        let status =
            StatusCode::from_u16(reply.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut headers = HeaderMap::new();
        copy_headers(reply.headers(), &mut headers);
        let mut response = Response::new(Body::from_stream(reply.bytes_stream()));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}
