//! Steps: every `plan::Step` lowered to the exact `sh` script (and stdin stream) sent to a host,
//! plus the programs around them: stopping the steps a run abandoned, discarding its staging,
//! and appending a history record.
//!
//! Owns the shell pieces the steps share: registering a running step in the lock directory (so
//! an abandoned one can be stopped), `stop_steps`, `append_record` (append-only logs that survive
//! a torn last line) and the markers a step prints when it changed the host but could not write
//! its record. Scripts run inside `<base_dir>` (see `layout`).

use super::history::HistoryRecord;
use super::layout::{self, within_state};
use super::process::{PROCESS_FUNCTIONS, stop_steps_function};
use super::script::{Script, join, quote, script};
use super::state::{LogAction, LogEntry, log_line};
use super::step::{Audit, HookEnvironment, Step};
use crate::inventory::Version;
use crate::manifest::Sha256;

/// Printed on stdout by a step that did its change but could not append its history record.
pub const HISTORY_NOT_WRITTEN: &str = "deploy-history-not-written";
/// Printed on stdout by a switch that changed `current` but could not append the release log.
pub const RELEASE_LOG_NOT_WRITTEN: &str = "deploy-release-log-not-written";

/// Creates the layout and removes what earlier runs left behind (run inside `<base_dir>`, under
/// the lock): staging directories, temporary links, and release directories that never got
/// their digest (a run stopped between rename and digest cannot leave one today, but an older
/// run could) unless `current` names them. Part of every upload, and a step of its own when
/// nothing is uploaded. Shell tests first: `mkdir`, `readlink` and `rm` only start when there
/// is something to do (each is a process on every host of every push).
pub(super) fn prepare() -> Script {
    script!(
        "[ -d {staging} ] && [ -d {digests} ] && [ -d {manifests} ] && [ -d {releases} ] && [ -d {shared} ] || mkdir -p {staging} {digests} {manifests} {releases} {shared} || exit 1\n\
         live= live_read=\n\
         for d in {releases}/*; do\n\
         \x20 [ -d \"$d\" ] && [ ! -L \"$d\" ] && [ ! -f \"{digests}/${{d#{releases}/}}\" ] || continue\n\
         \x20 [ -n \"$live_read\" ] || {{ live=$(readlink {current} 2>/dev/null || true); live_read=yes; }}\n\
         \x20 [ \"$d\" != \"$live\" ] || continue\n\
         \x20 mv -- \"$d\" \"{staging}/incomplete.${{d#{releases}/}}.$$\" || exit 1\n\
         done\n\
         for f in {staging}/* {current_temporary}*; do\n\
         \x20 [ -e \"$f\" ] || [ -L \"$f\" ] || continue\n\
         \x20 rm -rf {staging}/* {current_temporary}* 2>/dev/null || true\n\
         \x20 break\n\
         done\n",
        staging = layout::STAGING,
        digests = layout::DIGESTS,
        manifests = layout::MANIFESTS,
        releases = layout::RELEASES,
        shared = layout::SHARED,
        current = layout::CURRENT,
        current_temporary = layout::CURRENT_TEMPORARY,
    )
}

