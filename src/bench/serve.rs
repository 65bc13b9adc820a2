//! `tern bench serve`: the HTTP server under load on loopback. BSBM pc1000 is bulk-loaded, the server runs
//! in this process on `127.0.0.1:0`, and N clients (tasks on one client thread, or one thread each) send
//! the BSBM explore query mix (parameters drawn exactly as `tern bench query` draws them) as SPARQL
//! Protocol POSTs for T seconds, one request in flight per connection, reading every body to the end. Reported: throughput, latency percentiles overall and per query, errors, and the
//! process's resident memory sampled every second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::query::{bsbm_params, column, fill, template, BSBM};
use crate::query::Query;
use crate::server::{ServerConfig, ServerHandle};
use crate::Store;

/// Longest one request may take before the client counts it as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Error messages kept for the report.
const KEEP_ERRORS: usize = 5;

/// One request of the flattened query mix.
struct Request {
    /// Index into the query types (`explore1` ...).
    kind: usize,
    text: String,
    /// CONSTRUCT or DESCRIBE: asks for N-Triples instead of SPARQL JSON results.
    graph: bool,
}

/// What one client thread measured.
#[derive(Default)]
struct ClientLog {
    /// (query type, latency in µs) of each successful request.
    ok: Vec<(usize, u32)>,
    /// Query type of each failed request.
    failed: Vec<usize>,
    errors: Vec<String>,
    /// Body bytes received per query type.
    bytes: [u64; 12],
}

pub(super) fn bench_serve(data: &Path, work: Option<PathBuf>, load: Load) -> Result<()> {
    let (clients, seconds) = (load.clients, load.seconds);
    if !(seconds > 0.0 && seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600], not {seconds}");
    }
    if clients == 0 || clients > 4096 {
        bail!("--clients must be in 1..=4096, not {clients}");
    }
    let work = match work {
        Some(w) => w,
        None => super::tempfile_dir()?,
    };
    std::fs::create_dir_all(&work)?;
    println!(
        "tern bench serve — {} cores, load average {} (start)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        super::uptime()
    );

    let nt = work.join("bsbm-pc1000.nt");
    super::decompress(&data.join("bsbm/bsbm-pc1000.nt.gz"), &nt)?;
    let store_dir = work.join("serve-store");
    let run = super::load_once(&store_dir, &nt, true)?;
    let result = serve_store(data, &store_dir, run.triples, run.seconds, load);
    let _ = std::fs::remove_dir_all(&store_dir);
    result?;
    println!("load average {} (end)", super::uptime());
    Ok(())
}

/// How the load generator runs its clients.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ClientMode {
    /// One thread drives every connection with non-blocking I/O.
    Async,
    /// One blocking thread per connection.
    Threads,
}

/// The load to put on the server.
pub(super) struct Load {
    pub(super) clients: usize,
    pub(super) mode: ClientMode,
    pub(super) seconds: f64,
    pub(super) mixes: usize,
    pub(super) cache_bytes: usize,
}

fn serve_store(
    data: &Path,
    store_dir: &Path,
    triples: u64,
    load_seconds: f64,
    load: Load,
) -> Result<()> {
    let Load {
        clients,
        mode,
        seconds,
        mixes,
        cache_bytes,
    } = load;
    println!("server result cache: {cache_bytes} bytes");
    let store = Store::open(store_dir)?;
    let requests = build_mix(data, &store, mixes)?;
    let mix_len = requests.len() / mixes;
    println!(
        "BSBM pc1000: {triples} triples bulk-loaded in {load_seconds:.2} s; query mix of {mix_len} explore \
         queries (querymix.txt) x {mixes} parameter sets (seed 42) = {} distinct requests",
        requests.len()
    );

    let store = Arc::new(store);
    let server = ServerHandle::start(
        Arc::clone(&store),
        // The server's defaults: evaluation slots = 2 x cores, the rest of the clients queue.
        ServerConfig {
            bind: "127.0.0.1:0".parse()?,
            cache_bytes,
            ..Default::default()
        },
    )?;
    let url = format!("http://{}/sparql", server.addr());
    let outcome = drive(&url, &requests, mix_len, clients, mode, seconds);
    server.shutdown();
    // The server's state is gone once its runtime is; the store closes with the last reference.
    drop(store);
    outcome
}

