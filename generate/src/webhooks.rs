//! Outbound webhooks in the Standard Webhooks scheme (<https://www.standardwebhooks.com/>): signing and
//! verification, a durable outbox in the store, and a delivery worker with retries.
//!
//! Every message is written to the outbox (`webhook/outbox/<id>`, an application record: no quads, no data
//! version change, so no commit event and no hook loop) before delivery is attempted. The worker thread
//! delivers due entries, retries failures with exponential backoff and jitter, logs every attempt under
//! `webhook/log/<id>/<attempt>`, moves delivered messages to `webhook/sent/<id>` and messages that ran out
//! of attempts to `webhook/failed/<id>`. After a restart a new worker picks up whatever the outbox holds:
//! delivery is at least once, and receivers deduplicate by the `webhook-id` header.
//!
//! An endpoint answering HTTP 410 Gone [`WebhookSettings::disable_after_gone`] times in a row is disabled
//! (`webhook/endpoint/<url>`); its messages stay in the outbox until [`enable_endpoint`] is called.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tern_store::Store;

use crate::error::{GenerateError, Result};

const OUTBOX: &str = "webhook/outbox/";
const SENT: &str = "webhook/sent/";
const FAILED: &str = "webhook/failed/";
const LOG: &str = "webhook/log/";
const ENDPOINT: &str = "webhook/endpoint/";

/// How far a `webhook-timestamp` may be from now (either way) for [`verify`] to accept it.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The HMAC key of a secret: a `whsec_`-prefixed secret is base64 and decodes to the key (the Standard
/// Webhooks convention); any other string (or a `whsec_` one that is not valid base64) is used as raw bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b| BASE64.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The MAC over `{id}.{timestamp}.{body}`; `None` never happens in practice (HMAC takes keys of any
/// length) but is handled as "no valid signature" rather than a panic.
fn mac(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

/// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    match mac(&signing_key(secret), id, timestamp, body) {
        Some(m) => format!("v1,{}", BASE64.encode(m.finalize().into_bytes())),
        None => "v1,".to_string(),
    }
}

/// Why [`verify`] rejected a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A `webhook-*` header is missing or not text.
    #[error("missing or unreadable header `{0}`")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer or outside the tolerance window.
    #[error("webhook-timestamp is not within 5 minutes of the server's clock")]
    Timestamp,
    /// No `v1` signature in `webhook-signature` matches.
    #[error("no valid v1 signature in webhook-signature")]
    Signature,
}

/// Checks a Standard Webhooks signature: the timestamp is within [`TIMESTAMP_TOLERANCE`] of `now` (unix
/// seconds) and one of the space-separated `v1,<base64>` entries of `signature` matches (compared in
/// constant time). Replay protection (remembering ids) is the caller's job.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> std::result::Result<(), VerifyError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Timestamp)?;
    if ts.abs_diff(now) > TIMESTAMP_TOLERANCE.as_secs() {
        return Err(VerifyError::Timestamp);
    }
    let key = signing_key(secret);
    for entry in signature.split_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(tag) = BASE64.decode(b64) else {
            continue;
        };
        if mac(&key, id, ts, body).is_some_and(|m| m.verify_slice(&tag).is_ok()) {
            return Ok(());
        }
    }
    Err(VerifyError::Signature)
}

/// Retry and endpoint policy of the delivery worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Delay before the first retry, in milliseconds; doubles with each failed attempt.
    pub base_delay_ms: u64,
    /// Longest delay between attempts, in milliseconds (caps the doubling).
    pub max_delay_ms: u64,
    /// Attempts before a message moves to `webhook/failed/`.
    pub max_attempts: u32,
    /// HTTP timeout of one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// Consecutive HTTP 410 answers that disable an endpoint.
    pub disable_after_gone: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            base_delay_ms: 5_000,
            max_delay_ms: 3_600_000,
            max_attempts: 12,
            timeout_ms: 15_000,
            disable_after_gone: 3,
        }
    }
}

impl WebhookSettings {
    /// Delay after `attempts` failed attempts: `base * 2^(attempts-1)` capped at `max_delay_ms`, with
    /// "equal jitter" (a random point in the upper half) so many failed messages do not retry in lockstep.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(32);
        let full = self
            .base_delay_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_delay_ms)
            .max(1);
        let jittered = full / 2 + rand::rng().random_range(0..=full - full / 2);
        Duration::from_millis(jittered)
    }
}

/// One message, as kept in the outbox (and in `sent/` / `failed/` afterwards, for redelivery).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The `webhook-id`: stable across retries, so receivers can deduplicate.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds before which the next attempt must not happen.
    pub next_attempt_ms: u64,
}

