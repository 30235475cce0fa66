//! The floor for proxy benchmarks: an HTTP server that answers every request
//! with the same bytes (a reply recorded from the proxy), doing no other
//! work. What a client takes against it is what the client itself costs.
//!
//!     cargo run --release -p sg-server --example floor -- REPLY_FILE
//!
//! Prints `listening on http://HOST:PORT`.

use std::io::Write;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: floor REPLY_FILE");
        std::process::exit(2)
    });
    let reply = Bytes::from(std::fs::read(&path)?);
    // The client's constructor asks `info` first; everything else gets the recorded reply.
    let info = Bytes::from_static(
        br#"{"version":[8,50,0],"full_version":[8,50,0,0],"api_max_entities_per_page":500}"#,
    );
    let app = Router::new().fallback(move |body: Bytes| {
        let answer = if body.windows(6).any(|w| w == b"\"info\"") {
            info.clone()
        } else {
            reply.clone()
        };
        async move {
            (
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                answer,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await
}
