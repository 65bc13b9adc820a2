//! Term identifiers and the byte encoding of terms in the dictionary.
//!
//! A [`TermId`] is a `u64` whose top byte is a tag. Terms that need the dictionary get a dense id from the
//! store's counter in the low 56 bits, tagged with their kind, so `isIRI`-style checks and "IRI object only"
//! rules never need a lookup. Small values (canonical booleans, canonical integers that fit in 56 bits,
//! `xsd:string` literals of at most 7 UTF-8 bytes) are stored inline and never touch the dictionary.
//!
//! Inline encoding is only used for *canonical* lexical forms: `"01"^^xsd:integer` is a different RDF term
//! than `"1"^^xsd:integer`, so it goes through the dictionary and round-trips exactly.

use oxrdf::vocab::xsd;
use oxrdf::{BlankNode, Literal, NamedNode, Term, TermRef};

/// Number of bits of a [`TermId`] that carry the counter or the inline payload.
const PAYLOAD_BITS: u32 = 56;
const PAYLOAD_MASK: u64 = (1 << PAYLOAD_BITS) - 1;

/// Tag values (top byte of a [`TermId`]).
mod tag {
    pub const IRI: u8 = 0x00;
    pub const BLANK: u8 = 0x01;
    pub const LITERAL: u8 = 0x02;
    pub const BOOLEAN: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    /// `SHORT_STRING + len` for `len` in `0..=7`.
    pub const SHORT_STRING: u8 = 0x10;
}

/// Largest dictionary counter value; beyond it the store refuses new terms.
pub const MAX_DICTIONARY_ID: u64 = PAYLOAD_MASK;

/// The dense integer identifier of an RDF term inside a store.
///
/// Ids are only meaningful for the store that issued them. Convert with [`crate::Reader::term`] /
/// [`crate::Reader::term_id`] (externalize / internalize).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct TermId(pub u64);

/// The kind of term an id denotes, readable from the id alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TermKind {
    /// An IRI (dictionary).
    Iri,
    /// A blank node (dictionary).
    BlankNode,
    /// A literal stored in the dictionary.
    Literal,
    /// A literal stored inline in the id.
    InlineLiteral,
}

impl TermId {
    /// The id used in graph position for the default graph. The dictionary counter starts at 1, so no term
    /// ever gets this id.
    pub const DEFAULT_GRAPH: TermId = TermId(0);

    /// The id of dictionary entry `counter` for a term of the given dictionary kind.
    pub(crate) fn from_counter(kind: DictKind, counter: u64) -> TermId {
        debug_assert!(counter <= MAX_DICTIONARY_ID);
        TermId((u64::from(kind as u8) << PAYLOAD_BITS) | counter)
    }

    /// The tag byte.
    pub(crate) fn tag(self) -> u8 {
        (self.0 >> PAYLOAD_BITS) as u8
    }

    /// The payload: a dictionary id's counter.
    pub(crate) fn counter(self) -> u64 {
        self.0 & PAYLOAD_MASK
    }

    /// What kind of term this id denotes.
    pub fn kind(self) -> TermKind {
        match self.tag() {
            tag::IRI => TermKind::Iri,
            tag::BLANK => TermKind::BlankNode,
            tag::LITERAL => TermKind::Literal,
            _ => TermKind::InlineLiteral,
        }
    }

    /// Whether the term lives in the dictionary (as opposed to inline).
    pub fn is_dictionary(self) -> bool {
        self.tag() <= tag::LITERAL
    }

    /// Whether this id denotes an IRI.
    pub fn is_iri(self) -> bool {
        self.tag() == tag::IRI
    }

