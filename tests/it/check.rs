//! `deploy check` and connection handling against a real fleet.

use std::time::{Duration, Instant};

use crate::support::{Blackhole, Fleet, Scenario, deploy_json, redact};

const SERVICE: &str = "[services.app]\nbase_dir = \"app\"\n";

#[test]
fn healthy_fleet_passes_every_check() {
    let scenario = Scenario::new(3);
    let ran = scenario.json(&["check"]).expect_code(0);
    for host in ["web1", "web2", "web3"] {
        let entry = ran.host(host);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        let checks = entry["checks"].as_array().expect("checks");
        // Every required check passes; optional tools (GNU find, openssl) may be missing.
        assert!(
            checks
                .iter()
                .filter(|check| check["optional"] == false)
                .all(|check| check["ok"] == true),
            "{entry:#}"
        );
        assert!(checks.iter().any(|check| check["name"] == "base_dir:app"));
        assert!(checks.iter().any(|check| check["name"] == "tool:sha256sum"));
    }
    assert!(!scenario.app(0).exists(), "check creates nothing");
}

#[test]
fn a_stopped_host_is_reported_while_the_others_succeed() {
    let mut scenario = Scenario::new(3);
    scenario.fleet_mut().stop(1);
    let ran = scenario.text(&["check"]).expect_code(1);
    let table = redact(&ran.stdout, scenario.fleet());
    assert!(table.contains("web1  ok"), "{table}");
    assert!(table.contains("web3  ok"), "{table}");
    assert!(
        table.contains("web2  failed")
            && table.contains("connect: cannot connect to 127.0.0.1:[PORT]: Connection refused"),
        "{table}"
    );
}

#[test]
fn a_blackhole_host_fails_within_its_connect_timeout() {
    let fleet = Fleet::start(2);
    let blackhole = Blackhole::start();
    let rest = format!(
        "[[hosts]]\nname = \"hole\"\naddress = \"127.0.0.1\"\nport = {}\n\n{SERVICE}",
        blackhole.port
    );
    let text = fleet
        .inventory_text(&rest)
        .replace("connect_timeout = \"5s\"", "connect_timeout = \"2s\"");
    let inventory = fleet.dir().join("blackhole.toml");
    std::fs::write(&inventory, text).expect("write inventory");
    let started = Instant::now();
    let ran = deploy_json(&inventory, &["check"]);
    let elapsed = started.elapsed();
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "ok");
    assert_eq!(ran.host("web2")["result"], "ok");
    let hole = ran.host("hole");
    assert_eq!(hole["result"], "failed");
    assert!(
        hole["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 2s"),
        "{hole:#}"
    );
    // Not a wall-clock assertion on speed: a guard that the timeout, not a hang, ended it.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}
