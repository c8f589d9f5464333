//! `deploy rollback`, `history`, `unlock` and `prune` against a real fleet.

use std::path::Path;

use crate::support::{Scenario, tree_snapshot};

/// A fleet with v1, v2, v3 pushed in that order.
fn fleet_with_three_releases(hosts: usize, keep: usize) -> Scenario {
    let scenario = Scenario::new(hosts).service(&format!("keep_releases = {keep}"));
    for version in ["v1", "v2", "v3"] {
        let ran = scenario.push_version(version);
        assert_eq!(ran.code, 0, "push {version}: {ran:?}");
    }
    scenario
}

#[test]
fn fleet_rollback_walks_back_twice_in_go_live_order() {
    let scenario = fleet_with_three_releases(2, 5);
    let ran = scenario.json(&["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for (index, host) in scenario.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        assert_eq!(entry["from"], "v3");
        assert_eq!(entry["to"], "v2");
        assert_eq!(scenario.live(index).as_deref(), Some("v2"));
        assert_eq!(
            std::fs::read_link(host.root.join("app/current")).expect("link"),
            Path::new("releases/v2")
        );
    }
    let ran = scenario.json(&["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.host("web1")["to"], "v1");
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
    assert_eq!(scenario.live(1).as_deref(), Some("v1"));
    // Nothing older: reported clearly, not a failure.
    let ran = scenario.json(&["rollback"]);
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
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
}

#[test]
fn single_host_rollback_leaves_the_others_untouched() {
    let scenario = fleet_with_three_releases(3, 5);
    let root = |index: usize| scenario.host(index).root.clone();
    let untouched: Vec<_> = [0, 2]
        .iter()
        .map(|&index| tree_snapshot(&root(index)))
        .collect();
    let ran = scenario.json(&["rollback", "--hosts", "web2"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["hosts"].as_array().map(Vec::len), Some(1));
    assert_eq!(scenario.live(1).as_deref(), Some("v2"));
    assert_eq!(tree_snapshot(&root(0)), untouched[0]);
    assert_eq!(tree_snapshot(&root(2)), untouched[1]);
}

#[test]
fn rollback_to_a_named_release_and_to_one_missing_somewhere() {
    let scenario = fleet_with_three_releases(3, 5);
    let ran = scenario.json(&["rollback", "--to", "v1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for index in 0..3 {
        assert_eq!(scenario.live(index).as_deref(), Some("v1"));
    }
    // Remove v2 from web3 only: --to v2 must change nothing anywhere.
    let web3 = scenario.app(2);
    std::fs::remove_dir_all(web3.join("releases/v2")).expect("remove v2");
    std::fs::remove_file(web3.join(".deploy/digests/v2")).expect("remove digest");
    let before = scenario.snapshots();
    let ran = scenario.json(&["rollback", "--to", "v2"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let web3_entry = ran.host("web3");
    assert_eq!(web3_entry["result"], "failed");
    assert!(
        web3_entry["error"]
            .as_str()
            .unwrap_or("")
            .contains("v2 is not on this host (kept: v1, v3)"),
        "{web3_entry:#}"
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
    assert_eq!(before, scenario.snapshots(), "no host changed");
}

#[test]
fn rollback_dry_run_changes_nothing() {
    let scenario = fleet_with_three_releases(2, 5);
    let before = scenario.snapshots();
    let ran = scenario.json(&["rollback", "--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let entry = ran.host("web1");
    assert_eq!(entry["result"], "planned");
    assert_eq!(entry["from"], "v3");
    assert_eq!(entry["to"], "v2");
    assert_eq!(ran.json()["dry_run"], true);
    assert_eq!(before, scenario.snapshots());
}

#[test]
fn history_is_newest_first_with_operator_and_time() {
    let scenario = fleet_with_three_releases(1, 5);
    let ran = scenario.json(&["rollback"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = scenario.json(&["history"]);
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
    let ran = scenario.json(&["history", "--limit", "2"]);
    assert_eq!(
        ran.host("web1")["entries"].as_array().map(Vec::len),
        Some(2)
    );
    // Text view.
    let text = scenario.text(&["history", "--limit", "1"]).expect_code(0);
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
    let scenario = fleet_with_three_releases(1, 5);
    let lock = scenario.app(0).join(".deploy/lock");
    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        "999999999 ghost@gone old-run 1700000000\n",
    )
    .expect("holder");
    // A live holder: this test process's PID.
    let status = scenario.json(&["status"]);
    assert_eq!(status.host("web1")["lock"]["operator"], "ghost@gone");
    assert_eq!(status.host("web1")["lock"]["alive"], false);

    let ran = scenario.json(&["unlock", "--hosts", "web1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(!lock.exists(), "stale lock removed");
    let history = scenario.json(&["history", "--limit", "1"]);
    assert_eq!(history.host("web1")["entries"][0]["action"], "unlock");

    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        format!("{} alive@here run-x 1700000000\n", std::process::id()),
    )
    .expect("holder");
    let ran = scenario.json(&["unlock", "--hosts", "web1"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("--force")
    );
    assert!(lock.exists(), "live lock kept");
    let push = scenario.push_artifact("v4", &scenario.dir().join("v3.tar.gz"), &[]);
    assert_eq!(push.code, 3, "a held lock stops the push: {push:?}");
    assert!(
        push.host("web1")["error"]
            .as_str()
            .unwrap_or("")
            .contains("held by alive@here (run run-x)")
    );
    // unlock without --hosts is a usage error.
    let ran = scenario.json(&["unlock"]);
    assert_eq!(ran.code, 2, "{ran:?}");
}

#[test]
fn prune_keeps_the_live_and_previous_releases() {
    let scenario = fleet_with_three_releases(1, 5);
    let app = scenario.app(0);
    let dry = scenario.json(&["prune", "--keep", "1", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(dry.host("web1")["pruned"], serde_json::json!(["v1"]));
    assert!(app.join("releases/v1").exists(), "dry run removed nothing");
    let ran = scenario.json(&["prune", "--keep", "1"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.host("web1")["pruned"], serde_json::json!(["v1"]));
    assert!(!app.join("releases/v1").exists());
    assert!(app.join("releases/v2").exists(), "previous kept");
    assert!(app.join("releases/v3").exists(), "live kept");
    let again = scenario.json(&["prune", "--keep", "1"]);
    assert_eq!(again.host("web1")["result"], "unchanged");
}