    /// Big-endian bytes, as used in index keys.
    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads an id from 8 big-endian bytes.
    pub fn from_be_slice(bytes: &[u8]) -> Option<TermId> {
        Some(TermId(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)))
    }

    /// The inline encoding of `term`, if it has one.
    pub fn inline(term: TermRef<'_>) -> Option<TermId> {
        let TermRef::Literal(lit) = term else {
            return None;
        };
        if lit.language().is_some() {
            return None;
        }
        let value = lit.value();
        let datatype = lit.datatype();
        if datatype == xsd::STRING {
            if value.len() <= 7 {
                let mut payload = 0u64;
                for &b in value.as_bytes() {
                    payload = (payload << 8) | u64::from(b);
                }
                let tag = tag::SHORT_STRING + value.len() as u8;
                return Some(TermId((u64::from(tag) << PAYLOAD_BITS) | payload));
            }
        } else if datatype == xsd::BOOLEAN {
            let bit = match value {
                "true" => 1,
                "false" => 0,
                _ => return None,
            };
            return Some(TermId((u64::from(tag::BOOLEAN) << PAYLOAD_BITS) | bit));
        } else if datatype == xsd::INTEGER {
            let v = canonical_small_integer(value)?;
            return Some(TermId(
                (u64::from(tag::INTEGER) << PAYLOAD_BITS) | (v as u64 & PAYLOAD_MASK),
            ));
        }
        None
    }

    /// The term of an inline id; `None` for dictionary ids.
    pub fn decode_inline(self) -> Option<Term> {
        let payload = self.0 & PAYLOAD_MASK;
        match self.tag() {
            tag::BOOLEAN => Some(Literal::from(payload == 1).into()),
            tag::INTEGER => {
                // Sign-extend the 56-bit payload.
                let v = ((payload << (64 - PAYLOAD_BITS)) as i64) >> (64 - PAYLOAD_BITS);
                Some(Literal::new_typed_literal(v.to_string(), xsd::INTEGER).into())
            }
            t if (tag::SHORT_STRING..=tag::SHORT_STRING + 7).contains(&t) => {
                let len = usize::from(t - tag::SHORT_STRING);
                let bytes = payload.to_be_bytes();
                let s = std::str::from_utf8(&bytes[8 - len..]).ok()?;
                Some(Literal::new_simple_literal(s).into())
            }
            _ => None,
        }
    }
}

/// Parses `value` if it is the canonical lexical form of an integer that fits in 56 signed bits
/// (`-?[1-9][0-9]*` or `0`, at most 16 digits), without allocating.
fn canonical_small_integer(value: &str) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes.len() > 16 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes[0] == b'0' && (bytes.len() > 1 || digits.len() != value.len()) {
        return None; // leading zero or "-0": not canonical
    }
    value.parse().ok()
}

/// The dictionary kinds, whose discriminants are the id tags.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum DictKind {
    Iri = tag::IRI,
    Blank = tag::BLANK,
    Literal = tag::LITERAL,
}

/// Byte encoding of dictionary terms: the value of `id2term` and the key of `term2id`.
///
/// Layout (first byte is the kind):
/// - `I` IRI bytes
/// - `B` blank node label
/// - `S` value of an `xsd:string` literal
/// - `L` u32 BE language length, language, value
/// - `T` u32 BE datatype length, datatype IRI, value
pub(crate) fn encode_term(term: TermRef<'_>, buf: &mut Vec<u8>) -> DictKind {
    buf.clear();
    let Some(parts) = EncodingParts::of(term) else {
        return DictKind::Literal;
    };
    buf.push(parts.kind_byte);
    if let Some(meta) = parts.meta {
        buf.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        buf.extend_from_slice(meta.as_bytes());
    }
    buf.extend_from_slice(parts.value.as_bytes());
    parts.kind
}

/// Whether [`encode_term`] would write exactly `encoded` for `term`, without writing it: the bulk encoder
/// recognizes a repeat of the previous term at a position (a subject over consecutive lines) this way,
/// saving a copy of the term.
pub(crate) fn encodes_to(term: TermRef<'_>, encoded: &[u8]) -> bool {
    let Some(parts) = EncodingParts::of(term) else {
        return false;
    };
    let Some((&kind_byte, mut rest)) = encoded.split_first() else {
        return false;
    };
    if kind_byte != parts.kind_byte {
        return false;
    }
    if let Some(meta) = parts.meta {
        let Some(after) = rest
            .strip_prefix(&(meta.len() as u32).to_be_bytes()[..])
            .and_then(|r| r.strip_prefix(meta.as_bytes()))
        else {
            return false;
        };
        rest = after;
    }
    rest == parts.value.as_bytes()
}

/// The pieces of a term's encoding (see [`encode_term`]), shared by writing and comparing.
struct EncodingParts<'a> {
    kind: DictKind,
    kind_byte: u8,
    /// Language tag or datatype IRI, written after its length.
    meta: Option<&'a str>,
    value: &'a str,
}

