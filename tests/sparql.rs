//! SPARQL on real on-disk stores: LUBM-10 row counts, planner choices visible in EXPLAIN, limits
//! (timeout, cancellation), atomic updates, LOAD, result formats and the `tern query` / `tern update` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern::loaders::{self, BulkLoadOptions, Input};
use tern::query::{QueryError, QueryOptions, QueryResults, ResultFormat, StoreExt, UpdateOptions};
use tern::Store;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

fn bulk_store(file: &Path) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    loaders::bulk_load(
        &store,
        &[Input::Path(file.to_path_buf())],
        &BulkLoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    (dir, store)
}

fn rows(store: &Store, q: &str) -> Vec<Vec<Option<oxrdf::Term>>> {
    match store.query(q).unwrap_or_else(|e| panic!("{q}: {e}")) {
        QueryResults::Solutions(s) => s.map(|r| r.unwrap().values().to_vec()).collect(),
        _ => panic!("not a SELECT: {q}"),
    }
}

fn count(store: &Store, q: &str) -> usize {
    rows(store, q).len()
}

#[test]
fn lubm10_counts() {
    let (_dir, store) = bulk_store(&shared("lubm/lubm-10.nt.gz"));
    // Expected rows without inference (../shared/data/README.md).
    let expected = [
        (1, 4),
        (2, 28),
        (3, 6),
        (4, 0),
        (5, 0),
        (6, 0),
        (7, 0),
        (8, 0),
        (9, 0),
        (10, 0),
        (11, 0),
        (12, 0),
        (13, 0),
        (14, 75547),
    ];
    for (q, n) in expected {
        let text = std::fs::read_to_string(shared(&format!("lubm/queries/q{q:02}.rq"))).unwrap();
        let start = Instant::now();
        let got = count(&store, &text);
        println!(
            "LUBM-10 q{q:02}: {got} rows ({:.1} ms)",
            start.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(got, n, "LUBM-10 q{q:02}");
    }
    // The star of q01 (type + course) is a bitmap intersection, visible in the plan.
    let q01 = std::fs::read_to_string(shared("lubm/queries/q01.rq")).unwrap();
    let plan = tern::query::explain(&store, &q01, QueryOptions::default()).unwrap();
    println!("{plan}");
    assert!(plan.contains("BitmapStar"), "{plan}");
    assert!(plan.starts_with("4 rows"), "{plan}");
}

fn small_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut data = String::from("PREFIX : <http://e/> INSERT DATA {");
    for i in 0..300 {
        data.push_str(&format!(":s{i} :p {i} ; :q :o{} . ", i % 7));
    }
    data.push('}');
    store.update(&data).unwrap();
    (dir, store)
}

#[test]
fn timeout_and_cancellation_stop_evaluation() {
    let (_dir, store) = small_store();
    // A three-way cartesian product of 600 triples: 2.16e8 rows, far beyond the deadline.
    let q = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }";
    let start = Instant::now();
    let result = store.query_opt(
        q,
        QueryOptions {
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    let err = match result {
        Ok(QueryResults::Solutions(s)) => s.filter_map(Result::err).next(),
        Ok(_) => None,
        Err(e) => Some(e),
    };
    assert!(matches!(err, Some(QueryError::Timeout(_))), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(err.unwrap().to_string().contains("timed out"));

    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        flag.store(true, Ordering::Relaxed);
    });
    let result = store
        .query_opt(
            q,
            QueryOptions {
                cancel: Some(cancel),
                ..Default::default()
            },
        )
        .unwrap();
    let QueryResults::Solutions(s) = result else {
        panic!("select")
    };
    let err = s.filter_map(Result::err).next();
    canceller.join().unwrap();
    assert!(matches!(err, Some(QueryError::Cancelled)), "{err:?}");
}

