//! Dry-runs that tell the truth, file-level diffs and drift detection, on a real fleet.

use std::path::PathBuf;

use crate::support::{Scenario, path_str};

const V1: &[(&str, &str)] = &[
    ("index.html", "one"),
    ("app.js", "same"),
    ("old.txt", "bye"),
];
const V2: &[(&str, &str)] = &[("index.html", "two"), ("app.js", "same"), ("new.txt", "hi")];

/// `hosts` hosts, the service with `keep_releases = 2` and `extra`, and the artifacts of v1 and
/// v2 built.
fn setup(hosts: usize, extra: &str) -> (Scenario, PathBuf, PathBuf) {
    let scenario = Scenario::new(hosts).service(&format!("keep_releases = 2\n{extra}"));
    let v1 = scenario.artifact("v1", V1);
    let v2 = scenario.artifact("v2", V2);
    (scenario, v1, v2)
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `text` of each of a dry run's step objects (SPEC §5: `kind`, fields and `text`).
fn step_texts(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|step| {
                    assert!(step["kind"].is_string(), "a step object has a kind: {step}");
                    step["text"].as_str().unwrap_or("").to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_real_run_executes_exactly_the_steps_the_dry_run_listed() {
    let (scenario, v1, v2) = setup(
        2,
        "shared_paths = [\"log\"]\n[services.app.hooks]\nafter_switch = [\"true\"]\n[services.app.health_check]\ncommand = \"test -f index.html\"\n",
    );
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    let v3 = scenario.artifact("v3", &[("index.html", "three")]);
    scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    // A staging leftover of a killed run: the dry run names it, the real run removes it.
    let leftover = scenario.app(0).join(".deploy/staging/killed-run/tree");
    std::fs::create_dir_all(&leftover).expect("mkdir leftover");
    std::fs::write(leftover.join("half.txt"), "half").expect("write leftover");

    let before = scenario.snapshots();
    let dry = scenario
        .push_artifact("v3", &v3, &["--dry-run"])
        .expect_code(0);
    assert_eq!(before, scenario.snapshots(), "the dry run changed nothing");
    let planned = step_texts(&dry.host("web1")["steps"]);
    assert_eq!(dry.host("web1")["result"], "planned");
    assert!(
        planned.iter().any(|step| step == "prune v1"),
        "{planned:#?}"
    );
    let notes = strings(&dry.host("web1")["notes"]);
    assert!(
        notes
            .iter()
            .any(|note| note
                == "staging leftovers of earlier runs (this push removes them): killed-run"),
        "{notes:#?}"
    );

    let real = scenario.push_artifact("v3", &v3, &[]).expect_code(0);
    assert!(!scenario.app(0).join(".deploy/staging/killed-run").exists());
    for host in ["web1", "web2"] {
        assert_eq!(
            strings(&real.host(host)["steps"]),
            step_texts(&dry.host(host)["steps"]),
            "{host}"
        );
    }
}

#[test]
fn prune_and_rollback_dry_runs_change_nothing() {
    let (scenario, v1, v2) = setup(2, "");
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    let before = scenario.snapshots();
    for args in [
        vec!["prune", "--keep", "1", "--dry-run"],
        vec!["rollback", "--dry-run"],
    ] {
        let ran = scenario.json(&args);
        assert_eq!(ran.code, 0, "{args:?}: {ran:?}");
        assert_eq!(ran.host("web1")["result"], "planned");
    }
    assert_eq!(before, scenario.snapshots());
}

#[test]
fn push_dry_run_diff_lists_added_modified_and_removed_files() {
    let (scenario, v1, v2) = setup(1, "");
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    let ran = scenario
        .push_artifact("v2", &v2, &["--dry-run", "--diff"])
        .expect_code(0);
    let diff = &ran.host("web1")["diff"];
    assert_eq!(strings(&diff["added"]), ["new.txt"]);
    assert_eq!(strings(&diff["modified"]), ["index.html"]);
    assert_eq!(strings(&diff["removed"]), ["old.txt"]);
    // Text view shows counts and paths.
    let text = scenario
        .text(&[
            "push",
            "--version",
            "v2",
            "--artifact",
            path_str(&v2),
            "--dry-run",
            "--diff",
        ])
        .expect_code(0);
    assert!(text.stdout.contains("  diff: 1 added, 1 modified, 1 removed\n  diff: + new.txt\n  diff: ~ index.html\n  diff: - old.txt\n"), "{}", text.stdout);
    // --diff without --dry-run is a usage error.
    scenario
        .push_artifact("v2", &v2, &["--diff"])
        .expect_code(2);
}

#[test]
fn diff_between_two_releases_on_the_host_and_against_the_artifact() {
    let (scenario, v1, v2) = setup(2, "");
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    let ran = scenario.json(&["diff", "v1", "v2"]).expect_code(0);
    for host in ["web1", "web2"] {
        let entry = ran.host(host);
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
        assert_eq!(strings(&entry["diff"]["added"]), ["new.txt"]);
        assert_eq!(strings(&entry["diff"]["modified"]), ["index.html"]);
        assert_eq!(strings(&entry["diff"]["removed"]), ["old.txt"]);
    }
    let missing = scenario.json(&["diff", "v1", "v9"]).expect_code(1);
    assert_eq!(
        missing.host("web1")["error"].as_str().unwrap_or(""),
        "read manifest: no manifest recorded for v9",
        "the script's own words, without an exit status"
    );
}

#[test]
fn a_file_edited_on_one_host_shows_as_drift_on_that_host_only() {
    let (scenario, v1, _v2) = setup(2, "shared_paths = [\"log\"]\n");
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    let clean = scenario.json(&["status", "--verify"]).expect_code(0);
    assert_eq!(
        clean.host("web1")["drift"],
        serde_json::json!({"added": [], "modified": [], "removed": []})
    );
    // Shared paths are links on the host and are not drift; writing into them is not either.
    std::fs::write(scenario.app(0).join("current/log/app.log"), "log line").expect("write log");

    let release = scenario.app(1).join("releases/v1");
    std::fs::write(release.join("index.html"), "defaced").expect("edit");
    std::fs::write(release.join("extra.php"), "<?php").expect("add");
    std::fs::remove_file(release.join("old.txt")).expect("remove");
    let ran = scenario.json(&["status", "--verify"]);
    assert_eq!(ran.code, 1, "drift exits 1: {ran:?}");
    assert_eq!(
        ran.host("web1")["drift"],
        serde_json::json!({"added": [], "modified": [], "removed": []})
    );
    let drift = &ran.host("web2")["drift"];
    assert_eq!(strings(&drift["added"]), ["extra.php"]);
    assert_eq!(strings(&drift["modified"]), ["index.html"]);
    assert_eq!(strings(&drift["removed"]), ["old.txt"]);
    // A mode change is drift too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        scenario.app(0).join("releases/v1/app.js"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let ran = scenario.json(&["status", "--verify"]);
    assert_eq!(strings(&ran.host("web1")["drift"]["modified"]), ["app.js"]);
}
