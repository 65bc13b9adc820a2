//! Commit hooks: "when a commit touches graph G / adds or removes a quad matching a pattern / makes an ASK
//! true, run a generator and/or send a webhook". The format of the YAML config is in the README ("Hooks and
//! webhooks").
//!
//! The engine subscribes to the store's commit events ([`Store::subscribe_commits`]), which are sent only
//! after a commit is durable, so hooks see committed data only. Commits arriving within the debounce window
//! are coalesced into one evaluation. Conditions are evaluated on the store's latest committed snapshot at
//! evaluation time (the coalesced commits' result, or later).
//!
//! No hook can trigger itself or another hook: hook actions write files (generation), generation receipts
//! and webhook outbox/log records, and the latter two are application records ([`Store::app_put`]) that
//! change no quad and the data version, so the store publishes no commit event for them. The engine itself
//! never opens a transaction.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxrdf::{Literal, NamedNode, Term};
use serde::{Deserialize, Serialize};
use tern_query::{QueryOptions, QueryResults};
use tern_store::{CommitEvent, IdQuad, Store, TermId};

use crate::error::{GenerateError, Result};
use crate::webhooks::{self, WebhookSettings, WebhookWorker};
use crate::{Action, Generator, RunOptions, RunReport};

/// The hooks config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Commits within this many milliseconds of the first are coalesced into one evaluation.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
    /// Retry policy of outbound webhooks.
    #[serde(default)]
    pub webhooks: WebhookSettings,
    /// The hooks, evaluated in order.
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
    /// The server's inbound trigger (`POST /hooks/generate/{name}`), used by `tern serve --hooks`.
    #[serde(default)]
    pub trigger: Option<TriggerConfig>,
}

/// Inbound trigger settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Secret verifying request signatures (`whsec_<base64>` or raw).
    pub secret: String,
    /// Generators the trigger may run, by name.
    #[serde(default)]
    pub generators: std::collections::BTreeMap<String, RunConfig>,
}

fn default_debounce() -> u64 {
    200
}

/// One hook.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Name, used in logs and payloads.
    pub name: String,
    /// Condition; without one the hook fires on every commit.
    #[serde(default)]
    pub when: Option<When>,
    /// Generator to run.
    #[serde(default)]
    pub run: Option<RunConfig>,
    /// Webhook to send.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// When a hook fires: exactly one of the keys (YAML `when: { graph: IRI }` and so on).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The commit added or removed a quad in this graph (IRI, or `default` for the default graph).
    #[serde(default)]
    pub graph: Option<String>,
    /// The commit added or removed a quad matching `s p o [g]`: `?var`, `<iri>`, `"literal"` or `a`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// This ASK query became true (false before the commits, true after).
    #[serde(default)]
    pub ask: Option<String>,
}

/// A generator run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Generator folder (relative paths: to the config file's folder).
    pub generator: PathBuf,
    /// Output root (relative paths: to the config file's folder).
    pub out: PathBuf,
    /// Overwrite hand-edited outputs.
    #[serde(default)]
    pub force: bool,
}

/// An outbound webhook endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Target URL.
    pub url: String,
    /// Signing secret: `whsec_<base64>` (decoded to the key) or any other string (its bytes are the key).
    #[serde(default)]
    pub secret: Option<String>,
}

impl HooksConfig {
    /// Parses a YAML config; relative paths are resolved against `base`.
    pub fn from_yaml(text: &str, base: &Path) -> Result<HooksConfig> {
        let mut c: HooksConfig = serde_norway::from_str(text)
            .map_err(|e| GenerateError::Hooks(format!("config: {e}")))?;
        for h in &mut c.hooks {
            if let Some(r) = &mut h.run {
                r.generator = base.join(&r.generator);
                r.out = base.join(&r.out);
            }
        }
        if let Some(t) = &mut c.trigger {
            for r in t.generators.values_mut() {
                r.generator = base.join(&r.generator);
                r.out = base.join(&r.out);
            }
        }
        Ok(c)
    }

    /// Reads and parses a YAML config file.
    pub fn load(path: &Path) -> Result<HooksConfig> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io(path))?;
        Self::from_yaml(&text, path.parent().unwrap_or(Path::new(".")))
    }
}

/// A pattern slot.
#[derive(Clone, Debug, PartialEq)]
enum Slot {
    Any,
    Term(Term),
}

