//! The plan: what will be done on one host for one service, as data.
//!
//! Owns the steps of every remote change (lock, clean staging, upload, finalize, switch, prune,
//! record history), the decisions that pick them from a host's `Facts` (pure functions, no I/O),
//! and their lowering to the exact `sh` scripts the executor sends. Dry-run prints these same
//! steps; the real run executes them. Nothing here talks to a host.
//!
//! Remote layout under `<base_dir>`: `releases/<version>/` (complete releases only, entered by
//! rename from `.deploy/staging/<run>/tree`), `current` (relative symlink, replaced only by
//! renaming a new link over it), `shared/`, `.deploy/{lock,staging,digests,manifests}`,
//! `.deploy/releases.log` and `.deploy/history.jsonl` (both append-only).

use serde::{Deserialize, Serialize};

use crate::facts::{Facts, LogAction, LogEntry, RELEASE_LOG, log_line};
use crate::inventory::Version;
use crate::shell::{join, quote};

/// Creates the layout and removes what earlier runs left behind (run inside `<base_dir>`, under
/// the lock): staging directories, temporary links, and release directories that never got
/// their digest (a run stopped between rename and digest cannot leave one today, but an older
/// run could) unless `current` names them. Part of every upload, and a step of its own when
/// nothing is uploaded.
const PREPARE: &str = "mkdir -p .deploy/staging .deploy/digests .deploy/manifests releases shared || exit 1\n\
                       live=$(readlink current 2>/dev/null || true)\n\
                       for d in releases/*; do\n\
                       \x20 [ -d \"$d\" ] && [ ! -L \"$d\" ] || continue\n\
                       \x20 [ ! -f \".deploy/digests/${d#releases/}\" ] && [ \"$d\" != \"$live\" ] || continue\n\
                       \x20 mv -- \"$d\" \".deploy/staging/incomplete.${d#releases/}.$$\" || exit 1\n\
                       done\n\
                       rm -rf .deploy/staging/* .deploy/current.tmp.* 2>/dev/null || true\n";

/// Registers the running step (its process group and the group leader's start time) in the
/// lock directory, so that whoever abandons it (the executor after a timeout or Ctrl-C, the
/// lock holder when the controller's connection ends, `unlock --force`) can stop it and wait
/// for it before anything else touches the same paths. Run inside `<base_dir>`; the record is
/// removed when the step's shell exits.
const REGISTER_STEP: &str = "step_record=\n\
                             if [ -d .deploy/lock ]; then\n\
                             \x20 step_group=$(group_of $$)\n\
                             \x20 step_record=\"$(pwd -P)/.deploy/lock/step.$$\"\n\
                             \x20 printf '%s %s\\n' \"$step_group\" \"$(start_of \"$step_group\")\" > \"$step_record\" 2>/dev/null || step_record=\n\
                             fi\n\
                             trap '[ -z \"$step_record\" ] || rm -f -- \"$step_record\"' EXIT\n";

/// `stop_steps DIR`: stops every step registered in DIR (TERM to its process group, KILL after
/// 5 s) and waits up to 10 s for the groups to be gone (zombies waiting for their parent to
/// reap them count as gone). A record whose leader is not the
/// process that wrote it (another start time: the PID was reused) is dropped, never signalled.
const STOP_STEPS: &str = r#"stop_steps() {
  for f in "$1"/step.*; do
    [ -f "$f" ] || continue
    IFS=' ' read -r group start < "$f" || group=
    case $group in ''|*[!0-9]*) rm -f -- "$f"; continue;; esac
    if [ "$group" -gt 1 ] && [ "$(start_of "$group")" = "$start" ]; then kill -TERM -"$group" 2>/dev/null; else rm -f -- "$f"; fi
  done
  tries=0
  while :; do
    left=
    for f in "$1"/step.*; do
      [ -f "$f" ] || continue
      IFS=' ' read -r group start < "$f" || group=
      if [ -n "$group" ] && group_alive; then
        left=yes
        [ "$tries" -lt 25 ] || kill -KILL -"$group" 2>/dev/null
      else
        rm -f -- "$f"
      fi
    done
    [ -n "$left" ] || return 0
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || { echo "steps of this run still running on the host after 10 s" >&2; return 1; }
    sleep 0.2 2>/dev/null || sleep 1
  done
}
"#;

/// `append_record FILE LINE`: appends one line to an append-only log (history, release log),
/// first ending a line that an interrupted write left without its newline, so a torn record
/// never swallows the next one. Fails when the write fails (disk full).
const APPEND_RECORD: &str = r#"append_record() {
  if [ -s "$1" ] && [ -n "$(tail -c 1 -- "$1")" ]; then printf '\n' >> "$1" || return 1; fi
  printf '%s\n' "$2" >> "$1"
}
"#;

/// Printed on stdout by a step that did its change but could not append its history record.
pub const HISTORY_NOT_WRITTEN: &str = "deploy-history-not-written";
/// Printed on stdout by a switch that changed `current` but could not append the release log.
pub const RELEASE_LOG_NOT_WRITTEN: &str = "deploy-release-log-not-written";

/// Largest history record line (SPEC §3: a record is bounded in size); longer error and
/// message texts are cut in the middle.
pub const HISTORY_LINE_LIMIT: usize = 8 * 1024;

