//! The text view of `deploy history`: one table of records per host, newest first, or the
//! host's error. The records' host-supplied fields are escaped for the terminal.

use super::result::RunResult;
use super::table::table;
use crate::text::escape_for_terminal;

/// The text view of `history`: one table per host (`table` escapes every cell).
pub fn render_history(result: &RunResult) -> String {
    let mut text = String::new();
    for host in &result.hosts {
        text.push_str(&format!(
            "{} ({}):\n",
            host.host,
            host.service.as_deref().unwrap_or("")
        ));
        if let Some(error) = &host.error {
            text.push_str(&format!("  error: {}\n", escape_for_terminal(error)));
        }
        let Some(entries) = host.entries() else {
            continue;
        };
        if entries.is_empty() {
            text.push_str("  (no history)\n");
            continue;
        }
        // `command` (exec, run) and `message` (freezes) only when some record has one.
        let annotated = entries
            .iter()
            .any(|entry| entry.command.is_some() || entry.record.message.is_some());
        let mut header = [
            "TIME", "ACTION", "CHANGE", "RESULT", "OPERATOR", "RUN", "ERROR",
        ]
        .map(str::to_string)
        .to_vec();
        if annotated {
            header.push("COMMAND / MESSAGE".to_string());
        }
        let mut rows = vec![header];
        for entry in entries {
            let annotation = entry
                .command
                .as_deref()
                .or(entry.record.message.as_deref())
                .unwrap_or_default();
            let entry = &entry.record;
            let mut row = vec![
                entry.time.clone(),
                entry.action.to_string(),
                format!(
                    "{} -> {}",
                    entry.from.as_deref().unwrap_or("(none)"),
                    entry.to.as_deref().unwrap_or("(none)")
                ),
                entry.result.to_string(),
                entry.operator.clone(),
                entry.id.clone(),
                entry.error.clone().unwrap_or_default(),
            ];
            if annotated {
                row.push(annotation.to_string());
            }
            rows.push(row);
        }
        for line in table(&rows).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::history::AnnotatedRecord;
    use crate::report::{HostResult, Outcome};

    #[test]
    fn history_text_escapes_host_supplied_fields() {
        let record: AnnotatedRecord = serde_json::from_value(serde_json::json!({
            "time": "2026-01-01T00:00:00Z",
            "id": "run\r1",
            "operator": "\u{1b}[2Jmallory",
            "action": "push",
            "service": "app",
            "from": null,
            "to": "v1",
            "sha256": null,
            "result": "failed",
            "error": "boom\u{7}\nweb2 ok",
            "command": "echo \u{1b}[31mred",
        }))
        .expect("a history record");
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Ok);
        host.detail = Some(crate::report::Detail::History {
            entries: vec![record],
        });
        let mut broken = HostResult::new(Some("app"), "web2", Outcome::Failed);
        broken.error = Some("read history: \u{1b}]0;title\u{7}".to_string());
        let result = RunResult::new("run-1", "history", false, vec![host, broken]);
        insta::assert_snapshot!(render_history(&result), @r"
        web1 (app):
          TIME                  ACTION  CHANGE        RESULT  OPERATOR        RUN     ERROR              COMMAND / MESSAGE
          2026-01-01T00:00:00Z  push    (none) -> v1  failed  \x1b[2Jmallory  run\r1  boom\x07\nweb2 ok  echo \x1b[31mred
        web2 (app):
          error: read history: \x1b]0;title\x07
        ");
    }
}