/// One delivery attempt, kept under `webhook/log/<id>/<attempt>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeliveryLog {
    /// The message id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Unix seconds of the attempt.
    pub at: u64,
    /// HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// Transport error, when it did not.
    pub error: Option<String>,
}

/// Persistent state of an endpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointState {
    /// Consecutive HTTP 410 answers.
    pub gone_count: u32,
    /// Disabled after too many 410s; nothing is delivered until [`enable_endpoint`].
    pub disabled: bool,
}

fn store_err(e: impl std::fmt::Display) -> GenerateError {
    GenerateError::Store(e.to_string())
}

fn put_json<T: Serialize>(store: &Store, key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(store_err)?;
    store.app_put(key, Some(&bytes)).map_err(store_err)
}

fn get_json<T: for<'de> Deserialize<'de>>(store: &Store, key: &str) -> Result<Option<T>> {
    match store.app_get(key).map_err(store_err)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(store_err),
    }
}

/// A fresh message id: `msg_` + unix milliseconds + random hex (sortable, unique in practice).
pub fn new_message_id() -> String {
    format!(
        "msg_{:013}_{:016x}",
        unix_millis(),
        rand::rng().random::<u64>()
    )
}

/// Writes a message to the outbox, due now; returns its id. A running [`WebhookWorker`] must be woken
/// ([`WebhookWorker::wake`]) to deliver it before its next scheduled scan.
pub fn enqueue(store: &Store, url: &str, body: &str) -> Result<String> {
    let entry = OutboxEntry {
        id: new_message_id(),
        url: url.to_string(),
        body: body.to_string(),
        attempts: 0,
        next_attempt_ms: 0,
    };
    put_json(store, &format!("{OUTBOX}{}", entry.id), &entry)?;
    Ok(entry.id)
}

/// Messages waiting for delivery, oldest first.
pub fn pending(store: &Store) -> Result<Vec<OutboxEntry>> {
    store
        .app_scan(OUTBOX)
        .map_err(store_err)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(store_err))
        .collect()
}

/// The delivery log of message `id`, by attempt.
pub fn delivery_log(store: &Store, id: &str) -> Result<Vec<DeliveryLog>> {
    store
        .app_scan(&format!("{LOG}{id}/"))
        .map_err(store_err)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(store_err))
        .collect()
}

/// The state of endpoint `url` (default: enabled, no 410 seen).
pub fn endpoint_state(store: &Store, url: &str) -> Result<EndpointState> {
    Ok(get_json(store, &format!("{ENDPOINT}{url}"))?.unwrap_or_default())
}

/// Re-enables an endpoint disabled after repeated 410s.
pub fn enable_endpoint(store: &Store, url: &str) -> Result<()> {
    put_json(
        store,
        &format!("{ENDPOINT}{url}"),
        &EndpointState::default(),
    )
}

/// Puts message `id` (delivered, failed or still pending) back in the outbox, due now, with its attempt
/// count reset and the same `webhook-id`. Returns false if no message has that id.
pub fn redeliver(store: &Store, id: &str) -> Result<bool> {
    for prefix in [OUTBOX, SENT, FAILED] {
        if let Some(mut e) = get_json::<OutboxEntry>(store, &format!("{prefix}{id}"))? {
            e.attempts = 0;
            e.next_attempt_ms = 0;
            put_json(store, &format!("{OUTBOX}{id}"), &e)?;
            if prefix != OUTBOX {
                store
                    .app_put(&format!("{prefix}{id}"), None)
                    .map_err(store_err)?;
            }
            return Ok(true);
        }
    }
    Ok(false)
}

enum Wake {
    Now,
    Stop,
}

/// The delivery thread. Dropping it (or [`WebhookWorker::stop`]) stops the thread after the attempt in
/// flight; undelivered messages stay in the outbox for the next worker.
pub struct WebhookWorker {
    tx: Sender<Wake>,
    thread: Option<JoinHandle<()>>,
    delivered: Arc<AtomicU64>,
}

impl WebhookWorker {
    /// Starts delivering the outbox of `store`. `secrets` maps each URL to its signing secret (URLs
    /// without one are sent unsigned).
    pub fn start(
        store: &Store,
        settings: WebhookSettings,
        secrets: HashMap<String, String>,
    ) -> Result<WebhookWorker> {
        let (tx, rx) = channel();
        let delivered = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            store: store.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_millis(settings.timeout_ms)))
                .build()
                .into(),
            settings,
            secrets,
            delivered: Arc::clone(&delivered),
        };
        let thread = std::thread::Builder::new()
            .name("tern-webhooks".into())
            .spawn(move || loop {
                let wait = worker.deliver_due();
                match rx.recv_timeout(wait) {
                    Ok(Wake::Now) | Err(RecvTimeoutError::Timeout) => {}
                    Ok(Wake::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                }
            })
            .map_err(|e| GenerateError::Store(format!("cannot start the webhook thread: {e}")))?;
        Ok(WebhookWorker {
            tx,
            thread: Some(thread),
            delivered,
        })
    }

    /// Asks the worker to scan the outbox now (after [`enqueue`] or [`redeliver`]).
    pub fn wake(&self) {
        let _ = self.tx.send(Wake::Now);
    }

    /// Messages delivered (2xx) by this worker.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let _ = self.tx.send(Wake::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebhookWorker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

