//! Opening a store: RocksDB options, column families, the format version and the write lock.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use oxrdf::{QuadRef, Term};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteOptions, DB,
};

use crate::bulk::{self, BulkLoad, BulkOptions, DetachedBulkLoad};
use crate::error::{OpenError, Result, StoreError};
use crate::keys::{self, Index};
use crate::merge;
use crate::reader::Reader;
use crate::term::{term_key, TermId, TermKey};
use crate::transaction::{CommitSummary, Transaction};

/// The on-disk format version this build reads and writes. History: `docs/format.md`.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build upgrades on a read-write open (see [`upgrade_from_1`]).
const OLDEST_UPGRADABLE: u32 = 1;
/// The dictionary counter of a new store.
pub(crate) const FIRST_COUNTER: u64 = 1;
/// `meta` key present while an upgrade is under way; its value is the version it started from (u32 BE).
const META_UPGRADING: &[u8] = b"upgrading_from";

/// Entries of the term -> id cache (an LRU: keys are byte strings).
const TERM_CACHE_ENTRIES: usize = 1 << 16;
/// Slots of the id -> term cache (direct-mapped, see [`IdCache`]).
const ID_CACHE_SLOTS: usize = 1 << 18;

/// The id -> term cache: direct-mapped on the id, so a lookup is one memory access and dense ids (a
/// result column, a scan) land in neighbouring slots. An LRU with the same capacity spends most of a
/// large result's decoding time on its bookkeeping and scattered list nodes.
///
/// The slots (16 MiB) are allocated by the first `put`: a process that only loads or writes never
/// decodes ids, and filling them cost every `Store::open` ~20 ms of memset and fresh-page zeroing.
pub(crate) struct IdCache {
    slots: Vec<Option<(TermId, Term)>>,
    mask: usize,
}

impl IdCache {
    fn new(slots: usize) -> IdCache {
        IdCache {
            slots: Vec::new(),
            mask: slots.next_power_of_two() - 1,
        }
    }

    fn slot(&self, id: TermId) -> usize {
        // Spread the kind tag so the first IRI, blank node and literal ids do not share slots.
        ((id.0 >> 56).wrapping_mul(0x9E37_79B9) ^ id.0) as usize & self.mask
    }

    pub(crate) fn get(&self, id: &TermId) -> Option<&Term> {
        match self.slots.get(self.slot(*id))? {
            Some((k, t)) if k == id => Some(t),
            _ => None,
        }
    }

    pub(crate) fn put(&mut self, id: TermId, term: Term) {
        if self.slots.is_empty() {
            self.slots = vec![None; self.mask + 1];
        }
        let i = self.slot(id);
        self.slots[i] = Some((id, term));
    }
}

/// Prefix of application records in the `meta` column family.
const APP_PREFIX: &[u8] = b"app/";

fn app_key(key: &str) -> Vec<u8> {
    let mut k = APP_PREFIX.to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// Options for [`Store::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Shared RocksDB block cache size in bytes.
    pub block_cache_bytes: usize,
    /// `fsync` the write-ahead log on every commit. Off, a commit survives a process crash (`kill -9`) but
    /// not a power loss; on, it survives both.
    pub sync_commits: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            block_cache_bytes: 256 << 20,
            sync_commits: false,
        }
    }
}

/// A quad store on disk. Cheap to clone: clones share one RocksDB instance.
///
/// Readers ([`Store::reader`]) work on snapshots; writers ([`Store::transaction`]) are serialized by an
/// in-process lock and commit as one atomic RocksDB write batch.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    pub(crate) read_only: bool,
    pub(crate) write_options: WriteOptions,
    /// Serializes write transactions. Holding it means no other commit can happen, so the latest DB state
    /// is the transaction's base state.
    pub(crate) writer: Mutex<()>,
    /// Next dictionary counter value. Only advanced while `writer` is held; persisted under
    /// `keys::META_NEXT_ID` in the same batch as the terms that used the ids.
    pub(crate) next_id: AtomicU64,
    /// Data version of the last commit (mirrors `keys::META_DATA_VERSION`).
    pub(crate) data_version: AtomicU64,
    /// `id -> term` for dictionary ids. Only committed ids enter it.
    pub(crate) id_cache: Mutex<IdCache>,
    /// `encoded term -> id`. Only committed ids enter it, so an aborted transaction leaves no trace.
    pub(crate) term_cache: Mutex<LruCache<Vec<u8>, TermId>>,
    /// Receivers of [`crate::CommitEvent`]s (see [`Store::subscribe_commits`]).
    pub(crate) subscribers: crate::events::Subscribers,
}

