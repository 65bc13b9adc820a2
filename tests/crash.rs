//! Crash safety: `tern load` is SIGKILLed at several points; the store must reopen and hold either the
//! state before the load or the complete load — never part of it — with every invariant intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tern::Store;

fn lubm(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/lubm")
        .join(name)
}

fn quads(dir: &Path) -> u64 {
    let store = Store::open(dir).expect("store reopens after SIGKILL");
    let n = store.reader().len().expect("count");
    store
        .verify()
        .expect("verify runs")
        .expect("invariants hold after SIGKILL");
    n
}

fn load(dir: &Path, file: &Path) -> std::process::Child {
    load_mode(dir, file, "--transactional")
}

fn load_mode(dir: &Path, file: &Path, mode: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("load")
        .arg(mode)
        .arg("-l")
        .arg(dir)
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tern load")
}

#[test]
fn sigkill_during_load_leaves_nothing_or_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    // A committed base state: lubm-1.
    let status = load_mode(dir.path(), &lubm("lubm-1.nt.gz"), "--transactional")
        .wait()
        .expect("wait");
    assert!(status.success());
    let before = quads(dir.path());
    assert_eq!(before, 99_565);

    // How long a full lubm-10 load takes here, measured on a scratch store.
    let scratch = tempfile::tempdir().expect("tmp");
    let start = Instant::now();
    assert!(load(scratch.path(), &lubm("lubm-10.nt.gz"))
        .wait()
        .expect("wait")
        .success());
    let full_time = start.elapsed();
    let full = quads(scratch.path());

    let mut outcomes = Vec::new();
    for fraction in [0.05, 0.3, 0.6, 0.85, 0.95, 0.99] {
        let mut child = load(dir.path(), &lubm("lubm-10.nt.gz"));
        std::thread::sleep(full_time.mul_f64(fraction));
        let finished = child.try_wait().expect("try_wait").is_some();
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        let n = quads(dir.path());
        println!(
            "killed at {:.0}% of {:.1} s (finished: {finished}): {n} quads",
            fraction * 100.0,
            full_time.as_secs_f64()
        );
        // lubm-10 contains lubm-1's university, so a complete load gives the lubm-10 count.
        assert!(
            n == before || n == full,
            "store holds {n} quads: neither {before} nor {full}"
        );
        outcomes.push(n);
    }
    println!(
        "crash test: {} kills, outcomes {outcomes:?} (before {before}, complete {full})",
        outcomes.len()
    );
}

#[test]
fn sigkill_during_bulk_load_rolls_back_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    assert!(load(dir.path(), &lubm("lubm-1.nt.gz"))
        .wait()
        .expect("wait")
        .success());
    let before = quads(dir.path());
    let scratch = tempfile::tempdir().expect("tmp");
    let start = Instant::now();
    assert!(load_mode(scratch.path(), &lubm("lubm-10.nt.gz"), "--bulk")
        .wait()
        .expect("wait")
        .success());
    let full_time = start.elapsed();
    let full = quads(scratch.path());
    let mut outcomes = Vec::new();
    for fraction in [0.2, 0.5, 0.7, 0.8, 0.9, 0.95] {
        let mut child = load_mode(dir.path(), &lubm("lubm-10.nt.gz"), "--bulk");
        std::thread::sleep(full_time.mul_f64(fraction));
        let _ = child.kill();
        let _ = child.wait();
        let n = quads(dir.path());
        assert!(
            n == before || n == full,
            "store holds {n} quads after a killed bulk load: neither {before} nor {full}"
        );
        let leftovers = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("bulk-tmp-"))
            .count();
        assert_eq!(leftovers, 0, "temporary bulk files left after reopening");
        outcomes.push(n);
    }
    println!("bulk crash test: {} kills in a {:.1} s load, outcomes {outcomes:?} (before {before}, complete {full})", outcomes.len(), full_time.as_secs_f64());
}
