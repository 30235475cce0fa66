//! A type's import: its records read from the site and written page by page,
//! each page in one transaction with the progress that records it, so an
//! interrupted import resumes where it stopped.
//!
//! Active records are read by id range: the ids up to the newest are cut into
//! ranges of about one page each, and several ranges are read at once (within
//! the import's bound on site calls) while earlier ones are written. Pages are
//! still written in id order, so the progress is always "everything up to this
//! id": a large type no longer reads one page after another on its own. A range
//! that fills a page goes on by keyset (`id > last`) before any later range is
//! written. The last range has no upper end, so it also takes records created
//! since the import began. Retired records follow by keyset alone: there are few.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use sg_client::reply_error;
use sg_engine::decode::decode_read_page;
use sg_engine::layout::TableLayout;
use sg_engine::write::EncodedRecords;
use sg_engine::{ddl, Store};

use crate::cache::{entities, read_page_params, storable, Cache, ImportTarget, PAGE};
use crate::careful;
use crate::error::SyncError;
use crate::marks;
use crate::state::{self, TypeState};

/// An id range is cut to hold about this share of a page, so that most ranges
/// take one call even where ids are a little denser than on average.
const RANGE_FILL: u64 = 4; // of 5

/// Pages written in one transaction at most (when they have all been read).
const BATCH_PAGES: usize = 8;

/// A type is read one more range ahead for every so many of its records.
const RECORDS_PER_READ_AHEAD: u64 = 25_000;

/// The records of the active phase with `after < id <= through`; the last
/// range has no upper end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdRange {
    pub after: i64,
    pub through: Option<i64>,
}

/// The ranges an import reads, in id order.
#[derive(Debug, Clone)]
pub(crate) struct IdRanges {
    next_after: Option<i64>,
    /// The newest id when the import began and the span of one range; `None`
    /// when only the open range is left to read.
    bounded: Option<(i64, i64)>,
}

impl IdRanges {
    /// The ids after `after` cut into ranges of about `per_range` records,
    /// when `count` records have ids up to `newest` (assumed spread evenly,
    /// as a site's ids are). Without a newest id or a count, one open range.
    pub(crate) fn cut(after: i64, newest: Option<i64>, count: Option<u64>, per_range: u64) -> Self {
        let bounded = match (newest, count) {
            (Some(newest), Some(count)) if count > 0 && newest > after => {
                let span = (newest as f64 * per_range.max(1) as f64 / count as f64).ceil();
                Some((newest, (span as i64).max(1)))
            }
            _ => None,
        };
        IdRanges {
            next_after: Some(after),
            bounded,
        }
    }

    /// Just the open range after `after` (the keyset of the retired phase).
    pub(crate) fn open(after: i64) -> Self {
        IdRanges::cut(after, None, None, 1)
    }

    /// Nothing left to read.
    pub(crate) fn none() -> Self {
        IdRanges {
            next_after: None,
            bounded: None,
        }
    }
}

impl Iterator for IdRanges {
    type Item = IdRange;

    fn next(&mut self) -> Option<IdRange> {
        let after = self.next_after?;
        match self.bounded {
            Some((newest, span)) if after < newest => {
                let through = after.saturating_add(span).min(newest);
                self.next_after = Some(through);
                Some(IdRange {
                    after,
                    through: Some(through),
                })
            }
            _ => {
                self.next_after = None;
                Some(IdRange {
                    after,
                    through: None,
                })
            }
        }
    }
}

/// A page as read from the site and put in stored form, ready to write.
struct ReadPage {
    records: usize,
    last_id: Option<i64>,
    encoded: EncodedRecords,
}

/// A page being read and encoded by a task of its own (so that the pages of
/// one type are decoded and encoded on several threads, ahead of the writes);
/// dropped, it stops the task.
struct PendingPage(tokio::task::JoinHandle<Result<ReadPage, SyncError>>);

