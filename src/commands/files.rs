//! `[services.NAME.files]` in a push: each file's content is read on the controller before any
//! host is contacted (a missing source or unset variable: exit 2), compared by sha256 with the
//! file the host holds in `shared/`, and sent (on stdin) only when it differs, before the
//! release is staged (its link into the release needs it). A dry run says which files would
//! change. The content itself is never printed, logged, diffed or recorded: only its path and
//! sha256 appear anywhere.

use std::fmt;

use crate::app::{Context, InputError};
use crate::executor::{HostError, HostRun};
use crate::manifest::Sha256;
use crate::remote::files::{digests_script, parse_digests, receive_script};

/// One file's content, ready to send.
pub struct LoadedFile {
    pub path: String,
    pub mode: u32,
    pub sha256: Sha256,
    /// A secret: never shown (see the `Debug` impl).
    content: Vec<u8>,
}

impl fmt::Debug for LoadedFile {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("LoadedFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("sha256", &self.sha256)
            .field("content", &"<redacted>")
            .finish()
    }
}

/// Reads the content of `service`'s files.
pub fn load(context: &Context, service: usize) -> Result<Vec<LoadedFile>, InputError> {
    let service = &context.inventory.services[service];
    service
        .files
        .iter()
        .map(|file| {
            let content = file.source.read().map_err(|problem| {
                InputError(format!(
                    "{}: services.{}.files.\"{}\": {problem}",
                    context.inventory.file.display(),
                    service.name,
                    file.path
                ))
            })?;
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&content);
            let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            let sha256 = Sha256::parse(&hex).map_err(InputError)?;
            Ok(LoadedFile {
                path: file.path.clone(),
                mode: file.mode,
                sha256,
                content,
            })
        })
        .collect()
}

/// Which of `files` differ from what the host holds (absent counts as different).
async fn changed<'f>(
    run: &HostRun<'_>,
    files: &'f [LoadedFile],
) -> Result<Vec<&'f LoadedFile>, HostError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let paths: Vec<String> = files.iter().map(|file| file.path.clone()).collect();
    let output = run
        .run("files", &digests_script(run.lowering.base_dir, &paths))
        .await?;
    let digests = parse_digests(&output.stdout_text(), files.len())
        .map_err(|error| HostError::failed("files", error))?;
    Ok(files
        .iter()
        .zip(digests)
        .filter(|(file, digest)| digest.as_ref() != Some(&file.sha256))
        .map(|(file, _)| file)
        .collect())
}

/// Sends the files that differ; returns one line per file sent.
pub async fn upload_changed(
    run: &HostRun<'_>,
    files: &[LoadedFile],
) -> Result<Vec<String>, HostError> {
    let mut sent = Vec::new();
    for file in changed(run, files).await? {
        let script = receive_script(run.lowering.base_dir, &file.path, file.mode, &file.sha256);
        let output = run
            .run_with_content("upload file", &script, &file.content)
            .await?;
        if !output.success() {
            return Err(HostError::failed(
                "upload file",
                format!("{}: {}", file.path, output.failure_text()),
            ));
        }
        sent.push(describe(file, "uploaded"));
    }
    Ok(sent)
}

/// A dry run's notes: which files would be sent and which are unchanged.
pub async fn dry_run_notes(
    run: &HostRun<'_>,
    files: &[LoadedFile],
) -> Result<Vec<String>, HostError> {
    let changed = changed(run, files).await?;
    Ok(files
        .iter()
        .map(|file| {
            if changed.iter().any(|other| other.path == file.path) {
                describe(file, "would change")
            } else {
                describe(file, "unchanged")
            }
        })
        .collect())
}

fn describe(file: &LoadedFile, what: &str) -> String {
    format!(
        "file shared/{} {what} (sha256 {}, mode {:o})",
        file.path, file.sha256, file.mode
    )
}