fn parse_pattern(text: &str) -> Result<Vec<Slot>> {
    let bad = |m: &str| GenerateError::Hooks(format!("hook pattern `{text}`: {m}"));
    let mut slots = Vec::new();
    let mut rest = text.trim().trim_end_matches('.').trim();
    while !rest.is_empty() {
        let (slot, tail) = if let Some(r) = rest.strip_prefix('<') {
            let end = r.find('>').ok_or_else(|| bad("unclosed <"))?;
            let iri = NamedNode::new(&r[..end]).map_err(|e| bad(&e.to_string()))?;
            (Slot::Term(iri.into()), &r[end + 1..])
        } else if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or_else(|| bad("unclosed \""))?;
            (
                Slot::Term(Literal::new_simple_literal(&r[..end]).into()),
                &r[end + 1..],
            )
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            let slot = if word.starts_with('?') || word.starts_with('$') {
                Slot::Any
            } else if word == "a" {
                Slot::Term(oxrdf::vocab::rdf::TYPE.into_owned().into())
            } else {
                return Err(bad(&format!("`{word}`: use ?var, <iri>, \"literal\" or a")));
            };
            (slot, &rest[end..])
        };
        slots.push(slot);
        rest = tail.trim_start();
    }
    if !(3..=4).contains(&slots.len()) {
        return Err(bad(
            "needs subject, predicate, object and optionally a graph",
        ));
    }
    Ok(slots)
}

enum Condition {
    Always,
    /// `None`: the default graph.
    Graph(Option<NamedNode>),
    Pattern(Vec<Slot>),
    /// The query and whether it was true at the last evaluation.
    Ask(String, bool),
}

struct Hook {
    name: String,
    condition: Condition,
    run: Option<RunConfig>,
    webhook: Option<WebhookConfig>,
    fired: u64,
}

/// Coalesced commits.
#[derive(Default)]
struct Batch {
    data_version: u64,
    graphs: BTreeSet<TermId>,
    inserted: u64,
    removed: u64,
    added: Vec<IdQuad>,
    removed_quads: Vec<IdQuad>,
    truncated: bool,
}

impl Batch {
    fn absorb(&mut self, e: CommitEvent) {
        let cap = tern_store::COMMIT_EVENT_QUAD_CAP;
        self.data_version = self.data_version.max(e.data_version);
        self.graphs.extend(e.graphs_touched);
        self.inserted += e.inserted;
        self.removed += e.removed;
        self.truncated |= e.truncated
            || self.added.len() + e.added.len() > cap
            || self.removed_quads.len() + e.removed_quads.len() > cap;
        let room = cap.saturating_sub(self.added.len());
        self.added.extend(e.added.into_iter().take(room));
        let room = cap.saturating_sub(self.removed_quads.len());
        self.removed_quads
            .extend(e.removed_quads.into_iter().take(room));
    }
}

/// A generator run's receipt as sent in webhook payloads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReceiptSummary {
    /// Generator name.
    pub generator: String,
    /// Data version rendered.
    pub data_version: u64,
    /// Files created.
    pub created: usize,
    /// Files updated.
    pub updated: usize,
    /// Files unchanged.
    pub unchanged: usize,
    /// Paths written (created or updated), relative to the output root.
    pub written: Vec<String>,
    /// Error message when the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReceiptSummary {
    /// Summarizes a run report.
    pub fn of(report: &RunReport, data_version: u64) -> ReceiptSummary {
        ReceiptSummary {
            generator: report.generator.clone(),
            data_version,
            created: report.created(),
            updated: report.updated(),
            unchanged: report.unchanged(),
            written: report
                .outputs
                .iter()
                .filter(|o| matches!(o.action, Action::Created | Action::Updated))
                .map(|o| o.path.clone())
                .collect(),
            error: None,
        }
    }
}

/// A running hook engine: a thread evaluating hooks after commits, and a webhook delivery worker.
/// Dropping it stops both (pending webhooks stay in the outbox).
pub struct HookEngine {
    stop: Arc<Mutex<bool>>,
    thread: Option<JoinHandle<()>>,
    worker: Arc<WebhookWorker>,
    processed: Arc<AtomicU64>,
    fired: Arc<Mutex<HashMap<String, u64>>>,
}

