//! `deploy unlock --hosts SEL`: show a lock's holder and age, and remove a lock whose run is
//! gone (its holder process no longer runs on the host). A live holder's lock is only broken
//! with `--force`, which stops the holder first. Records an `unlock` history entry.

use std::time::Instant;

use crate::app::{Context, InputError, for_each, rfc3339_now, unix_now};
use crate::cli::UnlockArgs;
use crate::executor::elapsed_ms;
use crate::plan::{HistoryRecord, Step};
use crate::report::{HostResult, Outcome, Reporter, RunResult};

pub async fn run(context: &Context, arguments: &UnlockArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let targets = context.targets(&services)?;
    let with_service = services.len() > 1;
    let (events, reporter) = Reporter::start(context.progress, targets.len());
    let now = unix_now();
    let hosts = for_each(targets, context.concurrency, |target| {
        let events = events.clone();
        async move {
            let started = Instant::now();
            let service = &context.inventory.services[target.service];
            let label = context.label(target, with_service);
            let mut result = HostResult::new(
                Some(&service.name),
                &context.inventory.hosts[target.host].name,
                Outcome::Ok,
            );
            let work = async {
                let run = super::connect(context, target, label.clone(), &events, now).await?;
                let facts = run.facts().await?;
                let Some(lock) = facts.lock else {
                    run.close().await;
                    return Ok((Outcome::Unchanged, "no lock".to_string()));
                };
                let age = now.saturating_sub(lock.since);
                let holder = format!(
                    "{} (age {})",
                    lock.describe(),
                    humantime::format_duration(std::time::Duration::from_secs(age))
                );
                if lock.alive && !arguments.force {
                    run.close().await;
                    return Err(crate::executor::HostError::failed(
                        "unlock",
                        format!(
                            "lock {holder}: its process (pid {}) still runs on the host; pass --force to stop it and break the lock",
                            lock.pid
                        ),
                    ));
                }
                let step = Step::Unlock {
                    holder: format!("{} {} {} {}", lock.pid, lock.operator, lock.run_id, lock.since),
                    kill: lock.alive.then(|| lock.pid.clone()),
                };
                let outcome = run.execute(&step, &crate::executor::Payload::none()).await;
                if outcome.is_ok() {
                    run.record(&HistoryRecord {
                        time: rfc3339_now(),
                        id: context.run_id.clone(),
                        operator: context.operator.clone(),
                        action: "unlock".to_string(),
                        service: service.name.clone(),
                        from: None,
                        to: None,
                        sha256: None,
                        result: "ok".to_string(),
                        error: None,
                    })
                    .await;
                }
                run.close().await;
                outcome.map(|_| (Outcome::Ok, format!("removed lock {holder}")))
            };
            match work.await {
                Ok((outcome, message)) => {
                    result.result = outcome;
                    events.done(&label, &message);
                    result.notes = Some(vec![message]);
                }
                Err(error) => {
                    result.result = Outcome::Failed;
                    result.error = Some(error.to_string());
                    events.done(&label, &format!("failed: {error}"));
                }
            }
            result.duration_ms = elapsed_ms(started);
            result
        }
    })
    .await;
    drop(events);
    reporter.finish().await;
    Ok(RunResult::new(&context.run_id, "unlock", false, hosts))
}
