//! `tern bench ...`: macro-benchmarks that print the machine load, datasets, commands, repetitions, medians
//! and spreads, and the result counts that prove each run did the same work.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::loaders::{self, Format, Input, LoadOptions};

mod generate;
mod query;
mod serve;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Bulk vs transactional loading of LUBM-10 (N-Triples and RDF/XML), BSBM (Turtle) and a 10M-triple file.
    Load {
        /// The shared data directory (with lubm/ and bsbm/).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Where to put decompressed inputs and stores (default: a temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Skip the 10M-triple file.
        #[arg(long)]
        quick: bool,
        /// Also load the 10M-triple file transactionally (one 10M-quad transaction: slow, several GB).
        #[arg(long)]
        transactional_10m: bool,
    },
    /// LUBM-10 queries and BSBM explore queries (parameters sampled with a fixed seed): median ms and rows.
    Query {
        /// The shared data directory (with lubm/ and bsbm/).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Where to put decompressed inputs and stores (default: a temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Timed runs per query instantiation.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// BSBM parameter sets per query.
        #[arg(long, default_value_t = 10)]
        mixes: usize,
        /// Run only one suite: `lubm` or `bsbm`.
        #[arg(long)]
        only: Option<String>,
    },
    /// The rust-classes generator over a synthetic ontology (default 15,000 classes, ~105k triples): cold
    /// run into an empty directory, then a warm rerun with nothing changed.
    Generate {
        /// Where to put the ontology, store and outputs (default: a temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Classes in the synthetic ontology (7 triples each).
        #[arg(long, default_value_t = 15_000)]
        classes: usize,
    },
    /// The HTTP server on loopback under N concurrent clients sending the BSBM explore mix: throughput,
    /// latency percentiles, errors and memory.
    Serve {
        /// The shared data directory (with bsbm/).
        #[arg(long, default_value = "../shared/data")]
        data: PathBuf,
        /// Where to put the decompressed input and the store (default: a temporary directory).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Concurrent clients, each with one keep-alive connection and one request in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How the clients run: `async` (one client thread multiplexing every connection, like wrk or
        /// oha) or `threads` (one blocking client thread per connection, which competes with the server
        /// for the cores).
        #[arg(long, value_enum, default_value_t = serve::ClientMode::Async)]
        client: serve::ClientMode,
        /// How long the clients send requests.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        /// BSBM parameter sets (query mixes) the clients cycle through.
        #[arg(long, default_value_t = 20)]
        mixes: usize,
        /// The server's result cache budget in bytes (0 measures uncached evaluation).
        #[arg(long, default_value_t = 256 << 20)]
        cache_bytes: usize,
    },
}

/// Runs a benchmark.
pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Load {
            data,
            work,
            reps,
            quick,
            transactional_10m,
        } => bench_load(&data, work, reps.max(1), quick, transactional_10m),
        Bench::Query {
            data,
            work,
            reps,
            mixes,
            only,
        } => query::bench_query(&data, work, reps.max(1), mixes.max(1), only.as_deref()),
        Bench::Generate { work, classes } => generate::bench_generate(work, classes.max(1)),
        Bench::Serve {
            data,
            work,
            clients,
            client,
            seconds,
            mixes,
            cache_bytes,
        } => serve::bench_serve(
            &data,
            work,
            serve::Load {
                clients,
                mode: client,
                seconds,
                mixes: mixes.max(1),
                cache_bytes,
            },
        ),
    }
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn decompress(src: &Path, dst: &Path) -> Result<()> {
    if dst.exists() {
        return Ok(());
    }
    let mut input =
        Input::Path(src.to_path_buf()).open(loaders::Compression::Gzip, Default::default())?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst)?);
    std::io::copy(&mut input, &mut out)?;
    out.flush()?;
    Ok(())
}

