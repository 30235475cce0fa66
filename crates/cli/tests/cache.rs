//! The cache as its users run it: `shotgun-cache sim` as the site, and
//! `setup`, `run`, `status`, `validate` as separate processes, killed and
//! restarted, through site outages, config changes and a failover between
//! two `run`s on one PostgreSQL database. Each test ends with `validate`
//! finding no difference between the cache and the site.
//!
//! Every process a test starts is killed when the test ends, failed or not
//! (see `support::Proc`); the tests run one at a time (`support::serial`).
//! `SGC_TEST_SEED=N` replays a test's random choices.

mod support;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use support::*;

const LEADER_LINE: &str = "this process now keeps the cache in step";

fn seed() -> u64 {
    std::env::var("SGC_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen_range(1..1_000_000))
}

fn all_ready(status: &serde_json::Value, types: usize) -> bool {
    status["types"]
        .as_array()
        .is_some_and(|t| t.len() == types && t.iter().all(|t| t["state"] == "ready"))
}

/// SIGKILL the `run` process 20+ times at random moments, some during the
/// initial import and the rest while it follows the event log under random
/// writes (with late and lost event rows); after the writes stop and one
/// reconcile scan, the cache equals the site.
#[test]
fn sigkill_at_random_moments_loses_nothing() {
    let _serial = serial();
    let started = Instant::now();
    let seed = seed();
    note(
        started,
        format!("seed {seed} (SGC_TEST_SEED={seed} replays it)"),
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    // Latency makes the import take a few seconds, so kills land inside it.
    let sim = Sim::start(
        tmp.path(),
        seed,
        &[
            "--late-commit-ms",
            "300",
            "--lost-event-rate",
            "0.02",
            "--latency-ms",
            "30-90",
        ],
    );
    let cache = CacheDir::setup(&tmp.path().join("cache"), &sim.url, TYPES, None);
    cache.tune(&[("processes", "1")]);
    let ids = SiteIds::read(&sim.url);
    let writer = Writer::start(&sim.url, &ids, seed, 3);
    note(started, format!("site at {}, writing", sim.url));

    let mut runs = 0;
    let mut kills = 0;
    let mut import_kills = 0;
    let start_run = |runs: &mut usize| {
        *runs += 1;
        cache.run(&format!("run-{runs}"))
    };
    // During the import: kill until a kill finds every type imported.
    loop {
        let mut run = start_run(&mut runs);
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        assert!(run.alive(), "run {runs} exited by itself");
        run.kill();
        kills += 1;
        let status = cache.status().expect("status after a kill");
        if all_ready(&status, 8) {
            break;
        }
        import_kills += 1;
        if import_kills >= 10 {
            break;
        }
    }
    note(
        started,
        format!(
            "{import_kills} kills during the import, {} writes so far",
            writer.succeeded()
        ),
    );
    assert!(
        import_kills >= 2,
        "only {import_kills} kills landed in the import"
    );
    // While following the event log (and, at times, scanning).
    while kills < 22 {
        let mut run = start_run(&mut runs);
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..3000)));
        assert!(run.alive(), "run {runs} exited by itself");
        run.kill();
        kills += 1;
    }
    let (written, failed) = writer.stop();
    note(
        started,
        format!("{kills} kills in all; writes stopped: {written} succeeded, {failed} failed"),
    );
    assert!(written > 100, "only {written} writes succeeded");

    let mut run = start_run(&mut runs);
    let status = cache.wait_caught_up(Duration::from_secs(60));
    assert!(all_ready(&status, 8), "{status}");
    cache.wait_scans(&run.log, 2, Duration::from_secs(60));
    note(started, "caught up and scanned; validating");
    cache.assert_valid("after 22 kills");
    let exit = run.terminate(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "run stops cleanly on SIGTERM: {exit:?}"
    );
    let errors: usize = (1..=runs)
        .map(|i| count_in_log(&cache.dir.join(format!("run-{i}.log")), " ERROR "))
        .sum();
    note(
        started,
        format!("valid; {runs} runs logged {errors} ERROR lines"),
    );
}

