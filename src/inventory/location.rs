//! Inventory errors and where they are: [`InventoryError`] (file, 1-based line, dotted key), the
//! `Parser` (the text being validated and its file), the line of a byte offset, the dotted key
//! at an offset (also in a file that does not parse: TOML syntax errors, then schema errors from
//! serde), and how values and I/O errors read in messages.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A problem with the inventory file, located by file, line and dotted key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct InventoryError {
    /// The inventory file, as it was given.
    pub file: PathBuf,
    /// 1-based line of the offending key or value; 0 when no line applies.
    pub line: usize,
    /// Dotted key, e.g. `hosts[2].port`; empty when the problem is the whole file.
    pub key: String,
    /// What is wrong. Never contains the webhook URL or an artifact URL.
    pub message: String,
}

impl InventoryError {
    /// `FILE:LINE: KEY: message`, leaving out the line when none applies (0) and the key when
    /// the problem is the whole file.
    fn render(&self) -> String {
        let mut text = self.file.display().to_string();
        if self.line > 0 {
            text.push_str(&format!(":{}", self.line));
        }
        if !self.key.is_empty() {
            text.push_str(&format!(": {}", self.key));
        }
        format!("{text}: {}", self.message)
    }
}

/// One inventory text being validated, and the file it came from. Its error methods (line,
/// location, messages) are here; the validation itself (`build`) is in `validation`.
pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
    /// The files this one `extends` (nearest first), whose values sit at offsets from their
    /// `base` on (see `extends`); empty for a file without `extends`.
    pub(super) ancestors: &'a [super::extends::Ancestor],
}

