//! `deploy lock --message TEXT [--service S]` (with `--hosts SEL`): a deploy freeze on every
//! selected (service, host) pair. The freeze (holder, time, message) stays in `.deploy/freeze`
//! until `deploy unlock` lifts it; push, rollback and prune refuse a frozen host with exit code
//! 3 (the check is in the lock script, `remote::freeze`). Locking a frozen host again replaces
//! its message. Each host records a `lock` history record with the message.
//! Also `lift`: what `deploy unlock` does with a freeze.

use crate::app::{Context, InputError, unix_now};
use crate::cli::LockArgs;
use crate::executor::{HostError, HostRun};
use crate::remote::freeze::{self, Freeze};
use crate::remote::history::AnnotatedRecord;
use crate::report::{Detail, HostResult, Outcome, RunResult};

pub async fn run(context: &Context, arguments: &LockArgs) -> Result<RunResult, InputError> {
    if arguments.message.trim().is_empty() {
        return Err(InputError(
            "lock needs a --message saying why deploys are frozen".to_string(),
        ));
    }
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    let line = freeze::freeze_line(&context.operator, now, &arguments.message);
    let line = &line;
    let hosts = context.targets(&services)?.len();
    super::webhook::started(context, "lock", &services, None, hosts);
    super::each_target(
        context,
        &services,
        "lock",
        false,
        |target, label, events| async move {
            let service = &context.inventory.services[target.service];
            let run = super::connect(context, target, label, &events, now).await?;
            let output = run
                .run("freeze", &freeze::freeze_script(&service.base_dir, line))
                .await;
            let mut result = super::result_for(context, target, Outcome::Ok);
            let previous = match output {
                Ok(output) => freeze::parse_previous(&output.stdout_text())
                    .map_err(|error| HostError::failed("freeze", error)),
                Err(error) => Err(error),
            };
            let previous = match previous {
                Ok(previous) => previous,
                Err(error) => {
                    run.close().await;
                    return Err(error);
                }
            };
            record(
                context,
                &run,
                "lock",
                &result,
                Some(arguments.message.clone()),
            )
            .await;
            result.history_lost(run.history_lost());
            run.close().await;
            let freeze = Freeze::parse(line);
            let mut notes = vec![freeze.describe()];
            if let Some(previous) = previous {
                notes.push(format!("replaced: {}", previous.describe()));
            }
            let summary = notes.join("; ");
            result.notes = Some(notes);
            result.detail = Some(Detail::Frozen {
                freeze: Some(freeze),
            });
            Ok(super::Worked { result, summary })
        },
    )
    .await
}

/// Lifts the freeze on a host (`deploy unlock`), recording an `unlock` history record with the
/// lifted freeze's message; returns the note to show.
pub async fn lift(
    context: &Context,
    run: &HostRun<'_>,
    result: &HostResult,
) -> Result<String, HostError> {
    let output = run
        .run("unfreeze", &freeze::thaw_script(run.lowering.base_dir))
        .await?;
    let lifted = freeze::parse_previous(&output.stdout_text())
        .map_err(|error| HostError::failed("unfreeze", error))?;
    let Some(lifted) = lifted else {
        return Ok("no freeze".to_string());
    };
    record(context, run, "unlock", result, Some(lifted.message.clone())).await;
    Ok(format!("lifted freeze ({})", lifted.describe()))
}

async fn record(
    context: &Context,
    run: &HostRun<'_>,
    action: &str,
    result: &HostResult,
    message: Option<String>,
) {
    let mut record = super::history_record(context, action, result, None);
    record.message = message;
    let annotated = AnnotatedRecord {
        record,
        command: None,
    };
    let script = run.lowering.append_history_text(&annotated.to_line());
    run.record_script(&script).await;
}
