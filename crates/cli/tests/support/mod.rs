//! Helpers of the command-line tests: processes that are always killed, a
//! simulated site started as `shotgun-cache sim`, configuration folders, the
//! `status`/`validate` commands, a random writer (adapted from the sync's
//! convergence test to the generated production), and throwaway PostgreSQL
//! databases.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use sg_client::{Client, RetryPolicy};
use sg_protocol::Auth;

pub const BIN: &str = env!("CARGO_BIN_EXE_shotgun-cache");
pub const CACHE_KEY: &str = "cache-key";
pub const WRITER_KEY: &str = "writer-key";
pub const QUIET_KEY: &str = "quiet-key";
pub const TYPES: &str = "Project,Sequence,Shot,Asset,Task,Version,HumanUser,Note";

/// The tests start several processes each and time what they do: one test
/// at a time, so they don't starve each other of CPU.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prints a progress line of a test (shown with `--nocapture`, or on failure).
pub fn note(started: Instant, what: impl AsRef<str>) {
    eprintln!(
        "[{:6.1}s] {}",
        started.elapsed().as_secs_f64(),
        what.as_ref()
    );
}

/// Polls `check` every `every` until it returns `Some`, or `None` after `timeout`.
pub fn wait_for<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// How many lines of a log contain `needle`.
pub fn count_in_log(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A temporary folder, kept (and named) when the test fails and
/// `SGC_KEEP_FAILED=1` is set.
pub struct TestDir(Option<tempfile::TempDir>);

impl TestDir {
    pub fn new() -> TestDir {
        TestDir(Some(tempfile::tempdir().expect("tempdir")))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("the folder").path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("SGC_KEEP_FAILED").is_some() {
            if let Some(dir) = self.0.take() {
                eprintln!("kept the failed test's folder: {}", dir.keep().display());
            }
        }
    }
}

/// A child process that is killed (SIGKILL) when dropped, test failure or
/// not; on failure, the end of its log is printed.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], log: &Path, stdout: Stdio) -> Proc {
        let mut command = Command::new(BIN);
        command.args(args).env_remove(API_KEY_ENV);
        Proc::spawn_command(name, &mut command, log, stdout)
    }

    /// [`Proc::spawn`] with these environment variables, under the umask 022
    /// (files created without an explicit mode are readable by everyone).
    pub fn spawn_umask(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
        stdout: Stdio,
    ) -> Proc {
        let mut command = umask_022(args);
        command.envs(env.iter().copied());
        Proc::spawn_command(name, &mut command, log, stdout)
    }

    fn spawn_command(name: &str, command: &mut Command, log: &Path, stdout: Stdio) -> Proc {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = command
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("SHOTGUN_CACHE_CONFIG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("can't start {BIN}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process was taken")
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not stopped within `grace`; the exit status if it stopped.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.pid();
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let status = wait_for(grace, Duration::from_millis(50), || {
            self.child_mut().try_wait().ok().flatten()
        });
        if status.is_some() {
            self.child = None;
        } else {
            self.kill();
        }
        status
    }

    /// Whether it is still running (not exited).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child_mut().stdout.take()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let running = self.child.is_some();
        self.kill();
        if std::thread::panicking() && running {
            eprintln!(
                "---- last lines of {} ({}) ----\n{}\n----",
                self.name,
                self.log.display(),
                tail(&self.log, 40)
            );
        }
    }
}

/// A simulated site: `shotgun-cache sim` on a free port, with the scripts
/// `cache`, `writer` and `quiet` (whose writes log no events).
pub struct Sim {
    pub url: String,
    pub proc: Proc,
}

