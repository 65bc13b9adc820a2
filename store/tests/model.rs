//! Property tests: the store against an in-memory model.
//!
//! Random transactions of inserts, removes and graph clears are applied to the store and to a `BTreeSet`
//! model; after every commit the store's contents must equal the model and `Store::verify` must find every
//! index, bitmap and counter consistent. Terms round-trip exactly through ids.

use std::collections::{BTreeSet, HashSet};

use oxrdf::vocab::{rdf, xsd};
use oxrdf::{BlankNode, GraphName, Literal, NamedNode, NamedOrBlankNode, Quad, Term};
use proptest::prelude::*;
use tern_store::{GraphSel, Store, TermId};

fn iri(i: u32) -> NamedNode {
    NamedNode::new_unchecked(format!("http://example.com/n{i}"))
}

fn subject() -> impl Strategy<Value = NamedOrBlankNode> {
    prop_oneof![
        8 => (0u32..100).prop_map(|i| iri(i).into()),
        1 => (0u32..3).prop_map(|i| BlankNode::new_unchecked(format!("b{i}")).into()),
    ]
}

fn predicate() -> impl Strategy<Value = NamedNode> {
    prop_oneof![Just(rdf::TYPE.into_owned()), (200u32..203).prop_map(iri)]
}

fn object() -> impl Strategy<Value = Term> {
    prop_oneof![
        4 => (300u32..304).prop_map(|i| iri(i).into()),
        1 => (0u32..3).prop_map(|i| BlankNode::new_unchecked(format!("b{i}")).into()),
        1 => (-3i64..3).prop_map(|i| Literal::from(i).into()),
        1 => prop_oneof![Just("short"), Just("a much longer string value")].prop_map(|s| Literal::new_simple_literal(s).into()),
        1 => Just(Literal::new_language_tagged_literal_unchecked("chat", "fr").into()),
    ]
}

fn graph() -> impl Strategy<Value = GraphName> {
    prop_oneof![
        3 => Just(GraphName::DefaultGraph),
        1 => (400u32..402).prop_map(|i| iri(i).into()),
    ]
}

fn quad() -> impl Strategy<Value = Quad> {
    (subject(), predicate(), object(), graph()).prop_map(|(s, p, o, g)| Quad::new(s, p, o, g))
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Vec<Quad>),
    Remove(Vec<Quad>),
    ClearGraph(GraphName),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(quad(), 1..150).prop_map(Op::Insert),
        3 => prop::collection::vec(quad(), 1..80).prop_map(Op::Remove),
        1 => graph().prop_map(Op::ClearGraph),
    ]
}

fn contents(store: &Store) -> BTreeSet<String> {
    let reader = store.reader();
    let ids: Vec<_> = reader
        .quads_for_pattern(None, None, None, GraphSel::All)
        .collect::<Result<_, _>>()
        .unwrap();
    reader
        .quads(&ids)
        .unwrap()
        .into_iter()
        .map(|q| q.to_string())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(txns in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut model: HashSet<Quad> = HashSet::new();
        for ops in txns {
            let mut txn = store.transaction().unwrap();
            for op in &ops {
                match op {
                    Op::Insert(qs) => {
                        txn.insert_all(qs.iter().map(Quad::as_ref)).unwrap();
                        model.extend(qs.iter().cloned());
                    }
                    Op::Remove(qs) => {
                        txn.remove_all(qs.iter().map(Quad::as_ref)).unwrap();
                        for q in qs { model.remove(q); }
                    }
                    Op::ClearGraph(g) => {
                        let id = match g {
                            GraphName::DefaultGraph => Some(TermId::DEFAULT_GRAPH),
                            GraphName::NamedNode(n) => Some(txn.intern(n.as_ref().into()).unwrap()),
                            GraphName::BlankNode(_) => None,
                        };
                        if let Some(id) = id { txn.clear_graph(id).unwrap(); }
                        model.retain(|q| &q.graph_name != g);
                    }
                }
            }
            txn.commit().unwrap();
            let expected: BTreeSet<String> = model.iter().map(|q| q.to_string()).collect();
            prop_assert_eq!(contents(&store), expected);
            let report = store.verify().unwrap();
            prop_assert!(report.is_ok(), "{:?}", report);
            // Every pattern shape returns exactly the model's matches.
            let reader = store.reader();
            for q in model.iter().take(5) {
                let ids = reader.quad_ids(q.as_ref()).unwrap().unwrap();
                let sel = if ids.in_default_graph() { GraphSel::Default } else { GraphSel::Named(ids.g) };
                for mask in 0..8u8 {
                    let s = (mask & 1 != 0).then_some(ids.s);
                    let p = (mask & 2 != 0).then_some(ids.p);
                    let o = (mask & 4 != 0).then_some(ids.o);
                    let n = reader.count(s, p, o, sel).unwrap() as usize;
                    let m = model.iter().filter(|x| x.graph_name == q.graph_name
                        && (s.is_none() || x.subject == q.subject)
                        && (p.is_none() || x.predicate == q.predicate)
                        && (o.is_none() || x.object == q.object)).count();
                    prop_assert_eq!(n, m, "pattern mask {}", mask);
                }
            }
        }
        // Reopening gives the same contents.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let expected: BTreeSet<String> = model.iter().map(|q| q.to_string()).collect();
        prop_assert_eq!(contents(&store), expected);
    }

    #[test]
    fn terms_round_trip(
        value in "\\PC{0,40}",
        lang in "[a-z]{1,8}(-[a-zA-Z0-9]{1,8}){0,2}",
        digits in "-?[0-9]{1,20}",
        kind in 0u8..7,
    ) {
        let term: Term = match kind {
            0 => NamedNode::new_unchecked(format!("http://example.com/{}", value.replace(['<', '>', ' ', '"', '{', '}', '|', '\\', '^', '`'], "_"))).into(),
            1 => Literal::new_simple_literal(value.clone()).into(),
            2 => Literal::new_language_tagged_literal_unchecked(value.clone(), lang.to_ascii_lowercase()).into(),
            3 => Literal::new_typed_literal(digits.clone(), xsd::INTEGER).into(),
            4 => Literal::new_typed_literal(
                ["NaN", "INF", "-INF", "-0.0E0", "0.0E0", "1.5E300"][value.len() % 6], xsd::DOUBLE).into(),
            5 => Literal::new_typed_literal(value.clone(), NamedNode::new_unchecked("http://example.com/dt")).into(),
            _ => BlankNode::new_unchecked(format!("x{}", value.len())).into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = NamedNode::new_unchecked("http://example.com/s");
        let quad = Quad::new(s.clone(), s, term.clone(), GraphName::DefaultGraph);
        store.insert([quad.as_ref()]).unwrap();
        let reader = store.reader();
        let id = reader.term_id(term.as_ref()).unwrap().expect("interned");
        prop_assert_eq!(reader.term(id).unwrap(), term.clone());
        prop_assert!(reader.contains(quad.as_ref()).unwrap());
        // A fresh process (no caches) decodes it the same way.
        drop(reader);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        prop_assert_eq!(store.reader().term(id).unwrap(), term);
    }
}
