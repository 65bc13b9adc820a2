//! The sophia trait implementations of `tern::generate::sophia` against a store loaded from
//! `data/sample.ttl`: counts, pattern scans against filtered full scans, graph views, writes through
//! `MutableDataset`, and interop with generic sophia code (namespaces, datatype matchers, collecting into
//! sophia's own datasets, dataset adapters, copying between two tern stores).

use std::collections::{BTreeSet, HashSet};

use oxrdf::{GraphNameRef, NamedNodeRef, QuadRef};
use tern::generate::sophia::sophia_api;
use tern::generate::sophia::{TernDataset, TernMutableDataset, TernTerm};
use tern::{GraphSel, Store};

use sophia_api::dataset::{Dataset, MutableDataset};
use sophia_api::graph::Graph;
use sophia_api::ns::{rdf, rdfs, xsd, Namespace};
use sophia_api::quad::{Quad, Spog};
use sophia_api::source::QuadSource;
use sophia_api::term::matcher::Any;
use sophia_api::term::{SimpleTerm, Term, TermKind};
use tern::store::StoreError;

#[allow(dead_code)] // the HTTP client is for the server tests
#[path = "support/sample.rs"]
mod sample;

const LIB: &str = "https://example.org/library#";
const DATA: &str = "https://example.org/library/data/";
const G1: &str = "https://example.org/graphs/g1";

fn sample_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sample::sample_store(&dir.path().join("db"));
    (dir, store)
}

/// Adds a named graph with a blank node so graph names and blank nodes are exercised too.
fn add_named_graph(store: &Store) {
    let g = NamedNodeRef::new(G1).unwrap();
    let s = NamedNodeRef::new("https://example.org/library/data/berners-lee").unwrap();
    let knows = NamedNodeRef::new("http://xmlns.com/foaf/0.1/knows").unwrap();
    let b = oxrdf::BlankNode::new("friend1").unwrap();
    let name = NamedNodeRef::new("http://xmlns.com/foaf/0.1/name").unwrap();
    let lit = oxrdf::Literal::new_simple_literal("A friend");
    store
        .insert([
            QuadRef::new(s, knows, b.as_ref(), GraphNameRef::NamedNode(g)),
            QuadRef::new(b.as_ref(), name, lit.as_ref(), GraphNameRef::NamedNode(g)),
            QuadRef::new(s, name, lit.as_ref(), GraphNameRef::NamedNode(g)),
        ])
        .expect("insert named graph");
}

fn iri(s: &str) -> TernTerm {
    TernTerm(oxrdf::NamedNode::new(s).unwrap().into())
}

/// Quads as plain `oxrdf` quads, for set comparisons.
fn ox_set<'a>(
    quads: impl Iterator<Item = Result<Spog<TernTerm>, StoreError>> + 'a,
) -> BTreeSet<String> {
    quads
        .map(|q| {
            let ([s, p, o], g) = q.expect("quad");
            match g {
                None => format!("{} {} {} .", s, p, o),
                Some(g) => format!("{} {} {} {} .", s, p, o, g),
            }
        })
        .collect()
}

#[test]
fn counts_match_the_store() {
    let (_dir, store) = sample_store();
    add_named_graph(&store);
    let ds = TernDataset::new(&store);
    let mut n = 0u64;
    for q in ds.quads() {
        q.expect("quad");
        n += 1;
    }
    assert!(n > 50, "sample has data: {n}");
    assert_eq!(n, store.reader().len().unwrap());
    assert_eq!(n, ds.len().unwrap());

    let default = ds.default_graph().triples().count() as u64;
    let reader = store.reader();
    assert_eq!(
        default,
        reader.count(None, None, None, GraphSel::Default).unwrap()
    );
    let named = ds.named_graph(iri(G1)).unwrap();
    assert_eq!(named.triples().count(), 3);
    assert_eq!(default + 3, n);
    // An unknown graph is empty, not an error.
    let missing = ds.named_graph(iri("https://example.org/none")).unwrap();
    assert_eq!(missing.triples().count(), 0);
}

