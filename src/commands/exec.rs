//! `deploy exec [--service S] [--sudo] -- COMMAND...`: an ad-hoc command on every selected host,
//! at most `concurrency` at once, each under `host_timeout` (the host stops the command when it
//! expires). With `--service` it runs in the service's live release with the `DEPLOY_*`
//! variables, and only on that service's hosts. Each host's outcome (stdout, stderr, exit code)
//! is a value; any failing host makes the exit code 1. Every host records an `exec` history
//! record with the (bounded) command: in the service's history with `--service`, otherwise in
//! the history of each service already deployed on the host. `deploy run` (named tasks) uses
//! the same machinery (`execute`).

use std::time::Instant;

use tracing::Instrument;

use crate::app::{Context, InputError, for_each, unix_now};
use crate::cli::ExecArgs;
use crate::executor::{HostError, elapsed_ms};
use crate::remote::exec::{ExecOutput, ExecTarget, exec_script, record_if_deployed};
use crate::remote::history::{AnnotatedRecord, HistoryRecord, RecordResult};
use crate::remote::steps::Lowering;
use crate::report::{Detail, HostResult, Outcome, Reporter, RunResult};

/// One command for one host: with a service (its live release, its variables) or without.
pub struct Job {
    pub service: Option<usize>,
    pub host: usize,
    pub command: String,
}

pub async fn run(context: &Context, arguments: &ExecArgs) -> Result<RunResult, InputError> {
    let command = arguments.command.join(" ");
    if command.trim().is_empty() {
        return Err(InputError("exec needs a command after `--`".to_string()));
    }
    let jobs = match &arguments.service {
        Some(name) => {
            let services = context.services(std::slice::from_ref(name))?;
            context
                .targets(&services)?
                .into_iter()
                .map(|target| Job {
                    service: Some(target.service),
                    host: target.host,
                    command: command.clone(),
                })
                .collect()
        }
        None => context
            .selected
            .iter()
            .map(|&host| Job {
                service: None,
                host,
                command: command.clone(),
            })
            .collect(),
    };
    Ok(execute(context, "exec", jobs, arguments.sudo).await)
}

/// Runs every job, at most `concurrency` at once; a host's failure is its result.
pub async fn execute(context: &Context, action: &str, jobs: Vec<Job>, sudo: bool) -> RunResult {
    let services: Vec<Option<usize>> = {
        let mut services: Vec<Option<usize>> = jobs.iter().map(|job| job.service).collect();
        services.sort_unstable();
        services.dedup();
        services
    };
    let with_service = services.len() > 1;
    let (events, reporter) = Reporter::start(context.progress, jobs.len());
    let now = unix_now();
    let hosts = for_each(jobs, context.concurrency, |job| {
        let events = events.clone();
        let host = &context.inventory.hosts[job.host];
        let service = job.service.map(|index| &context.inventory.services[index]);
        let label = match service {
            Some(service) if with_service => format!("{}/{}", host.name, service.name),
            _ => host.name.clone(),
        };
        let span = tracing::info_span!(
            "host",
            host = %host.name,
            service = %service.map(|service| service.name.as_str()).unwrap_or("")
        );
        async move {
            let started = Instant::now();
            let mut result = HostResult::new(
                service.map(|service| service.name.as_str()),
                &host.name,
                Outcome::Ok,
            );
            match one(context, action, &job, sudo, label.clone(), &events, now).await {
                Ok(output) => {
                    if !output.succeeded() {
                        result.outcome = Outcome::Failed;
                        result.error = output.problem.clone();
                    }
                    events.done(&label, output.problem.as_deref().unwrap_or("ok"));
                    result.detail = Some(Detail::Exec { output });
                }
                Err((error, lost)) => {
                    events.done(&label, &format!("failed: {error}"));
                    result.outcome = if matches!(error, HostError::Interrupted { .. }) {
                        Outcome::Skipped
                    } else {
                        Outcome::Failed
                    };
                    result.error = Some(error.to_string());
                    result.history_lost(lost);
                }
            }
            result.duration_ms = elapsed_ms(started);
            result
        }
        .instrument(span)
    })
    .await;
    drop(events);
    reporter.finish().await;
    RunResult::new(&context.run_id, action, false, hosts)
}

/// Connects, runs the command and records it; `Err` carries whether a record was lost.
async fn one(
    context: &Context,
    action: &str,
    job: &Job,
    sudo: bool,
    label: String,
    events: &crate::report::Events,
    now: u64,
) -> Result<ExecOutput, (HostError, bool)> {
    let host = &context.inventory.hosts[job.host];
    let service = job.service.map(|index| &context.inventory.services[index]);
    let lowering = Lowering {
        base_dir: service
            .map(|service| service.base_dir.as_str())
            .unwrap_or(""),
        run_id: &context.run_id,
        shared_paths: &[],
        shared_files: &[],
        now,
        step_number: 0,
    };
    let run = super::connect_host(context, job.host, label, lowering, events)
        .await
        .map_err(|error| (error, false))?;
    let variables = match service {
        Some(service) => service.variables(&host.name),
        None => host.env.clone(),
    };
    let timeout_seconds = run.seconds_left();
    let script = exec_script(
        &ExecTarget {
            service: service.map(|service| (service.name.as_str(), service.base_dir.as_str())),
            host: &host.name,
            run_id: &context.run_id,
            variables: &variables,
            sudo,
            timeout_seconds,
        },
        &job.command,
    );
    let output = match run.run_unchecked(action, &script).await {
        Ok(output) => ExecOutput::parse(
            output.status,
            output.signal.as_deref(),
            &output.stdout,
            &output.stderr,
            timeout_seconds,
        ),
        Err(error) => {
            run.close().await;
            return Err((error, false));
        }
    };
    let record = |service_name: &str| AnnotatedRecord {
        record: HistoryRecord {
            time: crate::app::rfc3339_now(),
            id: context.run_id.clone(),
            operator: context.operator.clone(),
            action: action.into(),
            service: service_name.to_string(),
            from: None,
            to: None,
            sha256: None,
            result: if output.succeeded() {
                RecordResult::Ok
            } else {
                RecordResult::Failed
            },
            error: output.problem.clone(),
            message: None,
        },
        command: Some(job.command.clone()),
    };
    let script = match service {
        Some(service) => run
            .lowering
            .append_history_text(&record(&service.name).to_line()),
        None => context
            .inventory
            .services
            .iter()
            .filter(|service| service.hosts.contains(&job.host))
            .map(|service| {
                let lowering = Lowering {
                    base_dir: &service.base_dir,
                    ..run.lowering.clone()
                };
                record_if_deployed(
                    &service.base_dir,
                    &lowering.append_history_text(&record(&service.name).to_line()),
                )
            })
            .collect(),
    };
    if !script.is_empty() {
        run.record_script(&script).await;
    }
    let lost = run.history_lost();
    run.close().await;
    if lost && output.succeeded() {
        return Err((
            HostError::failed(
                action,
                "the command ran but its history record was not written",
            ),
            true,
        ));
    }
    Ok(output)
}
