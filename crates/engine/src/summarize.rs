//! The `summarize` method (being written).

use serde_json::Value;

use sg_protocol::SummarizeParams;

use crate::error::{bad_request, EngineError};
use crate::layout::Layout;
use crate::store::Connection;

pub fn summarize(
    _conn: &mut dyn Connection,
    _layout: &Layout,
    _params: &SummarizeParams,
) -> Result<Value, EngineError> {
    Err(bad_request("API summarize() is not available yet"))
}
