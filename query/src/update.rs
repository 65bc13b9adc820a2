//! SPARQL 1.1 Update: every request is one store transaction.
//!
//! Operations run in order against the snapshot the transaction started from plus an overlay of the
//! request's own changes ([`Delta`]), so a later operation sees earlier ones; the overlay becomes one
//! atomic commit at the end. Any error (or timeout) before that drops the transaction: nothing is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use oxrdf::{BlankNode, NamedNode, Term};
use spargebra::algebra::{GraphPattern, GraphTarget, QueryDataset};
use spargebra::term::{
    GraphName, GraphNamePattern, GroundTerm, GroundTermPattern, NamedNodePattern, QuadPattern,
    TermPattern,
};
use spargebra::{GraphUpdateOperation, Update};
use tern_loaders::{input_format, read_quads, Input, LoadOptions};
use tern_store::{GraphSel, IdQuad, Store, TermId, Transaction};

use crate::error::{QueryError, Result};
use crate::exec::{Ctx, Delta, GraphCtx};
use crate::plan::Compiler;
use crate::UpdateOptions;

/// Applies `update` to `store` atomically.
pub(crate) fn execute(store: &Store, update: &Update, options: &UpdateOptions) -> Result<()> {
    let mut tx = store.transaction()?;
    let mut ctx = Ctx::new(tx.reader(), options.timeout, None);
    ctx.delta = Some(Delta::default());
    if let Some(base) = &update.base_iri {
        ctx.fn_ctx.base_iri = Some(base.clone());
    }
    for op in &update.operations {
        ctx.check()?;
        apply(&mut ctx, &mut tx, op, options)?;
    }
    ctx.check()?;
    let delta = ctx.delta.take().unwrap_or_default();
    for q in delta.removed {
        tx.remove_ids(q);
    }
    for q in delta.added {
        tx.insert_ids(q);
    }
    for g in delta.created {
        tx.create_graph(TermId(g));
    }
    for g in delta.dropped {
        tx.drop_graph(TermId(g))?;
    }
    tx.commit()?;
    Ok(())
}

fn delta(ctx: &mut Ctx) -> &mut Delta {
    ctx.delta.get_or_insert_with(Delta::default)
}

fn base_contains(ctx: &Ctx, q: &IdQuad) -> Result<bool> {
    let sel = if q.g == TermId::DEFAULT_GRAPH {
        GraphSel::Default
    } else {
        GraphSel::Named(q.g)
    };
    Ok(ctx
        .reader
        .quads_for_pattern(Some(q.s), Some(q.p), Some(q.o), sel)
        .next()
        .transpose()?
        .is_some())
}

fn insert(ctx: &mut Ctx, q: IdQuad) -> Result<()> {
    let in_base = base_contains(ctx, &q)?;
    let base_graph = q.g != TermId::DEFAULT_GRAPH && ctx.reader.contains_named_graph(q.g)?;
    let d = delta(ctx);
    d.removed.remove(&q);
    if !in_base {
        d.added.insert(q);
    }
    if q.g != TermId::DEFAULT_GRAPH {
        d.dropped.remove(&q.g.0);
        if !base_graph {
            d.created.insert(q.g.0);
        }
    }
    Ok(())
}

fn remove(ctx: &mut Ctx, q: IdQuad) -> Result<()> {
    if delta(ctx).added.remove(&q) {
        return Ok(());
    }
    if base_contains(ctx, &q)? {
        delta(ctx).removed.insert(q);
    }
    Ok(())
}

/// The id a write needs for `term`, allocating it in the transaction if the store does not know it.
fn write_id(ctx: &Ctx, tx: &mut Transaction<'_>, term: &Term) -> Result<u64> {
    let id = ctx.intern(term)?;
    if !Ctx::is_local(id) {
        return Ok(id);
    }
    let id = tx.intern(term.as_ref())?.0;
    ctx.register(term.clone(), id);
    Ok(id)
}

fn clear(ctx: &mut Ctx, g: GraphCtx) -> Result<()> {
    let quads: Vec<IdQuad> = ctx.quads(None, None, None, g).collect::<Result<Vec<_>>>()?;
    for q in quads {
        remove(ctx, q)?;
    }
    Ok(())
}

