//! The bulk loader against the transactional path: same quads, same statistics, same bitmaps (compared as
//! terms, since the two stores assign ids in different orders), and both stores internally consistent.
//! Also: spilling to sorted runs, loading into a non-empty store, atomicity on syntax errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxrdf::vocab::rdf;
use oxrdf::Term;
use tern::loaders::{self, BulkLoadOptions, Input, LoadOptions};
use tern::{GraphSel, Store};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

/// Everything observable about a store, as terms: quads, per-predicate statistics, bitmap cardinalities.
fn summary(store: &Store) -> BTreeMap<String, u64> {
    let r = store.reader();
    let mut out = BTreeMap::new();
    let ids: Vec<_> = r
        .quads_for_pattern(None, None, None, GraphSel::All)
        .collect::<Result<_, _>>()
        .unwrap();
    for q in r.quads(&ids).unwrap() {
        *out.entry(format!("quad {q}")).or_default() += 1;
    }
    let stats = r.statistics().unwrap();
    out.insert("stat quads".into(), stats.quads);
    out.insert("stat named graphs".into(), stats.named_graphs);
    for p in r.all_predicate_stats().unwrap() {
        let name = r.term(p.predicate).unwrap();
        let graph = if p.graph == tern::TermId::DEFAULT_GRAPH {
            "default".into()
        } else {
            r.term(p.graph).unwrap().to_string()
        };
        out.insert(format!("pred {name} {graph} quads"), p.quads);
        out.insert(format!("pred {name} {graph} subjects"), p.distinct_subjects);
        out.insert(format!("pred {name} {graph} objects"), p.distinct_objects);
        // Predicate bitmap as a set of subject terms.
        let subjects = r.subjects_with_in(p.graph, p.predicate).unwrap();
        let ids: Vec<_> = subjects.iter().map(tern::TermId).collect();
        for s in r.terms(&ids).unwrap() {
            *out.entry(format!("bitmap {name} {graph} {s}")).or_default() += 1;
        }
    }
    // rdf:type pair bitmaps and the materialized ones, by cardinality.
    if let Some(t) = r.term_id(rdf::TYPE.into()).unwrap() {
        for q in r.quads_for_pattern(None, Some(t), None, GraphSel::Default) {
            let q = q.unwrap();
            let class: Term = r.term(q.o).unwrap();
            let n = r
                .subjects_with_object(t, q.o)
                .unwrap()
                .expect("type bitmap")
                .len();
            out.insert(format!("type bitmap {class}"), n);
        }
    }
    out.insert("bitmaps".into(), r.bitmap_stats().unwrap().predicate_object);
    out
}

fn transactional(file: &Path) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    load_into(&store, file);
    (dir, store)
}

/// A transactional load of `file` into `store`.
fn load_into(store: &Store, file: &Path) {
    loaders::load(
        store,
        &[Input::Path(file.to_path_buf())],
        &LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
}

fn bulk(file: &Path, max_memory: usize) -> (tempfile::TempDir, Store, loaders::LoadReport) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let options = BulkLoadOptions {
        max_memory,
        ..BulkLoadOptions::default()
    };
    let report = bulk_into(&store, file, &options).unwrap();
    (dir, store, report)
}

/// A bulk load of `file` into `store`.
fn bulk_into(
    store: &Store,
    file: &Path,
    options: &BulkLoadOptions,
) -> Result<loaders::LoadReport, loaders::LoadError> {
    loaders::bulk_load(
        store,
        &[Input::Path(file.to_path_buf())],
        options,
        &mut |_| {},
    )
}

fn assert_same(name: &str, a: &Store, b: &Store) {
    assert!(
        a.verify().unwrap().is_ok(),
        "{name}: transactional store inconsistent"
    );
    let vb = b.verify().unwrap();
    assert!(vb.is_ok(), "{name}: bulk store inconsistent: {vb:?}");
    let (sa, sb) = (summary(a), summary(b));
    if sa != sb {
        let diff: Vec<_> = sa
            .iter()
            .filter(|(k, v)| sb.get(*k) != Some(v))
            .take(5)
            .collect();
        let extra: Vec<_> = sb
            .iter()
            .filter(|(k, _)| !sa.contains_key(*k))
            .take(5)
            .collect();
        panic!("{name}: bulk and transactional stores differ: {diff:?} / extra in bulk: {extra:?}");
    }
}

