//! Code and document generation from the graph: folders of minijinja templates whose YAML frontmatter runs
//! SPARQL over a tern store, with safe writes (render everything, then write; nothing outside the output
//! root; unchanged files untouched; hand edits not overwritten) and receipts kept in the store so a rerun
//! with nothing changed writes nothing and `check` reports drift.
//!
//! ```no_run
//! use tern_generate::{Generator, RunOptions};
//! let store = tern_store::Store::open("/tmp/example-store")?;
//! let generator = Generator::new(&store, "data/generators/rust-classes")?;
//! let report = generator.run("/tmp/out".as_ref(), &RunOptions::default())?;
//! println!("{}", report.summary());
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! The frontmatter keys, functions and filters are documented in the README's "Generation" section;
//! commit hooks and signed webhooks ([`hooks`], [`webhooks`]) in its "Hooks and webhooks" part.

mod apply;
mod error;
mod functions;
pub mod hooks;
pub mod sophia;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use minijinja::{AutoEscape, Environment, Value};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tern_store::Store;

use apply::{Anchor, Injected};
pub use error::{GenerateError, Result};
pub use functions::{local_name, QueryValue, TemplateCache, MORE_PREFIXES};
use functions::{run_query, Bound, Prefixes};
pub use tern_query::cache::CacheStats;

/// Fuel (minijinja instructions) one render may spend: far above any real template, low enough that an
/// endless loop stops within a second or so.
const FUEL: u64 = 50_000_000;
/// Nesting depth (includes, macros, blocks) before a render fails instead of overflowing the stack.
const RECURSION_LIMIT: usize = 64;
/// The store key of a generator's receipt.
const RECEIPT_PREFIX: &str = "generate/receipt/";

/// How a template's output is written when the target exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Write only if the target does not exist.
    Create,
    /// Replace the target (the default), unless it was edited by hand since the last receipt.
    #[default]
    Overwrite,
    /// Replace only the text between `tern:begin NAME` / `tern:end NAME` marker lines.
    Merge,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawQuery {
    One(String),
    Named(BTreeMap<String, String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawForEach {
    Flag(bool),
    Name(String),
}

/// The frontmatter as written; validated into [`Template`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFrontmatter {
    to: Option<String>,
    query: Option<RawQuery>,
    for_each: Option<RawForEach>,
    when: Option<String>,
    skip_if: Option<String>,
    #[serde(default)]
    unless_exists: bool,
    #[serde(default)]
    inject: bool,
    before: Option<String>,
    after: Option<String>,
    #[serde(default)]
    append: bool,
    #[serde(default)]
    prepend: bool,
    at_line: Option<usize>,
    mode: Option<Mode>,
    chmod: Option<String>,
    #[serde(default)]
    prefixes: BTreeMap<String, String>,
}

/// One loaded template.
struct Template {
    /// Path relative to the generator folder (`/`-separated).
    file: String,
    env: Environment<'static>,
    /// Lines of frontmatter before the body, added to minijinja's line numbers.
    line_offset: usize,
    prefixes: Arc<Prefixes>,
    /// `(name, SPARQL)`; a single `query:` string is named `results`.
    queries: Vec<(String, String)>,
    for_each: Option<String>,
    when: Option<String>,
    skip_if: Option<Regex>,
    unless_exists: bool,
    inject: Option<Anchor>,
    mode: Mode,
    chmod: Option<u32>,
}

const BODY: &str = "body";
const TO: &str = "to";

/// A loaded generator folder, bound to a store.
pub struct Generator {
    store: Store,
    /// Template query results (L1 parsed, L2 rows), shared by all templates and runs.
    cache: Arc<TemplateCache>,
    name: String,
    templates: Vec<Template>,
    /// sha256 of every input file, by relative path.
    inputs: BTreeMap<String, String>,
}

/// What a run should do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Plan and diff only; write nothing (no files, no receipt).
    pub dry_run: bool,
    /// Overwrite files edited by hand since the last receipt.
    pub force: bool,
    /// Report drift (outputs missing or different from what a run would write, data or generator changed
    /// since the receipt); write nothing.
    pub check: bool,
}