/// Starts a step under its run's lock, or not at all. A step only runs while the lock is held
/// by its run (`run_id` in the holder line): a late step of a run that lost its lock (its
/// controller died, `unlock --force`) never touches a host another run now works on. The step
/// then registers (its process group and the group leader's start time) in the lock directory,
/// so that whoever abandons it (the executor after a timeout or Ctrl-C, the lock holder when
/// the controller's connection ends, `unlock --force`) can stop it and wait for it; and, after
/// registering, it exits if a stop already fenced it off (it started after the stop looked).
/// Run inside `<base_dir>`; the record is removed when the step's shell exits.
fn register_step(run_id: &str, number: u64) -> Script {
    script!(
        "step_holder=\n\
         [ ! -f {holder} ] || IFS= read -r step_holder < {holder} || true\n\
         case \" $step_holder \" in *\" \"{run}\" \"*) ;; *) echo \"this run no longer holds the lock on this host: step not started\" >&2; exit 1;; esac\n\
         proc_stat $$; step_group=$proc_group\n\
         proc_stat \"$step_group\"\n\
         step_record=\"$(pwd -P)/{lock}/{step}$$\"\n\
         printf '%s %s\\n' \"$step_group\" \"$proc_start\" > \"$step_record\" 2>/dev/null || step_record=\n\
         trap '[ -z \"$step_record\" ] || rm -f -- \"$step_record\"' EXIT\n\
         step_fence=\n\
         [ ! -f {lock}/{fence} ] || IFS= read -r step_fence < {lock}/{fence} || true\n\
         case $step_fence in ''|*[!0-9]*) ;; *) [ {number} -gt \"$step_fence\" ] || {{ echo \"step stopped before it started\" >&2; exit 1; }};; esac\n",
        holder = layout::LOCK_HOLDER,
        run = quote(run_id),
        lock = layout::LOCK,
        step = layout::STEP_RECORD,
        fence = layout::STEP_FENCE,
        number = &number,
    )
}

/// `append_record FILE LINE`: appends one line to an append-only log (history, release log),
/// first ending a line that an interrupted write left without its newline, so a torn record
/// never swallows the next one. Fails when the write fails (disk full).
const APPEND_RECORD: &str = r#"append_record() {
  if [ -s "$1" ] && [ -n "$(tail -c 1 -- "$1")" ]; then printf '\n' >> "$1" || return 1; fi
  printf '%s\n' "$2" >> "$1"
}
"#;

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
    /// A tar stream of some of the artifact's members, built by the controller (`Delta`,
    /// `Repair`: the members come from the step).
    Members,
    /// NUL-separated paths the step reads (`Verify`: the files to hash), from the executor.
    Paths,
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
    /// `shared_files`: files in `shared/` linked into every release (they must exist).
    pub shared_files: &'a [String],
    /// Unix seconds, recorded in the release log.
    pub now: u64,
    /// This step's number in the run on this host (increasing): a stop fences off every step
    /// numbered at or below the one it abandons (`stop_steps`).
    pub step_number: u64,
}

/// From this size on, a received artifact is hashed with `openssl dgst` rather than
/// `sha256sum` (see `Lowering::receive`): below it, openssl's start costs more than its speed
/// saves (measured: ~6 ms per start against ~3.6 ms per MB saved).
pub const OPENSSL_FROM_BYTES: u64 = 4 * 1024 * 1024;

/// Downloads the artifact on the host (`fetch = "host"`): the URL comes on stdin, never in a
/// command line.
const DOWNLOAD: &str = "IFS= read -r url || exit 90\n\
     if command -v curl >/dev/null 2>&1; then printf 'url = \"%s\"\\n' \"$url\" | curl -fsSL --retry 2 --config -\n\
     elif command -v wget >/dev/null 2>&1; then printf '%s\\n' \"$url\" | wget -q -O - -i -\n\
     else echo 'neither curl nor wget is installed on this host' >&2; exit 92; fi";

