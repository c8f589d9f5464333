//! Exec: the program that runs an ad-hoc command (`deploy exec`) or a named task (`deploy run`)
//! on a host, and the reading of what it returned (`ExecOutput`).
//!
//! The command runs under `sh -c`, with stdin from `/dev/null`, with the inventory's variables
//! (`[services.NAME.env]`, the host's `env` on top) exported, and with a service: in
//! `<base_dir>/current` with the `DEPLOY_*` variables of SPEC §2 (`DEPLOY_VERSION` and
//! `DEPLOY_RELEASE_DIR` the live release). The host itself stops it when the host's time is up
//! (`timeout -k 5`, exit status 124), so a command the controller gives up on does not keep
//! running unseen. `--sudo` runs it through `sudo -n` (never prompts), passing the variables
//! through `env`. The program's own problems (no live release, a directory it cannot enter)
//! exit 125 with a message on stderr.

use std::collections::BTreeMap;

use super::layout;
use super::script::{Script, quote, script};

/// Exit status of the program itself when it could not start the command.
pub const EXEC_SETUP_FAILED: u32 = 125;
/// Exit status of `timeout` when the host's time ran out.
pub const EXEC_TIMED_OUT: u32 = 124;
/// How much of each output stream a result keeps (start and end).
pub const EXEC_OUTPUT_LIMIT: usize = 64 * 1024;

/// Where and how a command runs on one host.
pub struct ExecTarget<'a> {
    /// The service whose live release the command runs in (`--service`), with its base dir.
    pub service: Option<(&'a str, &'a str)>,
    pub host: &'a str,
    pub run_id: &'a str,
    pub variables: &'a BTreeMap<String, String>,
    pub sudo: bool,
    /// The host stops the command after this many seconds.
    pub timeout_seconds: u64,
}

/// `export 'NAME=value'` for each variable (names are shell names, checked by the inventory).
pub fn exports(variables: &BTreeMap<String, String>) -> Script {
    let mut script = Script::new();
    for (name, value) in variables {
        script.push(script!(
            "export {assignment}\n",
            assignment = quote(&format!("{name}={value}"))
        ));
    }
    script
}

/// The program that runs `command` on one host.
pub fn exec_script(target: &ExecTarget<'_>, command: &str) -> String {
    let mut script = Script::new();
    script.line("set -u\n");
    match target.service {
        Some((service, base_dir)) => {
            script.push(script!(
                "b={base}\n\
                 [ -e \"$b\" ] || {{ echo \"no live release in $b (nothing was pushed here yet)\" >&2; exit {setup}; }}\n\
                 cd -- \"$b\" || {{ echo \"cannot enter $b\" >&2; exit {setup}; }}\n\
                 [ -d {current}/ ] || {{ echo \"no live release in $b (nothing was pushed here yet)\" >&2; exit {setup}; }}\n\
                 DEPLOY_BASE_DIR=$(pwd -P)\n\
                 cd -- {current}/ || exit {setup}\n\
                 DEPLOY_RELEASE_DIR=$(pwd -P)\n\
                 cd -- \"$DEPLOY_RELEASE_DIR\" || exit {setup}\n\
                 DEPLOY_VERSION=${{DEPLOY_RELEASE_DIR##*/}}\n\
                 DEPLOY_SERVICE={service}\n\
                 export DEPLOY_BASE_DIR DEPLOY_RELEASE_DIR DEPLOY_VERSION DEPLOY_SERVICE\n",
                base = quote(base_dir),
                setup = &(EXEC_SETUP_FAILED as u64),
                current = layout::CURRENT,
                service = quote(service),
            ));
        }
        None => {
            script.line("DEPLOY_SERVICE=\nexport DEPLOY_SERVICE\n");
        }
    }
    script.push(script!(
        "DEPLOY_HOST={host}\nDEPLOY_RUN_ID={run_id}\nexport DEPLOY_HOST DEPLOY_RUN_ID\n{exports}",
        host = quote(target.host),
        run_id = quote(target.run_id),
        exports = exports(target.variables),
    ));
    let runner = if target.sudo {
        let mut runner = Script::new();
        runner.line("sudo -n -- env");
        for name in ["DEPLOY_SERVICE", "DEPLOY_HOST", "DEPLOY_RUN_ID"] {
            runner.push(script!(
                " {assignment}",
                assignment = sudo_passthrough(name)
            ));
        }
        if target.service.is_some() {
            for name in ["DEPLOY_BASE_DIR", "DEPLOY_RELEASE_DIR", "DEPLOY_VERSION"] {
                runner.push(script!(
                    " {assignment}",
                    assignment = sudo_passthrough(name)
                ));
            }
        }
        for (name, value) in target.variables {
            runner.push(script!(
                " {assignment}",
                assignment = quote(&format!("{name}={value}"))
            ));
        }
        runner.line(" ");
        runner
    } else {
        Script::new()
    };
    script.push(script!(
        "if command -v timeout >/dev/null 2>&1; then\n\
         \x20 exec timeout -k 5 {seconds} {runner}sh -c {command} </dev/null\n\
         else\n\
         \x20 exec {runner}sh -c {command} </dev/null\n\
         fi\n",
        seconds = &target.timeout_seconds.max(1),
        runner = &runner,
        command = quote(command),
    ));
    script.into_string()
}

