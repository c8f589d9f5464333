//! `deploy push`: validate the artifact locally, stage it on every selected host under the
//! service lock, switch only when staging succeeded everywhere (or within `max_failures`),
//! apply `on_failure`, prune, record history, release locks.
//!
//! Owns the run's phases and the failure policy; the per-host decisions come from
//! `plan::plan_push` and every remote call goes through `executor::HostRun`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::app::{Context, InputError, Target, for_each, unix_now};
use crate::artifact::{self, Artifact};
use crate::cli::PushArgs;
use crate::commands::switching::{Locked, Switch, finish, switch_all};
use crate::executor::{HostError, Payload};
use crate::facts::LogAction;
use crate::inventory::{ArtifactSource, Fetch, Version};
use crate::plan::{
    HistoryRecord, PushDecision, PushPlan, Release, Step, SwitchSequence, plan_push,
};
use crate::report::{Detail, Events, HostResult, Outcome, Reporter, RunResult};

/// What one service pushes.
pub struct Shipment {
    pub service: usize,
    pub version: Version,
    pub artifact: Arc<Artifact>,
    manifest: Arc<String>,
    /// `fetch = "host"`: every host downloads this URL itself (a secret: never printed).
    host_url: Option<String>,
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// Downloads a URL artifact once into the local cache (a cache hit makes no request when the
/// sha256 is known), with progress. Failures name the URL without its secrets.
async fn download(
    context: &Context,
    url: &str,
    sha256: Option<&str>,
) -> Result<PathBuf, InputError> {
    let owned_url = url.to_string();
    let owned_sha256 = sha256.map(str::to_string);
    let (events, reporter) = Reporter::start(context.progress, 1);
    let label = "download".to_string();
    events.step(&label, &format!("fetch {}", crate::http::redact(url)));
    let progress_events = events.clone();
    let downloaded = tokio::task::spawn_blocking(move || {
        crate::fetch::fetch(
            &owned_url,
            owned_sha256.as_deref(),
            crate::http::configured_timeout(std::time::Duration::from_secs(30)),
            |received, length| {
                progress_events.downloaded(&label, received, length.unwrap_or(0).max(received))
            },
        )
    })
    .await;
    let result = downloaded
        .map_err(|error| InputError(format!("downloading the artifact: {error}")))?
        .map_err(|error| InputError(format!("artifact: {error}")));
    events.done("download", if result.is_ok() { "ok" } else { "failed" });
    drop(events);
    reporter.finish().await;
    result
}

pub async fn run(context: &Context, arguments: &PushArgs) -> Result<RunResult, InputError> {
    let shipments = prepare(context, arguments).await?;
    let services: Vec<usize> = shipments.iter().map(|shipment| shipment.service).collect();
    let shipment_of = |service: usize| {
        shipments
            .iter()
            .find(|shipment| shipment.service == service)
    };
    if arguments.dry_run {
        return super::each_target(
            context,
            &services,
            "push",
            true,
            |target, label, events| async move {
                let shipment = shipment_of(target.service)
                    .ok_or_else(|| HostError::failed("plan", "no artifact for this service"))?;
                plan_host(
                    context,
                    shipment,
                    target,
                    label,
                    events,
                    arguments.force,
                    arguments.diff,
                )
                .await
            },
        )
        .await;
    }
    let with_service = services.len() > 1;
    super::each_service(
        context,
        &services,
        "push",
        |service, service_targets, events, permits| async move {
            match shipment_of(service) {
                Some(shipment) => {
                    push_service(
                        context,
                        shipment,
                        service_targets,
                        with_service,
                        arguments.force,
                        &events,
                        &permits,
                    )
                    .await
                }
                None => Vec::new(),
            }
        },
    )
    .await
}

/// Resolves services, versions and artifacts, and checks every artifact locally (one read
/// each). Any problem is an `InputError`: no host has been contacted.
pub async fn prepare(context: &Context, arguments: &PushArgs) -> Result<Vec<Shipment>, InputError> {
    let inventory = &context.inventory;
    let services: Vec<usize> = if arguments.service.is_empty() {
        let runnable: Vec<usize> = (0..inventory.services.len())
            .filter(|&index| {
                let service = &inventory.services[index];
                service.artifact.is_some() && service.version.is_some()
            })
            .collect();
        if runnable.is_empty() && (arguments.version.is_none() || arguments.artifact.is_none()) {
            return Err(InputError(format!(
                "{}: no service has both `version` and `artifact`; name one with --service and pass --version and --artifact",
                inventory.file.display()
            )));
        }
        if arguments.version.is_some() || arguments.artifact.is_some() {
            context.services(&[])?
        } else {
            runnable
        }
    } else {
        context.services(&arguments.service)?
    };
    if (arguments.version.is_some() || arguments.artifact.is_some()) && services.len() != 1 {
        return Err(InputError(
            "--version and --artifact apply to one service: select it with --service".to_string(),
        ));
    }
    if arguments.diff && !arguments.dry_run {
        return Err(InputError("--diff goes with --dry-run".to_string()));
    }
    let mut inspected: HashMap<(PathBuf, bool), (Arc<Artifact>, Arc<String>)> = HashMap::new();
    let mut shipments = Vec::new();
    for service_index in services {
        let service = &inventory.services[service_index];
        let version = match &arguments.version {
            Some(text) => Version::parse(text)
                .map_err(|error| InputError(format!("--version {text:?}: {error}")))?,
            None => service.version.clone().ok_or_else(|| {
                InputError(format!(
                    "{}: services.{}.version is not set; pass --version",
                    inventory.file.display(),
                    service.name
                ))
            })?,
        };
        let (path, host_url) = match &arguments.artifact {
            Some(text) if is_url(text) => (download(context, text, None).await?, None),
            Some(text) => {
                let path = PathBuf::from(text);
                if !path.is_file() {
                    return Err(InputError(format!("--artifact: file not found: {text}")));
                }
                (path, None)
            }
            None => match &service.artifact {
                Some(ArtifactSource::Path(path)) => {
                    inventory.check_artifact_files(&[service_index])?;
                    (path.clone(), None)
                }
                Some(ArtifactSource::Url(url)) => {
                    let path = download(context, url, service.sha256.as_deref()).await?;
                    let host_url = (service.fetch == Fetch::Host).then(|| url.clone());
                    if let Some(url) = &host_url
                        && url
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
                    {
                        return Err(InputError(format!(
                            "{}:{}: services.{}.artifact: a URL fetched by hosts may not contain spaces, quotes or backslashes (percent-encode them)",
                            inventory.file.display(),
                            service.artifact_line,
                            service.name
                        )));
                    }
                    (path, host_url)
                }
                None => {
                    return Err(InputError(format!(
                        "{}: services.{}.artifact is not set; pass --artifact",
                        inventory.file.display(),
                        service.name
                    )));
                }
            },
        };
        let key = (path.clone(), service.allow_setid);
        let (artifact, manifest) = match inspected.get(&key) {
            Some(found) => found.clone(),
            None => {
                let owned = path.clone();
                let policy = artifact::MemberPolicy {
                    allow_setid: service.allow_setid,
                };
                let artifact =
                    tokio::task::spawn_blocking(move || artifact::inspect_with(&owned, &policy))
                        .await
                        .map_err(|error| InputError(format!("checking the artifact: {error}")))?
                        .map_err(|error| InputError(error.to_string()))?;
                if let Some(expected) = &service.sha256
                    && arguments.artifact.is_none()
                    && expected != &artifact.sha256
                {
                    return Err(InputError(format!(
                        "{}: sha256 mismatch: services.{}.sha256 is {expected}, the file has {}",
                        path.display(),
                        service.name,
                        artifact.sha256
                    )));
                }
                let manifest = Arc::new(artifact.manifest.to_text());
                let found = (Arc::new(artifact), manifest);
                inspected.insert(key, found.clone());
                found
            }
        };
        shipments.push(Shipment {
            service: service_index,
            version,
            artifact,
            manifest,
            host_url,
        });
    }
    Ok(shipments)
}

fn release_of(shipment: &Shipment) -> Release<'_> {
    Release {
        fetch_on_host: shipment.host_url.as_deref().map(crate::http::redact),
        version: &shipment.version,
        sha256: &shipment.artifact.sha256,
        size: shipment.artifact.size,
        unpacked_size: shipment.artifact.unpacked_size,
    }
}