fn drop_named(ctx: &mut Ctx, g: u64) -> Result<()> {
    clear(ctx, GraphCtx::Named(g))?;
    let d = delta(ctx);
    d.created.remove(&g);
    d.dropped.insert(g);
    Ok(())
}

fn named_id(ctx: &Ctx, n: &NamedNode) -> Result<u64> {
    ctx.intern(&n.clone().into())
}

fn apply(
    ctx: &mut Ctx,
    tx: &mut Transaction<'_>,
    op: &GraphUpdateOperation,
    options: &UpdateOptions,
) -> Result<()> {
    match op {
        GraphUpdateOperation::InsertData { data } => {
            // Blank nodes of INSERT DATA are fresh: they never join existing ones.
            let mut fresh: HashMap<String, BlankNode> = HashMap::new();
            for q in data {
                let subject: Term = match &q.subject {
                    oxrdf::NamedOrBlankNode::NamedNode(n) => n.clone().into(),
                    oxrdf::NamedOrBlankNode::BlankNode(b) => fresh
                        .entry(b.as_str().to_owned())
                        .or_default()
                        .clone()
                        .into(),
                };
                let object: Term = match &q.object {
                    Term::BlankNode(b) => fresh
                        .entry(b.as_str().to_owned())
                        .or_default()
                        .clone()
                        .into(),
                    other => other.clone(),
                };
                let s = write_id(ctx, tx, &subject)?;
                let p = write_id(ctx, tx, &q.predicate.clone().into())?;
                let o = write_id(ctx, tx, &object)?;
                let g = match &q.graph_name {
                    GraphName::DefaultGraph => 0,
                    GraphName::NamedNode(n) => write_id(ctx, tx, &n.clone().into())?,
                };
                insert(ctx, IdQuad::new(TermId(s), TermId(p), TermId(o), TermId(g)))?;
            }
        }
        GraphUpdateOperation::DeleteData { data } => {
            for q in data {
                let object: Term = match &q.object {
                    GroundTerm::NamedNode(n) => n.clone().into(),
                    GroundTerm::Literal(l) => l.clone().into(),
                    #[allow(unreachable_patterns)]
                    _ => continue,
                };
                let ids = [
                    ctx.intern(&q.subject.clone().into())?,
                    ctx.intern(&q.predicate.clone().into())?,
                    ctx.intern(&object)?,
                    match &q.graph_name {
                        GraphName::DefaultGraph => 0,
                        GraphName::NamedNode(n) => named_id(ctx, n)?,
                    },
                ];
                if ids.iter().any(|&i| Ctx::is_local(i)) {
                    continue; // a term the store does not know: the quad is not there
                }
                remove(
                    ctx,
                    IdQuad::new(
                        TermId(ids[0]),
                        TermId(ids[1]),
                        TermId(ids[2]),
                        TermId(ids[3]),
                    ),
                )?;
            }
        }
        GraphUpdateOperation::DeleteInsert {
            delete,
            insert: ins,
            using,
            pattern,
        } => delete_insert(ctx, tx, delete, ins, using.as_ref(), pattern, options)?,
        GraphUpdateOperation::Load {
            silent,
            source,
            destination,
        } => {
            if let Err(e) = load(ctx, tx, source, destination, options) {
                if !*silent {
                    return Err(e);
                }
            }
        }
        GraphUpdateOperation::Clear { silent, graph } => match graph {
            GraphTarget::NamedNode(n) => {
                let g = named_id(ctx, n)?;
                if ctx.has_named_graph(g)? {
                    clear(ctx, GraphCtx::Named(g))?;
                } else if !*silent {
                    return Err(QueryError::Update(format!(
                        "CLEAR: graph {n} does not exist (use CLEAR SILENT to ignore)"
                    )));
                }
            }
            GraphTarget::DefaultGraph => clear(ctx, GraphCtx::Default)?,
            GraphTarget::NamedGraphs => {
                for g in ctx.named_graph_ids()? {
                    clear(ctx, GraphCtx::Named(g))?;
                }
            }
            GraphTarget::AllGraphs => {
                clear(ctx, GraphCtx::Default)?;
                for g in ctx.named_graph_ids()? {
                    clear(ctx, GraphCtx::Named(g))?;
                }
            }
        },
        GraphUpdateOperation::Create { silent, graph } => {
            let g = write_id(ctx, tx, &graph.clone().into())?;
            if ctx.has_named_graph(g)? {
                if !*silent {
                    return Err(QueryError::Update(format!(
                        "CREATE: graph {graph} already exists (use CREATE SILENT to ignore)"
                    )));
                }
            } else {
                let d = delta(ctx);
                d.dropped.remove(&g);
                d.created.insert(g);
            }
        }
        GraphUpdateOperation::Drop { silent, graph } => match graph {
            GraphTarget::NamedNode(n) => {
                let g = named_id(ctx, n)?;
                if ctx.has_named_graph(g)? {
                    drop_named(ctx, g)?;
                } else if !*silent {
                    return Err(QueryError::Update(format!(
                        "DROP: graph {n} does not exist (use DROP SILENT to ignore)"
                    )));
                }
            }
            GraphTarget::DefaultGraph => clear(ctx, GraphCtx::Default)?,
            GraphTarget::NamedGraphs => {
                for g in ctx.named_graph_ids()? {
                    drop_named(ctx, g)?;
                }
            }
            GraphTarget::AllGraphs => {
                clear(ctx, GraphCtx::Default)?;
                for g in ctx.named_graph_ids()? {
                    drop_named(ctx, g)?;
                }
            }
        },
    }
    Ok(())
}

