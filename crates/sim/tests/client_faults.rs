//! The project's Rust client against a site that fails as hosted sites fail
//! (HTTP 502/503/504, reset connections, replies that stall): with a short
//! per-attempt timeout and retries, every read answers correctly and every
//! create happens exactly once; faults the site answers (bad credentials) and
//! other non-transient failures are never retried.
//!
//! These live with the simulator because `sg-client` has no dev-dependency on
//! it; `sg-sim` already has one on `sg-client`.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use sg_client::{Client, ClientError, RetryPolicy};
use sg_protocol::Auth;
use sg_sim::{EventFaults, ServerOptions};
use support::*;

const SHOTS: i64 = 200;

async fn faulty_site() -> TestSite {
    let shots: Vec<Value> = (1..=SHOTS)
        .map(|i| json!({"id": i, "code": format!("sh{i:04}"), "sg_cut_in": i * 10}))
        .collect();
    start_with(
        small_schema(),
        json!({"Project": [{"id": PROJECT_ID, "name": PROJECT_NAME}], "Shot": shots}),
        EventFaults::default(),
        ServerOptions {
            fault_rate: 0.2,
            stall: Duration::from_millis(1500),
            ..ServerOptions::default()
        },
    )
    .await
}

fn patient(client: Client) -> Client {
    client
        .with_timeout(Duration::from_millis(800))
        .with_retry(RetryPolicy {
            attempts: 12,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        })
}