impl HookEngine {
    /// Subscribes to `store`'s commits and starts evaluating `config`'s hooks. ASK conditions are evaluated
    /// once now, so an ASK already true does not fire until it has been false.
    pub fn start(store: &Store, config: HooksConfig) -> Result<HookEngine> {
        let events = store.subscribe_commits();
        let mut hooks = Vec::new();
        let mut secrets = HashMap::new();
        for h in config.hooks {
            let when = h.when.unwrap_or_default();
            let condition = match (when.graph, when.pattern, when.ask) {
                (None, None, None) => Condition::Always,
                (Some(g), None, None) if g == "default" => Condition::Graph(None),
                (Some(g), None, None) => {
                    Condition::Graph(Some(NamedNode::new(&g).map_err(|e| {
                        GenerateError::Hooks(format!("hook {}: graph `{g}`: {e}", h.name))
                    })?))
                }
                (None, Some(p), None) => Condition::Pattern(parse_pattern(&p)?),
                (None, None, Some(q)) => {
                    let now = ask(store, &q)
                        .map_err(|e| GenerateError::Hooks(format!("hook {}: {e}", h.name)))?;
                    Condition::Ask(q, now)
                }
                _ => {
                    return Err(GenerateError::Hooks(format!(
                        "hook {}: `when:` takes exactly one of `graph:`, `pattern:`, `ask:`",
                        h.name
                    )))
                }
            };
            if let Some(w) = &h.webhook {
                if let Some(s) = &w.secret {
                    secrets.insert(w.url.clone(), s.clone());
                }
            }
            hooks.push(Hook {
                name: h.name,
                condition,
                run: h.run,
                webhook: h.webhook,
                fired: 0,
            });
        }
        let worker = Arc::new(WebhookWorker::start(store, config.webhooks, secrets)?);
        let stop = Arc::new(Mutex::new(false));
        let current = store.data_version();
        // Commits made while no engine ran (or before a killed engine evaluated them) are evaluated now, as
        // one batch touching everything; a store never seen by an engine starts from its current version.
        let missed = store
            .app_get(CURSOR)
            .ok()
            .flatten()
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
            .filter(|last| *last < current)
            .map(|_| current);
        let processed = Arc::new(AtomicU64::new(if missed.is_some() { 0 } else { current }));
        if missed.is_none() {
            let _ = store.app_put(CURSOR, Some(current.to_string().as_bytes()));
        }
        let fired = Arc::new(Mutex::new(HashMap::new()));
        let engine = Engine {
            store: store.clone(),
            hooks,
            debounce: Duration::from_millis(config.debounce_ms),
            worker: Arc::clone(&worker),
            stop: Arc::clone(&stop),
            processed: Arc::clone(&processed),
            fired: Arc::clone(&fired),
            cache: Arc::new(crate::TemplateCache::default()),
        };
        let thread = std::thread::Builder::new()
            .name("tern-hooks".into())
            .spawn(move || engine.run(events, missed))
            .map_err(|e| GenerateError::Hooks(format!("cannot start the hooks thread: {e}")))?;
        Ok(HookEngine {
            stop,
            thread: Some(thread),
            worker,
            processed,
            fired,
        })
    }

    /// The data version up to which commits have been evaluated (hooks fired, webhooks enqueued).
    pub fn processed_version(&self) -> u64 {
        self.processed.load(Ordering::Acquire)
    }

