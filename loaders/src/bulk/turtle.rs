//! A fast parser for the common subset of Turtle, for the bulk loader's statement chunks.
//!
//! `oxttl` allocates every term of every triple (owned quads, `format!` for each prefixed name), which made
//! it most of the time of a Turtle bulk load. This parser handles the plain shape most dumps use — IRIs,
//! prefixed names, `a`, blank node labels, single-line `"..."` strings with language tags or datatypes,
//! integers, decimals and booleans, `;` and `,` lists, `@prefix` / `PREFIX` — and writes every term into
//! one reused arena. A whole chunk is parsed before any triple is emitted, so outside the subset (or on any
//! error) nothing has been emitted and the caller parses the chunk with `oxttl`, which stays the reference
//! for results and error messages: like [`super::ntriples`], this can only be faster, never different.

use oxrdf::vocab::{rdf, xsd};

use super::ntriples::{Cursor, IriCache, LiteralValue};
use super::parsed::{Parsed, Term, Text};

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// A declared prefix: its IRI, and whether a simple local name appended to it needs no new validation.
struct Prefix {
    iri: String,
    /// The IRI has a non-empty path, so appending unreserved characters cannot change its authority
    /// (`oxttl` makes the same distinction before it re-validates).
    appendable: bool,
}

/// Reusable state of the fast Turtle parser. See the module documentation.
pub(crate) struct TurtleParser {
    salt: String,
    /// Prefixes declared by the header the last chunk came with, and the header's text.
    header: Option<(String, FastMap<String, Prefix>)>,
    /// Prefixes declared by the chunk itself (looked up before the header's).
    prefixes: FastMap<String, Prefix>,
    /// The chunk's triples and the arena their terms may point into.
    out: Parsed,
    /// Where the IRIs `a`, `true`/`false`, integers and decimals need are, at the start of the arena.
    statics: [Text; 4],
    literal: String,
    iris: IriCache,
}

impl TurtleParser {
    /// A parser whose blank node labels are prefixed with `salt`.
    pub(crate) fn new(salt: String) -> Self {
        TurtleParser {
            salt,
            header: None,
            prefixes: FastMap::default(),
            out: Parsed::default(),
            statics: [Text::arena(0, 0); 4],
            literal: String::new(),
            iris: IriCache::new(),
        }
    }

    /// Parses `chunk` (whole statements) after the directives in `header`. Returns false when the input is
    /// outside the fast subset or invalid; nothing is then retained.
    pub(crate) fn parse(&mut self, header: &str, chunk: &str) -> bool {
        if !self.out.start(chunk) {
            return false;
        }
        if self.header.as_ref().map(|(h, _)| h.as_str()) != Some(header) {
            self.prefixes.clear();
            if self.statements(header, true).is_none() {
                self.header = None;
                return false;
            }
            self.header = Some((header.to_owned(), std::mem::take(&mut self.prefixes)));
        }
        self.prefixes.clear();
        for (slot, iri) in
            self.statics
                .iter_mut()
                .zip([rdf::TYPE, xsd::BOOLEAN, xsd::INTEGER, xsd::DECIMAL])
        {
            let at = self.out.arena.len();
            self.out.arena.push_str(iri.as_str());
            *slot = Text::arena(at, self.out.arena.len());
        }
        let ok = self.statements(chunk, false).is_some();
        self.out.finish(ok)
    }

    /// The triples of the last chunk parsed.
    pub(crate) fn parsed(&self) -> &Parsed {
        &self.out
    }

    /// Parses directives and (unless `header`) triples up to the end of `text`.
    fn statements(&mut self, text: &str, header: bool) -> Option<()> {
        let mut c = Cursor::new(text);
        loop {
            skip_ws(&mut c);
            let Some(first) = c.peek() else {
                return Some(());
            };
            if first == b'@' {
                if !c.b[c.i..].starts_with(b"@prefix") {
                    return None; // @base: relative IRIs are left to oxttl
                }
                c.i += "@prefix".len();
                self.prefix_directive(&mut c)?;
                skip_ws(&mut c);
                if c.peek()? != b'.' {
                    return None;
                }
                c.i += 1;
            } else if keyword(&c, b"prefix") {
                c.i += "prefix".len();
                self.prefix_directive(&mut c)?;
            } else if header || keyword(&c, b"base") || keyword(&c, b"graph") {
                return None;
            } else {
                self.statement(&mut c)?;
            }
        }
    }

