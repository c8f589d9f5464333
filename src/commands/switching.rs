//! The switch phase, shared by `push` and `rollback` (one switch code path).
//!
//! Owns: hosts that hold their service lock and are ready to switch (`Locked`), switching them
//! in batches of `batch_size` while applying `max_failures` and `on_failure`, undoing the
//! switches this run made (under `rollback`, or after Ctrl-C), and the last phase of every
//! changing command: prune, history record, unlock, disconnect.
//!
//! Audit: every change of `current` writes its history record in the same remote command as
//! the change (the switch, and the switch back); `finish` writes a record only for a host whose
//! final state no switch recorded (not switched, unchanged, failed before the switch, or left
//! switched because switching back failed).

use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, Target, for_each};
use crate::executor::{HostError, HostRun, Payload, elapsed_ms};
use crate::inventory::{OnFailure, Version};
pub use crate::plan::Switch;
use crate::plan::{Step, SwitchSequence};
use crate::remote::history::HistoryRecord;
use crate::remote::state::LogAction;
use crate::report::{Events, HostResult, Landing, Milestone, Outcome, Phase};
use crate::ssh::Held;

/// A host holding its service lock, ready to switch.
pub struct Locked<'a> {
    pub target: Target,
    pub run: HostRun<'a>,
    pub lock: Held,
    pub result: HostResult,
    pub started: Instant,
    /// `None`: nothing to switch on this host (already there).
    pub switch: Option<Switch>,
    pub switched: bool,
    /// Releases to remove once the switch succeeded.
    pub prune: Vec<Version>,
    /// The history action of this run (`push`, `rollback`) and the artifact's sha256.
    pub action: &'static str,
    pub sha256: Option<String>,
    /// A history record of the host's current state was written by a switch or switch back.
    pub recorded: bool,
}

impl Locked<'_> {
    /// The history record of this host's switch, with `outcome` and `error`.
    fn record(&self, context: &Context, outcome: Outcome, error: Option<String>) -> HistoryRecord {
        let mut result = self.result.clone();
        result.outcome = outcome;
        result.error = error;
        if let Some(switch) = &self.switch {
            result.from = switch.from.as_ref().map(ToString::to_string);
            result.to = Some(switch.to.to_string());
        }
        super::history_record(context, self.action, &result, self.sha256.clone())
    }
}

/// Switches every host that has a switch, in batches (`batch_size`, in inventory order, with
/// `batch_pause` between two batches). `failures` counts the hosts of this service that already
/// failed (and `total` all of them) for `max_failures`. With more than one batch, the first is
/// the canary: when any of its hosts fails, no other host switches, whatever `max_failures`.
/// Returns why the run stopped switching, if it did; under `rollback` (or after Ctrl-C) the
/// hosts switched by this run are already switched back when it returns.
pub async fn switch_all(
    context: &Context,
    hosts: &mut [Locked<'_>],
    mut failures: usize,
    total: usize,
    events: &Events,
    permits: &Semaphore,
) -> Option<String> {
    let allowed = context.inventory.deploy.max_failures.allowed(total);
    let policy = context.inventory.deploy.on_failure;
    if context.is_interrupted() {
        return Some("interrupted before the switch".to_string());
    }
    if failures > allowed && policy != OnFailure::Continue {
        return Some(format!(
            "not switched: {failures} of {total} hosts failed before the switch (max_failures allows {allowed})"
        ));
    }
    let batches = batches(context, hosts, total);
    let count = batches.len();
    let service = &context.inventory.services[hosts.first().map_or(0, |host| host.target.service)];
    let mut halted = None;
    for (index, members) in batches.into_iter().enumerate() {
        let number = index + 1;
        if index > 0 && pause(context, events, number, count).await {
            halted = Some("interrupted".to_string());
            break;
        }
        if count > 1 {
            let names: Vec<&str> = members
                .iter()
                .map(|&member| {
                    context.inventory.hosts[hosts[member].target.host]
                        .name
                        .as_str()
                })
                .collect();
            events.fleet(&format!(
                "{}: batch {number} of {count}{} at {}: {}",
                service.name,
                if index == 0 { " (canary)" } else { "" },
                humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                names.join(", ")
            ));
        }
        events.phase(Phase::Switching {
            batch: number,
            of: count,
        });
        let batch: Vec<&mut Locked> = hosts
            .iter_mut()
            .enumerate()
            .filter(|(position, _)| members.contains(position))
            .map(|(_, host)| host)
            .collect();
        let size = batch.len();
        let failed = switch_batch(context, batch, permits).await;
        failures += failed;
        if context.is_interrupted() {
            halted = Some("interrupted".to_string());
            break;
        }
        if index == 0 && count > 1 && failed > 0 {
            halted = Some(format!(
                "the canary batch failed ({failed} of {size} hosts): no other host switches"
            ));
            break;
        }
        if failures > allowed && policy != OnFailure::Continue {
            // Name the hosts that failed: the hosts switched back are told why.
            let failed: Vec<&str> = hosts
                .iter()
                .filter(|host| host.result.outcome == Outcome::Failed)
                .map(|host| context.inventory.hosts[host.target.host].name.as_str())
                .collect();
            halted = Some(format!(
                "{failures} of {total} hosts failed (max_failures allows {allowed}): {}",
                failed.join(", ")
            ));
            break;
        }
    }
    if let Some(reason) = &halted
        && (policy == OnFailure::Rollback || context.is_interrupted())
    {
        events.phase(Phase::RollingBack);
        undo_switched(context, hosts, reason).await;
    }
    events.phase(Phase::Finishing);
    halted
}

/// The batches of one service's switch: positions in `hosts` of the hosts that have a switch,
/// cut by `batch_size` (percentages are of `total`, the service's selected hosts).
fn batches(context: &Context, hosts: &[Locked<'_>], total: usize) -> Vec<Vec<usize>> {
    let switching: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, host)| host.switch.is_some())
        .map(|(position, _)| position)
        .collect();
    let mut rest = switching.as_slice();
    let mut batches = Vec::new();
    for size in context
        .inventory
        .deploy
        .batch_size
        .batch_sizes(switching.len(), total)
    {
        let (batch, after) = rest.split_at(size.min(rest.len()));
        batches.push(batch.to_vec());
        rest = after;
    }
    batches
}

