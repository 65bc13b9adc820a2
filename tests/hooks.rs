//! Commit hooks, signed outbound webhooks (retries, dedup, 410 disabling, restart resume) and the signed
//! inbound generation trigger, against a local HTTP receiver on 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern::generate::hooks::{HookEngine, HooksConfig};
use tern::generate::webhooks::{self, sign, verify, VerifyError, WebhookSettings};
use tern::query::StoreExt;
use tern::Store;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// Shared with tests/hooks_e2e.rs, which also switches the receiver's answer.
#[allow(dead_code)]
#[path = "support/receiver.rs"]
mod receiver;
use receiver::Receiver;

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A generator writing one `<local name>.txt` per subject with a label in graph G.
fn write_generator(dir: &Path) -> PathBuf {
    let gen = dir.join("labels");
    std::fs::create_dir_all(&gen).unwrap();
    std::fs::write(
        gen.join("label.txt.j2"),
        "---\nquery: |\n  SELECT ?s ?label WHERE { GRAPH <http://e.org/G> { ?s <http://e.org/label> ?label } } ORDER BY ?s\nfor_each: true\nto: \"{{ s | local_name }}.txt\"\n---\n{{ label }}\n",
    )
    .unwrap();
    gen
}

fn settings_yaml() -> &'static str {
    "debounce_ms: 30\nwebhooks:\n  base_delay_ms: 40\n  max_delay_ms: 200\n  timeout_ms: 2000\n"
}

fn commit(store: &Store, engine: &HookEngine, update: &str) {
    store.update(update).unwrap();
    assert!(
        engine.wait_processed(store.data_version(), Duration::from_secs(10)),
        "hooks did not process the commit"
    );
}

#[test]
fn signatures_follow_standard_webhooks() {
    // The Standard Webhooks reference libraries' test vector.
    let body = br#"{"test": 2432232314}"#;
    let sig = sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let ok = |sig: &str, body: &[u8], now| {
        verify(
            SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            sig,
            body,
            now,
        )
    };
    assert_eq!(ok(&sig, body, 1_614_265_330), Ok(()));
    // Several signatures (key rotation): any valid one passes.
    assert_eq!(ok(&format!("v1,AAAA {sig}"), body, 1_614_265_400), Ok(()));
    assert_eq!(ok(&sig, b"{}", 1_614_265_330), Err(VerifyError::Signature));
    assert_eq!(
        ok(&sig, body, 1_614_265_330 + 301),
        Err(VerifyError::Timestamp)
    );
    // A secret without `whsec_` is used as raw bytes.
    let raw = sign("plain secret", "id", 5, b"x");
    assert_eq!(verify("plain secret", "id", "5", &raw, b"x", 5), Ok(()));
    assert_ne!(raw, sign("whsec_cGxhaW4gc2VjcmV0", "id", 4, b"x"));
    assert_eq!(
        verify("whsec_cGxhaW4gc2VjcmV0", "id", "5", &raw, b"x", 5),
        Ok(()),
        "whsec_ base64 of the same bytes is the same key"
    );
    // Backoff doubles from the base, is capped, and jitters within the upper half.
    let s = WebhookSettings {
        base_delay_ms: 100,
        max_delay_ms: 1_000,
        ..Default::default()
    };
    for (attempts, full) in [(1u32, 100u64), (2, 200), (3, 400), (5, 1_000), (40, 1_000)] {
        let d = s.backoff(attempts).as_millis() as u64;
        assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d} ms");
    }
}

