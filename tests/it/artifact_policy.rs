//! The artifact member policy (SPEC §4 step 1) end to end: setuid/setgid members and name
//! components over 255 bytes are refused before any host is contacted (exit 2), `allow_setid`
//! lets setid members through, and foreign owners and world-writable modes in an artifact do
//! not reach the hosts (files owned by the connecting user, no `o+w`) nor show as drift.
//!
//! "Nothing contacted" is checked, not assumed: besides the fleet's real hosts, the refusing
//! inventories name a `sentinel` host that points at a local TCP listener nobody accepts from,
//! so any connection attempt would sit in its backlog.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{Builder, EntryType, Header};

use crate::support::{Scenario, Sentinel, push};

/// Owner of every member of the foreign-owner artifact: a user that does not run the tests.
const FOREIGN_ID: u64 = 4242;

/// One member of a hand-built artifact.
struct Member<'a> {
    path: &'a str,
    kind: EntryType,
    mode: u32,
    data: &'a [u8],
}

fn file<'a>(path: &'a str, mode: u32, data: &'a [u8]) -> Member<'a> {
    Member {
        path,
        kind: EntryType::Regular,
        mode,
        data,
    }
}

fn directory(path: &str, mode: u32) -> Member<'_> {
    Member {
        path,
        kind: EntryType::Directory,
        mode,
        data: b"",
    }
}

/// Writes `<dir>/<name>.tar.gz` holding `members`, each owned by `owner` (uid and gid). Long
/// names get GNU long-name records, as GNU tar writes them.
fn artifact(dir: &Path, name: &str, owner: u64, members: &[Member]) -> PathBuf {
    let mut builder = Builder::new(Vec::new());
    for member in members {
        let mut header = Header::new_gnu();
        header.set_entry_type(member.kind);
        header.set_mode(member.mode);
        header.set_uid(owner);
        header.set_gid(owner);
        header.set_mtime(1_700_000_000);
        header.set_size(member.data.len() as u64);
        builder
            .append_data(&mut header, member.path, member.data)
            .unwrap_or_else(|error| panic!("adding {:?} to {name}: {error}", member.path));
    }
    let tar = builder.into_inner().expect("finish the tar stream");
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut encoder, &tar).expect("gzip");
    let path = dir.join(format!("{name}.tar.gz"));
    std::fs::write(&path, encoder.finish().expect("gzip")).expect("write the artifact");
    path
}

/// Pushes `artifact` through an inventory holding the fleet and a sentinel and checks the
/// input-error contract: exit 2, nothing on stdout, nothing contacted, nothing on the fleet's
/// hosts. Returns stderr.
fn assert_refused_before_any_host(scenario: &Scenario, artifact: &Path) -> String {
    let sentinel = Sentinel::new();
    let inventory = scenario.fleet().inventory_text(&format!(
        "{}[services.app]\nbase_dir = \"app\"\n",
        sentinel.host_entry("sentinel")
    ));
    let path = scenario.dir().join("sentinel.toml");
    std::fs::write(&path, inventory).expect("write the inventory");
    let ran = push(&path, "v1", artifact, &[]).expect_code(2);
    assert_eq!(ran.stdout, "", "{ran:?}");
    sentinel.assert_not_contacted(&ran);
    for host in scenario.hosts() {
        let left: Vec<_> = std::fs::read_dir(&host.root)
            .expect("host root")
            .flatten()
            .map(|entry| entry.path())
            .collect();
        assert!(left.is_empty(), "{} was touched: {left:?}", host.name);
    }
    ran.stderr
}

/// The uid and gid of the process running the tests (= the user the fleet's hosts log in as),
/// read from a file it has just created.
fn own_ids(dir: &Path) -> (u32, u32) {
    let probe = dir.join("owner-probe");
    std::fs::write(&probe, "").expect("write probe");
    let metadata = std::fs::metadata(&probe).expect("probe metadata");
    (metadata.uid(), metadata.gid())
}

/// Every path under `root`, `root` included, with its metadata (symlinks not followed).
fn walk(root: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
                pending.push(entry.path());
            }
        }
        found.push((path, metadata));
    }
    found
}

