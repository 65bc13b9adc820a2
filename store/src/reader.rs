//! Snapshot readers: pattern scans, bitmaps, statistics and term externalization.

use std::sync::{Arc, Mutex};

use oxrdf::{GraphNameRef, Quad, QuadRef, Term, TermRef};
use roaring::RoaringTreemap;
use rocksdb::{DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode, DB};

use crate::error::{Result, StoreError};
use crate::keys::{self, bitmap_key, stat_key, IdQuad, Index};
use crate::merge::{decode_counter, BitmapDelta};
use crate::store::{lock, Inner};
use crate::term::{decode_term, encode_term, term_key, TermId};

/// Batches with fewer dictionary misses than this use point reads only.
const DENSE_BATCH_MIN: usize = 64;
/// A batch is resolved by a range scan when its id range holds at most this many ids per wanted term.
const DENSE_SPAN_FACTOR: u64 = 16;

/// Which graphs a pattern scan covers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GraphSel {
    /// The default graph only.
    Default,
    /// One named graph.
    Named(TermId),
    /// Every named graph (not the default graph).
    AnyNamed,
    /// The default graph and every named graph.
    All,
}

/// Store-wide counters, exact after every commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Quads in all graphs.
    pub quads: u64,
    /// Named graphs, including empty ones.
    pub named_graphs: u64,
    /// Dictionary entries (inline terms are not counted).
    pub terms: u64,
}

/// Counts of stored bitmaps, for `tern stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitmapStats {
    /// Per-(graph, predicate) subject sets.
    pub predicate: u64,
    /// Per-(graph, predicate, object) subject sets.
    pub predicate_object: u64,
    /// Per-graph subject sets.
    pub graph: u64,
    /// Serialized bytes of all of them.
    pub bytes: u64,
}

/// Per-(graph, predicate) counters for the query planner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PredicateStats {
    /// Graph ([`TermId::DEFAULT_GRAPH`] for the default graph).
    pub graph: TermId,
    /// Predicate.
    pub predicate: TermId,
    /// Quads with this predicate in this graph.
    pub quads: u64,
    /// Distinct subjects (the cardinality of [`Reader::subjects_with_in`]).
    pub distinct_subjects: u64,
    /// Distinct objects.
    pub distinct_objects: u64,
}

