//! State: what one host holds for one service, read by one remote command and parsed here.
//!
//! Owns the read-only facts script that reports a service's state on a host (releases and their
//! digests, `current`, the release log, the lock, staging leftovers, free disk; for a push's
//! lock, the live release's recorded manifest after them) and the strict
//! parser of its output (remote output is untrusted: anything unexpected is an error naming the
//! line). Also owns the release log's lines (`LogEntry`) and the derived answers every planner
//! needs: which release is live, which one it replaced, and in what order releases went live,
//! all from the log recorded on the host, never from names or modification times; and the
//! shell functions shared by the scripts that look at processes (`PROCESS_FUNCTIONS`).

use std::collections::BTreeMap;

use super::layout;
use super::process::{LOCK_FUNCTIONS, PROCESS_FUNCTIONS};
use super::script::{Script, quote, script};
use crate::inventory::Version;
use crate::manifest::Sha256;

/// One line of the release log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time: u64,
    pub action: LogAction,
    pub from: Option<Version>,
    pub to: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAction {
    /// A release was staged (complete under `releases/`), not yet live.
    Stage,
    /// `current` switched to `to` by a push.
    Push,
    /// `current` switched to `to` by a rollback (from `from`).
    Rollback,
}

impl LogAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LogAction::Stage => "stage",
            LogAction::Push => "push",
            LogAction::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Facts {
    /// `<base_dir>` exists.
    pub base_exists: bool,
    /// Target of the `current` symlink as read.
    pub current: Option<String>,
    /// Complete releases (directory plus recorded digest), by version.
    pub releases: BTreeMap<Version, Sha256>,
    pub log: Vec<LogEntry>,
    pub lock: Option<LockHolder>,
    /// A deploy freeze (`deploy lock`), if one is set.
    pub freeze: Option<super::freeze::Freeze>,
    /// Leftover staging directories of earlier runs.
    pub staging: Vec<String>,
    /// Free bytes on the filesystem holding `<base_dir>` (or its nearest existing parent).
    pub free_bytes: Option<u64>,
}

/// The read-only script. It creates nothing and prints one tagged line per fact.
pub fn command(base_dir: &str) -> String {
    facts_script(base_dir, None).into_string()
}

