//! Bulk loading: parallel dictionary encoding, sorted runs, SST files ingested into RocksDB, and bitmaps and
//! statistics computed from the sorted streams.
//!
//! Life of a bulk load:
//! 1. Workers encode quads with [`BulkEncoder`]s and hand id quads to [`BulkLoad::add`]. The buffer is
//!    sorted, deduplicated, stripped of quads the store already holds, and spilled to a run file when it
//!    reaches the memory budget.
//! 2. [`BulkLoad::finish`] writes a `bulk_pending` marker (naming the temporary directory and the first new
//!    dictionary counter), then writes SST files on two threads (`id2term` in parts, `term2id`, one file per
//!    index order and column family) while a sync thread syncs and ingests them. Bitmaps and counters are
//!    computed on the way.
//! 3. One final write batch adds bitmaps (merge operands), counters, graph entries, the id counter and data
//!    version, and deletes the marker. That batch is the commit point.
//!
//! A failure or crash before the final batch is rolled back by [`recover`] (called by `Store::open`): the
//! run files list exactly the quads that were new, and new dictionary ids are exactly those at or above the
//! marker's counter. Concurrent readers may see index entries appear during ingestion (seconds), but counters
//! and bitmaps only change with the final batch; use a transaction when readers must never see that.

mod bytesort;
mod dict;
mod packed;
mod runs;
mod sst;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use oxrdf::vocab::rdf;
use roaring::{RoaringBitmap, RoaringTreemap};
use rocksdb::{IngestExternalFileOptions, WriteBatch, WriteOptions};

pub use dict::BulkEncoder;
use dict::SharedDict;
use packed::{Marks, Packed, Source, Triples};
use runs::{merge_runs, write_run, Order, RunReader};
pub use sst::SstWriter;
use sst::Unsynced;

use crate::error::{Result, StoreError};
use crate::keys::{self, bitmap_key, stat_key, IdQuad, Index};
use crate::merge::{decode_counter, BitmapDelta};
use crate::scan::{existing, PrefixCounter};
use crate::store::Inner;
use crate::term::{encode_term, term_key, TermId};
use crate::transaction::PO_BITMAP_THRESHOLD;
use crate::{FastMap, FastSet};

/// Metadata key of a bulk load in progress: `u64 BE first new counter | temporary directory path`.
const META_BULK_PENDING: &[u8] = b"bulk_pending";
/// Prefix of bulk load temporary directories inside the store directory.
const TMP_PREFIX: &str = "bulk-tmp-";
/// File in a bulk load's temporary directory saying the store held no quad before it: a rollback then
/// empties the index column families instead of reading run files.
const ALL_NEW: &str = "all-new";
/// The collector marks terms for packing as quads arrive only when the store's dictionary counter starts
/// at most here: the marks take a byte per counter from zero.
const PACK_MARKS_MAX_FIRST: u64 = 1 << 20;
/// Bounds of the `id2term` parts' sizes in new-term bytes: each part takes a third of the bytes left
/// (`NewTerms::split_decreasing`). Parts fill the gaps the other tasks leave, and the last ones to start
/// are short. With equal parts of 4 MiB, a BSBM load ended with one core idle for ~20 ms beside the last
/// part; with 16 equal parts, the ingestion of each file (~1 ms of CPU, while both cores are busy)
/// queued up behind the last tasks.
const ID2TERM_PART_MIN: usize = 512 << 10;
const ID2TERM_PART_MAX: usize = 4 << 20;
/// Past this many 4 MiB parts, parts grow instead: each is a file kept open by RocksDB, and loads add up.
const ID2TERM_MAX_PARTS: usize = 24;

/// Bulk load settings.
#[derive(Clone, Debug)]
pub struct BulkOptions {
    /// Memory budget for buffered quads before they spill to sorted run files. The dictionary of the
    /// terms seen comes on top.
    pub max_memory: usize,
}

impl Default for BulkOptions {
    fn default() -> Self {
        BulkOptions {
            max_memory: 1 << 30,
        }
    }
}

/// What a bulk load did, with the time spent in its phases.
#[derive(Clone, Debug, Default)]
pub struct BulkSummary {
    /// Quads received from the encoders (before deduplication).
    pub received: u64,
    /// Quads that were new to the store.
    pub inserted: u64,
    /// Terms added to the dictionary.
    pub new_terms: u64,
    /// Run files spilled to disk.
    pub spilled_runs: usize,
    /// Seconds spent per phase: pack, each dictionary file and index pass, the passes (wall), the commit.
    pub phases: Vec<(&'static str, f64)>,
    /// Data version after the load.
    pub data_version: u64,
}

/// A bulk load in progress. Holds the writer lock until dropped or finished.
pub struct BulkLoad<'a> {
    inner: &'a Arc<Inner>,
    _guard: MutexGuard<'a, ()>,
    dict: Arc<SharedDict>,
    tmp: PathBuf,
    base_empty: bool,
    first_new_counter: u64,
    buffer: Vec<IdQuad>,
    /// The quads received so far, 12 bytes each, for as long as they fit [`Triples`] (then `buffer` is
    /// empty) and no run was spilled. Only kept with `marks`, which give the counters' kinds back.
    triples: Option<Triples>,
    /// The packing marks of the buffered quads while they may be packed (see [`Marks`]): kept for stores
    /// with few terms (so the marks stay small) until the first spill.
    marks: Option<Box<Marks>>,
    run_capacity: usize,
    runs: Vec<PathBuf>,
    received: u64,
    inserted: u64,
    /// Whether some new quad is in a named graph (so the graph-last indexes need passes).
    has_named: bool,
    max_memory: usize,
}

/// The start of a bulk load into a store that is still being created (on another thread): encoders and
/// buffered quads, taken over by [`crate::Store::bulk_loader_from`] once the store is open. Creating a store
/// (17 column families, each a synced manifest write, and the options file) takes ~25 ms, a sixteenth of
/// a BSBM 1000 load; parsing need not wait for it.
pub struct DetachedBulkLoad {
    dict: Arc<SharedDict>,
    quads: Vec<IdQuad>,
}

impl Default for DetachedBulkLoad {
    fn default() -> Self {
        DetachedBulkLoad {
            dict: Arc::new(SharedDict::new(None, crate::store::FIRST_COUNTER)),
            quads: Vec::new(),
        }
    }
}

impl DetachedBulkLoad {
    /// A load for a store that does not exist yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new encoder for a parser worker; it keeps working after the load is taken over.
    pub fn encoder(&self) -> BulkEncoder {
        BulkEncoder::new(Arc::clone(&self.dict))
    }

    /// Takes a batch of encoded quads (leaving `quads` empty for reuse). They are only kept: the store's
    /// [`BulkLoad`] counts and sorts them when it takes over.
    pub fn add(&mut self, quads: &mut Vec<IdQuad>) {
        self.quads.append(quads);
    }

