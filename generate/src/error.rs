//! Typed errors of generation: each names the file (and template line when minijinja reports one) and says
//! what to do about it.

use std::path::PathBuf;

/// An error loading or running a generator.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The generator folder is missing or holds no template.
    #[error("{}: {message}", dir.display())]
    Folder {
        /// The generator folder.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A template's YAML frontmatter is malformed, has an unknown key or an invalid value.
    #[error("{file}: frontmatter: {message}; fix the YAML between the `---` lines (see README, Generation)")]
    Frontmatter {
        /// The template, relative to the generator folder.
        file: String,
        /// What is wrong (names the key).
        message: String,
    },
    /// A template failed to compile or render.
    #[error("{file}{}: template error: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Template {
        /// The template, relative to the generator folder.
        file: String,
        /// Line in the template file (frontmatter included), when known.
        line: Option<usize>,
        /// minijinja's message.
        message: String,
    },
    /// A frontmatter query failed to parse or evaluate.
    #[error("{file}: query `{name}`: {message}; fix the SPARQL in the frontmatter")]
    Query {
        /// The template, relative to the generator folder.
        file: String,
        /// The query's name (`query` for a single query, `when` for the guard).
        name: String,
        /// The parse or evaluation error.
        message: String,
    },
    /// A rendered output path leaves the output root, is absolute or empty.
    #[error("{file}: output path `{path}` is outside the output root; make `to:` a relative path without `..` escaping it")]
    PathEscapes {
        /// The template.
        file: String,
        /// The rendered path.
        path: String,
    },
    /// Two templates (or two rows) render to the same output path.
    #[error("{first} and {second} both write `{path}`; make their `to:` paths distinct (for_each rows need a unique key in the path)")]
    DuplicateOutput {
        /// The output path.
        path: String,
        /// The first template.
        first: String,
        /// The second template.
        second: String,
    },
    /// The store failed (reading or writing a receipt).
    #[error("store: {0}")]
    Store(String),
    /// A hooks config is invalid or the hook engine could not start.
    #[error("hooks: {0}; fix the hooks file (see README, Hooks and webhooks)")]
    Hooks(String),
}

/// Result of generation.
pub type Result<T, E = GenerateError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> GenerateError {
    let path = path.into();
    move |source| GenerateError::Io { path, source }
}

pub(crate) fn frontmatter(file: &str, message: impl Into<String>) -> GenerateError {
    GenerateError::Frontmatter {
        file: file.to_string(),
        message: message.into(),
    }
}

/// Converts a minijinja error, shifting its line by the frontmatter's length so it points into the file.
pub(crate) fn template(file: &str, line_offset: usize, e: &minijinja::Error) -> GenerateError {
    let mut message = e.kind().to_string();
    if let Some(detail) = e.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    GenerateError::Template {
        file: file.to_string(),
        line: e.line().map(|l| l + line_offset),
        message,
    }
}