/// A dry run on one host: connects, reads its real state and plans; changes nothing (no lock,
/// no directory, no history).
async fn plan_host(
    context: &Context,
    shipment: &Shipment,
    target: Target,
    label: String,
    events: Events,
    force: bool,
    diff: bool,
) -> Result<super::Worked, HostError> {
    let service = &context.inventory.services[target.service];
    let host = &context.inventory.hosts[target.host];
    let run = super::connect(context, target, label, &events, unix_now()).await?;
    let facts = run.facts().await;
    let difference = match (&facts, diff) {
        (Ok(facts), true) => {
            let from = match facts.live() {
                Some(live) => super::diff::recorded_manifest(&run, service, live).await,
                None => Ok(crate::artifact::Manifest {
                    entries: Vec::new(),
                }),
            };
            Some(from.map(|from| {
                from.comparable()
                    .diff(&shipment.artifact.manifest.comparable())
            }))
        }
        _ => None,
    };
    run.close().await;
    let (facts, difference) = (facts?, difference.transpose()?);

    let mut result = super::result_for(context, target, Outcome::Planned);
    result.to = Some(shipment.version.to_string());
    result.from = facts.live().map(ToString::to_string);
    result.detail = difference.map(|diff| Detail::Diff { diff });
    let mut notes = vec![format!(
        "live: {}",
        facts.live().map(Version::as_str).unwrap_or("(none)")
    )];
    notes.push(match &facts.lock {
        Some(lock) => format!(
            "lock: {}{}",
            lock.describe(),
            if lock.alive {
                ""
            } else {
                " (stale: its process is gone)"
            }
        ),
        None => "lock: free".to_string(),
    });
    if !facts.staging.is_empty() {
        notes.push(format!(
            "staging leftovers of earlier runs (this push removes them): {}",
            facts.staging.join(", ")
        ));
    }
    if let Some(free) = facts.free_bytes {
        notes.push(format!(
            "disk: {} free, {} needed to unpack",
            crate::text::format_bytes(free),
            crate::text::format_bytes(shipment.artifact.unpacked_size)
        ));
    }
    let mut steps: Vec<String> = Vec::new();
    match plan_push(&facts, &release_of(shipment), service.keep_releases, force) {
        PushDecision::Unchanged => {
            notes.push(format!(
                "unchanged: {} is live with the same sha256",
                shipment.version
            ));
            result.from = Some(shipment.version.to_string());
        }
        PushDecision::Refused(reason) => {
            result.outcome = Outcome::Failed;
            result.error = Some(reason.clone());
            notes.push(format!("refused: {reason}"));
        }
        PushDecision::Deploy(plan) => {
            result.bytes = plan.upload_bytes;
            if plan.upload_bytes == 0 && plan.stage.len() == 1 {
                notes.push(format!(
                    "no upload: {} is already staged with the same sha256",
                    plan.to
                ));
            }
            steps.extend(plan.stage.iter().map(Step::describe));
            let switch = Switch {
                from: plan.from.clone(),
                to: plan.to.clone(),
                action: LogAction::Push,
            };
            steps.extend(
                SwitchSequence::new(service, &host.name, &switch)
                    .steps()
                    .iter()
                    .map(Step::describe),
            );
            if !plan.prune.is_empty() {
                steps.push(
                    Step::Prune {
                        versions: plan.prune.clone(),
                    }
                    .describe(),
                );
            }
        }
    }
    let summary = format!("planned: {} steps", steps.len());
    result.notes = Some(notes);
    result.steps = Some(steps);
    Ok(super::Worked { result, summary })
}