/// One remote change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the layout and remove staging leftovers of earlier runs (under the lock).
    Prepare,
    /// Stream the artifact into staging, extracting it and verifying its sha256 on the host.
    Upload {
        version: Version,
        sha256: String,
        bytes: u64,
    },
    /// Have the host download the artifact itself (`fetch = "host"`; the URL comes on stdin),
    /// extracting it into staging and verifying its sha256 on the host.
    Fetch {
        version: Version,
        sha256: String,
        /// The URL without its secrets, for descriptions.
        source: String,
    },
    /// Link shared paths, record manifest and digest, rename staging into `releases/<version>`.
    Finalize {
        version: Version,
        sha256: String,
        replace: bool,
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
}

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

impl Step {
    /// The step's name as shown in progress lines.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Upload { .. } => "upload",
            Step::Fetch { .. } => "fetch",
            Step::Finalize { .. } => "finalize",
            Step::Switch { .. } => "switch",
            Step::Prune { .. } => "prune",
            Step::Retract { .. } => "rollback",
            Step::Unlock { .. } => "unlock",
            Step::Hook { phase, .. } => phase.as_str(),
            Step::Health { .. } => "health",
        }
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
            Step::Finalize {
                version, replace, ..
            } => {
                if *replace {
                    format!("replace release {version} (--force) with the staged one")
                } else {
                    format!("link shared paths and rename staging into releases/{version}")
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
                "{} hook in releases/{}: {command}",
                phase.as_str(),
                environment.version
            ),
            Step::Health {
                command, attempts, ..
            } => format!("health check (up to {attempts} attempts): {command}"),
        }
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

/// What a lowered step feeds to the remote command's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Nothing,
    /// The artifact's bytes.
    Artifact,
    /// The artifact's manifest text.
    Manifest,
    /// One line: the URL the host downloads.
    Url,
}

/// A step lowered to what is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub script: String,
    pub input: Input,
}

/// Values fixed for a whole run on one service, needed to lower steps.
#[derive(Debug, Clone)]
pub struct Lowering<'a> {
    pub base_dir: &'a str,
    pub run_id: &'a str,
    pub shared_paths: &'a [String],
    /// Unix seconds, recorded in the release log.
    pub now: u64,
}

