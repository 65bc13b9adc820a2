//! Query results: streams of solutions, booleans and graphs, and their serializations.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;

use oxrdf::{BlankNode, NamedOrBlankNode, Term, Triple, Variable};
use oxrdfio::{RdfFormat, RdfSerializer};
use sparesults::{QueryResultsFormat, QueryResultsSerializer};
use spargebra::algebra::{GraphPattern, QueryDataset};
use spargebra::term::{NamedNodePattern, TermPattern, TriplePattern};
use spargebra::Query;
use tern_store::Reader;

use crate::error::{QueryError, Result};
use crate::exec::{Ctx, GraphCtx, Rows};
use crate::plan::{Compiler, Node, Op};
use crate::QueryOptions;

pub use sparesults::QuerySolution;

/// Serialization formats of solutions and booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFormat {
    /// SPARQL 1.1 Query Results JSON.
    Json,
    /// SPARQL Query Results XML.
    Xml,
    /// SPARQL 1.1 Query Results CSV.
    Csv,
    /// SPARQL 1.1 Query Results TSV.
    Tsv,
}

impl ResultFormat {
    fn sparesults(self) -> QueryResultsFormat {
        match self {
            ResultFormat::Json => QueryResultsFormat::Json,
            ResultFormat::Xml => QueryResultsFormat::Xml,
            ResultFormat::Csv => QueryResultsFormat::Csv,
            ResultFormat::Tsv => QueryResultsFormat::Tsv,
        }
    }

    /// The format of a short name (`json`, `xml`, `csv`, `tsv`, case-insensitive).
    pub fn from_name(name: &str) -> Option<ResultFormat> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(ResultFormat::Json),
            "xml" => Some(ResultFormat::Xml),
            "csv" => Some(ResultFormat::Csv),
            "tsv" => Some(ResultFormat::Tsv),
            _ => None,
        }
    }

    /// The IANA media type.
    pub fn media_type(self) -> &'static str {
        self.sparesults().media_type()
    }
}

/// The result of a query.
pub enum QueryResults {
    /// SELECT: a stream of solutions.
    Solutions(Solutions),
    /// ASK.
    Boolean(bool),
    /// CONSTRUCT and DESCRIBE: a stream of triples (without duplicates).
    Graph(Triples),
}

impl QueryResults {
    /// Writes solutions or a boolean in a results format. Graphs need [`QueryResults::write_graph`].
    pub fn write(self, writer: impl Write, format: ResultFormat) -> Result<()> {
        let serializer = QueryResultsSerializer::from_format(format.sparesults());
        match self {
            QueryResults::Boolean(b) => {
                serializer.serialize_boolean_to_writer(writer, b)?;
            }
            QueryResults::Solutions(solutions) => {
                let mut out = serializer
                    .serialize_solutions_to_writer(writer, solutions.variables().to_vec())?;
                for s in solutions {
                    out.serialize(&s?)?;
                }
                out.finish()?;
            }
            QueryResults::Graph(_) => {
                return Err(QueryError::Unsupported(
                    "CONSTRUCT and DESCRIBE results are graphs: write them in an RDF format".into(),
                ))
            }
        }
        Ok(())
    }

    /// Writes a graph result in an RDF format.
    pub fn write_graph(self, writer: impl Write, format: RdfFormat) -> Result<()> {
        let QueryResults::Graph(triples) = self else {
            return Err(QueryError::Unsupported(
                "only CONSTRUCT and DESCRIBE results are graphs".into(),
            ));
        };
        let mut out = RdfSerializer::from_format(format).for_writer(writer);
        for t in triples {
            out.serialize_triple(&t?)?;
        }
        out.finish()?;
        Ok(())
    }
}

/// The compiled plan and the context it runs in; owned by result streams.
pub(crate) struct Prepared {
    pub ctx: Ctx,
    pub op: Op,
    pub width: usize,
}

type RowsOf<'a> = Rows<'a>;

