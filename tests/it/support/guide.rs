//! README.md's "Your first deploy", run as written: [`guide_script`] takes the guide's
//! controller-side blocks out of README.md (each ```sh fence right after a
//! `<!-- first-deploy: run -->` line, in order) and [`FirstDeploy`] gives them a controller
//! and two hosts to run against. `tests/it/first_deploy.rs` runs them; `scripts/demo.sh` runs
//! the same text through `testfleet start N --first-deploy`, so the guide cannot drift from
//! what the tool does.
//!
//! What the guide does as root on the hosts (a `deploy` user, the systemd unit, the sudoers
//! line) cannot run here; the hosts get stand-ins instead: `sudo` that allows exactly `sudo -n
//! systemctl restart SERVICE` (what the guide's sudoers line allows), and `systemctl` that
//! records each restart with the release `current` names at that moment, and answers
//! `is-active` once the service was restarted. The controller gets what the guide's
//! `~/.ssh/config` step sets up: a home with `.ssh/config` (each host's address, port, user and
//! key) and `.ssh/known_hosts`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Fleet, TestHost, deploy, path_str, sh_quote};

/// The line that marks the next ```sh fence of README.md as part of the tested guide.
pub const GUIDE_MARKER: &str = "<!-- first-deploy: run -->";
/// The service the guide deploys.
pub const GUIDE_SERVICE: &str = "myapp";

/// README.md's guide blocks, in order, as one bash script (each block headed by a comment
/// naming its README line). Panics when README.md has no marked block or a marker is not
/// followed by a ```sh fence.
fn guide_script() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let text = fs::read_to_string(&readme)
        .unwrap_or_else(|error| panic!("reading {}: {error}", readme.display()));
    let script = extract_blocks(&text).unwrap_or_else(|problem| panic!("README.md: {problem}"));
    format!("# README.md \"Your first deploy\": the blocks marked {GUIDE_MARKER}\n{script}")
}

fn extract_blocks(text: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut script = String::new();
    let mut blocks = 0;
    let mut index = 0;
    while index < lines.len() {
        if lines[index].trim() != GUIDE_MARKER {
            index += 1;
            continue;
        }
        let fence = index + 1;
        if lines.get(fence).map(|line| line.trim()) != Some("```sh") {
            return Err(format!(
                "line {}: {GUIDE_MARKER} must be followed by a ```sh fence",
                index + 1
            ));
        }
        let end = (fence + 1..lines.len())
            .find(|&line| lines[line].trim() == "```")
            .ok_or_else(|| format!("line {}: the ```sh fence is not closed", fence + 1))?;
        script.push_str(&format!("\n# README.md line {}\n", fence + 2));
        for line in &lines[fence + 1..end] {
            script.push_str(line);
            script.push('\n');
        }
        blocks += 1;
        index = end + 1;
    }
    if blocks == 0 {
        return Err(format!("no block marked {GUIDE_MARKER}"));
    }
    Ok(script)
}

/// A controller (home with an ssh config, an empty project directory) for the guide's blocks,
/// against the hosts of `fleet`, with the host-side stand-ins in place.
pub struct FirstDeploy {
    /// `$HOME` of the guide's commands: `.ssh/config`, `.ssh/known_hosts`.
    pub home: PathBuf,
    /// The working directory of the guide's commands (empty at first).
    pub project: PathBuf,
    /// The guide's blocks, written to a file (see [`guide_script`]).
    pub script: PathBuf,
    /// A directory holding only `deploy` (a link to the binary under test), for `PATH`.
    pub bin: PathBuf,
}

