//! History: the audit log `.deploy/history.jsonl` (SPEC §3). Owns its record (`HistoryRecord`,
//! with `Action` and `RecordResult`), the bounded one-line form that steps append, and the
//! program that reads the log back with its parser, which skips (and names) a line that is not
//! a record instead of refusing the host.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layout;
use super::script::{join, quote, script};

/// Largest history record line (SPEC §3: a record is bounded in size); longer error and
/// message texts are cut in the middle.
pub const HISTORY_LINE_LIMIT: usize = 8 * 1024;

/// One record of `.deploy/history.jsonl` (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub time: String,
    pub id: String,
    pub operator: String,
    pub action: Action,
    pub service: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub sha256: Option<String>,
    pub result: RecordResult,
    pub error: Option<String>,
    /// Why the run happened (`--message`, `DEPLOY_MESSAGE`; a freeze's message for lock and
    /// unlock); `null` when none was given. Older records lack it: read as `None`.
    #[serde(default)]
    pub message: Option<String>,
}

/// What a record is about, written as SPEC §3's word (`"push"`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Action {
    Push,
    Rollback,
    Prune,
    Unlock,
    /// A word this version does not write (another version's, a hand edit): kept as it is, so
    /// such a record still reads, and reads back the same.
    Other(String),
}

impl Action {
    pub fn as_str(&self) -> &str {
        match self {
            Action::Push => "push",
            Action::Rollback => "rollback",
            Action::Prune => "prune",
            Action::Unlock => "unlock",
            Action::Other(word) => word,
        }
    }
}

impl From<String> for Action {
    fn from(word: String) -> Action {
        match word.as_str() {
            "push" => Action::Push,
            "rollback" => Action::Rollback,
            "prune" => Action::Prune,
            "unlock" => Action::Unlock,
            _ => Action::Other(word),
        }
    }
}

impl From<&str> for Action {
    fn from(word: &str) -> Action {
        Action::from(word.to_string())
    }
}