impl Parser<'_> {
    /// 1-based line of a byte offset (in the file that holds it).
    pub(super) fn line(&self, offset: usize) -> usize {
        let (_, text, offset) = self.source_of(offset);
        let end = offset.min(text.len());
        1 + text.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
    }

    /// The file, text and offset within it of a (merged) offset.
    fn source_of(&self, offset: usize) -> (&Path, &str, usize) {
        match self
            .ancestors
            .iter()
            .filter(|ancestor| ancestor.base <= offset)
            .max_by_key(|ancestor| ancestor.base)
        {
            Some(ancestor) => (&ancestor.file, &ancestor.text, offset - ancestor.base),
            None => (self.file, self.text, offset),
        }
    }

    pub(super) fn error_at(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> InventoryError {
        InventoryError {
            file: self.source_of(span.start).0.to_path_buf(),
            line: self.line(span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn error_without_line(
        &self,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> InventoryError {
        InventoryError {
            file: self.file.to_path_buf(),
            line: 0,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A TOML syntax error. The key is found, when possible, in what could be parsed.
    pub(super) fn syntax_error(&self, error: &toml::de::Error) -> InventoryError {
        let span = error.span().unwrap_or(0..0);
        let message = first_line(error.message());
        let (partial, _) = DeTable::parse_recoverable(self.text);
        // A broken table header (`[ssh`, `[[hosts]`): the recovered tree gives its span to the
        // next table, so name the table from the header text itself.
        let header = self
            .text
            .get(..span.start.min(self.text.len()))
            .map(|before| before.rfind('\n').map(|index| index + 1).unwrap_or(0))
            .and_then(|line_start| self.text.get(line_start..))
            .and_then(|rest| rest.lines().next())
            .map(str::trim)
            .filter(|line| line.starts_with('['))
            .map(|line| {
                line.split('#')
                    .next()
                    .unwrap_or("")
                    .trim_matches(|character: char| {
                        character == '[' || character == ']' || character.is_whitespace()
                    })
                    .to_string()
            });
        let key = header
            .filter(|name| !name.is_empty())
            .or_else(|| key_path_at(partial.get_ref(), span.start))
            .unwrap_or_else(|| {
                // Not in the recovered tree (e.g. the second of two equal keys): name the table that
                // holds it, plus the key itself when the error is about a key.
                let table = enclosing_table_at(partial.get_ref(), span.start);
                match self.text.get(span.clone()) {
                    Some(key) if message == "duplicate key" => {
                        join_key(&table, key.trim_matches(['"', '\'']))
                    }
                    _ => table,
                }
            });
        InventoryError {
            file: self.file.to_path_buf(),
            line: if error.span().is_some() {
                self.line(span.start)
            } else {
                0
            },
            key,
            message: format!("invalid TOML: {message}"),
        }
    }

    /// An error from deserializing into the raw types: unknown keys, missing keys, wrong types.
    pub(super) fn schema_error(
        &self,
        error: &toml::de::Error,
        document: &DeTable<'_>,
    ) -> InventoryError {
        let message = first_line(error.message());
        let Some(span) = error.span() else {
            return self.error_without_line("", message);
        };
        let mut key = key_path_at(document, span.start).unwrap_or_default();
        let message = if let Some(missing) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            key = join_key(&key, missing);
            "required key is missing".to_string()
        } else if let Some(rest) = message.strip_prefix("unknown field ") {
            format!("unknown key {rest}")
        } else {
            plain_type_names(message)
        };
        self.error_at(&span, key, message)
    }
}

/// Text for messages: control characters escaped so that a value cannot forge output lines.
pub(super) fn shown(text: &str) -> String {
    text.escape_debug().to_string()
}

/// serde's messages name Rust types ("expected i64", "expected struct RawSsh"); use TOML's words.
fn plain_type_names(message: &str) -> String {
    let message = match message.find("expected struct ") {
        Some(position) => format!("{}expected a table", &message[..position]),
        None => message.to_string(),
    };
    message
        .replace(" as i128", "")
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim_end()
}

/// `"No such file or directory (os error 2)"` → `"No such file or directory"`.
pub(super) fn io_error_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(position) if text.ends_with(')') => text[..position].to_string(),
        _ => text,
    }
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The dotted key of the smallest key or value in `document` whose span contains `offset`.
fn key_path_at(document: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    search_table(document, "", offset, &mut best);
    best.map(|(_, path)| path)
}

/// The dotted key of the table whose header most closely precedes `offset` (a table that comes
/// from a `[header]` line has that header as its span); empty for the root table.
fn enclosing_table_at(document: &DeTable<'_>, offset: usize) -> String {
    fn search(table: &DeTable<'_>, path: &str, offset: usize, best: &mut (usize, String)) {
        for (key, value) in table.iter() {
            let child = join_key(path, key.get_ref());
            search_item(value, &child, offset, best);
        }
    }
    fn search_item(
        value: &Spanned<DeValue<'_>>,
        path: &str,
        offset: usize,
        best: &mut (usize, String),
    ) {
        match value.get_ref() {
            DeValue::Table(table) => {
                // `[a.b]` gives `a` the span of `a` and `b` the span of the whole header, so
                // the header that ends last before `offset` is the innermost one.
                let span = value.span();
                if span.start <= offset && span.end >= best.0 {
                    *best = (span.end, path.to_string());
                }
                search(table, path, offset, best);
            }
            DeValue::Array(array) => {
                for (index, item) in array.iter().enumerate() {
                    search_item(item, &format!("{path}[{index}]"), offset, best);
                }
            }
            _ => {}
        }
    }
    let mut best = (0, String::new());
    search(document, "", offset, &mut best);
    best.1
}

fn span_contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.start == span.end)
}

fn consider(best: &mut Option<(usize, String)>, span: &Range<usize>, offset: usize, path: &str) {
    if path.is_empty() || !span_contains(span, offset) {
        return;
    }
    let length = span.end - span.start;
    // On a tie, the later (deeper) candidate wins.
    if best
        .as_ref()
        .is_none_or(|(best_length, _)| length <= *best_length)
    {
        *best = Some((length, path.to_string()));
    }
}

fn search_table(
    table: &DeTable<'_>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        let child = join_key(path, key.get_ref());
        consider(best, &key.span(), offset, &child);
        search_value(value, &child, offset, best);
    }
}

fn search_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    consider(best, &value.span(), offset, path);
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, path, offset, best),
        DeValue::Array(array) => {
            for (index, item) in array.iter().enumerate() {
                search_value(item, &format!("{path}[{index}]"), offset, best);
            }
        }
        _ => {}
    }
}
