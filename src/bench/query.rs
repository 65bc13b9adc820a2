//! `tern bench query`: LUBM and BSBM explore queries on bulk-loaded stores, per-query medians.
//!
//! BSBM's parameter pools come from its Java generator; here every `%param%` is drawn from the loaded data
//! with a fixed seed, anchored on one product per instantiation so the queries select real data (a type and
//! features that product has, thresholds just below its values, a word of its label).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use oxrdf::Term;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::query::{QueryResults, StoreExt};
use crate::Store;

pub(super) const BSBM: &str = "http://www4.wiwiss.fu-berlin.de/bizer/bsbm/v01/vocabulary/";
const RDFS_LABEL: &str = "http://www.w3.org/2000/01/rdf-schema#label";

/// Runs a query to the end; returns rows (or triples, or 1 for a true ASK).
fn run_count(store: &Store, text: &str) -> Result<u64> {
    Ok(match store.query(text)? {
        QueryResults::Solutions(s) => {
            let mut n = 0;
            for r in s {
                r?;
                n += 1;
            }
            n
        }
        QueryResults::Boolean(b) => u64::from(b),
        QueryResults::Graph(t) => {
            let mut n = 0;
            for r in t {
                r?;
                n += 1;
            }
            n
        }
    })
}

pub(super) fn column(store: &Store, text: &str) -> Result<Vec<Term>> {
    let QueryResults::Solutions(s) = store.query(text)? else {
        bail!("sampling query is not a SELECT");
    };
    let mut out = Vec::new();
    for r in s {
        if let Some(Some(t)) = r?.values().first() {
            out.push(t.clone());
        }
    }
    Ok(out)
}

struct Stat {
    name: String,
    median_ms: f64,
    p90_ms: f64,
    rows: f64,
    runs: usize,
}

fn time_queries(store: &Store, name: &str, texts: &[String], reps: usize) -> Result<Stat> {
    let mut times = Vec::new();
    let mut rows = 0u64;
    for text in texts {
        // One unmeasured run warms the caches the way a serving store is warm.
        run_count(store, text).with_context(|| format!("{name}: {text}"))?;
        for _ in 0..reps {
            let start = Instant::now();
            rows += run_count(store, text)?;
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Stat {
        name: name.to_owned(),
        median_ms: times[times.len() / 2],
        p90_ms: times[(times.len() * 9 / 10).min(times.len() - 1)],
        rows: rows as f64 / times.len() as f64,
        runs: times.len(),
    })
}

fn print(stats: &[Stat]) {
    println!(
        "| {:<8} | {:>10} | {:>10} | {:>10} | {:>5} |",
        "query", "median ms", "p90 ms", "rows", "runs"
    );
    println!("|----------|------------|------------|------------|-------|");
    for s in stats {
        println!(
            "| {:<8} | {:>10.3} | {:>10.3} | {:>10.1} | {:>5} |",
            s.name, s.median_ms, s.p90_ms, s.rows, s.runs
        );
    }
}

/// Parameter values of one BSBM instantiation, anchored on one product.
pub(super) fn bsbm_params(
    store: &Store,
    rng: &mut StdRng,
    products: &[Term],
    offers: &[Term],
    reviews: &[Term],
) -> Result<HashMap<&'static str, String>> {
    let mut m = HashMap::new();
    for _ in 0..100 {
        let product = products.choose(rng).context("no products")?;
        let types = column(
            store,
            &format!("SELECT ?t WHERE {{ {product} a ?t . ?t a <{BSBM}ProductType> }}"),
        )?;
        let features = column(
            store,
            &format!("SELECT ?f WHERE {{ {product} <{BSBM}productFeature> ?f }}"),
        )?;
        let num = |p: &str| -> Result<i64> {
            let v = column(
                store,
                &format!("SELECT ?v WHERE {{ {product} <{BSBM}{p}> ?v }}"),
            )?;
            Ok(match v.first() {
                Some(Term::Literal(l)) => l.value().parse().unwrap_or(0),
                _ => 0,
            })
        };
        let label = column(
            store,
            &format!("SELECT ?l WHERE {{ {product} <{RDFS_LABEL}> ?l }}"),
        )?;
        if types.is_empty() || features.len() < 3 || label.is_empty() {
            continue;
        }
        let chosen: Vec<&Term> = features.choose_multiple(rng, 3).collect();
        m.insert("ProductXYZ", product.to_string());
        m.insert(
            "ProductType",
            types.choose(rng).context("no type")?.to_string(),
        );
        m.insert("ProductFeature1", chosen[0].to_string());
        m.insert("ProductFeature2", chosen[1].to_string());
        m.insert("ProductFeature3", chosen[2].to_string());
        m.insert(
            "x",
            (num("productPropertyNumeric1")? - rng.random_range(0..50)).to_string(),
        );
        m.insert(
            "y",
            (num("productPropertyNumeric3")? + rng.random_range(0..50)).to_string(),
        );
        let word = match &label[0] {
            Term::Literal(l) => l
                .value()
                .split_whitespace()
                .next()
                .unwrap_or("a")
                .to_owned(),
            _ => "a".to_owned(),
        };
        m.insert("word1", word);
        let offer = offers.choose(rng).context("no offers")?;
        m.insert("OfferXYZ", offer.to_string());
        m.insert(
            "ReviewXYZ",
            reviews.choose(rng).context("no reviews")?.to_string(),
        );
        let dates = column(
            store,
            &format!("SELECT ?d WHERE {{ {offer} <{BSBM}validFrom> ?d }}"),
        )?;
        m.insert(
            "currentDate",
            dates.first().map_or_else(
                || "\"2008-01-01T00:00:00\"^^<http://www.w3.org/2001/XMLSchema#dateTime>".into(),
                Term::to_string,
            ),
        );
        return Ok(m);
    }
    bail!("no product with a type, three features and a label in 100 draws")
}