    /// Bytes of quads held: a caller that cannot wait for the store should stop adding well before its
    /// memory budget (the store's [`BulkLoad`] spills to disk; this cannot).
    pub fn memory_bytes(&self) -> usize {
        self.quads.len() * std::mem::size_of::<IdQuad>()
    }
}

impl<'a> BulkLoad<'a> {
    pub(crate) fn new(
        inner: &'a Arc<Inner>,
        guard: MutexGuard<'a, ()>,
        options: &BulkOptions,
        detached: Option<DetachedBulkLoad>,
    ) -> Result<Self> {
        let stats = inner.cf(keys::CF_STATS)?;
        let counter = |key: &[u8]| -> Result<i64> {
            Ok(match inner.db.get_cf(stats, key)? {
                Some(v) => {
                    decode_counter(&v).ok_or_else(|| StoreError::Corrupt("bad counter".into()))?
                }
                None => 0,
            })
        };
        let base_empty = counter(stat_key::QUADS)? == 0;
        let terms_empty = counter(stat_key::TERMS)? == 0;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = inner
            .path
            .join(format!("{TMP_PREFIX}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", tmp.display())))?;
        // A quad takes 32 bytes; the buffer gets a third of the budget (the dictionary and SST writers need
        // the rest). Reserved up front, for the 12-byte triples while the quads fit them, else for the
        // buffer (when the triples are expanded): growing by doubling would copy it and overshoot the
        // budget.
        let run_capacity = (options.max_memory / 3 / 32).max(1 << 16);
        let first_new_counter = inner.next_id.load(Ordering::Relaxed);
        let (dict, mut quads) = match detached {
            Some(detached) => {
                // Its ids were given as in a new store: valid only if the store is still as created.
                if !(base_empty && terms_empty && first_new_counter == crate::store::FIRST_COUNTER)
                {
                    return Err(StoreError::NotNew(inner.path.clone()));
                }
                (detached.dict, detached.quads)
            }
            None => (
                Arc::new(SharedDict::new(
                    (!terms_empty).then(|| Arc::clone(inner)),
                    first_new_counter,
                )),
                Vec::new(),
            ),
        };
        let mut load = BulkLoad {
            inner,
            _guard: guard,
            dict,
            tmp,
            base_empty,
            first_new_counter,
            buffer: Vec::new(),
            triples: (first_new_counter <= PACK_MARKS_MAX_FIRST)
                .then(|| Triples::with_capacity(run_capacity)),
            marks: (first_new_counter <= PACK_MARKS_MAX_FIRST).then(Box::default),
            run_capacity,
            runs: Vec::new(),
            received: 0,
            inserted: 0,
            has_named: false,
            max_memory: options.max_memory,
        };
        load.add(&mut quads)?;
        Ok(load)
    }

    /// A new encoder for a parser worker. Encoders may live on other threads.
    pub fn encoder(&self) -> BulkEncoder {
        BulkEncoder::new(Arc::clone(&self.dict))
    }

    /// Quads received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Approximate bytes held by the buffer and the dictionary.
    pub fn memory_bytes(&self) -> usize {
        self.buffer.capacity() * 32
            + self.triples.as_ref().map_or(0, Triples::capacity_bytes)
            + self.dict.approx_bytes()
    }

    /// Takes a batch of encoded quads (leaving `quads` empty for reuse).
    pub fn add(&mut self, quads: &mut Vec<IdQuad>) -> Result<()> {
        self.received += quads.len() as u64;
        let as_triples = match &mut self.triples {
            Some(triples) => triples.try_extend(quads),
            None => false,
        };
        if !as_triples {
            // Before the marks may be dropped below: expanding needs them.
            self.expand_triples()?;
            if !self.has_named {
                self.has_named = quads.iter().any(|q| !q.in_default_graph());
            }
        }
        if let Some(marks) = &mut self.marks {
            // Triples hold only counters below 2^31, which `Marks::add` always takes.
            if marks.add(quads).is_none() {
                self.marks = None;
            }
        }
        if as_triples {
            quads.clear();
        } else {
            self.buffer.append(quads);
        }
        if self.buffer.len() + self.triples.as_ref().map_or(0, Triples::len) >= self.run_capacity {
            self.spill()?;
        }
        Ok(())
    }

    /// Moves the quads held as [`Triples`] to the buffer, and keeps all further quads there.
    fn expand_triples(&mut self) -> Result<()> {
        let Some(triples) = self.triples.take() else {
            return Ok(());
        };
        if triples.len() == 0 {
            self.buffer.reserve(self.run_capacity);
            return Ok(());
        }
        let expanded = match &self.marks {
            Some(marks) => {
                self.buffer.reserve(self.run_capacity.max(triples.len()));
                triples.expand(marks, &mut self.buffer)
            }
            None => None,
        };
        expanded.ok_or_else(triples_without_kinds)
    }

    /// Sorts the buffer in GSPO order, drops duplicates and quads already stored, and writes it as a run.
    fn prepare_buffer(&mut self) -> Result<()> {
        Order::Gspo.sort(&mut self.buffer);
        self.buffer.dedup();
        if !self.base_empty {
            let present = existing(self.inner, &self.buffer)?;
            let mut i = 0;
            self.buffer.retain(|_| {
                i += 1;
                !present[i - 1]
            });
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        // Spilled runs are merged from disk, never packed.
        self.expand_triples()?;
        self.marks = None;
        self.prepare_buffer()?;
        let path = self.tmp.join(format!("run-{}.bin", self.runs.len()));
        write_run(&path, &self.buffer)?;
        self.runs.push(path);
        self.buffer.clear();
        Ok(())
    }

    /// Writes everything and commits. On error, every change is rolled back.
    pub fn finish(mut self) -> Result<BulkSummary> {
        // The counters the encoders allocated; committed with the load (`META_NEXT_ID`).
        self.inner
            .next_id
            .fetch_max(self.dict.next_counter(), Ordering::Relaxed);
        let mut summary = BulkSummary {
            received: self.received,
            ..BulkSummary::default()
        };
        let in_memory = if self.runs.is_empty() && self.base_empty {
            // Every quad is new: a rollback deletes whole index column families (the `ALL_NEW` file tells
            // it so), so there is no run file to write, and each pass sorts and deduplicates on its own.
            // Durable before the marker, or a rollback after a power loss would leave the new quads.
            let sync = |path: &Path, create: bool| {
                let file = if create {
                    std::fs::File::create(path)
                } else {
                    std::fs::File::open(path)
                };
                file.and_then(|f| f.sync_all()).map_err(|e| {
                    StoreError::Corrupt(format!("cannot write {}: {e}", path.display()))
                })
            };
            sync(&self.tmp.join(ALL_NEW), true)?;
            sync(&self.tmp, false)?;
            Some(match self.triples.take() {
                Some(triples) => Buffered::Triples(triples),
                None => Buffered::Quads(std::mem::take(&mut self.buffer)),
            })
        } else if self.runs.is_empty() {
            // Filtering out stored quads changes the buffer: packing marks it afresh.
            self.expand_triples()?;
            self.marks = None;
            self.prepare_buffer()?;
            // The run file is what a rollback after a crash deletes.
            let path = self.tmp.join("run-0.bin");
            write_run(&path, &self.buffer)?;
            self.runs.push(path);
            Some(Buffered::Quads(std::mem::take(&mut self.buffer)))
        } else {
            if !self.buffer.is_empty() || self.triples.as_ref().is_some_and(|t| t.len() > 0) {
                self.spill()?;
            }
            // The merge passes load one run at a time; the buffer is not needed any more.
            self.buffer = Vec::new();
            summary.spilled_runs = self.runs.len();
            None
        };
        let mut marker = self.first_new_counter.to_be_bytes().to_vec();
        marker.extend_from_slice(self.tmp.to_string_lossy().as_bytes());
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        self.inner.db.put_cf_opt(
            self.inner.cf(keys::CF_META)?,
            META_BULK_PENDING,
            &marker,
            &sync,
        )?;
        let result = self.write_all(in_memory, &mut summary);
        if result.is_err() {
            // Best effort: the marker makes the next open roll back if this fails too.
            let _ = recover(self.inner);
        }
        result?;
        Ok(summary)
    }

    fn write_all(&mut self, in_memory: Option<Buffered>, summary: &mut BulkSummary) -> Result<()> {
        let inner: &Inner = self.inner;
        let mut type_bytes = Vec::new();
        encode_term(rdf::TYPE.into(), &mut type_bytes);
        let rdf_type = match self.dict.lookup(&type_bytes) {
            Some(id) => Some(id),
            None => match inner
                .db
                .get_cf(inner.cf(keys::CF_TERM2ID)?, term_key(&type_bytes))?
            {
                Some(v) => TermId::from_be_slice(&v),
                None => None,
            },
        };
        // Collecting the new terms and packing the quads are the only serial steps between parsing and
        // the passes (~60 ms of LUBM-10 on one core): they run side by side, unless the quads take more
        // than a quarter of the memory budget. Collecting frees the dictionary's hash tables, so packing
        // after it peaks lower (10M triples: 870 MiB in turn, 973 MiB side by side).
        let pack_started = Instant::now();
        let dict = &self.dict;
        let marks = self.marks.take();
        let next_counter = inner.next_id.load(Ordering::Relaxed);
        // Packed keys, or else the quads themselves.
        let pack = move |in_memory: Option<Buffered>| -> Result<_> {
            let mut marks = marks;
            let marks = marks.as_deref_mut();
            Ok(match in_memory {
                Some(Buffered::Quads(quads)) => {
                    match Packed::build(Source::Quads(&quads), next_counter, marks) {
                        Some(p) => (Some(p), None),
                        None => (None, Some(quads)),
                    }
                }
                Some(Buffered::Triples(triples)) => {
                    let Some(marks) = marks else {
                        return Err(triples_without_kinds());
                    };
                    match Packed::build(Source::Triples(&triples), next_counter, Some(marks)) {
                        Some(p) => (Some(p), None),
                        None => {
                            let mut quads = Vec::new();
                            triples
                                .expand(marks, &mut quads)
                                .ok_or_else(triples_without_kinds)?;
                            (None, Some(quads))
                        }
                    }
                }
                None => (None, None),
            })
        };
        let side_by_side = in_memory
            .as_ref()
            .is_some_and(|b| b.len() * 32 <= self.max_memory / 4);
        let first_counter = self.first_new_counter;
        let (new_terms, (packed, in_memory)) = if side_by_side {
            std::thread::scope(|scope| {
                let terms = scope.spawn(|| dict.take_new_terms(first_counter));
                let packed = pack(in_memory);
                let terms = terms
                    .join()
                    .map_err(|_| StoreError::Corrupt("collecting new terms panicked".into()));
                terms.and_then(|t| Ok((t, packed?)))
            })?
        } else {
            let terms = dict.take_new_terms(first_counter);
            (terms, pack(in_memory)?)
        };
        if packed.is_some() {
            summary
                .phases
                .push(("pack", pack_started.elapsed().as_secs_f64()));
        }
        summary.new_terms = new_terms.len() as u64;
        let new_terms = &new_terms;

        let orders: Vec<(Order, Option<Index>, Option<Index>)> = [
            (Order::Gspo, Some(Index::Spo), Some(Index::Gspo)),
            (Order::Gpos, Some(Index::Pos), Some(Index::Gpos)),
            (Order::Gosp, Some(Index::Osp), Some(Index::Gosp)),
            (Order::Spog, None, Some(Index::Spog)),
            (Order::Posg, None, Some(Index::Posg)),
            (Order::Ospg, None, Some(Index::Ospg)),
        ]
        .into_iter()
        .filter(|(_, default_index, _)| default_index.is_some() || self.has_named)
        .collect();
        // The dictionary's SST files are written by tasks of the pool below, in parallel with the index
        // passes, and ingested by the sync thread (see `sync_files`).
        // Seconds taken by the tasks of id2term and of term2id.
        let dictionary_seconds: [std::sync::Mutex<f64>; 2] = Default::default();
        let (to_sync, sync_rx) = std::sync::mpsc::channel::<Option<ToSync>>();
        let hand_over = |f: ToSync| {
            to_sync
                .send(Some(f))
                .map_err(|_| StoreError::Corrupt("the bulk load's sync thread stopped".into()))
        };
        // A dictionary task: timed into `seconds`, its file (or none) handed to the sync thread as `then`.
        let timed = |then: Then,
                     seconds: &std::sync::Mutex<f64>,
                     task: &dyn Fn() -> Result<Option<Unsynced>>|
         -> Result<()> {
            let started = Instant::now();
            let file = task()?;
            *crate::store::lock(seconds) += started.elapsed().as_secs_f64();
            // Reported even without a file, so that the sync thread knows when id2term is complete.
            hand_over(ToSync { file, then })
        };
        // id2term is cut into parts by id (files of disjoint key ranges): written whole, it
        // was the longest task of a BSBM load (long literals to compress) and ended the passes alone.
        let id2term_parts = new_terms.split_decreasing(
            ID2TERM_PART_MIN,
            ID2TERM_PART_MAX.max(new_terms.bytes() / ID2TERM_MAX_PARTS),
        );
        let write_id2term = |part: usize| {
            write_sst_file(
                &self.tmp.join(format!("{}-{part}.sst", keys::CF_ID2TERM)),
                new_terms
                    .range(id2term_parts[part].clone())
                    .map(|(id, b)| (id.to_be_bytes(), b)),
            )
        };
        let write_term2id = || {
            let mut by_key: Vec<_> = new_terms.iter().map(|(id, b)| (term_key(b), id)).collect();
            bytesort::sort_by_bytes(&mut by_key, |(key, _)| key.as_ref());
            write_sst_file(
                &self.tmp.join(format!("{}.sst", keys::CF_TERM2ID)),
                by_key.iter().map(|(k, id)| (k, id.to_be_bytes())),
            )
        };
        // Passes are independent (each sorts its own copy and feeds its own column families), so two run
        // at once when two extra copies of the in-memory quads fit in the memory budget. Otherwise the
        // passes take turns on the single in-memory copy (sorting it in place on two threads) while the
        // other thread writes the dictionary; spilled runs are merged two orders at a time.
        // Packed rank keys (8 bytes a quad) replace the quads when they fit: passes then always run two at
        // a time, each sorting its own copy of the keys.
        let packed = &packed;
        let copy_bytes = in_memory.as_ref().map_or(usize::MAX, |q| q.len() * 32);
        let copies = copy_bytes.saturating_mul(3) <= self.max_memory / 2;
        let passes_take_turns = packed.is_none() && !copies && in_memory.is_some();
        let (shared_quads, owned_quads) = if copies {
            (in_memory, std::sync::Mutex::new(None))
        } else {
            (None, std::sync::Mutex::new(in_memory))
        };
        // Longest first, so that the last task to start is a short one (BSBM: id2term last left one core
        // idle for a third of the passes). Costs per unit measured on LUBM-10 and BSBM.
        let quads = summary.received as f64;
        let mut tasks = vec![(Task::Term2id, new_terms.len() as f64 * 450.0)];
        tasks.extend(id2term_parts.iter().enumerate().map(|(part, range)| {
            let bytes: usize = new_terms.range(range.clone()).map(|(_, b)| b.len()).sum();
            (
                Task::Id2term(part),
                range.len() as f64 * 50.0 + bytes as f64 * 6.0,
            )
        }));
        tasks.extend(
            orders
                .iter()
                .map(|&(o, d, n)| (Task::Pass(o, d, n), quads * 175.0)),
        );
        // When passes take turns on the one in-memory copy (each sorting it on both threads), a second
        // pass would only wait for the first: then the dictionary goes first, beside the first pass.
        if passes_take_turns {
            tasks.sort_by_key(|t| !matches!(t.0, Task::Term2id | Task::Id2term(_)));
        } else {
            tasks.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let commit = std::sync::Mutex::new(CommitBatch::new());
        let sources = Sources {
            inner,
            base_empty: self.base_empty,
            rdf_type,
            tmp: &self.tmp,
            runs: &self.runs,
            packed,
            shared_quads: &shared_quads,
            owned_quads: &owned_quads,
        };
        let started = Instant::now();
        let (results, synced): (Vec<Result<Vec<PassDone>>>, Result<bool>) =
            std::thread::scope(|scope| {
                let id2term_files = id2term_parts.len();
                let syncer = scope.spawn(move || sync_files(inner, &sync_rx, id2term_files));
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        scope.spawn(|| -> Result<Vec<PassDone>> {
                            let mut done = Vec::new();
                            while let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) {
                                match task.0 {
                                    Task::Term2id => timed(
                                        Then::Term2id,
                                        &dictionary_seconds[1],
                                        &write_term2id,
                                    )?,
                                    Task::Id2term(part) => {
                                        timed(Then::Id2term, &dictionary_seconds[0], &|| {
                                            write_id2term(part)
                                        })?
                                    }
                                    Task::Pass(order, default_index, named_index) => {
                                        let ((order, stats, count, seconds), files) =
                                            sources.pass(order, default_index, named_index)?;
                                        for (cf, file) in files {
                                            hand_over(ToSync {
                                                file: Some(file),
                                                then: Then::Index(cf),
                                            })?;
                                        }
                                        // After the hand-over, so the files' syncs start first.
                                        let part = stats.into_part(inner)?;
                                        crate::store::lock(&commit).add(inner, part)?;
                                        done.push((order, count, seconds));
                                    }
                                }
                            }
                            Ok(done)
                        })
                    })
                    .collect();
                let results = handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StoreError::Corrupt("bulk pass panicked".into()))
                        })
                    })
                    .collect();
                // The sync thread may already have stopped on an error, which `join` returns.
                let _ = to_sync.send(None);
                let synced = syncer.join().unwrap_or_else(|_| {
                    Err(StoreError::Corrupt("bulk sync thread panicked".into()))
                });
                (results, synced)
            });
        // Its error first: a pass that failed to hand a file over only saw the thread stop.
        let dictionary_ingested = synced?;
        for (cf, seconds) in [keys::CF_ID2TERM, keys::CF_TERM2ID]
            .iter()
            .zip(&dictionary_seconds)
        {
            summary.phases.push((cf, *crate::store::lock(seconds)));
        }
        for result in results {
            for (order, count, seconds) in result? {
                if order == Order::Gspo {
                    self.inserted = count;
                }
                summary.phases.push((order.name(), seconds));
            }
        }
        if !dictionary_ingested {
            // Every task succeeded, so each reported its dictionary files.
            return Err(StoreError::Corrupt(
                "a bulk load's dictionary files were not all ingested".into(),
            ));
        }
        summary.inserted = self.inserted;
        summary
            .phases
            .push(("passes (wall)", started.elapsed().as_secs_f64()));

        // The commit point.
        let commit_started = Instant::now();
        let commit = commit.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut batch = commit.finish(inner, self.inserted, summary.new_terms)?;
        let data_version = inner.data_version.load(Ordering::Acquire) + 1;
        let meta = inner.cf(keys::CF_META)?;
        batch.put_cf(
            meta,
            keys::META_NEXT_ID,
            inner.next_id.load(Ordering::Relaxed).to_be_bytes(),
        );
        batch.put_cf(meta, keys::META_DATA_VERSION, data_version.to_be_bytes());
        batch.delete_cf(meta, META_BULK_PENDING);
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        inner.db.write_opt(batch, &sync)?;
        inner.data_version.store(data_version, Ordering::Release);
        summary.data_version = data_version;
        summary
            .phases
            .push(("commit", commit_started.elapsed().as_secs_f64()));
        // Bulk loads do not track touched graphs or quads: the event says so with `truncated`.
        inner.subscribers.publish(|| crate::CommitEvent {
            data_version,
            inserted: self.inserted,
            truncated: true,
            ..Default::default()
        });
        let _ = std::fs::remove_dir_all(&self.tmp);
        Ok(())
    }
}

