//! HTTP for the simulated site: `POST /api3/json` (and `/<prefix>/api3/json`),
//! HTTP/1.1 keep-alive, many clients at once. Faults go out with HTTP 200, as
//! a site sends them; a request the site cannot read gets a fault, never a
//! dropped connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

use sg_protocol::{Fault, Request};

use crate::methods::Site;

/// Options of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bodies larger than this get a fault (default 50 MB).
    pub max_body_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 50 * 1024 * 1024,
        }
    }
}

fn json_response(body: &serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn api(State(site): State<Arc<Site>>, method: Method, uri: Uri, body: Bytes) -> Response {
    if !uri.path().trim_end_matches('/').ends_with("/api3/json") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    let answer = tokio::task::spawn_blocking(move || {
        Request::from_slice(&body).and_then(|request| site.handle(&request))
    })
    .await;
    match answer {
        Ok(Ok(reply)) => json_response(&reply.to_json()),
        Ok(Err(fault)) => json_response(&fault.to_json()),
        Err(join_error) => {
            tracing::error!("request handler failed: {join_error}");
            json_response(
                &Fault::new(sg_protocol::ErrorCode::Other(100), "Internal error").to_json(),
            )
        }
    }
}

/// A body over the limit is answered with a fault in the site's format.
async fn too_large(response: Response) -> Response {
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return json_response(&Fault::bad_request("Request body is too large").to_json());
    }
    response
}

/// Serves `site` on `listener` until `shutdown` completes.
pub async fn serve(
    site: Arc<Site>,
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .fallback(api)
        .layer(axum::middleware::map_response(too_large))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(site);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