/// The explore query mix in querymix.txt order, instantiated once per parameter set.
fn build_mix(data: &Path, store: &Store, mixes: usize) -> Result<Vec<Request>> {
    let dir = data.join("bsbm/queries/queries/explore");
    let mix_path = dir.join("querymix.txt");
    let order: Vec<usize> = std::fs::read_to_string(&mix_path)
        .with_context(|| format!("cannot read {}", mix_path.display()))?
        .split_whitespace()
        .map(|n| {
            n.parse()
                .with_context(|| format!("{}: {n:?} is not a query number", mix_path.display()))
        })
        .collect::<Result<_>>()?;
    if order.is_empty() || order.iter().any(|&q| !(1..=12).contains(&q)) {
        bail!(
            "{}: expected query numbers 1-12, got {order:?}",
            mix_path.display()
        );
    }
    let templates: Vec<String> = (1..=12)
        .map(|i| template(&dir.join(format!("query{i}.txt"))))
        .collect::<Result<_>>()?;

    let products = column(
        store,
        &format!("SELECT ?p WHERE {{ ?p a <{BSBM}Product> }}"),
    )?;
    let offers = column(
        store,
        &format!("SELECT ?o WHERE {{ ?o <{BSBM}product> ?p }}"),
    )?;
    let reviews = column(
        store,
        &format!("SELECT ?r WHERE {{ ?r <{BSBM}reviewFor> ?p }}"),
    )?;
    let mut rng = StdRng::seed_from_u64(42);
    let params: Vec<_> = (0..mixes)
        .map(|_| bsbm_params(store, &mut rng, &products, &offers, &reviews))
        .collect::<Result<_>>()?;

    let mut out = Vec::with_capacity(mixes * order.len());
    for p in &params {
        for &q in &order {
            let text = fill(&templates[q - 1], p);
            let parsed = crate::query::parse_query(&text, None)
                .with_context(|| format!("explore{q} does not parse: {text}"))?;
            let graph = matches!(parsed, Query::Construct { .. } | Query::Describe { .. });
            out.push(Request {
                kind: q - 1,
                text,
                graph,
            });
        }
    }
    Ok(out)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .proxy(None)
        .build()
        .into()
}

/// Sends one request and reads the whole body: its length, or why it failed.
fn send(agent: &ureq::Agent, url: &str, request: &Request) -> Result<u64, String> {
    let accept = if request.graph {
        "application/n-triples"
    } else {
        "application/sparql-results+json"
    };
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/sparql-query")
        .header("Accept", accept)
        .send(request.text.as_bytes())
        .map_err(|e| format!("explore{}: {e}", request.kind + 1))?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .map_err(|e| format!("explore{}: reading the body: {e}", request.kind + 1))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
        return Err(format!(
            "explore{}: HTTP {status}: {}",
            request.kind + 1,
            text.trim_end()
        ));
    }
    Ok(body.len() as u64)
}