impl Lowering<'_> {
    fn staging(&self) -> String {
        format!(".deploy/staging/{}", self.run_id)
    }

    /// The exact script (and input) for `step`.
    pub fn lower(&self, step: &Step) -> Remote {
        let base = quote(self.base_dir);
        let staging = quote(&self.staging());
        let functions = crate::facts::PROCESS_FUNCTIONS;
        let enter = format!(
            "{functions}b={base}\ncd -- \"$b\" || {{ echo \"cannot enter $b\" >&2; exit 1; }}\n{REGISTER_STEP}"
        );
        match step {
            Step::Prepare => Remote {
                script: format!(
                    "set -u\numask 022\nb={base}\nmkdir -p -- \"$b\" || exit 1\n{enter}{PREPARE}"
                ),
                input: Input::Nothing,
            },
            Step::Upload {
                sha256, version, ..
            } => Remote {
                script: self.receive(&enter, version, sha256, "cat"),
                input: Input::Artifact,
            },
            Step::Fetch {
                sha256, version, ..
            } => Remote {
                script: self.receive(
                    &enter,
                    version,
                    sha256,
                    "IFS= read -r url || exit 90\n\
                     if command -v curl >/dev/null 2>&1; then printf 'url = \"%s\"\\n' \"$url\" | curl -fsSL --retry 2 --config -\n\
                     elif command -v wget >/dev/null 2>&1; then printf '%s\\n' \"$url\" | wget -q -O - -i -\n\
                     else echo 'neither curl nor wget is installed on this host' >&2; exit 92; fi",
                ),
                input: Input::Url,
            },
            Step::Finalize {
                version,
                sha256,
                replace,
            } => {
                let release = quote(&format!("releases/{version}"));
                let mut script = format!(
                    "set -u\numask 022\n{enter}{APPEND_RECORD}s={staging}\n\
                     [ -d \"$s/tree\" ] || {{ echo 'the staged release is missing' >&2; exit 1; }}\n\
                     cat > \"$s/manifest\" || exit 1\n"
                );
                for path in self.shared_paths {
                    script.push_str(&link_shared(path));
                }
                if *replace {
                    script.push_str(&format!(
                        "if [ -e {release} ]; then mv -- {release} \"$s/replaced\" || exit 1; fi\n\
                         rm -f -- {digest}\n",
                        digest = quote(&format!(".deploy/digests/{version}")),
                    ));
                } else {
                    script.push_str(&format!(
                        "[ ! -e {release} ] || {{ echo 'release {version} already exists' >&2; exit 1; }}\n"
                    ));
                }
                // The digest file names the release complete; before it, the number of entries
                // the finished tree holds, which a switch re-counts before trusting the release.
                script.push_str(&format!(
                    "mv -f -- \"$s/manifest\" {manifest} || exit 1\n\
                     mkdir -p .deploy/entries && find \"$s/tree\" | wc -l > {entries} || exit 1\n\
                     printf '%s\\n' {sha256} > \"$s/digest.new\" || exit 1\n\
                     mv -f -- \"$s/digest.new\" {digest} || exit 1\n\
                     mv -- \"$s/tree\" {release} || exit 1\n\
                     append_record {log_file} {log} || exit 1\n\
                     rm -rf -- \"$s\"\n",
                    manifest = quote(&format!(".deploy/manifests/{version}")),
                    digest = quote(&format!(".deploy/digests/{version}")),
                    entries = quote(&format!(".deploy/entries/{version}")),
                    sha256 = quote(sha256),
                    log = quote(&log_line(&LogEntry {
                        time: self.now,
                        action: LogAction::Stage,
                        from: None,
                        to: version.clone(),
                    })),
                    log_file = quote(RELEASE_LOG),
                ));
                Remote {
                    script,
                    input: Input::Manifest,
                }
            }
            Step::Switch {
                from,
                to,
                action,
                record,
            } => {
                let temporary = quote(&format!(".deploy/current.tmp.{}", self.run_id));
                let release = quote(&format!("releases/{to}"));
                let log = quote(&log_line(&LogEntry {
                    time: self.now,
                    action: *action,
                    from: from.clone(),
                    to: to.clone(),
                }));
                // A switch is never cut in half: stopping it (TERM) waits for it to finish.
                let mut script = format!(
                    "set -u\ntrap '' TERM INT HUP\n{enter}{APPEND_RECORD}\
                     [ -d {release} ] && [ -f {digest} ] || {{ echo 'release {to} is not complete on this host' >&2; exit 1; }}\n\
                     recorded_entries=\n\
                     [ ! -f {entries} ] || read -r recorded_entries < {entries} || true\n\
                     case $recorded_entries in ''|*[!0-9]*) ;; *)\n\
                     \x20 found=$(find {release}/ | wc -l)\n\
                     \x20 if [ \"$found\" -lt \"$recorded_entries\" ]; then\n\
                     \x20   rm -f -- {digest}\n\
                     \x20   echo \"release {to} is incomplete on this host ($found of $recorded_entries entries): it is no longer trusted, and the next push uploads it again\" >&2; exit 1\n\
                     \x20 fi;;\n\
                     esac\n\
                     rm -f -- {temporary}\n\
                     ln -s -- {release} {temporary} || exit 1\n",
                    digest = quote(&format!(".deploy/digests/{to}")),
                    entries = quote(&format!(".deploy/entries/{to}")),
                );
                let history = |audit: &Audit| {
                    format!(
                        "append_record .deploy/history.jsonl {}",
                        quote(&audit.record.to_line())
                    )
                };
                match record {
                    Some(audit) if audit.required => script.push_str(&format!(
                        "{} || {{ rm -f -- {temporary}; echo \"cannot append the history record to $b/.deploy/history.jsonl: current not switched\" >&2; exit 1; }}\n\
                         mv -Tf -- {temporary} current || {{ rm -f -- {temporary}; exit 1; }}\n\
                         append_record {log_file} {log} || echo {RELEASE_LOG_NOT_WRITTEN}\n",
                        history(audit),
                        log_file = quote(RELEASE_LOG),
                    )),
                    _ => {
                        script.push_str(&format!(
                            "mv -Tf -- {temporary} current || {{ rm -f -- {temporary}; exit 1; }}\n\
                             append_record {log_file} {log} || echo {RELEASE_LOG_NOT_WRITTEN}\n",
                            log_file = quote(RELEASE_LOG),
                        ));
                        if let Some(audit) = record {
                            script.push_str(&format!(
                                "{} || echo {HISTORY_NOT_WRITTEN}\n",
                                history(audit)
                            ));
                        }
                    }
                }
                Remote {
                    script,
                    input: Input::Nothing,
                }
            }
            Step::Retract { version, record } => {
                let mut script = format!(
                    "set -u\ntrap '' TERM INT HUP\n{enter}{APPEND_RECORD}\
                     [ \"$(readlink current 2>/dev/null)\" = {release} ] || {{ echo 'current does not point at {version}' >&2; exit 1; }}\n\
                     mv -Tf -- current {aside} || exit 1\n\
                     rm -f -- {aside}\n",
                    release = quote(&format!("releases/{version}")),
                    aside = quote(&format!(".deploy/current.retracted.{}", self.run_id)),
                );
                if let Some(audit) = record {
                    script.push_str(&format!(
                        "append_record .deploy/history.jsonl {} || echo {HISTORY_NOT_WRITTEN}\n",
                        quote(&audit.record.to_line())
                    ));
                }
                Remote {
                    script,
                    input: Input::Nothing,
                }
            }
            Step::Unlock { holder, kill } => Remote {
                // Only a holder whose PID, boot id and start time still match is signalled
                // (its whole process group); then the run's registered steps are stopped.
                script: format!(
                    "set -u\n{functions}{STOP_STEPS}b={base}\ncd -- \"$b\" || {{ echo \"cannot enter $b\" >&2; exit 1; }}\ncd .deploy || exit 1\n\
                     [ -d lock ] || {{ echo 'there is no lock' >&2; exit 1; }}\n\
                     current_holder=\n[ -f lock/holder ] && IFS= read -r current_holder < lock/holder\n\
                     [ \"$current_holder\" = {holder} ] || {{ echo \"the lock changed hands while unlocking (now: $current_holder)\" >&2; exit 1; }}\n\
                     {kill}stop_steps lock\nrm -rf lock || exit 1\n",
                    holder = quote(holder),
                    kill = if *kill {
                        "if holder_alive \"$current_holder\"; then\n\
                         \x20 holder_group=$(group_of \"${current_holder%% *}\")\n\
                         \x20 [ -n \"$holder_group\" ] && [ \"$holder_group\" -gt 1 ] && kill -TERM -\"$holder_group\" 2>/dev/null\n\
                         fi\n"
                    } else {
                        ""
                    },
                ),
                input: Input::Nothing,
            },
            Step::Hook {
                command,
                environment,
                ..
            } => Remote {
                script: self.in_release(environment, &format!("sh -c {}\n", quote(command))),
                input: Input::Nothing,
            },
            Step::Health {
                command,
                timeout_seconds,
                environment,
                ..
            } => Remote {
                script: self.in_release(
                    environment,
                    &format!(
                        "if command -v timeout >/dev/null 2>&1; then timeout {timeout_seconds} sh -c {command}; else sh -c {command}; fi\n",
                        command = quote(command),
                    ),
                ),
                input: Input::Nothing,
            },
            Step::Prune { versions } => {
                let mut script = format!(
                    "set -u\n{enter}t={trash}\nmkdir -p -- \"$t\" || exit 1\nlive=$(readlink current 2>/dev/null || true)\n",
                    trash = quote(&format!("{}-prune", self.staging())),
                );
                for version in versions {
                    script.push_str(&format!(
                        "[ \"$live\" != {release} ] || {{ echo 'refusing to prune the live release {version}' >&2; exit 1; }}\n\
                         if [ -e {release} ]; then mv -- {release} \"$t/\" || exit 1; fi\n\
                         rm -f -- {digest} {manifest} {entries}\n",
                        release = quote(&format!("releases/{version}")),
                        digest = quote(&format!(".deploy/digests/{version}")),
                        manifest = quote(&format!(".deploy/manifests/{version}")),
                        entries = quote(&format!(".deploy/entries/{version}")),
                    ));
                }
                // The releases already left `releases/` by rename; deleting their files can take
                // seconds, so it goes on in the background, detached from this session (a
                // leftover is removed by the next run's Prepare).
                script.push_str("rm -rf -- \"$t\" </dev/null >/dev/null 2>&1 &\n");
                Remote {
                    script,
                    input: Input::Nothing,
                }
            }
        }
    }

    /// Receives a release into staging: `source` (a shell command whose stdout is the .tar.gz)
    /// feeds `tar` and the digest at once (`openssl dgst`, several times faster with SHA
    /// instructions, when the host has it; `sha256sum` otherwise); the tree only becomes a release after the digest
    /// matched (Finalize).
    fn receive(&self, enter: &str, version: &Version, sha256: &str, source: &str) -> String {
        let staging = quote(&self.staging());
        // The digest is hex computed here, so it is safe unquoted in the message.
        let expected = sha256;
        let sha256 = quote(sha256);
        format!(
            "set -u\numask 022\n{enter}{PREPARE}s={staging}\n\
             rm -rf -- \"$s\" && mkdir -p -- \"$s/tree\" || exit 1\n\
             receive_source() {{\n{source}\n}}\n\
             if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then\n\
             \x20 digest_of_input() {{ openssl dgst -sha256 -r; }}\n\
             else\n\
             \x20 digest_of_input() {{ sha256sum; }}\n\
             fi\n\
             {{ {{ receive_source; echo $? > \"$s/source.status\"; }} | tee /dev/fd/3 | tar -xpzf - --no-same-owner -C \"$s/tree\" >&2; echo $? > \"$s/tar.status\"; }} 3>&1 | digest_of_input > \"$s/digest\"\n\
             read -r status < \"$s/source.status\" || status=unknown\n\
             [ \"$status\" = 0 ] || {{ echo \"receiving {version} failed (exit status $status)\" >&2; exit 1; }}\n\
             read -r status < \"$s/tar.status\" || status=unknown\n\
             read -r digest rest < \"$s/digest\" || digest=\n\
             if [ \"$digest\" != {sha256} ]; then\n\
             \x20 [ \"$status\" = 0 ] || echo \"extracting {version} failed (tar exit status $status)\" >&2\n\
             \x20 echo \"sha256 mismatch on the host: expected {expected}, got ${{digest:-nothing}}\" >&2; exit 1\n\
             fi\n\
             [ \"$status\" = 0 ] || {{ echo \"extracting {version} failed (tar exit status $status)\" >&2; exit 1; }}\n\
             find \"$s/tree\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n\
             rm -f -- \"$s/digest\" \"$s/tar.status\" \"$s/source.status\"\n"
        )
    }

    /// Prefix that exports the DEPLOY_* environment and enters the release directory.
    fn in_release(&self, environment: &HookEnvironment, body: &str) -> String {
        format!(
            "set -u\n{functions}b={base}\ncd -- \"$b\" || exit 1\n{REGISTER_STEP}\
             DEPLOY_BASE_DIR=$(pwd -P)\n\
             DEPLOY_RELEASE_DIR=\"$DEPLOY_BASE_DIR\"/{release}\n\
             DEPLOY_SERVICE={service}\nDEPLOY_HOST={host}\nDEPLOY_VERSION={version}\n\
             DEPLOY_PREVIOUS={previous}\nDEPLOY_RUN_ID={run_id}\n\
             export DEPLOY_BASE_DIR DEPLOY_RELEASE_DIR DEPLOY_SERVICE DEPLOY_HOST DEPLOY_VERSION DEPLOY_PREVIOUS DEPLOY_RUN_ID\n\
             cd -- \"$DEPLOY_RELEASE_DIR\" || exit 1\n{body}",
            base = quote(self.base_dir),
            release = quote(&format!("releases/{}", environment.version)),
            service = quote(&environment.service),
            host = quote(&environment.host),
            version = quote(environment.version.as_str()),
            previous = quote(
                environment
                    .previous
                    .as_ref()
                    .map(Version::as_str)
                    .unwrap_or("")
            ),
            run_id = quote(self.run_id),
            functions = crate::facts::PROCESS_FUNCTIONS,
        )
    }

    /// Stops the steps this run left running on the host (after a timeout or Ctrl-C abandoned
    /// one) and waits for them, so nothing else touches their paths while they still run.
    pub fn stop_steps(&self) -> String {
        format!(
            "{functions}{STOP_STEPS}b={base}\ncd -- \"$b\" 2>/dev/null || exit 0\nstop_steps .deploy/lock\n",
            functions = crate::facts::PROCESS_FUNCTIONS,
            base = quote(self.base_dir),
        )
    }

    /// Removes this run's staging directory (best effort after a failure).
    pub fn discard_staging(&self) -> String {
        format!(
            "b={base}\ncd -- \"$b\" 2>/dev/null && rm -rf -- {staging}\nexit 0\n",
            base = quote(self.base_dir),
            staging = quote(&self.staging()),
        )
    }

    /// Appends one audit record to `.deploy/history.jsonl` (ending a torn last line first);
    /// prints `HISTORY_NOT_WRITTEN` when the write fails. A fragment: `then` steps may follow.
    pub fn append_history(&self, record: &HistoryRecord) -> String {
        format!(
            "{APPEND_RECORD}( b={base}\n  cd -- \"$b\" && mkdir -p .deploy && append_record .deploy/history.jsonl {line} ) || echo {HISTORY_NOT_WRITTEN}\n",
            base = quote(self.base_dir),
            line = quote(&record.to_line()),
        )
    }
}