/// Runs one service's push over its targets; returns a result per target.
async fn push_service<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    targets: Vec<Target>,
    with_service: bool,
    force: bool,
    events: &Events,
    permits: &Semaphore,
) -> Vec<(Target, HostResult)> {
    let total = targets.len();
    let now = unix_now();

    // Phase 1: every lock first (two runs never each hold part of the fleet), then stage.
    let (acquired, mut finished) =
        super::lock_all(context, targets, with_service, events, permits, now).await;
    let staged_or_failed = for_each(acquired, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        stage(context, shipment, host, force, events, permits).instrument(span)
    })
    .await;
    let mut staged: Vec<Locked> = Vec::new();
    for outcome in staged_or_failed {
        match outcome {
            Ok(host) => staged.push(host),
            Err(failure) => finished.push(failure),
        }
    }

    // Phase 2: switch, in batches, only if staging failures are within max_failures.
    let halted = switch_all(context, &mut staged, finished.len(), total, permits).await;

    // Phase 3: prune, record history, release locks, for every host that got this far.
    let halted = halted.as_deref();
    let cleaned = for_each(staged, context.concurrency, |host| {
        let span = super::host_span(context, host.target);
        finish(host, halted, |result| history(context, shipment, result)).instrument(span)
    })
    .await;
    finished.extend(cleaned);
    finished
}