fn delete_insert(
    ctx: &mut Ctx,
    tx: &mut Transaction<'_>,
    delete: &[spargebra::term::GroundQuadPattern],
    ins: &[QuadPattern],
    using: Option<&QueryDataset>,
    pattern: &GraphPattern,
    options: &UpdateOptions,
) -> Result<()> {
    // USING (or the protocol's using-graph-uri) sets the dataset of the WHERE clause only. WITH arrives
    // from the parser as a USING without a named-graph list: then every named graph stays visible.
    let (default, named) = if options.using_graphs.is_some() || options.using_named_graphs.is_some()
    {
        (
            Some(options.using_graphs.clone().unwrap_or_default()),
            Some(Some(options.using_named_graphs.clone().unwrap_or_default())),
        )
    } else if let Some(u) = using {
        (Some(u.default.clone()), Some(u.named.clone()))
    } else {
        (None, None)
    };
    let saved = (ctx.default_graphs.clone(), ctx.named_graphs.clone());
    if let Some(default) = default {
        ctx.default_graphs = default
            .iter()
            .map(|g| named_id(ctx, g))
            .collect::<Result<_>>()?;
    }
    if let Some(named) = named {
        ctx.named_graphs = named
            .map(|n| n.iter().map(|g| named_id(ctx, g)).collect::<Result<_>>())
            .transpose()?;
    }
    let evaluated = (|| -> Result<_> {
        let mut compiler = Compiler::new(ctx);
        let op = compiler.compile(pattern, &Default::default())?;
        let mut scope = compiler.scope;
        // Template variables the pattern never binds get a slot that stays empty.
        let mut slot = |name: &str| scope.slot(name);
        let del: Vec<[Slot; 4]> = delete
            .iter()
            .map(|q| {
                Ok([
                    ground_slot(ctx, &q.subject, &mut slot)?,
                    named_slot(ctx, &q.predicate, &mut slot)?,
                    ground_slot(ctx, &q.object, &mut slot)?,
                    graph_slot(ctx, &q.graph_name, &mut slot)?,
                ])
            })
            .collect::<Result<_>>()?;
        let insp: Vec<[Slot; 4]> = ins
            .iter()
            .map(|q| {
                Ok([
                    term_slot(ctx, &q.subject, &mut slot)?,
                    named_slot(ctx, &q.predicate, &mut slot)?,
                    term_slot(ctx, &q.object, &mut slot)?,
                    graph_slot(ctx, &q.graph_name, &mut slot)?,
                ])
            })
            .collect::<Result<_>>()?;
        let width = scope.vars.len();
        let mut rows = Vec::new();
        for r in ctx.run(&op, vec![0; width], GraphCtx::Default) {
            rows.push(r?);
        }
        Ok((rows, del, insp))
    })();
    ctx.default_graphs = saved.0;
    ctx.named_graphs = saved.1;
    let (rows, del, insp) = evaluated?;

    let mut to_delete = Vec::new();
    for row in &rows {
        for q in &del {
            let ids: Option<Vec<u64>> = q.iter().map(|s| s.resolve(row)).collect();
            if let Some(ids) = ids {
                if ids.iter().all(|&i| !Ctx::is_local(i)) {
                    to_delete.push(IdQuad::new(
                        TermId(ids[0]),
                        TermId(ids[1]),
                        TermId(ids[2]),
                        TermId(ids[3]),
                    ));
                }
            }
        }
    }
    let mut to_insert = Vec::new();
    for row in &rows {
        // Template blank nodes are fresh per solution.
        let mut fresh: HashMap<usize, u64> = HashMap::new();
        for q in &insp {
            let mut terms = Vec::with_capacity(4);
            for s in q {
                let id = match s {
                    Slot::BNode(i) => match fresh.get(i) {
                        Some(&id) => Some(id),
                        None => {
                            let id = write_id(ctx, tx, &BlankNode::default().into())?;
                            fresh.insert(*i, id);
                            Some(id)
                        }
                    },
                    other => other.resolve(row),
                };
                match id {
                    // 0 is the default graph, which has no term.
                    Some(0) => terms.push((0, Term::from(BlankNode::default()))),
                    Some(id) => terms.push((id, ctx.term(id)?)),
                    None => break,
                }
            }
            if terms.len() < 4 {
                continue;
            }
            let valid = matches!(terms[0].1, Term::NamedNode(_) | Term::BlankNode(_))
                && matches!(terms[1].1, Term::NamedNode(_))
                && (terms[3].0 == 0 || matches!(terms[3].1, Term::NamedNode(_)));
            if !valid {
                continue;
            }
            let mut ids = [0u64; 4];
            for (k, (id, term)) in terms.iter().enumerate() {
                ids[k] = if *id == 0 {
                    0
                } else {
                    write_id(ctx, tx, term)?
                };
            }
            to_insert.push(IdQuad::new(
                TermId(ids[0]),
                TermId(ids[1]),
                TermId(ids[2]),
                TermId(ids[3]),
            ));
        }
    }
    for q in to_delete {
        remove(ctx, q)?;
    }
    for q in to_insert {
        insert(ctx, q)?;
    }
    Ok(())
}

