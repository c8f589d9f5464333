//! Running `deploy` and what a run did: [`Ran`], the JSON and text forms of a run against an
//! inventory, and the one `push`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{deploy, path_str};

/// What one `deploy` invocation did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The `hosts[]` entry of `host`.
    pub fn host(&self, host: &str) -> Value {
        let document = self.json();
        document["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|entry| entry["host"] == host).cloned())
            .unwrap_or_else(|| panic!("no host {host} in {document:#}"))
    }

    /// The `hosts[]` entry of (`service`, `host`).
    pub fn entry(&self, service: &str, host: &str) -> Value {
        let document = self.json();
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

    /// The `error` of `host`'s JSON row (empty when none).
    pub fn error(&self, host: &str) -> String {
        self.host(host)["error"].as_str().unwrap_or("").to_string()
    }

    /// Panics, showing the whole run, unless it exited with `code`; returns the run.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Ran {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

/// Runs `command` to its end and captures everything.
pub fn run(command: &mut Command) -> Ran {
    let output = command.output().expect("the deploy binary runs");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `deploy -i INVENTORY --output json --no-progress`, ready for more arguments.
pub fn json_command(inventory: &Path) -> Command {
    let mut command = deploy();
    command.args([
        "-i",
        path_str(inventory),
        "--output",
        "json",
        "--no-progress",
    ]);
    command
}

/// `deploy -i INVENTORY --output json --no-progress ARGS`.
pub fn deploy_json(inventory: &Path, args: &[&str]) -> Ran {
    run(json_command(inventory).args(args))
}

/// `deploy -i INVENTORY --no-progress ARGS`, with the default text output.
pub fn deploy_text(inventory: &Path, args: &[&str]) -> Ran {
    run(deploy()
        .args(["-i", path_str(inventory), "--no-progress"])
        .args(args))
}

/// `deploy -i INVENTORY --output json --no-progress push --version V --artifact A EXTRA`.
pub fn push(inventory: &Path, version: &str, artifact: &Path, extra: &[&str]) -> Ran {
    run(json_command(inventory)
        .args(push_args(version, artifact))
        .args(extra))
}

/// `push --version V --artifact A`.
pub(super) fn push_args<'a>(version: &'a str, artifact: &'a Path) -> [&'a str; 5] {
    [
        "push",
        "--version",
        version,
        "--artifact",
        path_str(artifact),
    ]
}
