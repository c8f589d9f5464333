//! `deploy push` against a real fleet.

use std::path::Path;

use crate::support::Fleet;
use crate::{deploy, tarball};

fn service(extra: &str) -> String {
    format!("[services.app]\nbase_dir = \"app\"\nkeep_releases = 3\n{extra}")
}

fn push(inventory: &Path, version: &str, artifact: &Path, extra: &[&str]) -> crate::Ran {
    let mut args = vec![
        "push",
        "-i",
        inventory.to_str().expect("utf-8"),
        "--version",
        version,
        "--artifact",
        artifact.to_str().expect("utf-8"),
        "--output",
        "json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    deploy(&args)
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.as_ref().display()))
}

#[test]
fn push_v1_then_v2_switches_every_host() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(&service(""));
    let v1 = tarball(
        fleet.dir(),
        "v1",
        &[("index.html", "one"), ("bin/run", "#!/bin/sh\n")],
    );
    let v2 = tarball(fleet.dir(), "v2", &[("index.html", "two")]);

    let ran = push(&inventory, "v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
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

    let ran = push(&inventory, "v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
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
    let ran = push(&inventory, "v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
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
    let mut child = crate::support::deploy()
        .args([
            "-i",
            inventory.to_str().expect("utf-8"),
            "push",
            "--no-progress",
            "-q",
        ])
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