impl Store {
    /// Opens (creating if needed) the store in `path` for reading and writing.
    ///
    /// Fails with [`OpenError::Locked`] if another process has it open for writing.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, OpenError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, OpenError> {
        let dir = path.as_ref().to_path_buf();
        let (db_opts, cfs) = db_options(&options);
        let db = DB::open_cf_descriptors(&db_opts, &dir, cfs).map_err(|e| open_error(&dir, e))?;
        Self::finish_open(db, dir, false, &options)
    }

    /// Opens an existing store read-only. Works while another process writes to it; the reader sees the
    /// state as of the open.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, OpenError> {
        let dir = path.as_ref().to_path_buf();
        if !dir.join("CURRENT").exists() {
            return Err(OpenError::NotFound { dir });
        }
        let options = StoreOptions::default();
        let (db_opts, cfs) = db_options(&options);
        let db = DB::open_cf_descriptors_read_only(&db_opts, &dir, cfs, false)
            .map_err(|e| open_error(&dir, e))?;
        Self::finish_open(db, dir, true, &options)
    }

    fn finish_open(
        db: DB,
        dir: PathBuf,
        read_only: bool,
        options: &StoreOptions,
    ) -> Result<Store, OpenError> {
        let corrupt = |what: &str| OpenError::Corrupt {
            dir: dir.clone(),
            what: what.to_owned(),
        };
        let storage = |source| OpenError::Storage {
            dir: dir.clone(),
            source,
        };
        let meta = db
            .cf_handle(keys::CF_META)
            .ok_or_else(|| corrupt("no meta column family"))?;
        let read_u64 = |key: &[u8]| -> Result<Option<u64>, OpenError> {
            match db.get_cf(meta, key).map_err(storage)? {
                None => Ok(None),
                Some(v) => Ok(Some(u64::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| corrupt("bad metadata value"))?,
                ))),
            }
        };
        let (next_id, data_version) = match db
            .get_cf(meta, keys::META_FORMAT_VERSION)
            .map_err(storage)?
        {
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_slice()
                        .try_into()
                        .map_err(|_| corrupt("bad format version value"))?,
                );
                if !(OLDEST_UPGRADABLE..=FORMAT_VERSION).contains(&found) {
                    return Err(OpenError::UnsupportedVersion {
                        dir,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                // An interrupted upgrade already says the new version (so that older builds refuse the
                // store); its marker holds the version it started from.
                let from = match db.get_cf(meta, META_UPGRADING).map_err(storage)? {
                    Some(v) => u32::from_be_bytes(
                        v.as_slice()
                            .try_into()
                            .map_err(|_| corrupt("bad upgrade marker"))?,
                    ),
                    None => found,
                };
                if from < FORMAT_VERSION {
                    if read_only {
                        return Err(OpenError::UpgradeNeeded {
                            dir,
                            found: from,
                            expected: FORMAT_VERSION,
                        });
                    }
                    upgrade_from_1(&db).map_err(|e| OpenError::Corrupt {
                        dir: dir.clone(),
                        what: format!("cannot upgrade from format version {from}: {e}"),
                    })?;
                }
                (
                    read_u64(keys::META_NEXT_ID)?.ok_or_else(|| corrupt("no id counter"))?,
                    read_u64(keys::META_DATA_VERSION)?.unwrap_or(0),
                )
            }
            None if read_only => return Err(OpenError::NotFound { dir }),
            None => {
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(
                    meta,
                    keys::META_FORMAT_VERSION,
                    FORMAT_VERSION.to_be_bytes(),
                );
                batch.put_cf(meta, keys::META_NEXT_ID, FIRST_COUNTER.to_be_bytes());
                batch.put_cf(meta, keys::META_DATA_VERSION, 0u64.to_be_bytes());
                db.write(batch).map_err(storage)?;
                (FIRST_COUNTER, 0)
            }
        };
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_commits);
        let cache_size = NonZeroUsize::new(TERM_CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        let store = Store {
            inner: Arc::new(Inner {
                db,
                path: dir,
                read_only,
                write_options,
                writer: Mutex::new(()),
                next_id: AtomicU64::new(next_id),
                data_version: AtomicU64::new(data_version),
                id_cache: Mutex::new(IdCache::new(ID_CACHE_SLOTS)),
                term_cache: Mutex::new(LruCache::new(cache_size)),
                subscribers: Default::default(),
            }),
        };
        if !read_only {
            // Roll back a bulk load that was interrupted, and remove stale temporary files.
            bulk::recover(&store.inner).map_err(|e| OpenError::Corrupt {
                dir: store.inner.path.clone(),
                what: format!("cannot roll back an interrupted bulk load: {e}"),
            })?;
        }
        Ok(store)
    }

    /// Starts a bulk load (see [`BulkLoad`]). Holds the writer lock until finished or dropped.
    pub fn bulk_loader(&self, options: &BulkOptions) -> Result<BulkLoad<'_>> {
        self.start_bulk_load(options, None)
    }

    /// [`Store::bulk_loader`] taking over `detached`, a load started while this store was being created
    /// (see [`DetachedBulkLoad`]). Fails with [`StoreError::NotNew`] if the store holds data or terms.
    pub fn bulk_loader_from(
        &self,
        options: &BulkOptions,
        detached: DetachedBulkLoad,
    ) -> Result<BulkLoad<'_>> {
        self.start_bulk_load(options, Some(detached))
    }

    fn start_bulk_load(
        &self,
        options: &BulkOptions,
        detached: Option<DetachedBulkLoad>,
    ) -> Result<BulkLoad<'_>> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        BulkLoad::new(&self.inner, self.inner.lock_writer(), options, detached)
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// A reader on a snapshot of the current state.
    pub fn reader(&self) -> Reader {
        Reader::new(Arc::clone(&self.inner))
    }

    /// Starts a write transaction. Blocks while another transaction of this store is open.
    pub fn transaction(&self) -> Result<Transaction<'_>> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        Transaction::new(&self.inner, self.inner.lock_writer())
    }

    /// Inserts quads in one transaction. Returns how many were new.
    pub fn insert<'a>(
        &self,
        quads: impl IntoIterator<Item = QuadRef<'a>>,
    ) -> Result<CommitSummary> {
        let mut txn = self.transaction()?;
        txn.insert_all(quads)?;
        txn.commit()
    }

    /// Removes quads in one transaction. Returns how many were present.
    pub fn remove<'a>(
        &self,
        quads: impl IntoIterator<Item = QuadRef<'a>>,
    ) -> Result<CommitSummary> {
        let mut txn = self.transaction()?;
        txn.remove_all(quads)?;
        txn.commit()
    }

    /// Reads an application record (generation receipts, webhook outbox, caches) stored beside the data.
    ///
    /// Application records live in the `meta` column family under an `app/` prefix: they never touch
    /// quads, statistics or the data version, so writing them triggers nothing.
    pub fn app_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let cf = self.inner.cf(keys::CF_META)?;
        Ok(self.inner.db.get_cf(cf, app_key(key))?)
    }

    /// Writes (durably, WAL on) an application record; `None` deletes it.
    pub fn app_put(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        let cf = self.inner.cf(keys::CF_META)?;
        match value {
            Some(v) => self
                .inner
                .db
                .put_cf_opt(cf, app_key(key), v, &self.inner.write_options)?,
            None => self
                .inner
                .db
                .delete_cf_opt(cf, app_key(key), &self.inner.write_options)?,
        }
        Ok(())
    }

    /// Application records whose key starts with `prefix`, in key order.
    pub fn app_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let cf = self.inner.cf(keys::CF_META)?;
        let start = app_key(prefix);
        let mut out = Vec::new();
        for item in self.inner.db.prefix_iterator_cf(cf, &start) {
            let (k, v) = item?;
            if !k.starts_with(&start) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[APP_PREFIX.len()..]).into_owned(),
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Subscribes to commit notifications: the receiver gets one [`crate::CommitEvent`] per commit that
    /// changed the store (transactions and bulk loads), sent after the write is durable. The channel is
    /// unbounded so committers never wait; drop the receiver to unsubscribe.
    pub fn subscribe_commits(&self) -> std::sync::mpsc::Receiver<crate::CommitEvent> {
        self.inner.subscribers.subscribe()
    }

    /// The data version: incremented by every commit that changes the store.
    pub fn data_version(&self) -> u64 {
        self.inner.data_version.load(Ordering::Acquire)
    }

    /// Total size of the store's files in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        dir_size(&self.inner.path)
            .map_err(|e| StoreError::Corrupt(format!("cannot list store files: {e}")))
    }

    /// Flushes memtables and compacts every column family (smaller, faster store; slow on big stores).
    pub fn compact(&self) -> Result<()> {
        for name in all_cf_names() {
            let cf = self.inner.cf(name)?;
            self.inner.db.flush_cf(cf)?;
            self.inner
                .db
                .compact_range_cf::<&[u8], &[u8]>(cf, None, None);
        }
        Ok(())
    }
}

