//! `deploy rollback`, `history`, `unlock` and `prune` against a real fleet.

use std::path::{Path, PathBuf};

use crate::support::Fleet;
use crate::{deploy, deploy_json, snapshot, tarball};

/// A fleet with v1, v2, v3 pushed in that order.
fn fleet_with_three_releases(hosts: usize, keep: usize) -> (Fleet, PathBuf) {
    let fleet = Fleet::start(hosts);
    let inventory = fleet.write_inventory(&format!(
        "[services.app]\nbase_dir = \"app\"\nkeep_releases = {keep}\n"
    ));
    for version in ["v1", "v2", "v3"] {
        let artifact = tarball(fleet.dir(), version, &[("version.txt", version)]);
        let ran = deploy_json(
            &inventory,
            &[
                "push",
                "--version",
                version,
                "--artifact",
                artifact.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(ran.code, 0, "push {version}: {ran:?}");
    }
    (fleet, inventory)
}

fn live(fleet: &Fleet, index: usize) -> String {
    std::fs::read_to_string(fleet.host(index).root.join("app/current/version.txt"))
        .expect("current/version.txt")
}

#[test]
fn fleet_rollback_walks_back_twice_in_go_live_order() {
    let (fleet, inventory) = fleet_with_three_releases(2, 5);
    let ran = deploy_json(&inventory, &["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for (index, host) in fleet.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        assert_eq!(entry["from"], "v3");
        assert_eq!(entry["to"], "v2");
        assert_eq!(live(&fleet, index), "v2");
        assert_eq!(
            std::fs::read_link(host.root.join("app/current")).expect("link"),
            Path::new("releases/v2")
        );
    }
    let ran = deploy_json(&inventory, &["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.host("web1")["to"], "v1");
    assert_eq!(live(&fleet, 0), "v1");
    assert_eq!(live(&fleet, 1), "v1");
    // Nothing older: reported clearly, not a failure.
    let ran = deploy_json(&inventory, &["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let entry = ran.host("web1");
    assert_eq!(entry["result"], "skipped");
    assert!(
        entry["error"]
            .as_str()
            .unwrap_or("")
            .contains("nothing to roll back to"),
        "{entry:#}"
    );
    assert_eq!(live(&fleet, 0), "v1");
}

#[test]
fn single_host_rollback_leaves_the_others_untouched() {
    let (fleet, inventory) = fleet_with_three_releases(3, 5);
    let untouched: Vec<_> = [0, 2]
        .iter()
        .map(|&index| snapshot(&fleet.host(index).root))
        .collect();
    let ran = deploy_json(&inventory, &["rollback", "--hosts", "web2"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["hosts"].as_array().map(Vec::len), Some(1));
    assert_eq!(live(&fleet, 1), "v2");
    assert_eq!(snapshot(&fleet.host(0).root), untouched[0]);
    assert_eq!(snapshot(&fleet.host(2).root), untouched[1]);
}

#[test]
fn rollback_to_a_named_release_and_to_one_missing_somewhere() {
    let (fleet, inventory) = fleet_with_three_releases(3, 5);
    let ran = deploy_json(&inventory, &["rollback", "--to", "v1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for index in 0..3 {
        assert_eq!(live(&fleet, index), "v1");
    }
    // Remove v2 from web3 only: --to v2 must change nothing anywhere.
    let web3 = fleet.host(2).root.join("app");
    std::fs::remove_dir_all(web3.join("releases/v2")).expect("remove v2");
    std::fs::remove_file(web3.join(".deploy/digests/v2")).expect("remove digest");
    let before: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    let ran = deploy_json(&inventory, &["rollback", "--to", "v2"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let web3_entry = ran.host("web3");
    assert_eq!(web3_entry["result"], "failed");
    assert!(
        web3_entry["error"]
            .as_str()
            .unwrap_or("")
            .contains("v2 is not complete on this host")
    );
    let web1_entry = ran.host("web1");
    assert_eq!(web1_entry["result"], "skipped");
    assert!(
        web1_entry["error"]
            .as_str()
            .unwrap_or("")
            .contains("missing on web3"),
        "{web1_entry:#}"
    );
    let after: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    assert_eq!(before, after, "no host changed");
}

#[test]
fn rollback_dry_run_changes_nothing() {
    let (fleet, inventory) = fleet_with_three_releases(2, 5);
    let before: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    let ran = deploy_json(&inventory, &["rollback", "--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let entry = ran.host("web1");
    assert_eq!(entry["result"], "planned");
    assert_eq!(entry["from"], "v3");
    assert_eq!(entry["to"], "v2");
    assert_eq!(ran.json()["dry_run"], true);
    let after: Vec<_> = fleet
        .hosts()
        .iter()
        .map(|host| snapshot(&host.root))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn history_is_newest_first_with_operator_and_time() {
    let (_fleet, inventory) = fleet_with_three_releases(1, 5);
    let ran = deploy_json(&inventory, &["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = deploy_json(&inventory, &["history"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let entries = ran.host("web1")["entries"]
        .as_array()
        .cloned()
        .expect("entries");
    let actions: Vec<(String, String)> = entries
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap_or("").to_string(),
                entry["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("rollback", "v2"),
        ("push", "v3"),
        ("push", "v2"),
        ("push", "v1"),
    ];
    assert_eq!(
        actions,
        expected
            .map(|(action, to)| (action.to_string(), to.to_string()))
            .to_vec()
    );
    for entry in &entries {
        assert!(
            entry["operator"].as_str().unwrap_or("").contains('@'),
            "{entry:#}"
        );
        assert!(
            entry["time"].as_str().unwrap_or("").ends_with('Z'),
            "{entry:#}"
        );
        assert_eq!(entry["result"], "ok");
    }
    let ran = deploy_json(&inventory, &["history", "--limit", "2"]);
    assert_eq!(
        ran.host("web1")["entries"].as_array().map(Vec::len),
        Some(2)
    );
    // Text view.
    let text = deploy(&[
        "-i",
        inventory.to_str().expect("utf-8"),
        "history",
        "--limit",
        "1",
    ]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.starts_with("web1 (app):\n  TIME"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("rollback  v3 -> v2  ok"),
        "{}",
        text.stdout
    );
}

#[test]
fn unlock_removes_a_stale_lock_and_refuses_a_live_one() {
    let (fleet, inventory) = fleet_with_three_releases(1, 5);
    let lock = fleet.host(0).root.join("app/.deploy/lock");
    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        "999999999 ghost@gone old-run 1700000000\n",
    )
    .expect("holder");
    // A live holder: this test process's PID.
    let status = deploy_json(&inventory, &["status"]);
    assert_eq!(status.host("web1")["lock"]["operator"], "ghost@gone");
    assert_eq!(status.host("web1")["lock"]["alive"], false);

    let ran = deploy_json(&inventory, &["unlock", "--hosts", "web1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(!lock.exists(), "stale lock removed");
    let history = deploy_json(&inventory, &["history", "--limit", "1"]);
    assert_eq!(history.host("web1")["entries"][0]["action"], "unlock");

    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        format!("{} alive@here run-x 1700000000\n", std::process::id()),
    )
    .expect("holder");
    let ran = deploy_json(&inventory, &["unlock", "--hosts", "web1"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("--force")
    );
    assert!(lock.exists(), "live lock kept");
    let push = deploy_json(
        &inventory,
        &[
            "push",
            "--version",
            "v4",
            "--artifact",
            fleet.dir().join("v3.tar.gz").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(push.code, 3, "a held lock stops the push: {push:?}");
    assert!(
        push.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("held by alive@here (run run-x)")
    );
    // unlock without --hosts is a usage error.
    let ran = deploy_json(&inventory, &["unlock"]);
    assert_eq!(ran.code, 2, "{ran:?}");
}

#[test]
fn prune_keeps_the_live_and_previous_releases() {
    let (fleet, inventory) = fleet_with_three_releases(1, 5);
    let app = fleet.host(0).root.join("app");
    let dry = deploy_json(&inventory, &["prune", "--keep", "1", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(dry.host("web1")["pruned"], serde_json::json!(["v1"]));
    assert!(app.join("releases/v1").exists(), "dry run removed nothing");
    let ran = deploy_json(&inventory, &["prune", "--keep", "1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.host("web1")["pruned"], serde_json::json!(["v1"]));
    assert!(!app.join("releases/v1").exists());
    assert!(app.join("releases/v2").exists(), "previous kept");
    assert!(app.join("releases/v3").exists(), "live kept");
    let again = deploy_json(&inventory, &["prune", "--keep", "1"]);
    assert_eq!(again.host("web1")["result"], "unchanged");
}
