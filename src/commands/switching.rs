//! The switch phase, shared by `push` and `rollback` (one switch code path).
//!
//! Owns: hosts that hold their service lock and are ready to switch (`Locked`), switching them
//! in batches of `batch_size` while applying `max_failures` and `on_failure`, undoing the
//! switches this run made (under `rollback`, or after Ctrl-C), and the last phase of every
//! changing command: prune, history record, unlock, disconnect.

use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, Target, for_each};
use crate::executor::HostError;
use crate::executor::{HostRun, Payload, elapsed_ms, unlock};
use crate::facts::LogAction;
use crate::inventory::{OnFailure, Version};
pub use crate::plan::Switch;
use crate::plan::{HistoryRecord, Step, SwitchSequence};
use crate::report::{Events, HostResult, Outcome};
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
}

/// Switches every host that has a switch, in batches. `failures` counts the hosts of this
/// service that already failed (and `total` all of them) for `max_failures`. Returns why the
/// run stopped switching, if it did; under `rollback` (or after Ctrl-C) the hosts switched by
/// this run are already switched back when it returns.
pub async fn switch_all(
    context: &Context,
    hosts: &mut [Locked<'_>],
    mut failures: usize,
    total: usize,
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
    let batch_size = match context.inventory.deploy.batch_size {
        0 => hosts.len().max(1),
        size => size,
    };
    let mut halted = None;
    let mut start = 0;
    while start < hosts.len() {
        let end = (start + batch_size).min(hosts.len());
        failures += switch_batch(context, &mut hosts[start..end], permits).await;
        start = end;
        if context.is_interrupted() {
            halted = Some("interrupted".to_string());
            break;
        }
        if failures > allowed && policy != OnFailure::Continue {
            halted = Some(format!(
                "{failures} of {total} hosts failed (max_failures allows {allowed})"
            ));
            break;
        }
    }
    if let Some(reason) = &halted
        && (policy == OnFailure::Rollback || context.is_interrupted())
    {
        undo_switched(context, hosts, reason).await;
    }
    halted
}

/// Switches one batch; returns how many hosts failed (a host whose hook or health check
/// failed is switched back at once and counts as failed).
async fn switch_batch(context: &Context, batch: &mut [Locked<'_>], permits: &Semaphore) -> usize {
    let outcomes = for_each(
        batch.iter().collect(),
        context.concurrency,
        |host: &Locked| async move {
            let Some(switch) = &host.switch else {
                return (false, None);
            };
            let _permit = permits.acquire().await;
            host.run.restart_deadline();
            async {
                let outcome = switch_one(context, host, switch).await;
                host.run
                    .events
                    .idle(&host.run.label, "switched; waiting for the other hosts");
                outcome
            }
            .instrument(super::host_span(context, host.target))
            .await
        },
    )
    .await;
    let mut failures = 0;
    for (host, (switched, error)) in batch.iter_mut().zip(outcomes) {
        host.switched = switched;
        if let Some(error) = error {
            failures += 1;
            host.result.result = Outcome::Failed;
            host.result.error = Some(error);
        }
    }
    failures
}

/// `before_switch` hooks, switch, `after_switch` hooks, health check. Returns whether the host
/// is left switched, and the failure if any.
async fn switch_one(
    context: &Context,
    host: &Locked<'_>,
    switch: &Switch,
) -> (bool, Option<String>) {
    let service = &context.inventory.services[host.target.service];
    let host_name = &context.inventory.hosts[host.target.host].name;
    let sequence = SwitchSequence::new(service, host_name, switch);
    for step in &sequence.before {
        if let Err(error) = host.run.execute(step, &Payload::none()).await {
            return (false, Some(error.to_string()));
        }
    }
    if let Err(error) = host.run.execute(&sequence.switch, &Payload::none()).await {
        return (false, Some(error.to_string()));
    }
    let mut failure = None;
    for step in &sequence.after {
        if let Err(error) = host.run.execute(step, &Payload::none()).await {
            failure = Some(error);
            break;
        }
    }
    if failure.is_none()
        && let (Some(step), Some(check)) = (&sequence.health, &service.health_check)
        && let Err(error) = host.run.health(step, check.interval).await
    {
        failure = Some(error);
    }
    let Some(error) = failure else {
        return (true, None);
    };
    let back_to = switch
        .from
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "no live release".to_string());
    match revert(context, host, switch).await {
        Ok(()) => (false, Some(format!("{error}; switched back to {back_to}"))),
        Err(undo) => (
            true,
            Some(format!("{error}; switching back failed: {undo}")),
        ),
    }
}

/// Puts a switched host back: the reverse switch, then `after_switch` hooks for the release
/// it returns to. Not bounded by the deadline or Ctrl-C (it is what they call for).
async fn revert(context: &Context, host: &Locked<'_>, switch: &Switch) -> Result<(), HostError> {
    host.run.execute_unbounded(&switch.undo()).await?;
    if let Some(previous) = &switch.from {
        let service = &context.inventory.services[host.target.service];
        let host_name = &context.inventory.hosts[host.target.host].name;
        let back = Switch {
            from: Some(switch.to.clone()),
            to: previous.clone(),
            action: LogAction::Rollback,
        };
        for step in SwitchSequence::new(service, host_name, &back).after {
            host.run.execute_unbounded(&step).await?;
        }
    }
    Ok(())
}

/// Every host this run switched goes back to where it was (at most `concurrency` at once).
async fn undo_switched(context: &Context, hosts: &mut [Locked<'_>], reason: &str) {
    let switched: Vec<&mut Locked> = hosts.iter_mut().filter(|host| host.switched).collect();
    for_each(switched, context.concurrency, |host| async move {
        let Some(switch) = host.switch.clone() else {
            return;
        };
        let outcome = revert(context, host, &switch)
            .instrument(super::host_span(context, host.target))
            .await;
        match outcome {
            Ok(()) => {
                host.switched = false;
                host.result.result = Outcome::RolledBack;
                host.result.error = Some(format!("switched back: {reason}"));
            }
            Err(error) => {
                host.result.result = Outcome::Failed;
                host.result.error =
                    Some(format!("switching back after `{reason}` failed: {error}"));
            }
        }
    })
    .await;
}

/// Last phase for one host: prune (if it switched), history, unlock, disconnect.
pub async fn finish(
    host: Locked<'_>,
    halted: Option<&str>,
    record: impl FnOnce(&HostResult) -> HistoryRecord,
) -> (Target, HostResult) {
    let mut host = host;
    let mut prune = None;
    if host.switch.is_some() {
        if host.switched && !host.prune.is_empty() {
            prune = Some(Step::Prune {
                versions: host.prune.clone(),
            });
        } else if !host.switched && host.result.result == Outcome::Ok {
            // Ready but not switched: other hosts failed, or Ctrl-C.
            host.result.result = Outcome::Skipped;
            host.result.error = Some(halted.unwrap_or("not switched").to_string());
        }
    }
    host.result.duration_ms = elapsed_ms(host.started);
    host.run.record(&record(&host.result), prune.as_ref()).await;
    host.result.steps = Some(host.run.executed());
    unlock(&host.run.label, host.lock).await;
    announce(&host.run.events, &host.run.label, &host.result);
    host.run.close().await;
    (host.target, host.result)
}

/// The one-line result of a finished host, for the reporter.
pub fn announce(events: &Events, label: &str, result: &HostResult) {
    match (&result.result, &result.error) {
        (Outcome::Failed | Outcome::Skipped | Outcome::RolledBack, Some(error)) => {
            events.done(label, &format!("{}: {error}", result.result.as_str()))
        }
        (outcome, _) => events.done(
            label,
            &format!(
                "{} {} -> {}",
                outcome.as_str(),
                result.from.as_deref().unwrap_or("(none)"),
                result.to.as_deref().unwrap_or("(none)")
            ),
        ),
    }
}
