//! `deploy push`: validate the artifact locally, stage it on every selected host under the
//! service lock, switch only when staging succeeded everywhere (or within `max_failures`),
//! apply `on_failure`, prune, record history, release locks.
//!
//! Owns the run's phases and the failure policy; the per-host decisions come from
//! `plan::plan_push` and every remote call goes through `executor::HostRun`.

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, InputError, Target, for_each, unix_now};
use crate::cli::PushArgs;
use crate::commands::shipment::{Request, Shipment};
use crate::commands::switching::{Locked, Switch, finish, switch_all};
use crate::executor::{HostError, Payload};
use crate::inventory::Version;
use crate::plan::{PushDecision, PushPlan, Release, Step, SwitchSequence, plan_push};
use crate::remote::history::HistoryRecord;
use crate::remote::state::LogAction;
use crate::report::{Detail, Events, HostResult, Outcome, RunResult};

pub async fn run(context: &Context, arguments: &PushArgs) -> Result<RunResult, InputError> {
    let shipments = super::shipment::prepare(
        context,
        &Request {
            services: &arguments.service,
            version: arguments.version.as_deref(),
            artifact: arguments.artifact.as_deref(),
        },
    )
    .await?;
    let services: Vec<usize> = shipments.iter().map(|shipment| shipment.service).collect();
    let shipment_of = |service: usize| {
        shipments
            .iter()
            .find(|shipment| shipment.service == service)
    };
    if arguments.dry_run {
        return super::each_target(
            context,
            &services,
            "push",
            true,
            |target, label, events| async move {
                let shipment = shipment_of(target.service)
                    .ok_or_else(|| HostError::failed("plan", "no artifact for this service"))?;
                plan_host(
                    context,
                    shipment,
                    target,
                    label,
                    events,
                    arguments.force,
                    arguments.diff,
                )
                .await
            },
        )
        .await;
    }
    let with_service = services.len() > 1;
    super::each_service(
        context,
        &services,
        "push",
        |service, service_targets, events, permits| async move {
            match shipment_of(service) {
                Some(shipment) => {
                    push_service(
                        context,
                        shipment,
                        service_targets,
                        with_service,
                        arguments.force,
                        &events,
                        &permits,
                    )
                    .await
                }
                None => Vec::new(),
            }
        },
    )
    .await
}

fn release_of(shipment: &Shipment) -> Release<'_> {
    Release {
        fetch_on_host: shipment.host_url.as_deref().map(crate::http::redact),
        version: &shipment.version,
        sha256: &shipment.artifact.sha256,
        size: shipment.artifact.size,
        unpacked_size: shipment.artifact.unpacked_size,
    }
}

