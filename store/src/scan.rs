//! Scans shared by transactional commits and bulk loads: existence of quads and of key prefixes in the
//! latest committed state (callers hold the writer lock, so that state is their base state).

use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, DB};

use crate::error::Result;
use crate::keys::{IdQuad, Index};
use crate::store::Inner;
use crate::term::TermId;

/// Prefix of `parts` in the default-graph index (`g` default) or the graph-first index (`g` named).
pub(crate) fn graph_prefix(g: TermId, parts: &[TermId], out: &mut Vec<u8>) {
    out.clear();
    if g != TermId::DEFAULT_GRAPH {
        out.extend_from_slice(&g.to_be_bytes());
    }
    for p in parts {
        out.extend_from_slice(&p.to_be_bytes());
    }
}

/// Forward-only existence counts over the default and graph-first variant of one index family, reusing one
/// RocksDB iterator each (groups are visited in key order, so every seek moves forward).
pub(crate) struct PrefixCounter<'d> {
    default: DBRawIteratorWithThreadMode<'d, DB>,
    named: DBRawIteratorWithThreadMode<'d, DB>,
    prefix: Vec<u8>,
}

impl<'d> PrefixCounter<'d> {
    pub(crate) fn new(db: &'d DB, default: &ColumnFamily, named: &ColumnFamily) -> Self {
        PrefixCounter {
            default: db.raw_iterator_cf(default),
            named: db.raw_iterator_cf(named),
            prefix: Vec::new(),
        }
    }

    /// Keys with prefix `(g,) parts`, counting at most `cap`; `visit` sees each counted key.
    pub(crate) fn count(
        &mut self,
        g: TermId,
        parts: &[TermId],
        cap: usize,
        mut visit: impl FnMut(&[u8]),
    ) -> Result<usize> {
        graph_prefix(g, parts, &mut self.prefix);
        let iter = if g == TermId::DEFAULT_GRAPH {
            &mut self.default
        } else {
            &mut self.named
        };
        iter.seek(&self.prefix);
        let mut n = 0;
        while n < cap && iter.valid() {
            match iter.key() {
                Some(k) if k.starts_with(&self.prefix) => visit(k),
                _ => break,
            }
            n += 1;
            iter.next();
        }
        iter.status()?;
        Ok(n)
    }
}

/// Whether each quad of `quads` (sorted by (g, s, p, o): default graph first, in SPO / GSPO key order) is
/// stored. One batched read per 4096 quads.
pub(crate) fn existing(inner: &Inner, quads: &[IdQuad]) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(quads.len());
    let split = quads.partition_point(IdQuad::in_default_graph);
    for (part, index) in [
        (&quads[..split], Index::Spo),
        (&quads[split..], Index::Gspo),
    ] {
        let cf = inner.cf(index.cf_name())?;
        let mut buf = [0u8; 32];
        for chunk in part.chunks(4096) {
            let keys: Vec<Vec<u8>> = chunk
                .iter()
                .map(|q| index.encode(q, &mut buf).to_vec())
                .collect();
            for r in inner.db.batched_multi_get_cf(cf, keys.iter(), true) {
                out.push(r?.is_some());
            }
        }
    }
    Ok(out)
}