#[test]
fn graph_and_pattern_hooks_regenerate_and_deliver_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let gen = write_generator(dir.path());
    let out = dir.path().join("out");
    // The first delivery attempt fails with 500; the retry is accepted.
    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SECRET,
        vec![500],
        200,
    );
    let yaml = format!(
        "{}hooks:\n\
         - name: g\n  when: {{ graph: \"http://e.org/G\" }}\n  run: {{ generator: {}, out: {} }}\n  webhook: {{ url: \"{}\", secret: \"{SECRET}\" }}\n\
         - name: h\n  when: {{ graph: \"http://e.org/H\" }}\n  webhook: {{ url: \"{}\", secret: \"{SECRET}\" }}\n\
         - name: flag\n  when: {{ pattern: \"?s <http://e.org/flag> ?o\" }}\n  webhook: {{ url: \"{}\", secret: \"{SECRET}\" }}\n",
        settings_yaml(),
        gen.display(),
        out.display(),
        receiver.url("/g"),
        receiver.url("/h"),
        receiver.url("/flag"),
    );
    let config = HooksConfig::from_yaml(&yaml, dir.path()).unwrap();
    let engine = HookEngine::start(&store, config).unwrap();

    commit(
        &store,
        &engine,
        "INSERT DATA { GRAPH <http://e.org/G> { <http://e.org/a> <http://e.org/label> \"A\" . \
                                              <http://e.org/b> <http://e.org/label> \"B\" } }",
    );
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "A\n");
    assert_eq!(std::fs::read_to_string(out.join("b.txt")).unwrap(), "B\n");
    wait_for("the /g delivery", 10, || {
        receiver.accepted(Some("/g")).len() == 1
    });
    let first = receiver.hits();
    assert_eq!(first[0].status, 500, "first attempt fails");
    assert_eq!(first[1].id, first[0].id, "the retry keeps the webhook-id");
    let (id, payload) = &receiver.accepted(Some("/g"))[0];
    assert_eq!(payload["type"], "tern.commit");
    assert_eq!(payload["data"]["added"], 2);
    assert_eq!(payload["data"]["graphs"][0], "http://e.org/G");
    assert_eq!(payload["data"]["commit"], store.data_version());
    let written = &payload["data"]["receipts"][0]["written"];
    assert_eq!(written.as_array().unwrap().len(), 2);
    let log = webhooks::delivery_log(&store, id).unwrap();
    assert_eq!(
        log.iter().map(|l| l.status).collect::<Vec<_>>(),
        [Some(500), Some(200)]
    );

    // Change only b's label: exactly b.txt is regenerated; only hook g fires.
    let a_before = std::fs::metadata(out.join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    commit(
        &store,
        &engine,
        "DELETE DATA { GRAPH <http://e.org/G> { <http://e.org/b> <http://e.org/label> \"B\" } } ; \
         INSERT DATA { GRAPH <http://e.org/G> { <http://e.org/b> <http://e.org/label> \"B2\" } }",
    );
    wait_for("the second /g delivery", 10, || {
        receiver.accepted(Some("/g")).len() == 2
    });
    let (_, payload) = &receiver.accepted(Some("/g"))[1];
    assert_eq!(
        payload["data"]["receipts"][0]["written"],
        serde_json::json!(["b.txt"])
    );
    assert_eq!(std::fs::read_to_string(out.join("b.txt")).unwrap(), "B2\n");
    assert_eq!(
        std::fs::metadata(out.join("a.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        a_before
    );

    // A commit in H fires only h; one matching the pattern fires only flag.
    commit(
        &store,
        &engine,
        "INSERT DATA { GRAPH <http://e.org/H> { <http://e.org/x> <http://e.org/p> 1 } }",
    );
    commit(
        &store,
        &engine,
        "INSERT DATA { <http://e.org/x> <http://e.org/flag> true }",
    );
    wait_for("the /h and /flag deliveries", 10, || {
        receiver.accepted(Some("/h")).len() == 1 && receiver.accepted(Some("/flag")).len() == 1
    });
    // Let any stray retries or duplicate events arrive before counting.
    std::thread::sleep(Duration::from_millis(300));
    let fired = engine.fired();
    assert_eq!(fired.get("g"), Some(&2));
    assert_eq!(fired.get("h"), Some(&1));
    assert_eq!(fired.get("flag"), Some(&1));
    assert_eq!(receiver.accepted(Some("/g")).len(), 2);
    assert_eq!(receiver.accepted(Some("/h")).len(), 1);
    assert_eq!(receiver.accepted(Some("/flag")).len(), 1);
    assert!(receiver.hits().iter().all(|h| h.signed_ok));
    assert!(webhooks::pending(&store).unwrap().is_empty());

    // Manual redelivery sends the same message (same id) again.
    let (gid, _) = receiver.accepted(Some("/h"))[0].clone();
    assert!(webhooks::redeliver(&store, &gid).unwrap());
    engine.worker().wake();
    wait_for("the redelivery", 10, || {
        receiver
            .hits()
            .iter()
            .filter(|h| h.id == gid && h.status == 200)
            .count()
            == 2
    });
    assert!(!webhooks::redeliver(&store, "msg_unknown").unwrap());
}

#[test]
fn ask_hooks_fire_on_false_to_true_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let yaml = "debounce_ms: 10\nhooks:\n- name: on\n  when: { ask: \"ASK { <http://e.org/s> <http://e.org/state> \\\"on\\\" }\" }\n";
    let engine =
        HookEngine::start(&store, HooksConfig::from_yaml(yaml, dir.path()).unwrap()).unwrap();
    let fired = || engine.fired().get("on").copied().unwrap_or(0);
    let on = "INSERT DATA { <http://e.org/s> <http://e.org/state> \"on\" }";
    let off = "DELETE DATA { <http://e.org/s> <http://e.org/state> \"on\" }";
    commit(
        &store,
        &engine,
        "INSERT DATA { <http://e.org/s> <http://e.org/other> 1 }",
    );
    assert_eq!(fired(), 0);
    commit(&store, &engine, on);
    assert_eq!(fired(), 1);
    commit(
        &store,
        &engine,
        "INSERT DATA { <http://e.org/s> <http://e.org/other> 2 }",
    );
    assert_eq!(fired(), 1, "still true: no new transition");
    commit(&store, &engine, off);
    assert_eq!(fired(), 1);
    commit(&store, &engine, on);
    assert_eq!(fired(), 2);
}

#[test]
fn repeated_410_disables_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let receiver = Receiver::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        SECRET,
        vec![410; 10],
        200,
    );
    let url = receiver.url("/gone");
    let yaml = format!(
        "{}hooks:\n- name: all\n  webhook: {{ url: \"{url}\", secret: \"{SECRET}\" }}\n",
        settings_yaml()
    );
    let engine =
        HookEngine::start(&store, HooksConfig::from_yaml(&yaml, dir.path()).unwrap()).unwrap();
    commit(
        &store,
        &engine,
        "INSERT DATA { <http://e.org/a> <http://e.org/p> 1 }",
    );
    wait_for("the endpoint to be disabled", 10, || {
        webhooks::endpoint_state(&store, &url).unwrap().disabled
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.hits().len(), 3, "no attempt after disabling");
    assert_eq!(
        webhooks::pending(&store).unwrap().len(),
        1,
        "kept for later"
    );
    assert_eq!(
        webhooks::endpoint_state(&store, &url).unwrap().gone_count,
        3
    );
}

