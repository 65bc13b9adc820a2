//! [sophia](https://docs.rs/sophia_api) views of a tern store, so code written against the sophia traits
//! (serializers, isomorphism, term matchers, dataset adapters) runs on tern without copying the data out.
//!
//! * [`TernDataset`] is a read-only [`Dataset`] over one [`Reader`] snapshot: every quad of every graph,
//!   graph name `None` for the default graph.
//! * [`TernGraph`] is one graph (default or named) of such a snapshot as a sophia [`Graph`].
//! * [`TernMutableDataset`] adds [`MutableDataset`] on top of a [`Store`] reference.
//!
//! Terms are [`TernTerm`]s: owned `oxrdf` terms (what tern's dictionary hands out) behind the sophia
//! [`Term`] trait, so externalizing a quad costs no extra copy. Sophia 0.10 has no `oxrdf` integration of
//! its own.
//!
//! Pattern calls ([`Dataset::quads_matching`], [`Graph::triples_matching`] and everything built on them:
//! `contains`, `subjects_matching`, sophia's `DatasetGraph` adapter returned by [`Dataset::graph`], ...)
//! turn every matcher that is a single constant term into an index prefix, so they cost a prefix scan,
//! not a full scan. Other matchers (several terms, closures, kinds) are applied as filters on the result.
//! Ids are externalized in batches (one dictionary read per batch, batch size growing from 8 to 1024 so
//! that `next()` on a pattern that is only probed for existence stays cheap).
//!
//! RDF 1.2 triple terms, variables and base directions have no tern representation: as pattern constants
//! they match nothing; inserting them fails with [`StoreError::UnsupportedTerm`].

use std::fmt;

use oxrdf::{BlankNode, GraphName as OxGraphName, Literal, NamedNode, NamedOrBlankNode, TermRef};
use sophia_api::dataset::{DResult, Dataset, MdResult, MutableDataset};
use sophia_api::graph::{GResult, Graph};
use sophia_api::quad::{Quad, Spog};
use sophia_api::source::{QuadSource, StreamError, StreamResult};
use sophia_api::term::matcher::{GraphNameMatcher, TermMatcher};
use sophia_api::term::{
    BaseDirection, BnodeId, GraphName, IriRef, LanguageTag, Term, TermKind, TryFromTerm,
};
use sophia_api::MownStr;
use tern_store::{GraphSel, IdQuad, QuadIter, Reader, Store, StoreError, TermId};

/// The sophia API this module implements, re-exported so users (and tests) get the exact version whose
/// traits [`TernDataset`] implements without adding a dependency that might resolve differently.
pub use sophia_api;

/// An RDF term as tern stores it (an owned `oxrdf` term), usable wherever sophia expects a [`Term`].
///
/// Wrapping rather than converting keeps the strings tern already allocated; [`TernTerm::into_inner`]
/// gives the `oxrdf` term back for tern's own APIs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TernTerm(pub oxrdf::Term);

impl TernTerm {
    /// The `oxrdf` term, for tern's own APIs.
    pub fn into_inner(self) -> oxrdf::Term {
        self.0
    }

    /// The borrowed `oxrdf` term.
    pub fn as_oxrdf(&self) -> TermRef<'_> {
        self.0.as_ref()
    }
}

impl From<oxrdf::Term> for TernTerm {
    fn from(t: oxrdf::Term) -> Self {
        TernTerm(t)
    }
}

impl From<TernTerm> for oxrdf::Term {
    fn from(t: TernTerm) -> Self {
        t.0
    }
}

impl fmt::Display for TernTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

// Accessors over the borrowed `oxrdf` term, lending its strings without copies.

fn kind_of(t: TermRef<'_>) -> TermKind {
    match t {
        TermRef::NamedNode(_) => TermKind::Iri,
        TermRef::BlankNode(_) => TermKind::BlankNode,
        TermRef::Literal(_) => TermKind::Literal,
    }
}

