//! `deploy status`: per (service, host) reachability, live and previous release, releases kept
//! and lock holder, read with the same facts script the planners use. Changes nothing. Its text
//! view is `report::render_status`.

use crate::app::{Context, InputError, unix_now};
use crate::cli::StatusArgs;
use crate::remote::scan;
use crate::report::{Detail, LockView, Outcome, RunResult, StatusView};

pub async fn run(context: &Context, arguments: &StatusArgs) -> Result<RunResult, InputError> {
    let services = context.services(&arguments.service)?;
    let now = unix_now();
    let mut result = super::each_target(
        context,
        &services,
        "status",
        false,
        |target, label, events| async move {
            let service = &context.inventory.services[target.service];
            let run = super::connect(context, target, label, &events, now).await?;
            let facts = run.facts().await;
            let drift = match (&facts, arguments.verify) {
                (Ok(facts), true) => match facts.live() {
                    Some(live) => Some(verify(&run, service, live).await),
                    None => None,
                },
                _ => None,
            };
            let went_live = match &facts {
                Ok(facts) => match facts.live() {
                    Some(live) => went_live(&run, service, live).await,
                    None => None,
                },
                Err(_) => None,
            };
            run.close().await;
            let (facts, drift) = (facts?, drift.transpose()?);
            let mut result = super::result_for(context, target, Outcome::Ok);
            if let Some(drift) = &drift
                && !drift.is_empty()
            {
                result.error = Some(format!(
                    "drift in {}: {}",
                    facts.live().map(ToString::to_string).unwrap_or_default(),
                    crate::report::render_diff(drift, 0)[0]
                ));
            }
            result.detail = Some(Detail::Status {
                drift,
                view: StatusView {
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
                        since: lock.since_text(),
                        alive: lock.alive,
                    }),
                    freeze: facts.freeze.clone().map(Box::new),
                    went_live,
                },
            });
            let summary = result.error.clone().unwrap_or_else(|| "ok".to_string());
            Ok(super::Worked { result, summary })
        },
    )
    .await?;
    // A host that could not be read is reported unreachable.
    for host in &mut result.hosts {
        if host.status().is_none() {
            host.detail = Some(Detail::Status {
                view: StatusView {
                    reachable: false,
                    live: None,
                    previous: None,
                    releases: Vec::new(),
                    lock: None,
                    freeze: None,
                    went_live: None,
                },
                drift: None,
            });
        }
    }
    result.rollup = Some(crate::report::rollup::rollup(&result.hosts));
    Ok(result)
}

/// How many of the newest history records are searched for the one that made the live release
/// live.
const WENT_LIVE_SEARCH: usize = 500;

/// When and by whom `live` went live: the newest successful push or rollback to it in the
/// host's history (`None` when the history does not say, or cannot be read: status still
/// shows the rest).
async fn went_live(
    run: &crate::executor::HostRun<'_>,
    service: &crate::inventory::Service,
    live: &crate::inventory::Version,
) -> Option<Box<crate::report::WentLive>> {
    use crate::remote::history::{Action, RecordResult, history_command, parse_history};
    let output = run
        .run(
            "history",
            &history_command(&service.base_dir, Some(WENT_LIVE_SEARCH)),
        )
        .await
        .ok()?;
    let (records, _) = parse_history(&output.stdout_text());
    records
        .into_iter()
        .find(|record| {
            matches!(record.action, Action::Push | Action::Rollback)
                && record.result == RecordResult::Ok
                && record.to.as_deref() == Some(live.as_str())
        })
        .map(|record| {
            Box::new(crate::report::WentLive {
                time: record.time,
                operator: record.operator,
                action: record.action.to_string(),
            })
        })
}

/// Re-hashes the live release on the host (one command) and compares it with the manifest
/// recorded at push time; shared paths (links on the host) are left out of both sides.
async fn verify(
    run: &crate::executor::HostRun<'_>,
    service: &crate::inventory::Service,
    live: &crate::inventory::Version,
) -> Result<crate::artifact::Diff, crate::executor::HostError> {
    use crate::executor::HostError;
    run.events.step(&run.label, "verify");
    let recorded = run.recorded_manifest("verify", live).await?;
    let scanned = run
        .run("verify", &scan::scan_command(&service.base_dir, live))
        .await?;
    let scanned =
        scan::parse_scan(&scanned.stdout).map_err(|error| HostError::failed("verify", error))?;
    let shared = &service.shared_paths;
    Ok(recorded
        .comparable()
        .without_paths(shared)
        .diff(&scanned.comparable().without_paths(shared)))
}
