//! Write transactions: buffered operations committed as one atomic RocksDB write batch.
//!
//! A transaction holds the store's writer lock from start to commit, so the latest committed state is its
//! base state and every existence check below reads it directly. Nothing touches RocksDB before
//! [`Transaction::commit`]: dropping a transaction rolls it back (only dictionary counter values are
//! consumed, leaving harmless gaps).
//!
//! At commit the buffered operations are reduced to their net effect (last operation per quad wins), checked
//! against the base state, and turned into: index entries (3 or 6 per quad), bitmap deltas (merge operands),
//! counter deltas (merge operands), dictionary entries for new terms, graph entries and metadata.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use oxrdf::vocab::rdf;
use oxrdf::{GraphNameRef, QuadRef, TermRef};
use rocksdb::{ColumnFamily, WriteBatch};

use crate::error::{Result, StoreError};
use crate::keys::{self, bitmap_key, stat_key, IdQuad, Index};
use crate::merge::{decode_counter, BitmapDelta};
use crate::reader::Reader;
use crate::scan::{existing, PrefixCounter};
use crate::store::{lock, Inner};
use crate::term::{encode_term, term_key, DictKind, TermId, MAX_DICTIONARY_ID};
use crate::FastMap;

/// A (predicate, IRI object) pair other than `rdf:type` gets a subject bitmap once a commit brings it to at
/// least this many subjects.
///
/// Measured (`benches/stages.rs`, `pair-lookup`): a POS prefix scan costs about 4 µs + 0.35 µs per subject,
/// a bitmap fetch about 3.3 µs + 0.005 µs per subject, so at 16 subjects the bitmap is 2.7x faster while
/// its value (under 100 bytes) adds less than 10% to the pair's index entries. Smaller pairs are not worth
/// a key of their own.
pub const PO_BITMAP_THRESHOLD: usize = 16;

/// Quads interned per batch in [`Transaction::insert_all`].
const INTERN_CHUNK: usize = 8192;

/// What a commit changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Quads that were not present before and are now.
    pub inserted: u64,
    /// Quads that were present before and are not now.
    pub removed: u64,
    /// Terms added to the dictionary.
    pub new_terms: u64,
    /// Data version after the commit (unchanged if the commit changed nothing).
    pub data_version: u64,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Insert(IdQuad),
    Remove(IdQuad),
    CreateGraph(TermId),
    DropGraph(TermId),
}

/// A write transaction. See the module documentation.
pub struct Transaction<'a> {
    inner: &'a Arc<Inner>,
    _guard: MutexGuard<'a, ()>,
    /// Terms first seen in this transaction and their freshly allocated ids.
    new_terms: HashMap<Vec<u8>, TermId>,
    ops: Vec<Op>,
    /// Whether the base state holds no quad (lets commit skip every existence check).
    base_empty: bool,
}

/// One term slot to intern: `None` is the default graph.
type Slot<'b> = Option<TermRef<'b>>;

impl<'a> Transaction<'a> {
    pub(crate) fn new(inner: &'a Arc<Inner>, guard: MutexGuard<'a, ()>) -> Result<Self> {
        let stats = inner.cf(keys::CF_STATS)?;
        let quads = match inner.db.get_cf(stats, stat_key::QUADS)? {
            Some(v) => {
                decode_counter(&v).ok_or_else(|| StoreError::Corrupt("bad counter".into()))?
            }
            None => 0,
        };
        Ok(Transaction {
            inner,
            _guard: guard,
            new_terms: HashMap::new(),
            ops: Vec::new(),
            base_empty: quads == 0,
        })
    }

    /// A reader on the base state (the transaction's own changes are not visible to it).
    pub fn reader(&self) -> Reader {
        Reader::new(Arc::clone(self.inner))
    }

    /// Number of buffered operations.
    pub fn pending(&self) -> usize {
        self.ops.len()
    }

    /// Internalizes a term, allocating an id if the store does not know it yet.
    pub fn intern(&mut self, term: TermRef<'_>) -> Result<TermId> {
        let ids = self.intern_slots(&[Some(term)], true)?;
        ids.first()
            .copied()
            .flatten()
            .ok_or_else(|| StoreError::Corrupt("interning returned no id".into()))
    }

