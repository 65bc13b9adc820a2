//! Cutting Turtle and TriG into chunks at statement boundaries, carrying prefix and base directives along.
//!
//! A byte-level scanner tracks just enough of the lexical state — IRIs, short and long strings, comments,
//! bracket depth and local-name escapes — to know when a newline ends a top-level statement (the last
//! significant byte was `.`, or `}` closing a TriG graph block, or the line was a SPARQL-style
//! `PREFIX`/`BASE`). Directives are copied into a header that is prepended to every later chunk, so each
//! chunk parses on its own. If a chunk still fails to parse, the caller re-checks the whole input with the
//! sequential parser, which stays the reference for errors.

/// Lexical state of the scanner.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Normal,
    Comment,
    Iri,
    Short(u8),
    Long(u8),
}

/// Incremental splitter; feed it a growing buffer, take chunks from the front.
pub(crate) struct Splitter {
    state: State,
    depth: i64,
    last_sig: u8,
    /// Offset (in the current buffer) scanned so far.
    scanned: usize,
    /// Start of the current statement in the buffer, once its first significant byte was seen.
    stmt_start: Option<usize>,
    sparql_directive: bool,
    /// Byte after the last statement boundary found.
    last_boundary: usize,
    /// Directives seen so far, in order.
    pub(crate) header: String,
    skip_next: bool,
    trig: bool,
}

impl Splitter {
    pub(crate) fn new(trig: bool) -> Self {
        Splitter {
            state: State::Normal,
            depth: 0,
            last_sig: b'.',
            scanned: 0,
            stmt_start: None,
            sparql_directive: false,
            last_boundary: 0,
            header: String::new(),
            skip_next: false,
            trig,
        }
    }

