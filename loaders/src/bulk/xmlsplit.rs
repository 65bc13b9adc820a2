//! Cutting RDF/XML into chunks between the top-level elements of `rdf:RDF`, so that parser workers can
//! parse them in parallel.
//!
//! Each chunk is parsed as `header + chunk + footer`: the header is everything up to and including the
//! `rdf:RDF` start tag (XML declaration, namespace declarations, `xml:base`, `xml:lang`), the footer the
//! matching end tag. A top-level child of `rdf:RDF` is a node element whose meaning does not depend on
//! its siblings, except through `rdf:nodeID` labels (kept as labels and salted per input, so they agree
//! across chunks) and the document-wide uniqueness of `rdf:ID` (which only a sequential parse can check).
//! So the splitter gives up — and the caller parses the input sequentially — on anything outside that
//! model: a DOCTYPE (entities), a root that is not `rdf:RDF`, or any `ID` attribute. Like the Turtle
//! splitter, a chunk that fails to parse sends the caller back to the sequential parser, which stays the
//! reference for errors and their positions.

const RDF_NS: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Text,
    /// Inside a start or end tag; `quote` is the open attribute quote, if any.
    Tag {
        end: bool,
        quote: Option<u8>,
    },
    Comment,
    CData,
    Pi,
}

/// Incremental splitter; feed it a growing buffer, take chunks from the front (see
/// [`crate::bulk::split::Splitter`] for the protocol).
pub(crate) struct XmlSplitter {
    state: State,
    depth: usize,
    scanned: usize,
    /// Start of the tag being scanned (for the root start tag).
    tag_start: usize,
    last_boundary: usize,
    /// Everything up to and including the `rdf:RDF` start tag, once seen.
    pub(crate) header: Option<String>,
    /// The end tag closing `rdf:RDF`.
    pub(crate) footer: String,
    /// Bytes at the front of the buffer that belong to the header, not to a chunk.
    pub(crate) skip: usize,
    /// Whether `rdf:RDF` was closed.
    pub(crate) closed: bool,
    /// Why this input cannot be split, if it cannot.
    pub(crate) unsupported: Option<&'static str>,
}

impl XmlSplitter {
    pub(crate) fn new() -> Self {
        XmlSplitter {
            state: State::Text,
            depth: 0,
            scanned: 0,
            tag_start: 0,
            last_boundary: 0,
            header: None,
            footer: String::new(),
            skip: 0,
            closed: false,
            unsupported: None,
        }
    }