/// A consistent, read-only view of the store as of its creation. Never sees part of a transaction.
pub struct Reader {
    // Field order matters: pooled iterators read `snapshot`, which borrows `inner.db`; each must be
    // dropped before the next.
    cursors: Mutex<Vec<(&'static str, PooledIter)>>,
    snapshot: SnapshotWithThreadMode<'static, DB>,
    inner: Arc<Inner>,
}

/// Iterators kept per reader for reuse. Creating a RocksDB iterator costs microseconds (it pins a
/// version, builds a merging iterator over every file); a query that looks up one subject per input row
/// would spend most of its time there. Seeking an existing iterator is far cheaper.
const CURSOR_POOL: usize = 16;

/// A raw iterator on this reader's snapshot.
pub(crate) struct PooledIter(DBRawIteratorWithThreadMode<'static, DB>);

// SAFETY: a RocksDB iterator may move between threads as long as it is not used concurrently; a pooled
// iterator is either in the reader's mutex-protected pool or owned by exactly one `PrefixIter`.
unsafe impl Send for PooledIter {}

impl Reader {
    pub(crate) fn new(inner: Arc<Inner>) -> Reader {
        let snapshot = inner.db.snapshot();
        // SAFETY: the snapshot borrows `inner.db`, which lives in the `Arc` this struct also owns and that
        // is dropped after the snapshot (field order); the DB never moves inside the `Arc`.
        let snapshot = unsafe {
            std::mem::transmute::<SnapshotWithThreadMode<'_, DB>, SnapshotWithThreadMode<'static, DB>>(
                snapshot,
            )
        };
        Reader {
            cursors: Mutex::new(Vec::new()),
            snapshot,
            inner,
        }
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get_cf(self.inner.cf(cf)?, key)?)
    }

    fn counter(&self, key: &[u8]) -> Result<u64> {
        match self.get(keys::CF_STATS, key)? {
            None => Ok(0),
            Some(v) => decode_counter(&v)
                .map(|c| c.max(0) as u64)
                .ok_or_else(|| StoreError::Corrupt("bad counter value".into())),
        }
    }

    fn bitmap(&self, key: &[u8]) -> Result<Option<RoaringTreemap>> {
        match self.get(keys::CF_BITMAPS, key)? {
            None => Ok(None),
            Some(v) => BitmapDelta::from_bytes(&v)
                .map(|d| Some(d.adds))
                .ok_or_else(|| StoreError::Corrupt("bad bitmap value".into())),
        }
    }

    pub(crate) fn raw_iter(&self, cf: &'static str, prefix: &[u8]) -> Result<PrefixIter<'_>> {
        let pooled = {
            let mut pool = lock(&self.cursors);
            pool.iter()
                .rposition(|(name, _)| *name == cf)
                .map(|i| pool.swap_remove(i).1)
        };
        let mut iter = match pooled {
            Some(it) => it,
            None => {
                let iter = self
                    .snapshot
                    .raw_iterator_cf_opt(self.inner.cf(cf)?, ReadOptions::default());
                // SAFETY: the iterator reads `self.snapshot`, which lives as long as `self` (see the field
                // order of `Reader`); it is dropped with the pool or handed back to it, never leaked out.
                PooledIter(unsafe {
                    std::mem::transmute::<
                        DBRawIteratorWithThreadMode<'_, DB>,
                        DBRawIteratorWithThreadMode<'static, DB>,
                    >(iter)
                })
            }
        };
        iter.0.seek(prefix);
        Ok(PrefixIter {
            iter: Some(iter),
            prefix: prefix.to_vec(),
            cf,
            pool: &self.cursors,
            started: false,
        })
    }

    /// Streams the quads matching a pattern, in the order of the index that serves it.
    ///
    /// Every combination of bound positions is one prefix scan (see [`Index::for_pattern`]); dropping the
    /// iterator stops the scan.
    pub fn quads_for_pattern(
        &self,
        s: Option<TermId>,
        p: Option<TermId>,
        o: Option<TermId>,
        graph: GraphSel,
    ) -> QuadIter<'_> {
        let scans = match graph {
            GraphSel::Default => vec![Some(TermId::DEFAULT_GRAPH)],
            GraphSel::Named(g) => vec![Some(g)],
            GraphSel::AnyNamed => vec![None],
            GraphSel::All => vec![Some(TermId::DEFAULT_GRAPH), None],
        };
        QuadIter {
            reader: self,
            pending: scans
                .into_iter()
                .rev()
                .map(|g| Index::for_pattern(s, p, o, g))
                .collect(),
            current: None,
        }
    }

    /// Number of quads matching a pattern (a scan; use statistics and bitmaps for estimates).
    pub fn count(
        &self,
        s: Option<TermId>,
        p: Option<TermId>,
        o: Option<TermId>,
        graph: GraphSel,
    ) -> Result<u64> {
        let mut n = 0;
        for q in self.quads_for_pattern(s, p, o, graph) {
            q?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether the store holds this quad.
    pub fn contains(&self, quad: QuadRef<'_>) -> Result<bool> {
        let Some(q) = self.quad_ids(quad)? else {
            return Ok(false);
        };
        let index = if q.in_default_graph() {
            Index::Spo
        } else {
            Index::Gspo
        };
        let mut buf = [0u8; 32];
        Ok(self
            .get(index.cf_name(), index.encode(&q, &mut buf))?
            .is_some())
    }

    /// Subjects having predicate `p` in the default graph.
    pub fn subjects_with(&self, p: TermId) -> Result<RoaringTreemap> {
        self.subjects_with_in(TermId::DEFAULT_GRAPH, p)
    }

    /// Subjects having predicate `p` in graph `g`.
    pub fn subjects_with_in(&self, g: TermId, p: TermId) -> Result<RoaringTreemap> {
        Ok(self
            .bitmap(&bitmap_key::predicate(g, p))?
            .unwrap_or_default())
    }

    /// Subjects having `p` with object `o` in the default graph, if that pair has a bitmap.
    ///
    /// Pairs with `rdf:type` always have one; other pairs with an IRI object get one once they reach
    /// [`crate::PO_BITMAP_THRESHOLD`] subjects. `None` means "no bitmap: scan the POS index".
    pub fn subjects_with_object(&self, p: TermId, o: TermId) -> Result<Option<RoaringTreemap>> {
        self.subjects_with_object_in(TermId::DEFAULT_GRAPH, p, o)
    }

    /// [`Reader::subjects_with_object`] for graph `g`.
    pub fn subjects_with_object_in(
        &self,
        g: TermId,
        p: TermId,
        o: TermId,
    ) -> Result<Option<RoaringTreemap>> {
        self.bitmap(&bitmap_key::predicate_object(g, p, o))
    }

    /// Subjects of graph `g` (the default graph with [`TermId::DEFAULT_GRAPH`]).
    pub fn graph_subjects(&self, g: TermId) -> Result<RoaringTreemap> {
        Ok(self.bitmap(&bitmap_key::graph(g))?.unwrap_or_default())
    }

    /// Every stored bitmap as `(key, set)`; used by `verify` and `tern stats`.
    pub(crate) fn all_bitmaps(&self) -> Result<Vec<(Vec<u8>, RoaringTreemap)>> {
        let mut out = Vec::new();
        let mut iter = self.raw_iter(keys::CF_BITMAPS, &[])?;
        while let Some((k, v)) = iter.next_entry()? {
            let set = BitmapDelta::from_bytes(v)
                .ok_or_else(|| StoreError::Corrupt("bad bitmap value".into()))?
                .adds;
            out.push((k.to_vec(), set));
        }
        Ok(out)
    }

    /// Number and total size of stored bitmaps by kind.
    pub fn bitmap_stats(&self) -> Result<BitmapStats> {
        let mut out = BitmapStats::default();
        let mut iter = self.raw_iter(keys::CF_BITMAPS, &[])?;
        while let Some((k, v)) = iter.next_entry()? {
            match k.first() {
                Some(b'p') => out.predicate += 1,
                Some(b'o') => out.predicate_object += 1,
                _ => out.graph += 1,
            }
            out.bytes += v.len() as u64;
        }
        Ok(out)
    }

    /// Store-wide statistics.
    pub fn statistics(&self) -> Result<Statistics> {
        Ok(Statistics {
            quads: self.counter(stat_key::QUADS)?,
            named_graphs: self.counter(stat_key::NAMED_GRAPHS)?,
            terms: self.counter(stat_key::TERMS)?,
        })
    }

    /// Number of quads in all graphs.
    pub fn len(&self) -> Result<u64> {
        self.counter(stat_key::QUADS)
    }

    /// Whether the store holds no quad.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Quads in graph `g`.
    pub fn graph_len(&self, g: TermId) -> Result<u64> {
        self.counter(&stat_key::graph_quads(g))
    }

    /// Statistics of predicate `p` in graph `g`.
    pub fn predicate_stats(&self, g: TermId, p: TermId) -> Result<PredicateStats> {
        Ok(PredicateStats {
            graph: g,
            predicate: p,
            quads: self.counter(&stat_key::predicate_quads(g, p))?,
            distinct_subjects: self.subjects_with_in(g, p)?.len(),
            distinct_objects: self.counter(&stat_key::predicate_objects(g, p))?,
        })
    }

    /// Statistics of every (graph, predicate) pair with at least one quad.
    pub fn all_predicate_stats(&self) -> Result<Vec<PredicateStats>> {
        let mut out = Vec::new();
        let mut iter = self.raw_iter(keys::CF_STATS, b"P")?;
        while let Some((k, v)) = iter.next_entry()? {
            let quads =
                decode_counter(v).ok_or_else(|| StoreError::Corrupt("bad counter".into()))?;
            if quads <= 0 {
                continue;
            }
            let (Some(g), Some(p)) = (
                TermId::from_be_slice(&k[1..]),
                TermId::from_be_slice(&k[9..]),
            ) else {
                return Err(StoreError::Corrupt("bad statistics key".into()));
            };
            out.push(self.predicate_stats(g, p)?);
        }
        Ok(out)
    }

    /// Named graphs, including empty ones created explicitly.
    pub fn named_graphs(&self) -> Result<Vec<TermId>> {
        let mut out = Vec::new();
        let mut iter = self.raw_iter(keys::CF_GRAPHS, &[])?;
        while let Some((k, _)) = iter.next_entry()? {
            out.push(
                TermId::from_be_slice(k)
                    .ok_or_else(|| StoreError::Corrupt("bad graph key".into()))?,
            );
        }
        Ok(out)
    }

    /// Whether named graph `g` exists.
    pub fn contains_named_graph(&self, g: TermId) -> Result<bool> {
        Ok(self.get(keys::CF_GRAPHS, &g.to_be_bytes())?.is_some())
    }

    /// The id of a term, if the store knows it (internalize). Inline terms always have one.
    pub fn term_id(&self, term: TermRef<'_>) -> Result<Option<TermId>> {
        if let Some(id) = TermId::inline(term) {
            return Ok(Some(id));
        }
        let mut buf = Vec::new();
        encode_term(term, &mut buf);
        if let Some(&id) = lock(&self.inner.term_cache).get(buf.as_slice()) {
            return Ok(Some(id));
        }
        match self.get(keys::CF_TERM2ID, term_key(&buf).as_ref())? {
            None => Ok(None),
            Some(v) => {
                Ok(Some(TermId::from_be_slice(&v).ok_or_else(|| {
                    StoreError::Corrupt("bad term id".into())
                })?))
            }
        }
    }

    /// The ids of a quad's terms, or `None` if one of them is unknown (so the quad is not stored).
    pub fn quad_ids(&self, quad: QuadRef<'_>) -> Result<Option<IdQuad>> {
        let g = match quad.graph_name {
            GraphNameRef::DefaultGraph => Some(TermId::DEFAULT_GRAPH),
            GraphNameRef::NamedNode(n) => self.term_id(n.into())?,
            GraphNameRef::BlankNode(b) => self.term_id(b.into())?,
        };
        let s = self.term_id(quad.subject.into())?;
        let p = self.term_id(quad.predicate.into())?;
        let o = self.term_id(quad.object)?;
        Ok(match (s, p, o, g) {
            (Some(s), Some(p), Some(o), Some(g)) => Some(IdQuad::new(s, p, o, g)),
            _ => None,
        })
    }

    /// The term of an id (externalize).
    pub fn term(&self, id: TermId) -> Result<Term> {
        if let Some(t) = id.decode_inline() {
            return Ok(t);
        }
        if let Some(t) = lock(&self.inner.id_cache).get(&id) {
            return Ok(t.clone());
        }
        let bytes = self
            .get(keys::CF_ID2TERM, &id.to_be_bytes())?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("term id {} has no dictionary entry", id.0))
            })?;
        let term = decode_term(&bytes)
            .ok_or_else(|| StoreError::Corrupt(format!("undecodable term for id {}", id.0)))?;
        lock(&self.inner.id_cache).put(id, term.clone());
        Ok(term)
    }