    /// Waits until commits up to `version` are evaluated, or `timeout` passes; true if they were.
    pub fn wait_processed(&self, version: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while self.processed_version() < version {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// How many times each hook fired, by name.
    pub fn fired(&self) -> HashMap<String, u64> {
        self.fired.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The webhook delivery worker (to wake it after [`webhooks::redeliver`]).
    pub fn worker(&self) -> &WebhookWorker {
        &self.worker
    }

    fn stop_inner(&mut self) {
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HookEngine {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Application record holding the data version up to which commits have been evaluated.
const CURSOR: &str = "hooks/processed";

/// How often the engine thread checks for a stop request while no commit arrives.
const POLL: Duration = Duration::from_millis(50);

struct Engine {
    store: Store,
    hooks: Vec<Hook>,
    debounce: Duration,
    worker: Arc<WebhookWorker>,
    stop: Arc<Mutex<bool>>,
    processed: Arc<AtomicU64>,
    fired: Arc<Mutex<HashMap<String, u64>>>,
    /// One template query cache for every generator run: entries stay valid until the data version
    /// changes, and parsed queries (L1) survive across firings.
    cache: Arc<crate::TemplateCache>,
}

fn ask(store: &Store, q: &str) -> std::result::Result<bool, String> {
    match tern_query::query(store, q, QueryOptions::default()) {
        Ok(QueryResults::Boolean(b)) => Ok(b),
        Ok(_) => Err(format!("`ask:` needs an ASK query, got `{q}`")),
        Err(e) => Err(e.to_string()),
    }
}

impl Engine {
    fn stopped(&self) -> bool {
        self.stop.lock().map_or(true, |s| *s)
    }

    fn run(mut self, events: Receiver<CommitEvent>, missed: Option<u64>) {
        if let Some(version) = missed {
            self.evaluate(&Batch {
                data_version: version,
                truncated: true,
                ..Default::default()
            });
            self.done(version);
        }
        loop {
            let first = match events.recv_timeout(POLL) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    if self.stopped() {
                        return;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Batch::default();
            batch.absorb(first);
            // Debounce: take every commit arriving within the window after the first.
            let until = Instant::now() + self.debounce;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                match events.recv_timeout(left) {
                    Ok(e) => batch.absorb(e),
                    Err(_) => break,
                }
            }
            self.evaluate(&batch);
            self.done(batch.data_version);
            if self.stopped() {
                return;
            }
        }
    }

    /// Records that commits up to `version` are evaluated (in memory and in the store's cursor).
    fn done(&self, version: u64) {
        let previous = self.processed.fetch_max(version, Ordering::AcqRel);
        if version > previous {
            if let Err(e) = self
                .store
                .app_put(CURSOR, Some(version.to_string().as_bytes()))
            {
                tracing::warn!("hooks: cannot record the processed version: {e}");
            }
        }
    }

    fn matches(&mut self, batch: &Batch) -> Vec<usize> {
        let reader = self.store.reader();
        let mut out = Vec::new();
        for (i, h) in self.hooks.iter_mut().enumerate() {
            let hit = match &mut h.condition {
                Condition::Always => true,
                Condition::Graph(g) => {
                    batch.truncated
                        || match g {
                            None => batch.graphs.contains(&TermId::DEFAULT_GRAPH),
                            Some(g) => reader
                                .term_id(g.as_ref().into())
                                .ok()
                                .flatten()
                                .is_some_and(|id| batch.graphs.contains(&id)),
                        }
                }
                Condition::Pattern(slots) => {
                    // Resolve constants now: a term new in this commit has an id only from now on; a term
                    // without an id cannot be in any added or removed quad.
                    let mut ids = Vec::with_capacity(slots.len());
                    let mut resolvable = true;
                    for s in slots.iter() {
                        ids.push(match s {
                            Slot::Any => None,
                            Slot::Term(t) => match reader.term_id(t.as_ref()) {
                                Ok(Some(id)) => Some(id),
                                _ => {
                                    resolvable = false;
                                    None
                                }
                            },
                        });
                    }
                    batch.truncated
                        || (resolvable
                            && batch.added.iter().chain(&batch.removed_quads).any(|q| {
                                let parts = [q.s, q.p, q.o, q.g];
                                ids.iter()
                                    .zip(parts)
                                    .all(|(want, have)| want.is_none_or(|w| w == have))
                            }))
                }
                Condition::Ask(q, last) => match ask(&self.store, q) {
                    Ok(now) => {
                        let became_true = now && !*last;
                        *last = now;
                        became_true
                    }
                    Err(e) => {
                        tracing::warn!("hook {}: {e}", h.name);
                        false
                    }
                },
            };
            if hit {
                out.push(i);
            }
        }
        out
    }

    fn evaluate(&mut self, batch: &Batch) {
        let hits = self.matches(batch);
        if hits.is_empty() {
            return;
        }
        let reader = self.store.reader();
        let graphs: Vec<String> = batch
            .graphs
            .iter()
            .map(|g| {
                if *g == TermId::DEFAULT_GRAPH {
                    "default".to_string()
                } else {
                    match reader.term(*g) {
                        Ok(Term::NamedNode(n)) => n.into_string(),
                        Ok(t) => t.to_string(),
                        Err(_) => format!("id:{}", g.0),
                    }
                }
            })
            .collect();
        let mut enqueued = false;
        for i in hits {
            let h = &mut self.hooks[i];
            h.fired += 1;
            if let Ok(mut f) = self.fired.lock() {
                f.insert(h.name.clone(), h.fired);
            }
            let mut receipts = Vec::new();
            if let Some(r) = &h.run {
                let version = self.store.data_version();
                let options = RunOptions {
                    force: r.force,
                    ..Default::default()
                };
                // Templates are reloaded on every firing (their files may have changed); the cache is kept.
                let result =
                    Generator::with_cache(&self.store, &r.generator, Arc::clone(&self.cache))
                        .and_then(|g| g.run(&r.out, &options));
                match result {
                    Ok(report) => {
                        tracing::info!("hook {}: {}", h.name, report.summary());
                        receipts.push(ReceiptSummary::of(&report, version));
                    }
                    Err(e) => {
                        tracing::warn!("hook {}: generation failed: {e}", h.name);
                        receipts.push(ReceiptSummary {
                            generator: r.generator.display().to_string(),
                            data_version: version,
                            created: 0,
                            updated: 0,
                            unchanged: 0,
                            written: Vec::new(),
                            error: Some(e.to_string()),
                        });
                    }
                }
            }
            if let Some(w) = &h.webhook {
                let now = webhooks::unix_now();
                let payload = serde_json::json!({
                    "type": "tern.commit",
                    "timestamp": webhooks::iso8601(now),
                    "data": {
                        "hook": h.name,
                        "commit": batch.data_version,
                        "graphs": graphs,
                        "added": batch.inserted,
                        "removed": batch.removed,
                        "receipts": receipts,
                    }
                });
                match webhooks::enqueue(&self.store, &w.url, &payload.to_string()) {
                    Ok(_) => enqueued = true,
                    Err(e) => tracing::warn!("hook {}: cannot enqueue webhook: {e}", h.name),
                }
            }
        }
        if enqueued {
            self.worker.wake();
        }
    }
}
