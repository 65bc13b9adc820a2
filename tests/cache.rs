//! The multi-level query cache: L2 hits for repeated queries, invalidation by data version after an
//! update, the byte budget, oversized results, and L3 warm starts (and stale entries) across servers on
//! the same store — over real HTTP where the server is concerned.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern::query::cache::{Cache, ResultKey, L3_PREFIX};
use tern::server::{ServerConfig, ServerHandle};
use tern::Store;

#[path = "support/sample.rs"]
mod sample;
use sample::{agent, sample_store};

const COUNT_ALL: &str = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }";
const ALL: &str = "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }";

fn serve(store: &Arc<Store>, config: ServerConfig) -> (ServerHandle, String) {
    let server = ServerHandle::start(
        Arc::clone(store),
        ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..config
        },
    )
    .unwrap();
    let base = format!("http://{}", server.addr());
    (server, base)
}

/// (status, content type, body) of a query sent as a direct POST.
fn query(base: &str, text: &str, accept: &str) -> (u16, String, String) {
    let mut r = agent()
        .post(format!("{base}/sparql"))
        .header("Content-Type", "application/sparql-query")
        .header("Accept", accept)
        // The base IRI (part of the key) comes from Host: keep it the same across servers on other ports,
        // as a restarted server on its usual address would see.
        .header("Host", "tern.test")
        .send(text)
        .expect("HTTP exchange");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        r.status().as_u16(),
        ct,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn update(base: &str, text: &str) -> u16 {
    agent()
        .post(format!("{base}/update"))
        .header("Content-Type", "application/sparql-update")
        .send(text)
        .expect("HTTP exchange")
        .status()
        .as_u16()
}

/// The value of one metric line, e.g. `tern_cache_hits_total{level="l2"}`.
fn metric(base: &str, name: &str) -> u64 {
    let text = agent()
        .get(format!("{base}/metrics"))
        .call()
        .expect("HTTP exchange")
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

const L1_HITS: &str = "tern_cache_hits_total{level=\"l1\"}";
const L2_HITS: &str = "tern_cache_hits_total{level=\"l2\"}";
const L2_MISSES: &str = "tern_cache_misses_total{level=\"l2\"}";
const L3_HITS: &str = "tern_cache_hits_total{level=\"l3\"}";
const L3_MISSES: &str = "tern_cache_misses_total{level=\"l3\"}";
const JSON: &str = "application/sparql-results+json";

fn persisted(store: &Store) -> usize {
    store.app_scan(L3_PREFIX).unwrap().len()
}

/// Waits for the background L3 writer to persist `n` entries.
fn wait_persisted(store: &Store, n: usize) {
    let start = Instant::now();
    while persisted(store) < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "L3 never reached {n} entries"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn repeated_query_hits_l2_and_updates_invalidate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sample_store(dir.path()));
    let (server, base) = serve(&store, ServerConfig::default());

    let first = query(&base, COUNT_ALL, JSON);
    assert_eq!(first.0, 200);
    assert!(first.2.contains("\"88\""), "{}", first.2);
    assert_eq!(metric(&base, L2_HITS), 0);
    let second = query(&base, COUNT_ALL, JSON);
    assert_eq!(second, first, "a hit serves the same body and content type");
    assert_eq!(metric(&base, L2_HITS), 1);
    assert_eq!(metric(&base, L1_HITS), 1);
    assert!(metric(&base, "tern_cache_bytes{level=\"l2\"}") > 0);

    // The format is part of the key: CSV is a miss, then a hit.
    let csv = query(&base, COUNT_ALL, "text/csv");
    assert_eq!(csv.2, "n\r\n88\r\n");
    assert_eq!(query(&base, COUNT_ALL, "text/csv"), csv);
    assert_eq!(metric(&base, L2_HITS), 2);

    // An update makes a new data version: the next lookup misses and sees the new data.
    assert_eq!(
        update(&base, "INSERT DATA { <http://e/s> <http://e/p> 1 }"),
        204
    );
    let misses = metric(&base, L2_MISSES);
    let after = query(&base, COUNT_ALL, JSON);
    assert!(after.2.contains("\"89\""), "{}", after.2);
    assert_eq!(metric(&base, L2_HITS), 2);
    assert_eq!(metric(&base, L2_MISSES), misses + 1);
    // ... and the fresh result is cached in turn.
    assert_eq!(query(&base, COUNT_ALL, JSON), after);
    assert_eq!(metric(&base, L2_HITS), 3);
    server.shutdown();
}

#[test]
fn oversized_results_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sample_store(dir.path()));
    // Entry cap = 1/8 of 8 KiB = 1 KiB: the whole sample as N-Triples is larger.
    let (server, base) = serve(
        &store,
        ServerConfig {
            cache_bytes: 8 << 10,
            ..ServerConfig::default()
        },
    );
    let first = query(&base, ALL, "application/n-triples");
    assert_eq!(first.0, 200);
    assert!(first.2.len() > 1024, "{}", first.2.len());
    assert_eq!(query(&base, ALL, "application/n-triples"), first);
    assert_eq!(metric(&base, L2_HITS), 0);
    assert_eq!(metric(&base, "tern_cache_oversized_total"), 2);
    assert_eq!(metric(&base, "tern_cache_bytes{level=\"l2\"}"), 0);
    // A small result still is cached.
    query(&base, COUNT_ALL, JSON);
    query(&base, COUNT_ALL, JSON);
    assert_eq!(metric(&base, L2_HITS), 1);
    server.shutdown();

    // A zero budget disables result caching.
    let (server, base) = serve(
        &store,
        ServerConfig {
            cache_bytes: 0,
            ..ServerConfig::default()
        },
    );
    query(&base, COUNT_ALL, JSON);
    query(&base, COUNT_ALL, JSON);
    assert_eq!(metric(&base, L2_HITS), 0);
    server.shutdown();
}

