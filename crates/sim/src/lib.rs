//! The simulated Shotgun site: the `/api3/json` protocol with reads, writes
//! and a faithful event log, for tests, benchmarks and the demo.
//!
//! [`Site`] holds the state (schema, data, who may log in, the event log) and
//! answers decoded requests; [`server`] puts it on HTTP. Reads and summaries
//! come from `sg-engine`, so the site and the cache's proxy answer queries
//! identically.
//!
//! - [`auth`]: who may call; [`methods`]: one dispatch on `method_name`;
//! - [`writes`]: create, update, delete, revive (validation, defaults, audit
//!   fields, inverse links, event rows); [`inverse`]: which fields mirror which;
//! - [`events`]: event ids, row shapes, late and lost rows;
//! - [`schema_edit`]: `schema_field_create`/`update`/`delete`;
//! - [`server`]: HTTP.

pub mod auth;
pub mod events;
pub mod inverse;
pub mod methods;
pub mod schema_edit;
pub mod server;
pub mod writes;

pub use auth::{Credential, Logins};
pub use events::EventFaults;
pub use methods::{Site, SITE_VERSION};
pub use server::{serve, ServerOptions};
