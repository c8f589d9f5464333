//! The result model: what a command returns and what stdout shows at the end (SPEC §5).
//!
//! Owns each host's `HostResult` (with its per-command extras: `StatusView`, `LockView`,
//! `CheckView`, steps, notes, diffs, history entries), the run's `RunResult` document that is
//! serialized as the JSON output, the per-host `Outcome`, and the exit codes derived from them
//! (SPEC §6). Plain data: nothing here prints.

use serde::Serialize;

/// Per-host result values of SPEC §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Unchanged,
    Failed,
    RolledBack,
    Skipped,
    Planned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Skipped => "skipped",
            Outcome::Planned => "planned",
        }
    }
}

/// Lock state as shown by `status` and dry-runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockView {
    pub operator: String,
    pub run_id: String,
    pub since: String,
    pub alive: bool,
}

/// Why a host counts against the exit code beyond its outcome (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Another run (or a freeze) held the lock: exit code 3 when nothing else failed.
    LockHeld,
    /// A history record of this host could not be written: exit code 1 at least.
    HistoryLost,
}

/// What one command adds to a host's line (SPEC §5), written into the same JSON object (see
/// `HostResult`'s `Serialize`).
#[derive(Debug, Clone)]
pub enum Detail {
    /// `status`: reachability, releases, lock, and with `--verify` the drift.
    Status {
        view: StatusView,
        drift: Option<crate::artifact::Diff>,
    },
    /// `check`: one item per prerequisite.
    Checks { checks: Vec<CheckView> },
    /// `prune`: releases removed.
    Pruned { pruned: Vec<String> },
    /// `diff` and `push --dry-run --diff`: file-level difference.
    Diff { diff: crate::artifact::Diff },
    /// `exec` and `run`: what the command printed and its exit code.
    Exec {
        output: crate::remote::exec::ExecOutput,
    },
    /// `status` and `lock`: the deploy freeze on the host, if any.
    Frozen {
        freeze: Option<crate::remote::freeze::Freeze>,
    },
    /// `history`: the host's records, newest first.
    History {
        entries: Vec<crate::remote::history::AnnotatedRecord>,
    },
}

/// One host's line of the result (SPEC §5 `hosts[]`), with the per-command extras.
#[derive(Debug, Clone)]
pub struct HostResult {
    pub service: Option<String>,
    pub host: String,
    /// Serialised as `result`.
    pub outcome: Outcome,
    pub from: Option<String>,
    pub to: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The typed cause behind the exit code, where the outcome alone does not tell (not
    /// serialised).
    pub failure: Option<Failure>,
    /// The steps that completed (real run), one line each.
    pub steps: Option<Vec<String>>,
    /// A dry run's planned steps, as data with their text (serialised as `steps`).
    pub planned: Option<Vec<PlannedStep>>,
    /// Facts and decisions worth showing (live release, lock, disk, why nothing changes).
    pub notes: Option<Vec<String>>,
    pub detail: Option<Detail>,
    /// Where the host's `current` ended when the outcome alone does not say (not serialised;
    /// the table's CHANGE column).
    pub landing: Landing,
    /// The step a failure happened in (not serialised; the `step` of its diagnostic).
    pub step: Option<String>,
}

/// Where a host's `current` ended after a changing run, beyond what its outcome says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Landing {
    /// What the outcome implies: `ok`/`unchanged` on `to`, `rolled_back` back on `from`,
    /// `failed`/`skipped` still on `from` (never switched).
    #[default]
    Implied,
    /// Switched to `to`, then switched back to `from` (its own failure, or Ctrl-C).
    SwitchedBack,
    /// Healthy on `to`, switched back to `from` because other hosts failed (`on_failure =
    /// "rollback"`): the table names the cause once instead of in every row.
    FleetRollback,
    /// Left on `to` although the host failed (switching back failed).
    LeftOnTarget,
}

/// One planned step of a dry run: its `kind` and fields (`Step::fields`), and its `text`.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub text: String,
}

impl PlannedStep {
    pub fn of(step: &crate::plan::Step) -> Self {
        PlannedStep {
            fields: step.fields(),
            text: step.describe(),
        }
    }
}