#[test]
fn quads_matching_equals_filtered_full_scan() {
    let (_dir, store) = sample_store();
    add_named_graph(&store);
    let ds = TernDataset::new(&store);
    let all: Vec<Spog<TernTerm>> = ds.quads().map(|q| q.unwrap()).collect();
    let scan = |f: &dyn Fn(&Spog<TernTerm>) -> bool| -> BTreeSet<String> {
        ox_set(all.iter().filter(|q| f(q)).cloned().map(Ok))
    };

    let berners = iri(&format!("{DATA}berners-lee"));
    let label = iri(rdfs::label.iri().unwrap().as_str());
    let name = iri(&format!("{LIB}name"));

    // Constant subject.
    let got = ox_set(ds.quads_matching([berners.clone()], Any, Any, Any));
    let want = scan(&|q| Term::eq(&q.0[0], &berners));
    assert!(want.len() >= 4, "{want:?}");
    assert_eq!(got, want);

    // Constant predicate (a sophia namespace term, not a TernTerm).
    let got = ox_set(ds.quads_matching(Any, [rdfs::label], Any, Any));
    let want = scan(&|q| Term::eq(&q.0[1], &label));
    assert!(want.len() >= 10);
    assert_eq!(got, want);

    // Subject and predicate, in the default graph only (constant graph name `None`).
    let got = ox_set(ds.quads_matching([berners.clone()], [name.clone()], Any, [None::<TernTerm>]));
    let want = scan(&|q| Term::eq(&q.0[0], &berners) && Term::eq(&q.0[1], &name) && q.1.is_none());
    assert_eq!(want.len(), 1);
    assert_eq!(got, want);

    // Constant named graph.
    let got = ox_set(ds.quads_matching(Any, Any, Any, [Some(iri(G1))]));
    assert_eq!(got.len(), 3);
    assert_eq!(
        got,
        scan(&|q| q.1.as_ref().is_some_and(|g| Term::eq(g, iri(G1))))
    );

    // Constant literal object, with a language tag.
    let lit = TernTerm(
        oxrdf::Literal::new_language_tagged_literal("Book", "en")
            .unwrap()
            .into(),
    );
    let got = ox_set(ds.quads_matching(Any, Any, [lit.clone()], Any));
    assert_eq!(got.len(), 1);
    assert_eq!(got, scan(&|q| Term::eq(&q.0[2], &lit)));

    // Non-constant matchers are filters: two predicates, a closure, a term kind.
    let two = [label.clone(), name.clone()];
    let got = ox_set(ds.quads_matching(Any, two.clone(), TermKind::Literal, Any));
    let want = scan(&|q| two.iter().any(|t| Term::eq(&q.0[1], t)) && q.0[2].is_literal());
    assert_eq!(got, want);

    // Terms the store does not know, or cannot hold, match nothing.
    assert_eq!(
        ds.quads_matching([iri("https://example.org/unknown")], Any, Any, Any)
            .count(),
        0
    );
    let var = SimpleTerm::Variable(sophia_api::term::VarName::new_unchecked("x".into()));
    assert_eq!(ds.quads_matching([var], Any, Any, Any).count(), 0);

    // `contains` and the `*_matching` helpers ride on the same path.
    assert!(ds
        .contains(
            &berners,
            &name,
            TernTerm(oxrdf::Literal::new_simple_literal("Tim Berners-Lee").into()),
            None::<&TernTerm>
        )
        .unwrap());
    assert!(!ds
        .contains(
            &berners,
            &name,
            TernTerm(oxrdf::Literal::new_simple_literal("Nobody").into()),
            None::<&TernTerm>
        )
        .unwrap());

    // Graph view: triples_matching against a filtered scan of the graph's triples.
    let g = ds.default_graph();
    let got: BTreeSet<String> = g
        .triples_matching([berners.clone()], Any, Any)
        .map(|t| {
            let [s, p, o] = t.unwrap();
            format!("{s} {p} {o} .")
        })
        .collect();
    let want = scan(&|q| Term::eq(&q.0[0], &berners) && q.1.is_none());
    assert_eq!(got, want);
}

#[test]
fn sophia_ecosystem_interop() {
    let (_dir, store) = sample_store();
    add_named_graph(&store);
    let ds = TernDataset::new(&store);

    // Namespaces and vocabularies from sophia itself as pattern constants.
    let lib = Namespace::new(LIB).unwrap();
    // `subjects_matching` (a sophia default method) rides on the indexed `quads_matching`.
    let book = lib.get("Book").unwrap();
    let subjects: Vec<TernTerm> = ds.subjects_matching([book]).map(|t| t.unwrap()).collect();
    assert_eq!(
        subjects.len(),
        3,
        "lib:Book: a, rdfs:subClassOf, rdfs:label: {subjects:?}"
    );
    assert!(subjects.iter().all(|t| Term::eq(t, book)));
    let books: HashSet<String> = ds
        .quads_matching(Any, [rdf::type_], [lib.get("Book").unwrap()], Any)
        .map(|q| q.unwrap().to_s().to_string())
        .collect();
    assert!(!books.is_empty());

    // Sophia's datatype matcher (`Any * xsd::integer`).
    let ints: Vec<_> = ds
        .quads_matching(Any, Any, Any * xsd::integer, Any)
        .map(|q| q.unwrap())
        .collect();
    assert!(!ints.is_empty());
    assert!(ints
        .iter()
        .all(|q| q.o().datatype().unwrap() == xsd::integer.iri().unwrap()));

    // Collect into sophia's own dataset type (a HashSet of SimpleTerm quads): same quads.
    let copy: HashSet<Spog<SimpleTerm<'static>>> = ds
        .quads()
        .collect_quads()
        .expect("collect into sophia dataset");
    assert_eq!(copy.len() as u64, store.reader().len().unwrap());
    for q in ds.quads() {
        let q = q.unwrap();
        assert!(Dataset::contains(&copy, q.s(), q.p(), q.o(), q.g()).unwrap());
    }

    // Sophia's generic adapters: a dataset graph and the union graph.
    let g1 = ds.graph(Some(iri(G1)));
    assert_eq!(g1.triples().count(), 3);
    assert_eq!(
        ds.union_graph().triples().count() as u64,
        store.reader().len().unwrap()
    );

    // Copy a tern dataset into another tern store through sophia traits only, and back out.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = Store::open(dir2.path().join("db")).unwrap();
    let mut target = TernMutableDataset::new(&store2);
    let n = target.insert_all(ds.quads()).expect("copy");
    assert_eq!(n as u64, store.reader().len().unwrap());
    let other = TernDataset::new(&store2);
    assert_eq!(ox_set(other.quads()), ox_set(ds.quads()));
}