/// A number field of `/proc/self/status` (`VmRSS` is in KiB).
fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size of this process in KiB.
fn rss_kib() -> Option<u64> {
    status_field("VmRSS")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

fn drive(
    url: &str,
    requests: &[Request],
    mix_len: usize,
    clients: usize,
    mode: ClientMode,
    seconds: f64,
) -> Result<()> {
    // Warm-up: one mix, sequentially, so every query type has run once (and works) before the clock starts.
    let warm = agent();
    let mut warm_errors = Vec::new();
    for r in &requests[..mix_len] {
        if let Err(e) = send(&warm, url, r) {
            warm_errors.push(e);
        }
    }
    drop(warm);
    println!(
        "warm-up: one mix ({mix_len} requests) sequentially, {} errors{}",
        warm_errors.len(),
        warm_errors
            .first()
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );

    let rss_start = rss_kib().unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    // (RSS KiB, threads) once a second.
    let samples = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let sampler = {
        let stop = Arc::clone(&stop);
        let samples = Arc::clone(&samples);
        std::thread::Builder::new()
            .name("bench-rss".into())
            .spawn(move || {
                let begin = Instant::now();
                let mut next = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    if begin.elapsed() >= Duration::from_secs(next) {
                        if let (Some(kib), Ok(mut s)) = (rss_kib(), samples.lock()) {
                            s.push((kib, status_field("Threads").unwrap_or(0)));
                        }
                        next += 1;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })?
    };

    println!(
        "running {clients} clients ({}) for {seconds} s against {url} (keep-alive, one connection each; \
         client i starts at parameter set i, mix position i)",
        match mode {
            ClientMode::Async => "async: one client thread multiplexes all connections",
            ClientMode::Threads => "threads: one blocking client thread per connection",
        }
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let (logs, panicked) = match mode {
        ClientMode::Async => (async_clients(url, requests, mix_len, clients, deadline)?, 0),
        ClientMode::Threads => thread_clients(url, requests, mix_len, clients, deadline)?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let rss_end = rss_kib().unwrap_or(0);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if panicked > 0 {
        bail!("{panicked} client threads panicked");
    }
    let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();

    report(
        &logs, elapsed, clients, seconds, rss_start, rss_end, &samples,
    );
    Ok(())
}

/// Runs the clients as tasks of one single-threaded runtime (its own OS thread): a load generator that
/// costs little CPU and few context switches, so the cores go to the server being measured.
fn async_clients(
    url: &str,
    requests: &[Request],
    mix_len: usize,
    clients: usize,
    deadline: Instant,
) -> Result<Vec<ClientLog>> {
    let uri: hyper::Uri = url.parse()?;
    let authority = uri
        .authority()
        .map(|a| a.to_string())
        .context("the URL has no host")?;
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        requests
            .iter()
            .map(|r| bytes::Bytes::from(r.text.clone()))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let requests: Arc<Vec<(usize, bool)>> =
        Arc::new(requests.iter().map(|r| (r.kind, r.graph)).collect());
    let logs = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("bench-clients".into())
            .spawn_scoped(scope, || {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..clients)
                        .map(|i| {
                            let (uri, authority) = (uri.clone(), authority.clone());
                            let (bodies, requests) = (Arc::clone(&bodies), Arc::clone(&requests));
                            tokio::spawn(async move {
                                async_client(
                                    i, uri, authority, &bodies, &requests, mix_len, deadline,
                                )
                                .await
                            })
                        })
                        .collect();
                    let mut logs = Vec::with_capacity(clients);
                    for t in tasks {
                        logs.push(t.await.unwrap_or_default());
                    }
                    logs
                })
            })
            .map(|h| h.join())
    })?
    .map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    Ok(logs)
}

/// One connection's client loop: send, read the whole body, repeat until the deadline.
async fn async_client(
    index: usize,
    uri: hyper::Uri,
    authority: String,
    bodies: &[bytes::Bytes],
    requests: &[(usize, bool)],
    mix_len: usize,
    deadline: Instant,
) -> ClientLog {
    use http_body_util::BodyExt;
    let mut log = ClientLog::default();
    let fail = |log: &mut ClientLog, kind: usize, e: String| {
        log.failed.push(kind);
        if log.errors.len() < KEEP_ERRORS {
            log.errors.push(e);
        }
    };
    let connect = async {
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok::<_, std::io::Error>(sender)
    };
    let mut sender = match connect.await {
        Ok(s) => s,
        Err(e) => {
            fail(&mut log, 0, format!("connect: {e}"));
            return log;
        }
    };
    let mut next = (index * (mix_len + 1)) % requests.len();
    while Instant::now() < deadline {
        let (kind, graph) = requests[next];
        let body = bodies[next].clone();
        next = (next + 1) % requests.len();
        let accept = if graph {
            "application/n-triples"
        } else {
            "application/sparql-results+json"
        };
        let request = hyper::Request::post(uri.clone())
            .header(hyper::header::HOST, &authority)
            .header(hyper::header::CONTENT_TYPE, "application/sparql-query")
            .header(hyper::header::ACCEPT, accept)
            .body(http_body_util::Full::new(body));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                fail(&mut log, kind, format!("explore{}: {e}", kind + 1));
                continue;
            }
        };
        let start = Instant::now();
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(format!("HTTP {status}: {}", text.trim_end()));
            }
            Ok(bytes.len() as u64)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(bytes)) => {
                let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
                log.bytes[kind] += bytes;
                log.ok.push((kind, micros));
            }
            Ok(Err(e)) => {
                fail(&mut log, kind, format!("explore{}: {e}", kind + 1));
                if sender.is_closed() {
                    return log;
                }
            }
            Err(_) => {
                fail(&mut log, kind, format!("explore{}: timed out", kind + 1));
                return log; // the connection is mid-response: it cannot be reused
            }
        }
    }
    log
}

