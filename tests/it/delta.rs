//! Delta pushes (`delta = "hardlink" | "copy" | "off"`, `push --full`) against a real fleet,
//! with the bytes on the wire counted outside the tool by a TCP relay in front of each host.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{
    self, Ran, Relay, Scenario, json_command, path_str, read, run, tree_snapshot, wait_until,
};

/// Files in each test release; 1% of them change from one version to the next.
const FILES: usize = 2000;

/// A release's source tree and tarball: `FILES` files of 8 KiB (a small web asset) in 40
/// directories, each file's content derived from its number and, for the files in `changed`,
/// from `version` too.
/// `compressible`: text that gzip shrinks; otherwise pseudo-random bytes.
struct Release {
    source: PathBuf,
    tarball: PathBuf,
}

fn release(dir: &Path, version: &str, changed: &[usize], compressible: bool) -> Release {
    let source = dir.join(format!("{version}.tree"));
    let _ = std::fs::remove_dir_all(&source);
    for index in 0..FILES {
        let seed = if changed.contains(&index) {
            format!("{version}/{index}")
        } else {
            format!("{index}")
        };
        let path = source.join(format!("d{:02}/f{index:05}.dat", index % 40));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content(&seed, compressible)).expect("write");
    }
    std::fs::create_dir_all(source.join("bin")).expect("mkdir");
    std::os::unix::fs::symlink("../d00/f00000.dat", source.join("bin/first")).expect("symlink");
    let tarball = dir.join(format!("{version}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&source)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success());
    Release { source, tarball }
}

/// 8 KiB from `seed`: a xorshift stream (incompressible), or the hex text of half as much
/// (which gzip shrinks to about half).
fn content(seed: &str, compressible: bool) -> Vec<u8> {
    if compressible {
        let bytes = content(seed, false);
        return bytes[..4096]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
            .into_bytes();
    }
    let mut state: u64 = seed.bytes().fold(0x9e37_79b9_7f4a_7c15, |state, byte| {
        (state ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    (0..8192 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect()
}

/// Every 100th file: 1% of the release.
fn one_percent() -> Vec<usize> {
    (0..FILES).step_by(100).collect()
}

/// A scenario whose hosts are reached through counting relays: the inventory names the relay
/// ports, and a known_hosts file trusts each host's key under its relay's address.
struct Relayed {
    scenario: Scenario,
    relays: Vec<Relay>,
    inventory: PathBuf,
}

impl Relayed {
    fn new(hosts: usize, service: &str) -> Relayed {
        let scenario = Scenario::new(hosts).service(service);
        let relays: Vec<Relay> = scenario.hosts().iter().map(Relay::start).collect();
        let known_hosts = scenario.dir().join("relayed_known_hosts");
        let lines: String = scenario
            .hosts()
            .iter()
            .zip(&relays)
            .map(|(host, relay)| format!("[127.0.0.1]:{} {}\n", relay.port, host.host_key_public))
            .collect();
        std::fs::write(&known_hosts, lines).expect("write known_hosts");
        let mut text = scenario.inventory_text().replace(
            path_str(scenario.fleet().known_hosts()),
            path_str(&known_hosts),
        );
        for (host, relay) in scenario.hosts().iter().zip(&relays) {
            text = text.replace(
                &format!("port = {}\n", host.port),
                &format!("port = {}\n", relay.port),
            );
        }
        let inventory = scenario.dir().join("relayed.toml");
        std::fs::write(&inventory, text).expect("write inventory");
        Relayed {
            scenario,
            relays,
            inventory,
        }
    }

    /// A fleet of `hosts` with the two releases most tests push: v1 (thousands of files) and v2
    /// (1% of them changed).
    fn v1_and_v2(hosts: usize, service: &str) -> (Relayed, Release, Release) {
        let fleet = Relayed::new(hosts, service);
        let dir = fleet.scenario.dir();
        let v1 = release(dir, "v1", &[], false);
        let v2 = release(dir, "v2", &one_percent(), false);
        (fleet, v1, v2)
    }

    fn run(&self, args: &[&str]) -> Ran {
        run(json_command(&self.inventory).args(args))
    }

    /// Pushes `release` as `version`, returning the run and the bytes each host received
    /// (counted by its relay).
    fn push(&self, version: &str, release: &Release, extra: &[&str]) -> (Ran, Vec<u64>) {
        for relay in &self.relays {
            relay.reset();
        }
        let ran = self.run_push(version, release, extra);
        (ran, self.relays.iter().map(Relay::sent).collect())
    }

    /// `push --dry-run` of `release` as `version`.
    fn dry_run(&self, version: &str, release: &Release, extra: &[&str]) -> Ran {
        self.run_push(version, release, &[&["--dry-run"], extra].concat())
    }

    fn run_push(&self, version: &str, release: &Release, extra: &[&str]) -> Ran {
        let mut args = vec![
            "push",
            "--version",
            version,
            "--artifact",
            path_str(&release.tarball),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn release_dir(&self, host: usize, version: &str) -> PathBuf {
        self.scenario.app(host).join("releases").join(version)
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .ino()
}

/// Hardlink mode: v2 (1% changed) costs at most 5% of v1's bytes on the wire, equals its
/// artifact on every host, leaves v1 untouched, and shares the unchanged files' inodes with v1.
/// A base file edited on one host before the push does not leak into v2.
#[test]
fn a_delta_push_sends_what_changed_and_links_the_rest() {
    let (fleet, v1, v2) = Relayed::v1_and_v2(2, "keep_releases = 5");

    let (ran, full) = fleet.push("v1", &v1, &[]);
    ran.expect_code(0);
    let artifact_size = std::fs::metadata(&v1.tarball).expect("size").len();
    for sent in &full {
        assert!(
            *sent > artifact_size,
            "a full push sends the artifact: {sent}"
        );
    }
    let v1_snapshot = tree_snapshot(&v1.source);

    // Host 2 (web2): a file of v1 that v2 does not change is edited in place (same inode).
    let edited = fleet.release_dir(1, "v1").join("d01/f00001.dat");
    std::fs::write(&edited, "edited on the host").expect("edit");

    let dry = fleet.dry_run("v2", &v2, &[]).expect_code(0);
    let notes = dry.host("web1")["notes"].to_string();
    assert!(
        notes.contains("delta from v1: 20 files"),
        "dry run names the delta: {notes}"
    );

    let (ran, delta) = fleet.push("v2", &v2, &[]);
    let ran = ran.expect_code(0);
    eprintln!("delta push: {delta:?} bytes relayed to the hosts; full push: {full:?}");
    for (index, (sent, full)) in delta.iter().zip(&full).enumerate() {
        assert!(
            *sent * 20 <= *full,
            "host {index}: the delta push sent {sent} bytes, more than 5% of the full push's {full}"
        );
        let reported = ran.host(&format!("web{}", index + 1))["bytes"]
            .as_u64()
            .expect("bytes");
        assert!(
            reported > 0 && reported <= *sent,
            "reported {reported}, relayed {sent}"
        );
        assert_eq!(
            tree_snapshot(&fleet.release_dir(index, "v2")),
            tree_snapshot(&v2.source),
            "host {index}: v2 equals its artifact"
        );
        assert_eq!(fleet.scenario.live(index).as_deref(), Some("v2"));
        let unchanged = "d02/f00002.dat";
        assert_eq!(
            inode(&fleet.release_dir(index, "v1").join(unchanged)),
            inode(&fleet.release_dir(index, "v2").join(unchanged)),
            "host {index}: an unchanged file is a hard link to v1's"
        );
        let changed = "d20/f00100.dat";
        assert_ne!(
            inode(&fleet.release_dir(index, "v1").join(changed)),
            inode(&fleet.release_dir(index, "v2").join(changed)),
        );
    }
    assert_eq!(
        tree_snapshot(&fleet.release_dir(0, "v1")),
        v1_snapshot,
        "v1 untouched"
    );
    // web2's edited v1 file stays as the host left it; v2 has the artifact's content.
    assert_eq!(read(&edited), "edited on the host");
    assert_ne!(
        inode(&edited),
        inode(&fleet.release_dir(1, "v2").join("d01/f00001.dat"))
    );

    // Re-pushing v2 sends nothing but the lock and state round trips.
    let (ran, again) = fleet.push("v2", &v2, &[]);
    let ran = ran.expect_code(0);
    assert_eq!(ran.host("web1")["result"], "unchanged");
    assert_eq!(ran.host("web1")["bytes"], 0);
    assert!(again[0] * 100 < full[0], "{again:?}");

    // A file of v2 edited in place on web1 is drift of v2; with hard links it is the same
    // file in v1, so after a rollback it is drift of v1 too.
    let shared = fleet.release_dir(0, "v2").join("d03/f00003.dat");
    std::fs::write(&shared, "changed in place").expect("edit");
    let status = fleet.run(&["status", "--verify", "--hosts", "web1"]);
    let status = status.expect_code(1);
    let drift = status.host("web1")["drift"].clone();
    assert_eq!(drift["modified"][0], "d03/f00003.dat", "{drift:#}");
    fleet.run(&["rollback", "--hosts", "web1"]).expect_code(0);
    assert_eq!(fleet.scenario.live(0).as_deref(), Some("v1"));
    let status = fleet.run(&["status", "--verify", "--hosts", "web1"]);
    let status = status.expect_code(1);
    assert_eq!(
        status.host("web1")["drift"]["modified"][0],
        "d03/f00003.dat"
    );
    std::fs::write(&shared, content("3", false)).expect("restore");
    fleet
        .run(&["status", "--verify", "--hosts", "web1"])
        .expect_code(0);

    // v3 (a delta from v2 on web2), then pruning v1 leaves v2 and v3 whole.
    let v3 = release(fleet.scenario.dir(), "v3", &[5, 6, 7], false);
    fleet
        .run(&[
            "push",
            "--version",
            "v2",
            "--artifact",
            path_str(&v2.tarball),
        ])
        .expect_code(0);
    let (ran, _) = fleet.push("v3", &v3, &[]);
    ran.expect_code(0);
    fleet.run(&["prune", "--keep", "1"]).expect_code(0);
    for index in 0..2 {
        crate::support::wait_until("v1 pruned", crate::support::PATIENCE, || {
            !fleet.release_dir(index, "v1").exists()
        });
        assert_eq!(
            tree_snapshot(&fleet.release_dir(index, "v2")),
            tree_snapshot(&v2.source)
        );
        assert_eq!(
            tree_snapshot(&fleet.release_dir(index, "v3")),
            tree_snapshot(&v3.source)
        );
    }
}

/// Copy mode shares no inode with the base release; `delta = "off"` and `--full` send the whole
/// artifact.
#[test]
fn copy_mode_shares_nothing_and_full_pushes_send_everything() {
    let fleet = Relayed::new(1, "delta = \"copy\"");
    let dir = fleet.scenario.dir().to_path_buf();
    let v1 = release(&dir, "v1", &[], true);
    let v2 = release(&dir, "v2", &one_percent(), true);
    let v3 = release(fleet.scenario.dir(), "v3", &[1], true);

    let (ran, full) = fleet.push("v1", &v1, &[]);
    ran.expect_code(0);
    let (ran, delta) = fleet.push("v2", &v2, &[]);
    ran.expect_code(0);
    eprintln!(
        "copy mode, compressible files: delta push {delta:?} bytes relayed; full push {full:?}"
    );
    assert!(delta[0] * 20 <= full[0], "{delta:?} vs {full:?}");
    let unchanged = "d02/f00002.dat";
    assert_ne!(
        inode(&fleet.release_dir(0, "v1").join(unchanged)),
        inode(&fleet.release_dir(0, "v2").join(unchanged)),
        "copy mode: no shared inode"
    );
    assert_eq!(
        tree_snapshot(&fleet.release_dir(0, "v2")),
        tree_snapshot(&v2.source)
    );

    // --full: the whole artifact, even though a delta would do.
    let size = std::fs::metadata(&v3.tarball).expect("size").len();
    let dry = fleet.dry_run("v3", &v3, &["--full"]);
    assert!(
        dry.host("web1")["notes"]
            .to_string()
            .contains("full push: --full"),
        "{}",
        dry.stdout
    );
    let (ran, sent) = fleet.push("v3", &v3, &["--full"]);
    ran.expect_code(0);
    assert!(sent[0] > size, "--full sent {sent:?}, artifact {size}");
    assert_eq!(
        tree_snapshot(&fleet.release_dir(0, "v3")),
        tree_snapshot(&v3.source)
    );

    // delta = "off": the whole artifact too.
    let off = Relayed::new(1, "delta = \"off\"");
    let (ran, _) = off.push("v1", &v1, &[]);
    ran.expect_code(0);
    let (ran, sent) = off.push("v2", &v2, &[]);
    ran.expect_code(0);
    let size = std::fs::metadata(&v2.tarball).expect("size").len();
    assert!(sent[0] > size, "delta = off sent {sent:?}, artifact {size}");
}

/// A reused file is taken unhashed only while the base release's identity record vouches for
/// it: a base file rewritten in place with the same size and its mtime set back (what
/// `cp -p`/`rsync --inplace` of a same-size file with a reproducible-build mtime does) changes
/// its ctime, so it is hashed, found different and sent; the new release equals its artifact.
#[test]
fn a_base_file_rewritten_with_its_old_size_and_mtime_does_not_leak() {
    let (fleet, v1, v2) = Relayed::v1_and_v2(1, "keep_releases = 5");
    let v3 = release(fleet.scenario.dir(), "v3", &[1, 2, 3], false);
    fleet.push("v1", &v1, &[]).0.expect_code(0);

    // Unedited: v1's record vouches for the reused files (bar the few extracted within the
    // clock tick of its stamp, which are hashed).
    let (ran, _) = fleet.push("v2", &v2, &["-v"]);
    let ran = ran.expect_code(0);
    let (vouched, reused) = vouched_for(&ran);
    assert_eq!(reused, FILES - one_percent().len(), "{}", ran.stderr);
    assert!(
        vouched * 10 >= reused * 9,
        "{vouched} of {reused} vouched for"
    );
    assert_eq!(
        tree_snapshot(&fleet.release_dir(0, "v2")),
        tree_snapshot(&v2.source)
    );

    // The live v2's d05/f00005.dat (unchanged in v3) rewritten in place: same size, mtime set back.
    let edited = fleet.release_dir(0, "v2").join("d05/f00005.dat");
    let forged = forge_in_place(&edited, "5");

    let (ran, _) = fleet.push("v3", &v3, &["-v"]);
    let ran = ran.expect_code(0);
    assert_most_but_not_all_vouched_for(&ran);
    assert_the_edit_did_not_leak(&fleet, "v3", &v3, &edited, &forged);
    assert_ne!(
        inode(&edited),
        inode(&fleet.release_dir(0, "v3").join("d05/f00005.dat"))
    );
}

/// A prune between two delta pushes, for the tests below: `keep_releases = 2`, v1 and v2 pushed;
/// v3's push (by the test) prunes v1, whose files v3 shares; v4 changes 1, 2, 3 (back as in v1)
/// and 4, 5, 6 from v3.
struct PruneBetween {
    fleet: Relayed,
    v3: Release,
    v4: Release,
}

impl PruneBetween {
    fn new() -> PruneBetween {
        let (fleet, v1, v2) = Relayed::v1_and_v2(1, "keep_releases = 2");
        for (version, release) in [("v1", &v1), ("v2", &v2)] {
            fleet.push(version, release, &[]).0.expect_code(0);
        }
        PruneBetween {
            v3: release(fleet.scenario.dir(), "v3", &[1, 2, 3], false),
            v4: release(fleet.scenario.dir(), "v4", &[4, 5, 6], false),
            fleet,
        }
    }

    /// The live v3's file that the tests edit on the host (unchanged since v1, and in v4).
    fn edited(&self) -> PathBuf {
        self.fleet.release_dir(0, "v3").join("d10/f00010.dat")
    }

    /// The prune's listing of v3, once complete.
    fn relisted(&self) -> PathBuf {
        self.fleet.scenario.app(0).join(".deploy/relisted/v3")
    }

    fn wait_for_the_listing(&self) {
        let relisted = self.relisted();
        wait_until("the prune's listing of v3", Duration::from_secs(60), || {
            relisted.is_file()
        });
    }

    /// Pushes v4 from v3, whose edited file holds `edit`: the prune's listing vouches for the
    /// other reused files, the edited one is hashed, and the edit does not leak.
    fn push_v4_and_assert_the_edit_was_hashed(&self, edit: &[u8]) {
        let (ran, _) = self.fleet.push("v4", &self.v4, &["-v"]);
        let ran = ran.expect_code(0);
        assert_eq!(vouched_for(&ran).1, FILES - 6, "{}", ran.stderr);
        assert_most_but_not_all_vouched_for(&ran);
        assert_the_edit_did_not_leak(&self.fleet, "v4", &self.v4, &self.edited(), edit);
    }
}

/// Once a service has `keep_releases` releases every push prunes one, and deleting its hard
/// links changes the ctime of every file the live release shared with it. The prune lists the
/// live release around the deletion, so its record still vouches for those files at the next
/// push (without that, nearly all of them would be hashed again); a file edited in place since
/// (same size, mtime set back) is still hashed, found different and sent.
#[test]
fn after_a_prune_the_live_record_still_vouches_and_an_edit_still_shows() {
    let prune = PruneBetween::new();
    prune.fleet.push("v3", &prune.v3, &[]).0.expect_code(0);
    assert!(
        !prune.fleet.release_dir(0, "v1").exists(),
        "v3's push pruned v1, whose files v3 shares"
    );
    // The deletion, and the listing after it, run in the background.
    prune.wait_for_the_listing();

    // Rewritten in place: same size, mtime set back.
    let forged = forge_in_place(&prune.edited(), "10");
    prune.push_v4_and_assert_the_edit_was_hashed(&forged);
}

/// A fault in the prune's own window: its deletion slowed (an `rm` that sleeps before it
/// removes the pruned releases), and a file of the live release rewritten during it with
/// another size. The listing after the deletion shows the new size, so nothing vouches for that
/// file: it is hashed, found different and sent; the listing still vouches for the others.
#[test]
fn an_edit_during_a_slowed_prune_deletion_is_still_hashed() {
    let prune = PruneBetween::new();
    let host = prune.fleet.scenario.host(0);
    let started = prune.fleet.scenario.dir().join("prune-deletion-started");
    host.wrap_command(
        "rm",
        &format!(
            "case \"$*\" in *-prune*) : > '{}'; {} 2;; esac\nexec {} \"$@\"",
            path_str(&started),
            support::real_program("sleep").display(),
            support::real_program("rm").display()
        ),
    );
    // The deletion of v1 runs on after v3's push.
    prune.fleet.push("v3", &prune.v3, &[]).0.expect_code(0);
    wait_until("the prune's deletion", Duration::from_secs(60), || {
        started.exists()
    });
    let edit = b"rewritten while the prune deleted v1".to_vec();
    std::fs::write(prune.edited(), &edit).expect("rewrite");
    assert!(
        !prune.relisted().exists(),
        "the edit falls between the prune's two listings"
    );
    prune.wait_for_the_listing();
    host.unwrap_command("rm");

    prune.push_v4_and_assert_the_edit_was_hashed(&edit);
}

/// A push's lock reads the live release's manifest (the delta's base) in the same command as
/// the facts when every host is worked on at once: no host runs a command of its own for it.
/// With more hosts than `concurrency` (hosts wait for their turn to stage) and a manifest over
/// what a waiting host may hold, each host reads it when its turn comes, as before. Both push
/// the same delta, and each release equals its artifact.
#[test]
fn the_live_manifest_comes_with_the_lock_when_every_host_is_worked_on_at_once() {
    let (fleet, v1, v2) = Relayed::v1_and_v2(2, "keep_releases = 5");
    let v3 = release(fleet.scenario.dir(), "v3", &[1, 101, 201], false);
    fleet.push("v1", &v1, &[]).0.expect_code(0);

    let manifest_reads = |host: &support::TestHost| -> (usize, usize) {
        let commands = host.session_commands();
        let locks = commands
            .iter()
            .filter(|line| line.starts_with("start=$PWD"))
            .count();
        let reads = commands
            .iter()
            .filter(|line| is_manifest_read(line))
            .count();
        (locks, reads)
    };
    for (version, release, concurrency, expected_reads) in
        [("v2", &v2, "2", 0), ("v3", &v3, "1", 1)]
    {
        for host in fleet.scenario.hosts() {
            host.forget_sessions();
        }
        let (ran, _) = fleet.push(version, release, &["-v", "--concurrency", concurrency]);
        let ran = ran.expect_code(0);
        assert_eq!(vouched_for(&ran).0, vouched_for(&ran).1, "{}", ran.stderr);
        for (index, host) in fleet.scenario.hosts().iter().enumerate() {
            assert_eq!(
                manifest_reads(host),
                (1, expected_reads),
                "{version} at -j {concurrency}, {}: lock commands and manifest reads in {:#?}",
                host.name,
                host.session_commands()
            );
            assert_eq!(
                tree_snapshot(&fleet.release_dir(index, version)),
                tree_snapshot(&release.source),
                "host {index}: {version} equals its artifact"
            );
        }
    }
}

/// The live release's manifest as the lock reads it: missing on one host, garbage on the other.
/// Each host then pushes the whole artifact (never a delta from a record it cannot trust), the
/// note says why, its tree equals the artifact, and no host reads the manifest again in a
/// session of its own.
#[test]
fn a_missing_or_unreadable_live_manifest_read_under_the_lock_means_a_full_push() {
    let (fleet, v1, v2) = Relayed::v1_and_v2(2, "keep_releases = 5");
    fleet.push("v1", &v1, &[]).0.expect_code(0);
    let manifest = |index: usize| fleet.scenario.app(index).join(".deploy/manifests/v1");
    std::fs::remove_file(manifest(0)).expect("remove web1's manifest of v1");
    std::fs::write(manifest(1), "deploy-manifest 1\nnot a manifest line\n")
        .expect("corrupt web2's manifest of v1");

    let reasons = [
        "full push: no manifest recorded for v1\"",
        "full push: recorded manifest of v1: line 2: ",
    ];
    // The dry run reads the manifest with a command of its own, and names the same reasons.
    let dry = fleet.dry_run("v2", &v2, &[]).expect_code(0);
    for (host, reason) in fleet.scenario.hosts().iter().zip(reasons) {
        let notes = dry.host(&host.name)["notes"].to_string();
        assert!(notes.contains(reason), "dry run, {}: {notes}", host.name);
    }
    for host in fleet.scenario.hosts() {
        host.forget_sessions();
    }

    let (ran, sent) = fleet.push("v2", &v2, &["--concurrency", "2"]);
    let ran = ran.expect_code(0);
    let artifact_size = std::fs::metadata(&v2.tarball).expect("size").len();
    for (index, host) in fleet.scenario.hosts().iter().enumerate() {
        let notes = ran.host(&host.name)["notes"].to_string();
        assert!(notes.contains(reasons[index]), "{}: {notes}", host.name);
        assert!(
            sent[index] > artifact_size,
            "{}: a full push sends the artifact: {} of {artifact_size} bytes",
            host.name,
            sent[index]
        );
        let commands = host.session_commands();
        assert!(
            !commands.iter().any(|line| is_manifest_read(line)),
            "{}: the manifest is read under the lock only: {commands:#?}",
            host.name
        );
        assert_eq!(
            tree_snapshot(&fleet.release_dir(index, "v2")),
            tree_snapshot(&v2.source),
            "{}: v2 equals its artifact",
            host.name
        );
    }
}

/// Whether a session's first command line is the read of a recorded manifest
/// (`scan::manifest_command`: it tests for the file, then prints its section).
fn is_manifest_read(line: &str) -> bool {
    line.starts_with("if [ -f ")
        && line.contains(".deploy/manifests/")
        && line.contains("RECORDED-MANIFEST")
}

/// Rewrites a release's file `number` in place as a host-side edit that hides best would: other
/// content of the same size, the mtime set back, the inode kept. Returns the new content.
fn forge_in_place(path: &Path, number: &str) -> Vec<u8> {
    let before = std::fs::metadata(path).expect("metadata");
    let mut forged = content(number, false);
    forged[0] ^= 0xff;
    std::fs::write(path, &forged).expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(before.modified().expect("mtime")))
        .expect("set the mtime back");
    let after = std::fs::metadata(path).expect("metadata");
    assert_eq!(
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()),
        (
            before.ino(),
            before.len(),
            before.mtime(),
            before.mtime_nsec()
        ),
        "the edit keeps inode, size and mtime"
    );
    forged
}

/// The new release `version` on host 0 equals its artifact (the base file `edited` on the host
/// did not leak into it), and the base keeps its edit.
fn assert_the_edit_did_not_leak(
    fleet: &Relayed,
    version: &str,
    release: &Release,
    edited: &Path,
    edit: &[u8],
) {
    assert_eq!(
        tree_snapshot(&fleet.release_dir(0, version)),
        tree_snapshot(&release.source),
        "{version} equals its artifact: the edited base file did not leak"
    );
    assert_eq!(
        std::fs::read(edited).expect("read"),
        edit,
        "the base keeps its edit"
    );
}

/// The base's record vouched for at least 90% of the reused files, but not all: the forged one
/// (and those written within the clock tick of a stamp) were hashed.
fn assert_most_but_not_all_vouched_for(ran: &Ran) {
    let (vouched, reused) = vouched_for(ran);
    assert!(
        vouched < reused && vouched * 10 >= reused * 9,
        "{vouched} of {reused} vouched for"
    );
}

/// From a `-v` push's log: how many reused files the base's record vouched for, of how many.
fn vouched_for(ran: &Ran) -> (usize, usize) {
    let line = ran
        .stderr
        .lines()
        .find(|line| line.contains("reused files vouched for"))
        .unwrap_or_else(|| panic!("no vouching line in the log:\n{}", ran.stderr));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|word| *word == "of")
        .expect("`N of M reused`");
    let number = |word: &str| word.parse::<usize>().unwrap_or_else(|_| panic!("{line}"));
    (number(words[at - 1]), number(words[at + 1]))
}