#[test]
fn delivery_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // Reserve a port, then close it: deliveries to it are refused until the receiver starts.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/later");
    let yaml = format!(
        "{}hooks:\n- name: all\n  webhook: {{ url: \"{url}\", secret: \"{SECRET}\" }}\n",
        settings_yaml()
    );
    let id = {
        let store = Store::open(&path).unwrap();
        let engine =
            HookEngine::start(&store, HooksConfig::from_yaml(&yaml, dir.path()).unwrap()).unwrap();
        commit(
            &store,
            &engine,
            "INSERT DATA { <http://e.org/a> <http://e.org/p> 1 }",
        );
        let pending = webhooks::pending(&store).unwrap();
        assert_eq!(pending.len(), 1);
        let id = pending[0].id.clone();
        wait_for("a failed attempt", 10, || {
            webhooks::delivery_log(&store, &id)
                .unwrap()
                .iter()
                .any(|l| l.error.is_some())
        });
        drop(engine);
        id
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(webhooks::pending(&store).unwrap()[0].id, id);
    let receiver = Receiver::start(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        SECRET,
        vec![],
        200,
    );
    let _engine =
        HookEngine::start(&store, HooksConfig::from_yaml(&yaml, dir.path()).unwrap()).unwrap();
    wait_for("the resumed delivery", 10, || {
        receiver.accepted(Some("/later")).len() == 1
    });
    assert_eq!(receiver.accepted(Some("/later"))[0].0, id);
    wait_for("the outbox to empty", 10, || {
        webhooks::pending(&store).unwrap().is_empty()
    });
}

