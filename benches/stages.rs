//! Criterion micro-benchmarks of the bulk loader's stages on LUBM-1 (99,565 triples):
//! parse (fast line parser vs oxttl), dictionary encoding, and sort + SST write + ingest (`finish`).

use std::io::Read;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tern::loaders::{Line, LineParser};
use tern::store::{BulkOptions, IdQuad, Store};

fn lubm1() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lubm/lubm-1.nt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("lubm-1"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

fn stages(c: &mut Criterion) {
    let text = lubm1();
    let lines: Vec<&str> = text.lines().collect();
    let mut group = c.benchmark_group("bulk-stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines.len() as u64));

    group.bench_function(BenchmarkId::new("parse", "fast-line-parser"), |b| {
        let mut p = LineParser::new(false, "x".into());
        b.iter(|| {
            let mut n = 0;
            for l in &lines {
                if let Line::Quad(_) = p.parse(l) {
                    n += 1;
                }
            }
            assert_eq!(n, lines.len());
        })
    });
    group.bench_function(BenchmarkId::new("parse", "oxttl"), |b| {
        b.iter(|| {
            let n = oxttl::NTriplesParser::new()
                .for_slice(text.as_bytes())
                .count();
            assert_eq!(n, lines.len());
        })
    });

    let dir = tempfile::tempdir().expect("tmp");
    group.bench_function(BenchmarkId::new("encode", "one-worker"), |b| {
        b.iter(|| {
            let store = Store::open(dir.path().join(format!("e{}", rand_suffix()))).expect("open");
            let session = store.bulk_loader(&BulkOptions::default()).expect("bulk");
            let mut enc = session.encoder();
            let mut p = LineParser::new(false, "x".into());
            let mut out: Vec<IdQuad> = Vec::new();
            for l in &lines {
                if let Line::Quad(q) = p.parse(l) {
                    enc.push(q);
                    if enc.len() == 32 * 1024 {
                        enc.flush(&mut out).expect("flush");
                    }
                }
            }
            enc.flush(&mut out).expect("flush");
            assert_eq!(out.len(), lines.len());
        })
    });

    group.bench_function(BenchmarkId::new("finish", "sort-sst-ingest"), |b| {
        b.iter_batched(
            || {
                let path = dir.path().join(format!("f{}", rand_suffix()));
                let store = Store::open(&path).expect("open");
                let quads = {
                    let session = store.bulk_loader(&BulkOptions::default()).expect("bulk");
                    let mut enc = session.encoder();
                    let mut p = LineParser::new(false, "x".into());
                    let mut out = Vec::new();
                    for l in &lines {
                        if let Line::Quad(q) = p.parse(l) {
                            enc.push(q);
                        }
                    }
                    enc.flush(&mut out).expect("flush");
                    out
                };
                (store, quads)
            },
            |(store, mut quads)| {
                // The ids of the dropped session are unknown to this one: this measures sorting and writing
                // index SSTs only (the dictionary stage is measured by "encode").
                let mut session = store.bulk_loader(&BulkOptions::default()).expect("bulk");
                session.add(&mut quads).expect("add");
                session.finish().expect("finish");
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

criterion_group!(benches, stages);
criterion_main!(benches);
