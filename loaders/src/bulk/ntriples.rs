//! A fast N-Triples / N-Quads line parser for the bulk loader.
//!
//! It handles the common, unambiguous subset of the syntax without allocating: absolute IRIs (checked with
//! `oxiri`, like `oxttl` does), ASCII blank node labels, literals with escapes, simple language tags and
//! datatypes. Anything else — Unicode blank node labels, IRI escapes, unusual language tags, or any syntax
//! error — is reported as [`Line::Fallback`], and the caller parses that line with `oxttl`, which stays the
//! reference for both results and error messages. So the fast path can only be faster, never different.

use oxrdf::vocab::rdf;
use oxrdf::{
    BlankNodeRef, GraphNameRef, LiteralRef, NamedNodeRef, NamedOrBlankNodeRef, QuadRef, TermRef,
};

/// The outcome of parsing one line.
pub enum Line<'a> {
    /// A statement.
    Quad(QuadRef<'a>),
    /// Blank or comment only.
    Empty,
    /// Outside the fast subset (or invalid): parse this line with `oxttl`.
    Fallback,
}

/// Reusable state: scratch buffers for unescaped literals and renamed blank nodes, and the last IRIs that
/// passed validation (predicates and classes repeat on almost every line).
pub struct LineParser {
    nquads: bool,
    /// Prepended to every blank node label: blank nodes are scoped to one input file.
    salt: String,
    literal: String,
    bnodes: [String; 3],
    valid_iris: IriCache,
}

/// Direct-mapped cache of IRIs that passed `oxiri` validation, indexed by hash: predicates, classes and
/// datatypes repeat on almost every line, so each is validated once.
pub(crate) struct IriCache {
    /// Empty for a free slot (the empty string is never an absolute IRI). Reused, never reallocated
    /// once warm.
    slots: Vec<String>,
    hasher: foldhash::fast::FixedState,
}

impl IriCache {
    pub(crate) fn new() -> Self {
        IriCache {
            slots: vec![String::new(); IRI_CACHE_SLOTS],
            hasher: foldhash::fast::FixedState::with_seed(7),
        }
    }

    /// Whether `iri` is a valid absolute IRI.
    pub(crate) fn check(&mut self, iri: &str) -> bool {
        use std::hash::BuildHasher;
        let slot = &mut self.slots[self.hasher.hash_one(iri) as usize % IRI_CACHE_SLOTS];
        // A free slot is empty: without the length test, `<>` would pass as cached.
        if slot == iri && !iri.is_empty() {
            return true;
        }
        // Most IRIs of real data are plain http(s) IRIs: valid by their shape, without a parse. Before
        // this check, parsing the IRIs missing from the cache was 9% of a LUBM-10 load.
        if !valid_iri(iri) {
            return false;
        }
        slot.clear();
        slot.push_str(iri);
        true
    }
}

/// Whether `iri` is a valid absolute IRI (no cache: see [`LineParser::parse_unchecked`]).
pub(crate) fn valid_iri(iri: &str) -> bool {
    simple_http_iri(iri.as_bytes()) || oxiri::Iri::parse(iri).is_ok()
}

/// Whether the IRIs of a term from [`LineParser::parse_unchecked`] are valid: an IRI, or a literal's
/// datatype.
pub fn valid_term(term: TermRef<'_>) -> bool {
    match term {
        TermRef::NamedNode(n) => valid_iri(n.as_str()),
        TermRef::Literal(l) => l.language().is_some() || valid_iri(l.datatype().as_str()),
        _ => true,
    }
}

/// Bytes allowed unescaped after the authority of an IRI, in the path, query and fragment alike:
/// unreserved, sub-delims, `:`, `@`, `/` and `?` (RFC 3987 `ipchar`, `/`, `?`; `#` is handled apart).
static AFTER_AUTHORITY: [bool; 256] = {
    let mut t = [false; 256];
    let allowed = b"-._~!$&'()*+,;=:@/?";
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric();
        i += 1;
    }
    let mut k = 0;
    while k < allowed.len() {
        t[allowed[k] as usize] = true;
        k += 1;
    }
    t
};