    /// Externalizes many ids at once: one cache lock and one batched read for the misses.
    pub fn terms(&self, ids: &[TermId]) -> Result<Vec<Term>> {
        let mut out: Vec<Option<Term>> = Vec::with_capacity(ids.len());
        let mut misses = Vec::new();
        {
            let cache = lock(&self.inner.id_cache);
            for (i, &id) in ids.iter().enumerate() {
                let t = id.decode_inline().or_else(|| cache.get(&id).cloned());
                if t.is_none() {
                    misses.push(i);
                }
                out.push(t);
            }
        }
        if misses.len() >= DENSE_BATCH_MIN {
            misses = self.terms_by_scan(ids, misses, &mut out)?;
        }
        if !misses.is_empty() {
            let cf = self.inner.cf(keys::CF_ID2TERM)?;
            let keys: Vec<[u8; 8]> = misses.iter().map(|&i| ids[i].to_be_bytes()).collect();
            let values = self.snapshot.multi_get_cf(keys.iter().map(|k| (cf, k)));
            let mut cache = lock(&self.inner.id_cache);
            for (&i, v) in misses.iter().zip(values) {
                let bytes = v?.ok_or_else(|| {
                    StoreError::Corrupt(format!("term id {} has no dictionary entry", ids[i].0))
                })?;
                let term = decode_term(&bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("undecodable term for id {}", ids[i].0))
                })?;
                cache.put(ids[i], term.clone());
                out[i] = Some(term);
            }
        }
        out.into_iter()
            .map(|t| t.ok_or_else(|| StoreError::Corrupt("unresolved term".into())))
            .collect()
    }

    /// Resolves dense runs of `misses` with one sequential dictionary scan instead of point reads (ids
    /// of a result column are often close together: index scans return them sorted). Returns the misses
    /// left over.
    fn terms_by_scan(
        &self,
        ids: &[TermId],
        mut misses: Vec<usize>,
        out: &mut [Option<Term>],
    ) -> Result<Vec<usize>> {
        misses.sort_unstable_by_key(|&i| ids[i]);
        let (Some(&first), Some(&last)) = (misses.first(), misses.last()) else {
            return Ok(misses);
        };
        let (lo, hi) = (ids[first].0, ids[last].0);
        // Scanning pays off while the range holds at most a few entries per wanted id.
        if (hi - lo) / (misses.len() as u64) > DENSE_SPAN_FACTOR || (lo ^ hi) >> 56 != 0 {
            return Ok(misses);
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound((hi + 1).to_be_bytes().to_vec());
        let mut iter = self
            .snapshot
            .raw_iterator_cf_opt(self.inner.cf(keys::CF_ID2TERM)?, opts);
        iter.seek(lo.to_be_bytes());
        let mut k = 0;
        while k < misses.len() && iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let Some(id) = TermId::from_be_slice(key) else {
                return Err(StoreError::Corrupt("bad dictionary key".into()));
            };
            while k < misses.len() && ids[misses[k]] < id {
                k += 1; // not in the dictionary: left for the point-read path to report
            }
            while k < misses.len() && ids[misses[k]] == id {
                out[misses[k]] = Some(decode_term(value).ok_or_else(|| {
                    StoreError::Corrupt(format!("undecodable term for id {}", id.0))
                })?);
                k += 1;
            }
            iter.next();
        }
        iter.status()?;
        let mut cache = lock(&self.inner.id_cache);
        for &i in &misses {
            if let Some(t) = &out[i] {
                cache.put(ids[i], t.clone());
            }
        }
        Ok(misses.into_iter().filter(|&i| out[i].is_none()).collect())
    }

    /// Externalizes a quad of ids.
    pub fn quad(&self, q: &IdQuad) -> Result<Quad> {
        externalize_quad(self, &[q.s, q.p, q.o, q.g])
    }

    /// Externalizes quads in batches (for dumps): one batched dictionary read per call.
    pub fn quads(&self, qs: &[IdQuad]) -> Result<Vec<Quad>> {
        let ids: Vec<TermId> = qs.iter().flat_map(|q| [q.s, q.p, q.o, q.g]).collect();
        let mut terms = self.terms_with_default(&ids)?.into_iter();
        let mut out = Vec::with_capacity(qs.len());
        while let (Some(s), Some(p), Some(o), Some(g)) =
            (terms.next(), terms.next(), terms.next(), terms.next())
        {
            out.push(build_quad(s, p, o, g)?);
        }
        Ok(out)
    }

    fn terms_with_default(&self, ids: &[TermId]) -> Result<Vec<Option<Term>>> {
        // The default graph id has no term; resolve the rest in one batch.
        let real: Vec<TermId> = ids
            .iter()
            .copied()
            .filter(|&i| i != TermId::DEFAULT_GRAPH)
            .collect();
        let mut resolved = self.terms(&real)?.into_iter();
        Ok(ids
            .iter()
            .map(|&i| {
                if i == TermId::DEFAULT_GRAPH {
                    None
                } else {
                    resolved.next()
                }
            })
            .collect())
    }
}

