//! Whether the cache is fit to serve: the site answers, the sync's polls
//! succeed, how far behind the site it is, what failed last, which records
//! are marked and which entity configs are broken. `/readyz` and `status`
//! report the same [`Readiness`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use sg_engine::Store;

use crate::cache::Cache;
use crate::error::SyncError;
use crate::marks::{self, MarkedRecord};
use crate::state;

/// Steps failing in a row that make the sync count as stuck.
const FAILED_STEPS_STUCK: u64 = 5;
/// Added to three fetch intervals: how long without a successful poll
/// makes the sync count as stuck.
const STUCK_GRACE: Duration = Duration::from_secs(30);

/// How this process's sync steps have gone.
pub(crate) struct Health {
    started: Instant,
    failed_in_a_row: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            failed_in_a_row: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl Health {
    pub(crate) fn step_done(&self) {
        self.failed_in_a_row.store(0, Ordering::Relaxed);
    }

    pub(crate) fn step_failed(&self, message: String) {
        self.failed_in_a_row.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// A type whose entity config can't be used, and why (file and line).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BrokenType {
    pub entity_type: String,
    pub error: String,
}

/// The facts `/readyz` and `status` report.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Fit to serve: the site answers and the sync is not stuck.
    pub ready: bool,
    pub site_reachable: bool,
    /// A poll succeeded lately and the last steps did not all fail.
    pub sync_healthy: bool,
    pub lag_events: Option<i64>,
    pub lag_seconds: Option<i64>,
    /// When a poll of the event log was last stored (UTC).
    pub last_poll_at: Option<String>,
    /// Sync steps failed in a row in this process.
    pub failed_steps: u64,
    /// The last failure of a step (this process's, else the one kept in the store).
    pub last_error: Option<String>,
    pub marked_records: Vec<MarkedRecord>,
    pub broken_types: Vec<BrokenType>,
}

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

impl<S: Store> Cache<S> {
    /// Notes a step's outcome; a failure is kept in the store too (when it
    /// can write), so that `status` in another process shows it.
    pub(crate) async fn note_step(&self, result: &Result<(), SyncError>) {
        match result {
            Ok(()) => self.health.step_done(),
            Err(e) => {
                let message = self.without_secrets(&e.to_string());
                self.health.step_failed(message.clone());
                let kept = self
                    .db(move |e| {
                        e.store().with_transaction(&mut |c| {
                            state::set(c, "last_error", &message)?;
                            state::set(c, "last_error_at", &now_secs().to_string())
                        })
                    })
                    .await;
                if let Err(e) = kept {
                    tracing::debug!("can't keep the step's error in the store: {e}");
                }
            }
        }
    }

    /// An error's text without the cache's API key in it.
    pub(crate) fn without_secrets(&self, message: &str) -> String {
        let key = self.config().file.shotgun.api_key.expose().to_string();
        let message: String = message.chars().filter(|c| *c != '\0').collect();
        if key.is_empty() {
            message
        } else {
            message.replace(&key, "<secret>")
        }
    }

    /// Whether the cache is fit to serve, asking the site for its newest event.
    pub async fn readiness(&self) -> Result<Readiness, SyncError> {
        let newest = self.newest_event_public().await.ok();
        self.readiness_given(newest).await
    }

    /// [`Cache::readiness`] with the site's newest event (id and time) as
    /// just asked (`None`: the site did not answer).
    pub(crate) async fn readiness_given(
        &self,
        newest: Option<(i64, Option<i64>)>,
    ) -> Result<Readiness, SyncError> {
        let (position, last_poll, kept_error, kept_marks) = self
            .db(|e| {
                e.store().with_reader(&mut |c| {
                    Ok((
                        state::position(c)?,
                        state::get(c, "last_poll_at")?.and_then(|s| s.parse::<i64>().ok()),
                        state::get(c, "last_error")?,
                        marks::kept(c)?,
                    ))
                })
            })
            .await?;
        let site_reachable = newest.is_some();
        let watermark = position.map(|p| p.watermark);
        let (lag_events, lag_seconds) = match (newest, watermark) {
            (Some((n, _)), Some(w)) if n <= w => (Some(0), Some(0)),
            (Some((n, at)), Some(w)) => (Some(n - w), at.map(|at| (now_secs() - at).max(0))),
            _ => (None, None),
        };
        let config = self.config();
        let stuck_after = 3.0 * config.fetch_interval().as_secs_f64() + STUCK_GRACE.as_secs_f64();
        let quiet = match last_poll {
            Some(at) => (now_secs() - at) as f64,
            // No poll stored yet: as long as this process has run.
            None => self.health.started.elapsed().as_secs_f64(),
        };
        let failed_steps = self.health.failed_in_a_row.load(Ordering::Relaxed);
        let sync_healthy = quiet <= stuck_after && failed_steps < FAILED_STEPS_STUCK;
        // Marks made in memory only (the store could not write) count too.
        let mut marked_records = kept_marks;
        for mark in self.marks.all() {
            if !marked_records
                .iter()
                .any(|m| m.entity_type == mark.entity_type && m.id == mark.id)
            {
                marked_records.push(mark);
            }
        }
        Ok(Readiness {
            ready: site_reachable && sync_healthy,
            site_reachable,
            sync_healthy,
            lag_events,
            lag_seconds,
            last_poll_at: last_poll.map(sg_protocol::value::format_date_time),
            failed_steps,
            last_error: self.health.last_error().or(kept_error),
            marked_records,
            broken_types: config
                .broken
                .iter()
                .map(|(t, error)| BrokenType {
                    entity_type: t.clone(),
                    error: error.clone(),
                })
                .collect(),
        })
    }
}