#[test]
fn bulk_equals_transactional_on_lubm1_and_bsbm() {
    for (name, file) in [
        ("lubm-1", shared("lubm/lubm-1.nt.gz")),
        ("bsbm-pc1000 ttl", shared("bsbm/bsbm-pc1000.ttl.gz")),
    ] {
        let (_d1, txn) = transactional(&file);
        let (_d2, blk, report) = bulk(&file, 1 << 30);
        assert_eq!(report.spilled_runs, 0);
        assert_same(name, &txn, &blk);
        println!("{name}: bulk == transactional ({} quads)", report.inserted);
        // Decompressed, the file is mapped into memory instead of read: the same quads again.
        let plain_dir = tempfile::tempdir().unwrap();
        let stem = file.file_stem().unwrap();
        let plain = plain_dir.path().join(stem);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()),
            &mut text,
        )
        .unwrap();
        std::fs::write(&plain, text).unwrap();
        let (_d3, mapped, _) = bulk(&plain, 1 << 30);
        assert_same(&format!("{name}, mapped"), &txn, &mapped);
    }
}

#[test]
fn bulk_spills_runs_and_merges_them() {
    let file = shared("lubm/lubm-1.nt.gz");
    let (_d1, txn) = transactional(&file);
    // 1 MiB budget: runs of 65,536 quads, so lubm-1 (99,565) spills twice.
    let (_d2, blk, report) = bulk(&file, 1 << 20);
    assert!(report.spilled_runs >= 2, "{} runs", report.spilled_runs);
    assert_same("lubm-1 spilled", &txn, &blk);
}

#[test]
fn bulk_into_non_empty_store_deduplicates() {
    let lubm = shared("lubm/lubm-1.nt.gz");
    let bsbm = shared("bsbm/bsbm-pc1000.nt.gz");
    let (_d1, txn) = transactional(&lubm);
    load_into(&txn, &bsbm);
    let (_d2, blk, _) = bulk(&lubm, 1 << 30);
    let options = BulkLoadOptions::default();
    // Load lubm-1 again (all duplicates) and bsbm (all new) into the non-empty store.
    let report = loaders::bulk_load(
        &blk,
        &[Input::Path(lubm), Input::Path(bsbm)],
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.inserted, 374_911);
    assert_same("lubm-1 + bsbm", &txn, &blk);
}

#[test]
fn bulk_syntax_error_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let bad = dir.path().join("bad.nt");
    let mut text = String::new();
    for i in 0..50_000 {
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/p> \"v{i}\" .\n"
        ));
    }
    text.push_str("<http://e.com/s> <http://e.com/p> <not an iri> .\n");
    std::fs::write(&bad, text).unwrap();
    let err = bulk_into(&store, &bad, &BulkLoadOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("{}:50001:", bad.display())), "{msg}");
    assert!(msg.contains("<not an iri>"), "{msg}");
    assert_eq!(store.reader().len().unwrap(), 0);
    assert_eq!(store.reader().statistics().unwrap().terms, 0);
    assert!(store.verify().unwrap().is_ok());
    // Turtle through the parallel splitter: the error position comes from the sequential parser.
    let ttl = dir.path().join("bad.ttl");
    std::fs::write(
        &ttl,
        "@prefix e: <http://e.com/> .\ne:a e:p e:b .\n\ne:c e:p .\n",
    )
    .unwrap();
    let err = bulk_into(&store, &ttl, &BulkLoadOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(&format!("{}:4:", ttl.display())),
        "{err}"
    );
    assert_eq!(store.reader().len().unwrap(), 0);
}

#[test]
fn bulk_checks_iris_that_the_encoder_has_not_seen() {
    // The fast N-Triples path validates only IRIs new to the encoder: a line whose subject and predicate
    // repeat but whose object has a bad port (well-formed for the line parser, refused by oxiri) must
    // still fail, name its line, and with --lenient leave no trace of its terms.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad-iri.nt");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "<http://e.com/s> <http://e.com/p> <http://e.com/o{i}> .\n"
        ));
    }
    text.push_str("<http://e.com/s> <http://e.com/p> <http://e.com:80a/x> .\n");
    text.push_str("<http://e.com/s> <http://e.com/p> <http://e.com/last> .\n");
    std::fs::write(&file, text).unwrap();
    let store = Store::open(dir.path().join("strict")).unwrap();
    let err = bulk_into(&store, &file, &BulkLoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}:1001:", file.display())),
        "{err}"
    );
    assert_eq!(store.reader().len().unwrap(), 0);

    let store = Store::open(dir.path().join("lenient")).unwrap();
    let mut options = BulkLoadOptions::default();
    options.load.lenient = true;
    let report = bulk_into(&store, &file, &options).unwrap();
    assert_eq!((report.skipped, report.inserted), (1, 1001));
    // s, p and 1001 objects: the bad IRI never reached the dictionary.
    assert_eq!(store.reader().statistics().unwrap().terms, 1003);
    assert!(store.verify().unwrap().is_ok());
}

