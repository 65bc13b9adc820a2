//! Exclusive XML Canonicalization of `rdf:XMLLiteral` values read from RDF/XML.
//!
//! RDF/XML's `rdf:parseType="Literal"` makes the literal's value the exclusive canonical form of the
//! content (RDF 1.1 XML Syntax §2.8, Exclusive XML Canonicalization 1.0). `oxrdfxml` copies every in-scope
//! namespace declaration onto the content's elements; exclusive canonicalization keeps only those an
//! element visibly uses and that no output ancestor already declared with the same value. Attributes are
//! sorted by namespace URI, then local name; namespace declarations by prefix. Text is kept as the parser
//! escaped it.

use std::collections::BTreeMap;

use oxrdf::vocab::rdf;
use oxrdf::{Literal, Quad, Term};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Canonicalizes the object of `quad` if it is an `rdf:XMLLiteral`.
pub(crate) fn canonicalize_quad(mut quad: Quad) -> Quad {
    if let Term::Literal(l) = &quad.object {
        if l.datatype() == rdf::XML_LITERAL {
            if let Some(c) = exclusive_c14n(l.value()) {
                if c != l.value() {
                    quad.object = Literal::new_typed_literal(c, rdf::XML_LITERAL).into();
                }
            }
        }
    }
    quad
}

struct Scope {
    /// Namespace declarations in scope (from the input), prefix -> URI ("" is the default namespace).
    in_scope: BTreeMap<String, String>,
    /// Declarations already rendered by output ancestors.
    rendered: BTreeMap<String, String>,
}

/// The exclusive canonical form of an XML fragment, or `None` if it does not parse.
pub(crate) fn exclusive_c14n(xml: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut out = String::with_capacity(xml.len());
    let mut stack = vec![Scope {
        in_scope: BTreeMap::new(),
        rendered: BTreeMap::new(),
    }];
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                start(&e, &mut stack, &mut out)?;
            }
            Event::Empty(e) => {
                let name = start(&e, &mut stack, &mut out)?;
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
                stack.pop();
            }
            Event::End(e) => {
                out.push_str("</");
                out.push_str(std::str::from_utf8(e.name().as_ref()).ok()?);
                out.push('>');
                stack.pop();
            }
            Event::Text(t) => out.push_str(std::str::from_utf8(&t).ok()?),
            Event::CData(t) => {
                // Canonical XML replaces CDATA sections by their escaped text.
                let text = std::str::from_utf8(&t).ok()?;
                out.push_str(
                    &text
                        .replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;"),
                );
            }
            Event::Comment(t) => {
                out.push_str("<!--");
                out.push_str(std::str::from_utf8(&t).ok()?);
                out.push_str("-->");
            }
            Event::PI(t) => {
                out.push_str("<?");
                out.push_str(std::str::from_utf8(&t).ok()?);
                out.push_str("?>");
            }
            Event::Eof => break,
            Event::Decl(_) | Event::DocType(_) => return None,
        }
    }
    (stack.len() == 1).then_some(out)
}

fn prefix_of(qname: &str) -> &str {
    qname.split_once(':').map_or("", |(p, _)| p)
}

/// Writes a start tag; returns the element name. Pushes the element's scope.
fn start(e: &BytesStart<'_>, stack: &mut Vec<Scope>, out: &mut String) -> Option<String> {
    let name = std::str::from_utf8(e.name().as_ref()).ok()?.to_owned();
    let parent = stack.last()?;
    let mut in_scope = parent.in_scope.clone();
    let mut rendered = parent.rendered.clone();
    let mut attributes: Vec<(String, String, String)> = Vec::new(); // (namespace URI, qname, raw value)
    let mut raw_attributes = Vec::new();
    for a in e.attributes() {
        let a = a.ok()?;
        let key = std::str::from_utf8(a.key.as_ref()).ok()?.to_owned();
        let value = std::str::from_utf8(&a.value).ok()?.to_owned();
        if key == "xmlns" {
            in_scope.insert(String::new(), value);
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            in_scope.insert(p.to_owned(), value);
        } else {
            raw_attributes.push((key, value));
        }
    }
    // Namespaces visibly utilized: the element's prefix (or the default namespace) and attribute prefixes.
    let mut utilized = vec![prefix_of(&name).to_owned()];
    for (key, value) in raw_attributes {
        let p = prefix_of(&key);
        let uri = if p.is_empty() {
            String::new()
        } else {
            in_scope.get(p).cloned().unwrap_or_default()
        };
        if !p.is_empty() {
            utilized.push(p.to_owned());
        }
        attributes.push((uri, key, value));
    }
    let mut declarations: BTreeMap<String, String> = BTreeMap::new();
    for p in utilized {
        if p == "xml" {
            continue; // bound by definition, never declared
        }
        if !p.is_empty() && !in_scope.contains_key(&p) {
            // Not namespace-well-formed (a prefix without declaration): no canonical form; keep the value.
            return None;
        }
        let uri = in_scope.get(&p).cloned().unwrap_or_default();
        let already = rendered.get(&p).cloned().unwrap_or_default();
        if uri != already {
            declarations.insert(p.clone(), uri.clone());
            rendered.insert(p, uri);
        }
    }
    attributes.sort_by(|a, b| (&a.0, local(&a.1)).cmp(&(&b.0, local(&b.1))));
    out.push('<');
    out.push_str(&name);
    for (p, uri) in &declarations {
        if p.is_empty() {
            out.push_str(&format!(" xmlns=\"{uri}\""));
        } else {
            out.push_str(&format!(" xmlns:{p}=\"{uri}\""));
        }
    }
    for (_, key, value) in &attributes {
        out.push_str(&format!(" {key}=\"{value}\""));
    }
    out.push('>');
    stack.push(Scope { in_scope, rendered });
    Some(name)
}

fn local(qname: &str) -> &str {
    qname.split_once(':').map_or(qname, |(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_unused_namespaces_and_keeps_used_ones_once() {
        let rdfns = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
        assert_eq!(
            exclusive_c14n(&format!(
                "<br xmlns:rdf=\"{rdfns}\" xmlns:eg=\"http://example.org/\"></br>"
            ))
            .unwrap(),
            "<br></br>"
        );
        assert_eq!(
            exclusive_c14n("<eg:a xmlns:eg=\"http://e/\" xmlns:x=\"http://x/\" b=\"1\" x:c=\"2\"><eg:b xmlns:eg=\"http://e/\"/>t</eg:a>").unwrap(),
            "<eg:a xmlns:eg=\"http://e/\" xmlns:x=\"http://x/\" b=\"1\" x:c=\"2\"><eg:b></eg:b>t</eg:a>"
        );
        assert_eq!(
            exclusive_c14n("plain text &amp; more").unwrap(),
            "plain text &amp; more"
        );
    }
}
