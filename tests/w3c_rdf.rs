//! W3C RDF 1.1 syntax suites (Turtle, N-Triples, N-Quads, TriG, RDF/XML), driven by their manifests.
//!
//! Positive syntax tests must parse and negative ones must fail, through tern's loader configuration
//! (`tern_loaders::read_quads`). Evaluation tests go further: the parsed quads are inserted into a real
//! on-disk store, read back, compared with the expected N-Triples/N-Quads up to blank node renaming, then
//! removed again — so every W3C dataset also round-trips through the dictionary and indexes.
//!
//! Prints `N passed, M failed` per suite; fails on any failure not in `SKIP` (which gives a reason each).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oxrdf::dataset::CanonicalizationAlgorithm;
use oxrdf::{Dataset, NamedNode, NamedOrBlankNode, Quad, Term, Triple};
use oxrdfio::{RdfFormat, RdfParser};
use tern::loaders::{self, Format, Input, LoadOptions};
use tern::{GraphSel, Store};

const W3C_PREFIX: &str = "https://w3c.github.io/rdf-tests/";
const MF: &str = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#";
const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";

/// Tests allowed to fail, with the reason. Empty: every test passes.
const SKIP: &[(&str, &str)] = &[];

fn rdf_tests_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rdf-tests")
}

fn local_path(iri: &str) -> PathBuf {
    rdf_tests_root().join(iri.strip_prefix(W3C_PREFIX).unwrap_or(iri))
}

struct Manifest {
    triples: HashMap<NamedOrBlankNode, Vec<(NamedNode, Term)>>,
}

impl Manifest {
    fn load(iri: &str) -> Manifest {
        let file = File::open(local_path(iri)).unwrap_or_else(|e| panic!("{iri}: {e}"));
        let mut triples: HashMap<NamedOrBlankNode, Vec<(NamedNode, Term)>> = HashMap::new();
        let parser = oxttl::TurtleParser::new()
            .with_base_iri(iri)
            .expect("base")
            .for_reader(BufReader::new(file));
        for t in parser {
            let Triple {
                subject,
                predicate,
                object,
            } = t.expect("manifest parses");
            triples
                .entry(subject)
                .or_default()
                .push((predicate, object));
        }
        Manifest { triples }
    }

