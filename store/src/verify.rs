//! `Store::verify`: recomputes every derived structure from the primary index and compares.
//!
//! The primary copies are `SPO` (default graph) and `GSPO` (named graphs). Everything else — the other seven
//! indexes, bitmaps, counters, graph entries, dictionary references — is derived and must agree exactly.
//! Tests (property tests, bulk-vs-transactional checks) call this after every change they make.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use oxrdf::vocab::rdf;
use roaring::RoaringTreemap;

use crate::error::{Result, StoreError, VerifyError};
use crate::keys::{self, IdQuad, Index};
use crate::merge::decode_counter;
use crate::reader::Reader;
use crate::term::{decode_term, TermId};
use crate::Store;

/// What [`Store::verify`] checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Quads checked in every index.
    pub quads: u64,
    /// Bitmaps compared with their recomputed sets.
    pub bitmaps: u64,
    /// Dictionary entries checked.
    pub terms: u64,
}

impl Store {
    /// Checks every index, bitmap, counter and dictionary reference against the primary indexes.
    ///
    /// `Ok(Err(_))` describes the first violated invariant; the outer error is an I/O failure.
    pub fn verify(&self) -> Result<std::result::Result<VerifyReport, VerifyError>> {
        verify(&self.reader())
    }
}

fn fail<T>(msg: String) -> Result<std::result::Result<T, VerifyError>> {
    Ok(Err(VerifyError(msg)))
}

fn scan(reader: &Reader, index: Index) -> Result<Vec<IdQuad>> {
    let mut out = Vec::new();
    let mut iter = reader.raw_iter(index.cf_name(), &[])?;
    while let Some((k, _)) = iter.next_entry()? {
        out.push(
            index
                .decode(k)
                .ok_or_else(|| StoreError::Corrupt(format!("bad key in {}", index.cf_name())))?,
        );
    }
    Ok(out)
}