/// Line that ends the facts the lock script prints once the lock is taken.
pub const LOCK_FACTS_END: &str = "END-OF-FACTS";

/// The script that takes the service lock and keeps it while its stdin stays open.
///
/// It prints `LOCKED` and the service's facts (ended by `LOCK_FACTS_END`) once the lock is
/// ours, `HELD <holder line>` and exits 3 when another run holds it, or `ERROR <why>` and exits
/// 1 when the lock cannot be taken at all (read-only or full filesystem: never reported as
/// "held"). The lock is a directory (mkdir is atomic) with a holder file naming this shell's
/// PID, the operator, the run, the time, the boot id and the shell's start time; the shell then
/// waits on stdin. Closing stdin (release) or losing the SSH connection (controller killed)
/// ends `cat`; the shell then stops the steps its run left running (and waits for them) before
/// it removes the lock. A lock whose holder is gone (host rebooted, shell killed, PID reused by
/// another process) is stale and broken, under a second mkdir so two runs never both break and
/// take it.
pub fn lock_script(base_dir: &str, operator: &str, run_id: &str, now: u64) -> String {
    format!(
        r#"start=$(pwd)
{functions}{stop_steps}b={base}
mkdir -p -- "$b/.deploy" || {{ echo "ERROR cannot create $b/.deploy"; exit 1; }}
cd -- "$b/.deploy" || {{ echo "ERROR cannot enter $b/.deploy"; exit 1; }}
operator={operator}
run_id={run_id}
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null) || boot=-
me="$$ $operator $run_id {now} ${{boot:--}} $(start_of $$)"
take() {{
  problem=$(mkdir lock 2>&1) || return 1
  printf '%s\n' "$me" > lock/holder || {{ rm -rf lock; echo "ERROR cannot write $b/.deploy/lock/holder"; exit 1; }}
}}
# Someone else's lock: wait up to a second for a holder that is letting go (a dead
# controller's lock holder stops that run's steps before it removes the lock), break a stale
# one, or report the holder.
tries=0
while [ "$(cat lock/holder 2>/dev/null)" != "$me" ]; do
  if [ ! -d lock ]; then
    take && break
    [ -d lock ] || {{ printf 'ERROR cannot take the lock in %s/.deploy: %s\n' "$b" "$problem"; exit 1; }}
  fi
  holder=
  [ -f lock/holder ] && IFS= read -r holder < lock/holder
  if [ -z "$holder" ] && [ "$tries" -eq 0 ]; then sleep 1; tries=1; continue; fi
  # A break takes microseconds: a lock.break older than a minute was left by a crash.
  if [ -d lock.break ] && [ -n "$(find lock.break -maxdepth 0 -mmin +1 2>/dev/null)" ]; then rmdir lock.break 2>/dev/null; fi
  if ! holder_alive "$holder" && mkdir lock.break 2>/dev/null; then
    again=
    [ -f lock/holder ] && IFS= read -r again < lock/holder
    if [ "$again" = "$holder" ]; then stop_steps lock; rm -rf lock; fi
    rmdir lock.break
    continue
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 5 ]; then
    IFS= read -r holder < lock/holder 2>/dev/null
    printf 'HELD %s\n' "$holder"
    exit 3
  fi
  sleep 0.2 2>/dev/null || sleep 1
