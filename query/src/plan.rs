//! Compiles `spargebra` algebra into a tree of physical operators on term ids.
//!
//! The central decision is *substitution*: an operator executed with an input row must return exactly the
//! solutions of its pattern that are compatible with that row (see `exec`). Scans, paths and VALUES can take
//! the row's bindings as constants (index nested-loop joins). Operators whose meaning would change if an
//! outer binding became visible inside them (a FILTER on a variable its pattern may leave unbound, a
//! subquery, an aggregate) are compiled as `Isolated`: evaluated once on their own, materialized, and joined
//! to input rows through a hash index. The compiler knows which variables may be bound by the time an
//! operator runs, so this choice is made once, here.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use oxrdf::{Term, Variable};
use roaring::RoaringTreemap;
use spargebra::algebra::{
    AggregateExpression, AggregateFunction, Expression, Function, GraphPattern, OrderExpression,
    PropertyPathExpression,
};
use spargebra::term::{NamedNodePattern, TermPattern, TriplePattern};

use crate::error::{QueryError, Result};
use crate::exec::{Ctx, GraphCtx};

/// One end of a triple pattern: a constant id or a row slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pos {
    Const(u64),
    Var(usize),
}

/// A compiled property path over ids.
#[derive(Debug)]
pub(crate) enum PathOp {
    Link(u64),
    Reverse(Box<PathOp>),
    Sequence(Box<PathOp>, Box<PathOp>),
    Alternative(Box<PathOp>, Box<PathOp>),
    ZeroOrMore(Box<PathOp>),
    OneOrMore(Box<PathOp>),
    ZeroOrOne(Box<PathOp>),
    NegatedSet(Vec<u64>),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled expression. Constants are kept as terms: expressions work on values.
pub(crate) enum Expr {
    Const(Term),
    Var(usize),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    SameTerm(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Arith(crate::functions::ArithOp, Box<Expr>, Box<Expr>),
    Plus(Box<Expr>),
    Minus(Box<Expr>),
    Bound(usize),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Coalesce(Vec<Expr>),
    Exists(Box<Op>),
    BNode(Option<Box<Expr>>),
    Call(Function, Vec<Expr>),
}

/// Aggregate functions.
pub(crate) enum AggKind {
    CountRows,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    Sample,
    GroupConcat(String),
}

/// One aggregate of a GROUP.
pub(crate) struct Agg {
    pub kind: AggKind,
    pub distinct: bool,
    pub expr: Option<Expr>,
}

/// A physical operator.
pub(crate) enum Node {
    /// One solution binding nothing (the empty group `{}`).
    Unit,
    /// Triple pattern scan over the current graph.
    Scan {
        s: Pos,
        p: Pos,
        o: Pos,
    },
    /// Subjects having every `(predicate, object)` pair: an intersection of roaring bitmaps.
    Star {
        var: usize,
        parts: Vec<(u64, u64)>,
        cache: RefCell<HashMap<GraphCtx, Rc<RoaringTreemap>>>,
    },
    /// Index nested-loop join: the right side runs once per left row, with its bindings.
    Join(Box<Op>, Box<Op>),
    LeftJoin {
        left: Box<Op>,
        right: Box<Op>,
        expr: Option<Expr>,
    },
    Filter {
        inner: Box<Op>,
        expr: Expr,
    },
    Union(Vec<Op>),
    Minus {
        left: Box<Op>,
        right: Box<Op>,
    },
    Extend {
        inner: Box<Op>,
        var: usize,
        expr: Expr,
    },
    Values {
        vars: Vec<usize>,
        rows: Vec<Vec<u64>>,
    },
    Graph {
        name: Pos,
        inner: Box<Op>,
    },
    /// Evaluated once per graph on its own, then hash-joined with input rows.
    Isolated {
        inner: Box<Op>,
        certain: Vec<usize>,
        cache: RefCell<HashMap<GraphCtx, Rc<crate::exec::Materialized>>>,
    },
    /// A subquery boundary: `inner` runs in its own scope of `width` slots; `map` copies
    /// `(inner slot, outer slot)`.
    Project {
        inner: Box<Op>,
        width: usize,
        map: Vec<(usize, usize)>,
    },
    Distinct(Box<Op>),
    Slice {
        inner: Box<Op>,
        start: usize,
        length: Option<usize>,
    },
    OrderBy {
        inner: Box<Op>,
        keys: Vec<(Expr, bool)>,
    },
    Group {
        inner: Box<Op>,
        keys: Vec<usize>,
        aggs: Vec<(usize, Agg)>,
    },
    Path {
        s: Pos,
        path: PathOp,
        o: Pos,
    },
}

/// An operator with its estimate and the counters EXPLAIN reports.
pub(crate) struct Op {
    pub node: Node,
    pub est: f64,
    pub rows: Cell<u64>,
    pub nanos: Cell<u64>,
}

impl Op {
    fn new(node: Node, est: f64) -> Op {
        Op {
            node,
            est,
            rows: Cell::new(0),
            nanos: Cell::new(0),
        }
    }
}

/// Variable slots of one scope (the query, or a subquery).
#[derive(Default)]
pub(crate) struct Scope {
    pub vars: Vec<Variable>,
    index: HashMap<String, usize>,
}

impl Scope {
    pub(crate) fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.vars.len();
        self.vars.push(Variable::new_unchecked(name));
        self.index.insert(name.to_owned(), i);
        i
    }

    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

type VarSet = HashSet<String>;

/// Compiles algebra in the context of one query evaluation (constants are interned through `ctx`,
/// statistics come from its snapshot).
pub(crate) struct Compiler<'c> {
    pub ctx: &'c Ctx,
    pub scope: Scope,
    /// Whether bitmap star joins may be used (not when evaluating over uncommitted update changes).
    pub use_bitmaps: bool,
}

impl<'c> Compiler<'c> {
    pub(crate) fn new(ctx: &'c Ctx) -> Self {
        Compiler {
            ctx,
            scope: Scope::default(),
            use_bitmaps: ctx.delta.is_none(),
        }
    }

