//! End-to-end hooks and webhooks with real processes and real files: `tern load`, `tern generate` and
//! `tern serve --hooks` as child processes, a local webhook receiver on 127.0.0.1, SPARQL updates and the
//! signed inbound trigger over HTTP, and a server killed with SIGKILL while a delivery is pending.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tern::generate::webhooks::sign;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TRIGGER_SECRET: &str = "trigger secret bytes";
/// Bound of every wait (a loaded 2-core machine).
const WAIT: Duration = Duration::from_secs(20);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tern() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tern"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn status_body(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut r = r.expect("HTTP exchange");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// A `tern serve` child process, killed (SIGKILL) and reaped on drop.
struct Server {
    child: Option<Child>,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(store: &Path, hooks: &Path, log: &Path) -> Server {
        let port = free_port();
        let err = File::options().create(true).append(true).open(log).unwrap();
        let child = tern()
            .arg("serve")
            .arg("-l")
            .arg(store)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .arg("--hooks")
            .arg(hooks)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log: log.to_path_buf(),
        };
        let a = agent();
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(r) = a.get(format!("{}/health", server.base)).call() {
                if r.status() == 200 {
                    break;
                }
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}: {}", server.log());
            }
            assert!(
                Instant::now() < until,
                "server did not come up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn update(&self, update: &str) {
        let (status, body) = status_body(
            agent()
                .post(format!("{}/update", self.base))
                .header("Content-Type", "application/sparql-update")
                .send(update),
        );
        assert!((200..300).contains(&status), "update: {status} {body}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[path = "support/receiver.rs"]
mod receiver;
use receiver::Receiver;

/// A hooks file with one hook posting every commit to `url`, with fast retries.
fn every_commit_webhook(dir: &Path, debounce_ms: u64, url: &str) -> PathBuf {
    let hooks = dir.join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "debounce_ms: {debounce_ms}\nwebhooks: {{ base_delay_ms: 400, max_delay_ms: 1000, timeout_ms: 5000 }}\n\
             hooks:\n  - name: every\n    webhook: {{ url: \"{url}\", secret: \"{SECRET}\" }}\n"
        ),
    )
    .unwrap();
    hooks
}

/// Content of every file under `dir`, by path relative to it.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

