//! Packed sort keys for the in-memory passes of a bulk load.
//!
//! Sorting 32-byte id quads by comparison was the largest cost of a pass. Instead, every term id is replaced
//! by its rank among the distinct ids seen in its position (graph, subject, predicate, object), which keeps
//! id order, and the four ranks are packed into one `u64` when their widths add up to at most 64 bits
//! (LUBM-10: 0 + 18 + 5 + 19 bits). A pass then sorts 8-byte integers and maps ranks back to ids while it
//! writes. Ranks are computed from the dictionary counter, which is dense, so building them needs no hash
//! map and no sort except for the (few) inline literal ids.

use crate::keys::IdQuad;
use crate::term::{DictKind, TermId};

use super::runs::Order;

/// Field numbering inside a packed key, most significant first.
const G: usize = 0;
const S: usize = 1;
const P: usize = 2;
const O: usize = 3;

/// The dictionary kinds, in id order (tag order).
const KINDS: [DictKind; 3] = [DictKind::Iri, DictKind::Blank, DictKind::Literal];

/// The quads of a load as packed `(g, s, p, o)` rank keys, unsorted, with the tables to unpack them.
pub(crate) struct Packed {
    keys: Vec<u64>,
    /// Id by rank, per field.
    ids: [Vec<TermId>; 4],
    bits: [u32; 4],
}

/// Which positions each dictionary counter occurs in, and the inline ids per position: what ranks are
/// built from. Kept up to date by the collector as batches arrive (`BulkLoad::add`), so that packing, a
/// serial step between parsing and the passes, does not read every quad once more for it (LUBM-10:
/// 15–17 ms).
#[derive(Default)]
pub(crate) struct Marks {
    /// Per dictionary counter: its tag in the high nibble and, in the low one, the fields it occurs in.
    marks: Vec<u8>,
    inline: [Vec<u64>; 4],
}

impl Marks {
    /// Counters from this on are not marked: ranks are `u32`s, so [`Packed::build`] would refuse them.
    const MAX_COUNTER: u64 = 1 << 32;

    /// Marks the terms of `quads`; `None` (and the marks are to be dropped) past [`Marks::MAX_COUNTER`].
    pub(crate) fn add(&mut self, quads: &[IdQuad]) -> Option<()> {
        for q in quads {
            for (f, id) in [q.g, q.s, q.p, q.o].into_iter().enumerate() {
                if id.is_dictionary() {
                    let counter = id.counter();
                    if counter >= Self::MAX_COUNTER {
                        return None;
                    }
                    let c = usize::try_from(counter).ok()?;
                    if c >= self.marks.len() {
                        // Counters arrive roughly in order: grow ahead, geometrically.
                        self.marks.resize((c + 1).max(self.marks.len() * 2), 0);
                    }
                    self.marks[c] |= (1 << f) | (id.tag() << 4);
                } else {
                    self.inline[f].push(id.0);
                }
            }
        }
        Some(())
    }
}

/// Top bit of a [`Triples`] object slot: the rest is an index into its inline objects.
const INLINE_OBJECT: u32 = 1 << 31;

/// The quads of a load while every one is in the default graph with dictionary subjects and predicates
/// (counters below 2^31): subject, predicate and object as `u32` dictionary counters, 12 bytes a quad
/// instead of the 32 of an [`IdQuad`]. An object that is not a dictionary term (an inline literal) is kept
/// aside, its slot holding [`INLINE_OBJECT`] and its index there. The kinds come back from the [`Marks`],
/// which hold each counter's tag. Every buffered byte is memory the kernel zeroes first, and on this
/// machine zeroing fresh pages was a tenth of a load: LUBM-10 buffers 15 MB instead of 40 MB.
#[derive(Default)]
pub(crate) struct Triples {
    spo: Vec<[u32; 3]>,
    inline_objects: Vec<TermId>,
}

impl Triples {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Triples {
            spo: Vec::with_capacity(n),
            inline_objects: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.spo.len()
    }

