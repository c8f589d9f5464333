//! Hooks, health checks and health-gated batches against a real fleet.

use std::path::{Path, PathBuf};

use crate::support::Fleet;
use crate::{Ran, deploy, tarball};

fn inventory(fleet: &Fleet, deploy_table: &str, service_extra: &str) -> PathBuf {
    fleet.write_inventory(&format!(
        "{deploy_table}\n[services.app]\nbase_dir = \"app\"\n{service_extra}"
    ))
}

fn push(inventory: &Path, fleet: &Fleet, version: &str) -> Ran {
    let artifact = tarball(fleet.dir(), version, &[("version.txt", version)]);
    deploy(&[
        "-i",
        inventory.to_str().expect("utf-8"),
        "--output",
        "json",
        "--no-progress",
        "push",
        "--version",
        version,
        "--artifact",
        artifact.to_str().expect("utf-8"),
    ])
}

fn live(fleet: &Fleet, index: usize) -> Option<String> {
    std::fs::read_to_string(fleet.host(index).root.join("app/current/version.txt")).ok()
}

fn after_log(fleet: &Fleet, index: usize) -> String {
    std::fs::read_to_string(fleet.host(index).root.join("app/after.log")).unwrap_or_default()
}

const AFTER_HOOK: &str = "[services.app.hooks]\nafter_switch = [\"echo $DEPLOY_VERSION >> $DEPLOY_BASE_DIR/after.log\"]\n";

