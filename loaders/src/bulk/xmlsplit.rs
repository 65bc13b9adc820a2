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

use super::ntriples::IriCache;

const RDF_NS: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";

/// Whether `oxrdfxml`'s lenient mode parses `text` exactly as its strict mode would, by a conservative
/// scan of the raw text: every `xmlns` / `xmlns:name` declaration and every `about`, `resource` or
/// `datatype` attribute (whatever its prefix) must hold a valid absolute IRI without character references,
/// with ASCII prefix names, and there must be no `xml:base`, `xml:lang` or `ID` attribute. Those are the only
/// places where the strict mode checks more (it validates IRIs and language tags before resolving them
/// against the base, skips invalid namespace declarations and checks that `rdf:ID`s are unique). Anything that merely looks like such an attribute (in text
/// content, say) is checked too, which can only send a chunk to the strict parser. Skipping the strict
/// parser's IRI parsing saves about a fifth of the time of parsing LUBM's RDF/XML.
pub(crate) fn lenient_is_exact(text: &[u8], iris: &mut IriCache) -> bool {
    static XML_PREFIX: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"xml:"));
    if XML_PREFIX
        .find_iter(text)
        .any(|at| matches!(text.get(at + 4..at + 8), Some(b"base" | b"lang")))
    {
        return false;
    }
    for eq in memchr::memchr_iter(b'=', text) {
        let mut start = eq;
        while start > 0 && text[start - 1].is_ascii_whitespace() {
            start -= 1;
        }
        let name_end = start;
        while start > 0
            && !text[start - 1].is_ascii_whitespace()
            && !b"<>\"'=".contains(&text[start - 1])
        {
            start -= 1;
        }
        let name = &text[start..name_end];
        let local = name.rsplit(|&b| b == b':').next().unwrap_or_default();
        if local == b"ID" {
            return false; // the strict mode checks that rdf:ID values are unique
        }
        let declaration = name == b"xmlns" || name.starts_with(b"xmlns:");
        if !declaration && !matches!(local, b"about" | b"resource" | b"datatype") {
            continue;
        }
        if let Some(prefix) = name.strip_prefix(b"xmlns:") {
            let ncname = prefix
                .first()
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                && prefix
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ncname {
                return false;
            }
        }
        let mut at = eq + 1;
        while text.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let Some(&quote) = text.get(at).filter(|q| matches!(q, b'"' | b'\'')) else {
            continue; // not an attribute
        };
        let Some(len) = memchr::memchr(quote, &text[at + 1..]) else {
            return false;
        };
        let value = &text[at + 1..at + 1 + len];
        let valid =
            !value.contains(&b'&') && std::str::from_utf8(value).is_ok_and(|v| iris.check(v));
        if !valid {
            return false;
        }
    }
    true
}

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
    // Built once: `memmem::find_iter` builds a searcher per call, and this runs for every start tag.
    static ID: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"ID"));
    ID.find_iter(tag).any(|k| {
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

    #[test]
    fn lenient_only_for_plain_absolute_iris() {
        let mut iris = IriCache::new();
        let ok = r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:u="http://u/ns#">
  <u:C xmlns="http://u/ns#" rdf:about="http://e/a"><p rdf:resource = 'http://e/b'/><q>x = y</q></u:C>
</rdf:RDF>"#;
        assert!(lenient_is_exact(ok.as_bytes(), &mut iris));
        for (from, to) in [
            ("http://e/a", "a"),               // relative: resolved against the base
            ("http://e/b", "http://e/&#32;b"), // character reference
            ("http://e/b", "http://e/ b"),     // invalid IRI
            ("xmlns:u=", "xmlns:1u="),         // invalid prefix name
            ("xmlns=\"http://u/ns#\"", "xmlns=\"u ns\""), // invalid namespace
            ("<q>", "<q xml:lang=\"EN-x-\">"), // language tag
            ("<q>", "<q xml:base=\"http://b/\">"),
        ] {
            let text = ok.replacen(from, to, 1);
            assert_ne!(text, ok);
            assert!(!lenient_is_exact(text.as_bytes(), &mut iris), "{text}");
        }
    }

    /// The claim behind `lenient_is_exact`, on every W3C RDF/XML file it accepts: lenient and strict
    /// parses give the same triples, or both fail.
    #[test]
    fn lenient_equals_strict_on_w3c_files_it_accepts() {
        let (mut files, mut accepted) = (0, 0);
        let mut iris = IriCache::new();
        for path in super::super::w3c_files("rdf/rdf11/rdf-xml", "rdf") {
            let text = std::fs::read(&path).expect("read");
            files += 1;
            if !lenient_is_exact(&text, &mut iris) {
                continue;
            }
            accepted += 1;
            let base = format!("http://example.org/{}", path.display());
            let parse = |lenient: bool| -> Result<Vec<String>, String> {
                let mut p = oxrdfxml::RdfXmlParser::new()
                    .with_base_iri(base.clone())
                    .expect("base");
                if lenient {
                    p = p.lenient();
                }
                // Anonymous blank nodes get random labels: number them by first appearance.
                let mut labels = std::collections::HashMap::new();
                let mut name = |b: &oxrdf::BlankNode| {
                    let n = labels.len();
                    format!("_:b{}", labels.entry(b.as_str().to_owned()).or_insert(n))
                };
                p.for_slice(&text)
                    .map(|t| {
                        let t = t.map_err(|e| e.to_string())?;
                        let s = match &t.subject {
                            oxrdf::NamedOrBlankNode::BlankNode(b) => name(b),
                            s => s.to_string(),
                        };
                        let o = match &t.object {
                            oxrdf::Term::BlankNode(b) => name(b),
                            o => o.to_string(),
                        };
                        Ok(format!("{s} {} {o}", t.predicate))
                    })
                    .collect()
            };
            match (parse(true), parse(false)) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", path.display()),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{}: lenient {a:?}, strict {b:?}", path.display()),
            }
        }
        eprintln!("{files} RDF/XML files, {accepted} parsed leniently");
        assert!(
            files > 100 && accepted > 10,
            "{files} files, {accepted} accepted"
        );
    }

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