/// The store's quads as an oxrdf dataset, canonicalized (blank node labels differ between load paths).
fn canonical(store: &Store) -> oxrdf::Dataset {
    let r = store.reader();
    let ids: Vec<_> = r
        .quads_for_pattern(None, None, None, GraphSel::All)
        .collect::<Result<_, _>>()
        .unwrap();
    let mut d: oxrdf::Dataset = r.quads(&ids).unwrap().into_iter().collect();
    d.canonicalize(oxrdf::dataset::CanonicalizationAlgorithm::Unstable);
    d
}

#[test]
fn bulk_rdfxml_split_in_parallel_equals_the_sequential_parse() {
    // Real-world RDF/XML (FIBO, schema.org): blank nodes by rdf:nodeID and nesting, parseType Literal /
    // Resource / Collection, xml:lang, entities, rdf:ID — files the splitter refuses take the sequential
    // path, the rest are cut between top-level elements. Either way the result must be the same graph.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![shared("ontologies")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("rdf" | "owl")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    // The largest files (several chunks each, so the split really happens) and a spread of the rest.
    files.sort_by_key(|f| std::cmp::Reverse(std::fs::metadata(f).map_or(0, |m| m.len())));
    let chosen: Vec<PathBuf> = files
        .iter()
        .take(6)
        .chain(files.iter().skip(6).step_by(15))
        .cloned()
        .collect();
    assert!(chosen.len() >= 20, "{} RDF/XML files", chosen.len());
    let mut quads = 0;
    for file in &chosen {
        let (_d1, txn) = transactional(file);
        let dir = tempfile::tempdir().unwrap();
        let blk = Store::open(dir.path()).unwrap();
        let options = BulkLoadOptions {
            threads: 2,
            ..BulkLoadOptions::default()
        };
        bulk_into(&blk, file, &options).unwrap();
        let (a, b) = (canonical(&txn), canonical(&blk));
        assert_eq!(a.len(), b.len(), "{}", file.display());
        assert!(
            a == b,
            "{}: bulk and sequential RDF/XML parses differ",
            file.display()
        );
        assert!(blk.verify().unwrap().is_ok());
        quads += a.len();
    }
    println!(
        "{} RDF/XML files, {quads} quads: bulk (split) == sequential",
        chosen.len()
    );

    // LUBM-1 written as RDF/XML (14 MB: several chunks, so elements really are parsed apart).
    let dir = tempfile::tempdir().unwrap();
    let rdfxml = dir.path().join("lubm-1.rdf");
    loaders::convert(
        &Input::Path(shared("lubm/lubm-1.nt.gz")),
        &LoadOptions::default(),
        loaders::Format::RdfXml,
        std::io::BufWriter::new(std::fs::File::create(&rdfxml).unwrap()),
    )
    .unwrap();
    assert!(std::fs::metadata(&rdfxml).unwrap().len() > 3 * (4 << 20));
    let (_d1, txn) = transactional(&rdfxml);
    let (_d2, blk, report) = bulk(&rdfxml, 1 << 30);
    assert_eq!(report.parsed, 99_565);
    assert_same("lubm-1 RDF/XML", &txn, &blk);
}

#[test]
fn bulk_load_new_creates_the_store_while_parsing() {
    // LUBM-1 takes the store over while parsing; the ten-line file only when finishing (parsed before
    // the store is open).
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.nt");
    let lines: String = (0..10)
        .map(|i| format!("<http://e.com/s{i}> <http://e.com/p> \"v{i}\" .\n"))
        .collect();
    std::fs::write(&small, lines).unwrap();
    for (name, file) in [
        ("lubm-1", shared("lubm/lubm-1.nt.gz")),
        ("bsbm-pc1000 ttl", shared("bsbm/bsbm-pc1000.ttl.gz")),
        ("small", small.clone()),
    ] {
        let (_d1, txn) = transactional(&file);
        let path = dir.path().join(format!("new-{}", name.replace(' ', "-")));
        let (blk, report) = loaders::bulk_load_new(
            &path,
            &[Input::Path(file.clone())],
            &BulkLoadOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.inserted, txn.reader().len().unwrap(), "{name}");
        assert_same(name, &txn, &blk);
        drop(blk);
        // Reopened from disk, the same.
        assert_same(name, &txn, &Store::open(&path).unwrap());
    }

    // A syntax error leaves the new store empty.
    let bad = dir.path().join("bad.nt");
    std::fs::write(&bad, "<http://e.com/s> <http://e.com/p> <not an iri> .\n").unwrap();
    let path = dir.path().join("new-bad");
    let Err(err) = loaders::bulk_load_new(
        &path,
        &[Input::Path(bad)],
        &BulkLoadOptions::default(),
        &mut |_| {},
    ) else {
        panic!("a syntax error must fail the load");
    };
    assert!(err.to_string().contains("<not an iri>"), "{err}");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.reader().len().unwrap(), 0);
    assert_eq!(store.reader().statistics().unwrap().terms, 0);

    // A detached load is refused by a store that already holds terms: its ids would clash.
    load_into(&store, &small);
    let refused = store.bulk_loader_from(
        &tern::store::BulkOptions::default(),
        tern::store::DetachedBulkLoad::new(),
    );
    assert!(
        matches!(refused, Err(tern::store::StoreError::NotNew(_))),
        "{:?}",
        refused.err()
    );
}