/// Triples whose counters the marks do not cover: a bug in the collector, not bad input.
fn triples_without_kinds() -> StoreError {
    StoreError::Corrupt(
        "a bulk load's buffered triples lost their kinds (the packing marks); the load was rolled back"
            .into(),
    )
}

/// The quads a load kept in memory to the end.
enum Buffered {
    Quads(Vec<IdQuad>),
    Triples(Triples),
}

impl Buffered {
    fn len(&self) -> usize {
        match self {
            Buffered::Quads(q) => q.len(),
            Buffered::Triples(t) => t.len(),
        }
    }
}

impl Drop for BulkLoad<'_> {
    fn drop(&mut self) {
        // Finished loads removed it already; abandoned ones never touched the DB before `finish`.
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Gspo => "spo",
            Order::Gpos => "pos",
            Order::Gosp => "osp",
            Order::Spog => "spog",
            Order::Posg => "posg",
            Order::Ospg => "ospg",
        }
    }
}

/// What an index pass reads: the in-memory quads (packed, shared, or one copy to take turns on) or the
/// spilled runs, and what its statistics need.
struct Sources<'a> {
    inner: &'a Inner,
    base_empty: bool,
    rdf_type: Option<TermId>,
    tmp: &'a Path,
    runs: &'a [PathBuf],
    packed: &'a Option<Packed>,
    shared_quads: &'a Option<Vec<IdQuad>>,
    owned_quads: &'a std::sync::Mutex<Option<Vec<IdQuad>>>,
}

