//! `deploy push` against a real fleet.

use std::path::Path;

use crate::support::{self, Fleet, Scenario, path_str, read, tarball};

#[test]
fn push_v1_then_v2_switches_every_host() {
    let scenario = Scenario::new(3).service("keep_releases = 3");
    let fleet = scenario.fleet();
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);

    let ran = scenario
        .push("v1", &[("index.html", "one"), ("bin/run", "#!/bin/sh\n")])
        .expect_code(0);
    let document = ran.json();
    assert_eq!(document["action"], "push");
    assert_eq!(document["result"], "ok");
    assert_eq!(document["dry_run"], false);
    for host in fleet.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        assert_eq!(entry["to"], "v1");
        assert_eq!(entry["from"], serde_json::Value::Null);
        assert!(entry["bytes"].as_u64().unwrap_or(0) > 0);
        let app = host.root.join("app");
        assert_eq!(
            std::fs::read_link(app.join("current")).expect("current"),
            Path::new("releases/v1")
        );
        assert_eq!(read(app.join("current/index.html")), "one");
        assert!(!app.join(".deploy/lock").exists(), "lock released");
    }

    let ran = scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    let v2_run_id = ran.json()["id"].clone();
    for host in fleet.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok");
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
        let app = host.root.join("app");
        assert_eq!(
            std::fs::read_link(app.join("current")).expect("current"),
            Path::new("releases/v2")
        );
        assert_eq!(read(app.join("current/index.html")), "two");
        assert!(app.join("releases/v1/index.html").exists(), "v1 kept");
        let staging = std::fs::read_dir(app.join(".deploy/staging"))
            .expect("staging dir")
            .count();
        assert_eq!(staging, 0, "no staging leftovers");
    }

    // Re-running the same push changes nothing and uploads nothing.
    let ran = scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    for host in fleet.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "unchanged", "{entry:#}");
        assert_eq!(entry["bytes"], 0);
    }

    // History: one record per host per push, well-formed.
    let history = read(fleet.host(0).root.join("app/.deploy/history.jsonl"));
    let records: Vec<serde_json::Value> = history
        .lines()
        .map(|line| serde_json::from_str(line).expect("history line is JSON"))
        .collect();
    assert_eq!(records.len(), 3, "{history}");
    assert_eq!(records[1]["action"], "push");
    assert_eq!(records[1]["from"], "v1");
    assert_eq!(records[1]["to"], "v2");
    assert_eq!(records[1]["result"], "ok");
    assert_eq!(records[1]["id"], v2_run_id);
    assert!(records[1]["operator"].as_str().unwrap_or("").contains('@'));
    assert_eq!(records[1]["sha256"].as_str().map(str::len), Some(64));
    assert!(records[1]["time"].as_str().unwrap_or("").ends_with('Z'));
}

/// Established TCP connections to 127.0.0.1:`port` (client side), from /proc/net/tcp.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|address| address.split(':').nth(1))
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            remote_port == Some(port) && fields.get(3) == Some(&"01")
        })
        .count()
}

#[test]
fn services_on_the_same_host_share_one_connection() {
    let fleet = Fleet::start(2);
    let artifact = tarball(fleet.dir(), "shared", &[("index.html", "hi")]);
    let mut services = String::new();
    for name in ["api", "web"] {
        services.push_str(&format!(
            "[services.{name}]\nbase_dir = \"{name}\"\nversion = \"v1\"\nartifact = \"{}\"\n\
             [services.{name}.hooks]\nafter_switch = [\"touch $DEPLOY_BASE_DIR/../{name}.switching; sleep 2\"]\n",
            artifact.display()
        ));
    }
    let inventory = fleet.write_inventory(&services);
    let mut child = support::deploy()
        .args(["-i", path_str(&inventory), "push", "--no-progress", "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("deploy starts");
    let in_hooks = |index: usize| {
        let root = &fleet.host(index).root;
        root.join("api.switching").exists() && root.join("web.switching").exists()
    };
    let mut waited = 0;
    while !(in_hooks(0) && in_hooks(1)) {
        assert!(
            waited < 600,
            "both services reach their after_switch hook on both hosts"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        waited += 1;
    }
    // Both services are in their 2 s hooks on both hosts now: one connection per host carries both.
    assert_eq!(connections_to(fleet.host(0).port), 1);
    assert_eq!(connections_to(fleet.host(1).port), 1);
    let status = child.wait().expect("deploy finishes");
    assert!(status.success(), "{status:?}");
}