    /// ` pfx: <iri>` after `@prefix` or `PREFIX`.
    fn prefix_directive(&mut self, c: &mut Cursor<'_>) -> Option<()> {
        if !matches!(c.peek()?, b' ' | b'\t' | b'\r' | b'\n') {
            return None;
        }
        skip_ws(c);
        let start = c.i;
        let end = prefix_name_end(c.b, start)?;
        if c.b.get(end) != Some(&b':') {
            return None;
        }
        let name = &c.s[start..end];
        c.i = end + 1;
        skip_ws(c);
        let iri = c.iri()?;
        let parsed = oxiri::Iri::parse(iri).ok()?;
        let appendable = !parsed.path().is_empty();
        self.prefixes.insert(
            name.to_owned(),
            Prefix {
                iri: iri.to_owned(),
                appendable,
            },
        );
        Some(())
    }

    /// `subject predicateObjectList '.'`
    fn statement(&mut self, c: &mut Cursor<'_>) -> Option<()> {
        let subject = match c.peek()? {
            b'<' => Term::Iri(self.iri(c)?),
            b'_' => self.blank(c)?,
            _ => Term::Iri(self.prefixed_name(c)?),
        };
        loop {
            skip_ws(c);
            let predicate = if c.peek()? == b'a'
                && c.b
                    .get(c.i + 1)
                    .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                c.i += 1;
                self.statics[0]
            } else if c.peek()? == b'<' {
                self.iri(c)?
            } else {
                self.prefixed_name(c)?
            };
            loop {
                skip_ws(c);
                let object = self.object(c)?;
                self.out.triples.push((subject, predicate, object));
                skip_ws(c);
                if c.peek()? != b',' {
                    break;
                }
                c.i += 1;
            }
            match c.peek()? {
                b'.' => {
                    c.i += 1;
                    return Some(());
                }
                b';' => {
                    while c.peek() == Some(b';') {
                        c.i += 1;
                        skip_ws(c);
                    }
                    if c.peek()? == b'.' {
                        c.i += 1;
                        return Some(());
                    }
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, c: &mut Cursor<'_>) -> Option<Term> {
        match c.peek()? {
            b'<' => self.iri(c).map(Term::Iri),
            b'_' => self.blank(c),
            b'"' => self.literal(c),
            b'0'..=b'9' | b'+' | b'-' | b'.' => number(c, [self.statics[2], self.statics[3]]),
            b't' | b'f' => {
                for word in ["true", "false"] {
                    // `true.` ends a statement; `true.x` or `true:x` would be a name.
                    let end = c.i + word.len();
                    let ends_here = match c.b.get(end) {
                        None => true,
                        Some(b'.') => c.b.get(end + 1).is_none_or(|&b| !is_name_byte(b)),
                        Some(&b) => !is_name_byte(b) && b < 0x80,
                    };
                    if c.b[c.i..].starts_with(word.as_bytes()) && ends_here {
                        let start = c.i;
                        c.i += word.len();
                        return Some(Term::Typed(Text::chunk(start, c.i), self.statics[1]));
                    }
                }
                self.prefixed_name(c).map(Term::Iri)
            }
            _ => self.prefixed_name(c).map(Term::Iri),
        }
    }

    /// `<...>`: an absolute IRI.
    fn iri(&mut self, c: &mut Cursor<'_>) -> Option<Text> {
        let start = c.i + 1;
        let iri = c.iri()?;
        if !self.iris.check(iri) {
            return None;
        }
        Some(Text::chunk(start, start + iri.len()))
    }

    fn blank(&mut self, c: &mut Cursor<'_>) -> Option<Term> {
        let label = c.blank_label()?;
        let start = self.out.arena.len();
        self.out.arena.push_str(&self.salt);
        self.out.arena.push_str(label);
        Some(Term::Blank(Text::arena(start, self.out.arena.len())))
    }

    /// `pfx:local` with ASCII names and no escapes.
    fn prefixed_name(&mut self, c: &mut Cursor<'_>) -> Option<Text> {
        let start = c.i;
        let end = prefix_name_end(c.b, start)?;
        if c.b.get(end) != Some(&b':') {
            return None;
        }
        let local_start = end + 1;
        let mut j = local_start;
        if c.b
            .get(j)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        {
            j += 1;
            while c.b.get(j).is_some_and(|&b| is_name_byte(b)) {
                j += 1;
            }
            while c.b[j - 1] == b'.' {
                j -= 1; // a local name cannot end with '.'; the dot ends the statement
            }
        }
        // Escapes, percent-encoding and non-ASCII names are left to oxttl.
        if c.b
            .get(j)
            .is_some_and(|&b| b == b'\\' || b == b'%' || b >= 0x80)
        {
            return None;
        }
        let name = &c.s[start..end];
        let prefix = self
            .prefixes
            .get(name)
            .or_else(|| self.header.as_ref().and_then(|(_, h)| h.get(name)))?;
        let local = &c.s[local_start..j];
        c.i = j;
        let at = self.out.arena.len();
        self.out.arena.push_str(&prefix.iri);
        self.out.arena.push_str(local);
        if !prefix.appendable && !self.iris.check(&self.out.arena[at..]) {
            return None;
        }
        Some(Text::arena(at, self.out.arena.len()))
    }

    fn literal(&mut self, c: &mut Cursor<'_>) -> Option<Term> {
        if c.b[c.i..].starts_with(b"\"\"\"") {
            return None; // long strings may span lines
        }
        let start = c.i + 1;
        let value = match c.string(&mut self.literal)? {
            LiteralValue::Borrowed(v) => Text::chunk(start, start + v.len()),
            LiteralValue::Scratch => {
                let at = self.out.arena.len();
                self.out.arena.push_str(&self.literal);
                Text::arena(at, self.out.arena.len())
            }
        };
        match c.peek() {
            Some(b'@') => {
                c.i += 1;
                let at = c.i;
                let tag = c.simple_lang_tag()?;
                // A tag followed by more name characters is not in the simple shape.
                if c.peek()
                    .is_some_and(|b| b == b'-' || b.is_ascii_alphanumeric())
                {
                    return None;
                }
                Some(Term::Lang(value, Text::chunk(at, at + tag.len())))
            }
            Some(b'^') => {
                if c.b.get(c.i + 1) != Some(&b'^') {
                    return None;
                }
                c.i += 2;
                let d = match c.peek()? {
                    b'<' => self.iri(c)?,
                    _ => self.prefixed_name(c)?,
                };
                if d.resolve(c.s, &self.out.arena) == rdf::LANG_STRING.as_str() {
                    return None; // an error oxttl reports
                }
                Some(Term::Typed(value, d))
            }
            _ => Some(Term::Simple(value)),
        }
    }
}

/// Bytes of a local name after its first one (ASCII subset).
/// ASCII bytes of names: bit 0 for `PN_PREFIX` continuation bytes (letters, digits, `_`, `-`, `.`), bit 1
/// for local name bytes (the same and `:`). A table: the name loops were the top of the parser's profile.
static NAME_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
            t[i] = 3;
        } else if b == b':' {
            t[i] = 2;
        }
        i += 1;
    }
    t
};