/// Runs `append` (a history append of `Lowering::append_history_text`) only where the
/// service's `<base_dir>/.deploy` exists: an exec without `--service` leaves its record with
/// every service already deployed on the host and creates nothing.
pub fn record_if_deployed(base_dir: &str, append: &str) -> String {
    // `append` is a whole program lowered here in `remote` (as `record_then` nests one).
    let guard = script!(
        "if [ -d {state_dir} ]; then\n",
        state_dir = quote(&super::script::join(base_dir, layout::STATE)),
    );
    format!("{guard}(\n{append}\n)\nfi\n")
}

/// `"NAME=$NAME"` for one of the fixed DEPLOY_* names.
fn sudo_passthrough(name: &'static str) -> Script {
    match name {
        "DEPLOY_SERVICE" => Script::from("\"DEPLOY_SERVICE=$DEPLOY_SERVICE\""),
        "DEPLOY_HOST" => Script::from("\"DEPLOY_HOST=$DEPLOY_HOST\""),
        "DEPLOY_RUN_ID" => Script::from("\"DEPLOY_RUN_ID=$DEPLOY_RUN_ID\""),
        "DEPLOY_BASE_DIR" => Script::from("\"DEPLOY_BASE_DIR=$DEPLOY_BASE_DIR\""),
        "DEPLOY_RELEASE_DIR" => Script::from("\"DEPLOY_RELEASE_DIR=$DEPLOY_RELEASE_DIR\""),
        _ => Script::from("\"DEPLOY_VERSION=$DEPLOY_VERSION\""),
    }
}

/// What a command returned on one host, as shown and serialised: text (lossy UTF-8), each
/// stream bounded (start and end kept), and the exit code (`None`: killed by a signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<u32>,
    /// Why the command did not run or did not finish, when the host says so.
    pub problem: Option<String>,
}

