//! The located error of the files users write — matrix.toml and scenario files — as
//! `file:line:col: message` with the offending line. Its own module so that scenario files
//! do not depend on the matrix config.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem in matrix.toml or a scenario file, located.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending line with a caret under the span.
    pub excerpt: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(f, "{}:{}:{}: {}\n{}", self.file.display(), self.line, self.column, self.message, self.excerpt)
    }
}

impl ConfigError {
    /// An error at byte range `span` of `text`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let source_line = &text[line_start..line_end];
        let width = text[start..span.end.clamp(start, line_end)].chars().count().max(1);
        let gutter = " ".repeat(line.to_string().len());
        let excerpt =
            format!("{gutter} |\n{line} | {source_line}\n{gutter} | {}{}", " ".repeat(column - 1), "^".repeat(width));
        ConfigError { file: file.to_path_buf(), line, column, message: message.into(), excerpt }
    }

    /// Turns a TOML/serde error (with its span) into a located error.
    pub(crate) fn from_toml(file: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        ConfigError::at(file, text, span, error.message().trim().to_string())
    }

    /// A file that could not be read at all.
    pub(crate) fn unreadable(file: &Path, error: &std::io::Error) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {error}"),
            excerpt: String::new(),
        }
    }
}
