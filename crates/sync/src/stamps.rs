//! The audit stamps (`updated_at`, `updated_by`) of the records a poll
//! changes row by row, read from the site: an event row's time is the
//! change's, not always the stamp the site put on the record (it can be a
//! second off), and a row about a field the cache does not hold still
//! stamps the record. One read per type, of the stamps only; a second one
//! for the records that turn out to be retired.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use sg_client::Client;
use sg_engine::Layout;

use crate::cache::{entities, read_page_params, PAGE};
use crate::error::SyncError;

/// The fields a site stamps on every change.
pub(crate) const STAMP_FIELDS: &[&str] = &["updated_at", "updated_by"];

/// Per record, its stamps as the site has them now (only the stamp fields
/// the cache's tables hold).
pub(crate) type Stamps = BTreeMap<(String, i64), Map<String, Value>>;

/// The stamp fields any of `layouts` holds for `entity_type`.
fn stamp_fields(layouts: &[&Layout], entity_type: &str) -> Vec<String> {
    STAMP_FIELDS
        .iter()
        .filter(|f| {
            layouts
                .iter()
                .any(|l| l.table(entity_type).is_some_and(|t| t.field(f).is_some()))
        })
        .map(|f| f.to_string())
        .collect()
}

/// Reads the stamps of `records` from the site. Returns them with the
/// number of reads it took.
pub(crate) async fn read_stamps(
    client: &Client,
    layouts: &[&Layout],
    records: &BTreeMap<String, BTreeSet<i64>>,
) -> Result<(Stamps, usize), SyncError> {
    let mut stamps = Stamps::new();
    let mut reads = 0;
    for (entity_type, ids) in records {
        let fields = stamp_fields(layouts, entity_type);
        if fields.is_empty() || ids.is_empty() {
            continue;
        }
        let ids: Vec<i64> = ids.iter().copied().collect();
        for chunk in ids.chunks(PAGE as usize) {
            let mut unseen: BTreeSet<i64> = chunk.iter().copied().collect();
            for retired in [false, true] {
                if unseen.is_empty() {
                    break;
                }
                let wanted: Vec<i64> = unseen.iter().copied().collect();
                let params = read_page_params(
                    entity_type,
                    &fields,
                    json!([{"path": "id", "relation": "in", "values": wanted}]),
                    retired,
                    PAGE,
                );
                reads += 1;
                for mut record in entities(client.call("read", Some(params)).await?)? {
                    let Some(id) = record.get("id").and_then(Value::as_i64) else {
                        continue;
                    };
                    unseen.remove(&id);
                    record.retain(|k, _| fields.contains(k));
                    stamps.insert((entity_type.clone(), id), record);
                }
            }
        }
    }
    Ok((stamps, reads))
}