/// `batch_pause` before batch `number` of `count`, with a countdown; returns whether Ctrl-C
/// ended it.
async fn pause(context: &Context, events: &Events, number: usize, count: usize) -> bool {
    let pause = context.inventory.deploy.batch_pause;
    if pause.is_zero() {
        return context.is_interrupted();
    }
    let end = tokio::time::Instant::now() + pause;
    events.fleet(&format!(
        "pausing {} before batch {number} of {count} (Ctrl-C stops the rollout)",
        humantime::format_duration(pause)
    ));
    let mut interrupt = context.interrupted.clone();
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return context.is_interrupted();
        }
        events.countdown(&format!(
            "batch {number} of {count} in {}s",
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        ));
        let tick = left.min(std::time::Duration::from_secs(1));
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            watched = interrupt.wait_for(|stop| *stop) => {
                if watched.is_err() {
                    // No Ctrl-C watcher any more: only the clock ends the pause.
                    tokio::time::sleep(tick).await;
                }
            }
        }
        if context.is_interrupted() {
            return true;
        }
    }
}

/// A dry run's rollout: each planned host that would switch gets a note naming its batch
/// (per service, in inventory order, as `switch_all` would cut them).
pub fn note_batches(context: &Context, result: &mut crate::report::RunResult) {
    let deploy = &context.inventory.deploy;
    let mut services: Vec<Option<String>> = result
        .hosts
        .iter()
        .map(|host| host.service.clone())
        .collect();
    services.dedup();
    for service in services {
        let hosts: Vec<&mut HostResult> = result
            .hosts
            .iter_mut()
            .filter(|host| host.service == service)
            .collect();
        let total = hosts.len();
        let mut switching: Vec<&mut HostResult> = hosts
            .into_iter()
            .filter(|host| {
                host.outcome == Outcome::Planned && host.to.is_some() && host.from != host.to
            })
            .collect();
        let sizes = deploy.batch_size.batch_sizes(switching.len(), total);
        let count = sizes.len();
        let mut hosts = switching.iter_mut();
        for (index, size) in sizes.into_iter().enumerate() {
            for host in hosts.by_ref().take(size) {
                let mut note = format!(
                    "switch: batch {} of {count}{} (batch_size = {}",
                    index + 1,
                    if index == 0 && count > 1 {
                        ", the canary"
                    } else {
                        ""
                    },
                    deploy.batch_size.text()
                );
                if index > 0 && !deploy.batch_pause.is_zero() {
                    note.push_str(&format!(
                        ", after a pause of {}",
                        humantime::format_duration(deploy.batch_pause)
                    ));
                }
                note.push(')');
                host.notes.get_or_insert_with(Vec::new).push(note);
            }
        }
    }
}

