//! Hooks, health checks and health-gated batches against a real fleet.

use crate::support::{Scenario, read};

/// The lines `after_switch` appends to `<base_dir>/after.log` on host `index`.
fn after_log(scenario: &Scenario, index: usize) -> String {
    std::fs::read_to_string(scenario.app(index).join("after.log")).unwrap_or_default()
}

const AFTER_HOOK: &str = "[services.app.hooks]\nafter_switch = [\"echo $DEPLOY_VERSION >> $DEPLOY_BASE_DIR/after.log\"]\n";

#[test]
fn hooks_see_the_deploy_environment_in_the_release_directory() {
    let scenario = Scenario::new(1).service(
        "[services.app.hooks]\nbefore_switch = [\"pwd > $DEPLOY_BASE_DIR/before.pwd\"]\nafter_switch = [\"printenv DEPLOY_BASE_DIR DEPLOY_HOST DEPLOY_PREVIOUS DEPLOY_RELEASE_DIR DEPLOY_RUN_ID DEPLOY_SERVICE DEPLOY_VERSION > $DEPLOY_BASE_DIR/hook.env\"]\n",
    );
    scenario.push_version("v1").expect_code(0);
    let ran = scenario.push_version("v2").expect_code(0);
    let app = scenario.app(0);
    let base = std::fs::canonicalize(&app).expect("canonical base");
    let run_id = ran.json()["id"].as_str().expect("id").to_string();
    let environment = read(app.join("hook.env"));
    assert_eq!(
        environment,
        format!(
            "{base}\nweb1\nv1\n{base}/releases/v2\n{run_id}\napp\nv2\n",
            base = base.display()
        )
    );
    assert_eq!(
        read(app.join("before.pwd")).trim(),
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
    let scenario = Scenario::new(2)
        .deploy_table("on_failure = \"continue\"")
        .service("[services.app.hooks]\nbefore_switch = [\"test $DEPLOY_HOST != web2 || { echo refusing on web2; exit 4; }\"]\n");
    assert_eq!(scenario.push_version("v1").code, 1, "web2 refuses v1 too");
    let ran = scenario.push_version("v2").expect_code(1);
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed");
    let error = web2["error"].as_str().unwrap_or("");
    assert!(error.contains("before_switch: exit status 4"), "{error}");
    assert!(
        error.contains("refusing on web2"),
        "hook output shown: {error}"
    );
    assert_eq!(scenario.live(1), None, "web2 never switched");
    assert_eq!(
        scenario.live(0).as_deref(),
        Some("v2"),
        "continue: web1 switched"
    );
}

#[test]
fn an_unhealthy_host_under_rollback_puts_every_host_back() {
    let health = "[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 2\ninterval = \"100ms\"\ntimeout = \"5s\"\n";
    let scenario = Scenario::new(3).service(&format!("{AFTER_HOOK}{health}"));
    scenario.push_version("v1").expect_code(0);
    let ran = scenario.push_version("v2").expect_code(1);
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
            after_log(&scenario, index),
            "v1\nv2\nv1\n",
            "after_switch reran for v1"
        );
    }
    assert_eq!(after_log(&scenario, 1), "v1\nv2\nv1\n");
    assert_eq!(scenario.lives(), vec![Some("v1".to_string()); 3]);
    // The history of the failed host says so.
    let last = scenario.last_record(1);
    assert_eq!(last["result"], "failed");
    assert_eq!(last["to"], "v2");
}

#[test]
fn continue_keeps_the_healthy_hosts_switched() {
    let scenario = Scenario::new(3)
        .deploy_table("on_failure = \"continue\"")
        .service("[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 1\n");
    scenario.push_version("v1").expect_code(0);
    let ran = scenario.push_version("v2").expect_code(1);
    assert_eq!(ran.host("web1")["result"], "ok");
    assert_eq!(ran.host("web2")["result"], "failed");
    assert_eq!(ran.host("web3")["result"], "ok");
    assert_eq!(
        scenario.lives(),
        [
            Some("v2".to_string()),
            Some("v1".to_string()),
            Some("v2".to_string())
        ]
    );
}

#[test]
fn batches_stop_at_the_first_unhealthy_batch() {
    let health = "[services.app.health_check]\ncommand = \"test $DEPLOY_VERSION = v1 || test $DEPLOY_HOST != web2\"\nretries = 1\n";
    let scenario = Scenario::new(3)
        .deploy_table("batch_size = 1\nconcurrency = 1")
        .service(&format!("{AFTER_HOOK}{health}"));
    scenario.push_version("v1").expect_code(0);
    let ran = scenario.push_version("v2").expect_code(1);
    assert_eq!(ran.host("web1")["result"], "rolled_back");
    assert_eq!(ran.host("web2")["result"], "failed");
    assert_eq!(ran.host("web3")["result"], "skipped");
    assert_eq!(
        after_log(&scenario, 2),
        "v1\n",
        "web3 never went live on v2"
    );
    assert_eq!(scenario.lives(), vec![Some("v1".to_string()); 3]);
}

#[test]
fn rollback_runs_the_hooks_and_health_check_of_the_release_it_goes_back_to() {
    let health = "[services.app.health_check]\ncommand = \"echo $DEPLOY_VERSION >> $DEPLOY_BASE_DIR/health.log\"\n";
    let scenario = Scenario::new(1).service(&format!("{AFTER_HOOK}{health}"));
    scenario.push_version("v1").expect_code(0);
    scenario.push_version("v2").expect_code(0);
    scenario.json(&["rollback"]).expect_code(0);
    assert_eq!(after_log(&scenario, 0), "v1\nv2\nv1\n");
    assert_eq!(read(scenario.app(0).join("health.log")), "v1\nv2\nv1\n");
}
