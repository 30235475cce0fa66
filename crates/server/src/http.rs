//! HTTP for the proxy: `POST /api3/json` (and `/<prefix>/api3/json`) on
//! HTTP/1.1 keep-alive, `GET /healthz` (the process answers), `GET /readyz`
//! (fit to serve: site reachable, sync not stuck; 503 otherwise), and every
//! other path relayed to the site (see [`crate::relay`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use sg_protocol::Fault;

use crate::listener::Limits;
use crate::proxy::{Answer, Proxy};

/// How the proxy serves; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Bodies larger than this get a fault (default 50 MiB).
    pub max_body_bytes: usize,
    /// A request's head (its request line and headers) must arrive within
    /// this, counted from the connection's opening for its first request and
    /// from the first byte for the next ones; else the connection is closed
    /// (default 10 s). Over TLS the handshake counts against it too.
    pub header_timeout: Duration,
    /// A request's body must arrive within this from its head, plus what its
    /// chunks earn at [`crate::body_deadline::EARNING_RATE`] bytes a second
    /// (so large uploads at a fair speed are never cut); else the request is
    /// answered 408 and the connection closed (default 60 s).
    pub body_timeout: Duration,
    /// A kept-alive connection that sends nothing for this long after an
    /// answer is closed (default 75 s).
    pub idle_timeout: Duration,
    /// Connections open at once; those beyond wait in the listen backlog
    /// until one closes (default 1024).
    pub max_connections: usize,
    /// Serve HTTPS with this certificate (see [`crate::tls::server_config`]).
    pub tls: Option<Arc<ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: 50 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
            tls: None,
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn handle(
    State(proxy): State<Arc<Proxy>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    // The process lives: it answers.
    if uri.path() == "/healthz" && method == Method::GET {
        return json_response(StatusCode::OK, json!({"alive": true}).to_string());
    }
    // Fit to serve: the site answers and the sync is not stuck.
    if uri.path() == "/readyz" && method == Method::GET {
        return match proxy.cache().readiness().await {
            Ok(r) => {
                let code = if r.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json_response(code, serde_json::to_string(&r).unwrap_or_default())
            }
            Err(e) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ready": false, "error": e.to_string()}).to_string(),
            ),
        };
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    match proxy.handle(body).await {
        Answer::Json(value) => json_response(StatusCode::OK, value.to_string()),
        Answer::JsonText(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            text,
        )
            .into_response(),
        Answer::Site(reply) => {
            let status =
                StatusCode::from_u16(reply.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = reply
                .content_type
                .unwrap_or_else(|| "application/json; charset=utf-8".into());
            (status, [(header::CONTENT_TYPE, content_type)], reply.body).into_response()
        }
        // As a gateway would answer: the client raises its ProtocolError.
        Answer::Unreachable(why) => (StatusCode::BAD_GATEWAY, why).into_response(),
        Answer::SiteUnavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        // shotgun_api3 resends on 502 and 504, not on 503: a write must not go twice.
        Answer::WriteUnconfirmed(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// `/api3/json`, `/healthz` and `/readyz` are the proxy's own; the rest is the site's.
async fn dispatch(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request.uri().path();
    if path != "/healthz"
        && path != "/readyz"
        && !path.trim_end_matches('/').ends_with("/api3/json")
    {
        return proxy.relay().relay(request).await;
    }
    let method = request.method().clone();
    let uri = request.uri().clone();
    // Within the body limit (a larger body is answered by `too_large`).
    match Bytes::from_request(request, &()).await {
        Ok(body) => handle(State(proxy), method, uri, body).await,
        Err(rejection) => rejection.into_response(),
    }
}

async fn too_large(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return json_response(
            StatusCode::OK,
            Fault::bad_request("Request body is too large")
                .to_json()
                .to_string(),
        );
    }
    response
}

/// Serves the proxy on `listener` (over TLS when `options.tls` is set)
/// until `shutdown` completes, then lets the answers in progress finish.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::map_response(too_large))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(proxy);
    let limits = Limits {
        header_timeout: options.header_timeout,
        body_timeout: options.body_timeout,
        idle_timeout: options.idle_timeout,
        max_connections: options.max_connections,
    };
    crate::listener::run(listener, app, limits, options.tls, shutdown).await
}
