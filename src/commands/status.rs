//! `deploy status`: per (service, host) reachability, live and previous release, releases kept
//! and lock holder, read with the same facts script the planners use. Changes nothing. The text
//! view shows host-supplied fields (lock holder, release names, errors) escaped for the terminal.

use crate::app::{Context, InputError, unix_now};
use crate::cli::StatusArgs;
use crate::facts;
use crate::report::{LockView, Outcome, RunResult, StatusView, escape_for_terminal};

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
            result.drift = drift;
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
                    since: lock.since_text(),
                    alive: lock.alive,
                }),
            });
            let summary = result.error.clone().unwrap_or_else(|| "ok".to_string());
            Ok(super::Worked { result, summary })
        },
    )
    .await?;
    // A host that could not be read is reported unreachable.
    for host in &mut result.hosts {
        if host.status.is_none() {
            host.status = Some(StatusView {
                reachable: false,
                live: None,
                previous: None,
                releases: Vec::new(),
                lock: None,
            });
        }
    }
    Ok(result)
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
    let recorded = run
        .run("verify", &facts::manifest_command(&service.base_dir, live))
        .await?;
    let recorded =
        crate::artifact::Manifest::from_text(&recorded.stdout_text()).map_err(|error| {
            HostError::failed("verify", format!("recorded manifest of {live}: {error}"))
        })?;
    let scanned = run
        .run("verify", &facts::scan_command(&service.base_dir, live))
        .await?;
    let scanned =
        facts::parse_scan(&scanned.stdout).map_err(|error| HostError::failed("verify", error))?;
    let shared = &service.shared_paths;
    Ok(recorded
        .comparable()
        .without_paths(shared)
        .diff(&scanned.comparable().without_paths(shared)))
}

/// The text view of `status`: one row per (service, host) (`report::table` escapes every cell).
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
            text.push_str(&format!("{}: {}\n", host.host, escape_for_terminal(error)));
        }
        if let Some(drift) = &host.drift {
            let lines = crate::report::render_diff(drift, 20);
            if drift.is_empty() {
                text.push_str(&format!("{}: verified, no drift\n", host.host));
            } else {
                for line in &lines[1..] {
                    text.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostResult;

    #[test]
    fn status_text_escapes_host_supplied_fields() {
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Ok);
        host.status = Some(StatusView {
            reachable: true,
            live: Some("v2\u{1b}[1A".to_string()),
            previous: Some("v1\r".to_string()),
            releases: vec!["v1".to_string(), "v2".to_string()],
            lock: Some(LockView {
                operator: "\u{1b}]0;pwned\u{7}mallory".to_string(),
                run_id: "run\u{9b}1".to_string(),
                since: "an unknown time".to_string(),
                alive: false,
            }),
        });
        host.error = Some("drift in v2: \u{1b}[2J\nsecond line".to_string());
        let result = RunResult::new("run-1", "status", false, vec![host]);
        insta::assert_snapshot!(render(&result), @r"
        HOST  SERVICE  REACHABLE  LIVE       PREVIOUS  RELEASES  LOCK
        web1  app      yes        v2\x1b[1A  v1\r      2         \x1b]0;pwned\x07mallory (run run\u{9b}1, since an unknown time, stale)
        web1: drift in v2: \x1b[2J
        second line
        ");
    }
}