    /// Bytes reserved.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.spo.capacity() * 12 + self.inline_objects.capacity() * 8
    }

    /// Appends `quads` if every one fits (see [`Triples`]); otherwise adds none and returns false.
    pub(crate) fn try_extend(&mut self, quads: &[IdQuad]) -> bool {
        let counter = |id: TermId| {
            (id.is_dictionary() && id.counter() < u64::from(INLINE_OBJECT))
                .then(|| id.counter() as u32)
        };
        let fits = quads.iter().all(|q| {
            q.in_default_graph()
                && counter(q.s).is_some()
                && counter(q.p).is_some()
                && (counter(q.o).is_some() || !q.o.is_dictionary())
        });
        if !fits || self.inline_objects.len() + quads.len() >= INLINE_OBJECT as usize {
            return false;
        }
        self.spo.extend(quads.iter().map(|q| {
            let o = counter(q.o).unwrap_or_else(|| {
                self.inline_objects.push(q.o);
                INLINE_OBJECT | (self.inline_objects.len() - 1) as u32
            });
            [q.s.counter() as u32, q.p.counter() as u32, o]
        }));
        true
    }

    /// Appends the quads to `out` as id quads; `marks` are those of at least these quads (they give each
    /// counter's kind). `None` if a counter is not marked.
    pub(crate) fn expand(&self, marks: &Marks, out: &mut Vec<IdQuad>) -> Option<()> {
        let id = |c: u32| {
            let tag = marks.marks.get(c as usize)? >> 4;
            let kind = KINDS.into_iter().find(|&k| k as u8 == tag)?;
            Some(TermId::from_counter(kind, u64::from(c)))
        };
        out.reserve(self.spo.len());
        for &[s, p, o] in &self.spo {
            let o = if o & INLINE_OBJECT == 0 {
                id(o)?
            } else {
                *self.inline_objects.get((o & !INLINE_OBJECT) as usize)?
            };
            out.push(IdQuad::new(id(s)?, id(p)?, o, TermId::DEFAULT_GRAPH));
        }
        Some(())
    }
}

/// What [`Packed::build`] packs.
pub(crate) enum Source<'a> {
    Quads(&'a [IdQuad]),
    Triples(&'a Triples),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Quads(q) => q.len(),
            Source::Triples(t) => t.len(),
        }
    }
}

