//! Shared by the W3C manifest-driven harnesses (`w3c_sparql.rs`, `w3c_protocol.rs`): suite paths, RDF
//! parsing of suite files, manifest reading (`mf:include` / `mf:entries` walking), panic capture and the
//! pass / fail / skip tally with its report.
//!
//! Each harness includes this with `mod common;`; not every harness uses every item.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use oxrdf::{GraphName, NamedNode, NamedOrBlankNode, Quad, Term};
use oxrdfio::{RdfFormat, RdfParser};

pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
pub const RDFS: &str = "http://www.w3.org/2000/01/rdf-schema#";
pub const MF: &str = "http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#";
pub const QT: &str = "http://www.w3.org/2001/sw/DataAccess/tests/test-query#";
pub const UT: &str = "http://www.w3.org/2009/sparql/tests/test-update#";
pub const DAWGT: &str = "http://www.w3.org/2001/sw/DataAccess/tests/test-dawg#";

/// IRI prefixes used by the manifests and the folders (below `../shared/rdf-tests`) they stand for.
pub const PREFIXES: &[(&str, &str)] = &[
    (
        "http://www.w3.org/2009/sparql/docs/tests/data-sparql11/",
        "sparql/sparql11/",
    ),
    (
        "http://www.w3.org/2001/sw/DataAccess/tests/data-r2/",
        "sparql/sparql10/",
    ),
    ("https://w3c.github.io/rdf-tests/", ""),
];

pub fn rdf_tests_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rdf-tests")
}

/// The local file of a test-suite IRI, if the IRI is inside the suite.
pub fn local_path(iri: &str) -> Option<PathBuf> {
    let iri = iri.split('#').next().unwrap_or(iri);
    PREFIXES.iter().find_map(|(prefix, dir)| {
        iri.strip_prefix(prefix)
            .map(|rest| rdf_tests_root().join(dir).join(rest))
    })
}

