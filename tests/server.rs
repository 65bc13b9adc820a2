//! The HTTP server over real sockets: protocol basics and negotiation, the Graph Store Protocol, write
//! authentication and read-only mode, limits (body size, concurrency, rate, timeout), streaming with
//! cancellation on disconnect, and graceful shutdown of a `tern serve` process on SIGTERM.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern::server::{ServerConfig, ServerHandle};

#[path = "support/sample.rs"]
mod sample;
use sample::{agent, sample_store};

fn start(config: ServerConfig) -> (tempfile::TempDir, ServerHandle, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = sample_store(dir.path());
    let server = ServerHandle::start(
        Arc::new(store),
        ServerConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..config
        },
    )
    .unwrap();
    let base = format!("http://{}", server.addr());
    (dir, server, base)
}

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("HTTP exchange");
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.body_mut().read_to_string().unwrap_or_default(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const COUNT_ALL: &str = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }";
/// Millions of rows of work over the 88-triple sample: seconds of evaluation.
const SLOW: &str = "SELECT (COUNT(*) AS ?n) WHERE { { SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . \
                    ?g ?h ?i . ?j ?k ?l } LIMIT 6000000 } }";

#[test]
fn protocol_basics_and_negotiation() {
    let (_dir, server, base) = start(ServerConfig::default());
    let a = agent();
    let r = reply(
        a.get(format!("{base}/sparql?query={}", enc(COUNT_ALL)))
            .call(),
    );
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/sparql-results+json"));
    assert!(r.body.contains("\"88\""), "{}", r.body);
    assert!(r.headers.contains_key("x-request-id"));

    let r = reply(
        a.post(format!("{base}/query"))
            .header("Content-Type", "application/sparql-query")
            .header(
                "Accept",
                "text/csv;q=0.9, application/sparql-results+xml;q=0.5",
            )
            .send(COUNT_ALL),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "n\r\n88\r\n"));

    let r = reply(
        a.get(format!("{base}/sparql?query={}", enc("ASK {}")))
            .header("Accept", "image/png")
            .call(),
    );
    assert_eq!(r.status, 406);
    assert!(
        r.body.contains("application/sparql-results+json"),
        "{}",
        r.body
    );

    let r = reply(
        a.get(format!(
            "{base}/sparql?query={}",
            enc("SELECT ?x WHERE {\n ?x ")
        ))
        .call(),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("syntax error") && r.body.contains("2:"),
        "{}",
        r.body
    );

    let r = reply(
        a.get(format!(
            "{base}/sparql?query={}&format=ntriples",
            enc("CONSTRUCT { ?s a ?c } WHERE { ?s a ?c } LIMIT 2")
        ))
        .call(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.lines().count(), 2, "{}", r.body);

    let r = reply(a.get(format!("{base}/sparql")).call());
    assert_eq!(r.status, 200);
    assert!(r.body.contains("sd:Service"), "{}", r.body);
    let r = reply(a.get(format!("{base}/")).call());
    assert!(r.body.contains("<textarea"), "query page");
    assert_eq!(reply(a.get(format!("{base}/health")).call()).status, 200);
    assert_eq!(reply(a.get(format!("{base}/ready")).call()).status, 200);
    let m = reply(a.get(format!("{base}/metrics")).call()).body;
    assert!(
        m.contains("tern_http_requests_total{endpoint=\"/sparql\",status=\"406\"} 1"),
        "{m}"
    );
    assert!(m.contains("tern_store_quads 88"), "{m}");
    assert!(
        m.contains("tern_http_request_duration_seconds_bucket"),
        "{m}"
    );
    server.shutdown();
}