impl Packed {
    /// Packs the quads of `source`, or returns `None` when the ranks need more than 64 bits or the
    /// dictionary counter range (`next_counter`) is too large for rank tables (a small load into a large
    /// store). `marks`, if given, are those of exactly these quads (required for [`Source::Triples`]);
    /// otherwise they are computed here. Given marks stay usable by [`Triples::expand`] whatever the outcome.
    pub(crate) fn build(
        source: Source<'_>,
        next_counter: u64,
        marks: Option<&mut Marks>,
    ) -> Option<Packed> {
        let domain = usize::try_from(next_counter).ok()?;
        if domain > source.len() + (1 << 20) {
            return None;
        }
        let mut computed = Marks::default();
        let marks = match (marks, &source) {
            (Some(marks), _) => marks,
            (None, Source::Quads(quads)) => {
                computed.add(quads)?;
                &mut computed
            }
            (None, Source::Triples(_)) => return None,
        };
        // Marks grow ahead of the last counter: only zeros may lie past it (a mark there is an id this
        // load never allocated, refused like any other).
        if marks
            .marks
            .get(domain..)
            .is_some_and(|past| past.iter().any(|&m| m != 0))
        {
            return None;
        }
        marks.marks.resize(domain, 0);
        let Marks { marks, inline } = marks;
        for v in inline.iter_mut() {
            v.sort_unstable();
            v.dedup();
        }
        // Ranks in id order: tag first (IRI < blank node < literal < inline), then counter.
        let mut ranks: [Vec<u32>; 4] = Default::default();
        let mut ids: [Vec<TermId>; 4] = Default::default();
        let present = marks.iter().fold(0u8, |a, m| a | m) & 0xf;
        for (f, r) in ranks.iter_mut().enumerate() {
            if present & (1 << f) != 0 {
                *r = vec![0; domain];
            }
        }
        for kind in KINDS {
            for (c, &m) in marks.iter().enumerate() {
                if m >> 4 != kind as u8 {
                    continue;
                }
                for f in 0..4 {
                    if m & (1 << f) != 0 {
                        ranks[f][c] = ids[f].len() as u32;
                        ids[f].push(TermId::from_counter(kind, c as u64));
                    }
                }
            }
        }
        let mut bits = [0u32; 4];
        for f in 0..4 {
            let first_inline = ids[f].len();
            ids[f].extend(inline[f].iter().map(|&id| TermId(id)));
            if first_inline > u32::MAX as usize || ids[f].len() > u32::MAX as usize {
                return None;
            }
            bits[f] = usize::BITS - ids[f].len().saturating_sub(1).leading_zeros();
        }
        if bits.iter().sum::<u32>() > 64 {
            return None;
        }
        let shifts = shifts(bits, [G, S, P, O]);
        let rank = |f: usize, id: TermId| -> u64 {
            if id.is_dictionary() {
                u64::from(ranks[f][id.counter() as usize])
            } else {
                let dictionary = ids[f].len() - inline[f].len();
                (dictionary + inline[f].binary_search(&id.0).unwrap_or(0)) as u64
            }
        };
        let key = |q: &IdQuad| {
            (rank(G, q.g) << shifts[G])
                | (rank(S, q.s) << shifts[S])
                | (rank(P, q.p) << shifts[P])
                | (rank(O, q.o) << shifts[O])
        };
        // Triples: every quad is in the default graph, counter 0.
        let default_graph = u64::from(ranks[G].first().copied().unwrap_or(0)) << shifts[G];
        let triple_key = |t: &Triples, &[s, p, o]: &[u32; 3]| {
            let o = if o & INLINE_OBJECT == 0 {
                u64::from(ranks[O][o as usize])
            } else {
                rank(O, t.inline_objects[(o & !INLINE_OBJECT) as usize])
            };
            default_graph
                | (u64::from(ranks[S][s as usize]) << shifts[S])
                | (u64::from(ranks[P][p as usize]) << shifts[P])
                | (o << shifts[O])
        };
        // Packing runs beside the collection of the new terms, and took longer (LUBM-10: ranks and keys
        // 18-40 ms, terms 15-27 ms): the keys are computed in two halves, on two threads.
        let len = source.len();
        let mut keys = vec![0u64; len];
        let fill = |keys: &mut [u64], from: usize| match &source {
            Source::Quads(quads) => {
                for (k, q) in keys.iter_mut().zip(&quads[from..]) {
                    *k = key(q);
                }
            }
            Source::Triples(t) => {
                for (k, spo) in keys.iter_mut().zip(&t.spo[from..]) {
                    *k = triple_key(t, spo);
                }
            }
        };
        if len >= PARALLEL_KEYS_MIN {
            let mid = len / 2;
            let (first, second) = keys.split_at_mut(mid);
            std::thread::scope(|scope| {
                scope.spawn(|| fill(first, 0));
                fill(second, mid);
            });
        } else {
            fill(&mut keys, 0);
        }
        Some(Packed { keys, ids, bits })
    }