impl Sim {
    pub fn start(dir: &Path, seed: u64, extra: &[&str]) -> Sim {
        let seed = seed.to_string();
        let cache = format!("cache:{CACHE_KEY}");
        let writer = format!("writer:{WRITER_KEY}");
        let quiet = format!("quiet:{QUIET_KEY}:no-events");
        // The site's data in the test's folder, to look into when a test fails.
        let state = dir.join("site.sqlite");
        let state = state.to_str().expect("utf-8 path");
        let mut args = vec![
            "sim",
            "--state",
            state,
            "--listen",
            "127.0.0.1:0",
            "--generate",
            "small",
            "--seed",
            &seed,
            "--script",
            &cache,
            "--script",
            &writer,
            "--script",
            &quiet,
            "--stall-ms",
            "1000",
            "--log",
            "warn",
        ];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn("sim", &args, &dir.join("sim.log"), Stdio::piped());
        let stdout = proc.take_stdout().expect("sim stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining, so the site never writes into a closed pipe.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the site says where it listens");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of sim: {line:?}"))
            .to_string();
        let sim = Sim { url, proc };
        sim.touch();
        sim
    }

    /// One write, so the event log has a new row: a `run` records where its
    /// reconcile scans start only once it has seen an event (the site's
    /// clock); until then each of its scans reads every record.
    pub fn touch(&self) {
        let value = format!("touched {}", rand::thread_rng().gen::<u32>());
        block_on(self.client("writer", WRITER_KEY).call(
            "update",
            Some(json!({"type": "Project", "id": 1, "fields": [{"field_name": "sg_description", "value": value}]})),
        ))
        .expect("a write");
    }

    /// `POST /_sim/fault_rate`: the fraction of calls that fail from now on.
    pub fn set_fault_rate(&self, rate: f64) {
        let host = self.url.trim_start_matches("http://");
        let body = rate.to_string();
        let mut stream = std::net::TcpStream::connect(host).expect("connect to the site");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "POST /_sim/fault_rate HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "setting the fault rate: {reply}"
        );
    }

    pub fn client(&self, script: &str, key: &str) -> Client {
        Client::new(&self.url, Auth::script(script, key)).expect("client")
    }
}

/// Runs one future to completion on a runtime of its own.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The id of the newest row in the site's event log.
pub fn site_newest_event(url: &str) -> i64 {
    let client = Client::new(url, Auth::script("writer", WRITER_KEY)).expect("client");
    block_on(async {
        let r = client
            .call(
                "read",
                Some(json!({"type": "EventLogEntry", "return_fields": ["id"],
                "sorts": [{"field_name": "id", "direction": "desc"}],
                "paging": {"entities_per_page": 1, "current_page": 1}})),
            )
            .await
            .expect("read the event log");
        r["entities"][0]["id"].as_i64().unwrap_or(0)
    })
}

/// The output of one command.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The binary with `args`, started by a shell that sets the umask 022 first.
pub fn umask_022(args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .env_remove(API_KEY_ENV);
    command
}

/// The variable `run` and `setup` take the API key from.
pub const API_KEY_ENV: &str = "SHOTGUN_CACHE_API_KEY";

/// Runs a command of the binary to its end (killed after `timeout`).
pub fn command(args: &[&str], timeout: Duration) -> Output {
    command_of(
        Command::new(BIN).args(args).env_remove(API_KEY_ENV),
        timeout,
    )
}