/// 300 reads and 100 creates through 20% injected failures all succeed with
/// the right answers, and each create happens exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_creates_succeed_through_transient_faults() {
    let site = faulty_site().await;
    let c = patient(site.client());

    // Without retries the same site does fail, and every failure is transient.
    let once = site
        .client()
        .with_timeout(Duration::from_millis(800))
        .with_retry(RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        });
    let outcomes: Vec<Result<Value, ClientError>> = stream::iter(0..60)
        .map(|_| {
            let once = once.clone();
            async move { once.call("read", Some(json!({"type": "Shot", "return_fields": ["code"], "paging": {"entities_per_page": 1, "current_page": 1}}))).await }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let failures: Vec<&ClientError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        !failures.is_empty(),
        "a 20% fault rate fails some of 60 calls"
    );
    for e in &failures {
        assert!(e.is_transient(), "injected failures are transient: {e}");
    }

    let started = Instant::now();
    let reads: Vec<(i64, Result<Value, ClientError>)> = stream::iter(0..300i64)
        .map(|n| {
            let c = c.clone();
            let id = n % SHOTS + 1;
            async move {
                let params = json!({"type": "Shot", "return_fields": ["code", "sg_cut_in"],
                    "filters": {"logical_operator": "and", "conditions": [{"path": "id", "relation": "is", "values": [id]}]},
                    "paging": {"entities_per_page": 500, "current_page": 1}});
                (id, c.call("read", Some(params)).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (id, result) in reads {
        let result =
            result.unwrap_or_else(|e| panic!("read of Shot {id} failed through retries: {e}"));
        let entities = result["entities"].as_array().expect("entities");
        assert_eq!(entities.len(), 1, "Shot {id}: {result}");
        assert_eq!(entities[0]["code"], json!(format!("sh{id:04}")));
        assert_eq!(entities[0]["sg_cut_in"], json!(id * 10));
    }

    let created: Vec<(usize, Result<Value, ClientError>)> = stream::iter(0..100usize)
        .map(|n| {
            let c = c.clone();
            async move {
                let params = json!({"type": "Shot", "fields": [{"field_name": "code", "value": format!("new{n:03}")}, {"field_name": "sg_cut_in", "value": n}], "return_fields": ["code"]});
                (n, c.call("create", Some(params)).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut new_ids = Vec::new();
    for (n, result) in created {
        let result = result.unwrap_or_else(|e| panic!("create {n} failed through retries: {e}"));
        assert_eq!(result["code"], json!(format!("new{n:03}")));
        new_ids.push(result["id"].as_i64().expect("id"));
    }
    new_ids.sort_unstable();
    new_ids.dedup();
    assert_eq!(new_ids.len(), 100, "100 distinct new ids");

    let all = c
        .read_all(json!({"type": "Shot", "return_fields": ["code"], "sorts": [{"field_name": "id", "direction": "asc"}]}), 100)
        .await
        .expect("read every Shot");
    assert_eq!(
        all.len(),
        SHOTS as usize + 100,
        "every create happened exactly once"
    );
    for n in 0..100 {
        let code = json!(format!("new{n:03}"));
        assert_eq!(
            all.iter().filter(|r| r["code"] == code).count(),
            1,
            "{code} exists once"
        );
    }
    let news = c
        .read_all(
            json!({"type": "EventLogEntry", "return_fields": ["event_type"],
                   "filters": {"logical_operator": "and", "conditions": [{"path": "event_type", "relation": "is", "values": ["Shotgun_Shot_New"]}]}}),
            500,
        )
        .await
        .expect("read the log");
    assert_eq!(news.len(), 100, "one New row per create");
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// Bad credentials against the faulty site come back as fault 102 (after any
/// transient failures before the site answered), not as a retried error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_a_fault_through_transient_faults() {
    let site = faulty_site().await;
    let c = patient(site.client_as(Auth::script(SCRIPT, "wrong")));
    for _ in 0..10 {
        match c
            .call(
                "read",
                Some(json!({"type": "Shot", "return_fields": ["code"]})),
            )
            .await
        {
            Err(ClientError::Fault(f)) => assert_eq!(f.code.as_i64(), 102),
            other => panic!("expected fault 102, got {other:?}"),
        }
    }
}

/// A stand-in site that answers every request the same way and counts them.
async fn counting_site(
    status: u16,
    content_type: &'static str,
    body: &'static str,
    delay: Duration,
) -> (String, Arc<AtomicUsize>) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            (
                StatusCode::from_u16(status).expect("status"),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

/// Faults the site answers, HTTP errors other than 502-504 and replies that
/// are not JSON are returned after one attempt; 502-504 and attempts that
/// time out are retried up to the policy's attempts.
#[tokio::test]
async fn only_transient_failures_are_retried() {
    let policy = RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    let json_type = "application/json";
    let cases: Vec<(u16, &str, &str, Duration, usize, &str)> = vec![
        (
            200,
            json_type,
            r#"{"exception": true, "error_code": 102, "message": "Can't authenticate script 'x'"}"#,
            Duration::ZERO,
            1,
            "fault 102",
        ),
        (
            200,
            json_type,
            r#"{"exception": true, "error_code": 103, "message": "bad field"}"#,
            Duration::ZERO,
            1,
            "fault 103",
        ),
        (500, "text/html", "oops", Duration::ZERO, 1, "http 500"),
        (403, "text/html", "no", Duration::ZERO, 1, "http 403"),
        (
            200,
            "text/html",
            "<html>not json</html>",
            Duration::ZERO,
            1,
            "decode",
        ),
        (
            502,
            "text/html",
            "bad gateway",
            Duration::ZERO,
            3,
            "http 502",
        ),
        (
            503,
            "text/html",
            "maintenance",
            Duration::ZERO,
            3,
            "http 503",
        ),
        (504, "text/html", "timeout", Duration::ZERO, 3, "http 504"),
        (
            200,
            json_type,
            r#"{"results": true}"#,
            Duration::from_millis(1000),
            3,
            "timeout",
        ),
    ];
    for (status, content_type, body, delay, attempts, kind) in cases {
        let (url, hits) = counting_site(status, content_type, body, delay).await;
        let c = Client::new(&url, Auth::script("s", "k"))
            .expect("client")
            .with_retry(policy.clone())
            .with_timeout(Duration::from_millis(200));
        let started = Instant::now();
        let result = c.call("read", Some(json!({"type": "Shot"}))).await;
        let elapsed = started.elapsed();
        match (kind, &result) {
            ("fault 102", Err(ClientError::Fault(f))) => assert_eq!(f.code.as_i64(), 102),
            ("fault 103", Err(ClientError::Fault(f))) => assert_eq!(f.code.as_i64(), 103),
            (
                "http 500" | "http 403" | "http 502" | "http 503" | "http 504",
                Err(ClientError::Http { status: s, .. }),
            ) => {
                assert_eq!(*s, status)
            }
            ("decode", Err(ClientError::Decode { .. })) => {}
            ("timeout", Err(e @ ClientError::Transport { .. })) => assert!(e.is_transient()),
            _ => panic!("{kind}: unexpected result {result:?}"),
        }
        // Let a stalled server's handler count its last hit.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            attempts,
            "{kind}: attempts made"
        );
        if kind == "timeout" {
            assert!(
                elapsed < Duration::from_millis(900),
                "each attempt stops at the client's timeout: {elapsed:?}"
            );
        }
    }
}
