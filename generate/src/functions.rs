//! The template functions and filters bound to the store: `sparql`, `sparql_first`, `ask`, `count`, `label`,
//! `local_name`, `compact`, `expand` and the case filters.

use std::collections::BTreeMap;
use std::sync::Arc;

use heck::{ToKebabCase, ToLowerCamelCase, ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use minijinja::{Environment, Error, ErrorKind, Value};
use oxrdf::Term;
use tern_query::cache::{ResultKey, ValueCache};
use tern_query::{Query, QueryOptions, QueryResults};
use tern_store::Store;

/// The cache of template query results: L1 parsed queries and L2 converted rows keyed by (query text with
/// its prefix prologue, store data version), under a byte budget. One is held by each [`crate::Generator`]
/// and shared by all its templates and runs; pass the same one to several generators with
/// [`crate::Generator::with_cache`].
pub type TemplateCache = ValueCache<QueryValue>;

/// The store and the result cache the template functions use.
#[derive(Clone)]
pub(crate) struct Bound {
    pub(crate) store: Store,
    pub(crate) cache: Arc<TemplateCache>,
}

/// Prefixes every template knows besides [`tern_loaders::WELL_KNOWN_PREFIXES`]; a template's `prefixes:`
/// map adds to (and overrides) both.
pub const MORE_PREFIXES: &[(&str, &str)] = &[
    ("dc", "http://purl.org/dc/elements/1.1/"),
    ("foaf", "http://xmlns.com/foaf/0.1/"),
    ("schema", "https://schema.org/"),
    ("prov", "http://www.w3.org/ns/prov#"),
    ("sh", "http://www.w3.org/ns/shacl#"),
];

/// A template's prefix map (defaults plus its `prefixes:`), with the SPARQL prologue built once.
#[derive(Debug)]
pub(crate) struct Prefixes {
    map: BTreeMap<String, String>,
    prologue: String,
}

impl Prefixes {
    pub(crate) fn new(extra: &BTreeMap<String, String>) -> Prefixes {
        let mut map: BTreeMap<String, String> = tern_loaders::WELL_KNOWN_PREFIXES
            .iter()
            .chain(MORE_PREFIXES)
            .map(|(p, i)| (p.to_string(), i.to_string()))
            .collect();
        map.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        let prologue = map
            .iter()
            .map(|(p, i)| format!("PREFIX {p}: <{i}>\n"))
            .collect();
        Prefixes { map, prologue }
    }

    /// The query text with the prefix declarations in front, so templates can write `rdfs:label` without a
    /// PREFIX line (a PREFIX in the query itself overrides, since later declarations win).
    pub(crate) fn with_prologue(&self, query: &str) -> String {
        format!("{}{query}", self.prologue)
    }

    fn compact(&self, iri: &str) -> String {
        self.map
            .iter()
            .filter(|(_, ns)| iri.starts_with(ns.as_str()) && iri.len() > ns.len())
            .max_by_key(|(_, ns)| ns.len())
            .map(|(p, ns)| format!("{p}:{}", &iri[ns.len()..]))
            .unwrap_or_else(|| iri.to_string())
    }

    fn expand(&self, curie: &str) -> String {
        match curie.split_once(':') {
            Some((p, local)) if !local.starts_with("//") => match self.map.get(p) {
                Some(ns) => format!("{ns}{local}"),
                None => curie.to_string(),
            },
            _ => curie.to_string(),
        }
    }
}

/// The string a template sees for a term: the IRI, the literal's lexical form or the blank node id.
pub(crate) fn term_value(term: &Term) -> String {
    match term {
        Term::NamedNode(n) => n.as_str().to_string(),
        Term::BlankNode(b) => b.as_str().to_string(),
        Term::Literal(l) => l.value().to_string(),
        #[allow(unreachable_patterns)]
        other => other.to_string(),
    }
}

/// The `<var>_term` detail map: `value`, `kind` (iri | bnode | literal | triple), `datatype`, `lang`.
fn term_detail(term: &Term) -> Value {
    let (kind, datatype, lang) = match term {
        Term::NamedNode(_) => ("iri", None, None),
        Term::BlankNode(_) => ("bnode", None, None),
        Term::Literal(l) => (
            "literal",
            Some(l.datatype().as_str().to_string()),
            l.language().map(str::to_string),
        ),
        #[allow(unreachable_patterns)]
        _ => ("triple", None, None),
    };
    Value::from_pairs([
        ("value", Value::from(term_value(term))),
        ("kind", Value::from(kind)),
        ("datatype", Value::from(datatype)),
        ("lang", Value::from(lang)),
    ])
}

/// One result row: `var -> string value` plus `var_term -> detail map`; unbound variables are absent.
pub(crate) fn row_value<'a>(bindings: impl Iterator<Item = (&'a str, &'a Term)>) -> Value {
    let mut pairs = Vec::new();
    for (name, term) in bindings {
        pairs.push((name.to_string(), Value::from(term_value(term))));
        pairs.push((format!("{name}_term"), term_detail(term)));
    }
    Value::from_pairs(pairs)
}