#[test]
fn graph_store_protocol() {
    let (_dir, server, base) = start(ServerConfig::default());
    let a = agent();
    let g = format!("{base}/store?graph={}", enc("http://example.org/g"));
    let ttl = "@prefix : <http://example.org/> . :a :p :b , :c .";
    let put = |body: &str, ct: &str| reply(a.put(&g).header("Content-Type", ct).send(body));
    assert_eq!(put(ttl, "text/turtle").status, 201);
    assert_eq!(put(ttl, "text/turtle").status, 204);
    let r = reply(a.get(&g).header("Accept", "application/n-triples").call());
    assert_eq!((r.status, r.body.lines().count()), (200, 2), "{}", r.body);
    let r = reply(
        a.post(&g)
            .header("Content-Type", "application/n-triples")
            .send("<http://example.org/a> <http://example.org/p> <http://example.org/d> .\n"),
    );
    assert_eq!(r.status, 204);
    let r = reply(a.head(&g).call());
    assert_eq!((r.status, r.body.len()), (200, 0));
    // A malformed body is refused with its position, and changes nothing.
    let r = put("@prefix : <http://example.org/> . :a :p", "text/turtle");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("nothing was changed"), "{}", r.body);
    let r = reply(a.get(&g).header("Accept", "application/n-triples").call());
    assert_eq!(r.body.lines().count(), 3);
    assert_eq!(put(ttl, "application/pdf").status, 415);
    // POST to the store itself makes a new graph and says where.
    let r = reply(
        a.post(format!("{base}/store"))
            .header("Content-Type", "text/turtle")
            .send(ttl),
    );
    assert_eq!(r.status, 201);
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let r = reply(
        a.get(format!("{base}/store?graph={}", enc(&location)))
            .call(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(reply(a.delete(&g).call()).status, 204);
    assert_eq!(reply(a.get(&g).call()).status, 404);
    assert_eq!(reply(a.delete(&g).call()).status, 404);
    let r = reply(
        a.get(format!("{base}/store?default"))
            .header("Accept", "text/turtle")
            .call(),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Ora Lassila"));
    // Relative IRIs in an upload resolve against the store's IRI, not a temporary file.
    let r = reply(
        a.post(format!("{base}/store?default"))
            .header("Content-Type", "text/turtle")
            .send("<rel> <http://example.org/p> <http://example.org/o> .\n"),
    );
    assert_eq!(r.status, 204, "{}", r.body);
    let r = reply(
        a.get(format!("{base}/store?default"))
            .header("Accept", "application/n-triples")
            .call(),
    );
    assert!(r.body.contains(&format!("<{base}/rel>")), "{}", r.body);
    server.shutdown();
}

#[test]
fn write_authentication_and_read_only() {
    let (_dir, server, base) = start(ServerConfig {
        write_token: Some("s3cret".into()),
        ..ServerConfig::default()
    });
    let a = agent();
    let update = "INSERT DATA { <http://e/x> <http://e/p> 1 }";
    let send = |auth: Option<&str>| {
        let mut req = a
            .post(format!("{base}/update"))
            .header("Content-Type", "application/sparql-update");
        if let Some(v) = auth {
            req = req.header("Authorization", v);
        }
        reply(req.send(update))
    };
    let r = send(None);
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(send(Some("Bearer wrong")).status, 403);
    assert_eq!(send(Some("Bearer s3cret")).status, 204);
    let r = reply(
        a.put(format!("{base}/store?default"))
            .header("Content-Type", "text/turtle")
            .send("<http://e/a> <http://e/b> <http://e/c> ."),
    );
    assert_eq!(r.status, 401);
    // Queries need no token.
    let r = reply(
        a.get(format!("{base}/sparql?query={}", enc(COUNT_ALL)))
            .call(),
    );
    assert!(r.body.contains("\"89\""), "{}", r.body);
    server.shutdown();

    let (_dir, server, base) = start(ServerConfig {
        read_only: true,
        ..ServerConfig::default()
    });
    let r = reply(
        a.post(format!("{base}/sparql"))
            .header("Content-Type", "application/sparql-update")
            .send(update),
    );
    assert_eq!(r.status, 403);
    assert!(r.body.contains("read-only"));
    assert_eq!(
        reply(a.delete(format!("{base}/store?default")).call()).status,
        403
    );
    assert_eq!(
        reply(
            a.get(format!("{base}/sparql?query={}", enc(COUNT_ALL)))
                .call()
        )
        .status,
        200
    );
    server.shutdown();
}

#[test]
fn limits_body_concurrency_rate_and_timeout() {
    // Query timeout: evaluation really stops (503 well before the query could finish).
    let (_dir, server, base) = start(ServerConfig {
        query_timeout: Duration::from_millis(300),
        body_limit: 4096,
        ..ServerConfig::default()
    });
    let a = agent();
    let began = Instant::now();
    let r = reply(a.get(format!("{base}/sparql?query={}", enc(SLOW))).call());
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("timed out"), "{}", r.body);
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    let big = format!("# {}\n{COUNT_ALL}", "x".repeat(5000));
    let r = reply(
        a.post(format!("{base}/sparql"))
            .header("Content-Type", "application/sparql-query")
            .send(&big),
    );
    assert_eq!(r.status, 413);
    server.shutdown();

    // Concurrency: one query slot, taken by a slow query; the next gets 503 with Retry-After.
    let (_dir, server, base) = start(ServerConfig {
        max_concurrent_queries: 1,
        queue_wait: Duration::from_millis(200),
        ..ServerConfig::default()
    });
    let slow_url = format!("{base}/sparql?query={}", enc(SLOW));
    let slow = std::thread::spawn(move || reply(agent().get(&slow_url).call()).status);
    std::thread::sleep(Duration::from_millis(300));
    let r = reply(
        a.get(format!("{base}/sparql?query={}", enc(COUNT_ALL)))
            .call(),
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(slow.join().unwrap(), 200);
    let m = reply(a.get(format!("{base}/metrics")).call()).body;
    assert!(m.contains("tern_rejected_busy_total 1"), "{m}");
    server.shutdown();

    // Rate limit: a burst of 2, then 429 until tokens refill.
    let (_dir, server, base) = start(ServerConfig {
        rate_limit: Some((0.5, 2.0)),
        ..ServerConfig::default()
    });
    let url = format!("{base}/sparql?query={}", enc("ASK {}"));
    let statuses: Vec<u16> = (0..3).map(|_| reply(a.get(&url).call()).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    // Health checks are never rate limited.
    assert_eq!(reply(a.get(format!("{base}/health")).call()).status, 200);
    server.shutdown();
}

#[test]
fn results_stream_and_stop_when_the_client_leaves() {
    let (_dir, server, base) = start(ServerConfig::default());
    // 88^4 = 60 million rows: the response must start at once, not after evaluating them.
    let q = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }";
    let began = Instant::now();
    let mut r = agent()
        .get(format!("{base}/sparql?query={}", enc(q)))
        .header("Accept", "text/tab-separated-values")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut reader = r.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < 8 << 20 {
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0);
        read += n;
    }
    let first_8mb = began.elapsed();
    assert!(first_8mb < Duration::from_secs(10), "{first_8mb:?}");
    drop(reader);
    drop(r);
    // The client is gone: the query is cancelled, its slot and memory released.
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = reply(a.get(format!("{base}/metrics")).call()).body;
        if m.contains("tern_queries_running 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "query still running after disconnect:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("streamed 8 MiB of a 60M-row result in {first_8mb:?}, then cancelled on disconnect");
    server.shutdown();
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    drop(sample_store(dir.path()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "-l"])
        .arg(dir.path())
        .args(["--bind", &addr.to_string(), "--grace", "20"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reply_status(&format!("{base}/health")) != Some(200) {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("{base}/sparql?query={}", enc(SLOW));
    let in_flight = std::thread::spawn(move || reply(agent().get(&url).call()));
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("6000000"), "{}", r.body);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("id="), "request ids in the log: {log}");
    assert_eq!(reply_status(&format!("{base}/health")), None);
}

fn reply_status(url: &str) -> Option<u16> {
    agent().get(url).call().ok().map(|r| r.status().as_u16())
}

#[test]
fn readers_see_whole_writes_while_a_writer_runs() {
    let (_dir, server, base) = start(ServerConfig::default());
    const BATCH: usize = 500;
    const WRITES: usize = 20;
    let writer_base = base.clone();
    let writer = std::thread::spawn(move || {
        let a = agent();
        for w in 0..WRITES {
            let mut body = String::from("INSERT DATA {");
            for i in 0..BATCH {
                body.push_str(&format!(" <http://e/s{w}_{i}> <http://e/p> {i} ."));
            }
            body.push('}');
            let r = reply(
                a.post(format!("{writer_base}/update"))
                    .header("Content-Type", "application/sparql-update")
                    .send(&body),
            );
            assert_eq!(r.status, 204, "{}", r.body);
        }
    });
    let q = format!(
        "{base}/sparql?query={}",
        enc("SELECT (COUNT(*) AS ?n) WHERE { ?s <http://e/p> ?o }")
    );
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let a = agent();
                let mut seen = Vec::new();
                loop {
                    let r = reply(
                        a.get(&q)
                            .header("Accept", "text/tab-separated-values")
                            .call(),
                    );
                    assert_eq!(r.status, 200);
                    let n: usize = r
                        .body
                        .lines()
                        .nth(1)
                        .map(|l| l.trim_matches('"').split('"').next().unwrap_or(""))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("count in {}", r.body));
                    // A snapshot holds whole transactions only.
                    assert_eq!(n % BATCH, 0, "a reader saw half a write: {n}");
                    seen.push(n);
                    if n == BATCH * WRITES {
                        return seen;
                    }
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        let seen = r.join().unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "counts went back: {seen:?}"
        );
    }
    server.shutdown();
}