/// Runs each client on its own blocking thread.
fn thread_clients(
    url: &str,
    requests: &[Request],
    mix_len: usize,
    clients: usize,
    deadline: Instant,
) -> Result<(Vec<ClientLog>, usize)> {
    std::thread::scope(|scope| -> Result<(Vec<ClientLog>, usize)> {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                std::thread::Builder::new()
                    .name(format!("bench-client-{i}"))
                    .spawn_scoped(scope, move || client(i, url, requests, mix_len, deadline))
            })
            .collect::<std::io::Result<_>>()?;
        let mut logs = Vec::with_capacity(clients);
        let mut panicked = 0;
        for h in handles {
            match h.join() {
                Ok(log) => logs.push(log),
                Err(_) => panicked += 1,
            }
        }
        Ok((logs, panicked))
    })
}

fn client(
    index: usize,
    url: &str,
    requests: &[Request],
    mix_len: usize,
    deadline: Instant,
) -> ClientLog {
    let agent = agent();
    let mut log = ClientLog::default();
    let mut next = (index * (mix_len + 1)) % requests.len();
    while Instant::now() < deadline {
        let request = &requests[next];
        next = (next + 1) % requests.len();
        let start = Instant::now();
        let outcome = send(&agent, url, request);
        let micros = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        match outcome {
            Ok(bytes) => {
                log.bytes[request.kind] += bytes;
                log.ok.push((request.kind, micros));
            }
            Err(e) => {
                log.failed.push(request.kind);
                if log.errors.len() < KEEP_ERRORS {
                    log.errors.push(e);
                }
            }
        }
    }
    log
}

fn report(
    logs: &[ClientLog],
    elapsed: f64,
    clients: usize,
    seconds: f64,
    rss_start: u64,
    rss_end: u64,
    samples: &[(u64, u64)],
) {
    let mut all: Vec<u32> = logs
        .iter()
        .flat_map(|l| l.ok.iter().map(|&(_, t)| t))
        .collect();
    all.sort_unstable();
    let errors: usize = logs.iter().map(|l| l.failed.len()).sum();
    let total = all.len() + errors;
    let bytes: u64 = logs.iter().flat_map(|l| l.bytes).sum();
    println!("clients            {clients}");
    println!("seconds            {seconds} requested, {elapsed:.2} until every client finished its last request");
    println!(
        "requests           {total} ({} ok, {errors} errors)",
        all.len()
    );
    println!("throughput         {:.1} req/s", total as f64 / elapsed);
    println!(
        "received           {:.1} MiB of result bodies ({:.0} bytes per ok request)",
        bytes as f64 / 1048576.0,
        bytes as f64 / all.len().max(1) as f64
    );
    println!(
        "latency ms         p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  (ok requests; send to last body byte)",
        percentile(&all, 0.50),
        percentile(&all, 0.95),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    println!("errors             {errors}");
    for e in logs.iter().flat_map(|l| &l.errors).take(KEEP_ERRORS) {
        println!("  {e}");
    }
    let peak = samples
        .iter()
        .map(|&(k, _)| k)
        .chain([rss_start, rss_end])
        .max()
        .unwrap_or(0);
    println!(
        "RSS MiB            start {:.1}  peak {:.1}  end {:.1}  (whole process: server, store and clients)",
        mib(rss_start),
        mib(peak),
        mib(rss_end)
    );
    let series: Vec<String> = samples
        .iter()
        .map(|&(k, _)| format!("{:.0}", mib(k)))
        .collect();
    println!("RSS MiB each second {}", series.join(" "));
    let threads: Vec<String> = samples.iter().map(|&(_, t)| t.to_string()).collect();
    println!("threads each second {}", threads.join(" "));

    println!(
        "| {:<9} | {:>7} | {:>6} | {:>8} | {:>8} | {:>8} |",
        "query", "ok", "errors", "p50 ms", "p95 ms", "bytes/ok"
    );
    println!("|-----------|---------|--------|----------|----------|----------|");
    for kind in 0..12 {
        let mut times: Vec<u32> = logs
            .iter()
            .flat_map(|l| l.ok.iter().filter(|&&(k, _)| k == kind).map(|&(_, t)| t))
            .collect();
        let failed: usize = logs
            .iter()
            .map(|l| l.failed.iter().filter(|&&k| k == kind).count())
            .sum();
        if times.is_empty() && failed == 0 {
            continue;
        }
        times.sort_unstable();
        let bytes: u64 = logs.iter().map(|l| l.bytes[kind]).sum();
        println!(
            "| {:<9} | {:>7} | {:>6} | {:>8.2} | {:>8.2} | {:>8} |",
            format!("explore{}", kind + 1),
            times.len(),
            failed,
            percentile(&times, 0.50),
            percentile(&times, 0.95),
            bytes / times.len().max(1) as u64
        );
    }
}
