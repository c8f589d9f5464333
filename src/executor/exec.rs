//! Running a command whose failure is a result, not an error (`deploy exec`, `deploy run`), and
//! appending an annotated history record (exec, run, lock, unlock of a freeze).

use std::time::{Duration, Instant};

use super::{HostError, HostRun};
use crate::ssh::Output;

impl HostRun<'_> {
    /// Runs `script` within the host's budget and Ctrl-C; any exit status is returned.
    pub async fn run_unchecked(&self, step: &str, script: &str) -> Result<Output, HostError> {
        self.events.step(&self.label, step);
        let session = self.session();
        self.bounded(step, self.budget.work_end(), true, session.run(script))
            .await
    }

    /// Whole seconds left for work on this host (at least 1): the host stops an exec command
    /// itself after this long.
    pub fn seconds_left(&self) -> u64 {
        self.budget
            .work_end()
            .saturating_duration_since(Instant::now())
            .as_secs()
            .saturating_sub(1)
            .max(1)
    }

    /// Runs a history-appending `script` (`Lowering::append_history_text`, possibly for several
    /// services); a record that could not be written is a warning and counts against the exit
    /// code.
    pub async fn record_script(&self, script: &str) {
        let until = self
            .budget
            .end()
            .max(Instant::now() + Duration::from_secs(2));
        let session = self.session();
        let problem = match tokio::time::timeout_at(until.into(), session.run(script)).await {
            Ok(Ok(output)) => {
                self.notice_lost_records(&output);
                if output.success() {
                    return;
                }
                output.failure_text()
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::warn!(host = %self.label, "history record not written: {problem}");
        self.history_lost
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl HostRun<'_> {
    /// Runs `script` with `content` on its stdin (a secret: it never appears in a command line
    /// or a message), within the host's budget and Ctrl-C; any exit status is returned.
    pub async fn run_with_content(
        &self,
        step: &str,
        script: &str,
        content: &[u8],
    ) -> Result<Output, HostError> {
        self.events.step(&self.label, step);
        let session = self.session();
        let (output, _) = self
            .bounded(
                step,
                self.budget.work_end(),
                true,
                session.run_with_input(script, content, |_| {}),
            )
            .await?;
        Ok(output)
    }
}
