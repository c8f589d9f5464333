//! `deploy prune [--keep N] [--dry-run]`: remove old releases with the same rules as the prune
//! inside push (never the live or the previous release; order from the log recorded on the
//! host), under the service lock, and record a `prune` history entry.

use crate::app::{Context, InputError, unix_now};
use crate::cli::PruneArgs;
use crate::executor::{HostError, Payload};
use crate::inventory::Version;
use crate::plan::{Step, plan_prune};
use crate::report::{Detail, Outcome, RunResult};

pub async fn run(context: &Context, arguments: &PruneArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    let dry_run = arguments.dry_run;
    if !dry_run {
        let hosts = context.targets(&services)?.len();
        super::webhook::started(context, "prune", &services, None, hosts);
    }
    super::each_target(
        context,
        &services,
        "prune",
        dry_run,
        |target, label, events| async move {
            let service = &context.inventory.services[target.service];
            let keep = arguments
                .keep
                .map(|keep| keep as usize)
                .unwrap_or(service.keep_releases);
            let mut result = super::result_for(
                context,
                target,
                if dry_run {
                    Outcome::Planned
                } else {
                    Outcome::Ok
                },
            );
            let run = super::connect(context, target, label, &events, now).await?;
            let versions = if dry_run {
                let facts = run.facts().await;
                run.close().await;
                plan_prune(&facts?, keep)
            } else {
                let (lock, facts, _) = match run.lock(&context.operator, now, None).await {
                    Ok(locked) => locked,
                    Err(error) => {
                        run.close().await;
                        return Err(error);
                    }
                };
                let outcome: Result<Vec<Version>, HostError> = async {
                    let versions = plan_prune(&facts, keep);
                    if !versions.is_empty() {
                        let step = Step::Prune {
                            versions: versions.clone(),
                        };
                        run.execute(&step, &Payload::none()).await?;
                    }
                    Ok(versions)
                }
                .await;
                let mut recorded = result.clone();
                if let Err(error) = &outcome {
                    recorded.outcome = Outcome::Failed;
                    recorded.error = Some(error.to_string());
                }
                run.record(
                    Some(&super::history_record(context, "prune", &recorded, None)),
                    None,
                )
                .await;
                result.history_lost(run.history_lost());
                run.unlock(lock).await;
                run.close().await;
                outcome?
            };
            let names: Vec<String> = versions.iter().map(ToString::to_string).collect();
            let summary = if names.is_empty() {
                "nothing to prune".to_string()
            } else if dry_run {
                Step::Prune { versions }.describe()
            } else {
                format!("pruned {}", names.join(", "))
            };
            if names.is_empty() && !dry_run {
                result.outcome = Outcome::Unchanged;
            }
            result.notes = Some(vec![summary.clone()]);
            result.detail = Some(Detail::Pruned { pruned: names });
            Ok(super::Worked { result, summary })
        },
    )
    .await
}
