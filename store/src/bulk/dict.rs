//! Parallel dictionary encoding for bulk loads.
//!
//! Each parser worker owns a [`BulkEncoder`]. Quads are pushed into a chunk: inline terms resolve at once,
//! repeats of the previous quad's terms, hot terms (a small table per position) and terms in the worker's
//! local cache resolve without a lock, and the rest are deduplicated inside the chunk. At
//! [`BulkEncoder::flush`] the chunk's distinct unknown terms are resolved against the [`SharedDict`] with
//! one lock per shard per chunk — never a lock per triple — and, for a store that already holds data, one
//! batched read of `term2id` for terms the load has not seen yet.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use oxrdf::{GraphNameRef, QuadRef, TermRef};

use crate::error::{Result, StoreError};
use crate::keys::{self, IdQuad};
use crate::store::{lock, Inner};
use crate::term::{encode_term, encodes_to, term_key, DictKind, TermId, MAX_DICTIONARY_ID};

const SHARDS: usize = 64;
/// Worker-local cache entries before it is cleared.
const LOCAL_CACHE_MAX: usize = 1 << 17;
/// Worker-local cache bytes before it is cleared (its offsets are `u32`; long literals could fill it first).
const LOCAL_BYTES_MAX: usize = 64 << 20;
/// Entries of a worker's hot-term table, per quad position.
const HOT_ENTRIES: usize = 64;
/// Size of the pages that hold a shard's term bytes. Pages never move, so growing a shard copies nothing.
const PAGE: usize = 1 << 16;

/// A term of the shared dictionary. Its bytes live in the shard's pages: a `Box<[u8]>` per term cost an
/// allocation per distinct term, and fresh allocator pages (zeroed by the kernel) were up to a sixth of a
/// Turtle load's CPU.
struct Entry {
    /// Kept so that growing a shard does not re-read and re-hash every term (that was 3% of a load).
    hash: u64,
    id: TermId,
    bytes: Span,
    /// Allocated by this load (so it needs a dictionary entry).
    new: bool,
}

/// Where a term's bytes are in its shard's [`Pages`].
#[derive(Clone, Copy, Default)]
struct Span {
    page: u32,
    start: u32,
    len: u32,
}

/// Byte pages of one shard; a term never straddles two pages.
#[derive(Default)]
struct Pages(Vec<Vec<u8>>);

impl Pages {
    fn get(&self, s: Span) -> &[u8] {
        &self.0[s.page as usize][s.start as usize..s.start as usize + s.len as usize]
    }

    /// Stores `bytes`.
    fn push(&mut self, bytes: &[u8]) -> Span {
        let fits = self
            .0
            .last()
            .is_some_and(|p| p.capacity() - p.len() >= bytes.len());
        if !fits {
            self.0.push(Vec::with_capacity(PAGE.max(bytes.len())));
        }
        let page = self.0.len() - 1;
        let p = &mut self.0[page];
        let start = p.len();
        p.extend_from_slice(bytes);
        Span {
            page: page as u32,
            start: start as u32,
            len: bytes.len() as u32,
        }
    }
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
    pages: Pages,
}

impl Shard {
    /// The id and bytes of each term this load added.
    fn new_terms(&self) -> impl Iterator<Item = (TermId, Span)> + '_ {
        self.table.iter().filter(|e| e.new).map(|e| (e.id, e.bytes))
    }

    fn find(&self, hash: u64, bytes: &[u8]) -> Option<&Entry> {
        self.table
            .find(hash, |e| e.hash == hash && self.pages.get(e.bytes) == bytes)
    }
}

/// Every term seen by a bulk load, sharded by hash.
pub(crate) struct SharedDict {
    shards: Vec<Mutex<Shard>>,
    hasher: FixedState,
    /// The store to read `term2id` from, for terms the load has not seen; `None` when the store had no
    /// dictionary entry when the load started (or is still being created).
    stored_terms: Option<Arc<Inner>>,
    /// The next dictionary counter. The load's own: the store's counter is raised to it when the load
    /// starts to finish, and stays raised if finishing fails (unused ids are harmless); the load holds the
    /// writer lock, so no one else allocates meanwhile.
    next: AtomicU64,
}

