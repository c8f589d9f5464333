//! `deploy history`: each selected host's audit log (`.deploy/history.jsonl`), newest first.
//! Read-only; an unreachable host is reported, not fatal.

use std::time::Instant;

use crate::app::{Context, InputError, for_each, unix_now};
use crate::cli::HistoryArgs;
use crate::executor::{HostError, elapsed_ms};
use crate::facts;
use crate::report::{HostResult, Outcome, Reporter, RunResult};

pub async fn run(context: &Context, arguments: &HistoryArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let targets = context.targets(&services)?;
    let with_service = services.len() > 1;
    let (events, reporter) = Reporter::start(context.progress, targets.len());
    let now = unix_now();
    let hosts = for_each(targets, context.concurrency, |target| {
        let events = events.clone();
        async move {
            let started = Instant::now();
            let service = &context.inventory.services[target.service];
            let label = context.label(target, with_service);
            let mut result = HostResult::new(
                Some(&service.name),
                &context.inventory.hosts[target.host].name,
                Outcome::Ok,
            );
            let read = async {
                let run = super::connect(context, target, label.clone(), &events, now).await?;
                events.step(&label, "read history");
                let output = run
                    .run(
                        "read history",
                        &facts::history_command(&service.base_dir, arguments.limit),
                    )
                    .await;
                run.close().await;
                facts::parse_history(&output?.stdout_text())
                    .map_err(|error| HostError::failed("read history", error))
            };
            match read.await {
                Ok(entries) => {
                    events.done(&label, &format!("{} records", entries.len()));
                    result.entries = Some(entries);
                }
                Err(error) => {
                    result.result = Outcome::Failed;
                    result.error = Some(error.to_string());
                    events.done(&label, &format!("failed: {error}"));
                }
            }
            result.duration_ms = elapsed_ms(started);
            result
        }
    })
    .await;
    drop(events);
    reporter.finish().await;
    Ok(RunResult::new(&context.run_id, "history", false, hosts))
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