impl PendingPage {
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    async fn page(mut self) -> Result<ReadPage, SyncError> {
        (&mut self.0)
            .await
            .map_err(|e| SyncError::Other(format!("import read failed: {e}")))?
    }
}

impl Drop for PendingPage {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one type's pages, within the import's bound on site calls.
struct PageReader<S: Store> {
    cache: Arc<Cache<S>>,
    entity_type: String,
    fields: Arc<Vec<String>>,
    keep: Arc<BTreeSet<String>>,
    /// A reimport's shadow layout; `None` for the served table.
    shadow: Option<Arc<TableLayout>>,
    per_page: u64,
    limit: Arc<Semaphore>,
}

impl<S: Store> PageReader<S> {
    /// Starts reading the first page of `range`.
    fn start(&self, range: IdRange, retired: bool) -> PendingPage {
        let mut conditions =
            vec![json!({"path": "id", "relation": "greater_than", "values": [range.after]})];
        if let Some(through) = range.through {
            conditions.push(json!({"path": "id", "relation": "less_than", "values": [through.saturating_add(1)]}));
        }
        let params = read_page_params(
            &self.entity_type,
            &self.fields,
            Value::Array(conditions),
            retired,
            self.per_page,
        );
        let cache = self.cache.clone();
        let limit = self.limit.clone();
        let entity_type = self.entity_type.clone();
        let keep = self.keep.clone();
        let shadow = self.shadow.clone();
        PendingPage(tokio::spawn(async move {
            let text = {
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|e| SyncError::Other(e.to_string()))?;
                cache.client.call_raw("read", Some(params)).await?
            };
            // Decoded straight into stored form on a blocking thread, where
            // the records are also dropped once written.
            let decoded = cache
                .db(move |e| {
                    let catalog = e.catalog();
                    match shadow
                        .as_deref()
                        .or_else(|| catalog.layout.table(&entity_type))
                    {
                        Some(table) => Ok(Some(
                            decode_read_page(table, &keep, retired, &text)
                                .map_err(|e| reply_error("read", &text, &e.to_string())),
                        )),
                        // The type is no longer cached: there is nothing to write.
                        None => Ok(None),
                    }
                })
                .await?;
            let encoded = match decoded {
                Some(page) => page?,
                None => EncodedRecords::default(),
            };
            Ok(ReadPage {
                records: encoded.len(),
                last_id: encoded.last_id(),
                encoded,
            })
        }))
    }

    /// The number of active records and the newest active id, when the site
    /// tells them.
    async fn count_and_newest(&self) -> Result<(Option<u64>, Option<i64>), SyncError> {
        let _permit = self
            .limit
            .acquire()
            .await
            .map_err(|e| SyncError::Other(e.to_string()))?;
        let client = &self.cache.client;
        let count = client
            .call(
                "summarize",
                Some(json!({"type": self.entity_type, "summaries": [{"field": "id", "type": "record_count"}]})),
            )
            .await
            .ok()
            .and_then(|s| s["summaries"]["id"].as_u64());
        let newest = client
            .call(
                "read",
                Some(json!({
                    "type": self.entity_type,
                    "return_fields": [],
                    "filters": {"logical_operator": "and", "conditions": []},
                    "sorts": [{"field_name": "id", "direction": "desc"}],
                    "paging": {"entities_per_page": 1, "current_page": 1},
                    "return_only": "active",
                    "return_paging_info_without_counts": true,
                })),
            )
            .await
            .ok()
            .and_then(|r| entities(r).ok())
            .and_then(|page| {
                page.first()
                    .and_then(|r| r.get("id"))
                    .and_then(Value::as_i64)
            });
        Ok((count, newest))
    }
}

