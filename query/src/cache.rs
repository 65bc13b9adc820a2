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
//! buffer an unbounded result to fill the cache.

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
        self.0.iter().map(|b| format!("{b:02x}")).collect()
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

/// L2: results under a byte budget.
struct Memory {
    map: LruCache<ResultKey, Arc<Entry>>,
    bytes: usize,
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
    parsed: Mutex<LruCache<(String, Option<String>), Query>>,
    memory: Mutex<Memory>,
    budget: usize,
    l3: Option<Persistent>,
    l1: LevelCounters,
    l2: LevelCounters,
    l3c: LevelCounters,
    oversized: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a cache lock leaves at worst a missing or extra entry: keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// A cache with an L2 budget of `budget` bytes and, when `store` is given and writable, an L3 in it.
    /// Opening sweeps L3 entries whose data version is not the store's. A budget of 0 disables L2 and L3
    /// (L1 still works).
    pub fn new(budget: usize, store: Option<Store>) -> Cache {
        let l3c = LevelCounters::default();
        let l3 = store
            .filter(|s| budget > 0 && !s.is_read_only())
            .map(|store| {
                let swept = sweep(&store).unwrap_or_else(|e| {
                    tracing::warn!("query cache: cannot sweep stale entries: {e}");
                    0
                });
                l3c.evictions.fetch_add(swept, Ordering::Relaxed);
                let (tx, rx) = sync_channel(L3_QUEUE);
                let writer_store = store.clone();
                let thread = std::thread::Builder::new()
                    .name("tern-cache-l3".into())
                    .spawn(move || l3_writer(writer_store, rx));
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
            parsed: Mutex::new(LruCache::new(
                NonZeroUsize::new(L1_ENTRIES).unwrap_or(NonZeroUsize::MIN),
            )),
            memory: Mutex::new(Memory {
                map: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
            l3,
            l1: LevelCounters::default(),
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
    pub fn parse(&self, text: &str, base_iri: Option<&str>) -> Result<Query> {
        let key = (text.to_owned(), base_iri.map(str::to_owned));
        if let Some(q) = lock(&self.parsed).get(&key) {
            self.l1.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(q.clone());
        }
        self.l1.misses.fetch_add(1, Ordering::Relaxed);
        let q = crate::parse_query(text, base_iri)?;
        if lock(&self.parsed).push(key, q.clone()).is_some() {
            // `push` returns the least recently used entry when full (or the same key, raced in by
            // another thread: counted too, harmlessly).
            self.l1.evictions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(q)
    }

    /// L2 only: the entry for `key` computed at data version `version`, if held in memory. Never blocks
    /// on I/O, so async code may call it directly.
    pub fn get_memory(&self, key: &ResultKey, version: u64) -> Option<Arc<Entry>> {
        if !self.enabled() {
            return None;
        }
        let mut m = lock(&self.memory);
        match m.map.get(key) {
            Some(e) if e.version == version => {
                self.l2.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Arc::clone(e));
            }
            Some(_) => {
                // Stale: computed at another data version; it can never be served again.
                if let Some(old) = m.map.pop(key) {
                    m.bytes = m.bytes.saturating_sub(old.body.len());
                    self.l2.evictions.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {}
        }
        self.l2.misses.fetch_add(1, Ordering::Relaxed);
        None
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
        let mut m = lock(&self.memory);
        m.bytes += entry.body.len();
        if let Some(old) = m.map.put(key, entry) {
            m.bytes = m.bytes.saturating_sub(old.body.len());
        }
        while m.bytes > self.budget {
            let Some((_, old)) = m.map.pop_lru() else {
                break;
            };
            m.bytes = m.bytes.saturating_sub(old.body.len());
            self.l2.evictions.fetch_add(1, Ordering::Relaxed);
        }
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
        let (l2_bytes, l2_entries) = {
            let m = lock(&self.memory);
            (m.bytes as u64, m.map.len() as u64)
        };
        CacheStats {
            l1: self.l1.snapshot(),
            l2: self.l2.snapshot(),
            l3: self.l3c.snapshot(),
            l2_bytes,
            l2_entries,
            oversized: self.oversized.load(Ordering::Relaxed),
        }
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

fn l3_writer(store: Store, rx: Receiver<L3Op>) {
    for op in rx {
        let outcome = match op {
            L3Op::Put(name, value) => store.app_put(&name, Some(&value)),
            L3Op::Delete(name) => store.app_put(&name, None),
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

/// Deletes L3 entries whose data version is not the store's; returns how many.
fn sweep(store: &Store) -> tern_store::Result<u64> {
    let version = store.data_version();
    let mut removed = 0;
    for (name, value) in store.app_scan(L3_PREFIX)? {
        if Entry::decode_version(&value) != Some(version) {
            store.app_put(&name, None)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// L3 entries persisted in `store` and their total bytes (for `tern stats`).
pub fn persisted(store: &Store) -> tern_store::Result<(u64, u64)> {
    let entries = store.app_scan(L3_PREFIX)?;
    let bytes = entries.iter().map(|(_, v)| v.len() as u64).sum();
    Ok((entries.len() as u64, bytes))
}
