//! The simulated site over real HTTP on a free port, driven by the project's
//! Rust client and by raw requests: paging, auth, faults, and staying up
//! after bad input.

use std::sync::Arc;

use serde_json::{json, Value};

use sg_client::{Client, ClientError};
use sg_engine::{Engine, SqliteStore};
use sg_protocol::{Auth, Schema};
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};

fn schema() -> Schema {
    let f = |t: &str| json!({"data_type": {"value": t, "editable": false}, "properties": {"default_value": {"value": null, "editable": false}}});
    Schema::from_json(
        &json!({"Shot": {"id": f("number"), "code": f("text"), "sg_cut_in": f("number")}}),
        None,
    )
    .expect("schema")
}

/// Starts a site with `shots` records on a free port; returns its URL and a
/// sender that stops it.
async fn start(shots: usize, max_body_bytes: usize) -> (String, tokio::sync::oneshot::Sender<()>) {
    let engine = Engine::new(SqliteStore::open_temporary().expect("db"), schema()).expect("engine");
    let records: Vec<Value> = (1..=shots)
        .map(|i| json!({"id": i, "code": format!("sh{i:04}"), "sg_cut_in": i % 7}))
        .collect();
    engine
        .load_dataset(&json!({ "Shot": records }))
        .expect("load");
    let logins = Logins {
        allowed: vec![Credential::parse_script("tests:key").expect("script")],
    };
    let site = Arc::new(Site::new(engine, logins, EventFaults::default()).expect("site"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_sim::serve(
        site,
        listener,
        ServerOptions {
            max_body_bytes,
            ..ServerOptions::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    (url, stop)
}

fn client(url: &str, key: &str) -> Client {
    Client::new(url, Auth::script("tests", key)).expect("client")
}

async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{url}/api3/json"))
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reading through pages of 500 returns every record once, in id order.
#[tokio::test]
async fn pages_through_more_than_500_records() {
    let (url, _stop) = start(1234, 1 << 20).await;
    let c = client(&url, "key");
    let info = c.info().await.expect("info");
    assert_eq!(info["version"], json!([8, 50, 0]));
    let all = c
        .read_all(json!({"type": "Shot", "return_fields": ["code"]}), 500)
        .await
        .expect("read");
    assert_eq!(all.len(), 1234);
    let ids: Vec<i64> = all.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, (1..=1234).collect::<Vec<_>>());
    let filtered = c
        .read_all(json!({"type": "Shot", "return_fields": ["id"], "filters": {"logical_operator": "and", "conditions": [{"path": "sg_cut_in", "relation": "is", "values": [3]}]}}), 500)
        .await
        .expect("filtered");
    assert_eq!(filtered.len(), (1..=1234).filter(|i| i % 7 == 3).count());
}

/// The prefix form of the endpoint works too, as the client builds it from a base URL with a path.
#[tokio::test]
async fn the_client_reads_the_site_clock_from_reply_dates() {
    let (url, _stop) = start(3, 1 << 20).await;
    let c = client(&url, "key");
    assert_eq!(c.site_clock(), None, "no reply yet");
    let before = chrono::Utc::now().timestamp();
    c.call(
        "read",
        Some(json!({"type": "Shot", "return_fields": ["code"]})),
    )
    .await
    .expect("read");
    let after = chrono::Utc::now().timestamp();
    let clock = c.site_clock().expect("the reply had a Date header");
    // The header is to the second: at most a second before the call.
    assert!(
        (before - 1..=after).contains(&clock),
        "site clock {clock} outside {before}..={after}"
    );
    // Clones share it.
    assert_eq!(c.clone().site_clock(), Some(clock));
}

#[tokio::test]
async fn serves_under_a_prefix() {
    let (url, _stop) = start(3, 1 << 20).await;
    let c = client(&format!("{url}/studio/"), "key");
    let result = c
        .call(
            "read",
            Some(json!({"type": "Shot", "return_fields": ["code"]})),
        )
        .await
        .expect("read");
    assert_eq!(result["entities"].as_array().map(Vec::len), Some(3));
}

/// Wrong credentials get fault 102, and no data.
#[tokio::test]
async fn bad_credentials_get_fault_102() {
    let (url, _stop) = start(3, 1 << 20).await;
    match client(&url, "wrong")
        .call("read", Some(json!({"type": "Shot"})))
        .await
    {
        Err(ClientError::Fault(f)) => assert_eq!(f.code.as_i64(), 102),
        other => panic!("expected fault 102, got {other:?}"),
    }
    let (status, body) =
        post_raw(&url, r#"{"method_name":"read","params":[{"type":"Shot"}]}"#).await;
    assert_eq!((status, body["error_code"].clone()), (200, json!(102)));
}

/// Malformed bodies, wrong envelopes, unknown methods and oversized bodies each
/// get a fault with HTTP 200, and the site keeps answering.
#[tokio::test]
async fn bad_input_gets_faults_and_the_site_stays_up() {
    let (url, _stop) = start(3, 4096).await;
    let auth = r#"{"script_name":"tests","script_key":"key"}"#;
    let bodies = vec![
        "not json".to_string(),
        "[]".to_string(),
        r#"{"params":[]}"#.to_string(),
        format!(r#"{{"method_name":"teleport","params":[{auth}]}}"#),
        format!(
            r#"{{"method_name":"read","params":[{auth},{{"type":"Shot","filters":{{"logical_operator":"and","conditions":[{{"path":"code; DROP TABLE Shot","relation":"is","values":["x"]}}]}}}}]}}"#
        ),
        format!(r#"{{"method_name":"read","params":[{auth},"Shot"]}}"#),
        format!(
            r#"{{"method_name":"read","params":[{auth},{{"type":"Shot","filters":"{}"}}]}}"#,
            "x".repeat(8000)
        ),
    ];
    for body in bodies {
        let (status, reply) = post_raw(&url, body.clone()).await;
        assert_eq!(status, 200, "{body:.80}");
        assert_eq!(reply["exception"], json!(true), "{body:.80} -> {reply}");
        assert!(reply["error_code"].as_i64().is_some() && reply["message"].as_str().is_some());
    }
    let mut deep = json!({"path": "id", "relation": "is", "values": [1]});
    for _ in 0..100 {
        deep = json!({"logical_operator": "and", "conditions": [deep]});
    }
    match client(&url, "key")
        .call("read", Some(json!({"type": "Shot", "filters": deep})))
        .await
    {
        Err(ClientError::Fault(f)) => assert_eq!(f.code.as_i64(), 103),
        other => panic!("expected a fault for deep nesting, got {other:?}"),
    }
    let still = client(&url, "key")
        .call("read", Some(json!({"type": "Shot"})))
        .await
        .expect("still serving");
    assert_eq!(still["entities"].as_array().map(Vec::len), Some(3));
}
