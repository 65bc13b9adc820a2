//! SPARQL 1.1 Query and Update for tern, evaluated on term ids.
//!
//! Queries are parsed by `spargebra`, compiled by [`plan`](crate::plan) into a tree of physical operators
//! (join order from the store's statistics and bitmap cardinalities, star patterns as roaring-bitmap
//! intersections) and executed as pull iterators over rows of term ids. Terms are decoded only where a value
//! is needed: expressions, ORDER BY and output.
//!
//! ```no_run
//! use tern_store::Store;
//! use tern_query::{QueryResults, StoreExt};
//! let store = Store::open("/tmp/example-store")?;
//! store.update("INSERT DATA { <http://e/s> <http://e/p> 1 }")?;
//! if let QueryResults::Solutions(solutions) = store.query("SELECT ?o WHERE { ?s ?p ?o }")? {
//!     for solution in solutions {
//!         println!("{:?}", solution?.get("o"));
//!     }
//! }
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
mod error;
mod exec;
mod functions;
mod path;
mod plan;
mod results;
mod update;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use oxrdf::NamedNode;
use tern_store::Store;

pub use error::{QueryError, Result};
pub use results::{QueryResults, QuerySolution, ResultFormat, Solutions, Triples};
pub use spargebra::{GraphUpdateOperation, Query, Update};

/// Options of one query.
#[derive(Clone, Default, Debug)]
pub struct QueryOptions {
    /// Base IRI for relative IRIs in the query text.
    pub base_iri: Option<String>,
    /// Overrides the query's FROM graphs (the SPARQL Protocol's `default-graph-uri`).
    pub default_graphs: Option<Vec<NamedNode>>,
    /// Overrides the query's FROM NAMED graphs (`named-graph-uri`).
    pub named_graphs: Option<Vec<NamedNode>>,
    /// Evaluation stops with [`QueryError::Timeout`] after this long.
    pub timeout: Option<Duration>,
    /// Evaluation stops with [`QueryError::Cancelled`] once this flag is set.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Options of one update request.
#[derive(Clone, Default, Debug)]
pub struct UpdateOptions {
    /// Base IRI for relative IRIs in the update text.
    pub base_iri: Option<String>,
    /// Overrides USING graphs (the protocol's `using-graph-uri`).
    pub using_graphs: Option<Vec<NamedNode>>,
    /// Overrides USING NAMED graphs (`using-named-graph-uri`).
    pub using_named_graphs: Option<Vec<NamedNode>>,
    /// Evaluation stops with [`QueryError::Timeout`] after this long; nothing is written then.
    pub timeout: Option<Duration>,
    /// Directories `LOAD <file:...>` may read from. `None` allows any file (library and CLI use); the
    /// server passes its allow-list.
    pub load_allow: Option<Vec<PathBuf>>,
    /// Whether `LOAD <http://...>` may fetch documents (off by default: a server would otherwise fetch any
    /// URL a client names).
    pub allow_http_load: bool,
}

fn parser(base_iri: Option<&str>) -> Result<spargebra::SparqlParser> {
    let parser = spargebra::SparqlParser::new();
    match base_iri {
        None => Ok(parser),
        Some(base) => parser
            .with_base_iri(base)
            .map_err(|e| QueryError::Syntax(format!("invalid base IRI <{base}>: {e}"))),
    }
}

/// Parses a query; syntax errors carry the line and column.
pub fn parse_query(text: &str, base_iri: Option<&str>) -> Result<Query> {
    parser(base_iri)?
        .parse_query(text)
        .map_err(|e| QueryError::Syntax(e.to_string()))
}

/// Parses an update request; syntax errors carry the line and column.
pub fn parse_update(text: &str, base_iri: Option<&str>) -> Result<Update> {
    parser(base_iri)?
        .parse_update(text)
        .map_err(|e| QueryError::Syntax(e.to_string()))
}

/// Evaluates a query on a snapshot of `store` taken now.
pub fn query(store: &Store, text: &str, options: QueryOptions) -> Result<QueryResults> {
    let parsed = parse_query(text, options.base_iri.as_deref())?;
    results::evaluate_query(store.reader(), parsed, &options)
}

/// Evaluates an already parsed query (servers parse first to negotiate the response format).
pub fn query_parsed(store: &Store, query: Query, options: &QueryOptions) -> Result<QueryResults> {
    results::evaluate_query(store.reader(), query, options)
}

/// Describes the physical plan of a query, with estimated and actual rows and time per operator.
pub fn explain(store: &Store, text: &str, options: QueryOptions) -> Result<String> {
    let parsed = parse_query(text, options.base_iri.as_deref())?;
    results::explain_query(store.reader(), parsed, &options)
}

/// Applies an update request as one atomic transaction: all of it or nothing.
pub fn update(store: &Store, text: &str, options: UpdateOptions) -> Result<()> {
    let parsed = parse_update(text, options.base_iri.as_deref())?;
    update::execute(store, &parsed, &options)
}

/// Applies an already parsed update request atomically.
pub fn update_parsed(store: &Store, update: &Update, options: &UpdateOptions) -> Result<()> {
    update::execute(store, update, options)
}

/// SPARQL methods on [`Store`], for programs that embed tern.
pub trait StoreExt {
    /// Evaluates a query with default options.
    fn query(&self, text: &str) -> Result<QueryResults>;
    /// Evaluates a query.
    fn query_opt(&self, text: &str, options: QueryOptions) -> Result<QueryResults>;
    /// Applies an update request atomically.
    fn update(&self, text: &str) -> Result<()>;
    /// Applies an update request atomically, with options.
    fn update_opt(&self, text: &str, options: UpdateOptions) -> Result<()>;
}

impl StoreExt for Store {
    fn query(&self, text: &str) -> Result<QueryResults> {
        query(self, text, QueryOptions::default())
    }
    fn query_opt(&self, text: &str, options: QueryOptions) -> Result<QueryResults> {
        query(self, text, options)
    }
    fn update(&self, text: &str) -> Result<()> {
        update(self, text, UpdateOptions::default())
    }
    fn update_opt(&self, text: &str, options: UpdateOptions) -> Result<()> {
        update(self, text, options)
    }
}