impl Sources<'_> {
    /// One index pass: visits the distinct quads in `order`, writes the index files (unsynced) and
    /// computes the pass's statistics.
    fn pass(
        &self,
        order: Order,
        default_index: Option<Index>,
        named_index: Option<Index>,
    ) -> Result<(PassResult, PassFiles)> {
        let started = Instant::now();
        let mut acc = Accumulator::new(self.inner, self.base_empty, self.rdf_type)?;
        let mut writers = PassWriters::new(self.tmp, default_index, named_index);
        let mut count = 0u64;
        let mut visit_distinct = |q: &IdQuad| -> Result<()> {
            count += 1;
            writers.put(q)?;
            acc.visit(order, q)
        };
        if let Some(packed) = self.packed {
            // `visit_sorted` skips repeats itself, on the packed keys.
            packed.visit_sorted(order, &mut visit_distinct)?;
        } else {
            // In-memory quads may hold duplicates and runs may share quads; sorted, they are adjacent.
            let mut previous = None;
            let mut visit = |q: &IdQuad| -> Result<()> {
                if previous.replace(*q) == Some(*q) {
                    return Ok(());
                }
                visit_distinct(q)
            };
            if let Some(quads) = self.shared_quads {
                // Parallel passes: each sorts its own copy.
                let mut quads = quads.clone();
                order.sort(&mut quads);
                quads.iter().try_for_each(&mut visit)?;
            } else {
                // Sort the only copy in place (one pass at a time), or merge spilled runs.
                let mut owned = crate::store::lock(self.owned_quads);
                match owned.as_mut() {
                    Some(quads) => {
                        order.sort_parallel(quads);
                        quads.iter().try_for_each(&mut visit)?;
                    }
                    None => {
                        // Merges read their own copies of the runs: two at once.
                        drop(owned);
                        merge_runs(self.runs, order, self.tmp, &mut visit)?;
                    }
                }
            }
        }
        acc.end_pass(order)?;
        let files = writers.finish()?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(((order, acc.stats, count, seconds), files))
    }
}