fn iri_of(t: TermRef<'_>) -> Option<IriRef<MownStr<'_>>> {
    match t {
        TermRef::NamedNode(n) => Some(IriRef::new_unchecked(MownStr::from(n.as_str()))),
        _ => None,
    }
}

fn bnode_of(t: TermRef<'_>) -> Option<BnodeId<MownStr<'_>>> {
    match t {
        TermRef::BlankNode(b) => Some(BnodeId::new_unchecked(MownStr::from(b.as_str()))),
        _ => None,
    }
}

fn lexical_of(t: TermRef<'_>) -> Option<MownStr<'_>> {
    match t {
        TermRef::Literal(l) => Some(MownStr::from(l.value())),
        _ => None,
    }
}

fn datatype_of(t: TermRef<'_>) -> Option<IriRef<MownStr<'_>>> {
    match t {
        TermRef::Literal(l) => Some(IriRef::new_unchecked(MownStr::from(l.datatype().as_str()))),
        _ => None,
    }
}

fn language_of(t: TermRef<'_>) -> Option<LanguageTag<MownStr<'_>>> {
    match t {
        TermRef::Literal(l) => l
            .language()
            .map(|tag| LanguageTag::new_unchecked(MownStr::from(tag))),
        _ => None,
    }
}

/// The borrowed form is `&TernTerm` (as for sophia's `SimpleTerm`), so `&term` can be passed wherever
/// sophia takes a term without cloning it.
impl Term for TernTerm {
    type BorrowTerm<'x> = &'x TernTerm;

    fn kind(&self) -> TermKind {
        kind_of(self.0.as_ref())
    }
    fn iri(&self) -> Option<IriRef<MownStr<'_>>> {
        iri_of(self.0.as_ref())
    }
    fn bnode_id(&self) -> Option<BnodeId<MownStr<'_>>> {
        bnode_of(self.0.as_ref())
    }
    fn lexical_form(&self) -> Option<MownStr<'_>> {
        lexical_of(self.0.as_ref())
    }
    fn datatype(&self) -> Option<IriRef<MownStr<'_>>> {
        datatype_of(self.0.as_ref())
    }
    fn language_tag(&self) -> Option<LanguageTag<MownStr<'_>>> {
        language_of(self.0.as_ref())
    }
    fn base_direction(&self) -> Option<BaseDirection> {
        None
    }
    fn variable(&self) -> Option<sophia_api::term::VarName<MownStr<'_>>> {
        None
    }
    fn triple(&self) -> Option<[Self::BorrowTerm<'_>; 3]> {
        None
    }
    fn to_triple(self) -> Option<[Self; 3]> {
        None
    }
    fn borrow_term(&self) -> Self::BorrowTerm<'_> {
        self
    }
}

impl TryFromTerm for TernTerm {
    type Error = StoreError;

    /// Copies any sophia term into tern's representation, validating IRIs, blank node ids and language
    /// tags (sophia's own types allow relative IRIs, tern does not).
    fn try_from_term<T: Term>(term: T) -> Result<Self, StoreError> {
        to_oxrdf(&term, true).map(TernTerm)
    }
}

fn unsupported(what: impl fmt::Display) -> StoreError {
    StoreError::UnsupportedTerm(what.to_string())
}

/// Converts a sophia term to `oxrdf`. `validate` is off for pattern lookups, where an invalid term simply
/// finds nothing, and on for writes.
fn to_oxrdf<T: Term + ?Sized>(t: &T, validate: bool) -> Result<oxrdf::Term, StoreError> {
    match t.kind() {
        TermKind::Iri => {
            let iri = t.iri().ok_or_else(|| unsupported("IRI term without IRI"))?;
            Ok(named_node(iri.as_str(), validate)?.into())
        }
        TermKind::BlankNode => {
            let id = t
                .bnode_id()
                .ok_or_else(|| unsupported("blank node without id"))?;
            if validate {
                BlankNode::new(id.as_str())
                    .map(Into::into)
                    .map_err(|e| unsupported(format_args!("blank node _:{}: {e}", id.as_str())))
            } else {
                Ok(BlankNode::new_unchecked(id.as_str()).into())
            }
        }
        TermKind::Literal => {
            let lex = t
                .lexical_form()
                .ok_or_else(|| unsupported("literal without value"))?;
            if t.base_direction().is_some() {
                return Err(unsupported("literal with a base direction (RDF 1.2)"));
            }
            match t.language_tag() {
                // Checked even for lookups: it normalizes the tag's case the way the loaders did.
                Some(tag) => Literal::new_language_tagged_literal(lex.as_ref(), tag.as_str())
                    .map(Into::into)
                    .map_err(|e| unsupported(format_args!("language tag {}: {e}", tag.as_str()))),
                None => {
                    let dt = t
                        .datatype()
                        .ok_or_else(|| unsupported("literal without datatype"))?;
                    Ok(
                        Literal::new_typed_literal(
                            lex.as_ref(),
                            named_node(dt.as_str(), validate)?,
                        )
                        .into(),
                    )
                }
            }
        }
        TermKind::Triple => Err(unsupported("RDF 1.2 triple term")),
        TermKind::Variable => Err(unsupported("variable")),
    }
}

