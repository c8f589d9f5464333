//! The steps of every remote change, as data: what one change on a host is (prepare, upload or
//! fetch, finalize, switch, hooks, health, prune, retract, unlock), with the history record a
//! change of `current` carries, and how each is named and described in progress lines and dry
//! runs (as text, and as data: `fields`). `plan` decides which steps a host gets; `steps` lowers each to its script.

use super::history::HistoryRecord;
use super::layout;
use super::state::LogAction;
use crate::inventory::Version;
use crate::manifest::Sha256;

/// One remote change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the layout and remove staging leftovers of earlier runs (under the lock).
    Prepare,
    /// Stream the artifact into staging, extracting it and verifying its sha256 on the host.
    Upload {
        version: Version,
        sha256: Sha256,
        bytes: u64,
        /// Leading names the host's `tar` drops from every member (`strip_components`).
        tar_strip: usize,
    },
    /// Have the host download the artifact itself (`fetch = "host"`; the URL comes on stdin),
    /// extracting it into staging and verifying its sha256 on the host.
    Fetch {
        version: Version,
        sha256: Sha256,
        /// The URL without its secrets, for descriptions.
        source: String,
        /// Leading names the host's `tar` drops from every member (`strip_components`).
        tar_strip: usize,
    },
    /// Stream only the artifact's members a host lacks (`delta`): everything but the files the
    /// base release already holds, which are then hard-linked (or copied) from it into staging.
    /// The staged tree is not trusted before `Verify` compared it with the artifact's manifest.
    Delta {
        version: Version,
        sha256: Sha256,
        /// The release the reused files come from (the live one).
        base: Version,
        reuse: ReuseMode,
        /// Paths of the regular files taken from `base`, sorted.
        reused: std::sync::Arc<Vec<String>>,
        /// Regular files (and hardlinks) sent, and their unpacked bytes.
        sent_files: usize,
        sent_bytes: u64,
        /// Whether the stream is gzip-compressed (the artifact compresses well).
        compress: bool,
    },
    /// Compare the staged tree, every file hashed, with the artifact's manifest; what differs is
    /// sent again (`Repair`) before anything names the tree a release.
    Verify { version: Version },
    /// Send these members of the artifact again into the staged tree, replacing what is there
    /// (a reused file that was edited on the host, a link that could not be made).
    Repair {
        version: Version,
        sha256: Sha256,
        paths: std::sync::Arc<Vec<String>>,
        compress: bool,
    },
    /// Link shared paths, record manifest and digest, rename staging into `releases/<version>`.
    Finalize {
        version: Version,
        sha256: Sha256,
        replace: bool,
        /// The manifest came in the delta stream (it is in staging), not on stdin.
        staged_manifest: bool,
    },
    /// Point `current` at `releases/<to>` by renaming a new symlink over it, appending the
    /// history record of the change in the same remote command.
    Switch {
        from: Option<Version>,
        to: Version,
        action: LogAction,
        record: Option<Audit>,
    },
    /// Remove these releases (never the live one: the script re-checks).
    Prune { versions: Vec<Version> },
    /// Undo a first deploy: move `current` (pointing at `version`) aside by rename, leaving
    /// the host as it was before it had any live release.
    Retract {
        version: Version,
        record: Option<Audit>,
    },
    /// Break the lock whose holder line is `holder` (only if it is still that one), stopping
    /// the steps its run left running; with `kill`, first stop the holder's process group, but
    /// only if the line's PID, boot id and start time still name it (never a reused PID).
    Unlock { holder: String, kill: bool },
    /// Run one hook command with `sh` in the release directory, with the DEPLOY_* environment.
    Hook {
        phase: HookPhase,
        command: String,
        environment: HookEnvironment,
    },
    /// Run the health check command once (the executor retries it), bounded by `timeout`.
    Health {
        command: String,
        timeout_seconds: u64,
        attempts: u32,
        environment: HookEnvironment,
    },
}

/// How a delta push puts the reused files into the new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReuseMode {
    /// Hard links to the base release's files (one copy on disk, shared inodes).
    Hardlink,
    /// Copies (the new release shares nothing with the base).
    Copy,
}

impl ReuseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReuseMode::Hardlink => "hard-link",
            ReuseMode::Copy => "copy",
        }
    }
}

/// The history record a change of `current` writes in the same remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub record: HistoryRecord,
    /// A forward switch refuses to change `current` when its record cannot be written; a
    /// switch back (putting a host where it was) goes ahead and reports the lost record.
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    BeforeSwitch,
    AfterSwitch,
}

impl HookPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::BeforeSwitch => "before_switch",
            HookPhase::AfterSwitch => "after_switch",
        }
    }
}

/// The DEPLOY_* values of SPEC §2 (base dir and run id come from the lowering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEnvironment {
    pub service: String,
    pub host: String,
    /// The release going live (hooks and health run in its directory).
    pub version: Version,
    /// The release it replaces, if any.
    pub previous: Option<Version>,
    /// The inventory's variables for this host (`[services.NAME.env]`, the host's `env` on top).
    pub variables: std::collections::BTreeMap<String, String>,
}