/// Writes an SST file (unsynced) of sorted entries; `None` when there is none.
fn write_sst_file<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    path: &Path,
    entries: impl Iterator<Item = (K, V)>,
) -> Result<Option<Unsynced>> {
    let mut writer = SstWriter::create(path, true)?;
    for (k, v) in entries {
        writer.put(k.as_ref(), v.as_ref())?;
    }
    let written = writer.finish_unsynced()?;
    Ok((written.entries > 0).then_some(written))
}

/// A task of a bulk load's passes.
#[derive(Clone, Copy)]
enum Task {
    Term2id,
    /// A part of `id2term` (an index into the parts).
    Id2term(usize),
    Pass(Order, Option<Index>, Option<Index>),
}

/// A task's written SST file for the sync thread: synced, then ingested.
struct ToSync {
    /// `None` for a dictionary task that wrote no entries.
    file: Option<Unsynced>,
    then: Then,
}

/// Where a synced file goes (see [`sync_files`]).
#[derive(Clone, Copy)]
enum Then {
    /// Into this index column family.
    Index(&'static str),
    /// A part of `id2term`.
    Id2term,
    /// The `term2id` file.
    Term2id,
}

/// The sync thread of a bulk load's passes: syncs files and ingests them as the tasks hand them over,
/// until `None`. Waiting for the disk here instead of in the passes keeps both cores on CPU work.
///
/// Index files are ingested as soon as they are synced; dictionary files go through [`DictionaryIngest`].
/// Returns whether the whole dictionary was ingested (every task reported).
fn sync_files(
    inner: &Inner,
    files: &std::sync::mpsc::Receiver<Option<ToSync>>,
    id2term_files: usize,
) -> Result<bool> {
    use std::sync::mpsc::TryRecvError;
    let mut dictionary = DictionaryIngest {
        id2term_left: id2term_files,
        ..DictionaryIngest::default()
    };
    loop {
        let next = match files.try_recv() {
            Ok(next) => next,
            Err(TryRecvError::Empty) => {
                // Nothing waiting: the moment to ingest.
                dictionary.ingest_ready(inner)?;
                files.recv().ok().flatten()
            }
            Err(TryRecvError::Disconnected) => None,
        };
        let Some(f) = next else {
            break;
        };
        let path = f.file.map(Unsynced::sync).transpose()?;
        match f.then {
            Then::Index(cf) => {
                if let Some(path) = path {
                    ingest(inner, cf, vec![path])?;
                }
            }
            Then::Id2term => {
                debug_assert!(
                    dictionary.id2term_left > 0,
                    "more id2term parts than planned"
                );
                dictionary.id2term_left = dictionary.id2term_left.saturating_sub(1);
                dictionary.id2term.extend(path);
            }
            Then::Term2id => dictionary.term2id = Some(path),
        }
    }
    dictionary.ingest_ready(inner)?;
    Ok(dictionary.term2id_ingested)
}

/// The sync thread's synced dictionary files, not ingested yet.
///
/// `id2term` parts (disjoint key ranges) are ingested together whenever no other file is waiting: one call
/// per part queued up behind the last tasks (BSBM with 16 parts: 19 ms from the last task to the commit;
/// the parts left at the end in one call: 4.5 ms). The `term2id` file goes in only once every part is in:
/// a rollback finds every new `term2id` key through `id2term`.
#[derive(Default)]
struct DictionaryIngest {
    /// `id2term` parts not reported yet.
    id2term_left: usize,
    id2term: Vec<PathBuf>,
    /// The `term2id` file once reported (`Some(None)` when it had no entries).
    term2id: Option<Option<PathBuf>>,
    term2id_ingested: bool,
}

impl DictionaryIngest {
    fn ingest_ready(&mut self, inner: &Inner) -> Result<()> {
        if !self.id2term.is_empty() {
            ingest(inner, keys::CF_ID2TERM, std::mem::take(&mut self.id2term))?;
        }
        if self.id2term_left == 0 {
            if let Some(path) = self.term2id.take() {
                if let Some(path) = path {
                    ingest(inner, keys::CF_TERM2ID, vec![path])?;
                }
                self.term2id_ingested = true;
            }
        }
        Ok(())
    }
}

/// Ingests `paths` (of disjoint key ranges) into `cf` at once.
fn ingest<P: AsRef<Path>>(inner: &Inner, cf: &str, paths: Vec<P>) -> Result<()> {
    let mut opts = IngestExternalFileOptions::default();
    opts.set_move_files(true);
    inner
        .db
        .ingest_external_file_cf_opts(inner.cf(cf)?, &opts, paths)?;
    Ok(())
}

/// Up to two SST writers of one pass: the default-graph index and the named-graph index.
struct PassWriters {
    writers: Vec<(Index, PathBuf, Option<SstWriter>)>,
    key: [u8; 32],
}

impl PassWriters {
    fn new(tmp: &Path, default_index: Option<Index>, named_index: Option<Index>) -> Self {
        let writers = [default_index, named_index]
            .into_iter()
            .flatten()
            .map(|i| (i, tmp.join(format!("{}.sst", i.cf_name())), None))
            .collect();
        PassWriters {
            writers,
            key: [0; 32],
        }
    }

