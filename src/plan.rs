//! The plan: what will be done on one host for one service, as data.
//!
//! Owns the decisions that pick the steps of every remote change (`remote::step`) from a host's
//! `Facts`: pure functions, no I/O and no shell text. Dry-run prints these same steps; the real
//! run executes them, lowered to scripts by `remote::steps`. Nothing here talks to a host.

use crate::inventory::{Delta, Version};
use crate::manifest::{Manifest, Reuse, Sha256};
use crate::remote::history::HistoryRecord;
use crate::remote::state::{Facts, LogAction};
pub use crate::remote::step::{Audit, HookEnvironment, HookPhase, ReuseMode, Step};

/// Everything a switch runs on one host, in order: `before_switch` hooks, the switch,
/// `after_switch` hooks, the health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchSequence {
    pub before: Vec<Step>,
    pub switch: Step,
    pub after: Vec<Step>,
    pub health: Option<Step>,
}

impl SwitchSequence {
    pub fn new(service: &crate::inventory::Service, host: &str, switch: &Switch) -> SwitchSequence {
        let environment = HookEnvironment {
            service: service.name.clone(),
            host: host.to_string(),
            version: switch.to.clone(),
            previous: switch.from.clone(),
            variables: service.variables(host),
        };
        let hooks = |phase: HookPhase, commands: &[String]| -> Vec<Step> {
            commands
                .iter()
                .map(|command| Step::Hook {
                    phase,
                    command: command.clone(),
                    environment: environment.clone(),
                })
                .collect()
        };
        SwitchSequence {
            before: hooks(HookPhase::BeforeSwitch, &service.hooks.before_switch),
            switch: switch.step(),
            after: hooks(HookPhase::AfterSwitch, &service.hooks.after_switch),
            health: service.health_check.as_ref().map(|check| Step::Health {
                command: check.command.clone(),
                timeout_seconds: check.timeout.as_secs().max(1),
                attempts: check.retries,
                environment: environment.clone(),
            }),
        }
    }

    /// The steps in the order they run (for dry-run listings).
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = self.before.clone();
        steps.push(self.switch.clone());
        steps.extend(self.after.iter().cloned());
        steps.extend(self.health.iter().cloned());
        steps
    }
}

/// A change of `current` on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub from: Option<Version>,
    pub to: Version,
    pub action: LogAction,
}

impl Switch {
    pub fn step(&self) -> Step {
        Step::Switch {
            from: self.from.clone(),
            to: self.to.clone(),
            action: self.action,
            record: None,
        }
    }

    /// The switch, writing `record` in the same command (and refusing to switch without it).
    pub fn recorded(&self, record: HistoryRecord) -> Step {
        let mut step = self.step();
        if let Step::Switch { record: audit, .. } = &mut step {
            *audit = Some(Audit {
                record,
                required: true,
            });
        }
        step
    }

    /// The step that puts the host back where it was before `step`, writing `record` (when
    /// given) in the same command; the switch back happens even if the record cannot be written.
    pub fn undo(&self, record: Option<HistoryRecord>) -> Step {
        let record = record.map(|record| Audit {
            record,
            required: false,
        });
        match &self.from {
            Some(previous) => Step::Switch {
                from: Some(self.to.clone()),
                to: previous.clone(),
                action: LogAction::Rollback,
                record,
            },
            None => Step::Retract {
                version: self.to.clone(),
                record,
            },
        }
    }
}

/// What a push will do on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushDecision {
    /// Already live with the same content: nothing to do.
    Unchanged,
    /// This host must not take the release; the reason says why.
    Refused(String),
    Deploy(PushPlan),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    pub from: Option<Version>,
    pub to: Version,
    /// Steps before the switch (under the lock).
    pub stage: Vec<Step>,
    /// Releases to remove after a successful switch.
    pub prune: Vec<Version>,
    /// Bytes that will be uploaded (0 when already staged; an estimate for a delta).
    pub upload_bytes: u64,
    /// How the release reaches the host.
    pub transfer: Transfer,
}

/// How a push's release reaches a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// Nothing is sent: already staged with the same sha256.
    Staged,
    /// The host downloads the artifact itself (`fetch = "host"`).
    Fetched,
    /// The whole artifact is sent; the reason says why no delta.
    Full(String),
    /// Only what differs from `base` is sent.
    Delta {
        base: Version,
        files: usize,
        bytes: u64,
    },
}