/// What a template query produced, converted once to template values (and cached as such).
#[derive(Debug)]
pub enum QueryValue {
    /// SELECT rows or CONSTRUCT triples (`subject`, `predicate`, `object`).
    Rows(Vec<Value>),
    /// ASK.
    Boolean(bool),
}

impl QueryValue {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            QueryValue::Rows(rows) => Value::from(rows.clone()),
            QueryValue::Boolean(b) => Value::from(*b),
        }
    }
}

/// Rough bytes a converted binding takes (strings twice: value and detail map; plus map overhead), the
/// weight charged against the cache budget.
fn binding_size(name: &str, term: &Term) -> usize {
    let len = match term {
        Term::NamedNode(n) => n.as_str().len(),
        Term::BlankNode(b) => b.as_str().len(),
        Term::Literal(l) => l.value().len() + l.datatype().as_str().len(),
        #[allow(unreachable_patterns)]
        _ => 64,
    };
    2 * (name.len() + len) + 192
}

/// Runs a query (prefixes prepended) through the cache: L2 by (full text, limit) at the store's current
/// data version, else L1-parsed and evaluated, converted and cached. `limit` stops after that many rows.
pub(crate) fn run_query(
    bound: &Bound,
    prefixes: &Prefixes,
    text: &str,
    limit: Option<usize>,
) -> Result<Arc<QueryValue>, String> {
    let full = prefixes.with_prologue(text);
    // Taken before the snapshot: results cached under it are at least this new, and a later commit moves
    // the version on, so they are never served for newer data.
    let version = bound.store.data_version();
    let format = match limit {
        Some(n) => format!("generate/rows/{n}"),
        None => "generate/rows".to_string(),
    };
    let key = ResultKey::new(&full, None, None, None, &format);
    if let Some(v) = bound.cache.get(&key, version) {
        return Ok(v);
    }
    let (value, size) = evaluate(bound, &full, limit)?;
    Ok(bound.cache.put(key, version, size, value))
}