fn changed(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

fn data_version(store: &Path) -> u64 {
    tern::Store::open_read_only(store).unwrap().data_version()
}

#[test]
fn schemaorg_commit_regenerates_one_class_and_posts_one_webhook() {
    let nt = repo().join("../shared/data/ontologies/schemaorg/schemaorg-current-https.nt");
    if !nt.exists() {
        eprintln!("skipped: {} is missing", nt.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("model");
    let generator = repo().join("data/generators/rust-classes");
    run_ok(tern().arg("load").arg("-l").arg(&store).arg(&nt));
    run_ok(
        tern()
            .arg("generate")
            .arg("-l")
            .arg(&store)
            .arg(&generator)
            .arg("-o")
            .arg(&out),
    );
    let before = snapshot(&out);
    assert!(before.len() > 500, "{} outputs", before.len());
    assert!(before.contains_key("person.rs") && before.contains_key("mod.rs"));

    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SECRET,
        vec![],
        200,
    );
    let hooks = dir.path().join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "debounce_ms: 100\nwebhooks: {{ base_delay_ms: 300, max_delay_ms: 2000, timeout_ms: 5000 }}\n\
             hooks:\n  - name: classes\n    when: {{ graph: default }}\n    run: {{ generator: {}, out: model }}\n    \
             webhook: {{ url: \"{}\", secret: \"{SECRET}\" }}\n",
            generator.display(),
            receiver.url("/schema")
        ),
    )
    .unwrap();
    let mut server = Server::start(&store, &hooks, &dir.path().join("serve.log"));
    server.update(
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> PREFIX schema: <https://schema.org/>
         DELETE { schema:Person rdfs:comment ?c } INSERT { schema:Person rdfs:comment \"Someone, edited.\" }
         WHERE { schema:Person rdfs:comment ?c }",
    );
    // The webhook is enqueued after the generator ran, so its arrival means the files are written.
    wait_for("the webhook", || !receiver.accepted(None).is_empty());
    // Give a duplicate or a second event the chance to show up.
    std::thread::sleep(Duration::from_millis(1000));
    let after = snapshot(&out);
    assert_eq!(changed(&before, &after), ["person.rs"]);
    let person = String::from_utf8(after["person.rs"].clone()).unwrap();
    assert!(person.contains("/// Someone, edited."), "{person}");

    let hits = receiver.hits();
    assert!(
        hits.iter().all(|h| h.signed_ok && h.path == "/schema"),
        "{hits:?}"
    );
    let accepted = receiver.accepted(None);
    assert_eq!(accepted.len(), 1, "{hits:?}");
    let body = &accepted[0].1;
    server.kill();
    let version = data_version(&store);
    assert_eq!(body["type"], "tern.commit");
    let data = &body["data"];
    assert_eq!(data["hook"], "classes");
    assert_eq!(data["commit"], version, "{body}");
    assert_eq!(data["graphs"], serde_json::json!(["default"]), "{body}");
    assert_eq!(
        (data["added"].as_u64(), data["removed"].as_u64()),
        (Some(1), Some(1))
    );
    let receipts = data["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1, "{body}");
    assert_eq!(
        receipts[0]["written"],
        serde_json::json!(["person.rs"]),
        "{body}"
    );
    assert_eq!(receipts[0]["updated"], 1, "{body}");
    assert_eq!(receipts[0]["data_version"], version, "{body}");
    assert!(receipts[0].get("error").is_none(), "{body}");
}

#[test]
fn pending_delivery_survives_sigkill_and_arrives_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SECRET,
        vec![],
        500,
    );
    let hooks = every_commit_webhook(dir.path(), 50, &receiver.url("/every"));
    let log = dir.path().join("serve.log");
    let mut server = Server::start(&store, &hooks, &log);
    server.update("INSERT DATA { <http://e.org/a> <http://e.org/p> \"1\" }");
    wait_for("a first, failed attempt", || !receiver.hits().is_empty());
    let first = receiver.hits()[0].clone();
    assert_eq!(first.status, 500);
    assert!(first.signed_ok, "{first:?}");
    server.kill();

    // The message is still in the outbox of the stopped server's store.
    let pending = run_ok(tern().args(["hooks", "pending", "-l"]).arg(&store));
    assert!(pending.starts_with(&first.id), "{pending}");
    assert_eq!(pending.lines().count(), 1, "{pending}");

    receiver.set_answer(200);
    let _server = Server::start(&store, &hooks, &log);
    wait_for("the delivery after the restart", || {
        !receiver.accepted(None).is_empty()
    });
    let accepted = receiver.accepted(None);
    assert_eq!(accepted.len(), 1);
    assert_eq!(
        accepted[0].0, first.id,
        "same webhook-id across the restart"
    );
    assert_eq!(accepted[0].1["data"]["hook"], "every");
    let ids: BTreeSet<String> = receiver.hits().into_iter().map(|h| h.id).collect();
    assert_eq!(ids.len(), 1, "one message, possibly several attempts");
}

fn signed_post(
    base: &str,
    path: &str,
    secret: &str,
    id: &str,
    timestamp: u64,
    body: &str,
) -> (u16, String) {
    status_body(
        agent()
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(secret, id, timestamp, body.as_bytes()),
            )
            .send(body),
    )
}

