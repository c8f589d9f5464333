//! Host key trust against real sshd hosts: known_hosts (plain, hashed, wildcard, `@revoked`),
//! `host_key_policy` and the per-host `host_key` pin. The probe is `deploy check --output json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Filters, Fleet, Ran, deploy_json, read};

const SERVICE: &str = "[services.app]\nbase_dir = \"app\"\n";

/// `deploy check -i INVENTORY --output json`.
fn check(inventory: &Path) -> Ran {
    deploy_json(inventory, &["check"])
}

/// Writes `text` as `<fleet dir>/<name>` and returns its path.
fn write_inventory(fleet: &Fleet, name: &str, text: &str) -> PathBuf {
    let path = fleet.dir().join(name);
    std::fs::write(&path, text).expect("write inventory");
    path
}

/// The fleet's inventory text with `host_key_policy = "accept-new"` in its `[ssh]` table.
fn accept_new(text: &str) -> String {
    assert!(text.contains("[ssh]\n"), "no [ssh] table in:\n{text}");
    text.replacen("[ssh]\n", "[ssh]\nhost_key_policy = \"accept-new\"\n", 1)
}

/// The fleet's inventory text with its known_hosts path replaced by `known_hosts`.
fn with_known_hosts(fleet: &Fleet, text: &str, known_hosts: &Path) -> String {
    let original = format!("known_hosts = [\"{}\"]", fleet.known_hosts().display());
    assert!(text.contains(&original), "no {original} in:\n{text}");
    text.replace(
        &original,
        &format!("known_hosts = [\"{}\"]", known_hosts.display()),
    )
}

/// Adds `line` (e.g. `host_key = "..."`) to the `[[hosts]]` entry named `host`.
fn with_host_line(text: &str, host: &str, line: &str) -> String {
    let entry = format!("[[hosts]]\nname = \"{host}\"\n");
    assert!(text.contains(&entry), "no host {host} in:\n{text}");
    text.replacen(&entry, &format!("{entry}{line}\n"), 1)
}

/// The `error` of `host`, with the fleet dir replaced by `[DIR]` and `host`'s port (only) by
/// `[PORT]`.
fn error_of(ran: &Ran, fleet: &Fleet, index: usize) -> String {
    let host = fleet.host(index);
    let entry = ran.host(&host.name);
    assert_eq!(
        entry["result"], "failed",
        "{entry:#}\nstderr:\n{}",
        ran.stderr
    );
    let error = entry["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {entry:#}"));
    Filters::literal()
        .dir(fleet.dir())
        .port(host.port)
        .apply(error)
}

fn assert_ok(ran: &Ran, host: &str) {
    let entry = ran.host(host);
    assert_eq!(entry["result"], "ok", "{entry:#}\nstderr:\n{}", ran.stderr);
    assert_eq!(entry["error"], serde_json::Value::Null, "{entry:#}");
    // The prerequisite checks really ran over the connection.
    let checks = entry["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|check| check["name"] == "tool:sh" && check["ok"] == true),
        "{entry:#}"
    );
}

/// `SHA256:...` of a public key line, as `ssh-keygen -l` prints it.
fn ssh_keygen_fingerprint(public_key: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("key.pub");
    std::fs::write(&file, format!("{public_key}\n")).expect("write key");
    let output = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("ssh-keygen runs");
    assert!(output.status.success(), "ssh-keygen -l failed: {output:?}");
    let listing = String::from_utf8(output.stdout).expect("utf-8");
    let fingerprint = listing
        .split_whitespace()
        .nth(1)
        .expect("fingerprint field")
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{listing}");
    fingerprint
}

/// A fresh key pair of `key_type` (`ed25519`, `ecdsa`); returns `"<algorithm> <base64>"`.
fn generate_public_key(key_type: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", key_type, "-N", "", "-C", "other", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen -t {key_type} failed");
    let public = std::fs::read_to_string(dir.path().join("key.pub")).expect("read key.pub");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

// ---------------------------------------------------------------------------------------------
// Unknown hosts