fn named_node(iri: &str, validate: bool) -> Result<NamedNode, StoreError> {
    if validate {
        NamedNode::new(iri).map_err(|e| unsupported(format_args!("IRI <{iri}>: {e}")))
    } else {
        Ok(NamedNode::new_unchecked(iri))
    }
}

fn to_subject<T: Term>(t: T) -> Result<NamedOrBlankNode, StoreError> {
    match to_oxrdf(&t, true)? {
        oxrdf::Term::NamedNode(n) => Ok(n.into()),
        oxrdf::Term::BlankNode(b) => Ok(b.into()),
        other => Err(unsupported(format_args!(
            "{other} as subject or graph name"
        ))),
    }
}

/// Builds a storable `oxrdf` quad from sophia terms, rejecting generalized RDF (literal subjects, ...).
fn to_oxrdf_quad<TS: Term, TP: Term, TO: Term, TG: Term>(
    s: TS,
    p: TP,
    o: TO,
    g: GraphName<TG>,
) -> Result<oxrdf::Quad, StoreError> {
    let subject = to_subject(s)?;
    let predicate = match to_oxrdf(&p, true)? {
        oxrdf::Term::NamedNode(n) => n,
        other => return Err(unsupported(format_args!("{other} as predicate"))),
    };
    let object = to_oxrdf(&o, true)?;
    let graph = match g {
        None => OxGraphName::DefaultGraph,
        Some(g) => to_subject(g)?.into(),
    };
    Ok(oxrdf::Quad::new(subject, predicate, object, graph))
}

fn to_spog(q: oxrdf::Quad) -> Spog<TernTerm> {
    let g = match q.graph_name {
        OxGraphName::DefaultGraph => None,
        OxGraphName::NamedNode(n) => Some(TernTerm(n.into())),
        OxGraphName::BlankNode(b) => Some(TernTerm(b.into())),
    };
    (
        [
            TernTerm(q.subject.into()),
            TernTerm(q.predicate.into()),
            TernTerm(q.object),
        ],
        g,
    )
}

/// What a pattern position became after looking its matcher up in the dictionary.
enum Slot {
    /// Not a single constant: scan everything, filter afterwards.
    Any,
    /// A constant the store knows: an index prefix.
    Id(TermId),
    /// A constant the store cannot hold: the pattern matches nothing.
    Nothing,
}

impl Slot {
    fn lookup<T: Term + ?Sized>(reader: &Reader, t: &T) -> Result<Slot, StoreError> {
        let Ok(term) = to_oxrdf(t, false) else {
            return Ok(Slot::Nothing);
        };
        Ok(match reader.term_id(term.as_ref())? {
            Some(id) => Slot::Id(id),
            None => Slot::Nothing,
        })
    }

    fn of<M: TermMatcher + ?Sized>(reader: &Reader, m: &M) -> Result<Slot, StoreError> {
        match m.constant() {
            None => Ok(Slot::Any),
            Some(t) => Slot::lookup(reader, t),
        }
    }
}

/// Plans a scan: `Ok(None)` when a constant cannot match anything.
fn plan<S, P, O>(
    reader: &Reader,
    sm: &S,
    pm: &P,
    om: &O,
) -> Result<Option<[Option<TermId>; 3]>, StoreError>
where
    S: TermMatcher + ?Sized,
    P: TermMatcher + ?Sized,
    O: TermMatcher + ?Sized,
{
    let mut ids = [None; 3];
    for (slot, id) in [
        Slot::of(reader, sm)?,
        Slot::of(reader, pm)?,
        Slot::of(reader, om)?,
    ]
    .into_iter()
    .zip(&mut ids)
    {
        match slot {
            Slot::Any => {}
            Slot::Id(i) => *id = Some(i),
            Slot::Nothing => return Ok(None),
        }
    }
    Ok(Some(ids))
}