/// What happened (or, for dry runs and checks, would happen) to one output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new file.
    Created,
    /// An existing file got new content (overwrite, merge or injection).
    Updated,
    /// The file already has exactly this content; it was not touched.
    Unchanged,
    /// Nothing written, on purpose.
    Skipped {
        /// Why (`skip_if`, `unless_exists`, `mode: create`, anchor not found, ...).
        reason: String,
    },
    /// Not written: the file was edited by hand since the last receipt; rerun with `force` to overwrite.
    Conflict {
        /// What differs.
        reason: String,
    },
}

/// One output of a run.
#[derive(Clone, Debug)]
pub struct OutputReport {
    /// Path relative to the output root, `/`-separated.
    pub path: String,
    /// The template that produced it.
    pub template: String,
    /// What happened.
    pub action: Action,
    /// Unified diff (old to new) for Created/Updated outputs of dry runs and checks.
    pub diff: Option<String>,
}

/// The result of [`Generator::run`].
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// The generator's name (its folder name).
    pub generator: String,
    /// Every output, in template then row order.
    pub outputs: Vec<OutputReport>,
    /// Reasons a `check` found drift; empty when outputs match the receipt and a run would write nothing.
    pub drift: Vec<String>,
    /// True when the receipt proved nothing changed (same data version, same generator files, every output
    /// on disk with its recorded hash), so nothing was rendered.
    pub fast_path: bool,
    /// Seconds spent running queries and rendering.
    pub render_seconds: f64,
    /// Seconds spent writing files and the receipt.
    pub write_seconds: f64,
    /// Total seconds.
    pub total_seconds: f64,
    /// Template query cache counters accumulated during this run (L1 parsed queries, L2 result rows; L3
    /// is unused). If the cache is shared with generators running concurrently, theirs are included.
    pub cache: CacheStats,
}

impl RunReport {
    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.outputs.iter().filter(|o| f(&o.action)).count()
    }
    /// Outputs created.
    pub fn created(&self) -> usize {
        self.count(|a| *a == Action::Created)
    }
    /// Outputs updated.
    pub fn updated(&self) -> usize {
        self.count(|a| *a == Action::Updated)
    }
    /// Outputs left as they were because they already had the right content.
    pub fn unchanged(&self) -> usize {
        self.count(|a| *a == Action::Unchanged)
    }
    /// Outputs skipped on purpose.
    pub fn skipped(&self) -> usize {
        self.count(|a| matches!(a, Action::Skipped { .. }))
    }
    /// Outputs not written because of hand edits.
    pub fn conflicts(&self) -> usize {
        self.count(|a| matches!(a, Action::Conflict { .. }))
    }
    /// Files written (or, for dry runs and checks, that would be written).
    pub fn written(&self) -> usize {
        self.created() + self.updated()
    }
    /// Compact cache counters: `cache L1 h/m, L2 h/m (NN% hits), E evicted`.
    pub fn cache_summary(&self) -> String {
        let c = &self.cache;
        format!(
            "cache L1 {}/{}, L2 {}/{} hit/miss ({:.0}% hits), {} evicted",
            c.l1.hits,
            c.l1.misses,
            c.l2.hits,
            c.l2.misses,
            100.0 * c.l2.hit_rate(),
            c.l1.evictions + c.l2.evictions
        )
    }

    /// One line: counts and time.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} outputs: {} created, {} updated, {} unchanged, {} skipped, {} conflicts in {:.3} s \
             (render {:.3} s, write {:.3} s{})",
            self.generator,
            self.outputs.len(),
            self.created(),
            self.updated(),
            self.unchanged(),
            self.skipped(),
            self.conflicts(),
            self.total_seconds,
            self.render_seconds,
            self.write_seconds,
            if self.fast_path {
                "; receipt up to date, nothing rendered"
            } else {
                ""
            }
        )
    }
}

/// The record of a run, stored under `generate/receipt/<generator>` with [`Store::app_put`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The generator's name.
    pub generator: String,
    /// The absolute output root of the run.
    pub root: String,
    /// [`Store::data_version`] the outputs were rendered from.
    pub data_version: u64,
    /// sha256 of every generator file, by path relative to the generator folder.
    pub inputs: BTreeMap<String, String>,
    /// sha256 of every output this generator owns, by path relative to the root.
    pub outputs: BTreeMap<String, String>,
    /// Targets that were skipped (`skip_if`, `unless_exists`, ...) with the sha256 they had (`None`: absent);
    /// a change to one of them means the skip decision must be made again.
    pub watched: BTreeMap<String, Option<String>>,
    /// No conflicts were left unresolved.
    pub clean: bool,
    /// Seconds since the Unix epoch when the run finished.
    pub written_at: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Splits `---\nYAML\n---\nbody` into (YAML, body, lines before the body).
