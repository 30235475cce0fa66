//! Lookups of stored records (`sg_engine::lookup`) on both stores: records
//! by id, ids a table holds, stored links, and the records linking to others,
//! whatever the state of either end.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use common::{engine, obj, Backend, TestEngine};
use sg_engine::lookup;
use sg_engine::{Connection, EngineError, Store};
use sg_protocol::value::EntityLink;

engine_tests!(
    records_are_fetched_whole_active_or_retired,
    records_linking_to_a_target_are_found_whatever_its_state,
    ids_held_are_told_apart_from_ids_missing_and_retired,
    stored_links_are_read_as_held,
    records_holding_links_to_targets_are_found_in_both_kinds_of_field,
);

/// Runs `f` on a reader of `e`'s store with its layout.
fn look<T>(
    e: &TestEngine,
    f: impl Fn(&mut dyn Connection, &sg_engine::Layout) -> Result<T, EngineError>,
) -> T {
    let catalog = e.catalog();
    e.store()
        .with_reader(&mut |c| f(c, &catalog.layout))
        .expect("the lookup runs")
}

fn link(entity_type: &str, id: i64) -> EntityLink {
    EntityLink {
        entity_type: entity_type.into(),
        id,
    }
}

/// Sequences 5 and 6, assets 7 and 8, and shots: 1 and 3 active, 2 retired;
/// 1 and 2 in sequence 5, 3 in sequence 6; 1 holds both assets, 3 asset 8.
fn shots_in_sequences(backend: Backend) -> TestEngine {
    let e = engine(backend);
    e.upsert_records(
        "Sequence",
        &[
            obj(json!({"id": 5, "code": "sq05"})),
            obj(json!({"id": 6, "code": "sq06"})),
        ],
    )
    .expect("sequences are written");
    e.upsert_records(
        "Asset",
        &[
            obj(json!({"id": 7, "code": "rock"})),
            obj(json!({"id": 8, "code": "tree"})),
        ],
    )
    .expect("assets are written");
    let seq = |id: i64| json!({"type": "Sequence", "id": id});
    let asset = |id: i64| json!({"type": "Asset", "id": id});
    e.upsert_records(
        "Shot",
        &[
            obj(json!({"id": 1, "code": "sh010", "sg_sequence": seq(5), "assets": [asset(8), asset(7)]})),
            obj(json!({"id": 2, "code": "sh020", "sg_sequence": seq(5), "__retired": true})),
            obj(json!({"id": 3, "code": "sh030", "sg_sequence": seq(6), "assets": [asset(8)]})),
        ],
    )
    .expect("shots are written");
    e
}

fn records_are_fetched_whole_active_or_retired(backend: Backend) {
    let e = shots_in_sequences(backend);
    let fetch = |id: i64| {
        look(&e, |c, layout| {
            let shots = layout.table("Shot").expect("Shot is laid out");
            lookup::fetch_record(c, layout, shots, id)
        })
    };
    let (active, retired) = fetch(1).expect("shot 1 is stored");
    assert!(!retired);
    assert_eq!(active["code"], json!("sh010"));
    assert_eq!(
        active["sg_sequence"],
        json!({"type": "Sequence", "id": 5, "name": "sq05"})
    );
    assert_eq!(
        active["assets"],
        json!([{"type": "Asset", "id": 8, "name": "tree"}, {"type": "Asset", "id": 7, "name": "rock"}])
    );
    let shot_fields = e.catalog().layout.table("Shot").map(|t| t.fields.len());
    assert_eq!(
        Some(active.len() - 1),
        shot_fields,
        "every field, and the type"
    );
    let (gone, retired) = fetch(2).expect("shot 2 is stored");
    assert!(retired);
    assert_eq!(gone["code"], json!("sh020"));
    assert!(fetch(4).is_none(), "no such shot");
}

fn records_linking_to_a_target_are_found_whatever_its_state(backend: Backend) {
    let e = shots_in_sequences(backend);
    let linking = |field: &str, target: EntityLink, retired: bool| {
        look(&e, |c, layout| {
            let shots = layout.table("Shot").expect("Shot is laid out");
            lookup::ids_linking_to(c, shots, field, &target, retired)
        })
    };
    assert_eq!(linking("sg_sequence", link("Sequence", 5), false), vec![1]);
    assert_eq!(linking("sg_sequence", link("Sequence", 5), true), vec![2]);
    assert_eq!(linking("sg_sequence", link("Sequence", 6), false), vec![3]);
    assert!(linking("sg_sequence", link("Project", 5), false).is_empty());
    e.upsert_records("Sequence", &[obj(json!({"id": 5, "__retired": true}))])
        .expect("sequence 5 is retired");
    assert_eq!(
        linking("sg_sequence", link("Sequence", 5), false),
        vec![1],
        "a retired target is still linked to"
    );
    assert!(
        linking("assets", link("Asset", 8), false).is_empty(),
        "only entity fields are followed"
    );
    assert!(linking("code", link("Sequence", 5), false).is_empty());
}