    fn put(&mut self, q: &IdQuad) -> Result<()> {
        let named = !q.in_default_graph();
        let Some((index, path, slot)) = self
            .writers
            .iter_mut()
            .find(|(i, _, _)| i.is_named() == named)
        else {
            return Ok(());
        };
        if slot.is_none() {
            *slot = Some(SstWriter::create(path, true)?);
        }
        if let Some(w) = slot {
            w.put(index.encode(q, &mut self.key), &[])?;
        }
        Ok(())
    }

    /// The written (unsynced) files with entries, by column family.
    fn finish(self) -> Result<PassFiles> {
        let mut out = Vec::new();
        for (index, _, slot) in self.writers {
            if let Some(w) = slot {
                let written = w.finish_unsynced()?;
                if written.entries > 0 {
                    out.push((index.cf_name(), written));
                }
            }
        }
        Ok(out)
    }
}

/// The index files a pass wrote (unsynced), by column family.
type PassFiles = Vec<(&'static str, Unsynced)>;

/// A finished pass: its order, its statistics, quads visited and seconds.
type PassResult = (Order, PassStats, u64, f64);
/// What a pass task reports once its statistics are in the commit batch: order, quads visited, seconds.
type PassDone = (Order, u64, f64);

/// Bitmaps and counters computed by one pass (SPO: subjects and quads per graph; POS: quads per predicate,
/// objects and pairs).
#[derive(Default)]
struct PassStats {
    graph_quads: FastMap<TermId, i64>,
    predicate_quads: FastMap<(TermId, TermId), i64>,
    predicate_objects: FastMap<(TermId, TermId), i64>,
    predicate_subjects: FastMap<(TermId, TermId), AscendingSet>,
    graph_subjects: FastMap<TermId, AscendingSet>,
    /// Pair bitmaps added to (merge) and created whole (put).
    pair_adds: FastMap<(TermId, TermId, TermId), AscendingSet>,
    pair_sets: FastMap<(TermId, TermId, TermId), RoaringTreemap>,
    named_graphs: FastSet<TermId>,
}

/// Computes a pass's [`PassStats`] from its sorted stream.
struct Accumulator<'d> {
    inner: &'d Inner,
    base_empty: bool,
    pairs_may_exist: bool,
    rdf_type: Option<TermId>,
    stats: PassStats,
    last: Option<IdQuad>,
    /// Current (g, p, o) group of the POS pass.
    group: Vec<TermId>,
    /// Quads in the current graph (SPO pass) or (graph, predicate) (POS pass): counted by runs, not with a
    /// map update per quad.
    run: i64,
    pos_counter: PrefixCounter<'d>,
}

impl<'d> Accumulator<'d> {
    fn new(inner: &'d Inner, base_empty: bool, rdf_type: Option<TermId>) -> Result<Self> {
        // Pair bitmaps can outlive their quads (emptied, not deleted), so an empty store may still have some.
        let mut it = inner.db.raw_iterator_cf(inner.cf(keys::CF_BITMAPS)?);
        it.seek(b"o");
        let pairs_may_exist = it.key().is_some_and(|k| k.first() == Some(&b'o'));
        it.status()?;
        drop(it);
        Ok(Accumulator {
            inner,
            base_empty,
            pairs_may_exist,
            rdf_type,
            stats: PassStats::default(),
            last: None,
            group: Vec::new(),
            run: 0,
            pos_counter: PrefixCounter::new(&inner.db, inner.cf("pos")?, inner.cf("gpos")?),
        })
    }

    fn visit(&mut self, order: Order, q: &IdQuad) -> Result<()> {
        match order {
            Order::Gspo => {
                let last = self.last.replace(*q);
                let new_graph = last.map(|l| l.g) != Some(q.g);
                if new_graph {
                    if let Some(l) = last {
                        self.end_graph(l.g);
                    }
                    if !q.in_default_graph() {
                        self.stats.named_graphs.insert(q.g);
                    }
                }
                self.run += 1;
                if new_graph || last.map(|l| l.s) != Some(q.s) {
                    self.stats
                        .graph_subjects
                        .entry(q.g)
                        .or_default()
                        .push(q.s.0);
                }
                if new_graph || last.map(|l| (l.s, l.p)) != Some((q.s, q.p)) {
                    self.stats
                        .predicate_subjects
                        .entry((q.g, q.p))
                        .or_default()
                        .push(q.s.0);
                }
            }
            Order::Gpos => {
                if let Some(l) = self.last {
                    if (l.g, l.p, l.o) != (q.g, q.p, q.o) {
                        self.end_group(l)?;
                    }
                    if (l.g, l.p) != (q.g, q.p) {
                        self.end_predicate(l);
                    }
                }
                self.last = Some(*q);
                self.run += 1;
                self.group.push(q.s);
            }
            _ => {}
        }
        Ok(())
    }