/// A template position of DELETE/INSERT.
enum Slot {
    Id(u64),
    Var(usize),
    BNode(usize),
}

impl Slot {
    fn resolve(&self, row: &[u64]) -> Option<u64> {
        match self {
            Slot::Id(id) => Some(*id),
            Slot::Var(v) => row.get(*v).copied().filter(|&x| x != 0),
            Slot::BNode(_) => None,
        }
    }
}

fn ground_slot(
    ctx: &Ctx,
    t: &GroundTermPattern,
    slot: &mut impl FnMut(&str) -> usize,
) -> Result<Slot> {
    Ok(match t {
        GroundTermPattern::NamedNode(n) => Slot::Id(ctx.intern(&n.clone().into())?),
        GroundTermPattern::Literal(l) => Slot::Id(ctx.intern(&l.clone().into())?),
        GroundTermPattern::Variable(v) => Slot::Var(slot(v.as_str())),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(QueryError::Unsupported(
                "RDF 1.2 triple terms are not supported".into(),
            ))
        }
    })
}

fn term_slot(ctx: &Ctx, t: &TermPattern, slot: &mut impl FnMut(&str) -> usize) -> Result<Slot> {
    Ok(match t {
        TermPattern::NamedNode(n) => Slot::Id(ctx.intern(&n.clone().into())?),
        TermPattern::Literal(l) => Slot::Id(ctx.intern(&l.clone().into())?),
        TermPattern::Variable(v) => Slot::Var(slot(v.as_str())),
        TermPattern::BlankNode(b) => Slot::BNode(slot(&format!("\0tpl:{}", b.as_str()))),
        #[allow(unreachable_patterns)]
        _ => {
            return Err(QueryError::Unsupported(
                "RDF 1.2 triple terms are not supported".into(),
            ))
        }
    })
}

fn named_slot(
    ctx: &Ctx,
    t: &NamedNodePattern,
    slot: &mut impl FnMut(&str) -> usize,
) -> Result<Slot> {
    Ok(match t {
        NamedNodePattern::NamedNode(n) => Slot::Id(ctx.intern(&n.clone().into())?),
        NamedNodePattern::Variable(v) => Slot::Var(slot(v.as_str())),
    })
}