done
printf 'LOCKED\n'
( cd -- "$start" && {facts} )
printf '{end}\n'
cat >/dev/null
# Only our own lock is removed: `deploy unlock --force` may have broken it and another run taken it.
if [ "$(cat lock/holder 2>/dev/null)" = "$me" ]; then stop_steps lock; rm -rf lock; fi
exit 0
"#,
        base = quote(base_dir),
        operator = quote(operator),
        run_id = quote(run_id),
        facts = crate::facts::command(base_dir),
        end = LOCK_FACTS_END,
        functions = crate::facts::PROCESS_FUNCTIONS,
        stop_steps = STOP_STEPS,
    )
}

/// One record of `.deploy/history.jsonl` (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub time: String,
    pub id: String,
    pub operator: String,
    pub action: String,
    pub service: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub sha256: Option<String>,
    pub result: String,
    pub error: Option<String>,
}

impl HistoryRecord {
    /// The record as one JSON line of at most `HISTORY_LINE_LIMIT` bytes: long texts (a hook's
    /// stderr, tar errors on a full disk) are cut in the middle, keeping their start and end.
    pub fn to_line(&self) -> String {
        let mut record = self.clone();
        let mut room = 4 * 1024;
        loop {
            if let Some(error) = &record.error {
                record.error = Some(crate::text::shorten(error, room));
            }
            record.operator = crate::text::shorten(&record.operator, 256);
            let line = serde_json::to_string(&record).unwrap_or_else(|_| "{}".to_string());
            if line.len() <= HISTORY_LINE_LIMIT || room < 64 {
                return line;
            }
            room /= 2;
        }
    }
}