impl Transfer {
    /// One line for dry runs and notes.
    pub fn describe(&self) -> String {
        match self {
            Transfer::Staged => "no upload: already staged with the same sha256".to_string(),
            Transfer::Fetched => "the host downloads the artifact itself".to_string(),
            Transfer::Full(reason) => format!("full push: {reason}"),
            Transfer::Delta { base, files, bytes } => format!(
                "delta from {base}: {files} files, {} bytes to send",
                crate::text::format_bytes(*bytes)
            ),
        }
    }
}

/// The artifact as the planner needs it.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    /// `fetch = "host"`: the hosts download it (the redacted URL, for descriptions).
    pub fetch_on_host: Option<String>,
    pub version: &'a Version,
    pub sha256: &'a Sha256,
    pub size: u64,
    pub unpacked_size: u64,
    /// The artifact's manifest (what a delta is computed from).
    pub manifest: &'a Manifest,
    /// Length of the manifest's text, which a delta stream carries (`Shipment::manifest`).
    pub manifest_bytes: u64,
    /// The service's shared paths (never reused: the release links them away).
    pub shared_paths: &'a [String],
    /// The service's `delta` setting, and `push --full`.
    pub delta: Delta,
    pub full: bool,
    /// `--strip-components` for the host's `tar` on a full push or fetch (`strip_components`).
    pub tar_strip: usize,
}

impl Release<'_> {
    /// Whether a delta stream is worth compressing: the artifact itself compresses its
    /// contents to at most 90%.
    fn compresses(&self) -> bool {
        u128::from(self.size) * 10 < u128::from(self.unpacked_size) * 9
    }
}

/// The release a delta push on this host would reuse files from (its live release), or why
/// the whole artifact must be sent, or why nothing is sent at all. The caller reads that
/// release's recorded manifest and passes it to [`plan_push`], so a host that already holds
/// the release (unchanged, or staged earlier) costs no manifest read. Pure.
pub fn delta_base(facts: &Facts, release: &Release) -> Result<Version, String> {
    if facts.releases.get(release.version) == Some(release.sha256) {
        return Err(format!("{} is already on this host", release.version));
    }
    if release.full {
        return Err("--full".to_string());
    }
    if release.delta == Delta::Off {
        return Err("delta = \"off\"".to_string());
    }
    if release.fetch_on_host.is_some() {
        return Err("fetch = \"host\": each host downloads the whole artifact".to_string());
    }
    let Some(live) = facts.live() else {
        return Err("no live release on this host".to_string());
    };
    if !facts.releases.contains_key(live) {
        return Err(format!("the live release {live} is not complete"));
    }
    Ok(live.clone())
}

/// Decides how the release reaches a host that lacks it: the delta step from the base release
/// whose recorded manifest is `base` (when it pays), or the whole artifact and why.
fn transfer(
    facts: &Facts,
    release: &Release,
    base: Result<&Manifest, &str>,
) -> Result<(Step, Transfer), String> {
    let base_version = delta_base(facts, release)?;
    let base = base.map_err(str::to_string)?;
    let reuse = release.manifest.reuse_from(base, release.shared_paths);
    if reuse.reused.is_empty() {
        return Err(format!("no file of {base_version} can be reused"));
    }
    // Compressed when the artifact's contents compress, and when the files sent are less than
    // the rest of the stream (tar headers, the reuse list and the manifest, which shrink
    // several times). Incompressible files are not: gzip would cost the host a process and a
    // pass over them (and the controller one more) for nothing.
    let overhead = StreamOverhead::of(release, &reuse);
    let compress =
        release.compresses() || reuse.sent_bytes < overhead.uncompressed() + release.manifest_bytes;
    let bytes = overhead.wire_bytes(release, reuse.sent_bytes, compress);
    if bytes >= release.size {
        return Err(format!(
            "a delta from {base_version} would send about as much as the artifact"
        ));
    }
    let transfer = Transfer::Delta {
        base: base_version.clone(),
        files: reuse.sent_files,
        bytes,
    };
    let step = Step::Delta {
        version: release.version.clone(),
        sha256: release.sha256.clone(),
        base: base_version,
        reuse: match release.delta {
            Delta::Copy => ReuseMode::Copy,
            Delta::Hardlink | Delta::Off => ReuseMode::Hardlink,
        },
        reused: std::sync::Arc::new(reuse.reused),
        sent_files: reuse.sent_files,
        sent_bytes: reuse.sent_bytes,
        compress,
    };
    Ok((step, transfer))
}