fn graph_slot(
    ctx: &Ctx,
    t: &GraphNamePattern,
    slot: &mut impl FnMut(&str) -> usize,
) -> Result<Slot> {
    Ok(match t {
        GraphNamePattern::NamedNode(n) => Slot::Id(ctx.intern(&n.clone().into())?),
        GraphNamePattern::DefaultGraph => Slot::Id(0),
        GraphNamePattern::Variable(v) => Slot::Var(slot(v.as_str())),
    })
}

/// `LOAD <file:...>`: parses the file into the overlay.
fn load(
    ctx: &mut Ctx,
    tx: &mut Transaction<'_>,
    source: &NamedNode,
    destination: &GraphName,
    options: &UpdateOptions,
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| QueryError::Update(format!("LOAD {source}: {e}"));
    let (input, format, reader): (Input, _, Box<dyn std::io::Read>) = if let Some(path) =
        source.as_str().strip_prefix("file://")
    {
        let path = PathBuf::from(path);
        if let Some(allow) = &options.load_allow {
            let canonical = path.canonicalize().map_err(|e| fail(&e))?;
            if !allow.iter().any(|dir| {
                Path::new(dir)
                    .canonicalize()
                    .is_ok_and(|d| canonical.starts_with(d))
            }) {
                return Err(fail(
                    &"the file is outside the directories this server may load from",
                ));
            }
        }
        let input = Input::Path(path);
        let (format, compression) = input_format(&input, None).map_err(|e| fail(&e))?;
        let reader = input
            .open(compression, Arc::new(AtomicU64::new(0)))
            .map_err(|e| fail(&e))?;
        (input, format, Box::new(reader))
    } else if source.as_str().starts_with("http://") {
        if !options.allow_http_load {
            return Err(fail(&"loading over HTTP is disabled here"));
        }
        let (format, reader) = fetch(source.as_str()).map_err(|e| fail(&e))?;
        (Input::Path(PathBuf::from(source.as_str())), format, reader)
    } else {
        return Err(fail(
                &"only file: and http: IRIs can be loaded (https needs TLS, which this build leaves out)",
            ));
    };
    let load_options = LoadOptions {
        base_iri: Some(source.as_str().to_owned()),
        graph: match destination {
            GraphName::NamedNode(n) => Some(n.clone()),
            GraphName::DefaultGraph => None,
        },
        ..LoadOptions::default()
    };
    let quads = read_quads(&input, format, &load_options, reader).map_err(|e| fail(&e))?;
    for q in quads {
        let q = q.map_err(|e| fail(&e))?;
        ctx.tick()?;
        let s = write_id(ctx, tx, &q.subject.into())?;
        let p = write_id(ctx, tx, &q.predicate.into())?;
        let o = write_id(ctx, tx, &q.object)?;
        let g = match q.graph_name {
            oxrdf::GraphName::DefaultGraph => 0,
            oxrdf::GraphName::NamedNode(n) => write_id(ctx, tx, &n.into())?,
            oxrdf::GraphName::BlankNode(b) => write_id(ctx, tx, &b.into())?,
        };
        insert(ctx, IdQuad::new(TermId(s), TermId(p), TermId(o), TermId(g)))?;
    }
    Ok(())
}

/// GETs an RDF document over plain HTTP; the syntax comes from the response's Content-Type, else the URL.
fn fetch(url: &str) -> std::result::Result<(tern_loaders::Format, Box<dyn std::io::Read>), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let response = agent
        .get(url)
        .header(
            "Accept",
            "text/turtle, application/n-triples, application/n-quads, application/trig, \
             application/rdf+xml;q=0.9, application/ld+json;q=0.8",
        )
        .call()
        .map_err(|e| e.to_string())?;
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let format = media
        .as_deref()
        .and_then(tern_loaders::Format::from_name)
        .or_else(|| tern_loaders::Format::from_path(Path::new(url)).0)
        .ok_or_else(|| format!("cannot tell the RDF syntax (Content-Type {media:?})"))?;
    Ok((format, Box::new(response.into_body().into_reader())))
}