fn split_frontmatter(text: &str) -> (Option<&str>, &str, usize) {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return (None, text, 0);
    };
    let mut pos = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            return (Some(&rest[..pos]), &rest[pos + line.len()..], i + 2);
        }
        pos += line.len();
    }
    (None, text, 0)
}

/// Every file under `dir` (dotfiles and dot-directories excluded), sorted, relative `/`-separated paths.
fn list_files(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(error::io(dir))?
        .collect::<std::io::Result<_>>()
        .map_err(error::io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let rel_path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if path.is_dir() {
            list_files(&path, &rel_path, out)?;
        } else {
            out.push((rel_path, path));
        }
    }
    Ok(())
}

impl Template {
    fn load(bound: &Bound, file: String, text: &str) -> Result<Template> {
        let (yaml, body, line_offset) = split_frontmatter(text);
        let raw: RawFrontmatter = match yaml {
            Some(y) if !y.trim().is_empty() => {
                serde_norway::from_str(y).map_err(|e| error::frontmatter(&file, e.to_string()))?
            }
            _ => RawFrontmatter::default(),
        };
        let queries = match raw.query {
            None => Vec::new(),
            Some(RawQuery::One(q)) => vec![("results".to_string(), q)],
            Some(RawQuery::Named(m)) => m.into_iter().collect(),
        };
        let for_each = match raw.for_each {
            None | Some(RawForEach::Flag(false)) => None,
            Some(RawForEach::Flag(true)) => match queries.as_slice() {
                [(name, _)] => Some(name.clone()),
                _ => return Err(error::frontmatter(
                    &file,
                    "`for_each: true` needs exactly one query; name the query to iterate instead",
                )),
            },
            Some(RawForEach::Name(n)) => {
                if !queries.iter().any(|(q, _)| *q == n) {
                    return Err(error::frontmatter(
                        &file,
                        format!("`for_each: {n}` names no query in `query:`"),
                    ));
                }
                Some(n)
            }
        };
        let regex = |key: &str, re: &str| {
            Regex::new(re).map_err(|e| error::frontmatter(&file, format!("`{key}:` regex: {e}")))
        };
        let skip_if = raw
            .skip_if
            .as_deref()
            .map(|r| regex("skip_if", r))
            .transpose()?;
        let anchors = [
            raw.before.is_some(),
            raw.after.is_some(),
            raw.append,
            raw.prepend,
            raw.at_line.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let inject = if raw.inject {
            if anchors != 1 {
                return Err(error::frontmatter(
                    &file,
                    "`inject: true` needs exactly one of `before:`, `after:`, `append: true`, `prepend: true`, `at_line:`",
                ));
            }
            Some(if let Some(r) = &raw.before {
                Anchor::Before(regex("before", r)?)
            } else if let Some(r) = &raw.after {
                Anchor::After(regex("after", r)?)
            } else if raw.append {
                Anchor::Append
            } else if raw.prepend {
                Anchor::Prepend
            } else {
                Anchor::AtLine(raw.at_line.unwrap_or(1))
            })
        } else {
            if anchors != 0 {
                return Err(error::frontmatter(
                    &file,
                    "`before:`/`after:`/`append:`/`prepend:`/`at_line:` only apply with `inject: true`",
                ));
            }
            None
        };
        let chmod = raw
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        error::frontmatter(
                            &file,
                            format!("`chmod: {m}` is not an octal mode like \"755\""),
                        )
                    })
            })
            .transpose()?;
        // Without `to:` the output mirrors the template's path minus a `.j2` / `.jinja` suffix.
        let to = raw.to.unwrap_or_else(|| {
            file.strip_suffix(".j2")
                .or_else(|| file.strip_suffix(".jinja"))
                .unwrap_or(&file)
                .to_string()
        });
        let html = {
            let t = to.trim_end_matches(['}', ' ', '"', '\'']);
            t.ends_with(".html") || t.ends_with(".htm")
        };
        let prefixes = Arc::new(Prefixes::new(&raw.prefixes));
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_auto_escape_callback(move |_| {
            if html {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .lstrip_blocks(true);
        env.set_syntax(syntax.build().map_err(|e| error::template(&file, 0, &e))?);
        functions::register(&mut env, bound, Arc::clone(&prefixes));
        env.add_template_owned(BODY, body.to_string())
            .map_err(|e| error::template(&file, line_offset, &e))?;
        env.add_template_owned(TO, to)
            .map_err(|e| error::frontmatter(&file, format!("`to:` template: {e}")))?;
        Ok(Template {
            file,
            env,
            line_offset,
            prefixes,
            queries,
            for_each,
            when: raw.when,
            skip_if,
            unless_exists: raw.unless_exists,
            inject,
            mode: raw.mode.unwrap_or_default(),
            chmod,
        })
    }

    fn render(&self, name: &str, ctx: &Value) -> Result<String> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| error::template(&self.file, self.line_offset, &e))?;
        t.render(ctx).map_err(|e| {
            if name == TO {
                error::frontmatter(&self.file, format!("`to:` template: {e}"))
            } else {
                error::template(&self.file, self.line_offset, &e)
            }
        })
    }
}