    /// Compiles a pattern that may run with the variables of `bound` already bound.
    pub(crate) fn compile(&mut self, p: &GraphPattern, bound: &VarSet) -> Result<Op> {
        if !bound.is_empty() && !safe(p, bound) {
            let inner = self.compile(p, &VarSet::new())?;
            let certain = certain_vars(p)
                .iter()
                .filter_map(|v| self.scope.get(v))
                .collect();
            let est = inner.est;
            return Ok(Op::new(
                Node::Isolated {
                    inner: Box::new(inner),
                    certain,
                    cache: RefCell::default(),
                },
                est,
            ));
        }
        Ok(match p {
            GraphPattern::Bgp { .. }
            | GraphPattern::Join { .. }
            | GraphPattern::Path { .. }
            | GraphPattern::Values { .. } => self.compile_group(p, &[], bound)?,
            GraphPattern::Filter { expr, inner } => {
                let mut conj = Vec::new();
                conjuncts(expr, &mut conj);
                match inner.as_ref() {
                    GraphPattern::Bgp { .. }
                    | GraphPattern::Join { .. }
                    | GraphPattern::Path { .. }
                    | GraphPattern::Values { .. } => self.compile_group(inner, &conj, bound)?,
                    _ => {
                        let inner = self.compile(inner, bound)?;
                        let est = inner.est * 0.5;
                        let expr = self.expr(expr)?;
                        Op::new(
                            Node::Filter {
                                inner: Box::new(inner),
                                expr,
                            },
                            est,
                        )
                    }
                }
            }
            GraphPattern::LeftJoin {
                left,
                right,
                expression,
            } => {
                let l = self.compile(left, bound)?;
                let mut b2 = bound.clone();
                maybe_vars(left, &mut b2);
                let r = self.compile(right, &b2)?;
                let expr = expression.as_ref().map(|e| self.expr(e)).transpose()?;
                let est = l.est.max(1.0) * r.est.max(1.0);
                Op::new(
                    Node::LeftJoin {
                        left: Box::new(l),
                        right: Box::new(r),
                        expr,
                    },
                    est,
                )
            }
            GraphPattern::Union { .. } => {
                let mut branches = Vec::new();
                flatten_union(p, &mut branches);
                let ops = branches
                    .into_iter()
                    .map(|b| self.compile(b, bound))
                    .collect::<Result<Vec<_>>>()?;
                let est = ops.iter().map(|o| o.est).sum();
                Op::new(Node::Union(ops), est)
            }
            GraphPattern::Graph { name, inner } => {
                let (name, b2) = match name {
                    NamedNodePattern::NamedNode(n) => (
                        Pos::Const(self.ctx.intern(&n.clone().into())?),
                        bound.clone(),
                    ),
                    NamedNodePattern::Variable(v) => {
                        let mut b2 = bound.clone();
                        b2.insert(v.as_str().to_owned());
                        (Pos::Var(self.scope.slot(v.as_str())), b2)
                    }
                };
                let inner = self.compile(inner, &b2)?;
                let est = inner.est;
                Op::new(
                    Node::Graph {
                        name,
                        inner: Box::new(inner),
                    },
                    est,
                )
            }
            GraphPattern::Extend {
                inner,
                variable,
                expression,
            } => {
                let inner = self.compile(inner, bound)?;
                let var = self.scope.slot(variable.as_str());
                let expr = self.expr(expression)?;
                let est = inner.est;
                Op::new(
                    Node::Extend {
                        inner: Box::new(inner),
                        var,
                        expr,
                    },
                    est,
                )
            }
            GraphPattern::Minus { left, right } => {
                let l = self.compile(left, bound)?;
                let r = self.compile(right, &VarSet::new())?;
                let certain = certain_vars(right)
                    .iter()
                    .filter_map(|v| self.scope.get(v))
                    .collect();
                let est = l.est;
                let r_est = r.est;
                Op::new(
                    Node::Minus {
                        left: Box::new(l),
                        right: Box::new(Op::new(
                            Node::Isolated {
                                inner: Box::new(r),
                                certain,
                                cache: RefCell::default(),
                            },
                            r_est,
                        )),
                    },
                    est,
                )
            }
            GraphPattern::OrderBy { inner, expression } => {
                let inner = self.compile(inner, bound)?;
                let keys = expression
                    .iter()
                    .map(|k| match k {
                        OrderExpression::Asc(e) => Ok((self.expr(e)?, true)),
                        OrderExpression::Desc(e) => Ok((self.expr(e)?, false)),
                    })
                    .collect::<Result<Vec<_>>>()?;
                let est = inner.est;
                Op::new(
                    Node::OrderBy {
                        inner: Box::new(inner),
                        keys,
                    },
                    est,
                )
            }
            GraphPattern::Project { inner, variables } => {
                let outer = std::mem::take(&mut self.scope);
                let compiled = self.compile(inner, &VarSet::new());
                let inner_scope = std::mem::replace(&mut self.scope, outer);
                let compiled = compiled?;
                let map = variables
                    .iter()
                    .filter_map(|v| {
                        let outer_slot = self.scope.slot(v.as_str());
                        inner_scope.get(v.as_str()).map(|i| (i, outer_slot))
                    })
                    .collect();
                let est = compiled.est;
                Op::new(
                    Node::Project {
                        inner: Box::new(compiled),
                        width: inner_scope.vars.len(),
                        map,
                    },
                    est,
                )
            }
            GraphPattern::Distinct { inner } | GraphPattern::Reduced { inner } => {
                let inner = self.compile(inner, bound)?;
                let est = inner.est;
                Op::new(Node::Distinct(Box::new(inner)), est)
            }
            GraphPattern::Slice {
                inner,
                start,
                length,
            } => {
                let inner = self.compile(inner, bound)?;
                let est = length.map_or(inner.est, |l| (l as f64).min(inner.est));
                Op::new(
                    Node::Slice {
                        inner: Box::new(inner),
                        start: *start,
                        length: *length,
                    },
                    est,
                )
            }
            GraphPattern::Group {
                inner,
                variables,
                aggregates,
            } => {
                let inner = self.compile(inner, bound)?;
                let keys = variables
                    .iter()
                    .map(|v| self.scope.slot(v.as_str()))
                    .collect();
                let mut aggs = Vec::new();
                for (v, a) in aggregates {
                    let slot = self.scope.slot(v.as_str());
                    aggs.push((slot, self.aggregate(a)?));
                }
                let est = if variables.is_empty() {
                    1.0
                } else {
                    inner.est.sqrt()
                };
                Op::new(
                    Node::Group {
                        inner: Box::new(inner),
                        keys,
                        aggs,
                    },
                    est,
                )
            }
            GraphPattern::Service { silent, name, .. } => {
                if *silent {
                    Op::new(Node::Unit, 1.0)
                } else {
                    return Err(QueryError::Unsupported(format!(
                        "SERVICE not supported: tern does not federate queries (SERVICE {name})"
                    )));
                }
            }
            #[allow(unreachable_patterns)]
            _ => {
                return Err(QueryError::Unsupported(
                    "this graph pattern is not supported".into(),
                ))
            }
        })
    }

