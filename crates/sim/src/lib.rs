//! The simulated Shotgun site: the `/api3/json` protocol served from the
//! query engine over a loaded dataset, for tests, benchmarks and the demo.
//!
//! [`Site`] holds the state (schema, data, who may log in) and answers decoded
//! requests; [`server`] puts it on HTTP. Reads and summaries come from
//! `sg-engine`, so the site and the cache's proxy answer queries identically.

pub mod auth;
pub mod methods;
pub mod server;

pub use auth::{Credential, Logins};
pub use methods::{Site, SITE_VERSION};
pub use server::{serve, ServerOptions};
