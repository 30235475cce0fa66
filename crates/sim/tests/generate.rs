//! The data generator: how much it makes, links stored on both sides,
//! determinism, and records the site itself accepts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use sg_engine::{Engine, SqliteStore, Store};
use sg_protocol::value::{parse_date, parse_date_time};
use sg_protocol::{Auth, DataType, ReadParams, Request};
use sg_sim::generate::{generate_at, Size};
use sg_sim::inverse::inverse_field;
use sg_sim::{Credential, EventFaults, Logins, Site};

/// The generator's clock in these tests: 2024-06-10T00:00:00Z.
const NOW: i64 = 1_717_977_600;
const DAY: i64 = 86_400;

fn site() -> Engine<SqliteStore> {
    Engine::new(
        SqliteStore::open_temporary().expect("db"),
        sg_sim::builtin::schema(),
    )
    .expect("engine")
}

fn generated(size: Size, seed: u64) -> (Engine<SqliteStore>, usize) {
    let engine = site();
    let total = generate_at(&engine, size, seed, NOW, &mut |_, _| {}).expect("generate");
    (engine, total)
}

/// Every record of a type with every field, through `read` in pages of 500.
fn all_records(engine: &Engine<SqliteStore>, entity_type: &str) -> Vec<Map<String, Value>> {
    let catalog = engine.catalog();
    let fields: Vec<&String> = catalog
        .schema
        .entity(entity_type)
        .expect("type")
        .fields
        .keys()
        .collect();
    let mut out = Vec::new();
    for page in 1.. {
        let params = json!({"type": entity_type, "return_fields": fields,
                            "paging": {"entities_per_page": 500, "current_page": page}});
        let params = ReadParams::from_json(params.as_object().expect("object")).expect("params");
        let result = engine.read(&params).expect("read");
        let entities = result["entities"].as_array().expect("entities").clone();
        let done = entities.len() < 500;
        out.extend(
            entities
                .into_iter()
                .map(|e| e.as_object().expect("record").clone()),
        );
        if done {
            break;
        }
    }
    out
}

/// Every record of every type, by type and id.
fn everything(engine: &Engine<SqliteStore>) -> BTreeMap<String, BTreeMap<i64, Map<String, Value>>> {
    let types: Vec<String> = engine.catalog().schema.entities.keys().cloned().collect();
    types
        .into_iter()
        .map(|t| {
            let records = all_records(engine, &t)
                .into_iter()
                .map(|r| (r["id"].as_i64().expect("id"), r))
                .collect();
            (t, records)
        })
        .collect()
}

fn links(value: &Value) -> Vec<(String, i64)> {
    let one = |v: &Value| Some((v.get("type")?.as_str()?.to_string(), v.get("id")?.as_i64()?));
    match value {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        Value::Object(_) => one(value).into_iter().collect(),
        _ => Vec::new(),
    }
}

#[test]
fn small_makes_about_five_thousand_records_and_reports_progress() {
    let engine = site();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let total = generate_at(&engine, Size::Small, 1, NOW, &mut |t, n| {
        let last = seen.insert(t.to_string(), n).unwrap_or(0);
        assert!(n > last, "{t}: progress only grows");
    })
    .expect("generate");
    assert!(
        (4_000..=6_000).contains(&total),
        "small made {total} records"
    );
    assert_eq!(
        seen.values().sum::<usize>(),
        total,
        "progress adds up to the total"
    );

    let data = everything(&engine);
    let stored: usize = data.values().map(BTreeMap::len).sum();
    assert_eq!(stored, total);
    for t in [
        "Project",
        "Episode",
        "Sequence",
        "Shot",
        "Asset",
        "Step",
        "Task",
        "Version",
        "PublishedFile",
        "PublishedFileType",
        "Playlist",
        "Note",
        "Reply",
        "HumanUser",
        "ApiUser",
        "Group",
        "TimeLog",
        "Tag",
    ] {
        assert!(!data[t].is_empty(), "some {t} records");
    }
    assert!(data["EventLogEntry"].is_empty());
    let shot = data["Shot"].values().next().expect("a shot");
    let code = shot["code"].as_str().expect("code");
    assert!(
        code.len() == 10 && code.starts_with("SH") && code.as_bytes()[5] == b'_',
        "{code}"
    );
    assert!(data["Sequence"]
        .values()
        .all(|s| s["code"].as_str().is_some_and(|c| c.starts_with("SEQ_"))));
    // Some shots and assets carry tags, each the name of a Tag record.
    let tags: BTreeSet<&str> = data["Tag"]
        .values()
        .filter_map(|t| t["name"].as_str())
        .collect();
    let mut tagged = 0;
    for record in data["Shot"].values().chain(data["Asset"].values()) {
        let names = record["tag_list"].as_array().expect("a list of names");
        tagged += usize::from(!names.is_empty());
        for name in names {
            assert!(
                tags.contains(name.as_str().unwrap_or("")),
                "{name} is a Tag"
            );
        }
    }
    assert!(tagged > 10, "{tagged} tagged shots and assets");
}