#[test]
fn byte_budget_evicts_least_recently_used() {
    let cache = Cache::new(1000, None);
    assert_eq!(cache.entry_cap(), 125);
    let key = |i: usize| ResultKey::new(&format!("q{i}"), None, None, None, "text/csv");
    for i in 0..15 {
        cache.put(key(i), 1, "text/csv", vec![b'x'; 100]);
        // Keep entry 0 recently used: it must survive.
        assert!(cache.get(&key(0), 1).is_some());
    }
    let s = cache.stats();
    assert!(s.l2_bytes <= 1000, "{s:?}");
    assert_eq!(s.l2_entries, 10);
    assert_eq!(s.l2.evictions, 5);
    assert!(cache.get(&key(0), 1).is_some());
    assert!(
        cache.get(&key(1), 1).is_none(),
        "the oldest unused entry went first"
    );
    assert!(cache.get(&key(14), 1).is_some());
    // Another data version never hits and drops the stale entry.
    assert!(cache.get(&key(14), 2).is_none());
    assert_eq!(cache.stats().l2_entries, 9);

    // Over the cap: refused.
    cache.put(key(99), 1, "text/csv", vec![b'x'; 126]);
    assert!(cache.get(&key(99), 1).is_none());
    assert_eq!(cache.stats().oversized, 1);
}