/// One planned output before writing.
struct Planned {
    report: OutputReport,
    abs: PathBuf,
    old: Option<Vec<u8>>,
    new: Option<String>,
    chmod: Option<u32>,
    /// Hash the receipt records for this path (owned outputs only).
    owned_hash: Option<String>,
}

impl Generator {
    /// Loads the generator folder `dir`: every non-hidden file under it is a template. The generator gets
    /// its own template query cache ([`TemplateCache`] with the default 64 MiB budget).
    pub fn new(store: &Store, dir: impl AsRef<Path>) -> Result<Generator> {
        Generator::with_cache(store, dir, Arc::new(TemplateCache::default()))
    }

    /// Like [`Generator::new`], with template query results cached in `cache` (which may be shared with
    /// other generators on the same store).
    pub fn with_cache(
        store: &Store,
        dir: impl AsRef<Path>,
        cache: Arc<TemplateCache>,
    ) -> Result<Generator> {
        let dir = dir.as_ref();
        let bound = Bound {
            store: store.clone(),
            cache: Arc::clone(&cache),
        };
        if !dir.is_dir() {
            return Err(GenerateError::Folder {
                dir: dir.to_path_buf(),
                message: "not a directory; pass the generator folder (one template per file)"
                    .into(),
            });
        }
        let name = std::fs::canonicalize(dir)
            .map_err(error::io(dir))?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "generator".into());
        let mut files = Vec::new();
        list_files(dir, "", &mut files)?;
        let mut templates = Vec::new();
        let mut inputs = BTreeMap::new();
        for (rel, path) in files {
            let bytes = std::fs::read(&path).map_err(error::io(&path))?;
            inputs.insert(rel.clone(), sha256_hex(&bytes));
            let Ok(text) = String::from_utf8(bytes) else {
                tracing::warn!(
                    "{}: not UTF-8 text, not a template; skipped",
                    path.display()
                );
                continue;
            };
            templates.push(Template::load(&bound, rel, &text)?);
        }
        if templates.is_empty() {
            return Err(GenerateError::Folder {
                dir: dir.to_path_buf(),
                message:
                    "holds no template; add files with YAML frontmatter (see README, Generation)"
                        .into(),
            });
        }
        Ok(Generator {
            store: store.clone(),
            cache,
            name,
            templates,
            inputs,
        })
    }

    /// The template query cache.
    pub fn cache(&self) -> &Arc<TemplateCache> {
        &self.cache
    }

    /// The generator's name (its folder name), which keys its receipt.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The receipt of the last (non-dry, non-check) run, if any.
    pub fn receipt(&self) -> Result<Option<Receipt>> {
        let key = format!("{RECEIPT_PREFIX}{}", self.name);
        let Some(bytes) = self
            .store
            .app_get(&key)
            .map_err(|e| GenerateError::Store(e.to_string()))?
        else {
            return Ok(None);
        };
        // An unreadable receipt (older format, corruption) only costs a full render; never fail for it.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Renders every output, then (unless `dry_run` or `check`) writes the changed ones under `out` and
    /// stores a receipt.
    pub fn run(&self, out: &Path, options: &RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let root = std::path::absolute(out).map_err(error::io(out))?;
        let canon_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
        let receipt = self.receipt()?;
        let data_version = self.store.data_version();
        let cache_before = self.cache.stats();
        let mut report = RunReport {
            generator: self.name.clone(),
            ..Default::default()
        };

        let current = receipt.as_ref().filter(|r| {
            r.data_version == data_version
                && r.inputs == self.inputs
                && r.root == canon_root.to_string_lossy()
        });
        if let Some(r) = current {
            if r.clean && self.outputs_match(&canon_root, r) {
                report.fast_path = true;
                report.outputs = r
                    .outputs
                    .keys()
                    .map(|p| OutputReport {
                        path: p.clone(),
                        template: String::new(),
                        action: Action::Unchanged,
                        diff: None,
                    })
                    .collect();
                report.total_seconds = started.elapsed().as_secs_f64();
                report.cache = self.cache.stats().since(&cache_before);
                return Ok(report);
            }
        }
        if options.check {
            match &receipt {
                None => report
                    .drift
                    .push("no receipt: the generator never ran".into()),
                Some(r) => {
                    if r.data_version != data_version {
                        report.drift.push(format!(
                            "store data changed since the receipt (version {} -> {data_version})",
                            r.data_version
                        ));
                    }
                    if r.inputs != self.inputs {
                        report
                            .drift
                            .push("generator files changed since the receipt".into());
                    }
                    if r.root != canon_root.to_string_lossy() {
                        report
                            .drift
                            .push(format!("the receipt is for output root {}", r.root));
                    }
                }
            }
        }

        let mut planned = Vec::new();
        let mut seen: HashMap<PathBuf, String> = HashMap::new();
        let mut pending: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        for t in &self.templates {
            self.plan_template(
                t,
                &canon_root,
                receipt.as_ref(),
                options,
                &mut planned,
                &mut seen,
                &mut pending,
            )?;
        }
        report.render_seconds = started.elapsed().as_secs_f64();

        let write_started = Instant::now();
        let writes = !options.dry_run && !options.check;
        for p in &mut planned {
            let changes = matches!(p.report.action, Action::Created | Action::Updated);
            if changes && !writes {
                let old = p
                    .old
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let new = p.new.as_deref().unwrap_or_default();
                p.report.diff = Some(
                    similar::TextDiff::from_lines(old.as_ref(), new)
                        .unified_diff()
                        .header(
                            &format!("a/{}", p.report.path),
                            &format!("b/{}", p.report.path),
                        )
                        .to_string(),
                );
            }
            if options.check {
                match &p.report.action {
                    Action::Created => report.drift.push(format!("{}: missing", p.report.path)),
                    Action::Updated => report.drift.push(format!(
                        "{}: differs from what the generator renders now",
                        p.report.path
                    )),
                    Action::Conflict { reason } => {
                        report.drift.push(format!("{}: {reason}", p.report.path))
                    }
                    _ => {}
                }
            }
            if changes && writes {
                if let (Some(parent), Some(new)) = (p.abs.parent(), &p.new) {
                    std::fs::create_dir_all(parent).map_err(error::io(parent))?;
                    std::fs::write(&p.abs, new).map_err(error::io(&p.abs))?;
                }
                #[cfg(unix)]
                if let Some(mode) = p.chmod {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&p.abs, std::fs::Permissions::from_mode(mode))
                        .map_err(error::io(&p.abs))?;
                }
            }
        }
        if writes {
            let mut next = Receipt {
                generator: self.name.clone(),
                root: canon_root.to_string_lossy().into_owned(),
                data_version,
                inputs: self.inputs.clone(),
                clean: true,
                written_at: webhooks::unix_now(),
                ..Default::default()
            };
            for p in &planned {
                match &p.report.action {
                    Action::Skipped { .. } => {
                        next.watched
                            .insert(p.report.path.clone(), p.old.as_deref().map(sha256_hex));
                    }
                    Action::Conflict { .. } => {
                        next.clean = false;
                        // Keep the old hash so the hand edit is still reported next time.
                        if let Some(h) =
                            receipt.as_ref().and_then(|r| r.outputs.get(&p.report.path))
                        {
                            next.outputs.insert(p.report.path.clone(), h.clone());
                        }
                    }
                    _ => {
                        if let Some(h) = &p.owned_hash {
                            next.outputs.insert(p.report.path.clone(), h.clone());
                        }
                    }
                }
            }
            if receipt.as_ref()
                != Some(&Receipt {
                    written_at: receipt.as_ref().map_or(0, |r| r.written_at),
                    ..next.clone()
                })
            {
                let json =
                    serde_json::to_vec(&next).map_err(|e| GenerateError::Store(e.to_string()))?;
                self.store
                    .app_put(&format!("{RECEIPT_PREFIX}{}", self.name), Some(&json))
                    .map_err(|e| GenerateError::Store(e.to_string()))?;
            }
        }
        report.write_seconds = write_started.elapsed().as_secs_f64();
        report.outputs = planned.into_iter().map(|p| p.report).collect();
        report.total_seconds = started.elapsed().as_secs_f64();
        report.cache = self.cache.stats().since(&cache_before);
        Ok(report)
    }

    /// The store and cache, as the query helpers take them.
    fn bound(&self) -> Bound {
        Bound {
            store: self.store.clone(),
            cache: Arc::clone(&self.cache),
        }
    }

    /// True if every owned output and watched target on disk has the hash the receipt recorded.
    fn outputs_match(&self, root: &Path, r: &Receipt) -> bool {
        let hash_of = |p: &str| std::fs::read(root.join(p)).ok().map(|b| sha256_hex(&b));
        r.outputs
            .iter()
            .all(|(p, h)| hash_of(p).as_ref() == Some(h))
            && r.watched.iter().all(|(p, h)| hash_of(p) == *h)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_template(
        &self,
        t: &Template,
        root: &Path,
        receipt: Option<&Receipt>,
        options: &RunOptions,
        planned: &mut Vec<Planned>,
        seen: &mut HashMap<PathBuf, String>,
        pending: &mut HashMap<PathBuf, Vec<u8>>,
    ) -> Result<()> {
        if let Some(q) = &t.when {
            let ok = match run_query(&self.bound(), &t.prefixes, q, None).as_deref() {
                Ok(QueryValue::Boolean(b)) => *b,
                Ok(QueryValue::Rows(rows)) => !rows.is_empty(),
                Err(message) => {
                    return Err(GenerateError::Query {
                        file: t.file.clone(),
                        name: "when".into(),
                        message: message.to_string(),
                    })
                }
            };
            if !ok {
                return Ok(());
            }
        }
        let mut base: Vec<(String, Value)> = vec![
            ("generator".into(), Value::from(self.name.clone())),
            (
                "data_version".into(),
                Value::from(self.store.data_version()),
            ),
        ];
        let mut rows_to_iterate = None;
        for (name, q) in &t.queries {
            let v = run_query(&self.bound(), &t.prefixes, q, None).map_err(|message| {
                GenerateError::Query {
                    file: t.file.clone(),
                    name: name.clone(),
                    message,
                }
            })?;
            if t.for_each.as_deref() == Some(name.as_str()) {
                match v.as_ref() {
                    QueryValue::Rows(rows) => rows_to_iterate = Some(rows.clone()),
                    QueryValue::Boolean(_) => {
                        return Err(error::frontmatter(
                            &t.file,
                            format!(
                                "`for_each: {name}` needs a SELECT or CONSTRUCT query, not ASK"
                            ),
                        ))
                    }
                }
            }
            base.push((name.clone(), v.to_value()));
        }
        let contexts: Vec<Value> = match rows_to_iterate {
            None => vec![Value::from_pairs(base)],
            Some(rows) => rows
                .into_iter()
                .map(|row| {
                    let mut ctx = base.clone();
                    if let Ok(keys) = row.try_iter() {
                        for k in keys {
                            if let (Some(key), Ok(v)) = (k.as_str(), row.get_item(&k)) {
                                ctx.push((key.to_string(), v));
                            }
                        }
                    }
                    ctx.push(("row".into(), row));
                    Value::from_pairs(ctx)
                })
                .collect(),
        };
        for ctx in contexts {
            let p = self.plan_output(t, root, receipt, options, &ctx, seen, pending)?;
            // Later injections into the same file build on this one's result.
            if let Some(new) = &p.new {
                pending.insert(p.abs.clone(), new.clone().into_bytes());
            }
            planned.push(p);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_output(
        &self,
        t: &Template,
        root: &Path,
        receipt: Option<&Receipt>,
        options: &RunOptions,
        ctx: &Value,
        seen: &mut HashMap<PathBuf, String>,
        pending: &HashMap<PathBuf, Vec<u8>>,
    ) -> Result<Planned> {
        let to = t.render(TO, ctx)?;
        let escapes = || GenerateError::PathEscapes {
            file: t.file.clone(),
            path: to.clone(),
        };
        let rel = apply::normalize(&to).ok_or_else(escapes)?;
        let abs = root.join(&rel);
        // A symlink inside the root may point outside it: resolve the deepest existing ancestor.
        if let Some(existing) = abs.ancestors().find(|a| a.exists()) {
            if let Ok(c) = std::fs::canonicalize(existing) {
                if !c.starts_with(root) && root.exists() {
                    return Err(escapes());
                }
            }
        }
        let path = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        // Injections may share a target (several snippets into one file); whole-file outputs may not.
        if t.inject.is_none() {
            if let Some(first) = seen.insert(rel.clone(), t.file.clone()) {
                return Err(GenerateError::DuplicateOutput {
                    path,
                    first,
                    second: t.file.clone(),
                });
            }
        }
        let old = match pending
            .get(&abs)
            .cloned()
            .map(Ok)
            .unwrap_or_else(|| std::fs::read(&abs))
        {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(GenerateError::Io {
                    path: abs,
                    source: e,
                })
            }
        };
        let mut planned = Planned {
            report: OutputReport {
                path: path.clone(),
                template: t.file.clone(),
                action: Action::Unchanged,
                diff: None,
            },
            abs,
            old,
            new: None,
            chmod: t.chmod,
            owned_hash: None,
        };
        let skip = |p: &mut Planned, reason: String| {
            p.report.action = Action::Skipped { reason };
        };
        let old_text = planned
            .old
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        if let (Some(re), Some(old)) = (&t.skip_if, &old_text) {
            if re.is_match(old) {
                skip(&mut planned, format!("skip_if /{}/ matched", re.as_str()));
                return Ok(planned);
            }
        }
        if t.unless_exists && old_text.is_some() {
            skip(&mut planned, "unless_exists: the target exists".into());
            return Ok(planned);
        }
        let body = t.render(BODY, ctx)?;
        let new = if let Some(anchor) = &t.inject {
            let Some(old) = &old_text else {
                skip(&mut planned, "inject: the target does not exist".into());
                return Ok(planned);
            };
            match apply::inject(old, &body, anchor) {
                Injected::AlreadyPresent => old.clone(),
                Injected::AnchorNotFound => {
                    skip(&mut planned, "inject: the anchor matched no line".into());
                    return Ok(planned);
                }
                Injected::Text(t) => t,
            }
        } else {
            match (t.mode, &old_text) {
                (_, None) => body,
                (Mode::Create, Some(_)) => {
                    skip(&mut planned, "mode: create and the target exists".into());
                    return Ok(planned);
                }
                (Mode::Merge, Some(old)) => match apply::merge(old, &body) {
                    Some(m) => m,
                    None => {
                        skip(
                            &mut planned,
                            "merge: no tern:begin/tern:end markers in the target".into(),
                        );
                        return Ok(planned);
                    }
                },
                (Mode::Overwrite, Some(_)) => body,
            }
        };
        let new_hash = sha256_hex(new.as_bytes());
        planned.owned_hash = Some(new_hash);
        planned.report.action = match &planned.old {
            None => Action::Created,
            Some(old) if old.as_slice() == new.as_bytes() => Action::Unchanged,
            Some(old) => {
                // Only whole-file overwrites can clobber hand edits; merge and inject keep the rest.
                let recorded = receipt.and_then(|r| r.outputs.get(&path));
                let hand_edited = t.inject.is_none()
                    && t.mode == Mode::Overwrite
                    && recorded != Some(&sha256_hex(old));
                if hand_edited && !options.force {
                    Action::Conflict {
                        reason: match recorded {
                            Some(_) => "edited by hand since the last run; rerun with --force to overwrite".into(),
                            None => "exists and was not written by this generator; rerun with --force to overwrite".into(),
                        },
                    }
                } else {
                    Action::Updated
                }
            }
        };
        planned.new = Some(new);
        Ok(planned)
    }
}
