//! What a push or a diff ships: the services selected, each one's version, and its artifact,
//! resolved from plain values (the inventory plus the `--service/--version/--artifact`
//! overrides), downloaded when it is a URL, and checked locally, once per file. Anything wrong
//! is an `InputError`: no host has been contacted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::app::{Context, InputError};
use crate::artifact::{self, Artifact};
use crate::inventory::{ArtifactSource, Fetch, Version};
use crate::report::Reporter;

/// What to ship: the services named (none: every service with a version and an artifact), and
/// the version and artifact that override a single service's.
pub struct Request<'a> {
    pub services: &'a [String],
    pub version: Option<&'a str>,
    pub artifact: Option<&'a str>,
    /// Keep the decompressed tar of a local artifact whose service pushes deltas (a push that
    /// is not `--full` nor a dry run): its delta streams are then built without a second inflate.
    pub keep_unpacked: bool,
}

/// What one service pushes.
pub struct Shipment {
    pub service: usize,
    pub version: Version,
    pub artifact: Arc<Artifact>,
    pub manifest: Arc<String>,
    /// `fetch = "host"`: every host downloads this URL itself (a secret: never printed).
    pub host_url: Option<String>,
    /// `[services.NAME.files]`, read before any host is contacted.
    pub files: Arc<Vec<super::files::LoadedFile>>,
    /// Delta streams built from the artifact, each once for every host that needs it.
    pub streams: Arc<crate::artifact::SharedStreams>,
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
    events.phase(crate::report::Phase::Downloading);
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

/// Resolves services, versions and artifacts, and checks every artifact locally (one read
/// each). Any problem is an `InputError`: no host has been contacted.
pub async fn prepare(
    context: &Context,
    request: &Request<'_>,
) -> Result<Vec<Shipment>, InputError> {
    let inventory = &context.inventory;
    let services: Vec<usize> = if request.services.is_empty() {
        let runnable: Vec<usize> = (0..inventory.services.len())
            .filter(|&index| {
                let service = &inventory.services[index];
                service.artifact.is_some() && service.version.is_some()
            })
            .collect();
        if runnable.is_empty() && (request.version.is_none() || request.artifact.is_none()) {
            return Err(InputError(format!(
                "{}: no service has both `version` and `artifact`; name one with --service and pass --version and --artifact",
                inventory.file.display()
            )));
        }
        if request.version.is_some() || request.artifact.is_some() {
            context.services(&[])?
        } else {
            runnable
        }
    } else {
        context.services(request.services)?
    };
    if (request.version.is_some() || request.artifact.is_some()) && services.len() != 1 {
        return Err(InputError(
            "--version and --artifact apply to one service: select it with --service".to_string(),
        ));
    }
    type Inspected = (Arc<Artifact>, Arc<String>, Option<Arc<artifact::Unpacked>>);
    let mut inspected: HashMap<(PathBuf, artifact::MemberPolicy), Inspected> = HashMap::new();
    let mut shipments = Vec::new();
    for service_index in services {
        let service = &inventory.services[service_index];
        let version = match request.version {
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
        let (path, host_url) = match request.artifact {
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
        let policy = artifact::MemberPolicy {
            allow_setid: service.allow_setid,
            strip_components: service.strip_components,
        };
        let key = (path.clone(), policy);
        let (artifact, manifest, unpacked) = match inspected.get(&key) {
            Some(found) => found.clone(),
            None => {
                let owned = path.clone();
                // A temporary file for the decompressed tar, when a delta may use it (a failure
                // to make one only costs the delta a second inflate).
                let copy = (request.keep_unpacked
                    && host_url.is_none()
                    && service.delta != crate::inventory::Delta::Off)
                    .then(artifact::unlinked_temporary)
                    .and_then(Result::ok);
                // On a terminal the overall line says what the seconds of reading are for.
                let (events, reporter) = Reporter::start(context.progress, 0);
                events.phase(crate::report::Phase::CheckingArtifact {
                    what: path
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                });
                let checked = tokio::task::spawn_blocking(move || {
                    artifact::inspect_keeping(&owned, &policy, copy)
                })
                .await;
                drop(events);
                reporter.finish().await;
                let (artifact, unpacked) = checked
                    .map_err(|error| InputError(format!("checking the artifact: {error}")))?
                    .map_err(|error| InputError(error.to_string()))?;
                if let Some(expected) = &service.sha256
                    && request.artifact.is_none()
                    && expected != &artifact.sha256
                {
                    return Err(InputError(format!(
                        "{}: sha256 mismatch: services.{}.sha256 is {expected}, the file has {}",
                        path.display(),
                        service.name,
                        artifact.sha256
                    )));
                }
                if service.strip_components.is_none()
                    && let Some(directory) = &artifact.single_top_directory
                {
                    return Err(InputError(
                        artifact::ArtifactError::LeadingDirectory {
                            path: path.clone(),
                            directory: directory.clone(),
                        }
                        .to_string(),
                    ));
                }
                let manifest = Arc::new(artifact.manifest.to_text());
                let found = (Arc::new(artifact), manifest, unpacked.map(Arc::new));
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
            files: Arc::new(super::files::load(context, service_index)?),
            streams: Arc::new(crate::artifact::SharedStreams::with_unpacked(unpacked)),
        });
    }
    Ok(shipments)
}