fn externalize_quad(reader: &Reader, ids: &[TermId; 4]) -> Result<Quad> {
    let mut t = reader.terms_with_default(ids)?.into_iter();
    match (t.next(), t.next(), t.next(), t.next()) {
        (Some(s), Some(p), Some(o), Some(g)) => build_quad(s, p, o, g),
        _ => Err(StoreError::Corrupt("short term batch".into())),
    }
}

fn build_quad(s: Option<Term>, p: Option<Term>, o: Option<Term>, g: Option<Term>) -> Result<Quad> {
    let bad = |what: &str| StoreError::Corrupt(format!("quad with invalid {what}"));
    let subject: oxrdf::NamedOrBlankNode = match s.ok_or_else(|| bad("subject"))? {
        Term::NamedNode(n) => n.into(),
        Term::BlankNode(b) => b.into(),
        _ => return Err(bad("subject")),
    };
    let Some(Term::NamedNode(predicate)) = p else {
        return Err(bad("predicate"));
    };
    let object = o.ok_or_else(|| bad("object"))?;
    let graph = match g {
        None => oxrdf::GraphName::DefaultGraph,
        Some(Term::NamedNode(n)) => n.into(),
        Some(Term::BlankNode(b)) => b.into(),
        Some(_) => return Err(bad("graph name")),
    };
    Ok(Quad::new(subject, predicate, object, graph))
}

