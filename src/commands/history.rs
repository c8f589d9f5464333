//! `deploy history`: each selected host's audit log (`.deploy/history.jsonl`), newest first.
//! Read-only; an unreachable host is reported, not fatal. The text view shows the records'
//! host-supplied fields escaped for the terminal.

use crate::app::{Context, InputError, unix_now};
use crate::cli::HistoryArgs;
use crate::facts;
use crate::report::{Outcome, RunResult, escape_for_terminal};

pub async fn run(context: &Context, arguments: &HistoryArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    super::each_target(
        context,
        &services,
        "history",
        false,
        |target, label, events| async move {
            let service = &context.inventory.services[target.service];
            let run = super::connect(context, target, label.clone(), &events, now).await?;
            events.step(&label, "read history");
            let output = run
                .run(
                    "read history",
                    &facts::history_command(&service.base_dir, arguments.limit),
                )
                .await;
            run.close().await;
            let (entries, problems) = facts::parse_history(&output?.stdout_text());
            let mut result = super::result_for(context, target, Outcome::Ok);
            for problem in &problems {
                tracing::warn!(host = %label, "{problem}");
            }
            if !problems.is_empty() {
                result.notes = Some(problems);
            }
            let summary = format!("{} records", entries.len());
            result.entries = Some(entries);
            Ok(super::Worked { result, summary })
        },
    )
    .await
}

/// Text view: one table per host (`report::table` escapes every cell).
pub fn render(result: &RunResult) -> String {
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
        let Some(entries) = &host.entries else {
            continue;
        };
        if entries.is_empty() {
            text.push_str("  (no history)\n");
            continue;
        }
        let mut rows = vec![
            [
                "TIME", "ACTION", "CHANGE", "RESULT", "OPERATOR", "RUN", "ERROR",
            ]
            .map(str::to_string)
            .to_vec(),
        ];
        for entry in entries {
            rows.push(vec![
                entry.time.clone(),
                entry.action.clone(),
                format!(
                    "{} -> {}",
                    entry.from.as_deref().unwrap_or("(none)"),
                    entry.to.as_deref().unwrap_or("(none)")
                ),
                entry.result.clone(),
                entry.operator.clone(),
                entry.id.clone(),
                entry.error.clone().unwrap_or_default(),
            ]);
        }
        for line in crate::report::table(&rows).lines() {
            text.push_str(&format!("  {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostResult;

    #[test]
    fn history_text_escapes_host_supplied_fields() {
        let record: crate::plan::HistoryRecord = serde_json::from_value(serde_json::json!({
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
        }))
        .expect("a history record");
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Ok);
        host.entries = Some(vec![record]);
        let mut broken = HostResult::new(Some("app"), "web2", Outcome::Failed);
        broken.error = Some("read history: \u{1b}]0;title\u{7}".to_string());
        let result = RunResult::new("run-1", "history", false, vec![host, broken]);
        insta::assert_snapshot!(render(&result), @r"
        web1 (app):
          TIME                  ACTION  CHANGE        RESULT  OPERATOR        RUN     ERROR
          2026-01-01T00:00:00Z  push    (none) -> v1  failed  \x1b[2Jmallory  run\r1  boom\x07\nweb2 ok
        web2 (app):
          error: read history: \x1b]0;title\x07
        ");
    }
}
