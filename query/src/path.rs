//! Property paths as sets of `(start, end)` id pairs.
//!
//! `*`, `+` and `?` are evaluated by breadth-first search from whichever end is bound, with a visited set,
//! so cycles terminate and each pair is produced once (their results are sets in SPARQL 1.1); sequences
//! and alternatives keep duplicates, as the algebra's joins and unions do.

use std::collections::{HashSet, VecDeque};

use crate::error::Result;
use crate::exec::{Ctx, GraphCtx};
use crate::plan::PathOp;

impl Ctx {
    /// Pairs `(s, o)` connected by `path` in graph `g`, restricted to the given ends.
    pub(crate) fn path_pairs(
        &self,
        path: &PathOp,
        s: Option<u64>,
        o: Option<u64>,
        g: GraphCtx,
    ) -> Result<Vec<(u64, u64)>> {
        self.check()?;
        Ok(match path {
            PathOp::Link(p) => {
                let mut out = Vec::new();
                for q in self.quads(s, Some(*p), o, g) {
                    let q = q?;
                    self.tick()?;
                    out.push((q.s.0, q.o.0));
                }
                out
            }
            PathOp::Reverse(inner) => self
                .path_pairs(inner, o, s, g)?
                .into_iter()
                .map(|(a, b)| (b, a))
                .collect(),
            PathOp::Sequence(a, b) => {
                let mut out = Vec::new();
                if s.is_some() || o.is_none() {
                    for (x, m) in self.path_pairs(a, s, None, g)? {
                        for (_, y) in self.path_pairs(b, Some(m), o, g)? {
                            out.push((x, y));
                        }
                    }
                } else {
                    for (m, y) in self.path_pairs(b, None, o, g)? {
                        for (x, _) in self.path_pairs(a, None, Some(m), g)? {
                            out.push((x, y));
                        }
                    }
                }
                out
            }
            PathOp::Alternative(a, b) => {
                let mut out = self.path_pairs(a, s, o, g)?;
                out.extend(self.path_pairs(b, s, o, g)?);
                out
            }
            PathOp::ZeroOrOne(inner) => {
                let mut set: HashSet<(u64, u64)> = HashSet::new();
                match (s, o) {
                    (Some(x), Some(y)) => {
                        if x == y {
                            set.insert((x, x));
                        }
                    }
                    (Some(x), None) => {
                        set.insert((x, x));
                    }
                    (None, Some(y)) => {
                        set.insert((y, y));
                    }
                    (None, None) => {
                        for n in self.graph_nodes(g)? {
                            set.insert((n, n));
                        }
                    }
                }
                set.extend(self.path_pairs(inner, s, o, g)?);
                set.into_iter().collect()
            }
            PathOp::ZeroOrMore(inner) | PathOp::OneOrMore(inner) => {
                let zero = matches!(path, PathOp::ZeroOrMore(_));
                match (s, o) {
                    (Some(x), _) => self
                        .reach(inner, x, zero, true, g)?
                        .into_iter()
                        .filter(|&y| o.is_none_or(|o| o == y))
                        .map(|y| (x, y))
                        .collect(),
                    (None, Some(y)) => self
                        .reach(inner, y, zero, false, g)?
                        .into_iter()
                        .map(|x| (x, y))
                        .collect(),
                    (None, None) => {
                        let starts: Vec<u64> = if zero {
                            self.graph_nodes(g)?
                        } else {
                            let mut seen = HashSet::new();
                            self.path_pairs(inner, None, None, g)?
                                .into_iter()
                                .map(|(a, _)| a)
                                .filter(|a| seen.insert(*a))
                                .collect()
                        };
                        let mut out = Vec::new();
                        for x in starts {
                            for y in self.reach(inner, x, zero, true, g)? {
                                out.push((x, y));
                            }
                        }
                        out
                    }
                }
            }
            PathOp::NegatedSet(excluded) => {
                let mut out = Vec::new();
                for q in self.quads(s, None, o, g) {
                    let q = q?;
                    self.tick()?;
                    if !excluded.contains(&q.p.0) {
                        out.push((q.s.0, q.o.0));
                    }
                }
                out
            }
        })
    }

    /// Nodes reachable from `start` by one or more steps of `step` (forward or backward), plus `start`
    /// itself when `zero`.
    fn reach(
        &self,
        step: &PathOp,
        start: u64,
        zero: bool,
        forward: bool,
        g: GraphCtx,
    ) -> Result<Vec<u64>> {
        let mut visited = HashSet::new();
        let mut out = Vec::new();
        if zero {
            visited.insert(start);
            out.push(start);
        }
        let mut queue = VecDeque::from([start]);
        let mut expanded = HashSet::new();
        while let Some(n) = queue.pop_front() {
            if !expanded.insert(n) {
                continue;
            }
            let next = if forward {
                self.path_pairs(step, Some(n), None, g)?
                    .into_iter()
                    .map(|(_, b)| b)
                    .collect::<Vec<_>>()
            } else {
                self.path_pairs(step, None, Some(n), g)?
                    .into_iter()
                    .map(|(a, _)| a)
                    .collect()
            };
            for m in next {
                if visited.insert(m) {
                    out.push(m);
                }
                queue.push_back(m);
            }
        }
        Ok(out)
    }

    /// Every subject and object of graph `g` (the domain of zero-length paths).
    fn graph_nodes(&self, g: GraphCtx) -> Result<Vec<u64>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for q in self.quads(None, None, None, g) {
            let q = q?;
            self.tick()?;
            for n in [q.s.0, q.o.0] {
                if seen.insert(n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
}