/// Relative link from `releases/<v>/<path>` to `shared/<path>`, seeding `shared/<path>` from
/// the release (or as an empty directory) the first time.
fn link_shared(path: &str) -> String {
    let depth = path.split('/').count();
    let target = format!("{}shared/{path}", "../".repeat(depth + 1));
    let shared = quote(&join("shared", path));
    let staged = format!("\"$s/tree/\"{}", quote(path));
    format!(
        "if [ ! -e {shared} ] && [ ! -L {shared} ]; then\n\
         \x20 mkdir -p -- \"$(dirname -- {shared})\" || exit 1\n\
         \x20 if [ -e {staged} ]; then cp -R -- {staged} {shared} || exit 1; else mkdir -p -- {shared} || exit 1; fi\n\
         fi\n\
         rm -rf -- {staged}\n\
         mkdir -p -- \"$(dirname -- {staged})\" || exit 1\n\
         ln -s -- {target} {staged} || exit 1\n",
        target = quote(&target),
    )
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
    /// Bytes that will be uploaded (0 when already staged).
    pub upload_bytes: u64,
}

/// The artifact as the planner needs it.
#[derive(Debug, Clone)]
pub struct Release<'a> {
    /// `fetch = "host"`: the hosts download it (the redacted URL, for descriptions).
    pub fetch_on_host: Option<String>,
    pub version: &'a Version,
    pub sha256: &'a str,
    pub size: u64,
    pub unpacked_size: u64,
}

