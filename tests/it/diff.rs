//! Dry-runs that tell the truth, file-level diffs and drift detection, on a real fleet.

use std::path::{Path, PathBuf};

use crate::support::Fleet;
use crate::{Ran, deploy, deploy_json, snapshot, tarball};

const V1: &[(&str, &str)] = &[
    ("index.html", "one"),
    ("app.js", "same"),
    ("old.txt", "bye"),
];
const V2: &[(&str, &str)] = &[("index.html", "two"), ("app.js", "same"), ("new.txt", "hi")];

fn setup(hosts: usize, extra: &str) -> (Fleet, PathBuf, PathBuf, PathBuf) {
    let fleet = Fleet::start(hosts);
    let inventory = fleet.write_inventory(&format!(
        "[services.app]\nbase_dir = \"app\"\nkeep_releases = 2\n{extra}"
    ));
    let v1 = tarball(fleet.dir(), "v1", V1);
    let v2 = tarball(fleet.dir(), "v2", V2);
    (fleet, inventory, v1, v2)
}

fn push(inventory: &Path, version: &str, artifact: &Path, extra: &[&str]) -> Ran {
    let mut args = vec![
        "push",
        "--version",
        version,
        "--artifact",
        artifact.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    deploy_json(inventory, &args)
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

#[test]
fn the_real_run_executes_exactly_the_steps_the_dry_run_listed() {
    let (fleet, inventory, v1, v2) = setup(
        2,
        "shared_paths = [\"log\"]\n[services.app.hooks]\nafter_switch = [\"true\"]\n[services.app.health_check]\ncommand = \"test -f index.html\"\n",
    );
    assert_eq!(push(&inventory, "v1", &v1, &[]).code, 0);
    let v3 = tarball(fleet.dir(), "v3", &[("index.html", "three")]);
    assert_eq!(push(&inventory, "v2", &v2, &[]).code, 0);
    // A staging leftover of a killed run: the dry run names it, the real run removes it.
    let leftover = fleet
        .host(0)
        .root
        .join("app/.deploy/staging/killed-run/tree");
    std::fs::create_dir_all(&leftover).expect("mkdir leftover");
    std::fs::write(leftover.join("half.txt"), "half").expect("write leftover");

    let before: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    let dry = push(&inventory, "v3", &v3, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let after: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    assert_eq!(before, after, "the dry run changed nothing");
    let planned = strings(&dry.host("web1")["steps"]);
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

    let real = push(&inventory, "v3", &v3, &[]);
    assert_eq!(real.code, 0, "{real:?}");
    assert!(
        !fleet
            .host(0)
            .root
            .join("app/.deploy/staging/killed-run")
            .exists()
    );
    for host in ["web1", "web2"] {
        assert_eq!(
            strings(&real.host(host)["steps"]),
            strings(&dry.host(host)["steps"]),
            "{host}"
        );
    }
}

#[test]
fn prune_and_rollback_dry_runs_change_nothing() {
    let (fleet, inventory, v1, v2) = setup(2, "");
    assert_eq!(push(&inventory, "v1", &v1, &[]).code, 0);
    assert_eq!(push(&inventory, "v2", &v2, &[]).code, 0);
    let before: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    for args in [
        vec!["prune", "--keep", "1", "--dry-run"],
        vec!["rollback", "--dry-run"],
    ] {
        let ran = deploy_json(&inventory, &args);
        assert_eq!(ran.code, 0, "{args:?}: {ran:?}");
        assert_eq!(ran.host("web1")["result"], "planned");
    }
    let after: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn push_dry_run_diff_lists_added_modified_and_removed_files() {
    let (_fleet, inventory, v1, v2) = setup(1, "");
    assert_eq!(push(&inventory, "v1", &v1, &[]).code, 0);
    let ran = push(&inventory, "v2", &v2, &["--dry-run", "--diff"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let diff = &ran.host("web1")["diff"];
    assert_eq!(strings(&diff["added"]), ["new.txt"]);
    assert_eq!(strings(&diff["modified"]), ["index.html"]);
    assert_eq!(strings(&diff["removed"]), ["old.txt"]);
    // Text view shows counts and paths.
    let text = deploy(&[
        "-i",
        inventory.to_str().expect("utf-8"),
        "push",
        "--version",
        "v2",
        "--artifact",
        v2.to_str().expect("utf-8"),
        "--dry-run",
        "--diff",
    ]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("  diff: 1 added, 1 modified, 1 removed\n  diff: + new.txt\n  diff: ~ index.html\n  diff: - old.txt\n"), "{}", text.stdout);
    // --diff without --dry-run is a usage error.
    assert_eq!(push(&inventory, "v2", &v2, &["--diff"]).code, 2);
}

#[test]
fn diff_between_two_releases_on_the_host_and_against_the_artifact() {
    let (_fleet, inventory, v1, v2) = setup(2, "");
    assert_eq!(push(&inventory, "v1", &v1, &[]).code, 0);
    assert_eq!(push(&inventory, "v2", &v2, &[]).code, 0);
    let ran = deploy_json(&inventory, &["diff", "v1", "v2"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for host in ["web1", "web2"] {
        let entry = ran.host(host);
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
        assert_eq!(strings(&entry["diff"]["added"]), ["new.txt"]);
        assert_eq!(strings(&entry["diff"]["modified"]), ["index.html"]);
        assert_eq!(strings(&entry["diff"]["removed"]), ["old.txt"]);
    }
    let missing = deploy_json(&inventory, &["diff", "v1", "v9"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("no manifest recorded for v9")
    );
}

#[test]
fn a_file_edited_on_one_host_shows_as_drift_on_that_host_only() {
    let (fleet, inventory, v1, _v2) = setup(2, "shared_paths = [\"log\"]\n");
    assert_eq!(push(&inventory, "v1", &v1, &[]).code, 0);
    let clean = deploy_json(&inventory, &["status", "--verify"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    assert_eq!(
        clean.host("web1")["drift"],
        serde_json::json!({"added": [], "modified": [], "removed": []})
    );
    // Shared paths are links on the host and are not drift; writing into them is not either.
    std::fs::write(
        fleet.host(0).root.join("app/current/log/app.log"),
        "log line",
    )
    .expect("write log");

    let release = fleet.host(1).root.join("app/releases/v1");
    std::fs::write(release.join("index.html"), "defaced").expect("edit");
    std::fs::write(release.join("extra.php"), "<?php").expect("add");
    std::fs::remove_file(release.join("old.txt")).expect("remove");
    let ran = deploy_json(&inventory, &["status", "--verify"]);
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
        fleet.host(0).root.join("app/releases/v1/app.js"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let ran = deploy_json(&inventory, &["status", "--verify"]);
    assert_eq!(strings(&ran.host("web1")["drift"]["modified"]), ["app.js"]);
}