/// Checks that every link the site keeps in step is stored on both sides;
/// returns how many links of each `Type.field` it checked.
fn assert_links_mirrored(
    data: &BTreeMap<String, BTreeMap<i64, Map<String, Value>>>,
    schema: &sg_protocol::Schema,
) -> BTreeMap<String, usize> {
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for (t, records) in data {
        for (id, record) in records {
            for (field, value) in record {
                for (target_type, target_id) in links(value) {
                    let Some(inverse) = inverse_field(schema, t, field, &target_type) else {
                        continue;
                    };
                    let target = data[&target_type].get(&target_id).unwrap_or_else(|| {
                        panic!("{t} {id}.{field} links to missing {target_type} {target_id}")
                    });
                    let back = links(target.get(&inverse).unwrap_or(&Value::Null));
                    assert!(
                        back.contains(&(t.clone(), *id)),
                        "{t} {id}.{field} has {target_type} {target_id}, whose {inverse} lacks it: {back:?}"
                    );
                    *checked.entry(format!("{t}.{field}")).or_default() += 1;
                }
            }
        }
    }
    checked
}

/// Every link the site keeps in step is stored on both sides: Shot.assets
/// and Asset.shots, Task.entity and Shot.tasks, Note.note_links and
/// Shot.notes, Playlist.versions and Version.playlists, and the rest.
#[test]
fn both_sides_of_every_mirrored_link_agree() {
    let (engine, _) = generated(Size::Small, 2);
    let data = everything(&engine);
    let checked = assert_links_mirrored(&data, &engine.catalog().schema);
    for pair in [
        "Shot.assets",
        "Asset.shots",
        "Task.entity",
        "Shot.tasks",
        "Asset.tasks",
        "Project.tasks",
        "Note.note_links",
        "Shot.notes",
        "Version.notes",
        "Playlist.versions",
        "Version.playlists",
        "Shot.sg_sequence",
        "Sequence.shots",
        "Reply.entity",
        "Note.replies",
        "PublishedFile.version",
        "Version.published_files",
        "Task.upstream_tasks",
        "Task.downstream_tasks",
        "PublishedFile.upstream_published_files",
        "PublishedFile.downstream_published_files",
        "Asset.assets",
        "Asset.parents",
        "Group.users",
        "HumanUser.groups",
        "Project.users",
        "HumanUser.projects",
    ] {
        assert!(
            checked.get(pair).is_some_and(|n| *n > 0),
            "{pair} has links: {checked:?}"
        );
    }
    assert_eq!(checked["Shot.assets"], checked["Asset.shots"]);
    assert_eq!(
        checked["Task.entity"],
        ["Shot", "Asset", "Sequence", "Project", "Episode"]
            .iter()
            .map(|t| checked.get(&format!("{t}.tasks")).copied().unwrap_or(0))
            .sum::<usize>()
    );

    // Episodes and their sequences, a pair the site does not mirror, agree too.
    for (id, episode) in &data["Episode"] {
        for (_, seq) in links(&episode["sequences"]) {
            assert_eq!(
                links(&data["Sequence"][&seq]["episode"]),
                vec![("Episode".to_string(), *id)]
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_data() {
    let (a, total_a) = generated(Size::Small, 42);
    let (b, total_b) = generated(Size::Small, 42);
    assert_eq!(total_a, total_b);
    let (data_a, data_b) = (everything(&a), everything(&b));
    for (t, records) in &data_a {
        assert_eq!(records.len(), data_b[t].len(), "{t} count");
        for (id, record) in records {
            assert_eq!(Some(record), data_b[t].get(id), "{t} {id}");
        }
    }
    let (c, _) = generated(Size::Small, 43);
    assert_ne!(
        everything(&c)["Shot"],
        data_a["Shot"],
        "another seed, another production"
    );
}

/// Every value is one the site would accept: statuses and list values from
/// the valid values, links to existing records of valid types, date-times
/// within the year before the clock; and the site itself accepts every
/// editable value of a sample of each type when it is written back.
#[test]
fn generated_records_pass_the_sites_validation() {
    let (engine, _) = generated(Size::Small, 3);
    let data = everything(&engine);
    let catalog = engine.catalog();
    for (t, records) in &data {
        let entity = catalog.schema.entity(t).expect("type");
        for (id, record) in records {
            for (name, value) in record {
                if value.is_null() || name == "type" {
                    continue;
                }
                let field = entity
                    .field(name)
                    .unwrap_or_else(|| panic!("{t}.{name} is in the schema"));
                let at = format!("{t} {id}.{name} = {value}");
                match field.data_type {
                    DataType::StatusList | DataType::List => {
                        let s = value.as_str().expect("text");
                        assert!(
                            field.valid_values.iter().any(|v| v == s),
                            "{at}: not a valid value"
                        );
                    }
                    DataType::Entity | DataType::MultiEntity => {
                        for (target_type, target_id) in links(value) {
                            assert!(
                                field.valid_types.contains(&target_type),
                                "{at}: not a valid type"
                            );
                            assert!(
                                data[&target_type].contains_key(&target_id),
                                "{at}: missing record"
                            );
                        }
                    }
                    DataType::DateTime => {
                        let s = value.as_str().expect("text");
                        assert!(s.ends_with('Z') && s.len() == 20, "{at}");
                        let when = parse_date_time(s).expect("date-time");
                        assert!(
                            (NOW - 365 * DAY..=NOW).contains(&when),
                            "{at}: outside the last year"
                        );
                    }
                    DataType::Date => {
                        let day = parse_date(value.as_str().expect("text")).expect("date");
                        let first = chrono::DateTime::from_timestamp(NOW - 365 * DAY, 0)
                            .expect("t")
                            .date_naive();
                        assert!(day >= first, "{at}: before the last year");
                    }
                    _ => {}
                }
            }
            for audit in ["created_at", "created_by", "updated_at", "updated_by"] {
                if entity.field(audit).is_some() && t != "EventLogEntry" {
                    assert!(!record[audit].is_null(), "{t} {id} has {audit}");
                }
            }
            if let (Some(created), Some(updated)) =
                (record.get("created_at"), record.get("updated_at"))
            {
                assert!(
                    updated.as_str() >= created.as_str(),
                    "{t} {id} updated before it was created"
                );
            }
        }
    }

    // Written back through the site, every editable value passes its checks.
    let logins = Logins {
        allowed: vec![Credential::parse_script("tests:key").expect("script")],
    };
    let site = Site::new(engine, logins, EventFaults::default()).expect("site");
    for (t, records) in &data {
        let entity = catalog.schema.entity(t).expect("type");
        let mut written: HashMap<&str, usize> = HashMap::new();
        for (id, record) in records.iter().step_by((records.len() / 15).max(1)) {
            let fields: Vec<Value> = record
                .iter()
                .filter(|(name, value)| {
                    let editable = entity
                        .field(name)
                        .is_some_and(|f| f.raw["editable"]["value"] == true);
                    editable
                        && !value.is_null()
                        && !matches!(
                            name.as_str(),
                            "created_at" | "updated_at" | "created_by" | "updated_by"
                        )
                })
                .map(|(name, value)| json!({"field_name": name, "value": value}))
                .collect();
            if fields.is_empty() {
                continue;
            }
            let request = Request {
                method_name: "update".into(),
                auth: Some(Auth::script("tests", "key")),
                params: Some(json!({"type": t, "id": id, "fields": fields})),
            };
            if let Err(fault) = site.handle(&request) {
                panic!("the site refused {t} {id}: {}", fault.message);
            }
            *written.entry(t.as_str()).or_default() += 1;
        }
        assert!(
            records.is_empty() || t == "EventLogEntry" || written.contains_key(t.as_str()),
            "{t} sampled"
        );
    }
    // Every built-in type, Attachment (which only uploads fill) included.
    let types: BTreeSet<&String> = data.keys().collect();
    assert_eq!(types.len(), 20);
    assert!(data["Attachment"].is_empty());
}

/// The generator skips what a schema lacks: the real site schema has no
/// Episode type, among other differences.
#[test]
fn fills_the_real_site_schema_too() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/");
    let Ok(text) = std::fs::read_to_string(format!("{dir}site-schema.fields.json")) else {
        panic!("the site schema fixtures are in tests/fixtures of the repository ({dir})");
    };
    let schema = sg_protocol::Schema::from_json(&serde_json::from_str(&text).expect("json"), None)
        .expect("schema");
    let engine = Engine::new(SqliteStore::open_temporary().expect("db"), schema).expect("engine");
    let total = generate_at(&engine, Size::Small, 5, NOW, &mut |_, _| {}).expect("generate");
    assert!((3_000..=8_000).contains(&total), "{total}");
    let data = everything(&engine);
    let checked = assert_links_mirrored(&data, &engine.catalog().schema);
    for pair in [
        "Shot.assets",
        "Asset.shots",
        "Task.entity",
        "Shot.tasks",
        "Note.note_links",
        "Shot.notes",
    ] {
        assert!(
            checked.get(pair).is_some_and(|n| *n > 0),
            "{pair} has links: {checked:?}"
        );
    }
}

/// Times every size in a release build:
/// `cargo test --release -p sg-sim --test generate -- --ignored --nocapture`.
#[test]
#[ignore]
fn times_every_size() {
    for size in Size::ALL {
        let engine = site();
        let mut counts = BTreeMap::new();
        let started = std::time::Instant::now();
        let total = generate_at(&engine, size, 7, NOW, &mut |t, n| {
            counts.insert(t.to_string(), n);
        })
        .expect("generate");
        let elapsed = started.elapsed();
        let catalog = engine.catalog();
        let mut link_rows = 0;
        for table in catalog.layout.tables.values() {
            for field in table
                .fields
                .values()
                .filter(|f| f.storage == sg_engine::layout::Storage::Links)
            {
                let sql = format!("SELECT COUNT(*) FROM {}", table.link_table(&field.name));
                let rows = engine
                    .store()
                    .with_reader(&mut |conn| conn.query(&sql, &[]))
                    .expect("count");
                link_rows += rows[0][0].as_i64().unwrap_or(0);
            }
        }
        let bytes = std::fs::metadata(engine.store().path())
            .map(|m| m.len())
            .unwrap_or(0);
        println!(
            "{size}: {total} records, {link_rows} link rows in {:.2?} ({:.0} records/s), {} MB\n  {counts:?}",
            elapsed,
            total as f64 / elapsed.as_secs_f64(),
            bytes / 1_000_000
        );
    }
}

/// The HTTP server's reply text for a `read` (rendered straight to JSON) is
/// byte for byte the JSON of the reply value, for every type with every field,
/// active and retired, and a refused read is refused the same way.
#[test]
fn read_replies_as_text_are_the_reply_values_printed() {
    let (engine, _) = generated(Size::Small, 5);
    let catalog = engine.catalog();
    let logins = Logins {
        allowed: vec![Credential::parse_script("tests:key").expect("script")],
    };
    let site = Site::new(engine, logins, EventFaults::default()).expect("site");
    let mut compared = 0;
    for (t, entity) in &catalog.schema.entities {
        let fields: Vec<&String> = entity.fields.keys().collect();
        for return_only in ["active", "retired"] {
            let request = Request {
                method_name: "read".into(),
                auth: Some(Auth::script("tests", "key")),
                params: Some(json!({"type": t, "return_fields": fields,
                    "filters": {"logical_operator": "and", "conditions": []},
                    "paging": {"entities_per_page": 500, "current_page": 1},
                    "return_only": return_only, "api_return_image_urls": true})),
            };
            let value = site.handle(&request).expect("read").to_text();
            let text = site.handle_text(&request).expect("read as text");
            assert_eq!(
                String::from_utf8_lossy(&text),
                String::from_utf8_lossy(&value),
                "{t} {return_only}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * catalog.schema.entities.len());
    let refused = Request {
        method_name: "read".into(),
        auth: Some(Auth::script("tests", "wrong")),
        params: Some(json!({"type": "Shot"})),
    };
    let by_value = site.handle(&refused).expect_err("bad key");
    let by_text = site.handle_text(&refused).expect_err("bad key");
    assert_eq!(by_text.to_json(), by_value.to_json());
}