    /// Scans `buf` from where the last call stopped. Returns the end of the last complete top-level
    /// element (0 if none); `buf[self.skip..end]` is then a chunk.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> usize {
        let mut i = self.scanned;
        // Jumps from one significant byte to the next with memchr: the reader thread scans the whole
        // input while the workers parse, so it must stay well ahead of them.
        while i < buf.len() && self.unsupported.is_none() {
            match self.state {
                State::Text => {
                    let Some(p) = memchr::memchr(b'<', &buf[i..]) else {
                        i = buf.len();
                        break;
                    };
                    i += p;
                    // Markup kinds need a few bytes of lookahead: wait for more input.
                    let rest = &buf[i..];
                    if rest.len() < 2 || (rest[1] == b'!' && rest.len() < 9) {
                        break;
                    }
                    if rest.starts_with(b"<!--") {
                        self.state = State::Comment;
                        i += 4;
                    } else if rest.starts_with(b"<![CDATA[") {
                        self.state = State::CData;
                        i += 9;
                    } else if rest.starts_with(b"<?") {
                        self.state = State::Pi;
                        i += 2;
                    } else if rest.starts_with(b"<!") {
                        self.unsupported = Some("a DOCTYPE declaration");
                    } else {
                        self.tag_start = i;
                        self.state = State::Tag {
                            end: rest[1] == b'/',
                            quote: None,
                        };
                        i += 1;
                    }
                }
                State::Tag {
                    end,
                    quote: Some(q),
                } => match memchr::memchr(q, &buf[i..]) {
                    Some(p) => {
                        i += p + 1;
                        self.state = State::Tag { end, quote: None };
                    }
                    None => i = buf.len(),
                },
                State::Tag { end, quote: None } => {
                    let Some(p) = memchr::memchr3(b'>', b'"', b'\'', &buf[i..]) else {
                        i = buf.len();
                        break;
                    };
                    i += p;
                    let b = buf[i];
                    if b != b'>' {
                        self.state = State::Tag {
                            end,
                            quote: Some(b),
                        };
                        i += 1;
                        continue;
                    }
                    self.state = State::Text;
                    let tag = &buf[self.tag_start..=i];
                    // `/>` is contiguous in an empty-element tag.
                    let empty = !end && buf[i - 1] == b'/';
                    i += 1;
                    if has_id_attribute(tag) {
                        self.unsupported = Some("an rdf:ID attribute");
                    } else if end {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 1 {
                            self.last_boundary = i;
                        } else if self.depth == 0 {
                            self.closed = true;
                        }
                    } else if self.depth == 0 {
                        if empty {
                            self.unsupported = Some("a root element other than rdf:RDF");
                        } else if let Err(why) = self.root(buf, i - 1) {
                            self.unsupported = Some(why);
                        } else {
                            self.depth = 1;
                        }
                    } else if empty {
                        if self.depth == 1 {
                            self.last_boundary = i;
                        }
                    } else {
                        self.depth += 1;
                    }
                }
                State::Comment | State::CData | State::Pi => {
                    let close: &[u8] = match self.state {
                        State::Comment => b"-->",
                        State::CData => b"]]>",
                        _ => b"?>",
                    };
                    match memchr::memmem::find(&buf[i..], close) {
                        Some(p) => {
                            i += p + close.len();
                            self.state = State::Text;
                        }
                        None => {
                            // The closing sequence may straddle the end of the buffer.
                            i = buf.len().saturating_sub(close.len() - 1).max(i);
                            break;
                        }
                    }
                }
            }
        }
        self.scanned = i;
        if self.last_boundary > self.skip {
            self.last_boundary
        } else {
            0
        }
    }

    /// The root start tag ends at `end`: it must be `rdf:RDF` (in the RDF namespace).
    fn root(&mut self, buf: &[u8], end: usize) -> Result<(), &'static str> {
        let tag = &buf[self.tag_start..=end];
        let name_end = tag[1..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
            .map_or(tag.len(), |p| p + 1);
        let name = &tag[1..name_end];
        let (prefix, local) = match name.iter().position(|&b| b == b':') {
            Some(c) => (&name[..c], &name[c + 1..]),
            None => (&b""[..], name),
        };
        let declaration = if prefix.is_empty() {
            b"xmlns".to_vec()
        } else {
            [&b"xmlns:"[..], prefix].concat()
        };
        if local != b"RDF" || !declares(tag, &declaration, RDF_NS) {
            return Err("a root element other than rdf:RDF");
        }
        let header = std::str::from_utf8(&buf[..=end]).map_err(|_| "invalid UTF-8")?;
        self.header = Some(header.to_owned());
        self.footer = format!("</{}>", String::from_utf8_lossy(name));
        self.skip = end + 1;
        self.last_boundary = end + 1;
        Ok(())
    }

    /// The first `n` bytes of the buffer were taken (as a chunk, or as the header).
    pub(crate) fn consume(&mut self, n: usize) {
        self.scanned -= n;
        self.last_boundary -= n;
        self.tag_start = self.tag_start.saturating_sub(n);
        self.skip = 0;
    }
}

