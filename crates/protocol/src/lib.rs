//! Wire types of the Shotgun `/api3/json` protocol, shared by the query engine,
//! the site client, the simulated site and the proxy.
//!
//! This crate does no I/O. Each layer converts once: raw JSON becomes a
//! [`Request`] here, method parameters become typed values ([`ReadParams`],
//! [`SummarizeParams`], [`FilterNode`]) through `from_json` constructors that
//! reject bad shapes with a [`Fault`] in the site's own style, and results go
//! back out as [`Reply`] values.
//!
//! Layout:
//! - [`envelope`]: the request envelope, the auth block and replies;
//! - [`fault`]: faults and their error codes;
//! - [`filter`]: the server-side filter tree and its relations;
//! - [`read`] and [`summarize`]: the parameters of those two methods;
//! - [`datatype`]: the field data types of a schema;
//! - [`value`]: the wire shapes of dates, times and entity links;
//! - [`schema`]: schema structures as `schema_read` returns them.

pub mod datatype;
pub mod envelope;
pub mod fault;
pub mod filter;
pub mod read;
pub mod schema;
pub mod summarize;
pub mod value;

pub use datatype::DataType;
pub use envelope::{Auth, Envelope, Reply, Request};
pub use fault::{ErrorCode, Fault};
pub use filter::{Condition, FilterNode, LogicalOperator, Relation};
pub use read::{Paging, ReadParams, ReturnOnly, Sort, SortDirection};
pub use schema::{EntitySchema, FieldSchema, Schema};
pub use summarize::{GroupingSpec, GroupingType, SummarizeParams, SummarySpec, SummaryType};
