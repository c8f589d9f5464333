//! One module per command. Each turns a `Context` and its flags into a `RunResult`; none of
//! them prints (the reporter task draws progress; `main` prints the result, rendered by
//! `report`) or names russh types.

pub mod check;
pub mod diff;
pub mod downgrades;
pub mod exec;
pub mod files;
pub mod history;
pub mod init;
pub mod lock;
pub mod prune;
pub mod push;
pub mod rollback;
pub mod run;
pub mod shipment;
pub mod status;
pub mod switching;
pub mod unlock;
pub mod webhook;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, InputError, Target, for_each};
use crate::executor::{HostError, HostRun, elapsed_ms};
use crate::remote::steps::Lowering;
use crate::report::{Events, Failure, HostResult, Outcome, Reporter, RunResult};

/// Connects to one target with its service's lowering values and the host deadline.
pub async fn connect<'a>(
    context: &'a Context,
    target: Target,
    label: String,
    events: &Events,
    now: u64,
) -> Result<HostRun<'a>, HostError> {
    let service = &context.inventory.services[target.service];
    let lowering = Lowering {
        base_dir: &service.base_dir,
        run_id: &context.run_id,
        shared_paths: &service.shared_paths,
        shared_files: &service.shared_files,
        now,
        step_number: 0,
    };
    connect_host(context, target.host, label, lowering, events).await
}

/// Connects to `host` with the given lowering values (for work that is not about one service,
/// such as `check`, any values: it runs no lowered step) under the host deadline.
pub async fn connect_host<'a>(
    context: &'a Context,
    host: usize,
    label: String,
    lowering: Lowering<'a>,
    events: &Events,
) -> Result<HostRun<'a>, HostError> {
    HostRun::connect(
        &context.connector,
        &context.endpoint(host),
        label,
        lowering,
        events.clone(),
        context.inventory.deploy.host_timeout,
        context.interrupted.clone(),
    )
    .await
}

/// A (service, host) pair connected, holding its service lock, with the state read under it.
pub struct Acquired<'a> {
    pub target: Target,
    pub label: String,
    pub run: HostRun<'a>,
    pub lock: crate::ssh::Held,
    pub facts: crate::remote::state::Facts,
    /// The live release's recorded manifest, when the lock read it (`lock_all`'s cap).
    pub live_manifest: Option<crate::remote::scan::RecordedManifest>,
    pub started: Instant,
}

/// How many times `lock_all` lets go and tries again when another run holds some locks.
const LOCK_ATTEMPTS: u32 = 4;