    fn objects(&self, s: &NamedOrBlankNode, p: &str) -> Vec<Term> {
        self.triples
            .get(s)
            .map(|v| {
                v.iter()
                    .filter(|(q, _)| q.as_str() == p)
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn object(&self, s: &NamedOrBlankNode, p: &str) -> Option<Term> {
        self.objects(s, p).into_iter().next()
    }

    fn entries(&self) -> Vec<NamedOrBlankNode> {
        let manifest = self
            .triples
            .iter()
            .find(|(_, po)| {
                po.iter().any(|(p, o)| {
                    p.as_str() == format!("{RDF}type") && o.to_string() == format!("<{MF}Manifest>")
                })
            })
            .map(|(s, _)| s.clone())
            .expect("manifest node");
        let mut out = Vec::new();
        let mut list = self.object(&manifest, &format!("{MF}entries"));
        while let Some(Term::BlankNode(node)) = list {
            let node: NamedOrBlankNode = node.into();
            match self.object(&node, &format!("{RDF}first")) {
                Some(Term::NamedNode(n)) => out.push(n.into()),
                Some(Term::BlankNode(b)) => out.push(b.into()),
                _ => break,
            }
            list = self.object(&node, &format!("{RDF}rest"));
        }
        out
    }
}

fn iri_of(t: Option<Term>) -> Option<String> {
    match t {
        Some(Term::NamedNode(n)) => Some(n.into_string()),
        _ => None,
    }
}

/// Parses a test input through tern's loader configuration.
fn parse_with_tern(iri: &str, format: Format) -> Result<Vec<Quad>, String> {
    let input = Input::Path(local_path(iri));
    let options = LoadOptions {
        format: Some(format),
        base_iri: Some(iri.to_owned()),
        ..LoadOptions::default()
    };
    let file = File::open(local_path(iri)).map_err(|e| e.to_string())?;
    loaders::read_quads(&input, format, &options, BufReader::new(file))
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn expected_dataset(iri: &str) -> Dataset {
    let format = if iri.ends_with(".nq") {
        RdfFormat::NQuads
    } else {
        RdfFormat::NTriples
    };
    let file = File::open(local_path(iri)).unwrap_or_else(|e| panic!("{iri}: {e}"));
    RdfParser::from_format(format)
        .for_reader(BufReader::new(file))
        .collect::<Result<Dataset, _>>()
        .unwrap_or_else(|e| panic!("expected result {iri} does not parse: {e}"))
}

fn canonical(mut d: Dataset) -> Dataset {
    d.canonicalize(CanonicalizationAlgorithm::Unstable);
    d
}

/// Inserts `quads` into the (empty) store, reads everything back, removes it again.
fn through_store(store: &Store, quads: &[Quad]) -> Result<Dataset, String> {
    store
        .insert(quads.iter().map(Quad::as_ref))
        .map_err(|e| e.to_string())?;
    let reader = store.reader();
    let ids: Vec<_> = reader
        .quads_for_pattern(None, None, None, GraphSel::All)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let back = reader.quads(&ids).map_err(|e| e.to_string())?;
    store
        .remove(back.iter().map(Quad::as_ref))
        .map_err(|e| e.to_string())?;
    let left = store.reader().len().map_err(|e| e.to_string())?;
    if left != 0 {
        return Err(format!("{left} quads left after removing everything"));
    }
    Ok(back.into_iter().collect())
}

fn run_suite(name: &str, manifest_iri: &str, store: &Store) -> (usize, Vec<String>) {
    let manifest = Manifest::load(manifest_iri);
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for entry in manifest.entries() {
        let test = entry.to_string();
        let kind = iri_of(manifest.object(&entry, &format!("{RDF}type"))).unwrap_or_default();
        let kind = kind.rsplit('#').next().unwrap_or_default().to_owned();
        let Some(action) = iri_of(manifest.object(&entry, &format!("{MF}action"))) else {
            failures.push(format!("{test}: no action"));
            continue;
        };
        let format = if kind.starts_with("TestTurtle") {
            Format::Turtle
        } else if kind.starts_with("TestNTriples") {
            Format::NTriples
        } else if kind.starts_with("TestNQuads") {
            Format::NQuads
        } else if kind.starts_with("TestTrig") {
            Format::TriG
        } else if kind.starts_with("TestXML") {
            Format::RdfXml
        } else {
            failures.push(format!("{test}: unknown test type {kind}"));
            continue;
        };
        let outcome: Result<(), String> = if kind.ends_with("PositiveSyntax") {
            parse_with_tern(&action, format).map(|_| ())
        } else if kind.ends_with("NegativeSyntax") || kind.ends_with("NegativeEval") {
            match parse_with_tern(&action, format) {
                Ok(q) => Err(format!("parsed {} quads but must fail", q.len())),
                Err(_) => Ok(()),
            }
        } else if kind.ends_with("Eval") {
            let result =
                iri_of(manifest.object(&entry, &format!("{MF}result"))).unwrap_or_default();
            parse_with_tern(&action, format).and_then(|quads| {
                let got = canonical(through_store(store, &quads)?);
                let expected = canonical(expected_dataset(&result));
                if got == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "not isomorphic to {result}:\n got: {got}\n expected: {expected}"
                    ))
                }
            })
        } else {
            Err(format!("unknown test type {kind}"))
        };
        match outcome {
            Ok(()) => passed += 1,
            Err(e) => match SKIP.iter().find(|(t, _)| test.contains(t)) {
                Some((_, reason)) => skipped.push(format!("{test}: {reason}")),
                None => failures.push(format!("{test} ({kind}): {e}")),
            },
        }
    }
    println!(
        "W3C {name}: {passed} passed, {} failed, {} skipped",
        failures.len(),
        skipped.len()
    );
    for s in &skipped {
        println!("  skipped {s}");
    }
    (passed, failures)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store opens");
    let suites = [
        ("N-Triples", "rdf/rdf11/rdf-n-triples/manifest.ttl"),
        ("N-Quads", "rdf/rdf11/rdf-n-quads/manifest.ttl"),
        ("Turtle", "rdf/rdf11/rdf-turtle/manifest.ttl"),
        ("TriG", "rdf/rdf11/rdf-trig/manifest.ttl"),
        ("RDF/XML", "rdf/rdf11/rdf-xml/manifest.ttl"),
    ];
    let mut total_passed = 0;
    let mut all_failures = Vec::new();
    for (name, path) in suites {
        let (passed, failures) = run_suite(name, &format!("{W3C_PREFIX}{path}"), &store);
        total_passed += passed;
        all_failures.extend(failures);
    }
    let report = store.verify().expect("verify runs");
    if let Err(e) = report {
        all_failures.push(format!("store invariant after all suites: {e}"));
    }
    for f in &all_failures {
        println!("FAILED {f}");
    }
    println!(
        "W3C RDF 1.1 total: {total_passed} passed, {} failed",
        all_failures.len()
    );
    if !all_failures.is_empty() {
        std::process::exit(1);
    }
}
