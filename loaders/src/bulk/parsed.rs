//! What the fast Turtle and RDF/XML parsers hold for one chunk: compact triples whose terms are spans of
//! the chunk or of a reused arena (for text the chunk does not hold as is: expanded prefixed names,
//! unescaped strings, salted blank node labels).

use oxrdf::{BlankNodeRef, LiteralRef, NamedNodeRef, NamedOrBlankNodeRef, TermRef, TripleRef};

/// Where the text of a term is: a range of the chunk, or of the arena when `ARENA` is set in `start`.
/// Eight bytes, so that a chunk's triples stay small (they are all held until the chunk is parsed).
#[derive(Clone, Copy)]
pub(super) struct Text {
    start: u32,
    end: u32,
}

/// The flag bit of arena spans: chunks and arenas must stay below it.
const ARENA: u32 = 1 << 31;

impl Text {
    pub(super) fn chunk(start: usize, end: usize) -> Text {
        Text {
            start: start as u32,
            end: end as u32,
        }
    }

    pub(super) fn arena(start: usize, end: usize) -> Text {
        Text {
            start: start as u32 | ARENA,
            end: end as u32,
        }
    }

    /// The text this span denotes, in `chunk` or in `arena`.
    pub(super) fn resolve<'a>(self, chunk: &'a str, arena: &'a str) -> &'a str {
        let range = (self.start & !ARENA) as usize..self.end as usize;
        if self.start & ARENA != 0 {
            &arena[range]
        } else {
            &chunk[range]
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Term {
    Iri(Text),
    /// The salted label.
    Blank(Text),
    Simple(Text),
    Lang(Text, Text),
    Typed(Text, Text),
}

/// The triples a fast parser read from one chunk, and the arena their spans may point into. Both are
/// reused from chunk to chunk.
#[derive(Default)]
pub(crate) struct Parsed {
    pub(super) arena: String,
    /// Subject (an IRI or a blank node), predicate IRI, object.
    pub(super) triples: Vec<(Term, Text, Term)>,
}

impl Parsed {
    /// Clears the last chunk's triples; false when `chunk` is too large for spans.
    pub(super) fn start(&mut self, chunk: &str) -> bool {
        self.arena.clear();
        self.triples.clear();
        chunk.len() < ARENA as usize
    }

    /// Ends a chunk: keeps its triples if it parsed (`ok`) and its arena offsets stay below the span flag
    /// bit (a chunk of gigabyte literals goes to the reference parser). Returns whether they were kept.
    pub(super) fn finish(&mut self, ok: bool) -> bool {
        let ok = ok && self.arena.len() < ARENA as usize;
        if !ok {
            self.triples.clear();
        }
        ok
    }

    /// Number of triples.
    pub(crate) fn len(&self) -> usize {
        self.triples.len()
    }

    /// The `i`-th triple, whose spans point into `chunk` (the chunk that was parsed).
    pub(crate) fn triple<'a>(&'a self, chunk: &'a str, i: usize) -> TripleRef<'a> {
        let text = |t: Text| t.resolve(chunk, &self.arena);
        let term = |t: Term| -> TermRef<'a> {
            match t {
                Term::Iri(i) => NamedNodeRef::new_unchecked(text(i)).into(),
                Term::Blank(b) => BlankNodeRef::new_unchecked(text(b)).into(),
                Term::Simple(v) => LiteralRef::new_simple_literal(text(v)).into(),
                Term::Lang(v, l) => {
                    LiteralRef::new_language_tagged_literal_unchecked(text(v), text(l)).into()
                }
                Term::Typed(v, d) => {
                    LiteralRef::new_typed_literal(text(v), NamedNodeRef::new_unchecked(text(d)))
                        .into()
                }
            }
        };
        let (s, p, o) = self.triples[i];
        let subject: NamedOrBlankNodeRef<'a> = match term(s) {
            TermRef::NamedNode(n) => n.into(),
            TermRef::BlankNode(b) => b.into(),
            // Subjects are only ever parsed as IRIs or blank nodes.
            TermRef::Literal(_) => NamedNodeRef::new_unchecked("").into(),
        };
        TripleRef::new(subject, NamedNodeRef::new_unchecked(text(p)), term(o))
    }
}
