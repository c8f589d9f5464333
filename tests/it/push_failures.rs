//! `deploy push` when things go wrong, or at the edges of the contract (SPEC §3–§6):
//! immutable versions, pruning, shared paths, a host too small for the artifact, concurrent
//! runs, several services in one run, a controller killed or interrupted mid-upload, and the
//! output / dry-run guarantees. Every test runs on its own fleet; none asserts on wall-clock
//! time (deadlines below only keep a broken run from hanging the suite).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Fleet};
use crate::{Ran, big_tarball, deploy, tarball};

/// How long a polled condition (or a spawned run) may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Helpers

fn service(extra: &str) -> String {
    format!("[services.app]\nbase_dir = \"app\"\nkeep_releases = 3\n{extra}")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn push_args<'a>(inventory: &'a Path, version: &'a str, artifact: &'a Path) -> Vec<&'a str> {
    vec![
        "push",
        "-i",
        path_str(inventory),
        "--version",
        version,
        "--artifact",
        path_str(artifact),
        "--output",
        "json",
        "--no-progress",
    ]
}

fn push(inventory: &Path, version: &str, artifact: &Path, extra: &[&str]) -> Ran {
    let mut args = push_args(inventory, version, artifact);
    args.extend_from_slice(extra);
    deploy(&args)
}

/// A push running in the background; its stdout and stderr go to files (never a full pipe).
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the run to end (panics after [`PATIENCE`], killing it).
    fn wait(mut self) -> Ran {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the background push did not finish; stderr so far:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            thread::sleep(POLL);
        };
        Ran {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// SIGKILL, then reap.
    fn kill9(mut self) -> String {
        self.child.kill().expect("SIGKILL the controller");
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

fn spawn_push(
    fleet: &Fleet,
    tag: &str,
    inventory: &Path,
    version: &str,
    artifact: &Path,
) -> Running {
    let stdout = fleet.dir().join(format!("{tag}.stdout"));
    let stderr = fleet.dir().join(format!("{tag}.stderr"));
    let child = support::deploy()
        .args(push_args(inventory, version, artifact))
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("deploy starts");
    Running {
        child,
        stdout,
        stderr,
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        thread::sleep(POLL);
    }
}

/// Polls for up to a few seconds (for cleanup that may finish just after the controller exits).
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn app(fleet: &Fleet, index: usize) -> PathBuf {
    fleet.host(index).root.join("app")
}

fn current(app: &Path) -> Option<PathBuf> {
    std::fs::read_link(app.join("current")).ok()
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.as_ref().display()))
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).expect("read artifact");
    format!("{:x}", sha2::Sha256::digest(&bytes))
}

/// Sorted entry names of `dir` (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(read) => read
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
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
        current(app),
        Some(PathBuf::from(format!("releases/{version}"))),
        "current of {}",
        app.display()
    );
    assert_complete(app, version);
}

fn history(app: &Path) -> Vec<Value> {
    read(app.join(".deploy/history.jsonl"))
        .lines()
        .map(|line| serde_json::from_str(line).expect("history line is JSON"))
        .collect()
}

