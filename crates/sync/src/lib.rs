//! Keeps a cache of a Shotgun site in step with the site.
//!
//! - [`config`]: the configuration folder (`config.yaml`, `entity-configs/`);
//! - [`state`]: the sync's own progress, stored with the data it describes;
//! - [`event`]: what each EventLogEntry row means for the cache;
//! - [`cache`]: import, event following, reconcile scans and config reloads;
//! - `import`: a type's records read by id range and written in id order;
//! - `apply`: a poll's event rows written to the tables, field changes batched;
//! - `reimport`: a changed type imported again into new tables, swapped in at once;
//! - `stamps`: the `updated_at`/`updated_by` of records a poll changes, read from the site;
//! - [`marks`]: records the store could not hold, read from the site meanwhile;
//! - `careful`: a batch the store refused whole, written again record by record;
//! - [`health`]: whether the cache is fit to serve (`/readyz`, `status`).
//! - `upgrade`: a store made by an earlier version brought to this one's forms.
//!
//! The cache never trusts an event it can't apply exactly: a row about a
//! record it does not hold, a row no newer than what the record's copy
//! reflects (its guard), a New or a Revival, all make it read the record
//! from the site; a record read whole gets none of the older rows of its
//! poll, and the audit stamps of records changed row by row are read from
//! the site.
//! Scans on `updated_at` repair what the log never reports (scripts that log
//! no events, ids that never appeared).

mod apply;
pub mod cache;
mod careful;
pub mod config;
pub mod error;
pub mod event;
pub mod health;
mod import;
pub mod leader;
pub mod marks;
mod reimport;
mod stamps;
pub mod state;
pub mod status;
mod upgrade;
pub mod validate;

pub use cache::{Cache, LogProgress, Progress};
pub use config::{CacheConfig, Database};
pub use error::SyncError;
pub use health::Readiness;
pub use leader::Leadership;
pub use marks::MarkedRecord;
