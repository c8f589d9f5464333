//! `deploy init` and README.md's "Your first deploy", run as written against two real sshd
//! hosts (the guide's blocks come out of README.md: `support::guide_script`).

use std::fs;

use crate::support::{
    FirstDeploy, Fleet, GUIDE_SERVICE, deploy, deploy_binary, entries, history_records,
    live_release, path_str, read, run,
};

#[test]
fn the_readme_guide_runs_green_on_two_hosts() {
    let fleet = Fleet::start(2);
    let guide = FirstDeploy::prepare(&fleet, &deploy_binary());
    let ran = run(&mut guide.command());
    assert_eq!(
        ran.code,
        0,
        "the guide failed:\n--- script ---\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        read(&guide.script),
        ran.stdout,
        ran.stderr
    );
    // init wrote the inventory and the samples, and named the next commands.
    for file in [
        "deploy.toml",
        "deploy/systemd/myapp.service",
        "deploy/health-check.sh",
    ] {
        assert!(
            guide.project.join(file).is_file(),
            "init did not write {file}"
        );
    }
    for next in ["deploy check", "deploy push --dry-run", "deploy push "] {
        assert!(
            ran.stdout.contains(next),
            "init did not print {next:?}:\n{}",
            ran.stdout
        );
    }
    for host in fleet.hosts() {
        let app = host.root.join(GUIDE_SERVICE);
        // push 1.0.0, push 1.0.1, rollback: 1.0.0 is live again, built by the guide's tar.
        assert_eq!(
            live_release(&app).as_deref(),
            Some("1.0.0"),
            "{}",
            host.name
        );
        assert_eq!(
            entries(&app.join("releases")),
            ["1.0.0", "1.0.1"],
            "{}",
            host.name
        );
        assert_eq!(read(app.join("current/VERSION")), "1.0.0\n");
        assert!(app.join("current/bin/myapp").is_file(), "{}", host.name);
        // The health-check script travelled with the release ([services.myapp.files]).
        assert_eq!(
            read(app.join("current/deploy/health-check.sh")),
            read(guide.project.join("deploy/health-check.sh"))
        );
        let actions: Vec<(String, String)> = history_records(&app)
            .iter()
            .filter(|record| record["result"] == "ok")
            .map(|record| {
                (
                    record["action"].as_str().unwrap_or("").to_string(),
                    record["to"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("push".to_string(), "1.0.0".to_string()),
                ("push".to_string(), "1.0.1".to_string()),
                ("rollback".to_string(), "1.0.0".to_string()),
            ],
            "{}",
            host.name
        );
        // The after_switch hook restarted the unit through `sudo -n` after each switch, and
        // the health check asked systemd after each restart.
        let log = read(FirstDeploy::systemctl_log(host));
        let restarts: Vec<&str> = log
            .lines()
            .filter(|line| line.starts_with("restart"))
            .collect();
        assert_eq!(
            restarts,
            [
                "restart releases/1.0.0",
                "restart releases/1.0.1",
                "restart releases/1.0.0"
            ],
            "{}",
            host.name
        );
        assert!(
            log.lines().filter(|line| *line == "is-active").count() >= 3,
            "{}: {log}",
            host.name
        );
    }
}

#[test]
fn init_never_overwrites_and_then_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("deploy.toml"), "# mine\n").expect("write");
    let ran = run(deploy().current_dir(dir.path()).args([
        "init",
        "--service",
        "api",
        "--hosts",
        "web1,web2",
    ]));
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("deploy.toml"), "{}", ran.stderr);
    assert!(ran.stderr.contains("never overwrites"), "{}", ran.stderr);
    assert_eq!(read(dir.path().join("deploy.toml")), "# mine\n");
    assert!(
        !dir.path().join("deploy").exists(),
        "init wrote samples anyway"
    );

    // A sample that exists is refused the same way, and the inventory is not written either.
    fs::remove_file(dir.path().join("deploy.toml")).expect("remove");
    fs::create_dir_all(dir.path().join("deploy")).expect("mkdir");
    fs::write(dir.path().join("deploy/health-check.sh"), "mine\n").expect("write");
    let ran = run(deploy().current_dir(dir.path()).args(["init"]));
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains("deploy/health-check.sh"),
        "{}",
        ran.stderr
    );
    assert!(!dir.path().join("deploy.toml").exists());
    assert!(!dir.path().join("deploy/systemd").exists());

    // Bad --hosts and --service values: exit 2, nothing written.
    fs::remove_dir_all(dir.path().join("deploy")).expect("rm");
    for args in [
        ["init", "--hosts", "web*"],
        ["init", "--hosts", "web1,,web2"],
        ["init", "--service", "-x"],
    ] {
        let ran = run(deploy().current_dir(dir.path()).args(args));
        assert_eq!(ran.code, 2, "{args:?}: {ran:?}");
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?}");
    }
}

#[test]
fn init_at_another_path_passes_check_against_a_real_host() {
    let fleet = Fleet::start(1);
    let guide = FirstDeploy::prepare(&fleet, &deploy_binary());
    let inventory = guide.project.join("ops/prod.toml");
    let ran = run(deploy()
        .current_dir(&guide.project)
        .env("HOME", &guide.home)
        .args(["-i", "ops/prod.toml", "--output", "json", "init"])
        .args(["--service", "api", "--hosts", "web1"]));
    assert_eq!(ran.code, 0, "{ran:?}");
    let document = ran.json();
    assert_eq!(document["action"], "init");
    assert_eq!(
        document["files"],
        serde_json::json!([
            "ops/prod.toml",
            "ops/deploy/systemd/api.service",
            "ops/deploy/health-check.sh"
        ])
    );
    assert_eq!(
        document["next"],
        serde_json::json!([
            "deploy -i ops/prod.toml check",
            "deploy -i ops/prod.toml push --dry-run",
            "deploy -i ops/prod.toml push"
        ])
    );
    let mode = fs::metadata(guide.project.join("ops/deploy/health-check.sh"))
        .map(|metadata| std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777)
        .expect("health check written");
    assert_eq!(mode, 0o755);
    // The generated inventory validates and, with the host reachable, checks green.
    let ran = run(deploy()
        .current_dir(&guide.project)
        .env("HOME", &guide.home)
        .args(["-i", path_str(&inventory), "--no-progress", "check"]));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("web1"), "{}", ran.stdout);
    // Without the ssh config naming the host, the same file fails on connecting, not on
    // validation (exit 1, not 2).
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let ran = run(deploy().env("HOME", elsewhere.path()).args([
        "-i",
        path_str(&inventory),
        "--no-progress",
        "--output",
        "json",
        "check",
    ]));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "failed", "{ran:?}");
}
