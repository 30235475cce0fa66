//! What `shotgun-cache status` reports: per cached type its state and size,
//! the event position, the lag behind the site, whether the site answers,
//! whether the sync is healthy, the records marked and the broken entity configs.

use serde::Serialize;
use serde_json::json;

use sg_engine::Store;
use sg_protocol::SummarizeParams;

use crate::cache::Cache;
use crate::error::SyncError;
use crate::health::BrokenType;
use crate::marks::MarkedRecord;
use crate::state;

#[derive(Debug, Clone, Serialize)]
pub struct TypeStatus {
    pub entity_type: String,
    /// `importing`, `ready` or `reimporting`.
    pub state: String,
    pub records: u64,
    pub retired: u64,
    pub imported_at: Option<String>,
    /// While `reimporting`: records imported so far into the new tables
    /// (the old ones are served meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reimported: Option<u64>,
    /// A names-only table: the display names of a type that cached links
    /// point at but the config leaves out (see `sg_engine::layout`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub names_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub types: Vec<TypeStatus>,
    pub watermark: Option<i64>,
    pub missing_ids: usize,
    pub last_scan: Option<String>,
    pub site_reachable: bool,
    pub site_newest_event: Option<i64>,
    pub lag_events: Option<i64>,
    pub lag_seconds: Option<i64>,
    /// A poll succeeded lately (see [`crate::health`]).
    pub sync_healthy: bool,
    pub last_poll_at: Option<String>,
    pub last_error: Option<String>,
    /// Records the store could not hold: reads of their types go to the site.
    pub marked_records: Vec<MarkedRecord>,
    /// Types whose entity config can't be used, and why.
    pub broken_types: Vec<BrokenType>,
}

impl<S: Store> Cache<S> {
    /// The cache's status, asking the site for its newest event.
    pub async fn status(&self) -> Result<Status, SyncError> {
        let engine = self.engine.clone();
        let (types, reimports, position, last_scan, counts) =
            tokio::task::spawn_blocking(move || {
                let (types, reimports, position, last_scan) =
                    engine.store().with_reader(&mut |c| {
                        Ok((
                            state::types(c)?,
                            state::reimports(c)?,
                            state::position(c)?,
                            state::get(c, "last_scan")?,
                        ))
                    })?;
                let mut counts = Vec::new();
                let catalog = engine.catalog();
                for (t, table) in &catalog.layout.tables {
                    let mut n = [0u64; 2];
                    for (i, retired) in [false, true].into_iter().enumerate() {
                        let params = SummarizeParams::from_json(
                        json!({"type": t, "summaries": [{"field": "id", "type": "record_count"}],
                               "filters": {"logical_operator": "and", "conditions": []}})
                        .as_object()
                        .ok_or_else(|| sg_engine::EngineError::Store("bad params".into()))?,
                    )?;
                        if retired {
                            // Retired records: count through a read of ids.
                            let mut read = sg_protocol::ReadParams::new(t, &[]);
                            read.return_only = sg_protocol::ReturnOnly::Retired;
                            read.return_paging_info = true;
                            read.return_paging_info_without_counts = false;
                            read.paging.entities_per_page = 1;
                            n[i] = engine.read(&read)?["paging_info"]["entity_count"]
                                .as_u64()
                                .unwrap_or(0);
                        } else {
                            n[i] = engine.summarize(&params)?["summaries"]["id"]
                                .as_u64()
                                .unwrap_or(0);
                        }
                    }
                    counts.push((t.clone(), table.names_only, n));
                }
                Ok::<_, sg_engine::EngineError>((types, reimports, position, last_scan, counts))
            })
            .await
            .map_err(|e| SyncError::Other(e.to_string()))??;
        let newest = self.newest_event_public().await;
        let readiness = self.readiness_given(newest.as_ref().ok().copied()).await?;
        let site_reachable = newest.is_ok();
        let (site_newest_event, site_newest_at) = match newest {
            Ok((id, at)) => (Some(id), at),
            Err(_) => (None, None),
        };
        let watermark = position.as_ref().map(|p| p.watermark);
        let lag_events = match (site_newest_event, watermark) {
            (Some(n), Some(w)) => Some((n - w).max(0)),
            _ => None,
        };
        let lag_seconds = match (site_newest_at, lag_events) {
            (_, Some(0)) => Some(0),
            (Some(at), Some(_)) => Some((chrono::Utc::now().timestamp() - at).max(0)),
            _ => None,
        };
        let types = counts
            .into_iter()
            .map(|(t, names_only, [records, retired])| {
                let s = types.get(&t);
                let reimport = reimports.get(&t);
                let state = match s {
                    _ if reimport.is_some() => "reimporting".to_string(),
                    None => "not imported".to_string(),
                    Some(s)
                        if s.digest == "rebuild"
                            || (s.status == "importing" && s.imported_at.is_some()) =>
                    {
                        "reimporting".to_string()
                    }
                    Some(s) => s.status.clone(),
                };
                TypeStatus {
                    entity_type: t,
                    state,
                    records,
                    retired,
                    imported_at: s.and_then(|s| s.imported_at.clone()),
                    reimported: reimport.map(|r| r.imported.max(0) as u64),
                    names_only,
                }
            })
            .collect();
        Ok(Status {
            types,
            watermark,
            missing_ids: position.map(|p| p.missing.len()).unwrap_or(0),
            last_scan: last_scan
                .and_then(|s| s.parse::<i64>().ok())
                .map(sg_protocol::value::format_date_time),
            site_reachable,
            site_newest_event,
            lag_events,
            lag_seconds,
            sync_healthy: readiness.sync_healthy,
            last_poll_at: readiness.last_poll_at,
            last_error: readiness.last_error,
            marked_records: readiness.marked_records,
            broken_types: readiness.broken_types,
        })
    }

    /// Marks types to be imported again; a running sync does it at its next step.
    pub async fn request_rebuild(&self, types: Vec<String>) -> Result<usize, SyncError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            engine
                .store()
                .with_transaction(&mut |c| state::request_rebuild(c, &types))
        })
        .await
        .map_err(|e| SyncError::Other(e.to_string()))?
        .map_err(SyncError::from)
    }
}