/// How one host's switch ended.
struct Switched {
    /// `current` names the new release.
    switched: bool,
    /// A history record of the host's state was written with the last change.
    recorded: bool,
    error: Option<HostError>,
    /// What happened after the error (switched back, or switching back failed).
    aftermath: Option<String>,
}

/// Switches one batch; returns how many hosts failed (a host whose hook or health check
/// failed is switched back at once and counts as failed).
async fn switch_batch(
    context: &Context,
    mut batch: Vec<&mut Locked<'_>>,
    permits: &Semaphore,
) -> usize {
    let outcomes = for_each(
        batch.iter().map(|host| &**host).collect(),
        context.concurrency,
        |host: &Locked| {
            async move {
                let switch = host.switch.as_ref()?;
                let _permit = permits.acquire().await;
                host.run.resume();
                let outcome = switch_one(context, host, switch).await;
                host.run.wait_for_others(Milestone::Switched);
                Some(outcome)
            }
            .instrument(super::host_span(context, host.target))
        },
    )
    .await;
    let mut failures = 0;
    for (host, outcome) in batch.iter_mut().zip(outcomes) {
        let Some(outcome) = outcome else { continue };
        host.switched = outcome.switched;
        host.recorded = outcome.recorded;
        if let Some(error) = outcome.error {
            let interrupted = matches!(error, HostError::Interrupted { .. });
            host.result.step = Some(error.step().to_string());
            host.result.landing = match (outcome.switched, outcome.recorded) {
                (true, _) => Landing::LeftOnTarget,
                (false, true) => Landing::SwitchedBack,
                (false, false) => Landing::Implied,
            };
            let text = match outcome.aftermath {
                Some(aftermath) => format!("{error}; {aftermath}"),
                None => error.to_string(),
            };
            if interrupted && !outcome.switched {
                // Ctrl-C: not a failure of this host.
                host.result.outcome = if outcome.recorded {
                    Outcome::RolledBack
                } else {
                    Outcome::Skipped
                };
            } else {
                failures += 1;
                host.result.outcome = Outcome::Failed;
            }
            host.result.error = Some(text);
        }
    }
    failures
}

/// `before_switch` hooks, switch (with its history record), `after_switch` hooks, health
/// check; on a failure after the switch, the switch back (with its record).
async fn switch_one(context: &Context, host: &Locked<'_>, switch: &Switch) -> Switched {
    let service = &context.inventory.services[host.target.service];
    let host_name = &context.inventory.hosts[host.target.host].name;
    let sequence = SwitchSequence::new(service, host_name, switch);
    let not_switched = |error| Switched {
        switched: false,
        recorded: false,
        error: Some(error),
        aftermath: None,
    };
    for step in &sequence.before {
        if let Err(error) = host.run.execute(step, &Payload::none()).await {
            return not_switched(error);
        }
    }
    let step = switch.recorded(host.record(context, Outcome::Ok, None));
    let mut failure = None;
    let (events, label) = (&host.run.events, host.run.label.as_str());
    match host.run.execute(&step, &Payload::none()).await {
        Ok(_) => events.reached(label, Milestone::Switched),
        // The switch ran and said no: nothing changed.
        Err(error @ HostError::Failed { .. }) => return not_switched(error),
        // The answer was lost (connection dropped, deadline): it may have switched.
        Err(error) => failure = Some(error),
    }
    if failure.is_none() {
        for step in &sequence.after {
            if let Err(error) = host.run.execute(step, &Payload::none()).await {
                failure = Some(error);
                break;
            }
        }
    }
    if failure.is_none()
        && let (Some(step), Some(check)) = (&sequence.health, &service.health_check)
        && let Err(error) = host.run.health(step, check.interval).await
    {
        failure = Some(error);
    }
    let Some(error) = failure else {
        events.reached(label, Milestone::Healthy);
        return Switched {
            switched: true,
            recorded: true,
            error: None,
            aftermath: None,
        };
    };
    let back_to = switch
        .from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "no live release".to_string());
    let (outcome, reason) = match &error {
        HostError::Interrupted { .. } => (
            Outcome::RolledBack,
            "switched back: interrupted".to_string(),
        ),
        other => (Outcome::Failed, other.to_string()),
    };
    match revert(
        context,
        host,
        switch,
        host.record(context, outcome, Some(reason)),
    )
    .await
    {
        Ok(()) => {
            events.switched_back(label, &format!("switched back to {back_to}: {error}"));
            Switched {
                switched: false,
                recorded: true,
                error: Some(error),
                aftermath: Some(format!("switched back to {back_to}")),
            }
        }
        Err(undo) => Switched {
            switched: true,
            recorded: false,
            error: Some(error),
            aftermath: Some(format!("switching back failed: {undo}")),
        },
    }
}