/// The terms a load added to the dictionary, in id order.
pub(crate) struct NewTerms {
    pages: Vec<Pages>,
    /// Each term's id, shard and bytes.
    terms: Vec<(TermId, u32, Span)>,
}

impl NewTerms {
    pub(crate) fn len(&self) -> usize {
        self.terms.len()
    }

    /// Total bytes of the encoded terms.
    pub(crate) fn bytes(&self) -> usize {
        self.terms.iter().map(|t| t.2.len as usize).sum()
    }

    /// `(id, encoded term)` in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TermId, &[u8])> + '_ {
        self.range(0..self.terms.len())
    }

    /// [`NewTerms::iter`] of the terms in `range` (positions in id order).
    pub(crate) fn range(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (TermId, &[u8])> + '_ {
        self.terms[range]
            .iter()
            .map(|&(id, shard, bytes)| (id, self.pages[shard as usize].get(bytes)))
    }

    /// Consecutive ranges of positions (so of ids), each aiming at a third of the bytes not in an earlier
    /// range, but at least `min` and at most `max` bytes: a range ends with the term that reaches its aim
    /// (so a long literal may take it past `max`), and the last one may hold less. Parts thus shrink
    /// towards the end: written longest first, the last ones to start are short.
    pub(crate) fn split_decreasing(&self, min: usize, max: usize) -> Vec<std::ops::Range<usize>> {
        let mut left = self.bytes();
        let target = |left: usize| (left / 3).clamp(min.max(1), max.max(min).max(1));
        let mut ranges = Vec::new();
        let (mut start, mut bytes, mut want) = (0, 0, target(left));
        for (i, t) in self.terms.iter().enumerate() {
            bytes += t.2.len as usize;
            if bytes >= want {
                ranges.push(start..i + 1);
                left -= bytes;
                (start, bytes, want) = (i + 1, 0, target(left));
            }
        }
        if start < self.terms.len() || ranges.is_empty() {
            ranges.push(start..self.terms.len());
        }
        ranges
    }
}

impl SharedDict {
    /// A dictionary allocating counters from `next`, reading `term2id` from `stored_terms` if given.
    pub(crate) fn new(stored_terms: Option<Arc<Inner>>, next: u64) -> Self {
        SharedDict {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: FixedState::with_seed(0x7465726e),
            stored_terms,
            next: AtomicU64::new(next),
        }
    }

    /// The next counter this load would allocate.
    pub(crate) fn next_counter(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    fn shard_of(hash: u64) -> usize {
        (hash >> 58) as usize % SHARDS
    }

    /// The id this load gave (or found for) a term, by encoded bytes.
    pub(crate) fn lookup(&self, bytes: &[u8]) -> Option<TermId> {
        let hash = self.hash(bytes);
        lock(&self.shards[Self::shard_of(hash)])
            .find(hash, bytes)
            .map(|e| e.id)
    }

    /// Takes the terms this load added to the dictionary, leaving the shared dictionary empty. `first` is
    /// the load's first dictionary counter.
    pub(crate) fn take_new_terms(&self, first: u64) -> NewTerms {
        let shards: Vec<Shard> = self
            .shards
            .iter()
            .map(|s| std::mem::take(&mut *lock(s)))
            .collect();
        let count = self.next_counter().saturating_sub(first);
        let ids = shards.iter().flat_map(|s| s.new_terms().map(|(id, _)| id));
        let position = id_order_positions(ids, count, first);
        // With positions, each term goes straight to its place: the reads of `position` do not depend on
        // one another, so their cache misses overlap (following the permutation's cycles in place instead,
        // each swap waited for the previous one: 2.5x slower on LUBM-10). This holds every shard's table
        // beside the 28 bytes a term of `position` and `terms` (collecting first held fewer tables at
        // once); the 10M-triple load peaked at 863 MiB, as before (842–865 MiB). Without positions (the
        // counters are not dense), the terms are collected and sorted.
        let mut terms = match &position {
            Some(position) => vec![(TermId::DEFAULT_GRAPH, 0, Span::default()); position.len()],
            None => Vec::new(),
        };
        let mut pages = Vec::with_capacity(SHARDS);
        for (i, shard) in shards.into_iter().enumerate() {
            for (id, bytes) in shard.new_terms() {
                let term = (id, i as u32, bytes);
                match &position {
                    // Always found: `id_order_positions` checked every id of these same tables.
                    Some(position) => {
                        if let Some(&p) = counter_index(id, first).and_then(|c| position.get(c)) {
                            terms[p as usize] = term;
                        }
                    }
                    None => terms.push(term),
                }
            }
            // The shard's table is freed here.
            pages.push(shard.pages);
        }
        if position.is_none() {
            terms.sort_unstable_by_key(|t| t.0);
        }
        NewTerms { pages, terms }
    }

    /// Approximate heap bytes held.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                s.pages.0.iter().map(Vec::capacity).sum::<usize>()
                    + s.table.capacity() * std::mem::size_of::<Entry>()
            })
            .sum()
    }
}