impl<S: Store> Cache<S> {
    /// Imports one type into the served table (`Live`, a first import), or
    /// into a reimport's shadow tables: then each page is written only while
    /// the reimport is still the one recorded for the type, and `None` is
    /// returned once it is not. Returns the final progress.
    pub(crate) async fn import_type(
        self: &Arc<Self>,
        entity_type: &str,
        digest: &str,
        restart: bool,
        limit: Arc<Semaphore>,
        target: ImportTarget,
    ) -> Result<Option<TypeState>, SyncError> {
        let started = Instant::now();
        let shadow = matches!(target, ImportTarget::Shadow(_));
        let mut progress = self
            .saved_progress(entity_type, digest, restart, shadow)
            .await?;
        let fields: Vec<String> = match &target {
            ImportTarget::Live => self
                .engine
                .catalog()
                .layout
                .table(entity_type)
                .map(|t| t.fields.keys().filter(|f| *f != "id").cloned().collect())
                .unwrap_or_default(),
            ImportTarget::Shadow(table) => table
                .fields
                .keys()
                .filter(|f| *f != "id")
                .cloned()
                .collect(),
        };
        let keep: Arc<BTreeSet<String>> = Arc::new(fields.iter().cloned().collect());
        let config = self.config();
        let reader = PageReader {
            cache: self.clone(),
            entity_type: entity_type.to_string(),
            fields: Arc::new(fields),
            keep,
            shadow: match &target {
                ImportTarget::Live => None,
                ImportTarget::Shadow(table) => Some(Arc::new(table.clone())),
            },
            // A site answers at most 500 records a page; a shorter page ends a range.
            per_page: config.file.import.batch_size.clamp(1, PAGE),
            limit,
        };
        let (total, newest) = reader.count_and_newest().await?;
        // Ranges read ahead of the one being written: at least enough to keep
        // every allowed site call busy with this type alone, and more for a
        // large type, so that its share of the calls follows its size and it
        // does not end long after the others.
        let processes = config.file.import.processes.max(1);
        let read_ahead = usize::try_from(total.unwrap_or(0) / RECORDS_PER_READ_AHEAD)
            .unwrap_or(usize::MAX)
            .clamp(processes, 4 * processes);
        if !shadow && progress.phase != "done" {
            self.drop_indexes(entity_type).await?;
        }
        let mut ranges = match progress.phase.as_str() {
            "active" => IdRanges::cut(
                progress.last_id,
                newest,
                total,
                reader.per_page * RANGE_FILL / 5,
            ),
            "retired" => IdRanges::open(progress.last_id),
            _ => IdRanges::none(),
        };
        let mut queue: VecDeque<(IdRange, bool, PendingPage)> = VecDeque::new();
        let fill = |queue: &mut VecDeque<(IdRange, bool, PendingPage)>,
                    ranges: &mut IdRanges,
                    retired: bool| {
            while queue.len() < read_ahead {
                let Some(range) = ranges.next() else { break };
                queue.push_back((range, retired, reader.start(range, retired)));
            }
        };
        fill(&mut queue, &mut ranges, progress.phase == "retired");
        loop {
            // The page waited for, then those after it already read, are
            // written in one transaction: a large type, read far ahead, gets
            // the store's one writer for more records at a time.
            let mut next = progress.clone();
            let mut encoded: Vec<EncodedRecords> = Vec::new();
            let mut records = 0;
            let mut pages = 0;
            while queue
                .front()
                .is_some_and(|(_, _, p)| pages == 0 || (pages < BATCH_PAGES && p.is_finished()))
            {
                let Some((range, retired, pending)) = queue.pop_front() else {
                    break;
                };
                let page = pending.page().await?;
                pages += 1;
                let full = page.records as u64 >= reader.per_page;
                next.imported += page.records as i64;
                if let (true, Some(last)) = (full, page.last_id) {
                    // The rest of this range comes before any later one.
                    let rest = IdRange {
                        after: last,
                        through: range.through,
                    };
                    queue.push_front((rest, retired, reader.start(rest, retired)));
                    next.last_id = last;
                } else if let Some(through) = range.through {
                    next.last_id = through;
                } else {
                    // The open range, the last, has ended: so has the phase.
                    next.phase = if retired { "done" } else { "retired" }.into();
                    next.last_id = 0;
                    if !retired {
                        ranges = IdRanges::open(0);
                    }
                }
                records += page.records;
                encoded.push(page.encoded);
                // The next pages are read while these are written.
                fill(&mut queue, &mut ranges, next.phase == "retired");
            }
            if pages == 0 {
                break;
            }

            let finished = next.phase == "done";
            if finished && !shadow {
                next.status = "ready".into();
                next.imported_at = Some(chrono::Utc::now().to_rfc3339());
            }
            if records == 0 && next.phase == progress.phase {
                // Nothing to write: the next transaction records the progress.
                progress = next;
                continue;
            }
            let written = match self
                .write_pages(entity_type, &target, encoded, next.clone(), finished)
                .await
            {
                Ok(written) => written,
                // A record the store can't hold: these pages again, record by record.
                Err(e) => {
                    tracing::debug!(
                        entity_type,
                        "import pages refused whole ({e}); writing them one by one"
                    );
                    self.import_carefully(entity_type, &target, &reader, &progress, &next, finished)
                        .await?
                }
            };
            if !written {
                return Ok(None);
            }
            progress = next;
            self.progress
                .imported(entity_type, progress.imported.max(0) as u64, total);
        }
        if !shadow && progress.imported > 0 {
            self.analyze(entity_type).await?;
        }
        if !shadow {
            self.progress.finished(
                entity_type,
                progress.imported.max(0) as u64,
                started.elapsed(),
            );
        }
        Ok(Some(progress))
    }

