//! `deploy history`: each selected host's audit log (`.deploy/history.jsonl`), newest first.
//! Read-only; an unreachable host is reported, not fatal; a line that is not a record is
//! skipped and named. Its text view is `report::render_history`.

use crate::app::{Context, InputError, unix_now};
use crate::cli::HistoryArgs;
use crate::remote::history::{history_command, parse_annotated_history};
use crate::report::{Detail, Outcome, RunResult};

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
                    &history_command(&service.base_dir, arguments.limit),
                )
                .await;
            run.close().await;
            let (entries, problems) = parse_annotated_history(&output?.stdout_text());
            let mut result = super::result_for(context, target, Outcome::Ok);
            for problem in &problems {
                tracing::warn!(host = %label, "{problem}");
            }
            if !problems.is_empty() {
                result.notes = Some(problems);
            }
            let summary = format!("{} records", entries.len());
            result.detail = Some(Detail::History { entries });
            Ok(super::Worked { result, summary })
        },
    )
    .await
}
