//! A delta push on one host: the member stream a `Delta` or `Repair` step sends (shared by the
//! hosts with the same base), and the verification of the staged tree (`Verify`): every file
//! of the tree is hashed on the host, except hard-linked reused files the base's identity
//! record vouches for (`remote::delta::trusted_reuse`), and the listing compared with the
//! artifact's manifest; what differs (a reused file edited on the host, a link that could not
//! be made) is sent again and the tree verified again.
//! Only a tree equal to the manifest goes on to `Finalize`, which names it a release.

use std::sync::Arc;

use super::{HostError, HostRun, Payload, off_task};
use crate::artifact::{Manifest, MemberStream};
use crate::plan::{ReuseMode, Step};
use crate::remote::delta as remote_delta;
use crate::ssh::Output;

/// How many times what differs is sent again before the host fails.
const REPAIR_ROUNDS: usize = 2;

/// The member stream of a `Delta` or `Repair` step (an error for any other step), from the
/// run's shared streams: a delta stream is built once for every host with the same base, and
/// both come from the tar the check kept when there is one.
pub(super) async fn stream_for(step: &Step, payload: &Payload<'_>) -> Result<MemberStream, String> {
    let streams = payload
        .streams
        .ok_or_else(|| "no member streams for this run".to_string())?;
    match step {
        Step::Delta {
            sha256,
            reused,
            compress,
            ..
        } => streams
            .delta(
                payload.artifact,
                sha256,
                reused.clone(),
                std::sync::Arc::new(payload.manifest.to_string()),
                *compress,
                payload.strip_components,
            )
            .await
            .map_err(|error| format!("building the delta stream: {error}")),
        Step::Repair {
            sha256,
            paths,
            compress,
            ..
        } => Ok(streams.only(
            payload.artifact,
            sha256,
            paths.clone(),
            *compress,
            payload.strip_components,
        )),
        _ => Err("no members to send".to_string()),
    }
}

/// What a progress bar counts up to for a member stream: what the stream holds before
/// compression (the files sent, the reuse list and the manifest; the wire bytes are fewer when
/// compressed).
pub(super) fn progress_total(step: &Step, payload: &Payload<'_>) -> u64 {
    match step {
        Step::Delta {
            sent_bytes, reused, ..
        } => {
            let list: u64 = reused.iter().map(|path| path.len() as u64 + 1).sum();
            sent_bytes + list + payload.manifest.len() as u64
        }
        _ => 0,
    }
}

impl HostRun<'_> {
    /// Runs `verify` (a `Verify` step) until the staged tree equals `expected` (the artifact's
    /// manifest), sending what differs again (`Repair`) up to `REPAIR_ROUNDS` times. The host
    /// hashes every file except the reused ones the base's identity record vouches for
    /// (`delta::trusted_reuse`, from the output of the `delta` step); a file sent again is
    /// hashed from then on. Returns how many files were sent again.
    pub async fn verify_staged(
        &self,
        verify: &Step,
        delta: &Step,
        delta_output: Option<Output>,
        expected: &Arc<Manifest>,
        payload: &Payload<'_>,
    ) -> Result<usize, HostError> {
        let (
            Step::Verify { version },
            Step::Delta {
                sha256,
                compress,
                reused,
                reuse,
                ..
            },
        ) = (verify, delta)
        else {
            return Err(HostError::failed("verify", "no delta to verify"));
        };
        // Parsing and comparing listings of thousands of files runs off the hosts' task.
        let stdout = delta_output.map(|output| output.stdout);
        let reused_paths = Arc::clone(reused);
        let hardlink = matches!(reuse, ReuseMode::Hardlink);
        let (mut trusted, mut base) = off_task("delta", move || {
            let remote_delta::DeltaOutput {
                record,
                relisted,
                mut base,
            } = match stdout {
                Some(stdout) => remote_delta::parse_delta_output(&stdout)?,
                None => Default::default(),
            };
            // A copy is another file, which a failed `cp` may have left short: copies are
            // hashed.
            let trusted = if hardlink {
                remote_delta::trusted_reuse(&reused_paths, &record, relisted.as_ref(), &base)
            } else {
                Default::default()
            };
            // Memory: only what the verification still needs, while the other hosts verify
            // too (the record and the relisting are dropped here).
            base.entries.retain(|path, _| trusted.contains(path));
            Ok::<_, String>((trusted, base))
        })
        .await?
        .map_err(|error| HostError::failed("delta", error))?;
        tracing::info!(
            "{}: {} of {} reused files vouched for by the identity record of the base",
            self.label,
            trusted.len(),
            reused.len()
        );
        let mut repaired = 0;
        for round in 0..=REPAIR_ROUNDS {
            let paths = remote_delta::paths_to_hash(expected, &trusted);
            let output = self
                .execute(
                    verify,
                    &Payload {
                        paths: &paths,
                        ..*payload
                    },
                )
                .await?;
            let stdout = output.stdout;
            let manifest = Arc::clone(expected);
            let (outcome, kept_trusted, kept_base) = off_task("verify", move || {
                let outcome = remote_delta::parse_verify(&stdout).and_then(|(listing, digests)| {
                    let staged = remote_delta::staged_manifest(
                        &listing, &digests, &trusted, &base, &manifest,
                    );
                    manifest.staged_differences(&staged)
                });
                (outcome, trusted, base)
            })
            .await?;
            (trusted, base) = (kept_trusted, kept_base);
            let differences = outcome.map_err(|error| HostError::failed("verify", error))?;
            if differences.is_empty() {
                return Ok(repaired);
            }
            if round == REPAIR_ROUNDS {
                return Err(HostError::failed(
                    "verify",
                    format!(
                        "the staged {version} still differs from the artifact after sending {} files again: {}",
                        differences.len(),
                        crate::text::shorten(&differences.join(", "), 512)
                    ),
                ));
            }
            self.events.note(
                &self.label,
                &format!(
                    "{} files of the staged {version} differ from the artifact (edited in the base release?): sending them",
                    differences.len()
                ),
            );
            repaired += differences.len();
            for path in &differences {
                trusted.remove(path);
            }
            let repair = Step::Repair {
                version: version.clone(),
                sha256: sha256.clone(),
                paths: std::sync::Arc::new(differences),
                compress: *compress,
            };
            self.execute(&repair, payload).await?;
        }
        Ok(repaired)
    }
}
