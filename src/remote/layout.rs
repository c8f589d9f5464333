//! Where things are on a host (SPEC §3, README "What a host holds"): every path a remote program
//! uses, relative to `<base_dir>`, written once. Scripts get their paths from here, as fixed
//! text (the constants) or as built paths to quote (the functions).
//!
//! ```text
//! <base_dir>/
//!   releases/<version>/             complete releases only
//!   current -> releases/<version>   relative symlink, replaced only by renaming a new one over it
//!   shared/                         shared_paths, linked into every release
//!   .deploy/
//!     lock/holder, lock/step.<pid>  the service lock, its holder and the steps of its run
//!     lock.break                    taken while a stale lock is broken
//!     freeze                        a deploy freeze (`deploy lock`), until `deploy unlock`
//!     staging/<run>/                a release being received (and <run>-prune: releases pruned)
//!     digests/<v>, entries/<v>, manifests/<v>   what a complete release must be
//!     identities/<v>                what its files were when verified (a delta reuses them unhashed)
//!     relisted/<v>                  its files listed again around a prune (its record stays usable;
//!                                   relisted/.<run>: being written)
//!     releases.log, history.jsonl   go-live order; the audit log
//!     current.tmp.<run>, current.retracted.<run>   links on their way in or out of `current`
//! ```

use crate::inventory::Version;

/// Complete releases: `releases/<version>`.
pub const RELEASES: &str = "releases";
/// The live release: a relative symlink to `releases/<version>`.
pub const CURRENT: &str = "current";
/// Shared paths, linked into every release.
pub const SHARED: &str = "shared";
/// The tool's own state.
pub const STATE: &str = ".deploy";
/// The service lock (a directory: `mkdir` is atomic).
pub const LOCK: &str = ".deploy/lock";
/// `PID OPERATOR RUN_ID SINCE BOOT_ID START` of the lock's holder.
pub const LOCK_HOLDER: &str = ".deploy/lock/holder";
/// Taken while a stale lock is broken, so two runs never both break and take it.
pub const LOCK_BREAK: &str = ".deploy/lock.break";
/// Name prefix of a running step's record in the lock directory: `step.<pid>`.
pub const STEP_RECORD: &str = "step.";
/// In the lock directory: the number of the last step a stop applies to; a step numbered at
/// or below it that starts late (after the stop looked) exits before doing anything.
pub const STEP_FENCE: &str = "fence";
/// A fence above every step number: the whole run is stopped (its controller is gone).
pub const FENCE_ALL: u64 = 999_999_999;
/// Releases being received, one directory per run.
pub const STAGING: &str = ".deploy/staging";
/// `digests/<version>`: the artifact's sha256; its presence names a release complete.
pub const DIGESTS: &str = ".deploy/digests";
/// `manifests/<version>`: the per-file manifest recorded at push time.
pub const MANIFESTS: &str = ".deploy/manifests";
/// `identities/<version>`: the identity (device, inode, size, times) of every entry of the
/// release when its content was known to equal its manifest (`remote::delta`), so that a later
/// delta can reuse an unchanged file without hashing it.
pub const IDENTITIES: &str = ".deploy/identities";
/// `relisted/<version>`: the live release's files listed just before a prune deleted releases
/// that share their inodes, and again (with a stamp) once the deletion is done: deleting a
/// hard link changes the ctime of the file it shared, and this lets a later delta tell that
/// from an edit (`remote::delta::trusted_reuse`). Written as `.<run>` there first
/// (`relisting`: no version starts with a dot), renamed into place when complete.
pub const RELISTED: &str = ".deploy/relisted";
/// `entries/<version>`: how many entries the finished tree holds (a switch re-counts them).
pub const ENTRIES: &str = ".deploy/entries";
/// Release log, `TIME ACTION FROM TO` per line: the go-live order.
pub const RELEASE_LOG: &str = ".deploy/releases.log";
/// A deploy freeze (`deploy lock`): `OPERATOR SINCE MESSAGE`; push, rollback and prune refuse.
pub const FREEZE: &str = ".deploy/freeze";
/// The audit log (SPEC §3), one JSON record per line.
pub const HISTORY: &str = ".deploy/history.jsonl";
/// Name prefix of the link a switch renames over `current`: `current.tmp.<run>`.
pub const CURRENT_TEMPORARY: &str = ".deploy/current.tmp.";
/// Name prefix of `current` moved aside by a retract: `current.retracted.<run>`.
const CURRENT_RETRACTED: &str = ".deploy/current.retracted.";

