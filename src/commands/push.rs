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
use crate::inventory::{OnFailure, Version};
use crate::plan::{PushDecision, PushPlan, Release, Step, SwitchSequence, plan_push};
use crate::remote::history::HistoryRecord;
use crate::remote::state::LogAction;
use crate::report::{
    Detail, Events, HostResult, Milestone, Outcome, Phase, PlannedStep, RunResult,
};

pub async fn run(context: &Context, arguments: &PushArgs) -> Result<RunResult, InputError> {
    let shipments = super::shipment::prepare(
        context,
        &Request {
            services: &arguments.service,
            version: arguments.version.as_deref(),
            artifact: arguments.artifact.as_deref(),
            keep_unpacked: !arguments.full && !arguments.dry_run,
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
        let mut result = super::each_target(
            context,
            &services,
            "push",
            true,
            |target, label, events| async move {
                let shipment = shipment_of(target.service)
                    .ok_or_else(|| HostError::failed("plan", "no artifact for this service"))?;
                plan_host(context, shipment, target, label, events, arguments).await
            },
        )
        .await?;
        super::switching::note_batches(context, &mut result);
        return Ok(result);
    }
    // Every host read (read-only) and the push refused as a whole if it is a downgrade on any.
    let opened = if arguments.allow_downgrade {
        None
    } else {
        Some(super::downgrades::check(context, &shipments).await?)
    };
    let with_service = services.len() > 1;
    let versions: Vec<&str> = shipments
        .iter()
        .map(|shipment| shipment.version.as_str())
        .collect();
    super::webhook::started(
        context,
        "push",
        &services,
        Some(&versions.join(",")),
        context.targets(&services)?.len(),
    );
    let result = super::each_service(
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
                        arguments,
                        &events,
                        &permits,
                    )
                    .await
                }
                None => Vec::new(),
            }
        },
    )
    .await;
    if let Some(opened) = opened {
        opened.close().await;
    }
    result
}

fn release_of<'a>(
    shipment: &'a Shipment,
    service: &'a crate::inventory::Service,
    full: bool,
) -> Release<'a> {
    Release {
        fetch_on_host: shipment.host_url.as_deref().map(crate::http::redact),
        version: &shipment.version,
        sha256: &shipment.artifact.sha256,
        size: shipment.artifact.size,
        unpacked_size: shipment.artifact.unpacked_size,
        manifest: &shipment.artifact.manifest,
        manifest_bytes: shipment.manifest.len() as u64,
        shared_paths: &service.shared_paths,
        delta: service.delta,
        full,
        tar_strip: shipment.artifact.tar_strip,
    }
}

/// The manifest recorded for the release a delta push on this host would start from (see
/// `plan::delta_base`), or why there is none to start from (a full push then, and the reason
/// is its note). `live`: the live release's manifest when it was already read (or why it could
/// not be), so that it is not read again.
async fn delta_base_manifest(
    run: &crate::executor::HostRun<'_>,
    facts: &crate::remote::state::Facts,
    release: &Release<'_>,
    live: Option<Result<crate::artifact::Manifest, String>>,
) -> Result<crate::artifact::Manifest, String> {
    let base = crate::plan::delta_base(facts, release)?;
    if let Some(manifest) = live.filter(|_| facts.live() == Some(&base)) {
        return manifest;
    }
    run.recorded_manifest("read manifest", &base)
        .await
        .map_err(|error| error.message())
}

/// A dry run on one host: connects, reads its real state and plans; changes nothing (no lock,
/// no directory, no history).
async fn plan_host(
    context: &Context,
    shipment: &Shipment,
    target: Target,
    label: String,
    events: Events,
    arguments: &PushArgs,
) -> Result<super::Worked, HostError> {
    let service = &context.inventory.services[target.service];
    let host = &context.inventory.hosts[target.host];
    let release = release_of(shipment, service, arguments.full);
    let run = super::connect(context, target, label, &events, unix_now()).await?;
    let facts = run.facts().await;
    let live_manifest = match (&facts, arguments.diff) {
        (Ok(facts), true) => Some(match facts.live() {
            Some(live) => run.recorded_manifest("read manifest", live).await,
            None => Ok(crate::artifact::Manifest {
                entries: Vec::new(),
            }),
        }),
        _ => None,
    };
    let base = match &facts {
        Ok(facts) => {
            let read = live_manifest.as_ref().map(|read| match read {
                Ok(manifest) => Ok(manifest.clone()),
                Err(error) => Err(error.message()),
            });
            delta_base_manifest(&run, facts, &release, read).await
        }
        Err(error) => Err(error.message()),
    };
    let difference = live_manifest.map(|from| {
        from.map(|from| {
            from.comparable()
                .diff(&shipment.artifact.manifest.comparable())
        })
    });
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
    let mut steps: Vec<PlannedStep> = Vec::new();
    let decision = match crate::guard::downgrade(&facts, &shipment.version) {
        Some(downgrade) if !arguments.allow_downgrade => PushDecision::Refused(format!(
            "{}; pass --allow-downgrade to push it anyway",
            downgrade.describe()
        )),
        _ => plan_push(
            &facts,
            &release,
            service.keep_releases,
            arguments.force,
            base.as_ref().map_err(String::as_str),
        ),
    };
    match decision {
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
            notes.push(plan.transfer.describe());
            steps.extend(plan.stage.iter().map(PlannedStep::of));
            let switch = Switch {
                from: plan.from.clone(),
                to: plan.to.clone(),
                action: LogAction::Push,
            };
            steps.extend(
                SwitchSequence::new(service, &host.name, &switch)
                    .steps()
                    .iter()
                    .map(PlannedStep::of),
            );
            if !plan.prune.is_empty() {
                steps.push(PlannedStep::of(&Step::Prune {
                    versions: plan.prune.clone(),
                }));
            }
        }
    }
    let summary = format!("planned: {} steps", steps.len());
    result.notes = Some(notes);
    result.planned = Some(steps);
    Ok(super::Worked { result, summary })
}

