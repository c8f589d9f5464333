//! The operator's view, round two (issue 15, SPEC §5): whole-output snapshots of the plain
//! lines (no terminal) and the summary table for a success, an unhealthy host under
//! `on_failure = "rollback"`, a Ctrl-C and a connect failure; JSON diagnostics at default
//! verbosity (failures at `error`, switch-backs at `warn`, with host, service, step and run
//! id; `-q` silences only `info`); the progress phases in a real terminal (tmux); a dry run's
//! steps as objects.
//!
//! Runs are made deterministic with `-j 1` (hosts one at a time, in inventory order); the
//! filters of `support::filters` take out ports, paths, run ids, times and byte counts.

use std::time::Duration;

use serde_json::Value;

use crate::output::{Tmux, terminal_script};
use crate::support::{self, Ran, Scenario, path_str, redact, run, squeeze_columns};

const PATIENCE: Duration = Duration::from_secs(120);

/// `deploy -i INVENTORY -j 1 --no-progress push --version V --artifact A EXTRA`, text output.
fn push_text(scenario: &Scenario, version: &str, extra: &[&str]) -> Ran {
    let artifact = scenario.versioned_artifact(version);
    run(scenario
        .command()
        .args([
            "-i",
            path_str(scenario.inventory()),
            "-j",
            "1",
            "--no-progress",
        ])
        .args([
            "push",
            "--version",
            version,
            "--artifact",
            path_str(&artifact),
        ])
        .args(extra))
}

/// A text diagnostic's leading RFC 3339 time (`2026-11-30T20:12:42.153863Z  WARN ...`)
/// becomes `[TIME]`.
fn without_log_times(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once(' ') {
            Some((first, rest)) if humantime::parse_rfc3339(first).is_ok() => {
                format!("[TIME] {rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

/// stderr and stdout of a run, filtered, as one snapshot text.
fn whole_output(scenario: &Scenario, ran: &Ran) -> String {
    format!(
        "exit code: {}\n--- stderr\n{}--- stdout\n{}",
        ran.code,
        redact(&without_log_times(&ran.stderr), scenario.fleet()),
        squeeze_columns(&redact(&ran.stdout, scenario.fleet()))
    )
}

/// A health check that fails on web2 only, at once.
const UNHEALTHY_WEB2: &str = "[services.app.health_check]\ncommand = \"test $DEPLOY_HOST != web2\"\nretries = 1\ninterval = \"0s\"\n";

#[test]
fn a_successful_push_in_plain_lines_and_the_table() {
    let scenario = Scenario::new(2);
    push_text(&scenario, "v1", &[]).expect_code(0);
    let ran = push_text(&scenario, "v2", &[]).expect_code(0);
    insta::assert_snapshot!("success", whole_output(&scenario, &ran));
}

#[test]
fn an_unhealthy_host_under_rollback_is_one_line_naming_it() {
    let scenario = Scenario::new(3).deploy_table("on_failure = \"rollback\"");
    push_text(&scenario, "v1", &[]).expect_code(0);
    let scenario = scenario.service(UNHEALTHY_WEB2);
    let ran = push_text(&scenario, "v2", &[]).expect_code(1);
    assert_eq!(scenario.lives(), vec![Some("v1".to_string()); 3]);
    // The cause is said once, under the table, naming web2; no row repeats it for the others.
    let table = ran.stdout.as_str();
    assert_eq!(
        table.matches("fleet rollback: web2 failed (health").count(),
        1,
        "{table}"
    );
    assert!(!table.contains("max_failures"), "{table}");
    insta::assert_snapshot!("unhealthy_rollback", whole_output(&scenario, &ran));

    // -q silences the progress, not the failure and the switch-backs (stdout is a pipe here,
    // so the result lines are not left to the table).
    let quiet = push_text(&scenario, "v3", &["-q"]).expect_code(1);
    let lines: Vec<&str> = quiet.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", quiet.stderr);
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("web2: failed v1 -> v3, back on v1: health"))
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("web1: rolled_back v1 -> v3, back on v1"))
    );
}

#[test]
fn a_connect_failure_groups_identical_errors_and_skips_the_rest() {
    let mut scenario = Scenario::new(3);
    push_text(&scenario, "v1", &[]).expect_code(0);
    scenario.fleet_mut().stop(1);
    scenario.fleet_mut().stop(2);
    let ran = push_text(&scenario, "v2", &[]).expect_code(1);
    let web1 = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("web1 "))
        .unwrap_or_else(|| panic!("no web1 row:\n{}", ran.stdout))
        .to_string();
    assert!(
        web1.contains("skipped") && web1.contains("v1 -> v2, still on v1"),
        "web1 was never started: skipped, still on v1: {web1}"
    );
    insta::assert_snapshot!("connect_failure", whole_output(&scenario, &ran));
    // The JSON result says the same: web1 skipped, the two others failed.
    let ran = run(scenario
        .json_command()
        .args(["-j", "1", "push", "--version", "v2"])
        .args(["--artifact", path_str(&scenario.dir().join("v2.tar.gz"))]));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "skipped", "{ran:?}");
    assert_eq!(ran.host("web2")["result"], "failed", "{ran:?}");
}