impl FirstDeploy {
    /// Sets up the controller in `<fleet dir>/controller` for `deploy_binary`, and the
    /// stand-ins on every host of `fleet`.
    pub fn prepare(fleet: &Fleet, deploy_binary: &Path) -> FirstDeploy {
        let controller = fleet.dir().join("controller");
        let home = controller.join("home");
        let project = controller.join("project");
        let bin = controller.join("bin");
        let ssh = home.join(".ssh");
        for dir in [&ssh, &project, &bin] {
            fs::create_dir_all(dir)
                .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
        }
        let mut config = String::from("# the guide's ~/.ssh/config, for the test fleet\n");
        for host in fleet.hosts() {
            config.push_str(&format!(
                "Host {}\n    HostName 127.0.0.1\n    Port {}\n    User {}\n    IdentityFile {}\n",
                host.name,
                host.port,
                fleet.user(),
                path_str(fleet.client_key()),
            ));
            stand_ins(host);
        }
        write(&ssh.join("config"), &config);
        let known_hosts = fs::read_to_string(fleet.known_hosts())
            .unwrap_or_else(|error| panic!("reading the fleet's known_hosts: {error}"));
        write(&ssh.join("known_hosts"), &known_hosts);
        let link = bin.join("deploy");
        std::os::unix::fs::symlink(deploy_binary, &link)
            .unwrap_or_else(|error| panic!("linking {}: {error}", link.display()));
        let script = controller.join("first-deploy.sh");
        write(&script, &guide_script());
        FirstDeploy {
            home,
            project,
            script,
            bin,
        }
    }

    /// `bash` running the guide's script in the project directory, with the controller's
    /// `HOME` and `deploy` first on `PATH` (stdin from /dev/null: nothing may prompt).
    pub fn command(&self) -> Command {
        let mut command = Command::new("bash");
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .args(["-eu", "-o", "pipefail", path_str(&self.script)])
            .current_dir(&self.project)
            .env("HOME", &self.home)
            .env("PATH", format!("{}:{path}", path_str(&self.bin)))
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        command
    }

    /// Where `host`'s `systemctl` stand-in records what it was asked.
    pub fn systemctl_log(host: &TestHost) -> PathBuf {
        host.dir().join("systemctl.log")
    }
}

/// The path of the binary under test (as [`deploy`] runs it).
pub fn deploy_binary() -> PathBuf {
    PathBuf::from(deploy().get_program())
}

fn stand_ins(host: &TestHost) {
    let service = GUIDE_SERVICE;
    host.wrap_command(
        "sudo",
        &format!(
            "# stand-in for sudo with the guide's sudoers line: this one command, never a prompt\n\
             [ \"$1\" = -n ] || {{ echo 'sudo: a password is required (use sudo -n)' >&2; exit 1; }}\n\
             shift\n\
             [ \"$*\" = 'systemctl restart {service}' ] || {{ echo \"sudo: not allowed: $*\" >&2; exit 1; }}\n\
             exec \"$@\"\n"
        ),
    );
    let log = sh_quote(path_str(&FirstDeploy::systemctl_log(host)));
    let active = sh_quote(path_str(&host.dir().join("service.active")));
    let current = sh_quote(path_str(&host.root.join(service).join("current")));
    host.wrap_command(
        "systemctl",
        &format!(
            "# stand-in for systemctl: records restarts (with what current names) and is-active\n\
             case \"$*\" in\n\
             'restart {service}') echo \"restart $(readlink {current})\" >> {log}; : > {active} ;;\n\
             'is-active --quiet {service}') echo is-active >> {log}; [ -f {active} ] ;;\n\
             *) echo \"systemctl stand-in: unexpected: $*\" >&2; exit 1 ;;\n\
             esac\n"
        ),
    );
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_markers_are_taken_in_order() {
        let text = format!(
            "intro\n```sh\nnot this\n```\n{GUIDE_MARKER}\n```sh\none\n```\ntext\n{GUIDE_MARKER}\n```sh\ntwo\nthree\n```\n"
        );
        let script = extract_blocks(&text).expect("blocks");
        assert_eq!(
            script,
            "\n# README.md line 7\none\n\n# README.md line 12\ntwo\nthree\n"
        );
        assert!(extract_blocks("no marker").is_err());
        assert!(extract_blocks(&format!("{GUIDE_MARKER}\ntext\n")).is_err());
        assert!(extract_blocks(&format!("{GUIDE_MARKER}\n```sh\nopen\n")).is_err());
    }
}
