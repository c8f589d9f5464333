//! The one integration-test binary: drives the real `deploy` binary against real OpenSSH
//! `sshd` processes started by `support::Fleet` on 127.0.0.1.

mod support;

mod artifact_policy;
mod auth;
mod chaos;
mod check;
mod diff;
mod escapes;
mod faults;
mod hooks;
mod host_keys;
mod inventory_errors;
mod output;
mod push;
mod push_failures;
mod rollback;
mod status;
mod web;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one `deploy` invocation did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The `hosts[]` entry of `host` (and `service` when given).
    pub fn host(&self, host: &str) -> serde_json::Value {
        let document = self.json();
        document["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|entry| entry["host"] == host).cloned())
            .unwrap_or_else(|| panic!("no host {host} in {document:#}"))
    }
}

/// Runs `deploy ARGS` and captures everything.
pub fn deploy(args: &[&str]) -> Ran {
    run(support::deploy().args(args))
}

pub fn run(command: &mut Command) -> Ran {
    let output = command.output().expect("the deploy binary runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Builds `<dir>/<name>.tar.gz` from `files` (path, content) with the system tar.
pub fn tarball(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let source = dir.join(format!("{name}.src"));
    let _ = std::fs::remove_dir_all(&source);
    for (path, content) in files {
        let file = source.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, content).expect("write file");
    }
    let archive = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&source)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar failed");
    archive
}

/// `<dir>/<name>.tar.gz` holding `index.html` (= `name`) and `blob.bin`: `megabytes` MiB from
/// /dev/urandom (incompressible), gzipped fast.
pub fn big_tarball(dir: &Path, name: &str, megabytes: usize) -> PathBuf {
    let source = dir.join(format!("{name}.src"));
    let _ = std::fs::remove_dir_all(&source);
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("index.html"), name).expect("write index");
    let mut random = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
    let mut blob = std::fs::File::create(source.join("blob.bin")).expect("create blob");
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..megabytes {
        std::io::Read::read_exact(&mut random, &mut buffer).expect("read urandom");
        std::io::Write::write_all(&mut blob, &buffer).expect("write blob");
    }
    drop(blob);
    let archive = dir.join(format!("{name}.tar.gz"));
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -cf - -C \"$1\" . | gzip -1 > \"$2\"")
        .arg("sh")
        .arg(&source)
        .arg(&archive)
        .status()
        .expect("sh runs");
    assert!(status.success(), "tar | gzip failed");
    std::fs::remove_dir_all(&source).expect("remove the source tree");
    archive
}

/// `deploy -i INVENTORY --output json --no-progress ARGS`.
pub fn deploy_json(inventory: &Path, args: &[&str]) -> Ran {
    let mut all = vec![
        "-i",
        inventory.to_str().expect("utf-8"),
        "--output",
        "json",
        "--no-progress",
    ];
    all.extend_from_slice(args);
    deploy(&all)
}

/// Replaces run-dependent values (ports, temp paths, run ids, durations) for whole-output checks.
pub fn normalize(text: &str, fleet: &support::Fleet) -> String {
    let mut text = text.replace(&fleet.dir().display().to_string(), "[DIR]");
    for host in fleet.hosts() {
        text = text.replace(&format!(":{}", host.port), ":[PORT]");
        text = text.replace(&format!(" {} ", host.port), " [PORT] ");
    }
    let run_id = regex_like_run_id(&text);
    for id in run_id {
        text = text.replace(&id, "[RUN]");
    }
    text.lines()
        .map(|line| {
            line.split(' ')
                .map(|word| {
                    let trimmed = word.trim_end_matches('s');
                    if word.ends_with('s')
                        && !trimmed.is_empty()
                        && trimmed.parse::<f64>().is_ok()
                        && trimmed.contains('.')
                    {
                        "[TIME]".to_string()
                    } else {
                        word.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// Run ids look like `20261126T170102Z-1a2b`.
fn regex_like_run_id(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| {
            word.len() > 18
                && word.as_bytes().get(8) == Some(&b'T')
                && word.as_bytes().get(15) == Some(&b'Z')
                && word.as_bytes().get(16) == Some(&b'-')
                && word[..8].bytes().all(|b| b.is_ascii_digit())
        })
        .map(str::to_string)
        .collect()
}

/// Every path under `root` with its type, link target or content digest: compare two of them
/// to prove a tree is unchanged bit for bit.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    use sha2::Digest;
    let mut entries = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in listing.flatten() {
            let path = entry.path();
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let metadata = std::fs::symlink_metadata(&path).expect("metadata");
            let value = if metadata.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&path).expect("link").display()
                )
            } else if metadata.is_dir() {
                pending.push(path);
                "dir".to_string()
            } else {
                let bytes = std::fs::read(&path).expect("read");
                format!("file {:x}", sha2::Sha256::digest(&bytes))
            };
            entries.insert(name, value);
        }
    }
    entries
}
