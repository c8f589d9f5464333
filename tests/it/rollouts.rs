//! Fleet-scale behaviour on small fleets (issue 17): the preflight (every host connected and
//! locked before the first byte is uploaded), staging that stops once `max_failures` is
//! exceeded, rollouts (`batch_size` ramps with a canary, `batch_pause`), and the open-file
//! limit checked before any connection.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{Scenario, big_tarball, entries, run};

/// Nothing of the pushed release reached host `index`: no release, no staging left.
fn assert_nothing_staged(scenario: &Scenario, index: usize, version: &str) {
    let app = scenario.app(index);
    assert!(
        !app.join("releases").join(version).exists(),
        "{}: no release {version}",
        scenario.host(index).name
    );
    let staging = app.join(".deploy/staging");
    assert_eq!(
        entries_or_none(&staging),
        Vec::<String>::new(),
        "{}: nothing in staging",
        scenario.host(index).name
    );
}

fn entries_or_none(dir: &Path) -> Vec<String> {
    if dir.exists() {
        entries(dir)
    } else {
        Vec::new()
    }
}

#[test]
fn preflight_stops_before_any_upload_when_a_host_is_down() {
    let mut scenario = Scenario::new(3);
    scenario.fleet_mut().stop(1);
    let ran = scenario.push_version("v1").expect_code(1);
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed", "{web2:#}");
    for (index, name) in [(0, "web1"), (2, "web3")] {
        let entry = ran.host(name);
        assert_eq!(entry["result"], "skipped", "{entry:#}");
        assert_eq!(entry["bytes"], 0, "nothing uploaded to {name}: {entry:#}");
        let error = entry["error"].as_str().unwrap_or("");
        assert!(
            error.contains("1 of 3 hosts failed before the upload"),
            "{name}: {error}"
        );
        assert_nothing_staged(&scenario, index, "v1");
        assert!(
            !scenario.app(index).join(".deploy/lock").exists(),
            "{name}: lock released"
        );
    }
    assert!(
        ran.stderr
            .contains("app: nothing uploaded: 1 of 3 hosts failed before the upload"),
        "{}",
        ran.stderr
    );
    assert_eq!(scenario.lives(), [None, None, None]);
}

#[test]
fn staging_stops_starting_uploads_once_max_failures_is_exceeded() {
    let mut scenario = Scenario::new(3);
    let v1 = big_tarball(scenario.dir(), "v1", 4);
    // web1 cannot hold the artifact: its upload fails first (-j 1: one host at a time, in
    // inventory order).
    scenario.fleet_mut().limit_file_size(0, 512);
    let ran = scenario.push_artifact("v1", &v1, &["-j", "1"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let web1 = ran.host("web1");
    assert_eq!(web1["result"], "failed", "{web1:#}");
    for (index, name) in [(1, "web2"), (2, "web3")] {
        let entry = ran.host(name);
        assert_eq!(entry["result"], "skipped", "{entry:#}");
        assert_eq!(entry["bytes"], 0, "no upload started on {name}: {entry:#}");
        let error = entry["error"].as_str().unwrap_or("");
        assert!(
            error.contains("stopped: 1 of 3 hosts failed during staging (max_failures allows 0)"),
            "{name}: {error}"
        );
        assert_nothing_staged(&scenario, index, "v1");
    }
    assert_nothing_staged(&scenario, 0, "v1");
    assert_eq!(scenario.lives(), [None, None, None]);
}

#[test]
fn a_failing_canary_switches_only_itself_and_is_rolled_back() {
    let scenario = Scenario::new(3).deploy_table("batch_size = [1, \"50%\", \"100%\"]");
    scenario.push_version("v1").expect_code(0);
    let scenario = scenario.service(
        "[services.app.health_check]\ncommand = \"test $DEPLOY_HOST != web1\"\nretries = 1\n",
    );
    let ran = scenario.push_version("v2").expect_code(1);
    let web1 = ran.host("web1");
    assert_eq!(web1["result"], "failed", "{web1:#}");
    assert!(
        web1["error"]
            .as_str()
            .unwrap_or("")
            .contains("switched back to v1"),
        "{web1:#}"
    );
    for name in ["web2", "web3"] {
        let entry = ran.host(name);
        assert_eq!(entry["result"], "skipped", "{entry:#}");
        assert!(
            entry["error"]
                .as_str()
                .unwrap_or("")
                .contains("the canary batch failed"),
            "{entry:#}"
        );
    }
    assert_eq!(
        scenario.lives(),
        [Some("v1".into()), Some("v1".into()), Some("v1".into())]
    );
    // Only the canary ever went live on v2 (its switch and switch back are recorded).
    for index in [1, 2] {
        assert!(
            scenario
                .history(index)
                .iter()
                .all(|record| record["to"] != "v2" || record["result"] != "ok"),
            "web{} never switched to v2",
            index + 1
        );
    }
    assert!(
        ran.stderr.contains("app: batch 1 of 3 (canary)"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("batch 2 of 3"), "{}", ran.stderr);
}

/// The time stamp of the plain line `app: batch N of M ... at TIME: hosts`.
fn batch_time(stderr: &str, number: usize) -> SystemTime {
    let prefix = format!("app: batch {number} of ");
    let line = stderr
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for batch {number} in:\n{stderr}"));
    let time = line
        .split(" at ")
        .nth(1)
        .and_then(|rest| rest.split(": ").next())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    humantime::parse_rfc3339(time).unwrap_or_else(|error| panic!("{line:?}: {error}"))
}

#[test]
fn batch_pause_separates_the_batches() {
    let scenario = Scenario::new(3).deploy_table("batch_size = 1\nbatch_pause = \"2s\"");
    let ran = scenario.push_version("v1").expect_code(0);
    assert!(
        ran.stderr
            .contains("pausing 2s before batch 2 of 3 (Ctrl-C stops the rollout)"),
        "{}",
        ran.stderr
    );
    let times: Vec<SystemTime> = (1..=3)
        .map(|number| batch_time(&ran.stderr, number))
        .collect();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap_or(Duration::ZERO);
        assert!(
            gap >= Duration::from_secs(2),
            "batches at least batch_pause apart: {gap:?}\n{}",
            ran.stderr
        );
    }
    assert_eq!(
        scenario.lives(),
        [Some("v1".into()), Some("v1".into()), Some("v1".into())]
    );
}

#[test]
fn dry_run_shows_the_batches() {
    let scenario =
        Scenario::new(3).deploy_table("batch_size = [1, \"100%\"]\nbatch_pause = \"30s\"");
    let artifact = scenario.versioned_artifact("v1");
    let ran = scenario
        .push_artifact("v1", &artifact, &["--dry-run"])
        .expect_code(0);
    let notes = |name: &str| ran.host(name)["notes"].to_string();
    assert!(
        notes("web1").contains("switch: batch 1 of 2, the canary (batch_size = [1, \\\"100%\\\"])"),
        "{}",
        notes("web1")
    );
    for name in ["web2", "web3"] {
        assert!(
            notes(name).contains(
                "switch: batch 2 of 2 (batch_size = [1, \\\"100%\\\"], after a pause of 30s)"
            ),
            "{}",
            notes(name)
        );
    }
}

/// `deploy ...` with its open-file limit set to `soft` and `hard` before it starts.
fn with_open_file_limit(command: &mut std::process::Command, soft: u64, hard: u64) {
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[test]
fn an_open_file_limit_too_low_for_the_selection_is_refused_before_connecting() {
    let scenario = Scenario::new(3);
    let artifact = scenario.versioned_artifact("v1");
    let before = scenario.snapshots();
    let mut command = scenario.json_command();
    command
        .args(["push", "--version", "v1", "--artifact"])
        .arg(&artifact);
    // 3 hosts held + 2 per host worked on (3) + 64 for the process = 73.
    with_open_file_limit(&mut command, 40, 40);
    let ran = run(&mut command).expect_code(2);
    assert!(
        ran.stderr.contains("needs 73 open files") && ran.stderr.contains("limit is 40"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("ulimit -Hn 73"), "{}", ran.stderr);
    assert_eq!(ran.stdout, "");
    assert_eq!(scenario.snapshots(), before, "no host changed");
    for index in 0..3 {
        assert!(
            !scenario.app(index).exists(),
            "{}: not contacted",
            scenario.host(index).name
        );
    }

    // A low soft limit alone is raised to the hard limit: the same push goes through.
    let mut command = scenario.json_command();
    command
        .args(["push", "--version", "v1", "--artifact"])
        .arg(&artifact);
    with_open_file_limit(&mut command, 40, 4096);
    run(&mut command).expect_code(0);
    assert_eq!(
        scenario.lives(),
        [Some("v1".into()), Some("v1".into()), Some("v1".into())]
    );
}

#[test]
fn invalid_rollout_values_name_file_line_and_key() {
    let mut scenario = Scenario::new(1);
    for (table, key) in [
        ("batch_size = \"0%\"", "deploy.batch_size"),
        ("batch_size = [1, \"ten\"]", "deploy.batch_size"),
        ("batch_size = []", "deploy.batch_size"),
        ("batch_size = -2", "deploy.batch_size"),
        ("batch_pause = \"soon\"", "deploy.batch_pause"),
        ("max_failures = \"150%\"", "deploy.max_failures"),
        ("max_failures = -1", "deploy.max_failures"),
    ] {
        scenario = scenario.deploy_table(&format!("concurrency = 2\n{table}"));
        let ran = scenario.json(&["push", "--dry-run"]).expect_code(2);
        let inventory = scenario.inventory().display().to_string();
        let line = scenario
            .inventory_text()
            .lines()
            .position(|line| line == table)
            .map(|index| index + 1)
            .expect("the line is in the inventory");
        assert!(
            ran.stderr.contains(&format!("{inventory}:{line}: {key}: ")),
            "{table}: {}",
            ran.stderr
        );
        assert_eq!(ran.stdout, "", "{table}");
    }
}

#[test]
fn an_upload_in_flight_is_stopped_once_max_failures_is_exceeded() {
    let mut scenario = Scenario::new(3);
    let v1 = big_tarball(scenario.dir(), "v1", 4);
    scenario.fleet_mut().limit_file_size(0, 512);
    // web2's extraction hangs: its upload is in flight when web1's fails.
    let tar = crate::support::real_program("tar");
    scenario.host(1).wrap_command(
        "tar",
        &format!(
            "case \"$*\" in *-xpzf*) sleep 60;; esac\n{} \"$@\"",
            tar.display()
        ),
    );
    let ran = scenario.push_artifact("v1", &v1, &["-j", "3"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "failed");
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "skipped", "{web2:#}");
    assert!(
        web2["error"]
            .as_str()
            .unwrap_or("")
            .contains("stopped: 1 of 3 hosts failed during staging"),
        "{web2:#}"
    );
    crate::support::wait_until("web2's wrapper is gone", crate::support::PATIENCE, || {
        scenario.host(1).wrapper_processes().is_empty()
    });
    assert_nothing_staged(&scenario, 1, "v1");
    assert!(
        !scenario.app(1).join(".deploy/lock").exists(),
        "web2: lock released"
    );
    assert_eq!(scenario.lives(), [None, None, None]);
}
