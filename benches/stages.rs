//! Criterion micro-benchmarks of the bulk loader's stages on LUBM-1 (99,565 triples):
//! parse (fast line parser vs oxttl), dictionary encoding, and `finish` (dictionary and index files: sort,
//! SST write, ingest, commit).

use std::io::Read;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tern::loaders::{valid_term, Line, LineParser};
use tern::store::{BulkOptions, DetachedBulkLoad, IdQuad, Store};

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
    // Parsing and encoding on one worker, into a fresh bulk session (opened outside the timing).
    group.bench_function(BenchmarkId::new("encode", "one-worker"), |b| {
        b.iter_batched_ref(
            || Store::open(dir.path().join(format!("e{}", rand_suffix()))).expect("open"),
            |store| {
                let session = store.bulk_loader(&BulkOptions::default()).expect("bulk");
                let mut enc = session.encoder();
                let mut p = LineParser::new(false, "x".into());
                let mut out: Vec<IdQuad> = Vec::new();
                // As the bulk loader does: IRIs are checked only for terms new to the encoder.
                for l in &lines {
                    if let Line::Quad(q) = p.parse_unchecked(l) {
                        assert!(enc.push_checked(q, valid_term));
                        if enc.len() == 32 * 1024 {
                            enc.flush(&mut out).expect("flush");
                        }
                    }
                }
                enc.flush(&mut out).expect("flush");
                assert_eq!(out.len(), lines.len());
            },
            criterion::BatchSize::PerIteration,
        )
    });

    group.bench_function(BenchmarkId::new("finish", "dictionary-and-indexes"), |b| {
        b.iter_batched(
            || {
                // Encoded as for a store being created, then taken over by a new store: `finish` writes the
                // dictionary and index files of a whole load, with the ids of its own encoder.
                let path = dir.path().join(format!("f{}", rand_suffix()));
                let store = Store::open(&path).expect("open");
                let mut load = DetachedBulkLoad::new();
                let mut enc = load.encoder();
                let mut p = LineParser::new(false, "x".into());
                let mut out = Vec::new();
                for l in &lines {
                    if let Line::Quad(q) = p.parse(l) {
                        enc.push(q);
                    }
                }
                enc.flush(&mut out).expect("flush");
                load.add(&mut out);
                (store, load)
            },
            |(store, load)| {
                let session = store
                    .bulk_loader_from(&BulkOptions::default(), load)
                    .expect("bulk");
                session.finish().expect("finish");
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Writing an index SST of LUBM-1-sized quad keys (24 bytes, empty values, sorted): our block-based table
/// writer against RocksDB's `SstFileWriter` with the same block size and LZ4.
fn sst_write(c: &mut Criterion) {
    let keys: Vec<[u8; 24]> = (0..300_000u64)
        .map(|i| {
            let mut k = [0u8; 24];
            k[..8].copy_from_slice(&(i / 4).to_be_bytes());
            k[8..16].copy_from_slice(&(i % 18).to_be_bytes());
            k[16..].copy_from_slice(&(i.wrapping_mul(2_654_435_761) % 100_003).to_be_bytes());
            k
        })
        .collect();
    let mut sorted = keys;
    sorted.sort();
    sorted.dedup();
    let dir = tempfile::tempdir().expect("tmp");
    let mut group = c.benchmark_group("sst-write");
    group.sample_size(10);
    group.throughput(Throughput::Elements(sorted.len() as u64));
    group.bench_function("tern SstWriter", |b| {
        b.iter(|| {
            let path = dir.path().join("ours.sst");
            let mut w = tern::store::SstWriter::create(&path, true).expect("create");
            for k in &sorted {
                w.put(k, &[]).expect("put");
            }
            w.finish().expect("finish");
        })
    });
    group.bench_function("rocksdb SstFileWriter", |b| {
        let mut opts = rocksdb::Options::default();
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        b.iter(|| {
            let path = dir.path().join("theirs.sst");
            let mut w = rocksdb::SstFileWriter::create(&opts);
            w.open(&path).expect("open");
            for k in &sorted {
                w.put(k, []).expect("put");
            }
            w.finish().expect("finish");
        })
    });
    group.finish();
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Subjects of one (rdf:type, class) pair: POS prefix scan vs stored bitmap, by pair size. This is the
/// measurement behind `PO_BITMAP_THRESHOLD`.
fn pair_lookup(c: &mut Criterion) {
    use oxrdf::vocab::rdf;
    use oxrdf::{GraphNameRef, NamedNode, QuadRef};
    use roaring::RoaringTreemap;
    use tern::GraphSel;

    let dir = tempfile::tempdir().expect("tmp");
    let store = Store::open(dir.path()).expect("open");
    let sizes = [8usize, 32, 64, 128, 512, 4096];
    let mut nodes = Vec::new();
    for &n in &sizes {
        for i in 0..n {
            nodes.push((
                NamedNode::new_unchecked(format!("http://e.com/c{n}/s{i}")),
                NamedNode::new_unchecked(format!("http://e.com/C{n}")),
            ));
        }
    }
    // Noise around the pairs, so scans do not start on a cold, tiny index.
    for i in 0..50_000 {
        nodes.push((
            NamedNode::new_unchecked(format!("http://e.com/x{i}")),
            NamedNode::new_unchecked(format!("http://e.com/X{}", i % 997)),
        ));
    }
    store
        .insert(
            nodes
                .iter()
                .map(|(s, c)| QuadRef::new(s, rdf::TYPE, c, GraphNameRef::DefaultGraph)),
        )
        .expect("insert");
    let reader = store.reader();
    let t = reader
        .term_id(rdf::TYPE.into())
        .expect("read")
        .expect("rdf:type");
    let mut group = c.benchmark_group("pair-lookup");
    for &n in &sizes {
        let class = NamedNode::new_unchecked(format!("http://e.com/C{n}"));
        let o = reader
            .term_id(class.as_ref().into())
            .expect("read")
            .expect("class");
        group.bench_function(BenchmarkId::new("pos-scan", n), |b| {
            b.iter(|| {
                let set: RoaringTreemap = reader
                    .quads_for_pattern(None, Some(t), Some(o), GraphSel::Default)
                    .map(|q| q.expect("scan").s.0)
                    .collect();
                assert_eq!(set.len() as usize, n);
            })
        });
        group.bench_function(BenchmarkId::new("bitmap", n), |b| {
            b.iter(|| {
                let set = reader
                    .subjects_with_object(t, o)
                    .expect("read")
                    .expect("bitmap");
                assert_eq!(set.len() as usize, n);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, stages, sst_write, pair_lookup);
criterion_main!(benches);