/// Runs one service's push over its targets; returns a result per target.
async fn push_service<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    targets: Vec<Target>,
    with_service: bool,
    arguments: &PushArgs,
    events: &Events,
    permits: &Semaphore,
) -> Vec<(Target, HostResult)> {
    let total = targets.len();
    let now = unix_now();

    // Phase 1: preflight: every host connected and locked (two runs never each hold part of
    // the fleet) before the first byte is uploaded; too many failures already: nothing is.
    let cap = live_manifest_cap(context, shipment, arguments, total);
    let (acquired, mut finished) =
        super::lock_all(context, targets, with_service, events, permits, now, cap).await;
    events.phase(Phase::Staging {
        bytes_each: shipment.artifact.size,
    });
    let stop = StagingStop::new(context, total, failed_count(&finished));
    if let Some(reason) = stop.reason() {
        events.fleet(&format!(
            "{}: nothing uploaded: {reason}",
            context.inventory.services[shipment.service].name
        ));
    }
    let staged_or_failed = for_each(acquired, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        stage(context, shipment, host, arguments, events, permits, &stop).instrument(span)
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
    let failures = failed_count(&finished);
    let halted = switch_all(context, &mut staged, failures, total, events, permits).await;

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

/// How much of the live release's recorded manifest (the base of a delta) each host's lock
/// reads with the facts, so that staging needs no command of its own for it; `None` when no
/// delta can apply. When every host is worked on at once, a manifest of any usual size: the
/// hosts would each read it at the same moment anyway. When some wait for their turn to stage,
/// only a small one (a few files), as it waits with them: a larger one is read when the host's
/// turn comes, as before.
fn live_manifest_cap(
    context: &Context,
    shipment: &Shipment,
    arguments: &PushArgs,
    total: usize,
) -> Option<u64> {
    let service = &context.inventory.services[shipment.service];
    if arguments.full
        || service.delta == crate::inventory::Delta::Off
        || shipment.host_url.is_some()
    {
        return None;
    }
    Some(if total <= context.concurrency {
        LIVE_MANIFEST_ALL_AT_ONCE
    } else {
        LIVE_MANIFEST_WAITING
    })
}

/// `live_manifest_cap` when every host is worked on at once.
const LIVE_MANIFEST_ALL_AT_ONCE: u64 = 16 << 20;
/// `live_manifest_cap` when hosts wait for their turn: bounded per waiting host.
const LIVE_MANIFEST_WAITING: u64 = 4 << 10;

/// How many of the finished hosts failed (skipped ones did not).
fn failed_count(finished: &[(Target, HostResult)]) -> usize {
    finished
        .iter()
        .filter(|(_, result)| result.outcome == Outcome::Failed)
        .count()
}

/// The staging phase's stop: once more hosts failed than `max_failures` allows (under
/// `on_failure` "rollback" or "halt"), no new upload starts and the ones in flight are stopped
/// (`HostError::Stopped`: the host is `skipped`, its staging removed, its lock released).
struct StagingStop {
    failures: std::sync::atomic::AtomicUsize,
    allowed: usize,
    total: usize,
    applies: bool,
    sender: tokio::sync::watch::Sender<Option<String>>,
}

impl StagingStop {
    fn new(context: &Context, total: usize, failures: usize) -> Self {
        let deploy = &context.inventory.deploy;
        let stop = StagingStop {
            failures: std::sync::atomic::AtomicUsize::new(0),
            allowed: deploy.max_failures.allowed(total),
            total,
            applies: deploy.on_failure != OnFailure::Continue,
            sender: tokio::sync::watch::channel(None).0,
        };
        stop.add(failures, "before the upload");
        stop
    }

    /// Counts `count` more failed hosts; stops staging when they exceed `max_failures`.
    fn add(&self, count: usize, when: &str) {
        use std::sync::atomic::Ordering;
        let failures = self.failures.fetch_add(count, Ordering::SeqCst) + count;
        if self.applies && failures > self.allowed && self.sender.borrow().is_none() {
            let reason = format!(
                "{failures} of {} hosts failed {when} (max_failures allows {})",
                self.total, self.allowed
            );
            self.sender.send_if_modified(|current| {
                current.is_none() && {
                    *current = Some(reason);
                    true
                }
            });
        }
    }

    fn reason(&self) -> Option<String> {
        self.sender.borrow().clone()
    }

    fn receiver(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.sender.subscribe()
    }
}

/// Phase 1 for one locked host: plan from the state read under the lock, run the staging steps.
async fn stage<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    host: super::Acquired<'a>,
    arguments: &PushArgs,
    events: &Events,
    permits: &Semaphore,
    stop: &StagingStop,
) -> Result<Locked<'a>, (Target, HostResult)> {
    let _permit = permits.acquire().await;
    let super::Acquired {
        target,
        label,
        run,
        lock,
        facts,
        live_manifest,
        started,
    } = host;
    run.resume();
    run.stop_on(Some(stop.receiver()));
    run.transfer_on_own_connection(crate::executor::uploads_on_transfer_connections(
        stop.total,
        context.concurrency,
    ));
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
        if let Some(reason) = stop.reason() {
            return Err(HostError::Stopped {
                step: "start".to_string(),
                reason,
            });
        }
        if !arguments.allow_downgrade
            && let Some(downgrade) = crate::guard::downgrade(&facts, &shipment.version)
        {
            return Err(HostError::failed(
                "plan",
                format!(
                    "{}; pass --allow-downgrade to push it anyway",
                    downgrade.describe()
                ),
            ));
        }
        let release = release_of(shipment, service, arguments.full);
        // The lock read the live release's manifest (or found none): not read again.
        let live = match (live_manifest, facts.live()) {
            (Some(section), Some(version)) => Some(
                crate::executor::recorded_manifest_of("read manifest", version, section)
                    .await
                    .map_err(|error| error.message()),
            ),
            _ => None,
        };
        let base = delta_base_manifest(&run, &facts, &release, live).await;
        match plan_push(
            &facts,
            &release,
            service.keep_releases,
            arguments.force,
            base.as_ref().map_err(String::as_str),
        ) {
            PushDecision::Unchanged => Ok(None),
            PushDecision::Refused(reason) => Err(HostError::failed("plan", reason)),
            PushDecision::Deploy(plan) => {
                events.planned(&label, plan.upload_bytes);
                result
                    .notes
                    .get_or_insert_with(Vec::new)
                    .push(plan.transfer.describe());
                let payload = Payload {
                    artifact: &shipment.artifact.path,
                    artifact_size: shipment.artifact.size,
                    manifest: &shipment.manifest,
                    url: shipment.host_url.as_deref(),
                    strip_components: service.strip_components.unwrap_or(0),
                    streams: Some(&shipment.streams),
                    paths: &[],
                };
                // Uploaded files first: staging links them into the release.
                super::files::upload_changed(&run, &shipment.files).await?;
                // A delta step's output (the base's identities) tells its Verify what to hash.
                let mut delta_output = None;
                for step in &plan.stage {
                    let delta = plan
                        .stage
                        .iter()
                        .find(|step| matches!(step, Step::Delta { .. }));
                    match (step, delta) {
                        (Step::Verify { .. }, Some(delta)) => run
                            .verify_staged(
                                step,
                                delta,
                                delta_output.take(),
                                &shipment.artifact.manifest,
                                &payload,
                            )
                            .await
                            .map(drop),
                        (Step::Delta { .. }, _) => run
                            .execute(step, &payload)
                            .await
                            .map(|output| delta_output = Some(output)),
                        _ => run.execute(step, &payload).await.map(drop),
                    }
                    .map_err(|error| disk_hint(error, facts.free_bytes, shipment))?;
                }
                Ok(Some(plan))
            }
        }
    }
    .await;
    run.stop_on(None);
    match outcome {
        Ok(plan) => {
            result.bytes = run.uploaded();
            run.wait_for_others(Milestone::Staged);
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
            if !matches!(
                error,
                HostError::Interrupted { .. } | HostError::Stopped { .. }
            ) {
                stop.add(1, "during staging");
            }
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
