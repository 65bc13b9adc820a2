//! Pull-based execution of compiled plans over rows of term ids.
//!
//! Contract of [`Ctx::run`]: executing an operator with an input row yields every solution of the
//! operator's pattern that is compatible with the row, merged into it. Index nested-loop joins follow from
//! it (run the right side with each left row); operators that cannot take outer bindings were wrapped in
//! `Isolated` by the planner.
//!
//! A row is a `Vec<u64>` with one slot per variable of its scope; `0` (never a term id) means unbound. Terms
//! computed by the query and unknown to the store get ids with the [`LOCAL_TAG`], so id equality stays term
//! equality and SAME-TERM, DISTINCT, GROUP BY and joins compare integers.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::iter::once;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oxrdf::vocab::xsd;
use oxrdf::{BlankNode, Literal, Term};
use roaring::RoaringTreemap;
use tern_store::{GraphSel, IdQuad, Reader, TermId};

use crate::error::{QueryError, Result};
use crate::functions::{self, FnContext};
use crate::plan::{Agg, AggKind, CmpOp, Expr, Node, Op, Pos};

/// Per-row sets and maps hash our own integer ids: a fast hash instead of SipHash.
type FastSet<T> = foldhash::HashSet<T>;
/// See [`FastSet`].
type FastMap<K, V> = foldhash::HashMap<K, V>;

/// Tag (top byte) of ids of terms the store does not know: computed values, fresh blank nodes.
pub(crate) const LOCAL_TAG: u64 = 0xF0 << 56;

/// A row of term ids; `0` is unbound.
pub(crate) type Row = Vec<u64>;
/// A stream of rows.
pub(crate) type Rows<'a> = Box<dyn Iterator<Item = Result<Row>> + 'a>;

/// The graph a pattern is matched against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum GraphCtx {
    /// The dataset's default graph.
    Default,
    /// One named graph.
    Named(u64),
}

/// Uncommitted changes of an update request, overlaid on the snapshot so later operations of the same
/// request see earlier ones.
#[derive(Default)]
pub(crate) struct Delta {
    pub added: FastSet<IdQuad>,
    pub removed: FastSet<IdQuad>,
    pub created: HashSet<u64>,
    pub dropped: HashSet<u64>,
}

/// Planner statistics of one predicate (all graphs of the default graph set).
#[derive(Clone, Copy)]
pub(crate) struct PredEstimate {
    pub quads: f64,
    pub subjects: f64,
    pub objects: f64,
}

#[derive(Default)]
struct Local {
    map: HashMap<Term, u64>,
    rev: HashMap<u64, Term>,
    next: u64,
}

/// Everything one evaluation needs: the snapshot, the dataset, limits and the query-local terms.
pub(crate) struct Ctx {
    pub reader: Reader,
    pub delta: Option<Delta>,
    local: RefCell<Local>,
    /// Graphs merged into the default graph (`0` is the store's default graph).
    pub default_graphs: Vec<u64>,
    /// Named graphs of the dataset; `None` means every named graph of the store.
    pub named_graphs: Option<Vec<u64>>,
    deadline: Option<(Instant, Duration)>,
    cancel: Option<Arc<AtomicBool>>,
    pub fn_ctx: FnContext,
    ticks: Cell<u32>,
    failure: RefCell<Option<QueryError>>,
    pred_stats: RefCell<HashMap<u64, PredEstimate>>,
    total: Cell<Option<f64>>,
    bnode_salt: u64,
    pub profile: bool,
}