#[test]
fn mutable_dataset_writes_through() {
    let (_dir, store) = sample_store();
    let before = store.reader().len().unwrap();
    let mut ds = TernMutableDataset::new(&store);

    let s = iri(&format!("{DATA}new-book"));
    let title = iri(&format!("{LIB}title"));
    let value = TernTerm(oxrdf::Literal::new_simple_literal("Sophia on tern").into());
    let g = iri(G1);

    assert!(ds.insert(&s, &title, &value, Some(&g)).unwrap());
    assert!(
        !ds.insert(&s, &title, &value, Some(&g)).unwrap(),
        "second insert is a no-op"
    );
    let quad = oxrdf::Quad::new(
        oxrdf::NamedNode::new(format!("{DATA}new-book")).unwrap(),
        oxrdf::NamedNode::new(format!("{LIB}title")).unwrap(),
        oxrdf::Literal::new_simple_literal("Sophia on tern"),
        oxrdf::NamedNode::new(G1).unwrap(),
    );
    assert!(store.reader().contains(quad.as_ref()).unwrap());
    assert_eq!(store.reader().len().unwrap(), before + 1);
    // The wrapper's own reads see its writes.
    assert!(ds.contains(&s, &title, &value, Some(&g)).unwrap());

    assert!(ds.remove(&s, &title, &value, Some(&g)).unwrap());
    assert!(!ds.remove(&s, &title, &value, Some(&g)).unwrap());
    assert!(!store.reader().contains(quad.as_ref()).unwrap());
    assert_eq!(store.reader().len().unwrap(), before);

    // Sophia's own term types work as input; terms tern cannot store are rejected on insert and are
    // simply absent on remove.
    let relative = SimpleTerm::Iri(sophia_api::term::IriRef::new_unchecked("relative".into()));
    assert!(matches!(
        ds.insert(&relative, &title, &value, None::<&TernTerm>),
        Err(StoreError::UnsupportedTerm(_))
    ));
    assert!(matches!(
        ds.insert(&value, &title, &value, None::<&TernTerm>),
        Err(StoreError::UnsupportedTerm(_))
    ));
    assert!(!ds
        .remove(&value, &title, &value, None::<&TernTerm>)
        .unwrap());

    // Batched: insert_all in one transaction, then remove_matching (collects, then remove_all).
    let batch: Vec<Spog<SimpleTerm<'static>>> = (0..5)
        .map(|i| {
            (
                [
                    s.as_simple().into_term(),
                    title.as_simple().into_term(),
                    SimpleTerm::LiteralDatatype(
                        format!("{i}").into(),
                        xsd::integer
                            .iri()
                            .unwrap()
                            .map_unchecked(|m| m.to_string().into()),
                    ),
                ],
                None,
            )
        })
        .collect();
    assert_eq!(
        ds.insert_all(batch.into_iter().map(Ok::<_, std::convert::Infallible>))
            .unwrap(),
        5
    );
    assert_eq!(store.reader().len().unwrap(), before + 5);
    assert_eq!(ds.quads_matching([&s], Any, Any, Any).count(), 5);
    let removed = ds
        .remove_matching([&s], [&title], Any * xsd::integer, Any)
        .unwrap();
    assert_eq!(removed, 5);
    assert_eq!(store.reader().len().unwrap(), before);

    // Writes made elsewhere show after refresh.
    store.insert([quad.as_ref()]).unwrap();
    assert_eq!(ds.quads_matching([&s], Any, Any, Any).count(), 0);
    ds.refresh();
    assert_eq!(ds.quads_matching([&s], Any, Any, Any).count(), 1);
}
