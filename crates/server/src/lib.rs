//! The proxy: a server that speaks a Shotgun site's own `/api3/json`
//! protocol, answering reads from the cache and sending everything else to
//! the site, so that existing tools get their answers at local speed by
//! changing one URL.
//!
//! - [`route`] decides, before anything is sent, whether the cache can answer
//!   a request (every type, field and path it touches is cached);
//! - [`credentials`] checks callers' credentials against the site once and
//!   remembers the verdict under a hash of the secret;
//! - [`forward`] sends a request to the site unchanged and returns its reply unchanged;
//! - [`proxy`] puts these together per method, including write-through;
//! - [`relay`] streams everything besides `/api3/json` (uploads, downloads) to the site and back;
//! - [`http`] is the HTTP layer (`POST /api3/json`, `GET /healthz`, `GET /readyz`);
//! - [`tls`] serves it over HTTPS with a given certificate.

pub mod credentials;
pub mod forward;
pub mod http;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod tls;

pub use http::{serve, ServeOptions};
pub use proxy::Proxy;