impl ExecOutput {
    /// Reads a finished exec program's streams and status (untrusted host output).
    pub fn parse(
        status: Option<u32>,
        signal: Option<&str>,
        stdout: &[u8],
        stderr: &[u8],
        timeout_seconds: u64,
    ) -> ExecOutput {
        let text =
            |bytes: &[u8]| crate::text::shorten(&String::from_utf8_lossy(bytes), EXEC_OUTPUT_LIMIT);
        let stderr_text = text(stderr);
        let problem = match (status, signal) {
            (Some(0), _) => None,
            (Some(EXEC_TIMED_OUT), _) => Some(format!(
                "timed out after {timeout_seconds}s (host_timeout): stopped on the host"
            )),
            (Some(EXEC_SETUP_FAILED), _) => Some(
                stderr_text
                    .lines()
                    .last()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("exit status {EXEC_SETUP_FAILED}")),
            ),
            (Some(code), _) => Some(format!("exit status {code}")),
            (None, Some(signal)) => Some(format!("killed by signal {signal}")),
            (None, None) => Some("no exit status".to_string()),
        };
        ExecOutput {
            stdout: text(stdout),
            stderr: stderr_text,
            exit_code: status,
            problem,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Hosts with identical output and exit code, grouped: each group's host labels in the given
/// order, groups in the order of their first host.
pub fn group_outputs<'a>(
    outputs: &[(&'a str, &'a ExecOutput)],
) -> Vec<(Vec<&'a str>, &'a ExecOutput)> {
    let mut groups: Vec<(Vec<&str>, &ExecOutput)> = Vec::new();
    for (label, output) in outputs {
        match groups.iter_mut().find(|(_, first)| {
            first.stdout == output.stdout
                && first.stderr == output.stderr
                && first.exit_code == output.exit_code
        }) {
            Some((labels, _)) => labels.push(label),
            None => groups.push((vec![label], output)),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_locally(script: &str, directory: &std::path::Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(directory)
            .output()
            .expect("sh runs")
    }

    fn target<'a>(
        service: Option<(&'a str, &'a str)>,
        variables: &'a BTreeMap<String, String>,
    ) -> ExecTarget<'a> {
        ExecTarget {
            service,
            host: "web1",
            run_id: "run-1",
            variables,
            sudo: false,
            timeout_seconds: 30,
        }
    }

    #[test]
    fn a_command_runs_in_the_live_release_with_its_variables() {
        let directory = tempfile::tempdir().expect("tempdir");
        let base = directory.path().join("app");
        std::fs::create_dir_all(base.join("releases/v7")).expect("mkdir");
        std::os::unix::fs::symlink("releases/v7", base.join("current")).expect("link");
        let variables = BTreeMap::from([("GREETING".to_string(), "it's $HOME".to_string())]);
        let script = exec_script(
            &target(Some(("myapp", "app")), &variables),
            "echo \"$GREETING|$DEPLOY_SERVICE|$DEPLOY_HOST|$DEPLOY_VERSION|${PWD##*/}\"",
        );
        let output = run_locally(&script, directory.path());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "it's $HOME|myapp|web1|v7|v7\n"
        );
    }

    #[test]
    fn no_live_release_is_a_setup_failure_with_a_message() {
        let directory = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(directory.path().join("app")).expect("mkdir");
        let variables = BTreeMap::new();
        let script = exec_script(&target(Some(("myapp", "app")), &variables), "true");
        let output = run_locally(&script, directory.path());
        let parsed = ExecOutput::parse(
            output.status.code().map(|code| code as u32),
            None,
            &output.stdout,
            &output.stderr,
            30,
        );
        assert_eq!(parsed.exit_code, Some(EXEC_SETUP_FAILED));
        assert_eq!(
            parsed.problem.as_deref(),
            Some("no live release in app (nothing was pushed here yet)")
        );
    }

    #[test]
    fn the_host_stops_a_command_when_its_time_is_up() {
        let directory = tempfile::tempdir().expect("tempdir");
        let variables = BTreeMap::new();
        let mut exec = target(None, &variables);
        exec.timeout_seconds = 1;
        let output = run_locally(&exec_script(&exec, "sleep 30"), directory.path());
        assert_eq!(output.status.code(), Some(EXEC_TIMED_OUT as i32));
    }

    #[test]
    fn outputs_are_grouped_by_identical_text_and_status() {
        let ok = ExecOutput::parse(Some(0), None, b"up\n", b"", 1);
        let same = ExecOutput::parse(Some(0), None, b"up\n", b"", 1);
        let failed = ExecOutput::parse(Some(1), None, b"up\n", b"", 1);
        let outputs = [("web1", &ok), ("web2", &failed), ("web3", &same)];
        let groups = group_outputs(&outputs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, ["web1", "web3"]);
        assert_eq!(groups[1].0, ["web2"]);
    }
}
