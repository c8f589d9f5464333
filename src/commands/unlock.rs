//! `deploy unlock --hosts SEL`: show a lock's holder and age, and remove a lock whose run is
//! gone (its holder process no longer runs on the host). A live holder's lock is only broken
//! with `--force`, which stops the holder first. Records an `unlock` history entry.

use crate::app::{Context, InputError, unix_now};
use crate::cli::UnlockArgs;
use crate::executor::{HostError, Payload};
use crate::plan::Step;
use crate::report::{Outcome, RunResult};

pub async fn run(context: &Context, arguments: &UnlockArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    super::each_target(context, &services, "unlock", false, |target, label, events| async move {
        let mut result = super::result_for(context, target, Outcome::Ok);
        let run = super::connect(context, target, label, &events, now).await?;
        let facts = run.facts().await;
        let Some(lock) = facts?.lock else {
            run.close().await;
            result.result = Outcome::Unchanged;
            result.notes = Some(vec!["no lock".to_string()]);
            return Ok(super::Worked { result, summary: "no lock".to_string() });
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
        if lock.alive && !arguments.force {
            run.close().await;
            return Err(HostError::failed(
                "unlock",
                format!(
                    "lock {holder}: its process (pid {}) still runs on the host; pass --force to stop it and break the lock",
                    lock.pid
                ),
            ));
        }
        let step = Step::Unlock {
            holder: lock.line.clone(),
            kill: lock.alive.then(|| lock.pid.clone()),
        };
        let outcome = run.execute(&step, &Payload::none()).await;
        if outcome.is_ok() {
            run.record(&super::history_record(context, "unlock", &result, None), None)
                .await;
        }
        run.close().await;
        outcome?;
        let summary = format!("removed lock {holder}");
        result.notes = Some(vec![summary.clone()]);
        Ok(super::Worked { result, summary })
    })
    .await
}