fn is_name_byte(b: u8) -> bool {
    NAME_BYTES[b as usize] & 2 != 0
}

/// End of an ASCII `PN_PREFIX` (possibly empty) starting at `start`.
fn prefix_name_end(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    if b.get(j).is_some_and(u8::is_ascii_alphabetic) {
        j += 1;
        while b.get(j).is_some_and(|&x| NAME_BYTES[x as usize] & 1 != 0) {
            j += 1;
        }
        if b[j - 1] == b'.' {
            return None;
        }
    }
    if b.get(j).is_some_and(|&x| x >= 0x80) {
        return None;
    }
    Some(j)
}

/// Whether a case-insensitive SPARQL-style keyword (`PREFIX`, `BASE`, `GRAPH`) followed by white space
/// starts here.
fn keyword(c: &Cursor<'_>, word: &[u8]) -> bool {
    c.b.get(c.i..c.i + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
        && c.b
            .get(c.i + word.len())
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'<'))
}

/// White space and comments.
fn skip_ws(c: &mut Cursor<'_>) {
    while let Some(b) = c.peek() {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => c.i += 1,
            b'#' => {
                c.i = memchr::memchr(b'\n', &c.b[c.i..]).map_or(c.b.len(), |n| c.i + n + 1);
            }
            _ => return,
        }
    }
}

