//! Column families and key layout.
//!
//! Quads are stored as keys only (empty values) in nine permutation indexes, in the scheme Oxigraph uses:
//! `SPO`/`POS`/`OSP` for the default graph (24-byte keys) and `GSPO`/`GPOS`/`GOSP` + `SPOG`/`POSG`/`OSPG`
//! for named graphs (32-byte keys). Every combination of bound positions, for the default graph, one named
//! graph or all named graphs, is then one prefix scan. Keys are fixed-width big-endian [`TermId`]s, so byte
//! order is id order.

use crate::term::TermId;

/// Column family holding `id -> encoded term`.
pub const CF_ID2TERM: &str = "id2term";
/// Column family holding `encoded term -> id`.
pub const CF_TERM2ID: &str = "term2id";
/// Column family listing named graphs (key: graph id), including empty ones.
pub const CF_GRAPHS: &str = "graphs";
/// Column family of roaring bitmaps, maintained by the bitmap merge operator.
pub const CF_BITMAPS: &str = "bitmaps";
/// Column family of `i64` counters, maintained by the add merge operator.
pub const CF_STATS: &str = "stats";
/// Column family of single-value metadata (format version, id counter, data version).
pub const CF_META: &str = "meta";

/// Metadata key of the on-disk format version (`u32` BE).
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Metadata key of the next dictionary counter value (`u64` BE).
pub const META_NEXT_ID: &[u8] = b"next_id";
/// Metadata key of the data version, incremented by every commit that changes something (`u64` BE).
pub const META_DATA_VERSION: &[u8] = b"data_version";

/// A quad of term ids. `g` is [`TermId::DEFAULT_GRAPH`] for the default graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct IdQuad {
    /// Subject.
    pub s: TermId,
    /// Predicate.
    pub p: TermId,
    /// Object.
    pub o: TermId,
    /// Graph name, or [`TermId::DEFAULT_GRAPH`].
    pub g: TermId,
}

impl IdQuad {
    /// Builds a quad.
    pub fn new(s: TermId, p: TermId, o: TermId, g: TermId) -> Self {
        IdQuad { s, p, o, g }
    }

    /// Whether the quad is in the default graph.
    pub fn in_default_graph(&self) -> bool {
        self.g == TermId::DEFAULT_GRAPH
    }

    fn get(&self, pos: Pos) -> TermId {
        match pos {
            Pos::S => self.s,
            Pos::P => self.p,
            Pos::O => self.o,
            Pos::G => self.g,
        }
    }

    fn set(&mut self, pos: Pos, id: TermId) {
        match pos {
            Pos::S => self.s = id,
            Pos::P => self.p = id,
            Pos::O => self.o = id,
            Pos::G => self.g = id,
        }
    }
}

#[derive(Clone, Copy)]
enum Pos {
    S,
    P,
    O,
    G,
}

/// A permutation index. Its column family name is [`Index::cf_name`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Index {
    /// Default graph, subject-predicate-object.
    Spo,
    /// Default graph, predicate-object-subject.
    Pos,
    /// Default graph, object-subject-predicate.
    Osp,
    /// Named graphs, graph first.
    Gspo,
    /// Named graphs, graph first.
    Gpos,
    /// Named graphs, graph first.
    Gosp,
    /// Named graphs, graph last.
    Spog,
    /// Named graphs, graph last.
    Posg,
    /// Named graphs, graph last.
    Ospg,
}

impl Index {
    /// All indexes.
    pub const ALL: [Index; 9] = [
        Index::Spo,
        Index::Pos,
        Index::Osp,
        Index::Gspo,
        Index::Gpos,
        Index::Gosp,
        Index::Spog,
        Index::Posg,
        Index::Ospg,
    ];
    /// Indexes holding default-graph quads.
    pub const DEFAULT: [Index; 3] = [Index::Spo, Index::Pos, Index::Osp];
    /// Indexes holding named-graph quads.
    pub const NAMED: [Index; 6] = [
        Index::Gspo,
        Index::Gpos,
        Index::Gosp,
        Index::Spog,
        Index::Posg,
        Index::Ospg,
    ];

