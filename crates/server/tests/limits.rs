//! The proxy's HTTP server against slow and idle clients, over real TCP: a
//! simulated site, a cache of it and the proxy in this process, short
//! timeouts, and raw sockets that open and say nothing, trickle their headers
//! or their body a byte at a time, or keep a connection idle. The slow ones
//! are closed by the timeouts, and a good client on a fresh connection is
//! answered meanwhile, or, when the slow ones fill every connection slot,
//! once the timeouts have freed one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use sg_engine::{AnyStore, Engine, SqliteStore};
use sg_server::{Proxy, ServeOptions};
use sg_sim::{Credential, EventFaults, Logins, ServerOptions, Site};
use sg_sync::{Cache, CacheConfig, LogProgress};

/// Bounds on how long a test waits for what must happen; generous, not speed checks.
const BOUND: Duration = Duration::from_secs(20);

/// The proxy, in front of a cache of an empty simulated site, until dropped.
struct Running {
    addr: SocketAddr,
    _stop_proxy: tokio::sync::oneshot::Sender<()>,
    _stop_site: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(options: ServeOptions) -> Running {
    let site = tokio::task::spawn_blocking(|| {
        let engine = Engine::new(
            SqliteStore::open_temporary().expect("db"),
            sg_sim::builtin::schema(),
        )
        .expect("engine");
        let logins = Logins {
            allowed: vec![Credential::parse_script("cache:cache-key").expect("script")],
        };
        Arc::new(Site::new(engine, logins, EventFaults::default()).expect("site"))
    })
    .await
    .expect("site");
    let site_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let site_url = format!("http://{}", site_listener.local_addr().expect("addr"));
    let (stop_site, site_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_sim::serve(
        site,
        site_listener,
        ServerOptions::default(),
        async {
            let _ = site_stopped.await;
        },
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!("shotgun:\n  base_url: {site_url}\n  script_name: cache\n  api_key: cache-key\n"),
    )
    .expect("config.yaml");
    std::fs::create_dir_all(dir.path().join("entity-configs")).expect("entity-configs");
    std::fs::write(
        dir.path().join("entity-configs/Project.json"),
        r#"{"fields": ["name"]}"#,
    )
    .expect("entity config");
    let config = CacheConfig::load(dir.path()).expect("config");
    let path = dir.path().join("cache.sqlite");
    let store = tokio::task::spawn_blocking(move || {
        AnyStore::from(SqliteStore::open(&path).expect("store"))
    })
    .await
    .expect("store");
    let cache = Cache::open(config, store, Arc::new(LogProgress))
        .await
        .expect("cache");
    let proxy = Arc::new(
        Proxy::new(
            cache,
            &site_url,
            ("cache".into(), "cache-key".into()),
            &Default::default(),
            Default::default(),
        )
        .expect("proxy"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_proxy, proxy_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sg_server::serve(proxy, listener, options, async {
        let _ = proxy_stopped.await;
    }));
    Running {
        addr,
        _stop_proxy: stop_proxy,
        _stop_site: stop_site,
        _dir: dir,
    }
}

const INFO: &str = r#"{"method_name": "info", "params": []}"#;

fn info_request(connection: &str) -> String {
    format!(
        "POST /api3/json HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n\
         Connection: {connection}\r\nContent-Length: {}\r\n\r\n{INFO}",
        INFO.len()
    )
}

/// Reads one response (head and `Content-Length` body); its status line.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                data.extend_from_slice(&chunk[..n]);
            }
            return Ok(head.lines().next().unwrap_or_default().to_string());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// A fresh connection sends `info`: the status line of the answer.
async fn good_request(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(info_request("close").as_bytes())
        .await
        .expect("send");
    read_response(&mut stream).await.expect("an answer")
}

/// Whether the server closes `stream` (EOF or reset) within `within`; what it sent meanwhile.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, Vec<u8>) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return (false, received),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, received),
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `count` slow connections: every other one says nothing, the rest trickle
/// a request's head a byte every 200 ms. Each task returns whether the server
/// closed its connection within `within`.
async fn slow_connections(addr: SocketAddr, count: usize, within: Duration) -> JoinSet<bool> {
    let mut slow = JoinSet::new();
    for i in 0..count {
        let stream = TcpStream::connect(addr).await.expect("connect");
        slow.spawn(async move {
            let (mut read, mut write) = stream.into_split();
            if i % 2 == 1 {
                tokio::spawn(async move {
                    for byte in b"POST /api3/json HTTP/1.1\r\nHost: proxy\r\nX-Slow: "
                        .iter()
                        .cycle()
                    {
                        if write.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
            } else {
                // Keep the writing half open: the client stays silent, not gone.
                tokio::spawn(async move {
                    tokio::time::sleep(within * 2).await;
                    drop(write);
                });
            }
            let mut chunk = [0u8; 1024];
            let deadline = tokio::time::Instant::now() + within;
            loop {
                match tokio::time::timeout_at(deadline, read.read(&mut chunk)).await {
                    Err(_) => return false,
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => {}
                }
            }
        });
    }
    slow
}

async fn count_closed(mut slow: JoinSet<bool>) -> usize {
    let mut closed = 0;
    while let Some(result) = slow.join_next().await {
        closed += usize::from(result.expect("slow connection task"));
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_and_good_ones_answered_meanwhile() {
    let proxy = start(ServeOptions {
        header_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    })
    .await;
    let slow = slow_connections(proxy.addr, 300, BOUND).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let status = tokio::time::timeout(BOUND, good_request(proxy.addr))
        .await
        .expect("the good client is answered");
    eprintln!(
        "good client answered in {:.2} s beside 300 slow connections",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        count_closed(slow).await,
        300,
        "every slow connection is closed by the header timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_slot_taken_by_slow_clients_a_good_one_waits_for_the_timeouts() {
    let header_timeout = Duration::from_secs(3);
    let proxy = start(ServeOptions {
        header_timeout,
        max_connections: 8,
        ..ServeOptions::default()
    })
    .await;
    let slow = slow_connections(proxy.addr, 8, BOUND).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(info_request("close").as_bytes())
        .await
        .expect("send");
    let mut first = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), stream.peek(&mut first))
            .await
            .is_err(),
        "with all 8 slots taken, a ninth connection is not served"
    );
    let status = tokio::time::timeout(BOUND, read_response(&mut stream))
        .await
        .expect("answered once the slow connections time out")
        .expect("an answer");
    eprintln!(
        "good client answered after {:.2} s (header timeout {} s)",
        asked.elapsed().as_secs_f64(),
        header_timeout.as_secs()
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(count_closed(slow).await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_cut() {
    let proxy = start(ServeOptions {
        body_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    })
    .await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(
            b"POST /api3/json HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n\
              Content-Length: 1000\r\n\r\n",
        )
        .await
        .expect("send the head");
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(BOUND, read.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    };
    trickle.abort();
    eprintln!(
        "trickled body cut after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(closed, "the connection is closed");
    let received = String::from_utf8_lossy(&received);
    // The answer may be lost to the reset of a socket closed with unread bytes.
    assert!(
        received.is_empty() || received.starts_with("HTTP/1.1 408"),
        "{received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let proxy = start(ServeOptions {
        header_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(1),
        ..ServeOptions::default()
    })
    .await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(info_request("keep-alive").as_bytes())
        .await
        .expect("send");
    assert_eq!(
        read_response(&mut stream).await.expect("an answer"),
        "HTTP/1.1 200 OK"
    );
    // A client that comes back within the idle timeout is served on the same connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream
        .write_all(info_request("keep-alive").as_bytes())
        .await
        .expect("send again");
    assert_eq!(
        read_response(&mut stream).await.expect("a second answer"),
        "HTTP/1.1 200 OK"
    );
    let idle_since = Instant::now();
    let (closed, received) = closed_within(&mut stream, BOUND).await;
    eprintln!(
        "idle connection closed after {:.2} s",
        idle_since.elapsed().as_secs_f64()
    );
    assert!(closed, "the idle connection is closed");
    assert!(received.is_empty());
}