    /// Visits the distinct quads in `order`.
    pub(crate) fn visit_sorted<E>(
        &self,
        order: Order,
        mut visit: impl FnMut(&IdQuad) -> Result<(), E>,
    ) -> Result<(), E> {
        let fields = fields_of(order);
        let from = shifts(self.bits, [G, S, P, O]);
        let to = shifts(self.bits, fields);
        let mask = self
            .bits
            .map(|b| if b == 0 { 0 } else { u64::MAX >> (64 - b) });
        let identity = fields == [G, S, P, O];
        let relayout = |k: u64| {
            if identity {
                k
            } else {
                (0..4).fold(0, |acc, f| acc | (((k >> from[f]) & mask[f]) << to[f]))
            }
        };
        let keys = bucket_sort(&self.keys, relayout, self.bits.iter().sum());
        let mut previous = None;
        for (i, &k) in keys.iter().enumerate() {
            // The id tables of the fields after the first are read in random order (LUBM-10: 2.4 MB
            // each, beyond the 1 MB L2 cache): a quarter of this function's time was one load's miss.
            // Asking for the entries of a key a few dozen ahead overlaps those misses with the work
            // on the keys in between.
            #[cfg(target_arch = "x86_64")]
            if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                for f in [S, P, O] {
                    if let Some(entry) = self.ids[f].get(((ahead >> to[f]) & mask[f]) as usize) {
                        // SAFETY: a prefetch is only a hint; the pointer comes from a reference.
                        unsafe {
                            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                                std::ptr::from_ref(entry).cast::<i8>(),
                            );
                        }
                    }
                }
            }
            if previous.replace(k) == Some(k) {
                continue;
            }
            let id = |f: usize| self.ids[f][((k >> to[f]) & mask[f]) as usize];
            visit(&IdQuad::new(id(S), id(P), id(O), id(G)))?;
        }
        Ok(())
    }
}

/// How many keys ahead [`Packed::visit_sorted`] prefetches id table entries.
const PREFETCH_AHEAD: usize = 32;

/// Loads with fewer quads compute their packed keys on one thread (a thread costs more than the work).
const PARALLEL_KEYS_MIN: usize = 1 << 16;

/// Below this many keys, a plain `sort_unstable` of a copy is as fast as bucketing.
const BUCKET_MIN_KEYS: usize = 1 << 16;
/// Bits of the bucket number (the keys' top bits).
const BUCKET_BITS: u32 = 16;

