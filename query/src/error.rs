//! Errors of query parsing, planning and evaluation.

use std::time::Duration;

use tern_store::StoreError;

/// Everything that can go wrong in a SPARQL query or update.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text is not valid SPARQL. The message carries the line and column.
    #[error("SPARQL syntax error: {0}")]
    Syntax(String),
    /// The query uses something tern does not evaluate.
    #[error("{0}")]
    Unsupported(String),
    /// The deadline given in the options passed.
    #[error("query timed out after {0:?}; raise the timeout or make the query more selective")]
    Timeout(Duration),
    /// The query's cancellation token was set.
    #[error("query cancelled")]
    Cancelled,
    /// An update operation failed (missing graph, LOAD failure, ...).
    #[error("update failed: {0}")]
    Update(String),
    /// Writing results failed.
    #[error("could not write results: {0}")]
    Io(#[from] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias of this crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