    /// The progress to go on from: the saved one if it is for this import,
    /// else a fresh start.
    async fn saved_progress(
        &self,
        entity_type: &str,
        digest: &str,
        restart: bool,
        shadow: bool,
    ) -> Result<TypeState, SyncError> {
        let owned_type = entity_type.to_string();
        let saved = self
            .db(move |e| {
                e.store().with_reader(&mut |c| {
                    Ok(if shadow {
                        state::reimport(c, &owned_type)?
                    } else {
                        state::types(c)?.remove(&owned_type)
                    })
                })
            })
            .await?;
        Ok(saved
            .filter(|s| {
                if shadow {
                    s.digest == digest
                } else {
                    !restart && s.status == "importing"
                }
            })
            .unwrap_or(TypeState {
                entity_type: entity_type.to_string(),
                digest: digest.to_string(),
                status: if shadow { "reimporting" } else { "importing" }.into(),
                phase: "active".into(),
                last_id: 0,
                imported: 0,
                imported_at: None,
            }))
    }

    /// A first import fills the table faster without its secondary indexes;
    /// the last page's transaction builds them.
    async fn drop_indexes(&self, entity_type: &str) -> Result<(), SyncError> {
        let t = entity_type.to_string();
        self.db(move |e| {
            let catalog = e.catalog();
            let dialect = e.store().dialect();
            let Some(table) = catalog.layout.table(&t) else {
                return Ok(());
            };
            e.store()
                .with_transaction(&mut |c| c.execute_batch(&ddl::drop_indexes_sql(table, dialect)))
        })
        .await
    }

