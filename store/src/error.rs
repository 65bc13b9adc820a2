//! Error types of the store, one per operation family.

use std::path::PathBuf;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or another `Store` in this process) holds the write lock.
    #[error(
        "store is locked: {dir} is open for writing by another process; stop it, or use a read-only open"
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// The directory holds a store of another format version.
    #[error(
        "{dir} holds a tern store in format version {found}, but this build reads version {expected}; \
         dump it with the tern version that wrote it and load the dump into a new store"
    )]
    UnsupportedVersion {
        /// The store directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        expected: u32,
    },
    /// A read-only open of a store in an older format that this build upgrades when it opens it for writing.
    #[error(
        "{dir} holds a tern store in format version {found}, which this build upgrades to version {expected} \
         when it opens the store for writing; open it for writing once, e.g. \
         `tern update -l {dir} -u 'INSERT DATA {{}}'`, then retry"
    )]
    UpgradeNeeded {
        /// The store directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build reads and writes.
        expected: u32,
    },
    /// A read-only open of a directory that holds no store.
    #[error("{dir} does not contain a tern store; create one with `tern load -l {dir} FILE`")]
    NotFound {
        /// The store directory.
        dir: PathBuf,
    },
    /// Metadata that cannot be decoded.
    #[error("store at {dir} is corrupt: {what}")]
    Corrupt {
        /// The store directory.
        dir: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// Any other RocksDB failure (I/O, permissions, ...).
    #[error("cannot open store at {dir}: {source}")]
    Storage {
        /// The store directory.
        dir: PathBuf,
        /// The underlying error.
        source: rocksdb::Error,
    },
}

/// An error while reading or writing an open store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an I/O or internal failure.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// Data on disk that cannot be decoded. This is never caused by user input.
    #[error("store is corrupt: {0}; run `tern stats` to check it and reload from a dump")]
    Corrupt(String),
    /// The store was opened read-only.
    #[error("store is open read-only; reopen it without read-only mode to write")]
    ReadOnly,
    /// The dictionary counter is exhausted.
    #[error("the term dictionary is full (2^56 terms)")]
    DictionaryFull,
    /// RDF 1.2 triple terms are not supported by this format version.
    #[error("unsupported term: {0}")]
    UnsupportedTerm(String),
    /// A load started as a load into a new store found data in the store once it was open (another
    /// process wrote to it meanwhile, or the caller passed an existing store).
    #[error(
        "the store at {0} already holds data, but this load began as a load into a new store; nothing \
         was loaded: load again (into an existing store, `tern load` reads it first)"
    )]
    NotNew(std::path::PathBuf),
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A violated invariant found by [`crate::Store::verify`].
#[derive(Debug, thiserror::Error)]
#[error("store invariant violated: {0}")]
pub struct VerifyError(pub String);
