//! Transactional loading: parse inputs and insert everything in one store transaction.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use oxrdf::{GraphName, NamedNode, Quad};
use oxrdfio::{RdfParseError, RdfParser, RdfSyntaxError};
use tern_store::Store;

use crate::error::{LoadError, SyntaxError};
use crate::format::{Compression, Format};
use crate::input::{line_of, Input};

/// Quads parsed before they are handed to the transaction in one batch.
const BATCH: usize = 8192;

/// How to read inputs.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Syntax of every input; `None` tells it from each file name.
    pub format: Option<Format>,
    /// Base IRI for relative IRIs; `None` uses the `file://` IRI of each file.
    pub base_iri: Option<String>,
    /// Graph receiving default-graph statements; `None` is the default graph.
    pub graph: Option<NamedNode>,
    /// Skip bad statements instead of failing.
    pub lenient: bool,
}

/// Progress of a load, reported to a callback.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Input being read.
    pub input: String,
    /// Bytes read from all inputs so far (compressed bytes for compressed files).
    pub bytes: u64,
    /// Total bytes of all inputs, when known.
    pub total_bytes: Option<u64>,
    /// Statements parsed so far.
    pub quads: u64,
}

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Statements parsed.
    pub parsed: u64,
    /// Quads that were new to the store.
    pub inserted: u64,
    /// Statements skipped because of syntax errors (`--lenient` only).
    pub skipped: u64,
    /// The first errors met (at most 10).
    pub errors: Vec<SyntaxError>,
    /// Bytes read.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// Bulk loads: seconds per store phase (dictionary, one per index order).
    pub phases: Vec<(&'static str, f64)>,
    /// Bulk loads: sorted runs spilled to disk.
    pub spilled_runs: usize,
}

/// Resolves the format of an input.
pub fn input_format(
    input: &Input,
    format: Option<Format>,
) -> Result<(Format, Compression), LoadError> {
    let (detected, compression) = input.detect();
    match format.or(detected) {
        Some(f) => Ok((f, compression)),
        None => Err(LoadError::UnknownFormat(input.name())),
    }
}

/// The base IRI for relative IRIs of `input`: the explicit one, else the file's `file://` IRI.
pub(crate) fn base_iri(input: &Input, options: &LoadOptions) -> Option<String> {
    options.base_iri.clone().or_else(|| match input {
        Input::Path(p) => std::path::absolute(p)
            .ok()
            .map(|a| format!("file://{}", a.display())),
        Input::Stdin => None,
    })
}

/// Builds the parser configuration for one input.
pub fn parser_for(
    input: &Input,
    format: Format,
    options: &LoadOptions,
) -> Result<RdfParser, LoadError> {
    let mut parser = RdfParser::from_format(format.to_oxrdfio()).rename_blank_nodes();
    let base = base_iri(input, options);
    if let Some(base) = base {
        parser = match parser.with_base_iri(base.clone()) {
            Ok(p) => p,
            // A default base from a path with odd characters is just dropped; an explicit one must be valid.
            Err(e) if options.base_iri.is_some() => {
                return Err(LoadError::InvalidIri {
                    iri: base,
                    message: e.to_string(),
                })
            }
            Err(_) => RdfParser::from_format(format.to_oxrdfio()).rename_blank_nodes(),
        };
    }
    if let Some(g) = &options.graph {
        parser = parser.with_default_graph(GraphName::NamedNode(g.clone()));
    }
    Ok(parser)
}

/// Parses `reader` as `input` with tern's configuration: the quads exactly as the store receives them
/// (blank nodes renamed per input, `rdf:XMLLiteral` values from RDF/XML in exclusive canonical form).
pub fn read_quads<R: std::io::Read>(
    input: &Input,
    format: Format,
    options: &LoadOptions,
    reader: R,
) -> Result<impl Iterator<Item = Result<Quad, RdfParseError>>, LoadError> {
    let parser = parser_for(input, format, options)?.for_reader(reader);
    let xml = format == Format::RdfXml;
    Ok(parser.map(move |r| {
        if xml {
            r.map(crate::xmlliteral::canonicalize_quad)
        } else {
            r
        }
    }))
}

/// Turns a parser error into a positioned [`SyntaxError`].
pub fn syntax_error(input: &Input, compression: Compression, e: &RdfSyntaxError) -> SyntaxError {
    let (line, column) = e
        .location()
        .map_or((0, 0), |l| (l.start.line, l.start.column));
    let snippet = match input {
        Input::Path(p) => line_of(p, compression, line),
        Input::Stdin => None,
    };
    SyntaxError {
        input: input.name(),
        line: line + 1,
        column: column + 1,
        message: e.to_string(),
        snippet,
    }
}

/// Loads `inputs` into `store` as one transaction: either everything is committed or nothing is.
pub fn load(
    store: &Store,
    inputs: &[Input],
    options: &LoadOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<LoadReport, LoadError> {
    let start = Instant::now();
    let mut report = LoadReport::default();
    let total_bytes = inputs.iter().map(Input::size).sum::<Option<u64>>();
    let counter = Arc::new(AtomicU64::new(0));
    let mut txn = store.transaction()?;
    let mut batch: Vec<Quad> = Vec::with_capacity(BATCH);
    for input in inputs {
        let (format, compression) = input_format(input, options.format)?;
        let reader = input
            .open(compression, Arc::clone(&counter))
            .map_err(|source| io_error(input, source))?;
        let mut last_error_offset = None;
        for item in read_quads(input, format, options, reader)? {
            match item {
                Ok(quad) => {
                    batch.push(quad);
                    if batch.len() == BATCH {
                        report.parsed += batch.len() as u64;
                        txn.insert_all(batch.iter().map(Quad::as_ref))?;
                        batch.clear();
                        progress(&Progress {
                            input: input.name(),
                            bytes: counter.load(Ordering::Relaxed),
                            total_bytes,
                            quads: report.parsed,
                        });
                    }
                }
                Err(RdfParseError::Syntax(e)) => {
                    let error = syntax_error(input, compression, &e);
                    if !options.lenient {
                        return Err(LoadError::Syntax(Box::new(error)));
                    }
                    // A parser that reports the same position again cannot recover: stop reading this input.
                    let offset = e.location().map(|l| l.start.offset);
                    let stuck = offset.is_some() && offset == last_error_offset;
                    last_error_offset = offset;
                    report.skipped += 1;
                    if report.errors.len() < 10 {
                        report.errors.push(error);
                    }
                    if stuck {
                        break;
                    }
                }
                Err(RdfParseError::Io(source)) => return Err(io_error(input, source)),
            }
        }
    }
    report.parsed += batch.len() as u64;
    txn.insert_all(batch.iter().map(Quad::as_ref))?;
    let summary = txn.commit()?;
    report.inserted = summary.inserted;
    report.bytes = counter.load(Ordering::Relaxed);
    report.seconds = start.elapsed().as_secs_f64();
    progress(&Progress {
        input: String::new(),
        bytes: report.bytes,
        total_bytes,
        quads: report.parsed,
    });
    Ok(report)
}

/// A parser error as a [`LoadError`], with position and offending text for syntax errors.
pub(crate) fn parse_error(input: &Input, compression: Compression, e: RdfParseError) -> LoadError {
    match e {
        RdfParseError::Syntax(e) => {
            LoadError::Syntax(Box::new(syntax_error(input, compression, &e)))
        }
        RdfParseError::Io(e) => io_error(input, e),
    }
}

pub(crate) fn io_error(input: &Input, source: std::io::Error) -> LoadError {
    LoadError::Io {
        path: input.name().into(),
        source,
    }
}
