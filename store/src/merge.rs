//! RocksDB merge operators: bitmap deltas and `i64` counters.
//!
//! Writers never read-modify-write a bitmap or a counter: they append a merge operand and RocksDB folds
//! operands together on read and during compaction.
//!
//! A bitmap operand is a *delta* `(adds, removes)` meaning `x ↦ (x \ removes) ∪ adds`. Such maps are closed
//! under composition, so the operator is associative and partial merges can fold operands without the base
//! value: `(A1,R1) then (A2,R2) = ((A1 \ R2) ∪ A2, (R1 \ A2) ∪ R2)`. A stored base value is a delta whose
//! `removes` is empty.

use roaring::RoaringTreemap;
use rocksdb::MergeOperands;

/// Name of the bitmap merge operator (stored in RocksDB's OPTIONS; changing it needs a format bump).
pub const BITMAP_MERGE_NAME: &str = "tern.bitmap.delta.v1";
/// Name of the counter merge operator.
pub const COUNTER_MERGE_NAME: &str = "tern.counter.add.v1";

/// A bitmap delta, the value type of the bitmap column family.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct BitmapDelta {
    /// Members to add.
    pub adds: RoaringTreemap,
    /// Members to remove (applied before `adds`).
    pub removes: RoaringTreemap,
}

impl BitmapDelta {
    /// Serializes as `u32 BE length of adds | adds | removes`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + self.adds.serialized_size() + self.removes.serialized_size());
        out.extend_from_slice(&(self.adds.serialized_size() as u32).to_be_bytes());
        // Writing into a Vec cannot fail.
        let _ = self.adds.serialize_into(&mut out);
        if !self.removes.is_empty() {
            let _ = self.removes.serialize_into(&mut out);
        }
        out
    }

    /// Serializes a plain set (a delta with no removals).
    pub fn set_to_bytes(set: &RoaringTreemap) -> Vec<u8> {
        let size = set.serialized_size();
        let mut out = Vec::with_capacity(4 + size);
        out.extend_from_slice(&(size as u32).to_be_bytes());
        let _ = set.serialize_into(&mut out);
        out
    }

    /// Parses [`BitmapDelta::to_bytes`]; `None` on corrupt input.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let adds = RoaringTreemap::deserialize_from(bytes.get(4..4 + len)?).ok()?;
        let rest = bytes.get(4 + len..)?;
        let removes = if rest.is_empty() {
            RoaringTreemap::new()
        } else {
            RoaringTreemap::deserialize_from(rest).ok()?
        };
        Some(BitmapDelta { adds, removes })
    }

    /// Composes `self` followed by `next`.
    pub fn then(mut self, next: BitmapDelta) -> BitmapDelta {
        self.adds -= &next.removes;
        self.adds |= &next.adds;
        self.removes -= &next.adds;
        self.removes |= next.removes;
        self
    }
}

fn fold_bitmaps<'a>(
    existing: Option<&[u8]>,
    operands: impl Iterator<Item = &'a [u8]>,
) -> Option<BitmapDelta> {
    let mut acc = match existing {
        Some(bytes) => BitmapDelta::from_bytes(bytes)?,
        None => BitmapDelta::default(),
    };
    for op in operands {
        acc = acc.then(BitmapDelta::from_bytes(op)?);
    }
    Some(acc)
}

/// Full merge: applies every delta to the base set. Returning `None` reports corruption to RocksDB.
pub fn bitmap_full_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let acc = fold_bitmaps(existing, operands.iter())?;
    // On top of a base (present or absent) the removals have been applied: the result is a plain set.
    Some(BitmapDelta::set_to_bytes(&acc.adds))
}

/// Partial merge: composes deltas without the base.
pub fn bitmap_partial_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    Some(fold_bitmaps(existing, operands.iter())?.to_bytes())
}

/// Counter merge (associative): sums little-endian `i64` values.
pub fn counter_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut total = match existing {
        Some(v) => decode_counter(v)?,
        None => 0,
    };
    for op in operands {
        total = total.wrapping_add(decode_counter(op)?);
    }
    Some(total.to_le_bytes().to_vec())
}

/// Decodes a counter value.
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> RoaringTreemap {
        v.iter().copied().collect()
    }

    fn apply(base: &RoaringTreemap, d: &BitmapDelta) -> RoaringTreemap {
        (base - &d.removes) | &d.adds
    }

    #[test]
    fn composition_matches_sequential_application() {
        let base = set(&[1, 2, 3]);
        let d1 = BitmapDelta {
            adds: set(&[4, 5]),
            removes: set(&[1]),
        };
        let d2 = BitmapDelta {
            adds: set(&[1]),
            removes: set(&[4, 2]),
        };
        let d3 = BitmapDelta {
            adds: set(&[2]),
            removes: set(&[5]),
        };
        let seq = apply(&apply(&apply(&base, &d1), &d2), &d3);
        let left = d1.clone().then(d2.clone()).then(d3.clone());
        let right = d1.then(d2.then(d3));
        assert_eq!(apply(&base, &left), seq);
        assert_eq!(apply(&base, &right), seq);
    }

    #[test]
    fn bytes_roundtrip() {
        let d = BitmapDelta {
            adds: set(&[1, 1 << 40]),
            removes: set(&[7]),
        };
        assert_eq!(BitmapDelta::from_bytes(&d.to_bytes()), Some(d));
        let s = set(&[3, 9]);
        let parsed = BitmapDelta::from_bytes(&BitmapDelta::set_to_bytes(&s)).unwrap();
        assert_eq!(parsed.adds, s);
        assert!(parsed.removes.is_empty());
        assert!(BitmapDelta::from_bytes(&[0, 0, 0, 9, 1]).is_none());
    }
}
