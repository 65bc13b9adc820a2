//! `tern bench generate`: the rust-classes generator over a synthetic ontology of N classes (each with a
//! label, a comment and one property), cold (empty output directory) and warm (nothing changed).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::generate::{Generator, RunOptions};
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
    Ok(())
}