impl Lowering<'_> {
    /// The exact script (and input) for `step`.
    pub fn lower(&self, step: &Step) -> Remote {
        let (script, input) = match step {
            Step::Prepare => (
                script!(
                    "set -u\numask 022\nb={base}\nmkdir -p -- \"$b\" || exit 1\n{enter}{prepare}",
                    base = quote(self.base_dir),
                    enter = self.enter(),
                    prepare = prepare(),
                ),
                Input::Nothing,
            ),
            Step::Upload {
                sha256,
                version,
                tar_strip,
                bytes,
            } => (
                self.receive(version, sha256, None, *bytes, *tar_strip),
                Input::Artifact,
            ),
            Step::Fetch {
                sha256,
                version,
                tar_strip,
                ..
            } => (
                // A download's size is the server's to tell: the fast digest for any size.
                self.receive(version, sha256, Some(DOWNLOAD), u64::MAX, *tar_strip),
                Input::Url,
            ),
            Step::Delta {
                version,
                base,
                reuse,
                compress,
                ..
            } => (
                self.receive_delta(version, base, *reuse, *compress),
                Input::Members,
            ),
            Step::Verify { .. } => (self.scan_staged(), Input::Paths),
            Step::Repair {
                version, compress, ..
            } => (self.repair(version, *compress), Input::Members),
            Step::Finalize {
                version,
                sha256,
                replace,
                staged_manifest,
            } => (
                self.finalize(version, sha256, *replace, *staged_manifest),
                if *staged_manifest {
                    Input::Nothing
                } else {
                    Input::Manifest
                },
            ),
            Step::Switch {
                from,
                to,
                action,
                record,
            } => (self.switch(from, to, *action, record), Input::Nothing),
            Step::Retract { version, record } => (self.retract(version, record), Input::Nothing),
            Step::Unlock { holder, kill } => (unlock(self.base_dir, holder, *kill), Input::Nothing),
            Step::Hook {
                command,
                environment,
                ..
            } => (
                self.in_release(
                    environment,
                    script!("sh -c {command}\n", command = quote(command)),
                ),
                Input::Nothing,
            ),
            Step::Health {
                command,
                timeout_seconds,
                environment,
                ..
            } => (
                self.in_release(
                    environment,
                    script!(
                        "if command -v timeout >/dev/null 2>&1; then timeout {timeout_seconds} sh -c {command}; else sh -c {command}; fi\n",
                        timeout_seconds = timeout_seconds,
                        command = quote(command),
                    ),
                ),
                Input::Nothing,
            ),
            Step::Prune { versions } => (self.prune(versions), Input::Nothing),
        };
        Remote {
            script: script.into_string(),
            input,
        }
    }

    /// Enters `<base_dir>` and registers the step (the start of most steps).
    pub(super) fn enter(&self) -> Script {
        script!(
            "{functions}b={base}\ncd -- \"$b\" || {{ echo \"cannot enter $b\" >&2; exit 1; }}\n{register_step}",
            functions = PROCESS_FUNCTIONS,
            base = quote(self.base_dir),
            register_step = register_step(self.run_id, self.step_number),
        )
    }

    /// Receives a release into staging: the .tar.gz comes on stdin (`source` `None`) or from
    /// `source` (a shell command whose stdout is the .tar.gz), and feeds `tar` and the digest at
    /// once; the tree only becomes a release after the digest matched (Finalize). The digest:
    /// `openssl dgst` is several times faster with SHA instructions but costs ~6 ms to start
    /// (twice, with the check that it works), `sha256sum` starts in ~1.5 ms: below
    /// [`OPENSSL_FROM_BYTES`] `sha256sum` is preferred, from there on `openssl` (each falls back
    /// on the other). `tar_strip` leading names are dropped from every member
    /// (`--strip-components`, for `strip_components`).
    fn receive(
        &self,
        version: &Version,
        sha256: &Sha256,
        source: Option<&'static str>,
        bytes: u64,
        tar_strip: usize,
    ) -> Script {
        let strip = if tar_strip > 0 {
            script!(" --strip-components={tar_strip}", tar_strip = &tar_strip)
        } else {
            script!("")
        };
        let digest = if bytes >= OPENSSL_FROM_BYTES {
            script!(
                "if command -v openssl >/dev/null 2>&1 && openssl dgst -sha256 -r </dev/null >/dev/null 2>&1; then\n\
                 \x20 digest_of_input() {{ openssl dgst -sha256 -r; }}\n\
                 else\n\
                 \x20 digest_of_input() {{ sha256sum; }}\n\
                 fi\n"
            )
        } else {
            script!(
                "if command -v sha256sum >/dev/null 2>&1; then\n\
                 \x20 digest_of_input() {{ sha256sum; }}\n\
                 else\n\
                 \x20 digest_of_input() {{ openssl dgst -sha256 -r; }}\n\
                 fi\n"
            )
        };
        let (receive, source_status) = match source {
            Some(source) => (
                script!(
                    "receive_source() {{\n{source}\n}}\n\
                     {{ {{ receive_source; echo $? > \"$s/source.status\"; }} | tee /dev/fd/3 | tar -xpzf - --no-same-owner{strip} -C \"$s/tree\" >&2; echo $? > \"$s/tar.status\"; }} 3>&1 | digest_of_input > \"$s/digest\"\n\
                     read -r status < \"$s/source.status\" || status=unknown\n\
                     [ \"$status\" = 0 ] || {{ echo \"receiving {version} failed (exit status $status)\" >&2; exit 1; }}\n",
                    source = source,
                    strip = &strip,
                    version = version,
                ),
                script!(" \"$s/source.status\""),
            ),
            None => (
                script!(
                    "{{ tee /dev/fd/3 | tar -xpzf - --no-same-owner{strip} -C \"$s/tree\" >&2; echo $? > \"$s/tar.status\"; }} 3>&1 | digest_of_input > \"$s/digest\"\n",
                    strip = &strip,
                ),
                script!(""),
            ),
        };
        script!(
            "set -u\numask 022\n{enter}{prepare}s={staging}\n\
             [ ! -e \"$s\" ] || rm -rf -- \"$s\" || exit 1\n\
             mkdir -p -- \"$s/tree\" || exit 1\n\
             {digest}{receive}\
             read -r status < \"$s/tar.status\" || status=unknown\n\
             read -r digest rest < \"$s/digest\" || digest=\n\
             if [ \"$digest\" != {sha256} ]; then\n\
             \x20 [ \"$status\" = 0 ] || echo \"extracting {version} failed (tar exit status $status)\" >&2\n\
             \x20 echo \"sha256 mismatch on the host: expected {expected}, got ${{digest:-nothing}}\" >&2; exit 1\n\
             fi\n\
             [ \"$status\" = 0 ] || {{ echo \"extracting {version} failed (tar exit status $status)\" >&2; exit 1; }}\n\
             find \"$s/tree\" ! -type l -perm -0002 -exec chmod o-w {{}} + || exit 1\n\
             {record}rm -f -- \"$s/stamp\" \"$s/digest\" \"$s/tar.status\"{source_status}\n",
            enter = self.enter(),
            prepare = prepare(),
            staging = quote(&layout::staging(self.run_id)),
            digest = &digest,
            receive = &receive,
            version = version,
            sha256 = quote(sha256),
            expected = sha256,
            record = super::delta::record_identities(false),
            source_status = &source_status,
        )
    }

    /// Links shared paths, records manifest, entry count and digest, and renames the staged
    /// tree into `releases/<version>` (replacing the existing one when `replace`).
    fn finalize(
        &self,
        version: &Version,
        sha256: &Sha256,
        replace: bool,
        staged_manifest: bool,
    ) -> Script {
        let release = quote(&layout::release(version));
        let mut script = script!(
            "set -u\numask 022\n{enter}{append_record}s={staging}\n\
             [ -d \"$s/tree\" ] || {{ echo 'the staged release is missing' >&2; exit 1; }}\n{manifest}",
            enter = self.enter(),
            append_record = APPEND_RECORD,
            staging = quote(&layout::staging(self.run_id)),
            manifest = if staged_manifest {
                script!(
                    "[ -f \"$s/manifest\" ] || {{ echo 'the manifest did not come with the delta' >&2; exit 1; }}\n"
                )
            } else {
                script!("cat > \"$s/manifest\" || exit 1\n")
            },
        );
        for path in self.shared_paths {
            script.push(link_shared(path));
        }
        for path in self.shared_files {
            script.push(link_shared_file(path));
        }
        if replace {
            script.push(script!(
                "if [ -e {release} ]; then mv -- {release} \"$s/replaced\" || exit 1; fi\n\
                 rm -f -- {digest}\n",
                release = &release,
                digest = quote(&layout::digest(version)),
            ));
        } else {
            script.push(script!(
                "[ ! -e {release} ] || {{ echo 'release {version} already exists' >&2; exit 1; }}\n",
                release = &release,
                version = version,
            ));
        }
        // The digest file names the release complete; before it, the number of entries the
        // finished tree holds, which a switch re-counts before trusting the release.
        script.push(script!(
            "mv -f -- \"$s/manifest\" {manifest} || exit 1\n\
             [ ! -e {identities} ] && [ ! -L {identities} ] || rm -f -- {identities}\n\
             [ ! -e {relisted} ] && [ ! -L {relisted} ] || rm -f -- {relisted}\n\
             [ ! -f \"$s/identities\" ] || {{ {{ [ -d {identities_directory} ] || mkdir -p {identities_directory}; }} && mv -f -- \"$s/identities\" {identities}; }} || exit 1\n\
             {{ [ -d {entries_directory} ] || mkdir -p {entries_directory}; }} && find \"$s/tree\" | wc -l > {entries} || exit 1\n\
             printf '%s\\n' {sha256} > \"$s/digest.new\" || exit 1\n\
             mv -f -- \"$s/digest.new\" {digest} || exit 1\n\
             mv -- \"$s/tree\" {release} || exit 1\n\
             append_record {log_file} {log} || exit 1\n\
             rm -rf -- \"$s\"\n",
            manifest = quote(&layout::manifest(version)),
            identities = quote(&layout::identities(version)),
            relisted = quote(&layout::relisted(version)),
            identities_directory = layout::IDENTITIES,
            entries_directory = layout::ENTRIES,
            entries = quote(&layout::entries(version)),
            sha256 = quote(sha256),
            digest = quote(&layout::digest(version)),
            release = &release,
            log_file = quote(layout::RELEASE_LOG),
            log = quote(&log_line(&LogEntry {
                time: self.now,
                action: LogAction::Stage,
                from: None,
                to: version.clone(),
            })),
        ));
        script
    }

    /// Points `current` at `releases/<to>` by renaming a new symlink over it, re-counting the
    /// release's entries first, and appends the history record in the same command.
    fn switch(
        &self,
        from: &Option<Version>,
        to: &Version,
        action: LogAction,
        record: &Option<Audit>,
    ) -> Script {
        let temporary = quote(&layout::current_temporary(self.run_id));
        let release = quote(&layout::release(to));
        let log = quote(&log_line(&LogEntry {
            time: self.now,
            action,
            from: from.clone(),
            to: to.clone(),
        }));
        // A switch is never cut in half: stopping it (TERM) waits for it to finish.
        let mut script = script!(
            "set -u\ntrap '' TERM INT HUP\n{enter}{append_record}\
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
             [ ! -e {temporary} ] && [ ! -L {temporary} ] || rm -f -- {temporary}\n\
             ln -s -- {release} {temporary} || exit 1\n",
            enter = self.enter(),
            append_record = APPEND_RECORD,
            release = &release,
            digest = quote(&layout::digest(to)),
            to = to,
            entries = quote(&layout::entries(to)),
            temporary = &temporary,
        );
        let rename = script!(
            "mv -Tf -- {temporary} {current} || {{ rm -f -- {temporary}; exit 1; }}\n\
             append_record {log_file} {log} || echo {release_log_not_written}\n",
            temporary = &temporary,
            current = layout::CURRENT,
            log_file = quote(layout::RELEASE_LOG),
            log = &log,
            release_log_not_written = RELEASE_LOG_NOT_WRITTEN,
        );
        match record {
            Some(audit) if audit.required => script.push(script!(
                "{append} || {{ rm -f -- {temporary}; echo \"cannot append the history record to $b/{history}: current not switched\" >&2; exit 1; }}\n\
                 {rename}",
                append = append_history_line(&audit.record.to_line()),
                temporary = &temporary,
                history = layout::HISTORY,
                rename = rename,
            )),
            Some(audit) => script.push(rename).push(script!(
                "{append} || echo {history_not_written}\n",
                append = append_history_line(&audit.record.to_line()),
                history_not_written = HISTORY_NOT_WRITTEN,
            )),
            None => script.push(rename),
        };
        script
    }

    /// Undoes a first deploy: moves `current` aside by rename (and removes it), leaving the host
    /// as it was before it had a live release.
    fn retract(&self, version: &Version, record: &Option<Audit>) -> Script {
        let mut script = script!(
            "set -u\ntrap '' TERM INT HUP\n{enter}{append_record}\
             [ \"$(readlink {current} 2>/dev/null)\" = {release} ] || {{ echo 'current does not point at {version}' >&2; exit 1; }}\n\
             mv -Tf -- {current} {aside} || exit 1\n\
             rm -f -- {aside}\n",
            enter = self.enter(),
            append_record = APPEND_RECORD,
            current = layout::CURRENT,
            release = quote(&layout::release(version)),
            version = version,
            aside = quote(&layout::current_retracted(self.run_id)),
        );
        if let Some(audit) = record {
            script.push(script!(
                "{append} || echo {history_not_written}\n",
                append = append_history_line(&audit.record.to_line()),
                history_not_written = HISTORY_NOT_WRITTEN,
            ));
        }
        script
    }

    /// Moves the releases out of `releases/` by rename (never the live one), then deletes their
    /// files in the background.
    fn prune(&self, versions: &[Version]) -> Script {
        let mut script = script!(
            "set -u\n{enter}t={trash}\nmkdir -p -- \"$t\" || exit 1\nlive=$(readlink {current} 2>/dev/null || true)\n",
            enter = self.enter(),
            trash = quote(&layout::pruned(self.run_id)),
            current = layout::CURRENT,
        );
        for version in versions {
            script.push(script!(
                "[ \"$live\" != {release} ] || {{ echo 'refusing to prune the live release {version}' >&2; exit 1; }}\n\
                 if [ -e {release} ]; then mv -- {release} \"$t/\" || exit 1; fi\n\
                 rm -f -- {digest} {manifest} {entries} {identities} {relisted}\n",
                release = quote(&layout::release(version)),
                version = version,
                digest = quote(&layout::digest(version)),
                manifest = quote(&layout::manifest(version)),
                entries = quote(&layout::entries(version)),
                identities = quote(&layout::identities(version)),
                relisted = quote(&layout::relisted(version)),
            ));
        }
        // Deleting a pruned release's hard links changes the ctime of the files the live
        // release shares with it: the live release's files are listed before and after, so
        // that its identity record still vouches for them (`remote::delta`).
        let (relist_before, relist_after) =
            super::delta::relist_around_prune(&layout::relisting(self.run_id));
        script.push(relist_before);
        // The releases already left `releases/` by rename; deleting their files can take
        // seconds, so it goes on in the background, detached from this session (a leftover is
        // removed by the next run's Prepare), and the listing after it with it.
        script.push(script!(
            "( rm -rf -- \"$t\"\n{relist_after}) </dev/null >/dev/null 2>&1 &\n",
            relist_after = relist_after,
        ));
        script
    }

    /// Exports the inventory's variables and the DEPLOY_* environment, enters the release directory and runs `body`.
    fn in_release(&self, environment: &HookEnvironment, body: Script) -> Script {
        script!(
            "set -u\n{functions}b={base}\ncd -- \"$b\" || exit 1\n{register_step}{variables}\
             DEPLOY_BASE_DIR=$(pwd -P)\n\
             DEPLOY_RELEASE_DIR=\"$DEPLOY_BASE_DIR\"/{release}\n\
             DEPLOY_SERVICE={service}\nDEPLOY_HOST={host}\nDEPLOY_VERSION={version}\n\
             DEPLOY_PREVIOUS={previous}\nDEPLOY_RUN_ID={run_id}\n\
             export DEPLOY_BASE_DIR DEPLOY_RELEASE_DIR DEPLOY_SERVICE DEPLOY_HOST DEPLOY_VERSION DEPLOY_PREVIOUS DEPLOY_RUN_ID\n\
             cd -- \"$DEPLOY_RELEASE_DIR\" || exit 1\n{body}",
            functions = PROCESS_FUNCTIONS,
            base = quote(self.base_dir),
            register_step = register_step(self.run_id, self.step_number),
            variables = super::exec::exports(&environment.variables),
            release = quote(&layout::release(&environment.version)),
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
            body = body,
        )
    }

    /// Stops the steps this run left running on the host (after a timeout or Ctrl-C abandoned
    /// one) and waits for them, so nothing else touches their paths while they still run; steps
    /// numbered up to `fence` that have not started yet never will.
    pub fn stop_steps(&self, fence: u64) -> String {
        script!(
            "{functions}{stop_steps}b={base}\ncd -- \"$b\" 2>/dev/null || exit 0\n[ -d {lock} ] || exit 0\nstop_steps {lock} {fence}\n",
            functions = PROCESS_FUNCTIONS,
            stop_steps = stop_steps_function(),
            base = quote(self.base_dir),
            lock = layout::LOCK,
            fence = &fence,
        )
        .into_string()
    }

    /// Removes this run's staging directory (best effort after a failure).
    pub fn discard_staging(&self) -> String {
        script!(
            "b={base}\ncd -- \"$b\" 2>/dev/null && rm -rf -- {staging}\nexit 0\n",
            base = quote(self.base_dir),
            staging = quote(&layout::staging(self.run_id)),
        )
        .into_string()
    }

    /// Appends one audit record to `.deploy/history.jsonl` (ending a torn last line first);
    /// prints `HISTORY_NOT_WRITTEN` when the write fails. A fragment: `then` steps may follow.
    pub fn append_history(&self, record: &HistoryRecord) -> String {
        self.append_history_text(&record.to_line())
    }

    /// `append_history` for a record line built elsewhere (a record with `command` or
    /// `message`: `history::AnnotatedRecord::to_line`).
    pub fn append_history_text(&self, line: &str) -> String {
        script!(
            "{append_record}( b={base}\n  cd -- \"$b\" && mkdir -p {state} && {append} ) || echo {history_not_written}\n",
            append_record = APPEND_RECORD,
            base = quote(self.base_dir),
            state = layout::STATE,
            append = append_history_line(line),
            history_not_written = HISTORY_NOT_WRITTEN,
        )
        .into_string()
    }

    /// A host's last changes in one command: the history record (when given), then `then` (the
    /// prune) in a subshell, so that the step's own `exit` ends only its part of the script.
    pub fn record_then(&self, record: Option<&HistoryRecord>, then: Option<&Step>) -> String {
        let mut script = record
            .map(|record| self.append_history(record))
            .unwrap_or_default();
        if let Some(step) = then {
            script.push_str(&format!("(\n{}\n)\n", self.lower(step).script));
        }
        script
    }
}

