//! Regression tests for faults found in the field, each staged with a real fault on real sshd
//! hosts: slowed remote commands (wrappers first on a host's PATH), frozen or dropped SSH
//! sessions, a controller signalled at an exact step, a full or read-only disk, hand-written
//! lock holders and torn history lines. Each test states the contract it holds the binary to;
//! durations are only asserted where the contract is itself a deadline (`host_timeout`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, Background, MountGuard, Ran, Scenario, many_files, path_str};

/// How long a polled condition (or a background run) may take before the test gives up; only
/// keeps a broken build from hanging the suite.
const PATIENCE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Helpers

/// A push in the background with plain `HOST: STEP` lines on stderr (`-v`, no terminal).
fn spawn_push(scenario: &Scenario, tag: &str, version: &str, artifact: &Path) -> Background {
    scenario.spawn_push(tag, version, artifact, &["-v"])
}

/// The last history record of host `index` agrees with what is live there: `ok` means the
/// host is on `to`; `failed` / `rolled_back` mean it is (back) on `from`.
fn assert_last_record_agrees(scenario: &Scenario, index: usize) {
    let record = scenario.last_record(index);
    let live = scenario.live(index);
    let expected = match record["result"].as_str() {
        Some("ok") => &record["to"],
        Some("failed" | "rolled_back") => &record["from"],
        other => panic!("unexpected result {other:?} in {record:#}"),
    };
    assert_eq!(
        expected.as_str(),
        live.as_deref(),
        "{}: the last history record does not agree with what is live ({live:?}): {record:#}",
        scenario.host(index).name
    );
}

fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    support::wait_until(what, PATIENCE, condition);
}

/// Polls for up to `seconds` (clean-up that may finish just after the controller exits).
fn eventually(seconds: u64, condition: impl FnMut() -> bool) -> bool {
    support::eventually(Duration::from_secs(seconds), condition)
}

fn assert_no_lock_left(scenario: &Scenario) {
    for index in 0..scenario.hosts().len() {
        let lock = scenario.app(index).join(".deploy/lock");
        assert!(
            eventually(10, || !lock.exists()),
            "{}: lock left behind: {:?}",
            scenario.host(index).name,
            std::fs::read_to_string(lock.join("holder"))
        );
    }
}

/// Waits until no wrapper started on any host of the fleet is still running: a slowed `mv`
/// outlives the session (and the controller) that started it, and the host's tree is only
/// final once it is done.
fn wait_for_wrappers(scenario: &Scenario) {
    for host in scenario.hosts() {
        wait_until(&format!("{}: wrappers done", host.name), || {
            host.wrapper_processes().is_empty()
        });
    }
}

/// Waits until host `index` runs one of its wrappers with `needle` in its arguments: the
/// remote step is then really in flight (a progress line is printed when the step starts,
/// possibly before the command reaches the host).
fn wait_for_wrapper(scenario: &Scenario, index: usize, needle: &str) {
    let host = scenario.host(index);
    let bin = format!("{}/", path_str(&host.bin_dir()));
    wait_until(
        &format!(
            "{}: a wrapper with {needle:?} in its arguments runs",
            host.name
        ),
        || {
            !support::processes_where(|p| p.cmdline.contains(&bin) && p.cmdline.contains(needle))
                .is_empty()
        },
    );
}