/// The site fails 30% of calls for ten seconds while writes go on: `run`
/// keeps running, `status` still answers, and after the site recovers the
/// cache catches up and equals the site.
#[test]
fn site_outage_is_ridden_out() {
    let _serial = serial();
    let started = Instant::now();
    let seed = seed();
    note(started, format!("seed {seed}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(
        tmp.path(),
        seed,
        &["--late-commit-ms", "300", "--lost-event-rate", "0.02"],
    );
    let cache = CacheDir::setup(&tmp.path().join("cache"), &sim.url, TYPES, None);
    let mut run = cache.run("run");
    cache.wait_caught_up(Duration::from_secs(60));
    let ids = SiteIds::read(&sim.url);
    let writer = Writer::start(&sim.url, &ids, seed, 2);
    std::thread::sleep(Duration::from_secs(2));
    let before = (writer.succeeded(), writer.failed());

    sim.set_fault_rate(0.3);
    let outage = Instant::now();
    note(started, "fault rate 0.3");
    let mut answered = 0;
    let mut unreachable = 0;
    let mut failures = Vec::new();
    while outage.elapsed() < Duration::from_secs(10) {
        assert!(
            run.alive(),
            "run exited during the outage: {:?}",
            run.exit_status()
        );
        match cache.status() {
            Ok(s) => {
                answered += 1;
                if s["site_reachable"] == false {
                    unreachable += 1;
                }
            }
            Err(e) => failures.push(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    sim.set_fault_rate(0.0);
    let during = (writer.succeeded() - before.0, writer.failed() - before.1);
    note(
        started,
        format!(
            "fault rate 0 again; during the outage: status answered {answered} times \
             ({unreachable} unreachable), failed {} times; writes {} succeeded, {} failed",
            failures.len(),
            during.0,
            during.1
        ),
    );
    assert!(
        answered > 0,
        "status never answered during the outage: {failures:?}"
    );
    assert!(during.0 > 0, "no write succeeded during the outage");
    std::thread::sleep(Duration::from_secs(2));
    let (written, _) = writer.stop();
    assert!(run.alive(), "run exited after the outage");
    cache.wait_caught_up(Duration::from_secs(60));
    cache.wait_scans(&run.log, 2, Duration::from_secs(60));
    cache.assert_valid("after the outage");
    note(
        started,
        format!(
            "valid after {written} writes; run logged {} outage warnings, {} ERROR lines",
            count_in_log(&run.log, "can't be reached"),
            count_in_log(&run.log, " ERROR ")
        ),
    );
}

/// Entity configs change under a running `run`: a type added is imported, a
/// type removed has its tables dropped, a type whose fields change is
/// imported again with the new columns. The cache then equals the site, and
/// equals (tables, columns, counts) a fresh import with the same configs.
#[test]
fn entity_config_changes_apply_while_running() {
    let _serial = serial();
    let started = Instant::now();
    let seed = seed();
    note(started, format!("seed {seed}"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(tmp.path(), seed, &["--late-commit-ms", "300"]);
    let cache = CacheDir::setup(&tmp.path().join("cache"), &sim.url, TYPES, None);
    // Shot starts without two fields, so that changing it can add them.
    let shot_fields = cache.fields("Shot");
    for f in ["description", "assets", "sg_cut_out", "sg_sequence"] {
        assert!(shot_fields.contains(&f.to_string()), "Shot has {f}");
    }
    let initial: Vec<String> = shot_fields
        .iter()
        .filter(|f| *f != "sg_cut_out" && *f != "sg_sequence")
        .cloned()
        .collect();
    cache.write_entity_config("Shot", &initial);

    let mut run = cache.run("run");
    cache.wait_caught_up(Duration::from_secs(60));
    let ids = SiteIds::read(&sim.url);
    let writer = Writer::start(&sim.url, &ids, seed, 2);
    std::thread::sleep(Duration::from_secs(1));
    let mut status_errors = Vec::new();

    // 1. A type added: imported.
    let playlist: Vec<String> = [
        "code",
        "description",
        "versions",
        "project",
        "created_at",
        "updated_at",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cache.write_entity_config("Playlist", &playlist);
    let added = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match cache.status() {
            Ok(s) => (type_status(&s, "Playlist")?["state"] == "ready"
                && count_in_log(&run.log, "entity_type=\"Playlist\"") > 0)
                .then_some(s),
            Err(e) => {
                status_errors.push(e);
                None
            }
        },
    );
    let added = added.expect("Playlist is imported after its config appears");
    note(
        started,
        format!(
            "Playlist imported: {}",
            type_status(&added, "Playlist").unwrap()
        ),
    );

    // 2. A type removed: its tables and its state go.
    std::fs::remove_file(cache.entity_config("Note")).expect("remove Note.json");
    let dropped = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        let tables = sqlite_tables(&cache.sqlite_path());
        let gone = !tables
            .keys()
            .any(|t| t == "Note" || t.starts_with("Note__"));
        (gone && !sqlite_sync_types(&cache.sqlite_path()).contains(&"Note".to_string()))
            .then_some(tables)
    });
    assert!(
        dropped.is_some(),
        "Note's tables are dropped after its config goes: {:?}",
        sqlite_tables(&cache.sqlite_path())
            .keys()
            .collect::<Vec<_>>()
    );
    let status = cache.status().expect("status");
    assert!(type_status(&status, "Note").is_none(), "{status}");
    note(started, "Note dropped");

    // 3. A type's fields changed: two dropped, two added; imported again.
    let shot_before = type_status(&status, "Shot").expect("Shot")["imported_at"].clone();
    let changed: Vec<String> = shot_fields
        .iter()
        .filter(|f| *f != "description" && *f != "assets")
        .cloned()
        .collect();
    cache.write_entity_config("Shot", &changed);
    let reimported = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || match cache.status() {
            Ok(s) => {
                let shot = type_status(&s, "Shot")?;
                (shot["state"] == "ready" && shot["imported_at"] != shot_before).then_some(s)
            }
            Err(e) => {
                status_errors.push(e);
                None
            }
        },
    );
    let reimported = reimported.expect("Shot is imported again after its fields change");
    note(
        started,
        format!(
            "Shot imported again: {}",
            type_status(&reimported, "Shot").unwrap()
        ),
    );
    let tables = sqlite_tables(&cache.sqlite_path());
    let shot_columns = &tables["Shot"];
    for c in ["sg_cut_out", "sg_sequence__type", "sg_sequence__id"] {
        assert!(
            shot_columns.contains(&c.to_string()),
            "Shot.{c} is added: {shot_columns:?}"
        );
    }
    assert!(
        !shot_columns.contains(&"description".to_string()),
        "Shot.description is dropped: {shot_columns:?}"
    );
    assert!(
        !tables.contains_key("Shot__assets"),
        "Shot.assets' link table is dropped"
    );

    let (written, _) = writer.stop();
    assert!(run.alive(), "run exited: {:?}", run.exit_status());
    cache.wait_caught_up(Duration::from_secs(60));
    cache.wait_scans(&run.log, 2, Duration::from_secs(60));
    cache.assert_valid("after the config changes");
    let live = cache.status().expect("status");
    run.kill();
    note(
        started,
        format!("valid after {written} writes; importing afresh"),
    );

    // The same configs imported into a new folder give the same cache.
    let fresh = CacheDir {
        dir: tmp.path().join("fresh"),
    };
    std::fs::create_dir_all(fresh.dir.join("entity-configs")).expect("mkdir");
    std::fs::copy(cache.dir.join("config.yaml"), fresh.dir.join("config.yaml")).expect("copy");
    for entry in std::fs::read_dir(cache.dir.join("entity-configs")).expect("list") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            fresh.entity_config(path.file_stem().unwrap().to_str().unwrap()),
        )
        .expect("copy");
    }
    let mut fresh_run = fresh.run("run");
    let fresh_status = fresh.wait_caught_up(Duration::from_secs(60));
    fresh_run.kill();
    fresh.assert_valid("the fresh import");
    assert_eq!(
        counts(&live),
        counts(&fresh_status),
        "record counts per type"
    );
    assert_eq!(
        sqlite_tables(&cache.sqlite_path()),
        sqlite_tables(&fresh.sqlite_path()),
        "tables and columns"
    );
    note(
        started,
        format!(
            "same as a fresh import; status failed {} times while configs changed{}",
            status_errors.len(),
            status_errors
                .first()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ),
    );
}

/// Two `run`s on one PostgreSQL database: one syncs, the other serves. When
/// the one syncing is SIGKILLed, the other takes over within ten seconds,
/// and the cache ends equal to the site.
#[test]
fn second_run_takes_over_on_postgresql() {
    let _serial = serial();
    let started = Instant::now();
    let seed = seed();
    note(started, format!("seed {seed}"));
    let db = TempDb::create();
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(
        tmp.path(),
        seed,
        &["--late-commit-ms", "300", "--lost-event-rate", "0.02"],
    );
    let cache = CacheDir::setup(&tmp.path().join("cache"), &sim.url, TYPES, Some(&db.url));
    let mut a = cache.run("run-a");
    let mut b = cache.run("run-b");
    let leader = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || match (
            count_in_log(&a.log, LEADER_LINE),
            count_in_log(&b.log, LEADER_LINE),
        ) {
            (0, 0) => None,
            (1, 0) => Some('a'),
            (0, 1) => Some('b'),
            other => panic!("both runs say they sync: {other:?}"),
        },
    )
    .expect("one of the runs takes the sync lock");
    cache.wait_caught_up(Duration::from_secs(60));
    let ids = SiteIds::read(&sim.url);
    let writer = Writer::start(&sim.url, &ids, seed, 2);
    std::thread::sleep(Duration::from_secs(3));
    assert!(a.alive() && b.alive(), "both runs keep running");
    assert_eq!(
        count_in_log(&a.log, LEADER_LINE) + count_in_log(&b.log, LEADER_LINE),
        1,
        "exactly one run syncs"
    );
    let (killed, survivor) = if leader == 'a' {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    note(started, format!("{} syncs; killing it", killed.name));
    killed.kill();
    let killed_at = Instant::now();
    let newest_at_kill = site_newest_event(&sim.url);
    let deadline = Duration::from_secs(10);
    let took_over = wait_for(deadline, Duration::from_millis(50), || {
        (count_in_log(&survivor.log, LEADER_LINE) > 0).then(|| killed_at.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "{} did not take the sync lock within {deadline:?}",
            survivor.name
        )
    });
    let caught_up = wait_for(
        deadline.saturating_sub(killed_at.elapsed()),
        Duration::from_millis(100),
        || {
            let s = cache.status().ok()?;
            (s["watermark"].as_i64()? >= newest_at_kill).then(|| (killed_at.elapsed(), s))
        },
    );
    let (caught_up, status) = caught_up.unwrap_or_else(|| {
        panic!(
            "the cache did not pass event {newest_at_kill} (the newest at the kill) within {deadline:?}: {:?}",
            cache.status()
        )
    });
    note(
        started,
        format!(
            "{} took over after {:.1}s, passed event {newest_at_kill} after {:.1}s (lag then {})",
            survivor.name,
            took_over.as_secs_f64(),
            caught_up.as_secs_f64(),
            status["lag_events"]
        ),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (written, _) = writer.stop();
    assert!(survivor.alive(), "the survivor keeps running");
    cache.wait_caught_up(Duration::from_secs(60));
    cache.wait_scans(&survivor.log, 2, Duration::from_secs(60));
    cache.assert_valid("after the failover");
    survivor.kill();
    note(
        started,
        format!(
            "valid after {written} writes; ERROR lines: {} in {}, {} in {}",
            count_in_log(&a.log, " ERROR "),
            a.name,
            count_in_log(&b.log, " ERROR "),
            b.name
        ),
    );
}
