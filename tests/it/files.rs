//! `shared_files` (files in `shared/` linked into every release) against a real fleet.

use crate::support::Scenario;

#[test]
fn a_shared_file_is_linked_as_a_file_and_a_missing_one_fails_staging() {
    let scenario =
        Scenario::new(2).service("shared_paths = [\"log\"]\nshared_files = [\"config/app.env\"]\n");
    let artifact = scenario.artifact(
        "v1",
        &[
            ("index.html", "one"),
            ("config/app.env", "from the release"),
        ],
    );
    std::fs::create_dir_all(scenario.app(0).join("shared/config")).expect("mkdir");
    std::fs::write(scenario.app(0).join("shared/config/app.env"), "SECRET=1\n").expect("write");
    let ran = scenario.push_artifact("v1", &artifact, &[]).expect_code(1);
    let error = ran.error("web2");
    assert!(
        error.contains("/app/shared/config/app.env is missing on this host: create it there"),
        "{error}"
    );
    assert_eq!(scenario.lives(), [None, None], "nothing switched");
    std::fs::create_dir_all(scenario.app(1).join("shared/config")).expect("mkdir");
    std::fs::write(scenario.app(1).join("shared/config/app.env"), "SECRET=2\n").expect("write");
    scenario.push_artifact("v1", &artifact, &[]).expect_code(0);
    for (index, content) in [(0, "SECRET=1\n"), (1, "SECRET=2\n")] {
        let app = scenario.app(index);
        assert_eq!(
            std::fs::read_link(app.join("releases/v1/config/app.env")).expect("a link"),
            std::path::PathBuf::from("../../../shared/config/app.env")
        );
        assert_eq!(
            std::fs::read_to_string(app.join("current/config/app.env")).expect("reads"),
            content
        );
        assert!(
            app.join("shared/config/app.env").is_file(),
            "a file, not a directory"
        );
        assert!(
            app.join("shared/log").is_dir(),
            "shared paths stay directories"
        );
    }
}

/// A secret's value in every output of every command, at -vv too, and in the hosts' files.
fn assert_nowhere(scenario: &Scenario, secrets: &[&str], outputs: &[&crate::support::Ran]) {
    for ran in outputs {
        for secret in secrets {
            assert!(
                !ran.stdout.contains(secret),
                "secret in stdout:\n{}",
                ran.stdout
            );
            assert!(
                !ran.stderr.contains(secret),
                "secret in stderr:\n{}",
                ran.stderr
            );
        }
    }
    for index in 0..scenario.hosts().len() {
        let history = std::fs::read_to_string(scenario.app(index).join(".deploy/history.jsonl"))
            .unwrap_or_default();
        assert!(!history.is_empty(), "history written");
        for secret in secrets {
            assert!(!history.contains(secret), "secret in history:\n{history}");
        }
    }
}

#[test]
fn uploaded_files_reach_shared_only_when_changed_and_their_content_never_appears_in_output() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let from_env = "env-secret-7f3a9c1e";
    let from_file = "file-secret-52b8d0aa";
    let scenario = Scenario::new(2)
        .service(
            "[services.app.files]\n\"config/app.env\" = { env = \"APP_ENV_CONTENT\", mode = \"0640\" }\n\"db.yml\" = { source = \"db.yml\" }\n",
        )
        .env("APP_ENV_CONTENT", format!("TOKEN={from_env}\n"));
    std::fs::write(
        scenario.dir().join("db.yml"),
        format!("password: {from_file}\n"),
    )
    .expect("write");
    let v1 = scenario.artifact(
        "v1",
        &[("index.html", "one"), ("db.yml", "from the release")],
    );
    let v2 = scenario.artifact("v2", &[("index.html", "two")]);
    let v1_path = v1.to_str().expect("utf-8");
    let v2_path = v2.to_str().expect("utf-8");
    let mut outputs = vec![
        scenario
            .text(&[
                "-vv",
                "push",
                "--version",
                "v1",
                "--artifact",
                v1_path,
                "--dry-run",
                "--diff",
            ])
            .expect_code(0),
    ];
    assert!(
        outputs[0]
            .stdout
            .contains("file shared/config/app.env would change (sha256 "),
        "{}",
        outputs[0].stdout
    );
    outputs.push(
        scenario
            .text(&["-vv", "push", "--version", "v1", "--artifact", v1_path])
            .expect_code(0),
    );
    for index in 0..2 {
        let app = scenario.app(index);
        let env_file = app.join("shared/config/app.env");
        assert_eq!(
            std::fs::read_to_string(&env_file).expect("uploaded"),
            format!("TOKEN={from_env}\n")
        );
        assert_eq!(
            std::fs::metadata(&env_file)
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::metadata(app.join("shared/db.yml"))
                .expect("stat")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(app.join("current/db.yml")).expect("linked"),
            format!("password: {from_file}\n"),
            "the uploaded file replaces the release's own"
        );
        assert_eq!(
            std::fs::read_to_string(app.join("current/config/app.env")).expect("linked"),
            format!("TOKEN={from_env}\n")
        );
    }
    let inode = std::fs::metadata(scenario.app(0).join("shared/config/app.env"))
        .expect("stat")
        .ino();
    let dry = scenario
        .json(&[
            "push",
            "--version",
            "v2",
            "--artifact",
            v2_path,
            "--dry-run",
            "--diff",
        ])
        .expect_code(0);
    let notes = dry.host("web1")["notes"].to_string();
    assert!(
        notes.contains("file shared/config/app.env unchanged"),
        "{notes}"
    );
    outputs.push(dry);
    outputs.push(
        scenario
            .json(&["-vv", "push", "--version", "v2", "--artifact", v2_path])
            .expect_code(0),
    );
    assert_eq!(
        std::fs::metadata(scenario.app(0).join("shared/config/app.env"))
            .expect("stat")
            .ino(),
        inode,
        "an unchanged file is not sent again"
    );
    for args in [
        &["status", "--verify"][..],
        &["history"][..],
        &["diff", "v1", "v2"][..],
        &["rollback", "--dry-run"][..],
    ] {
        let mut with_verbose = vec!["-vv"];
        with_verbose.extend_from_slice(args);
        outputs.push(scenario.text(&with_verbose));
        outputs.push(scenario.json(&with_verbose));
    }
    let refs: Vec<&crate::support::Ran> = outputs.iter().collect();
    assert_nowhere(&scenario, &[from_env, from_file], &refs);
}

#[test]
fn a_missing_source_or_variable_is_an_input_error_before_any_host_is_contacted() {
    let scenario = Scenario::new(1).service(
        "[services.app.files]\n\"app.env\" = { env = \"DEPLOY_TEST_UNSET_VARIABLE_16\" }\n",
    );
    let ran = scenario.push_version("v1").expect_code(2);
    assert!(
        ran.stderr.contains("services.app.files.\"app.env\": environment variable DEPLOY_TEST_UNSET_VARIABLE_16 is not set"),
        "{}",
        ran.stderr
    );
    assert!(!scenario.app(0).exists(), "no host contacted");
}
