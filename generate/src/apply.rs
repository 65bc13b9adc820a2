//! Pure text operations: output path normalization, idempotent injection and marker merging.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

/// Normalizes a rendered relative path, resolving `.` and `..`; `None` if it is empty, absolute or climbs
/// above the root.
pub(crate) fn normalize(path: &str) -> Option<PathBuf> {
    let p = Path::new(path.trim());
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Where an injection goes.
#[derive(Debug, Clone)]
pub(crate) enum Anchor {
    /// Before the first line matching.
    Before(Regex),
    /// After the first line matching.
    After(Regex),
    /// At the end.
    Append,
    /// At the start.
    Prepend,
    /// So the snippet starts at this 1-based line (past the end = append).
    AtLine(usize),
}

/// The result of injecting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    /// The new file text.
    Text(String),
    /// The snippet is already there: nothing to do (this is what makes injection idempotent).
    AlreadyPresent,
    /// The anchor regex matched no line.
    AnchorNotFound,
}

/// Inserts `snippet` (whole lines) into `existing` at `anchor`, unless the snippet is already present.
pub(crate) fn inject(existing: &str, snippet: &str, anchor: &Anchor) -> Injected {
    let snippet = if snippet.ends_with('\n') {
        snippet.to_string()
    } else {
        format!("{snippet}\n")
    };
    // Text containing the snippet also contains it without its final newline: one check covers both.
    if existing.contains(snippet.trim_end_matches('\n')) {
        return Injected::AlreadyPresent;
    }
    // Line starts (byte offsets), plus the end, so "insert before line i" is a slice split.
    let mut starts: Vec<usize> = vec![0];
    starts.extend(existing.match_indices('\n').map(|(i, _)| i + 1));
    if starts.last() != Some(&existing.len()) {
        starts.push(existing.len());
    }
    let lines = starts.len() - 1;
    let line = |i: usize| &existing[starts[i]..starts[i + 1]];
    let at = match anchor {
        Anchor::Prepend => 0,
        Anchor::Append => existing.len(),
        Anchor::AtLine(n) => starts[n.saturating_sub(1).min(lines)],
        Anchor::Before(re) => match (0..lines).find(|&i| re.is_match(line(i))) {
            Some(i) => starts[i],
            None => return Injected::AnchorNotFound,
        },
        Anchor::After(re) => match (0..lines).find(|&i| re.is_match(line(i))) {
            Some(i) => starts[i + 1],
            None => return Injected::AnchorNotFound,
        },
    };
    let mut out = String::with_capacity(existing.len() + snippet.len() + 1);
    out.push_str(&existing[..at]);
    // Appending to a file without a final newline must not glue the snippet onto its last line.
    if at == existing.len() && !existing.is_empty() && !existing.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&snippet);
    out.push_str(&existing[at..]);
    Injected::Text(out)
}

/// Compiled once: merge outputs look for markers on every render.
static MARKER: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    // Static pattern, checked by the unit test below.
    Regex::new(r"tern:(begin|end)(?:[ \t]+([A-Za-z0-9_.-]+))?").unwrap_or_else(|_| unreachable!())
});

/// Regions `name -> (start of content, end of content)` between `tern:begin NAME` and `tern:end NAME` lines.
fn regions(text: &str) -> Vec<(String, usize, usize)> {
    let re = &*MARKER;
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if let Some(c) = re.captures(line) {
            let name = c.get(2).map_or("", |m| m.as_str()).to_string();
            match (&c[1], open.take()) {
                ("begin", _) => open = Some((name, pos + line.len())),
                ("end", Some((n, start))) if n == name => out.push((n, start, pos)),
                (_, other) => open = other,
            }
        }
        pos += line.len();
    }
    out
}

/// Replaces, in `existing`, the text of every marker region that `rendered` also has with `rendered`'s
/// text; `None` if `existing` has none of them.
pub(crate) fn merge(existing: &str, rendered: &str) -> Option<String> {
    let new_regions = regions(rendered);
    // In order of their start: `regions` finds them front to back, one open at a time.
    let old_regions = regions(existing);
    let mut out = String::with_capacity(existing.len());
    let mut pos = 0;
    let mut matched = false;
    for (name, start, end) in old_regions {
        if let Some((_, ns, ne)) = new_regions.iter().find(|r| r.0 == name) {
            out.push_str(&existing[pos..start]);
            out.push_str(&rendered[*ns..*ne]);
            pos = end;
            matched = true;
        }
    }
    out.push_str(&existing[pos..]);
    matched.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("a/./b/../c.rs"), Some(PathBuf::from("a/c.rs")));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("a/../../x"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize(""), None);
    }

    #[test]
    fn injects_once() {
        let anchor = Anchor::After(Regex::new("^mod a;").unwrap());
        let Injected::Text(t) = inject("mod a;\nmod c;\n", "mod b;", &anchor) else {
            panic!()
        };
        assert_eq!(t, "mod a;\nmod b;\nmod c;\n");
        assert_eq!(inject(&t, "mod b;", &anchor), Injected::AlreadyPresent);
        assert_eq!(
            inject("x", "y", &Anchor::Append),
            Injected::Text("x\ny\n".into())
        );
        assert_eq!(
            inject("a\nb\n", "y", &Anchor::AtLine(2)),
            Injected::Text("a\ny\nb\n".into())
        );
    }

    #[test]
    fn merges_regions() {
        let existing = "keep\n// tern:begin f\nold\n// tern:end f\nmine\n";
        let rendered = "// tern:begin f\nnew\n// tern:end f\n";
        assert_eq!(
            merge(existing, rendered).as_deref(),
            Some("keep\n// tern:begin f\nnew\n// tern:end f\nmine\n")
        );
        assert_eq!(merge("nothing", rendered), None);
        assert!(MARKER.is_match("<!-- tern:begin x -->"));
    }
}
