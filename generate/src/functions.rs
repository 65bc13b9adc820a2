//! The template functions and filters bound to the store: `sparql`, `sparql_first`, `ask`, `count`, `label`,
//! `local_name`, `compact`, `expand` and the case filters.

use std::collections::BTreeMap;
use std::sync::Arc;

use heck::{ToKebabCase, ToLowerCamelCase, ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use minijinja::{Environment, Error, ErrorKind, Value};
use oxrdf::Term;
use tern_query::{QueryOptions, QueryResults};
use tern_store::Store;

/// Prefixes every template knows; a template's `prefixes:` map adds to (and overrides) them.
pub const DEFAULT_PREFIXES: &[(&str, &str)] = &[
    ("rdf", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"),
    ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
    ("owl", "http://www.w3.org/2002/07/owl#"),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    ("skos", "http://www.w3.org/2004/02/skos/core#"),
    ("dcterms", "http://purl.org/dc/terms/"),
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
        let mut map: BTreeMap<String, String> = DEFAULT_PREFIXES
            .iter()
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

/// What a query produced, converted once to template values.
pub(crate) enum QueryValue {
    /// SELECT rows or CONSTRUCT triples (`subject`, `predicate`, `object`).
    Rows(Vec<Value>),
    /// ASK.
    Boolean(bool),
}

impl QueryValue {
    pub(crate) fn into_value(self) -> Value {
        match self {
            QueryValue::Rows(rows) => Value::from(rows),
            QueryValue::Boolean(b) => Value::from(b),
        }
    }
}

/// Runs a query (prefixes prepended) and converts its results; `limit` stops after that many rows.
pub(crate) fn run_query(
    store: &Store,
    prefixes: &Prefixes,
    text: &str,
    limit: Option<usize>,
) -> Result<QueryValue, String> {
    let full = prefixes.with_prologue(text);
    let results =
        tern_query::query(store, &full, QueryOptions::default()).map_err(|e| e.to_string())?;
    let limit = limit.unwrap_or(usize::MAX);
    Ok(match results {
        QueryResults::Boolean(b) => QueryValue::Boolean(b),
        QueryResults::Solutions(solutions) => {
            let mut rows = Vec::new();
            for s in solutions {
                if rows.len() >= limit {
                    break;
                }
                let s = s.map_err(|e| e.to_string())?;
                rows.push(row_value(
                    s.variables()
                        .iter()
                        .zip(s.values())
                        .filter_map(|(v, t)| t.as_ref().map(|t| (v.as_str(), t))),
                ));
            }
            QueryValue::Rows(rows)
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
                rows.push(row_value(
                    [
                        ("subject", &subject),
                        ("predicate", &predicate),
                        ("object", &t.object),
                    ]
                    .into_iter(),
                ));
            }
            QueryValue::Rows(rows)
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
/// local name.
fn label(store: &Store, prefixes: &Prefixes, iri: &str) -> Result<String, Error> {
    let iri = prefixes.expand(iri);
    // A term that is not a valid IRI cannot be put in a query; its local name is the best label.
    if oxrdf::NamedNode::new(iri.as_str()).is_err() {
        return Ok(local_name(&iri).to_string());
    }
    for p in LABEL_PREDICATES {
        let q = format!("SELECT ?l WHERE {{ <{iri}> <{p}> ?l }}");
        let results = tern_query::query(store, &q, QueryOptions::default())
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
    Ok(local_name(&iri).to_string())
}

/// Registers the store-bound functions and the filters on a template's environment.
pub(crate) fn register(env: &mut Environment<'static>, store: &Store, prefixes: Arc<Prefixes>) {
    {
        let (store, prefixes) = (store.clone(), Arc::clone(&prefixes));
        env.add_function("sparql", move |q: String| -> Result<Value, Error> {
            run_query(&store, &prefixes, &q, None)
                .map(QueryValue::into_value)
                .map_err(|e| template_error(format!("sparql(): {e}")))
        });
    }
    {
        let (store, prefixes) = (store.clone(), Arc::clone(&prefixes));
        env.add_function("sparql_first", move |q: String| -> Result<Value, Error> {
            match run_query(&store, &prefixes, &q, Some(1)) {
                Ok(QueryValue::Rows(rows)) => {
                    Ok(rows.into_iter().next().unwrap_or(Value::from(())))
                }
                Ok(QueryValue::Boolean(b)) => Ok(Value::from(b)),
                Err(e) => Err(template_error(format!("sparql_first(): {e}"))),
            }
        });
    }
    {
        let (store, prefixes) = (store.clone(), Arc::clone(&prefixes));
        env.add_function("ask", move |q: String| -> Result<bool, Error> {
            match run_query(&store, &prefixes, &q, None) {
                Ok(QueryValue::Boolean(b)) => Ok(b),
                Ok(QueryValue::Rows(rows)) => Ok(!rows.is_empty()),
                Err(e) => Err(template_error(format!("ask(): {e}"))),
            }
        });
    }
    {
        let (store, prefixes) = (store.clone(), Arc::clone(&prefixes));
        env.add_function("count", move |q: String| -> Result<usize, Error> {
            match run_query(&store, &prefixes, &q, None) {
                Ok(QueryValue::Boolean(b)) => Ok(usize::from(b)),
                Ok(QueryValue::Rows(rows)) => Ok(rows.len()),
                Err(e) => Err(template_error(format!("count(): {e}"))),
            }
        });
    }
    {
        let (store, prefixes) = (store.clone(), Arc::clone(&prefixes));
        let f = move |term: String| -> Result<String, Error> { label(&store, &prefixes, &term) };
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