/// Whether `iri` has a shape that is valid by construction: `http://` or `https://`, a host of ASCII
/// letters, digits, `.` and `-`, an optional numeric port, then only [`AFTER_AUTHORITY`] bytes and at most
/// one `#`. Every such string is an absolute IRI (RFC 3987); anything else goes to `oxiri`.
fn simple_http_iri(iri: &[u8]) -> bool {
    let rest = if let Some(r) = iri.strip_prefix(b"http://") {
        r
    } else if let Some(r) = iri.strip_prefix(b"https://") {
        r
    } else {
        return false;
    };
    let host = rest
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        .unwrap_or(rest.len());
    if host == 0 {
        return false;
    }
    let mut rest = &rest[host..];
    if let Some(port) = rest.strip_prefix(b":") {
        let digits = port.iter().take_while(|b| b.is_ascii_digit()).count();
        rest = &port[digits..];
    }
    if !matches!(rest.first(), None | Some(b'/' | b'?' | b'#')) {
        return false;
    }
    let mut fragment = false;
    for &b in rest {
        if !AFTER_AUTHORITY[usize::from(b)] {
            if b != b'#' || fragment {
                return false;
            }
            fragment = true;
        }
    }
    true
}

/// Slots of the validated-IRI cache.
const IRI_CACHE_SLOTS: usize = 4096;

#[derive(Clone, Copy)]
enum Span<'a> {
    Iri(&'a str),
    /// Index into `bnodes`.
    Blank(usize),
    Literal {
        value: LiteralValue<'a>,
        lang: Option<&'a str>,
        datatype: Option<&'a str>,
    },
}

#[derive(Clone, Copy)]
pub(crate) enum LiteralValue<'a> {
    Borrowed(&'a str),
    Scratch,
}

impl LineParser {
    /// A parser for N-Triples (or N-Quads with `nquads`); `salt` prefixes every blank node label.
    pub fn new(nquads: bool, salt: String) -> Self {
        LineParser {
            nquads,
            salt,
            literal: String::new(),
            bnodes: Default::default(),
            valid_iris: IriCache::new(),
        }
    }

    /// Parses one line (without its line terminator).
    pub fn parse<'a>(&'a mut self, line: &'a str) -> Line<'a> {
        self.parse_with(line, true)
    }

    /// [`LineParser::parse`] without checking IRIs: the caller checks the terms of a returned quad with
    /// [`valid_term`] (the bulk encoder does, for terms it has not seen).
    pub fn parse_unchecked<'a>(&'a mut self, line: &'a str) -> Line<'a> {
        self.parse_with(line, false)
    }

    fn parse_with<'a>(&'a mut self, line: &'a str, check_iris: bool) -> Line<'a> {
        let mut c = Cursor::new(line);
        c.ws();
        if c.eof() || c.peek() == Some(b'#') {
            return Line::Empty;
        }
        let mut bnode = 0;
        let Some(s) = self.term(&mut c, &mut bnode, false) else {
            return Line::Fallback;
        };
        c.ws();
        let Some(p) = c.iri() else {
            return Line::Fallback;
        };
        c.ws();
        let Some(o) = self.term(&mut c, &mut bnode, true) else {
            return Line::Fallback;
        };
        c.ws();
        let g = if self.nquads && matches!(c.peek(), Some(b'<' | b'_')) {
            let Some(g) = self.term(&mut c, &mut bnode, false) else {
                return Line::Fallback;
            };
            c.ws();
            Some(g)
        } else {
            None
        };
        if c.peek() != Some(b'.') {
            return Line::Fallback;
        }
        c.i += 1;
        c.ws();
        if !c.eof() && c.peek() != Some(b'#') {
            return Line::Fallback;
        }
        // Validation of IRIs, after the syntax is known to be right.
        for span in [Some(s), Some(Span::Iri(p)), Some(o), g]
            .into_iter()
            .flatten()
            .filter(|_| check_iris)
        {
            let iri = match span {
                Span::Iri(i) => i,
                Span::Literal {
                    datatype: Some(d), ..
                } => d,
                _ => continue,
            };
            if !self.valid_iris.check(iri) {
                return Line::Fallback;
            }
        }
        if let Span::Literal {
            datatype: Some(d), ..
        } = o
        {
            if d == rdf::LANG_STRING.as_str() {
                return Line::Fallback; // an error oxttl reports
            }
        }
        let subject: NamedOrBlankNodeRef<'_> = match s {
            Span::Iri(i) => NamedNodeRef::new_unchecked(i).into(),
            Span::Blank(k) => BlankNodeRef::new_unchecked(&self.bnodes[k]).into(),
            Span::Literal { .. } => return Line::Fallback,
        };
        let object: TermRef<'_> = match o {
            Span::Iri(i) => NamedNodeRef::new_unchecked(i).into(),
            Span::Blank(k) => BlankNodeRef::new_unchecked(&self.bnodes[k]).into(),
            Span::Literal {
                value,
                lang,
                datatype,
            } => {
                let v = match value {
                    LiteralValue::Borrowed(v) => v,
                    LiteralValue::Scratch => self.literal.as_str(),
                };
                match (lang, datatype) {
                    (Some(l), _) => LiteralRef::new_language_tagged_literal_unchecked(v, l).into(),
                    (None, Some(d)) => {
                        LiteralRef::new_typed_literal(v, NamedNodeRef::new_unchecked(d)).into()
                    }
                    (None, None) => LiteralRef::new_simple_literal(v).into(),
                }
            }
        };
        let graph = match g {
            None => GraphNameRef::DefaultGraph,
            Some(Span::Iri(i)) => NamedNodeRef::new_unchecked(i).into(),
            Some(Span::Blank(k)) => BlankNodeRef::new_unchecked(&self.bnodes[k]).into(),
            Some(Span::Literal { .. }) => return Line::Fallback,
        };
        Line::Quad(QuadRef::new(
            subject,
            NamedNodeRef::new_unchecked(p),
            object,
            graph,
        ))
    }

    fn term<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        bnode: &mut usize,
        literal_ok: bool,
    ) -> Option<Span<'a>> {
        match c.peek()? {
            b'<' => c.iri().map(Span::Iri),
            b'_' => {
                let label = c.blank_label()?;
                let slot = *bnode;
                *bnode += 1;
                let buf = self.bnodes.get_mut(slot)?;
                buf.clear();
                buf.push_str(&self.salt);
                buf.push_str(label);
                Some(Span::Blank(slot))
            }
            b'"' if literal_ok => {
                let value = c.string(&mut self.literal)?;
                match c.peek() {
                    Some(b'@') => {
                        c.i += 1;
                        let lang = c.simple_lang_tag()?;
                        Some(Span::Literal {
                            value,
                            lang: Some(lang),
                            datatype: None,
                        })
                    }
                    Some(b'^') => {
                        if c.b.get(c.i + 1) != Some(&b'^') {
                            return None;
                        }
                        c.i += 2;
                        let dt = c.iri()?;
                        Some(Span::Literal {
                            value,
                            lang: None,
                            datatype: Some(dt),
                        })
                    }
                    _ => Some(Span::Literal {
                        value,
                        lang: None,
                        datatype: None,
                    }),
                }
            }
            _ => None,
        }
    }
}

