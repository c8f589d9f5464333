//! `deploy push` when things go wrong, or at the edges of the contract (SPEC §3–§6):
//! immutable versions, pruning, shared paths, a host too small for the artifact, concurrent
//! runs, several services in one run, a controller killed or interrupted mid-upload, and the
//! output / dry-run guarantees. Every test runs on its own fleet; none asserts on wall-clock
//! time (deadlines below only keep a broken run from hanging the suite).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Fleet, PATIENCE, Scenario, big_tarball, deploy_json, entries, history_records, live_release,
    read, sha256_file, tarball, tree_metadata_snapshot,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// `hosts` hosts and the service with `keep_releases = 3` and `extra`.
fn setup(hosts: usize, extra: &str) -> Scenario {
    Scenario::new(hosts).service(&format!("keep_releases = 3\n{extra}"))
}

fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    crate::support::wait_until(what, PATIENCE, condition);
}

/// Polls for up to a few seconds (for cleanup that may finish just after the controller exits).
fn eventually(condition: impl FnMut() -> bool) -> bool {
    crate::support::eventually(Duration::from_secs(5), condition)
}

/// Whether `dir` has at least one entry somewhere below it (a file being written).
fn has_nested_content(dir: &Path) -> bool {
    entries(dir)
        .iter()
        .any(|run| !entries(&dir.join(run).join("tree")).is_empty())
}

/// `releases/<version>` is a complete release: a real directory with its recorded digest
/// (64 hex digits) and manifest, holding an `index.html`.
fn assert_complete(app: &Path, version: &str) {
    let release = app.join("releases").join(version);
    let meta = std::fs::symlink_metadata(&release)
        .unwrap_or_else(|error| panic!("{}: {error}", release.display()));
    assert!(meta.is_dir(), "{} is not a directory", release.display());
    let digest = read(app.join(".deploy/digests").join(version));
    let digest = digest.trim();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "digest of {version}: {digest:?}"
    );
    assert!(
        app.join(".deploy/manifests").join(version).is_file(),
        "manifest of {version} recorded"
    );
    assert!(
        release.join("index.html").is_file(),
        "{version} has its files"
    );
}

/// `current` is a relative link to `releases/<version>`, and that release is complete.
fn assert_live(app: &Path, version: &str) {
    assert_eq!(
        live_release(app).as_deref(),
        Some(version),
        "current of {}",
        app.display()
    );
    assert_complete(app, version);
}

/// `text` mentions `word` as itself: not wrapped in quote characters.
fn names_verbatim(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        !matches!(before, Some('\'' | '"')) && !matches!(after, Some('\'' | '"'))
    })
}