/// Puts a switched host back: the reverse switch (writing `record`), then `after_switch` hooks
/// for the release it returns to. Not bounded by Ctrl-C, and allowed its own short grace
/// beyond the host's budget, reconnecting if the connection died (it is what they call for).
async fn revert(
    context: &Context,
    host: &Locked<'_>,
    switch: &Switch,
    record: HistoryRecord,
) -> Result<(), HostError> {
    let mut steps = vec![switch.undo(Some(record))];
    if let Some(previous) = &switch.from {
        let service = &context.inventory.services[host.target.service];
        let host_name = &context.inventory.hosts[host.target.host].name;
        let back = Switch {
            from: Some(switch.to.clone()),
            to: previous.clone(),
            action: LogAction::Rollback,
        };
        steps.extend(SwitchSequence::new(service, host_name, &back).after);
    }
    host.run.switch_back(&steps).await
}

/// Every host this run switched goes back to where it was (at most `concurrency` at once).
async fn undo_switched(context: &Context, hosts: &mut [Locked<'_>], reason: &str) {
    let switched: Vec<&mut Locked> = hosts.iter_mut().filter(|host| host.switched).collect();
    for_each(switched, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        undo_one(context, host, reason).instrument(span)
    })
    .await;
}

/// Switches one host back with the fleet (see `undo_switched`).
async fn undo_one(context: &Context, host: &mut Locked<'_>, reason: &str) {
    {
        let Some(switch) = host.switch.clone() else {
            return;
        };
        host.run.resume();
        let message = format!("switched back: {reason}");
        let record = host.record(context, Outcome::RolledBack, Some(message.clone()));
        let outcome = revert(context, host, &switch, record).await;
        host.result.step = Some("switch back".to_string());
        match outcome {
            Ok(()) => {
                host.run.events.switched_back(&host.run.label, &message);
                host.switched = false;
                host.recorded = true;
                host.result.outcome = Outcome::RolledBack;
                host.result.error = Some(message);
                host.result.landing = if context.is_interrupted() {
                    Landing::SwitchedBack
                } else {
                    Landing::FleetRollback
                };
            }
            Err(error) => {
                host.recorded = false;
                host.result.landing = Landing::LeftOnTarget;
                host.result.outcome = Outcome::Failed;
                host.result.error =
                    Some(format!("switching back after `{reason}` failed: {error}"));
            }
        }
    }
}

/// Last phase for one host: prune (if it switched), the history record when no switch wrote
/// one, unlock, disconnect.
pub async fn finish(
    host: Locked<'_>,
    halted: Option<&str>,
    record: impl FnOnce(&HostResult) -> HistoryRecord,
) -> (Target, HostResult) {
    let mut host = host;
    host.run.resume();
    let mut prune = None;
    if host.switch.is_some() {
        if host.switched && !host.prune.is_empty() {
            prune = Some(Step::Prune {
                versions: host.prune.clone(),
            });
        } else if !host.switched && host.result.outcome == Outcome::Ok {
            // Ready but not switched: other hosts failed, or Ctrl-C.
            host.result.outcome = Outcome::Skipped;
            host.result.error = Some(halted.unwrap_or("not switched").to_string());
        }
    }
    host.result.duration_ms = elapsed_ms(host.started);
    let history = (!host.recorded).then(|| record(&host.result));
    host.run.record(history.as_ref(), prune.as_ref()).await;
    host.result.history_lost(host.run.history_lost());
    host.result.steps = Some(host.run.executed());
    host.run.unlock(host.lock).await;
    announce(&host.run.events, &host.run.label, &host.result);
    host.run.close().await;
    (host.target, host.result)
}

/// The one-line result of a finished host, for the reporter.
pub fn announce(events: &Events, label: &str, result: &HostResult) {
    events.finished(label, result);
}
