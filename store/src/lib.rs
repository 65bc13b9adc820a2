//! tern's quad store: RocksDB on disk, terms interned to dense integer ids, quads in nine permutation
//! indexes, roaring bitmaps of subject sets, exact statistics, snapshot reads and atomic write batches.
//!
//! This crate knows nothing of SPARQL or of RDF syntaxes: it takes and returns `oxrdf` terms and quads, and
//! offers id-level access ([`Reader::quads_for_pattern`], bitmaps, statistics) for the query engine.
//!
//! ```no_run
//! use tern_store::{Store, GraphSel};
//! use oxrdf::{NamedNodeRef, QuadRef, GraphNameRef};
//! let store = Store::open("/tmp/example-store")?;
//! let ex = NamedNodeRef::new_unchecked("http://example.com/s");
//! store.insert([QuadRef::new(ex, ex, ex, GraphNameRef::DefaultGraph)])?;
//! let reader = store.reader();
//! assert_eq!(reader.len()?, 1);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

mod bulk;
mod error;
mod events;
mod keys;
mod merge;
mod reader;
mod scan;
mod store;
mod term;
mod transaction;
mod verify;

/// Maps updated once per quad on write paths: a fast hash instead of SipHash (keys are our own ids).
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// See [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use bulk::{BulkEncoder, BulkLoad, BulkOptions, BulkSummary, DetachedBulkLoad, SstWriter};
pub use error::{OpenError, Result, StoreError, VerifyError};
pub use events::{CommitEvent, COMMIT_EVENT_QUAD_CAP};
pub use keys::{IdQuad, Index};
pub use reader::{BitmapStats, GraphSel, PredicateStats, QuadIter, Reader, Statistics};
pub use store::{Store, StoreOptions, FORMAT_VERSION};
pub use term::{TermId, TermKind};
pub use transaction::{CommitSummary, Transaction, PO_BITMAP_THRESHOLD};
pub use verify::VerifyReport;