#[test]
fn hooks_see_the_deploy_environment_in_the_release_directory() {
    let fleet = Fleet::start(1);
    let inventory = inventory(
        &fleet,
        "",
        "[services.app.hooks]\nbefore_switch = [\"pwd > $DEPLOY_BASE_DIR/before.pwd\"]\nafter_switch = [\"printenv DEPLOY_BASE_DIR DEPLOY_HOST DEPLOY_PREVIOUS DEPLOY_RELEASE_DIR DEPLOY_RUN_ID DEPLOY_SERVICE DEPLOY_VERSION > $DEPLOY_BASE_DIR/hook.env\"]\n",
    );
    assert_eq!(push(&inventory, &fleet, "v1").code, 0);
    let ran = push(&inventory, &fleet, "v2");
    assert_eq!(ran.code, 0, "{ran:?}");
    let app = fleet.host(0).root.join("app");
    let base = std::fs::canonicalize(&app).expect("canonical base");
    let run_id = ran.json()["id"].as_str().expect("id").to_string();
    let environment = std::fs::read_to_string(app.join("hook.env")).expect("hook.env");
    assert_eq!(
        environment,
        format!(
            "{base}\nweb1\nv1\n{base}/releases/v2\n{run_id}\napp\nv2\n",
            base = base.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(app.join("before.pwd"))
            .expect("before.pwd")
            .trim(),
        format!("{}/releases/v2", base.display())
    );
    let steps: Vec<String> = ran.host("web1")["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(steps.len(), 5, "{steps:#?}");
    assert!(
        steps[0].starts_with("upload ")
            && steps[0].ends_with("and extract v2 into staging, verifying its sha256")
    );
    assert_eq!(
        [&steps[1], &steps[2], &steps[3], &steps[4]],
        [
            "link shared paths and rename staging into releases/v2",
            "before_switch hook in releases/v2: pwd > $DEPLOY_BASE_DIR/before.pwd",
            "switch current: v1 -> v2",
            "after_switch hook in releases/v2: printenv DEPLOY_BASE_DIR DEPLOY_HOST DEPLOY_PREVIOUS DEPLOY_RELEASE_DIR DEPLOY_RUN_ID DEPLOY_SERVICE DEPLOY_VERSION > $DEPLOY_BASE_DIR/hook.env",
        ]
    );
}

#[test]
fn a_failing_before_switch_hook_leaves_the_host_untouched() {
    let fleet = Fleet::start(2);
    let inventory = inventory(
        &fleet,
        "[deploy]\non_failure = \"continue\"\n",
        "[services.app.hooks]\nbefore_switch = [\"test $DEPLOY_HOST != web2 || { echo refusing on web2; exit 4; }\"]\n",
    );
    assert_eq!(
        push(&inventory, &fleet, "v1").code,
        1,
        "web2 refuses v1 too"
    );
    let ran = push(&inventory, &fleet, "v2");
    assert_eq!(ran.code, 1, "{ran:?}");
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed");
    let error = web2["error"].as_str().unwrap_or("");
    assert!(error.contains("before_switch: exit status 4"), "{error}");
    assert!(
        error.contains("refusing on web2"),
        "hook output shown: {error}"
    );
    assert_eq!(live(&fleet, 1), None, "web2 never switched");
    assert_eq!(
        live(&fleet, 0).as_deref(),
        Some("v2"),
        "continue: web1 switched"
    );
}

#[test]
fn an_unhealthy_host_under_rollback_puts_every_host_back() {
    let fleet = Fleet::start(3);
    let health = "[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 2\ninterval = \"100ms\"\ntimeout = \"5s\"\n";
    let inventory = inventory(&fleet, "", &format!("{AFTER_HOOK}{health}"));
    assert_eq!(push(&inventory, &fleet, "v1").code, 0);
    let ran = push(&inventory, &fleet, "v2");
    assert_eq!(ran.code, 1, "{ran:?}");
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed");
    assert!(
        web2["error"]
            .as_str()
            .unwrap_or("")
            .contains("health: failed 2 of 2 attempts"),
        "{web2:#}"
    );
    assert!(
        web2["error"]
            .as_str()
            .unwrap_or("")
            .contains("switched back to v1")
    );
    for (index, host) in ["web1", "web3"].iter().enumerate() {
        let entry = ran.host(host);
        assert_eq!(entry["result"], "rolled_back", "{entry:#}");
        let index = if index == 0 { 0 } else { 2 };
        assert_eq!(
            after_log(&fleet, index),
            "v1\nv2\nv1\n",
            "after_switch reran for v1"
        );
    }
    assert_eq!(after_log(&fleet, 1), "v1\nv2\nv1\n");
    for index in 0..3 {
        assert_eq!(live(&fleet, index).as_deref(), Some("v1"));
    }
    // The history of the failed host says so.
    let history = std::fs::read_to_string(fleet.host(1).root.join("app/.deploy/history.jsonl"))
        .expect("history");
    let last: serde_json::Value =
        serde_json::from_str(history.lines().last().expect("a record")).expect("json");
    assert_eq!(last["result"], "failed");
    assert_eq!(last["to"], "v2");
}

#[test]
fn continue_keeps_the_healthy_hosts_switched() {
    let fleet = Fleet::start(3);
    let health = "[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 1\n";
    let inventory = inventory(&fleet, "[deploy]\non_failure = \"continue\"\n", health);
    assert_eq!(push(&inventory, &fleet, "v1").code, 0);
    let ran = push(&inventory, &fleet, "v2");
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "ok");
    assert_eq!(ran.host("web2")["result"], "failed");
    assert_eq!(ran.host("web3")["result"], "ok");
    assert_eq!(live(&fleet, 0).as_deref(), Some("v2"));
    assert_eq!(live(&fleet, 1).as_deref(), Some("v1"));
    assert_eq!(live(&fleet, 2).as_deref(), Some("v2"));
}

#[test]
fn batches_stop_at_the_first_unhealthy_batch() {
    let fleet = Fleet::start(3);
    let health = "[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 1\n";
    let inventory = inventory(
        &fleet,
        "[deploy]\nbatch_size = 1\nconcurrency = 1\n",
        &format!("{AFTER_HOOK}{health}"),
    );
    assert_eq!(push(&inventory, &fleet, "v1").code, 0);
    let ran = push(&inventory, &fleet, "v2");
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "rolled_back");
    assert_eq!(ran.host("web2")["result"], "failed");
    assert_eq!(ran.host("web3")["result"], "skipped");
    assert_eq!(after_log(&fleet, 2), "v1\n", "web3 never went live on v2");
    for index in 0..3 {
        assert_eq!(live(&fleet, index).as_deref(), Some("v1"));
    }
}

#[test]
fn rollback_runs_the_hooks_and_health_check_of_the_release_it_goes_back_to() {
    let fleet = Fleet::start(1);
    let health = "[services.app.health_check]\ncommand = \"echo $DEPLOY_VERSION >> $DEPLOY_BASE_DIR/health.log\"\n";
    let inventory = inventory(&fleet, "", &format!("{AFTER_HOOK}{health}"));
    assert_eq!(push(&inventory, &fleet, "v1").code, 0);
    assert_eq!(push(&inventory, &fleet, "v2").code, 0);
    let ran = deploy(&[
        "-i",
        inventory.to_str().expect("utf-8"),
        "--output",
        "json",
        "rollback",
    ]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(after_log(&fleet, 0), "v1\nv2\nv1\n");
    let health_log =
        std::fs::read_to_string(fleet.host(0).root.join("app/health.log")).expect("health log");
    assert_eq!(health_log, "v1\nv2\nv1\n");
}
