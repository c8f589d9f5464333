//! `deploy history`: each selected host's audit log (`.deploy/history.jsonl`), newest first.
//! Read-only; an unreachable host is reported, not fatal.

use crate::app::{Context, InputError, unix_now};
use crate::cli::HistoryArgs;
use crate::executor::HostError;
use crate::facts;
use crate::report::{Outcome, RunResult};

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
            let entries = facts::parse_history(&output?.stdout_text())
                .map_err(|error| HostError::failed("read history", error))?;
            let mut result = super::result_for(context, target, Outcome::Ok);
            let summary = format!("{} records", entries.len());
            result.entries = Some(entries);
            Ok(super::Worked { result, summary })
        },
    )
    .await
}

/// Text view: one table per host.
pub fn render(result: &RunResult) -> String {
    let mut text = String::new();
    for host in &result.hosts {
        text.push_str(&format!(
            "{} ({}):\n",
            host.host,
            host.service.as_deref().unwrap_or("")
        ));
        if let Some(error) = &host.error {
            text.push_str(&format!("  error: {error}\n"));
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
