//! RDF syntaxes and compressions, detected from file names or given by name.

use std::fmt;
use std::path::Path;

use oxrdfio::RdfFormat;

/// An RDF syntax tern reads and writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Format {
    /// N-Triples (`.nt`).
    NTriples,
    /// N-Quads (`.nq`).
    NQuads,
    /// Turtle (`.ttl`).
    Turtle,
    /// TriG (`.trig`).
    TriG,
    /// RDF/XML (`.rdf`, `.owl`, `.xml`).
    RdfXml,
    /// JSON-LD (`.jsonld`, `.json`).
    JsonLd,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 6] = [
        Format::NTriples,
        Format::NQuads,
        Format::Turtle,
        Format::TriG,
        Format::RdfXml,
        Format::JsonLd,
    ];

    /// Short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::NTriples => "ntriples",
            Format::NQuads => "nquads",
            Format::Turtle => "turtle",
            Format::TriG => "trig",
            Format::RdfXml => "rdfxml",
            Format::JsonLd => "jsonld",
        }
    }

    /// Usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::NTriples => "nt",
            Format::NQuads => "nq",
            Format::Turtle => "ttl",
            Format::TriG => "trig",
            Format::RdfXml => "rdf",
            Format::JsonLd => "jsonld",
        }
    }

    /// IANA media type.
    pub fn media_type(self) -> &'static str {
        self.to_oxrdfio().media_type()
    }

    /// Whether the syntax can hold named graphs.
    pub fn supports_datasets(self) -> bool {
        matches!(self, Format::NQuads | Format::TriG | Format::JsonLd)
    }

    /// Parses a name (`turtle`, `ttl`, `nt`, `n-triples`, `rdf/xml`, a media type, ...).
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        let by_name = match lower.as_str() {
            "ntriples" | "n-triples" | "nt" => Some(Format::NTriples),
            "nquads" | "n-quads" | "nq" => Some(Format::NQuads),
            "turtle" | "ttl" => Some(Format::Turtle),
            "trig" => Some(Format::TriG),
            "rdfxml" | "rdf/xml" | "rdf-xml" | "xml" | "rdf" | "owl" => Some(Format::RdfXml),
            "jsonld" | "json-ld" | "json" => Some(Format::JsonLd),
            _ => None,
        };
        by_name.or_else(|| RdfFormat::from_media_type(&lower).and_then(Format::from_oxrdfio))
    }

    /// Format and compression from a file name such as `data.ttl.gz`.
    pub fn from_path(path: &Path) -> (Option<Format>, Compression) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
            (s, Compression::Gzip)
        } else if let Some(s) = name.strip_suffix(".zst") {
            (s, Compression::Zstd)
        } else {
            (name.as_str(), Compression::None)
        };
        let format = stem
            .rsplit_once('.')
            .and_then(|(_, ext)| Format::from_name(ext));
        (format, compression)
    }

    pub fn to_oxrdfio(self) -> RdfFormat {
        match self {
            Format::NTriples => RdfFormat::NTriples,
            Format::NQuads => RdfFormat::NQuads,
            Format::Turtle => RdfFormat::Turtle,
            Format::TriG => RdfFormat::TriG,
            Format::RdfXml => RdfFormat::RdfXml,
            Format::JsonLd => RdfFormat::from_extension("jsonld").unwrap_or(RdfFormat::NQuads),
        }
    }

    fn from_oxrdfio(f: RdfFormat) -> Option<Format> {
        Some(match f {
            RdfFormat::NTriples => Format::NTriples,
            RdfFormat::NQuads => Format::NQuads,
            RdfFormat::Turtle => Format::Turtle,
            RdfFormat::TriG => Format::TriG,
            RdfFormat::RdfXml => Format::RdfXml,
            RdfFormat::JsonLd { .. } => Format::JsonLd,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Compression of an input file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Compression {
    /// Plain.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_format_and_compression() {
        assert_eq!(
            Format::from_path(Path::new("a/b.ttl.gz")),
            (Some(Format::Turtle), Compression::Gzip)
        );
        assert_eq!(
            Format::from_path(Path::new("x.NT.zst")),
            (Some(Format::NTriples), Compression::Zstd)
        );
        assert_eq!(
            Format::from_path(Path::new("x.owl")),
            (Some(Format::RdfXml), Compression::None)
        );
        assert_eq!(Format::from_path(Path::new("x.bin")).0, None);
        assert_eq!(Format::from_name("text/turtle"), Some(Format::Turtle));
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(Format::from_name(f.extension()), Some(f));
        }
    }
}
