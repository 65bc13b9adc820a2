//! Reading and writing RDF for tern: format detection, decompression, parsing with the Oxigraph parser
//! family (`oxttl`, `oxrdfxml`, `oxjsonld` behind `oxrdfio`), transactional loads, dumps and conversion.
//!
//! Blank node labels are scoped to one input: every parser renames them to fresh random labels, so two
//! files that both say `_:b0` load as two different nodes (RDF merge semantics).

mod bulk;
mod dump;
mod error;
mod format;
mod input;
mod load;
mod xmlliteral;

pub use bulk::ntriples::{valid_term, Line, LineParser};
pub use bulk::{bulk_load, bulk_load_new, BulkLoadOptions};
pub use dump::{convert, dump, serializer, GraphChoice, WELL_KNOWN_PREFIXES};
pub use error::{LoadError, SyntaxError};
pub use format::{Compression, Format};
pub use input::Input;
pub use load::{
    input_format, load, parser_for, read_quads, syntax_error, LoadOptions, LoadReport, Progress,
};
