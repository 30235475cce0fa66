//! The cache's secrets as its users keep them: `setup` and `run` under the
//! umask 022 create `config.yaml` and the SQLite cache (with its `-wal` and
//! `-shm`) readable by their owner only; `run` warns once about a
//! `config.yaml` with a key that others may read; the API key comes from
//! `$SHOTGUN_CACHE_API_KEY` (over the file's) or from `shotgun.api_key_file`,
//! and never appears in a log.

#[macro_use]
mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

const IN_STEP_LINE: &str = "in step with the site";
const WARNING: &str = "chmod 600";

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `setup` (under the umask 022) of Project and Shot, with `env` and `extra` flags.
fn setup(
    dir: &Path,
    url: &str,
    database: Option<&str>,
    env: &[(&str, &str)],
    extra: &[&str],
) -> Output {
    let dir_text = dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "setup",
        "--config",
        dir_text,
        "--site",
        url,
        "--script-name",
        "cache",
        "--types",
        "Project,Shot",
        "--yes",
        "--log",
        "info",
    ];
    args.extend_from_slice(extra);
    if let Some(db) = database {
        args.extend_from_slice(&["--database", db]);
    }
    let mut command = umask_022(&args);
    command.envs(env.iter().copied());
    command_of(&mut command, Duration::from_secs(60))
}

/// `run` (under the umask 022) with `env`, logging to `<dir>/<name>.log`.
fn run(cache: &CacheDir, name: &str, env: &[(&str, &str)]) -> Proc {
    Proc::spawn_umask(
        name,
        &["run", "--config", cache.config(), "--log", "info"],
        env,
        &cache.dir.join(format!("{name}.log")),
        Stdio::null(),
    )
}

/// Waits until `run` is in step with the site; fails if it exits first.
fn wait_in_step(run: &mut Proc) {
    let done = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        (count_in_log(&run.log, IN_STEP_LINE) > 0 || !run.alive()).then_some(())
    });
    assert!(done.is_some(), "run is not in step within 60 s");
    assert!(run.alive(), "run exited: {:?}", run.exit_status());
}

fn tuned(dir: &Path) -> CacheDir {
    let cache = CacheDir {
        dir: dir.to_path_buf(),
    };
    cache.tune(&[("fetch_interval", "0.2"), ("listen", "127.0.0.1:0")]);
    cache
}

fn assert_no_key(text: &str, what: &str) {
    assert!(!text.contains(CACHE_KEY), "{what} shows the API key");
}

/// The files a cache keeps its secrets in are never readable by others,
/// from the moment they are created.
#[cfg(unix)]
#[test]
fn setup_and_run_create_private_files() {
    let _serial = serial();
    let started = Instant::now();
    let tmp = TestDir::new();
    let sim = Sim::start(tmp.path(), 7, &[]);
    let dir = tmp.path().join("cache");
    let out = setup(&dir, &sim.url, None, &[(API_KEY_ENV, CACHE_KEY)], &[]);
    assert_eq!(out.code, Some(0), "setup failed: {}", out.stderr);
    assert_no_key(&out.stderr, "setup's output");
    let config = dir.join("config.yaml");
    assert_eq!(mode(&config), 0o600, "config.yaml as setup creates it");
    let text = std::fs::read_to_string(&config).expect("config.yaml");
    assert!(
        text.contains(CACHE_KEY),
        "setup keeps the key from ${API_KEY_ENV}"
    );
    assert!(text.contains("serving:") && text.contains("header_timeout"));
    let cache = tuned(&dir);

    let mut first = run(&cache, "run-1", &[]);
    wait_in_step(&mut first);
    for name in ["cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name} as run creates it");
    }
    let exit = first.terminate(Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
    let log = std::fs::read_to_string(&first.log).unwrap_or_default();
    assert_eq!(
        count_in_log(&first.log, WARNING),
        0,
        "a private config.yaml draws no warning"
    );
    assert_no_key(&log, "run's log");
    note(started, "setup and run created private files");

    // A config.yaml others may read: one warning naming the file and the fix.
    set_mode(&config, 0o644);
    let mut second = run(&cache, "run-2", &[]);
    wait_in_step(&mut second);
    second.terminate(Duration::from_secs(10));
    let warnings: Vec<String> = std::fs::read_to_string(&second.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(WARNING))
        .map(str::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains(config.to_str().expect("utf-8")),
        "{warnings:?}"
    );
}

on_both_stores!(the_key_comes_from_a_key_file_or_the_environment);

/// `setup --api-key-file` writes no key into config.yaml; `run` reads the
/// key file (a wrong key there stops a first start), and
/// `$SHOTGUN_CACHE_API_KEY` overrides it.
fn the_key_comes_from_a_key_file_or_the_environment(backend: Backend) {
    let _serial = serial();
    let started = Instant::now();
    let tmp = TestDir::new();
    let sim = Sim::start(tmp.path(), 11, &[]);
    let dir = tmp.path().join("cache");
    std::fs::create_dir_all(&dir).expect("folder");
    let key_file = dir.join("api-key");
    std::fs::write(&key_file, format!("{CACHE_KEY}\n")).expect("key file");
    let out = setup(
        &dir,
        &sim.url,
        backend.database(),
        &[],
        &["--api-key-file", "api-key"],
    );
    assert_eq!(out.code, Some(0), "setup failed: {}", out.stderr);
    let text = std::fs::read_to_string(dir.join("config.yaml")).expect("config.yaml");
    assert!(text.contains("api_key_file: api-key"), "{text}");
    assert_no_key(&text, "config.yaml");
    let cache = tuned(&dir);

    std::fs::write(&key_file, "a-wrong-key\n").expect("key file");
    let mut wrong = run(&cache, "run-wrong", &[]);
    let exited = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        wrong.exit_status()
    });
    assert!(
        exited.is_some_and(|s| !s.success()),
        "a first run with a wrong key in the key file must fail: {exited:?}"
    );
    note(started, "a wrong key file stops the first run");

    let mut from_env = run(&cache, "run-env", &[(API_KEY_ENV, CACHE_KEY)]);
    wait_in_step(&mut from_env);
    from_env.terminate(Duration::from_secs(10));
    note(started, "the environment's key overrides the key file's");

    std::fs::write(&key_file, format!("{CACHE_KEY}\n")).expect("key file");
    let mut from_file = run(&cache, "run-file", &[]);
    wait_in_step(&mut from_file);
    from_file.terminate(Duration::from_secs(10));
    for proc in [&wrong, &from_env, &from_file] {
        assert_no_key(
            &std::fs::read_to_string(&proc.log).unwrap_or_default(),
            &proc.name,
        );
    }
    note(started, "the key file's key serves");
}