/// Runs `command` (of the binary) to its end (killed after `timeout`).
pub fn command_of(command: &mut Command, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("out");
    let err_path = dir.path().join("err");
    let mut child = command
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("SHOTGUN_CACHE_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("out"))
        .stderr(std::fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("start the command");
    let status = wait_for(timeout, Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Output {
        code: status.and_then(|s| s.code()),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// A configuration folder of the cache.
#[derive(Clone)]
pub struct CacheDir {
    pub dir: PathBuf,
}

impl CacheDir {
    /// `shotgun-cache setup` for `types`, then fast intervals for tests.
    pub fn setup(dir: &Path, url: &str, types: &str, database: Option<&str>) -> CacheDir {
        let dir_text = dir.to_str().expect("utf-8 path");
        let mut args = vec![
            "setup",
            "--config",
            dir_text,
            "--site",
            url,
            "--script-name",
            "cache",
            "--api-key",
            CACHE_KEY,
            "--types",
            types,
            "--yes",
            "--log",
            "warn",
        ];
        if let Some(db) = database {
            args.extend_from_slice(&["--database", db]);
        }
        let out = command(&args, Duration::from_secs(60));
        assert_eq!(out.code, Some(0), "setup failed: {}", out.stderr);
        let cache = CacheDir {
            dir: dir.to_path_buf(),
        };
        cache.tune(&[
            ("fetch_interval", "0.2"),
            ("missing_event_timeout", "5"),
            ("scan_interval", "2"),
            // `run` also serves the cache: on a free port.
            ("listen", "127.0.0.1:0"),
        ]);
        cache
    }

    /// Sets keys of config.yaml (each name appears once in the file `setup` writes).
    pub fn tune(&self, settings: &[(&str, &str)]) {
        let path = self.dir.join("config.yaml");
        let text = std::fs::read_to_string(&path).expect("config.yaml");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for (key, value) in settings {
            let at = lines
                .iter()
                .position(|l| l.trim_start().starts_with(&format!("{key}:")))
                .unwrap_or_else(|| panic!("config.yaml has no {key}:\n{text}"));
            let indent = lines[at].len() - lines[at].trim_start().len();
            lines[at] = format!("{}{key}: {value}", " ".repeat(indent));
        }
        std::fs::write(&path, lines.join("\n") + "\n").expect("write config.yaml");
    }

    pub fn config(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }

    pub fn entity_config(&self, entity_type: &str) -> PathBuf {
        self.dir
            .join("entity-configs")
            .join(format!("{entity_type}.json"))
    }

    /// The fields of an entity config.
    pub fn fields(&self, entity_type: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.entity_config(entity_type)).expect("entity config");
        let v: Value = serde_json::from_str(&text).expect("entity config JSON");
        v["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    }

    /// Writes an entity config in one step (a running cache never sees half a file).
    pub fn write_entity_config(&self, entity_type: &str, fields: &[String]) {
        let path = self.entity_config(entity_type);
        let tmp = self.dir.join(format!(".{entity_type}.json.tmp"));
        std::fs::write(&tmp, json!({ "fields": fields }).to_string() + "\n").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("cache.sqlite")
    }

    /// Starts `shotgun-cache run`, logging to `<dir>/<name>.log`.
    pub fn run(&self, name: &str) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        Proc::spawn(
            name,
            &["run", "--config", self.config(), "--log", "info"],
            &log,
            Stdio::null(),
        )
    }

    /// `status --json`, or what went wrong.
    pub fn status(&self) -> Result<Value, String> {
        let out = command(
            &[
                "status",
                "--config",
                self.config(),
                "--json",
                "--log",
                "warn",
            ],
            Duration::from_secs(60),
        );
        if out.code != Some(0) {
            return Err(format!("exit {:?}: {}", out.code, out.stderr));
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
    }

    /// `validate`: the exit code and the differences printed.
    pub fn validate(&self) -> Output {
        command(
            &["validate", "--config", self.config(), "--log", "warn"],
            Duration::from_secs(120),
        )
    }

    /// Waits until every configured type is imported and the cache has
    /// followed the event log to its end; returns that status.
    pub fn wait_caught_up(&self, timeout: Duration) -> Value {
        let mut last = None;
        let status = wait_for(timeout, Duration::from_millis(200), || {
            let s = self.status().ok()?;
            let ready = s["types"]
                .as_array()
                .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["state"] == "ready"));
            let caught_up = s["lag_events"].as_i64() == Some(0);
            last = Some(s.clone());
            (ready && caught_up).then_some(s)
        });
        status.unwrap_or_else(|| {
            panic!(
                "the cache did not catch up within {timeout:?}; last status: {}",
                last.map(|s| s.to_string()).unwrap_or_default()
            )
        })
    }

    /// Waits until the `run` logging to `log` has finished `n` more
    /// reconcile scans, so the last one started after this call.
    pub fn wait_scans(&self, log: &Path, n: usize, timeout: Duration) {
        let before = count_in_log(log, "reconcile scan done");
        let done = wait_for(timeout, Duration::from_millis(100), || {
            (count_in_log(log, "reconcile scan done") >= before + n).then_some(())
        });
        assert!(
            done.is_some(),
            "{n} reconcile scans did not finish within {timeout:?} ({})",
            log.display()
        );
    }

    /// Waits until a reconcile scan has recorded where the next one starts
    /// (scans before that read every record).
    pub fn wait_first_scan(&self, timeout: Duration) {
        let done = wait_for(timeout, Duration::from_millis(200), || {
            let s = self.status().ok()?;
            s["last_scan"].as_str().map(|_| ())
        });
        assert!(done.is_some(), "no scan recorded within {timeout:?}");
    }

    /// `validate` must find no difference.
    pub fn assert_valid(&self, what: &str) {
        let out = self.validate();
        let shown: Vec<&str> = out.stdout.lines().take(30).collect();
        assert_eq!(
            out.code,
            Some(0),
            "{what}: validate found differences or failed:\n{}\n{}",
            shown.join("\n"),
            out.stderr
        );
    }
}

/// Per type: records and retired records, from a status.
pub fn counts(status: &Value) -> Vec<(String, u64, u64)> {
    status["types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["entity_type"].as_str().unwrap_or("").to_string(),
                t["records"].as_u64().unwrap_or(0),
                t["retired"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The entry of one type in a status.
/// Whether `entity_type` is held names-only: one table of `id`, `__retired`
/// and `display`, no link tables, listed by `status` as names only.
#[allow(dead_code)]
pub fn held_names_only(
    tables: &std::collections::BTreeMap<String, Vec<String>>,
    status: &Value,
    entity_type: &str,
    display: &str,
) -> Result<(), String> {
    let prefix = format!("{entity_type}__");
    let links: Vec<&String> = tables.keys().filter(|t| t.starts_with(&prefix)).collect();
    let mut columns = tables.get(entity_type).cloned().unwrap_or_default();
    columns.sort();
    let wanted = vec!["__retired".to_string(), "id".into(), display.to_string()];
    let listed = type_status(status, entity_type);
    if !links.is_empty() || columns != wanted {
        return Err(format!(
            "{entity_type}: link tables {links:?}, columns {columns:?}"
        ));
    }
    match listed {
        Some(t) if t["names_only"] == true && t["state"] == "ready" => Ok(()),
        other => Err(format!("{entity_type} in status: {other:?}")),
    }
}

pub fn type_status<'a>(status: &'a Value, entity_type: &str) -> Option<&'a Value> {
    status["types"]
        .as_array()?
        .iter()
        .find(|t| t["entity_type"] == entity_type)
}

/// Ids of the site's records the writer picks from.
#[derive(Clone, Debug)]
pub struct SiteIds {
    pub projects: Vec<i64>,
    pub sequences: Vec<i64>,
    pub shots: Vec<i64>,
    pub assets: Vec<i64>,
    pub tasks: Vec<i64>,
    pub versions: Vec<i64>,
    pub users: Vec<i64>,
}

impl SiteIds {
    pub fn read(url: &str) -> SiteIds {
        let client = Client::new(url, Auth::script("writer", WRITER_KEY)).expect("client");
        block_on(async {
            let ids = |t: &'static str| {
                let client = client.clone();
                async move {
                    let records = client
                        .read_all(json!({"type": t, "return_fields": ["id"]}), 500)
                        .await
                        .unwrap_or_else(|e| panic!("read {t} ids: {e}"));
                    let ids: Vec<i64> = records.iter().filter_map(|r| r["id"].as_i64()).collect();
                    assert!(!ids.is_empty(), "the generated site has no {t}");
                    ids
                }
            };
            SiteIds {
                projects: ids("Project").await,
                sequences: ids("Sequence").await,
                shots: ids("Shot").await,
                assets: ids("Asset").await,
                tasks: ids("Task").await,
                versions: ids("Version").await,
                users: ids("HumanUser").await,
            }
        })
    }
}

fn pick(rng: &mut StdRng, ids: &[i64]) -> i64 {
    ids[rng.gen_range(0..ids.len())]
}

/// One random write of any kind (the convergence test's generator, on the
/// generated production's ids and valid values). Returns whether it succeeded.
async fn random_write(
    rng: &mut StdRng,
    ids: &SiteIds,
    writer: &Client,
    quiet: Option<&Client>,
    created: &mut Vec<(String, i64)>,
    keep_notes: bool,
) -> bool {
    let client = match quiet {
        Some(quiet) if rng.gen_bool(0.1) => quiet,
        _ => writer,
    };
    let shot = pick(rng, &ids.shots);
    let (method, params) = random_call(rng, ids, created, keep_notes);
    let batch = rng.gen_bool(0.05);
    let result = if batch {
        let mut item = params.clone();
        item["request_type"] = json!(method);
        writer
            .call(
                "batch",
                Some(
                    json!([item, {"request_type": "update", "type": "Shot", "id": shot,
            "fields": [{"field_name": "description", "value": "batched"}]}]),
                ),
            )
            .await
    } else {
        client.call(method, Some(params)).await
    };
    match result {
        Ok(v) => {
            if method == "create" && !batch {
                if let (Some(t), Some(id)) = (v["type"].as_str(), v["id"].as_i64()) {
                    created.push((t.to_string(), id));
                }
            }
            true
        }
        Err(_) => false,
    }
}

/// `total` random writes (as [`random_write`] makes them, all logged) sent
/// `per_call` at a time in `batch` calls. Deletes and revivals are of the
/// records these writes created, tracked here, so that every write of a
/// batch is valid when it runs (a record is often deleted and revived in
/// one batch); a batch the site refuses all the same is sent again call by
/// call. Returns the writes that succeeded and failed.
pub fn write_in_batches(
    url: &str,
    ids: &SiteIds,
    seed: u64,
    total: usize,
    per_call: usize,
) -> (u64, u64) {
    let writer = Client::new(url, Auth::script("writer", WRITER_KEY)).expect("client");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut active: Vec<(String, i64)> = Vec::new();
    let mut retired: Vec<(String, i64)> = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    block_on(async {
        let mut sent = 0;
        while sent < total {
            let n = per_call.min(total - sent);
            sent += n;
            let mut calls: Vec<(&str, Value)> = Vec::with_capacity(n);
            for _ in 0..n {
                let (method, params) = random_call(&mut rng, ids, &[], false);
                let call = match method {
                    "delete" | "revive" => {
                        let delete = rng.gen_bool(0.5);
                        let (from, to) = if delete {
                            (&mut active, &mut retired)
                        } else {
                            (&mut retired, &mut active)
                        };
                        if from.is_empty() {
                            let shot = pick(&mut rng, &ids.shots);
                            let value = format!("described {}", rng.gen::<u32>());
                            (
                                "update",
                                json!({"type": "Shot", "id": shot,
                                "fields": [{"field_name": "description", "value": value}]}),
                            )
                        } else {
                            let (t, id) = from.swap_remove(rng.gen_range(0..from.len()));
                            to.push((t.clone(), id));
                            let verb = if delete { "delete" } else { "revive" };
                            (verb, json!({"type": t, "id": id}))
                        }
                    }
                    _ => (method, params),
                };
                calls.push(call);
            }
            let items: Vec<Value> = calls
                .iter()
                .map(|(method, params)| {
                    let mut item = params.clone();
                    item["request_type"] = json!(method);
                    item
                })
                .collect();
            let results: Vec<Option<Value>> =
                match writer.call("batch", Some(Value::Array(items))).await {
                    Ok(Value::Array(results)) => results.into_iter().map(Some).collect(),
                    _ => {
                        let mut one_by_one = Vec::new();
                        for (method, params) in &calls {
                            one_by_one.push(writer.call(method, Some(params.clone())).await.ok());
                        }
                        one_by_one
                    }
                };
            for ((method, _), result) in calls.iter().zip(results) {
                match result {
                    Some(v) => {
                        ok += 1;
                        if *method == "create" {
                            if let (Some(t), Some(id)) = (v["type"].as_str(), v["id"].as_i64()) {
                                active.push((t.to_string(), id));
                            }
                        }
                    }
                    None => failed += 1,
                }
            }
        }
    });
    (ok, failed)
}

/// One random call of any kind: its method and params.
fn random_call(
    rng: &mut StdRng,
    ids: &SiteIds,
    created: &[(String, i64)],
    keep_notes: bool,
) -> (&'static str, Value) {
    let link = |t: &str, id: i64| json!({"type": t, "id": id});
    let shot = pick(rng, &ids.shots);
    let asset = pick(rng, &ids.assets);
    let task = pick(rng, &ids.tasks);
    let shot_statuses = ["wtg", "rdy", "ip", "hld", "fin", "omt"];
    let task_statuses = ["wtg", "rdy", "ip", "rev", "hld", "fin"];
    let call = match rng.gen_range(0..15) {
        0 => (
            "create",
            json!({"type": "Shot", "fields": [{"field_name": "code", "value": format!("NEW{}", rng.gen::<u16>())},
                {"field_name": "project", "value": link("Project", pick(rng, &ids.projects))},
                {"field_name": "sg_sequence", "value": link("Sequence", pick(rng, &ids.sequences))},
                {"field_name": "assets", "value": [link("Asset", asset)]}], "return_fields": ["id"]}),
        ),
        1 => (
            "create",
            json!({"type": "Task", "fields": [{"field_name": "content", "value": "new task"},
                {"field_name": "project", "value": link("Project", pick(rng, &ids.projects))},
                {"field_name": "entity", "value": if rng.gen_bool(0.5) { link("Shot", shot) } else { link("Asset", asset) }},
                {"field_name": "due_date", "value": format!("2025-0{}-1{}", rng.gen_range(1..=9), rng.gen_range(0..=9))}], "return_fields": ["id"]}),
        ),
        2 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "code", "value": format!("SH{shot:03}_{}", rng.gen::<u8>())}]}),
        ),
        3 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "sg_status_list", "value": shot_statuses[rng.gen_range(0..shot_statuses.len())]},
                {"field_name": "sg_cut_in", "value": rng.gen_range(900..1200)},
                {"field_name": "sg_cut_out", "value": rng.gen_range(1200..1500)}]}),
        ),
        4 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "assets", "value": [link("Asset", asset)],
                "multi_entity_update_mode": (["add", "remove", "set"][rng.gen_range(0..3)])}]}),
        ),
        5 => (
            "update",
            json!({"type": "Task", "id": task, "fields": [{"field_name": "entity", "value": link("Shot", shot)},
                {"field_name": "sg_status_list", "value": task_statuses[rng.gen_range(0..task_statuses.len())]}]}),
        ),
        6 => (
            "update",
            json!({"type": "Task", "id": task, "fields": [{"field_name": "task_assignees", "value": [link("HumanUser", pick(rng, &ids.users))],
                "multi_entity_update_mode": if rng.gen_bool(0.5) { "add" } else { "remove" }}]}),
        ),
        7 => (
            "update",
            json!({"type": "Sequence", "id": pick(rng, &ids.sequences), "fields": [{"field_name": "code", "value": format!("SEQ_R{}", rng.gen::<u8>())}]}),
        ),
        8 => (
            "delete",
            json!({"type": if rng.gen_bool(0.5) { "Task" } else { "Shot" }, "id": if rng.gen_bool(0.5) { task } else { shot }}),
        ),
        9 => (
            "revive",
            json!({"type": if rng.gen_bool(0.5) { "Task" } else { "Shot" }, "id": if rng.gen_bool(0.5) { task } else { shot }}),
        ),
        10 => (
            "update",
            json!({"type": "Asset", "id": asset, "fields": [{"field_name": "code", "value": format!("asset_{asset}_{}", rng.gen::<u8>())},
                {"field_name": "shots", "value": [link("Shot", shot)], "multi_entity_update_mode": "add"}]}),
        ),
        11 => (
            "update",
            json!({"type": "Version", "id": pick(rng, &ids.versions), "fields": [{"field_name": "description", "value": format!("note {}", rng.gen::<u32>())},
                {"field_name": "entity", "value": link("Shot", shot)}]}),
        ),
        12 => (
            "create",
            json!({"type": "Note", "fields": [{"field_name": "subject", "value": "look"}, {"field_name": "content", "value": "hello"},
                {"field_name": "project", "value": link("Project", pick(rng, &ids.projects))},
                {"field_name": "note_links", "value": [link("Shot", shot)]}], "return_fields": ["id"]}),
        ),
        13 => (
            "update",
            json!({"type": "Shot", "id": shot, "fields": [{"field_name": "description", "value": format!("described {}", rng.gen::<u32>())}]}),
        ),
        _ => {
            let deletable: Vec<&(String, i64)> = created
                .iter()
                .filter(|(t, _)| !keep_notes || t != "Note")
                .collect();
            if let Some((t, id)) = deletable
                .get(rng.gen_range(0..deletable.len().max(1)))
                .map(|c| (*c).clone())
            {
                ("delete", json!({"type": t, "id": id}))
            } else {
                (
                    "update",
                    json!({"type": "Shot", "id": shot, "fields": [{"field_name": "description", "value": "batch"}]}),
                )
            }
        }
    };
    call
}

