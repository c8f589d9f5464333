//! Switching a host back after a failure or Ctrl-C: on the existing connection, or, when it died
//! or froze, through a new one that takes the lock again (or finds it still held by this run)
//! and stops the run's leftover steps first. Allowed `SWITCH_BACK_GRACE` beyond the budget.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::lock::take_lock;
use super::{HostError, HostRun, Payload, SWITCH_BACK_GRACE};
use crate::plan::Step;
use crate::ssh::Held;

impl HostRun<'_> {
    /// Puts a switched host back: runs `steps` (the reverse switch with its history record,
    /// then the old release's `after_switch` hooks) outside Ctrl-C and beyond the budget, for
    /// at most `SWITCH_BACK_GRACE`. When the connection died or froze, it reconnects, takes
    /// the lock again (or finds it still held by this run), stops what the run left running
    /// there, and switches back through the new connection.
    pub async fn switch_back(&self, steps: &[Step]) -> Result<(), HostError> {
        let grace_end = Instant::now() + SWITCH_BACK_GRACE;
        if !self.broken.load(Ordering::Relaxed) && !self.session().is_closed() {
            // The first try gets half the grace, so a frozen connection leaves time to reconnect.
            let first_try = Instant::now() + SWITCH_BACK_GRACE / 2;
            match self.send_all(steps, first_try).await {
                Ok(()) => return Ok(()),
                Err(error) if !error.abandoned() => return Err(error),
                Err(error) => {
                    self.events.note(
                        &self.label,
                        &format!("warning: switching back failed ({error}); reconnecting"),
                    );
                }
            }
        }
        self.broken.store(true, Ordering::Relaxed);
        let relock = self.reconnect(grace_end).await?;
        let outcome = self.send_all(steps, grace_end).await;
        if let Some(held) = relock {
            self.unlock(held).await;
        }
        outcome
    }

    async fn send_all(&self, steps: &[Step], until: Instant) -> Result<(), HostError> {
        for step in steps {
            self.events.step(&self.label, step.name());
            self.send(step, &Payload::none(), until, false).await?;
        }
        Ok(())
    }

    /// A new connection to the host for the rest of this run, with the lock taken again (or
    /// found still held by this run) and the run's abandoned steps stopped.
    async fn reconnect(&self, until: Instant) -> Result<Option<Held>, HostError> {
        self.events.step(&self.label, "reconnect");
        let session =
            match tokio::time::timeout_at(until.into(), self.connector.connect(&self.endpoint))
                .await
            {
                Ok(Ok(session)) => Arc::new(session),
                Ok(Err(error)) => return Err(HostError::failed("reconnect", error.to_string())),
                Err(_) => {
                    return Err(HostError::TimedOut {
                        step: "reconnect".to_string(),
                    });
                }
            };
        let operator = self
            .operator
            .lock()
            .map(|operator| operator.clone())
            .unwrap_or_default();
        let (held, holder) = take_lock(
            &session,
            &self.lowering,
            &operator,
            self.lowering.now,
            None,
            until,
            &self.host,
            &self.label,
        )
        .await?;
        if held.is_none()
            && let Some(holder) = holder
            && holder.run_id != self.lowering.run_id
        {
            return Err(HostError::failed(
                "reconnect",
                format!(
                    "the lock was taken by another run ({}): not switching back",
                    holder.describe()
                ),
            ));
        }
        let stopped = tokio::time::timeout_at(
            until.into(),
            session.run(&self.lowering.stop_steps(self.steps_started())),
        )
        .await;
        if !matches!(stopped, Ok(Ok(ref output)) if output.success()) {
            self.events.note(
                &self.label,
                "warning: could not confirm that the abandoned step stopped",
            );
        }
        if let Ok(mut current) = self.session.lock() {
            *current = session;
        }
        self.broken.store(false, Ordering::Relaxed);
        Ok(held)
    }
}