impl From<Action> for String {
    fn from(action: Action) -> String {
        match action {
            Action::Other(word) => word,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// How the recorded action ended, written as SPEC §3's word (`"ok"`, `"failed"`,
/// `"rolled_back"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum RecordResult {
    Ok,
    Failed,
    RolledBack,
    /// A word this version does not write: kept as it is (see `Action::Other`).
    Other(String),
}

impl RecordResult {
    pub fn as_str(&self) -> &str {
        match self {
            RecordResult::Ok => "ok",
            RecordResult::Failed => "failed",
            RecordResult::RolledBack => "rolled_back",
            RecordResult::Other(word) => word,
        }
    }
}

impl From<String> for RecordResult {
    fn from(word: String) -> RecordResult {
        match word.as_str() {
            "ok" => RecordResult::Ok,
            "failed" => RecordResult::Failed,
            "rolled_back" => RecordResult::RolledBack,
            _ => RecordResult::Other(word),
        }
    }
}

impl From<RecordResult> for String {
    fn from(result: RecordResult) -> String {
        match result {
            RecordResult::Other(word) => word,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for RecordResult {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl HistoryRecord {
    /// The record as one JSON line of at most `HISTORY_LINE_LIMIT` bytes: long texts (a hook's
    /// stderr, tar errors on a full disk) are cut in the middle, keeping their start and end.
    pub fn to_line(&self) -> String {
        let mut record = self.clone();
        record.message = record
            .message
            .map(|message| crate::text::shorten(&message, 1024));
        let mut room = 4 * 1024;
        loop {
            if let Some(error) = &record.error {
                record.error = Some(crate::text::shorten(error, room));
            }
            record.operator = crate::text::shorten(&record.operator, 256);
            let line = serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_string());
            if line.len() <= HISTORY_LINE_LIMIT || room < 64 {
                return line;
            }
            room /= 2;
        }
    }
}

/// A record with the field only some actions write (SPEC §3): `command` (exec, run). `history`
/// reads records this way (so it shows it); code that needs only the common fields reads
/// `HistoryRecord`, which ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotatedRecord {
    #[serde(flatten)]
    pub record: HistoryRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl AnnotatedRecord {
    /// One JSON line of at most `HISTORY_LINE_LIMIT` bytes (command and message cut to 1 KiB,
    /// then the rest as `HistoryRecord::to_line` does).
    pub fn to_line(&self) -> String {
        let mut annotated = self.clone();
        annotated.command = annotated
            .command
            .map(|command| crate::text::shorten(&command, 1024));
        annotated.record.message = annotated
            .record
            .message
            .map(|message| crate::text::shorten(&message, 1024));
        let mut room = 2 * 1024;
        loop {
            if let Some(error) = &self.record.error {
                annotated.record.error = Some(crate::text::shorten(error, room));
            }
            annotated.record.operator = crate::text::shorten(&self.record.operator, 256);
            let line = serde_json::to_string(&annotated).unwrap_or_else(|_| "{}".to_string());
            if line.len() <= HISTORY_LINE_LIMIT || room < 64 {
                return line;
            }
            room /= 2;
        }
    }
}

/// Reads `.deploy/history.jsonl` (the last `limit` records when given).
pub fn history_command(base_dir: &str, limit: Option<usize>) -> String {
    let file = quote(&join(base_dir, layout::HISTORY));
    match limit {
        Some(limit) => script!(
            "[ -f {file} ] || exit 0\ntail -n {limit} {file}\n",
            file = file,
            limit = &limit,
        ),
        None => script!("[ -f {file} ] || exit 0\ncat {file}\n", file = file),
    }
    .into_string()
}

/// Parses history lines, newest first. A line that is not a record (a write cut short by a full
/// disk, an edit by hand) is skipped and named in the second list, so one bad line never hides
/// the rest of a host's audit log. An action or result word this version does not know is not
/// a bad line: it is kept as written.
pub fn parse_history(text: &str) -> (Vec<HistoryRecord>, Vec<String>) {
    parse_lines(text)
}

/// [`parse_history`], keeping each record's `command` and `message`.
pub fn parse_annotated_history(text: &str) -> (Vec<AnnotatedRecord>, Vec<String>) {
    parse_lines(text)
}

fn parse_lines<T: serde::de::DeserializeOwned>(text: &str) -> (Vec<T>, Vec<String>) {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(error) => problems.push(format!(
                "history line {} is not a record (skipped): {error}",
                index + 1
            )),
        }
    }
    records.reverse();
    (records, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, result: RecordResult) -> HistoryRecord {
        HistoryRecord {
            time: "2026-11-30T12:00:00Z".to_string(),
            id: "run-1".to_string(),
            operator: "alice@laptop".to_string(),
            action,
            service: "myapp".to_string(),
            from: None,
            to: Some("v1".to_string()),
            sha256: None,
            result,
            error: None,
            message: None,
        }
    }

    #[test]
    fn actions_and_results_are_written_as_the_spec_words() {
        let line = record(Action::Rollback, RecordResult::RolledBack).to_line();
        assert!(line.contains(r#""action":"rollback""#), "{line}");
        assert!(line.contains(r#""result":"rolled_back""#), "{line}");
        for (action, word) in [
            (Action::Push, "push"),
            (Action::Rollback, "rollback"),
            (Action::Prune, "prune"),
            (Action::Unlock, "unlock"),
        ] {
            assert_eq!(action.as_str(), word);
            assert_eq!(Action::from(word), action);
        }
        for (result, word) in [
            (RecordResult::Ok, "ok"),
            (RecordResult::Failed, "failed"),
            (RecordResult::RolledBack, "rolled_back"),
        ] {
            assert_eq!(result.as_str(), word);
            assert_eq!(RecordResult::from(word.to_string()), result);
        }
    }

    #[test]
    fn unknown_words_are_kept_and_read_back_the_same() {
        let line = r#"{"time":"t","id":"r","operator":"o","action":"exec","service":"s","from":null,"to":null,"sha256":null,"result":"maybe","error":null,"message":null}"#;
        let (records, problems) = parse_history(&format!("{line}\n"));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(records[0].action, Action::Other("exec".to_string()));
        assert_eq!(records[0].result, RecordResult::Other("maybe".to_string()));
        assert_eq!(records[0].to_line(), line);
    }

    #[test]
    fn a_line_that_is_not_a_record_is_named_and_skipped() {
        let good = record(Action::Push, RecordResult::Ok).to_line();
        let (records, problems) = parse_history(&format!("{good}\n{{\"action\": 3}}\n\n"));
        assert_eq!(records.len(), 1);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("line 2"), "{problems:?}");
    }

    #[test]
    fn long_errors_are_cut_to_the_line_limit() {
        let mut long = record(Action::Push, RecordResult::Failed);
        long.error = Some(format!("start {} end", "x".repeat(20_000)));
        let line = long.to_line();
        assert!(line.len() <= HISTORY_LINE_LIMIT, "{}", line.len());
        let (records, _) = parse_history(&line);
        let error = records[0].error.clone().expect("an error");
        assert!(
            error.starts_with("start ") && error.ends_with(" end"),
            "{error}"
        );
    }
}