/// A dry run on one host: connects, reads its real state and plans; changes nothing (no lock,
/// no directory, no history).
async fn plan_host(
    context: &Context,
    shipment: &Shipment,
    target: Target,
    label: String,
    events: Events,
    force: bool,
    diff: bool,
) -> Result<super::Worked, HostError> {
    let service = &context.inventory.services[target.service];
    let host = &context.inventory.hosts[target.host];
    let run = super::connect(context, target, label, &events, unix_now()).await?;
    let facts = run.facts().await;
    let difference = match (&facts, diff) {
        (Ok(facts), true) => {
            let from = match facts.live() {
                Some(live) => run.recorded_manifest("read manifest", live).await,
                None => Ok(crate::artifact::Manifest {
                    entries: Vec::new(),
                }),
            };
            Some(from.map(|from| {
                from.comparable()
                    .diff(&shipment.artifact.manifest.comparable())
            }))
        }
        _ => None,
    };
    let file_notes = super::files::dry_run_notes(&run, &shipment.files).await;
    run.close().await;
    let (facts, difference) = (facts?, difference.transpose()?);
    let file_notes = file_notes?;

    let mut result = super::result_for(context, target, Outcome::Planned);
    result.to = Some(shipment.version.to_string());
    result.from = facts.live().map(ToString::to_string);
    result.detail = difference.map(|diff| Detail::Diff { diff });
    let mut notes = vec![format!(
        "live: {}",
        facts.live().map(Version::as_str).unwrap_or("(none)")
    )];
    notes.push(match &facts.lock {
        Some(lock) => format!(
            "lock: {}{}",
            lock.describe(),
            if lock.alive {
                ""
            } else {
                " (stale: its process is gone)"
            }
        ),
        None => "lock: free".to_string(),
    });
    if let Some(freeze) = &facts.freeze {
        notes.push(format!("{} (a push is refused here)", freeze.describe()));
    }
    notes.extend(file_notes);
    if !facts.staging.is_empty() {
        notes.push(format!(
            "staging leftovers of earlier runs (this push removes them): {}",
            facts.staging.join(", ")
        ));
    }
    if let Some(free) = facts.free_bytes {
        notes.push(format!(
            "disk: {} free, {} needed to unpack",
            crate::text::format_bytes(free),
            crate::text::format_bytes(shipment.artifact.unpacked_size)
        ));
    }
    let mut steps: Vec<String> = Vec::new();
    match plan_push(&facts, &release_of(shipment), service.keep_releases, force) {
        PushDecision::Unchanged => {
            notes.push(format!(
                "unchanged: {} is live with the same sha256",
                shipment.version
            ));
            result.from = Some(shipment.version.to_string());
        }
        PushDecision::Refused(reason) => {
            result.outcome = Outcome::Failed;
            result.error = Some(reason.clone());
            notes.push(format!("refused: {reason}"));
        }
        PushDecision::Deploy(plan) => {
            result.bytes = plan.upload_bytes;
            if plan.upload_bytes == 0 && plan.stage.len() == 1 {
                notes.push(format!(
                    "no upload: {} is already staged with the same sha256",
                    plan.to
                ));
            }
            steps.extend(plan.stage.iter().map(Step::describe));
            let switch = Switch {
                from: plan.from.clone(),
                to: plan.to.clone(),
                action: LogAction::Push,
            };
            steps.extend(
                SwitchSequence::new(service, &host.name, &switch)
                    .steps()
                    .iter()
                    .map(Step::describe),
            );
            if !plan.prune.is_empty() {
                steps.push(
                    Step::Prune {
                        versions: plan.prune.clone(),
                    }
                    .describe(),
                );
            }
        }
    }
    let summary = format!("planned: {} steps", steps.len());
    result.notes = Some(notes);
    result.steps = Some(steps);
    Ok(super::Worked { result, summary })
}

/// Runs one service's push over its targets; returns a result per target.
async fn push_service<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    targets: Vec<Target>,
    with_service: bool,
    force: bool,
    events: &Events,
    permits: &Semaphore,
) -> Vec<(Target, HostResult)> {
    let total = targets.len();
    let now = unix_now();

    // Phase 1: every lock first (two runs never each hold part of the fleet), then stage.
    let (acquired, mut finished) =
        super::lock_all(context, targets, with_service, events, permits, now).await;
    let staged_or_failed = for_each(acquired, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        stage(context, shipment, host, force, events, permits).instrument(span)
    })
    .await;
    let mut staged: Vec<Locked> = Vec::new();
    for outcome in staged_or_failed {
        match outcome {
            Ok(host) => staged.push(host),
            Err(failure) => finished.push(failure),
        }
    }

    // Phase 2: switch, in batches, only if staging failures are within max_failures.
    let halted = switch_all(context, &mut staged, finished.len(), total, permits).await;

    // Phase 3: prune, record history, release locks, for every host that got this far.
    let halted = halted.as_deref();
    let cleaned = for_each(staged, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        finish(host, halted, |result| history(context, shipment, result)).instrument(span)
    })
    .await;
    finished.extend(cleaned);
    finished
}