/// `mv` on host `index` sleeps `seconds` before moving when its arguments contain `needle`.
fn slow_mv(scenario: &Scenario, index: usize, needle: &str, seconds: u32) {
    let mv = support::real_program("mv");
    let sleep = support::real_program("sleep");
    scenario.host(index).wrap_command(
        "mv",
        &format!(
            "case \"$*\" in *{needle}*) {} {seconds};; esac\n{} \"$@\"",
            sleep.display(),
            mv.display()
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Interrupted finalize

fn many_files_tarball(scenario: &Scenario, version: &str) -> (PathBuf, Vec<(String, String)>) {
    let files = many_files(version, 3000);
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, content)| (path.as_str(), content.as_str()))
        .collect();
    (scenario.artifact(version, &borrowed), files)
}

/// `releases/<version>` on host `index` does not exist, or holds every file of the artifact
/// with its content.
fn assert_whole_or_absent(
    scenario: &Scenario,
    index: usize,
    version: &str,
    files: &[(String, String)],
) {
    let release = scenario.app(index).join("releases").join(version);
    if !release.exists() {
        return;
    }
    let missing: Vec<&str> = files
        .iter()
        .filter(|(path, content)| {
            std::fs::read_to_string(release.join(path)).ok().as_deref() != Some(content.as_str())
        })
        .map(|(path, _)| path.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{}: releases/{version} exists but is incomplete: {} of {} files missing or wrong (e.g. {:?})",
        scenario.host(index).name,
        missing.len(),
        files.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The same push again succeeds and every host is live on a complete `version`.
fn rerun_completes(
    scenario: &Scenario,
    version: &str,
    artifact: &Path,
    files: &[(String, String)],
    first: &Ran,
) {
    let ran = scenario.push_artifact(version, artifact, &[]);
    assert_eq!(
        ran.code, 0,
        "re-running the interrupted push failed: {ran:?}\nthe first run was: {first:?}"
    );
    for index in 0..scenario.hosts().len() {
        assert_eq!(scenario.live(index).as_deref(), Some(version), "{ran:?}");
        let release = scenario.app(index).join("releases").join(version);
        assert!(
            release.is_dir(),
            "{}: no releases/{version}",
            scenario.host(index).name
        );
        assert_whole_or_absent(scenario, index, version, files);
    }
}

/// On host `index`, `mv` holds up the rename of a staged tree into `releases/` for up to
/// `seconds`, and goes ahead at once when the tree starts to disappear (fewer than its 30
/// top-level directories): the finalize window is wide open, and a clean-up that deletes the
/// staged tree while the rename is pending is caught in the act, not only when it happens to
/// be slow.
fn slow_finalize_mv(scenario: &Scenario, index: usize, seconds: u32) {
    let mv = support::real_program("mv");
    let sleep = support::real_program("sleep");
    // About 75 polls a second; counting by glob keeps each poll to one fork (the sleep).
    let polls = seconds * 75;
    scenario.host(index).wrap_command(
        "mv",
        &format!(
            "whole() {{ set -- \"$1\"/d*; [ $# -ge 30 ]; }}\n\
             case \"$*\" in\n\
             *releases/*)\n\
             \x20 src=; dst=; for a; do src=$dst; dst=$a; done\n\
             \x20 i=0\n\
             \x20 while [ $i -lt {polls} ] && whole \"$src\"; do {sleep} 0.01; i=$((i+1)); done;;\n\
             esac\n\
             {mv} \"$@\"",
            sleep = sleep.display(),
            mv = mv.display(),
        ),
    );
}

/// SIGINT or SIGTERM while web1's finalize (its `mv` of the tree into `releases/`) is held up
/// for ~2 s: exit 130, no incomplete release anywhere, and the same push then completes.
fn finalize_interrupted_by(signal: &str) {
    let scenario = Scenario::new(2);
    let (artifact, files) = many_files_tarball(&scenario, "v2");
    slow_finalize_mv(&scenario, 0, 2);

    let mut running = spawn_push(&scenario, signal, "v2", &artifact);
    running.wait_for_line("web1: finalize", PATIENCE);
    wait_for_wrapper(&scenario, 0, "releases/");
    running.signal(signal);
    let ran = running.wait(PATIENCE);
    assert_eq!(ran.code, 130, "SIG{signal} during finalize: {ran:?}");

    wait_for_wrappers(&scenario);
    for index in 0..2 {
        assert_whole_or_absent(&scenario, index, "v2", &files);
    }
    rerun_completes(&scenario, "v2", &artifact, &files, &ran);
}

#[test]
fn sigint_during_finalize_never_leaves_an_incomplete_release() {
    finalize_interrupted_by("INT");
}

#[test]
fn sigterm_during_finalize_never_leaves_an_incomplete_release() {
    finalize_interrupted_by("TERM");
}

#[test]
fn host_timeout_during_finalize_never_leaves_an_incomplete_release() {
    // The deadline must fall in web1's finalize, which is held up far longer than any deadline
    // tried. Connect + upload of 3,000 files takes a few seconds on a quiet machine, but under
    // the whole suite's load it once took more than 15 s (CI): a deadline that falls earlier
    // must leave nothing incomplete either, and the push is then tried again with twice the
    // time. The test fails if no deadline ever lands in finalize.
    let mut scenario = Scenario::new(2);
    let (artifact, files) = many_files_tarball(&scenario, "v2");
    slow_finalize_mv(&scenario, 0, 120);

    let mut earlier = Vec::new();
    let ran = loop {
        let seconds = 15 << earlier.len();
        scenario = scenario.deploy_table(&format!("host_timeout = \"{seconds}s\""));
        let ran = scenario.push_artifact("v2", &artifact, &[]);
        assert_eq!(ran.code, 1, "web1 ran out of time ({seconds} s): {ran:?}");
        let web1 = ran.host("web1");
        assert_eq!(web1["result"], "failed", "{ran:?}");
        wait_for_wrappers(&scenario);
        for index in 0..2 {
            assert_whole_or_absent(&scenario, index, "v2", &files);
        }
        let error = web1["error"].as_str().unwrap_or("").to_string();
        if error.contains("finalize") {
            break ran;
        }
        earlier.push(format!("{seconds} s: {error}"));
        assert!(
            earlier.len() < 3,
            "no deadline fell in web1's finalize; this machine is too loaded for the test to \
             mean anything: {earlier:?}"
        );
    };

    // The re-run is about recovery, not the deadline: no slow mv, the default host_timeout.
    scenario.host(0).unwrap_command("mv");
    let scenario = scenario.deploy_table("");
    rerun_completes(&scenario, "v2", &artifact, &files, &ran);
}

// ---------------------------------------------------------------------------------------------
// 2. Ctrl-C during the switch

#[test]
fn ctrl_c_during_the_switch_rolls_every_host_back() {
    let scenario = Scenario::new(3);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    // Every rename of `current` takes 2 s: the switch is in flight when Ctrl-C comes.
    for index in 0..3 {
        slow_mv(&scenario, index, "current", 2);
    }

    let mut running = spawn_push(&scenario, "interrupted", "v2", &v2);
    let line = running.wait_for_line_where(
        "a `webN: switch` line",
        |line| line.starts_with("web") && line.ends_with(": switch"),
        PATIENCE,
    );
    let index = scenario.host_index(line.trim_end_matches(": switch"));
    wait_for_wrapper(&scenario, index, "current");
    running.signal("INT");
    let ran = running.wait(PATIENCE);
    assert_eq!(ran.code, 130, "SIGINT at {line:?}: {ran:?}");

    wait_for_wrappers(&scenario);
    assert_eq!(
        scenario.lives(),
        vec![Some("v1".to_string()); 3],
        "every host is back on v1 after Ctrl-C at {line:?}: {ran:?}"
    );
    for host in scenario.hosts() {
        let row = ran.host(&host.name);
        let error = row["error"].as_str().unwrap_or("");
        assert!(
            !(row["result"] == "failed" && error.contains("switch: interrupted")),
            "{}: a switch in flight is not left as `failed: switch: interrupted`: {row:#}",
            host.name
        );
        assert!(
            row["result"] == "rolled_back" || row["result"] == "skipped",
            "{}: rolled_back or skipped: {row:#}",
            host.name
        );
    }
    for index in 0..3 {
        assert_last_record_agrees(&scenario, index);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. SIGKILL right after the switch

#[test]
fn sigkill_right_after_the_switch_keeps_the_audit_log() {
    let scenario = Scenario::new(3).service(
        "[services.app.hooks]\n\
         after_switch = [\"echo \\\"$DEPLOY_RUN_ID\\\" > \\\"$DEPLOY_BASE_DIR/run-$DEPLOY_VERSION\\\"; [ \\\"$DEPLOY_VERSION\\\" != v2 ] || sleep 5\"]\n",
    );
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let v3 = scenario.artifact("v3", &[("index.html", "three")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let mut running = spawn_push(&scenario, "killed", "v2", &v2);
    let line = running.wait_for_line_where(
        "a `webN: after_switch` line",
        |line| line.starts_with("web") && line.ends_with(": after_switch"),
        PATIENCE,
    );
    let host = line.trim_end_matches(": after_switch").to_string();
    let index = scenario.host_index(&host);
    // The hook has started on that host (it writes the run id, then sleeps 5 s): SIGKILL now.
    let run_file = scenario.app(index).join("run-v2");
    wait_until("the after_switch hook wrote the run id", || {
        std::fs::read_to_string(&run_file).is_ok_and(|text| text.ends_with('\n'))
    });
    running.signal("KILL");
    let killed = running.wait(PATIENCE);
    let run_id = std::fs::read_to_string(&run_file)
        .expect("run id")
        .trim()
        .to_string();
    assert_eq!(
        scenario.live(index).as_deref(),
        Some("v2"),
        "{host} ran its after_switch hook, so it is live on v2"
    );
    for index in 0..3 {
        if scenario.live(index).as_deref() != Some("v2") {
            continue;
        }
        let record = scenario.last_record(index);
        let name = &scenario.host(index).name;
        assert_eq!(
            (
                record["action"].as_str(),
                record["from"].as_str(),
                record["to"].as_str(),
                record["result"].as_str(),
                record["id"].as_str(),
            ),
            (
                Some("push"),
                Some("v1"),
                Some("v2"),
                Some("ok"),
                Some(run_id.as_str())
            ),
            "{name} is live on v2 after the controller was killed: its last history record must say so: {record:#}\nkilled run's stderr:\n{}",
            killed.stderr
        );
    }

    let ran = scenario.push_artifact("v3", &v3, &[]);
    assert_eq!(
        ran.code, 0,
        "a push after a killed run needs no unlock: {ran:?}\nkilled run's stderr:\n{}",
        killed.stderr
    );
    assert_eq!(scenario.lives(), vec![Some("v3".to_string()); 3]);
}

// ---------------------------------------------------------------------------------------------
// 4. Huge error text

#[test]
fn a_hook_with_huge_error_output_fails_within_bounded_records() {
    const LIMIT: usize = 16 * 1024;
    let scenario = Scenario::new(1);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    assert_eq!(scenario.push_artifact("v1", &v1, &[]).code, 0);
    let scenario = scenario.service(
        "[services.app.hooks]\n\
         before_switch = [\"head -c 409600 /dev/zero | tr '\\\\000' e >&2; exit 1\"]\n",
    );

    let running = scenario.spawn_push("huge", "v2", &v2, &[]);
    // Ends: a hang here is the fault.
    let ran = running.wait(Duration::from_secs(60));
    assert_eq!(ran.code, 1, "{}", &ran.stderr[..ran.stderr.len().min(4000)]);

    let text =
        std::fs::read_to_string(scenario.app(0).join(".deploy/history.jsonl")).expect("history");
    let last = text.lines().last().expect("a history line");
    assert!(
        last.len() < LIMIT,
        "the last history line is {} bytes (limit {LIMIT}): {}...",
        last.len(),
        &last[..300.min(last.len())]
    );
    let record: Value = serde_json::from_str(last).expect("the last history line is JSON");
    assert_eq!(record["result"], "failed", "{record:#}");
    assert_eq!(record["to"], "v2", "{record:#}");
    let error = ran.error("web1");
    assert!(
        !error.is_empty() && error.len() < LIMIT,
        "the JSON error of web1 is {} bytes (limit {LIMIT}): {}...",
        error.len(),
        &error[..300.min(error.len())]
    );
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
    assert_no_lock_left(&scenario);
}

// ---------------------------------------------------------------------------------------------
// 5. History on a full disk, torn history lines

/// Rewrites the last history record of host `index` with a `message` that pads the file to a
/// whole number of pages. On tmpfs an append that fits in the last page's slack needs no new
/// block, so a "full" disk would still take a short record; padded, the next append needs a
/// page the disk no longer has.
fn pad_history_to_a_page(scenario: &Scenario, index: usize) {
    let path = scenario.app(index).join(".deploy/history.jsonl");
    let text = std::fs::read_to_string(&path).expect("history");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut record: Value = serde_json::from_str(lines.last().expect("a record")).expect("JSON");
    record["message"] = Value::String(String::new());
    let before: usize = lines[..lines.len() - 1].iter().map(|l| l.len() + 1).sum();
    let bare = serde_json::to_string(&record).expect("serialize").len() + 1;
    let pad = (4096 - (before + bare) % 4096) % 4096;
    record["message"] = Value::String("p".repeat(pad));
    *lines.last_mut().expect("a record") = serde_json::to_string(&record).expect("serialize");
    let padded = lines.join("\n") + "\n";
    assert_eq!(padded.len() % 4096, 0);
    std::fs::write(&path, padded).expect("rewrite history");
}

#[test]
fn a_full_disk_refuses_the_switch_rather_than_lose_its_history_record() {
    // Fills the disk once, when the test asks for it (marker file), then succeeds.
    let scenario = Scenario::new(1).service(
        "[services.app.hooks]\n\
         before_switch = [\"if [ -e \\\"$DEPLOY_BASE_DIR/fill-now\\\" ]; then rm -f \\\"$DEPLOY_BASE_DIR/fill-now\\\"; dd if=/dev/zero of=\\\"$DEPLOY_BASE_DIR/fill\\\" bs=64k 2>/dev/null; fi; true\"]\n",
    );
    let base = scenario.app(0);
    let _disk = MountGuard::tmpfs(&base, 8 * 1024);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    pad_history_to_a_page(&scenario, 0);
    let records_before = scenario.history(0).len();

    std::fs::write(base.join("fill-now"), "").expect("marker");
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert!(
        !base.join("fill-now").exists() && base.join("fill").exists(),
        "the hook filled the disk: {ran:?}"
    );
    assert_eq!(
        ran.code, 1,
        "the switch could not be recorded, so it must not count as done: {ran:?}"
    );
    assert_eq!(
        scenario.live(0).as_deref(),
        Some("v1"),
        "current is not changed without its history record: {ran:?}"
    );
    let said = format!("{}\n{}", ran.stdout, ran.stderr).to_lowercase();
    assert!(
        said.contains("history"),
        "the failure names the history: {ran:?}"
    );
    // Every line is still a whole record (history() parses each), and whatever this run
    // managed to record agrees with what is live.
    assert!(scenario.history(0).len() >= records_before);
    assert_last_record_agrees(&scenario, 0);

    std::fs::remove_file(base.join("fill")).expect("remove the fill file");
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 0, "with room again: {ran:?}");
    assert_eq!(scenario.live(0).as_deref(), Some("v2"));
    let record = scenario.last_record(0);
    assert_eq!(
        (record["to"].as_str(), record["result"].as_str()),
        (Some("v2"), Some("ok")),
        "{record:#}"
    );
}

#[test]
fn a_torn_history_line_is_isolated_and_reported() {
    let scenario = Scenario::new(1);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    assert_eq!(scenario.push_artifact("v1", &v1, &[]).code, 0);
    let path = scenario.app(0).join(".deploy/history.jsonl");
    // A short write: the record was cut off, without its newline.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open history");
    std::io::Write::write_all(&mut file, br#"{"time":"2026"#).expect("append");
    drop(file);
    let torn_line = std::fs::read_to_string(&path)
        .expect("history")
        .lines()
        .count();

    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let run_id = ran.json()["id"].as_str().expect("run id").to_string();
    let text = std::fs::read_to_string(&path).expect("history");
    let last: Value =
        serde_json::from_str(text.lines().last().expect("a line")).unwrap_or_else(|error| {
            panic!("the new record is not a whole line of its own ({error}):\n{text}")
        });
    assert_eq!(last["id"], run_id.as_str(), "{text}");
    assert_eq!(last["to"], "v2", "{text}");

    let ran = scenario.json(&["history"]);
    assert_eq!(
        ran.code, 0,
        "one bad line does not hide the others: {ran:?}"
    );
    let row = ran.host("web1");
    let entries = row["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("entries: {row:#}"));
    let versions: Vec<&str> = entries.iter().filter_map(|e| e["to"].as_str()).collect();
    assert_eq!(
        versions,
        ["v2", "v1"],
        "the valid records, newest first: {row:#}"
    );
    // The bad line is reported: by its number, or by its text.
    let report = format!("{}\n{}\n{}", row["notes"], row["error"], ran.stderr).to_lowercase();
    assert!(
        report.contains(&format!("line {torn_line}"))
            || report.contains(&format!("record {torn_line}"))
            || report.contains(r#"{"time":"2026"#)
            || report.contains(r#"{\"time\":\"2026"#),
        "the torn line {torn_line} is reported (notes, error or stderr): {row:#}\nstderr:\n{}",
        ran.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 6. unlock never kills a stranger

/// A process the test started, killed (SIGKILL, by PID) when dropped.
struct Stranger(Child);

impl Stranger {
    fn start() -> Stranger {
        Stranger(
            Command::new(support::real_program("sleep"))
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .expect("sleep starts"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    fn start_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split_whitespace()
            .nth(19)
            .and_then(|field| field.parse().ok())
            .expect("starttime")
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_holder(scenario: &Scenario, line: &str) {
    let lock = scenario.app(0).join(".deploy/lock");
    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(lock.join("holder"), format!("{line}\n")).expect("write holder");
}

/// `deploy unlock --hosts web1 [--force]`.
fn unlock(scenario: &Scenario, force: bool) -> Ran {
    let mut args = vec!["unlock", "--hosts", "web1"];
    if force {
        args.push("--force");
    }
    scenario.json(&args)
}

fn fleet_with_v1() -> Scenario {
    let scenario = Scenario::new(1);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    scenario
}

/// How `deploy unlock` must treat a holder line naming an unrelated live process.
#[derive(Clone, Copy, PartialEq)]
enum HolderLine {
    /// Boot id and start time recorded, and they do not match: stale, removed without --force.
    Identified,
    /// Written by an older deploy (no start time): the process cannot be told apart from the
    /// holder, so plain `unlock` refuses and `--force` breaks the lock without signalling.
    Unverifiable,
}

/// `deploy unlock` (with and without --force) on a lock whose holder line names an unrelated
/// live process: the process always survives.
fn unlock_spares(kind: HolderLine, holder_of: impl Fn(&Stranger) -> String) {
    let scenario = fleet_with_v1();
    for force in [false, true] {
        let mut stranger = Stranger::start();
        let holder = holder_of(&stranger);
        write_holder(&scenario, &holder);
        let ran = unlock(&scenario, force);
        let how = if force { "unlock --force" } else { "unlock" };
        assert!(
            stranger.alive(),
            "{how} signalled pid {}, a stranger named by the holder line {holder:?}: {ran:?}",
            stranger.pid()
        );
        if kind == HolderLine::Unverifiable && !force {
            assert_eq!(
                ran.code, 1,
                "{how} of an unverifiable live holder refuses: {ran:?}"
            );
            assert!(
                ran.stdout.contains("never signalled") || ran.stderr.contains("never signalled"),
                "the refusal says the process is never signalled: {ran:?}"
            );
            assert!(
                scenario.app(0).join(".deploy/lock").exists(),
                "the lock is kept: {ran:?}"
            );
            continue;
        }
        assert_eq!(
            ran.code, 0,
            "{how} of a lock whose holder line {holder:?} names a stranger: {ran:?}"
        );
        assert!(
            !scenario.app(0).join(".deploy/lock").exists(),
            "the lock is removed: {ran:?}"
        );
    }
}

#[test]
fn unlock_never_kills_a_stranger_named_by_an_old_holder_line() {
    unlock_spares(HolderLine::Unverifiable, |stranger| {
        format!("{} op@host run-x 1700000000", stranger.pid())
    });
}

#[test]
fn unlock_never_kills_a_stranger_whose_start_time_differs() {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("boot id")
        .trim()
        .to_string();
    unlock_spares(HolderLine::Identified, |stranger| {
        format!(
            "{} op@host run-x 1700000000 {boot_id} {}",
            stranger.pid(),
            stranger.start_ticks() + 12345
        )
    });
}

#[test]
fn a_lock_naming_pid_1_is_stale_and_never_suggests_force() {
    // Without --force only: PID 1 of this machine must not be put at risk by a broken build.
    let scenario = fleet_with_v1();
    write_holder(&scenario, "1 op@host run-x 1700000000");
    let ran = unlock(&scenario, false);
    assert!(
        !ran.stdout.contains("--force") && !ran.stderr.contains("--force"),
        "a lock naming pid 1 is not a run to stop: {ran:?}"
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        !scenario.app(0).join(".deploy/lock").exists(),
        "the stale lock is removed: {ran:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7, 8. A host frozen or dropped during after_switch

const SLOW_AFTER_SWITCH: &str = "[services.app.hooks]\n\
     after_switch = [\"[ \\\"$DEPLOY_VERSION\\\" != v2 ] || sleep 2\"]\n";

fn fleet_for_after_switch_faults() -> (Scenario, PathBuf) {
    let scenario = Scenario::new(3)
        .deploy_table("host_timeout = \"4s\"\non_failure = \"rollback\"")
        .service(SLOW_AFTER_SWITCH);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    (scenario, v2)
}

/// Thaws a host's sessions (by index) when dropped (also when the test fails).
struct Thaw<'a>(&'a Scenario, usize);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.fleet().signal_sessions(self.1, "CONT");
    }
}

#[test]
fn host_timeout_bounds_a_run_whose_host_froze_during_after_switch() {
    // The contract: a host's work ends at host_timeout (4 s); switching a host back after that
    // gets a stated grace of 20 s, through a new connection if need be (connect_timeout 5 s);
    // the rest (staging, v1's hooks) takes a few seconds. 45 s is that sum plus a margin: it is
    // what the contract promises an operator, not a speed target. Without a deadline, a frozen
    // host holds the run for as long as the TCP connection stays up.
    const BOUND: Duration = Duration::from_secs(45);
    let (scenario, v2) = fleet_for_after_switch_faults();

    let mut running = spawn_push(&scenario, "frozen", "v2", &v2);
    running.wait_for_line("web2: after_switch", PATIENCE);
    let frozen = scenario.fleet().signal_sessions(1, "STOP");
    let thaw = Thaw(&scenario, 1);
    assert!(!frozen.is_empty(), "web2 had sessions to freeze");
    // Measured from the run's start (host_timeout is one budget for a host's whole run).
    let finished = running.wait_within(BOUND.saturating_sub(running.elapsed()));
    let elapsed = running.elapsed();
    drop(thaw);
    let Some(ran) = finished else {
        panic!(
            "the run did not end within {BOUND:?} of starting (killed); stderr:\n{}",
            running.stderr_so_far()
        );
    };
    assert!(elapsed < BOUND, "took {elapsed:?}: {ran:?}");
    assert_eq!(ran.code, 1, "{ran:?}");

    // After CONT, web2's old sessions see their closed connections and end.
    assert!(
        eventually(15, || scenario.fleet().session_pids(1).is_empty()),
        "web2's thawed sessions ended"
    );
    assert_eq!(
        scenario.lives(),
        vec![Some("v1".to_string()); 3],
        "on_failure = rollback puts every host back on v1: {ran:?}"
    );
}

#[test]
fn a_connection_dropped_during_after_switch_is_switched_back_through_a_new_one() {
    let (scenario, v2) = fleet_for_after_switch_faults();

    let mut running = spawn_push(&scenario, "dropped", "v2", &v2);
    running.wait_for_line("web2: after_switch", PATIENCE);
    let dropped = scenario.fleet().signal_sessions(1, "KILL");
    assert!(!dropped.is_empty(), "web2 had sessions to drop");
    let ran = running.wait(PATIENCE);
    assert_eq!(ran.code, 1, "{ran:?}");

    assert_eq!(
        scenario.lives(),
        vec![Some("v1".to_string()); 3],
        "every host, web2 included, is back on v1: {ran:?}"
    );
    assert_last_record_agrees(&scenario, 1);
}

// ---------------------------------------------------------------------------------------------
// 9. A hook that never returns

/// `sleep 4242` processes started under this fleet's hosts (their working directory is in the
/// fleet's directory), killed by PID when dropped.
struct Sleepers<'a>(&'a Scenario);

impl Sleepers<'_> {
    fn pids(&self) -> Vec<u32> {
        let dir = self.0.dir().to_path_buf();
        support::processes_where(|process| {
            process.cmdline == "sleep 4242" && process.cwd.starts_with(&dir)
        })
    }
}

impl Drop for Sleepers<'_> {
    fn drop(&mut self) {
        support::signal_pids("KILL", &self.pids());
    }
}

#[test]
fn a_hook_that_never_returns_is_stopped_at_host_timeout() {
    let scenario = Scenario::new(1)
        .deploy_table("host_timeout = \"3s\"")
        .service("[services.app.hooks]\nbefore_switch = [\"sleep 4242\"]\n");
    let sleepers = Sleepers(&scenario);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let running = scenario.spawn_push("hook", "v1", &v1, &[]);
    let ran = running.wait(PATIENCE);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        eventually(5, || sleepers.pids().is_empty()),
        "the hook's `sleep 4242` still runs after the run ended (pids {:?}): {ran:?}",
        sleepers.pids()
    );
    assert_no_lock_left(&scenario);
}

// ---------------------------------------------------------------------------------------------
// 10. Read-only base_dir

#[test]
fn a_read_only_base_dir_is_reported_as_such_not_as_a_held_lock() {
    let scenario = fleet_with_v1();
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let _read_only = MountGuard::read_only(&scenario.app(0));
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(
        ran.code, 1,
        "a read-only disk is a failure, not a held lock: {ran:?}"
    );
    let error = ran.error("web1");
    assert!(!error.contains("held by"), "{ran:?}");
    assert!(
        error.contains("Read-only file system"),
        "the error names the real problem: {ran:?}"
    );
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
}

// ---------------------------------------------------------------------------------------------
// 14. Two controllers at once

#[test]
fn two_controllers_at_once_never_both_lose() {
    let scenario = Scenario::new(3);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    assert_eq!(scenario.push_artifact("v1", &v1, &[]).code, 0);

    for round in 1..=10 {
        let versions = [format!("r{round}a"), format!("r{round}b")];
        let artifacts: Vec<PathBuf> = versions
            .iter()
            .map(|version| scenario.artifact(version, &[("index.html", version)]))
            .collect();
        // Both started at once.
        let running: Vec<Background> = versions
            .iter()
            .zip(&artifacts)
            .map(|(version, artifact)| scenario.spawn_push(version, version, artifact, &[]))
            .collect();
        let ran: Vec<Ran> = running.into_iter().map(|run| run.wait(PATIENCE)).collect();
        let codes = [ran[0].code, ran[1].code];
        let show = || {
            format!(
                "round {round}: {versions:?}\nfirst: {:?}\nsecond: {:?}",
                ran[0], ran[1]
            )
        };
        assert!(
            matches!(codes, [0, 0] | [0, 3] | [3, 0]),
            "exit codes {codes:?}: one run wins (0), the other wins too or is refused (3); {}",
            show()
        );
        for run in ran.iter().filter(|run| run.code == 3) {
            assert!(
                run.stdout.contains("held by") || run.stderr.contains("held by"),
                "the refused run names the holder; {}",
                show()
            );
        }
        let live = scenario.lives();
        assert!(
            live.iter().all(|version| version == &live[0]),
            "all hosts on one version: {live:?}; {}",
            show()
        );
        let winners: Vec<&str> = versions
            .iter()
            .zip(&ran)
            .filter(|(_, run)| run.code == 0)
            .map(|(version, _)| version.as_str())
            .collect();
        assert!(
            live[0].as_deref().is_some_and(|v| winners.contains(&v)),
            "live {live:?} is a version whose run succeeded ({winners:?}); {}",
            show()
        );
        assert_no_lock_left(&scenario);
    }
}

// ---------------------------------------------------------------------------------------------
// A release tree damaged on the host, and a release directory that never got its digest

/// A release whose tree lost entries on the host since it was staged is never made live: the
/// switch re-counts it, refuses, and stops trusting it, so the next push uploads it again.
#[test]
fn a_release_damaged_on_the_host_is_never_made_live() {
    let scenario = Scenario::new(1);
    let v1 = scenario.artifact("v1", &[("index.html", "one"), ("extra.txt", "kept")]);
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    scenario.push("v2", &[("index.html", "two")]).expect_code(0);
    let app = scenario.app(0);
    std::fs::remove_file(app.join("releases/v1/extra.txt")).expect("damage releases/v1");

    let ran = scenario.json(&["rollback"]);
    assert_eq!(
        ran.code, 1,
        "a rollback onto a damaged release fails: {ran:?}"
    );
    assert!(
        ran.stdout.contains("incomplete on this host"),
        "the error says why: {ran:?}"
    );
    assert_eq!(scenario.live(0).as_deref(), Some("v2"), "still live on v2");
    assert!(
        !app.join(".deploy/digests/v1").exists(),
        "the damaged release is no longer trusted"
    );

    // The next push of v1 (a downgrade: v1 went live before v2) uploads it again, whole.
    scenario
        .push_artifact("v1", &v1, &["--allow-downgrade"])
        .expect_code(0);
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
    assert_eq!(
        std::fs::read_to_string(app.join("current/extra.txt")).expect("extra.txt is back"),
        "kept"
    );
}

/// A release directory without its digest (left by a run stopped between rename and digest,
/// or by hand) is cleared under the lock before the release is received again.
#[test]
fn a_release_directory_without_its_digest_is_cleared_before_an_upload() {
    let scenario = Scenario::new(1);
    scenario.push("v1", &[("index.html", "one")]).expect_code(0);
    let app = scenario.app(0);
    std::fs::create_dir_all(app.join("releases/v2/leftover")).expect("a digest-less release");

    let ran = scenario.push("v2", &[("index.html", "two")]).expect_code(0);
    assert_eq!(scenario.live(0).as_deref(), Some("v2"), "{ran:?}");
    assert!(
        !app.join("releases/v2/leftover").exists(),
        "the leftover tree is gone: {ran:?}"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("current/index.html")).expect("index.html"),
        "two"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. A host frozen in the middle of a paced upload on its transfer connection

/// A tarball of `mebibytes` MiB of random bytes (incompressible: the upload takes a while).
fn random_tarball(scenario: &Scenario, version: &str, mebibytes: u32) -> PathBuf {
    let tree = scenario.dir().join(format!("random-{version}"));
    std::fs::create_dir_all(&tree).expect("mkdir");
    let tarball = scenario.dir().join(format!("random-{version}.tar.gz"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {mebibytes}M /dev/urandom > \"$1/blob\" && tar -C \"$1\" -czf \"$2\" blob"
        ))
        .arg("sh")
        .arg(&tree)
        .arg(&tarball)
        .status()
        .expect("sh runs");
    assert!(status.success(), "building {}", tarball.display());
    tarball
}

#[test]
fn a_host_frozen_during_a_paced_upload_is_stopped_at_host_timeout() {
    // More hosts than `concurrency`: uploads go over a transfer connection of their own, paced
    // on what the connection wrote to its socket. A frozen host never takes those bytes, so
    // the pacing wait must end with the host's deadline (host_timeout 20 s: generous enough to
    // reach the first quarter of the upload on a loaded machine), never hold the run. web1 is
    // uploaded first (concurrency 1), so no other host's staging has to fit in the deadline.
    // 90 s is that deadline plus a margin, not a speed target.
    const BOUND: Duration = Duration::from_secs(90);
    let scenario = Scenario::new(2)
        .deploy_table("concurrency = 1\nhost_timeout = \"20s\"\non_failure = \"rollback\"");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let v2 = random_tarball(&scenario, "v2", 96);

    let mut running = spawn_push(&scenario, "frozen-upload", "v2", &v2);
    // The first quarter of web1's upload has gone out: its transfer session exists.
    running.wait_for_line_where(
        "web1's first upload quarter",
        |line| line.starts_with("web1: upload "),
        PATIENCE,
    );
    let frozen = scenario.fleet().signal_sessions(0, "STOP");
    let thaw = Thaw(&scenario, 0);
    assert!(!frozen.is_empty(), "web1 had sessions to freeze");
    let finished = running.wait_within(BOUND.saturating_sub(running.elapsed()));
    drop(thaw);
    let Some(ran) = finished else {
        panic!(
            "the run did not end within {BOUND:?} of starting (killed); stderr:\n{}",
            running.stderr_so_far()
        );
    };
    assert_eq!(ran.code, 1, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("JSON result");
    let web1 = document["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|host| host["host"] == "web1"))
        .unwrap_or_else(|| panic!("no web1 row: {document:#}"));
    assert_eq!(web1["result"], "failed", "{web1:#}");
    assert!(
        web1["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("upload: ") && error.contains("host_timeout")),
        "web1 failed in its upload, at its deadline: {web1:#}"
    );
    assert_eq!(
        scenario.lives(),
        vec![Some("v1".to_string()); 2],
        "nothing switched while a host failed staging: {ran:?}"
    );

    // After CONT, web1's sessions see their closed connections and end; no lock outlives the
    // run, and the same push then completes everywhere.
    assert!(
        eventually(15, || scenario.fleet().session_pids(0).is_empty()),
        "web1's thawed sessions ended"
    );
    assert_no_lock_left(&scenario);
    let again = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(
        again.code, 0,
        "re-running the push: {again:?}\nfirst: {ran:?}"
    );
    assert_eq!(scenario.lives(), vec![Some("v2".to_string()); 2]);
}