/// Phase 1 for one locked host: plan from the state read under the lock, run the staging steps.
async fn stage<'a>(
    context: &'a Context,
    shipment: &'a Shipment,
    host: super::Acquired<'a>,
    force: bool,
    events: &Events,
    permits: &Semaphore,
) -> Result<Locked<'a>, (Target, HostResult)> {
    let _permit = permits.acquire().await;
    let super::Acquired {
        target,
        label,
        run,
        lock,
        facts,
        started,
    } = host;
    run.resume();
    let service = &context.inventory.services[target.service];
    let mut result = super::result_for(context, target, Outcome::Ok);
    result.to = Some(shipment.version.to_string());
    let outcome: Result<Option<PushPlan>, HostError> = async {
        result.from = facts.live().map(ToString::to_string);
        if context.is_interrupted() {
            return Err(HostError::Interrupted {
                step: "start".to_string(),
            });
        }
        match plan_push(&facts, &release_of(shipment), service.keep_releases, force) {
            PushDecision::Unchanged => Ok(None),
            PushDecision::Refused(reason) => Err(HostError::failed("plan", reason)),
            PushDecision::Deploy(plan) => {
                let payload = Payload {
                    artifact: &shipment.artifact.path,
                    artifact_size: shipment.artifact.size,
                    manifest: &shipment.manifest,
                    url: shipment.host_url.as_deref(),
                };
                for step in &plan.stage {
                    run.execute(step, &payload)
                        .await
                        .map_err(|error| disk_hint(error, facts.free_bytes, shipment))?;
                }
                Ok(Some(plan))
            }
        }
    }
    .await;
    match outcome {
        Ok(plan) => {
            result.bytes = run.uploaded();
            run.wait_for_others("staged; waiting for the other hosts");
            if plan.is_none() {
                result.outcome = Outcome::Unchanged;
            }
            let (switch, prune) = match plan {
                Some(plan) => (
                    Some(Switch {
                        from: plan.from,
                        to: plan.to,
                        action: LogAction::Push,
                    }),
                    plan.prune,
                ),
                None => (None, Vec::new()),
            };
            Ok(Locked {
                target,
                run,
                lock,
                result,
                started,
                switch,
                switched: false,
                prune,
                action: "push",
                sha256: Some(shipment.artifact.sha256.clone()),
                recorded: false,
            })
        }
        Err(error) => {
            run.discard_staging().await;
            result.steps = Some(run.executed());
            result.bytes = run.uploaded();
            let mut result = super::failed(result, &error, started, events, &label);
            run.record(Some(&history(context, shipment, &result)), None)
                .await;
            result.history_lost(run.history_lost());
            run.unlock(lock).await;
            run.close().await;
            Err((target, result))
        }
    }
}

/// Adds "free vs needed" to a failure that says the host's disk (or file size limit) is full.
fn disk_hint(error: HostError, free: Option<u64>, shipment: &Shipment) -> HostError {
    let HostError::Failed { step, message } = error else {
        return error;
    };
    let full = [
        "No space left on device",
        "File size limit exceeded",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|symptom| message.contains(symptom));
    if !full {
        return HostError::Failed { step, message };
    }
    let free = free
        .map(crate::text::format_bytes)
        .unwrap_or_else(|| "unknown".to_string());
    HostError::Failed {
        step,
        message: format!(
            "{message}\nhint: the host cannot hold the release: {free} free, {} needed to unpack it \
             (plus the artifact while it streams); free space under the base_dir or lower keep_releases",
            crate::text::format_bytes(shipment.artifact.unpacked_size)
        ),
    }
}

/// The history record for a host's push result.
fn history(context: &Context, shipment: &Shipment, result: &HostResult) -> HistoryRecord {
    let mut record = super::history_record(
        context,
        "push",
        result,
        Some(shipment.artifact.sha256.clone()),
    );
    record.to = Some(shipment.version.to_string());
    record
}