fn graph_sel<G: GraphNameMatcher + ?Sized>(
    reader: &Reader,
    gm: &G,
) -> Result<Option<GraphSel>, StoreError> {
    Ok(match gm.constant() {
        None => Some(GraphSel::All),
        Some(None) => Some(GraphSel::Default),
        Some(Some(g)) => match Slot::lookup(reader, g)? {
            Slot::Id(id) => Some(GraphSel::Named(id)),
            _ => None,
        },
    })
}

/// Index prefixes for subject, predicate, object and the graphs to scan; `None` for either means the
/// pattern matches nothing.
type ScanPlan = (Option<[Option<TermId>; 3]>, Option<GraphSel>);

const FIRST_BATCH: usize = 8;
const MAX_BATCH: usize = 1024;

/// Streams the quads of an id scan as `oxrdf` quads, externalizing ids in growing batches.
struct Externalize<'r> {
    reader: &'r Reader,
    ids: Option<QuadIter<'r>>,
    ready: std::vec::IntoIter<oxrdf::Quad>,
    /// An error to report once the quads read before it are out.
    deferred: Option<StoreError>,
    batch: usize,
}

impl<'r> Externalize<'r> {
    /// A scan of `ids` in `graph`, or an empty stream (`None` parts), or just an error.
    fn new(reader: &'r Reader, plan: Result<ScanPlan, StoreError>) -> Self {
        let (ids, deferred) = match plan {
            Ok((Some([s, p, o]), Some(g))) => (Some(reader.quads_for_pattern(s, p, o, g)), None),
            Ok(_) => (None, None),
            Err(e) => (None, Some(e)),
        };
        Externalize {
            reader,
            ids,
            ready: Vec::new().into_iter(),
            deferred,
            batch: FIRST_BATCH,
        }
    }
}

impl Iterator for Externalize<'_> {
    type Item = Result<oxrdf::Quad, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(q) = self.ready.next() {
                return Some(Ok(q));
            }
            if let Some(e) = self.deferred.take() {
                self.ids = None;
                return Some(Err(e));
            }
            let ids = self.ids.as_mut()?;
            let mut batch: Vec<IdQuad> = Vec::with_capacity(self.batch);
            while batch.len() < self.batch {
                match ids.next() {
                    Some(Ok(q)) => batch.push(q),
                    Some(Err(e)) => {
                        self.deferred = Some(e);
                        break;
                    }
                    None => {
                        self.ids = None;
                        break;
                    }
                }
            }
            self.batch = (self.batch * 2).min(MAX_BATCH);
            if batch.is_empty() {
                continue;
            }
            match self.reader.quads(&batch) {
                Ok(qs) => self.ready = qs.into_iter(),
                Err(e) => {
                    self.ids = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// A read-only sophia [`Dataset`] over a consistent snapshot of a tern store.
///
/// It owns a [`Reader`], so it sees the store as of its creation (never part of a transaction) and can be
/// kept, moved or sent across threads like the reader itself; create a new one to see later writes.
pub struct TernDataset {
    reader: Reader,
}

impl TernDataset {
    /// A dataset over a fresh snapshot of `store`.
    pub fn new(store: &Store) -> Self {
        TernDataset {
            reader: store.reader(),
        }
    }

    /// The snapshot, for tern's id-level APIs (statistics, bitmaps, counts).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Number of quads in all graphs, from tern's exact counter (sophia has no `len`, and counting
    /// `quads()` would externalize every term).
    pub fn len(&self) -> Result<u64, StoreError> {
        self.reader.len()
    }

    /// Whether the snapshot holds no quad.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.reader.is_empty()
    }

    /// The default graph as a sophia [`Graph`].
    pub fn default_graph(&self) -> TernGraph<'_> {
        TernGraph {
            reader: &self.reader,
            graph: Some(GraphSel::Default),
        }
    }

    /// A named graph as a sophia [`Graph`] (empty if the store has no such graph). Unlike the generic
    /// [`Dataset::graph`] adapter, it resolves the name once instead of on every pattern call.
    pub fn named_graph<T: Term>(&self, name: T) -> Result<TernGraph<'_>, StoreError> {
        let graph = match Slot::lookup(&self.reader, &name)? {
            Slot::Id(id) if id != TermId::DEFAULT_GRAPH => Some(GraphSel::Named(id)),
            _ => None,
        };
        Ok(TernGraph {
            reader: &self.reader,
            graph,
        })
    }
}