/// What a delta stream holds besides the files' data and the manifest: a tar header for each
/// member sent and the list of reused paths.
struct StreamOverhead {
    members: u64,
    list: u64,
}

impl StreamOverhead {
    fn of(release: &Release, reuse: &Reuse) -> Self {
        StreamOverhead {
            members: (release.manifest.entries.len() - reuse.reused.len()) as u64,
            list: reuse.reused.iter().map(|path| path.len() as u64 + 1).sum(),
        }
    }

    /// Its bytes as they are (512 a header).
    fn uncompressed(&self) -> u64 {
        self.members * 512 + self.list
    }

    /// What a delta stream sending `sent_bytes` of files costs on the wire, about: the files'
    /// data (compressed at the artifact's own ratio when the stream is compressed), the headers
    /// (about 64 bytes each compressed) and the list (about a third compressed). The manifest,
    /// which the stream carries too, is left out, as from a full push's `bytes`: a full push
    /// sends it as well (uncompressed, with `finalize`).
    fn wire_bytes(&self, release: &Release, sent_bytes: u64, compress: bool) -> u64 {
        if compress {
            let ratio = release.size as f64 / release.unpacked_size.max(1) as f64;
            (sent_bytes as f64 * ratio) as u64 + self.members * 64 + self.list / 3
        } else {
            sent_bytes + self.uncompressed()
        }
    }
}

/// Decides a push from a host's facts (and, for a delta, the recorded manifest of the base
/// release named by [`delta_base`], or why none could be read: the full push's reason). Pure.
pub fn plan_push(
    facts: &Facts,
    release: &Release,
    keep_releases: usize,
    force: bool,
    base: Result<&Manifest, &str>,
) -> PushDecision {
    let version = release.version;
    let live = facts.live().cloned();
    let existing = facts.releases.get(version);
    if live.as_ref() == Some(version) && existing == Some(release.sha256) {
        return PushDecision::Unchanged;
    }
    let mut replace = false;
    if let Some(existing) = existing
        && existing != release.sha256
    {
        if !force {
            return PushDecision::Refused(format!(
                "version {version} is already on this host with different content (sha256 {existing}); \
                 versions are immutable: push a new version, or use --force to replace it"
            ));
        }
        if live.as_ref() == Some(version) {
            return PushDecision::Refused(format!(
                "version {version} is live on this host with different content; --force cannot replace \
                 the live release: switch away first (deploy rollback) or push a new version"
            ));
        }
        replace = true;
    }
    let upload = existing != Some(release.sha256);
    let delta = if upload && release.fetch_on_host.is_none() {
        Some(transfer(facts, release, base))
    } else {
        None
    };
    if upload && let Some(free) = facts.free_bytes {
        let needed = match &delta {
            Some(Ok((
                Step::Delta {
                    reuse: ReuseMode::Hardlink,
                    sent_bytes,
                    ..
                },
                _,
            ))) => *sent_bytes,
            _ => release.unpacked_size,
        };
        if free < needed {
            return PushDecision::Refused(format!(
                "not enough disk space: {} free, {} needed to unpack the release",
                crate::text::format_bytes(free),
                crate::text::format_bytes(needed)
            ));
        }
    }
    // An upload prepares the layout itself (one round trip less); otherwise it is a step.
    let mut stage = if upload {
        Vec::new()
    } else {
        vec![Step::Prepare]
    };
    let mut upload_bytes = 0;
    let transfer = match (&release.fetch_on_host, delta) {
        _ if !upload => Transfer::Staged,
        (Some(source), _) => {
            stage.push(Step::Fetch {
                version: version.clone(),
                sha256: release.sha256.clone(),
                source: source.clone(),
                tar_strip: release.tar_strip,
            });
            Transfer::Fetched
        }
        (None, Some(Ok((step, transfer)))) => {
            if let Transfer::Delta { bytes, .. } = &transfer {
                upload_bytes = *bytes;
            }
            stage.push(step);
            stage.push(Step::Verify {
                version: version.clone(),
            });
            transfer
        }
        (None, reason) => {
            stage.push(Step::Upload {
                version: version.clone(),
                sha256: release.sha256.clone(),
                bytes: release.size,
                tar_strip: release.tar_strip,
            });
            upload_bytes = release.size;
            Transfer::Full(match reason {
                Some(Err(reason)) => reason,
                _ => "no live release on this host".to_string(),
            })
        }
    };
    if upload {
        stage.push(Step::Finalize {
            version: version.clone(),
            sha256: release.sha256.clone(),
            replace,
            staged_manifest: matches!(transfer, Transfer::Delta { .. }),
        });
    }
    let prune = prune_after(facts, version, live.as_ref(), keep_releases);
    PushDecision::Deploy(PushPlan {
        from: live,
        to: version.clone(),
        stage,
        prune,
        upload_bytes,
        transfer,
    })
}