fn ids_held_are_told_apart_from_ids_missing_and_retired(backend: Backend) {
    let e = shots_in_sequences(backend);
    // More ids than one IN list holds, so the lookups run in several.
    let mut asked: Vec<i64> = (4..1500).collect();
    asked.extend([3, 2, 1]);
    let (existing, retired) = look(&e, |c, layout| {
        let shots = layout.table("Shot").expect("Shot is laid out");
        Ok((
            lookup::existing_ids(c, shots, &asked)?,
            lookup::retired_ids(c, shots, &asked)?,
        ))
    });
    assert_eq!(existing, BTreeSet::from([1, 2, 3]));
    assert_eq!(retired, BTreeSet::from([2]));
    let none = look(&e, |c, layout| {
        let shots = layout.table("Shot").expect("Shot is laid out");
        lookup::existing_ids(c, shots, &[])
    });
    assert!(none.is_empty());
}

fn stored_links_are_read_as_held(backend: Backend) {
    let e = shots_in_sequences(backend);
    // Retired targets are held and read like any other.
    e.upsert_records("Asset", &[obj(json!({"id": 7, "__retired": true}))])
        .expect("asset 7 is retired");
    e.upsert_records("Shot", &[obj(json!({"id": 3, "sg_sequence": null}))])
        .expect("shot 3 leaves its sequence");
    let (sequence_of, assets_of) = look(&e, |c, layout| {
        let shots = layout.table("Shot").expect("Shot is laid out");
        let field = shots.field("sg_sequence").expect("sg_sequence is laid out");
        let mut sequence_of = Vec::new();
        let mut assets_of = Vec::new();
        for id in 1..=4 {
            sequence_of.push(lookup::current_link(c, shots, field, id)?);
            assets_of.push(lookup::current_links(c, shots, "assets", id)?);
        }
        Ok((sequence_of, assets_of))
    });
    assert_eq!(
        sequence_of,
        vec![
            Some(link("Sequence", 5)),
            Some(link("Sequence", 5)),
            None,
            None
        ]
    );
    assert_eq!(
        assets_of,
        vec![
            vec![link("Asset", 8), link("Asset", 7)],
            vec![],
            vec![link("Asset", 8)],
            vec![]
        ],
        "in their order, retired targets included"
    );
}

fn records_holding_links_to_targets_are_found_in_both_kinds_of_field(backend: Backend) {
    let e = shots_in_sequences(backend);
    e.upsert_records(
        "Sequence",
        &[obj(
            json!({"id": 6, "__retired": true, "project": {"type": "Project", "id": 2}}),
        )],
    )
    .expect("sequence 6 is retired, in project 2");
    let holding = |targets: &[(&str, i64)]| {
        let targets: BTreeSet<(String, i64)> =
            targets.iter().map(|(t, id)| (t.to_string(), *id)).collect();
        look(&e, |c, layout| {
            lookup::records_holding_links(c, layout, &targets)
        })
    };
    let holders = |pairs: &[(&str, &[i64])]| -> BTreeMap<String, BTreeSet<i64>> {
        pairs
            .iter()
            .map(|(t, ids)| (t.to_string(), ids.iter().copied().collect()))
            .collect()
    };
    assert_eq!(
        holding(&[("Sequence", 5)]),
        holders(&[("Shot", &[1, 2])]),
        "a retired holder too"
    );
    assert_eq!(holding(&[("Asset", 7)]), holders(&[("Shot", &[1])]));
    assert_eq!(
        holding(&[("Sequence", 6), ("Asset", 8), ("Project", 2)]),
        holders(&[("Sequence", &[6]), ("Shot", &[1, 3])])
    );
    // More ids of one type than an IN list holds.
    let many: Vec<(&str, i64)> = (9..1200)
        .map(|id| ("Asset", id))
        .chain([("Asset", 8)])
        .collect();
    assert_eq!(holding(&many), holders(&[("Shot", &[1, 3])]));
    assert!(holding(&[("Asset", 99), ("Shot", 1)]).is_empty());
}
