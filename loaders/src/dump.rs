//! Writing RDF: dumps of a store and file-to-file conversion.

use std::io::Write;
use std::path::Path;

use oxrdf::{GraphName, NamedOrBlankNode, Quad, QuadRef};
use oxrdfio::{RdfSerializer, WriterQuadSerializer};
use tern_store::{GraphSel, Reader, TermId};

use crate::error::LoadError;
use crate::format::Format;
use crate::input::Input;
use crate::load::{input_format, io_error, parse_error, read_quads, LoadOptions};

/// Ids externalized per batch while dumping.
const BATCH: usize = 4096;

/// Which part of the store a dump writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraphChoice {
    /// Every graph (single-graph formats: only allowed when there are no named graphs with quads).
    All,
    /// The default graph.
    Default,
    /// One named graph.
    Named(NamedOrBlankNode),
}

/// Well-known prefixes: declared in Turtle, TriG and RDF/XML output (and known to every generation
/// template).
pub const WELL_KNOWN_PREFIXES: &[(&str, &str)] = &[
    ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
    ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
    ("owl", "http://www.w3.org/2002/07/owl#"),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    ("skos", "http://www.w3.org/2004/02/skos/core#"),
    ("dcterms", "http://purl.org/dc/terms/"),
];

/// A serializer for `format` with tern's usual prefixes.
pub fn serializer<W: Write>(format: Format, writer: W) -> WriterQuadSerializer<W> {
    let mut s = RdfSerializer::from_format(format.to_oxrdfio());
    if matches!(format, Format::Turtle | Format::TriG | Format::RdfXml) {
        for &(prefix, iri) in WELL_KNOWN_PREFIXES {
            s = match s.clone().with_prefix(prefix, iri) {
                Ok(with) => with,
                Err(_) => s,
            };
        }
    }
    s.for_writer(writer)
}

/// Writes the chosen graphs of a snapshot to `writer`. Returns the number of quads written.
///
/// Single-graph formats get triples; dataset formats keep graph names.
pub fn dump(
    reader: &Reader,
    format: Format,
    choice: &GraphChoice,
    writer: impl Write,
) -> Result<u64, LoadError> {
    let out_path = || Path::new("<output>").to_path_buf();
    let sel = match choice {
        GraphChoice::Default => GraphSel::Default,
        GraphChoice::All if format.supports_datasets() => GraphSel::All,
        GraphChoice::All => {
            if reader.graph_len(TermId::DEFAULT_GRAPH)? < reader.len()? {
                return Err(LoadError::NamedGraphsInGraphFormat { format });
            }
            GraphSel::Default
        }
        GraphChoice::Named(g) => match reader.term_id(g.as_ref().into())? {
            Some(id) => GraphSel::Named(id),
            None => return finish(serializer(format, writer), 0),
        },
    };
    let mut ser = serializer(format, writer);
    let mut ids = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    let write_batch = |ids: &mut Vec<tern_store::IdQuad>,
                       ser: &mut WriterQuadSerializer<_>|
     -> Result<(), LoadError> {
        for quad in reader.quads(ids)? {
            let quad = if format.supports_datasets() {
                quad
            } else {
                in_default(quad)
            };
            ser.serialize_quad(&quad).map_err(|source| LoadError::Io {
                path: out_path(),
                source,
            })?;
        }
        ids.clear();
        Ok(())
    };
    for q in reader.quads_for_pattern(None, None, None, sel) {
        ids.push(q?);
        n += 1;
        if ids.len() == BATCH {
            write_batch(&mut ids, &mut ser)?;
        }
    }
    write_batch(&mut ids, &mut ser)?;
    finish(ser, n)
}

fn in_default(q: Quad) -> Quad {
    Quad::new(q.subject, q.predicate, q.object, GraphName::DefaultGraph)
}

fn finish<W: Write>(ser: WriterQuadSerializer<W>, n: u64) -> Result<u64, LoadError> {
    let mut w = ser.finish().map_err(|source| LoadError::Io {
        path: "<output>".into(),
        source,
    })?;
    w.flush().map_err(|source| LoadError::Io {
        path: "<output>".into(),
        source,
    })?;
    Ok(n)
}

/// Converts `input` to `format`, streaming (nothing is held in memory). Returns the statements written.
pub fn convert(
    input: &Input,
    options: &LoadOptions,
    format: Format,
    writer: impl Write,
) -> Result<u64, LoadError> {
    let (in_format, compression) = input_format(input, options.format)?;
    let reader = input
        .open(compression, Default::default())
        .map_err(|e| io_error(input, e))?;
    let mut ser = serializer(format, writer);
    let mut n = 0;
    for item in read_quads(input, in_format, options, reader)? {
        let quad = match item {
            Ok(q) => q,
            Err(e) => return Err(parse_error(input, compression, e)),
        };
        if !format.supports_datasets() && !quad.graph_name.is_default_graph() {
            return Err(LoadError::NamedGraphsInGraphFormat { format });
        }
        ser.serialize_quad(QuadRef::from(&quad))
            .map_err(|source| LoadError::Io {
                path: "<output>".into(),
                source,
            })?;
        n += 1;
    }
    finish(ser, n)
}