#[test]
fn l3_warm_start_and_stale_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sample_store(dir.path()));
    let (server, base) = serve(&store, ServerConfig::default());
    let first = query(&base, COUNT_ALL, JSON);
    server.shutdown();
    wait_persisted(&store, 1);

    // A new server (new cache, empty L2) on the same store answers from L3.
    let (server, base) = serve(&store, ServerConfig::default());
    assert_eq!(query(&base, COUNT_ALL, JSON), first);
    assert_eq!(metric(&base, L3_HITS), 1);
    // Promoted to L2.
    assert_eq!(query(&base, COUNT_ALL, JSON), first);
    assert_eq!(metric(&base, L2_HITS), 1);
    server.shutdown();

    // The data changes while no server runs: the next one sweeps the stale entry and never serves it.
    tern::query::update(
        &store,
        "INSERT DATA { <http://e/s> <http://e/p> 1 }",
        Default::default(),
    )
    .unwrap();
    assert_eq!(persisted(&store), 1);
    let (server, base) = serve(&store, ServerConfig::default());
    let after = query(&base, COUNT_ALL, JSON);
    assert!(after.2.contains("\"89\""), "{}", after.2);
    assert_eq!(metric(&base, L3_HITS), 0);
    assert_eq!(metric(&base, L3_MISSES), 1);
    assert_eq!(
        metric(&base, "tern_cache_evictions_total{level=\"l3\"}"),
        1,
        "the sweep on open removed the stale entry"
    );
    server.shutdown();
    wait_persisted(&store, 1);

    // A stale entry met by a lookup (no sweep in between) is a miss and is deleted.
    let cache = Cache::new(1 << 20, Some(Store::clone(&store)));
    let key = ResultKey::new("q", None, None, None, "text/csv");
    let v = store.data_version();
    cache.put(key, v, "text/csv", b"old".to_vec());
    cache.flush();
    assert_eq!(persisted(&store), 2);
    drop(cache);
    let cache = Cache::new(1 << 20, Some(Store::clone(&store)));
    assert_eq!(
        cache.get(&key, v).map(|e| e.body.clone()),
        Some(b"old".to_vec())
    );
    assert_eq!(cache.stats().l3.hits, 1);
    let cache = Cache::new(1 << 20, Some(Store::clone(&store)));
    assert!(
        cache.get(&key, v + 1).is_none(),
        "another version is never served"
    );
    cache.flush();
    assert_eq!(persisted(&store), 1);
    assert_eq!(cache.stats().l3.evictions, 1);
}

#[test]
fn l3_cap_deletes_oldest_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let v = store.data_version();
    let key = |i: usize| ResultKey::new(&format!("q{i}"), None, None, None, "text/csv");
    // Each encoded value is 1,000 body bytes plus a small header: at most 4 fit in 5,000 bytes.
    let cache = Cache::with_l3_cap(1 << 20, Some(Store::clone(&store)), 5000);
    for i in 0..10 {
        cache.put(key(i), v, "text/csv", vec![b'x'; 1000]);
    }
    cache.flush();
    let (entries, bytes) = tern::query::cache::persisted(&store).unwrap();
    assert!(bytes <= 5000, "{bytes} bytes persisted");
    assert_eq!(entries, 4);
    assert_eq!(cache.stats().l3.evictions, 6);
    assert!(
        cache.get_persistent(&key(0), v).is_none(),
        "the oldest went first"
    );
    assert!(cache.get_persistent(&key(9), v).is_some());
    drop(cache);

    // Reopening with a smaller cap trims what the earlier cache left.
    let cache = Cache::with_l3_cap(1 << 20, Some(Store::clone(&store)), 2500);
    cache.flush();
    let (entries, bytes) = tern::query::cache::persisted(&store).unwrap();
    assert!(
        bytes <= 2500 && entries == 2,
        "{entries} entries, {bytes} bytes"
    );
    assert_eq!(cache.stats().l3.evictions, 2);
    // The default cap is 64 MiB.
    assert_eq!(tern::query::cache::DEFAULT_L3_MAX_BYTES, 64 << 20);
}

#[test]
fn value_cache_shares_the_byte_budget_logic() {
    use tern::query::cache::ValueCache;
    let cache: ValueCache<String> = ValueCache::new(1000);
    let key = |i: usize| ResultKey::new(&format!("q{i}"), None, None, None, "rows");
    for i in 0..15 {
        cache.put(key(i), 1, 100, format!("v{i}"));
    }
    let s = cache.stats();
    assert_eq!((s.l2_entries, s.l2_bytes, s.l2.evictions), (10, 1000, 5));
    assert_eq!(cache.get(&key(14), 1).as_deref(), Some(&"v14".to_string()));
    assert!(cache.get(&key(0), 1).is_none());
    assert!(cache.get(&key(14), 2).is_none(), "stale version dropped");
    let s = cache.stats();
    assert_eq!((s.l2.hits, s.l2.misses, s.l2.evictions), (1, 2, 6));
    cache.put(key(99), 1, 126, "big".into());
    assert_eq!(cache.stats().oversized, 1);
    assert!(cache.parse("ASK {}", None).is_ok());
    assert!(cache.parse("ASK {}", None).is_ok());
    assert_eq!((cache.stats().l1.hits, cache.stats().l1.misses), (1, 1));
}