/// Whether a tag has an attribute named `ID` (any prefix): conservative, quoted values are not parsed.
fn has_id_attribute(tag: &[u8]) -> bool {
    memchr::memmem::find_iter(tag, b"ID").any(|k| {
        k > 0
            && (tag[k - 1] == b':' || tag[k - 1].is_ascii_whitespace())
            && tag
                .get(k + 2)
                .is_some_and(|&c| c == b'=' || c.is_ascii_whitespace())
    })
}

/// Whether `tag` has the attribute `name="value"` (either quote).
fn declares(tag: &[u8], name: &[u8], value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = tag[i..].windows(name.len()).position(|w| w == name) {
        let at = i + p;
        i = at + 1;
        if at == 0 || !tag[at - 1].is_ascii_whitespace() {
            continue;
        }
        let rest = &tag[at + name.len()..];
        let rest = rest.trim_ascii_start();
        let Some(rest) = rest.strip_prefix(b"=") else {
            continue;
        };
        let rest = rest.trim_ascii_start();
        if let Some(&q @ (b'"' | b'\'')) = rest.first() {
            if rest[1..].starts_with(value) && rest.get(1 + value.len()) == Some(&q) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "<?xml version=\"1.0\"?>\n<!-- c -->\n<r:RDF xmlns:r=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" xml:base=\"http://e/\">\n  <r:Description r:about=\"a\"><p xmlns=\"http://e/\">x &gt; y <![CDATA[ </r:RDF> ]]></p></r:Description>\n  <!-- </r:Description> -->\n  <r:Description r:about=\"b\" r:type='t>'/>\n  <r:Description r:about=\"c\"><q xmlns=\"http://e/\" r:parseType=\"Literal\"><b>bold</b></q></r:Description>\n</r:RDF>\n";

    #[test]
    fn cuts_between_top_level_elements_only() {
        let bytes = DOC.as_bytes();
        // Fed byte by byte, the splitter finds the same boundaries as with the whole input.
        for step in [1, 7, bytes.len()] {
            let mut s = XmlSplitter::new();
            let mut cuts = Vec::new();
            let mut buf: Vec<u8> = Vec::new();
            let mut fed = 0;
            while fed < bytes.len() {
                let next = (fed + step).min(bytes.len());
                buf.extend_from_slice(&bytes[fed..next]);
                fed = next;
                let end = s.scan(&buf);
                if end > 0 {
                    cuts.push(String::from_utf8(buf[s.skip..end].to_vec()).unwrap());
                    buf.drain(..end);
                    s.consume(end);
                }
            }
            assert!(s.unsupported.is_none());
            assert!(s.closed);
            assert_eq!(s.footer, "</r:RDF>");
            assert!(s
                .header
                .as_deref()
                .unwrap()
                .ends_with("xml:base=\"http://e/\">"));
            let joined: String = cuts.concat();
            assert!(joined.contains("about=\"a\"") && joined.contains("about=\"c\""));
            for c in &cuts {
                // Every chunk ends right after a complete top-level element.
                assert!(
                    c.trim_end().ends_with("</r:Description>") || c.trim_end().ends_with("/>"),
                    "{c:?}"
                );
            }
            assert_eq!(buf, b"\n</r:RDF>\n");
        }
    }

    #[test]
    fn refuses_what_it_cannot_split() {
        for (doc, why) in [
            ("<!DOCTYPE rdf:RDF [<!ENTITY e \"http://e/\">]><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"></rdf:RDF>         ", "a DOCTYPE declaration"),
            ("<rdf:Description xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"/>           ", "a root element other than rdf:RDF"),
            ("<x:RDF xmlns:x=\"http://example.org/\"><x:a/></x:RDF>            ", "a root element other than rdf:RDF"),
            ("<rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description rdf:ID=\"x\"/></rdf:RDF>    ", "an rdf:ID attribute"),
        ] {
            let mut s = XmlSplitter::new();
            s.scan(doc.as_bytes());
            assert_eq!(s.unsupported, Some(why), "{doc}");
        }
    }
}