/// Releases to remove so that `keep` remain once `live` is live and `previous` is the one it
/// replaced; neither of those two is ever removed. Order comes from the recorded log.
pub fn prune_after(
    facts: &Facts,
    live: &Version,
    previous: Option<&Version>,
    keep: usize,
) -> Vec<Version> {
    let mut order: Vec<Version> = vec![live.clone()];
    order.extend(
        facts
            .releases_newest_first()
            .into_iter()
            .filter(|version| version != live),
    );
    let mut kept = 0;
    let mut remove = Vec::new();
    for version in order {
        let protected = &version == live || Some(&version) == previous;
        if protected || kept < keep {
            kept += 1;
        } else {
            remove.push(version);
        }
    }
    remove
}

/// What a rollback will do on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackDecision {
    Switch(Switch),
    /// Already live on the requested release.
    Unchanged,
    /// Nothing to roll back to (the reason says why); not an error for other hosts.
    Nothing(String),
    /// `--to` names a release that is not complete on this host.
    Missing,
}

/// Decides a rollback from a host's facts. Pure.
pub fn plan_rollback(facts: &Facts, to: Option<&Version>) -> RollbackDecision {
    let live = facts.live().cloned();
    let target = match to {
        Some(version) => {
            if !facts.releases.contains_key(version) {
                return RollbackDecision::Missing;
            }
            if live.as_ref() == Some(version) {
                return RollbackDecision::Unchanged;
            }
            version.clone()
        }
        None => match facts.rollback_target() {
            Some(version) => version,
            None => {
                return RollbackDecision::Nothing(match &live {
                    None => "nothing to roll back: no live release on this host".to_string(),
                    Some(live) => format!(
                        "nothing to roll back to: no release went live before {live} on this host (or it was rolled back from)"
                    ),
                });
            }
        },
    };
    RollbackDecision::Switch(Switch {
        from: live,
        to: target,
        action: LogAction::Rollback,
    })
}

