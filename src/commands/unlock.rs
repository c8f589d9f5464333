//! `deploy unlock --hosts SEL`: show a lock's holder and age, and remove a lock whose run is
//! gone (its holder process no longer runs on the host). A live holder's lock is only broken
//! with `--force`, which stops the holder first. Lifts a deploy freeze (`deploy lock`) first.
//! Records an `unlock` history entry.

use crate::app::{Context, InputError, unix_now};
use crate::cli::UnlockArgs;
use crate::executor::{HostError, Payload};
use crate::plan::Step;
use crate::report::{Outcome, RunResult};

pub async fn run(context: &Context, arguments: &UnlockArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    let hosts = context.targets(&services)?.len();
    super::webhook::started(context, "unlock", &services, None, hosts);
    super::each_target(context, &services, "unlock", false, |target, label, events| async move {
        let mut result = super::result_for(context, target, Outcome::Ok);
        let run = super::connect(context, target, label, &events, now).await?;
        let facts = match run.facts().await {
            Ok(facts) => facts,
            Err(error) => {
                run.close().await;
                return Err(error);
            }
        };
        // A deploy freeze (`deploy lock`) is lifted first; a dead run's lock after it.
        let mut notes = Vec::new();
        if facts.freeze.is_some() {
            match super::lock::lift(context, &run, &result).await {
                Ok(note) => notes.push(note),
                Err(error) => {
                    run.close().await;
                    return Err(error);
                }
            }
            result.history_lost(run.history_lost());
        }
        let Some(lock) = facts.lock else {
            run.close().await;
            if notes.is_empty() {
                result.outcome = Outcome::Unchanged;
                notes.push("no lock".to_string());
            }
            let summary = notes.join("; ");
            result.notes = Some(notes);
            return Ok(super::Worked { result, summary });
        };
        let holder = match lock.since {
            Some(since) => format!(
                "{} (age {})",
                lock.describe(),
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(since)
                ))
            ),
            None => lock.describe(),
        };
        // A holder is only ever signalled when its line names it beyond doubt (PID above 1,
        // boot id and start time still matching); otherwise `--force` breaks the lock alone.
        let may_stop = lock.alive && lock.verifiable();
        if lock.alive && !arguments.force {
            run.close().await;
            let hint = if may_stop {
                "pass --force to stop it and break the lock"
            } else {
                "its line does not record the process start time (an older deploy wrote it), so it is never signalled: stop that run yourself, or pass --force to break the lock without stopping it"
            };
            return Err(HostError::failed(
                "unlock",
                format!(
                    "lock {holder}: its process (pid {}) still runs on the host; {hint}",
                    lock.pid
                ),
            ));
        }
        let step = Step::Unlock {
            holder: lock.line.clone(),
            kill: may_stop,
        };
        let outcome = run.execute(&step, &Payload::none()).await;
        if outcome.is_ok() {
            run.record(
                Some(&super::history_record(context, "unlock", &result, None)),
                None,
            )
            .await;
            result.history_lost(run.history_lost());
        }
        run.close().await;
        outcome?;
        notes.push(format!("removed lock {holder}"));
        let summary = notes.join("; ");
        result.notes = Some(notes);
        Ok(super::Worked { result, summary })
    })
    .await
}
