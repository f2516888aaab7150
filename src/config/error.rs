//! Config errors that say where (file:line:column), what is wrong, and what was expected.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something in the file is wrong, at a known place.
    #[error("{0}")]
    At(Located),
}

/// An error message with the place it refers to.
#[derive(Debug)]
pub struct Located {
    /// The config file's name as given.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and what is expected.
    pub message: String,
    /// The offending line, for context.
    pub snippet: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        if !self.snippet.is_empty() {
            let pad = " ".repeat(self.line.to_string().len());
            write!(
                f,
                "\n{pad} |\n{} | {}\n{pad} | {}^",
                self.line,
                self.snippet,
                " ".repeat(self.column.saturating_sub(1))
            )?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// An error at byte `offset` of `text`.
    pub fn at(path: &Path, text: &str, offset: usize, message: impl Into<String>) -> ConfigError {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let line = before.matches('\n').count() + 1;
        let column = text[line_start..offset].chars().count() + 1;
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |p| line_start + p);
        ConfigError::At(Located {
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
            snippet: text[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
        })
    }

    /// An error about the value or table at `span` (a config-level check, not a parse error).
    pub fn at_span(
        path: &Path,
        text: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(path, text, span.start, message)
    }
}

/// Finds where key `key` is written inside `text[span]`, so that an "unknown field" error points at the key
/// rather than at the table around it.
pub fn find_key(text: &str, span: Range<usize>, key: &str) -> Option<usize> {
    let region = text.get(span.clone())?;
    let mut search = 0;
    while let Some(pos) = region[search..].find(key) {
        let at = search + pos;
        let before_ok = region[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',' || c == '.');
        let after = region[at + key.len()..].trim_start_matches([' ', '\t']);
        if before_ok && (after.starts_with('=') || after.starts_with('.')) {
            return Some(span.start + at);
        }
        search = at + key.len();
    }
    None
}