/// `append_record .deploy/history.jsonl '<record>'` (inside `<base_dir>`, after `APPEND_RECORD`).
fn append_history_line(line: &str) -> Script {
    script!(
        "append_record {history} {line}",
        history = layout::HISTORY,
        line = quote(line),
    )
}

/// Breaks the lock whose holder line is `holder` (only if it is still that one), stopping the
/// steps its run left running. Only a holder whose PID, boot id and start time still match is
/// signalled (its whole process group), and only with `kill`.
fn unlock(base_dir: &str, holder: &str, kill: bool) -> Script {
    script!(
        "set -u\n{functions}{stop_steps}b={base}\ncd -- \"$b\" || {{ echo \"cannot enter $b\" >&2; exit 1; }}\ncd {state} || exit 1\n\
         [ -d {lock} ] || {{ echo 'there is no lock' >&2; exit 1; }}\n\
         current_holder=\n[ -f {lock_holder} ] && IFS= read -r current_holder < {lock_holder}\n\
         [ \"$current_holder\" = {holder} ] || {{ echo \"the lock changed hands while unlocking (now: $current_holder)\" >&2; exit 1; }}\n\
         {kill}stop_steps {lock} {all}\nrm -rf {lock} || exit 1\n",
        functions = PROCESS_FUNCTIONS,
        stop_steps = stop_steps_function(),
        all = &layout::FENCE_ALL,
        base = quote(base_dir),
        state = layout::STATE,
        lock = within_state(layout::LOCK),
        lock_holder = within_state(layout::LOCK_HOLDER),
        holder = quote(holder),
        kill = if kill {
            "if holder_alive \"$current_holder\"; then\n\
             \x20 holder_group=$proc_group\n\
             \x20 [ -n \"$holder_group\" ] && [ \"$holder_group\" -gt 1 ] && kill -TERM -\"$holder_group\" 2>/dev/null\n\
             fi\n"
        } else {
            ""
        },
    )
}

