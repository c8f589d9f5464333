//! The health check of a host run: its attempts, `interval` apart, each bounded on the host and
//! here.

use std::time::Duration;

use super::{HostError, HostRun, failure_of};
use crate::plan::Step;
use crate::ssh::Output;

impl HostRun<'_> {
    /// Runs a `Step::Health` up to its attempt count, `interval` apart; each attempt is bounded
    /// on the host (`timeout`) and here (the same plus a margin).
    pub async fn health(&self, step: &Step, interval: Duration) -> Result<(), HostError> {
        let Step::Health {
            attempts,
            timeout_seconds,
            ..
        } = step
        else {
            return Err(HostError::failed("health", "not a health check step"));
        };
        self.events.step(&self.label, "health");
        let remote = self.lower(step);
        let limit = Duration::from_secs(timeout_seconds + 5);
        let mut last = String::new();
        for attempt in 1..=*attempts {
            let session = self.session();
            let outcome = self
                .bounded("health", self.budget.work_end(), true, async {
                    match tokio::time::timeout(limit, session.run(&remote.script)).await {
                        Ok(result) => result,
                        Err(_) => Ok(Output {
                            status: None,
                            signal: Some(format!("timed out after {timeout_seconds}s")),
                            ..Output::default()
                        }),
                    }
                })
                .await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    if error.abandoned() {
                        self.stop_abandoned().await;
                    }
                    return Err(error);
                }
            };
            if outcome.success() {
                self.completed(step);
                return Ok(());
            }
            last = failure_of(step, &outcome);
            tracing::info!(host = %self.label, step = "health", "attempt {attempt} of {attempts} failed: {last}");
            if attempt < *attempts {
                self.bounded("health", self.budget.work_end(), true, async {
                    tokio::time::sleep(interval).await;
                    Ok(())
                })
                .await?;
            }
        }
        Err(HostError::failed(
            "health",
            format!("failed {attempts} of {attempts} attempts; last: {last}"),
        ))
    }
}
