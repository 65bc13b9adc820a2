//! A webhook receiver for tests: a small HTTP/1.1 server on 127.0.0.1 that verifies Standard Webhooks
//! signatures, answers scripted statuses (then a settable default) to well-signed requests and 401 to the
//! rest, and records every request. Shared by `tests/hooks.rs` and `tests/hooks_e2e.rs`.

use std::collections::{BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern::generate::webhooks::verify;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    pub id: String,
    pub body: String,
    pub signed_ok: bool,
    pub status: u16,
}

/// See the module documentation.
pub struct Receiver {
    addr: SocketAddr,
    answer: Arc<AtomicU16>,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Serves on `listener`: the first well-signed requests get `script`'s statuses, later ones `answer`.
    pub fn start(
        listener: TcpListener,
        secret: &'static str,
        script: Vec<u16>,
        answer: u16,
    ) -> Receiver {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(AtomicU16::new(answer));
        let (h, s, a) = (Arc::clone(&hits), Arc::clone(&stop), Arc::clone(&answer));
        let mut script: VecDeque<u16> = script.into();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let next = |script: &mut VecDeque<u16>| {
                            script.pop_front().unwrap_or(a.load(Ordering::SeqCst))
                        };
                        if let Some(hit) = serve_one(stream, secret, || next(&mut script)) {
                            h.lock().unwrap().push(hit);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Receiver {
            addr,
            answer,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    /// Changes the status given once the script is used up.
    pub fn set_answer(&self, status: u16) {
        self.answer.store(status, Ordering::SeqCst);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Distinct webhook-ids answered 2xx (for `path`, or any path), with their bodies: the receiver's dedup.
    pub fn accepted(&self, path: Option<&str>) -> Vec<(String, serde_json::Value)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for h in self.hits() {
            if path.is_none_or(|p| h.path == p)
                && (200..300).contains(&h.status)
                && seen.insert(h.id.clone())
            {
                out.push((h.id, serde_json::from_str(&h.body).unwrap()));
            }
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut stream: TcpStream, secret: &str, next: impl FnOnce() -> u16) -> Option<Hit> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let mut header = std::collections::HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            header.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = header
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..]).into_owned();
    let get = |k: &str| header.get(k).cloned().unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed_ok = verify(
        secret,
        &get("webhook-id"),
        &get("webhook-timestamp"),
        &get("webhook-signature"),
        body.as_bytes(),
        now,
    )
    .is_ok();
    let status = if signed_ok { next() } else { 401 };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let _ = stream.flush();
    Some(Hit {
        path,
        id: get("webhook-id"),
        body,
        signed_ok,
        status,
    })
}