/// LUBM-10 repeated `copies` times, each copy with its universities renamed, so every copy is new data.
fn synthesize(lubm: &Path, dst: &Path, copies: usize) -> Result<()> {
    if dst.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(lubm)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst)?);
    for k in 0..copies {
        if k == 0 {
            out.write_all(text.as_bytes())?;
        } else {
            out.write_all(
                text.replace(".University", &format!(".C{k}University"))
                    .as_bytes(),
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

struct Run {
    seconds: f64,
    triples: u64,
    rss_mib: u64,
    disk: u64,
}

fn load_once(store: &Path, file: &Path, bulk: bool) -> Result<Run> {
    let _ = std::fs::remove_dir_all(store);
    // The previous run's writes (hundreds of MB for the 10M file) are flushed now, not during this run.
    let _ = Command::new("sync").status();
    let exe = std::env::current_exe()?;
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("load")
        .arg(if bulk { "--bulk" } else { "--transactional" })
        .arg("-l")
        .arg(store)
        .arg(file)
        .output()
        .context("spawn tern load")?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "tern load {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "loaded N triples (M new) in S s: R triples/s, peak RSS X MiB (...)"
    let field = |after: &str| -> Option<u64> {
        let rest = &stdout[stdout.find(after)? + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let triples = field("loaded ").context("no triple count in tern load output")?;
    let rss_mib = field("peak RSS ").unwrap_or(0);
    Ok(Run {
        seconds,
        triples,
        rss_mib,
        disk: dir_size(store),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The median and spread (max − min) of `reps` timed loads, and the last run. A bulk measurement first
/// runs one untimed load: on this kind of virtual machine, the first load after a pause or after a
/// transactional load spent up to 0.4 s more in the kernel (zeroing memory it had not touched for a while,
/// `clear_page_rep`) whatever the code, which made the median depend on what ran before it.
fn measure(store: &Path, file: &Path, bulk: bool, reps: usize) -> Result<(f64, f64, Run)> {
    if bulk {
        load_once(store, file, bulk)?;
    }
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let run = load_once(store, file, bulk)?;
        if let Some(prev) = &last {
            let prev: &Run = prev;
            if prev.triples != run.triples {
                bail!(
                    "runs disagree on the triple count: {} vs {}",
                    prev.triples,
                    run.triples
                );
            }
        }
        times.push(run.seconds);
        last = Some(run);
    }
    let spread = times.iter().cloned().fold(f64::MIN, f64::max)
        - times.iter().cloned().fold(f64::MAX, f64::min);
    let run = last.context("no repetition ran")?;
    Ok((median(times), spread, run))
}

fn bench_load(
    data: &Path,
    work: Option<PathBuf>,
    reps: usize,
    quick: bool,
    transactional_10m: bool,
) -> Result<()> {
    let tmp;
    let work = match work {
        Some(w) => w,
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&work)?;
    println!(
        "tern bench load — {} cores, load average {} (start)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        uptime()
    );
    let lubm = work.join("lubm-10.nt");
    decompress(&data.join("lubm/lubm-10.nt.gz"), &lubm)?;
    let bsbm = work.join("bsbm-pc1000.ttl");
    decompress(&data.join("bsbm/bsbm-pc1000.ttl.gz"), &bsbm)?;
    let rdfxml = work.join("lubm-10.rdf");
    if !rdfxml.exists() {
        let file = std::fs::File::create(&rdfxml)?;
        loaders::convert(
            &Input::Path(lubm.clone()),
            &LoadOptions::default(),
            Format::RdfXml,
            std::io::BufWriter::new(file),
        )?;
    }
    let mut datasets: Vec<(&str, PathBuf, bool)> = vec![
        ("lubm-10 (N-Triples)", lubm.clone(), true),
        ("bsbm-pc1000 (Turtle)", bsbm, true),
        ("lubm-10 (RDF/XML)", rdfxml, true),
    ];
    if !quick {
        let synth = work.join("lubm-10x8.nt");
        synthesize(&lubm, &synth, 8)?;
        datasets.push(("lubm-10 x8 (N-Triples)", synth, transactional_10m));
    }
    // Freshly written inputs (2 GB with the 10M file) would otherwise be written back to disk during the
    // first measurements and slow them down.
    for (_, path, _) in &datasets {
        std::fs::File::open(path)?.sync_all()?;
    }
    println!("reps per measurement: {reps}; each run is a fresh `tern load --bulk|--transactional` process on a new store");
    println!("bulk reps follow one untimed warm-up run of the same load (see `measure`)");
    println!(
        "{:<24} {:>10} {:>9} {:>11} {:>7} {:>9} {:>10} {:>9} {:>9} {:>11}",
        "dataset",
        "triples",
        "bulk s",
        "bulk t/s",
        "spread",
        "RSS MiB",
        "disk MiB",
        "txn s",
        "txn t/s",
        "bulk/txn"
    );
    let store = work.join("store");
    for (name, file, with_txn) in datasets {
        let (bulk_s, spread, run) = measure(&store, &file, true, reps)?;
        let (txn_s, txn_rate) = if with_txn {
            let (s, _, t) = measure(&store, &file, false, reps.min(2))?;
            if t.triples != run.triples {
                bail!(
                    "{name}: bulk loaded {} triples, transactional {}",
                    run.triples,
                    t.triples
                );
            }
            (format!("{s:.2}"), Some(t.triples as f64 / s))
        } else {
            ("n/a".to_owned(), None)
        };
        let rate = run.triples as f64 / bulk_s;
        println!(
            "{:<24} {:>10} {:>9.2} {:>11.0} {:>7.2} {:>9} {:>10.1} {:>9} {:>9} {:>11}",
            name,
            run.triples,
            bulk_s,
            rate,
            spread,
            run.rss_mib,
            run.disk as f64 / 1048576.0,
            txn_s,
            txn_rate.map_or("n/a".to_owned(), |r| format!("{r:.0}")),
            txn_rate.map_or("n/a".to_owned(), |r| format!("{:.1}x", rate / r)),
        );
    }
    let _ = std::fs::remove_dir_all(&store);
    println!("load average {} (end)", uptime());
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tern-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