/// Evaluates `full` (L1-parsed) and converts its results; returns them and their estimated size.
fn evaluate(
    bound: &Bound,
    full: &str,
    limit: Option<usize>,
) -> Result<(QueryValue, usize), String> {
    let parsed = bound.cache.parse(full, None).map_err(|e| e.to_string())?;
    let results = tern_query::query_parsed(
        &bound.store,
        Query::clone(&parsed),
        &QueryOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut size = 64;
    Ok(match results {
        QueryResults::Boolean(b) => (QueryValue::Boolean(b), size),
        QueryResults::Solutions(solutions) => {
            let mut rows = Vec::new();
            for s in solutions {
                if rows.len() >= limit {
                    break;
                }
                let s = s.map_err(|e| e.to_string())?;
                let bindings = s
                    .variables()
                    .iter()
                    .zip(s.values())
                    .filter_map(|(v, t)| t.as_ref().map(|t| (v.as_str(), t)));
                size += 64
                    + bindings
                        .clone()
                        .map(|(n, t)| binding_size(n, t))
                        .sum::<usize>();
                rows.push(row_value(bindings));
            }
            (QueryValue::Rows(rows), size)
        }
        QueryResults::Graph(triples) => {
            let mut rows = Vec::new();
            for t in triples {
                if rows.len() >= limit {
                    break;
                }
                let t = t.map_err(|e| e.to_string())?;
                let subject: Term = t.subject.into();
                let predicate: Term = t.predicate.into();
                let bindings = [
                    ("subject", &subject),
                    ("predicate", &predicate),
                    ("object", &t.object),
                ];
                size += 64
                    + bindings
                        .iter()
                        .map(|(n, t)| binding_size(n, t))
                        .sum::<usize>();
                rows.push(row_value(bindings.into_iter()));
            }
            (QueryValue::Rows(rows), size)
        }
    })
}

fn template_error(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// The part of an IRI after its last `#`, `/` or `:`.
pub fn local_name(iri: &str) -> &str {
    let trimmed = iri.trim_end_matches(['/', '#']);
    match trimmed.rfind(['#', '/', ':']) {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

const LABEL_PREDICATES: &[&str] = &[
    "http://www.w3.org/2000/01/rdf-schema#label",
    "http://www.w3.org/2004/02/skos/core#prefLabel",
    "http://purl.org/dc/terms/title",
];

/// rdfs:label, else skos:prefLabel, else dcterms:title (an English or untagged one preferred), else the
/// local name. Cached as one entry per IRI and data version.
fn label(bound: &Bound, prefixes: &Prefixes, iri: &str) -> Result<String, Error> {
    let iri = prefixes.expand(iri);
    // A term that is not a valid IRI cannot be put in a query; its local name is the best label.
    if oxrdf::NamedNode::new(iri.as_str()).is_err() {
        return Ok(local_name(&iri).to_string());
    }
    let version = bound.store.data_version();
    let key = ResultKey::new(&iri, None, None, None, "generate/label");
    if let Some(v) = bound.cache.get(&key, version) {
        if let QueryValue::Rows(rows) = v.as_ref() {
            if let Some(l) = rows.first().and_then(|l| l.as_str()) {
                return Ok(l.to_string());
            }
        }
    }
    let l = find_label(bound, &iri)?;
    bound.cache.put(
        key,
        version,
        128 + 2 * l.len(),
        QueryValue::Rows(vec![Value::from(l.clone())]),
    );
    Ok(l)
}

/// The uncached lookup behind [`label`].
fn find_label(bound: &Bound, iri: &str) -> Result<String, Error> {
    for p in LABEL_PREDICATES {
        let q = format!("SELECT ?l WHERE {{ <{iri}> <{p}> ?l }}");
        let parsed = bound
            .cache
            .parse(&q, None)
            .map_err(|e| template_error(format!("label({iri}): {e}")))?;
        let results = tern_query::query_parsed(
            &bound.store,
            Query::clone(&parsed),
            &QueryOptions::default(),
        )
        .map_err(|e| template_error(format!("label({iri}): {e}")))?;
        let QueryResults::Solutions(solutions) = results else {
            continue;
        };
        let mut best: Option<(u8, String)> = None;
        for s in solutions {
            let s = s.map_err(|e| template_error(format!("label({iri}): {e}")))?;
            if let Some(Some(Term::Literal(l))) = s.values().first() {
                let rank = match l.language() {
                    None => 0,
                    Some(lang) if lang.starts_with("en") => 1,
                    Some(_) => 2,
                };
                if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                    best = Some((rank, l.value().to_string()));
                }
            }
        }
        if let Some((_, l)) = best {
            return Ok(l);
        }
    }
    Ok(local_name(iri).to_string())
}

/// Registers the store-bound functions and the filters on a template's environment.
pub(crate) fn register(env: &mut Environment<'static>, bound: &Bound, prefixes: Arc<Prefixes>) {
    {
        let (bound, prefixes) = (bound.clone(), Arc::clone(&prefixes));
        env.add_function("sparql", move |q: String| -> Result<Value, Error> {
            run_query(&bound, &prefixes, &q, None)
                .map(|v| v.to_value())
                .map_err(|e| template_error(format!("sparql(): {e}")))
        });
    }
    {
        let (bound, prefixes) = (bound.clone(), Arc::clone(&prefixes));
        env.add_function("sparql_first", move |q: String| -> Result<Value, Error> {
            match run_query(&bound, &prefixes, &q, Some(1)).as_deref() {
                Ok(QueryValue::Rows(rows)) => Ok(rows.first().cloned().unwrap_or(Value::from(()))),
                Ok(QueryValue::Boolean(b)) => Ok(Value::from(*b)),
                Err(e) => Err(template_error(format!("sparql_first(): {e}"))),
            }
        });
    }
    {
        let (bound, prefixes) = (bound.clone(), Arc::clone(&prefixes));
        env.add_function("ask", move |q: String| -> Result<bool, Error> {
            match run_query(&bound, &prefixes, &q, None).as_deref() {
                Ok(QueryValue::Boolean(b)) => Ok(*b),
                Ok(QueryValue::Rows(rows)) => Ok(!rows.is_empty()),
                Err(e) => Err(template_error(format!("ask(): {e}"))),
            }
        });
    }
    {
        let (bound, prefixes) = (bound.clone(), Arc::clone(&prefixes));
        env.add_function("count", move |q: String| -> Result<usize, Error> {
            match run_query(&bound, &prefixes, &q, None).as_deref() {
                Ok(QueryValue::Boolean(b)) => Ok(usize::from(*b)),
                Ok(QueryValue::Rows(rows)) => Ok(rows.len()),
                Err(e) => Err(template_error(format!("count(): {e}"))),
            }
        });
    }
    {
        let (bound, prefixes) = (bound.clone(), Arc::clone(&prefixes));
        let f = move |term: String| -> Result<String, Error> { label(&bound, &prefixes, &term) };
        env.add_function("label", f.clone());
        env.add_filter("label", f);
    }
    let ln = |iri: String| -> String { local_name(&iri).to_string() };
    env.add_function("local_name", ln);
    env.add_filter("local_name", ln);
    {
        let p = Arc::clone(&prefixes);
        let f = move |iri: String| -> String { p.compact(&iri) };
        env.add_function("compact", f.clone());
        env.add_filter("compact", f);
    }
    {
        let p = Arc::clone(&prefixes);
        let f = move |curie: String| -> String { p.expand(&curie) };
        env.add_function("expand", f.clone());
        env.add_filter("expand", f);
    }
    env.add_filter("camel", |s: String| s.to_lower_camel_case());
    env.add_filter("pascal", |s: String| s.to_upper_camel_case());
    env.add_filter("snake", |s: String| s.to_snake_case());
    env.add_filter("kebab", |s: String| s.to_kebab_case());
    env.add_filter("constant", |s: String| s.to_shouty_snake_case());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names() {
        assert_eq!(local_name("http://e.org/a#Thing"), "Thing");
        assert_eq!(local_name("https://schema.org/Person"), "Person");
        assert_eq!(local_name("urn:x:y"), "y");
        assert_eq!(local_name("plain"), "plain");
    }

    #[test]
    fn compact_expand() {
        let p = Prefixes::new(&BTreeMap::from([(
            "ex".to_string(),
            "http://e.org/".to_string(),
        )]));
        assert_eq!(p.compact("http://e.org/a"), "ex:a");
        assert_eq!(
            p.compact("http://www.w3.org/2000/01/rdf-schema#label"),
            "rdfs:label"
        );
        assert_eq!(p.expand("ex:a"), "http://e.org/a");
        assert_eq!(p.expand("http://x/y"), "http://x/y");
    }
}