/// Decides a push from a host's facts. Pure.
pub fn plan_push(
    facts: &Facts,
    release: &Release,
    keep_releases: usize,
    force: bool,
) -> PushDecision {
    let version = release.version;
    let live = facts.live().cloned();
    let existing = facts.releases.get(version);
    if live.as_ref() == Some(version) && existing.map(String::as_str) == Some(release.sha256) {
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
    let upload = existing.map(String::as_str) != Some(release.sha256);
    if upload && let Some(free) = facts.free_bytes {
        let needed = release.unpacked_size;
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
    if upload {
        stage.push(match &release.fetch_on_host {
            Some(source) => Step::Fetch {
                version: version.clone(),
                sha256: release.sha256.to_string(),
                source: source.clone(),
            },
            None => Step::Upload {
                version: version.clone(),
                sha256: release.sha256.to_string(),
                bytes: release.size,
            },
        });
        stage.push(Step::Finalize {
            version: version.clone(),
            sha256: release.sha256.to_string(),
            replace,
        });
    }
    let prune = prune_after(facts, version, live.as_ref(), keep_releases);
    PushDecision::Deploy(PushPlan {
        from: live,
        to: version.clone(),
        stage,
        prune,
        upload_bytes: if upload && release.fetch_on_host.is_none() {
            release.size
        } else {
            0
        },
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
    use crate::facts;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

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
        facts::parse(&text).expect("facts parse")
    }

    fn release<'a>(version: &'a Version, sha256: &'a str) -> Release<'a> {
        Release {
            fetch_on_host: None,
            version,
            sha256,
            size: 100,
            unpacked_size: 1000,
        }
    }

    #[test]
    fn fresh_host_uploads_and_switches() {
        let facts = facts::parse("base absent\n").expect("parse");
        let v1 = version("v1");
        let PushDecision::Deploy(plan) = plan_push(&facts, &release(&v1, SHA_A), 5, false) else {
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
            plan_push(&facts, &release(&v1, SHA_A), 5, false),
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
        let PushDecision::Deploy(plan) = plan_push(&facts, &release(&v2, SHA_B), 5, false) else {
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
            plan_push(&facts, &release(&v2, SHA_B), 5, false),
            PushDecision::Refused(reason) if reason.contains("immutable")
        ));
        let PushDecision::Deploy(plan) = plan_push(&facts, &release(&v2, SHA_B), 5, true) else {
            panic!("expected a forced deploy");
        };
        assert!(matches!(
            plan.stage[1],
            Step::Finalize { replace: true, .. }
        ));
        let v1 = version("v1");
        assert!(matches!(
            plan_push(&facts, &release(&v1, SHA_B), 5, true),
            PushDecision::Refused(reason) if reason.contains("live")
        ));
    }

    #[test]
    fn too_little_disk_is_refused_before_upload() {
        let mut facts = host(None, &[], &[]);
        facts.free_bytes = Some(10);
        let v1 = version("v1");
        assert!(matches!(
            plan_push(&facts, &release(&v1, SHA_A), 5, false),
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
    fn lowered_scripts_quote_every_value() {
        let shared = vec!["config/app.env".to_string()];
        let lowering = Lowering {
            base_dir: "/srv/it's here",
            run_id: "run-1",
            shared_paths: &shared,
            now: 7,
        };
        let script = lowering
            .lower(&Step::Switch {
                from: None,
                to: version("v1"),
                action: LogAction::Push,
                record: None,
            })
            .script;
        assert!(script.contains("b='/srv/it'\\''s here'"), "{script}");
        assert!(
            script.contains("mv -Tf -- '.deploy/current.tmp.run-1' current"),
            "{script}"
        );
        assert!(!script.contains("ln -sfn"));
        let finalize = lowering.lower(&Step::Finalize {
            version: version("v1"),
            sha256: SHA_A.to_string(),
            replace: false,
        });
        assert_eq!(finalize.input, Input::Manifest);
        assert!(
            finalize.script.contains("'../../../shared/config/app.env'"),
            "{}",
            finalize.script
        );
    }

    /// Runs the lowered scripts with a local `sh` in a temp dir: the layout they produce is the
    /// one the facts script reads back.
    #[test]
    fn lowered_scripts_build_the_layout_locally() {
        let directory = tempfile::tempdir().expect("tempdir");
        let run = |script: &str, input: &[u8]| {
            use std::io::Write;
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(directory.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("sh runs");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input)
                .expect("write stdin");
            let output = child.wait_with_output().expect("sh finishes");
            assert!(
                output.status.success(),
                "script failed: {}\n{script}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        // A tiny release tarball made by the system tar.
        let source = directory.path().join("source");
        std::fs::create_dir_all(source.join("log")).expect("mkdir");
        std::fs::write(source.join("index.html"), "hello").expect("write");
        let tarball = std::process::Command::new("tar")
            .args(["-czf", "-", "-C"])
            .arg(&source)
            .arg(".")
            .output()
            .expect("tar runs")
            .stdout;
        use sha2::Digest;
        let sha256 = format!("{:x}", sha2::Sha256::digest(&tarball));

        let shared = vec!["log".to_string()];
        let lowering = Lowering {
            base_dir: "app",
            run_id: "run-1",
            shared_paths: &shared,
            now: 5,
        };
        let v1 = version("v1");
        run(&lowering.lower(&Step::Prepare).script, b"");
        run(
            &lowering
                .lower(&Step::Upload {
                    version: v1.clone(),
                    sha256: sha256.clone(),
                    bytes: 0,
                })
                .script,
            &tarball,
        );
        run(
            &lowering
                .lower(&Step::Finalize {
                    version: v1.clone(),
                    sha256: sha256.clone(),
                    replace: false,
                })
                .script,
            b"deploy-manifest 1\n",
        );
        run(
            &lowering
                .lower(&Step::Switch {
                    from: None,
                    to: v1.clone(),
                    action: LogAction::Push,
                    record: None,
                })
                .script,
            b"",
        );
        let facts = facts::parse(&run(&facts::command("app"), b"")).expect("facts");
        assert_eq!(facts.live(), Some(&v1));
        assert_eq!(facts.releases[&v1], sha256);
        let app = directory.path().join("app");
        assert_eq!(
            std::fs::read_link(app.join("current")).expect("current link"),
            std::path::PathBuf::from("releases/v1")
        );
        assert_eq!(
            std::fs::read_to_string(app.join("current/index.html")).expect("release file"),
            "hello"
        );
        assert_eq!(
            std::fs::read_link(app.join("releases/v1/log")).expect("shared link"),
            std::path::PathBuf::from("../../shared/log")
        );
        assert!(app.join("current/log").is_dir(), "the shared link resolves");
        // Without a usable openssl the digest comes from sha256sum, with the same result.
        let fake = directory.path().join("fake-bin");
        std::fs::create_dir_all(&fake).expect("mkdir");
        std::fs::write(fake.join("openssl"), "#!/bin/sh\nexit 1\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fake.join("openssl"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let path = format!(
            "{}:{}",
            fake.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(
                lowering
                    .lower(&Step::Upload {
                        version: version("v3"),
                        sha256: sha256.clone(),
                        bytes: 0,
                    })
                    .script,
            )
            .env("PATH", path)
            .current_dir(directory.path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&tarball).expect("write stdin");
        }
        let fallback = child.wait_with_output().expect("sh finishes");
        assert!(
            fallback.status.success(),
            "sha256sum fallback: {}",
            String::from_utf8_lossy(&fallback.stderr)
        );
        // A corrupted upload is refused by the digest check and leaves no release behind.
        let bad = lowering.lower(&Step::Upload {
            version: version("v2"),
            sha256: "0".repeat(64),
            bytes: 0,
        });
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&bad.script)
            .current_dir(directory.path())
            .stdin(
                std::fs::File::open(directory.path().join("app/releases/v1/index.html"))
                    .expect("open"),
            )
            .output()
            .expect("sh runs");
        assert!(!output.status.success());
        assert!(!app.join("releases/v2").exists());
    }

    /// A lock that cannot be created (here: `lock` is a dangling link, as a read-only or
    /// broken filesystem would refuse it) is an error naming why, never "held".
    #[test]
    fn a_lock_that_cannot_be_created_is_an_error_not_held() {
        let directory = tempfile::tempdir().expect("tempdir");
        let deploy = directory.path().join("app/.deploy");
        std::fs::create_dir_all(&deploy).expect("mkdir");
        std::os::unix::fs::symlink("/nonexistent/target", deploy.join("lock")).expect("symlink");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(lock_script("app", "alice@laptop", "run-1", 7))
            .current_dir(directory.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.starts_with("ERROR cannot take the lock in app/.deploy: "),
            "{stdout}"
        );
        assert!(!stdout.contains("HELD"), "{stdout}");
    }

    /// A holder line whose PID now belongs to another process (other start time) is stale:
    /// the lock is broken and taken, and that process is never signalled.
    #[test]
    fn a_reused_holder_pid_is_stale_and_never_signalled() {
        let directory = tempfile::tempdir().expect("tempdir");
        let deploy = directory.path().join("app/.deploy/lock");
        std::fs::create_dir_all(&deploy).expect("mkdir");
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep runs");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
        std::fs::write(
            deploy.join("holder"),
            format!(
                "{} ghost@nowhere old-run 1 {} 1\n",
                stranger.id(),
                boot.trim()
            ),
        )
        .expect("write holder");
        let mut taking = std::process::Command::new("sh")
            .arg("-c")
            .arg(lock_script("app", "alice@laptop", "run-2", 7))
            .current_dir(directory.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut first = String::new();
        {
            use std::io::BufRead;
            let stdout = taking.stdout.take().expect("stdout");
            std::io::BufReader::new(stdout)
                .read_line(&mut first)
                .expect("first line");
        }
        drop(taking.stdin.take());
        let _ = taking.wait();
        assert_eq!(first, "LOCKED\n");
        assert!(
            stranger.try_wait().expect("status").is_none(),
            "the process that reused the PID was signalled"
        );
        let _ = stranger.kill();
        let _ = stranger.wait();
    }

    #[test]
    fn the_lock_script_excludes_a_second_holder_and_breaks_a_dead_one() {
        let directory = tempfile::tempdir().expect("tempdir");
        // A dead holder: PID that cannot exist; plus a lock.break left by a crash long ago.
        std::fs::create_dir_all(directory.path().join("app/.deploy/lock")).expect("mkdir");
        let leftover = directory.path().join("app/.deploy/lock.break");
        std::fs::create_dir_all(&leftover).expect("mkdir lock.break");
        let long_ago = std::fs::FileTimes::new()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600));
        std::fs::File::open(&leftover)
            .and_then(|directory| directory.set_times(long_ago))
            .expect("age lock.break");
        std::fs::write(
            directory.path().join("app/.deploy/lock/holder"),
            "999999999 ghost@nowhere old-run 1\n",
        )
        .expect("write");
        let script = lock_script("app", "alice@laptop", "run-2", 10);
        // While held, the holder line carries the plain operator and run id.
        let mut holding = std::process::Command::new("sh")
            .arg("-c")
            .arg(lock_script("held", "alice@laptop", "run-1", 7))
            .current_dir(directory.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let holder_file = directory.path().join("held/.deploy/lock/holder");
        let mut waited = 0;
        while !holder_file.exists() && waited < 500 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        let holder = std::fs::read_to_string(&holder_file).expect("holder written");
        // PID, operator, run, time, boot id, start time of the holding shell.
        let fields: Vec<&str> = holder.trim_end().split(' ').collect();
        assert_eq!(fields.len(), 6, "{holder:?}");
        assert_eq!(fields[1..4], ["alice@laptop", "run-1", "7"], "{holder:?}");
        assert!(fields[5].parse::<u64>().is_ok(), "start time: {holder:?}");
        drop(holding.stdin.take());
        assert!(holding.wait().expect("exits").success());
        assert!(!holder_file.exists(), "released when stdin closes");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(directory.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("LOCKED\n") && stdout.ends_with("END-OF-FACTS\n"),
            "{stdout} / stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let facts_text = &stdout["LOCKED\n".len()..stdout.len() - "END-OF-FACTS\n".len()];
        let facts = crate::facts::parse(facts_text).expect("facts under the lock parse");
        assert!(facts.base_exists);
        assert_eq!(
            facts.lock.map(|lock| lock.run_id),
            Some("run-2".to_string())
        );
        assert!(
            !directory.path().join("app/.deploy/lock").exists(),
            "released at stdin EOF"
        );

        // A live holder: this test process's own PID.
        std::fs::create_dir_all(directory.path().join("app/.deploy/lock")).expect("mkdir");
        std::fs::write(
            directory.path().join("app/.deploy/lock/holder"),
            format!("{} bob@desk run-1 1700000000\n", std::process::id()),
        )
        .expect("write");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(directory.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("HELD {} bob@desk run-1 1700000000\n", std::process::id())
        );
        assert!(
            directory.path().join("app/.deploy/lock/holder").exists(),
            "not broken"
        );
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