/// A raw prefix iterator over one column family of a snapshot; hands its iterator back to the reader's
/// pool when dropped.
pub(crate) struct PrefixIter<'a> {
    iter: Option<PooledIter>,
    prefix: Vec<u8>,
    cf: &'static str,
    pool: &'a Mutex<Vec<(&'static str, PooledIter)>>,
    started: bool,
}

impl PrefixIter<'_> {
    /// The next `(key, value)`, or `None` at the end of the prefix range.
    pub(crate) fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        let Some(PooledIter(iter)) = self.iter.as_mut() else {
            return Ok(None);
        };
        if self.started {
            iter.next();
        }
        self.started = true;
        if iter.valid() {
            match (iter.key(), iter.value()) {
                (Some(k), Some(v)) if k.starts_with(&self.prefix) => Ok(Some((k, v))),
                _ => Ok(None),
            }
        } else {
            iter.status()?;
            Ok(None)
        }
    }
}

impl Drop for PrefixIter<'_> {
    fn drop(&mut self) {
        if let Some(iter) = self.iter.take() {
            if iter.0.status().is_ok() {
                let mut pool = lock(self.pool);
                if pool.len() < CURSOR_POOL {
                    pool.push((self.cf, iter));
                }
            }
        }
    }
}

/// Streaming result of [`Reader::quads_for_pattern`].
pub struct QuadIter<'a> {
    reader: &'a Reader,
    /// Scans still to run, last one first.
    pending: Vec<(Index, Vec<u8>)>,
    current: Option<(Index, PrefixIter<'a>)>,
}

impl Iterator for QuadIter<'_> {
    type Item = Result<IdQuad>;

    fn next(&mut self) -> Option<Result<IdQuad>> {
        loop {
            if let Some((index, iter)) = &mut self.current {
                match iter.next_entry() {
                    Ok(Some((key, _))) => {
                        return Some(index.decode(key).ok_or_else(|| {
                            StoreError::Corrupt(format!("bad key length in {}", index.cf_name()))
                        }));
                    }
                    Ok(None) => self.current = None,
                    Err(e) => {
                        self.current = None;
                        self.pending.clear();
                        return Some(Err(e));
                    }
                }
            }
            let (index, prefix) = self.pending.pop()?;
            match self.reader.raw_iter(index.cf_name(), &prefix) {
                Ok(iter) => self.current = Some((index, iter)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
