//! `deploy status`: per (service, host) reachability, live and previous release, releases kept
//! and lock holder, read with the same facts script the planners use. Changes nothing.

use std::time::Instant;

use crate::app::{Context, InputError, for_each, unix_now};
use crate::cli::StatusArgs;
use crate::executor::elapsed_ms;
use crate::report::{HostResult, LockView, Outcome, Reporter, RunResult, StatusView};

pub async fn run(context: &Context, arguments: &StatusArgs) -> Result<RunResult, InputError> {
    if arguments.verify {
        return Err(InputError(
            "status --verify is not available yet: drift detection has not been built".to_string(),
        ));
    }
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
            let host = &context.inventory.hosts[target.host];
            let label = context.label(target, with_service);
            let mut result = HostResult::new(Some(&service.name), &host.name, Outcome::Ok);
            let read = async {
                let run = super::connect(context, target, label.clone(), &events, now).await?;
                let facts = run.facts().await;
                run.close().await;
                facts
            };
            match read.await {
                Ok(facts) => {
                    result.status = Some(StatusView {
                        reachable: true,
                        live: facts.live().map(ToString::to_string),
                        previous: facts.previous().map(ToString::to_string),
                        releases: facts
                            .releases_newest_first()
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        lock: facts.lock.as_ref().map(|lock| LockView {
                            operator: lock.operator.clone(),
                            run_id: lock.run_id.clone(),
                            since: humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH + std::time::Duration::from_secs(lock.since),
                            )
                            .to_string(),
                            alive: lock.alive,
                        }),
                    });
                    events.done(&label, "ok");
                }
                Err(error) => {
                    result.result = Outcome::Failed;
                    result.error = Some(error.to_string());
                    result.status = Some(StatusView {
                        reachable: false,
                        live: None,
                        previous: None,
                        releases: Vec::new(),
                        lock: None,
                    });
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
    Ok(RunResult::new(&context.run_id, "status", false, hosts))
}

/// The text view of `status`: one row per (service, host).
pub fn render(result: &RunResult) -> String {
    let mut rows = vec![
        [
            "HOST",
            "SERVICE",
            "REACHABLE",
            "LIVE",
            "PREVIOUS",
            "RELEASES",
            "LOCK",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for host in &result.hosts {
        let Some(status) = &host.status else { continue };
        rows.push(vec![
            host.host.clone(),
            host.service.clone().unwrap_or_default(),
            if status.reachable { "yes" } else { "no" }.to_string(),
            status.live.clone().unwrap_or_else(|| "-".to_string()),
            status.previous.clone().unwrap_or_else(|| "-".to_string()),
            status.releases.len().to_string(),
            status
                .lock
                .as_ref()
                .map(|lock| {
                    format!(
                        "{} (run {}, since {}{})",
                        lock.operator,
                        lock.run_id,
                        lock.since,
                        if lock.alive { "" } else { ", stale" }
                    )
                })
                .unwrap_or_else(|| "-".to_string()),
        ]);
    }
    let mut text = crate::report::table(&rows);
    for host in &result.hosts {
        if let Some(error) = &host.error {
            text.push_str(&format!("{}: {error}\n", host.host));
        }
    }
    text
}