/// Position of the first `"`, backslash, `\n` or `\r` in `bytes`: what ends or interrupts the plain run of a
/// `"..."` string. BSBM's literals are long, and a byte loop was 4% of its load.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    first_stop(bytes, b"\"\\\n\r")
}

/// Index of the first byte of `bytes` that is one of `needles`. On x86_64, 16 bytes at a time with SSE2
/// (part of the x86_64 baseline): `memchr` takes one needle, and running it once per needle read long
/// literals four times.
#[inline(always)]
fn first_stop(bytes: &[u8], needles: &[u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8, _mm_setzero_si128,
        };
        while i + 16 <= bytes.len() {
            // SAFETY: SSE2 is always available on x86_64, and the 16 bytes read are in bounds
            // (`i + 16 <= bytes.len()`); `loadu` has no alignment requirement.
            let mask = unsafe {
                let v = _mm_loadu_si128(bytes.as_ptr().add(i).cast::<__m128i>());
                let mut stop = _mm_setzero_si128();
                for &c in needles {
                    stop = _mm_or_si128(stop, _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8)));
                }
                _mm_movemask_epi8(stop)
            };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    bytes[i..]
        .iter()
        .position(|b| needles.contains(b))
        .map(|p| i + p)
}

/// A position in a line (or, for Turtle, a chunk of statements).
pub(crate) struct Cursor<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) s: &'a str,
    pub(crate) i: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor {
            b: s.as_bytes(),
            s,
            i: 0,
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(crate) fn eof(&self) -> bool {
        self.i >= self.b.len()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// `<...>`: the text up to the first `>` (no IRI contains one).
    pub(crate) fn iri(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'<') {
            return None;
        }
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let len = memchr::memchr(b'>', rest)?;
        let j = start + len;
        self.i = j + 1;
        // Neither its characters nor its scheme are checked here: every caller validates the IRI before
        // use ([`valid_iri`] or `oxiri`, which refuse relative IRIs, spaces, escapes and the other bytes
        // N-Triples forbids), and the bulk N-Triples path does so only for terms new to its encoder. An IRI
        // known to the encoder passed that check, so no invalid text can match one. Checking the scheme and
        // the characters of every occurrence was 4% of a LUBM-10 load.
        Some(&self.s[start..j])
    }

    /// `_:label` restricted to ASCII letters, digits, `_`, `-` and inner `.`.
    pub(crate) fn blank_label(&mut self) -> Option<&'a str> {
        if self.b.get(self.i..self.i + 2)? != b"_:" {
            return None;
        }
        let start = self.i + 2;
        let mut j = start;
        while let Some(&b) = self.b.get(j) {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
                j += 1;
            } else if b >= 0x80 {
                return None; // Unicode labels: oxttl
            } else {
                break;
            }
        }
        while j > start && self.b[j - 1] == b'.' {
            j -= 1; // a label cannot end with '.'; the dot ends the statement
        }
        let first = *self.b.get(start)?;
        if j == start || first == b'-' || first == b'.' {
            return None;
        }
        self.i = j;
        Some(&self.s[start..j])
    }

    /// A `"..."` string. Borrowed when it has no escape; otherwise unescaped into `scratch`.
    pub(crate) fn string(&mut self, scratch: &mut String) -> Option<LiteralValue<'a>> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            j += string_stop(self.b.get(j..)?)?;
            match self.b[j] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => return None, // a line break
            }
        }
        self.i = j + 1;
        if !escaped {
            return Some(LiteralValue::Borrowed(&self.s[start..j]));
        }
        scratch.clear();
        let raw = &self.s[start..j];
        let mut chars = raw.chars();
        while let Some(ch) = chars.next() {
            if ch != '\\' {
                scratch.push(ch);
                continue;
            }
            let decoded = match chars.next()? {
                't' => '\t',
                'b' => '\u{8}',
                'n' => '\n',
                'r' => '\r',
                'f' => '\u{c}',
                '"' => '"',
                '\'' => '\'',
                '\\' => '\\',
                'u' => hex_char(&mut chars, 4)?,
                'U' => hex_char(&mut chars, 8)?,
                _ => return None,
            };
            scratch.push(decoded);
        }
        Some(LiteralValue::Scratch)
    }

    /// Language tags of the shapes `ll`, `lll`, `ll-RR`, `ll-123` (always valid BCP 47); others fall back.
    pub(crate) fn simple_lang_tag(&mut self) -> Option<&'a str> {
        let start = self.i;
        let mut j = start;
        while self.b.get(j).is_some_and(u8::is_ascii_alphabetic) {
            j += 1;
        }
        if !(2..=3).contains(&(j - start)) {
            return None;
        }
        if self.b.get(j) == Some(&b'-') {
            let r = j + 1;
            let mut k = r;
            while self.b.get(k).is_some_and(u8::is_ascii_alphanumeric) {
                k += 1;
            }
            let region = &self.b[r..k];
            let ok = (region.len() == 2 && region.iter().all(u8::is_ascii_alphabetic))
                || (region.len() == 3 && region.iter().all(u8::is_ascii_digit));
            if !ok {
                return None;
            }
            j = k;
        }
        let tag = &self.s[start..j];
        // oxttl lowercases language tags; only borrowed lowercase tags take the fast path.
        if tag.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        self.i = j;
        Some(tag)
    }
}

