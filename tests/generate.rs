//! Generation: every frontmatter key, safety rules, receipts and drift, and schema.org end to end.

use std::path::{Path, PathBuf};

use tern::generate::{Action, GenerateError, Generator, RunOptions};
use tern::query::StoreExt;
use tern::Store;

const RUN: RunOptions = RunOptions {
    dry_run: false,
    force: false,
    check: false,
};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    gen: PathBuf,
    out: PathBuf,
}

fn fixture(templates: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    store
        .update(
            "PREFIX ex: <http://e.org/> PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
             INSERT DATA { ex:Dog a rdfs:Class ; rdfs:label \"Dog\" ; rdfs:comment \"Barks.\" .
                           ex:CatFood a rdfs:Class ; rdfs:comment \"Food <for> cats.\" . }",
        )
        .unwrap();
    let gen = dir.path().join("gen");
    for (name, text) in templates {
        let p = gen.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let out = dir.path().join("out");
    Fixture {
        store,
        gen,
        out,
        _dir: dir,
    }
}

impl Fixture {
    fn generator(&self) -> Generator {
        Generator::new(&self.store, &self.gen).unwrap()
    }
    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.out.join(p)).unwrap()
    }
}

const CLASSES: &str =
    "query: \"SELECT ?c ?comment WHERE { ?c a rdfs:Class ; rdfs:comment ?comment } ORDER BY ?c\"";

#[test]
fn for_each_to_and_functions() {
    let f = fixture(&[(
        "c.j2",
        &format!(
            "---\n{CLASSES}\nfor_each: true\nto: \"{{{{ c | local_name | snake }}}}.txt\"\nprefixes:\n  ex: http://e.org/\n---\n\
             {{{{ c | compact }}}} {{{{ label(c) }}}} {{{{ c | local_name | pascal }}}} {{{{ c | local_name | camel }}}} \
             {{{{ c | local_name | kebab }}}} {{{{ c | local_name | constant }}}} {{{{ expand('ex:x') }}}} \
             {{{{ count('SELECT ?c WHERE {{ ?c a rdfs:Class }}') }}}} {{{{ ask('ASK {{ ex:Dog a rdfs:Class }}') }}}} \
             {{{{ sparql_first('SELECT ?l WHERE {{ ex:Dog rdfs:label ?l }}').l }}}} {{{{ c_term.kind }}}} {{{{ row.comment }}}}\n"
        ),
    )]);
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(report.created(), 2, "{report:?}");
    assert_eq!(
        f.read("dog.txt"),
        "ex:Dog Dog Dog dog dog DOG http://e.org/x 2 True Dog iri Barks.\n"
    );
    assert!(f
        .read("cat_food.txt")
        .starts_with("ex:CatFood CatFood CatFood catFood cat-food CAT_FOOD"));
}

#[test]
fn named_queries_and_when_guard() {
    let f = fixture(&[
        (
            "a.j2",
            "---\nquery:\n  dogs: \"SELECT ?d WHERE { ?d rdfs:label 'Dog' }\"\n  n: \"ASK { ?x a rdfs:Class }\"\nfor_each: dogs\nto: \"{{ d | local_name }}.md\"\n---\n{{ n }} {{ dogs | length }}\n",
        ),
        ("b.j2", "---\nwhen: \"ASK { ?x a <http://e.org/Nothing> }\"\n---\nnever\n"),
    ]);
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(report.outputs.len(), 1);
    assert_eq!(f.read("Dog.md"), "True 1\n");
    assert!(!f.out.join("b").exists());
}

#[test]
fn unknown_key_names_key_and_file() {
    let f = fixture(&[("x.j2", "---\nto: a\nbogus_key: 1\n---\nx\n")]);
    let err = Generator::new(&f.store, &f.gen).err().unwrap().to_string();
    assert!(err.contains("bogus_key") && err.contains("x.j2"), "{err}");
}

#[test]
fn path_outside_root_is_refused_before_writing() {
    for to in ["../escape.txt", "/tmp/abs.txt", "a/../../b"] {
        let f = fixture(&[
            ("a.j2", "---\nto: ok.txt\n---\nok\n"),
            ("z.j2", &format!("---\nto: \"{to}\"\n---\nx\n")),
        ]);
        let err = f.generator().run(&f.out, &RUN).err().unwrap();
        assert!(matches!(err, GenerateError::PathEscapes { .. }), "{err}");
        assert!(
            !f.out.join("ok.txt").exists(),
            "nothing is written when any output fails"
        );
    }
}

#[test]
fn template_errors_name_file_and_line() {
    let f = fixture(&[("t.j2", "---\nto: t\n---\nline one\n{{ broken(\n")]);
    let err = Generator::new(&f.store, &f.gen).err().unwrap().to_string();
    assert!(err.contains("t.j2:5"), "{err}");
}

