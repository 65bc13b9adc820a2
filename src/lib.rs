//! tern: an embedded RDF store with a SPARQL server and graph-driven generation.
//!
//! This facade re-exports the member crates so programs depend on one package:
//!
//! ```no_run
//! use tern::{Store, loaders::{self, Input, LoadOptions}};
//! let store = Store::open("/tmp/my-store")?;
//! loaders::load(&store, &[Input::from_arg("data.ttl")], &LoadOptions::default(), &mut |_| {})?;
//! println!("{} quads", store.reader().len()?);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

pub mod bench;

pub use tern_generate as generate;
pub use tern_loaders as loaders;
pub use tern_query as query;
pub use tern_server as server;
pub use tern_store as store;
pub use tern_store::{GraphSel, Reader, Store, TermId, Transaction};

/// Peak resident set size of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