/// `kind` first, the step's fields, then `text`.
impl Serialize for PlannedStep {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(kind) = self.fields.get("kind") {
            map.serialize_entry("kind", kind)?;
        }
        for (key, value) in self.fields.iter().filter(|(key, _)| *key != "kind") {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("text", &self.text)?;
        map.end()
    }
}

/// One JSON object per host, its keys in the order of SPEC §5 and of every release so far: the
/// common fields, then `status`'s (flattened), `checks`, `steps`, `notes`, `pruned`, `diff`,
/// `drift`, `entries`; absent extras are left out.
impl Serialize for HostResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("service", &self.service)?;
        map.serialize_entry("host", &self.host)?;
        map.serialize_entry("result", &self.outcome)?;
        map.serialize_entry("from", &self.from)?;
        map.serialize_entry("to", &self.to)?;
        map.serialize_entry("bytes", &self.bytes)?;
        map.serialize_entry("duration_ms", &self.duration_ms)?;
        map.serialize_entry("error", &self.error)?;
        if let Some(view) = self.status() {
            map.serialize_entry("reachable", &view.reachable)?;
            map.serialize_entry("live", &view.live)?;
            map.serialize_entry("previous", &view.previous)?;
            map.serialize_entry("releases", &view.releases)?;
            map.serialize_entry("lock", &view.lock)?;
            map.serialize_entry("freeze", &view.freeze)?;
            map.serialize_entry("went_live", &view.went_live)?;
        }
        if let Some(Detail::Checks { checks }) = &self.detail {
            map.serialize_entry("checks", checks)?;
        }
        if let Some(planned) = &self.planned {
            map.serialize_entry("steps", planned)?;
        } else if let Some(steps) = &self.steps {
            map.serialize_entry("steps", steps)?;
        }
        if let Some(notes) = &self.notes {
            map.serialize_entry("notes", notes)?;
        }
        if let Some(Detail::Pruned { pruned }) = &self.detail {
            map.serialize_entry("pruned", pruned)?;
        }
        if let Some(diff) = self.diff() {
            map.serialize_entry("diff", diff)?;
        }
        if let Some(drift) = self.drift() {
            map.serialize_entry("drift", drift)?;
        }
        if let Some(entries) = self.entries() {
            map.serialize_entry("entries", entries)?;
        }
        if let Some(Detail::Exec { output }) = &self.detail {
            map.serialize_entry("stdout", &output.stdout)?;
            map.serialize_entry("stderr", &output.stderr)?;
            map.serialize_entry("exit_code", &output.exit_code)?;
        }
        if let Some(Detail::Frozen { freeze }) = &self.detail {
            map.serialize_entry("freeze", freeze)?;
        }
        map.end()
    }
}

impl HostResult {
    pub fn new(service: Option<&str>, host: &str, outcome: Outcome) -> Self {
        HostResult {
            service: service.map(str::to_string),
            host: host.to_string(),
            outcome,
            from: None,
            to: None,
            bytes: 0,
            duration_ms: 0,
            error: None,
            failure: None,
            steps: None,
            planned: None,
            notes: None,
            detail: None,
            landing: Landing::Implied,
            step: None,
        }
    }

    /// The step texts of a dry run's plan, or the completed steps of a real run.
    pub fn step_lines(&self) -> Vec<&str> {
        match &self.planned {
            Some(planned) => planned.iter().map(|step| step.text.as_str()).collect(),
            None => self.steps.iter().flatten().map(String::as_str).collect(),
        }
    }

    /// Where `current` ended, when it is not `to`: `back on V` (switched, then switched back),
    /// `still on V` (never switched), `left on V` (failed, switching back failed too).
    pub fn ended(&self) -> Option<String> {
        let to = self.to.as_deref()?;
        let from = self.from.as_deref().unwrap_or("(none)");
        match (self.landing, self.outcome) {
            (Landing::LeftOnTarget, _) => Some(format!("left on {to}")),
            (Landing::SwitchedBack | Landing::FleetRollback, _)
            | (Landing::Implied, Outcome::RolledBack) => Some(format!("back on {from}")),
            (Landing::Implied, Outcome::Failed | Outcome::Skipped)
                if self.from.as_deref() != Some(to) =>
            {
                Some(format!("still on {from}"))
            }
            _ => None,
        }
    }