#[test]
fn signed_inbound_trigger_dry_run_run_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let data = dir.path().join("data.ttl");
    std::fs::write(
        &data,
        "<http://e.org/Cat> <http://e.org/label> \"cat\" .\n<http://e.org/Dog> <http://e.org/label> \"dog\" .\n",
    )
    .unwrap();
    run_ok(tern().arg("load").arg("-l").arg(&store).arg(&data));
    let gen = dir.path().join("labels");
    std::fs::create_dir_all(&gen).unwrap();
    std::fs::write(
        gen.join("label.txt.j2"),
        "---\nquery: |\n  SELECT ?s ?label WHERE { ?s <http://e.org/label> ?label } ORDER BY ?s\n\
         for_each: true\nto: \"{{ s | local_name }}.txt\"\n---\n{{ label }}\n",
    )
    .unwrap();
    let hooks = dir.path().join("hooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "trigger:\n  secret: \"{TRIGGER_SECRET}\"\n  generators: {{ labels: {{ generator: labels, out: out }}, broken: {{ generator: missing, out: out2 }} }}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let server = Server::start(&store, &hooks, &dir.path().join("serve.log"));
    let base = server.base.clone();
    let path = "/hooks/generate/labels";
    let now = unix_now();

    // Dry run: a plan with diffs, nothing written.
    let (status, body) = signed_post(
        &base,
        &format!("{path}?dry_run=true"),
        TRIGGER_SECRET,
        "msg_dry",
        now,
        "{}",
    );
    assert_eq!(status, 200, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["dry_run"], true, "{plan}");
    let outputs = plan["outputs"].as_array().unwrap();
    let paths: BTreeSet<&str> = outputs
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, BTreeSet::from(["Cat.txt", "Dog.txt"]), "{plan}");
    assert!(outputs.iter().all(|o| o["action"] == "created"), "{plan}");
    assert!(
        outputs
            .iter()
            .any(|o| o["diff"].as_str().is_some_and(|d| d.contains("+cat"))),
        "{plan}"
    );
    assert!(!out.join("Cat.txt").exists());

    // A real run: files and a receipt.
    let (status, body) = signed_post(&base, path, TRIGGER_SECRET, "msg_run", now, "{}");
    assert_eq!(status, 200, "{body}");
    let run: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["dry_run"], false, "{run}");
    assert!(run["receipt"].is_object(), "{run}");
    assert_eq!(
        std::fs::read_to_string(out.join("Cat.txt")).unwrap(),
        "cat\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("Dog.txt")).unwrap(),
        "dog\n"
    );

    // A replay of an accepted id is refused, even with a fresh valid signature.
    let (status, body) = signed_post(&base, path, TRIGGER_SECRET, "msg_run", now, "{}");
    assert_eq!(status, 401, "{body}");
    let (status, _) = signed_post(
        &base,
        path,
        TRIGGER_SECRET,
        "msg_run",
        unix_now() + 1,
        "{\"a\":1}",
    );
    assert_eq!(status, 401);
    // Wrong secret, stale timestamp, unknown generator.
    let (status, _) = signed_post(&base, path, "other secret", "msg_bad", now, "{}");
    assert_eq!(status, 401);
    let (status, _) = signed_post(&base, path, TRIGGER_SECRET, "msg_old", now - 600, "{}");
    assert_eq!(status, 401);
    let (status, _) = signed_post(
        &base,
        "/hooks/generate/nope",
        TRIGGER_SECRET,
        "msg_404",
        now,
        "{}",
    );
    assert_eq!(status, 404);

    // A failed run does not burn its id: a sender's retry (same webhook-id) is not refused as a replay.
    let broken = "/hooks/generate/broken";
    let (status, body) = signed_post(&base, broken, TRIGGER_SECRET, "msg_fail", now, "{}");
    assert_eq!(status, 500, "{body}");
    let (status, body) = signed_post(&base, broken, TRIGGER_SECRET, "msg_fail", now, "{}");
    assert_eq!(status, 500, "{body}");

    // Concurrent deliveries of one id: exactly one is accepted.
    let dry = format!("{path}?dry_run=true");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| signed_post(&base, &dry, TRIGGER_SECRET, "msg_race", now, "{}").0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401),
        "{statuses:?}"
    );
}

#[test]
fn commit_not_yet_evaluated_when_killed_fires_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SECRET,
        vec![],
        200,
    );
    // A long debounce: the server is killed before the engine evaluates the commit.
    let hooks = every_commit_webhook(dir.path(), 5000, &receiver.url("/every"));
    let log = dir.path().join("serve.log");
    let mut server = Server::start(&store, &hooks, &log);
    server.update("INSERT DATA { <http://e.org/a> <http://e.org/p> \"1\" }");
    server.kill();
    assert!(receiver.hits().is_empty());
    let version = data_version(&store);

    let _server = Server::start(&store, &hooks, &log);
    wait_for("the missed commit's webhook", || {
        !receiver.accepted(None).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let accepted = receiver.accepted(None);
    assert_eq!(accepted.len(), 1, "{:?}", receiver.hits());
    assert_eq!(accepted[0].1["data"]["commit"], version);
    assert_eq!(accepted[0].1["data"]["hook"], "every");
}