impl From<Reader> for TernDataset {
    fn from(reader: Reader) -> Self {
        TernDataset { reader }
    }
}

impl Dataset for TernDataset {
    type Quad<'x> = Spog<TernTerm>;
    type Error = StoreError;

    fn quads(&self) -> impl Iterator<Item = DResult<Self, Self::Quad<'_>>> + '_ {
        Externalize::new(&self.reader, Ok((Some([None; 3]), Some(GraphSel::All))))
            .map(|r| r.map(to_spog))
    }

    fn quads_matching<'s, 't, S, P, O, G>(
        &'s self,
        sm: S,
        pm: P,
        om: O,
        gm: G,
    ) -> impl Iterator<Item = DResult<Self, Self::Quad<'s>>> + 't
    where
        's: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        let reader = &self.reader;
        let planned =
            plan(reader, &sm, &pm, &om).and_then(|ids| Ok((ids, graph_sel(reader, &gm)?)));
        // Constants are re-checked too: cheap, and it keeps sophia's term equality authoritative.
        Externalize::new(reader, planned)
            .map(|r| r.map(to_spog))
            .filter(move |r| match r {
                Ok(q) => q.matched_by(
                    sm.matcher_ref(),
                    pm.matcher_ref(),
                    om.matcher_ref(),
                    gm.matcher_ref(),
                ),
                Err(_) => true,
            })
    }
}

/// One graph of a [`TernDataset`] snapshot as a sophia [`Graph`] (triples without graph names).
pub struct TernGraph<'a> {
    reader: &'a Reader,
    /// `None`: a named graph the store does not know, hence empty.
    graph: Option<GraphSel>,
}

fn to_triple(q: oxrdf::Quad) -> [TernTerm; 3] {
    to_spog(q).0
}

impl Graph for TernGraph<'_> {
    type Triple<'x>
        = [TernTerm; 3]
    where
        Self: 'x;
    type Error = StoreError;

    fn triples(&self) -> impl Iterator<Item = GResult<Self, Self::Triple<'_>>> + '_ {
        Externalize::new(self.reader, Ok((Some([None; 3]), self.graph))).map(|r| r.map(to_triple))
    }

    fn triples_matching<'s, 't, S, P, O>(
        &'s self,
        sm: S,
        pm: P,
        om: O,
    ) -> impl Iterator<Item = GResult<Self, Self::Triple<'s>>> + 't
    where
        's: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
    {
        use sophia_api::triple::Triple;
        let planned = plan(self.reader, &sm, &pm, &om).map(|ids| (ids, self.graph));
        Externalize::new(self.reader, planned)
            .map(|r| r.map(to_triple))
            .filter(move |r| match r {
                Ok(t) => t.matched_by(sm.matcher_ref(), pm.matcher_ref(), om.matcher_ref()),
                Err(_) => true,
            })
    }
}

/// A sophia [`MutableDataset`] writing to a tern store.
///
/// Cost: [`MutableDataset::insert`] and [`MutableDataset::remove`] run one transaction each (a RocksDB
/// write batch and commit per quad, and they wait for any other open transaction), which suits a few
/// edits only. [`MutableDataset::insert_all`] and [`MutableDataset::remove_all`] (and so
/// `remove_matching`, `retain_matching` and sophia's `QuadSource::add_to_dataset`) are overridden to run
/// the whole source in one all-or-nothing transaction, buffered in memory until commit; use them, or
/// tern's bulk loader for large data.
///
/// Reads go through a snapshot that is refreshed after every write made through this wrapper; writes
/// made elsewhere become visible after the next write here or [`TernMutableDataset::refresh`].
pub struct TernMutableDataset<'a> {
    store: &'a Store,
    view: TernDataset,
}