impl<'a> EncodingParts<'a> {
    /// `None` for a term kind the dictionary does not hold.
    fn of(term: TermRef<'a>) -> Option<Self> {
        let (kind, kind_byte, meta, value) = match term {
            TermRef::NamedNode(n) => (DictKind::Iri, b'I', None, n.as_str()),
            TermRef::BlankNode(b) => (DictKind::Blank, b'B', None, b.as_str()),
            TermRef::Literal(l) => {
                let (kind_byte, meta) = if let Some(lang) = l.language() {
                    (b'L', Some(lang))
                } else if l.datatype() == xsd::STRING {
                    (b'S', None)
                } else {
                    (b'T', Some(l.datatype().as_str()))
                };
                (DictKind::Literal, kind_byte, meta, l.value())
            }
            #[allow(unreachable_patterns)]
            _ => return None,
        };
        Some(EncodingParts {
            kind,
            kind_byte,
            meta,
            value,
        })
    }
}

/// Longest encoded literal that is its own `term2id` key. Longer ones are keyed by a hash: a long literal's
/// bytes were stored, sorted and compressed twice (in `id2term` and as a `term2id` key), which was 45% of a
/// BSBM bulk load's dictionary work and a third of its bytes on disk.
pub(crate) const LITERAL_KEY_MAX: usize = 32;
/// Longest encoded IRI or blank node that is its own `term2id` key. IRIs share long prefixes, which
/// SST blocks store once, so hashing them costs disk (LUBM-10 with IRIs over 32 bytes hashed: 36 -> 41 MB);
/// only unusually long ones are hashed.
pub(crate) const IRI_KEY_MAX: usize = 256;

/// The `term2id` key of an encoded term (see [`term_key`]).
#[derive(Clone, Copy)]
pub(crate) enum TermKey<'a> {
    /// The encoded term itself.
    Whole(&'a [u8]),
    /// The kind byte in lower case, then the 128-bit XXH3 hash of the encoded term, big-endian.
    Hashed([u8; 17]),
}

impl AsRef<[u8]> for TermKey<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            TermKey::Whole(b) => b,
            TermKey::Hashed(h) => h,
        }
    }
}

/// The `term2id` key of an encoded term: the term itself up to [`LITERAL_KEY_MAX`] bytes for a literal or
/// [`IRI_KEY_MAX`] for an IRI or blank node, else its kind byte in lower case (no whole key starts with
/// one, so the two never meet) and its 128-bit hash. Like Oxigraph's string hashes, a collision is assumed
/// never to happen: among 10^12 long terms its probability is below 10^-14.
pub(crate) fn term_key(encoded: &[u8]) -> TermKey<'_> {
    let Some(&kind) = encoded.first() else {
        return TermKey::Whole(encoded);
    };
    let max = if matches!(kind, b'I' | b'B') {
        IRI_KEY_MAX
    } else {
        LITERAL_KEY_MAX
    };
    if encoded.len() <= max {
        return TermKey::Whole(encoded);
    }
    let mut key = [0u8; 17];
    key[0] = kind.to_ascii_lowercase();
    key[1..].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(encoded).to_be_bytes());
    TermKey::Hashed(key)
}