/// Threads writing random changes to the site until stopped. A call that
/// fails (a fault, or a transient failure that outlasts the client's
/// retries) is not counted.
pub struct Writer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Writer {
    pub fn start(url: &str, ids: &SiteIds, seed: u64, threads: usize) -> Writer {
        Writer::start_with(url, ids, seed, threads, false, Duration::ZERO)
    }

    /// [`Writer::start`] whose writes all log events (none by the `quiet`
    /// script): the event log alone can keep a cache in step with them.
    pub fn start_logged(
        url: &str,
        ids: &SiteIds,
        seed: u64,
        threads: usize,
        pause: Duration,
    ) -> Writer {
        Writer::spawn(url, ids, seed, threads, false, pause, false)
    }

    /// `keep_notes`: never delete a Note (see the ignored test
    /// `links_to_retired_records_of_an_uncached_type_are_hidden`);
    /// `pause`: each thread waits this long after each write.
    pub fn start_with(
        url: &str,
        ids: &SiteIds,
        seed: u64,
        threads: usize,
        keep_notes: bool,
        pause: Duration,
    ) -> Writer {
        Writer::spawn(url, ids, seed, threads, keep_notes, pause, true)
    }

    /// `quiet`: a tenth of the writes by the script that logs no events.
    fn spawn(
        url: &str,
        ids: &SiteIds,
        seed: u64,
        threads: usize,
        keep_notes: bool,
        pause: Duration,
        quiet: bool,
    ) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|i| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (url, ids) = (url.to_string(), ids.clone());
                std::thread::spawn(move || {
                    let retry = RetryPolicy {
                        attempts: 4,
                        first_delay: Duration::from_millis(100),
                        max_delay: Duration::from_millis(500),
                    };
                    let writer = Client::new(&url, Auth::script("writer", WRITER_KEY))
                        .expect("client")
                        .with_retry(retry.clone());
                    let quiet_writer = quiet.then(|| {
                        Client::new(&url, Auth::script("quiet", QUIET_KEY))
                            .expect("client")
                            .with_retry(retry)
                    });
                    let mut rng = StdRng::seed_from_u64(seed * 1000 + i as u64);
                    let mut created = Vec::new();
                    block_on(async {
                        while !stop.load(Ordering::Relaxed) {
                            if random_write(
                                &mut rng,
                                &ids,
                                &writer,
                                quiet_writer.as_ref(),
                                &mut created,
                                keep_notes,
                            )
                            .await
                            {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            if !pause.is_zero() {
                                tokio::time::sleep(pause).await;
                            }
                        }
                    });
                })
            })
            .collect();
        Writer {
            stop,
            ok,
            failed,
            threads,
        }
    }

    pub fn succeeded(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops the threads; returns the writes that succeeded and those that failed.
    pub fn stop(mut self) -> (u64, u64) {
        self.halt();
        (self.succeeded(), self.failed())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The PostgreSQL server the tests use (the `test` database is only used to
/// create and drop the tests' own databases).
pub fn postgres_admin_url() -> String {
    std::env::var("SHOTGUN_CACHE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own for one test, dropped at the end.
pub struct TempDb {
    pub name: String,
    pub url: String,
}

impl TempDb {
    pub fn create() -> TempDb {
        let admin = postgres_admin_url();
        let name = format!(
            "sgc_cli_{}_{}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .expect("PostgreSQL must be running for this test");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        TempDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// Runs a query in the test database and returns the first column of every row.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        client
            .query(sql, &[])
            .expect("query")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&postgres_admin_url(), postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Table names and their columns in an SQLite cache (state tables left out).
pub fn sqlite_tables(path: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the cache read-only");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name")
        .expect("prepare");
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .filter_map(Result::ok)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{name}') ORDER BY name"
                ))
                .expect("prepare");
            let cols: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .expect("query")
                .filter_map(Result::ok)
                .collect();
            (name, cols)
        })
        .collect()
}

/// The types with a row in the SQLite cache's `__sync_types`.
pub fn sqlite_sync_types(path: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the cache read-only");
    let mut stmt = conn
        .prepare("SELECT entity_type FROM __sync_types ORDER BY entity_type")
        .expect("prepare");
    let out = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .filter_map(Result::ok)
        .collect();
    out
}

/// Where a test's cache keeps its data: the SQLite file `setup` puts in the
/// configuration folder, or a PostgreSQL database of the test's own. The
/// tests of `run` that are not about one store run on both.
pub enum Backend {
    Sqlite,
    Postgres(TempDb),
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend::Sqlite
    }

    pub fn postgres() -> Backend {
        Backend::Postgres(TempDb::create())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// The `--database` to give `setup` (`None`: its SQLite default).
    pub fn database(&self) -> Option<&str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres(db) => Some(&db.url),
        }
    }

    /// Another store of the same kind, for a second cache to compare with.
    pub fn another(&self) -> Backend {
        match self {
            Backend::Sqlite => Backend::sqlite(),
            Backend::Postgres(_) => Backend::postgres(),
        }
    }

    /// The cache's tables (state tables left out) and their columns.
    pub fn tables(&self, cache: &CacheDir) -> std::collections::BTreeMap<String, Vec<String>> {
        match self {
            Backend::Sqlite => sqlite_tables(&cache.sqlite_path()),
            Backend::Postgres(db) => {
                let mut tables = std::collections::BTreeMap::<String, Vec<String>>::new();
                for row in db.query_strings(
                    "SELECT table_name || '|' || column_name FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_\\_%' \
                     ORDER BY 1",
                ) {
                    if let Some((table, column)) = row.split_once('|') {
                        tables
                            .entry(table.to_string())
                            .or_default()
                            .push(column.to_string());
                    }
                }
                for columns in tables.values_mut() {
                    columns.sort();
                }
                tables
            }
        }
    }

    /// The types with a row in the cache's `__sync_types`.
    pub fn sync_types(&self, cache: &CacheDir) -> Vec<String> {
        match self {
            Backend::Sqlite => sqlite_sync_types(&cache.sqlite_path()),
            Backend::Postgres(db) => {
                db.query_strings("SELECT entity_type FROM \"__sync_types\" ORDER BY entity_type")
            }
        }
    }
}

/// Runs a test once on each store: `name::sqlite`, `name::postgresql`.
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                super::$name(Backend::sqlite())
            }
            #[test]
            fn postgresql() {
                super::$name(Backend::postgres())
            }
        }
    )*};
}
