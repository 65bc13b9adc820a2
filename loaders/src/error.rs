//! Loader errors: every syntax error names the input, line, column and the offending text.

use std::fmt;
use std::path::PathBuf;

/// A syntax error at a position in an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Input name (a path, or `-` for standard input).
    pub input: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in characters).
    pub column: u64,
    /// What the parser expected or found.
    pub message: String,
    /// The offending line (truncated), when the input can be read again.
    pub snippet: Option<String>,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.input, self.line, self.column, self.message
        )?;
        if let Some(s) = &self.snippet {
            write!(
                f,
                "\n    | {s}\n    | {:>width$}",
                "^",
                width = self.column as usize
            )?;
        }
        Ok(())
    }
}

/// Why a load, dump or conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An input or output file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input is not valid in its syntax. Nothing was loaded (unless `--lenient`).
    #[error("syntax error at {0}\nnothing was loaded; fix the input or pass --lenient to skip bad statements")]
    Syntax(Box<SyntaxError>),
    /// The format could not be told from the file name.
    #[error("cannot tell the RDF format of {0}: name it with --format (ntriples, nquads, turtle, trig, rdfxml, jsonld)")]
    UnknownFormat(String),
    /// An unknown format name.
    #[error("unknown format {0:?}: use one of ntriples, nquads, turtle, trig, rdfxml, jsonld")]
    UnknownFormatName(String),
    /// A base or graph IRI that is not an IRI.
    #[error("invalid IRI {iri:?}: {message}")]
    InvalidIri {
        /// The text given.
        iri: String,
        /// Why it is invalid.
        message: String,
    },
    /// Named graphs cannot be written in a single-graph syntax.
    #[error("{format} holds a single graph but the data has named graphs: choose one with --graph, or use nquads, trig or jsonld")]
    NamedGraphsInGraphFormat {
        /// The target format.
        format: crate::Format,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tern_store::StoreError),
    /// The store could not be opened (or created).
    #[error(transparent)]
    Open(#[from] tern_store::OpenError),
}
