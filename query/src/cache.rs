//! The multi-level query cache.
//!
//! - **L1**: parsed queries ([`Query`]) keyed by (text, base IRI), in an LRU of [`L1_ENTRIES`] entries.
//!   (The generate crate's L1 is its compiled templates, held per `Generator`.)
//! - **L2**: serialized results — the exact response body and its media type — keyed by a SHA-256 of
//!   (query text, base IRI, dataset, result format), in memory under a byte budget with LRU eviction.
//! - **L3**: the same entries persisted as store application records `cache/<hex key>`, so a restart
//!   starts warm. Writes go through a background thread and never block the caller.
//!
//! Every entry carries the store data version its results were computed at. An entry is served only while
//! the store is still at that version: invalidation is by data version, never by time. A stale entry found
//! by a lookup is dropped (and deleted from L3); opening a cache sweeps L3 entries of other versions.
//! Results larger than [`Cache::entry_cap`] (1/8 of the budget) are never cached, so no caller needs to
//! buffer an unbounded result to fill the cache. L3 is capped too ([`DEFAULT_L3_MAX_BYTES`] unless
//! configured): past the cap the oldest persisted entries are deleted.
//!
//! [`ValueCache`] is the typed sibling used by code generation: the same L1 and the same LRU-by-bytes L2
//! (one implementation, [`ByteLru`]), but holding caller-defined values (e.g. converted result rows)
//! instead of serialized bodies, and no L3.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use lru::LruCache;
use oxrdf::NamedNode;
use sha2::Digest as _;
use spargebra::Query;
use tern_store::Store;

use crate::Result;

/// Parsed queries kept in L1.
pub const L1_ENTRIES: usize = 1024;
/// Prefix of L3 application records.
pub const L3_PREFIX: &str = "cache/";
/// Magic and layout version at the start of every L3 value.
const L3_MAGIC: &[u8; 4] = b"tc1\0";
/// Default cap on the total bytes of persisted (L3) entries: 64 MiB.
pub const DEFAULT_L3_MAX_BYTES: u64 = 64 << 20;
/// Pending L3 writes; more are dropped (the entry simply stays memory-only) rather than blocking.
const L3_QUEUE: usize = 256;

