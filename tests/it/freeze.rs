//! Deploy freeze (`deploy lock --message`, `deploy unlock`) and the `status` roll-up against a
//! real fleet.

use crate::support::Scenario;

#[test]
fn a_freeze_refuses_pushes_with_exit_3_until_unlock_lifts_it() {
    let scenario = Scenario::new(2);
    scenario.push_version("v1").expect_code(0);
    scenario
        .json(&["lock", "--message", "incident 123", "--hosts", "web2"])
        .expect_code(0);
    let v2 = scenario.versioned_artifact("v2");
    let dry = scenario
        .push_artifact("v2", &v2, &["--dry-run"])
        .expect_code(0);
    let notes = dry.host("web2")["notes"].to_string();
    assert!(
        notes.contains(": incident 123 (a push is refused here)"),
        "{notes}"
    );
    scenario.json(&["prune", "--keep", "1"]).expect_code(3);
    let ran = scenario.push_artifact("v2", &v2, &[]).expect_code(3);
    let error = ran.error("web2");
    assert!(error.contains("frozen by "), "{error}");
    assert!(error.contains(": incident 123"), "{error}");
    assert!(
        !error.contains("held by"),
        "a freeze is not a run's lock: {error}"
    );
    assert_eq!(scenario.lives(), [Some("v1".into()), Some("v1".into())]);
    let status = scenario.json(&["status"]).expect_code(0);
    assert_eq!(status.host("web2")["freeze"]["message"], "incident 123");
    assert_eq!(status.host("web2")["lock"], serde_json::Value::Null);
    assert_eq!(status.host("web1")["freeze"], serde_json::Value::Null);
    let text = scenario.text(&["status"]).expect_code(0);
    assert!(text.stdout.contains(": incident 123"), "{}", text.stdout);
    scenario.json(&["rollback"]).expect_code(3);
    scenario.json(&["unlock", "--hosts", "web2"]).expect_code(0);
    scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    assert_eq!(scenario.lives(), [Some("v2".into()), Some("v2".into())]);
    let actions: Vec<String> = scenario
        .history(1)
        .iter()
        .map(|record| record["action"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        actions.windows(2).any(|pair| pair == ["lock", "unlock"])
            || actions.windows(2).any(|pair| pair == ["unlock", "lock"]),
        "{actions:?}"
    );
    let lock = scenario
        .history(1)
        .into_iter()
        .find(|record| record["action"] == "lock")
        .expect("a lock record");
    assert_eq!(lock["message"], "incident 123");
    // `deploy history` shows the message too, in JSON and in its table.
    let history = scenario
        .json(&["history", "--hosts", "web2"])
        .expect_code(0);
    let entries = history.host("web2")["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "lock" && entry["message"] == "incident 123"),
        "{entries:#?}"
    );
    let text = scenario
        .text(&["history", "--hosts", "web2"])
        .expect_code(0);
    assert!(text.stdout.contains("incident 123"), "{}", text.stdout);
}

#[test]
fn status_rolls_up_live_releases_and_says_who_made_them_live() {
    let scenario = Scenario::new(3);
    scenario.push_version("v1").expect_code(0);
    let versioned = scenario.versioned_artifact("v2");
    scenario
        .push_artifact("v2", &versioned, &["--hosts", "web1,web3"])
        .expect_code(0);
    let text = scenario.text(&["status"]).expect_code(0);
    assert!(
        text.stdout
            .contains("app: v2: 2 hosts (web1, web3); v1: 1 host (web2)"),
        "{}",
        text.stdout
    );
    let status = scenario.json(&["status"]).expect_code(0);
    let document = status.json();
    assert_eq!(document["rollup"][0]["service"], "app");
    assert_eq!(document["rollup"][0]["versions"][0]["live"], "v2");
    assert_eq!(document["rollup"][0]["versions"][0]["count"], 2);
    let went_live = &status.host("web2")["went_live"];
    assert_eq!(went_live["action"], "push", "{went_live:#}");
    assert!(went_live["operator"].as_str().unwrap_or("").contains('@'));
    assert!(went_live["time"].as_str().unwrap_or("").ends_with('Z'));
}