    fn end_pass(&mut self, order: Order) -> Result<()> {
        if let Some(l) = self.last {
            match order {
                Order::Gspo => self.end_graph(l.g),
                Order::Gpos => {
                    self.end_group(l)?;
                    self.end_predicate(l);
                }
                _ => {}
            }
        }
        self.last = None;
        Ok(())
    }

    fn end_graph(&mut self, g: TermId) {
        *self.stats.graph_quads.entry(g).or_default() += std::mem::take(&mut self.run);
    }

    fn end_predicate(&mut self, q: IdQuad) {
        *self.stats.predicate_quads.entry((q.g, q.p)).or_default() += std::mem::take(&mut self.run);
    }

    /// Closes a (g, p, o) group of new quads (subjects in `self.group`).
    fn end_group(&mut self, q: IdQuad) -> Result<()> {
        let subjects = std::mem::take(&mut self.group);
        let n = subjects.len();
        let is_type = Some(q.p) == self.rdf_type;
        let tracked = q.o.is_iri()
            && (is_type
                || (self.pairs_may_exist
                    && self
                        .inner
                        .db
                        .get_cf(
                            self.inner.cf(keys::CF_BITMAPS)?,
                            bitmap_key::predicate_object(q.g, q.p, q.o),
                        )?
                        .is_some()));
        let may_materialize = q.o.is_iri() && !tracked;
        let before = if self.base_empty {
            0
        } else {
            let cap = if may_materialize {
                PO_BITMAP_THRESHOLD
            } else {
                1
            };
            self.pos_counter.count(q.g, &[q.p, q.o], cap, |_| {})?
        };
        if before == 0 {
            *self.stats.predicate_objects.entry((q.g, q.p)).or_default() += 1;
        }
        // A group's subjects are sorted (POS order).
        if tracked {
            self.stats
                .pair_adds
                .entry((q.g, q.p, q.o))
                .or_default()
                .extend(subjects.iter().map(|s| s.0));
        } else if may_materialize && before + n >= PO_BITMAP_THRESHOLD {
            let mut set = AscendingSet::collect(subjects.iter().map(|s| s.0));
            if before > 0 {
                let at = if q.in_default_graph() { 16 } else { 24 };
                self.pos_counter.count(q.g, &[q.p, q.o], usize::MAX, |k| {
                    if let Some(s) = TermId::from_be_slice(&k[at..]) {
                        set.insert(s.0);
                    }
                })?;
            }
            self.stats.pair_sets.insert((q.g, q.p, q.o), set);
        }
        self.group = subjects;
        self.group.clear();
        Ok(())
    }
}

/// A bitmap built from values that arrive in increasing order: subjects of the SPO pass (per graph, and per
/// graph and predicate) and of a (predicate, object) group of the POS pass. They are appended in batches to
/// the bitmap of their high 32 bits. `RoaringTreemap::insert` per value (a map lookup and a container
/// search each) was 2% of a LUBM-10 load, and `push` per value recomputes the bitmap's maximum, which
/// scans a dense container.
#[derive(Default)]
struct AscendingSet {
    /// A bitmap per high 32 bits (each high appears once).
    done: Vec<(u32, RoaringBitmap)>,
    high: u32,
    /// Low 32 bits of the values of `high` not yet appended.
    pending: Vec<u32>,
}

impl AscendingSet {
    /// Values appended at once: enough to amortize the maximum `append` computes first.
    const BATCH: usize = 256;

    fn push(&mut self, value: u64) {
        let (high, low) = ((value >> 32) as u32, value as u32);
        if high != self.high || self.pending.len() == Self::BATCH {
            self.flush();
            self.high = high;
        }
        self.pending.push(low);
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Nearly always the last bitmap; a few highs at most (ids' tags).
        let at = match self.done.iter().rposition(|(h, _)| *h == self.high) {
            Some(at) => at,
            None => {
                self.done.push((self.high, RoaringBitmap::new()));
                self.done.len() - 1
            }
        };
        let bitmap = &mut self.done[at].1;
        if bitmap.append(self.pending.iter().copied()).is_err() {
            // Not increasing after all (not expected from a sorted pass): insert one by one, which keeps
            // whatever `append` took.
            bitmap.extend(self.pending.iter().copied());
        }
        self.pending.clear();
    }

    /// Adds `values`, which should come in increasing order.
    fn extend(&mut self, values: impl Iterator<Item = u64>) {
        values.for_each(|v| self.push(v));
    }

    /// The bitmap of `values`, which should come in increasing order.
    fn collect(values: impl Iterator<Item = u64>) -> RoaringTreemap {
        let mut set = AscendingSet::default();
        set.extend(values);
        set.finish()
    }

    fn finish(mut self) -> RoaringTreemap {
        self.flush();
        RoaringTreemap::from_bitmaps(self.done)
    }
}

/// Where a commit entry goes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Bitmaps,
    Stats,
    Graphs,
}

/// One entry of the commit batch: a merge operand, or a value put whole.
struct CommitOp {
    target: Target,
    merge: bool,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A pass's share of the commit batch, serialized on the pass's thread as soon as the pass ends. Serialized
/// at the commit, LUBM-10's 12,600 bitmaps and counters (2.3 MB) took 15 ms on one thread after every pass
/// had ended.
#[derive(Default)]
struct CommitPart {
    ops: Vec<CommitOp>,
    /// Named graphs new to the store.
    new_graphs: i64,
}

impl CommitPart {
    fn push(&mut self, target: Target, merge: bool, key: &[u8], value: Vec<u8>) {
        self.ops.push(CommitOp {
            target,
            merge,
            key: key.to_vec(),
            value,
        });
    }
}

impl PassStats {
    /// Serializes these bitmaps and counters for the commit batch.
    fn into_part(self, inner: &Inner) -> Result<CommitPart> {
        let mut part = CommitPart::default();
        // A delta with no removals is stored like a plain set (no clone of the bitmap needed).
        let adds = BitmapDelta::set_to_bytes;
        for ((g, p), set) in self.predicate_subjects {
            part.push(
                Target::Bitmaps,
                true,
                &bitmap_key::predicate(g, p),
                adds(&set.finish()),
            );
        }
        for (g, set) in self.graph_subjects {
            part.push(
                Target::Bitmaps,
                true,
                &bitmap_key::graph(g),
                adds(&set.finish()),
            );
        }
        for ((g, p, o), set) in self.pair_adds {
            part.push(
                Target::Bitmaps,
                true,
                &bitmap_key::predicate_object(g, p, o),
                adds(&set.finish()),
            );
        }
        for ((g, p, o), set) in &self.pair_sets {
            part.push(
                Target::Bitmaps,
                false,
                &bitmap_key::predicate_object(*g, *p, *o),
                BitmapDelta::set_to_bytes(set),
            );
        }
        let mut add = |key: &[u8], d: i64| {
            if d != 0 {
                part.push(Target::Stats, true, key, d.to_le_bytes().to_vec());
            }
        };
        for (g, n) in &self.graph_quads {
            add(&stat_key::graph_quads(*g), *n);
        }
        for ((g, p), n) in &self.predicate_quads {
            add(&stat_key::predicate_quads(*g, *p), *n);
        }
        for ((g, p), n) in &self.predicate_objects {
            add(&stat_key::predicate_objects(*g, *p), *n);
        }
        let graphs = inner.cf(keys::CF_GRAPHS)?;
        for g in &self.named_graphs {
            if inner.db.get_cf(graphs, g.to_be_bytes())?.is_none() {
                part.new_graphs += 1;
            }
            part.push(Target::Graphs, false, &g.to_be_bytes(), Vec::new());
        }
        // In key order, each insert into the memtable's skip list starts where the previous one ended
        // (LUBM-10: the commit's write 24 -> 16 ms).
        part.ops
            .sort_unstable_by(|a, b| (a.target, &a.key).cmp(&(b.target, &b.key)));
        Ok(part)
    }
}

/// The commit batch: every pass's part and the load's totals.
/// The commit batch of a bulk load, filled by the passes as each ends (LUBM-10: 5–6 ms of copying 2 MB of
/// bitmaps, which ran alone between the last task and the commit).
struct CommitBatch {
    batch: WriteBatch,
    /// Named graphs new to the store.
    new_graphs: i64,
}

impl CommitBatch {
    fn new() -> Self {
        CommitBatch {
            batch: WriteBatch::default(),
            new_graphs: 0,
        }
    }

