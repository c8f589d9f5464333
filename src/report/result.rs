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

/// One host's line of the result (SPEC §5 `hosts[]`), with the per-command extras.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub service: Option<String>,
    pub host: String,
    pub result: Outcome,
    pub from: Option<String>,
    pub to: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// Set when the failure was a lock held by another run (exit code 3).
    #[serde(skip)]
    pub lock_held: bool,
    /// Set when a history record of this host could not be written (exit code 1 at least).
    #[serde(skip)]
    pub history_lost: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckView>>,
    /// Planned steps (dry run) or the steps that completed (real run), one line each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
    /// Facts and decisions worth showing (live release, lock, disk, why nothing changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
    /// `prune`: releases removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Vec<String>>,
    /// `diff` and `push --dry-run --diff`: file-level difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<crate::artifact::Diff>,
    /// `status --verify`: files changed on the host since the push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::artifact::Diff>,
    /// `history`: the host's records, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<crate::plan::HistoryRecord>>,
}

impl HostResult {
    pub fn new(service: Option<&str>, host: &str, result: Outcome) -> Self {
        HostResult {
            service: service.map(str::to_string),
            host: host.to_string(),
            result,
            from: None,
            to: None,
            bytes: 0,
            duration_ms: 0,
            error: None,
            lock_held: false,
            history_lost: false,
            status: None,
            checks: None,
            steps: None,
            notes: None,
            pruned: None,
            diff: None,
            drift: None,
            entries: None,
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
}

impl RunResult {
    /// Overall result: failed if any host failed, rolled_back if the run rolled hosts back.
    pub fn new(id: &str, action: &str, dry_run: bool, hosts: Vec<HostResult>) -> Self {
        let result = if hosts.iter().any(|host| host.result == Outcome::Failed) {
            Outcome::Failed
        } else if hosts.iter().any(|host| host.result == Outcome::RolledBack) {
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
        }
    }

    /// A run stopped by Ctrl-C / SIGTERM did not succeed, even where no host failed: its
    /// overall result is `rolled_back` when it switched hosts back, `failed` otherwise.
    pub fn interrupted(&mut self) {
        if self.result == Outcome::Ok {
            self.result = Outcome::Failed;
        }
    }

    /// Exit code of SPEC §6 (130 is decided by the caller).
    pub fn exit_code(&self) -> u8 {
        let failed: Vec<&HostResult> = self
            .hosts
            .iter()
            .filter(|host| {
                matches!(host.result, Outcome::Failed | Outcome::RolledBack)
                    || host.history_lost
                    || host.drift.as_ref().is_some_and(|drift| !drift.is_empty())
            })
            .collect();
        if failed.is_empty() {
            0
        } else if failed.iter().all(|host| host.lock_held) {
            3
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        let ok = HostResult::new(Some("app"), "web1", Outcome::Ok);
        let mut held = HostResult::new(Some("app"), "web2", Outcome::Failed);
        held.lock_held = true;
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
        let result = RunResult::new("r", "push", false, vec![ok, failed]);
        assert_eq!(result.result, Outcome::Failed);
    }
}
