//! Content negotiation: picks the offer an `Accept` header prefers (RFC 9110 §12.5.1, q-values and
//! wildcards, the most specific range deciding an offer's weight).

/// The offer `accept` prefers, or the first offer when there is no header. `None` means nothing offered is
/// acceptable (answer 406).
pub(crate) fn negotiate<T: Copy>(accept: Option<&str>, offers: &[(&str, T)]) -> Option<T> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return offers.first().map(|(_, t)| *t);
    };
    let ranges: Vec<(String, String, f32)> = accept.split(',').filter_map(parse_range).collect();
    let mut best: Option<(f32, T)> = None;
    for (media, value) in offers {
        let (ty, sub) = media.split_once('/').unwrap_or((media, ""));
        // The most specific matching range gives the weight: exact > type/* > */*.
        let mut weight: Option<(u8, f32)> = None;
        for (rt, rs, q) in &ranges {
            let specificity = if rt == ty && rs == sub {
                3
            } else if rt == ty && rs == "*" {
                2
            } else if rt == "*" && rs == "*" {
                1
            } else {
                continue;
            };
            if weight.is_none_or(|(s, _)| specificity > s) {
                weight = Some((specificity, *q));
            }
        }
        if let Some((_, q)) = weight {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, *value));
            }
        }
    }
    best.map(|(_, v)| v)
}

fn parse_range(range: &str) -> Option<(String, String, f32)> {
    let mut parts = range.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    let (ty, sub) = media.split_once('/')?;
    let mut q = 1.0;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("q") {
                q = v.trim().parse().unwrap_or(0.0);
            }
        }
    }
    Some((ty.trim().to_owned(), sub.trim().to_owned(), q))
}

/// The media type of a `Content-Type` header without parameters, lower-cased.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFERS: &[(&str, u8)] = &[
        ("application/sparql-results+json", 1),
        ("application/sparql-results+xml", 2),
        ("text/csv", 3),
    ];

    #[test]
    fn q_values_and_wildcards() {
        assert_eq!(negotiate(None, OFFERS), Some(1));
        assert_eq!(negotiate(Some("text/csv"), OFFERS), Some(3));
        assert_eq!(
            negotiate(
                Some("application/sparql-results+json;q=0.5, text/csv"),
                OFFERS
            ),
            Some(3)
        );
        assert_eq!(negotiate(Some("text/*;q=0.2, */*;q=0.1"), OFFERS), Some(3));
        assert_eq!(negotiate(Some("*/*"), OFFERS), Some(1));
        assert_eq!(negotiate(Some("image/png"), OFFERS), None);
        // A specific q=0 excludes an offer even when a wildcard would accept it.
        assert_eq!(
            negotiate(Some("*/*, application/sparql-results+json;q=0"), OFFERS),
            Some(2)
        );
    }
}