/// `keys` mapped by `relayout` and sorted, for keys of `width` bits. The keys are first distributed by their
/// top 16 bits (a counting pass and a scatter, which also replace the copy every pass needs), then each
/// bucket is sorted. Dictionary ranks are dense, so the top bits spread the keys well, and most buckets
/// are a few dozen keys. Measured on 1.27M 42-bit keys (copy and sort): subject-ordered keys like LUBM-10's
/// SPO pass 58 -> 20 ms, uniform keys 62 -> 44 ms. Buckets of one popular top field (a predicate, a
/// class) stay large and are sorted as before.
fn bucket_sort(keys: &[u64], relayout: impl Fn(u64) -> u64, width: u32) -> Vec<u64> {
    if keys.len() < BUCKET_MIN_KEYS || width < BUCKET_BITS {
        let mut out: Vec<u64> = keys.iter().map(|&k| relayout(k)).collect();
        // Measured on 1.27M 42-bit keys: 58 ms, against 67 ms for an LSD radix sort with 11-bit digits.
        out.sort_unstable();
        return out;
    }
    let shift = width - BUCKET_BITS;
    let mut starts = vec![0usize; (1 << BUCKET_BITS) + 1];
    for &k in keys {
        starts[(relayout(k) >> shift) as usize + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut next = starts.clone();
    let mut out = vec![0u64; keys.len()];
    for &k in keys {
        let k = relayout(k);
        let slot = &mut next[(k >> shift) as usize];
        out[*slot] = k;
        *slot += 1;
    }
    for bucket in starts.windows(2) {
        out[bucket[0]..bucket[1]].sort_unstable();
    }
    out
}

/// Fields of `order`, most significant first.
fn fields_of(order: Order) -> [usize; 4] {
    match order {
        Order::Gspo => [G, S, P, O],
        Order::Gpos => [G, P, O, S],
        Order::Gosp => [G, O, S, P],
        Order::Spog => [S, P, O, G],
        Order::Posg => [P, O, S, G],
        Order::Ospg => [O, S, P, G],
    }
}

/// Shift of each field (by field number) when the fields are packed in `layout` order. A field of no bits
/// gets shift 0: its rank and mask are 0, and above 64 bits of other fields its shift would overflow.
fn shifts(bits: [u32; 4], layout: [usize; 4]) -> [u32; 4] {
    let mut out = [0; 4];
    let mut shift = 0;
    for &f in layout.iter().rev() {
        if bits[f] > 0 {
            out[f] = shift;
        }
        shift += bits[f];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [Order; 6] = [
        Order::Gspo,
        Order::Gpos,
        Order::Gosp,
        Order::Spog,
        Order::Posg,
        Order::Ospg,
    ];

    fn id(tag: u64, payload: u64) -> TermId {
        TermId((tag << 56) | payload)
    }

    /// A seeded generator of numbers below `n` (an LCG: tests need the same quads every run).
    fn picker(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut state = seed;
        move |n| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        }
    }

    #[test]
    fn every_order_matches_the_comparison_sort() {
        // Dictionary ids of all three kinds, inline ids, the default graph and duplicates.
        let terms = [
            id(0, 5),
            id(0, 9),
            id(1, 3),
            id(2, 7),
            id(4, 42),
            id(0x14, 0x616263),
            id(2, 1),
        ];
        let graphs = [TermId::DEFAULT_GRAPH, id(0, 2), id(1, 4)];
        let mut quads = Vec::new();
        let mut next = picker(7);
        let mut pick = |n: usize| next(n as u64) as usize;
        for _ in 0..3000 {
            quads.push(IdQuad::new(
                terms[pick(3)],
                terms[pick(2)],
                terms[pick(terms.len())],
                graphs[pick(graphs.len())],
            ));
        }
        let packed = Packed::build(Source::Quads(&quads), 10, None).expect("fits");
        assert_eq!(packed.keys.len(), 3000);
        // Marked batch by batch, as the collector does (the marks grow ahead of the last counter).
        let mut marks = Marks::default();
        for batch in quads.chunks(700) {
            marks.add(batch).expect("small counters");
        }
        let marked = Packed::build(Source::Quads(&quads), 10, Some(&mut marks)).expect("fits");
        assert_eq!(
            (&marked.keys, &marked.ids, marked.bits),
            (&packed.keys, &packed.ids, packed.bits)
        );
        assert_sorts_like_the_quads(&packed, &quads, &ORDERS);
    }

    #[test]
    fn keys_computed_on_two_threads_sort_like_the_quads() {
        let mut next = picker(0x9e37_79b9_7f4a_7c15);
        let mut term = |n: u64| {
            let c = next(n);
            id(c % 3, c)
        };
        let quads: Vec<IdQuad> = (0..PARALLEL_KEYS_MIN + 1001)
            .map(|_| IdQuad::new(term(5000), term(40), term(20_000), TermId::DEFAULT_GRAPH))
            .collect();
        let packed = Packed::build(Source::Quads(&quads), 20_000, None).expect("fits");
        assert_sorts_like_the_quads(&packed, &quads, &[Order::Gspo, Order::Gosp]);
    }

    #[test]
    fn triples_pack_and_expand_like_the_quads() {
        // Default-graph quads with dictionary ids of all three kinds and inline objects, with duplicates.
        let terms = [id(0, 5), id(0, 9), id(1, 3), id(2, 7), id(2, 1)];
        let objects = [id(0, 9), id(2, 7), id(4, 42), id(0x14, 0x616263), id(1, 3)];
        let mut next = picker(11);
        let mut pick = |n: usize| next(n as u64) as usize;
        let quads: Vec<IdQuad> = (0..3000)
            .map(|_| {
                let s = terms[pick(3)];
                let p = terms[pick(2)];
                IdQuad::new(s, p, objects[pick(objects.len())], TermId::DEFAULT_GRAPH)
            })
            .collect();
        let mut triples = Triples::default();
        let mut marks = Marks::default();
        for batch in quads.chunks(700) {
            assert!(triples.try_extend(batch));
            marks.add(batch).expect("small counters");
        }
        let mut expanded = Vec::new();
        triples.expand(&marks, &mut expanded).expect("marked");
        assert_eq!(expanded, quads);
        let from_quads = Packed::build(Source::Quads(&quads), 10, None).expect("fits");
        let from_triples =
            Packed::build(Source::Triples(&triples), 10, Some(&mut marks)).expect("fits");
        assert_eq!(
            (&from_triples.keys, &from_triples.ids, from_triples.bits),
            (&from_quads.keys, &from_quads.ids, from_quads.bits)
        );
        // The marks given to `build` still expand the triples.
        expanded.clear();
        triples.expand(&marks, &mut expanded).expect("marked");
        assert_eq!(expanded, quads);
        // A batch with a quad in a named graph, or a counter of 2^31, goes in whole or not at all.
        let before = triples.len();
        let named = [
            quads[0],
            IdQuad::new(id(0, 5), id(0, 9), id(2, 7), id(0, 2)),
        ];
        assert!(!triples.try_extend(&named));
        let large = [IdQuad::new(
            id(0, 1 << 31),
            id(0, 9),
            id(2, 7),
            TermId::DEFAULT_GRAPH,
        )];
        assert!(!triples.try_extend(&large));
        assert_eq!(triples.len(), before);
    }

    /// `packed` visits the distinct `quads` in each of `orders` as the comparison sort orders them.
    fn assert_sorts_like_the_quads(packed: &Packed, quads: &[IdQuad], orders: &[Order]) {
        for &order in orders {
            let mut expected = quads.to_vec();
            order.sort(&mut expected);
            expected.dedup();
            let mut got = Vec::new();
            packed
                .visit_sorted(order, |q| {
                    got.push(*q);
                    Ok::<_, ()>(())
                })
                .expect("visit");
            assert_eq!(got, expected, "{order:?}");
        }
    }

    #[test]
    fn bucket_sort_equals_sort_unstable() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (n, width) in [
            (100, 20),
            (70_000, 16),
            (70_000, 20),
            (200_000, 42),
            (100_000, 64),
        ] {
            let mask = if width == 64 {
                u64::MAX
            } else {
                (1 << width) - 1
            };
            // Uniform keys, then keys crowded into a few top values (one big bucket), with duplicates.
            for crowded in [false, true] {
                let keys: Vec<u64> = (0..n)
                    .map(|_| {
                        let k = next() & mask;
                        if crowded && next() % 4 != 0 {
                            (k & (mask >> 8)) | (mask & !(mask >> 8))
                        } else {
                            k
                        }
                    })
                    .collect();
                let flip = |k: u64| k ^ (mask >> 1);
                let mut expected: Vec<u64> = keys.iter().map(|&k| flip(k)).collect();
                expected.sort_unstable();
                assert_eq!(
                    bucket_sort(&keys, flip, width),
                    expected,
                    "{n} keys of {width} bits"
                );
            }
        }
    }

    #[test]
    fn fields_of_no_bits_never_shift_by_64() {
        // A default-graph-only load whose other fields take all 64 bits: the graph field has no bits.
        let bits = [0, 22, 20, 22];
        for order in ORDERS {
            let s = shifts(bits, fields_of(order));
            assert!(s.iter().all(|&x| x < 64), "{order:?}: {s:?}");
            assert_eq!(s[G], 0);
        }
    }

    #[test]
    fn too_wide_or_too_large_domains_fall_back() {
        let quads = [IdQuad::new(
            id(0, 1),
            id(0, 2),
            id(0, 3),
            TermId::DEFAULT_GRAPH,
        )];
        assert!(Packed::build(Source::Quads(&quads), 1 << 30, None).is_none());
        let wide: Vec<IdQuad> = (0..70_000u64)
            .map(|i| IdQuad::new(id(4, i), id(4, i), id(4, i), id(4, i)))
            .collect();
        // 17 bits per field, 68 in all.
        assert!(Packed::build(Source::Quads(&wide), 4, None).is_none());
    }
}