    /// Adds a pass's bitmaps and counters.
    fn add(&mut self, inner: &Inner, part: CommitPart) -> Result<()> {
        let (bitmaps, stats, graphs) = (
            inner.cf(keys::CF_BITMAPS)?,
            inner.cf(keys::CF_STATS)?,
            inner.cf(keys::CF_GRAPHS)?,
        );
        self.new_graphs += part.new_graphs;
        for op in part.ops {
            let cf = match op.target {
                Target::Bitmaps => bitmaps,
                Target::Stats => stats,
                Target::Graphs => graphs,
            };
            if op.merge {
                self.batch.merge_cf(cf, op.key, op.value);
            } else {
                self.batch.put_cf(cf, op.key, op.value);
            }
        }
        Ok(())
    }

    /// The batch, with the load's counts of quads, terms and named graphs.
    fn finish(mut self, inner: &Inner, inserted: u64, new_terms: u64) -> Result<WriteBatch> {
        let stats = inner.cf(keys::CF_STATS)?;
        for (key, d) in [
            (stat_key::QUADS, inserted as i64),
            (stat_key::TERMS, new_terms as i64),
            (stat_key::NAMED_GRAPHS, self.new_graphs),
        ] {
            if d != 0 {
                self.batch.merge_cf(stats, key, d.to_le_bytes());
            }
        }
        Ok(self.batch)
    }
}

/// Rolls back an interrupted bulk load (if the marker is present) and removes stale temporary directories.
pub(crate) fn recover(inner: &Inner) -> Result<()> {
    let meta = inner.cf(keys::CF_META)?;
    if let Some(marker) = inner.db.get_cf(meta, META_BULK_PENDING)? {
        let first = u64::from_be_bytes(
            marker
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| StoreError::Corrupt("bad bulk marker".into()))?,
        );
        let tmp = PathBuf::from(String::from_utf8_lossy(&marker[8..]).into_owned());
        // Quads: every index entry is new, or the run files list exactly the new ones.
        if tmp.join(ALL_NEW).exists() {
            let mut batch = WriteBatch::default();
            for i in Index::ALL {
                batch.delete_range_cf(inner.cf(i.cf_name())?, &[][..], &[0xff; 33][..]);
            }
            inner.db.write(batch)?;
        } else if let Ok(entries) = std::fs::read_dir(&tmp) {
            let mut key = [0u8; 32];
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if !(name.starts_with("run-") && name.ends_with(".bin")) {
                    continue;
                }
                let mut reader = RunReader::open(&path)?;
                let mut batch = WriteBatch::default();
                while let Some(q) = reader.next_quad()? {
                    let indexes: &[Index] = if q.in_default_graph() {
                        &Index::DEFAULT
                    } else {
                        &Index::NAMED
                    };
                    for &i in indexes {
                        batch.delete_cf(inner.cf(i.cf_name())?, i.encode(&q, &mut key));
                    }
                    if batch.len() > 100_000 {
                        inner.db.write(std::mem::take(&mut batch))?;
                    }
                }
                inner.db.write(batch)?;
            }
        }
        // Dictionary: ids at or above the marker's counter, for each dictionary kind.
        let id2term = inner.cf(keys::CF_ID2TERM)?;
        let term2id = inner.cf(keys::CF_TERM2ID)?;
        for tag in 0u64..3 {
            let from = ((tag << 56) | first).to_be_bytes();
            let to = ((tag << 56) | ((1 << 56) - 1)).to_be_bytes();
            let mut batch = WriteBatch::default();
            let mut it = inner.db.raw_iterator_cf(id2term);
            it.seek(from);
            while it.valid() {
                match (it.key(), it.value()) {
                    (Some(k), Some(v)) if k <= &to[..] => batch.delete_cf(term2id, term_key(v)),
                    _ => break,
                }
                it.next();
            }
            it.status()?;
            batch.delete_range_cf(id2term, from, to);
            batch.delete_cf(id2term, to);
            inner.db.write(batch)?;
        }
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        inner.db.delete_cf_opt(meta, META_BULK_PENDING, &sync)?;
    }
    if let Ok(entries) = std::fs::read_dir(&inner.path) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Increasing values (as passes give them) and any others build the same bitmap as inserting
        /// them one by one.
        #[test]
        fn ascending_sets_equal_inserted_bitmaps(
            steps in prop::collection::vec((0u64..3, 1u64..5000), 0..3000),
            strays in prop::collection::vec(0u64..(3 << 32), 0..4),
        ) {
            let mut value = 0u64;
            let mut values = Vec::new();
            for (high_step, low_step) in steps {
                value = if high_step == 2 { ((value >> 32) + 1) << 32 } else { value + low_step };
                values.push(value);
            }
            for (i, stray) in strays.into_iter().enumerate() {
                let at = (i * 997) % (values.len() + 1);
                values.insert(at, stray);
            }
            let mut set = AscendingSet::default();
            for &v in &values {
                set.push(v);
            }
            let expected: RoaringTreemap = values.iter().copied().collect();
            prop_assert_eq!(set.finish(), expected);
        }
    }
}