impl Ctx {
    pub(crate) fn new(
        reader: Reader,
        timeout: Option<Duration>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Ctx {
        Ctx {
            reader,
            delta: None,
            local: RefCell::default(),
            default_graphs: vec![0],
            named_graphs: None,
            deadline: timeout.map(|t| (Instant::now() + t, t)),
            cancel,
            fn_ctx: FnContext {
                base_iri: None,
                now: oxsdatatypes::DateTime::now(),
            },
            ticks: Cell::new(0),
            failure: RefCell::new(None),
            pred_stats: RefCell::default(),
            total: Cell::new(None),
            bnode_salt: rand::random(),
            profile: false,
        }
    }

    /// Fails once the deadline passed, the query was cancelled or a store read failed.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(e) = self.failure.borrow_mut().take() {
            return Err(e);
        }
        if let Some((deadline, timeout)) = self.deadline {
            if Instant::now() >= deadline {
                return Err(QueryError::Timeout(timeout));
            }
        }
        if let Some(c) = &self.cancel {
            if c.load(AtomicOrdering::Relaxed) {
                return Err(QueryError::Cancelled);
            }
        }
        Ok(())
    }

    /// Cheap periodic [`Ctx::check`] for inner loops.
    pub(crate) fn tick(&self) -> Result<()> {
        let t = self.ticks.get().wrapping_add(1);
        self.ticks.set(t);
        if t.is_multiple_of(1024) {
            self.check()
        } else {
            Ok(())
        }
    }

    fn fail(&self, e: QueryError) {
        let mut f = self.failure.borrow_mut();
        if f.is_none() {
            *f = Some(e);
        }
    }

    /// The id of a term: inline, known to the store, or query-local.
    pub(crate) fn intern(&self, term: &Term) -> Result<u64> {
        if let Some(id) = TermId::inline(term.as_ref()) {
            return Ok(id.0);
        }
        if let Some(&id) = self.local.borrow().map.get(term) {
            return Ok(id);
        }
        if let Some(id) = self.reader.term_id(term.as_ref())? {
            // The snapshot never changes: remember the answer (planning interns the same constants for
            // every estimate, BIND and aggregates once per row).
            self.local.borrow_mut().map.insert(term.clone(), id.0);
            return Ok(id.0);
        }
        let mut local = self.local.borrow_mut();
        local.next += 1;
        let id = LOCAL_TAG | local.next;
        local.map.insert(term.clone(), id);
        local.rev.insert(id, term.clone());
        Ok(id)
    }

    /// Records the store id a write transaction allocated for a new term, so the rest of the request
    /// resolves the term to it.
    pub(crate) fn register(&self, term: Term, id: u64) {
        let mut local = self.local.borrow_mut();
        local.map.insert(term.clone(), id);
        local.rev.insert(id, term);
    }

    pub(crate) fn is_local(id: u64) -> bool {
        id & LOCAL_TAG == LOCAL_TAG
    }

    /// The term of an id.
    pub(crate) fn term(&self, id: u64) -> Result<Term> {
        if let Some(t) = self.local.borrow().rev.get(&id) {
            return Ok(t.clone());
        }
        Ok(self.reader.term(TermId(id))?)
    }

    /// The terms of many ids with batched dictionary reads (dense id runs become one range scan).
    pub(crate) fn terms(&self, ids: &[u64]) -> Result<Vec<Term>> {
        let local = self.local.borrow();
        if local.rev.is_empty() {
            let ids: Vec<TermId> = ids.iter().map(|&id| TermId(id)).collect();
            return Ok(self.reader.terms(&ids)?);
        }
        let stored: Vec<TermId> = ids
            .iter()
            .filter(|id| !local.rev.contains_key(id))
            .map(|&id| TermId(id))
            .collect();
        let mut stored = self.reader.terms(&stored)?.into_iter();
        ids.iter()
            .map(|id| match local.rev.get(id) {
                Some(t) => Ok(t.clone()),
                None => stored
                    .next()
                    .ok_or_else(|| QueryError::Unsupported("internal: short term batch".into())),
            })
            .collect()
    }

    fn term_or_fail(&self, id: u64) -> Option<Term> {
        match self.term(id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    pub(crate) fn total_quads(&self) -> Result<f64> {
        if let Some(t) = self.total.get() {
            return Ok(t);
        }
        let t = self.reader.len()? as f64;
        self.total.set(Some(t));
        Ok(t)
    }

    pub(crate) fn predicate_estimate(&self, p: u64) -> Result<PredEstimate> {
        if let Some(e) = self.pred_stats.borrow().get(&p) {
            return Ok(*e);
        }
        let mut e = PredEstimate {
            quads: 0.0,
            subjects: 0.0,
            objects: 0.0,
        };
        if !Self::is_local(p) {
            for &g in &self.default_graphs {
                let st = self.reader.predicate_stats(TermId(g), TermId(p))?;
                e.quads += st.quads as f64;
                e.subjects += st.distinct_subjects as f64;
                e.objects += st.distinct_objects as f64;
            }
            if e.quads == 0.0 && self.delta.is_none() {
                // The data may live in named graphs: guess from the store size instead of 0.
                let total = self.total_quads()?;
                e = PredEstimate {
                    quads: total / 20.0,
                    subjects: total / 100.0,
                    objects: total / 100.0,
                };
            }
        }
        self.pred_stats.borrow_mut().insert(p, e);
        Ok(e)
    }

    /// Subjects having `(p, o)`: exact from the bitmap when there is one, else bounded by the bitmap
    /// threshold for IRI objects.
    pub(crate) fn pair_estimate(&self, p: u64, o: u64, st: &PredEstimate) -> Result<f64> {
        if Self::is_local(p) || Self::is_local(o) {
            return Ok(0.0);
        }
        let mut n = 0.0;
        let mut any = false;
        for &g in &self.default_graphs {
            if let Some(b) = self
                .reader
                .subjects_with_object_in(TermId(g), TermId(p), TermId(o))?
            {
                n += b.len() as f64;
                any = true;
            }
        }
        Ok(if any {
            n
        } else {
            (st.quads / st.objects.max(1.0)).min(tern_store::PO_BITMAP_THRESHOLD as f64)
        })
    }

    /// Whether every graph of the default graph set keeps a subject bitmap for `(p, o)`.
    pub(crate) fn has_pair_bitmap(&self, p: u64, o: u64) -> Result<bool> {
        if Self::is_local(p) || Self::is_local(o) || self.default_graphs.is_empty() {
            return Ok(false);
        }
        for &g in &self.default_graphs {
            if self
                .reader
                .subjects_with_object_in(TermId(g), TermId(p), TermId(o))?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn selections(&self, g: GraphCtx) -> Vec<GraphSel> {
        match g {
            GraphCtx::Named(id) => vec![GraphSel::Named(TermId(id))],
            GraphCtx::Default => self
                .default_graphs
                .iter()
                .map(|&id| {
                    if id == 0 {
                        GraphSel::Default
                    } else {
                        GraphSel::Named(TermId(id))
                    }
                })
                .collect(),
        }
    }

    /// Quads of the current graph matching a pattern of ids, with the update overlay applied.
    pub(crate) fn quads<'a>(
        &'a self,
        s: Option<u64>,
        p: Option<u64>,
        o: Option<u64>,
        g: GraphCtx,
    ) -> Box<dyn Iterator<Item = Result<IdQuad>> + 'a> {
        // A term the store does not know matches nothing stored (uncommitted terms are never local).
        if [s, p, o].iter().flatten().any(|&id| Self::is_local(id)) {
            return Box::new(std::iter::empty());
        }
        if let GraphCtx::Named(gid) = g {
            if Self::is_local(gid) {
                return Box::new(std::iter::empty());
            }
        }
        let sels = self.selections(g);
        let (ts, tp, to) = (s.map(TermId), p.map(TermId), o.map(TermId));
        let base = sels.clone().into_iter().flat_map(move |sel| {
            self.reader
                .quads_for_pattern(ts, tp, to, sel)
                .map(|q| q.map_err(QueryError::from))
        });
        // The default graph of a dataset with several FROM graphs is their RDF merge: a triple in two of
        // them is one triple, so drop repeats (seen per scan, keyed without the graph).
        let merged = g == GraphCtx::Default && self.default_graphs.len() > 1;
        let base: Box<dyn Iterator<Item = Result<IdQuad>> + 'a> = if merged {
            let mut seen = FastSet::default();
            Box::new(base.filter(move |q| match q {
                Ok(q) => seen.insert((q.s, q.p, q.o)),
                Err(_) => true,
            }))
        } else {
            Box::new(base)
        };
        match &self.delta {
            None => base,
            Some(delta) => {
                let in_sel = move |q: &IdQuad| {
                    sels.iter().any(|sel| match sel {
                        GraphSel::Default => q.g == TermId::DEFAULT_GRAPH,
                        GraphSel::Named(g) => q.g == *g,
                        GraphSel::AnyNamed => q.g != TermId::DEFAULT_GRAPH,
                        GraphSel::All => true,
                    })
                };
                let added = delta.added.iter().copied().filter(move |q| {
                    ts.is_none_or(|v| q.s == v)
                        && tp.is_none_or(|v| q.p == v)
                        && to.is_none_or(|v| q.o == v)
                        && in_sel(q)
                });
                Box::new(
                    base.filter(move |q| q.as_ref().map_or(true, |q| !delta.removed.contains(q)))
                        .chain(added.map(Ok)),
                )
            }
        }
    }

    /// Whether the store (with the update overlay) holds named graph `g`; one key lookup, where
    /// [`Ctx::named_graph_ids`] lists them all.
    pub(crate) fn has_named_graph(&self, g: u64) -> Result<bool> {
        if let Some(delta) = &self.delta {
            if delta.dropped.contains(&g) {
                return Ok(false);
            }
            if delta.created.contains(&g) {
                return Ok(true);
            }
        }
        Ok(!Self::is_local(g) && self.reader.contains_named_graph(TermId(g))?)
    }

    /// Named graphs of the dataset.
    pub(crate) fn named_graph_ids(&self) -> Result<Vec<u64>> {
        if let Some(n) = &self.named_graphs {
            return Ok(n.clone());
        }
        let mut out: Vec<u64> = self
            .reader
            .named_graphs()?
            .into_iter()
            .map(|t| t.0)
            .collect();
        if let Some(delta) = &self.delta {
            out.retain(|g| !delta.dropped.contains(g));
            out.extend(delta.created.iter().copied());
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    /// Runs an operator with an input row (see the module documentation for the contract).
    pub(crate) fn run<'a>(&'a self, op: &'a Op, input: Row, g: GraphCtx) -> Rows<'a> {
        let inner = self.run_node(op, input, g);
        // Rows and time are only read by EXPLAIN: counting them otherwise would cost a boxed adapter
        // per operator call on every row.
        if self.profile {
            Box::new(Timed { inner, op })
        } else {
            inner
        }
    }

    fn run_node<'a>(&'a self, op: &'a Op, input: Row, g: GraphCtx) -> Rows<'a> {
        match &op.node {
            Node::Unit => Box::new(once(Ok(input))),
            Node::Scan { s, p, o } => self.scan(*s, *p, *o, input, g),
            Node::Star { var, parts, cache } => {
                let bitmap = match self.star_bitmap(parts, cache, g) {
                    Ok(b) => b,
                    Err(e) => return Box::new(once(Err(e))),
                };
                let bound = input[*var];
                if bound != 0 {
                    return if bitmap.contains(bound) {
                        Box::new(once(Ok(input)))
                    } else {
                        Box::new(std::iter::empty())
                    };
                }
                let var = *var;
                let ids: Vec<u64> = bitmap.iter().collect();
                Box::new(ids.into_iter().map(move |id| {
                    self.tick()?;
                    let mut row = input.clone();
                    row[var] = id;
                    Ok(row)
                }))
            }
            Node::Join(left, right) => {
                Box::new(self.run(left, input, g).flat_map(move |r| match r {
                    Ok(row) => self.run(right, row, g),
                    Err(e) => Box::new(once(Err(e))),
                }))
            }
            Node::LeftJoin { left, right, expr } => {
                Box::new(self.run(left, input, g).flat_map(move |r| -> Rows<'a> {
                    let a = match r {
                        Ok(a) => a,
                        Err(e) => return Box::new(once(Err(e))),
                    };
                    let mut out = Vec::new();
                    for r in self.run(right, a.clone(), g) {
                        match r {
                            Ok(r) => {
                                if expr
                                    .as_ref()
                                    .is_none_or(|e| self.ebv(e, &r, g) == Some(true))
                                {
                                    out.push(Ok(r));
                                }
                            }
                            Err(e) => return Box::new(once(Err(e))),
                        }
                    }
                    if out.is_empty() {
                        out.push(Ok(a));
                    }
                    Box::new(out.into_iter())
                }))
            }
            Node::Filter { inner, expr } => Box::new(self.run(inner, input, g).filter(move |r| {
                r.as_ref()
                    .map_or(true, |r| self.ebv(expr, r, g) == Some(true))
            })),
            Node::Union(branches) => Box::new(
                branches
                    .iter()
                    .flat_map(move |b| self.run(b, input.clone(), g)),
            ),
            Node::Minus { left, right } => {
                let mat = match self.materialized(right, g, input.len()) {
                    Ok(m) => m,
                    Err(e) => return Box::new(once(Err(e))),
                };
                Box::new(self.run(left, input, g).filter(move |r| match r {
                    Ok(row) => !mat.excludes(row),
                    Err(_) => true,
                }))
            }
            Node::Extend { inner, var, expr } => {
                let var = *var;
                Box::new(self.run(inner, input, g).filter_map(move |r| {
                    let mut row = match r {
                        Ok(row) => row,
                        Err(e) => return Some(Err(e)),
                    };
                    if let Some(t) = self.eval(expr, &row, g) {
                        let id = match self.intern(&t) {
                            Ok(id) => id,
                            Err(e) => return Some(Err(e)),
                        };
                        if row[var] == 0 {
                            row[var] = id;
                        } else if row[var] != id {
                            return None;
                        }
                    }
                    Some(Ok(row))
                }))
            }
            Node::Values { vars, rows } => Box::new(rows.iter().filter_map(move |vals| {
                let mut row = input.clone();
                for (&slot, &v) in vars.iter().zip(vals) {
                    if v != 0 {
                        if row[slot] == 0 {
                            row[slot] = v;
                        } else if row[slot] != v {
                            return None;
                        }
                    }
                }
                Some(Ok(row))
            })),
            Node::Graph { name, inner } => {
                let graphs = match *name {
                    Pos::Const(id) => vec![id],
                    Pos::Var(slot) if input[slot] != 0 => vec![input[slot]],
                    Pos::Var(_) => match self.named_graph_ids() {
                        Ok(gs) => gs,
                        Err(e) => return Box::new(once(Err(e))),
                    },
                };
                // GRAPH only matches graphs of the dataset (a missing graph matches nothing, not `{}`).
                let allowed: Vec<u64> = match (&self.named_graphs, name) {
                    (Some(n), _) => graphs.into_iter().filter(|g| n.contains(g)).collect(),
                    (None, Pos::Var(slot)) if input[*slot] == 0 => graphs,
                    (None, _) => {
                        let mut known = Vec::with_capacity(graphs.len());
                        for g in graphs {
                            match self.has_named_graph(g) {
                                Ok(true) => known.push(g),
                                Ok(false) => {}
                                Err(e) => return Box::new(once(Err(e))),
                            }
                        }
                        known
                    }
                };
                let name = *name;
                Box::new(allowed.into_iter().flat_map(move |gid| {
                    let mut row = input.clone();
                    if let Pos::Var(slot) = name {
                        row[slot] = gid;
                    }
                    self.run(inner, row, GraphCtx::Named(gid))
                }))
            }
            Node::Isolated { .. } => {
                let mat = match self.materialized(op, g, input.len()) {
                    Ok(m) => m,
                    Err(e) => return Box::new(once(Err(e))),
                };
                let matches = mat.compatible(&input);
                Box::new(
                    matches
                        .into_iter()
                        .map(move |i| Ok(merge(&input, &mat.rows[i]))),
                )
            }
            Node::Project { inner, width, map } => {
                Box::new(self.run(inner, vec![0; *width], g).filter_map(move |r| {
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => return Some(Err(e)),
                    };
                    let mut out = input.clone();
                    for &(i, o) in map {
                        let v = r[i];
                        if v != 0 {
                            if out[o] == 0 {
                                out[o] = v;
                            } else if out[o] != v {
                                return None;
                            }
                        }
                    }
                    Some(Ok(out))
                }))
            }
            Node::Distinct(inner) => {
                let mut seen = FastSet::default();
                Box::new(self.run(inner, input, g).filter(move |r| match r {
                    // Copy only rows not seen before.
                    Ok(r) => !seen.contains(r) && seen.insert(r.clone()),
                    Err(_) => true,
                }))
            }
            Node::Slice {
                inner,
                start,
                length,
            } => {
                let it = self.run(inner, input, g).skip(*start);
                match length {
                    Some(l) => Box::new(it.take(*l)),
                    None => Box::new(it),
                }
            }
            Node::OrderBy { inner, keys } => match self.order_by(inner, keys, input, g) {
                Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                Err(e) => Box::new(once(Err(e))),
            },
            Node::Group { inner, keys, aggs } => match self.group(inner, keys, aggs, input, g) {
                Ok(rows) => Box::new(rows.into_iter().map(Ok)),
                Err(e) => Box::new(once(Err(e))),
            },
            Node::Path { s, path, o } => {
                let sv = resolve(*s, &input);
                let ov = resolve(*o, &input);
                let pairs = match self.path_pairs(path, sv, ov, g) {
                    Ok(p) => p,
                    Err(e) => return Box::new(once(Err(e))),
                };
                let (s, o) = (*s, *o);
                Box::new(pairs.into_iter().filter_map(move |(a, b)| {
                    let mut row = input.clone();
                    (bind(&mut row, s, a) && bind(&mut row, o, b)).then_some(Ok(row))
                }))
            }
        }
    }

    fn scan<'a>(&'a self, s: Pos, p: Pos, o: Pos, input: Row, g: GraphCtx) -> Rows<'a> {
        let (sv, pv, ov) = (resolve(s, &input), resolve(p, &input), resolve(o, &input));
        Box::new(self.quads(sv, pv, ov, g).filter_map(move |q| {
            let q = match q {
                Ok(q) => q,
                Err(e) => return Some(Err(e)),
            };
            if let Err(e) = self.tick() {
                return Some(Err(e));
            }
            let mut row = input.clone();
            (bind(&mut row, s, q.s.0) && bind(&mut row, p, q.p.0) && bind(&mut row, o, q.o.0))
                .then_some(Ok(row))
        }))
    }

    fn star_bitmap(
        &self,
        parts: &[(u64, u64)],
        cache: &RefCell<HashMap<GraphCtx, Rc<RoaringTreemap>>>,
        g: GraphCtx,
    ) -> Result<Rc<RoaringTreemap>> {
        if let Some(b) = cache.borrow().get(&g) {
            return Ok(Rc::clone(b));
        }
        let graphs: Vec<u64> = match g {
            GraphCtx::Default => self.default_graphs.clone(),
            GraphCtx::Named(id) => vec![id],
        };
        let mut total = RoaringTreemap::new();
        for gid in graphs {
            let mut acc: Option<RoaringTreemap> = None;
            for &(p, o) in parts {
                let set = if Self::is_local(p) || Self::is_local(o) || Self::is_local(gid) {
                    RoaringTreemap::new()
                } else if let Some(b) =
                    self.reader
                        .subjects_with_object_in(TermId(gid), TermId(p), TermId(o))?
                {
                    b
                } else {
                    // No bitmap: the pair is rare, a POS prefix scan collects it.
                    let mut b = RoaringTreemap::new();
                    let sel = if gid == 0 {
                        GraphSel::Default
                    } else {
                        GraphSel::Named(TermId(gid))
                    };
                    for q in
                        self.reader
                            .quads_for_pattern(None, Some(TermId(p)), Some(TermId(o)), sel)
                    {
                        b.insert(q?.s.0);
                    }
                    b
                };
                acc = Some(match acc {
                    None => set,
                    Some(a) => a & set,
                });
                if acc.as_ref().is_some_and(RoaringTreemap::is_empty) {
                    break;
                }
            }
            total |= acc.unwrap_or_default();
        }
        let total = Rc::new(total);
        cache.borrow_mut().insert(g, Rc::clone(&total));
        Ok(total)
    }

    /// The solutions of an `Isolated` operator in graph `g`, evaluated once.
    pub(crate) fn materialized(
        &self,
        op: &Op,
        g: GraphCtx,
        width: usize,
    ) -> Result<Rc<Materialized>> {
        let Node::Isolated {
            inner,
            certain,
            cache,
        } = &op.node
        else {
            return Err(QueryError::Unsupported(
                "internal: not an isolated operator".into(),
            ));
        };
        if let Some(m) = cache.borrow().get(&g) {
            return Ok(Rc::clone(m));
        }
        let mut rows = Vec::new();
        for r in self.run(inner, vec![0; width], g) {
            rows.push(r?);
        }
        let m = Rc::new(Materialized {
            rows,
            certain: certain.clone(),
            index: RefCell::default(),
        });
        cache.borrow_mut().insert(g, Rc::clone(&m));
        Ok(m)
    }

    fn order_by(
        &self,
        inner: &Op,
        keys: &[(Expr, bool)],
        input: Row,
        g: GraphCtx,
    ) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for r in self.run(inner, input, g) {
            let r = r?;
            let k: Vec<Option<Term>> = keys.iter().map(|(e, _)| self.eval(e, &r, g)).collect();
            rows.push((k, r));
        }
        self.check()?;
        rows.sort_by(|(a, _), (b, _)| {
            for ((x, y), (_, asc)) in a.iter().zip(b).zip(keys) {
                let c = functions::order_cmp(x.as_ref(), y.as_ref());
                let c = if *asc { c } else { c.reverse() };
                if c != std::cmp::Ordering::Equal {
                    return c;
                }
            }
            std::cmp::Ordering::Equal
        });
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    fn group(
        &self,
        inner: &Op,
        keys: &[usize],
        aggs: &[(usize, Agg)],
        input: Row,
        g: GraphCtx,
    ) -> Result<Vec<Row>> {
        let mut order: Vec<Vec<u64>> = Vec::new();
        let mut groups: FastMap<Vec<u64>, Vec<Row>> = FastMap::default();
        for r in self.run(inner, input.clone(), g) {
            let r = r?;
            let key: Vec<u64> = keys.iter().map(|&k| r[k]).collect();
            groups
                .entry(key)
                .or_insert_with_key(|k| {
                    order.push(k.clone());
                    Vec::new()
                })
                .push(r);
        }
        if keys.is_empty() && groups.is_empty() {
            order.push(Vec::new());
            groups.insert(Vec::new(), Vec::new());
        }
        let mut out = Vec::with_capacity(order.len());
        for key in order {
            let members = groups.remove(&key).unwrap_or_default();
            let mut row = input.clone();
            for (&slot, &v) in keys.iter().zip(&key) {
                row[slot] = v;
            }
            for (slot, agg) in aggs {
                if let Some(t) = self.aggregate(agg, &members, g) {
                    row[*slot] = self.intern(&t)?;
                }
            }
            out.push(row);
        }
        self.check()?;
        Ok(out)
    }

    fn aggregate(&self, agg: &Agg, rows: &[Row], g: GraphCtx) -> Option<Term> {
        if let AggKind::CountRows = agg.kind {
            let n = if agg.distinct {
                rows.iter().collect::<FastSet<_>>().len()
            } else {
                rows.len()
            };
            return Some(Literal::from(n as i64).into());
        }
        let expr = agg.expr.as_ref()?;
        let mut values: Vec<Option<Term>> = rows.iter().map(|r| self.eval(expr, r, g)).collect();
        if agg.distinct {
            let mut seen = FastSet::default();
            values.retain(|v| seen.insert(v.clone()));
        }
        match &agg.kind {
            AggKind::CountRows => None,
            AggKind::Count => Some(Literal::from(values.iter().flatten().count() as i64).into()),
            AggKind::Sum => {
                let mut acc: Term = Literal::from(0i64).into();
                for v in values {
                    acc = functions::arithmetic(functions::ArithOp::Add, &acc, &v?)?;
                }
                Some(acc)
            }
            AggKind::Avg => {
                if values.is_empty() {
                    return Some(Literal::from(0i64).into());
                }
                let n = values.len() as i64;
                let mut acc: Term = Literal::from(0i64).into();
                for v in values {
                    acc = functions::arithmetic(functions::ArithOp::Add, &acc, &v?)?;
                }
                functions::arithmetic(functions::ArithOp::Div, &acc, &Literal::from(n).into())
            }
            AggKind::Min | AggKind::Max => {
                let min = matches!(agg.kind, AggKind::Min);
                let mut best: Option<Term> = None;
                for v in values {
                    let v = v?;
                    best = Some(match best {
                        None => v,
                        Some(b) => {
                            let c = functions::order_cmp(Some(&v), Some(&b));
                            if (min && c.is_lt()) || (!min && c.is_gt()) {
                                v
                            } else {
                                b
                            }
                        }
                    });
                }
                best
            }
            AggKind::Sample => values.into_iter().flatten().next(),
            AggKind::GroupConcat(sep) => {
                // The result is a simple literal even when every value shares a language tag (W3C
                // agg-groupconcat-04/06).
                let mut out = String::new();
                for (i, v) in values.into_iter().enumerate() {
                    let Term::Literal(l) = v? else { return None };
                    if i > 0 {
                        out.push_str(sep);
                    }
                    out.push_str(l.value());
                }
                Some(Literal::new_simple_literal(out).into())
            }
        }
    }

    /// Effective boolean value of an expression; `None` is an error.
    pub(crate) fn ebv(&self, e: &Expr, row: &Row, g: GraphCtx) -> Option<bool> {
        match e {
            // Short-circuit the boolean operators without building literals.
            Expr::Or(a, b) => match (self.ebv(a, row, g), self.ebv(b, row, g)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::And(a, b) => match (self.ebv(a, row, g), self.ebv(b, row, g)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Not(a) => self.ebv(a, row, g).map(|b| !b),
            Expr::Bound(slot) => Some(row[*slot] != 0),
            Expr::Exists(op) => Some(self.exists(op, row, g)),
            _ => functions::ebv(&self.eval(e, row, g)?),
        }
    }

    fn exists(&self, op: &Op, row: &Row, g: GraphCtx) -> bool {
        match self.run(op, row.clone(), g).next() {
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                self.fail(e);
                false
            }
            None => false,
        }
    }

    /// Evaluates an expression on a row; `None` is an error (or an unbound variable).
    pub(crate) fn eval(&self, e: &Expr, row: &Row, g: GraphCtx) -> Option<Term> {
        let boolean = |b: bool| Some(Literal::from(b).into());
        match e {
            Expr::Const(t) => Some(t.clone()),
            Expr::Var(slot) => match row[*slot] {
                0 => None,
                id => self.term_or_fail(id),
            },
            Expr::Or(..) | Expr::And(..) | Expr::Not(..) | Expr::Bound(..) | Expr::Exists(..) => {
                boolean(self.ebv(e, row, g)?)
            }
            Expr::Equal(a, b) => boolean(functions::equals(
                &self.eval(a, row, g)?,
                &self.eval(b, row, g)?,
            )?),
            Expr::SameTerm(a, b) => boolean(self.eval(a, row, g)? == self.eval(b, row, g)?),
            Expr::Cmp(op, a, b) => {
                let c = functions::compare(&self.eval(a, row, g)?, &self.eval(b, row, g)?)?;
                boolean(match op {
                    CmpOp::Lt => c.is_lt(),
                    CmpOp::Le => c.is_le(),
                    CmpOp::Gt => c.is_gt(),
                    CmpOp::Ge => c.is_ge(),
                })
            }
            Expr::In(a, list) => {
                let v = self.eval(a, row, g)?;
                let mut error = false;
                for x in list {
                    match self.eval(x, row, g).and_then(|x| functions::equals(&v, &x)) {
                        Some(true) => return boolean(true),
                        Some(false) => {}
                        None => error = true,
                    }
                }
                if error {
                    None
                } else {
                    boolean(false)
                }
            }
            Expr::Arith(op, a, b) => {
                functions::arithmetic(*op, &self.eval(a, row, g)?, &self.eval(b, row, g)?)
            }
            Expr::Plus(a) => functions::unary_plus(&self.eval(a, row, g)?),
            Expr::Minus(a) => functions::unary_minus(&self.eval(a, row, g)?),
            Expr::If(c, a, b) => {
                if self.ebv(c, row, g)? {
                    self.eval(a, row, g)
                } else {
                    self.eval(b, row, g)
                }
            }
            Expr::Coalesce(list) => list.iter().find_map(|x| self.eval(x, row, g)),
            Expr::BNode(None) => Some(BlankNode::default().into()),
            Expr::BNode(Some(a)) => {
                let Term::Literal(l) = self.eval(a, row, g)? else {
                    return None;
                };
                if l.datatype() != xsd::STRING || l.language().is_some() {
                    return None;
                }
                // Same label within one solution, different across solutions and queries.
                let mut h = foldhash::fast::FixedState::with_seed(self.bnode_salt).build_hasher();
                // Blank nodes made by BNODE earlier in this solution must not change its identity.
                for &v in row {
                    let made_here = Self::is_local(v)
                        && matches!(self.local.borrow().rev.get(&v), Some(Term::BlankNode(_)));
                    (if made_here { 0 } else { v }).hash(&mut h);
                }
                l.value().hash(&mut h);
                Some(BlankNode::new_from_unique_id(u128::from(h.finish()) | 1 << 100).into())
            }
            Expr::Call(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a, row, g)?);
                }
                functions::call(f, &vals, &self.fn_ctx)
            }
        }
    }
}