    /// Inserts quads. Returns how many operations were buffered.
    pub fn insert_all<'b>(&mut self, quads: impl IntoIterator<Item = QuadRef<'b>>) -> Result<u64> {
        self.buffer(quads, true)
    }

    /// Removes quads (unknown terms mean the quad cannot be stored, so it is skipped).
    pub fn remove_all<'b>(&mut self, quads: impl IntoIterator<Item = QuadRef<'b>>) -> Result<u64> {
        self.buffer(quads, false)
    }

    /// Inserts a quad of ids obtained from this store.
    pub fn insert_ids(&mut self, q: IdQuad) {
        self.ops.push(Op::Insert(q));
    }

    /// Removes a quad of ids obtained from this store.
    pub fn remove_ids(&mut self, q: IdQuad) {
        self.ops.push(Op::Remove(q));
    }

    /// Creates an empty named graph (no-op if it exists).
    pub fn create_graph(&mut self, g: TermId) {
        self.ops.push(Op::CreateGraph(g));
    }

    /// Removes every quad of graph `g` (the default graph with [`TermId::DEFAULT_GRAPH`]); the graph itself
    /// stays.
    pub fn clear_graph(&mut self, g: TermId) -> Result<()> {
        let pending: Vec<IdQuad> = self
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Insert(q) if q.g == g => Some(*q),
                _ => None,
            })
            .collect();
        self.ops.extend(pending.into_iter().map(Op::Remove));
        let reader = self.reader();
        let sel = if g == TermId::DEFAULT_GRAPH {
            crate::GraphSel::Default
        } else {
            crate::GraphSel::Named(g)
        };
        for q in reader.quads_for_pattern(None, None, None, sel) {
            self.ops.push(Op::Remove(q?));
        }
        Ok(())
    }

    /// Removes every quad of named graph `g` and the graph itself.
    pub fn drop_graph(&mut self, g: TermId) -> Result<()> {
        self.clear_graph(g)?;
        self.ops.push(Op::DropGraph(g));
        Ok(())
    }

    /// Removes every quad and every named graph.
    pub fn clear_all(&mut self) -> Result<()> {
        self.clear_graph(TermId::DEFAULT_GRAPH)?;
        let reader = self.reader();
        let mut graphs = reader.named_graphs()?;
        graphs.extend(self.ops.iter().filter_map(|op| match op {
            Op::Insert(q) if !q.in_default_graph() => Some(q.g),
            Op::CreateGraph(g) => Some(*g),
            _ => None,
        }));
        graphs.sort_unstable();
        graphs.dedup();
        for g in graphs {
            self.drop_graph(g)?;
        }
        Ok(())
    }

    fn buffer<'b>(
        &mut self,
        quads: impl IntoIterator<Item = QuadRef<'b>>,
        insert: bool,
    ) -> Result<u64> {
        let mut slots: Vec<Slot<'b>> = Vec::with_capacity(4 * INTERN_CHUNK);
        let mut n = 0;
        for quad in quads {
            let g = match quad.graph_name {
                GraphNameRef::DefaultGraph => None,
                GraphNameRef::NamedNode(n) => Some(n.into()),
                GraphNameRef::BlankNode(b) => Some(b.into()),
            };
            slots.extend([
                Some(quad.subject.into()),
                Some(quad.predicate.into()),
                Some(quad.object),
                g,
            ]);
            if slots.len() >= 4 * INTERN_CHUNK {
                n += self.flush_slots(&slots, insert)?;
                slots.clear();
            }
        }
        n += self.flush_slots(&slots, insert)?;
        Ok(n)
    }

    fn flush_slots(&mut self, slots: &[Slot<'_>], insert: bool) -> Result<u64> {
        let ids = self.intern_slots(slots, insert)?;
        let mut n = 0;
        for c in ids.chunks_exact(4) {
            if let [Some(s), Some(p), Some(o), Some(g)] = *c {
                let q = IdQuad::new(s, p, o, g);
                self.ops
                    .push(if insert { Op::Insert(q) } else { Op::Remove(q) });
                n += 1;
            }
        }
        Ok(n)
    }

    /// Internalizes a batch of terms with one cache lock and one batched dictionary read. With `create`,
    /// unknown terms get new ids; without, they map to `None`.
    fn intern_slots(&mut self, slots: &[Slot<'_>], create: bool) -> Result<Vec<Option<TermId>>> {
        let mut ids = vec![None; slots.len()];
        // Encoded terms share one arena: no allocation per term on the lookup path.
        let mut arena = Vec::new();
        let mut buf = Vec::new();
        let mut misses: Vec<(usize, usize, usize, DictKind)> = Vec::new(); // (slot, start, end, kind)
        for (i, slot) in slots.iter().enumerate() {
            let Some(term) = *slot else {
                ids[i] = Some(TermId::DEFAULT_GRAPH);
                continue;
            };
            if let Some(id) = TermId::inline(term) {
                ids[i] = Some(id);
                continue;
            }
            let kind = encode_term(term, &mut buf);
            if let Some(&id) = self.new_terms.get(buf.as_slice()) {
                ids[i] = Some(id);
                continue;
            }
            let start = arena.len();
            arena.extend_from_slice(&buf);
            misses.push((i, start, arena.len(), kind));
        }
        if misses.is_empty() {
            return Ok(ids);
        }
        {
            let mut cache = lock(&self.inner.term_cache);
            misses.retain(|&(i, start, end, _)| match cache.get(&arena[start..end]) {
                Some(&id) => {
                    ids[i] = Some(id);
                    false
                }
                None => true,
            });
        }
        if misses.is_empty() {
            return Ok(ids);
        }
        // Sorted, deduplicated keys for one batched read.
        misses.sort_unstable_by(|a, b| arena[a.1..a.2].cmp(&arena[b.1..b.2]));
        let mut distinct: Vec<&[u8]> = Vec::new();
        for &(_, start, end, _) in &misses {
            if distinct.last() != Some(&&arena[start..end]) {
                distinct.push(&arena[start..end]);
            }
        }
        let cf = self.inner.cf(keys::CF_TERM2ID)?;
        // Hashed keys do not sort like their terms, so RocksDB sorts them.
        let term_keys: Vec<_> = distinct.iter().map(|t| term_key(t)).collect();
        let found = self
            .inner
            .db
            .batched_multi_get_cf(cf, term_keys.iter(), false);
        let mut resolved: HashMap<&[u8], TermId> = HashMap::with_capacity(distinct.len());
        let mut cache_fill = Vec::new();
        for (key, value) in distinct.iter().zip(found) {
            if let Some(v) = value? {
                let id = TermId::from_be_slice(&v)
                    .ok_or_else(|| StoreError::Corrupt("bad term id in term2id".into()))?;
                resolved.insert(key, id);
                cache_fill.push((key.to_vec(), id));
            }
        }
        for &(i, start, end, kind) in &misses {
            let key = &arena[start..end];
            if let Some(&id) = resolved.get(key) {
                ids[i] = Some(id);
            } else if create {
                let id = match self.new_terms.entry(key.to_vec()) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => {
                        let counter = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                        if counter > MAX_DICTIONARY_ID {
                            return Err(StoreError::DictionaryFull);
                        }
                        *e.insert(TermId::from_counter(kind, counter))
                    }
                };
                ids[i] = Some(id);
            }
        }
        if !cache_fill.is_empty() {
            let mut cache = lock(&self.inner.term_cache);
            for (k, id) in cache_fill {
                cache.put(k, id);
            }
        }
        Ok(ids)
    }

    /// The id of `rdf:type` if the store or this transaction knows it.
    fn rdf_type_id(&self) -> Result<Option<TermId>> {
        let mut buf = Vec::new();
        encode_term(rdf::TYPE.into(), &mut buf);
        if let Some(&id) = self.new_terms.get(&buf) {
            return Ok(Some(id));
        }
        self.reader().term_id(rdf::TYPE.into())
    }

    /// Applies the transaction atomically.
    pub fn commit(self) -> Result<CommitSummary> {
        Committer::new(self)?.run()
    }
}