    /// Writes pages read by [`PageReader`], in order, with the progress that
    /// records them (and, with the last page of a first import, the
    /// indexes). `false` when they belong to a reimport that is no longer the
    /// one recorded for the type.
    async fn write_pages(
        &self,
        entity_type: &str,
        target: &ImportTarget,
        pages: Vec<EncodedRecords>,
        saved: TypeState,
        finished: bool,
    ) -> Result<bool, SyncError> {
        let owned_type = entity_type.to_string();
        let target = target.clone();
        self.db(move |e| {
            let catalog = e.catalog();
            let dialect = e.store().dialect();
            let table = match &target {
                ImportTarget::Live => match catalog.layout.table(&owned_type) {
                    Some(table) => table,
                    None => return Ok(true),
                },
                ImportTarget::Shadow(table) => table,
            };
            e.store().with_transaction(&mut |c| {
                if dialect == sg_engine::sql::Dialect::Postgres {
                    // The commit need not wait for the disk: a crash can
                    // lose only the last pages, together with the progress
                    // that records them, never leave the two apart. And
                    // the planner, whose statistics still describe the
                    // empty table, would scan whole link tables to delete
                    // a page's old links (one such DELETE took 30 ms by the end of
                    // 34,000 PublishedFiles); the indexes are the way.
                    c.execute_batch(
                        "SET LOCAL synchronous_commit = off; SET LOCAL enable_seqscan = off",
                    )?;
                }
                match &target {
                    ImportTarget::Live => {
                        for page in &pages {
                            sg_engine::write::write_encoded(c, table, page)?;
                        }
                        state::set_type(c, &saved)?;
                        if finished {
                            c.execute_batch(&ddl::create_table_sql(table, dialect))?;
                        }
                        Ok(true)
                    }
                    ImportTarget::Shadow(_) => {
                        let current = state::reimport(c, &owned_type)?;
                        if current.is_none_or(|r| r.digest != saved.digest) {
                            return Ok(false);
                        }
                        for page in &pages {
                            sg_engine::write::write_encoded(c, table, page)?;
                        }
                        state::set_reimport(c, &saved)?;
                        Ok(true)
                    }
                }
            })
        })
        .await
    }

