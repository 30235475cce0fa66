//! The sync's error type.

use sg_client::ClientError;
use sg_engine::EngineError;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("site: {0}")]
    Site(#[from] ClientError),
    #[error("cache database: {0}")]
    Store(#[from] EngineError),
    #[error("{0}")]
    Other(String),
}

impl SyncError {
    /// Whether the site could not be reached (as opposed to refusing a call).
    pub fn is_outage(&self) -> bool {
        matches!(self, SyncError::Site(e) if e.is_transient())
    }
}
