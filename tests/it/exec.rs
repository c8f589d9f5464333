//! `deploy exec` and `deploy run` (named tasks) against a real fleet: grouped output, exit
//! codes, the live release's directory and variables, the host's deadline, history records.

use crate::support::Scenario;

#[test]
fn exec_groups_identical_output_and_a_failing_host_makes_exit_1() {
    let scenario = Scenario::new(3);
    let command =
        "if [ \"$DEPLOY_HOST\" = web2 ]; then echo other; echo oops >&2; exit 3; fi; echo same";
    let ran = scenario.text(&["exec", "--", command]).expect_code(1);
    assert!(
        ran.stdout
            .contains("== web1, web3 (2) [ok]\nsame\n== web2 (1) [failed: exit status 3]\nother\nstderr: oops\n"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.ends_with("3 hosts: 2 ok, 1 failed\n"),
        "{}",
        ran.stdout
    );
    let ran = scenario.json(&["exec", "--", command]).expect_code(1);
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed");
    assert_eq!(web2["stdout"], "other\n");
    assert_eq!(web2["stderr"], "oops\n");
    assert_eq!(web2["exit_code"], 3);
    assert_eq!(ran.host("web1")["exit_code"], 0);
    assert_eq!(ran.host("web1")["stdout"], "same\n");
    scenario.json(&["exec", "--", "true"]).expect_code(0);
}

#[test]
fn exec_with_a_service_runs_in_the_live_release_with_its_variables_and_is_recorded() {
    let scenario = Scenario::new(2)
        .service("[services.app.env]\nRAILS_ENV = \"production\"\nREGION = \"service\"\n");
    let ran = scenario
        .json(&[
            "exec",
            "--service",
            "app",
            "--",
            "echo \"$DEPLOY_VERSION $RAILS_ENV\"",
        ])
        .expect_code(1);
    assert!(
        ran.error("web1").contains("no live release"),
        "{}",
        ran.error("web1")
    );
    scenario.push_version("v1").expect_code(0);
    let command = "echo \"$DEPLOY_SERVICE $DEPLOY_VERSION $RAILS_ENV $REGION ${PWD##*/}\"";
    let ran = scenario
        .json(&["exec", "--service", "app", "--", command])
        .expect_code(0);
    assert_eq!(ran.host("web1")["stdout"], "app v1 production service v1\n");
    let record = scenario.last_record(0);
    assert_eq!(record["action"], "exec", "{record:#}");
    assert_eq!(record["command"], command);
    assert_eq!(record["result"], "ok");
    assert_eq!(record["service"], "app");
    let history = scenario.json(&["history"]).expect_code(0);
    assert_eq!(
        history.host("web1")["entries"][0]["command"],
        command,
        "{:#}",
        history.host("web1")
    );
}

#[test]
fn the_host_stops_a_command_when_host_timeout_expires() {
    let scenario = Scenario::new(1).deploy_table("host_timeout = \"4s\"");
    let marker = "sleep 47.2931";
    let ran = scenario.json(&["exec", "--", marker]).expect_code(1);
    let error = ran.error("web1");
    assert!(
        error.contains("timed out") || error.contains("host_timeout"),
        "{error}"
    );
    // The command is gone from the host (stopped there, not merely abandoned).
    let mut gone = false;
    for _ in 0..40 {
        let status = std::process::Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .expect("pgrep runs");
        if !status.status.success() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(gone, "`{marker}` still runs on the host");
}

#[test]
fn named_tasks_run_like_exec_are_listed_and_hooks_may_name_them() {
    let scenario = Scenario::new(2).service(
        "[services.app.env]\nGREETING = \"hello\"\n\
         [services.app.tasks]\n\
         greet = \"echo $GREETING from $DEPLOY_HOST\"\n\
         remember = \"echo $GREETING $DEPLOY_VERSION > $DEPLOY_BASE_DIR/greeting\"\n\
         [services.app.hooks]\nafter_switch = [\"remember\"]\n",
    );
    let listing = scenario.text(&["run"]).expect_code(0);
    assert!(
        listing
            .stdout
            .contains("app      greet     echo $GREETING from $DEPLOY_HOST"),
        "{}",
        listing.stdout
    );
    scenario.push_version("v1").expect_code(0);
    assert_eq!(
        std::fs::read_to_string(scenario.app(1).join("greeting")).expect("hook ran the task"),
        "hello v1\n"
    );
    let ran = scenario.json(&["run", "greet"]).expect_code(0);
    assert_eq!(ran.json()["action"], "run");
    assert_eq!(ran.host("web2")["stdout"], "hello from web2\n");
    let record = scenario.last_record(1);
    assert_eq!(record["action"], "run");
    assert_eq!(record["command"], "echo $GREETING from $DEPLOY_HOST");
    let unknown = scenario.json(&["run", "nosuchtask"]).expect_code(2);
    assert!(
        unknown
            .stderr
            .contains("no selected service defines a task named `nosuchtask`"),
        "{}",
        unknown.stderr
    );
}