    /// The CHANGE cell: `from -> to` as attempted, then where the host ended when that
    /// differs (`v3 -> v4, back on v3`); `-` when the run never learned either.
    pub fn change(&self) -> String {
        if self.from.is_none() && self.to.is_none() {
            return "-".to_string();
        }
        let attempted = format!(
            "{} -> {}",
            self.from.as_deref().unwrap_or("(none)"),
            self.to.as_deref().unwrap_or("(none)")
        );
        match self.ended() {
            Some(ended) => format!("{attempted}, {ended}"),
            None => attempted,
        }
    }

    /// The one-line result of a finished host (a plain stderr line): its outcome, the change,
    /// and the error when there is one.
    pub fn one_line(&self) -> String {
        let mut line = self.outcome.as_str().to_string();
        if self.from.is_some() || self.to.is_some() {
            line.push(' ');
            line.push_str(&self.change());
        }
        if let Some(error) = &self.error {
            line.push_str(": ");
            line.push_str(error);
        }
        line
    }

    /// Remembers that a history record of this host was lost (unless a lock held by another
    /// run already explains the failure).
    pub fn history_lost(&mut self, lost: bool) {
        if lost && self.failure.is_none() {
            self.failure = Some(Failure::HistoryLost);
        }
    }

    /// This host's share of the exit code (SPEC §6): 3 for a lock held elsewhere, 1 for a
    /// failure, a switch back, a lost history record or drift, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        match (self.outcome, self.failure, &self.detail) {
            (Outcome::Failed, Some(Failure::LockHeld), _) => 3,
            (Outcome::Failed | Outcome::RolledBack, _, _) | (_, Some(Failure::HistoryLost), _) => 1,
            (
                _,
                _,
                Some(Detail::Status {
                    drift: Some(drift), ..
                }),
            ) if !drift.is_empty() => 1,
            _ => 0,
        }
    }

    /// The `status` view, if this is a `status` line.
    pub fn status(&self) -> Option<&StatusView> {
        match &self.detail {
            Some(Detail::Status { view, .. }) => Some(view),
            _ => None,
        }
    }

    /// The file-level difference of `diff` and `push --dry-run --diff`.
    pub fn diff(&self) -> Option<&crate::artifact::Diff> {
        match &self.detail {
            Some(Detail::Diff { diff }) => Some(diff),
            _ => None,
        }
    }

    /// The history records of `history`, newest first.
    pub fn entries(&self) -> Option<&[crate::remote::history::AnnotatedRecord]> {
        match &self.detail {
            Some(Detail::History { entries }) => Some(entries),
            _ => None,
        }
    }

    /// The `--verify` drift, if any was checked.
    pub fn drift(&self) -> Option<&crate::artifact::Diff> {
        match &self.detail {
            Some(Detail::Status { drift, .. }) => drift.as_ref(),
            _ => None,
        }
    }
}

/// `status` fields (SPEC §5).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub reachable: bool,
    pub live: Option<String>,
    pub previous: Option<String>,
    pub releases: Vec<String>,
    pub lock: Option<LockView>,
    /// A deploy freeze (`deploy lock`), distinct from a run's lock.
    pub freeze: Option<Box<crate::remote::freeze::Freeze>>,
    /// When and by whom the live release went live (from the host's history).
    pub went_live: Option<Box<WentLive>>,
}

/// The history record that made the live release live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WentLive {
    pub time: String,
    pub operator: String,
    pub action: String,
}

/// One `check` item.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    /// An optional tool that is absent: reported, but the host still passes.
    pub optional: bool,
    pub detail: String,
}

/// The whole result document (SPEC §5).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub id: String,
    pub action: String,
    pub dry_run: bool,
    pub result: Outcome,
    pub hosts: Vec<HostResult>,
    /// `status`: per service, how many hosts run each live release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollup: Option<Vec<crate::report::rollup::ServiceRollup>>,
    /// Stopped by Ctrl-C / SIGTERM (not serialised: the exit code, 130, says it).
    #[serde(skip)]
    pub interrupted: bool,
}

impl RunResult {
    /// Overall result: failed if any host failed, rolled_back if the run rolled hosts back.
    pub fn new(id: &str, action: &str, dry_run: bool, hosts: Vec<HostResult>) -> Self {
        let result = if hosts.iter().any(|host| host.outcome == Outcome::Failed) {
            Outcome::Failed
        } else if hosts.iter().any(|host| host.outcome == Outcome::RolledBack) {
            Outcome::RolledBack
        } else {
            Outcome::Ok
        };
        RunResult {
            id: id.to_string(),
            action: action.to_string(),
            dry_run,
            result,
            hosts,
            rollup: None,
            interrupted: false,
        }
    }

