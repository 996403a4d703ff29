//! Parsers for the configuration files kiln recognises. Each one takes the file's text and returns
//! plain data or a `PlanError` that names the file (and the line and column where there is one).
//! None of them panics, whatever the input (see the property tests).

pub mod apt;
pub mod conda_env;
pub mod dockerfile;
pub mod julia;
pub mod pipfile;
pub mod pyproject;
pub mod requirements;
pub mod runtime;

use crate::error::PlanError;

/// Parse TOML, turning an error into one with file, line and column.
pub fn toml_document<T: serde::de::DeserializeOwned>(
    path: &str,
    text: &str,
) -> Result<T, PlanError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((1, 1));
        PlanError::Syntax {
            path: path.to_string(),
            format: "TOML",
            line,
            column,
            message: first_line(e.message()),
        }
    })
}

/// Parse JSON, turning an error into one with file, line and column.
pub fn json_document<T: serde::de::DeserializeOwned>(
    path: &str,
    text: &str,
) -> Result<T, PlanError> {
    serde_json::from_str(text).map_err(|e| PlanError::Syntax {
        path: path.to_string(),
        format: "JSON",
        line: e.line().max(1),
        column: e.column().max(1),
        message: strip_position(&e.to_string()),
    })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_string()
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Lines of a plain-text configuration file with comments and blank lines removed:
/// `(1-based line number, trimmed content)`.
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = line.trim();
        (!line.is_empty() && !line.starts_with('#')).then_some((i + 1, line))
    })
}