/// The position in id order (kind, then counter) of each of `count` terms, by counter from `first`, when
/// `ids` are exactly the counters `first..first + count` (a load allocates counters densely): ids sorted
/// without a comparison sort. `None` when they are not. LUBM-10, 315k terms: collecting them 39–52 ->
/// 16–24 ms; BSBM 8–12 -> 3.5 ms. Takes 4 bytes a term.
fn id_order_positions(
    ids: impl Iterator<Item = TermId>,
    count: u64,
    first: u64,
) -> Option<Vec<u32>> {
    const UNSET: u32 = u32::MAX;
    let n = usize::try_from(count)
        .ok()
        .filter(|&n| n < UNSET as usize)?;
    // Per counter: its term's tag, then its term's position.
    let mut position = vec![UNSET; n];
    let mut per_kind = [0u32; 3];
    for id in ids {
        let tag = id.tag();
        match counter_index(id, first).and_then(|c| position.get_mut(c)) {
            Some(slot) if *slot == UNSET && usize::from(tag) < per_kind.len() => {
                *slot = u32::from(tag);
                per_kind[usize::from(tag)] += 1;
            }
            _ => return None,
        }
    }
    if per_kind.iter().map(|&k| k as usize).sum::<usize>() != n {
        return None;
    }
    // Kinds in tag order, as ids sort; counters in order within a kind.
    let mut next = [0, per_kind[0], per_kind[0] + per_kind[1]];
    for p in position.iter_mut() {
        let kind = *p as usize;
        *p = next[kind];
        next[kind] += 1;
    }
    Some(position)
}

/// The index of `id`'s counter from `first`.
fn counter_index(id: TermId, first: u64) -> Option<usize> {
    id.counter()
        .checked_sub(first)
        .and_then(|c| usize::try_from(c).ok())
}

/// A quad's terms by position (subject, predicate, object, graph); `None` for the default graph.
fn quad_terms(quad: QuadRef<'_>) -> [Option<TermRef<'_>>; 4] {
    let graph: Option<TermRef<'_>> = match quad.graph_name {
        GraphNameRef::DefaultGraph => None,
        GraphNameRef::NamedNode(n) => Some(n.into()),
        GraphNameRef::BlankNode(b) => Some(b.into()),
    };
    [
        Some(quad.subject.into()),
        Some(quad.predicate.into()),
        Some(quad.object),
        graph,
    ]
}