/// Row positions by the values of some key variables.
type KeyIndex = FastMap<Vec<u64>, Vec<u32>>;

/// Rows of an isolated operator with lazily built hash indexes on the variables input rows bind.
pub(crate) struct Materialized {
    pub rows: Vec<Row>,
    certain: Vec<usize>,
    index: RefCell<FastMap<Vec<usize>, KeyIndex>>,
}

impl Materialized {
    /// Indexes of rows compatible with `input`.
    fn compatible(&self, input: &Row) -> Vec<usize> {
        let key_vars: Vec<usize> = self
            .certain
            .iter()
            .copied()
            .filter(|&v| input[v] != 0)
            .collect();
        if key_vars.is_empty() {
            return (0..self.rows.len())
                .filter(|&i| compatible(input, &self.rows[i]))
                .collect();
        }
        let mut index = self.index.borrow_mut();
        let map = index.entry(key_vars.clone()).or_insert_with(|| {
            let mut m = KeyIndex::default();
            for (i, r) in self.rows.iter().enumerate() {
                m.entry(key_vars.iter().map(|&v| r[v]).collect())
                    .or_default()
                    .push(i as u32);
            }
            m
        });
        let key: Vec<u64> = key_vars.iter().map(|&v| input[v]).collect();
        map.get(&key)
            .map(|c| {
                c.iter()
                    .map(|&i| i as usize)
                    .filter(|&i| compatible(input, &self.rows[i]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether MINUS removes `row`: some right row is compatible and shares a bound variable.
    fn excludes(&self, row: &Row) -> bool {
        self.compatible(row)
            .into_iter()
            .any(|i| shares(row, &self.rows[i]))
    }
}

fn compatible(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(&x, &y)| x == 0 || y == 0 || x == y)
}

fn shares(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).any(|(&x, &y)| x != 0 && y != 0)
}

fn merge(a: &[u64], b: &[u64]) -> Row {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| if x != 0 { x } else { y })
        .collect()
}

fn resolve(p: Pos, row: &Row) -> Option<u64> {
    match p {
        Pos::Const(id) => Some(id),
        Pos::Var(slot) => Some(row[slot]).filter(|&v| v != 0),
    }
}

/// Binds `value` at `p`; false when the slot already holds another value (a repeated variable).
fn bind(row: &mut Row, p: Pos, value: u64) -> bool {
    match p {
        Pos::Const(_) => true,
        Pos::Var(slot) => {
            if row[slot] == 0 {
                row[slot] = value;
                true
            } else {
                row[slot] == value
            }
        }
    }
}

/// Counts rows and inclusive time of an operator for EXPLAIN.
struct Timed<'a> {
    inner: Rows<'a>,
    op: &'a Op,
}

impl Iterator for Timed<'_> {
    type Item = Result<Row>;
    fn next(&mut self) -> Option<Result<Row>> {
        let start = Instant::now();
        let r = self.inner.next();
        self.op
            .nanos
            .set(self.op.nanos.get() + start.elapsed().as_nanos() as u64);
        if matches!(r, Some(Ok(_))) {
            self.op.rows.set(self.op.rows.get() + 1);
        }
        r
    }
}