/// web2's finalize (its `mv` into `releases/`) is held up; SIGINT arrives while it runs.
#[test]
fn ctrl_c_mid_push_says_skipped_not_failed() {
    let scenario = Scenario::new(3);
    push_text(&scenario, "v1", &[]).expect_code(0);
    let mv = support::real_program("mv");
    let sleep = support::real_program("sleep");
    scenario.host(1).wrap_command(
        "mv",
        &format!(
            "case \"$*\" in *releases/v2*) {} 3;; esac\n{} \"$@\"",
            sleep.display(),
            mv.display()
        ),
    );
    let artifact = scenario.versioned_artifact("v2");
    let mut command = scenario.command();
    command
        .args(["-i", path_str(scenario.inventory()), "-j", "1"])
        .args(["push", "--version", "v2", "--artifact", path_str(&artifact)]);
    let mut running = support::spawn_command(scenario.dir(), "interrupted", command);
    running.wait_for_line("web2: finalize", PATIENCE);
    let bin = format!("{}/", path_str(&scenario.host(1).bin_dir()));
    support::wait_until("web2's slowed mv runs", PATIENCE, || {
        !support::processes_where(|p| p.cmdline.contains(&bin) && p.cmdline.contains("v2"))
            .is_empty()
    });
    running.signal("INT");
    let ran = running.wait(PATIENCE);
    assert_eq!(ran.code, 130, "{ran:?}");
    support::wait_until("wrappers done", PATIENCE, || {
        scenario.host(1).wrapper_processes().is_empty()
    });
    assert_eq!(scenario.lives(), vec![Some("v1".to_string()); 3]);
    // Nothing failed: the table and the closing line say so.
    assert!(
        !ran.stdout.lines().any(|line| line.contains(" failed  ")),
        "{}",
        ran.stdout
    );
    let closing = ran.stdout.lines().last().unwrap_or("");
    assert!(
        closing.contains("interrupted") && closing.contains("0 failed"),
        "{closing}"
    );
    insta::assert_snapshot!("ctrl_c", whole_output(&scenario, &ran));
}

// ---------------------------------------------------------------------------------------------
// JSON diagnostics

fn json_lines(ran: &Ran) -> Vec<serde_json::Map<String, Value>> {
    ran.stderr
        .lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(object)) => object,
            other => panic!(
                "not a JSON object ({other:?}): {line}\nstderr:\n{}",
                ran.stderr
            ),
        })
        .collect()
}

/// The lines at `level` about `host` with `step`.
fn lines_at<'a>(
    lines: &'a [serde_json::Map<String, Value>],
    level: &str,
    host: &str,
    step: &str,
) -> Vec<&'a serde_json::Map<String, Value>> {
    lines
        .iter()
        .filter(|line| {
            line.get("level") == Some(&Value::from(level))
                && line.get("host") == Some(&Value::from(host))
                && line.get("step") == Some(&Value::from(step))
        })
        .collect()
}