/// The slot of a term that needs no dictionary (the default graph, an inline literal), or the term.
fn fixed_slot(term: Option<TermRef<'_>>) -> std::result::Result<Slot, TermRef<'_>> {
    match term {
        None => Ok(Slot::Known(TermId::DEFAULT_GRAPH)),
        Some(t) => TermId::inline(t).map(Slot::Known).ok_or(t),
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Known(TermId),
    /// Index into the chunk's distinct unknown terms.
    Pending(u32),
}

struct Distinct {
    hash: u64,
    start: u32,
    end: u32,
    kind: DictKind,
    /// Whether the term occurred more than once in the chunk (only those enter the local cache).
    repeated: bool,
}

/// A worker's encoder. See the module documentation.
pub struct BulkEncoder {
    dict: Arc<SharedDict>,
    /// Worker-local cache: `(hash, start, len, id)` with the bytes in `local_bytes`.
    local: HashTable<(u64, u32, u32, TermId)>,
    local_bytes: Vec<u8>,
    arena: Vec<u8>,
    distinct: Vec<Distinct>,
    /// Indexes into `distinct`, by hash, for in-chunk deduplication.
    chunk_table: HashTable<u32>,
    slots: Vec<Slot>,
    /// Indexes into `distinct` per shard of the shared dictionary, during `resolve`.
    by_shard: Vec<Vec<u32>>,
    /// Per distinct term during `resolve` (reused across flushes): its id, whether the shared dictionary
    /// had it, and its id in `term2id` if the store had it.
    ids: Vec<TermId>,
    resolved: Vec<bool>,
    stored: Vec<Option<TermId>>,
    buf: Vec<u8>,
    /// Encoded bytes and slot of the previous quad's terms, per position.
    previous: [(Vec<u8>, Option<Slot>); 4],
    /// Per position, [`HOT_ENTRIES`] terms found in the local cache or the chunk, with their encodings,
    /// direct-mapped by [`hot_index`]: a term found there is compared with its encoding, not encoded
    /// and hashed. Predicates and classes recur on most lines without repeating the previous line's
    /// (LUBM-10: of 3.8M term occurrences, 1.79M hit this table, 1.13M of them predicates; without it,
    /// 1.5M were local-cache hits).
    hot: Vec<(Vec<u8>, Option<Slot>)>,
}

/// A term's place in a hot-term table: a cheap hash of its text's length and last eight bytes, which
/// tell apart the IRIs of one vocabulary (their namespaces are shared, their local names differ).
fn hot_index(term: TermRef<'_>) -> usize {
    let text = match term {
        TermRef::NamedNode(n) => n.as_str(),
        TermRef::BlankNode(b) => b.as_str(),
        TermRef::Literal(l) => l.value(),
    };
    let bytes = text.as_bytes();
    let tail = match bytes.last_chunk::<8>() {
        Some(tail) => u64::from_le_bytes(*tail),
        None => bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b)),
    };
    let mixed = (tail ^ bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - HOT_ENTRIES.trailing_zeros())) as usize
}

impl BulkEncoder {
    pub(crate) fn new(dict: Arc<SharedDict>) -> Self {
        BulkEncoder {
            dict,
            local: HashTable::new(),
            local_bytes: Vec::new(),
            arena: Vec::with_capacity(1 << 20),
            distinct: Vec::new(),
            chunk_table: HashTable::new(),
            slots: Vec::new(),
            by_shard: Vec::new(),
            ids: Vec::new(),
            resolved: Vec::new(),
            stored: Vec::new(),
            buf: Vec::new(),
            previous: Default::default(),
            hot: vec![Default::default(); 4 * HOT_ENTRIES],
        }
    }

    /// Quads pushed since the last flush.
    pub fn len(&self) -> usize {
        self.slots.len() / 4
    }

    /// Whether no quad is pending.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds a quad to the current chunk.
    pub fn push(&mut self, quad: QuadRef<'_>) {
        for (pos, term) in quad_terms(quad).into_iter().enumerate() {
            let slot = match fixed_slot(term) {
                Ok(slot) => slot,
                Err(t) => self.slot_for(pos, t),
            };
            self.slots.push(slot);
        }
    }

