//! Prometheus text-format metrics: requests by endpoint and status, latency histograms, running queries,
//! rejections, store size and load counts.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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

/// Process-wide counters of one server.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    pub queries_running: AtomicI64,
    pub rejected_busy: AtomicU64,
    pub rejected_rate: AtomicU64,
    pub quads_loaded: AtomicU64,
    pub load_seconds_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn observe(&self, endpoint: &str, status: u16, elapsed: Duration) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((endpoint.to_owned(), status)).or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(endpoint.to_owned()).or_default();
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

    /// The exposition text; `quads` is the store size now.
    pub(crate) fn render(&self, quads: u64) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tern_http_requests_total HTTP requests by endpoint and status."
        );
        let _ = writeln!(out, "# TYPE tern_http_requests_total counter");
        if let Ok(r) = self.requests.lock() {
            for ((endpoint, status), n) in r.iter() {
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
        if let Ok(l) = self.latency.lock() {
            for (endpoint, h) in l.iter() {
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
        out
    }
}