fn verify(reader: &Reader) -> Result<std::result::Result<VerifyReport, VerifyError>> {
    let mut report = VerifyReport::default();
    let default = scan(reader, Index::Spo)?;
    let named = scan(reader, Index::Gspo)?;
    // Every derived index holds exactly the same quads.
    for (primary, indexes) in [
        (&default, &Index::DEFAULT[1..]),
        (&named, &Index::NAMED[1..]),
    ] {
        let expected: BTreeSet<IdQuad> = primary.iter().copied().collect();
        for &index in indexes {
            let got: BTreeSet<IdQuad> = scan(reader, index)?.into_iter().collect();
            if got != expected {
                let missing = expected.difference(&got).next();
                let extra = got.difference(&expected).next();
                return fail(format!(
                    "index {} differs from its primary: missing {missing:?}, extra {extra:?}",
                    index.cf_name()
                ));
            }
        }
    }
    let all: Vec<IdQuad> = default.into_iter().chain(named).collect();
    report.quads = all.len() as u64;

    // Recompute counters and bitmaps.
    let rdf_type = reader.term_id(rdf::TYPE.into())?;
    let mut graph_quads: HashMap<TermId, i64> = HashMap::new();
    let mut pred_quads: HashMap<(TermId, TermId), i64> = HashMap::new();
    let mut pred_objects: HashMap<(TermId, TermId), BTreeSet<TermId>> = HashMap::new();
    let mut expected_bitmaps: BTreeMap<Vec<u8>, RoaringTreemap> = BTreeMap::new();
    let mut pair_subjects: HashMap<(TermId, TermId, TermId), RoaringTreemap> = HashMap::new();
    let mut graphs_with_quads = BTreeSet::new();
    let mut referenced = BTreeSet::new();
    for q in &all {
        *graph_quads.entry(q.g).or_default() += 1;
        *pred_quads.entry((q.g, q.p)).or_default() += 1;
        pred_objects.entry((q.g, q.p)).or_default().insert(q.o);
        expected_bitmaps
            .entry(keys::bitmap_key::predicate(q.g, q.p).to_vec())
            .or_default()
            .insert(q.s.0);
        expected_bitmaps
            .entry(keys::bitmap_key::graph(q.g).to_vec())
            .or_default()
            .insert(q.s.0);
        pair_subjects
            .entry((q.g, q.p, q.o))
            .or_default()
            .insert(q.s.0);
        if Some(q.p) == rdf_type && q.o.is_iri() {
            expected_bitmaps
                .entry(keys::bitmap_key::predicate_object(q.g, q.p, q.o).to_vec())
                .or_default()
                .insert(q.s.0);
        }
        if !q.in_default_graph() {
            graphs_with_quads.insert(q.g);
        }
        for id in [q.s, q.p, q.o, q.g] {
            if id.is_dictionary() && id != TermId::DEFAULT_GRAPH {
                referenced.insert(id);
            }
        }
    }

    // Stored bitmaps: predicate and graph sets must match exactly (empty stored sets are allowed where
    // nothing is expected); pair bitmaps must match the pair's subjects whenever they exist.
    let stored = reader.all_bitmaps()?;
    let mut seen = BTreeSet::new();
    for (key, set) in &stored {
        report.bitmaps += 1;
        let expected = if key[0] == b'o' {
            let (Some(g), Some(p), Some(o)) = (
                TermId::from_be_slice(&key[1..]),
                TermId::from_be_slice(&key[9..]),
                TermId::from_be_slice(&key[17..]),
            ) else {
                return fail("bad pair bitmap key".into());
            };
            pair_subjects.get(&(g, p, o)).cloned().unwrap_or_default()
        } else {
            expected_bitmaps.get(key).cloned().unwrap_or_default()
        };
        if *set != expected {
            return fail(format!(
                "bitmap {key:?} has {} members, the indexes imply {}",
                set.len(),
                expected.len()
            ));
        }
        seen.insert(key.clone());
    }
    for (key, set) in &expected_bitmaps {
        if !seen.contains(key) && !set.is_empty() {
            return fail(format!(
                "bitmap {key:?} is missing ({} members expected)",
                set.len()
            ));
        }
    }

    // Counters.
    let stats = reader.statistics()?;
    if stats.quads != report.quads {
        return fail(format!(
            "quad counter {} but {} quads stored",
            stats.quads, report.quads
        ));
    }
    for (&g, &n) in &graph_quads {
        let got = reader.graph_len(g)? as i64;
        if got != n {
            return fail(format!("graph {g:?} counter {got}, expected {n}"));
        }
    }
    let mut iter = reader.raw_iter(keys::CF_STATS, &[])?;
    while let Some((k, v)) = iter.next_entry()? {
        let value = decode_counter(v).ok_or_else(|| StoreError::Corrupt("bad counter".into()))?;
        let g = TermId::from_be_slice(k.get(1..).unwrap_or_default());
        let p = TermId::from_be_slice(k.get(9..).unwrap_or_default());
        let expected = match (k[0], g, p) {
            (b'G', Some(g), _) => graph_quads.get(&g).copied().unwrap_or(0),
            (b'P', Some(g), Some(p)) => pred_quads.get(&(g, p)).copied().unwrap_or(0),
            (b'O', Some(g), Some(p)) => pred_objects.get(&(g, p)).map_or(0, |s| s.len() as i64),
            _ => continue,
        };
        if value != expected {
            return fail(format!("counter {k:?} is {value}, expected {expected}"));
        }
    }
    for (&(g, p), objects) in &pred_objects {
        let got = reader.predicate_stats(g, p)?;
        if got.distinct_objects != objects.len() as u64 {
            return fail(format!(
                "distinct objects of {p:?} in {g:?}: {} vs {}",
                got.distinct_objects,
                objects.len()
            ));
        }
    }

    // Graph entries.
    let graphs: BTreeSet<TermId> = reader.named_graphs()?.into_iter().collect();
    if let Some(g) = graphs_with_quads.difference(&graphs).next() {
        return fail(format!("graph {g:?} has quads but no graph entry"));
    }
    if stats.named_graphs != graphs.len() as u64 {
        return fail(format!(
            "named graph counter {} but {} entries",
            stats.named_graphs,
            graphs.len()
        ));
    }

    // Dictionary: both directions agree, counter matches, every referenced id resolves.
    let mut terms = 0u64;
    let mut iter = reader.raw_iter(keys::CF_ID2TERM, &[])?;
    let mut known = BTreeSet::new();
    while let Some((k, v)) = iter.next_entry()? {
        let id =
            TermId::from_be_slice(k).ok_or_else(|| StoreError::Corrupt("bad id key".into()))?;
        let Some(term) = decode_term(v) else {
            return fail(format!("undecodable term for {id:?}"));
        };
        if reader.term_id(term.as_ref())? != Some(id) {
            return fail(format!("term2id does not map {term} back to {id:?}"));
        }
        known.insert(id);
        terms += 1;
    }
    if terms != stats.terms {
        return fail(format!("term counter {} but {terms} entries", stats.terms));
    }
    // Every `term2id` entry maps to a live id: a rolled-back load must not leave keys behind (with hashed
    // keys, the lookups above cannot see a stale one).
    let mut keys = 0u64;
    let mut iter = reader.raw_iter(keys::CF_TERM2ID, &[])?;
    while let Some((_, v)) = iter.next_entry()? {
        let id = TermId::from_be_slice(v)
            .ok_or_else(|| StoreError::Corrupt("bad term2id value".into()))?;
        if !known.contains(&id) {
            return fail(format!(
                "term2id maps a term to {id:?}, which has no id2term entry"
            ));
        }
        keys += 1;
    }
    if keys != terms {
        return fail(format!(
            "{keys} term2id entries but {terms} id2term entries"
        ));
    }
    if let Some(id) = referenced.difference(&known).next() {
        return fail(format!(
            "quad references {id:?}, which has no dictionary entry"
        ));
    }
    report.terms = terms;
    Ok(Ok(report))
}