/// The first phase of a changing command: connect to every target and take its service lock,
/// before anything changes anywhere. When another run holds some of the locks while this run
/// got others (two controllers started at the same moment), this run lets go of all of them,
/// waits a short random time and tries again, so two runs never each keep part of a fleet and
/// both give up; a run that got none of them gives up at once (exit 3, naming the holder).
/// After the last try it keeps what it has. Failures come back as finished results.
/// `live_manifest_cap`: a push's locks also read the live release's manifest up to that many
/// bytes (`HostRun::lock`).
pub async fn lock_all<'a>(
    context: &'a Context,
    targets: Vec<Target>,
    with_service: bool,
    events: &Events,
    permits: &Semaphore,
    now: u64,
    live_manifest_cap: Option<u64>,
) -> (Vec<Acquired<'a>>, Vec<(Target, HostResult)>) {
    struct Slot<'a> {
        target: Target,
        label: String,
        started: Instant,
        run: Option<HostRun<'a>>,
        locked: Option<(
            crate::ssh::Held,
            crate::remote::state::Facts,
            Option<crate::remote::scan::RecordedManifest>,
        )>,
        failure: Option<HostError>,
    }
    let mut slots: Vec<Slot<'a>> = for_each(targets, context.concurrency, |target| {
        let label = context.label(target, with_service);
        async move {
            let _permit = permits.acquire().await;
            let started = Instant::now();
            let connected = if context.is_interrupted() {
                Err(HostError::Interrupted {
                    step: "start".to_string(),
                })
            } else {
                connect(context, target, label.clone(), events, now)
                    .instrument(host_span(context, target))
                    .await
            };
            let (run, failure) = match connected {
                Ok(run) => {
                    run.pause();
                    (Some(run), None)
                }
                Err(error) => (None, Some(error)),
            };
            Slot {
                target,
                label,
                started,
                run,
                locked: None,
                failure,
            }
        }
    })
    .await;
    for attempt in 1..=LOCK_ATTEMPTS {
        let waiting: Vec<&mut Slot> = slots
            .iter_mut()
            .filter(|slot| slot.run.is_some() && slot.locked.is_none())
            .collect();
        for_each(waiting, context.concurrency, |slot| async move {
            let _permit = permits.acquire().await;
            let Some(run) = &slot.run else { return };
            if context.is_interrupted() {
                slot.failure = Some(HostError::Interrupted {
                    step: "lock".to_string(),
                });
                return;
            }
            run.resume();
            match run
                .lock(&context.operator, now, live_manifest_cap)
                .instrument(host_span(context, slot.target))
                .await
            {
                Ok(locked) => {
                    // Waiting for the other hosts' locks and for a turn to stage is not work.
                    run.pause();
                    slot.locked = Some(locked);
                    slot.failure = None;
                }
                Err(error) => slot.failure = Some(error),
            }
        })
        .await;
        let held_elsewhere = slots.iter().any(|slot| {
            matches!(&slot.failure, Some(HostError::LockHeld { run_id, .. }) if *run_id != context.run_id)
        });
        let holding = slots.iter().any(|slot| slot.locked.is_some());
        if !held_elsewhere || !holding || attempt == LOCK_ATTEMPTS || context.is_interrupted() {
            break;
        }
        tracing::info!(
            "another run holds some of the locks this run needs: letting go of ours and trying again ({attempt} of {LOCK_ATTEMPTS})"
        );
        let holders: Vec<&mut Slot> = slots
            .iter_mut()
            .filter(|slot| slot.locked.is_some())
            .collect();
        for_each(holders, context.concurrency, |slot| async move {
            if let (Some(run), Some((held, ..))) = (&slot.run, slot.locked.take()) {
                run.unlock(held).await;
            }
        })
        .await;
        tokio::time::sleep(backoff(attempt)).await;
    }
    let mut acquired = Vec::new();
    let mut finished = Vec::new();
    for slot in slots {
        match (slot.run, slot.locked) {
            (Some(run), Some((lock, facts, live_manifest))) => acquired.push(Acquired {
                target: slot.target,
                label: slot.label,
                run,
                lock,
                facts,
                live_manifest,
                started: slot.started,
            }),
            (run, _) => {
                if let Some(run) = run {
                    run.close().await;
                }
                let error = slot
                    .failure
                    .unwrap_or_else(|| HostError::failed("lock", "the lock was not taken"));
                let result = result_for(context, slot.target, Outcome::Ok);
                finished.push((
                    slot.target,
                    failed(result, &error, slot.started, events, &slot.label),
                ));
            }
        }
    }
    (acquired, finished)
}