/// `command`, as a piece of another script (the lock script prints the facts under the lock).
/// With `live_manifest_cap` (a push's lock, which plans a delta from the live release), the
/// facts end with the live release's recorded manifest, up to that cap
/// (`scan::manifest_section`). The release is the one the `current` line names.
pub(super) fn facts_script(base_dir: &str, live_manifest_cap: Option<u64>) -> Script {
    // The live release: the one `current` names (`l`, set by the script before this piece).
    let live_manifest = match live_manifest_cap {
        Some(cap) => script!(
            "case $l in {releases}/*) v=${{l#{releases}/}};; *) v=;; esac\n\
             case $v in ''|*[!A-Za-z0-9._+-]*) ;;\n\
             *)\n{section};;\n\
             esac\n",
            releases = layout::RELEASES,
            section = &super::scan::manifest_section(
                &script!("\"{manifests}/$v\"", manifests = layout::MANIFESTS),
                Some(cap)
            ),
        ),
        None => script!(""),
    };
    script!(
        r#"umask 077
{functions}{lock_functions}b={base}
p="$b"
while [ ! -d "$p" ]; do p=$(dirname -- "$p"); done
df -Pk -- "$p" 2>/dev/null | while IFS= read -r line; do printf 'df %s\n' "$line"; done
if ! cd -- "$b" 2>/dev/null; then printf 'base absent\n'; exit 0; fi
printf 'base present\n'
l=
if [ -L {current} ]; then l=$(readlink {current}); printf 'current %s\n' "$l"; fi
for d in {releases}/*; do
  [ -d "$d" ] || continue
  v=${{d#{releases}/}}
  case $v in ''|*[!A-Za-z0-9._+-]*) continue;; esac
  [ -f "{digests}/$v" ] || continue
  IFS= read -r digest < "{digests}/$v" || digest=
  printf 'release %s %s\n' "$v" "$digest"
done
if [ -f {log} ]; then while IFS= read -r line; do printf 'log %s\n' "$line"; done < {log}; fi
if [ -d {lock} ]; then
  holder=
  [ -f {lock_holder} ] && IFS= read -r holder < {lock_holder}
  if lock_alive {lock} "$holder"; then state=alive; else state=dead; fi
  printf 'lock %s %s\n' "$state" "$holder"
fi
if [ -f {freeze} ]; then frozen=; IFS= read -r frozen < {freeze}; printf 'freeze %s\n' "$frozen"; fi
for s in {staging}/*; do [ -e "$s" ] && printf 'staging %s\n' "${{s#{staging}/}}"; done
{live_manifest}exit 0
"#,
        functions = PROCESS_FUNCTIONS,
        lock_functions = LOCK_FUNCTIONS,
        base = quote(base_dir),
        current = layout::CURRENT,
        releases = layout::RELEASES,
        digests = layout::DIGESTS,
        log = quote(layout::RELEASE_LOG),
        lock = layout::LOCK,
        lock_holder = layout::LOCK_HOLDER,
        staging = layout::STAGING,
        freeze = layout::FREEZE,
        live_manifest = &live_manifest,
    )
}

/// Parses the script's output. Every line must be one the script prints.
pub fn parse(text: &str) -> Result<Facts, String> {
    let mut facts = Facts::default();
    let mut df_lines = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let bad =
            |what: &str| format!("unexpected host output on line {number} ({what}): {line:?}");
        match tag {
            "df" => {
                df_lines += 1;
                if df_lines == 2 {
                    // POSIX `df -P`: filesystem, 1024-blocks, used, available, capacity, mount.
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    let available = fields
                        .get(3)
                        .and_then(|value| value.parse::<u64>().ok())
                        .ok_or_else(|| bad("df"))?;
                    facts.free_bytes = Some(available.saturating_mul(1024));
                }
            }
            "base" => facts.base_exists = rest == "present",
            "current" => facts.current = Some(rest.to_string()),
            "release" => {
                let (version, digest) = rest.split_once(' ').unwrap_or((rest, ""));
                let version = Version::parse(version).map_err(|_| bad("release name"))?;
                if let Ok(digest) = Sha256::parse(&digest.to_ascii_lowercase()) {
                    facts.releases.insert(version, digest);
                }
                // A release without a readable digest is not one we completed: ignored.
            }
            "log" => facts
                .log
                .push(parse_log_line(rest).map_err(|what| bad(&what))?),
            "lock" => {
                let (state, holder) = rest.split_once(' ').unwrap_or((rest, ""));
                facts.lock = Some(LockHolder::parse(holder, state == "alive"));
            }
            "staging" => facts.staging.push(rest.to_string()),
            "freeze" => facts.freeze = Some(super::freeze::Freeze::parse(rest)),
            _ => return Err(bad("unknown tag")),
        }
    }
    Ok(facts)
}

fn parse_log_line(text: &str) -> Result<LogEntry, String> {
    let fields: Vec<&str> = text.split(' ').collect();
    let [time, action, from, to] = fields.as_slice() else {
        return Err("release log line".to_string());
    };
    let time = time.parse().map_err(|_| "release log time".to_string())?;
    let action = match *action {
        "stage" => LogAction::Stage,
        "push" => LogAction::Push,
        "rollback" => LogAction::Rollback,
        _ => return Err("release log action".to_string()),
    };
    let from = match *from {
        "-" => None,
        other => Some(Version::parse(other).map_err(|_| "release log version".to_string())?),
    };
    let to = Version::parse(to).map_err(|_| "release log version".to_string())?;
    Ok(LogEntry {
        time,
        action,
        from,
        to,
    })
}

/// Formats one release-log line (without the newline).
pub fn log_line(entry: &LogEntry) -> String {
    format!(
        "{} {} {} {}",
        entry.time,
        entry.action.as_str(),
        entry.from.as_ref().map(Version::as_str).unwrap_or("-"),
        entry.to
    )
}

impl Facts {
    /// The live release: `current` -> `releases/<version>` with that release complete.
    pub fn live(&self) -> Option<&Version> {
        let target = self.current.as_deref()?;
        let name = target
            .strip_prefix(layout::RELEASES)?
            .strip_prefix('/')?
            .trim_end_matches('/');
        self.releases
            .keys()
            .find(|version| version.as_str() == name)
    }

    /// The release the live one replaced (the `from` of the switch that made it live), if it
    /// is still complete on the host.
    pub fn previous(&self) -> Option<&Version> {
        let live = self.live()?;
        let entry = self
            .log
            .iter()
            .rev()
            .find(|entry| entry.action != LogAction::Stage && &entry.to == live)?;
        let from = entry.from.as_ref()?;
        self.releases.keys().find(|version| *version == from)
    }

    /// Position of the last log event that names `version` as its target (staged or live).
    fn last_event(&self, version: &Version) -> Option<usize> {
        self.log.iter().rposition(|entry| &entry.to == version)
    }

    /// Complete releases, newest first by the recorded log (releases the log never mentions
    /// come last, by name, so that they are pruned first).
    pub fn releases_newest_first(&self) -> Vec<Version> {
        let mut versions: Vec<Version> = self.releases.keys().cloned().collect();
        versions.sort_by(|left, right| {
            let left_position = self.last_event(left);
            let right_position = self.last_event(right);
            right_position
                .cmp(&left_position)
                .then_with(|| left.cmp(right))
        });
        versions
    }

    /// Where a rollback without `--to` goes: the newest release, in the order releases went
    /// live on this host, that went live before the live one and was not itself rolled back from.
    pub fn rollback_target(&self) -> Option<Version> {
        let live = self.live()?;
        let live_position = self
            .log
            .iter()
            .rposition(|entry| entry.action != LogAction::Stage && &entry.to == live)?;
        // Last time each version went live, and whether its latest event is "rolled back from".
        let mut last_live: BTreeMap<&Version, usize> = BTreeMap::new();
        let mut rolled_back_from: BTreeMap<&Version, bool> = BTreeMap::new();
        for (position, entry) in self.log.iter().enumerate() {
            if entry.action == LogAction::Stage {
                continue;
            }
            last_live.insert(&entry.to, position);
            rolled_back_from.insert(&entry.to, false);
            if entry.action == LogAction::Rollback
                && let Some(from) = &entry.from
            {
                rolled_back_from.insert(from, true);
            }
        }
        last_live
            .into_iter()
            .filter(|(version, position)| {
                *position < live_position
                    && *version != live
                    && !rolled_back_from.get(version).copied().unwrap_or(false)
                    && self.releases.contains_key(*version)
            })
            .max_by_key(|(_, position)| *position)
            .map(|(version, _)| version.clone())
    }
}

/// Who holds a service lock on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder line exactly as the lock script wrote it:
    /// `PID OPERATOR RUN_ID SINCE BOOT_ID START` (older runs wrote only the first four).
    pub line: String,
    pub pid: String,
    pub operator: String,
    pub run_id: String,
    /// Unix seconds; `None` when the line does not say.
    pub since: Option<u64>,
    /// The host's boot id when the lock was taken (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: Option<String>,
    /// The holder process's start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// with the boot id, it tells the holder apart from a later process that reuses its PID.
    pub start: Option<String>,
    /// Whether the holder's process still runs on the host (same PID, boot and start time).
    pub alive: bool,
}

impl LockHolder {
    /// Parses a holder line (from the facts script or the lock script's `HELD` answer); missing
    /// fields read as "unknown".
    pub fn parse(line: &str, alive: bool) -> LockHolder {
        let mut fields = line.split(' ');
        let mut next = || fields.next().filter(|field| !field.is_empty());
        LockHolder {
            line: line.to_string(),
            pid: next().unwrap_or("").to_string(),
            operator: next().unwrap_or("unknown").to_string(),
            run_id: next().unwrap_or("unknown").to_string(),
            since: next().and_then(|value| value.parse().ok()),
            boot_id: next().map(str::to_string),
            start: next().map(str::to_string),
            alive,
        }
    }

    /// Whether the line identifies its process well enough (PID above 1, boot id and start
    /// time) that `unlock --force` may signal it.
    pub fn verifiable(&self) -> bool {
        self.pid.parse::<u32>().is_ok_and(|pid| pid > 1)
            && self.boot_id.is_some()
            && self.start.is_some()
    }

    /// RFC 3339 time the lock was taken, or "an unknown time".
    pub fn since_text(&self) -> String {
        self.since
            .and_then(crate::text::rfc3339_of_unix)
            .unwrap_or_else(|| "an unknown time".to_string())
    }

    /// "held by OPERATOR (run RUN) since TIME".
    pub fn describe(&self) -> String {
        format!(
            "held by {} (run {}) since {}",
            self.operator,
            self.run_id,
            self.since_text()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    fn digest(character: char) -> String {
        std::iter::repeat_n(character, 64).collect()
    }

    fn facts_with(live: &str, releases: &[&str], log: &[&str]) -> Facts {
        let mut text = String::from("base present\n");
        text.push_str(&format!("current releases/{live}\n"));
        for release in releases {
            text.push_str(&format!("release {release} {}\n", digest('a')));
        }
        for line in log {
            text.push_str(&format!("log {line}\n"));
        }
        parse(&text).expect("parses")
    }

    #[test]
    fn parses_every_tag() {
        let text = format!(
            "df Filesystem 1024-blocks Used Available Capacity Mounted on\n\
             df /dev/vda 1000 10 990 1% /\n\
             base present\n\
             current releases/v2\n\
             release v1 {a}\n\
             release v2 {b}\n\
             release v3 not-a-digest\n\
             log 100 stage - v1\n\
             log 101 push - v1\n\
             log 200 push v1 v2\n\
             lock alive 4242 alice@laptop 20261126T101010Z-ab 1700000000\n\
             staging 20261126T101010Z-ab\n",
            a = digest('a'),
            b = digest('B')
        );
        let facts = parse(&text).expect("parses");
        assert_eq!(facts.free_bytes, Some(990 * 1024));
        assert!(facts.base_exists);
        assert_eq!(facts.releases.len(), 2, "v3 has no valid digest");
        assert_eq!(facts.releases[&version("v2")], digest('b'));
        assert_eq!(facts.live(), Some(&version("v2")));
        assert_eq!(facts.previous(), Some(&version("v1")));
        let lock = facts.lock.clone().expect("lock");
        assert!(lock.alive);
        assert_eq!(lock.operator, "alice@laptop");
        assert_eq!(lock.run_id, "20261126T101010Z-ab");
        assert_eq!(lock.since, Some(1_700_000_000));
        assert_eq!(facts.staging, vec!["20261126T101010Z-ab".to_string()]);
    }

    /// A lock without its holder line is a run taking it: alive while younger than a minute
    /// (so `unlock` without `--force` leaves it), dead after (see `lock::lock_script`).
    #[test]
    fn a_lock_without_its_holder_is_alive_while_young() {
        let directory = tempfile::tempdir().expect("tempdir");
        let lock = directory.path().join("app/.deploy/lock");
        std::fs::create_dir_all(&lock).expect("mkdir");
        let script = facts_script("app", None).into_string();
        let read = || {
            let output = crate::remote::local_shell::run(directory.path(), &script);
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            parse(&text).expect("facts parse").lock.expect("a lock")
        };
        assert!(read().alive, "young");
        let long_ago = std::fs::FileTimes::new()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120));
        std::fs::File::open(&lock)
            .and_then(|directory| directory.set_times(long_ago))
            .expect("age the lock");
        assert!(!read().alive, "older than a minute");
    }

    #[test]
    fn hostile_output_is_an_error_naming_the_line() {
        let error = parse("base present\nrm -rf /\n").expect_err("unknown tag");
        assert!(error.contains("line 2"), "{error}");
        let error = parse("release ../../etc abc\n").expect_err("bad version");
        assert!(error.contains("line 1"), "{error}");
        let error = parse("log 1 explode - v1\n").expect_err("bad action");
        assert!(error.contains("release log action"), "{error}");
        let error = parse("df a\ndf /dev/x 1 2 lots 1% /\n").expect_err("bad df");
        assert!(error.contains("df"), "{error}");
    }

    #[test]
    fn absent_base_has_no_live_release() {
        let facts = parse("base absent\n").expect("parses");
        assert!(!facts.base_exists);
        assert_eq!(facts.live(), None);
        assert_eq!(facts.rollback_target(), None);
    }

    #[test]
    fn current_pointing_at_an_incomplete_release_is_not_live() {
        let facts = facts_with("v9", &["v1"], &["1 push - v1"]);
        assert_eq!(facts.live(), None);
    }

    #[test]
    fn rollback_walks_back_in_go_live_order() {
        let log = ["1 push - v1", "2 push v1 v2", "3 push v2 v3"];
        let facts = facts_with("v3", &["v1", "v2", "v3"], &log);
        assert_eq!(facts.rollback_target(), Some(version("v2")));
        // After rolling back to v2, the next rollback skips v3 (rolled back from) and goes to v1.
        let log = [
            "1 push - v1",
            "2 push v1 v2",
            "3 push v2 v3",
            "4 rollback v3 v2",
        ];
        let facts = facts_with("v2", &["v1", "v2", "v3"], &log);
        assert_eq!(facts.rollback_target(), Some(version("v1")));
        let log = [
            "1 push - v1",
            "2 push v1 v2",
            "3 push v2 v3",
            "4 rollback v3 v2",
            "5 rollback v2 v1",
        ];
        let facts = facts_with("v1", &["v1", "v2", "v3"], &log);
        assert_eq!(facts.rollback_target(), None);
    }

    #[test]
    fn rollback_order_ignores_names() {
        // "v10" went live before "v9": names must not decide.
        let log = ["1 push - v10", "2 push v10 v9", "3 push v9 a-release"];
        let facts = facts_with("a-release", &["v10", "v9", "a-release"], &log);
        assert_eq!(facts.rollback_target(), Some(version("v9")));
    }

    #[test]
    fn a_release_pushed_again_after_a_rollback_is_a_target_again() {
        let log = [
            "1 push - v1",
            "2 push v1 v2",
            "3 rollback v2 v1",
            "4 push v1 v2",
            "5 push v2 v3",
        ];
        let facts = facts_with("v3", &["v1", "v2", "v3"], &log);
        assert_eq!(facts.rollback_target(), Some(version("v2")));
    }

    #[test]
    fn newest_first_uses_the_log_and_puts_unknown_releases_last() {
        let log = [
            "1 stage - v2",
            "2 push - v2",
            "3 stage - v1",
            "4 push v2 v1",
        ];
        let facts = facts_with("v1", &["v1", "v2", "zzz"], &log);
        assert_eq!(
            facts.releases_newest_first(),
            vec![version("v1"), version("v2"), version("zzz")]
        );
    }

    #[test]
    fn log_lines_round_trip() {
        let entry = LogEntry {
            time: 42,
            action: LogAction::Rollback,
            from: Some(version("v3")),
            to: version("v2"),
        };
        assert_eq!(log_line(&entry), "42 rollback v3 v2");
        assert_eq!(parse_log_line(&log_line(&entry)), Ok(entry));
    }

    #[test]
    fn the_script_runs_on_a_missing_base_dir() {
        let directory = tempfile::tempdir().expect("tempdir");
        let output = crate::remote::local_shell::run(directory.path(), &command("does/not/exist"));
        let facts = parse(&String::from_utf8_lossy(&output.stdout)).expect("parses");
        assert!(!facts.base_exists);
        assert!(facts.free_bytes.is_some());
    }
}
