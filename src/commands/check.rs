//! `deploy check`: per host, connect and authenticate (host key verified), then verify the
//! remote prerequisites (SPEC §3) and that each service's `base_dir` is, or can be made,
//! writable, with `remote::probe`'s program. Changes nothing on the hosts.

use std::time::Instant;

use crate::app::{Context, InputError, for_each, unix_now};
use crate::executor::elapsed_ms;
use crate::remote::probe::{parse_probe, probe_script};
use crate::remote::steps::Lowering;
use crate::report::{CheckView, Detail, HostResult, Outcome, Reporter, RunResult};

pub async fn run(context: &Context) -> Result<RunResult, InputError> {
    let (events, reporter) = Reporter::start(context.progress, context.selected.len());
    let now = unix_now();
    let hosts = for_each(context.selected.clone(), context.concurrency, |host| {
        let events = events.clone();
        async move {
            let started = Instant::now();
            let name = &context.inventory.hosts[host].name;
            // -v: where each effective connection value came from.
            crate::ssh::log_origins(&context.endpoint(host));
            let services_here: Vec<&crate::inventory::Service> = context
                .inventory
                .services
                .iter()
                .filter(|service| service.hosts.contains(&host))
                .collect();
            let base_dirs: Vec<(String, String)> = services_here
                .iter()
                .map(|service| (service.name.clone(), service.base_dir.clone()))
                .collect();
            let host_fetch = services_here.iter().any(|service| {
                service.fetch == crate::inventory::Fetch::Host
                    && matches!(
                        service.artifact,
                        Some(crate::inventory::ArtifactSource::Url(_))
                    )
            });
            let delta = services_here
                .iter()
                .any(|service| service.delta != crate::inventory::Delta::Off);
            let mut result = HostResult::new(None, name, Outcome::Ok);
            let probe = async {
                // The probe is its own script: no service's lowering values are needed.
                let lowering = Lowering {
                    base_dir: ".",
                    run_id: &context.run_id,
                    shared_paths: &[],
                    shared_files: &[],
                    now,
                    step_number: 0,
                };
                let run =
                    super::connect_host(context, host, name.clone(), lowering, &events).await?;
                events.step(name, "check prerequisites");
                let output = run
                    .run("check", &probe_script(&base_dirs, host_fetch, delta))
                    .await;
                run.close().await;
                let output = output?;
                parse_probe(&output.stdout_text())
                    .map_err(|error| crate::executor::HostError::failed("check", error))
            };
            match probe.await {
                Ok(checks) => {
                    let failed: Vec<String> = checks
                        .iter()
                        .filter(|check| !check.ok && !check.optional)
                        .map(|check| format!("{}: {}", check.name, check.detail))
                        .collect();
                    let missing: Vec<String> = checks
                        .iter()
                        .filter(|check| check.optional)
                        .map(|check| format!("optional {} missing: {}", check.name, check.detail))
                        .collect();
                    if !missing.is_empty() {
                        result.notes = Some(missing);
                    }
                    if failed.is_empty() {
                        events.done(name, "ok");
                    } else {
                        result.outcome = Outcome::Failed;
                        result.error = Some(failed.join("; "));
                        events.done(name, &format!("failed: {}", failed.join("; ")));
                    }
                    let checks = checks
                        .into_iter()
                        .map(|check| CheckView {
                            name: check.name,
                            ok: check.ok,
                            optional: check.optional,
                            detail: check.detail,
                        })
                        .collect();
                    result.detail = Some(Detail::Checks { checks });
                }
                Err(error) => {
                    result.outcome = Outcome::Failed;
                    result.error = Some(error.to_string());
                    events.done(name, &format!("failed: {error}"));
                }
            }
            result.duration_ms = elapsed_ms(started);
            result
        }
    })
    .await;
    drop(events);
    reporter.finish().await;
    Ok(RunResult::new(&context.run_id, "check", false, hosts))
}