impl Inner {
    /// The handle of a column family created at open.
    pub(crate) fn cf(&self, name: &str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Corrupt(format!("missing column family {name}")))
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // A panic in another transaction cannot leave the DB half-written (commits are one batch), so a
        // poisoned lock is safe to take over.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Locks a cache mutex, ignoring poisoning (caches hold only committed, immutable mappings).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Upgrades a format-1 store to format 2: long `term2id` keys become hashed keys (see [`term_key`]).
///
/// The new version and a marker ([`META_UPGRADING`]) are written first, with a sync, so that a format-1
/// build refuses a half-converted store (it would miss the hashed terms and give them new ids); then
/// batches of at most 100,000 keys; then the marker is deleted, with a sync. An open that finds the marker
/// runs this again, which converts what is left: a hashed key is its own key.
fn upgrade_from_1(db: &DB) -> std::result::Result<(), rocksdb::Error> {
    const BATCH_KEYS: usize = 100_000;
    let (Some(term2id), Some(meta)) = (db.cf_handle(keys::CF_TERM2ID), db.cf_handle(keys::CF_META))
    else {
        return Ok(());
    };
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut start = rocksdb::WriteBatch::default();
    start.put_cf(
        meta,
        keys::META_FORMAT_VERSION,
        FORMAT_VERSION.to_be_bytes(),
    );
    start.put_cf(meta, META_UPGRADING, 1u32.to_be_bytes());
    db.write_opt(start, &sync)?;
    let mut batch = rocksdb::WriteBatch::default();
    let mut it = db.raw_iterator_cf(term2id);
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if let TermKey::Hashed(hashed) = term_key(k) {
            batch.put_cf(term2id, hashed, v);
            batch.delete_cf(term2id, k);
            if batch.len() >= 2 * BATCH_KEYS {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        it.next();
    }
    it.status()?;
    batch.delete_cf(meta, META_UPGRADING);
    db.write_opt(batch, &sync)
}

fn all_cf_names() -> Vec<&'static str> {
    let mut names = vec![
        keys::CF_ID2TERM,
        keys::CF_TERM2ID,
        keys::CF_GRAPHS,
        keys::CF_BITMAPS,
        keys::CF_STATS,
        keys::CF_META,
    ];
    names.extend(Index::ALL.iter().map(|i| i.cf_name()));
    names
}

fn db_options(options: &StoreOptions) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let cache = Cache::new_lru_cache(options.block_cache_bytes);
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(2);
    db_opts.set_bytes_per_sync(1 << 20);
    db_opts.set_max_open_files(512);
    let cfs = all_cf_names()
        .into_iter()
        .map(|name| {
            let mut block = BlockBasedOptions::default();
            block.set_block_cache(&cache);
            block.set_bloom_filter(10.0, false);
            block.set_cache_index_and_filter_blocks(true);
            block.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut cf_opts = Options::default();
            cf_opts.set_block_based_table_factory(&block);
            cf_opts.set_compression_type(DBCompressionType::Lz4);
            cf_opts.set_bottommost_compression_type(DBCompressionType::Zstd);
            cf_opts.set_level_compaction_dynamic_level_bytes(true);
            if name == keys::CF_BITMAPS {
                cf_opts.set_merge_operator(
                    merge::BITMAP_MERGE_NAME,
                    merge::bitmap_full_merge,
                    merge::bitmap_partial_merge,
                );
            } else if name == keys::CF_STATS {
                cf_opts.set_merge_operator_associative(
                    merge::COUNTER_MERGE_NAME,
                    merge::counter_merge,
                );
            }
            ColumnFamilyDescriptor::new(name, cf_opts)
        })
        .collect();
    (db_opts, cfs)
}