/// Hit, miss and eviction counters of one level.
#[derive(Default)]
struct LevelCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl LevelCounters {
    /// Counts an L2 lookup (a stale entry was dropped: an eviction and a miss) and returns its hit.
    fn count<V>(&self, lookup: Lookup<V>) -> Option<Arc<V>> {
        match lookup {
            Lookup::Hit(v) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(v);
            }
            Lookup::Stale => {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            Lookup::Miss => {}
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    fn snapshot(&self) -> LevelStats {
        LevelStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one cache level at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Lookups answered by this level.
    pub hits: u64,
    /// Lookups this level could not answer (including stale entries).
    pub misses: u64,
    /// Entries removed: over the byte budget or LRU capacity, or stale (other data version).
    pub evictions: u64,
}

/// A snapshot of every level's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Parsed queries.
    pub l1: LevelStats,
    /// In-memory results.
    pub l2: LevelStats,
    /// Persisted results.
    pub l3: LevelStats,
    /// Bytes of result bodies held in L2 now.
    pub l2_bytes: u64,
    /// Entries held in L2 now.
    pub l2_entries: u64,
    /// Results not cached because they were larger than the entry cap.
    pub oversized: u64,
}

/// The identity of a cached result: a SHA-256 of the query text, base IRI, dataset and format. The data
/// version is deliberately not part of it: it is stored in the entry, so a new version replaces the old
/// entry instead of leaving it behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResultKey([u8; 32]);

impl ResultKey {
    /// The key of a query evaluated with these options and serialized as `format` (any stable name of
    /// the output format, e.g. its media type).
    pub fn new(
        text: &str,
        base_iri: Option<&str>,
        default_graphs: Option<&[NamedNode]>,
        named_graphs: Option<&[NamedNode]>,
        format: &str,
    ) -> ResultKey {
        let mut h = sha2::Sha256::new();
        // Length-prefixed fields, so no two different tuples hash the same input.
        let mut field = |tag: u8, bytes: &[u8]| {
            h.update([tag]);
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(b'q', text.as_bytes());
        if let Some(b) = base_iri {
            field(b'b', b.as_bytes());
        }
        for (tag, graphs) in [(b'd', default_graphs), (b'n', named_graphs)] {
            if let Some(graphs) = graphs {
                field(tag.to_ascii_uppercase(), &[]);
                for g in graphs {
                    field(tag, g.as_str().as_bytes());
                }
            }
        }
        field(b'f', format.as_bytes());
        ResultKey(h.finalize().into())
    }

    /// Lower-case hex, as used in the L3 record name.
    pub fn hex(&self) -> String {
        crate::functions::hex(&self.0)
    }
}

/// A cached result: the response body, its media type and the data version it was computed at.
#[derive(Debug)]
pub struct Entry {
    /// Store data version of the snapshot the results came from.
    pub version: u64,
    /// Media type of `body` (as sent in `Content-Type`).
    pub content_type: String,
    /// The serialized results.
    pub body: Vec<u8>,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let ct = self.content_type.as_bytes();
        let mut v = Vec::with_capacity(4 + 8 + 4 + ct.len() + self.body.len());
        v.extend_from_slice(L3_MAGIC);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        v.extend_from_slice(ct);
        v.extend_from_slice(&self.body);
        v
    }

    /// `None` for a value of another layout or a truncated one (treated as stale).
    fn decode(v: &[u8]) -> Option<Entry> {
        let rest = v.strip_prefix(L3_MAGIC)?;
        let version = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let ct_len = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        let ct = rest.get(12..12usize.checked_add(ct_len)?)?;
        let body = rest.get(12 + ct_len..)?;
        Some(Entry {
            version,
            content_type: String::from_utf8(ct.to_vec()).ok()?,
            body: body.to_vec(),
        })
    }

    /// The version of an encoded value without copying the body.
    fn decode_version(v: &[u8]) -> Option<u64> {
        let rest = v.strip_prefix(L3_MAGIC)?;
        Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
    }
}

impl AsRef<[u8]> for Entry {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

/// What a [`ByteLru`] lookup found.
pub enum Lookup<V> {
    /// An entry computed at the requested data version.
    Hit(Arc<V>),
    /// An entry of another data version was found and dropped.
    Stale,
    /// Nothing under that key.
    Miss,
}

/// An LRU map from [`ResultKey`] to values computed at one data version, bounded by the sum of the
/// values' sizes (as given by the caller at insertion). The one implementation behind both L2s.
pub struct ByteLru<V> {
    map: LruCache<ResultKey, (u64, usize, Arc<V>)>,
    bytes: usize,
    budget: usize,
}

impl<V> ByteLru<V> {
    /// An empty map holding at most `budget` bytes.
    pub fn new(budget: usize) -> ByteLru<V> {
        ByteLru {
            map: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    /// The value for `key` if it was computed at `version`; a value of another version is removed.
    pub fn get(&mut self, key: &ResultKey, version: u64) -> Lookup<V> {
        match self.map.get(key) {
            Some((v, _, value)) if *v == version => Lookup::Hit(Arc::clone(value)),
            Some(_) => {
                if let Some((_, size, _)) = self.map.pop(key) {
                    self.bytes = self.bytes.saturating_sub(size);
                }
                Lookup::Stale
            }
            None => Lookup::Miss,
        }
    }

    /// Inserts (or replaces) `key`, then drops least recently used entries until the total is within the
    /// budget; returns how many were dropped.
    pub fn insert(&mut self, key: ResultKey, version: u64, size: usize, value: Arc<V>) -> u64 {
        self.bytes = self.bytes.saturating_add(size);
        if let Some((_, old, _)) = self.map.put(key, (version, size, value)) {
            self.bytes = self.bytes.saturating_sub(old);
        }
        let mut evicted = 0;
        while self.bytes > self.budget {
            let Some((_, (_, old, _))) = self.map.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(old);
            evicted += 1;
        }
        evicted
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// L1: parsed queries by (text, base IRI), with their counters.
struct Parsed {
    lru: Mutex<LruCache<QueryKey, Arc<Query>>>,
    counters: LevelCounters,
}

/// L1 key: query text and base IRI.
type QueryKey = (String, Option<String>);

impl Parsed {
    fn new() -> Parsed {
        Parsed {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(L1_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            counters: LevelCounters::default(),
        }
    }

    fn parse(&self, text: &str, base_iri: Option<&str>) -> Result<Arc<Query>> {
        let key = (text.to_owned(), base_iri.map(str::to_owned));
        if let Some(q) = lock(&self.lru).get(&key) {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Arc::clone(q));
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let q = Arc::new(crate::parse_query(text, base_iri)?);
        if lock(&self.lru).push(key, Arc::clone(&q)).is_some() {
            // `push` returns the least recently used entry when full (or the same key, raced in by
            // another thread: counted too, harmlessly).
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(q)
    }
}

/// Work for the L3 writer thread.
enum L3Op {
    Put(String, Vec<u8>),
    Delete(String),
    /// Answered once every earlier operation is done.
    Flush(SyncSender<()>),
}

/// The persisted level: a store and the thread writing to it.
struct Persistent {
    store: Store,
    tx: Mutex<Option<SyncSender<L3Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The three cache levels and their counters. Cheap to share behind an `Arc`.
pub struct Cache {
    parsed: Parsed,
    memory: Mutex<ByteLru<Entry>>,
    budget: usize,
    l3: Option<Persistent>,
    l2: LevelCounters,
    l3c: Arc<LevelCounters>,
    oversized: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves at worst a missing or extra entry: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// A cache with an L2 budget of `budget` bytes and, when `store` is given and writable, an L3 in it.
    /// Opening sweeps L3 entries whose data version is not the store's. A budget of 0 disables L2 and L3
    /// (L1 still works). L3 holds at most [`DEFAULT_L3_MAX_BYTES`].
    pub fn new(budget: usize, store: Option<Store>) -> Cache {
        Cache::with_l3_cap(budget, store, DEFAULT_L3_MAX_BYTES)
    }

    /// Like [`Cache::new`], with L3 capped at `l3_max_bytes` (encoded values): past it the oldest entries
    /// (by insertion; entries found when opening count as older than any written since) are deleted.
    pub fn with_l3_cap(budget: usize, store: Option<Store>, l3_max_bytes: u64) -> Cache {
        let l3c = Arc::new(LevelCounters::default());
        let l3 = store
            .filter(|s| budget > 0 && !s.is_read_only())
            .map(|store| {
                let survivors = sweep(&store).unwrap_or_else(|e| {
                    tracing::warn!("query cache: cannot sweep stale entries: {e}");
                    Sweep::default()
                });
                l3c.evictions
                    .fetch_add(survivors.removed, Ordering::Relaxed);
                let (tx, rx) = sync_channel(L3_QUEUE);
                let writer_store = store.clone();
                let mut index = L3Index::new(l3_max_bytes);
                for (name, size) in survivors.kept {
                    index.insert(name, size);
                }
                let counters = Arc::clone(&l3c);
                let thread = std::thread::Builder::new()
                    .name("tern-cache-l3".into())
                    .spawn(move || l3_writer(writer_store, rx, index, &counters));
                match thread {
                    Ok(t) => Persistent {
                        store,
                        tx: Mutex::new(Some(tx)),
                        thread: Mutex::new(Some(t)),
                    },
                    Err(e) => {
                        // Without the writer L3 still serves what is there; it just learns nothing new.
                        tracing::warn!("query cache: cannot start the L3 writer: {e}");
                        Persistent {
                            store,
                            tx: Mutex::new(None),
                            thread: Mutex::new(None),
                        }
                    }
                }
            });
        Cache {
            parsed: Parsed::new(),
            memory: Mutex::new(ByteLru::new(budget)),
            budget,
            l3,
            l2: LevelCounters::default(),
            l3c,
            oversized: AtomicU64::new(0),
        }
    }

    /// Whether results are cached at all (a non-zero budget).
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The largest result body cached: 1/8 of the budget, so one result cannot flush the rest.
    pub fn entry_cap(&self) -> usize {
        self.budget / 8
    }

    /// L1: parses `text`, or clones the query parsed earlier with the same text and base IRI.
    pub fn parse(&self, text: &str, base_iri: Option<&str>) -> Result<Arc<Query>> {
        self.parsed.parse(text, base_iri)
    }

    /// L2 only: the entry for `key` computed at data version `version`, if held in memory. Never blocks
    /// on I/O, so async code may call it directly.
    pub fn get_memory(&self, key: &ResultKey, version: u64) -> Option<Arc<Entry>> {
        if !self.enabled() {
            return None;
        }
        // A stale entry (another data version) can never be served again: the lookup drops it.
        let lookup = lock(&self.memory).get(key, version);
        self.l2.count(lookup)
    }

    /// Whether an L3 lookup is possible (it reads the store: call it from blocking code).
    pub fn has_persistent(&self) -> bool {
        self.l3.is_some()
    }

    /// L3 only: reads the persisted entry; a hit is promoted to L2, a stale entry is deleted.
    pub fn get_persistent(&self, key: &ResultKey, version: u64) -> Option<Arc<Entry>> {
        let l3 = self.l3.as_ref()?;
        let name = format!("{L3_PREFIX}{}", key.hex());
        let found = match l3.store.app_get(&name) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("query cache: cannot read {name}: {e}");
                None
            }
        };
        let Some(raw) = found else {
            self.l3c.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match Entry::decode(&raw) {
            Some(e) if e.version == version => {
                self.l3c.hits.fetch_add(1, Ordering::Relaxed);
                let e = Arc::new(e);
                self.insert_memory(*key, Arc::clone(&e));
                Some(e)
            }
            _ => {
                self.l3c.misses.fetch_add(1, Ordering::Relaxed);
                self.l3c.evictions.fetch_add(1, Ordering::Relaxed);
                self.send(L3Op::Delete(name));
                None
            }
        }
    }

    /// L2 then L3 (which reads the store: call this from blocking code).
    pub fn get(&self, key: &ResultKey, version: u64) -> Option<Arc<Entry>> {
        self.get_memory(key, version)
            .or_else(|| self.get_persistent(key, version))
    }

    /// Caches a complete result computed at data version `version` (taken before the snapshot was).
    /// Bodies over [`Cache::entry_cap`] are refused; the L3 write happens on a background thread.
    pub fn put(&self, key: ResultKey, version: u64, content_type: &str, body: Vec<u8>) {
        if !self.enabled() {
            return;
        }
        if body.len() > self.entry_cap() {
            self.oversized.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = Arc::new(Entry {
            version,
            content_type: content_type.to_owned(),
            body,
        });
        if self.l3.is_some() {
            self.send(L3Op::Put(
                format!("{L3_PREFIX}{}", key.hex()),
                entry.encode(),
            ));
        }
        self.insert_memory(key, entry);
    }

    fn insert_memory(&self, key: ResultKey, entry: Arc<Entry>) {
        let (version, size) = (entry.version, entry.body.len());
        let evicted = lock(&self.memory).insert(key, version, size, entry);
        self.l2.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    fn send(&self, op: L3Op) {
        let Some(l3) = &self.l3 else { return };
        if let Some(tx) = lock(&l3.tx).as_ref() {
            match tx.try_send(op) {
                Ok(()) => {}
                // The writer is behind: this entry stays memory-only; a stale one is deleted by the next
                // lookup or sweep.
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => {
                    tracing::warn!("query cache: the L3 writer has stopped");
                }
            }
        }
    }

    /// Waits until every L3 write queued so far is in the store (tests, shutdown).
    pub fn flush(&self) {
        let Some(l3) = &self.l3 else { return };
        let (done_tx, done_rx) = sync_channel(1);
        let sent = lock(&l3.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(L3Op::Flush(done_tx)).is_ok());
        if sent {
            let _ = done_rx.recv();
        }
    }

    /// Counts a result that was not offered to [`Cache::put`] because the caller saw it grow past
    /// [`Cache::entry_cap`] while streaming it.
    pub fn note_oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        stats_of(
            &self.parsed,
            &self.memory,
            &self.l2,
            self.l3c.snapshot(),
            &self.oversized,
        )
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has drained the queue; joining makes sure the
        // store is no longer in use once the cache is gone (so it can be reopened).
        if let Some(l3) = &self.l3 {
            lock(&l3.tx).take();
            if let Some(t) = lock(&l3.thread).take() {
                let _ = t.join();
            }
        }
    }
}

/// The persisted entries in insertion order with their sizes, kept by the L3 writer to enforce the cap.
struct L3Index {
    /// name -> (sequence number, bytes).
    by_name: HashMap<String, (u64, u64)>,
    /// sequence number -> name: the oldest first.
    by_age: BTreeMap<u64, String>,
    next: u64,
    total: u64,
    max: u64,
}

impl L3Index {
    fn new(max: u64) -> L3Index {
        L3Index {
            by_name: HashMap::new(),
            by_age: BTreeMap::new(),
            next: 0,
            total: 0,
            max,
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some((seq, size)) = self.by_name.remove(name) {
            self.by_age.remove(&seq);
            self.total = self.total.saturating_sub(size);
        }
    }

    /// Records `name` as the newest entry (replacing an older record of it).
    fn insert(&mut self, name: String, size: u64) {
        self.remove(&name);
        let seq = self.next;
        self.next += 1;
        self.by_age.insert(seq, name.clone());
        self.by_name.insert(name, (seq, size));
        self.total = self.total.saturating_add(size);
    }

    /// Names of the oldest entries to delete so the total is within the cap (removed from the index).
    fn over_cap(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while self.total > self.max {
            let Some((_, name)) = self.by_age.pop_first() else {
                break;
            };
            if let Some((_, size)) = self.by_name.remove(&name) {
                self.total = self.total.saturating_sub(size);
            }
            out.push(name);
        }
        out
    }
}

fn l3_writer(store: Store, rx: Receiver<L3Op>, mut index: L3Index, counters: &LevelCounters) {
    let evict = |index: &mut L3Index| {
        for name in index.over_cap() {
            match store.app_put(&name, None) {
                Ok(()) => {
                    counters.evictions.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("query cache: cannot evict {name}: {e}"),
            }
        }
    };
    // Entries left by an earlier process may already exceed a (smaller) cap.
    evict(&mut index);
    for op in rx {
        let outcome = match op {
            L3Op::Put(name, value) => {
                let size = value.len() as u64;
                let r = store.app_put(&name, Some(&value));
                if r.is_ok() {
                    index.insert(name, size);
                    evict(&mut index);
                }
                r
            }
            L3Op::Delete(name) => {
                index.remove(&name);
                store.app_put(&name, None)
            }
            L3Op::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::warn!("query cache: L3 write failed: {e}");
        }
    }
}

/// What opening L3 found.
#[derive(Default)]
struct Sweep {
    /// Stale entries deleted.
    removed: u64,
    /// Current entries kept: (name, bytes).
    kept: Vec<(String, u64)>,
}

/// Deletes L3 entries whose data version is not the store's; returns them and the kept ones.
fn sweep(store: &Store) -> tern_store::Result<Sweep> {
    let version = store.data_version();
    let mut out = Sweep::default();
    for (name, value) in store.app_scan(L3_PREFIX)? {
        if Entry::decode_version(&value) != Some(version) {
            store.app_put(&name, None)?;
            out.removed += 1;
        } else {
            out.kept.push((name, value.len() as u64));
        }
    }
    Ok(out)
}

/// L3 entries persisted in `store` and their total bytes (for `tern stats`).
pub fn persisted(store: &Store) -> tern_store::Result<(u64, u64)> {
    let entries = store.app_scan(L3_PREFIX)?;
    let bytes = entries.iter().map(|(_, v)| v.len() as u64).sum();
    Ok((entries.len() as u64, bytes))
}

impl LevelStats {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }

    /// The counts accumulated since `earlier` (a snapshot of the same level).
    pub fn since(&self, earlier: &LevelStats) -> LevelStats {
        LevelStats {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            evictions: self.evictions.saturating_sub(earlier.evictions),
        }
    }
}

impl CacheStats {
    /// The counters accumulated since `earlier`; the sizes (`l2_bytes`, `l2_entries`) are this snapshot's.
    pub fn since(&self, earlier: &CacheStats) -> CacheStats {
        CacheStats {
            l1: self.l1.since(&earlier.l1),
            l2: self.l2.since(&earlier.l2),
            l3: self.l3.since(&earlier.l3),
            l2_bytes: self.l2_bytes,
            l2_entries: self.l2_entries,
            oversized: self.oversized.saturating_sub(earlier.oversized),
        }
    }
}

/// Default byte budget of a [`ValueCache`]: 64 MiB.
pub const DEFAULT_VALUE_CACHE_BYTES: usize = 64 << 20;

/// The typed sibling of [`Cache`]: L1 parsed queries and an L2 of caller-defined values (e.g. result rows
/// already converted for a template engine) keyed by [`ResultKey`] and data version, under a byte budget
/// the caller's size estimates are charged against. No L3. Values over 1/8 of the budget are not cached.
/// Cheap to share behind an `Arc`; safe to use from several threads.
pub struct ValueCache<V> {
    parsed: Parsed,
    memory: Mutex<ByteLru<V>>,
    budget: usize,
    l2: LevelCounters,
    oversized: AtomicU64,
}

impl<V> ValueCache<V> {
    /// A cache holding at most `budget` bytes of values (0 disables L2; L1 still works).
    pub fn new(budget: usize) -> ValueCache<V> {
        ValueCache {
            parsed: Parsed::new(),
            memory: Mutex::new(ByteLru::new(budget)),
            budget,
            l2: LevelCounters::default(),
            oversized: AtomicU64::new(0),
        }
    }

    /// L1: parses `text`, or clones the query parsed earlier with the same text and base IRI.
    pub fn parse(&self, text: &str, base_iri: Option<&str>) -> Result<Arc<Query>> {
        self.parsed.parse(text, base_iri)
    }

    /// L2: the value for `key` computed at data version `version`, if held.
    pub fn get(&self, key: &ResultKey, version: u64) -> Option<Arc<V>> {
        if self.budget == 0 {
            return None;
        }
        let lookup = lock(&self.memory).get(key, version);
        self.l2.count(lookup)
    }

    /// Caches `value`, computed at data version `version` (taken before the snapshot was) and weighing
    /// about `size` bytes; returns it shared.
    pub fn put(&self, key: ResultKey, version: u64, size: usize, value: V) -> Arc<V> {
        let value = Arc::new(value);
        if self.budget == 0 {
            return value;
        }
        if size > self.budget / 8 {
            self.oversized.fetch_add(1, Ordering::Relaxed);
            return value;
        }
        let evicted = lock(&self.memory).insert(key, version, size, Arc::clone(&value));
        self.l2.evictions.fetch_add(evicted, Ordering::Relaxed);
        value
    }

    /// The counters now (`l3` is always zero).
    pub fn stats(&self) -> CacheStats {
        stats_of(
            &self.parsed,
            &self.memory,
            &self.l2,
            LevelStats::default(),
            &self.oversized,
        )
    }
}

/// The counters of the levels both caches share (parsed queries, values in memory) plus `l3`.
fn stats_of<V>(
    parsed: &Parsed,
    memory: &Mutex<ByteLru<V>>,
    l2: &LevelCounters,
    l3: LevelStats,
    oversized: &AtomicU64,
) -> CacheStats {
    let (l2_bytes, l2_entries) = {
        let m = lock(memory);
        (m.bytes() as u64, m.len() as u64)
    };
    CacheStats {
        l1: parsed.counters.snapshot(),
        l2: l2.snapshot(),
        l3,
        l2_bytes,
        l2_entries,
        oversized: oversized.load(Ordering::Relaxed),
    }
}

impl<V> Default for ValueCache<V> {
    fn default() -> Self {
        ValueCache::new(DEFAULT_VALUE_CACHE_BYTES)
    }
}