fn assert_no_drift(scenario: &Scenario) {
    let ran = scenario.json(&["status", "--verify"]).expect_code(0);
    assert_eq!(
        ran.host("web1")["drift"],
        serde_json::json!({"added": [], "modified": [], "removed": []}),
        "{ran:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// setuid / setgid

#[test]
fn a_setuid_member_is_refused_before_any_host_is_contacted() {
    let scenario = Scenario::new(1);
    let setuid = artifact(
        scenario.dir(),
        "setuid",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("bin", 0o755),
            file("bin/helper", 0o4755, b"#!/bin/sh\n"),
        ],
    );
    let stderr = assert_refused_before_any_host(&scenario, &setuid);
    assert!(stderr.contains("member `bin/helper`"), "{stderr}");
    assert!(stderr.contains("setuid bit (04000)"), "{stderr}");
    assert!(stderr.contains("allow_setid = true"), "{stderr}");

    let setgid = artifact(
        scenario.dir(),
        "setgid",
        0,
        &[directory("shared", 0o2775), file("shared/x", 0o644, b"x")],
    );
    let stderr = assert_refused_before_any_host(&scenario, &setgid);
    assert!(stderr.contains("member `shared`"), "{stderr}");
    assert!(stderr.contains("setgid bit (02000)"), "{stderr}");
}

#[test]
fn allow_setid_lets_a_setuid_member_through() {
    let scenario = Scenario::new(1);
    let setuid = artifact(
        scenario.dir(),
        "setuid",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("bin", 0o755),
            file("bin/helper", 0o4755, b"#!/bin/sh\n"),
        ],
    );
    let scenario = scenario.service("allow_setid = true");
    let ran = scenario.push_artifact("v1", &setuid, &[]).expect_code(0);
    assert_eq!(ran.host("web1")["result"], "ok", "{ran:?}");
    let helper = scenario.app(0).join("current/bin/helper");
    let mode = std::fs::metadata(&helper)
        .expect("helper")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755, "{mode:o}");
    assert_no_drift(&scenario);
}

// ---------------------------------------------------------------------------------------------
// name components

#[test]
fn a_name_component_of_256_bytes_is_refused_before_any_host_is_contacted() {
    let scenario = Scenario::new(1);
    let long_name = format!("assets/{}", "n".repeat(256));
    let long = artifact(
        scenario.dir(),
        "long",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("assets", 0o755),
            file(&long_name, 0o644, b"x"),
        ],
    );
    let stderr = assert_refused_before_any_host(&scenario, &long);
    assert!(
        stderr.contains(&format!("member `{long_name}`")),
        "{stderr}"
    );
    assert!(stderr.contains("longer than 255 bytes"), "{stderr}");

    // 255 bytes is fine (and the host can hold it).
    let longest = format!("assets/{}", "n".repeat(255));
    let fits = artifact(
        scenario.dir(),
        "fits",
        0,
        // Not only `assets/`: a tarball under one top directory is refused (guard_rails).
        &[
            file("index.html", 0o644, b"hello"),
            directory("assets", 0o755),
            file(&longest, 0o644, b"x"),
        ],
    );
    scenario.push_artifact("v1", &fits, &[]).expect_code(0);
    assert!(scenario.app(0).join("current").join(&longest).is_file());
}

// ---------------------------------------------------------------------------------------------
// owners and world-writable modes

#[test]
fn foreign_owners_and_world_writable_modes_do_not_reach_the_host() {
    let scenario = Scenario::new(1);
    let foreign = artifact(
        scenario.dir(),
        "foreign",
        FOREIGN_ID,
        &[
            directory(".", 0o755),
            file("index.html", 0o644, b"hello"),
            directory("public", 0o777),
            file("public/upload.txt", 0o666, b"anyone may write"),
            directory("bin", 0o755),
            file("bin/run", 0o757, b"#!/bin/sh\n"),
        ],
    );
    scenario.push_artifact("v1", &foreign, &[]).expect_code(0);

    let (uid, gid) = own_ids(scenario.dir());
    let release = scenario.app(0).join("releases/v1");
    let entries = walk(&release);
    assert_eq!(entries.len(), 6, "{entries:?}");
    let mut problems = Vec::new();
    for (path, metadata) in &entries {
        let shown = match path.strip_prefix(&release) {
            Ok(relative) if !relative.as_os_str().is_empty() => relative.display().to_string(),
            _ => ".".to_string(),
        };
        if (metadata.uid(), metadata.gid()) != (uid, gid) {
            problems.push(format!(
                "`{shown}` is owned by {}:{}, not {uid}:{gid}",
                metadata.uid(),
                metadata.gid()
            ));
        }
        let mode = metadata.permissions().mode();
        if !metadata.file_type().is_symlink() && mode & 0o002 != 0 {
            problems.push(format!(
                "`{shown}` is world-writable ({:04o})",
                mode & 0o7777
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the host holds is what the manifest recorded: no drift.
    assert_no_drift(&scenario);
}