/// `[+-]?[0-9]+` (xsd:integer) or `[+-]?[0-9]*\.[0-9]+` (xsd:decimal); exponents are left to oxttl.
fn number(c: &mut Cursor<'_>, [integer_iri, decimal_iri]: [Text; 2]) -> Option<Term> {
    let start = c.i;
    let mut j = start;
    if matches!(c.b[j], b'+' | b'-') {
        j += 1;
    }
    let digits = |j: &mut usize| {
        let from = *j;
        while c.b.get(*j).is_some_and(u8::is_ascii_digit) {
            *j += 1;
        }
        *j - from
    };
    let integer = digits(&mut j);
    let datatype = if c.b.get(j) == Some(&b'.') && c.b.get(j + 1).is_some_and(u8::is_ascii_digit) {
        j += 1;
        digits(&mut j);
        decimal_iri
    } else if integer > 0 {
        integer_iri
    } else {
        return None;
    };
    match c.b.get(j) {
        Some(b'e' | b'E') => return None,
        Some(b'.') if matches!(c.b.get(j + 1), Some(b'e' | b'E')) => return None,
        Some(&b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80 => return None,
        _ => {}
    }
    c.i = j;
    Some(Term::Typed(Text::chunk(start, j), datatype))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast parse of `text`, or `None` when it falls back.
    fn fast(text: &str) -> Option<Vec<String>> {
        let mut p = TurtleParser::new("x".into());
        if !p.parse("", text) {
            return None;
        }
        Some(
            (0..p.parsed().len())
                .map(|i| p.parsed().triple(text, i).to_string())
                .collect(),
        )
    }

    /// oxttl's parse of `text`, with blank nodes salted like the bulk loader does.
    fn reference(text: &str) -> Vec<String> {
        oxttl::TurtleParser::new()
            .for_slice(text.as_bytes())
            .map(|t| {
                let t = t.expect("valid");
                let q = super::super::salted(t.in_graph(oxrdf::GraphName::DefaultGraph), "x");
                oxrdf::Triple::new(q.subject, q.predicate, q.object).to_string()
            })
            .collect()
    }

    #[test]
    fn the_subset_matches_oxttl() {
        let text = r#"@prefix ex: <http://example.org/ns#> .
PREFIX p: <http://example.org/p/>
@prefix : <http://example.org/empty/> .
ex:s a ex:C ; ex:p "v" , "w"@en , "x\ty"@en-gb , "1"^^ex:t , "2"^^<http://example.org/t> ;
  ex:q 12 , -3 , +4.50 , .5 , true , false ;; .
ex:s ex:r true.
ex:s ex:r false .
p:a.b p:c-d p:e.f . # comment
_:b1 ex:p _:b2 . :x :y :z.
ex:s2 ex:p ex:o . ex:s3 ex:p 7.
<http://example.org/s> <http://example.org/p> "\u00e9\\" .
ex:s ex:p p:123 , p:_x , p:a:b , p: .
"#;
        let got = fast(text).expect("fast subset");
        assert_eq!(got, reference(text));
        assert!(got.len() > 20);
    }

    #[test]
    fn everything_else_falls_back() {
        for text in [
            "@base <http://example.org/> .\n<a> <b> <c> .",
            "<> <http://a/p> <http://a/o> .", // the base IRI (a free IRI cache slot is empty too)
            "@prefix ex: <rel/> .\nex:a ex:b ex:c .",
            "<http://a/s> <http://a/p> [ <http://a/q> 1 ] .",
            "<http://a/s> <http://a/p> ( 1 2 ) .",
            "<http://a/s> <http://a/p> \"\"\"long\"\"\" .",
            "<http://a/s> <http://a/p> 'single' .",
            "<http://a/s> <http://a/p> 1e5 .",
            "<http://a/s> <http://a/p> 1.5E3 .",
            "<http://a/s> <http://a/p> \"x\"@EN .",
            "<http://a/s> <http://a/p> \"x\"@en-verylongtag .",
            "@prefix ex: <http://e/> .\nex:a ex:b ex:c\\-d .",
            "@prefix ex: <http://e/> .\nex:a ex:b ex:c%20 .",
            "@prefix ex: <http://e/> .\nex:a ex:b ex:é .",
            "undeclared:a <http://a/p> <http://a/o> .",
            "<http://a/s> <http://a/p> <http://a/o>",
            "<http://a/s> <http://a/p> ; .",
            "<http://a/s> <http://a/p> 12abc .",
            "<http://a/s> <http://a/p> \"x\"<http://a/o> .",
            "GRAPH <http://a/g> { <http://a/s> <http://a/p> <http://a/o> }",
            "<http://a/s> <http://a/p> \"x\"^^<http://www.w3.org/1999/02/22-rdf-syntax-ns#langString> .",
        ] {
            assert!(fast(text).is_none(), "{text}");
        }
    }

    /// Every Turtle file of the W3C suites (and the SPARQL suites' data): whatever the fast parser accepts,
    /// oxttl accepts too, with the same triples. The negative syntax tests must all fall back.
    #[test]
    fn w3c_files_parse_as_oxttl_does_or_fall_back() {
        let (mut files, mut accepted) = (0, 0);
        for path in super::super::w3c_files("", "ttl") {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            files += 1;
            let Some(got) = fast(&text) else { continue };
            accepted += 1;
            let base = format!("file://{}", path.display());
            let expected: Result<Vec<String>, _> = oxttl::TurtleParser::new()
                .with_base_iri(base)
                .expect("base")
                .for_slice(text.as_bytes())
                .map(|t| {
                    t.map(|t| {
                        let q =
                            super::super::salted(t.in_graph(oxrdf::GraphName::DefaultGraph), "x");
                        oxrdf::Triple::new(q.subject, q.predicate, q.object).to_string()
                    })
                })
                .collect();
            match expected {
                Ok(expected) => assert_eq!(got, expected, "{}", path.display()),
                Err(e) => panic!("{}: fast parse accepted, oxttl says {e}", path.display()),
            }
        }
        eprintln!("{files} Turtle files, {accepted} in the fast subset");
        assert!(
            files > 400 && accepted > 100,
            "{files} files, {accepted} accepted"
        );
    }

    #[test]
    fn header_prefixes_apply_and_chunk_prefixes_do_not_leak() {
        let mut p = TurtleParser::new("x".into());
        let header = "@prefix ex: <http://example.org/> .\n";
        assert!(p.parse(header, "@prefix q: <http://q/> .\nex:a q:b ex:c .\n"));
        assert_eq!(
            p.parsed().triple("", 0).to_string(),
            "<http://example.org/a> <http://q/b> <http://example.org/c>"
        );
        // `q:` was declared by the previous chunk only.
        assert!(!p.parse(header, "ex:a q:b ex:c .\n"));
        let chunk = "ex:a ex:b ex:c .\n";
        assert!(p.parse(header, chunk));
        assert_eq!(p.parsed().len(), 1);
    }
}