    /// The records of the pages between `from` and `to` (progress before and
    /// after them) read again from the site and written one by one, with the
    /// progress; those the store can't hold are marked.
    async fn import_carefully(
        &self,
        entity_type: &str,
        target: &ImportTarget,
        reader: &PageReader<S>,
        from: &TypeState,
        to: &TypeState,
        finished: bool,
    ) -> Result<bool, SyncError> {
        let mut copies = Vec::new();
        for (retired, after, through) in phase_spans(from, to) {
            let mut last = after;
            loop {
                let mut conditions =
                    vec![json!({"path": "id", "relation": "greater_than", "values": [last]})];
                if let Some(through) = through {
                    conditions.push(json!({"path": "id", "relation": "less_than", "values": [through.saturating_add(1)]}));
                }
                let params = read_page_params(
                    entity_type,
                    &reader.fields,
                    Value::Array(conditions),
                    retired,
                    PAGE,
                );
                let page = entities(self.client.call("read", Some(params)).await?)?;
                let full = page.len() as u64 >= PAGE;
                for record in page {
                    if let Some(id) = record.get("id").and_then(Value::as_i64) {
                        last = last.max(id);
                    }
                    copies.push((
                        entity_type.to_string(),
                        storable(record, retired, &reader.keep),
                    ));
                }
                if !full {
                    break;
                }
            }
        }
        let (owned_type, target, saved) = (entity_type.to_string(), target.clone(), to.clone());
        let shadows = self.shadows.clone();
        let outcome = self
            .db(move |e| {
                let catalog = e.catalog();
                let dialect = e.store().dialect();
                e.store().with_transaction(&mut |c| {
                    let layout = match &target {
                        ImportTarget::Live => catalog.layout.clone(),
                        ImportTarget::Shadow(_) => {
                            let current = state::reimport(c, &owned_type)?;
                            if current.is_none_or(|r| r.digest != saved.digest) {
                                return Ok(None);
                            }
                            shadows.layout()
                        }
                    };
                    let mut outcome = careful::Outcome::default();
                    careful::store_copies(
                        c,
                        &[&layout],
                        &copies,
                        &BTreeSet::new(),
                        &|_| 0,
                        &mut outcome,
                    )?;
                    marks::keep(c, &outcome.refused)?;
                    match &target {
                        ImportTarget::Live => {
                            state::set_type(c, &saved)?;
                            if let (true, Some(table)) = (finished, layout.table(&owned_type)) {
                                c.execute_batch(&ddl::create_table_sql(table, dialect))?;
                            }
                        }
                        ImportTarget::Shadow(_) => state::set_reimport(c, &saved)?,
                    }
                    Ok(Some(outcome))
                })
            })
            .await?;
        match outcome {
            Some(outcome) => {
                self.note_outcome(outcome);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Refreshes the planner's statistics of a type's tables (after a bulk load).
    pub(crate) async fn analyze(&self, entity_type: &str) -> Result<(), SyncError> {
        let t = entity_type.to_string();
        self.db(move |e| {
            let dialect = e.store().dialect();
            e.store()
                .with_transaction(&mut |c| ddl::analyze_tables_of(c, &t, dialect))
        })
        .await
    }
}

/// The spans of records between two points of an import's progress: per
/// phase passed, whether retired, the id after which it starts and the id it
/// ends with (`None`: the phase's end).
fn phase_spans(from: &TypeState, to: &TypeState) -> Vec<(bool, i64, Option<i64>)> {
    let order = |phase: &str| match phase {
        "active" => 0,
        "retired" => 1,
        _ => 2,
    };
    let (first, last) = (order(&from.phase), order(&to.phase));
    (first..=last.min(1))
        .map(|p| {
            let after = if p == first { from.last_id } else { 0 };
            let through = (p == last).then_some(to.last_id);
            (p == 1, after, through)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(ranges: IdRanges) -> Vec<(i64, Option<i64>)> {
        ranges.map(|r| (r.after, r.through)).collect()
    }

    #[test]
    fn ids_are_cut_into_ranges_of_about_the_asked_size_and_the_last_is_open() {
        // 1,000 records with ids up to 2,000: 400 records span 800 ids.
        assert_eq!(
            all(IdRanges::cut(0, Some(2_000), Some(1_000), 400)),
            vec![
                (0, Some(800)),
                (800, Some(1_600)),
                (1_600, Some(2_000)),
                (2_000, None)
            ]
        );
    }

    #[test]
    fn a_resumed_import_cuts_from_where_it_stopped() {
        assert_eq!(
            all(IdRanges::cut(1_500, Some(2_000), Some(1_000), 400)),
            vec![(1_500, Some(2_000)), (2_000, None)]
        );
        // Past the newest id (records made during the import): only the open range.
        assert_eq!(
            all(IdRanges::cut(2_500, Some(2_000), Some(1_000), 400)),
            vec![(2_500, None)]
        );
    }

    #[test]
    fn without_a_count_or_newest_id_one_open_range_is_read_by_keyset() {
        assert_eq!(all(IdRanges::cut(7, None, Some(10), 400)), vec![(7, None)]);
        assert_eq!(
            all(IdRanges::cut(7, Some(99), Some(0), 400)),
            vec![(7, None)]
        );
        assert_eq!(all(IdRanges::open(0)), vec![(0, None)]);
        assert_eq!(all(IdRanges::none()), vec![]);
    }

    #[test]
    fn the_spans_between_two_points_cover_each_phase_passed() {
        let at = |phase: &str, last_id: i64| TypeState {
            entity_type: "Shot".into(),
            digest: String::new(),
            status: "importing".into(),
            phase: phase.into(),
            last_id,
            imported: 0,
            imported_at: None,
        };
        assert_eq!(
            phase_spans(&at("active", 10), &at("active", 20)),
            vec![(false, 10, Some(20))]
        );
        assert_eq!(
            phase_spans(&at("active", 10), &at("retired", 5)),
            vec![(false, 10, None), (true, 0, Some(5))]
        );
        assert_eq!(
            phase_spans(&at("active", 10), &at("done", 0)),
            vec![(false, 10, None), (true, 0, None)]
        );
        assert_eq!(
            phase_spans(&at("retired", 3), &at("done", 0)),
            vec![(true, 3, None)]
        );
    }

    #[test]
    fn dense_ids_give_ranges_of_at_least_one_id() {
        assert_eq!(
            all(IdRanges::cut(0, Some(3), Some(3_000), 400)),
            vec![(0, Some(1)), (1, Some(2)), (2, Some(3)), (3, None)]
        );
    }
}