    /// A run stopped by Ctrl-C / SIGTERM did not succeed, even where no host failed: its
    /// overall result is `rolled_back` when it switched hosts back, `failed` otherwise.
    pub fn interrupted(&mut self) {
        self.interrupted = true;
        if self.result == Outcome::Ok {
            self.result = Outcome::Failed;
        }
    }

    /// Exit code of SPEC §6 (130 is decided by the caller): 1 if any host failed, else 3 if a
    /// lock held elsewhere stopped some host, else 0.
    pub fn exit_code(&self) -> u8 {
        let codes: Vec<u8> = self.hosts.iter().map(HostResult::exit_code).collect();
        if codes.contains(&1) {
            1
        } else if codes.contains(&3) {
            3
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of a host line come in the order they always had (SPEC §5 first, then the
    /// per-command extras), whatever the command.
    #[test]
    fn host_lines_keep_their_key_order() {
        let keys = |host: &HostResult| -> Vec<String> {
            let text = serde_json::to_string(host).expect("serialises");
            let value: serde_json::Value = serde_json::from_str(&text).expect("parses");
            let object = value.as_object().expect("an object");
            // serde_json's map keeps insertion order only with preserve_order: read the text.
            let mut found: Vec<(usize, String)> = object
                .keys()
                .map(|key| {
                    (
                        text.find(&format!("\"{key}\":")).expect("key in text"),
                        key.clone(),
                    )
                })
                .collect();
            found.sort();
            found.into_iter().map(|(_, key)| key).collect()
        };
        let common = [
            "service",
            "host",
            "result",
            "from",
            "to",
            "bytes",
            "duration_ms",
            "error",
        ];
        let mut status = HostResult::new(Some("app"), "web1", Outcome::Ok);
        status.detail = Some(Detail::Status {
            view: StatusView {
                reachable: true,
                live: None,
                previous: None,
                releases: Vec::new(),
                lock: None,
                freeze: None,
                went_live: None,
            },
            drift: Some(crate::artifact::Diff::default()),
        });
        let mut expected: Vec<&str> = common.to_vec();
        expected.extend([
            "reachable",
            "live",
            "previous",
            "releases",
            "lock",
            "freeze",
            "went_live",
            "drift",
        ]);
        assert_eq!(keys(&status), expected);
        let mut check = HostResult::new(None, "web1", Outcome::Ok);
        check.detail = Some(Detail::Checks { checks: Vec::new() });
        check.notes = Some(Vec::new());
        let mut expected: Vec<&str> = common.to_vec();
        expected.extend(["checks", "notes"]);
        assert_eq!(keys(&check), expected);
        let mut history = HostResult::new(Some("app"), "web1", Outcome::Ok);
        history.notes = Some(Vec::new());
        history.detail = Some(Detail::History {
            entries: Vec::new(),
        });
        let mut expected: Vec<&str> = common.to_vec();
        expected.extend(["notes", "entries"]);
        assert_eq!(keys(&history), expected);
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        let ok = HostResult::new(Some("app"), "web1", Outcome::Ok);
        let mut held = HostResult::new(Some("app"), "web2", Outcome::Failed);
        held.failure = Some(Failure::LockHeld);
        let failed = HostResult::new(Some("app"), "web3", Outcome::Failed);
        assert_eq!(
            RunResult::new("r", "push", false, vec![ok.clone()]).exit_code(),
            0
        );
        assert_eq!(
            RunResult::new("r", "push", false, vec![ok.clone(), held.clone()]).exit_code(),
            3
        );
        assert_eq!(
            RunResult::new("r", "push", false, vec![held, failed.clone()]).exit_code(),
            1
        );
        let mut lost = HostResult::new(Some("app"), "web4", Outcome::Ok);
        lost.history_lost(true);
        assert_eq!(
            RunResult::new("r", "push", false, vec![ok.clone(), lost]).exit_code(),
            1,
            "a lost history record is never silent"
        );
        let result = RunResult::new("r", "push", false, vec![ok, failed]);
        assert_eq!(result.result, Outcome::Failed);
    }
}