/// The `hosts[]` entry of (`service`, `host`).
fn entry(ran: &Ran, service: &str, host: &str) -> Value {
    let document = ran.json();
    document["hosts"]
        .as_array()
        .and_then(|hosts| {
            hosts
                .iter()
                .find(|entry| entry["host"] == host && entry["service"] == service)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {service} on {host} in {document:#}"))
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

/// Every path under `root` (relative), with its type, mode, size, mtime, link target and
/// content digest: equal snapshots mean nothing under `root` changed.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names = entries(dir);
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let kind = meta.file_type();
            let detail = if kind.is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else if kind.is_dir() {
                "dir".to_string()
            } else if kind.is_file() {
                format!("file sha256={}", sha256_of(&path))
            } else {
                "other".to_string()
            };
            out.insert(
                relative,
                format!(
                    "{detail} mode={:o} size={} mtime={}.{}",
                    meta.mode(),
                    if kind.is_dir() { 0 } else { meta.len() },
                    meta.mtime(),
                    meta.mtime_nsec()
                ),
            );
            if kind.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    out.insert(
        ".".to_string(),
        format!(
            "{:?}",
            std::fs::symlink_metadata(root).map(|m| (m.mode(), m.mtime(), m.mtime_nsec()))
        ),
    );
    walk(root, root, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Immutable versions

#[test]
fn same_version_with_other_content_is_refused_unless_forced() {
    let fleet = Fleet::start(2);
    let inventory = fleet.write_inventory(&service(""));
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = tarball(fleet.dir(), "v2", &[("index.html", "two")]);
    let v1_other = tarball(fleet.dir(), "v1-other", &[("index.html", "one, rebuilt")]);
    assert_ne!(sha256_of(&v1), sha256_of(&v1_other));

    // web1 gets v1 then v2 (so v1 is on it but not live); web2 has nothing yet.
    for (version, artifact) in [("v1", &v1), ("v2", &v2)] {
        let ran = push(&inventory, version, artifact, &["--hosts", "web1"]);
        assert_eq!(ran.code, 0, "{ran:?}");
    }
    let web1 = app(&fleet, 0);
    let web2 = app(&fleet, 1);
    let old_digest = read(web1.join(".deploy/digests/v1"));

    // v1 with other content: refused on web1 (and, with on_failure = rollback, nobody switches).
    let ran = push(&inventory, "v1", &v1_other, &[]);
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
    assert_eq!(current(&web2), None, "web2 was not switched");

    // --force replaces the (not live) v1 on web1 and ships it everywhere.
    let ran = push(&inventory, "v1", &v1_other, &["--force"]);
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
            sha256_of(&v1_other),
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
    let fleet = Fleet::start(1);
    let inventory = fleet.write_inventory(&service(""));
    let app = app(&fleet, 0);
    for number in 1..=6 {
        let version = format!("v{number}");
        let artifact = tarball(
            fleet.dir(),
            &version,
            &[("index.html", &format!("release {number}"))],
        );
        let ran = push(&inventory, &version, &artifact, &[]);
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
    let fleet = Fleet::start(1);
    let inventory = fleet.write_inventory(&service("shared_paths = [\"log\"]\n"));
    let app = app(&fleet, 0);
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = tarball(
        fleet.dir(),
        "v2",
        &[
            ("index.html", "two"),
            ("log/from-the-artifact.log", "shipped"),
        ],
    );

    let ran = push(&inventory, "v1", &v1, &[]);
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

    let ran = push(&inventory, "v2", &v2, &[]);
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
    let mut fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(&service(""));
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = big_tarball(fleet.dir(), "v2", 4);

    let ran = push(&inventory, "v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    fleet.limit_file_size(1, 512);

    // on_failure = "rollback" (the default): nobody switches.
    let ran = push(&inventory, "v2", &v2, &[]);
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
        let app = app(&fleet, index);
        assert_live(&app, "v1");
        assert_eq!(read(app.join("current/index.html")), "one");
        assert!(
            eventually(|| !app.join(".deploy/lock").exists()),
            "lock released on web{}",
            index + 1
        );
    }
    let web2_app = app(&fleet, 1);
    assert_eq!(
        entries(&web2_app.join(".deploy/staging")),
        Vec::<String>::new()
    );
    assert!(
        !web2_app.join("releases/v2").exists(),
        "no partial release on web2"
    );

    // on_failure = "continue": the others go live, web2 stays on v1.
    let inventory = fleet.write_inventory(&format!(
        "[deploy]\non_failure = \"continue\"\n\n{}",
        service("")
    ));
    let ran = push(&inventory, "v2", &v2, &[]);
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
        let app = app(&fleet, index);
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
    let fleet = Fleet::start(1);
    let inventory = fleet.write_inventory(&service(""));
    let app = app(&fleet, 0);
    let slow = big_tarball(fleet.dir(), "v1", 128);
    let small = tarball(fleet.dir(), "v2", &[("index.html", "two")]);

    let first = spawn_push(&fleet, "first", &inventory, "v1", &slow);
    let holder_file = app.join(".deploy/lock/holder");
    wait_until("the first run holds the lock", || {
        std::fs::read_to_string(&holder_file).is_ok_and(|text| text.ends_with('\n'))
    });
    let holder = read(&holder_file);

    let second = push(&inventory, "v2", &small, &[]);
    let first = first.wait();
    assert_eq!(first.code, 0, "{first:?}");
    let run_id = first.json()["id"].as_str().expect("run id").to_string();
    let records = history(&app);
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
        let mut args = vec![
            "push",
            "-i",
            path_str(&inventory),
            "--output",
            "json",
            "--no-progress",
        ];
        args.extend(extra);
        let ran = deploy(&args);
        assert_eq!(ran.code, 0, "{ran:?}");
        assert_eq!(ran.json()["result"], "ok");
        assert_eq!(
            ran.json()["hosts"].as_array().map(Vec::len),
            Some(4),
            "{:#}",
            ran.json()
        );
        for host in fleet.hosts() {
            for (service, version) in [("api", api), ("web", web)] {
                let entry = entry(&ran, service, &host.name);
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
    let fleet = Fleet::start(2);
    let inventory = fleet.write_inventory(&service(""));
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = big_tarball(fleet.dir(), "v2", 96);
    let ran = push(&inventory, "v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let running = spawn_push(&fleet, "killed", &inventory, "v2", &v2);
    wait_until("the upload has started writing on a host", || {
        (0..2).any(|index| has_nested_content(&app(&fleet, index).join(".deploy/staging")))
    });
    let stderr = running.kill9();

    // Right after the kill: whatever `current` is, it points at a complete release.
    for index in 0..2 {
        let app = app(&fleet, index);
        if let Some(target) = current(&app) {
            let version = target
                .strip_prefix("releases")
                .unwrap_or_else(|_| panic!("current -> {}", target.display()))
                .display()
                .to_string();
            assert_complete(&app, &version);
        }
        // releases/ holds complete releases only: never a half-uploaded v2.
        for version in entries(&app.join("releases")) {
            assert_complete(&app, &version);
        }
    }

    // An immediate re-run of the same push succeeds.
    let ran = push(&inventory, "v2", &v2, &[]);
    assert_eq!(ran.code, 0, "{ran:?}\nkilled run's stderr:\n{stderr}");
    assert!(
        !ran.stdout.contains("held by") && !ran.stderr.contains("held by"),
        "{ran:?}"
    );
    for (index, host) in fleet.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "ok", "{entry:#}");
        let app = app(&fleet, index);
        assert_live(&app, "v2");
        assert_eq!(read(app.join("current/index.html")), "v2");
        assert_eq!(read(app.join(".deploy/digests/v2")).trim(), sha256_of(&v2));
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
    let fleet = Fleet::start(2);
    let inventory = fleet.write_inventory(&service(""));
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = big_tarball(fleet.dir(), "v2", 96);
    let ran = push(&inventory, "v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");

    let running = spawn_push(&fleet, "interrupted", &inventory, "v2", &v2);
    wait_until("the upload has started writing on a host", || {
        (0..2).any(|index| has_nested_content(&app(&fleet, index).join(".deploy/staging")))
    });
    let status = Command::new("kill")
        .arg("-INT")
        .arg(running.pid().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let ran = running.wait();

    assert_eq!(ran.code, 130, "{ran:?}");
    let run_id = ran.json()["id"].as_str().expect("run id").to_string();
    for (index, host) in fleet.hosts().iter().enumerate() {
        let entry = ran.host(&host.name);
        assert_ne!(entry["result"], "ok", "{entry:#}");
        let app = app(&fleet, index);
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
        let records = history(&app);
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
    let fleet = Fleet::start(2);
    let inventory = fleet.write_inventory(&service("shared_paths = [\"log\"]\n"));
    let v1 = tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let v2 = tarball(fleet.dir(), "v2", &[("index.html", "two")]);
    let snapshots = |fleet: &Fleet| -> Vec<BTreeMap<String, String>> {
        fleet
            .hosts()
            .iter()
            .map(|host| snapshot(&host.root))
            .collect()
    };

    // Dry run on fresh hosts: nothing is created.
    let before = snapshots(&fleet);
    let ran = push(&inventory, "v1", &v1, &["--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["dry_run"], true);
    assert_no_json(&ran.stderr);
    for host in fleet.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "planned", "{entry:#}");
        assert_eq!(entry["to"], "v1");
    }
    assert_eq!(before, snapshots(&fleet), "a dry run changed a fresh host");
    for host in fleet.hosts() {
        assert!(!host.root.join("app").exists());
    }

    // A real push: stdout is exactly one JSON document, stderr has none.
    let ran = push(&inventory, "v1", &v1, &[]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["action"], "push");
    assert_eq!(document["dry_run"], false);
    assert_eq!(document["hosts"].as_array().map(Vec::len), Some(2));
    assert_no_json(&ran.stderr);

    // Dry run of v2 over a live v1: every file, link and directory stays as it was.
    let before = snapshots(&fleet);
    let ran = push(&inventory, "v2", &v2, &["--dry-run"]);
    assert_eq!(ran.code, 0, "{ran:?}");
    let document: Value = serde_json::from_str(&ran.stdout).expect("stdout is one JSON document");
    assert_eq!(document["dry_run"], true);
    assert_eq!(document["action"], "push");
    assert_no_json(&ran.stderr);
    for host in fleet.hosts() {
        let entry = ran.host(&host.name);
        assert_eq!(entry["result"], "planned", "{entry:#}");
        assert_eq!(entry["from"], "v1");
        assert_eq!(entry["to"], "v2");
    }
    let after = snapshots(&fleet);
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        assert_eq!(before, after, "a dry run changed web{}", index + 1);
    }
    for index in 0..2 {
        assert_live(&app(&fleet, index), "v1");
        assert!(!app(&fleet, index).join("releases/v2").exists());
    }
}