#[test]
fn bulk_cuts_chunks_at_line_ends() {
    // Lines around the 1 MiB chunk edges, one line longer than a chunk, no newline at the end: the bulk
    // load (chunks parsed in parallel) holds the same quads as the transactional one (one sequential
    // parser), the 2.5 MB literal included.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..30_000 {
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/p> \"v{i}\" .\n"
        ));
    }
    text.push_str(&format!(
        "<http://e.com/long> <http://e.com/p> \"{}\" .\n",
        "x".repeat(2_500_000)
    ));
    for i in 0..30_000 {
        text.push_str(&format!(
            "<http://e.com/t{i}> <http://e.com/q> <http://e.com/s{i}> .\n"
        ));
    }
    text.push_str("<http://e.com/last> <http://e.com/p> \"end\" .");
    let file = dir.path().join("edges.nt");
    std::fs::write(&file, &text).unwrap();
    let (_d1, txn) = transactional(&file);
    let (_d2, blk, report) = bulk(&file, 1 << 30);
    assert_eq!(report.inserted, 60_002);
    assert_same("chunk edges", &txn, &blk);
    // Line numbers after the long line still count every line before it.
    let bad = dir.path().join("bad.nt");
    std::fs::write(
        &bad,
        format!("{text}\n<http://e.com/s> <http://e.com/p> <not an iri> .\n"),
    )
    .unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let err = bulk_into(&store, &bad, &BulkLoadOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("{}:60003:", bad.display())),
        "{err}"
    );
    assert_eq!(store.reader().len().unwrap(), 0);

    // A plain file is mapped into memory, a compressed one read into chunk buffers: both paths hold the
    // same quads and name the same lines, with --lenient for bad lines in several chunks too.
    let gz = dir.path().join("edges.nt.gz");
    gzip(&text, &gz);
    let (_d3, read, _) = bulk(&gz, 1 << 30);
    assert_same("chunk edges, read", &txn, &read);
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let bad_at = [3, 20_000, 30_001, 30_002, 60_002];
    for &at in &bad_at {
        lines.insert(
            at - 1,
            format!("<http://e.com/s> <http://e.com/p> <bad {at}> ."),
        );
    }
    let lenient_text = lines.join("\n");
    let lenient = BulkLoadOptions {
        load: LoadOptions {
            lenient: true,
            ..LoadOptions::default()
        },
        ..BulkLoadOptions::default()
    };
    for name in ["lenient.nt", "lenient.nt.gz"] {
        let file = dir.path().join(name);
        if name.ends_with(".gz") {
            gzip(&lenient_text, &file);
        } else {
            std::fs::write(&file, &lenient_text).unwrap();
        }
        let store = Store::open(dir.path().join(format!("store-{name}"))).unwrap();
        let report = bulk_into(&store, &file, &lenient).unwrap();
        let mut named: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        named.sort_unstable();
        assert_eq!(named, bad_at.map(|l| l as u64), "{name}");
        assert_eq!(report.inserted, 60_002, "{name}");
    }
}

#[test]
fn bulk_named_graphs_after_default_graph_quads() {
    // The collector keeps default-graph quads in 12 bytes each until the first quad of a named graph
    // arrives, then expands them: default-graph quads (with inline and dictionary literals) over more
    // than a chunk, then named graphs, then the default graph again. Bulk holds what a transaction
    // holds. (Expanding before a spill is checked by `bulk_spills_runs_and_merges_them`.)
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..40_000 {
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/p{}> \"{}\"^^<http://www.w3.org/2001/XMLSchema#integer> .\n",
            i % 7,
            i % 500
        ));
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/q> \"ab{}\" .\n",
            i % 90
        ));
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/r> \"a longer literal {}\" .\n",
            i % 3000
        ));
    }
    for i in 0..10_000 {
        text.push_str(&format!(
            "<http://e.com/s{i}> <http://e.com/p> <http://e.com/o{}> <http://e.com/g{}> .\n",
            i % 300,
            i % 3
        ));
    }
    for i in 0..1000 {
        text.push_str(&format!(
            "<http://e.com/t{i}> <http://e.com/p> \"x{i}\" .\n"
        ));
    }
    let file = dir.path().join("mixed.nq");
    std::fs::write(&file, &text).unwrap();
    let (_d1, txn) = transactional(&file);
    let (_d2, blk, report) = bulk(&file, 1 << 30);
    assert_eq!(report.inserted, 131_000);
    assert_same("default then named graphs", &txn, &blk);
}

fn gzip(text: &str, path: &Path) {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}
