//! HTTP for the simulated site: `POST /api3/json` (and `/<prefix>/api3/json`),
//! the upload forms and file downloads of [`crate::file_http`], HTTP/1.1
//! keep-alive, many clients at once. Faults go out with HTTP 200, as
//! a site sends them; a request the site cannot read gets a fault, never a
//! dropped connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use sg_protocol::{Fault, Request};

use crate::file_http;
use crate::methods::Site;

/// Options of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Bodies larger than this get a fault (default 50 MB).
    pub max_body_bytes: usize,
    /// Every call waits this long, picked uniformly in the range, as a hosted site's calls do.
    pub latency: Option<(Duration, Duration)>,
    /// This fraction of calls fails as real sites fail: HTTP 502/503/504, a
    /// reset connection, or a reply that stalls. The call is not carried out.
    pub fault_rate: f64,
    /// How long a stalled reply stalls before it is answered.
    pub stall: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 50 * 1024 * 1024,
            latency: None,
            fault_rate: 0.0,
            stall: Duration::from_secs(30),
        }
    }
}

/// A failure injected in place of an answer.
#[derive(Debug, Clone, Copy)]
enum InjectedFault {
    Status(StatusCode),
    Reset,
    Stall,
}

fn pick_fault(rate: f64) -> Option<InjectedFault> {
    let mut rng = rand::thread_rng();
    if rate <= 0.0 || !rng.gen_bool(rate.min(1.0)) {
        return None;
    }
    Some(match rng.gen_range(0..5) {
        0 => InjectedFault::Status(StatusCode::BAD_GATEWAY),
        1 => InjectedFault::Status(StatusCode::SERVICE_UNAVAILABLE),
        2 => InjectedFault::Status(StatusCode::GATEWAY_TIMEOUT),
        3 => InjectedFault::Reset,
        _ => InjectedFault::Stall,
    })
}

async fn inject(fault: InjectedFault, stall: Duration) -> Response {
    match fault {
        InjectedFault::Status(code) => (
            code,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Bad gateway</body></html>",
        )
            .into_response(),
        InjectedFault::Reset => {
            // A body that fails makes the server drop the connection mid-reply.
            let failing = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                ))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from_stream(failing))
                .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        InjectedFault::Stall => {
            tokio::time::sleep(stall).await;
            (StatusCode::GATEWAY_TIMEOUT, "stalled").into_response()
        }
    }
}

pub(crate) struct AppState {
    pub(crate) site: Arc<Site>,
    options: ServerOptions,
    /// The fault rate in force, in millionths; tests change it while running
    /// with `POST /_sim/fault_rate` (body: a fraction such as `0.3`).
    fault_ppm: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// Waits the configured latency, then, at the fault rate, answers a
    /// failure in place of the call.
    pub(crate) async fn delay_or_fail(&self) -> Option<Response> {
        if let Some((low, high)) = self.options.latency {
            let wait = if high > low {
                rand::thread_rng().gen_range(low..=high)
            } else {
                low
            };
            tokio::time::sleep(wait).await;
        }
        let rate = self.fault_ppm.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6;
        match pick_fault(rate) {
            Some(fault) => Some(inject(fault, self.options.stall).await),
            None => None,
        }
    }
}

fn json_response(body: &serde_json::Value) -> Response {
    text_response(body.to_string().into_bytes())
}

fn text_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn api(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    if uri.path() == "/_sim/fault_rate" && method == Method::POST {
        let rate = std::str::from_utf8(&body)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok());
        return match rate.filter(|r| (0.0..=1.0).contains(r)) {
            Some(r) => {
                state
                    .fault_ppm
                    .store((r * 1e6) as u64, std::sync::atomic::Ordering::Relaxed);
                (StatusCode::OK, format!("fault rate {r}")).into_response()
            }
            None => (
                StatusCode::BAD_REQUEST,
                "expected a fraction between 0 and 1",
            )
                .into_response(),
        };
    }
    if !uri.path().trim_end_matches('/').ends_with("/api3/json") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    if method != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST only").into_response();
    }
    if let Some(failure) = state.delay_or_fail().await {
        return failure;
    }
    let site = state.site.clone();
    let answer = tokio::task::spawn_blocking(move || {
        Request::from_slice(&body).and_then(|request| site.handle_text(&request))
    })
    .await;
    match answer {
        Ok(Ok(text)) => text_response(text),
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
    let committer = site.clone();
    let late_rows = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            let site = committer.clone();
            let _ = tokio::task::spawn_blocking(move || site.commit_late_events()).await;
        }
    });
    let limit = options.max_body_bytes;
    let app = Router::new()
        .route("/upload/upload_file", post(file_http::upload_file))
        .route(
            "/upload/publish_thumbnail",
            post(file_http::publish_thumbnail),
        )
        .route("/file_serve/attachment/{id}", get(file_http::download))
        .fallback(api)
        .layer(axum::middleware::map_response(too_large))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Arc::new(AppState {
            site,
            fault_ppm: std::sync::atomic::AtomicU64::new(
                (options.fault_rate.clamp(0.0, 1.0) * 1e6) as u64,
            ),
            options,
        }));
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    late_rows.abort();
    result
}