    fn aggregate(&mut self, a: &AggregateExpression) -> Result<Agg> {
        Ok(match a {
            AggregateExpression::CountSolutions { distinct } => Agg {
                kind: AggKind::CountRows,
                distinct: *distinct,
                expr: None,
            },
            AggregateExpression::FunctionCall {
                name,
                expr,
                distinct,
            } => {
                let kind = match name {
                    AggregateFunction::Count => AggKind::Count,
                    AggregateFunction::Sum => AggKind::Sum,
                    AggregateFunction::Avg => AggKind::Avg,
                    AggregateFunction::Min => AggKind::Min,
                    AggregateFunction::Max => AggKind::Max,
                    AggregateFunction::Sample => AggKind::Sample,
                    AggregateFunction::GroupConcat { separator } => {
                        AggKind::GroupConcat(separator.clone().unwrap_or_else(|| " ".into()))
                    }
                    AggregateFunction::Custom(n) => {
                        return Err(QueryError::Unsupported(format!(
                            "unknown aggregate function {n}"
                        )))
                    }
                };
                Agg {
                    kind,
                    distinct: *distinct,
                    expr: Some(self.expr(expr)?),
                }
            }
        })
    }

    /// Compiles an expression in the current scope.
    pub(crate) fn expr(&mut self, e: &Expression) -> Result<Expr> {
        let b = |c: &mut Self, e: &Expression| -> Result<Box<Expr>> { Ok(Box::new(c.expr(e)?)) };
        Ok(match e {
            Expression::NamedNode(n) => Expr::Const(n.clone().into()),
            Expression::Literal(l) => Expr::Const(l.clone().into()),
            Expression::Variable(v) => Expr::Var(self.scope.slot(v.as_str())),
            Expression::Or(a, c) => Expr::Or(b(self, a)?, b(self, c)?),
            Expression::And(a, c) => Expr::And(b(self, a)?, b(self, c)?),
            Expression::Equal(a, c) => Expr::Equal(b(self, a)?, b(self, c)?),
            Expression::SameTerm(a, c) => Expr::SameTerm(b(self, a)?, b(self, c)?),
            Expression::Greater(a, c) => Expr::Cmp(CmpOp::Gt, b(self, a)?, b(self, c)?),
            Expression::GreaterOrEqual(a, c) => Expr::Cmp(CmpOp::Ge, b(self, a)?, b(self, c)?),
            Expression::Less(a, c) => Expr::Cmp(CmpOp::Lt, b(self, a)?, b(self, c)?),
            Expression::LessOrEqual(a, c) => Expr::Cmp(CmpOp::Le, b(self, a)?, b(self, c)?),
            Expression::In(a, list) => Expr::In(
                b(self, a)?,
                list.iter().map(|x| self.expr(x)).collect::<Result<_>>()?,
            ),
            Expression::Add(a, c) => {
                Expr::Arith(crate::functions::ArithOp::Add, b(self, a)?, b(self, c)?)
            }
            Expression::Subtract(a, c) => {
                Expr::Arith(crate::functions::ArithOp::Sub, b(self, a)?, b(self, c)?)
            }
            Expression::Multiply(a, c) => {
                Expr::Arith(crate::functions::ArithOp::Mul, b(self, a)?, b(self, c)?)
            }
            Expression::Divide(a, c) => {
                Expr::Arith(crate::functions::ArithOp::Div, b(self, a)?, b(self, c)?)
            }
            Expression::UnaryPlus(a) => Expr::Plus(b(self, a)?),
            Expression::UnaryMinus(a) => Expr::Minus(b(self, a)?),
            Expression::Not(a) => Expr::Not(b(self, a)?),
            Expression::Exists(p) => {
                // EXISTS substitutes the current solution into its pattern: everything in scope may be bound.
                let bound: VarSet = self
                    .scope
                    .vars
                    .iter()
                    .map(|v| v.as_str().to_owned())
                    .collect();
                Expr::Exists(Box::new(self.compile(p, &bound)?))
            }
            Expression::Bound(v) => Expr::Bound(self.scope.slot(v.as_str())),
            Expression::If(a, c, d) => Expr::If(b(self, a)?, b(self, c)?, b(self, d)?),
            Expression::Coalesce(list) => {
                Expr::Coalesce(list.iter().map(|x| self.expr(x)).collect::<Result<_>>()?)
            }
            Expression::FunctionCall(Function::BNode, args) => Expr::BNode(match args.first() {
                Some(a) => Some(b(self, a)?),
                None => None,
            }),
            Expression::FunctionCall(f, args) => Expr::Call(
                f.clone(),
                args.iter().map(|x| self.expr(x)).collect::<Result<_>>()?,
            ),
        })
    }

