//! Guard rails and "who and why" (issue 15, part B), against real sshd hosts: the downgrade
//! guard, tarballs under one top directory and `strip_components`, `--message` /
//! `DEPLOY_MESSAGE` in history and in the webhook's start and end events, "did you mean", and
//! `rollback --to` a release a host no longer keeps.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    HttpServer, Reply, Scenario, Sentinel, read, tree_metadata_snapshot, tree_snapshot,
};

/// `<dir>/<name>.tar.gz` whose members all sit under `<top>/` (`tar -C src -czf x <top>`), or
/// under `./<top>/` when `dotted`.
fn wrapped_tarball(
    dir: &Path,
    name: &str,
    top: &str,
    dotted: bool,
    files: &[(&str, &str)],
) -> PathBuf {
    let source = dir.join(format!("{name}.wrapped"));
    let _ = std::fs::remove_dir_all(&source);
    for (path, content) in files {
        let file = source.join(top).join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, content).expect("write file");
    }
    let archive = dir.join(format!("{name}.tar.gz"));
    let member = if dotted {
        format!("./{top}")
    } else {
        top.to_string()
    };
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&source)
        .arg(&member)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar failed");
    archive
}

/// Every host's service directory, with modes and mtimes: equal means nothing changed there,
/// not even a lock directory made and removed.
fn app_states(scenario: &Scenario) -> Vec<std::collections::BTreeMap<String, String>> {
    (0..scenario.hosts().len())
        .map(|index| tree_metadata_snapshot(&scenario.app(index)))
        .collect()
}

