//! The proxy: a server that speaks a Shotgun site's own `/api3/json`
//! protocol, answering reads from the cache and sending everything else to
//! the site, so that existing tools get their answers at local speed by
//! changing one URL.
//!
//! - [`route`] decides, before anything is sent, whether the cache can answer
//!   a request (every type, field and path it touches is cached);
//! - [`gate`] lets a caller through only on the site's acceptance of its
//!   credentials ([`probe`] asks the site, [`credentials`] remembers the
//!   verdicts) and gives it the access [`access`] says its identity has;
//! - [`forward`] sends a request to the site unchanged and returns its reply unchanged;
//! - [`proxy`] puts these together per method, including write-through;
//! - [`relay`] streams everything besides `/api3/json` (uploads, downloads) to the site and back;
//! - [`http`] is the HTTP layer (`POST /api3/json`, `GET /healthz`, `GET /readyz`);
//! - [`tls`] serves it over HTTPS with a given certificate;
//! - `listener` accepts connections up to a cap and serves each under header,
//!   body and idle timeouts (`activity`, [`body_deadline`]).

pub mod access;
mod activity;
pub mod body_deadline;
pub mod credentials;
pub mod forward;
pub mod gate;
pub mod http;
mod listener;
mod occasional;
pub mod probe;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod tls;

pub use http::{serve, ServeOptions};
pub use proxy::{Proxy, ProxyLimits};
