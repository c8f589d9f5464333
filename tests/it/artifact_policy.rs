//! The artifact member policy (SPEC §4 step 1) end to end: setuid/setgid members and name
//! components over 255 bytes are refused before any host is contacted (exit 2), `allow_setid`
//! lets setid members through, and foreign owners and world-writable modes in an artifact do
//! not reach the hosts (files owned by the connecting user, no `o+w`) nor show as drift.
//!
//! "Nothing contacted" is checked, not assumed: besides the fleet's real hosts, the refusing
//! inventories name a `sentinel` host that points at a local TCP listener nobody accepts from,
//! so any connection attempt would sit in its backlog.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use tar::{Builder, EntryType, Header};

use crate::support::Fleet;
use crate::{Ran, deploy, deploy_json};

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

fn service(extra: &str) -> String {
    format!("[services.app]\nbase_dir = \"app\"\n{extra}")
}

/// `deploy push -i INVENTORY --version V --artifact PATH --output json --no-progress`.
fn push(inventory: &Path, version: &str, artifact: &Path) -> Ran {
    deploy(&[
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
    ])
}

/// A listener that is never accepted from, named as one more host of an inventory.
struct Sentinel {
    listener: TcpListener,
}

impl Sentinel {
    fn new() -> Sentinel {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for the sentinel");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        Sentinel { listener }
    }

    /// The `[[hosts]]` entry of the sentinel.
    fn host_entry(&self) -> String {
        let port = self.listener.local_addr().expect("listener address").port();
        format!("[[hosts]]\nname = \"sentinel\"\naddress = \"127.0.0.1\"\nport = {port}\n\n")
    }

    fn assert_not_contacted(&self, ran: &Ran) {
        match self.listener.accept() {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("a host was contacted (from {peer}): {ran:?}"),
            Err(error) => panic!("sentinel listener: {error}"),
        }
    }
}

/// Pushes `artifact` through an inventory holding the fleet and a sentinel and checks the
/// input-error contract: exit 2, nothing on stdout, nothing contacted, nothing on the fleet's
/// hosts. Returns stderr.
fn assert_refused_before_any_host(fleet: &Fleet, artifact: &Path) -> String {
    let sentinel = Sentinel::new();
    let inventory = fleet.write_inventory(&format!("{}{}", sentinel.host_entry(), service("")));
    let ran = push(&inventory, "v1", artifact);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
    sentinel.assert_not_contacted(&ran);
    for host in fleet.hosts() {
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

fn assert_no_drift(inventory: &Path) {
    let ran = deploy_json(inventory, &["status", "--verify"]);
    assert_eq!(ran.code, 0, "{ran:?}");
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
    let fleet = Fleet::start(1);
    let setuid = artifact(
        fleet.dir(),
        "setuid",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("bin", 0o755),
            file("bin/helper", 0o4755, b"#!/bin/sh\n"),
        ],
    );
    let stderr = assert_refused_before_any_host(&fleet, &setuid);
    assert!(stderr.contains("member `bin/helper`"), "{stderr}");
    assert!(stderr.contains("setuid bit (04000)"), "{stderr}");
    assert!(stderr.contains("allow_setid = true"), "{stderr}");

    let setgid = artifact(
        fleet.dir(),
        "setgid",
        0,
        &[directory("shared", 0o2775), file("shared/x", 0o644, b"x")],
    );
    let stderr = assert_refused_before_any_host(&fleet, &setgid);
    assert!(stderr.contains("member `shared`"), "{stderr}");
    assert!(stderr.contains("setgid bit (02000)"), "{stderr}");
}

#[test]
fn allow_setid_lets_a_setuid_member_through() {
    let fleet = Fleet::start(1);
    let setuid = artifact(
        fleet.dir(),
        "setuid",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("bin", 0o755),
            file("bin/helper", 0o4755, b"#!/bin/sh\n"),
        ],
    );
    let inventory = fleet.write_inventory(&service("allow_setid = true\n"));
    let ran = push(&inventory, "v1", &setuid);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.host("web1")["result"], "ok", "{ran:?}");
    let helper = fleet.host(0).root.join("app/current/bin/helper");
    let mode = std::fs::metadata(&helper)
        .expect("helper")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755, "{mode:o}");
    assert_no_drift(&inventory);
}

// ---------------------------------------------------------------------------------------------
// name components

#[test]
fn a_name_component_of_256_bytes_is_refused_before_any_host_is_contacted() {
    let fleet = Fleet::start(1);
    let long_name = format!("assets/{}", "n".repeat(256));
    let long = artifact(
        fleet.dir(),
        "long",
        0,
        &[
            file("index.html", 0o644, b"hello"),
            directory("assets", 0o755),
            file(&long_name, 0o644, b"x"),
        ],
    );
    let stderr = assert_refused_before_any_host(&fleet, &long);
    assert!(
        stderr.contains(&format!("member `{long_name}`")),
        "{stderr}"
    );
    assert!(stderr.contains("longer than 255 bytes"), "{stderr}");

    // 255 bytes is fine (and the host can hold it).
    let longest = format!("assets/{}", "n".repeat(255));
    let fits = artifact(
        fleet.dir(),
        "fits",
        0,
        &[directory("assets", 0o755), file(&longest, 0o644, b"x")],
    );
    let inventory = fleet.write_inventory(&service(""));
    let ran = push(&inventory, "v1", &fits);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        fleet
            .host(0)
            .root
            .join("app/current")
            .join(&longest)
            .is_file()
    );
}

// ---------------------------------------------------------------------------------------------
// owners and world-writable modes

#[test]
fn foreign_owners_and_world_writable_modes_do_not_reach_the_host() {
    let fleet = Fleet::start(1);
    let foreign = artifact(
        fleet.dir(),
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
    let inventory = fleet.write_inventory(&service(""));
    let ran = push(&inventory, "v1", &foreign);
    assert_eq!(ran.code, 0, "{ran:?}");

    let (uid, gid) = own_ids(fleet.dir());
    let release = fleet.host(0).root.join("app/releases/v1");
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
    assert_no_drift(&inventory);
}