    /// Scans `buf` from where the last call stopped. Returns the end of the last complete statement seen
    /// (0 if none), so `buf[..end]` can be handed to a parser.
    pub(crate) fn scan(&mut self, buf: &[u8]) -> usize {
        let mut i = self.scanned;
        while i < buf.len() {
            if self.skip_next {
                self.skip_next = false;
                i += 1;
                continue;
            }
            // Inside IRIs, strings and comments only a few bytes matter: jump to the next one with
            // memchr (the reader thread scans all the input while the workers parse).
            let next = match self.state {
                // Inside a statement, runs of name, number and space bytes change nothing but `last_sig`:
                // jump over them with a table (byte-at-a-time matching was most of the reader's time).
                State::Normal if self.stmt_start.is_some() => {
                    let rest = &buf[i..];
                    let run = rest
                        .iter()
                        .position(|&b| SPECIAL[b as usize])
                        .unwrap_or(rest.len());
                    if let Some(&b) = rest[..run]
                        .iter()
                        .rev()
                        .find(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                    {
                        self.last_sig = b;
                    }
                    (run < rest.len()).then_some(run)
                }
                State::Normal => Some(0),
                State::Comment => memchr::memchr(b'\n', &buf[i..]),
                State::Iri => memchr::memchr2(b'>', b'\\', &buf[i..]),
                State::Short(q) => memchr::memchr3(q, b'\\', b'\n', &buf[i..]),
                State::Long(q) => memchr::memchr2(q, b'\\', &buf[i..]),
            };
            let Some(skip) = next else {
                i = buf.len();
                break;
            };
            i += skip;
            let b = buf[i];
            // A quote near the end of the buffer may start or end a long string: wait for more input.
            if matches!(b, b'"' | b'\'')
                && i + 2 >= buf.len()
                && matches!(self.state, State::Normal | State::Long(_))
            {
                break;
            }
            match self.state {
                State::Comment => {
                    if b == b'\n' {
                        self.state = State::Normal;
                        self.newline(buf, i);
                    }
                }
                State::Iri => {
                    if b == b'>' {
                        self.state = State::Normal;
                        self.last_sig = b'>';
                    } else if b == b'\\' {
                        self.skip_next = true;
                    }
                }
                State::Short(q) => {
                    if b == b'\\' {
                        self.skip_next = true;
                    } else if b == q {
                        self.state = State::Normal;
                        self.last_sig = q;
                    } else if b == b'\n' {
                        self.state = State::Normal; // invalid anyway; let the parser report it
                    }
                }
                State::Long(q) => {
                    if b == b'\\' {
                        self.skip_next = true;
                    } else if b == q && buf.get(i + 1) == Some(&q) && buf.get(i + 2) == Some(&q) {
                        self.state = State::Normal;
                        self.last_sig = q;
                        i += 2;
                    }
                }
                State::Normal => match b {
                    b'\n' => self.newline(buf, i),
                    b' ' | b'\t' | b'\r' => {}
                    b'#' => self.state = State::Comment,
                    _ => {
                        if self.stmt_start.is_none() && self.depth == 0 {
                            if i + 7 > buf.len() {
                                // Too little to tell a `PREFIX`/`BASE` line: wait for more input.
                                break;
                            }
                            self.stmt_start = Some(i);
                            let rest = &buf[i..buf.len().min(i + 7)];
                            self.sparql_directive = starts_with_ignore_case(rest, b"PREFIX ")
                                || starts_with_ignore_case(rest, b"PREFIX\t")
                                || starts_with_ignore_case(rest, b"BASE ")
                                || starts_with_ignore_case(rest, b"BASE\t");
                        }
                        match b {
                            b'<' => self.state = State::Iri,
                            b'"' | b'\'' => {
                                if buf.get(i + 1) == Some(&b) && buf.get(i + 2) == Some(&b) {
                                    self.state = State::Long(b);
                                    i += 2;
                                } else {
                                    self.state = State::Short(b);
                                }
                            }
                            b'{' | b'[' | b'(' => self.depth += 1,
                            b'}' | b']' | b')' => self.depth -= 1,
                            b'\\' => self.skip_next = true,
                            _ => {}
                        }
                        self.last_sig = b;
                    }
                },
            }
            i += 1;
        }
        self.scanned = i;
        self.last_boundary
    }

    fn newline(&mut self, buf: &[u8], i: usize) {
        let ends = self.depth == 0
            && self.stmt_start.is_some()
            && (self.last_sig == b'.'
                || (self.trig && self.last_sig == b'}')
                || self.sparql_directive);
        if !ends {
            return;
        }
        if let Some(start) = self.stmt_start.take() {
            let text = &buf[start..=i];
            let is_directive = self.sparql_directive
                || starts_with_ignore_case(text, b"@prefix")
                || starts_with_ignore_case(text, b"@base");
            if is_directive {
                self.header.push_str(&String::from_utf8_lossy(text));
            }
        }
        self.sparql_directive = false;
        self.last_boundary = i + 1;
    }

    /// Forgets `n` bytes taken from the front of the buffer.
    pub(crate) fn consume(&mut self, n: usize) {
        self.scanned -= n;
        self.last_boundary -= n;
        if let Some(s) = &mut self.stmt_start {
            *s -= n;
        }
    }
}

/// Bytes that may change the scanner's state in a statement's normal text.
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let special = b"\n#<\"'{}[]()\\";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = true;
        i += 1;
    }
    t
};

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_between_statements_and_collects_directives() {
        let text = b"@prefix e: <http://e/> .\nPREFIX f: <http://f/>\ne:a e:p \"\"\"x .\ny\"\"\" .\ne:b e:p [ e:q 1.5 ] ; # c .\n e:r e:s .\ne:c e:p e:d";
        let mut s = Splitter::new(false);
        let end = s.scan(text);
        let cut = std::str::from_utf8(&text[..end]).unwrap();
        assert!(cut.ends_with("e:r e:s .\n"), "{cut:?}");
        assert_eq!(
            s.header,
            "@prefix e: <http://e/> .\nPREFIX f: <http://f/>\n"
        );
        s.consume(end);
        assert_eq!(s.scan(&text[end..]), 0);
    }

    #[test]
    fn fed_in_pieces_it_cuts_at_the_same_places() {
        // Long strings, escapes and comments straddling the end of the buffer at every possible offset.
        let text: &[u8] = br#"@prefix e: <http://e/> .
e:a e:p """x .
y""" .
e:b e:p 'q\' .' , """""" .
# c .
e:c e:p <http://x\u0041> .
e:d e:p '''a
b''' .
"#;
        // The ends of the five statements (the comment line is not one).
        let whole = [25, 47, 74, 107, 127];
        assert_eq!(Splitter::new(false).scan(text), text.len());
        for step in 1..8 {
            let mut s = Splitter::new(false);
            let (mut buf, mut base, mut cuts) = (Vec::new(), 0, Vec::new());
            for piece in text.chunks(step) {
                buf.extend_from_slice(piece);
                let end = s.scan(&buf);
                if end > 0 {
                    base += end;
                    cuts.push(base);
                    buf.drain(..end);
                    s.consume(end);
                }
            }
            // Cut points found incrementally are statement ends.
            assert!(
                cuts.iter().all(|c| whole.contains(c)),
                "step {step}: {cuts:?} vs {whole:?}"
            );
            assert_eq!(cuts.last(), Some(&text.len()), "step {step}");
        }
    }

    /// Triples (as strings) of a TriG document, `None` if oxttl rejects it.
    fn trig_quads(text: &str) -> Option<Vec<String>> {
        oxttl::TriGParser::new()
            .with_base_iri("http://example.org/base/")
            .ok()?
            .for_slice(text.as_bytes())
            .map(|q| q.map(|q| q.to_string()))
            .collect::<Result<_, _>>()
            .ok()
    }

    #[test]
    fn w3c_documents_cut_into_chunks_parse_to_the_same_quads() {
        // Every W3C Turtle and TriG document oxttl accepts, fed in pieces of several sizes: parsing each
        // chunk after the directives seen so far gives the document's quads. Blank node labels are kept
        // across chunks by oxttl; anonymous nodes get fresh ids, so only counts compare for those.
        let (mut files, mut cut) = (0, 0);
        let mut paths = crate::bulk::w3c_files("", "ttl");
        paths.extend(crate::bulk::w3c_files("", "trig"));
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Some(whole) = trig_quads(&text) else {
                continue;
            };
            files += 1;
            let named = |quads: &[String]| -> Vec<String> {
                let mut v: Vec<String> = quads
                    .iter()
                    .filter(|q| !q.contains("_:"))
                    .cloned()
                    .collect();
                v.sort();
                v
            };
            for step in [text.len().max(1), 5, 64, 1000] {
                let mut s = Splitter::new(path.extension().is_some_and(|e| e == "trig"));
                let (mut buf, mut got, mut chunks) = (Vec::new(), Vec::new(), 0);
                // As the reader does: a chunk gets the directives of the chunks before it.
                let mut header = String::new();
                let mut take = |s: &mut Splitter, buf: &mut Vec<u8>, end: usize| {
                    let chunk = std::str::from_utf8(&buf[..end]).expect("cut inside a character");
                    let quads = trig_quads(&format!("{header}{chunk}"))
                        .unwrap_or_else(|| panic!("{}: chunk {chunk:?}", path.display()));
                    got.extend(quads);
                    buf.drain(..end);
                    s.consume(end);
                    header.clone_from(&s.header);
                };
                for piece in text.as_bytes().chunks(step) {
                    buf.extend_from_slice(piece);
                    let end = s.scan(&buf);
                    if end > 0 {
                        chunks += 1;
                        take(&mut s, &mut buf, end);
                    }
                }
                let rest = buf.len();
                take(&mut s, &mut buf, rest);
                if chunks > 1 {
                    cut += 1;
                }
                assert_eq!(got.len(), whole.len(), "{} (step {step})", path.display());
                assert_eq!(
                    named(&got),
                    named(&whole),
                    "{} (step {step})",
                    path.display()
                );
            }
        }
        eprintln!(
            "{files} documents; {cut} of the (document, piece size) runs gave several chunks"
        );
        assert!(files > 400 && cut > 200, "{files} documents, {cut} cut");
    }

    #[test]
    fn trig_graph_blocks_are_not_cut() {
        let text = b"<http://g> {\n<http://a> <http://p> <http://b> .\n}\n<http://a> <http://p> <http://c> .\n";
        let mut s = Splitter::new(true);
        let end = s.scan(text);
        assert_eq!(end, text.len());
        let mut s = Splitter::new(true);
        assert_eq!(s.scan(&text[..40]), 0, "inside the block");
    }
}