self_cell::self_cell!(
    /// A row stream that owns its snapshot and plan.
    pub(crate) struct RowStream {
        owner: Prepared,
        #[not_covariant]
        dependent: RowsOf,
    }
);

impl RowStream {
    fn start(prepared: Prepared) -> RowStream {
        RowStream::new(prepared, |p| {
            p.ctx.run(&p.op, vec![0; p.width], GraphCtx::Default)
        })
    }

    fn next_row(&mut self) -> Option<Result<Vec<u64>>> {
        self.with_dependent_mut(|_, rows| rows.next())
    }

    fn term(&self, id: u64) -> Result<Term> {
        self.borrow_owner().ctx.term(id)
    }

    fn terms(&self, ids: &[u64]) -> Result<Vec<Term>> {
        self.borrow_owner().ctx.terms(ids)
    }
}

/// Rows decoded per dictionary batch.
const DECODE_BATCH: usize = 256;

/// A stream of SELECT solutions. Evaluation happens as it is consumed; terms are decoded a batch of rows at
/// a time so the dictionary is read with batched (often sequential) reads instead of one lookup per value.
pub struct Solutions {
    variables: Arc<[Variable]>,
    slots: Vec<usize>,
    stream: RowStream,
    ready: VecDeque<QuerySolution>,
    failed: Option<QueryError>,
    done: bool,
}