#[test]
fn fuel_stops_runaway_templates() {
    let f = fixture(&[("t.j2", "---\nto: t\n---\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n")]);
    let err = f.generator().run(&f.out, &RUN).err().unwrap().to_string();
    assert!(err.contains("fuel"), "{err}");
}

#[test]
fn html_targets_are_escaped_code_is_not() {
    let q = "---\nquery: \"SELECT ?c WHERE { <http://e.org/CatFood> rdfs:comment ?c }\"\nto: TO\n---\n{{ results[0].c }}\n";
    let f = fixture(&[
        ("p.j2", &q.replace("TO", "page.html")),
        ("c.j2", &q.replace("TO", "code.rs")),
    ]);
    f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(f.read("page.html"), "Food &lt;for&gt; cats.\n");
    assert_eq!(f.read("code.rs"), "Food <for> cats.\n");
}

#[test]
fn skip_if_unless_exists_create_and_chmod() {
    let f = fixture(&[
        ("s.j2", "---\nto: s.txt\nskip_if: KEEP\n---\nnew\n"),
        ("u.j2", "---\nto: u.txt\nunless_exists: true\n---\nnew\n"),
        ("c.j2", "---\nto: c.txt\nmode: create\n---\nnew\n"),
        (
            "x.j2",
            "---\nto: bin/run.sh\nchmod: \"755\"\n---\necho hi\n",
        ),
    ]);
    std::fs::create_dir_all(&f.out).unwrap();
    for p in ["s.txt", "u.txt", "c.txt"] {
        std::fs::write(f.out.join(p), "KEEP me\n").unwrap();
    }
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(report.skipped(), 3, "{report:?}");
    for p in ["s.txt", "u.txt", "c.txt"] {
        assert_eq!(f.read(p), "KEEP me\n");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.out.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
    let bad = fixture(&[("c.j2", "---\nchmod: \"rwx\"\n---\nx\n")]);
    assert!(Generator::new(&bad.store, &bad.gen).is_err());
}

#[test]
fn inject_is_idempotent() {
    let f = fixture(&[
        (
            "a.j2",
            "---\nto: lib.rs\ninject: true\nafter: \"^mod a;\"\n---\nmod b;\n",
        ),
        (
            "b.j2",
            "---\nto: lib.rs\ninject: true\nappend: true\n---\n// end\n",
        ),
        (
            "c.j2",
            "---\nto: lib.rs\ninject: true\nbefore: \"^NOPE\"\n---\nx\n",
        ),
        (
            "d.j2",
            "---\nto: lib.rs\ninject: true\nat_line: 1\n---\n// top\n",
        ),
    ]);
    std::fs::create_dir_all(&f.out).unwrap();
    std::fs::write(f.out.join("lib.rs"), "mod a;\nmod c;\n").unwrap();
    f.generator().run(&f.out, &RUN).unwrap();
    let once = f.read("lib.rs");
    assert_eq!(once, "// top\nmod a;\nmod b;\nmod c;\n// end\n");
    // Make the receipt stale so the second run really renders and re-injects.
    f.store
        .update("INSERT DATA { <http://e.org/x> <http://e.org/y> 1 }")
        .unwrap();
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert!(!report.fast_path);
    assert_eq!(f.read("lib.rs"), once);
    let bad = fixture(&[("a.j2", "---\ninject: true\n---\nx\n")]);
    assert!(Generator::new(&bad.store, &bad.gen).is_err());
}

#[test]
fn merge_replaces_only_marked_regions() {
    let f = fixture(&[(
        "m.j2",
        "---\nto: m.rs\nmode: merge\n---\n// tern:begin list\n{% for r in sparql('SELECT ?c WHERE { ?c a rdfs:Class } ORDER BY ?c') %}\n{{ r.c | local_name }}\n{% endfor %}\n// tern:end list\n",
    )]);
    std::fs::create_dir_all(&f.out).unwrap();
    std::fs::write(
        f.out.join("m.rs"),
        "hand\n// tern:begin list\nold\n// tern:end list\nalso hand\n",
    )
    .unwrap();
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(report.updated(), 1);
    assert_eq!(
        f.read("m.rs"),
        "hand\n// tern:begin list\nCatFood\nDog\n// tern:end list\nalso hand\n"
    );
}

#[test]
fn dry_run_diffs_and_writes_nothing() {
    let f = fixture(&[(
        "a.j2",
        "---\nto: a.txt\n---\n{{ count('SELECT ?c WHERE { ?c a rdfs:Class }') }}\n",
    )]);
    let dry = RunOptions {
        dry_run: true,
        ..RUN
    };
    let report = f.generator().run(&f.out, &dry).unwrap();
    assert_eq!(report.created(), 1);
    assert!(report.outputs[0].diff.as_deref().unwrap().contains("+2"));
    assert!(!f.out.exists());
    assert!(f.generator().receipt().unwrap().is_none());
}

#[test]
fn hand_edits_conflict_unless_forced() {
    let f = fixture(&[(
        "a.j2",
        "---\nto: a.txt\n---\n{{ count('SELECT ?c WHERE { ?c a rdfs:Class }') }}\n",
    )]);
    f.generator().run(&f.out, &RUN).unwrap();
    std::fs::write(f.out.join("a.txt"), "mine\n").unwrap();
    f.store
        .update("INSERT DATA { <http://e.org/Cow> a <http://www.w3.org/2000/01/rdf-schema#Class> }")
        .unwrap();
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!(report.conflicts(), 1, "{report:?}");
    assert_eq!(f.read("a.txt"), "mine\n");
    // Still a conflict next time: the receipt keeps the generated hash.
    assert_eq!(f.generator().run(&f.out, &RUN).unwrap().conflicts(), 1);
    let forced = f
        .generator()
        .run(&f.out, &RunOptions { force: true, ..RUN })
        .unwrap();
    assert_eq!(forced.updated(), 1);
    assert_eq!(f.read("a.txt"), "3\n");
    // A file the generator never wrote is not clobbered either.
    let g = fixture(&[("a.j2", "---\nto: a.txt\n---\nnew\n")]);
    std::fs::create_dir_all(&g.out).unwrap();
    std::fs::write(g.out.join("a.txt"), "someone else's\n").unwrap();
    assert_eq!(g.generator().run(&g.out, &RUN).unwrap().conflicts(), 1);
}

#[test]
fn receipts_check_and_rerun_writes_nothing() {
    let f = fixture(&[(
        "c.j2",
        &format!("---\n{CLASSES}\nfor_each: true\nto: \"{{{{ c | local_name }}}}.txt\"\n---\n{{{{ comment }}}}\n"),
    )]);
    let check = RunOptions { check: true, ..RUN };
    assert!(!f.generator().run(&f.out, &check).unwrap().drift.is_empty());
    f.generator().run(&f.out, &RUN).unwrap();
    let receipt = f.generator().receipt().unwrap().unwrap();
    assert_eq!(receipt.outputs.len(), 2);
    assert_eq!(receipt.data_version, f.store.data_version());
    assert!(receipt.inputs.contains_key("c.j2"));
    let mtime = std::fs::metadata(f.out.join("Dog.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let again = f.generator().run(&f.out, &RUN).unwrap();
    assert!(again.fast_path && again.written() == 0 && again.unchanged() == 2);
    assert_eq!(
        std::fs::metadata(f.out.join("Dog.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    assert!(f.generator().run(&f.out, &check).unwrap().drift.is_empty());
    // Data change: check reports it and the one affected file, writes nothing.
    f.store
        .update("PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> DELETE { <http://e.org/Dog> rdfs:comment ?c } INSERT { <http://e.org/Dog> rdfs:comment \"Woofs.\" } WHERE { <http://e.org/Dog> rdfs:comment ?c }")
        .unwrap();
    let drift = f.generator().run(&f.out, &check).unwrap().drift;
    assert!(drift.iter().any(|d| d.contains("Dog.txt")), "{drift:?}");
    assert_eq!(f.read("Dog.txt"), "Barks.\n");
    // A deleted output is drift too.
    let report = f.generator().run(&f.out, &RUN).unwrap();
    assert_eq!((report.updated(), report.unchanged()), (1, 1));
    std::fs::remove_file(f.out.join("CatFood.txt")).unwrap();
    let drift = f.generator().run(&f.out, &check).unwrap().drift;
    assert_eq!(drift.len(), 1, "{drift:?}");
    // Editing the generator is drift.
    std::fs::write(
        f.gen.join("c.j2"),
        std::fs::read_to_string(f.gen.join("c.j2")).unwrap() + "more\n",
    )
    .unwrap();
    f.generator().run(&f.out, &RUN).unwrap();
    assert!(f.read("Dog.txt").ends_with("more\n"));
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn schemaorg_end_to_end() {
    let nt = repo().join("../shared/data/ontologies/schemaorg/schemaorg-current-https.nt");
    if !nt.exists() {
        eprintln!("skipped: {} is missing", nt.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    tern::loaders::load(
        &store,
        &[tern::loaders::Input::from_arg(&nt.to_string_lossy())],
        &tern::loaders::LoadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let classes = match store
        .query("SELECT (COUNT(DISTINCT ?c) AS ?n) WHERE { ?c a <http://www.w3.org/2000/01/rdf-schema#Class> FILTER(isIRI(?c)) }")
        .unwrap()
    {
        tern::query::QueryResults::Solutions(mut s) => {
            let row = s.next().unwrap().unwrap();
            match row.get("n").unwrap() {
                oxrdf::Term::Literal(l) => l.value().parse::<usize>().unwrap(),
                t => panic!("{t}"),
            }
        }
        _ => unreachable!(),
    };
    assert!(classes > 500, "{classes}");
    let out = dir.path().join("model");
    let generator = Generator::new(&store, repo().join("data/generators/rust-classes")).unwrap();
    let report = generator.run(&out, &RUN).unwrap();
    assert_eq!(
        report.created(),
        classes + 1,
        "one file per class plus mod.rs"
    );
    let person = std::fs::read_to_string(out.join("person.rs")).unwrap();
    assert!(
        person.contains("/// A person (alive, dead, undead, or fictional)."),
        "{person}"
    );
    assert!(person.contains("pub struct Person {"));
    assert!(
        person.contains("pub given_name: Option<String>,"),
        "{person}"
    );
    assert!(std::fs::read_to_string(out.join("mod.rs"))
        .unwrap()
        .contains("pub mod person;"));

    store
        .update(
            "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> PREFIX schema: <https://schema.org/>
             DELETE { schema:Person rdfs:comment ?c } INSERT { schema:Person rdfs:comment \"Someone.\" }
             WHERE { schema:Person rdfs:comment ?c }",
        )
        .unwrap();
    let rerun = generator.run(&out, &RUN).unwrap();
    let written: Vec<_> = rerun
        .outputs
        .iter()
        .filter(|o| o.action != Action::Unchanged)
        .map(|o| o.path.as_str())
        .collect();
    assert_eq!(written, ["person.rs"]);
    assert!(std::fs::read_to_string(out.join("person.rs"))
        .unwrap()
        .contains("/// Someone."));
    assert!(generator.run(&out, &RUN).unwrap().fast_path);
}

#[test]
fn template_queries_are_cached_by_data_version() {
    let f = fixture(&[(
        "c.j2",
        &format!(
            "---\n{CLASSES}\nfor_each: true\nto: \"{{{{ c | local_name }}}}.txt\"\n---\n\
             {{{{ count('SELECT ?c WHERE {{ ?c a rdfs:Class }}') }}}} {{{{ label(c) }}}}\n"
        ),
    )]);
    let gen = f.generator();
    // Frontmatter query, count (once per row: the second is an L2 hit), one label per class.
    let first = gen.run(&f.out, &RUN).unwrap();
    assert_eq!(first.created(), 2);
    assert_eq!(f.read("Dog.txt"), "2 Dog\n");
    assert_eq!(
        (first.cache.l2.hits, first.cache.l2.misses),
        (1, 4),
        "{first:?}"
    );
    assert!(first.cache.l1.misses >= 2);
    assert!(
        first.cache_summary().contains("L2 1/4"),
        "{}",
        first.cache_summary()
    );

    // Nothing changed: the receipt fast path runs no query.
    let warm = gen.run(&f.out, &RUN).unwrap();
    assert!(warm.fast_path);
    assert_eq!(warm.cache.l2.hits + warm.cache.l2.misses, 0);

    // Same data version, an output deleted: everything is re-rendered from L2.
    std::fs::remove_file(f.out.join("Dog.txt")).unwrap();
    let again = gen.run(&f.out, &RUN).unwrap();
    assert_eq!(again.created(), 1);
    assert_eq!((again.cache.l2.hits, again.cache.l2.misses), (5, 0));

    // An UPDATE moves the data version: every entry is stale (a miss, dropped), then cached again.
    f.store
        .update("PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> INSERT DATA { <http://e.org/Dog> rdfs:label \"Hound\"@en }")
        .unwrap();
    let changed = gen.run(&f.out, &RUN).unwrap();
    assert_eq!((changed.cache.l2.hits, changed.cache.l2.misses), (1, 4));
    assert_eq!(changed.cache.l2.evictions, 4, "{changed:?}");
    assert!(
        changed.cache.l1.hits >= 2,
        "query texts are still parsed: {changed:?}"
    );
    assert_eq!((changed.updated(), changed.unchanged()), (0, 2));
    std::fs::remove_file(f.out.join("Dog.txt")).unwrap();
    let recached = gen.run(&f.out, &RUN).unwrap();
    assert_eq!((recached.cache.l2.hits, recached.cache.l2.misses), (5, 0));

    // A cache shared by two generators: the second starts warm.
    let shared = std::sync::Arc::clone(gen.cache());
    let other = Generator::with_cache(&f.store, &f.gen, shared).unwrap();
    let out2 = f.out.with_file_name("out2");
    let r = other.run(&out2, &RUN).unwrap();
    assert_eq!((r.created(), r.cache.l2.misses), (2, 0));
}