    /// [`BulkEncoder::push`] for a quad whose terms may be invalid. `valid` is asked only about the
    /// terms this encoder does not know yet: a term of the current chunk, of the worker-local cache or of
    /// the previous quad was checked when it was first pushed (every path into the encoder pushes valid
    /// terms only). Inline terms have fixed, valid datatypes. If `valid` refuses a term, no term or quad is
    /// added and `false` is returned (the memo of the previous quad's terms and the flags of repeated chunk
    /// terms may change: both stay true of the terms they describe).
    ///
    /// Parsers that validate every IRI with a cache spent more on the cache than on the rest of the
    /// check: most terms repeat, and the encoder looks them up anyway (LUBM-10: 88% of term occurrences
    /// are known here, so only 12% are validated).
    pub fn push_checked(
        &mut self,
        quad: QuadRef<'_>,
        mut valid: impl FnMut(TermRef<'_>) -> bool,
    ) -> bool {
        let mut slots = [Slot::Known(TermId::DEFAULT_GRAPH); 4];
        let mut unknown: [Option<(TermRef<'_>, DictKind, u64)>; 4] = [None; 4];
        for (pos, term) in quad_terms(quad).into_iter().enumerate() {
            match fixed_slot(term) {
                Ok(slot) => slots[pos] = slot,
                Err(t) => match self.known_slot(pos, t) {
                    Ok(slot) => slots[pos] = slot,
                    Err((kind, hash)) => unknown[pos] = Some((t, kind, hash)),
                },
            }
        }
        if unknown.iter().flatten().any(|&(t, ..)| !valid(t)) {
            return false;
        }
        for (pos, new) in unknown.into_iter().enumerate() {
            if let Some((t, kind, hash)) = new {
                // The previous-term and local-cache lookups that failed above still fail (neither changes
                // before the flush); only the chunk may have gained the term, from an earlier position of
                // this quad.
                encode_term(t, &mut self.buf);
                slots[pos] = match self.chunk_slot(hash) {
                    Some(slot) => {
                        self.remember(pos, slot);
                        slot
                    }
                    None => self.add_distinct(pos, kind, hash),
                };
            }
        }
        self.slots.extend_from_slice(&slots);
        true
    }

    /// The slot of a term this encoder knows (previous quad, local cache, current chunk), remembered as
    /// the previous term at `pos`. For a term it does not know: its kind and hash, with its encoding left
    /// in `self.buf`, and nothing changed.
    fn known_slot(&mut self, pos: usize, term: TermRef<'_>) -> Result<Slot, (DictKind, u64)> {
        if let (prev, Some(slot)) = &self.previous[pos] {
            if encodes_to(term, prev) {
                return Ok(*slot);
            }
        }
        let hot = pos * HOT_ENTRIES + hot_index(term);
        if let (encoded, Some(slot)) = &self.hot[hot] {
            if encodes_to(term, encoded) {
                return Ok(*slot);
            }
        }
        let kind = encode_term(term, &mut self.buf);
        let hash = self.dict.hash(&self.buf);
        let buf = &self.buf;
        let local_bytes = &self.local_bytes;
        let slot = if let Some((.., id)) = self.local.find(hash, |&(h, start, len, _)| {
            h == hash && local_bytes[start as usize..(start + len) as usize] == **buf
        }) {
            Slot::Known(*id)
        } else {
            self.chunk_slot(hash).ok_or((kind, hash))?
        };
        // Found again, so worth a hot entry (terms seen once, most subjects and literals, never get one).
        let (encoded, hot_slot) = &mut self.hot[hot];
        encoded.clear();
        encoded.extend_from_slice(&self.buf);
        *hot_slot = Some(slot);
        self.remember(pos, slot);
        Ok(slot)
    }

    /// The slot of the term in `self.buf` if the current chunk has it (marked as repeated).
    fn chunk_slot(&mut self, hash: u64) -> Option<Slot> {
        let (arena, distinct, buf) = (&self.arena, &self.distinct, &self.buf);
        let &i = self.chunk_table.find(hash, |&i| {
            let d = &distinct[i as usize];
            arena[d.start as usize..d.end as usize] == **buf
        })?;
        self.distinct[i as usize].repeated = true;
        Some(Slot::Pending(i))
    }

    /// Remembers the term in `self.buf` as the previous term at `pos`, leaving `self.buf` with unspecified
    /// contents (the buffers are swapped: every caller encodes into `self.buf` afresh, and a copy per term
    /// occurrence showed in profiles).
    fn remember(&mut self, pos: usize, slot: Slot) {
        let (prev, prev_slot) = &mut self.previous[pos];
        std::mem::swap(prev, &mut self.buf);
        *prev_slot = Some(slot);
    }

    /// The slot of a term: known, or a new distinct term of the chunk.
    fn slot_for(&mut self, pos: usize, term: TermRef<'_>) -> Slot {
        match self.known_slot(pos, term) {
            Ok(slot) => slot,
            Err((kind, hash)) => self.add_distinct(pos, kind, hash),
        }
    }

    /// Adds the term in `self.buf` (of `kind`, hashing to `hash`) as a new distinct term of the chunk.
    fn add_distinct(&mut self, pos: usize, kind: DictKind, hash: u64) -> Slot {
        let i = self.distinct.len() as u32;
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(&self.buf);
        self.distinct.push(Distinct {
            hash,
            start,
            end: self.arena.len() as u32,
            kind,
            repeated: false,
        });
        let distinct = &self.distinct;
        self.chunk_table
            .insert_unique(hash, i, |&j| distinct[j as usize].hash);
        let slot = Slot::Pending(i);
        self.remember(pos, slot);
        slot
    }

    /// Resolves the chunk's terms and appends its id quads to `out`.
    pub fn flush(&mut self, out: &mut Vec<IdQuad>) -> Result<()> {
        self.resolve()?;
        let ids = &self.ids;
        let id_of = |s: Slot| match s {
            Slot::Known(id) => id,
            Slot::Pending(i) => ids[i as usize],
        };
        out.reserve(self.slots.len() / 4);
        for c in self.slots.chunks_exact(4) {
            out.push(IdQuad::new(
                id_of(c[0]),
                id_of(c[1]),
                id_of(c[2]),
                id_of(c[3]),
            ));
        }
        // Worker-local cache of the chunk's repeated terms (bounded: cleared when full). Terms seen once
        // (most subjects and literals) would only churn it: caching every distinct term cost an allocation
        // per term and made the encode stage ~12% slower (criterion `encode/one-worker`, LUBM-1: 132 -> 116 ms).
        if self.local.len() + self.distinct.len() > LOCAL_CACHE_MAX
            || self.local_bytes.len() + self.arena.len() > LOCAL_BYTES_MAX
        {
            self.local.clear();
            self.local_bytes.clear();
        }
        for (d, &id) in self.distinct.iter().zip(ids) {
            if !d.repeated {
                continue;
            }
            let start = self.local_bytes.len() as u32;
            self.local_bytes
                .extend_from_slice(&self.arena[d.start as usize..d.end as usize]);
            self.local
                .insert_unique(d.hash, (d.hash, start, d.end - d.start, id), |&(h, ..)| h);
        }
        self.slots.clear();
        self.arena.clear();
        self.distinct.clear();
        self.chunk_table.clear();
        // The chunk's terms now have ids: memos of them stay valid with those.
        let known = |slot: &mut Option<Slot>| {
            if let Some(Slot::Pending(i)) = *slot {
                *slot = ids.get(i as usize).map(|&id| Slot::Known(id));
            }
        };
        self.previous.iter_mut().for_each(|(_, slot)| known(slot));
        self.hot.iter_mut().for_each(|(_, slot)| known(slot));
        Ok(())
    }

    /// Fills `self.ids` with the ids of the chunk's distinct unknown terms: shared dictionary, then
    /// `term2id`, then new ids.
    fn resolve(&mut self) -> Result<()> {
        let n = self.distinct.len();
        let (ids, resolved, stored) = (&mut self.ids, &mut self.resolved, &mut self.stored);
        ids.clear();
        ids.resize(n, TermId::DEFAULT_GRAPH);
        resolved.clear();
        resolved.resize(n, false);
        // Reused across flushes (64 vectors allocated and grown per flush showed in profiles).
        let by_shard = &mut self.by_shard;
        by_shard.resize_with(SHARDS, Vec::new);
        by_shard.iter_mut().for_each(Vec::clear);
        for (i, d) in self.distinct.iter().enumerate() {
            by_shard[SharedDict::shard_of(d.hash)].push(i as u32);
        }
        let bytes_of = |d: &Distinct| &self.arena[d.start as usize..d.end as usize];
        for (shard, members) in by_shard.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let shard = lock(&self.dict.shards[shard]);
            for &i in members {
                let d = &self.distinct[i as usize];
                if let Some(e) = shard.find(d.hash, bytes_of(d)) {
                    ids[i as usize] = e.id;
                    resolved[i as usize] = true;
                }
            }
        }
        // Terms the store may already know.
        stored.clear();
        stored.resize(n, None);
        if let Some(inner) = &self.dict.stored_terms {
            let misses: Vec<usize> = (0..n).filter(|&i| !resolved[i]).collect();
            let keys: Vec<_> = misses
                .iter()
                .map(|&i| term_key(bytes_of(&self.distinct[i])))
                .collect();
            let cf = inner.cf(keys::CF_TERM2ID)?;
            for (&i, v) in misses
                .iter()
                .zip(inner.db.batched_multi_get_cf(cf, keys.iter(), false))
            {
                if let Some(v) = v? {
                    stored[i] = Some(
                        TermId::from_be_slice(&v)
                            .ok_or_else(|| StoreError::Corrupt("bad term id in term2id".into()))?,
                    );
                }
            }
        }
        for (shard, members) in by_shard.iter().enumerate() {
            if members.iter().all(|&i| resolved[i as usize]) {
                continue;
            }
            let mut shard = lock(&self.dict.shards[shard]);
            let shard = &mut *shard;
            for &i in members {
                let i = i as usize;
                if resolved[i] {
                    continue;
                }
                let d = &self.distinct[i];
                let bytes = bytes_of(d);
                // Another worker may have added it since the first pass.
                if let Some(e) = shard.find(d.hash, bytes) {
                    ids[i] = e.id;
                    continue;
                }
                let (id, new) = match stored[i] {
                    Some(id) => (id, false),
                    None => {
                        let counter = self.dict.next.fetch_add(1, Ordering::Relaxed);
                        if counter > MAX_DICTIONARY_ID {
                            return Err(StoreError::DictionaryFull);
                        }
                        (TermId::from_counter(d.kind, counter), true)
                    }
                };
                ids[i] = id;
                let bytes = shard.pages.push(bytes);
                shard.table.insert_unique(
                    d.hash,
                    Entry {
                        hash: d.hash,
                        id,
                        bytes,
                        new,
                    },
                    |e| e.hash,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_terms(lens: &[usize]) -> NewTerms {
        let mut pages = Pages::default();
        let terms = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| (TermId(i as u64 + 1), 0, pages.push(&vec![b'x'; len])))
            .collect();
        NewTerms {
            pages: vec![pages],
            terms,
        }
    }

    /// A vocabulary whose terms differ in as few bytes as possible: IRIs with the same local name (the same
    /// hot-table place), an IRI and a literal with the same text, language tags that differ.
    fn vocabulary() -> Vec<oxrdf::Term> {
        use oxrdf::{BlankNode, Literal, NamedNode};
        let iri = |s: &str| NamedNode::new_unchecked(s).into();
        vec![
            iri("http://e/a"),
            iri("http://e/b"),
            iri("http://x/type"),
            iri("http://y/type"),
            iri("http://e/a-rather-long-local-name"),
            BlankNode::new_unchecked("b1").into(),
            BlankNode::new_unchecked("b2").into(),
            Literal::new_simple_literal("http://e/a").into(),
            Literal::new_language_tagged_literal_unchecked("chat", "fr").into(),
            Literal::new_language_tagged_literal_unchecked("chat", "en").into(),
            Literal::new_simple_literal("a longer string").into(),
            Literal::new_simple_literal("short").into(), // inline
        ]
    }

    proptest::proptest! {
        /// Two encoders sharing a dictionary, flushed at arbitrary points: every occurrence of a term gets
        /// the one id the shared dictionary holds for it, whichever memo (previous term, hot table, local
        /// cache, chunk) resolved it, including memos that outlive a flush.
        #[test]
        fn every_occurrence_of_a_term_gets_its_one_id(
            quads in proptest::collection::vec((0usize..7, 0usize..5, 0usize..12, 0usize..2), 0..300),
            flushes in proptest::collection::vec(0usize..300, 0..8),
        ) {
            use oxrdf::{NamedOrBlankNodeRef, TermRef};
            let terms = vocabulary();
            let dict = Arc::new(SharedDict::new(None, 100));
            let mut encoders = [BulkEncoder::new(Arc::clone(&dict)), BulkEncoder::new(Arc::clone(&dict))];
            let mut outs: [Vec<IdQuad>; 2] = Default::default();
            let mut pushed: [Vec<[usize; 3]>; 2] = Default::default();
            for (i, &(s, p, o, w)) in quads.iter().enumerate() {
                let subject = match terms[s].as_ref() {
                    TermRef::NamedNode(n) => NamedOrBlankNodeRef::from(n),
                    TermRef::BlankNode(b) => NamedOrBlankNodeRef::from(b),
                    TermRef::Literal(_) => continue,
                };
                let TermRef::NamedNode(predicate) = terms[p].as_ref() else {
                    continue;
                };
                let quad = QuadRef::new(subject, predicate, terms[o].as_ref(), GraphNameRef::DefaultGraph);
                encoders[w].push(quad);
                pushed[w].push([s, p, o]);
                if flushes.contains(&i) {
                    encoders[w].flush(&mut outs[w]).expect("flush");
                }
            }
            for (encoder, out) in encoders.iter_mut().zip(&mut outs) {
                encoder.flush(out).expect("flush");
            }
            let mut buf = Vec::new();
            let mut id_of = |t: usize| {
                TermId::inline(terms[t].as_ref()).or_else(|| {
                    encode_term(terms[t].as_ref(), &mut buf);
                    dict.lookup(&buf)
                })
            };
            for (out, pushed) in outs.iter().zip(&pushed) {
                proptest::prop_assert_eq!(out.len(), pushed.len());
                for (q, &[s, p, o]) in out.iter().zip(pushed) {
                    proptest::prop_assert_eq!(Some(q.s), id_of(s));
                    proptest::prop_assert_eq!(Some(q.p), id_of(p));
                    proptest::prop_assert_eq!(Some(q.o), id_of(o));
                }
            }
        }
    }

    #[test]
    fn dense_counters_are_placed_in_id_order() {
        let kinds = [DictKind::Literal, DictKind::Iri, DictKind::Blank];
        for n in [0u64, 1, 2, 7, 1000] {
            // Counters 100..100 + n of mixed kinds, in a scrambled order.
            let ids: Vec<TermId> = (0..n)
                .map(|i| {
                    let c = 100 + (i * 7919) % n.max(1);
                    TermId::from_counter(kinds[(c % 3) as usize], c)
                })
                .collect();
            let position = id_order_positions(ids.iter().copied(), n, 100).expect("dense counters");
            let mut placed = vec![TermId::DEFAULT_GRAPH; ids.len()];
            for &id in &ids {
                placed[position[counter_index(id, 100).expect("in range")] as usize] = id;
            }
            let mut expected = ids.clone();
            expected.sort_unstable();
            assert_eq!(placed, expected, "{n}");
        }
        // A gap, a repeat, a counter below the range, or fewer counters than the range: refused.
        for (counters, count) in [
            (vec![100, 102], 2),
            (vec![100, 100], 2),
            (vec![99, 100], 2),
            (vec![100], 2),
        ] {
            let ids = counters
                .iter()
                .map(|&c| TermId::from_counter(DictKind::Iri, c));
            assert!(
                id_order_positions(ids, count, 100).is_none(),
                "{counters:?}"
            );
        }
        // An inline id (tag above the dictionary kinds) whose payload looks like a counter: refused.
        let inline = TermId((4 << 56) | 101);
        let ids = [TermId::from_counter(DictKind::Iri, 100), inline];
        assert!(id_order_positions(ids.into_iter(), 2, 100).is_none());
    }

    #[test]
    fn split_decreasing_covers_every_term_once_in_shrinking_ranges() {
        for lens in [
            vec![],
            vec![5],
            vec![10; 100],
            vec![1, 1, 1, 1000],
            vec![1000, 1, 1, 1],
            (1..200).collect(),
        ] {
            for (min, max) in [(1, 1), (10, 40), (50, 1000), (100_000, 100_000)] {
                let terms = new_terms(&lens);
                let ranges = terms.split_decreasing(min, max);
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges.last().map(|r| r.end), Some(lens.len()));
                assert!(ranges
                    .windows(2)
                    .all(|w| w[0].end == w[1].start && !w[1].is_empty()));
                // Each part but the last reaches a third of the bytes left (within min..=max), and stops at
                // the term that reaches it.
                let mut left = terms.bytes();
                for r in ranges.iter().take(ranges.len() - 1) {
                    let want = (left / 3).clamp(min, max);
                    let b: usize = lens[r.clone()].iter().sum();
                    assert!(
                        b >= want && b - lens[r.end - 1] < want,
                        "{lens:?} {min} {max}: {ranges:?}"
                    );
                    left -= b;
                }
                let ids: Vec<TermId> = ranges
                    .iter()
                    .flat_map(|r| terms.range(r.clone()).map(|(id, _)| id))
                    .collect();
                assert_eq!(ids, terms.iter().map(|(id, _)| id).collect::<Vec<_>>());
            }
        }
    }
}