/// Releases `deploy prune --keep N` removes: never the live or the previous one. Pure.
pub fn plan_prune(facts: &Facts, keep: usize) -> Vec<Version> {
    match facts.live() {
        Some(live) => prune_after(facts, live, facts.previous(), keep),
        None => facts
            .releases_newest_first()
            .into_iter()
            .skip(keep)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::state;
    use std::sync::LazyLock;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    static DIGEST_A: LazyLock<Sha256> = LazyLock::new(|| Sha256::parse(SHA_A).expect("a sha256"));
    static DIGEST_B: LazyLock<Sha256> = LazyLock::new(|| Sha256::parse(SHA_B).expect("a sha256"));
    /// No recorded manifest of a delta base (the cases where none is needed).
    const NO_BASE: Result<&Manifest, &str> = Err("no manifest recorded");

    fn host(live: Option<&str>, releases: &[(&str, &str)], log: &[&str]) -> Facts {
        let mut text = String::from("df h\ndf /dev/x 1 1 1000000 1% /\nbase present\n");
        if let Some(live) = live {
            text.push_str(&format!("current releases/{live}\n"));
        }
        for (name, digest) in releases {
            text.push_str(&format!("release {name} {digest}\n"));
        }
        for line in log {
            text.push_str(&format!("log {line}\n"));
        }
        state::parse(&text).expect("facts parse")
    }

    static EMPTY: LazyLock<Manifest> = LazyLock::new(|| Manifest {
        entries: Vec::new(),
    });

    fn release<'a>(version: &'a Version, sha256: &'a Sha256) -> Release<'a> {
        Release {
            fetch_on_host: None,
            version,
            sha256,
            size: 100,
            unpacked_size: 1000,
            manifest: &EMPTY,
            manifest_bytes: 0,
            shared_paths: &[],
            delta: Delta::Hardlink,
            full: false,
            tar_strip: 0,
        }
    }

    fn file(path: &str, content: &str, size: u64) -> crate::manifest::Entry {
        crate::manifest::Entry {
            path: path.to_string(),
            kind: crate::manifest::EntryKind::File {
                sha256: crate::manifest::tests::sha256_hex(content.as_bytes()),
            },
            mode: 0o644,
            size,
        }
    }

    /// 100 files of 1000 bytes; `changed` of them with other content.
    fn hundred_files(changed: usize) -> Manifest {
        Manifest {
            entries: (0..100)
                .map(|index| {
                    let content = if index < changed {
                        format!("new {index}")
                    } else {
                        format!("{index}")
                    };
                    file(&format!("f{index:03}"), &content, 1000)
                })
                .collect(),
        }
    }

    #[test]
    fn a_live_release_with_a_manifest_gets_a_delta_that_is_verified_before_finalize() {
        let facts = host(Some("v1"), &[("v1", SHA_A)], &["1 push - v1"]);
        let v2 = version("v2");
        let (base, new) = (hundred_files(0), hundred_files(3));
        let mut release = release(&v2, &DIGEST_B);
        release.manifest = &new;
        release.manifest_bytes = new.to_text().len() as u64;
        release.size = 100_000;
        release.unpacked_size = 100_000;
        assert_eq!(delta_base(&facts, &release), Ok(version("v1")));
        // A host that already holds the release needs no base (and no manifest read).
        let staged = host(
            Some("v1"),
            &[("v1", SHA_A), ("v2", SHA_B)],
            &["1 push - v1"],
        );
        assert!(delta_base(&staged, &release).is_err());
        let PushDecision::Deploy(plan) = plan_push(&facts, &release, 5, false, Ok(&base)) else {
            panic!("expected a deploy");
        };
        let names: Vec<_> = plan.stage.iter().map(Step::name).collect();
        assert_eq!(names, ["upload", "verify", "finalize"]);
        let Step::Delta {
            reused,
            sent_files,
            sent_bytes,
            reuse,
            compress,
            ..
        } = &plan.stage[0]
        else {
            panic!("expected a delta step: {:?}", plan.stage[0]);
        };
        assert_eq!((reused.len(), *sent_files, *sent_bytes), (97, 3, 3000));
        assert_eq!(*reuse, ReuseMode::Hardlink);
        assert!(*compress, "few files sent: the headers and lists compress");
        assert!(matches!(
            plan.stage[2],
            Step::Finalize {
                staged_manifest: true,
                ..
            }
        ));
        assert!(plan.upload_bytes < release.size);
        assert!(
            plan.transfer
                .describe()
                .starts_with("delta from v1: 3 files, "),
            "{}",
            plan.transfer.describe()
        );
        // Copy mode copies; the disk check then needs the whole release.
        release.delta = Delta::Copy;
        let PushDecision::Deploy(plan) = plan_push(&facts, &release, 5, false, Ok(&base)) else {
            panic!("expected a deploy");
        };
        assert!(matches!(
            plan.stage[0],
            Step::Delta {
                reuse: ReuseMode::Copy,
                ..
            }
        ));
    }

    #[test]
    fn a_delta_stream_is_compressed_only_when_it_shrinks() {
        let facts = host(Some("v1"), &[("v1", SHA_A)], &["1 push - v1"]);
        let v2 = version("v2");
        let compressed = |base: &Manifest, new: &Manifest, size: u64, unpacked_size: u64| {
            let mut release = release(&v2, &DIGEST_B);
            release.manifest = new;
            release.manifest_bytes = new.to_text().len() as u64;
            release.size = size;
            release.unpacked_size = unpacked_size;
            let PushDecision::Deploy(plan) = plan_push(&facts, &release, 5, false, Ok(base)) else {
                panic!("expected a deploy");
            };
            match &plan.stage[0] {
                Step::Delta { compress, .. } => *compress,
                other => panic!("expected a delta step: {other:?}"),
            }
        };
        let base = hundred_files(0);
        // Incompressible contents (the artifact is as large as its files), small files sent
        // (10 KB): headers, list and manifest (about 15 KB) weigh more, and shrink: gzip.
        assert!(compressed(&base, &hundred_files(10), 100_000, 100_000));
        // Big files sent, incompressible: no gzip, the stream is mostly their data.
        let mut big = hundred_files(10);
        for entry in big.entries.iter_mut().take(10) {
            entry.size = 1_000_000;
        }
        assert!(!compressed(&base, &big, 10_100_000, 10_090_000));
        // The same files, compressible (the artifact is half their size): gzip.
        assert!(compressed(&base, &big, 5_000_000, 10_090_000));
    }

    #[test]
    fn a_full_push_says_why() {
        let live = host(Some("v1"), &[("v1", SHA_A)], &["1 push - v1"]);
        let v2 = version("v2");
        let (base, new) = (hundred_files(0), hundred_files(3));
        let reason =
            |facts: &Facts, adjust: &dyn Fn(&mut Release), base: Result<&Manifest, &str>| {
                let mut release = release(&v2, &DIGEST_B);
                release.manifest = &new;
                release.size = 100_000;
                release.unpacked_size = 100_000;
                adjust(&mut release);
                let PushDecision::Deploy(plan) = plan_push(facts, &release, 5, false, base) else {
                    panic!("expected a deploy");
                };
                let names: Vec<_> = plan.stage.iter().map(Step::name).collect();
                match plan.transfer {
                    Transfer::Full(reason) => {
                        assert_eq!(names, ["upload", "finalize"]);
                        assert_eq!(plan.upload_bytes, 100_000);
                        reason
                    }
                    other => panic!("expected a full push: {other:?}"),
                }
            };
        let keep = |_: &mut Release| {};
        assert_eq!(
            reason(&live, &|release| release.full = true, Ok(&base)),
            "--full"
        );
        assert_eq!(
            reason(&live, &|release| release.delta = Delta::Off, Ok(&base)),
            "delta = \"off\""
        );
        assert_eq!(
            reason(
                &live,
                &keep,
                Err("the manifest recorded for v1 does not read")
            ),
            "the manifest recorded for v1 does not read"
        );
        let fresh = host(None, &[], &[]);
        assert_eq!(
            reason(&fresh, &keep, Ok(&base)),
            "no live release on this host"
        );
        let unrelated = Manifest {
            entries: vec![file("other", "other", 1)],
        };
        assert_eq!(
            reason(&live, &keep, Ok(&unrelated)),
            "no file of v1 can be reused"
        );
        // A delta that sends as much as the artifact is not worth it.
        let mostly_new = hundred_files(99);
        assert!(reason(&live, &keep, Ok(&mostly_new)).contains("about as much as the artifact"),);
    }

    #[test]
    fn fresh_host_uploads_and_switches() {
        let facts = state::parse("base absent\n").expect("parse");
        let v1 = version("v1");
        let PushDecision::Deploy(plan) =
            plan_push(&facts, &release(&v1, &DIGEST_A), 5, false, NO_BASE)
        else {
            panic!("expected a deploy");
        };
        assert_eq!(plan.from, None);
        assert_eq!(plan.upload_bytes, 100);
        let names: Vec<_> = plan.stage.iter().map(Step::name).collect();
        assert_eq!(names, ["upload", "finalize"]);
        assert!(plan.prune.is_empty());
    }

    #[test]
    fn live_with_same_digest_is_unchanged() {
        let facts = host(Some("v1"), &[("v1", SHA_A)], &["1 push - v1"]);
        let v1 = version("v1");
        assert_eq!(
            plan_push(&facts, &release(&v1, &DIGEST_A), 5, false, NO_BASE),
            PushDecision::Unchanged
        );
    }

    #[test]
    fn staged_with_same_digest_skips_the_upload() {
        let facts = host(
            Some("v1"),
            &[("v1", SHA_A), ("v2", SHA_B)],
            &["1 push - v1", "2 stage - v2"],
        );
        let v2 = version("v2");
        let PushDecision::Deploy(plan) =
            plan_push(&facts, &release(&v2, &DIGEST_B), 5, false, NO_BASE)
        else {
            panic!("expected a deploy");
        };
        assert_eq!(plan.upload_bytes, 0);
        assert_eq!(plan.stage, vec![Step::Prepare]);
        assert_eq!(plan.from, Some(version("v1")));
    }

    #[test]
    fn same_version_other_content_is_refused_unless_forced() {
        let facts = host(
            Some("v1"),
            &[("v1", SHA_A), ("v2", SHA_A)],
            &["1 push - v1"],
        );
        let v2 = version("v2");
        assert!(matches!(
            plan_push(&facts, &release(&v2, &DIGEST_B), 5, false, NO_BASE),
            PushDecision::Refused(reason) if reason.contains("immutable")
        ));
        let PushDecision::Deploy(plan) =
            plan_push(&facts, &release(&v2, &DIGEST_B), 5, true, NO_BASE)
        else {
            panic!("expected a forced deploy");
        };
        assert!(matches!(
            plan.stage[1],
            Step::Finalize { replace: true, .. }
        ));
        let v1 = version("v1");
        assert!(matches!(
            plan_push(&facts, &release(&v1, &DIGEST_B), 5, true, NO_BASE),
            PushDecision::Refused(reason) if reason.contains("live")
        ));
    }

    #[test]
    fn too_little_disk_is_refused_before_upload() {
        let mut facts = host(None, &[], &[]);
        facts.free_bytes = Some(10);
        let v1 = version("v1");
        assert!(matches!(
            plan_push(&facts, &release(&v1, &DIGEST_A), 5, false, NO_BASE),
            PushDecision::Refused(reason) if reason.contains("disk space")
        ));
    }

    #[test]
    fn prune_keeps_live_previous_and_the_newest() {
        let names = ["r1", "r2", "r3", "r4", "r5", "r6"];
        let releases: Vec<(&str, &str)> = names.iter().map(|name| (*name, SHA_A)).collect();
        let log = [
            "1 push - r1",
            "2 push r1 r2",
            "3 push r2 r3",
            "4 push r3 r4",
            "5 push r4 r5",
            "6 push r5 r6",
        ];
        let facts = host(Some("r6"), &releases, &log);
        let r7 = version("r7");
        let pruned = prune_after(&facts, &r7, Some(&version("r6")), 3);
        assert_eq!(
            pruned,
            vec![version("r4"), version("r3"), version("r2"), version("r1")]
        );
        // keep = 1 still keeps the previous release.
        let pruned = prune_after(&facts, &r7, Some(&version("r6")), 1);
        assert!(!pruned.contains(&version("r6")));
        assert_eq!(pruned.len(), 5);
    }

    #[test]
    fn rollback_decisions() {
        let facts = host(
            Some("v3"),
            &[("v1", SHA_A), ("v2", SHA_A), ("v3", SHA_A)],
            &["1 push - v1", "2 push v1 v2", "3 push v2 v3"],
        );
        assert_eq!(
            plan_rollback(&facts, None),
            RollbackDecision::Switch(Switch {
                from: Some(version("v3")),
                to: version("v2"),
                action: LogAction::Rollback
            })
        );
        assert_eq!(
            plan_rollback(&facts, Some(&version("v3"))),
            RollbackDecision::Unchanged
        );
        assert_eq!(
            plan_rollback(&facts, Some(&version("v9"))),
            RollbackDecision::Missing
        );
        assert!(matches!(
            plan_rollback(&facts, Some(&version("v1"))),
            RollbackDecision::Switch(Switch { to, .. }) if to == version("v1")
        ));
        let fresh = host(Some("v1"), &[("v1", SHA_A)], &["1 push - v1"]);
        assert!(matches!(
            plan_rollback(&fresh, None),
            RollbackDecision::Nothing(_)
        ));
    }

    #[test]
    fn prune_without_a_live_release_keeps_the_newest() {
        let facts = host(
            None,
            &[("v1", SHA_A), ("v2", SHA_A), ("v3", SHA_A)],
            &["1 stage - v1", "2 stage - v2", "3 stage - v3"],
        );
        assert_eq!(plan_prune(&facts, 2), vec![version("v1")]);
        let live = host(
            Some("v3"),
            &[("v1", SHA_A), ("v2", SHA_A), ("v3", SHA_A)],
            &["1 push - v1", "2 push v1 v2", "3 push v2 v3"],
        );
        assert_eq!(
            plan_prune(&live, 1),
            vec![version("v1")],
            "previous (v2) is kept"
        );
    }

    #[test]
    fn undo_goes_back_to_the_previous_release_or_retracts_a_first_deploy() {
        let switch = Switch {
            from: Some(version("v1")),
            to: version("v2"),
            action: LogAction::Push,
        };
        assert_eq!(
            switch.undo(None),
            Step::Switch {
                from: Some(version("v2")),
                to: version("v1"),
                action: LogAction::Rollback,
                record: None,
            }
        );
        let first = Switch {
            from: None,
            to: version("v1"),
            action: LogAction::Push,
        };
        assert_eq!(
            first.undo(None),
            Step::Retract {
                version: version("v1"),
                record: None,
            }
        );
    }
}