#[test]
fn limit_stops_early_and_order_is_respected() {
    let (_dir, store) = small_store();
    let r = rows(
        &store,
        "PREFIX : <http://e/> SELECT ?v WHERE { ?s :p ?v } ORDER BY DESC(?v) LIMIT 3",
    );
    let values: Vec<String> = r
        .iter()
        .map(|row| match &row[0] {
            Some(oxrdf::Term::Literal(l)) => l.value().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(values, ["299", "298", "297"]);
    let plan = tern::query::explain(
        &store,
        "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f } LIMIT 5",
        QueryOptions::default(),
    )
    .unwrap();
    // The nested loop stopped after 5 rows instead of producing 360,000.
    assert!(plan.starts_with("5 rows"), "{plan}");
    assert!(!plan.contains("rows=360000"), "{plan}");
}

#[test]
fn errors_point_at_the_problem() {
    let (_dir, store) = small_store();
    let err = store.query("SELECT ?x WHERE {\n  ?x ?y \n}").err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, QueryError::Syntax(_)), "{msg}");
    assert!(msg.contains("3:1") || msg.contains("2:"), "{msg}");
    let err = store
        .query("SELECT * WHERE { SERVICE <http://remote/sparql> { ?s ?p ?o } }")
        .err()
        .unwrap();
    assert!(err.to_string().contains("SERVICE not supported"), "{err}");
    // SERVICE SILENT is allowed to fail: one empty solution.
    assert_eq!(
        count(
            &store,
            "SELECT * WHERE { SERVICE SILENT <http://remote/sparql> { ?s ?p ?o } }"
        ),
        1
    );
}

#[test]
fn updates_are_atomic_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .update("PREFIX : <http://e/> INSERT DATA { :a :p 1 . GRAPH :g { :a :p 2 } }")
            .unwrap();
        // The second operation fails (the graph exists): the first must not be applied either.
        let err = store
            .update("PREFIX : <http://e/> INSERT DATA { :b :p 3 } ; CREATE GRAPH :g")
            .err()
            .unwrap();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(store.reader().len().unwrap(), 2);
        // Later operations of one request see earlier ones.
        store
            .update(
                "PREFIX : <http://e/> INSERT DATA { :c :p 10 } ; \
                 DELETE { ?s :p ?o } INSERT { ?s :q ?o } WHERE { ?s :p ?o FILTER(?o >= 10) }",
            )
            .unwrap();
        assert_eq!(
            count(&store, "PREFIX : <http://e/> SELECT * WHERE { :c :q 10 }"),
            1
        );
        assert!(store.verify().unwrap().is_ok());
    }
    // Reopen: committed updates survived.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.reader().len().unwrap(), 3);
    assert_eq!(
        count(
            &store,
            "PREFIX : <http://e/> SELECT * WHERE { GRAPH :g { :a :p 2 } }"
        ),
        1
    );
    // A timed-out update writes nothing.
    let before = store.reader().len().unwrap();
    let mut big = String::from("PREFIX : <http://e/> INSERT DATA {");
    for i in 0..2000 {
        big.push_str(&format!(":x{i} :p {i} . "));
    }
    big.push_str("} ; INSERT { ?a :r ?b } WHERE { ?a ?p1 ?x . ?b ?p2 ?y . ?c ?p3 ?z }");
    let err = store
        .update_opt(
            &big,
            UpdateOptions {
                timeout: Some(Duration::from_millis(300)),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert_eq!(store.reader().len().unwrap(), before);
}

#[test]
fn load_and_graph_management() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let file = dir.path().join("data.ttl");
    std::fs::write(&file, "@prefix : <http://e/> . :x :p :y , :z .").unwrap();
    let iri = format!("file://{}", file.display());
    store
        .update(&format!("LOAD <{iri}> INTO GRAPH <http://e/g>"))
        .unwrap();
    assert_eq!(
        count(&store, "SELECT * WHERE { GRAPH <http://e/g> { ?s ?p ?o } }"),
        2
    );
    store
        .update("COPY <http://e/g> TO DEFAULT ; ADD DEFAULT TO <http://e/h>")
        .unwrap();
    assert_eq!(store.reader().len().unwrap(), 6);
    store.update("MOVE <http://e/h> TO <http://e/k>").unwrap();
    assert_eq!(
        count(&store, "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }"),
        2
    );
    store.update("DROP NAMED").unwrap();
    assert_eq!(store.reader().len().unwrap(), 2);
    assert!(store.update("DROP GRAPH <http://e/none>").is_err());
    store.update("DROP SILENT GRAPH <http://e/none>").unwrap();
    // The server passes an allow-list: files outside it are refused.
    let err = store
        .update_opt(
            &format!("LOAD <{iri}>"),
            UpdateOptions {
                load_allow: Some(vec![dir.path().join("elsewhere")]),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
    assert!(err.to_string().contains("outside"), "{err}");
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn from_graphs_merge_into_one_default_graph() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .update(
            "PREFIX : <http://e/> INSERT DATA { GRAPH :g1 { :a :p :b . :a :p :c } GRAPH :g2 { :a :p :b } }",
        )
        .unwrap();
    // The RDF merge of g1 and g2 holds the shared triple once.
    assert_eq!(
        count(
            &store,
            "SELECT * FROM <http://e/g1> FROM <http://e/g2> WHERE { ?s ?p ?o }"
        ),
        2
    );
    assert_eq!(
        count(
            &store,
            "SELECT * FROM NAMED <http://e/g1> FROM NAMED <http://e/g2> WHERE { GRAPH ?g { ?s ?p ?o } }"
        ),
        3
    );
}

#[test]
fn result_formats_and_graph_results() {
    let (_dir, store) = small_store();
    let q = "PREFIX : <http://e/> SELECT ?s ?v WHERE { ?s :p ?v FILTER(?v < 2) } ORDER BY ?v";
    let mut out = Vec::new();
    store
        .query(q)
        .unwrap()
        .write(&mut out, ResultFormat::Csv)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "s,v\r\nhttp://e/s0,0\r\nhttp://e/s1,1\r\n"
    );
    let mut out = Vec::new();
    store
        .query(q)
        .unwrap()
        .write(&mut out, ResultFormat::Json)
        .unwrap();
    let json = String::from_utf8(out).unwrap();
    assert!(json.contains(r#""vars":["s","v"]"#), "{json}");
    let mut out = Vec::new();
    store
        .query("ASK { <http://e/s1> ?p 1 }")
        .unwrap()
        .write(&mut out, ResultFormat::Xml)
        .unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("<boolean>true</boolean>"));
    let mut out = Vec::new();
    store
        .query("PREFIX : <http://e/> CONSTRUCT { ?s :twice ?v } WHERE { ?s :p ?v FILTER(?v < 3) }")
        .unwrap()
        .write_graph(&mut out, oxrdfio::RdfFormat::NTriples)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3);
    let QueryResults::Graph(t) = store.query("DESCRIBE <http://e/s5>").unwrap() else {
        panic!("describe")
    };
    assert_eq!(t.count(), 2);
}

fn tern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .output()
        .expect("run tern")
}