#[test]
fn a_downgrade_is_refused_on_every_host_unless_allowed() {
    let scenario = Scenario::new(2);
    let v1 = scenario.versioned_artifact("v1");
    scenario.push_artifact("v1", &v1, &[]).expect_code(0);
    scenario.push_version("v2").expect_code(0);
    let before = app_states(&scenario);

    // The inventory's stale version: v1 went live before v2 on both hosts.
    let ran = scenario.push_artifact("v1", &v1, &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
    for host in ["web1", "web2"] {
        assert!(
            ran.stderr
                .contains(&format!("{host} (app): v1 went live here at ")),
            "{}",
            ran.stderr
        );
    }
    assert!(ran.stderr.contains("before the live v2"), "{}", ran.stderr);
    assert!(ran.stderr.contains("--allow-downgrade"), "{}", ran.stderr);
    assert!(ran.stderr.contains("deploy rollback"), "{}", ran.stderr);
    assert_eq!(
        before,
        app_states(&scenario),
        "nothing changed: current, releases, history, no lock taken"
    );

    // The dry run shows the refusal on each host.
    let dry = scenario.push_artifact("v1", &v1, &["--dry-run"]);
    assert!(dry.error("web1").contains("a downgrade"), "{dry:?}");
    assert_eq!(before, app_states(&scenario));

    let allowed = scenario.push_artifact("v1", &v1, &["--allow-downgrade"]);
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert_eq!(scenario.lives(), [Some("v1".into()), Some("v1".into())]);
}

#[test]
fn going_forward_again_after_a_rollback_is_not_a_downgrade() {
    let scenario = Scenario::new(1);
    scenario.push_version("v1").expect_code(0);
    let v2 = scenario.versioned_artifact("v2");
    scenario.push_artifact("v2", &v2, &[]).expect_code(0);
    scenario.json(&["rollback"]).expect_code(0);
    assert_eq!(scenario.live(0).as_deref(), Some("v1"));
    let ran = scenario.push_artifact("v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(scenario.live(0).as_deref(), Some("v2"));
}

#[test]
fn a_tarball_under_one_top_directory_is_refused_before_any_host_is_contacted() {
    let sentinel = Sentinel::new();
    let scenario = Scenario::new(1).toml(&sentinel.host_entry("probe"));
    let artifact = wrapped_tarball(
        scenario.dir(),
        "v1",
        "myapp-1.0",
        false,
        &[("index.html", "one"), ("bin/app", "app")],
    );
    let before = tree_snapshot(&scenario.host(0).root);
    let ran = scenario.push_artifact("v1", &artifact, &[]);
    assert_eq!(ran.code, 2, "{ran:?}");
    sentinel.assert_not_contacted(&ran);
    for hint in [
        "every member sits under one top directory `myapp-1.0/`",
        "`strip_components = 1`",
        "tar -C build -czf app.tar.gz .",
    ] {
        assert!(ran.stderr.contains(hint), "{hint:?} in {}", ran.stderr);
    }
    assert_eq!(before, tree_snapshot(&scenario.host(0).root));
}

#[test]
fn strip_components_deploys_the_unwrapped_tree_by_full_and_delta_push() {
    let scenario = Scenario::new(1).service("strip_components = 1");
    let files = |version: &str| {
        let mut files: Vec<(String, String)> = (0..40)
            .map(|index| {
                (
                    format!("lib/file{index}.txt"),
                    format!("same content {index}\n").repeat(200),
                )
            })
            .collect();
        files.push(("index.html".to_string(), version.to_string()));
        files
    };
    let build = |version: &str, dotted: bool| {
        let owned = files(version);
        let borrowed: Vec<(&str, &str)> = owned
            .iter()
            .map(|(path, content)| (path.as_str(), content.as_str()))
            .collect();
        wrapped_tarball(scenario.dir(), version, "myapp-1.0", dotted, &borrowed)
    };

    // v1: a full push (nothing live yet).
    let ran = scenario.push_artifact("v1", &build("v1", false), &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let current = scenario.app(0).join("current");
    assert_eq!(read(current.join("index.html")), "v1");
    assert!(current.join("lib/file0.txt").is_file());
    assert!(!current.join("myapp-1.0").exists(), "unwrapped");
    scenario.json(&["status", "--verify"]).expect_code(0);

    // v2: a delta push from v1, with the same stripping.
    let ran = scenario.push_artifact("v2", &build("v2", false), &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let first_step = ran.host("web1")["steps"][0]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        first_step.starts_with("upload the delta from v1 (1 files")
            && first_step.contains("hard-link 40 unchanged files"),
        "a delta sending only index.html: {ran:?}"
    );
    assert_eq!(read(current.join("index.html")), "v2");
    assert!(!current.join("myapp-1.0").exists());
    let verified = scenario.json(&["status", "--verify"]);
    assert_eq!(verified.code, 0, "no drift: {verified:?}");

    // diff between the two recorded manifests names the unwrapped path.
    let diff = scenario.json(&["diff", "v1", "v2"]);
    assert_eq!(diff.code, 0, "{diff:?}");
    assert_eq!(
        diff.host("web1")["diff"]["modified"],
        serde_json::json!(["index.html"])
    );

    // v3: `./myapp-1.0/...` (tar counts the `.`), as a full push.
    let ran = scenario.push_artifact("v3", &build("v3", true), &["--full"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(read(current.join("index.html")), "v3");
    assert!(!current.join("myapp-1.0").exists());
    scenario.json(&["status", "--verify"]).expect_code(0);
}

#[test]
fn a_dot_slash_tarball_with_one_directory_inside_still_deploys() {
    // `tar -C build -czf app.tar.gz .` of a build holding only `public/`.
    let scenario = Scenario::new(1);
    let ran = scenario.push("v1", &[("public/index.html", "one")]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(
        read(scenario.app(0).join("current/public/index.html")),
        "one"
    );
}

#[test]
fn message_and_deploy_message_are_recorded_and_shown_by_history() {
    let scenario = Scenario::new(1);
    let artifact = scenario.versioned_artifact("v1");
    scenario
        .push_artifact("v1", &artifact, &["--message", "first release (#1)"])
        .expect_code(0);
    assert_eq!(scenario.last_record(0)["message"], "first release (#1)");

    let scenario = scenario.env("DEPLOY_MESSAGE", "from the CI job 42");
    scenario.push_version("v2").expect_code(0);
    assert_eq!(scenario.last_record(0)["message"], "from the CI job 42");
    scenario
        .json(&["rollback", "--message", "5xx after v2"])
        .expect_code(0);
    let record = scenario.last_record(0);
    assert_eq!(record["action"], "rollback");
    assert_eq!(
        record["message"], "5xx after v2",
        "the flag wins over the variable"
    );

    let history = scenario.text(&["history"]);
    assert_eq!(history.code, 0, "{history:?}");
    for message in ["first release (#1)", "from the CI job 42", "5xx after v2"] {
        assert!(
            history.stdout.contains(message),
            "{message:?} in {}",
            history.stdout
        );
    }
    let entries = scenario.json(&["history"]).host("web1")["entries"].clone();
    assert_eq!(entries[0]["message"], "5xx after v2");
}

#[test]
fn the_webhook_gets_a_start_and_an_end_event_naming_who_and_why() {
    let server = HttpServer::new()
        .reply(|_, _| Some(Reply::Status(204)))
        .start();
    let hook = server.url("/hooks/SECRETTOKEN");
    let scenario = Scenario::new(2).toml(&format!("[notify]\nwebhook = \"{hook}\"\n\n"));
    scenario.push_version("v1").expect_code(0);
    let ran = scenario.push_artifact(
        "v2",
        &scenario.versioned_artifact("v2"),
        &["--message", "ship the login fix"],
    );
    assert_eq!(ran.code, 0, "{ran:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 4, "start and end, twice");
    let body = |index: usize| -> serde_json::Value {
        serde_json::from_str(&requests[index].body).expect("JSON body")
    };
    let (start, end) = (body(2), body(3));
    assert_eq!(start["event"], "start");
    assert_eq!(start["hosts"], 2);
    let operator = start["operator"].as_str().expect("operator").to_string();
    assert!(operator.contains('@'), "{start:#}");
    let text = start["text"].as_str().expect("text");
    assert_eq!(
        text,
        format!(
            "deploy push app -> v2 started by {operator} on 2 hosts, run {}, message: ship the login fix",
            start["id"].as_str().expect("id")
        )
    );
    assert_eq!(end["event"], "end");
    assert_eq!(end["id"], start["id"]);
    assert_eq!(end["result"], "ok");
    assert_eq!(
        end["hosts"].as_array().map(Vec::len),
        Some(2),
        "the whole result"
    );
    assert_eq!(end["hosts"], ran.json()["hosts"]);
    let text = end["text"].as_str().expect("text");
    assert!(
        text.starts_with(&format!(
            "deploy push app v1 -> v2 by {operator}: ok (2 hosts, 0 failed), run "
        )),
        "{text}"
    );
    assert!(text.ends_with(", message: ship the login fix"), "{text}");
    assert!(!ran.stderr.contains("SECRETTOKEN") && !ran.stdout.contains("SECRETTOKEN"));
}

#[test]
fn mistyped_services_and_hosts_get_a_suggestion() {
    let scenario = Scenario::new(2);
    let ran = scenario.json(&["status", "--service", "ap"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("no service named `ap`"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("(did you mean `app`?)"),
        "{}",
        ran.stderr
    );
    let ran = scenario.json(&["status", "--hosts", "wbe2"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr
            .contains("no host or tag named `wbe2` (did you mean `web2`?)"),
        "{}",
        ran.stderr
    );
}

#[test]
fn rollback_to_a_pruned_release_names_the_kept_ones() {
    let scenario = Scenario::new(1).service("keep_releases = 2");
    for version in ["v1", "v2", "v3"] {
        scenario.push_version(version).expect_code(0);
    }
    let ran = scenario.json(&["rollback", "--to", "v1"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.error("web1")
            .contains("v1 is not on this host (kept: v3, v2)"),
        "{ran:?}"
    );
    assert_eq!(scenario.live(0).as_deref(), Some("v3"));
}

#[test]
fn every_subcommand_help_has_examples_and_no_empty_flag() {
    for subcommand in [
        "push", "rollback", "status", "history", "diff", "prune", "unlock", "exec", "run", "lock",
        "check",
    ] {
        let output = crate::support::deploy()
            .args([subcommand, "--help"])
            .output()
            .expect("deploy runs");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{subcommand}: {help}");
        assert!(help.contains("Example"), "{subcommand} --help: {help}");
        // clap prints a flag with no help text as the bare flag at the end of its line.
        for line in help.lines() {
            let trimmed = line.trim();
            assert!(
                !trimmed.starts_with("--") || trimmed.contains("  "),
                "{subcommand}: a flag without help: {line:?}"
            );
        }
    }
    let push = crate::support::deploy()
        .args(["push", "--help"])
        .output()
        .expect("deploy runs");
    let help = String::from_utf8_lossy(&push.stdout);
    for flag in ["--allow-downgrade", "--message <TEXT>", "DEPLOY_MESSAGE"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
    let diff = crate::support::deploy()
        .args(["diff", "--help"])
        .output()
        .expect("deploy runs");
    let help = String::from_utf8_lossy(&diff.stdout);
    assert!(help.contains("[FROM] [TO]"), "{help}");
    assert!(help.contains("FROM defaults to the live release"), "{help}");
}