/// Relative link from `releases/<v>/<path>` to `shared/<path>`, seeding `shared/<path>` from
/// the release (or as an empty directory) the first time.
fn link_shared(path: &str) -> Script {
    let staged = staged_path(path);
    script!(
        "if [ ! -e {shared} ] && [ ! -L {shared} ]; then\n\
         \x20 mkdir -p -- \"$(dirname -- {shared})\" || exit 1\n\
         \x20 if [ -e {staged} ]; then cp -R -- {staged} {shared} || exit 1; else mkdir -p -- {shared} || exit 1; fi\n\
         fi\n\
         {link}",
        shared = quote(&join(layout::SHARED, path)),
        staged = &staged,
        link = &link_to_shared(path),
    )
}

/// Relative link from `releases/<v>/<path>` to the file `shared/<path>`, which must exist (as
/// Capistrano's `deploy:check:linked_files`): a missing one fails staging, naming it. Unlike a
/// shared path it is never seeded from the release.
fn link_shared_file(path: &str) -> Script {
    script!(
        "if [ ! -f {shared} ]; then\n\
         \x20 echo \"shared file $(pwd -P)/\"{shared}\" is missing on this host: create it there (or upload it with [services.NAME.files]) before pushing\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         {link}",
        shared = quote(&join(layout::SHARED, path)),
        link = &link_to_shared(path),
    )
}