pub(super) fn fill(template: &str, params: &HashMap<&'static str, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in params {
        out = out.replace(&format!("%{k}%"), v);
    }
    out
}

/// The query text of a BSBM template file (the part before the `QueryType=` description, if any).
pub(super) fn template(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

pub(super) fn bench_query(
    data: &Path,
    work: Option<PathBuf>,
    reps: usize,
    mixes: usize,
    only: Option<&str>,
) -> Result<()> {
    if let Some(o) = only {
        if o != "lubm" && o != "bsbm" {
            bail!("--only takes lubm or bsbm, not {o:?}");
        }
    }
    let work = match work {
        Some(w) => w,
        None => super::tempfile_dir()?,
    };
    std::fs::create_dir_all(&work)?;
    println!(
        "tern bench query — load average {} (start)",
        super::uptime()
    );
    println!(
        "each query: 1 warm-up run then {reps} timed runs per instantiation, in process (parse + plan + \
         evaluate + decode every row)"
    );

    if only != Some("bsbm") {
        bench_lubm(data, &work, reps)?;
    }
    if only != Some("lubm") {
        bench_bsbm(data, &work, reps, mixes)?;
    }
    println!("\nload average {} (end)", super::uptime());
    Ok(())
}

fn bench_lubm(data: &Path, work: &Path, reps: usize) -> Result<()> {
    let lubm_nt = work.join("lubm-10.nt");
    super::decompress(&data.join("lubm/lubm-10.nt.gz"), &lubm_nt)?;
    let lubm_store = work.join("lubm-10-store");
    let run = super::load_once(&lubm_store, &lubm_nt, true)?;
    println!(
        "\nLUBM-10: {} triples bulk-loaded in {:.2} s",
        run.triples, run.seconds
    );
    let store = Store::open(&lubm_store)?;
    let mut stats = Vec::new();
    for i in 1..=14 {
        let path = data.join(format!("lubm/queries/q{i:02}.rq"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        stats.push(time_queries(&store, &format!("q{i:02}"), &[text], reps)?);
    }
    print(&stats);
    drop(store);
    let _ = std::fs::remove_dir_all(&lubm_store);
    Ok(())
}

fn bench_bsbm(data: &Path, work: &Path, reps: usize, mixes: usize) -> Result<()> {
    let bsbm_nt = work.join("bsbm-pc1000.nt");
    super::decompress(&data.join("bsbm/bsbm-pc1000.nt.gz"), &bsbm_nt)?;
    let bsbm_store = work.join("bsbm-store");
    let run = super::load_once(&bsbm_store, &bsbm_nt, true)?;
    println!(
        "\nBSBM pc1000: {} triples bulk-loaded in {:.2} s; {mixes} parameter sets per query (seed 42)",
        run.triples, run.seconds
    );
    let store = Store::open(&bsbm_store)?;
    let products = column(
        &store,
        &format!("SELECT ?p WHERE {{ ?p a <{BSBM}Product> }}"),
    )?;
    let offers = column(
        &store,
        &format!("SELECT ?o WHERE {{ ?o <{BSBM}product> ?p }}"),
    )?;
    let reviews = column(
        &store,
        &format!("SELECT ?r WHERE {{ ?r <{BSBM}reviewFor> ?p }}"),
    )?;
    let mut rng = StdRng::seed_from_u64(42);
    let params: Vec<_> = (0..mixes)
        .map(|_| bsbm_params(&store, &mut rng, &products, &offers, &reviews))
        .collect::<Result<_>>()?;
    let dir = data.join("bsbm/queries/queries/explore");
    let mut stats = Vec::new();
    for i in 1..=12 {
        let t = template(&dir.join(format!("query{i}.txt")))?;
        let texts: Vec<String> = params.iter().map(|p| fill(&t, p)).collect();
        stats.push(time_queries(&store, &format!("explore{i}"), &texts, reps)?);
    }
    print(&stats);
    drop(store);
    let _ = std::fs::remove_dir_all(&bsbm_store);
    Ok(())
}