#[test]
fn inbound_trigger_verifies_and_runs() {
    use tern::server::{ServerConfig, ServerHandle};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    store
        .update("INSERT DATA { GRAPH <http://e.org/G> { <http://e.org/a> <http://e.org/label> \"A\" } }")
        .unwrap();
    let gen = write_generator(dir.path());
    let out = dir.path().join("out");
    let server = ServerHandle::start(
        Arc::new(store),
        ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            generators: vec![("labels".into(), gen, out.clone())],
            trigger_secret: Some(SECRET.into()),
            ..Default::default()
        },
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |path: &str, id: &str, ts: u64, sig: Option<String>| {
        let body = "{}";
        let sig = sig.unwrap_or_else(|| sign(SECRET, id, ts, body.as_bytes()));
        let mut r = agent
            .post(format!("http://{}{path}", server.addr()))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    };
    let p = "/hooks/generate/labels";
    assert_eq!(
        post(p, "m1", now, Some("v1,AAAA".into())).0,
        401,
        "bad signature"
    );
    assert_eq!(post(p, "m2", now - 600, None).0, 401, "old timestamp");
    assert_eq!(post("/hooks/generate/nope", "m3", now, None).0, 404);
    let (status, body) = post(&format!("{p}?dry_run=true"), "m4", now, None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["outputs"][0]["action"], "created");
    assert!(v["outputs"][0]["diff"].as_str().unwrap().contains("+A"));
    assert!(!out.join("a.txt").exists(), "dry run writes nothing");
    let (status, body) = post(p, "m5", now, None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["receipt"]["generator"], "labels");
    assert!(v["receipt"]["outputs"]["a.txt"].is_string());
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "A\n");
    assert_eq!(post(p, "m5", now, None).0, 401, "replayed id");
    server.shutdown();
}

#[test]
fn store_publishes_commit_events() {
    use oxrdf::{GraphNameRef, NamedNodeRef, QuadRef};
    use tern::TermId;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let events = store.subscribe_commits();
    let ex = |s| NamedNodeRef::new_unchecked(s);
    let g = ex("http://e.org/G");
    let q1 = QuadRef::new(
        ex("http://e.org/a"),
        ex("http://e.org/p"),
        ex("http://e.org/b"),
        g,
    );
    let q2 = QuadRef::new(
        ex("http://e.org/a"),
        ex("http://e.org/p"),
        ex("http://e.org/c"),
        GraphNameRef::DefaultGraph,
    );
    store.insert([q1, q2]).unwrap();
    let e = events.try_recv().expect("an event after the commit");
    let gid = store.reader().term_id(g.into()).unwrap().unwrap();
    assert_eq!(e.data_version, store.data_version());
    assert_eq!(e.graphs_touched, {
        let mut v = vec![TermId::DEFAULT_GRAPH, gid];
        v.sort();
        v
    });
    assert_eq!((e.inserted, e.removed, e.added.len()), (2, 0, 2));
    assert!(!e.truncated);
    // A commit that changes nothing publishes nothing; a removal lists the removed quad.
    store.insert([q1]).unwrap();
    assert!(events.try_recv().is_err());
    store.remove([q1]).unwrap();
    let e = events.try_recv().unwrap();
    assert_eq!((e.inserted, e.removed), (0, 1));
    assert_eq!(e.removed_quads.len(), 1);
    assert_eq!(e.removed_quads[0].g, gid);
    assert_eq!(e.graphs_touched, vec![gid]);
    // Application records publish nothing (why hooks cannot loop).
    store.app_put("webhook/outbox/x", Some(b"{}")).unwrap();
    assert!(events.try_recv().is_err());
    // A bulk load publishes one event without quad lists, marked truncated.
    let bulk = Store::open(dir.path().join("bulk")).unwrap();
    let events = bulk.subscribe_commits();
    let mut session = bulk
        .bulk_loader(&tern::store::BulkOptions::default())
        .unwrap();
    let mut enc = session.encoder();
    enc.push(q1);
    let mut ids = Vec::new();
    enc.flush(&mut ids).unwrap();
    session.add(&mut ids).unwrap();
    session.finish().unwrap();
    let e = events.try_recv().unwrap();
    assert!(e.truncated && e.added.is_empty());
    assert_eq!((e.inserted, e.data_version), (1, bulk.data_version()));
}