#[test]
fn json_logs_carry_failures_and_switch_backs_at_default_verbosity() {
    let scenario = Scenario::new(3).deploy_table("on_failure = \"rollback\"");
    push_text(&scenario, "v1", &[]).expect_code(0);
    let scenario = scenario.service(UNHEALTHY_WEB2);
    let v2 = scenario.versioned_artifact("v2");
    for quiet in [false, true] {
        let mut command = scenario.json_command();
        command.args(["--log-format", "json", "-j", "1"]);
        if quiet {
            command.arg("-q");
        }
        command.args(["push", "--version", "v2", "--artifact", path_str(&v2)]);
        let ran = run(&mut command);
        assert_eq!(ran.code, 1, "{ran:?}");
        let id = ran.json()["id"].as_str().unwrap_or("").to_string();
        let lines = json_lines(&ran);
        // web2's failure: `error`, in its health step, with service and run id.
        let failure = lines_at(&lines, "error", "web2", "health");
        assert_eq!(failure.len(), 1, "quiet {quiet}: stderr:\n{}", ran.stderr);
        assert_eq!(failure[0]["service"], "app");
        assert_eq!(failure[0]["run_id"], Value::from(id.as_str()));
        assert!(
            failure[0]["message"]
                .as_str()
                .unwrap_or("")
                .contains("failed v1 -> v2, back on v1: health"),
            "{:?}",
            failure[0]
        );
        // Switch-backs: web2's own, and web1's and web3's with the fleet: `warn`.
        for host in ["web1", "web2", "web3"] {
            let back = lines_at(&lines, "warn", host, "switch back");
            assert!(
                !back.is_empty(),
                "quiet {quiet}: no warn line for {host}'s switch back:\n{}",
                ran.stderr
            );
            assert_eq!(back[0]["service"], "app");
            assert_eq!(back[0]["run_id"], Value::from(id.as_str()));
        }
        // Default verbosity also carries the progress at `info`; -q silences only that.
        let infos = lines
            .iter()
            .filter(|line| line.get("level") == Some(&Value::from("info")))
            .count();
        if quiet {
            assert_eq!(infos, 0, "-q: no info lines:\n{}", ran.stderr);
        } else {
            assert!(infos > 0, "default: progress at info:\n{}", ran.stderr);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A dry run's steps as data

#[test]
fn dry_run_json_steps_are_objects_with_their_text() {
    let scenario = Scenario::new(1).service("keep_releases = 2\n");
    push_text(&scenario, "v1", &[]).expect_code(0);
    push_text(&scenario, "v2", &[]).expect_code(0);
    let v3 = scenario.versioned_artifact("v3");
    let ran = scenario
        .push_artifact("v3", &v3, &["--dry-run", "--full"])
        .expect_code(0);
    let steps = ran.host("web1")["steps"].clone();
    let steps = steps.as_array().expect("steps is an array");
    let kinds: Vec<&str> = steps
        .iter()
        .map(|step| step["kind"].as_str().expect("every step has a kind"))
        .collect();
    assert_eq!(
        kinds,
        ["upload", "finalize", "switch", "prune"],
        "{steps:#?}"
    );
    for step in steps {
        assert!(
            step["text"].as_str().is_some_and(|text| !text.is_empty()),
            "{step:#}"
        );
    }
    let upload = &steps[0];
    assert_eq!(upload["version"], "v3");
    let size = std::fs::metadata(&v3).expect("artifact").len();
    assert_eq!(upload["bytes"], Value::from(size), "{upload:#}");
    assert!(
        upload["text"].as_str().unwrap_or("").starts_with("upload "),
        "{upload:#}"
    );
    assert_eq!(steps[2]["from"], "v2");
    assert_eq!(steps[2]["to"], "v3");
    assert_eq!(steps[2]["text"], "switch current: v2 -> v3");
    assert_eq!(steps[3]["versions"], serde_json::json!(["v1"]));
    // The text view shows the same texts.
    let text = scenario.text(&[
        "push",
        "--dry-run",
        "--full",
        "--version",
        "v3",
        "--artifact",
        path_str(&v3),
    ]);
    for step in steps {
        let line = format!("  - {}", step["text"].as_str().unwrap_or(""));
        assert!(text.stdout.contains(&line), "{line:?} in:\n{}", text.stdout);
    }
}

// ---------------------------------------------------------------------------------------------
// Progress phases in a real terminal

/// The overall progress line of a frame (`deploy [====>   ]  12s  staging ...`).
fn overall_line(frame: &str) -> Option<&str> {
    frame.lines().find(|line| line.starts_with("deploy ["))
}

#[test]
fn a_terminal_shows_the_phases_and_leaves_only_the_table() {
    let scenario = Scenario::new(6)
        .deploy_table("concurrency = 2\nbatch_size = 3\n")
        .service(
            "[services.app.health_check]\ncommand = \"sleep 1\"\nretries = 1\ninterval = \"0s\"\n",
        );
    support::big_tarball(scenario.dir(), "v1", 16);
    let script = terminal_script(
        scenario.dir(),
        "phases.sh",
        &[vec![
            "push".into(),
            "-i".into(),
            path_str(scenario.inventory()).into(),
            "--version".into(),
            "v1".into(),
            "--artifact".into(),
            path_str(&scenario.dir().join("v1.tar.gz")).into(),
        ]],
        false,
    );
    let tmux = Tmux::start(&script);
    let frames = tmux.frames_until_exit(false);
    drop(tmux);
    let last = frames.last().expect("a frame").clone();
    let dump = || -> String {
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| format!("--- frame {index}\n{}", frame.trim_end()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let overall: Vec<&str> = frames
        .iter()
        .filter_map(|frame| overall_line(frame))
        .collect();
    let mut missing = Vec::new();
    for (what, found) in [
        (
            "staging",
            overall.iter().any(|line| line.contains(" staging")),
        ),
        (
            "waiting for N hosts",
            overall
                .iter()
                .any(|line| line.contains("staging, waiting for ") && line.contains(" hosts")),
        ),
        (
            "switching batch",
            overall.iter().any(|line| line.contains("switching batch ")),
        ),
        (
            "health checks",
            overall.iter().any(|line| line.contains("health checks")),
        ),
        (
            "staged counts",
            overall.iter().any(|line| line.contains("/6 staged")),
        ),
        (
            "healthy counts",
            overall.iter().any(|line| line.contains("/6 healthy")),
        ),
        (
            "bytes of the total",
            overall
                .iter()
                .any(|line| line.contains(" of ") && line.contains("MiB")),
        ),
        ("an end", last.lines().any(|line| line == "EXIT=0")),
        (
            "no progress line left at the end",
            overall_line(&last).is_none() && !last.lines().any(|line| line.starts_with("  web")),
        ),
        (
            "the summary table at the end",
            last.lines().any(|line| line.starts_with("HOST ")),
        ),
        (
            "results shown once (the table), not also as stderr lines",
            !last.lines().any(|line| line.starts_with("web1: ")),
        ),
    ] {
        if !found {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}\n{}", dump());
    if std::env::var_os("SHOW_FRAMES").is_some() {
        eprintln!("{}", dump());
    }
    // The overall line is one line: never two of them in a frame.
    for (index, frame) in frames.iter().enumerate() {
        let count = frame
            .lines()
            .filter(|line| line.starts_with("deploy ["))
            .count();
        assert!(
            count <= 1,
            "frame {index} has {count} overall lines:\n{frame}"
        );
    }
}

/// A history record that cannot be written (here `history.jsonl` is a directory on web1) is a
/// `warn` line about web1 in step `history`, at default verbosity and with `-q`.
#[test]
fn a_lost_history_write_is_a_warning_with_its_host_and_step() {
    let scenario = Scenario::new(2);
    push_text(&scenario, "v1", &[]).expect_code(0);
    let history = scenario.app(0).join(".deploy/history.jsonl");
    std::fs::remove_file(&history).expect("remove web1's history");
    std::fs::create_dir(&history).expect("a directory where web1's history was");
    let v2 = scenario.versioned_artifact("v2");
    let ran = run(scenario
        .json_command()
        .args(["--log-format", "json", "-q", "-j", "1"])
        .args(["push", "--version", "v2", "--artifact", path_str(&v2)]));
    assert_eq!(ran.code, 1, "{ran:?}");
    let id = ran.json()["id"].as_str().unwrap_or("").to_string();
    let lines = json_lines(&ran);
    let lost = lines_at(&lines, "warn", "web1", "history");
    assert!(
        !lost.is_empty(),
        "no warn line for web1's lost record:\n{}",
        ran.stderr
    );
    assert_eq!(lost[0]["service"], "app");
    assert_eq!(lost[0]["run_id"], Value::from(id.as_str()));
    assert!(
        lines_at(&lines, "warn", "web2", "history").is_empty(),
        "{}",
        ran.stderr
    );
}