/// Which named graphs the transaction creates (`true`) or drops (`false`), by final state.
fn graph_changes(ops: &[Op]) -> HashMap<TermId, bool> {
    let mut state = HashMap::new();
    for op in ops {
        match *op {
            Op::Insert(q) if !q.in_default_graph() => {
                state.insert(q.g, true);
            }
            Op::CreateGraph(g) if g != TermId::DEFAULT_GRAPH => {
                state.insert(g, true);
            }
            Op::DropGraph(g) if g != TermId::DEFAULT_GRAPH => {
                state.insert(g, false);
            }
            _ => {}
        }
    }
    state
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Counter {
    GraphQuads(TermId),
    PredicateQuads(TermId, TermId),
    PredicateObjects(TermId, TermId),
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum BitmapKey {
    Predicate(TermId, TermId),
    PredicateObject(TermId, TermId, TermId),
    Graph(TermId),
}

struct Committer<'a> {
    txn: Transaction<'a>,
    batch: WriteBatch,
    counters: FastMap<Counter, i64>,
    deltas: FastMap<BitmapKey, BitmapDelta>,
}

impl<'a> Committer<'a> {
    fn new(txn: Transaction<'a>) -> Result<Self> {
        Ok(Committer {
            txn,
            batch: WriteBatch::default(),
            counters: FastMap::default(),
            deltas: FastMap::default(),
        })
    }

    fn count(&mut self, c: Counter, d: i64) {
        *self.counters.entry(c).or_insert(0) += d;
    }

    fn delta(&mut self, k: BitmapKey) -> &mut BitmapDelta {
        self.deltas.entry(k).or_default()
    }

    fn run(mut self) -> Result<CommitSummary> {
        let inner: &Inner = self.txn.inner;
        let db = &inner.db;

        // 1. Net effect per quad: the last operation wins. Sorting by (g, s, p, o) also puts quads in SPO /
        //    GSPO key order for the existence reads below.
        let mut quad_ops: Vec<(IdQuad, bool)> = self
            .txn
            .ops
            .iter()
            .filter_map(|op| match *op {
                Op::Insert(q) => Some((q, true)),
                Op::Remove(q) => Some((q, false)),
                _ => None,
            })
            .collect();
        quad_ops.sort_by_key(|(q, _)| (q.g, q.s, q.p, q.o)); // stable: keeps operation order per quad
        let mut net: Vec<(IdQuad, bool)> = Vec::with_capacity(quad_ops.len());
        for (q, ins) in quad_ops {
            match net.last_mut() {
                Some(last) if last.0 == q => last.1 = ins,
                _ => net.push((q, ins)),
            }
        }

        // 2. Existence in the base state.
        let exists = if self.txn.base_empty {
            vec![false; net.len()]
        } else {
            let quads: Vec<IdQuad> = net.iter().map(|(q, _)| *q).collect();
            existing(inner, &quads)?
        };
        let mut inserts = Vec::new();
        let mut deletes = Vec::new();
        for ((q, ins), present) in net.into_iter().zip(exists) {
            match (ins, present) {
                (true, false) => inserts.push(q),
                (false, true) => deletes.push(q),
                _ => {}
            }
        }

        // 3. Index entries and per-graph / per-predicate quad counters.
        let mut key = [0u8; 32];
        let index_cfs: Vec<&ColumnFamily> = Index::ALL
            .iter()
            .map(|i| inner.cf(i.cf_name()))
            .collect::<Result<_>>()?;
        let cf_of = |i: Index| index_cfs[Index::ALL.iter().position(|&x| x == i).unwrap_or(0)];
        for (list, sign) in [(&inserts, 1i64), (&deletes, -1)] {
            for q in list.iter() {
                let indexes: &[Index] = if q.in_default_graph() {
                    &Index::DEFAULT
                } else {
                    &Index::NAMED
                };
                for &idx in indexes {
                    let k = idx.encode(q, &mut key);
                    if sign > 0 {
                        self.batch.put_cf(cf_of(idx), k, []);
                    } else {
                        self.batch.delete_cf(cf_of(idx), k);
                    }
                }
                self.count(Counter::GraphQuads(q.g), sign);
                self.count(Counter::PredicateQuads(q.g, q.p), sign);
            }
        }

        // 4. Predicate and graph subject bitmaps.
        self.subject_bitmaps(&inserts, &deletes)?;

        // 5. Distinct objects and (predicate, object) bitmaps, grouped by (g, p, o).
        self.object_groups(&inserts, &deletes)?;

        // 6. Named graphs.
        let graphs_cf = inner.cf(keys::CF_GRAPHS)?;
        let mut graph_delta = 0i64;
        let mut graph_changed = false;
        for (g, keep) in graph_changes(&self.txn.ops) {
            let present = db.get_cf(graphs_cf, g.to_be_bytes())?.is_some();
            if keep && !present {
                self.batch.put_cf(graphs_cf, g.to_be_bytes(), []);
                graph_delta += 1;
                graph_changed = true;
            } else if !keep && present {
                self.batch.delete_cf(graphs_cf, g.to_be_bytes());
                graph_delta -= 1;
                graph_changed = true;
            }
        }

        // 7. Bitmap deltas and counters as merge operands.
        let bitmaps_cf = inner.cf(keys::CF_BITMAPS)?;
        for (k, d) in std::mem::take(&mut self.deltas) {
            if d.adds.is_empty() && d.removes.is_empty() {
                continue;
            }
            let value = d.to_bytes();
            match k {
                BitmapKey::Predicate(g, p) => {
                    self.batch
                        .merge_cf(bitmaps_cf, bitmap_key::predicate(g, p), value)
                }
                BitmapKey::PredicateObject(g, p, o) => {
                    self.batch
                        .merge_cf(bitmaps_cf, bitmap_key::predicate_object(g, p, o), value)
                }
                BitmapKey::Graph(g) => self.batch.merge_cf(bitmaps_cf, bitmap_key::graph(g), value),
            }
        }
        let stats_cf = inner.cf(keys::CF_STATS)?;
        let total = inserts.len() as i64 - deletes.len() as i64;
        let new_terms = self.txn.new_terms.len() as i64;
        let add = |batch: &mut WriteBatch, key: &[u8], d: i64| {
            if d != 0 {
                batch.merge_cf(stats_cf, key, d.to_le_bytes());
            }
        };
        add(&mut self.batch, stat_key::QUADS, total);
        add(&mut self.batch, stat_key::NAMED_GRAPHS, graph_delta);
        add(&mut self.batch, stat_key::TERMS, new_terms);
        for (c, d) in std::mem::take(&mut self.counters) {
            match c {
                Counter::GraphQuads(g) => add(&mut self.batch, &stat_key::graph_quads(g), d),
                Counter::PredicateQuads(g, p) => {
                    add(&mut self.batch, &stat_key::predicate_quads(g, p), d)
                }
                Counter::PredicateObjects(g, p) => {
                    add(&mut self.batch, &stat_key::predicate_objects(g, p), d)
                }
            }
        }

        // 8. Dictionary entries and metadata.
        let id2term = inner.cf(keys::CF_ID2TERM)?;
        let term2id = inner.cf(keys::CF_TERM2ID)?;
        for (bytes, id) in &self.txn.new_terms {
            self.batch.put_cf(id2term, id.to_be_bytes(), bytes);
            self.batch
                .put_cf(term2id, term_key(bytes).as_ref(), id.to_be_bytes());
        }
        let changed = !inserts.is_empty() || !deletes.is_empty() || graph_changed || new_terms > 0;
        let mut data_version = inner.data_version.load(Ordering::Acquire);
        if changed {
            data_version += 1;
            let meta = inner.cf(keys::CF_META)?;
            self.batch.put_cf(
                meta,
                keys::META_NEXT_ID,
                inner.next_id.load(Ordering::Relaxed).to_be_bytes(),
            );
            self.batch
                .put_cf(meta, keys::META_DATA_VERSION, data_version.to_be_bytes());
        }

        // 9. One atomic write. Caches learn the new terms only once they are committed.
        db.write_opt(std::mem::take(&mut self.batch), &inner.write_options)?;
        inner.data_version.store(data_version, Ordering::Release);
        let new_terms_map = std::mem::take(&mut self.txn.new_terms);
        if !new_terms_map.is_empty() {
            let mut cache = lock(&inner.term_cache);
            for (bytes, id) in new_terms_map {
                cache.put(bytes, id);
            }
        }
        if changed {
            inner.subscribers.publish(|| {
                let mut graphs: Vec<TermId> = inserts.iter().chain(&deletes).map(|q| q.g).collect();
                graphs.extend(
                    graph_changes(&self.txn.ops)
                        .into_keys()
                        .filter(|g| *g != TermId::DEFAULT_GRAPH),
                );
                graphs.sort_unstable();
                graphs.dedup();
                let cap = crate::COMMIT_EVENT_QUAD_CAP;
                crate::CommitEvent {
                    data_version,
                    graphs_touched: graphs,
                    inserted: inserts.len() as u64,
                    removed: deletes.len() as u64,
                    added: inserts.iter().take(cap).copied().collect(),
                    removed_quads: deletes.iter().take(cap).copied().collect(),
                    truncated: inserts.len() > cap || deletes.len() > cap,
                }
            });
        }
        Ok(CommitSummary {
            inserted: inserts.len() as u64,
            removed: deletes.len() as u64,
            new_terms: new_terms as u64,
            data_version,
        })
    }

    /// Maintains the per-(graph, predicate) and per-graph subject bitmaps.
    ///
    /// Adding is idempotent (a union), so inserts are added unconditionally. A subject leaves a set only if
    /// no quad with the same (g, s, p) — resp. (g, s) — remains after the commit: that needs a look at the
    /// base state unless an insert of this commit keeps the group alive.
    fn subject_bitmaps(&mut self, inserts: &[IdQuad], deletes: &[IdQuad]) -> Result<()> {
        let mut last: Option<(TermId, TermId, TermId)> = None;
        for q in inserts {
            if last.map(|(g, s, _)| (g, s)) != Some((q.g, q.s)) {
                self.delta(BitmapKey::Graph(q.g)).adds.insert(q.s.0);
            }
            if last != Some((q.g, q.s, q.p)) {
                self.delta(BitmapKey::Predicate(q.g, q.p))
                    .adds
                    .insert(q.s.0);
            }
            last = Some((q.g, q.s, q.p));
        }
        if deletes.is_empty() {
            return Ok(());
        }
        let inner: &Inner = self.txn.inner;
        let mut counter = PrefixCounter::new(&inner.db, inner.cf("spo")?, inner.cf("gspo")?);
        let inserted = |g, s, p: Option<TermId>| {
            let key = |q: &IdQuad| (q.g, q.s, p.map(|_| q.p));
            let target = (g, s, p);
            let i = inserts.partition_point(|q| key(q) < target);
            inserts.get(i).is_some_and(|q| key(q) == target)
        };
        // Groups by (g, s, p), then by (g, s); `deletes` is sorted by (g, s, p, o).
        for level_p in [true, false] {
            let mut i = 0;
            while i < deletes.len() {
                let q = deletes[i];
                let same = |o: &IdQuad| o.g == q.g && o.s == q.s && (!level_p || o.p == q.p);
                let mut j = i;
                while j < deletes.len() && same(&deletes[j]) {
                    j += 1;
                }
                let group = j - i;
                let p = level_p.then_some(q.p);
                if !inserted(q.g, q.s, p) {
                    let parts: &[TermId] = if level_p { &[q.s, q.p] } else { &[q.s] };
                    if counter.count(q.g, parts, group + 1, |_| {})? <= group {
                        let k = if level_p {
                            BitmapKey::Predicate(q.g, q.p)
                        } else {
                            BitmapKey::Graph(q.g)
                        };
                        self.delta(k).removes.insert(q.s.0);
                    }
                }
                i = j;
            }
        }
        Ok(())
    }

    /// Maintains distinct-object counters and (predicate, object) bitmaps, grouped by (g, p, o).
    fn object_groups(&mut self, inserts: &[IdQuad], deletes: &[IdQuad]) -> Result<()> {
        let inner: &Inner = self.txn.inner;
        let rdf_type = self.txn.rdf_type_id()?;
        let mut changes: Vec<(IdQuad, bool)> = inserts
            .iter()
            .map(|q| (*q, true))
            .chain(deletes.iter().map(|q| (*q, false)))
            .collect();
        changes.sort_unstable_by_key(|(q, _)| (q.g, q.p, q.o, q.s));

        // Which IRI-object pairs already have a bitmap (one batched read).
        let mut pair_keys: Vec<[u8; 25]> = Vec::new();
        for (q, _) in &changes {
            if q.o.is_iri() && Some(q.p) != rdf_type {
                let k = bitmap_key::predicate_object(q.g, q.p, q.o);
                if pair_keys.last() != Some(&k) {
                    pair_keys.push(k);
                }
            }
        }
        let bitmaps_cf = inner.cf(keys::CF_BITMAPS)?;
        let mut tracked_pairs = std::collections::HashSet::new();
        for (k, v) in pair_keys.iter().zip(inner.db.batched_multi_get_cf(
            bitmaps_cf,
            pair_keys.iter(),
            true,
        )) {
            if v?.is_some() {
                tracked_pairs.insert(*k);
            }
        }

        let base_empty = self.txn.base_empty;
        let mut counter = PrefixCounter::new(&inner.db, inner.cf("pos")?, inner.cf("gpos")?);
        let mut i = 0;
        while i < changes.len() {
            let q = changes[i].0;
            let mut j = i;
            while j < changes.len()
                && (changes[j].0.g, changes[j].0.p, changes[j].0.o) == (q.g, q.p, q.o)
            {
                j += 1;
            }
            let group = &changes[i..j];
            let n_ins = group.iter().filter(|(_, ins)| *ins).count();
            let n_del = group.len() - n_ins;
            let pair_key = bitmap_key::predicate_object(q.g, q.p, q.o);
            let tracked =
                q.o.is_iri() && (Some(q.p) == rdf_type || tracked_pairs.contains(&pair_key));
            let may_materialize = q.o.is_iri() && !tracked && n_ins > 0;
            let cap = if may_materialize {
                PO_BITMAP_THRESHOLD + n_del
            } else {
                n_del + 1
            };
            let before = if base_empty {
                0
            } else {
                counter.count(q.g, &[q.p, q.o], cap, |_| {})?
            };
            // With `before` capped at >= n_del + 1, "after > 0" is still decided exactly.
            let after = before + n_ins - n_del.min(before + n_ins);
            let d = i64::from(after > 0) - i64::from(before > 0);
            if d != 0 {
                self.count(Counter::PredicateObjects(q.g, q.p), d);
            }
            if tracked {
                let delta = self.delta(BitmapKey::PredicateObject(q.g, q.p, q.o));
                for (c, ins) in group {
                    if *ins {
                        delta.adds.insert(c.s.0);
                    } else {
                        delta.removes.insert(c.s.0);
                    }
                }
            } else if may_materialize && after >= PO_BITMAP_THRESHOLD {
                // First bitmap of this pair: the full set, written as a base value.
                let mut set = roaring::RoaringTreemap::new();
                if !base_empty {
                    let subject_at = if q.g == TermId::DEFAULT_GRAPH { 16 } else { 24 };
                    counter.count(q.g, &[q.p, q.o], usize::MAX, |k| {
                        if let Some(s) = TermId::from_be_slice(&k[subject_at..]) {
                            set.insert(s.0);
                        }
                    })?;
                }
                for (c, ins) in group {
                    if *ins {
                        set.insert(c.s.0);
                    } else {
                        set.remove(c.s.0);
                    }
                }
                self.batch
                    .put_cf(bitmaps_cf, pair_key, BitmapDelta::set_to_bytes(&set));
            }
            i = j;
        }
        Ok(())
    }
}
