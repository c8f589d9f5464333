//! `deploy rollback`: switch each selected host back to the release that went live before the
//! live one (as recorded on the host), or to `--to V`, which must be complete on every selected
//! host — checked on all of them, under their locks, before any is switched. Uses the same
//! switch phase and failure policy as push.

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, InputError, Target, for_each, unix_now};
use crate::cli::RollbackArgs;
use crate::commands::switching::{Locked, announce, finish, switch_all};
use crate::executor::{HostError, elapsed_ms};
use crate::inventory::Version;
use crate::plan::{RollbackDecision, SwitchSequence, plan_rollback};
use crate::report::{Events, HostResult, Outcome, RunResult};

pub async fn run(context: &Context, arguments: &RollbackArgs) -> Result<RunResult, InputError> {
    let to = match &arguments.to {
        Some(text) => Some(
            Version::parse(text).map_err(|error| InputError(format!("--to {text:?}: {error}")))?,
        ),
        None => None,
    };
    let to = to.as_ref();
    let services = context.services(&arguments.service)?;
    if arguments.dry_run {
        let mut result = super::each_target(
            context,
            &services,
            "rollback",
            true,
            |target, label, events| plan_host(context, target, label, events, to),
        )
        .await?;
        super::switching::note_batches(context, &mut result);
        return Ok(result);
    }
    let with_service = services.len() > 1;
    let hosts = context.targets(&services)?.len();
    super::webhook::started(
        context,
        "rollback",
        &services,
        to.map(Version::as_str),
        hosts,
    );
    super::each_service(
        context,
        &services,
        "rollback",
        |_, service_targets, events, permits| async move {
            roll_back_service(
                context,
                service_targets,
                to,
                with_service,
                &events,
                &permits,
            )
            .await
        },
    )
    .await
}

/// A dry run on one host: reads its state and plans the rollback; changes nothing.
async fn plan_host(
    context: &Context,
    target: Target,
    label: String,
    events: Events,
    to: Option<&Version>,
) -> Result<super::Worked, HostError> {
    let run = super::connect(context, target, label, &events, unix_now()).await?;
    let facts = run.facts().await;
    run.close().await;
    let facts = facts?;
    let mut result = super::result_for(context, target, Outcome::Planned);
    result.from = facts.live().map(ToString::to_string);
    let mut notes = vec![match &facts.lock {
        Some(lock) => format!("lock: {}", lock.describe()),
        None => "lock: free".to_string(),
    }];
    match plan_rollback(&facts, to) {
        RollbackDecision::Switch(switch) => {
            result.to = Some(switch.to.to_string());
            let service = &context.inventory.services[target.service];
            let host = &context.inventory.hosts[target.host].name;
            result.planned = Some(
                SwitchSequence::new(service, host, &switch)
                    .steps()
                    .iter()
                    .map(crate::report::PlannedStep::of)
                    .collect(),
            );
        }
        RollbackDecision::Unchanged => {
            result.to = result.from.clone();
            notes.push("unchanged: already live".to_string());
        }
        RollbackDecision::Nothing(reason) => notes.push(reason),
        RollbackDecision::Missing => {
            result.outcome = Outcome::Failed;
            let message = not_on_host(&facts, to);
            notes.push(message.clone());
            result.error = Some(message);
        }
    }
    let summary = format!("planned: {}", notes.join("; "));
    result.notes = Some(notes);
    Ok(super::Worked { result, summary })
}

/// Why `--to V` cannot be done on a host: V is not a complete release there; names the
/// releases the host keeps, newest first (`v9 is not on this host (kept: v3, v2)`).
fn not_on_host(facts: &crate::remote::state::Facts, to: Option<&Version>) -> String {
    let kept: Vec<String> = facts
        .releases_newest_first()
        .iter()
        .map(ToString::to_string)
        .collect();
    let kept = if kept.is_empty() {
        "none".to_string()
    } else {
        kept.join(", ")
    };
    format!(
        "{} is not on this host (kept: {kept})",
        to.map(Version::as_str).unwrap_or("")
    )
}

async fn roll_back_service<'a>(
    context: &'a Context,
    targets: Vec<Target>,
    to: Option<&'a Version>,
    with_service: bool,
    events: &Events,
    permits: &Semaphore,
) -> Vec<(Target, HostResult)> {
    let total = targets.len();
    let now = unix_now();
    let (acquired, mut finished) =
        super::lock_all(context, targets, with_service, events, permits, now, None).await;
    let prepared = for_each(acquired, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        async move {
            let super::Acquired {
                target,
                label,
                run,
                lock,
                facts,
                started,
                ..
            } = host;
            let mut result = super::result_for(context, target, Outcome::Ok);
            result.from = facts.live().map(ToString::to_string);
            let mut missing = false;
            let switch = match plan_rollback(&facts, to) {
                RollbackDecision::Switch(switch) => {
                    result.to = Some(switch.to.to_string());
                    Some(switch)
                }
                RollbackDecision::Unchanged => {
                    result.outcome = Outcome::Unchanged;
                    result.to = result.from.clone();
                    None
                }
                RollbackDecision::Nothing(reason) => {
                    result.outcome = Outcome::Skipped;
                    result.error = Some(reason);
                    None
                }
                RollbackDecision::Missing => {
                    missing = true;
                    None
                }
            };
            if missing {
                run.unlock(lock).await;
                run.close().await;
                let error = HostError::failed("plan", not_on_host(&facts, to));
                let result = super::failed(result, &error, started, events, &label);
                return Err(Box::new((target, result, true)));
            }
            run.wait_for_others(crate::report::Milestone::Ready);
            Ok(Locked {
                target,
                run,
                lock,
                result,
                started,
                switch,
                switched: false,
                prune: Vec::new(),
                action: "rollback",
                sha256: None,
                recorded: false,
            })
        }
        .instrument(span)
    })
    .await;

    let mut locked: Vec<Locked> = Vec::new();
    let mut lacking: Vec<String> = Vec::new();
    for outcome in prepared {
        match outcome {
            Ok(host) => locked.push(host),
            Err(failure) => {
                let (target, result, missing) = *failure;
                if missing {
                    lacking.push(result.host.clone());
                }
                finished.push((target, result));
            }
        }
    }

    if !lacking.is_empty() {
        // `--to V` must be complete everywhere before anything switches: change nothing.
        let reason = format!(
            "not switched: {} is missing on {}",
            to.map(Version::as_str).unwrap_or(""),
            lacking.join(", ")
        );
        let releases = locked.into_iter().map(|mut host| {
            let reason = reason.clone();
            async move {
                host.run.unlock(host.lock).await;
                if host.result.outcome == Outcome::Ok {
                    host.result.outcome = Outcome::Skipped;
                    host.result.error = Some(reason);
                }
                host.result.duration_ms = elapsed_ms(host.started);
                announce(&host.run.events, &host.run.label, &host.result);
                host.run.close().await;
                (host.target, host.result)
            }
        });
        finished.extend(futures::future::join_all(releases).await);
        return finished;
    }

    let halted = switch_all(context, &mut locked, finished.len(), total, events, permits).await;
    let halted = halted.as_deref();
    let cleaned = for_each(locked, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        finish(host, halted, |result| {
            super::history_record(context, "rollback", result, None)
        })
        .instrument(span)
    })
    .await;
    finished.extend(cleaned);
    finished
}