fn error_of(entry: &Value) -> String {
    entry["error"].as_str().unwrap_or("").to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Immutable versions

#[test]
fn same_version_with_other_content_is_refused_unless_forced() {
    let scenario = setup(2, "");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let v1_other = scenario.artifact("v1-other", &[("index.html", "one, rebuilt")]);
    assert_ne!(sha256_file(&v1), sha256_file(&v1_other));

    // web1 gets v1 then v2 (so v1 is on it but not live); web2 has nothing yet.
    for (version, artifact) in [("v1", &v1), ("v2", &v2)] {
        let ran = scenario.push_artifact(version, artifact, &["--hosts", "web1"]);
        assert_eq!(ran.code, 0, "{ran:?}");
    }
    let web1 = scenario.app(0);
    let web2 = scenario.app(1);
    let old_digest = read(web1.join(".deploy/digests/v1"));

    // v1 with other content: refused on web1 (and, with on_failure = rollback, nobody switches).
    // (v1 went live on web1 before v2: the downgrade guard is passed to reach this rule.)
    let ran = scenario.push_artifact("v1", &v1_other, &["--allow-downgrade"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let refused = ran.host("web1");
    assert_eq!(refused["result"], "failed", "{refused:#}");
    assert!(
        error_of(&refused).contains("immutable"),
        "the error says versions are immutable: {refused:#}"
    );
    assert_ne!(ran.host("web2")["result"], "ok", "{:#}", ran.json());
    assert_live(&web1, "v2");
    assert_eq!(
        read(web1.join("releases/v1/index.html")),
        "one",
        "v1 untouched"
    );
    assert_eq!(read(web1.join(".deploy/digests/v1")), old_digest);
    assert_eq!(live_release(&web2), None, "web2 was not switched");

    // --force replaces the (not live) v1 on web1 and ships it everywhere.
    let ran = scenario.push_artifact("v1", &v1_other, &["--force", "--allow-downgrade"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    for host in ["web1", "web2"] {
        let entry = ran.host(host);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        assert_eq!(entry["to"], "v1");
    }
    for app in [&web1, &web2] {
        assert_live(app, "v1");
        assert_eq!(read(app.join("releases/v1/index.html")), "one, rebuilt");
        assert_eq!(
            read(app.join(".deploy/digests/v1")).trim(),
            sha256_file(&v1_other),
            "the recorded digest is the new content's"
        );
        assert_eq!(entries(&app.join(".deploy/staging")), Vec::<String>::new());
    }
    assert!(
        web1.join("releases/v2/index.html").is_file(),
        "v2 kept on web1"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. keep_releases

#[test]
fn keep_releases_is_honoured_over_six_pushes() {
    let scenario = setup(1, "");
    let app = scenario.app(0);
    for number in 1..=6 {
        let version = format!("v{number}");
        let artifact = scenario.artifact(&version, &[("index.html", &format!("release {number}"))]);
        let ran = scenario.push_artifact(&version, &artifact, &[]);
        assert_eq!(ran.code, 0, "push {version}: {ran:?}");
        assert_live(&app, &version);
        assert!(
            entries(&app.join("releases")).len() <= 3,
            "after {version}: {:?}",
            entries(&app.join("releases"))
        );
    }
    assert_eq!(entries(&app.join("releases")), ["v4", "v5", "v6"]);
    assert_live(&app, "v6");
    assert_eq!(read(app.join("current/index.html")), "release 6");
    for kept in ["v4", "v5", "v6"] {
        assert_complete(&app, kept);
    }
    for pruned in ["v1", "v2", "v3"] {
        assert!(
            !app.join(".deploy/digests").join(pruned).exists(),
            "digest of pruned {pruned} removed"
        );
        assert!(
            !app.join(".deploy/manifests").join(pruned).exists(),
            "manifest of pruned {pruned} removed"
        );
    }
    assert_eq!(entries(&app.join(".deploy/digests")), ["v4", "v5", "v6"]);
    assert_eq!(entries(&app.join(".deploy/staging")), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 3. shared_paths

#[test]
fn shared_paths_persist_across_releases() {
    let scenario = setup(1, "shared_paths = [\"log\"]\n");
    let app = scenario.app(0);
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact(
        "v2",
        &[
            ("index.html", "two"),
            ("log/from-the-artifact.log", "shipped"),
        ],
    );

    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        app.join("current/log").is_dir(),
        "current/log resolves to a directory"
    );
    std::fs::write(
        app.join("current/log/app.log"),
        "written while v1 was live\n",
    )
    .expect("write into current/log");

    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_live(&app, "v2");
    assert_eq!(
        read(app.join("current/log/app.log")),
        "written while v1 was live\n"
    );
    assert_eq!(
        std::fs::read_link(app.join("releases/v2/log")).expect("releases/v2/log is a symlink"),
        Path::new("../../shared/log")
    );
    assert_eq!(
        std::fs::read_link(app.join("releases/v1/log")).expect("releases/v1/log is a symlink"),
        Path::new("../../shared/log")
    );
    assert!(app.join("shared/log").is_dir());
    assert!(
        !std::fs::symlink_metadata(app.join("shared/log"))
            .expect("shared/log")
            .file_type()
            .is_symlink()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A host too small for the artifact

#[test]
fn a_host_that_cannot_hold_the_artifact_fails_and_on_failure_decides_the_rest() {
    let mut scenario = setup(3, "");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = big_tarball(scenario.dir(), "v2", 4);

    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    scenario.fleet_mut().limit_file_size(1, 512);

    // on_failure = "rollback" (the default): nobody switches.
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.json()["result"], "failed");
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed", "{web2:#}");
    let error = error_of(&web2);
    assert!(
        error.contains("upload") || error.contains("extract"),
        "web2's error names the upload/extract failure: {web2:#}"
    );
    assert!(
        error.starts_with("upload: ") && !error.starts_with("upload: upload:"),
        "{error}"
    );
    assert!(
        error.contains("hint: the host cannot hold the release:")
            && error.contains("needed to unpack it"),
        "the error says free vs needed: {error}"
    );
    for host in ["web1", "web3"] {
        let entry = ran.host(host);
        assert_eq!(entry["result"], "skipped", "{entry:#}");
    }
    for index in 0..3 {
        let app = scenario.app(index);
        assert_live(&app, "v1");
        assert_eq!(read(app.join("current/index.html")), "one");
        assert!(
            eventually(|| !app.join(".deploy/lock").exists()),
            "lock released on web{}",
            index + 1
        );
    }
    let web2_app = scenario.app(1);
    assert_eq!(
        entries(&web2_app.join(".deploy/staging")),
        Vec::<String>::new()
    );
    assert!(
        !web2_app.join("releases/v2").exists(),
        "no partial release on web2"
    );

    // on_failure = "continue": the others go live, web2 stays on v1.
    let scenario = scenario.deploy_table("on_failure = \"continue\"");
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let web2 = ran.host("web2");
    assert_eq!(web2["result"], "failed", "{web2:#}");
    let error = error_of(&web2);
    assert!(
        error.contains("upload") || error.contains("extract"),
        "web2's error names the upload/extract failure: {web2:#}"
    );
    for (index, host) in [(0, "web1"), (2, "web3")] {
        let entry = ran.host(host);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
        let app = scenario.app(index);
        assert_live(&app, "v2");
        assert_eq!(read(app.join("current/index.html")), "v2");
    }
    assert_live(&web2_app, "v1");
    assert_eq!(
        entries(&web2_app.join(".deploy/staging")),
        Vec::<String>::new()
    );
    assert!(
        !web2_app.join("releases/v2").exists(),
        "no partial release on web2"
    );
    assert!(eventually(|| !web2_app.join(".deploy/lock").exists()));
}

// ---------------------------------------------------------------------------------------------
// 5. Two runs on one service

#[test]
fn a_second_run_on_a_locked_service_fails_at_once_naming_the_holder() {
    let scenario = setup(1, "");
    let app = scenario.app(0);
    let slow = big_tarball(scenario.dir(), "v1", 128);
    let small = scenario.artifact("v2", &[("index.html", "two")]);

    let first = scenario.spawn_push("first", "v1", &slow, &[]);
    let holder_file = app.join(".deploy/lock/holder");
    wait_until("the first run holds the lock", || {
        std::fs::read_to_string(&holder_file).is_ok_and(|text| text.ends_with('\n'))
    });
    let holder = read(&holder_file);

    let second = scenario.push_artifact("v2", &small, &[]);
    let first = first.wait(PATIENCE);
    assert_eq!(first.code, 0, "{first:?}");
    let run_id = first.json()["id"].as_str().expect("run id").to_string();
    let records = history_records(&app);
    let operator = records
        .iter()
        .find(|record| record["id"] == run_id.as_str())
        .and_then(|record| record["operator"].as_str())
        .unwrap_or_else(|| panic!("no history record of the first run: {records:#?}"))
        .to_string();

    assert_eq!(second.code, 3, "{second:?}");
    let entry = second.host("web1");
    assert_eq!(entry["result"], "failed", "{entry:#}");
    let error = error_of(&entry);
    assert!(error.contains("held by"), "{entry:#}");
    assert_eq!(first.host("web1")["result"], "ok");
    assert_live(&app, "v1");
    assert!(
        !app.join("releases/v2").exists(),
        "the second run staged nothing"
    );
    assert!(eventually(|| !app.join(".deploy/lock").exists()));

    // The holder is named as it is: operator and run id verbatim (checked last, so that the
    // checks above run whatever the wording).
    assert!(
        names_verbatim(&error, &operator),
        "names the holder's operator {operator} as it is: {entry:#}\n(lock holder file was {holder:?})"
    );
    assert!(
        names_verbatim(&error, &run_id),
        "names the holder's run {run_id} as it is: {entry:#}\n(lock holder file was {holder:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Two services in one run

#[test]
fn two_services_on_the_same_hosts_are_pushed_in_one_run() {
    let fleet = Fleet::start(2);
    tarball(fleet.dir(), "api-a1", &[("index.html", "api a1")]);
    tarball(fleet.dir(), "web-w1", &[("index.html", "web w1")]);
    tarball(fleet.dir(), "api-a2", &[("index.html", "api a2")]);
    tarball(fleet.dir(), "web-w2", &[("index.html", "web w2")]);
    let services = |api: &str, web: &str| {
        format!(
            "[services.api]\nbase_dir = \"api\"\nversion = \"{api}\"\nartifact = \"api-{api}.tar.gz\"\n\n\
             [services.web]\nbase_dir = \"web\"\nversion = \"{web}\"\nartifact = \"web-{web}.tar.gz\"\n"
        )
    };
    // Relative artifact paths resolve against the inventory's directory, not the cwd.
    assert_ne!(std::env::current_dir().expect("cwd"), fleet.dir());

    for (api, web, extra) in [("a1", "w1", None), ("a2", "w2", Some("-j1"))] {
        let inventory = fleet.write_inventory(&services(api, web));
        let mut args = vec!["push"];
        args.extend(extra);
        let ran = deploy_json(&inventory, &args).expect_code(0);
        assert_eq!(ran.json()["result"], "ok");
        assert_eq!(
            ran.json()["hosts"].as_array().map(Vec::len),
            Some(4),
            "{:#}",
            ran.json()
        );
        for host in fleet.hosts() {
            for (service, version) in [("api", api), ("web", web)] {
                let entry = ran.entry(service, &host.name);
                assert_eq!(entry["result"], "ok", "{entry:#}");
                assert_eq!(entry["to"], version);
                let app = host.root.join(service);
                assert_live(&app, version);
                assert_eq!(
                    read(app.join("current/index.html")),
                    format!("{service} {version}")
                );
                assert!(!app.join(".deploy/lock").exists());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. SIGKILL of the controller

#[test]
fn a_controller_killed_mid_upload_leaves_nothing_that_blocks_a_rerun() {
    let scenario = setup(2, "");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = big_tarball(scenario.dir(), "v2", 96);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let running = scenario.spawn_push("killed", "v2", &v2, &[]);
    wait_until("the upload has started writing on a host", || {
        (0..2).any(|index| has_nested_content(&scenario.app(index).join(".deploy/staging")))
    });
    running.signal("KILL");
    let stderr = running.wait(PATIENCE).stderr;

    // Right after the kill: whatever `current` is, it points at a complete release.
    for index in 0..2 {
        let app = scenario.app(index);
        if let Some(version) = live_release(&app) {
            assert_complete(&app, &version);
        }
        // releases/ holds complete releases only: never a half-uploaded v2.
        for version in entries(&app.join("releases")) {
            assert_complete(&app, &version);
        }
    }

    // An immediate re-run of the same push succeeds.
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}\nkilled run's stderr:\n{stderr}");
    assert!(
        !ran.stdout.contains("held by") && !ran.stderr.contains("held by"),
        "{ran:?}"
    );
    for (index, host) in scenario.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        let app = scenario.app(index);
        assert_live(&app, "v2");
        assert_eq!(read(app.join("current/index.html")), "v2");
        assert_eq!(
            read(app.join(".deploy/digests/v2")).trim(),
            sha256_file(&v2)
        );
        assert_eq!(
            std::fs::metadata(app.join("current/blob.bin"))
                .expect("blob")
                .len(),
            96 << 20,
            "the whole release is there"
        );
        assert_eq!(entries(&app.join(".deploy/staging")), Vec::<String>::new());
        assert_eq!(
            entries(&app.join(".deploy"))
                .into_iter()
                .filter(|name| name.starts_with("current."))
                .collect::<Vec<_>>(),
            Vec::<String>::new(),
            "no temporary links left"
        );
        assert!(eventually(|| !app.join(".deploy/lock").exists()));
    }
}

// ---------------------------------------------------------------------------------------------
// 8. SIGINT

#[test]
fn sigint_mid_upload_exits_130_and_leaves_every_host_as_it_was() {
    let scenario = setup(2, "");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = big_tarball(scenario.dir(), "v2", 96);
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let running = scenario.spawn_push("interrupted", "v2", &v2, &[]);
    wait_until("the upload has started writing on a host", || {
        (0..2).any(|index| has_nested_content(&scenario.app(index).join(".deploy/staging")))
    });
    let status = Command::new("kill")
        .arg("-INT")
        .arg(running.pid().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let ran = running.wait(PATIENCE);

    assert_eq!(ran.code, 130, "{ran:?}");
    let run_id = ran.json()["id"].as_str().expect("run id").to_string();
    for (index, host) in scenario.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_ne!(entry["result"], "ok", "{entry:#}");
        let app = scenario.app(index);
        assert_live(&app, "v1");
        assert_eq!(read(app.join("current/index.html")), "one");
        assert_eq!(entries(&app.join("releases")), ["v1"], "no partial v2");
        assert!(
            eventually(|| !app.join(".deploy/lock").exists()),
            "{}: lock still there after exit: {:?}",
            host.name,
            std::fs::read_to_string(app.join(".deploy/lock/holder"))
        );
        assert!(
            eventually(|| entries(&app.join(".deploy/staging")).is_empty()),
            "{}: staging left behind: {:?}",
            host.name,
            entries(&app.join(".deploy/staging"))
        );
        let records = history_records(&app);
        let record = records
            .iter()
            .find(|record| record["id"] == run_id.as_str())
            .unwrap_or_else(|| {
                panic!(
                    "{}: no history record of run {run_id}: {records:#?}",
                    host.name
                )
            });
        assert_eq!(record["action"], "push");
        assert_eq!(record["to"], "v2");
        assert_ne!(record["result"], "ok", "{record:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Output and dry-run

/// No line of `stderr` is a JSON document.
fn assert_no_json(stderr: &str) {
    for line in stderr.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            assert!(
                serde_json::from_str::<Value>(trimmed).is_err(),
                "JSON on stderr: {line}"
            );
        }
    }
    assert!(
        !stderr.contains("\"hosts\""),
        "the result document leaked to stderr:\n{stderr}"
    );
}

#[test]
fn json_output_is_one_document_and_dry_run_changes_nothing() {
    let scenario = setup(2, "shared_paths = [\"log\"]\n");
    let v1 = scenario.artifact("v1", &[("index.html", "one")]);
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let snapshots = |fleet: &Fleet| -> Vec<BTreeMap<String, String>> {
        fleet
            .hosts()
            .iter()
            .map(|host| tree_metadata_snapshot(&host.root))
            .collect()
    };

    // Dry run on fresh hosts: nothing is created.
    let before = snapshots(scenario.fleet());
    let ran = scenario.push_artifact("v1", &v1, &["--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["dry_run"], true);
    assert_no_json(&ran.stderr);
    for host in scenario.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "planned", "{entry:#}");
        assert_eq!(entry["to"], "v1");
    }
    assert_eq!(
        before,
        snapshots(scenario.fleet()),
        "a dry run changed a fresh host"
    );
    for host in scenario.hosts() {
        assert!(!host.root.join("app").exists());
    }

    // A real push: stdout is exactly one JSON document, stderr has none.
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["action"], "push");
    assert_eq!(document["dry_run"], false);
    assert_eq!(document["hosts"].as_array().map(Vec::len), Some(2));
    assert_no_json(&ran.stderr);

    // Dry run of v2 over a live v1: every file, link and directory stays as it was.
    let before = snapshots(scenario.fleet());
    let ran = scenario.push_artifact("v2", &v2, &["--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["dry_run"], true);
    assert_eq!(document["action"], "push");
    assert_no_json(&ran.stderr);
    for host in scenario.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "planned", "{entry:#}");
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
    }
    let after = snapshots(scenario.fleet());
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        assert_eq!(before, after, "a dry run changed web{}", index + 1);
    }
    for index in 0..2 {
        assert_live(&scenario.app(index), "v1");
        assert!(!scenario.app(index).join("releases/v2").exists());
    }
}
