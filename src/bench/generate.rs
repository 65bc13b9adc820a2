//! `tern bench generate`: the rust-classes generator over a synthetic ontology of N classes (each with a
//! label, a comment and one property), cold (empty output directory), warm (nothing changed: the receipt
//! fast path) and after an UPDATE changing one class's comment (everything re-rendered through the
//! template query cache, one file rewritten), with the cache's L1/L2 hit rates.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::generate::{Generator, RunOptions, RunReport};
use crate::loaders::{self, Input, LoadOptions};
use crate::Store;

/// Runs the benchmark with `classes` classes.
pub(super) fn bench_generate(work: Option<PathBuf>, classes: usize) -> Result<()> {
    let work = work.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tern-bench-generate-{}", std::process::id()))
    });
    std::fs::create_dir_all(&work)?;
    let nt = work.join("ontology.nt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&nt)?);
    const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
    const RDFS: &str = "http://www.w3.org/2000/01/rdf-schema#";
    for i in 0..classes {
        let c = format!("<http://bench.example/Class{i}>");
        let p = format!("<http://bench.example/prop{i}>");
        writeln!(f, "{c} <{RDF}type> <{RDFS}Class> .")?;
        writeln!(f, "{c} <{RDFS}label> \"Class {i}\" .")?;
        writeln!(f, "{c} <{RDFS}comment> \"Synthetic class number {i}.\" .")?;
        writeln!(f, "{p} <{RDF}type> <{RDF}Property> .")?;
        writeln!(f, "{p} <{RDFS}domain> {c} .")?;
        writeln!(
            f,
            "{p} <{RDFS}range> <http://www.w3.org/2001/XMLSchema#string> ."
        )?;
        writeln!(f, "{p} <{RDFS}comment> \"Property {i}.\" .")?;
    }
    f.flush()?;
    drop(f);
    let store_dir = work.join("store");
    let _ = std::fs::remove_dir_all(&store_dir);
    let store = Store::open(&store_dir)?;
    let report = loaders::load(
        &store,
        &[Input::Path(nt)],
        &LoadOptions::default(),
        &mut |_| {},
    )?;
    println!(
        "load average {}; ontology: {classes} classes, {report:?}",
        super::uptime()
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/generators/rust-classes");
    let generator = Generator::new(&store, &dir).context("load the rust-classes generator")?;
    let out = work.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let cold = generator.run(&out, &RunOptions::default())?;
    let cold_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let warm = generator.run(&out, &RunOptions::default())?;
    let warm_s = started.elapsed().as_secs_f64();
    let files = cold.written();
    println!(
        "cold: {files} files in {cold_s:.3} s = {:.0} files/s (render {:.3} s, write {:.3} s)",
        files as f64 / cold_s,
        cold.render_seconds,
        cold.write_seconds
    );
    println!(
        "warm: {} files written, {} unchanged in {warm_s:.3} s (receipt fast path: {})",
        warm.written(),
        warm.unchanged(),
        warm.fast_path
    );
    println!("warm/cold = {:.2}% (target < 10%)", 100.0 * warm_s / cold_s);
    println!("cold cache: {}", hit_rates(&cold));
    let update = "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> \
                  DELETE { <http://bench.example/Class0> rdfs:comment ?c } \
                  INSERT { <http://bench.example/Class0> rdfs:comment \"Changed by the benchmark.\" } \
                  WHERE { <http://bench.example/Class0> rdfs:comment ?c }";
    crate::query::update(&store, update, crate::query::UpdateOptions::default())
        .context("update one class")?;
    let started = Instant::now();
    let changed = generator.run(&out, &RunOptions::default())?;
    let changed_s = started.elapsed().as_secs_f64();
    println!(
        "data changed (one class): {} files rewritten, {} unchanged in {changed_s:.3} s \
         (render {:.3} s, write {:.3} s) = {:.1}% of cold",
        changed.written(),
        changed.unchanged(),
        changed.render_seconds,
        changed.write_seconds,
        100.0 * changed_s / cold_s
    );
    println!("data changed cache: {}", hit_rates(&changed));
    Ok(())
}

/// L1 / L2 hit rates and counts of one run's template queries.
fn hit_rates(r: &RunReport) -> String {
    let c = &r.cache;
    format!(
        "L1 (parsed) {:.1}% hits ({}/{}), L2 (rows) {:.1}% hits ({}/{}), {} entries, {:.1} MiB; evicted L1 {}, L2 {} (stale or over budget)",
        100.0 * c.l1.hit_rate(),
        c.l1.hits,
        c.l1.hits + c.l1.misses,
        100.0 * c.l2.hit_rate(),
        c.l2.hits,
        c.l2.hits + c.l2.misses,
        c.l2_entries,
        c.l2_bytes as f64 / (1 << 20) as f64,
        c.l1.evictions,
        c.l2.evictions
    )
}
