//! The `tern` binary end to end: loads (plain, gzip, zstd, stdin), syntax errors with positions,
//! `--lenient`, atomicity of failed loads, locking, dump, convert and stats.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tern(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .output()
        .expect("run tern")
}

fn tern_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn quads(store: &Path) -> u64 {
    tern::Store::open_read_only(store)
        .expect("open")
        .reader()
        .len()
        .expect("len")
}

const GOOD: &str = "<http://e.com/a> <http://e.com/p> <http://e.com/b> .\n<http://e.com/a> <http://e.com/p> \"x\"@en .\n";

#[test]
fn load_formats_and_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let plain = dir.path().join("a.nt");
    std::fs::write(&plain, GOOD).unwrap();
    let gz = dir.path().join("b.ttl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(b"@prefix e: <http://e.com/> . e:c e:p e:d , e:e .")
        .unwrap();
    enc.finish().unwrap();
    let zst = dir.path().join("c.nq.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(
            &b"<http://e.com/f> <http://e.com/p> <http://e.com/g> <http://e.com/G> .\n"[..],
            3,
        )
        .unwrap(),
    )
    .unwrap();
    let out = tern(&[
        "load",
        "-l",
        store.to_str().unwrap(),
        plain.to_str().unwrap(),
        gz.to_str().unwrap(),
        zst.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("loaded 5 triples (5 new)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(quads(&store), 5);

    // Standard input needs --format; --graph puts default-graph triples in a named graph.
    let out = tern_stdin(
        &[
            "load",
            "-l",
            store.to_str().unwrap(),
            "--format",
            "turtle",
            "--graph",
            "http://e.com/G2",
            "-",
        ],
        b"<http://e.com/x> <http://e.com/p> 1 .",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(quads(&store), 6);

    let out = tern(&["stats", "-l", store.to_str().unwrap(), "--verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stats = text(&out.stdout);
    assert!(stats.contains("quads          6"), "{stats}");
    assert!(stats.contains("named graphs   2"), "{stats}");
    assert!(stats.contains("verify         ok"), "{stats}");

    // Dump: triple formats refuse a dataset with named graphs unless a graph is chosen.
    let out = tern(&["dump", "-l", store.to_str().unwrap(), "--format", "turtle"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--graph"),
        "{}",
        text(&out.stderr)
    );
    let out = tern(&[
        "dump",
        "-l",
        store.to_str().unwrap(),
        "--format",
        "ntriples",
        "--graph",
        "default",
    ]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 4);
    let dump = dir.path().join("all.trig");
    let out = tern(&[
        "dump",
        "-l",
        store.to_str().unwrap(),
        "-o",
        dump.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store2 = dir.path().join("store2");
    assert!(tern(&[
        "load",
        "-l",
        store2.to_str().unwrap(),
        dump.to_str().unwrap()
    ])
    .status
    .success());
    assert_eq!(quads(&store2), 6);
}

#[test]
fn syntax_error_names_file_line_column_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = dir.path().join("good.nt");
    std::fs::write(&good, GOOD).unwrap();
    assert!(tern(&[
        "load",
        "-l",
        store.to_str().unwrap(),
        good.to_str().unwrap()
    ])
    .status
    .success());
    let bad = dir.path().join("bad.ttl");
    std::fs::write(
        &bad,
        "@prefix e: <http://e.com/> .\ne:a2 e:p e:b .\ne:a e:p \"unterminated .\ne:c e:p e:d .\n",
    )
    .unwrap();
    let out = tern(&["load", "-l", store.to_str().unwrap(), bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    assert!(
        err.contains("e:a e:p \"unterminated ."),
        "offending text missing: {err}"
    );
    assert!(err.contains("nothing was loaded"), "{err}");
    assert_eq!(quads(&store), 2, "a failed load must change nothing");

    let out = tern(&[
        "load",
        "-l",
        store.to_str().unwrap(),
        "--lenient",
        bad.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("skipped 1 bad statements"),
        "{}",
        text(&out.stderr)
    );
    assert!(quads(&store) >= 3);
}

#[test]
fn unknown_format_and_locked_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = dir.path().join("data.bin");
    std::fs::write(&f, GOOD).unwrap();
    let out = tern(&["load", "-l", store.to_str().unwrap(), f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--format"),
        "{}",
        text(&out.stderr)
    );

    let _writer = tern::Store::open(&store).unwrap();
    let good = dir.path().join("good.nt");
    std::fs::write(&good, GOOD).unwrap();
    let out = tern(&[
        "load",
        "-l",
        store.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("store is locked") && err.contains(store.to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn convert_between_formats() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.ttl");
    std::fs::write(
        &input,
        "@prefix e: <http://e.com/> . e:a e:p [ e:q \"v\"@en ] .",
    )
    .unwrap();
    let rdfxml = dir.path().join("out.rdf");
    let out = tern(&["convert", input.to_str().unwrap(), rdfxml.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let back = dir.path().join("back.nt");
    let out = tern(&["convert", rdfxml.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&back).unwrap().lines().count(), 2);
}