impl Step {
    /// The step's name as shown in progress lines.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Upload { .. } => "upload",
            Step::Fetch { .. } => "fetch",
            Step::Delta { .. } => "upload",
            Step::Verify { .. } => "verify",
            Step::Repair { .. } => "repair",
            Step::Finalize { .. } => "finalize",
            Step::Switch { .. } => "switch",
            Step::Prune { .. } => "prune",
            Step::Retract { .. } => "rollback",
            Step::Unlock { .. } => "unlock",
            Step::Hook { phase, .. } => phase.as_str(),
            Step::Health { .. } => "health",
        }
    }

    /// The step as data for `push --dry-run --output json` (SPEC §5): `kind` and the values
    /// an operator or CI gates on (versions, bytes, commands), never shell text or secrets
    /// (a fetch names its redacted source, a history record is not shown).
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::{Value, json};
        let optional = |version: &Option<Version>| -> Value {
            version
                .as_ref()
                .map_or(Value::Null, |version| Value::from(version.as_str()))
        };
        let (kind, fields) = match self {
            Step::Prepare => ("prepare", json!({})),
            Step::Upload {
                version,
                sha256,
                bytes,
                ..
            } => (
                "upload",
                json!({"version": version.as_str(), "sha256": sha256.to_string(), "bytes": bytes}),
            ),
            Step::Fetch {
                version,
                sha256,
                source,
                ..
            } => (
                "fetch",
                json!({"version": version.as_str(), "sha256": sha256.to_string(), "source": source}),
            ),
            Step::Delta {
                version,
                sha256,
                base,
                reuse,
                reused,
                sent_files,
                sent_bytes,
                compress,
            } => (
                "delta",
                json!({
                    "version": version.as_str(),
                    "sha256": sha256.to_string(),
                    "from": base.as_str(),
                    "reuse": reuse.as_str(),
                    "reused_files": reused.len(),
                    "files": sent_files,
                    "bytes": sent_bytes,
                    "compressed": compress,
                }),
            ),
            Step::Verify { version } => ("verify", json!({"version": version.as_str()})),
            Step::Repair { version, paths, .. } => (
                "repair",
                json!({"version": version.as_str(), "files": paths.len()}),
            ),
            Step::Finalize {
                version,
                sha256,
                replace,
                ..
            } => (
                "finalize",
                json!({"version": version.as_str(), "sha256": sha256.to_string(), "replace": replace}),
            ),
            Step::Switch {
                from, to, action, ..
            } => (
                "switch",
                json!({"from": optional(from), "to": to.as_str(), "action": action.as_str()}),
            ),
            Step::Prune { versions } => (
                "prune",
                json!({"versions": versions.iter().map(Version::as_str).collect::<Vec<_>>()}),
            ),
            Step::Retract { version, .. } => ("retract", json!({"version": version.as_str()})),
            Step::Unlock { kill, .. } => ("unlock", json!({"kill": kill})),
            Step::Hook {
                phase,
                command,
                environment,
            } => (
                "hook",
                json!({
                    "phase": phase.as_str(),
                    "command": command,
                    "version": environment.version.as_str(),
                }),
            ),
            Step::Health {
                command,
                timeout_seconds,
                attempts,
                environment,
            } => (
                "health",
                json!({
                    "command": command,
                    "attempts": attempts,
                    "timeout_seconds": timeout_seconds,
                    "version": environment.version.as_str(),
                }),
            ),
        };
        let mut map = serde_json::Map::new();
        map.insert("kind".to_string(), Value::from(kind));
        if let Value::Object(fields) = fields {
            map.extend(fields);
        }
        map
    }

    /// One line describing the step for dry-run output.
    pub fn describe(&self) -> String {
        match self {
            Step::Prepare => "prepare layout and remove staging leftovers".to_string(),
            Step::Upload { version, bytes, .. } => format!(
                "upload {} and extract {version} into staging, verifying its sha256",
                crate::text::format_bytes(*bytes)
            ),
            Step::Fetch {
                version, source, ..
            } => format!(
                "download {source} on the host and extract {version} into staging, verifying its sha256"
            ),
            Step::Delta {
                version,
                base,
                reuse,
                reused,
                sent_files,
                sent_bytes,
                ..
            } => format!(
                "upload the delta from {base} ({sent_files} files, {} unpacked) and extract {version} into staging, {} {} unchanged files from {}",
                crate::text::format_bytes(*sent_bytes),
                reuse.as_str(),
                reused.len(),
                layout::release(base)
            ),
            Step::Verify { version } => format!(
                "verify every file of the staged {version} against the artifact's manifest (send again what differs)"
            ),
            Step::Repair { version, paths, .. } => format!(
                "send {} files of {version} again that differed in staging",
                paths.len()
            ),
            Step::Finalize {
                version, replace, ..
            } => {
                if *replace {
                    format!("replace release {version} (--force) with the staged one")
                } else {
                    format!(
                        "link shared paths and rename staging into {}",
                        layout::release(version)
                    )
                }
            }
            Step::Switch { from, to, .. } => format!(
                "switch current: {} -> {to}",
                from.as_ref().map(Version::as_str).unwrap_or("(none)")
            ),
            Step::Prune { versions } => format!(
                "prune {}",
                versions
                    .iter()
                    .map(Version::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::Retract { version, .. } => {
                format!("retract current ({version}): the host had no live release before")
            }
            Step::Unlock { kill, .. } => {
                if *kill {
                    "stop the lock holder and remove its lock".to_string()
                } else {
                    "remove the stale lock".to_string()
                }
            }
            Step::Hook {
                phase,
                command,
                environment,
            } => format!(
                "{} hook in {}: {command}",
                phase.as_str(),
                layout::release(&environment.version)
            ),
            Step::Health {
                command, attempts, ..
            } => format!("health check (up to {attempts} attempts): {command}"),
        }
    }
}
