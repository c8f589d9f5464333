//! Lock: the program that takes a service's lock on a host and holds it for the run, and the
//! holder line it leaves (`LockHolder`), read back by the lock script itself (`HELD`), the facts
//! script and `unlock`.

use super::layout::{self, within_state};
use super::process::{LOCK_FUNCTIONS, PROCESS_FUNCTIONS, stop_steps_function};
use super::script::{quote, script};
use super::state;

/// Line that ends the facts the lock script prints once the lock is taken.
pub const LOCK_FACTS_END: &str = "END-OF-FACTS";

/// The script that takes the service lock and keeps it while its stdin stays open.
///
/// It prints `LOCKED` and the service's facts (ended by `LOCK_FACTS_END`) once the lock is
/// ours, `HELD <holder line>` and exits 3 when another run holds it, or `ERROR <why>` and exits
/// 1 when the lock cannot be taken at all (read-only or full filesystem: never reported as
/// "held"). The lock is a directory (mkdir is atomic) with a holder file naming this shell's
/// PID, the operator, the run, the time, the boot id and the shell's start time; the shell then
/// waits on stdin (a `read` loop, no process of its own). Closing stdin (release) or losing the
/// SSH connection (controller killed) ends the loop; the shell then stops the steps its run left
/// running (and waits for them) before it removes the lock. A lock whose holder is gone (host rebooted, shell killed, PID reused by
/// another process), or that has no holder line and is over a minute old (`lock_alive`), is
/// stale and broken, under a second mkdir so two runs never both break and
/// take it.
///
/// With `live_manifest_cap` (a push, which plans a delta from the live release), the facts end
/// with the live release's recorded manifest (`state::facts_script`), read under the lock in the
/// same command: no session of its own for it.
pub fn lock_script(
    base_dir: &str,
    operator: &str,
    run_id: &str,
    now: u64,
    live_manifest_cap: Option<u64>,
) -> String {
    script!(
        r#"start=$PWD
{functions}{lock_functions}{stop_steps}b={base}
mkdir -p -- "$b/{state}" || {{ echo "ERROR cannot create $b/{state}"; exit 1; }}
cd -- "$b/{state}" || {{ echo "ERROR cannot enter $b/{state}"; exit 1; }}
operator={operator}
run_id={run_id}
boot=; IFS= read -r boot 2>/dev/null < /proc/sys/kernel/random/boot_id
proc_stat $$
me="$$ $operator $run_id {now} ${{boot:--}} $proc_start"
held_by_me() {{ line=; IFS= read -r line 2>/dev/null < {lock_holder}; [ "$line" = "$me" ]; }}
take() {{
  problem=$(mkdir {lock} 2>&1) || return 1
  printf '%s\n' "$me" > {lock_holder} || {{ rm -rf {lock}; echo "ERROR cannot write $b/{holder_path}"; exit 1; }}
}}
# Someone else's lock: wait up to a second for a holder that is letting go (a dead
# controller's lock holder stops that run's steps before it removes the lock), break a stale
# one, or report the holder.
tries=0
while ! held_by_me; do
  if [ ! -d {lock} ]; then
    take && break
    [ -d {lock} ] || {{ printf 'ERROR cannot take the lock in %s/{state}: %s\n' "$b" "$problem"; exit 1; }}
  fi
  holder=
  [ -f {lock_holder} ] && IFS= read -r holder < {lock_holder}
  # A break takes microseconds: a lock.break older than a minute was left by a crash.
  if [ -d {lock_break} ] && older_than_a_minute {lock_break}; then rmdir {lock_break} 2>/dev/null; fi
  if ! lock_alive {lock} "$holder" && mkdir {lock_break} 2>/dev/null; then
    again=
    [ -f {lock_holder} ] && IFS= read -r again < {lock_holder}
    if [ "$again" = "$holder" ]; then stop_steps {lock} {all}; rm -rf {lock}; fi
    rmdir {lock_break}
    continue
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 5 ]; then
    IFS= read -r holder < {lock_holder} 2>/dev/null
    printf 'HELD %s\n' "$holder"
    exit 3
  fi
  sleep 0.2 2>/dev/null || sleep 1
done
{freeze_check}printf 'LOCKED\n'
( cd -- "$start" && {facts} )
printf '{end}\n'
while read -r line; do :; done
# Only our own lock is removed: `deploy unlock --force` may have broken it and another run taken it.
if held_by_me; then stop_steps {lock} {all}; rm -rf {lock}; fi
exit 0
"#,
        functions = PROCESS_FUNCTIONS,
        lock_functions = LOCK_FUNCTIONS,
        stop_steps = stop_steps_function(),
        all = &layout::FENCE_ALL,
        base = quote(base_dir),
        state = layout::STATE,
        operator = quote(operator),
        run_id = quote(run_id),
        now = &now,
        lock = within_state(layout::LOCK),
        lock_holder = within_state(layout::LOCK_HOLDER),
        lock_break = within_state(layout::LOCK_BREAK),
        holder_path = layout::LOCK_HOLDER,
        facts = state::facts_script(base_dir, live_manifest_cap),
        end = LOCK_FACTS_END,
        freeze_check = super::freeze::freeze_check(),
    )
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Version;
    use crate::remote::scan::{RECORDED_MANIFEST, RecordedManifest, split_recorded_manifest};
    use crate::remote::state::LockHolder;

    #[test]
    fn lock_holders_are_described_for_operators() {
        assert_eq!(
            LockHolder::parse("42 alice@laptop 20261126T000000Z-1f 0", true).describe(),
            "held by alice@laptop (run 20261126T000000Z-1f) since 1970-01-01T00:00:00Z"
        );
        assert_eq!(
            LockHolder::parse("", false).describe(),
            "held by unknown (run unknown) since an unknown time"
        );
    }

    /// What the lock script prints after `LOCKED`, up to the end of the facts (as
    /// `ssh::Session::hold` hands it over), for a base dir `app` in `directory`.
    fn locked_text(directory: &std::path::Path, cap: Option<u64>) -> String {
        let output = crate::remote::local_shell::run(
            directory,
            &lock_script("app", "alice@laptop", "run-1", 7, cap),
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        let text = stdout
            .strip_prefix("LOCKED\n")
            .unwrap_or_else(|| panic!("not locked: {stdout}"));
        let end = format!("\n{LOCK_FACTS_END}\n");
        let at = text
            .rfind(&end)
            .unwrap_or_else(|| panic!("no end of facts: {stdout}"));
        text[..at + 1].to_string()
    }

    /// The facts without what differs between two runs: free space (`df`) and the lock
    /// holder's own line (its PID).
    fn stable(facts: &str) -> String {
        facts
            .lines()
            .filter(|line| !line.starts_with("df ") && !line.starts_with("lock "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// A push's lock reads the live release's recorded manifest after the facts, byte for
    /// byte; the facts before it parse as without it. Larger than the cap, it is left out
    /// (the push reads it with a command of its own); none recorded is said so; no live
    /// release, or another command's lock, prints no section at all.
    #[test]
    fn a_push_lock_reads_the_live_manifest_after_the_facts() {
        let directory = tempfile::tempdir().expect("tempdir");
        let app = directory.path().join("app");
        std::fs::create_dir_all(app.join("releases/v1")).expect("mkdir");
        std::fs::create_dir_all(app.join(".deploy/manifests")).expect("mkdir");
        std::fs::create_dir_all(app.join(".deploy/digests")).expect("mkdir");
        std::fs::write(
            app.join(".deploy/digests/v1"),
            format!("{}\n", "ab".repeat(32)),
        )
        .expect("write digest");
        // No newline at the end: the section must not depend on one.
        let manifest = "deploy-manifest 1\nf 644 3 aa a file\nd 755 - - dir";
        std::fs::write(app.join(".deploy/manifests/v1"), manifest).expect("write manifest");
        let version = Version::parse("v1").expect("version");

        // No live release yet: no section.
        let text = locked_text(directory.path(), Some(1 << 20));
        assert!(!text.contains(RECORDED_MANIFEST), "{text}");
        assert_eq!(
            split_recorded_manifest(&text, 1 << 20),
            (text.as_str(), None)
        );

        std::os::unix::fs::symlink("releases/v1", app.join("current")).expect("symlink");
        let plain = locked_text(directory.path(), None);
        assert!(!plain.contains(RECORDED_MANIFEST), "{plain}");

        let text = locked_text(directory.path(), Some(1 << 20));
        let (facts, live) = split_recorded_manifest(&text, 1 << 20);
        assert_eq!(
            stable(facts),
            stable(&plain),
            "the facts are the same with the section after them"
        );
        assert_eq!(
            state::parse(facts).expect("facts parse").live(),
            Some(&version)
        );
        assert_eq!(live, Some(RecordedManifest::Recorded(manifest.to_string())));
        // Exactly the manifest's size is within the cap; one byte less is not.
        let size = manifest.len() as u64;
        let text = locked_text(directory.path(), Some(size));
        assert!(matches!(
            split_recorded_manifest(&text, size).1,
            Some(RecordedManifest::Recorded(_))
        ));
        let text = locked_text(directory.path(), Some(size - 1));
        let (facts, live) = split_recorded_manifest(&text, size - 1);
        assert_eq!((stable(facts), live), (stable(&plain), None));

        std::fs::remove_file(app.join(".deploy/manifests/v1")).expect("remove manifest");
        let text = locked_text(directory.path(), Some(1 << 20));
        let (facts, live) = split_recorded_manifest(&text, 1 << 20);
        assert_eq!(
            (stable(facts), live),
            (stable(&plain), Some(RecordedManifest::Absent))
        );
    }

    /// A lock that cannot be created (here: `lock` is a dangling link, as a read-only or
    /// broken filesystem would refuse it) is an error naming why, never "held".
    #[test]
    fn a_lock_that_cannot_be_created_is_an_error_not_held() {
        let directory = tempfile::tempdir().expect("tempdir");
        let deploy = directory.path().join("app/.deploy");
        std::fs::create_dir_all(&deploy).expect("mkdir");
        std::os::unix::fs::symlink("/nonexistent/target", deploy.join("lock")).expect("symlink");
        let output = crate::remote::local_shell::run(
            directory.path(),
            &lock_script("app", "alice@laptop", "run-1", 7, None),
        );
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
            .arg(lock_script("app", "alice@laptop", "run-2", 7, None))
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

    /// A lock directory without its holder line is another run taking it (between its mkdir
    /// and its write): never broken while young, or two runs could both believe they hold it.
    /// One older than a minute was left by a taker that died in between: broken and taken.
    #[test]
    fn a_lock_without_its_holder_is_held_while_young_and_broken_when_old() {
        let directory = tempfile::tempdir().expect("tempdir");
        let lock = directory.path().join("app/.deploy/lock");
        std::fs::create_dir_all(&lock).expect("mkdir");
        let script = lock_script("app", "alice@laptop", "run-2", 10, None);
        let output = crate::remote::local_shell::run(directory.path(), &script);
        assert_eq!(
            output.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "HELD \n");
        assert!(lock.is_dir(), "a young lock is not broken");
        assert!(!lock.join("holder").exists());

        let long_ago = std::fs::FileTimes::new()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120));
        std::fs::File::open(&lock)
            .and_then(|directory| directory.set_times(long_ago))
            .expect("age the lock");
        let output = crate::remote::local_shell::run(directory.path(), &script);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("LOCKED\n"), "{stdout}");
        assert!(!lock.exists(), "taken, then released at stdin EOF");
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
        let script = lock_script("app", "alice@laptop", "run-2", 10, None);
        // While held, the holder line carries the plain operator and run id.
        let mut holding = std::process::Command::new("sh")
            .arg("-c")
            .arg(lock_script("held", "alice@laptop", "run-1", 7, None))
            .current_dir(directory.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let holder_file = directory.path().join("held/.deploy/lock/holder");
        // The file exists (the shell's `>`) a moment before its line is written.
        let written =
            || std::fs::read_to_string(&holder_file).is_ok_and(|holder| holder.ends_with('\n'));
        let mut waited = 0;
        while !written() && waited < 500 {
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
        let output = crate::remote::local_shell::run(directory.path(), &script);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("LOCKED\n") && stdout.ends_with("END-OF-FACTS\n"),
            "{stdout} / stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let facts_text = &stdout["LOCKED\n".len()..stdout.len() - "END-OF-FACTS\n".len()];
        let facts = state::parse(facts_text).expect("facts under the lock parse");
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
        let output = crate::remote::local_shell::run(directory.path(), &script);
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
}