/// `releases/<version>`.
pub fn release(version: &Version) -> String {
    format!("{RELEASES}/{version}")
}

/// `.deploy/digests/<version>`.
pub fn digest(version: &Version) -> String {
    format!("{DIGESTS}/{version}")
}

/// `.deploy/manifests/<version>`.
pub fn manifest(version: &Version) -> String {
    format!("{MANIFESTS}/{version}")
}

/// `.deploy/identities/<version>`.
pub fn identities(version: &Version) -> String {
    format!("{IDENTITIES}/{version}")
}

/// `.deploy/relisted/<version>`.
pub fn relisted(version: &Version) -> String {
    format!("{RELISTED}/{version}")
}

/// `.deploy/entries/<version>`.
pub fn entries(version: &Version) -> String {
    format!("{ENTRIES}/{version}")
}

/// `.deploy/staging/<run>`.
pub fn staging(run_id: &str) -> String {
    format!("{STAGING}/{run_id}")
}

/// `.deploy/staging/<run>-prune`: releases a prune moved out of `releases/`, deleted in the
/// background.
pub fn pruned(run_id: &str) -> String {
    format!("{}-prune", staging(run_id))
}

/// `.deploy/relisted/.<run>`: the live release's listing around a prune, until it is complete
/// and renamed to `relisted/<version>`. Not in `staging/`: it is finished in the background,
/// after the run (and its lock) ended, and the next run's Prepare empties `staging/`.
pub fn relisting(run_id: &str) -> String {
    format!("{RELISTED}/.{run_id}")
}

/// `.deploy/current.tmp.<run>`.
pub fn current_temporary(run_id: &str) -> String {
    format!("{CURRENT_TEMPORARY}{run_id}")
}

/// `.deploy/current.retracted.<run>`.
pub fn current_retracted(run_id: &str) -> String {
    format!("{CURRENT_RETRACTED}{run_id}")
}

/// `path` (one of the `.deploy/...` constants) relative to `.deploy`, for scripts that work
/// inside it: `.deploy/lock/holder` -> `lock/holder`.
pub fn within_state(path: &'static str) -> &'static str {
    path.strip_prefix(STATE)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_base_dir() {
        let version = Version::parse("v1").expect("valid version");
        assert_eq!(release(&version), "releases/v1");
        assert_eq!(digest(&version), ".deploy/digests/v1");
        assert_eq!(manifest(&version), ".deploy/manifests/v1");
        assert_eq!(entries(&version), ".deploy/entries/v1");
        assert_eq!(relisted(&version), ".deploy/relisted/v1");
        assert_eq!(staging("run-1"), ".deploy/staging/run-1");
        assert_eq!(pruned("run-1"), ".deploy/staging/run-1-prune");
        assert_eq!(relisting("run-1"), ".deploy/relisted/.run-1");
        assert_eq!(current_temporary("run-1"), ".deploy/current.tmp.run-1");
        assert_eq!(
            current_retracted("run-1"),
            ".deploy/current.retracted.run-1"
        );
        assert_eq!(within_state(LOCK_HOLDER), "lock/holder");
        assert_eq!(within_state(LOCK_BREAK), "lock.break");
        for path in [
            LOCK,
            LOCK_HOLDER,
            LOCK_BREAK,
            STAGING,
            DIGESTS,
            MANIFESTS,
            ENTRIES,
            RELISTED,
        ] {
            assert!(path.starts_with(&format!("{STATE}/")), "{path}");
        }
        for path in [RELEASE_LOG, HISTORY, CURRENT_TEMPORARY, CURRENT_RETRACTED] {
            assert!(path.starts_with(&format!("{STATE}/")), "{path}");
        }
    }
}
