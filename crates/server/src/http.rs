//! HTTP for the proxy: `POST /api3/json` (and `/<prefix>/api3/json`) on
//! HTTP/1.1 keep-alive, `GET /healthz` (the process answers), `GET /readyz`
//! (fit to serve: site reachable, sync not stuck; 503 otherwise), and every
//! other path relayed to the site (see [`crate::relay`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;

use sg_protocol::Fault;

use crate::proxy::{Answer, Proxy};
use crate::tls::TlsListener;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Bodies larger than this get a fault (default 50 MB).
    pub max_body_bytes: usize,
    /// Serve HTTPS with this certificate (see [`crate::tls::server_config`]).
    pub tls: Option<Arc<ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: 50 * 1024 * 1024,
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
/// until `shutdown` completes.
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
    match options.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
