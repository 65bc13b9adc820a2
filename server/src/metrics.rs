//! Prometheus text-format metrics: requests by endpoint and status, latency histograms, running queries,
//! rejections, store size and load counts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tern_query::cache::{CacheStats, LevelStats};

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Requests of one endpoint: counts by status and the latency histogram.
#[derive(Default)]
struct Endpoint {
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
}

/// Process-wide counters of one server.
#[derive(Default)]
pub(crate) struct Metrics {
    /// One lock per request; an endpoint's name is copied only the first time it is seen.
    endpoints: Mutex<BTreeMap<String, Endpoint>>,
    pub queries_running: AtomicI64,
    pub rejected_busy: AtomicU64,
    pub rejected_rate: AtomicU64,
    pub quads_loaded: AtomicU64,
    pub load_seconds_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn observe(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let Ok(mut endpoints) = self.endpoints.lock() else {
            return;
        };
        let e = match endpoints.get_mut(endpoint) {
            Some(e) => e,
            // Allocates the name once per endpoint, not per request.
            None => endpoints.entry(endpoint.to_owned()).or_default(),
        };
        {
            *e.statuses.entry(status).or_default() += 1;
            let h = &mut e.latency;
            let secs = elapsed.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
    }

    /// The exposition text; `quads` is the store size now, `cache` the query cache's counters.
    pub(crate) fn render(&self, quads: u64, cache: &CacheStats) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tern_http_requests_total HTTP requests by endpoint and status."
        );
        let _ = writeln!(out, "# TYPE tern_http_requests_total counter");
        let endpoints = self.endpoints.lock();
        let endpoints = endpoints.as_deref().ok();
        for (endpoint, e) in endpoints.into_iter().flatten() {
            for (status, n) in &e.statuses {
                let _ = writeln!(
                    out,
                    "tern_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tern_http_request_duration_seconds Request latency by endpoint."
        );
        let _ = writeln!(out, "# TYPE tern_http_request_duration_seconds histogram");
        for (endpoint, h) in endpoints
            .into_iter()
            .flatten()
            .map(|(name, e)| (name, &e.latency))
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tern_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "tern_http_request_duration_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "tern_http_request_duration_seconds_sum{{endpoint=\"{endpoint}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "tern_http_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} {}",
                h.count
            );
        }
        let gauges = [
            (
                "tern_queries_running",
                "gauge",
                "Queries being evaluated now.",
                self.queries_running.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tern_rejected_busy_total",
                "counter",
                "Queries refused with 503 because the concurrency limit was reached.",
                self.rejected_busy.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tern_rejected_rate_limited_total",
                "counter",
                "Requests refused with 429 by the per-client rate limit.",
                self.rejected_rate.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tern_store_quads",
                "gauge",
                "Quads in the store.",
                quads.to_string(),
            ),
            (
                "tern_loaded_quads_total",
                "counter",
                "Quads received through Graph Store Protocol uploads.",
                self.quads_loaded.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tern_load_seconds_total",
                "counter",
                "Seconds spent parsing and committing uploads (quads / seconds = load rate).",
                format!(
                    "{}",
                    self.load_seconds_micros.load(Ordering::Relaxed) as f64 / 1e6
                ),
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        render_cache(&mut out, cache);
        out
    }
}

/// Reads one counter of a level.
type LevelCounter = fn(&LevelStats) -> u64;

/// Query cache counters per level (L1 parsed queries, L2 results in memory, L3 results in the store).
fn render_cache(out: &mut String, cache: &CacheStats) {
    let levels = [("l1", cache.l1), ("l2", cache.l2), ("l3", cache.l3)];
    let counters: [(&str, &str, LevelCounter); 3] = [
        ("tern_cache_hits_total", "Query cache hits by level.", |l| {
            l.hits
        }),
        (
            "tern_cache_misses_total",
            "Query cache misses by level.",
            |l| l.misses,
        ),
        (
            "tern_cache_evictions_total",
            "Query cache entries evicted by level (over budget or stale data version).",
            |l| l.evictions,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (level, stats) in &levels {
            let _ = writeln!(out, "{name}{{level=\"{level}\"}} {}", get(stats));
        }
    }
    let _ = writeln!(
        out,
        "# HELP tern_cache_bytes Bytes of cached query results by level."
    );
    let _ = writeln!(out, "# TYPE tern_cache_bytes gauge");
    let _ = writeln!(out, "tern_cache_bytes{{level=\"l2\"}} {}", cache.l2_bytes);
    let _ = writeln!(
        out,
        "# HELP tern_cache_oversized_total Results too large to cache."
    );
    let _ = writeln!(out, "# TYPE tern_cache_oversized_total counter");
    let _ = writeln!(out, "tern_cache_oversized_total {}", cache.oversized);
}