pub fn read_text(iri: &str) -> Result<String, String> {
    let path = local_path(iri).ok_or_else(|| format!("{iri} is not a test-suite file"))?;
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn rdf_format_of(iri: &str) -> Result<RdfFormat, String> {
    let ext = iri.rsplit('.').next().unwrap_or_default();
    RdfFormat::from_extension(ext).ok_or_else(|| format!("unknown RDF syntax of {iri}"))
}

/// Parses a suite file with base IRI = its own IRI and blank nodes renamed apart.
pub fn parse_rdf(iri: &str, graph: GraphName) -> Result<Vec<Quad>, String> {
    let path = local_path(iri).ok_or_else(|| format!("{iri} is not a test-suite file"))?;
    let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    RdfParser::from_format(rdf_format_of(iri)?)
        .with_base_iri(iri)
        .map_err(|e| e.to_string())?
        .with_default_graph(graph)
        .rename_blank_nodes()
        .for_reader(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{iri}: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Manifests

/// The triples of one manifest file, by subject.
pub struct ManifestFile {
    pub triples: HashMap<NamedOrBlankNode, Vec<(NamedNode, Term)>>,
}

impl ManifestFile {
    pub fn load(iri: &str) -> Result<ManifestFile, String> {
        let mut triples: HashMap<NamedOrBlankNode, Vec<(NamedNode, Term)>> = HashMap::new();
        for q in parse_rdf(iri, GraphName::DefaultGraph)? {
            triples
                .entry(q.subject)
                .or_default()
                .push((q.predicate, q.object));
        }
        Ok(ManifestFile { triples })
    }

    pub fn objects(&self, s: &NamedOrBlankNode, p: &str) -> Vec<Term> {
        self.triples
            .get(s)
            .map(|v| {
                v.iter()
                    .filter(|(q, _)| q.as_str() == p)
                    .map(|(_, o)| o.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn object(&self, s: &NamedOrBlankNode, p: &str) -> Option<Term> {
        self.objects(s, p).into_iter().next()
    }

    pub fn iri(&self, s: &NamedOrBlankNode, p: &str) -> Option<String> {
        match self.object(s, p) {
            Some(Term::NamedNode(n)) => Some(n.into_string()),
            _ => None,
        }
    }

    pub fn iris(&self, s: &NamedOrBlankNode, p: &str) -> Vec<String> {
        self.objects(s, p)
            .into_iter()
            .filter_map(|t| match t {
                Term::NamedNode(n) => Some(n.into_string()),
                _ => None,
            })
            .collect()
    }

    pub fn literal(&self, s: &NamedOrBlankNode, p: &str) -> Option<String> {
        match self.object(s, p) {
            Some(Term::Literal(l)) => Some(l.value().to_owned()),
            _ => None,
        }
    }

    pub fn list(&self, head: Option<Term>) -> Vec<Term> {
        let mut out = Vec::new();
        let mut node = head;
        while let Some(Term::BlankNode(b)) = node {
            let b: NamedOrBlankNode = b.into();
            if let Some(first) = self.object(&b, &format!("{RDF}first")) {
                out.push(first);
            }
            node = self.object(&b, &format!("{RDF}rest"));
        }
        out
    }

    pub fn node(t: Term) -> Option<NamedOrBlankNode> {
        match t {
            Term::NamedNode(n) => Some(n.into()),
            Term::BlankNode(b) => Some(b.into()),
            _ => None,
        }
    }
}

/// A named graph to load: (graph IRI, file IRI).
pub type GraphData = (String, String);

/// `ut:graphData` / `qt:graphData`: an IRI (named by itself) or a node with `ut:graph` + `rdfs:label`.
pub fn graph_data(m: &ManifestFile, node: &NamedOrBlankNode, p: &str) -> Vec<GraphData> {
    m.objects(node, p)
        .into_iter()
        .filter_map(|t| match t {
            Term::NamedNode(n) => Some((n.as_str().to_owned(), n.into_string())),
            Term::BlankNode(b) => {
                let b: NamedOrBlankNode = b.into();
                let file = m
                    .iri(&b, &format!("{UT}graph"))
                    .or_else(|| m.iri(&b, &format!("{QT}graph")))?;
                let name = m
                    .literal(&b, &format!("{RDFS}label"))
                    .unwrap_or(file.clone());
                Some((name, file))
            }
            _ => None,
        })
        .collect()
}

/// Called per manifest with its IRI, its triples and its entries.
pub type ManifestVisitor<'a> = dyn FnMut(&str, &ManifestFile, Vec<Term>) -> Result<(), String> + 'a;

/// Walks the manifest `iri` and, depth first, every manifest it includes (`mf:include`, each file once),
/// calling `visit(manifest IRI, manifest, entries)` for every manifest with a non-empty `mf:entries` list —
/// included manifests before the including one.
pub fn walk_manifests(
    iri: &str,
    seen_manifests: &mut HashSet<String>,
    visit: &mut ManifestVisitor<'_>,
) -> Result<(), String> {
    if !seen_manifests.insert(iri.to_owned()) {
        return Ok(());
    }
    let m = ManifestFile::load(iri)?;
    // The manifest node: `<>` in most files, a blank node (`[] a mf:Manifest`) in some SPARQL 1.0 ones.
    let me: NamedOrBlankNode = NamedNode::new(iri).map_err(|e| e.to_string())?.into();
    let mut nodes = vec![me.clone()];
    let manifest_type = Term::from(NamedNode::new_unchecked(format!("{MF}Manifest")));
    let mut typed: Vec<&NamedOrBlankNode> = m
        .triples
        .iter()
        .filter(|(s, po)| {
            **s != me
                && po
                    .iter()
                    .any(|(p, o)| p.as_str() == format!("{RDF}type") && *o == manifest_type)
        })
        .map(|(s, _)| s)
        .collect();
    typed.sort_by_key(|s| s.to_string());
    nodes.extend(typed.into_iter().cloned());
    for node in &nodes {
        for inc in m.list(m.object(node, &format!("{MF}include"))) {
            if let Term::NamedNode(n) = inc {
                walk_manifests(n.as_str(), seen_manifests, visit)?;
            }
        }
    }
    let entries: Vec<Term> = nodes
        .iter()
        .flat_map(|node| m.list(m.object(node, &format!("{MF}entries"))))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    visit(iri, &m, entries)
}

/// The test IRI of a manifest entry: its IRI, or `manifest#_:label` for a blank node.
pub fn entry_iri(manifest_iri: &str, node: &NamedOrBlankNode) -> String {
    match node {
        NamedOrBlankNode::NamedNode(n) => n.as_str().to_owned(),
        NamedOrBlankNode::BlankNode(b) => format!("{manifest_iri}#_:{}", b.as_str()),
    }
}

/// The last segment (after `#` or `/`) of an IRI, or "" for `None`.
pub fn local_name(iri: Option<String>) -> String {
    iri.map(|s| s.rsplit(['#', '/']).next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// A group name for a manifest IRI: its path below `sparql/`, without `/manifest.ttl` or `.ttl`.
pub fn group_name(manifest_iri: &str) -> String {
    let mut rel = manifest_iri.to_owned();
    for (prefix, dir) in PREFIXES {
        if let Some(rest) = manifest_iri.strip_prefix(prefix) {
            rel = format!("{dir}{rest}");
            break;
        }
    }
    let rel = rel.strip_prefix("sparql/").unwrap_or(&rel);
    rel.strip_suffix("/manifest.ttl")
        .unwrap_or(rel)
        .trim_end_matches(".ttl")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------------
// Text helpers

/// Replaces blank node labels (`_:xyz`) by `_:` so diffs are not polluted by labels.
pub fn blank_bnodes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    let mut in_string = false;
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' && prev != '\\' {
            in_string = !in_string;
        }
        if !in_string && c == '_' && chars.peek() == Some(&':') {
            out.push(chars.next().unwrap_or(':'));
            while chars
                .peek()
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
            {
                chars.next();
            }
        }
        prev = c;
    }
    out
}

pub fn truncate(s: String) -> String {
    if s.chars().count() > 300 {
        format!("{}...", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------------------
// Running tests

pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs a panic hook that records the message and location for `run_caught` (instead of printing).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default(),
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// Runs a test, turning a panic into a failure that quotes it.
pub fn run_caught(run: impl FnOnce() -> Outcome) -> Outcome {
    PANIC.with(|p| p.borrow_mut().take());
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Fail(format!(
            "panicked: {}",
            PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "?".into())
        )),
    }
}

/// Arguments that do not start with `--`: only tests whose IRI contains one of them run.
pub fn filters() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// Pass / fail / skip counts against a `SKIP` list, and the report.
pub struct Tally {
    skip_list: &'static [(&'static str, &'static str)],
    skip: HashMap<&'static str, &'static str>,
    used_skips: BTreeSet<&'static str>,
    failures: Vec<String>,
    stale: Vec<String>,
    skip_reasons: BTreeMap<String, usize>,
    group: (usize, usize, usize),
    total: (usize, usize, usize),
}

impl Tally {
    pub fn new(skip: &'static [(&'static str, &'static str)]) -> Tally {
        Tally {
            skip_list: skip,
            skip: skip.iter().copied().collect(),
            used_skips: BTreeSet::new(),
            failures: Vec::new(),
            stale: Vec::new(),
            skip_reasons: BTreeMap::new(),
            group: (0, 0, 0),
            total: (0, 0, 0),
        }
    }

    /// Records one test; `title` heads its failure report (`IRI (name, kind)`).
    pub fn record(&mut self, iri: &str, title: &str, outcome: Outcome) {
        match outcome {
            Outcome::Pass => {
                self.group.0 += 1;
                if self.skip.contains_key(iri) {
                    self.stale.push(iri.to_owned());
                }
            }
            Outcome::Skip(reason) => {
                self.group.2 += 1;
                *self.skip_reasons.entry(reason).or_insert(0) += 1;
            }
            Outcome::Fail(e) => {
                if let Some((&listed, reason)) = self.skip.get_key_value(iri) {
                    self.used_skips.insert(listed);
                    self.group.2 += 1;
                    *self
                        .skip_reasons
                        .entry(format!("SKIP: {reason}"))
                        .or_insert(0) += 1;
                } else {
                    self.group.1 += 1;
                    self.failures
                        .push(format!("FAILED {title}\n  {}", e.replace('\n', "\n  ")));
                }
            }
        }
    }

    /// Prints `name: N passed, M failed, K skipped` for the tests recorded since the last call.
    pub fn end_group(&mut self, name: &str) {
        let (passed, failed, skipped) = std::mem::take(&mut self.group);
        println!("{name}: {passed} passed, {failed} failed, {skipped} skipped");
        self.total.0 += passed;
        self.total.1 += failed;
        self.total.2 += skipped;
    }

    /// Prints the failures, SKIP entries that pass, and (unfiltered runs) SKIP entries naming no test.
    pub fn print_failures(&self, seen_tests: &HashSet<String>, filtered: bool) {
        for f in &self.failures {
            println!("{f}");
        }
        for s in &self.stale {
            println!("note: {s} is in SKIP but passes; remove it from the list");
        }
        if !filtered {
            for (iri, _) in self.skip_list {
                if !seen_tests.contains(*iri) {
                    println!("note: SKIP entry {iri} names no test in the manifests");
                }
            }
        }
    }

    /// Prints skip reasons and the final `N passed, M failed` line; exits 1 on any failure.
    pub fn finish(self) -> ! {
        for (reason, n) in &self.skip_reasons {
            println!("skipped {n}: {reason}");
        }
        println!(
            "({} skipped, {} of them via SKIP)",
            self.total.2,
            self.used_skips.len()
        );
        println!("{} passed, {} failed", self.total.0, self.total.1);
        std::process::exit(if self.total.1 > 0 { 1 } else { 0 })
    }
}