fn hex_char(chars: &mut std::str::Chars<'_>, n: usize) -> Option<char> {
    let mut v = 0u32;
    for _ in 0..n {
        v = v * 16 + chars.next()?.to_digit(16)?;
    }
    char::from_u32(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<String> {
        let mut p = LineParser::new(true, "x".into());
        match p.parse(line) {
            Line::Quad(q) => Some(q.to_string()),
            Line::Empty => Some(String::new()),
            Line::Fallback => None,
        }
    }

    #[test]
    fn fast_subset() {
        assert_eq!(
            parse("<http://a/s> <http://a/p> <http://a/o> ."),
            Some("<http://a/s> <http://a/p> <http://a/o>".into())
        );
        assert_eq!(
            parse("_:b1 <http://a/p> \"v\\n\\u00e9\"@en ."),
            Some("_:xb1 <http://a/p> \"v\\né\"@en".into())
        );
        assert_eq!(
            parse("<http://a/s><http://a/p>\"1\"^^<http://www.w3.org/2001/XMLSchema#integer>.# c"),
            Some(
                "<http://a/s> <http://a/p> \"1\"^^<http://www.w3.org/2001/XMLSchema#integer>"
                    .into()
            )
        );
        assert_eq!(
            parse("<http://a/s> <http://a/p> <http://a/o> <http://a/g> ."),
            Some("<http://a/s> <http://a/p> <http://a/o> <http://a/g>".into())
        );
        assert_eq!(parse("   # comment"), Some(String::new()));
    }

    #[test]
    fn everything_else_falls_back() {
        for line in [
            "<a> <http://a/p> <http://a/o> .",          // relative IRI
            "<http://a/s> <http://a/p> <http://a/o>",    // no dot
            "<http://a/s> <http://a/p> \"x\"@EN .",      // uppercase tag: oxttl lowercases
            "<http://a/s> <http://a/p> \"x\"@en-verylongtag .",
            "<http://a/s> <http://a/p> \"x\" . junk",
            "_:é <http://a/p> <http://a/o> .",
            "<http://a/s> <http://a/p> \"\\q\" .",
            "<http://a/s> <http://a/p> \"x\"^^<http://www.w3.org/1999/02/22-rdf-syntax-ns#langString> .",
            "<http://a/s> \"p\" <http://a/o> .",
            "<> <http://a/p> <http://a/o> .", // empty IRI (a free cache slot is empty too)
            "<http://a/s> <http://a/p> <> .",
        ] {
            assert!(parse(line).is_none(), "{line}");
        }
    }

    #[test]
    fn simple_http_iris_are_valid_iris() {
        let alphabet = b"ab09.-_~!$&'()*+,;=:@/?#%[]<> \"{}|^`\\\xc3\xa9";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut simple = 0;
        for round in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut iri = if round % 2 == 0 {
                b"http://".to_vec()
            } else {
                b"https://".to_vec()
            };
            let len = (state % 24) as usize;
            let mut x = state;
            for _ in 0..len {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                iri.push(alphabet[(x >> 33) as usize % alphabet.len()]);
            }
            let Ok(text) = std::str::from_utf8(&iri) else {
                continue;
            };
            if simple_http_iri(&iri) {
                simple += 1;
                assert!(oxiri::Iri::parse(text).is_ok(), "{text}");
            }
        }
        assert!(simple > 1000, "{simple}");
        for ok in [
            "http://a",
            "https://www.lehigh.edu/~x/univ-bench.owl#Course",
            "http://a:8080/p?q=1#f",
        ] {
            assert!(simple_http_iri(ok.as_bytes()), "{ok}");
        }
        for other in [
            "http://",
            "http://a b",
            "http://a/#x#y",
            "http://u@a/",
            "http://[::1]/",
            "ftp://a",
            "http://a/%20",
            "http://a:x/",
        ] {
            assert!(!simple_http_iri(other.as_bytes()), "{other}");
        }
    }

    /// `scan` finds the first byte `is_stop` accepts, for every byte value at the start, middle and end of
    /// texts of 0 to 69 bytes followed by `tail`.
    fn agrees_with_a_byte_loop(
        scan: fn(&[u8]) -> Option<usize>,
        is_stop: impl Fn(u8) -> bool,
        tail: &str,
    ) {
        for len in 0..70usize {
            for stop in 0..=255u8 {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut bytes = vec![b'a'; len];
                    bytes.extend_from_slice(tail.as_bytes());
                    if at < bytes.len() {
                        bytes[at] = stop;
                    }
                    let expected = bytes.iter().position(|&b| is_stop(b));
                    assert_eq!(scan(&bytes), expected, "{len} {stop} {at}");
                }
            }
        }
    }

    #[test]
    fn string_stop_agrees_with_a_byte_loop() {
        agrees_with_a_byte_loop(
            string_stop,
            |b| matches!(b, b'"' | b'\\' | b'\n' | b'\r'),
            "é\"",
        );
        // Escapes and line breaks inside long literals, on both sides of a 16-byte block.
        let long = "x".repeat(40);
        for (literal, ok) in [
            (format!("{long}\\\"{long}"), true),
            (format!("{long}\\n{long}"), true),
            (format!("{long}\n{long}"), false),
            (format!("{long}\r{long}"), false),
        ] {
            let line = format!("<http://a/s> <http://a/p> \"{literal}\" .");
            assert_eq!(parse(&line).is_some(), ok, "{line:?}");
        }
    }

    #[test]
    fn forbidden_iri_bytes_are_found_at_any_position() {
        // IRIs of several lengths, with the forbidden byte near the start or as the last byte.
        for len in [1, 15, 16, 17, 40, 64] {
            let clean = format!("http://a/{}", "x".repeat(len));
            assert!(parse(&format!("<{clean}> <http://a/p> <http://a/o> .")).is_some());
            for bad in [' ', '<', '"', '{', '}', '|', '^', '`', '\\', '\u{1}'] {
                for at in [7, clean.len() - 1] {
                    let mut iri = clean.clone();
                    iri.replace_range(at..at + 1, &bad.to_string());
                    let line = format!("<http://a/s> <http://a/p> <{iri}> .");
                    assert!(parse(&line).is_none(), "{line:?}");
                }
            }
        }
    }
}
