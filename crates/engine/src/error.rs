//! The engine's error type, and how each error becomes a site fault.

use sg_protocol::Fault;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The request is wrong in a way the site reports with a fault.
    #[error("{0}")]
    Fault(#[from] Fault),
    /// A name that is not a plain identifier reached SQL building.
    #[error("'{0}' is not a valid name")]
    BadIdentifier(String),
    /// The store failed.
    #[error("database error: {0}")]
    Store(String),
    /// The query was stopped after running for the time its caller allowed
    /// (see [`crate::Engine::read_json_budgeted`]): the store is fine, the
    /// query is too expensive to answer here.
    #[error("the query ran past its budget of {} ms", .0.as_millis())]
    OverBudget(std::time::Duration),
    /// The query asks for more than the engine's limits allow (see
    /// [`crate::QueryLimits`]); the reason says which limit.
    #[error("the query exceeds a limit: {0}")]
    OverLimit(String),
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Store(e.to_string())
    }
}

impl EngineError {
    /// The fault to send the caller. Store errors are reported without SQL text.
    pub fn to_fault(&self) -> Fault {
        match self {
            EngineError::Fault(f) => f.clone(),
            EngineError::BadIdentifier(name) => {
                Fault::bad_request(format!("'{name}' is not a valid name"))
            }
            EngineError::Store(_) => Fault::new(
                sg_protocol::ErrorCode::Other(100),
                "Internal database error",
            ),
            EngineError::OverBudget(_) | EngineError::OverLimit(_) => {
                Fault::new(sg_protocol::ErrorCode::Other(100), self.to_string())
            }
        }
    }
}

/// A fault in the site's style for a request that names something unknown.
pub fn unknown(method: &str, entity_type: &str, field: &str) -> EngineError {
    EngineError::Fault(Fault::bad_request(format!(
        "API {method}() {entity_type}.{field} doesn't exist"
    )))
}

pub fn bad_request(message: impl Into<String>) -> EngineError {
    EngineError::Fault(Fault::bad_request(message))
}