fn open_error(dir: &Path, e: rocksdb::Error) -> OpenError {
    let text = e.to_string();
    if text.contains("lock hold by current process") || text.contains("While lock file") {
        OpenError::Locked {
            dir: dir.to_path_buf(),
        }
    } else {
        OpenError::Storage {
            dir: dir.to_path_buf(),
            source: e,
        }
    }
}

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_format_version_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let meta = store.inner.cf(keys::CF_META).unwrap();
            store
                .inner
                .db
                .put_cf(meta, keys::META_FORMAT_VERSION, 99u32.to_be_bytes())
                .unwrap();
        }
        let err = Store::open(dir.path()).err().expect("must refuse");
        let msg = err.to_string();
        assert!(matches!(
            err,
            OpenError::UnsupportedVersion {
                found: 99,
                expected: FORMAT_VERSION,
                ..
            }
        ));
        assert!(
            msg.contains("version 99") && msg.contains(&format!("version {FORMAT_VERSION}")),
            "{msg}"
        );
    }

    #[test]
    fn verify_finds_a_term2id_key_left_behind() {
        use oxrdf::{GraphNameRef, NamedNodeRef, QuadRef};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ex = NamedNodeRef::new("http://example.com/x").unwrap();
        store
            .insert([QuadRef::new(ex, ex, ex, GraphNameRef::DefaultGraph)])
            .unwrap();
        assert!(store.verify().unwrap().is_ok());
        // A key whose id has no id2term entry, as a rollback that missed a hashed key would leave.
        let term2id = store.inner.cf(keys::CF_TERM2ID).unwrap();
        store
            .inner
            .db
            .put_cf(term2id, b"s-stale-key", TermId(12345).to_be_bytes())
            .unwrap();
        let err = store.verify().unwrap().expect_err("a stale term2id key");
        assert!(err.0.contains("term2id"), "{}", err.0);
    }

    #[test]
    fn a_format_1_store_is_upgraded_on_a_writing_open() {
        // A plain format-1 store, and one whose upgrade was interrupted right after it began (version 2
        // and the marker written, no key converted yet).
        for interrupted in [false, true] {
            upgrade(interrupted);
        }
    }

    fn upgrade(interrupted: bool) {
        use oxrdf::{Literal, NamedNodeRef, QuadRef};
        let dir = tempfile::tempdir().unwrap();
        let long_iri = format!("http://example.com/{}", "long-iri/".repeat(40));
        let s = NamedNodeRef::new(&long_iri).unwrap();
        let p = NamedNodeRef::new("http://e.com/p").unwrap();
        let long = Literal::new_simple_literal(
            "a literal long enough to be keyed by its hash in format 2",
        );
        let short = Literal::new_simple_literal("short literal");
        fn quads<'a>(s: NamedNodeRef<'a>, p: NamedNodeRef<'a>, o: &'a Literal) -> [QuadRef<'a>; 1] {
            [QuadRef::new(s, p, o, oxrdf::GraphNameRef::DefaultGraph)]
        }
        {
            let store = Store::open(dir.path()).unwrap();
            store.insert(quads(s, p, &long)).unwrap();
            store.insert(quads(s, p, &short)).unwrap();
            // Rewrite the dictionary as format 1 wrote it: every term is its own `term2id` key.
            let inner = &store.inner;
            let (id2term, term2id) = (
                inner.cf(keys::CF_ID2TERM).unwrap(),
                inner.cf(keys::CF_TERM2ID).unwrap(),
            );
            let mut batch = rocksdb::WriteBatch::default();
            let mut whole = 0;
            for entry in inner.db.iterator_cf(id2term, rocksdb::IteratorMode::Start) {
                let (id, term) = entry.unwrap();
                if let TermKey::Hashed(hashed) = term_key(&term) {
                    batch.delete_cf(term2id, hashed);
                    batch.put_cf(term2id, &term, &id);
                    whole += 1;
                }
            }
            assert_eq!(whole, 2, "the subject and the long literal");
            let meta = inner.cf(keys::CF_META).unwrap();
            if interrupted {
                batch.put_cf(meta, keys::META_FORMAT_VERSION, 2u32.to_be_bytes());
                batch.put_cf(meta, META_UPGRADING, 1u32.to_be_bytes());
            } else {
                batch.put_cf(meta, keys::META_FORMAT_VERSION, 1u32.to_be_bytes());
            }
            inner.db.write(batch).unwrap();
        }
        let err = Store::open_read_only(dir.path())
            .err()
            .expect("read-only cannot upgrade");
        assert!(
            matches!(err, OpenError::UpgradeNeeded { found: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("INSERT DATA"), "{err}");

        let store = Store::open(dir.path()).unwrap();
        let reader = store.reader();
        let id = reader
            .term_id(long.as_ref().into())
            .unwrap()
            .expect("found after the upgrade");
        assert!(reader.term_id(s.into()).unwrap().is_some());
        // The same terms again: no new dictionary entry, no new quad.
        let summary = store.insert(quads(s, p, &long)).unwrap();
        assert_eq!((summary.inserted, summary.new_terms), (0, 0));
        assert_eq!(
            store.reader().term_id(long.as_ref().into()).unwrap(),
            Some(id)
        );
        let report = store
            .verify()
            .unwrap()
            .expect("consistent after the upgrade");
        assert_eq!(report.terms, 4);
        drop((reader, store));
        if let Err(e) = Store::open_read_only(dir.path()) {
            panic!("read-only open after the upgrade: {e}");
        }
        let store = Store::open(dir.path()).unwrap();
        let meta = store.inner.cf(keys::CF_META).unwrap();
        assert!(store
            .inner
            .db
            .get_cf(meta, META_UPGRADING)
            .unwrap()
            .is_none());
    }
}