/// A random wait before the next lock attempt: 100–600 ms times the attempt number, drawn
/// from the clock and the process id (two controllers started together draw differently).
fn backoff(attempt: u32) -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let mixed = (u64::from(nanos) ^ (u64::from(std::process::id()) << 17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let jitter = 100 + (mixed >> 33) % 500;
    std::time::Duration::from_millis(jitter * u64::from(attempt))
}

/// `result` turned into the failure `error`, timed from `started` and announced.
pub fn failed(
    mut result: HostResult,
    error: &HostError,
    started: Instant,
    events: &Events,
    label: &str,
) -> HostResult {
    // Ctrl-C, or other hosts' failures, are not this host's failure: it was stopped before it
    // changed anything.
    result.outcome = if matches!(
        error,
        HostError::Interrupted { .. } | HostError::Stopped { .. }
    ) {
        Outcome::Skipped
    } else {
        Outcome::Failed
    };
    if error.is_lock_held() {
        result.failure = Some(Failure::LockHeld);
    }
    result.error = Some(error.to_string());
    result.step = Some(error.step().to_string());
    result.duration_ms = elapsed_ms(started);
    switching::announce(events, label, &result);
    result
}

/// The span a (service, host) pair's work runs in: diagnostics inside it carry `host` and
/// `service` (and `run_id` from the run's span). An `error` span, so that it is enabled at
/// every verbosity: a warning under `-q` still names its host.
pub fn host_span(context: &Context, target: Target) -> tracing::Span {
    tracing::error_span!(
        "host",
        host = %context.inventory.hosts[target.host].name,
        service = %context.inventory.services[target.service].name
    )
}

/// What per-target work returns: the host's result and its one-line summary for the reporter.
pub struct Worked {
    pub result: HostResult,
    pub summary: String,
}

/// The audit record of `action` for a host's result (SPEC §3).
pub fn history_record(
    context: &Context,
    action: &str,
    result: &HostResult,
    sha256: Option<String>,
) -> crate::remote::history::HistoryRecord {
    use crate::remote::history::{HistoryRecord, RecordResult};
    HistoryRecord {
        time: crate::app::rfc3339_now(),
        id: context.run_id.clone(),
        operator: context.operator.clone(),
        action: action.into(),
        service: result.service.clone().unwrap_or_default(),
        from: result.from.clone(),
        to: result.to.clone(),
        sha256,
        result: match result.outcome {
            Outcome::Ok | Outcome::Unchanged | Outcome::Planned => RecordResult::Ok,
            Outcome::RolledBack => RecordResult::RolledBack,
            Outcome::Failed | Outcome::Skipped => RecordResult::Failed,
        },
        error: result.error.clone(),
        message: context.message.clone(),
    }
}

/// A fresh result for `target` (service and host names filled in).
pub fn result_for(context: &Context, target: Target, outcome: Outcome) -> HostResult {
    HostResult::new(
        Some(&context.inventory.services[target.service].name),
        &context.inventory.hosts[target.host].name,
        outcome,
    )
}

/// The shape of every per-host command: each selected (service, host) pair, at most
/// `concurrency` at once, connected with `work`'s own code; a failing host becomes a `failed`
/// result naming the error, never an abort of the others.
pub async fn each_target<F, Fut>(
    context: &Context,
    services: &[usize],
    action: &str,
    dry_run: bool,
    work: F,
) -> Result<RunResult, InputError>
where
    F: Fn(Target, String, Events) -> Fut,
    Fut: Future<Output = Result<Worked, HostError>>,
{
    let targets = context.targets(services)?;
    let with_service = services.len() > 1;
    let (events, reporter) = Reporter::start(context.progress, targets.len());
    let hosts = for_each(targets, context.concurrency, |target| {
        let events = events.clone();
        let label = context.label(target, with_service);
        let started = Instant::now();
        let work =
            work(target, label.clone(), events.clone()).instrument(host_span(context, target));
        async move {
            let mut result = match work.await {
                Ok(worked) => {
                    events.done(&label, &worked.summary);
                    worked.result
                }
                Err(error) => {
                    let mut result = result_for(context, target, Outcome::Failed);
                    if error.is_lock_held() {
                        result.failure = Some(Failure::LockHeld);
                    }
                    result.error = Some(error.to_string());
                    result.step = Some(error.step().to_string());
                    events.finished(&label, &result);
                    result
                }
            };
            result.duration_ms = elapsed_ms(started);
            result
        }
    })
    .await;
    drop(events);
    reporter.finish().await;
    Ok(RunResult::new(&context.run_id, action, dry_run, hosts))
}

/// The shape of the changing commands (push, rollback): `run` gets each service's selected
/// targets, concurrently across services (each has its own lock), all sharing `concurrency`
/// permits and one reporter; results come back in target order.
pub async fn each_service<F, Fut>(
    context: &Context,
    services: &[usize],
    action: &str,
    run: F,
) -> Result<RunResult, InputError>
where
    F: Fn(usize, Vec<Target>, Events, Arc<Semaphore>) -> Fut,
    Fut: Future<Output = Vec<(Target, HostResult)>>,
{
    let targets = context.targets(services)?;
    let (events, reporter) = Reporter::start(context.progress, targets.len());
    events.phase(crate::report::Phase::Connecting);
    let permits = Arc::new(Semaphore::new(context.concurrency));
    let mut by_service: Vec<usize> = targets.iter().map(|target| target.service).collect();
    by_service.sort_unstable();
    by_service.dedup();
    let runs = by_service.into_iter().map(|service| {
        let service_targets: Vec<Target> = targets
            .iter()
            .copied()
            .filter(|target| target.service == service)
            .collect();
        run(service, service_targets, events.clone(), permits.clone())
    });
    let mut results: Vec<(Target, HostResult)> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    results.sort_by_key(|(target, _)| targets.iter().position(|other| other == target));
    drop(events);
    reporter.finish().await;
    Ok(RunResult::new(
        &context.run_id,
        action,
        false,
        results.into_iter().map(|(_, result)| result).collect(),
    ))
}