/// Decodes [`encode_term`]'s output. `None` means the bytes are corrupt.
pub(crate) fn decode_term(bytes: &[u8]) -> Option<Term> {
    let (&kind, rest) = bytes.split_first()?;
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    Some(match kind {
        b'I' => NamedNode::new_unchecked(text(rest)?).into(),
        b'B' => BlankNode::new_unchecked(text(rest)?).into(),
        b'S' => Literal::new_simple_literal(text(rest)?).into(),
        b'L' => {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let lang = text(rest.get(4..4 + len)?)?;
            let value = text(rest.get(4 + len..)?)?;
            Literal::new_language_tagged_literal_unchecked(value, lang).into()
        }
        b'T' => {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let dt = text(rest.get(4..4 + len)?)?;
            let value = text(rest.get(4 + len..)?)?;
            Literal::new_typed_literal(value, NamedNode::new_unchecked(dt)).into()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline_roundtrip(t: Term) {
        let id = TermId::inline(t.as_ref()).expect("inline");
        assert_eq!(id.decode_inline(), Some(t));
        assert_eq!(id.kind(), TermKind::InlineLiteral);
    }

    #[test]
    fn encodes_to_agrees_with_encode_term() {
        let terms: Vec<oxrdf::Term> = vec![
            NamedNode::new("http://e/a").unwrap().into(),
            NamedNode::new("http://e/ab").unwrap().into(),
            BlankNode::new("a").unwrap().into(),
            BlankNode::new("http").unwrap().into(),
            Literal::new_simple_literal("http://e/a").into(),
            Literal::new_simple_literal("").into(),
            Literal::new_language_tagged_literal("chat", "fr")
                .unwrap()
                .into(),
            Literal::new_language_tagged_literal("chat", "en")
                .unwrap()
                .into(),
            Literal::new_typed_literal("1", xsd::INTEGER).into(),
            Literal::new_typed_literal("1", xsd::DECIMAL).into(),
            Literal::new_typed_literal("http://e/a", NamedNode::new("http://e/a").unwrap()).into(),
        ];
        let mut buf = Vec::new();
        for a in &terms {
            encode_term(a.as_ref(), &mut buf);
            for b in &terms {
                assert_eq!(encodes_to(b.as_ref(), &buf), a == b, "{a} vs {b}");
            }
            assert!(!encodes_to(a.as_ref(), &buf[..buf.len() - 1]) || buf.len() == 1);
        }
    }

    #[test]
    fn term_keys_hash_long_literals_and_very_long_iris_only() {
        let encoded = |t: TermRef<'_>| {
            let mut buf = Vec::new();
            encode_term(t, &mut buf);
            buf
        };
        let short_iri =
            NamedNode::new("http://example.com/a-namespace/with-a-longish-local-name").unwrap();
        let long_iri = NamedNode::new(format!("http://example.com/{}", "x".repeat(300))).unwrap();
        let short_literal = Literal::new_simple_literal("thirty-one bytes of literal....");
        let long_literal =
            Literal::new_language_tagged_literal("a literal of more than 32 bytes", "en").unwrap();
        let blank = BlankNode::new("b".repeat(300)).unwrap();
        for (term, hashed) in [
            (TermRef::from(short_iri.as_ref()), false),
            (long_iri.as_ref().into(), true),
            (short_literal.as_ref().into(), false),
            (long_literal.as_ref().into(), true),
            (blank.as_ref().into(), true),
        ] {
            let bytes = encoded(term);
            let key = term_key(&bytes);
            assert_eq!(matches!(key, TermKey::Hashed(_)), hashed, "{term}");
            if hashed {
                assert_eq!(key.as_ref()[0], bytes[0].to_ascii_lowercase(), "{term}");
                // A hashed key is its own key (what makes the format-1 upgrade restartable).
                assert_eq!(term_key(key.as_ref()).as_ref(), key.as_ref());
            } else {
                assert_eq!(key.as_ref(), bytes.as_slice());
            }
        }
        let other = encoded(
            Literal::new_language_tagged_literal("a literal of more than 32 bytes", "de")
                .unwrap()
                .as_ref()
                .into(),
        );
        assert_ne!(
            term_key(&other).as_ref(),
            term_key(&encoded(long_literal.as_ref().into())).as_ref()
        );
    }

    #[test]
    fn inline_values_roundtrip() {
        inline_roundtrip(Literal::from(true).into());
        inline_roundtrip(Literal::from(false).into());
        for v in [
            0i64,
            1,
            -1,
            42,
            -36028797018963968 / 4,
            9999999999999999,
            -9999999999999999,
        ] {
            inline_roundtrip(Literal::new_typed_literal(v.to_string(), xsd::INTEGER).into());
        }
        for s in ["", "a", "héllo", "1234567", "\0"] {
            inline_roundtrip(Literal::new_simple_literal(s).into());
        }
    }

    #[test]
    fn non_canonical_values_are_not_inline() {
        for v in ["01", "-0", "+1", "1.0", "", "12345678901234567", " 1"] {
            let t = Literal::new_typed_literal(v, xsd::INTEGER);
            assert!(TermId::inline(t.as_ref().into()).is_none(), "{v}");
        }
        assert!(TermId::inline(
            Literal::new_typed_literal("1", xsd::BOOLEAN)
                .as_ref()
                .into()
        )
        .is_none());
        assert!(TermId::inline(Literal::new_simple_literal("12345678").as_ref().into()).is_none());
    }

    #[test]
    fn dictionary_encoding_roundtrips() {
        let terms: Vec<Term> = vec![
            NamedNode::new_unchecked("http://example.com/é").into(),
            BlankNode::new_unchecked("b0").into(),
            Literal::new_simple_literal("a long string value").into(),
            Literal::new_language_tagged_literal_unchecked("chat", "fr-be").into(),
            Literal::new_typed_literal("NaN", xsd::DOUBLE).into(),
            Literal::new_typed_literal("-0.0E0", xsd::DOUBLE).into(),
        ];
        let mut buf = Vec::new();
        for t in terms {
            encode_term(t.as_ref(), &mut buf);
            assert_eq!(decode_term(&buf), Some(t));
        }
    }
}
