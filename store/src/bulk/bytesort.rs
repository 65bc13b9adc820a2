//! Sorting byte strings that share long prefixes (the `term2id` keys of a bulk load).
//!
//! A comparison sort of LUBM-10's 315k new terms spent most of its 83–95 ms in `memcmp` on cache misses:
//! each comparison chases two pointers into the dictionary's pages, and IRIs share 30–50 leading bytes, so
//! every comparison reads far into both strings. Here the strings are sorted seven bytes at a time: each
//! round loads the next seven bytes of every string of a group into an integer (loads that do not depend on
//! one another, so the CPU overlaps their misses), sorts the integers, and carries on only with the groups
//! that still tie. Measured in the same loads: 72–79 ms. (Fifteen bytes a round, in `u128`s, was no faster.)

/// Groups this small are finished by a comparison sort from their common depth.
const SMALL: usize = 24;

/// The 56-bit big-endian word of `bytes[depth..depth + 7]` (zero-padded) with, in the low byte, how many
/// bytes are left from `depth` (at most 8). Words order strings as bytewise comparison does: padding only
/// shows where a string ends, and a string that ends before another with the same bytes has the smaller
/// low byte. A low byte of 8 means the string goes on past the word.
fn word(bytes: &[u8], depth: usize) -> u64 {
    let rest = bytes.get(depth..).unwrap_or_default();
    let mut w = [0u8; 8];
    let n = rest.len().min(7);
    w[..n].copy_from_slice(&rest[..n]);
    w[7] = rest.len().min(8) as u8;
    u64::from_be_bytes(w)
}

/// Sorts `items` by `key` in bytewise order (the order of RocksDB's default comparator). Equal keys end
/// up adjacent in an unspecified order.
pub(crate) fn sort_by_bytes<T: Clone>(items: &mut [T], key: impl Fn(&T) -> &[u8]) {
    let mut words: Vec<(u64, u32)> = Vec::new();
    let mut scratch: Vec<T> = Vec::new();
    // Groups still to sort: (start, end, depth); every key of a group shares its first `depth` bytes and
    // is at least `depth` long.
    let mut todo = vec![(0, items.len(), 0)];
    while let Some((start, end, depth)) = todo.pop() {
        let group = &mut items[start..end];
        // Positions are `u32`s below (4 billion terms would not fit in memory anyway).
        if group.len() <= SMALL || u32::try_from(group.len()).is_err() {
            group.sort_unstable_by(|a, b| key(a)[depth..].cmp(&key(b)[depth..]));
            continue;
        }
        words.clear();
        words.extend(
            group
                .iter()
                .enumerate()
                .map(|(i, t)| (word(key(t), depth), i as u32)),
        );
        words.sort_unstable_by_key(|w| w.0);
        scratch.clear();
        scratch.extend(words.iter().map(|&(_, i)| group[i as usize].clone()));
        group.clone_from_slice(&scratch);
        let mut run = 0;
        for i in 1..=words.len() {
            if i < words.len() && words[i].0 == words[run].0 {
                continue;
            }
            if i - run > 1 && words[run].0 & 0xff == 8 {
                todo.push((start + run, start + i, depth + 7));
            }
            run = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(mut keys: Vec<Vec<u8>>) {
        let mut expected = keys.clone();
        expected.sort_unstable();
        sort_by_bytes(&mut keys, |k| k.as_slice());
        assert_eq!(keys, expected);
    }

    #[test]
    fn ends_and_zero_bytes_order_like_memcmp() {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        // Strings that end inside a word, at its edge and one past it, against zero bytes at those places.
        for len in 0..20 {
            keys.push(vec![b'a'; len]);
            keys.push([vec![b'a'; len], vec![0]].concat());
            keys.push([vec![b'a'; len], vec![0, 0]].concat());
            keys.push([vec![b'a'; len], vec![0xff]].concat());
        }
        // Enough of them that the word rounds run (groups above `SMALL`), with duplicates.
        let copies = keys.clone();
        keys.extend(copies);
        check(keys);
    }

    #[test]
    fn iris_with_long_shared_prefixes() {
        let mut keys = Vec::new();
        for u in 0..3 {
            for d in 0..12 {
                for e in 0..40 {
                    keys.push(
                        format!("I<http://www.Department{d}.University{u}.edu/Student{e}>")
                            .into_bytes(),
                    );
                }
            }
        }
        keys.reverse();
        check(keys);
    }

    proptest! {
        #[test]
        fn matches_a_comparison_sort(
            prefix in proptest::collection::vec(0u8..3, 0..20),
            tails in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..24), 0..200),
        ) {
            // Small alphabets and a shared prefix make long ties, zero bytes and ends at every depth.
            check(tails.into_iter().map(|t| [prefix.clone(), t].concat()).collect());
        }
    }
}