struct Worker {
    store: Store,
    agent: ureq::Agent,
    settings: WebhookSettings,
    secrets: HashMap<String, String>,
    delivered: Arc<AtomicU64>,
}

/// Longest the worker sleeps without a wake-up (bounds the delay after a missed wake).
const IDLE_SCAN: Duration = Duration::from_secs(30);

impl Worker {
    /// Attempts every due message once; returns how long to sleep until the next one is due.
    fn deliver_due(&self) -> Duration {
        let entries = match pending(&self.store) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("webhook outbox unreadable: {e}");
                return IDLE_SCAN;
            }
        };
        let mut wait = IDLE_SCAN;
        let mut disabled: HashMap<String, bool> = HashMap::new();
        for mut entry in entries {
            let off = *disabled.entry(entry.url.clone()).or_insert_with(|| {
                endpoint_state(&self.store, &entry.url).is_ok_and(|s| s.disabled)
            });
            if off {
                continue;
            }
            let now = unix_millis();
            if entry.next_attempt_ms > now {
                wait = wait.min(Duration::from_millis(entry.next_attempt_ms - now));
                continue;
            }
            match self.attempt(&mut entry) {
                Ok(Some(next)) => wait = wait.min(next),
                Ok(None) => {}
                Err(e) => tracing::warn!("webhook {}: {e}", entry.id),
            }
            if endpoint_state(&self.store, &entry.url).is_ok_and(|s| s.disabled) {
                disabled.insert(entry.url.clone(), true);
            }
        }
        wait
    }

    /// One attempt; returns the delay until the retry, if one is scheduled.
    fn attempt(&self, entry: &mut OutboxEntry) -> Result<Option<Duration>> {
        entry.attempts += 1;
        let timestamp = unix_now();
        let mut request = self
            .agent
            .post(&entry.url)
            .header("content-type", "application/json")
            .header("webhook-id", &entry.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(secret) = self.secrets.get(&entry.url) {
            request = request.header(
                "webhook-signature",
                sign(secret, &entry.id, timestamp, entry.body.as_bytes()),
            );
        }
        let (status, error) = match request.send(entry.body.as_bytes()) {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        put_json(
            &self.store,
            &format!("{LOG}{}/{:04}", entry.id, entry.attempts),
            &DeliveryLog {
                id: entry.id.clone(),
                url: entry.url.clone(),
                attempt: entry.attempts,
                at: timestamp,
                status,
                error,
            },
        )?;
        let endpoint_key = format!("{ENDPOINT}{}", entry.url);
        let mut state = endpoint_state(&self.store, &entry.url)?;
        let outbox_key = format!("{OUTBOX}{}", entry.id);
        if status.is_some_and(|s| (200..300).contains(&s)) {
            if state.gone_count != 0 {
                state.gone_count = 0;
                put_json(&self.store, &endpoint_key, &state)?;
            }
            put_json(&self.store, &format!("{SENT}{}", entry.id), &*entry)?;
            self.store.app_put(&outbox_key, None).map_err(store_err)?;
            self.delivered.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if status == Some(410) {
            state.gone_count += 1;
            if state.gone_count >= self.settings.disable_after_gone {
                state.disabled = true;
                tracing::warn!(
                    "webhook endpoint {} answered 410 Gone {} times: disabled",
                    entry.url,
                    state.gone_count
                );
            }
            put_json(&self.store, &endpoint_key, &state)?;
        }
        if entry.attempts >= self.settings.max_attempts {
            tracing::warn!(
                "webhook {} to {}: giving up after {} attempts",
                entry.id,
                entry.url,
                entry.attempts
            );
            put_json(&self.store, &format!("{FAILED}{}", entry.id), &*entry)?;
            self.store.app_put(&outbox_key, None).map_err(store_err)?;
            return Ok(None);
        }
        let delay = self.settings.backoff(entry.attempts);
        entry.next_attempt_ms = unix_millis() + delay.as_millis() as u64;
        put_json(&self.store, &outbox_key, &*entry)?;
        Ok(Some(delay))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (the payload's ISO 8601 `timestamp`).
pub(crate) fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
