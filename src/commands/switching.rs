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
async fn switch_batch(context: &Context, batch: &mut [Locked<'_>], permits: &Semaphore) -> usize {
    let outcomes = for_each(
        batch.iter().collect(),
        context.concurrency,
        |host: &Locked| async move {
            let switch = host.switch.as_ref()?;
            let _permit = permits.acquire().await;
            host.run.resume();
            let outcome = switch_one(context, host, switch)
                .instrument(super::host_span(context, host.target))
                .await;
            host.run
                .wait_for_others("switched; waiting for the other hosts");
            Some(outcome)
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
    match host.run.execute(&step, &Payload::none()).await {
        Ok(_) => {}
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
        Ok(()) => Switched {
            switched: false,
            recorded: true,
            error: Some(error),
            aftermath: Some(format!("switched back to {back_to}")),
        },
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
    for_each(switched, context.concurrency, |host| async move {
        let Some(switch) = host.switch.clone() else {
            return;
        };
        host.run.resume();
        let message = format!("switched back: {reason}");
        let record = host.record(context, Outcome::RolledBack, Some(message.clone()));
        let outcome = revert(context, host, &switch, record)
            .instrument(super::host_span(context, host.target))
            .await;
        match outcome {
            Ok(()) => {
                host.switched = false;
                host.recorded = true;
                host.result.outcome = Outcome::RolledBack;
                host.result.error = Some(message);
            }
            Err(error) => {
                host.recorded = false;
                host.result.outcome = Outcome::Failed;
                host.result.error =
                    Some(format!("switching back after `{reason}` failed: {error}"));
            }
        }
    })
    .await;
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
    match (&result.outcome, &result.error) {
        (Outcome::Failed | Outcome::Skipped | Outcome::RolledBack, Some(error)) => {
            events.done(label, &format!("{}: {error}", result.outcome.as_str()))
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