impl Solutions {
    /// The projected variables, in SELECT order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    fn fill(&mut self) -> Result<()> {
        let mut rows = Vec::new();
        while rows.len() < DECODE_BATCH {
            match self.stream.next_row() {
                Some(Ok(r)) => rows.push(r),
                Some(Err(e)) => {
                    // Hand out the rows before the error first.
                    self.failed = Some(e);
                    break;
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        let ids: Vec<u64> = rows
            .iter()
            .flat_map(|r| self.slots.iter().map(move |&s| r[s]))
            .filter(|&id| id != 0)
            .collect();
        let mut terms = self.stream.terms(&ids)?.into_iter();
        for row in rows {
            let values: Vec<Option<Term>> = self
                .slots
                .iter()
                .map(|&s| if row[s] == 0 { None } else { terms.next() })
                .collect();
            self.ready
                .push_back(QuerySolution::from((Arc::clone(&self.variables), values)));
        }
        Ok(())
    }
}

impl Solutions {
    /// Evaluates up to the first solution, so an error that happens before any row (a timeout in a sort, a
    /// failure in the first scan) is returned here, where a server can still answer with an error status.
    pub fn prefetch(&mut self) -> Result<()> {
        if self.ready.is_empty() && !self.done && self.failed.is_none() {
            self.fill()?;
        }
        match self.failed.take() {
            Some(e) if self.ready.is_empty() => {
                self.done = true;
                Err(e)
            }
            other => {
                self.failed = other;
                Ok(())
            }
        }
    }
}

impl Iterator for Solutions {
    type Item = Result<QuerySolution>;

    fn next(&mut self) -> Option<Result<QuerySolution>> {
        loop {
            if let Some(s) = self.ready.pop_front() {
                return Some(Ok(s));
            }
            if let Some(e) = self.failed.take() {
                self.done = true;
                return Some(Err(e));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// A stream of triples.
pub struct Triples {
    inner: Box<dyn Iterator<Item = Result<Triple>>>,
    peeked: Option<Triple>,
}

impl Triples {
    fn new(inner: Box<dyn Iterator<Item = Result<Triple>>>) -> Triples {
        Triples {
            inner,
            peeked: None,
        }
    }

    /// Evaluates up to the first triple (see [`Solutions::prefetch`]).
    pub fn prefetch(&mut self) -> Result<()> {
        if self.peeked.is_none() {
            match self.inner.next() {
                Some(Ok(t)) => self.peeked = Some(t),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(())
    }
}

impl Iterator for Triples {
    type Item = Result<Triple>;
    fn next(&mut self) -> Option<Result<Triple>> {
        if let Some(t) = self.peeked.take() {
            return Some(Ok(t));
        }
        self.inner.next()
    }
}

impl QueryResults {
    /// Evaluates up to the first solution or triple; see [`Solutions::prefetch`].
    pub fn prefetch(&mut self) -> Result<()> {
        match self {
            QueryResults::Solutions(s) => s.prefetch(),
            QueryResults::Graph(t) => t.prefetch(),
            QueryResults::Boolean(_) => Ok(()),
        }
    }
}

/// Template position of CONSTRUCT.
enum Tpl {
    Const(Term),
    Var(usize),
    BNode(usize),
}

struct ConstructIter {
    stream: RowStream,
    template: Vec<[Tpl; 3]>,
    bnodes: usize,
    buffer: VecDeque<Triple>,
    seen: HashSet<Triple>,
}

impl Iterator for ConstructIter {
    type Item = Result<Triple>;

    fn next(&mut self) -> Option<Result<Triple>> {
        loop {
            if let Some(t) = self.buffer.pop_front() {
                return Some(Ok(t));
            }
            let row = match self.stream.next_row()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            // Template blank nodes are fresh for every solution.
            let fresh: Vec<BlankNode> = (0..self.bnodes).map(|_| BlankNode::default()).collect();
            for tpl in &self.template {
                let mut terms = Vec::with_capacity(3);
                for p in tpl {
                    terms.push(match p {
                        Tpl::Const(t) => Some(t.clone()),
                        Tpl::BNode(i) => Some(fresh[*i].clone().into()),
                        Tpl::Var(slot) => match row[*slot] {
                            0 => None,
                            id => match self.stream.term(id) {
                                Ok(t) => Some(t),
                                Err(e) => return Some(Err(e)),
                            },
                        },
                    });
                }
                let (Some(s), Some(p), Some(o)) =
                    (terms[0].take(), terms[1].take(), terms[2].take())
                else {
                    continue;
                };
                let subject: NamedOrBlankNode = match s {
                    Term::NamedNode(n) => n.into(),
                    Term::BlankNode(b) => b.into(),
                    _ => continue,
                };
                let Term::NamedNode(predicate) = p else {
                    continue;
                };
                let t = Triple::new(subject, predicate, o);
                if self.seen.insert(t.clone()) {
                    self.buffer.push_back(t);
                }
            }
        }
    }
}

/// Resolves the dataset of a query into graph ids.
fn set_dataset(
    ctx: &mut Ctx,
    dataset: Option<&QueryDataset>,
    options: &QueryOptions,
) -> Result<()> {
    let default = options
        .default_graphs
        .clone()
        .or_else(|| dataset.map(|d| d.default.clone()));
    let named = options
        .named_graphs
        .clone()
        .or_else(|| dataset.map(|d| d.named.clone().unwrap_or_default()));
    let explicit = default.is_some() || named.is_some();
    if let Some(default) = default {
        ctx.default_graphs = default
            .iter()
            .map(|g| ctx.intern(&g.clone().into()))
            .collect::<Result<_>>()?;
    } else if explicit {
        ctx.default_graphs = Vec::new();
    }
    if let Some(named) = named {
        ctx.named_graphs = Some(
            named
                .iter()
                .map(|g| ctx.intern(&g.clone().into()))
                .collect::<Result<_>>()?,
        );
    } else if explicit {
        ctx.named_graphs = Some(Vec::new());
    }
    Ok(())
}

fn new_ctx(reader: Reader, options: &QueryOptions, base: Option<String>) -> Result<Ctx> {
    let mut ctx = Ctx::new(reader, options.timeout, options.cancel.clone());
    if let Some(base) = base {
        ctx.fn_ctx.base_iri = oxiri::Iri::parse(base).ok();
    }
    Ok(ctx)
}

/// The variables a top-level SELECT projects (looking through DISTINCT, REDUCED and slices).
fn projection(p: &GraphPattern) -> Option<&[Variable]> {
    match p {
        GraphPattern::Project { variables, .. } => Some(variables),
        GraphPattern::Distinct { inner }
        | GraphPattern::Reduced { inner }
        | GraphPattern::Slice { inner, .. }
        | GraphPattern::OrderBy { inner, .. } => projection(inner),
        _ => None,
    }
}

fn prepare(ctx: Ctx, pattern: &GraphPattern) -> Result<(Prepared, crate::plan::Scope)> {
    ctx.check()?;
    // The compiler borrows the context; move the context in only once the plan exists.
    let (op, scope) = {
        let mut compiler = Compiler::new(&ctx);
        let op = compiler.compile(pattern, &Default::default())?;
        (op, compiler.scope)
    };
    let width = scope.vars.len();
    Ok((Prepared { ctx, op, width }, scope))
}

/// The dataset, pattern and base IRI every query form has.
fn parts(
    query: &Query,
) -> (
    &Option<QueryDataset>,
    &GraphPattern,
    &Option<oxiri::Iri<String>>,
) {
    match query {
        Query::Select {
            dataset,
            pattern,
            base_iri,
        }
        | Query::Ask {
            dataset,
            pattern,
            base_iri,
        }
        | Query::Construct {
            dataset,
            pattern,
            base_iri,
            ..
        }
        | Query::Describe {
            dataset,
            pattern,
            base_iri,
        } => (dataset, pattern, base_iri),
    }
}

/// Context (dataset, base IRI, limits) and compiled plan of a query; `profile` times every operator.
fn plan(
    reader: Reader,
    query: &Query,
    options: &QueryOptions,
    profile: bool,
) -> Result<(Prepared, crate::plan::Scope)> {
    let (dataset, pattern, base) = parts(query);
    let mut ctx = new_ctx(
        reader,
        options,
        base.as_ref().map(|b| b.as_str().to_owned()),
    )?;
    ctx.profile = profile;
    set_dataset(&mut ctx, dataset.as_ref(), options)?;
    prepare(ctx, pattern)
}

/// Evaluates a parsed query.
pub(crate) fn evaluate_query(
    reader: Reader,
    query: Query,
    options: &QueryOptions,
) -> Result<QueryResults> {
    let (prepared, scope) = plan(reader, &query, options, false)?;
    match &query {
        Query::Select { pattern, .. } => {
            let variables: Vec<Variable> = projection(pattern)
                .map(<[Variable]>::to_vec)
                .unwrap_or_else(|| {
                    scope
                        .vars
                        .iter()
                        .filter(|v| !v.as_str().starts_with("_:") && !v.as_str().starts_with('\0'))
                        .cloned()
                        .collect()
                });
            let slots = variables
                .iter()
                .map(|v| scope.get(v.as_str()).unwrap_or(usize::MAX))
                .collect::<Vec<_>>();
            if slots.contains(&usize::MAX) {
                return Err(QueryError::Unsupported(
                    "internal: projected variable without a slot".into(),
                ));
            }
            let (prepared, slots) = strip_projection(prepared, slots);
            Ok(QueryResults::Solutions(Solutions {
                variables: variables.into(),
                slots,
                stream: RowStream::start(prepared),
                ready: VecDeque::new(),
                failed: None,
                done: false,
            }))
        }
        Query::Ask { .. } => {
            let mut stream = RowStream::start(prepared);
            match stream.next_row() {
                None => Ok(QueryResults::Boolean(false)),
                Some(Ok(_)) => Ok(QueryResults::Boolean(true)),
                Some(Err(e)) => Err(e),
            }
        }
        Query::Construct { template, .. } => {
            let mut bnodes: HashMap<String, usize> = HashMap::new();
            let mut scope = scope;
            let mut tpl = |t: &TermPattern| -> Result<Tpl> {
                Ok(match t {
                    TermPattern::NamedNode(n) => Tpl::Const(n.clone().into()),
                    TermPattern::Literal(l) => Tpl::Const(l.clone().into()),
                    TermPattern::BlankNode(b) => {
                        let n = bnodes.len();
                        Tpl::BNode(*bnodes.entry(b.as_str().to_owned()).or_insert(n))
                    }
                    TermPattern::Variable(v) => match scope.get(v.as_str()) {
                        Some(s) => Tpl::Var(s),
                        // Never bound by the pattern: the template triple never instantiates.
                        None => Tpl::Var(scope.slot("\0unbound")),
                    },
                    #[allow(unreachable_patterns)]
                    _ => {
                        return Err(QueryError::Unsupported(
                            "RDF 1.2 triple terms are not supported".into(),
                        ))
                    }
                })
            };
            let mut compiled = Vec::new();
            for TriplePattern {
                subject,
                predicate,
                object,
            } in template
            {
                let p = match predicate {
                    NamedNodePattern::NamedNode(n) => Tpl::Const(n.clone().into()),
                    NamedNodePattern::Variable(v) => tpl(&TermPattern::Variable(v.clone()))?,
                };
                compiled.push([tpl(subject)?, p, tpl(object)?]);
            }
            let nb = bnodes.len();
            let mut prepared = prepared;
            prepared.width = prepared.width.max(scope.vars.len());
            Ok(QueryResults::Graph(Triples::new(Box::new(ConstructIter {
                stream: RowStream::start(prepared),
                template: compiled,
                bnodes: nb,
                buffer: VecDeque::new(),
                seen: HashSet::new(),
            }))))
        }
        Query::Describe { .. } => {
            let mut stream = RowStream::start(prepared);
            let mut resources = Vec::new();
            let mut seen = HashSet::new();
            while let Some(row) = stream.next_row() {
                for id in row? {
                    if id != 0 && seen.insert(id) {
                        resources.push(id);
                    }
                }
            }
            let triples = describe(stream.borrow_owner(), resources)?;
            Ok(QueryResults::Graph(Triples::new(Box::new(
                triples.into_iter().map(Ok),
            ))))
        }
    }
}

/// Reads the projected values straight from the rows of the top-level SELECT's inner pattern instead of
/// copying every row into the projection's scope (one allocation and copy less per result row).
fn strip_projection(prepared: Prepared, slots: Vec<usize>) -> (Prepared, Vec<usize>) {
    let Prepared { ctx, op, width } = prepared;
    let Node::Project {
        inner,
        width: inner_width,
        map,
    } = op.node
    else {
        return (Prepared { ctx, op, width }, slots);
    };
    // Slot `inner_width` is never written: projected variables the pattern never binds read it.
    let slots = slots
        .iter()
        .map(|s| {
            map.iter()
                .find(|(_, o)| o == s)
                .map_or(inner_width, |(i, _)| *i)
        })
        .collect();
    (
        Prepared {
            ctx,
            op: *inner,
            width: inner_width + 1,
        },
        slots,
    )
}

/// Concise bounded description: the triples of each resource, following blank-node objects.
fn describe(prepared: &Prepared, resources: Vec<u64>) -> Result<Vec<Triple>> {
    let ctx = &prepared.ctx;
    let mut out = Vec::new();
    let mut done = HashSet::new();
    let mut queue: VecDeque<u64> = resources.into();
    while let Some(r) = queue.pop_front() {
        if !done.insert(r) {
            continue;
        }
        let (Term::NamedNode(_) | Term::BlankNode(_)) = ctx.term(r)? else {
            continue;
        };
        for q in ctx.quads(Some(r), None, None, GraphCtx::Default) {
            let q = q?;
            let (s, p, o) = (ctx.term(q.s.0)?, ctx.term(q.p.0)?, ctx.term(q.o.0)?);
            if let Term::BlankNode(_) = o {
                queue.push_back(q.o.0);
            }
            let subject: NamedOrBlankNode = match s {
                Term::NamedNode(n) => n.into(),
                Term::BlankNode(b) => b.into(),
                _ => continue,
            };
            let Term::NamedNode(predicate) = p else {
                continue;
            };
            out.push(Triple::new(subject, predicate, o));
        }
    }
    Ok(out)
}

/// Runs a query to the end and describes its plan with estimated and actual rows and inclusive time.
pub(crate) fn explain_query(
    reader: Reader,
    query: Query,
    options: &QueryOptions,
) -> Result<String> {
    let (prepared, scope) = plan(reader, &query, options, true)?;
    let start = std::time::Instant::now();
    let mut rows = 0u64;
    for r in prepared
        .ctx
        .run(&prepared.op, vec![0; prepared.width], GraphCtx::Default)
    {
        r?;
        rows += 1;
    }
    let elapsed = start.elapsed();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{rows} rows in {:.3} ms (est = planner estimate, rows = actual, ms = inclusive time)",
        elapsed.as_secs_f64() * 1000.0
    );
    render(&prepared.op, &scope, 0, &mut out);
    Ok(out)
}

fn render(op: &Op, scope: &crate::plan::Scope, depth: usize, out: &mut String) {
    let var = |slot: usize| {
        scope
            .vars
            .get(slot)
            .map_or_else(|| format!("#{slot}"), |v| v.to_string())
    };
    let pos = |p: &crate::plan::Pos| match p {
        crate::plan::Pos::Const(id) => format!("#{id:x}"),
        crate::plan::Pos::Var(s) => var(*s),
    };
    let label = match &op.node {
        Node::Unit => "Unit".to_owned(),
        Node::Scan { s, p, o } => format!("Scan {} {} {}", pos(s), pos(p), pos(o)),
        Node::Star { var: v, parts, .. } => {
            format!("BitmapStar {} ({} pairs intersected)", var(*v), parts.len())
        }
        Node::Join(..) => "NestedLoopJoin".to_owned(),
        Node::LeftJoin { .. } => "LeftJoin (optional)".to_owned(),
        Node::Filter { .. } => "Filter".to_owned(),
        Node::Union(b) => format!("Union ({} branches)", b.len()),
        Node::Minus { .. } => "Minus (hash)".to_owned(),
        Node::Extend { var: v, .. } => format!("Bind {}", var(*v)),
        Node::Values { rows, .. } => format!("Values ({} rows)", rows.len()),
        Node::Graph { name, .. } => format!("Graph {}", pos(name)),
        Node::Isolated { .. } => "Materialize + HashJoin".to_owned(),
        Node::Project { .. } => "SubQuery".to_owned(),
        Node::Distinct(_) => "Distinct".to_owned(),
        Node::Slice { start, length, .. } => format!("Slice offset {start} limit {length:?}"),
        Node::OrderBy { keys, .. } => format!("OrderBy ({} keys)", keys.len()),
        Node::Group { keys, aggs, .. } => {
            format!("Group ({} keys, {} aggregates)", keys.len(), aggs.len())
        }
        Node::Path { s, o, .. } => format!("Path {} {}", pos(s), pos(o)),
    };
    let _ = writeln!(
        out,
        "{:indent$}{label}  est={:.0} rows={} ms={:.3}",
        "",
        op.est,
        op.rows.get(),
        op.nanos.get() as f64 / 1e6,
        indent = depth * 2
    );
    let children: Vec<&Op> = match &op.node {
        Node::Join(a, b) | Node::Minus { left: a, right: b } => vec![a, b],
        Node::LeftJoin { left, right, .. } => vec![left, right],
        Node::Union(bs) => bs.iter().collect(),
        Node::Filter { inner, .. }
        | Node::Extend { inner, .. }
        | Node::Graph { inner, .. }
        | Node::Isolated { inner, .. }
        | Node::Project { inner, .. }
        | Node::Distinct(inner)
        | Node::Slice { inner, .. }
        | Node::OrderBy { inner, .. }
        | Node::Group { inner, .. } => vec![inner],
        _ => vec![],
    };
    for c in children {
        render(c, scope, depth + 1, out);
    }
}
