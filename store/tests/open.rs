//! Opening, locking, read-only access, snapshots and the bitmap API on a real on-disk store.

use oxrdf::vocab::rdf;
use oxrdf::{GraphNameRef, NamedNodeRef, QuadRef};
use tern_store::{OpenError, Store, StoreError, TermId};

const EX: &str = "http://example.com/";

fn n(local: &str) -> NamedNodeRef<'static> {
    NamedNodeRef::new_unchecked(Box::leak(format!("{EX}{local}").into_boxed_str()))
}

#[test]
fn second_writer_is_refused_and_read_only_works_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(dir.path()).unwrap();
    writer
        .insert([QuadRef::new(
            n("a"),
            n("p"),
            n("b"),
            GraphNameRef::DefaultGraph,
        )])
        .unwrap();
    match Store::open(dir.path()) {
        Err(e @ OpenError::Locked { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("store is locked"), "{msg}");
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        }
        Err(e) => panic!("expected a lock error, got {e}"),
        Ok(_) => panic!("second writer opened"),
    }
    let ro = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.reader().len().unwrap(), 1);
    assert!(matches!(ro.transaction(), Err(StoreError::ReadOnly)));
}

#[test]
fn read_only_open_of_missing_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_read_only(dir.path().join("nope"))
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("does not contain a tern store"),
        "{err}"
    );
}

#[test]
fn snapshots_do_not_see_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .insert([QuadRef::new(
            n("a"),
            n("p"),
            n("b"),
            GraphNameRef::DefaultGraph,
        )])
        .unwrap();
    let before = store.reader();
    let v1 = store.data_version();
    store
        .insert([QuadRef::new(
            n("a"),
            n("p"),
            n("c"),
            GraphNameRef::DefaultGraph,
        )])
        .unwrap();
    assert_eq!(before.len().unwrap(), 1);
    assert_eq!(store.reader().len().unwrap(), 2);
    assert_eq!(store.data_version(), v1 + 1);
    // A commit that changes nothing keeps the data version.
    store
        .insert([QuadRef::new(
            n("a"),
            n("p"),
            n("c"),
            GraphNameRef::DefaultGraph,
        )])
        .unwrap();
    assert_eq!(store.data_version(), v1 + 1);
}

#[test]
fn bitmaps_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut quads = Vec::new();
    for i in 0..100 {
        let s = n(&format!("s{i}"));
        quads.push(QuadRef::new(
            s,
            rdf::TYPE,
            n(if i % 2 == 0 { "Even" } else { "Odd" }),
            GraphNameRef::DefaultGraph,
        ));
        quads.push(QuadRef::new(
            s,
            n("knows"),
            n("s0"),
            GraphNameRef::DefaultGraph,
        ));
        if i < 10 {
            quads.push(QuadRef::new(
                s,
                n("rare"),
                n("x"),
                GraphNameRef::DefaultGraph,
            ));
        }
        quads.push(QuadRef::new(
            s,
            n("in"),
            n("g"),
            GraphNameRef::NamedNode(n("g1")),
        ));
    }
    store.insert(quads.iter().copied()).unwrap();
    let r = store.reader();
    let id = |t: NamedNodeRef<'_>| r.term_id(t.into()).unwrap().unwrap();
    let even = r
        .subjects_with_object(id(rdf::TYPE), id(n("Even")))
        .unwrap()
        .expect("type bitmap");
    assert_eq!(even.len(), 50);
    assert_eq!(r.subjects_with(id(n("knows"))).unwrap().len(), 100);
    // 100 subjects >= threshold: materialized. 10 < threshold: no bitmap.
    assert_eq!(
        r.subjects_with_object(id(n("knows")), id(n("s0")))
            .unwrap()
            .map(|b| b.len()),
        Some(100)
    );
    assert!(r
        .subjects_with_object(id(n("rare")), id(n("x")))
        .unwrap()
        .is_none());
    assert_eq!(r.graph_subjects(id(n("g1"))).unwrap().len(), 100);
    assert_eq!(r.graph_subjects(TermId::DEFAULT_GRAPH).unwrap().len(), 100);
    let stats = r.statistics().unwrap();
    assert_eq!(stats.quads, 310);
    assert_eq!(stats.named_graphs, 1);
    let ps = r
        .predicate_stats(TermId::DEFAULT_GRAPH, id(rdf::TYPE))
        .unwrap();
    assert_eq!(
        (ps.quads, ps.distinct_subjects, ps.distinct_objects),
        (100, 100, 2)
    );
    let ps = r
        .predicate_stats(TermId::DEFAULT_GRAPH, id(n("knows")))
        .unwrap();
    assert_eq!(
        (ps.quads, ps.distinct_subjects, ps.distinct_objects),
        (100, 100, 1)
    );
    assert!(store.verify().unwrap().is_ok());
    // Early termination: take(3) of a large scan.
    let first: Vec<_> = r
        .quads_for_pattern(
            None,
            Some(id(n("knows"))),
            None,
            tern_store::GraphSel::Default,
        )
        .take(3)
        .collect();
    assert_eq!(first.len(), 3);
}
