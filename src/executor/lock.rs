//! Taking and releasing the service lock for a host run (the lock script lives in
//! `remote::lock`): reading the host's state under the lock, and telling "held by another run"
//! from "cannot be taken".

use std::time::{Duration, Instant};

use super::{HostError, HostRun};
use crate::remote::lock;
use crate::remote::scan::{RecordedManifest, split_recorded_manifest};
use crate::remote::state::{self, Facts, LockHolder};
use crate::remote::steps::Lowering;
use crate::ssh::{Held, Session};

impl HostRun<'_> {
    /// Takes the service lock and reads the service's state under it, in one remote command;
    /// the lock is held until `unlock` or until the session ends. With `live_manifest_cap` (a
    /// push), the same command also reads the live release's recorded manifest (up to that
    /// many bytes; `None` when it was larger or the section did not read).
    pub async fn lock(
        &self,
        operator: &str,
        now: u64,
        live_manifest_cap: Option<u64>,
    ) -> Result<(Held, Facts, Option<RecordedManifest>), HostError> {
        self.events.step(&self.label, "lock");
        if let Ok(mut stored) = self.operator.lock() {
            *stored = operator.to_string();
        }
        let session = self.session();
        let (held, holder) = take_lock(
            &session,
            &self.lowering,
            operator,
            now,
            live_manifest_cap,
            self.budget.work_end(),
            &self.host,
            &self.label,
        )
        .await?;
        let Some(mut held) = held else {
            return Err(holder.map_or_else(
                || HostError::failed("lock", "the lock was not taken"),
                |holder| HostError::LockHeld {
                    holder: holder.describe(),
                    host: self.host.clone(),
                    run_id: holder.run_id,
                },
            ));
        };
        // Taken out of `held`, which stays across the barrier: no per-host buffer there.
        let text = std::mem::take(&mut held.text);
        let (facts, live) = match live_manifest_cap {
            Some(cap) => split_recorded_manifest(&text, cap),
            None => (text.as_str(), None),
        };
        match state::parse(facts) {
            Ok(facts) => Ok((held, facts, live)),
            Err(error) => {
                self.unlock(held).await;
                Err(HostError::failed("read state", error))
            }
        }
    }

    /// Releases a lock (closing the holder's stdin; it stops the run's leftover steps and
    /// removes the lock), waiting for it within the budget; a failure is logged.
    pub async fn unlock(&self, held: Held) {
        let until = self
            .budget
            .end()
            .max(Instant::now() + Duration::from_secs(2));
        match tokio::time::timeout_at(until.into(), held.release()).await {
            Ok(Ok(output)) if output.success() => {}
            Ok(Ok(output)) => {
                tracing::warn!(host = %self.label, "unlock: {}", output.failure_text())
            }
            Ok(Err(error)) => tracing::warn!(host = %self.label, "unlock: {error}"),
            Err(_) => {
                tracing::warn!(host = %self.label, "unlock: timed out (the lock ends with the session)")
            }
        }
    }
}

/// Runs the lock script on `session`: `(Some(held), None)` when the lock is ours, `(None,
/// Some(holder))` when another run (or this run, on another connection) holds it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn take_lock(
    session: &Session,
    lowering: &Lowering<'_>,
    operator: &str,
    now: u64,
    live_manifest_cap: Option<u64>,
    until: Instant,
    host: &str,
    label: &str,
) -> Result<(Option<Held>, Option<LockHolder>), HostError> {
    let script = lock::lock_script(
        lowering.base_dir,
        operator,
        lowering.run_id,
        now,
        live_manifest_cap,
    );
    let held =
        match tokio::time::timeout_at(until.into(), session.hold(&script, lock::LOCK_FACTS_END))
            .await
        {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                return Err(HostError::Connection {
                    step: "lock".to_string(),
                    message: error.to_string(),
                });
            }
            Err(_) => {
                return Err(HostError::TimedOut {
                    step: "lock".to_string(),
                });
            }
        };
    if held.first_line == "LOCKED" && held.finished.is_none() {
        return Ok((Some(held), None));
    }
    if let Some(line) = held
        .first_line
        .strip_prefix(crate::remote::freeze::FROZEN)
        .and_then(|rest| rest.strip_prefix(' ').or(rest.is_empty().then_some("")))
    {
        let freeze = crate::remote::freeze::Freeze::parse(line);
        let _ = held.release().await;
        return Err(HostError::Frozen {
            freeze: freeze.describe(),
            host: host.to_string(),
        });
    }
    if let Some(holder) = held.first_line.strip_prefix("HELD ") {
        let holder = LockHolder::parse(holder, true);
        let _ = held.release().await;
        return Ok((None, Some(holder)));
    }
    let message = match held.first_line.strip_prefix("ERROR ") {
        Some(error) => error.to_string(),
        None => match held.release().await {
            Ok(output) => output.failure_text(),
            Err(error) => error.to_string(),
        },
    };
    tracing::debug!(host = %host, label = %label, "lock failed: {message}");
    Err(HostError::failed("lock", message))
}