#[test]
fn cli_query_and_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let out = tern(&[
        "update",
        "-l",
        s,
        "-u",
        "PREFIX : <http://e/> INSERT DATA { :a :name \"Ann\" . :b :name \"Bob\" }",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 -> 2 quads"));
    let out = tern(&[
        "query",
        "-l",
        s,
        "-q",
        "PREFIX : <http://e/> SELECT ?n WHERE { ?s :name ?n } ORDER BY ?n",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("| ?n    |") && table.contains("\"Bob\""),
        "{table}"
    );
    let out = tern(&[
        "query",
        "-l",
        s,
        "--format",
        "tsv",
        "-q",
        "SELECT (COUNT(*) AS ?c) { ?s ?p ?o }",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("?c\n2"));
    let out = tern(&["query", "-l", s, "-q", "SELECT ?x WHERE { ?x }"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("syntax error"));
    let out = tern(&["query", "-l", s, "--explain", "-q", "SELECT * { ?s ?p ?o }"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Scan"));
}

#[test]
fn load_over_http() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::thread::spawn(move || {
        // One request: read the head, answer with a Turtle document.
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        let body = "@prefix : <http://e/> . :x :p :y , :z .";
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/turtle; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let update = format!("LOAD <http://{addr}/data> INTO GRAPH <http://e/g>");
    // Off unless asked for: a server must not fetch URLs for its clients.
    let err = store.update(&update).err().unwrap();
    assert!(err.to_string().contains("disabled"), "{err}");
    store
        .update_opt(
            &update,
            UpdateOptions {
                allow_http_load: true,
                ..Default::default()
            },
        )
        .unwrap();
    served.join().unwrap();
    assert_eq!(
        count(&store, "SELECT * WHERE { GRAPH <http://e/g> { ?s ?p ?o } }"),
        2
    );
}
