//! `deploy prune [--keep N] [--dry-run]`: remove old releases with the same rules as the prune
//! inside push (never the live or the previous release; order from the log recorded on the
//! host), under the service lock, and record a `prune` history entry.

use std::time::Instant;

use crate::app::{Context, InputError, for_each, rfc3339_now, unix_now};
use crate::cli::PruneArgs;
use crate::executor::{HostError, elapsed_ms, unlock};
use crate::inventory::Version;
use crate::plan::{HistoryRecord, Step, plan_prune};
use crate::report::{HostResult, Outcome, Reporter, RunResult};

pub async fn run(context: &Context, arguments: &PruneArgs) -> Result<RunResult, InputError> {
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
            let keep = arguments
                .keep
                .map(|keep| keep as usize)
                .unwrap_or(service.keep_releases);
            let label = context.label(target, with_service);
            let mut result = HostResult::new(
                Some(&service.name),
                &context.inventory.hosts[target.host].name,
                if arguments.dry_run {
                    Outcome::Planned
                } else {
                    Outcome::Ok
                },
            );
            let work = async {
                let run = super::connect(context, target, label.clone(), &events, now).await?;
                if arguments.dry_run {
                    let facts = run.facts().await;
                    run.close().await;
                    return Ok(plan_prune(&facts?, keep));
                }
                let lock = match run.lock(&context.operator, now).await {
                    Ok(lock) => lock,
                    Err(error) => {
                        run.close().await;
                        return Err(error);
                    }
                };
                let outcome: Result<Vec<Version>, HostError> = async {
                    let versions = plan_prune(&run.facts().await?, keep);
                    if !versions.is_empty() {
                        run.execute(
                            &Step::Prune {
                                versions: versions.clone(),
                            },
                            &crate::executor::Payload::none(),
                        )
                        .await?;
                    }
                    Ok(versions)
                }
                .await;
                run.record(&HistoryRecord {
                    time: rfc3339_now(),
                    id: context.run_id.clone(),
                    operator: context.operator.clone(),
                    action: "prune".to_string(),
                    service: service.name.clone(),
                    from: None,
                    to: None,
                    sha256: None,
                    result: if outcome.is_ok() { "ok" } else { "failed" }.to_string(),
                    error: outcome.as_ref().err().map(ToString::to_string),
                })
                .await;
                unlock(&run.label, lock).await;
                run.close().await;
                outcome
            };
            match work.await {
                Ok(versions) => {
                    let names: Vec<String> = versions.iter().map(ToString::to_string).collect();
                    let message = if names.is_empty() {
                        "nothing to prune".to_string()
                    } else if arguments.dry_run {
                        Step::Prune { versions }.describe()
                    } else {
                        format!("pruned {}", names.join(", "))
                    };
                    if names.is_empty() && !arguments.dry_run {
                        result.result = Outcome::Unchanged;
                    }
                    events.done(&label, &message);
                    result.notes = Some(vec![message]);
                    result.pruned = Some(names);
                }
                Err(error) => {
                    result.result = Outcome::Failed;
                    result.lock_held = matches!(error, HostError::LockHeld(_));
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
    Ok(RunResult::new(
        &context.run_id,
        "prune",
        arguments.dry_run,
        hosts,
    ))
}