/// Phase 1 for one locked host: plan from the state read under the lock, run the staging steps.
async fn stage<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    host: super::Acquired<'a>,
    force: bool,
    events: &Events,
    permits: &Semaphore,
) -> Result<Locked<'a>, (Target, HostResult)> {
    let _permit = permits.acquire().await;
    let super::Acquired {
        target,
        label,
        run,
        lock,
        facts,
        started,
    } = host;
    run.resume();
    let service = &context.inventory.services[target.service];
    let mut result = super::result_for(context, target, Outcome::Ok);
    result.to = Some(shipment.version.to_string());
    let outcome: Result<Option<PushPlan>, HostError> = async {
        result.from = facts.live().map(ToString::to_string);
        if context.is_interrupted() {
            return Err(HostError::Interrupted {
                step: "start".to_string(),
            });
        }
        match plan_push(&facts, &release_of(shipment), service.keep_releases, force) {
            PushDecision::Unchanged => Ok(None),
            PushDecision::Refused(reason) => Err(HostError::failed("plan", reason)),
            PushDecision::Deploy(plan) => {
                let payload = Payload {
                    artifact: &shipment.artifact.path,
                    artifact_size: shipment.artifact.size,
                    manifest: &shipment.manifest,
                    url: shipment.host_url.as_deref(),
                };
                // Uploaded files first: staging links them into the release.
                super::files::upload_changed(&run, &shipment.files).await?;
                for step in &plan.stage {
                    run.execute(step, &payload)
                        .await
                        .map_err(|error| disk_hint(error, facts.free_bytes, shipment))?;
                }
                Ok(Some(plan))
            }
        }
    }
    .await;
    match outcome {
        Ok(plan) => {
            result.bytes = run.uploaded();
            run.wait_for_others("staged; waiting for the other hosts");
            if plan.is_none() {
                result.outcome = Outcome::Unchanged;
            }
            let (switch, prune) = match plan {
                Some(plan) => (
                    Some(Switch {
                        from: plan.from,
                        to: plan.to,
                        action: LogAction::Push,
                    }),
                    plan.prune,
                ),
                None => (None, Vec::new()),
            };
            Ok(Locked {
                target,
                run,
                lock,
                result,
                started,
                switch,
                switched: false,
                prune,
                action: "push",
                sha256: Some(shipment.artifact.sha256.to_string()),
                recorded: false,
            })
        }
        Err(error) => {
            run.discard_staging().await;
            result.steps = Some(run.executed());
            result.bytes = run.uploaded();
            let mut result = super::failed(result, &error, started, events, &label);
            run.record(Some(&history(context, shipment, &result)), None)
                .await;
            result.history_lost(run.history_lost());
            run.unlock(lock).await;
            run.close().await;
            Err((target, result))
        }
    }
}

/// Adds "free vs needed" to a failure that says the host's disk (or file size limit) is full.
fn disk_hint(error: HostError, free: Option<u64>, shipment: &Shipment) -> HostError {
    let HostError::Failed { step, message } = error else {
        return error;
    };
    let full = [
        "No space left on device",
        "File size limit exceeded",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|symptom| message.contains(symptom));
    if !full {
        return HostError::Failed { step, message };
    }
    let free = free
        .map(crate::text::format_bytes)
        .unwrap_or_else(|| "unknown".to_string());
    HostError::Failed {
        step,
        message: format!(
            "{message}\nhint: the host cannot hold the release: {free} free, {} needed to unpack it \
             (plus the artifact while it streams); free space under the base_dir or lower keep_releases",
            crate::text::format_bytes(shipment.artifact.unpacked_size)
        ),
    }
}

/// The history record for a host's push result.
fn history(context: &Context, shipment: &Shipment, result: &HostResult) -> HistoryRecord {
    let mut record = super::history_record(
        context,
        "push",
        result,
        Some(shipment.artifact.sha256.to_string()),
    );
    record.to = Some(shipment.version.to_string());
    record
}