/// `path` in the staged tree, as shell text.
fn staged_path(path: &str) -> Script {
    script!("\"$s/tree/\"{path}", path = quote(path))
}

/// Replaces `path` in the staged tree by a relative link to `shared/<path>` (shared paths and
/// shared files alike).
fn link_to_shared(path: &str) -> Script {
    let depth = path.split('/').count();
    let target = format!("{}{}/{path}", "../".repeat(depth + 1), layout::SHARED);
    let staged = staged_path(path);
    script!(
        "rm -rf -- {staged}\n\
         mkdir -p -- \"$(dirname -- {staged})\" || exit 1\n\
         ln -s -- {target} {staged} || exit 1\n",
        staged = &staged,
        target = quote(&target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::state;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    fn digest(text: &str) -> Sha256 {
        Sha256::parse(text).expect("a sha256")
    }

    const SHA_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn lowered_scripts_quote_every_value() {
        let shared = vec!["config/app.env".to_string()];
        let lowering = Lowering {
            base_dir: "/srv/it's here",
            run_id: "run-1",
            shared_paths: &shared,
            shared_files: &[],
            now: 7,
            step_number: 1,
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
            sha256: digest(SHA_A),
            replace: false,
            staged_manifest: false,
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
        let sha256 = digest(&format!("{:x}", sha2::Sha256::digest(&tarball)));

        let shared = vec!["log".to_string()];
        let lowering = Lowering {
            base_dir: "app",
            run_id: "run-1",
            shared_paths: &shared,
            shared_files: &[],
            now: 5,
            step_number: 1,
        };
        // Steps only run under their run's lock.
        std::fs::create_dir_all(directory.path().join("app/.deploy/lock")).expect("mkdir lock");
        std::fs::write(
            directory.path().join("app/.deploy/lock/holder"),
            "1 alice@laptop run-1 5 boot 1\n",
        )
        .expect("write holder");
        let v1 = version("v1");
        run(&lowering.lower(&Step::Prepare).script, b"");
        run(
            &lowering
                .lower(&Step::Upload {
                    version: v1.clone(),
                    sha256: sha256.clone(),
                    bytes: 0,
                    tar_strip: 0,
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
                    staged_manifest: false,
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
        let facts = state::parse(&run(&state::command("app"), b"")).expect("facts");
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
                        tar_strip: 0,
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
            sha256: digest(&"0".repeat(64)),
            bytes: 0,
            tar_strip: 0,
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
}