    fn pos(&mut self, t: &TermPattern) -> Result<Pos> {
        Ok(match t {
            TermPattern::Variable(v) => Pos::Var(self.scope.slot(v.as_str())),
            // Blank nodes in a pattern are variables scoped to the query.
            TermPattern::BlankNode(b) => Pos::Var(self.scope.slot(&format!("_:{}", b.as_str()))),
            TermPattern::NamedNode(n) => Pos::Const(self.ctx.intern(&n.clone().into())?),
            TermPattern::Literal(l) => Pos::Const(self.ctx.intern(&l.clone().into())?),
            #[allow(unreachable_patterns)]
            _ => {
                return Err(QueryError::Unsupported(
                    "RDF 1.2 triple terms are not supported".into(),
                ))
            }
        })
    }

    fn npos(&mut self, t: &NamedNodePattern) -> Result<Pos> {
        Ok(match t {
            NamedNodePattern::Variable(v) => Pos::Var(self.scope.slot(v.as_str())),
            NamedNodePattern::NamedNode(n) => Pos::Const(self.ctx.intern(&n.clone().into())?),
        })
    }

    fn path(&mut self, p: &PropertyPathExpression) -> Result<PathOp> {
        Ok(match p {
            PropertyPathExpression::NamedNode(n) => {
                PathOp::Link(self.ctx.intern(&n.clone().into())?)
            }
            PropertyPathExpression::Reverse(a) => PathOp::Reverse(Box::new(self.path(a)?)),
            PropertyPathExpression::Sequence(a, b) => {
                PathOp::Sequence(Box::new(self.path(a)?), Box::new(self.path(b)?))
            }
            PropertyPathExpression::Alternative(a, b) => {
                PathOp::Alternative(Box::new(self.path(a)?), Box::new(self.path(b)?))
            }
            PropertyPathExpression::ZeroOrMore(a) => PathOp::ZeroOrMore(Box::new(self.path(a)?)),
            PropertyPathExpression::OneOrMore(a) => PathOp::OneOrMore(Box::new(self.path(a)?)),
            PropertyPathExpression::ZeroOrOne(a) => PathOp::ZeroOrOne(Box::new(self.path(a)?)),
            PropertyPathExpression::NegatedPropertySet(set) => PathOp::NegatedSet(
                set.iter()
                    .map(|n| self.ctx.intern(&n.clone().into()))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    /// Orders the members of a join group (triple patterns, paths, VALUES and other patterns) greedily by
    /// estimated cardinality given what is bound so far, and places each filter right after the member
    /// that binds its last variable.
    fn compile_group(
        &mut self,
        p: &GraphPattern,
        filters: &[&Expression],
        bound: &VarSet,
    ) -> Result<Op> {
        let mut members = Vec::new();
        flatten_join(p, &mut members);
        let mut elems: Vec<Elem<'_>> = Vec::new();
        for m in members {
            match m {
                GraphPattern::Bgp { patterns } => {
                    elems.extend(patterns.iter().map(Elem::Triple));
                }
                other => elems.push(Elem::Other(other)),
            }
        }
        // Stars: several `?x p o` patterns (constant p and o) on one subject become one bitmap intersection.
        if self.use_bitmaps {
            let mut by_subject: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, e) in elems.iter().enumerate() {
                if let Elem::Triple(t) = e {
                    if let (
                        TermPattern::Variable(v),
                        NamedNodePattern::NamedNode(_),
                        TermPattern::NamedNode(_),
                    ) = (&t.subject, &t.predicate, &t.object)
                    {
                        if !bound.contains(v.as_str()) {
                            by_subject.entry(v.as_str()).or_default().push(i);
                        }
                    }
                }
            }
            let mut star_members: Vec<Vec<&TriplePattern>> = Vec::new();
            let mut taken = HashSet::new();
            for (_, idx) in by_subject {
                // One pattern alone is worth a bitmap when the store keeps one for its pair: iterating or
                // probing a roaring bitmap beats scanning or seeking the POS index.
                let single_bitmap = idx.len() == 1
                    && match elems[idx[0]] {
                        Elem::Triple(TriplePattern {
                            predicate: NamedNodePattern::NamedNode(p),
                            object: TermPattern::NamedNode(o),
                            ..
                        }) => {
                            let p = self.ctx.intern(&p.clone().into())?;
                            let o = self.ctx.intern(&o.clone().into())?;
                            self.ctx.has_pair_bitmap(p, o)?
                        }
                        _ => false,
                    };
                if idx.len() >= 2 || single_bitmap {
                    star_members.push(
                        idx.iter()
                            .filter_map(|&i| match elems[i] {
                                Elem::Triple(t) => Some(t),
                                _ => None,
                            })
                            .collect(),
                    );
                    taken.extend(idx);
                }
            }
            let mut kept: Vec<Elem<'_>> = elems
                .into_iter()
                .enumerate()
                .filter(|(i, _)| !taken.contains(i))
                .map(|(_, e)| e)
                .collect();
            kept.extend(star_members.into_iter().map(Elem::Star));
            elems = kept;
        }

        let mut pending_filters: Vec<(&Expression, VarSet)> = filters
            .iter()
            .map(|f| {
                let mut vs = VarSet::new();
                expr_vars(f, &mut vs);
                (*f, vs)
            })
            .collect();
        let mut now_bound = bound.clone();
        let mut certain = bound.clone();
        let mut plan: Option<Op> = None;
        while !elems.is_empty() {
            let mut best: Option<(usize, bool, f64)> = None;
            for (i, e) in elems.iter().enumerate() {
                let connected = now_bound.is_empty() || e.shares(&now_bound);
                let est = self.estimate(e, &now_bound)?;
                let better = match best {
                    None => true,
                    Some((_, bc, be)) => (connected && !bc) || (connected == bc && est < be),
                };
                if better {
                    best = Some((i, connected, est));
                }
            }
            let Some((i, _, est)) = best else { break };
            let e = elems.remove(i);
            let op = self.compile_elem(&e, &now_bound, est)?;
            e.add_vars(&mut now_bound, &mut certain);
            let total = plan.as_ref().map_or(1.0, |p| p.est.max(1.0)) * op.est.max(0.1);
            let mut joined = match plan {
                None => op,
                Some(left) => Op::new(Node::Join(Box::new(left), Box::new(op)), total),
            };
            // Filters whose variables are now certainly bound run here, as early as possible.
            let mut k = 0;
            while k < pending_filters.len() {
                let (f, vs) = &pending_filters[k];
                if !contains_exists(f) && vs.iter().all(|v| certain.contains(v)) {
                    let expr = self.expr(f)?;
                    let est = joined.est * 0.5;
                    joined = Op::new(
                        Node::Filter {
                            inner: Box::new(joined),
                            expr,
                        },
                        est,
                    );
                    pending_filters.remove(k);
                } else {
                    k += 1;
                }
            }
            plan = Some(joined);
        }
        let mut plan = plan.unwrap_or_else(|| Op::new(Node::Unit, 1.0));
        for (f, _) in pending_filters {
            let expr = self.expr(f)?;
            let est = plan.est * 0.5;
            plan = Op::new(
                Node::Filter {
                    inner: Box::new(plan),
                    expr,
                },
                est,
            );
        }
        Ok(plan)
    }

    fn compile_elem(&mut self, e: &Elem<'_>, bound: &VarSet, est: f64) -> Result<Op> {
        Ok(match e {
            Elem::Triple(t) => {
                let s = self.pos(&t.subject)?;
                let p = self.npos(&t.predicate)?;
                let o = self.pos(&t.object)?;
                Op::new(Node::Scan { s, p, o }, est)
            }
            Elem::Star(ts) => {
                let mut var = 0;
                let mut parts = Vec::new();
                for t in ts {
                    if let Pos::Var(v) = self.pos(&t.subject)? {
                        var = v;
                    }
                    if let (Pos::Const(p), Pos::Const(o)) =
                        (self.npos(&t.predicate)?, self.pos(&t.object)?)
                    {
                        parts.push((p, o));
                    }
                }
                Op::new(
                    Node::Star {
                        var,
                        parts,
                        cache: RefCell::default(),
                    },
                    est,
                )
            }
            Elem::Other(GraphPattern::Path {
                subject,
                path,
                object,
            }) => {
                let s = self.pos(subject)?;
                let o = self.pos(object)?;
                let path = self.path(path)?;
                Op::new(Node::Path { s, path, o }, est)
            }
            Elem::Other(GraphPattern::Values {
                variables,
                bindings,
            }) => {
                let vars = variables
                    .iter()
                    .map(|v| self.scope.slot(v.as_str()))
                    .collect();
                let mut rows = Vec::with_capacity(bindings.len());
                for b in bindings {
                    let mut row = Vec::with_capacity(b.len());
                    for t in b {
                        row.push(match t {
                            None => 0,
                            Some(spargebra::term::GroundTerm::NamedNode(n)) => {
                                self.ctx.intern(&n.clone().into())?
                            }
                            Some(spargebra::term::GroundTerm::Literal(l)) => {
                                self.ctx.intern(&l.clone().into())?
                            }
                            #[allow(unreachable_patterns)]
                            Some(_) => {
                                return Err(QueryError::Unsupported(
                                    "RDF 1.2 triple terms are not supported".into(),
                                ))
                            }
                        });
                    }
                    rows.push(row);
                }
                Op::new(Node::Values { vars, rows }, est)
            }
            Elem::Other(p) => self.compile(p, bound)?,
        })
    }

    /// Estimated solutions of a group member per input row, given the bound variables.
    fn estimate(&mut self, e: &Elem<'_>, bound: &VarSet) -> Result<f64> {
        let is_bound = |t: &TermPattern| match t {
            TermPattern::Variable(v) => bound.contains(v.as_str()),
            TermPattern::BlankNode(b) => bound.contains(&format!("_:{}", b.as_str())),
            _ => true,
        };
        Ok(match e {
            Elem::Triple(t) => {
                let sb = is_bound(&t.subject);
                let ob = is_bound(&t.object);
                match &t.predicate {
                    NamedNodePattern::NamedNode(p) => {
                        let p = self.ctx.intern(&p.clone().into())?;
                        let st = self.ctx.predicate_estimate(p)?;
                        match (sb, ob) {
                            (true, true) => 0.5,
                            (true, false) => st.quads / st.subjects.max(1.0),
                            (false, true) => match (&t.object, self.use_bitmaps) {
                                (TermPattern::NamedNode(n), true) => {
                                    let o = self.ctx.intern(&n.clone().into())?;
                                    self.ctx.pair_estimate(p, o, &st)?
                                }
                                _ => st.quads / st.objects.max(1.0),
                            },
                            (false, false) => st.quads,
                        }
                    }
                    NamedNodePattern::Variable(v) => {
                        let total = self.ctx.total_quads()?;
                        let pb = bound.contains(v.as_str());
                        match (sb, ob, pb) {
                            (true, true, _) => 1.0,
                            (true, false, true) | (false, true, true) => 5.0,
                            (true, false, false) | (false, true, false) => 20.0,
                            (false, false, _) => total,
                        }
                    }
                }
            }
            Elem::Star(ts) => {
                let mut best = f64::MAX;
                for t in ts {
                    if let (NamedNodePattern::NamedNode(p), TermPattern::NamedNode(o)) =
                        (&t.predicate, &t.object)
                    {
                        let p = self.ctx.intern(&p.clone().into())?;
                        let o = self.ctx.intern(&o.clone().into())?;
                        let st = self.ctx.predicate_estimate(p)?;
                        best = best.min(self.ctx.pair_estimate(p, o, &st)?);
                    }
                }
                // Intersections shrink: every extra member halves the guess.
                best * 0.5f64.powi(ts.len() as i32 - 1)
            }
            Elem::Other(GraphPattern::Path {
                subject, object, ..
            }) => match (is_bound(subject), is_bound(object)) {
                (true, true) => 1.0,
                (true, false) | (false, true) => 50.0,
                (false, false) => self.ctx.total_quads()?,
            },
            Elem::Other(GraphPattern::Values { bindings, .. }) => bindings.len() as f64,
            Elem::Other(p) => {
                let mut vs = VarSet::new();
                maybe_vars(p, &mut vs);
                if vs.iter().any(|v| bound.contains(v)) {
                    1e4
                } else {
                    1e7
                }
            }
        })
    }
}

/// A member of a join group.
enum Elem<'p> {
    Triple(&'p TriplePattern),
    Star(Vec<&'p TriplePattern>),
    Other(&'p GraphPattern),
}

impl Elem<'_> {
    fn vars(&self) -> VarSet {
        let mut vs = VarSet::new();
        match self {
            Elem::Triple(t) => triple_vars(t, &mut vs),
            Elem::Star(ts) => ts.iter().for_each(|t| triple_vars(t, &mut vs)),
            Elem::Other(p) => maybe_vars(p, &mut vs),
        }
        vs
    }

    fn shares(&self, bound: &VarSet) -> bool {
        self.vars().iter().any(|v| bound.contains(v))
    }

    fn add_vars(&self, maybe: &mut VarSet, certain: &mut VarSet) {
        match self {
            Elem::Other(p) => {
                maybe_vars(p, maybe);
                certain.extend(certain_vars(p));
            }
            _ => {
                let vs = self.vars();
                maybe.extend(vs.iter().cloned());
                certain.extend(vs);
            }
        }
    }
}

fn flatten_join<'p>(p: &'p GraphPattern, out: &mut Vec<&'p GraphPattern>) {
    match p {
        GraphPattern::Join { left, right } => {
            flatten_join(left, out);
            flatten_join(right, out);
        }
        other => out.push(other),
    }
}

fn flatten_union<'p>(p: &'p GraphPattern, out: &mut Vec<&'p GraphPattern>) {
    match p {
        GraphPattern::Union { left, right } => {
            flatten_union(left, out);
            flatten_union(right, out);
        }
        other => out.push(other),
    }
}

fn conjuncts<'e>(e: &'e Expression, out: &mut Vec<&'e Expression>) {
    match e {
        Expression::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

fn contains_exists(e: &Expression) -> bool {
    match e {
        Expression::Exists(_) => true,
        Expression::Or(a, b)
        | Expression::And(a, b)
        | Expression::Equal(a, b)
        | Expression::SameTerm(a, b)
        | Expression::Greater(a, b)
        | Expression::GreaterOrEqual(a, b)
        | Expression::Less(a, b)
        | Expression::LessOrEqual(a, b)
        | Expression::Add(a, b)
        | Expression::Subtract(a, b)
        | Expression::Multiply(a, b)
        | Expression::Divide(a, b) => contains_exists(a) || contains_exists(b),
        Expression::UnaryPlus(a) | Expression::UnaryMinus(a) | Expression::Not(a) => {
            contains_exists(a)
        }
        Expression::In(a, l) => contains_exists(a) || l.iter().any(contains_exists),
        Expression::If(a, b, c) => contains_exists(a) || contains_exists(b) || contains_exists(c),
        Expression::Coalesce(l) | Expression::FunctionCall(_, l) => l.iter().any(contains_exists),
        _ => false,
    }
}

fn term_var(t: &TermPattern, out: &mut VarSet) {
    match t {
        TermPattern::Variable(v) => {
            out.insert(v.as_str().to_owned());
        }
        TermPattern::BlankNode(b) => {
            out.insert(format!("_:{}", b.as_str()));
        }
        _ => {}
    }
}

fn triple_vars(t: &TriplePattern, out: &mut VarSet) {
    term_var(&t.subject, out);
    if let NamedNodePattern::Variable(v) = &t.predicate {
        out.insert(v.as_str().to_owned());
    }
    term_var(&t.object, out);
}

/// Variables a pattern may bind (its in-scope variables).
pub(crate) fn maybe_vars(p: &GraphPattern, out: &mut VarSet) {
    match p {
        GraphPattern::Bgp { patterns } => patterns.iter().for_each(|t| triple_vars(t, out)),
        GraphPattern::Path {
            subject, object, ..
        } => {
            term_var(subject, out);
            term_var(object, out);
        }
        GraphPattern::Join { left, right }
        | GraphPattern::LeftJoin { left, right, .. }
        | GraphPattern::Union { left, right } => {
            maybe_vars(left, out);
            maybe_vars(right, out);
        }
        GraphPattern::Minus { left, .. } => maybe_vars(left, out),
        GraphPattern::Filter { inner, .. }
        | GraphPattern::OrderBy { inner, .. }
        | GraphPattern::Distinct { inner }
        | GraphPattern::Reduced { inner }
        | GraphPattern::Slice { inner, .. }
        | GraphPattern::Service { inner, .. } => maybe_vars(inner, out),
        GraphPattern::Graph { name, inner } => {
            if let NamedNodePattern::Variable(v) = name {
                out.insert(v.as_str().to_owned());
            }
            maybe_vars(inner, out);
        }
        GraphPattern::Extend {
            inner, variable, ..
        } => {
            maybe_vars(inner, out);
            out.insert(variable.as_str().to_owned());
        }
        GraphPattern::Values { variables, .. } => {
            out.extend(variables.iter().map(|v| v.as_str().to_owned()))
        }
        GraphPattern::Project { variables, .. } => {
            out.extend(variables.iter().map(|v| v.as_str().to_owned()))
        }
        GraphPattern::Group {
            variables,
            aggregates,
            ..
        } => {
            out.extend(variables.iter().map(|v| v.as_str().to_owned()));
            out.extend(aggregates.iter().map(|(v, _)| v.as_str().to_owned()));
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

/// Variables bound in every solution of a pattern.
pub(crate) fn certain_vars(p: &GraphPattern) -> VarSet {
    match p {
        GraphPattern::Bgp { .. } | GraphPattern::Path { .. } => {
            let mut out = VarSet::new();
            maybe_vars(p, &mut out);
            out
        }
        GraphPattern::Join { left, right } => {
            let mut out = certain_vars(left);
            out.extend(certain_vars(right));
            out
        }
        GraphPattern::LeftJoin { left, .. } | GraphPattern::Minus { left, .. } => {
            certain_vars(left)
        }
        GraphPattern::Union { left, right } => {
            let r = certain_vars(right);
            certain_vars(left)
                .into_iter()
                .filter(|v| r.contains(v))
                .collect()
        }
        GraphPattern::Filter { inner, .. }
        | GraphPattern::OrderBy { inner, .. }
        | GraphPattern::Distinct { inner }
        | GraphPattern::Reduced { inner }
        | GraphPattern::Slice { inner, .. }
        | GraphPattern::Extend { inner, .. } => certain_vars(inner),
        GraphPattern::Graph { name, inner } => {
            let mut out = certain_vars(inner);
            if let NamedNodePattern::Variable(v) = name {
                out.insert(v.as_str().to_owned());
            }
            out
        }
        GraphPattern::Values {
            variables,
            bindings,
        } => variables
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                bindings
                    .iter()
                    .all(|b| b.get(*i).is_some_and(Option::is_some))
            })
            .map(|(_, v)| v.as_str().to_owned())
            .collect(),
        GraphPattern::Project { inner, variables } => {
            let c = certain_vars(inner);
            variables
                .iter()
                .map(|v| v.as_str().to_owned())
                .filter(|v| c.contains(v))
                .collect()
        }
        GraphPattern::Group {
            inner, variables, ..
        } => {
            let c = certain_vars(inner);
            variables
                .iter()
                .map(|v| v.as_str().to_owned())
                .filter(|v| c.contains(v))
                .collect()
        }
        _ => VarSet::new(),
    }
}

/// Variables an expression reads (EXISTS patterns count all their variables).
pub(crate) fn expr_vars(e: &Expression, out: &mut VarSet) {
    match e {
        Expression::Variable(v) | Expression::Bound(v) => {
            out.insert(v.as_str().to_owned());
        }
        Expression::Or(a, b)
        | Expression::And(a, b)
        | Expression::Equal(a, b)
        | Expression::SameTerm(a, b)
        | Expression::Greater(a, b)
        | Expression::GreaterOrEqual(a, b)
        | Expression::Less(a, b)
        | Expression::LessOrEqual(a, b)
        | Expression::Add(a, b)
        | Expression::Subtract(a, b)
        | Expression::Multiply(a, b)
        | Expression::Divide(a, b) => {
            expr_vars(a, out);
            expr_vars(b, out);
        }
        Expression::UnaryPlus(a) | Expression::UnaryMinus(a) | Expression::Not(a) => {
            expr_vars(a, out)
        }
        Expression::In(a, l) => {
            expr_vars(a, out);
            l.iter().for_each(|x| expr_vars(x, out));
        }
        Expression::If(a, b, c) => {
            expr_vars(a, out);
            expr_vars(b, out);
            expr_vars(c, out);
        }
        Expression::Coalesce(l) | Expression::FunctionCall(_, l) => {
            l.iter().for_each(|x| expr_vars(x, out))
        }
        Expression::Exists(p) => maybe_vars(p, out),
        _ => {}
    }
}

/// Whether running `p` with the variables of `bound` substituted gives exactly the solutions of `p`
/// compatible with those bindings.
fn safe(p: &GraphPattern, bound: &VarSet) -> bool {
    // An outer binding of `v` is harmless where the pattern certainly binds `v` itself (the join checks
    // it anyway) and dangerous where the pattern may see `v` unbound.
    let exposed = |vars: &VarSet, certain: &VarSet| {
        vars.iter()
            .any(|v| bound.contains(v) && !certain.contains(v))
    };
    match p {
        GraphPattern::Bgp { .. } | GraphPattern::Path { .. } | GraphPattern::Values { .. } => true,
        GraphPattern::Join { left, right } => safe(left, bound) && safe(right, bound),
        GraphPattern::Union { left, right } => safe(left, bound) && safe(right, bound),
        GraphPattern::Graph { inner, .. } => safe(inner, bound),
        GraphPattern::Filter { expr, inner } => {
            let mut vs = VarSet::new();
            expr_vars(expr, &mut vs);
            safe(inner, bound) && !exposed(&vs, &certain_vars(inner))
        }
        GraphPattern::Extend {
            inner, expression, ..
        } => {
            let mut vs = VarSet::new();
            expr_vars(expression, &mut vs);
            safe(inner, bound) && !exposed(&vs, &certain_vars(inner))
        }
        GraphPattern::LeftJoin {
            left,
            right,
            expression,
        } => {
            let mut vs = VarSet::new();
            maybe_vars(right, &mut vs);
            if let Some(e) = expression {
                expr_vars(e, &mut vs);
            }
            safe(left, bound) && !exposed(&vs, &certain_vars(left))
        }
        GraphPattern::Minus { left, right } => {
            let mut vs = VarSet::new();
            maybe_vars(right, &mut vs);
            safe(left, bound) && !exposed(&vs, &certain_vars(left))
        }
        _ => false,
    }
}
