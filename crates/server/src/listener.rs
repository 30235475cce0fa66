//! The proxy's accept loop: at most `max_connections` connections open at
//! once (those beyond wait in the listen backlog until one closes), each
//! served by hyper's HTTP/1 server under the header, idle and body timeouts
//! of [`Limits`], over TLS when configured, and a graceful shutdown that
//! closes quiet connections at once and lets answers in progress finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::activity::{Activity, Answering, Watched};
use crate::body_deadline::DeadlineBody;

/// The per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the
/// connections to finish their answers.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let acceptor = tls.map(TlsAcceptor::from);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first: connections beyond the cap wait in the backlog, unread.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stopping = stopping.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, peer, app, limits, stopping).await,
                Some(acceptor) => {
                    // The handshake counts against the header timeout.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => connection(tls, peer, app, limits, stopping).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot: all slots back means all closed.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Serves one connection until it closes, times out or the server stops.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(limits.header_timeout, limits.idle_timeout);
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            answer(
                app.clone(),
                request,
                limits.body_timeout,
                activity.request_started(),
            )
        })
    };
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stop_seen = false;
    loop {
        let deadline = activity.deadline();
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if activity.expired() {
                    tracing::debug!(%peer, "connection closed: no request in time");
                    return;
                }
            }
            _ = stopping.wait_for(|s| *s), if !stop_seen => {
                stop_seen = true;
                if activity.quiet() {
                    return;
                }
                // Finish the answer in progress, then close.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Answers one request, its body under the body timeout; the connection is
/// idle again once the returned response has been sent (or dropped).
async fn answer(
    mut app: Router,
    request: Request<Incoming>,
    body_timeout: Duration,
    answering: Answering,
) -> Result<Response<ResponseBody>, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let request =
        request.map(|body| Body::new(DeadlineBody::new(body, body_timeout, timed_out.clone())));
    let response = match app.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if timed_out.load(Ordering::Relaxed) {
        // Whatever the handler made of the failed read: the client was too slow.
        let mut response = Response::new(Body::from("the request body took too long to arrive"));
        *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        response
    };
    Ok(response.map(|body| ResponseBody {
        inner: body,
        _answering: answering,
    }))
}

/// A response's body, holding the connection busy until it is dropped.
pub struct ResponseBody {
    inner: Body,
    _answering: Answering,
}

impl http_body::Body for ResponseBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