impl<'a> TernMutableDataset<'a> {
    /// Wraps a store opened for writing (writes fail with [`StoreError::ReadOnly`] otherwise).
    pub fn new(store: &'a Store) -> Self {
        TernMutableDataset {
            store,
            view: TernDataset::new(store),
        }
    }

    /// Takes a new read snapshot, to see writes made to the store outside this wrapper.
    pub fn refresh(&mut self) {
        self.view = TernDataset::new(self.store);
    }

    /// The current read snapshot.
    pub fn view(&self) -> &TernDataset {
        &self.view
    }

    fn after_write(&mut self, changed: u64) {
        if changed > 0 {
            self.refresh();
        }
    }
}

impl Dataset for TernMutableDataset<'_> {
    type Quad<'x>
        = Spog<TernTerm>
    where
        Self: 'x;
    type Error = StoreError;

    fn quads(&self) -> impl Iterator<Item = DResult<Self, Self::Quad<'_>>> + '_ {
        self.view.quads()
    }

    fn quads_matching<'s, 't, S, P, O, G>(
        &'s self,
        sm: S,
        pm: P,
        om: O,
        gm: G,
    ) -> impl Iterator<Item = DResult<Self, Self::Quad<'s>>> + 't
    where
        's: 't,
        S: TermMatcher + 't,
        P: TermMatcher + 't,
        O: TermMatcher + 't,
        G: GraphNameMatcher + 't,
    {
        self.view.quads_matching(sm, pm, om, gm)
    }
}

impl MutableDataset for TernMutableDataset<'_> {
    type MutationError = StoreError;

    /// Fails with [`StoreError::UnsupportedTerm`] for terms tern cannot store (relative IRIs, literal
    /// subjects, triple terms, variables, base directions).
    fn insert<TS, TP, TO, TG>(
        &mut self,
        s: TS,
        p: TP,
        o: TO,
        g: GraphName<TG>,
    ) -> MdResult<Self, bool>
    where
        TS: Term,
        TP: Term,
        TO: Term,
        TG: Term,
    {
        let quad = to_oxrdf_quad(s, p, o, g)?;
        let summary = self.store.insert([quad.as_ref()])?;
        self.after_write(summary.inserted);
        Ok(summary.inserted > 0)
    }

    /// A quad tern could not store is reported as absent (`false`), not as an error.
    fn remove<TS, TP, TO, TG>(
        &mut self,
        s: TS,
        p: TP,
        o: TO,
        g: GraphName<TG>,
    ) -> MdResult<Self, bool>
    where
        TS: Term,
        TP: Term,
        TO: Term,
        TG: Term,
    {
        let Ok(quad) = to_oxrdf_quad(s, p, o, g) else {
            return Ok(false);
        };
        let summary = self.store.remove([quad.as_ref()])?;
        self.after_write(summary.removed);
        Ok(summary.removed > 0)
    }

    /// One transaction for the whole source: nothing is written if the source or a term fails.
    fn insert_all<TS: QuadSource>(
        &mut self,
        src: TS,
    ) -> StreamResult<usize, TS::Error, StoreError> {
        let mut src = src;
        let mut txn = self.store.transaction().map_err(StreamError::SinkError)?;
        src.try_for_each_quad(|q| -> Result<(), StoreError> {
            let quad = to_oxrdf_quad(q.s(), q.p(), q.o(), q.g())?;
            txn.insert_all([quad.as_ref()])?;
            Ok(())
        })?;
        let summary = txn.commit().map_err(StreamError::SinkError)?;
        self.after_write(summary.inserted);
        Ok(summary.inserted as usize)
    }

    /// One transaction for the whole source; quads tern could not store are skipped (they are absent).
    fn remove_all<TS: QuadSource>(
        &mut self,
        src: TS,
    ) -> StreamResult<usize, TS::Error, StoreError> {
        let mut src = src;
        let mut txn = self.store.transaction().map_err(StreamError::SinkError)?;
        src.try_for_each_quad(|q| -> Result<(), StoreError> {
            if let Ok(quad) = to_oxrdf_quad(q.s(), q.p(), q.o(), q.g()) {
                txn.remove_all([quad.as_ref()])?;
            }
            Ok(())
        })?;
        let summary = txn.commit().map_err(StreamError::SinkError)?;
        self.after_write(summary.removed);
        Ok(summary.removed as usize)
    }
}