#[test]
fn unknown_host_is_refused_under_strict_and_nothing_is_recorded() {
    let fleet = Fleet::start(2);
    std::fs::write(fleet.known_hosts(), "").expect("empty known_hosts");
    let inventory = fleet.write_inventory(SERVICE);

    let ran = check(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.json()["result"], "failed");
    for index in 0..2 {
        let host = fleet.host(index);
        let fingerprint = ssh_keygen_fingerprint(&host.host_key_public);
        assert_eq!(
            error_of(&ran, &fleet, index),
            format!(
                "connect: host {name} ([127.0.0.1]:[PORT]) is not in any known_hosts file \
                 ([DIR]/known_hosts); it presented ssh-ed25519 {fingerprint}. Verify the \
                 fingerprint, then add it with `ssh-keyscan -p [PORT] 127.0.0.1 >> \
                 [DIR]/known_hosts` or set host_key_policy = \"accept-new\".",
                name = host.name
            )
        );
    }
    assert_eq!(
        read(fleet.known_hosts()),
        "",
        "strict must not record anything"
    );
    // No service directory was created: nothing ran on the hosts.
    assert!(!fleet.host(0).root.join("app").exists());
}

#[test]
fn unknown_host_missing_known_hosts_file_is_refused_under_strict() {
    let fleet = Fleet::start(1);
    let missing = fleet.dir().join("no-such-dir/known_hosts");
    let text = with_known_hosts(&fleet, &fleet.inventory_text(SERVICE), &missing);
    let inventory = write_inventory(&fleet, "missing-kh.toml", &text);

    let ran = check(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    let error = error_of(&ran, &fleet, 0);
    assert!(error.contains("is not in any known_hosts file"), "{error}");
    assert!(
        !missing.exists(),
        "strict must not create a known_hosts file"
    );
}

#[test]
fn accept_new_records_unknown_hosts_and_trusts_them_afterwards() {
    let fleet = Fleet::start(2);
    std::fs::write(fleet.known_hosts(), "").expect("empty known_hosts");
    let inventory = write_inventory(
        &fleet,
        "accept-new.toml",
        &accept_new(&fleet.inventory_text(SERVICE)),
    );

    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");
    // One plain line per host, exactly the host's key (order depends on which connected first).
    let recorded = read(fleet.known_hosts());
    let expected: Vec<String> = sorted_lines(
        &fleet
            .hosts()
            .iter()
            .map(|host| format!("{}\n", host.known_hosts_line()))
            .collect::<String>(),
    );
    assert_eq!(sorted_lines(&recorded), expected, "{recorded}");
    assert!(recorded.ends_with('\n'));
    // The operator is told which key was trusted.
    for host in fleet.hosts() {
        let fingerprint = ssh_keygen_fingerprint(&host.host_key_public);
        assert!(
            ran.stderr
                .contains(&format!("trusted new host key ssh-ed25519 {fingerprint}")),
            "{}",
            ran.stderr
        );
    }
    // OpenSSH itself finds the recorded entry.
    let found = Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{}", fleet.host(0).port))
        .arg("-f")
        .arg(fleet.known_hosts())
        .output()
        .expect("ssh-keygen -F runs");
    assert!(
        found.status.success(),
        "ssh-keygen -F did not find the entry: {found:?}"
    );

    // Second run: trusted from the file, nothing appended again.
    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");
    assert_eq!(
        read(fleet.known_hosts()),
        recorded,
        "second run must not append"
    );
    assert!(
        !ran.stderr.contains("trusted new host key"),
        "{}",
        ran.stderr
    );

    // And the recorded file now works under strict too.
    let ran = check(&fleet.write_inventory(SERVICE));
    assert_eq!(ran.code, 0, "{ran:?}");
}

#[test]
fn accept_new_creates_a_missing_known_hosts_file() {
    let fleet = Fleet::start(1);
    let created = fleet.dir().join("new/.ssh/known_hosts");
    let text = accept_new(&with_known_hosts(
        &fleet,
        &fleet.inventory_text(SERVICE),
        &created,
    ));
    let inventory = write_inventory(&fleet, "accept-new-create.toml", &text);

    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_eq!(
        read(&created),
        format!("{}\n", fleet.host(0).known_hosts_line())
    );
}

// ---------------------------------------------------------------------------------------------
// Changed keys

#[test]
fn changed_key_is_refused_under_strict_and_under_accept_new() {
    let mut fleet = Fleet::start(3);
    fleet.rekey(1);
    let before = read(fleet.known_hosts());
    let strict = fleet.write_inventory(SERVICE);
    let lenient = write_inventory(
        &fleet,
        "accept-new.toml",
        &accept_new(&fleet.inventory_text(SERVICE)),
    );
    let fingerprint = ssh_keygen_fingerprint(&fleet.host(1).host_key_public);

    for inventory in [&strict, &lenient] {
        let ran = check(inventory);
        assert_eq!(ran.code, 1, "{}: {ran:?}", inventory.display());
        assert_eq!(ran.json()["result"], "failed");
        assert_ok(&ran, "web1");
        assert_ok(&ran, "web3");
        // web2 is line 2 of the fleet's known_hosts.
        assert_eq!(
            error_of(&ran, &fleet, 1),
            format!(
                "connect: HOST KEY CHANGED for web2 ([127.0.0.1]:[PORT]): the server presented \
                 ssh-ed25519 {fingerprint}, which differs from the key recorded in \
                 [DIR]/known_hosts:2. This may be an attack. If the host was really reinstalled, \
                 remove that line and verify the new key out of band."
            ),
            "{}",
            inventory.display()
        );
        assert_eq!(
            read(fleet.known_hosts()),
            before,
            "known_hosts must not change"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The `host_key` pin

#[test]
fn host_key_pin_mismatch_is_refused_and_a_matching_pin_connects() {
    let fleet = Fleet::start(2);
    let other = generate_public_key("ed25519");
    let wrong = with_host_line(
        &fleet.inventory_text(SERVICE),
        "web1",
        &format!("host_key = \"{other}\""),
    );
    let inventory = write_inventory(&fleet, "pin-wrong.toml", &wrong);
    let ran = check(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_ok(&ran, "web2");
    let fingerprint = ssh_keygen_fingerprint(&fleet.host(0).host_key_public);
    assert_eq!(
        error_of(&ran, &fleet, 0),
        format!(
            "connect: host key of web1 ([127.0.0.1]:[PORT]) does not match its `host_key` pin in \
             the inventory: the server presented ssh-ed25519 {fingerprint}. Refusing to connect."
        )
    );

    // Another host's real key is just as wrong.
    let swapped = with_host_line(
        &fleet.inventory_text(SERVICE),
        "web1",
        &format!("host_key = \"{}\"", fleet.host(1).host_key_public),
    );
    let ran = check(&write_inventory(&fleet, "pin-swapped.toml", &swapped));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        error_of(&ran, &fleet, 0).contains("`host_key` pin"),
        "{ran:?}"
    );
    assert_ok(&ran, "web2");

    // A pin of another key type is wrong too.
    let ecdsa = with_host_line(
        &fleet.inventory_text(SERVICE),
        "web1",
        &format!("host_key = \"{}\"", generate_public_key("ecdsa")),
    );
    let ran = check(&write_inventory(&fleet, "pin-ecdsa.toml", &ecdsa));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        error_of(&ran, &fleet, 0).contains("`host_key` pin"),
        "{ran:?}"
    );

    // The right key (with a trailing comment, which is ignored) connects.
    let right = with_host_line(
        &fleet.inventory_text(SERVICE),
        "web1",
        &format!(
            "host_key = \"{} pinned-by-test\"",
            fleet.host(0).host_key_public
        ),
    );
    let ran = check(&write_inventory(&fleet, "pin-right.toml", &right));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");
}

#[test]
fn host_key_pin_is_checked_in_addition_to_known_hosts() {
    let fleet = Fleet::start(1);
    std::fs::write(fleet.known_hosts(), "").expect("empty known_hosts");
    let pinned = with_host_line(
        &fleet.inventory_text(SERVICE),
        "web1",
        &format!("host_key = \"{}\"", fleet.host(0).host_key_public),
    );

    // A matching pin does not replace known_hosts: the host is still unknown under strict.
    let ran = check(&write_inventory(&fleet, "pin-strict.toml", &pinned));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        error_of(&ran, &fleet, 0).contains("is not in any known_hosts file"),
        "{ran:?}"
    );
    assert_eq!(read(fleet.known_hosts()), "");

    // A wrong pin under accept-new: refused, and the key is NOT recorded.
    let wrong = with_host_line(
        &accept_new(&fleet.inventory_text(SERVICE)),
        "web1",
        &format!("host_key = \"{}\"", generate_public_key("ed25519")),
    );
    let ran = check(&write_inventory(
        &fleet,
        "pin-wrong-accept-new.toml",
        &wrong,
    ));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        error_of(&ran, &fleet, 0).contains("`host_key` pin"),
        "{ran:?}"
    );
    assert_eq!(
        read(fleet.known_hosts()),
        "",
        "a refused key must not be recorded"
    );
}

// ---------------------------------------------------------------------------------------------
// known_hosts formats and markers

#[test]
fn revoked_key_is_refused_even_with_a_matching_line() {
    let fleet = Fleet::start(2);
    let host = fleet.host(0);
    let mut text = read(fleet.known_hosts());
    text.push_str(&format!(
        "@revoked [127.0.0.1]:{} {}\n",
        host.port, host.host_key_public
    ));
    std::fs::write(fleet.known_hosts(), &text).expect("write known_hosts");
    let fingerprint = ssh_keygen_fingerprint(&host.host_key_public);
    let strict = fleet.write_inventory(SERVICE);
    let lenient = write_inventory(
        &fleet,
        "accept-new.toml",
        &accept_new(&fleet.inventory_text(SERVICE)),
    );

    for inventory in [&strict, &lenient] {
        let ran = check(inventory);
        assert_eq!(ran.code, 1, "{}: {ran:?}", inventory.display());
        assert_ok(&ran, "web2");
        // The @revoked line is line 3 (after the two normal lines).
        assert_eq!(
            error_of(&ran, &fleet, 0),
            format!(
                "connect: host key of web1 ([127.0.0.1]:[PORT], ssh-ed25519 {fingerprint}) is \
                 REVOKED in [DIR]/known_hosts:3. Refusing to connect."
            ),
            "{}",
            inventory.display()
        );
        assert_eq!(
            read(fleet.known_hosts()),
            text,
            "known_hosts must not change"
        );
    }
}

#[test]
fn hashed_known_hosts_still_verify() {
    let mut fleet = Fleet::start(2);
    let hashed = fleet.dir().join("known_hosts.hashed");
    std::fs::copy(fleet.known_hosts(), &hashed).expect("copy known_hosts");
    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .expect("ssh-keygen -H runs");
    assert!(status.status.success(), "ssh-keygen -H failed: {status:?}");
    let contents = read(&hashed);
    assert_eq!(contents.lines().count(), 2, "{contents}");
    assert!(
        contents
            .lines()
            .all(|line| line.starts_with("|1|") && !line.contains("127.0.0.1")),
        "not hashed:\n{contents}"
    );
    let text = with_known_hosts(&fleet, &fleet.inventory_text(SERVICE), &hashed);
    let inventory = write_inventory(&fleet, "hashed.toml", &text);

    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");

    // The hashed entries are really matched: a new key for web2 is a CHANGED key, not unknown.
    fleet.rekey(1);
    let ran = check(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_ok(&ran, "web1");
    let error = error_of(&ran, &fleet, 1);
    assert!(
        error.contains("HOST KEY CHANGED") && error.contains("[DIR]/known_hosts.hashed:2"),
        "{error}"
    );
}

#[test]
fn wildcard_entries_are_accepted() {
    let fleet = Fleet::start(2);
    let text: String = fleet
        .hosts()
        .iter()
        .map(|host| format!("[127.0.0.*]:{} {}\n", host.port, host.host_key_public))
        .collect();
    std::fs::write(fleet.known_hosts(), &text).expect("write known_hosts");
    let inventory = fleet.write_inventory(SERVICE);

    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");
    assert_eq!(read(fleet.known_hosts()), text);
}

#[test]
fn entries_that_do_not_match_the_host_and_port_trust_nothing() {
    let fleet = Fleet::start(3);
    let (web1, web2, web3) = (fleet.host(0), fleet.host(1), fleet.host(2));
    // web1: a pattern for another network. web2: a wildcard with the host itself negated.
    // web3: the bare address, which OpenSSH only looks up for port 22.
    let text = format!(
        "[127.0.1.*]:{} {}\n[127.0.0.*]:{port},![127.0.0.1]:{port} {}\n127.0.0.1 {}\n",
        web1.port,
        web1.host_key_public,
        web2.host_key_public,
        web3.host_key_public,
        port = web2.port,
    );
    std::fs::write(fleet.known_hosts(), &text).expect("write known_hosts");
    let ran = check(&fleet.write_inventory(SERVICE));
    assert_eq!(ran.code, 1, "{ran:?}");
    for index in 0..3 {
        let error = error_of(&ran, &fleet, index);
        assert!(error.contains("is not in any known_hosts file"), "{error}");
    }
    assert_eq!(read(fleet.known_hosts()), text);
}

#[test]
fn a_known_key_of_another_type_only_is_refused() {
    let fleet = Fleet::start(2);
    let ecdsa = generate_public_key("ecdsa");
    assert!(ecdsa.starts_with("ecdsa-sha2-"), "{ecdsa}");
    let algorithm = ecdsa
        .split_whitespace()
        .next()
        .expect("algorithm")
        .to_string();
    // web1 is known only by an ECDSA key (line 1); web2 normally (line 2).
    let text = format!(
        "[127.0.0.1]:{} {ecdsa}\n{}\n",
        fleet.host(0).port,
        fleet.host(1).known_hosts_line()
    );
    std::fs::write(fleet.known_hosts(), &text).expect("write known_hosts");
    let fingerprint = ssh_keygen_fingerprint(&fleet.host(0).host_key_public);
    let strict = fleet.write_inventory(SERVICE);
    let lenient = write_inventory(
        &fleet,
        "accept-new.toml",
        &accept_new(&fleet.inventory_text(SERVICE)),
    );

    for inventory in [&strict, &lenient] {
        let ran = check(inventory);
        assert_eq!(ran.code, 1, "{}: {ran:?}", inventory.display());
        assert_ok(&ran, "web2");
        assert_eq!(
            error_of(&ran, &fleet, 0),
            format!(
                "connect: host key of web1 ([127.0.0.1]:[PORT]) is recorded as {algorithm} in \
                 [DIR]/known_hosts:1, but the server presented ssh-ed25519 {fingerprint}. \
                 Refusing to connect; add the host's ssh-ed25519 key after verifying it."
            ),
            "{}",
            inventory.display()
        );
        assert_eq!(
            read(fleet.known_hosts()),
            text,
            "known_hosts must not change"
        );
    }
}

#[test]
fn every_known_hosts_file_is_consulted_and_revocation_in_any_file_wins() {
    let fleet = Fleet::start(2);
    let first = fleet.dir().join("known_hosts.first");
    let second = fleet.dir().join("known_hosts.second");
    // The first file knows only web2, the second only web1.
    std::fs::write(&first, format!("{}\n", fleet.host(1).known_hosts_line())).expect("write");
    std::fs::write(
        &second,
        format!("# comment\n{}\n", fleet.host(0).known_hosts_line()),
    )
    .expect("write");
    let original = format!("known_hosts = [\"{}\"]", fleet.known_hosts().display());
    let text = fleet.inventory_text(SERVICE);
    assert!(text.contains(&original));
    let text = text.replace(
        &original,
        &format!(
            "known_hosts = [\"{}\", \"{}\"]",
            first.display(),
            second.display()
        ),
    );
    let inventory = write_inventory(&fleet, "two-files.toml", &text);
    let ran = check(&inventory);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_ok(&ran, "web1");
    assert_ok(&ran, "web2");

    // web2 trusted in the first file but revoked in the second: revoked.
    let web2 = fleet.host(1);
    let mut revoked = read(&second);
    revoked.push_str(&format!(
        "@revoked [127.0.0.1]:{} {}\n",
        web2.port, web2.host_key_public
    ));
    std::fs::write(&second, revoked).expect("write");
    let ran = check(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_ok(&ran, "web1");
    let error = error_of(&ran, &fleet, 1);
    assert!(
        error.contains("REVOKED in [DIR]/known_hosts.second:3"),
        "{error}"
    );
}
