//! Shared test fixtures: the bundled sample data in an on-disk store, and an HTTP client that reports
//! error statuses instead of failing on them.

use std::path::Path;
use std::time::Duration;

use tern::loaders::{self, Input, LoadOptions};
use tern::Store;

/// A store in `dir` holding `data/sample.ttl` (88 triples).
pub fn sample_store(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.ttl");
    loaders::load(
        &store,
        &[Input::Path(sample)],
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    store
}

/// A client that returns 4xx/5xx responses (tests assert on them) and gives up after 30 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}
