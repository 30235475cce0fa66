//! The simulated Shotgun site: the `/api3/json` protocol with reads, writes
//! and a faithful event log, for tests, benchmarks and the demo.
//!
//! [`Site`] holds the state (schema, data, who may log in, the event log) and
//! answers decoded requests; [`server`] puts it on HTTP. Reads and summaries
//! come from `sg-engine`, so the site and the cache's proxy answer queries
//! identically.
//!
//! - who may call is [`auth`], and [`methods`] is one dispatch on `method_name`;
//! - [`writes`] does create, update, delete and revive (validation, defaults,
//!   audit fields, inverse links, event rows), and [`inverse`] says which
//!   fields mirror which and what they hold (writes and [`generate`] both
//!   use it);
//! - [`events`] gives out event ids and writes rows, late and lost ones too;
//! - [`schema_edit`] is `schema_field_create`, `_update` and `_delete`;
//! - [`builtin`] is the default schema, [`generate`] fills a site with a production;
//! - [`uploads`] is file uploads and downloads, [`files`] keeps the bytes,
//!   [`multipart`] reads upload forms;
//! - [`server`] is the HTTP layer, with [`file_http`] for files.

pub mod auth;
pub mod builtin;
pub mod events;
pub mod file_http;
pub mod files;
pub mod generate;
pub mod inverse;
pub mod methods;
pub mod multipart;
pub mod schema_edit;
pub mod server;
pub mod uploads;
pub mod writes;

pub use auth::{Credential, Logins};
pub use events::EventFaults;
pub use methods::{Site, SITE_VERSION};
pub use server::{serve, ServerOptions};