    /// Column family name.
    pub fn cf_name(self) -> &'static str {
        match self {
            Index::Spo => "spo",
            Index::Pos => "pos",
            Index::Osp => "osp",
            Index::Gspo => "gspo",
            Index::Gpos => "gpos",
            Index::Gosp => "gosp",
            Index::Spog => "spog",
            Index::Posg => "posg",
            Index::Ospg => "ospg",
        }
    }

    fn order(self) -> &'static [Pos] {
        use Pos::*;
        match self {
            Index::Spo => &[S, P, O],
            Index::Pos => &[P, O, S],
            Index::Osp => &[O, S, P],
            Index::Gspo => &[G, S, P, O],
            Index::Gpos => &[G, P, O, S],
            Index::Gosp => &[G, O, S, P],
            Index::Spog => &[S, P, O, G],
            Index::Posg => &[P, O, S, G],
            Index::Ospg => &[O, S, P, G],
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        self.order().len() * 8
    }

    /// Whether this index holds named-graph quads.
    pub fn is_named(self) -> bool {
        self.order().len() == 4
    }

    /// Writes the key of `q` into `buf` and returns it.
    pub fn encode<'a>(self, q: &IdQuad, buf: &'a mut [u8; 32]) -> &'a [u8] {
        for (i, &pos) in self.order().iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&q.get(pos).to_be_bytes());
        }
        &buf[..self.key_len()]
    }

    /// Decodes a key of this index. `None` if the key has the wrong length (corruption).
    pub fn decode(self, key: &[u8]) -> Option<IdQuad> {
        if key.len() != self.key_len() {
            return None;
        }
        let mut q = IdQuad::default();
        for (i, &pos) in self.order().iter().enumerate() {
            q.set(pos, TermId::from_be_slice(&key[i * 8..])?);
        }
        Some(q)
    }

    /// The index to scan and the key prefix for a pattern. `g` is `None` for "any named graph".
    ///
    /// For the default graph pass `Some(TermId::DEFAULT_GRAPH)`.
    pub fn for_pattern(
        s: Option<TermId>,
        p: Option<TermId>,
        o: Option<TermId>,
        g: Option<TermId>,
    ) -> (Index, Vec<u8>) {
        let (default, graph_first, graph_last) = match (s.is_some(), p.is_some(), o.is_some()) {
            (true, _, false) | (true, true, true) | (false, false, false) => {
                (Index::Spo, Index::Gspo, Index::Spog)
            }
            (false, true, _) => (Index::Pos, Index::Gpos, Index::Posg),
            (_, false, true) => (Index::Osp, Index::Gosp, Index::Ospg),
        };
        let index = match g {
            Some(TermId::DEFAULT_GRAPH) => default,
            Some(_) => graph_first,
            None => graph_last,
        };
        let pattern = [s, p, o, g.filter(|_| index != graph_last)];
        let mut prefix = Vec::with_capacity(32);
        for &pos in index.order() {
            let bound = match pos {
                Pos::S => pattern[0],
                Pos::P => pattern[1],
                Pos::O => pattern[2],
                Pos::G => pattern[3],
            };
            match bound {
                Some(id) => prefix.extend_from_slice(&id.to_be_bytes()),
                None => break,
            }
        }
        (index, prefix)
    }
}

/// Keys of the bitmap column family.
pub mod bitmap_key {
    use super::TermId;

    /// Subjects having predicate `p` in graph `g`.
    pub fn predicate(g: TermId, p: TermId) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[0] = b'p';
        k[1..9].copy_from_slice(&g.to_be_bytes());
        k[9..17].copy_from_slice(&p.to_be_bytes());
        k
    }

    /// Subjects having predicate `p` with object `o` in graph `g`.
    pub fn predicate_object(g: TermId, p: TermId, o: TermId) -> [u8; 25] {
        let mut k = [0u8; 25];
        k[0] = b'o';
        k[1..9].copy_from_slice(&g.to_be_bytes());
        k[9..17].copy_from_slice(&p.to_be_bytes());
        k[17..25].copy_from_slice(&o.to_be_bytes());
        k
    }

    /// Subjects of graph `g`.
    pub fn graph(g: TermId) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'g';
        k[1..9].copy_from_slice(&g.to_be_bytes());
        k
    }
}

/// Keys of the statistics column family (all values are `i64` counters).
pub mod stat_key {
    use super::TermId;

    /// Total number of quads in all graphs.
    pub const QUADS: &[u8] = b"q";
    /// Number of named graphs (including empty ones).
    pub const NAMED_GRAPHS: &[u8] = b"n";
    /// Number of dictionary entries.
    pub const TERMS: &[u8] = b"t";

    /// Quads in graph `g`.
    pub fn graph_quads(g: TermId) -> [u8; 9] {
        let mut k = [0u8; 9];
        k[0] = b'G';
        k[1..9].copy_from_slice(&g.to_be_bytes());
        k
    }

    /// Quads with predicate `p` in graph `g`.
    pub fn predicate_quads(g: TermId, p: TermId) -> [u8; 17] {
        pair(b'P', g, p)
    }

    /// Distinct objects of predicate `p` in graph `g`.
    pub fn predicate_objects(g: TermId, p: TermId) -> [u8; 17] {
        pair(b'O', g, p)
    }

    fn pair(tag: u8, g: TermId, p: TermId) -> [u8; 17] {
        let mut k = [0u8; 17];
        k[0] = tag;
        k[1..9].copy_from_slice(&g.to_be_bytes());
        k[9..17].copy_from_slice(&p.to_be_bytes());
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_roundtrip_in_every_index() {
        let q = IdQuad::new(TermId(1), TermId(2), TermId(3), TermId(4));
        let mut buf = [0u8; 32];
        for index in Index::ALL {
            let mut q = q;
            if !index.is_named() {
                q.g = TermId::DEFAULT_GRAPH;
            }
            let key = index.encode(&q, &mut buf).to_vec();
            assert_eq!(index.decode(&key), Some(q), "{index:?}");
        }
    }

    #[test]
    fn every_pattern_is_a_prefix_scan() {
        let id = |b: bool, v: u64| b.then_some(TermId(v));
        for mask in 0..8u8 {
            let (s, p, o) = (
                id(mask & 1 != 0, 1),
                id(mask & 2 != 0, 2),
                id(mask & 4 != 0, 3),
            );
            let bound = [s, p, o].iter().filter(|x| x.is_some()).count();
            let (i, prefix) = Index::for_pattern(s, p, o, Some(TermId::DEFAULT_GRAPH));
            assert!(!i.is_named());
            assert_eq!(prefix.len(), bound * 8, "default {mask}");
            let (i, prefix) = Index::for_pattern(s, p, o, Some(TermId(9)));
            assert!(i.is_named());
            assert_eq!(prefix.len(), (bound + 1) * 8, "named {mask}");
            let (_, prefix) = Index::for_pattern(s, p, o, None);
            assert_eq!(prefix.len(), bound * 8, "any {mask}");
        }
    }
}
