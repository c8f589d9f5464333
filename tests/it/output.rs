//! The operator's view (SPEC §5–§6, issue 7): plain progress lines and the summary table without
//! a terminal, JSON diagnostics, progress bars in a real terminal (tmux), `NO_COLOR`, help and
//! completions, and error messages that say what to do.
//!
//! Nothing here asserts on wall-clock time; the deadlines only keep a broken run from hanging
//! the suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    self, Fleet, Ran, big_tarball, deploy_text, path_str, redact, run, squeeze_columns, tarball,
};

/// How long a run inside tmux may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(300);
/// Poll step for `tmux capture-pane`.
const FRAME_POLL: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// Helpers

/// `[services.app]` pushing `v1.tar.gz` (relative to the inventory) as `v1`.
const SERVICE: &str =
    "[services.app]\nbase_dir = \"app\"\nversion = \"v1\"\nartifact = \"v1.tar.gz\"\n";

/// Every failed check, reported together at the end (one failure does not hide the others).
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }

    fn finish(self, context: &str) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}\n\n{context}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// Checks that every row of a table starts its cells at the header's column offsets.
fn assert_aligned(table: &[&str]) {
    let header = table[0];
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(index, c)| c != ' ' && (index == 0 || header.as_bytes()[index - 1] == b' '))
        .map(|(index, _)| index)
        .collect();
    for row in &table[1..] {
        let bytes = row.as_bytes();
        for &start in &starts[1..] {
            if start >= bytes.len() {
                continue; // an empty last cell (ERROR) is trimmed
            }
            assert!(
                bytes[start] != b' ' && bytes[start - 1] == b' ' && bytes[start - 2] == b' ',
                "table row not aligned with the header at column {start}:\n{header}\n{row}"
            );
        }
    }
}

fn assert_no_escapes(ran: &Ran, what: &str) {
    assert!(
        !ran.stdout.contains('\x1b') && !ran.stderr.contains('\x1b'),
        "{what}: escape codes in output written to pipes:\nstdout: {:?}\nstderr: {:?}",
        ran.stdout,
        ran.stderr
    );
}

/// The lines of `text` that belong to `host` (`HOST: ...`), in order.
fn lines_of<'a>(text: &'a str, host: &str) -> Vec<&'a str> {
    let prefix = format!("{host}: ");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

fn sorted(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut lines: Vec<String> = lines.into_iter().collect();
    lines.sort();
    lines
}

/// A single-quoted POSIX shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------------------------------------
// tmux: a real terminal of a fixed size

/// A detached tmux session on a private server (its socket lives next to the script, in the
/// fleet's temp dir); killed on drop (also when a test fails).
pub(crate) struct Tmux {
    socket: PathBuf,
    session: String,
}

impl Tmux {
    /// Starts `script` (run by /bin/sh) in a new 120x40 session.
    pub(crate) fn start(script: &Path) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "deploy-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let tmux = Tmux {
            socket: script.with_file_name(format!("{id}.sock")),
            session: id,
        };
        let output = tmux
            .command()
            .args(["new-session", "-d", "-x", "120", "-y", "40", "-s"])
            .arg(&tmux.session)
            .arg(format!("/bin/sh {}", sh_quote(path_str(script))))
            .output()
            .expect("tmux runs (apt-get install tmux; scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null());
        command
    }

    /// The visible pane (with `escapes`: with text attributes as escape sequences, and the
    /// scrollback too).
    fn capture(&self, escapes: bool) -> String {
        let mut command = self.command();
        command.args(["capture-pane", "-p", "-t", &self.session]);
        if escapes {
            command.args(["-e", "-S", "-"]);
        }
        let output = command.output().expect("tmux capture-pane runs");
        assert!(
            output.status.success(),
            "tmux capture-pane failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Captures a frame every ~100 ms until one shows a line starting with `EXIT=` (the script
    /// prints it when `deploy` has ended). Returns the distinct frames, in order.
    pub(crate) fn frames_until_exit(&self, escapes: bool) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut frames: Vec<String> = Vec::new();
        loop {
            let frame = self.capture(escapes);
            let done = frame.lines().any(|line| line.starts_with("EXIT="));
            if frames.last() != Some(&frame) {
                frames.push(frame);
            }
            if done {
                return frames;
            }
            assert!(
                Instant::now() < deadline,
                "deploy did not end inside tmux; last frame:\n{}",
                frames.last().map(String::as_str).unwrap_or("")
            );
            thread::sleep(FRAME_POLL);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["kill-session", "-t", &self.session])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Only our private server (its own socket); it normally exits with its last session.
        let _ = self
            .command()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Writes a script that runs each of `runs` (deploy arguments) in `dir` on a terminal, with
/// `TERM=xterm-256color`, colors allowed unless `no_color`, then prints `EXIT=<codes>` and
/// stays alive so that the last frame can be captured.
pub(crate) fn terminal_script(
    dir: &Path,
    name: &str,
    runs: &[Vec<String>],
    no_color: bool,
) -> PathBuf {
    let binary = std::env::var("DEPLOY_TEST_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_deploy").to_string());
    let mut script = format!(
        "cd {} || exit 1\nunset NO_COLOR CLICOLOR CLICOLOR_FORCE SSH_AUTH_SOCK RUST_LOG\nexport TERM=xterm-256color\n",
        sh_quote(path_str(dir))
    );
    if no_color {
        script.push_str("export NO_COLOR=1\n");
    }
    script.push_str("codes=\n");
    for args in runs {
        let words: Vec<String> = args.iter().map(|arg| sh_quote(arg)).collect();
        script.push_str(&format!(
            "{} {}\ncodes=\"$codes$?\"\n",
            sh_quote(&binary),
            words.join(" ")
        ));
    }
    script.push_str("echo \"EXIT=$codes\"\nsleep 30\n");
    let path = dir.join(name);
    std::fs::write(&path, script).expect("write the terminal script");
    path
}

/// Host progress lines of a Bars frame (`  {prefix:20} {msg}`, prefix = host label): two
/// spaces, a host name padded to 20 columns, a space, the message. One-line results
/// (`web3: ok ...`) and table rows start at column 0 and are not progress lines.
fn host_lines<'a>(frame: &'a str, fleet: &Fleet) -> Vec<&'a str> {
    frame
        .lines()
        .filter(|line| {
            let Some(rest) = line.strip_prefix("  ") else {
                return false;
            };
            let label = rest.split(' ').next().unwrap_or("");
            fleet.hosts().iter().any(|host| host.name == label)
                && rest.len() > 21
                && rest[..20].trim_end() == label
        })
        .collect()
}

/// The overall progress line (`deploy [=====>    ]   3s  staging  2/6 staged  ...`).
fn overall_line(frame: &str) -> Option<&str> {
    frame.lines().find(|line| line.starts_with("deploy ["))
}

// ---------------------------------------------------------------------------------------------
// 1. Plain lines without a terminal, and the summary table

#[test]
fn plain_lines_and_summary_table_of_a_three_host_push() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);

    // Colors allowed and a color terminal type: stdout and stderr are pipes, so no escapes.
    let ran = run(support::deploy()
        .args(["push", "-i", path_str(&inventory), "--no-progress"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color"));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_no_escapes(&ran, "push --no-progress");

    // stdout: the summary table, whole.
    let table: Vec<&str> = ran.stdout.lines().collect();
    assert_aligned(&table[..table.len() - 1]);
    insta::assert_snapshot!(
        "three_host_push_summary_table",
        squeeze_columns(&redact(&ran.stdout, &fleet))
    );

    // stderr: one plain line per host event; hosts interleave, each host's lines in order.
    let stderr = redact(&ran.stderr, &fleet);
    let per_host = |host: &str| -> Vec<String> {
        [
            "connect",
            "lock",
            "upload",
            "upload [BYTES] / [BYTES]",
            "finalize",
            "staged; waiting for the other hosts",
            "switch",
            "switched; waiting for the other hosts",
            "ok (none) -> v1",
        ]
        .iter()
        .map(|step| format!("{host}: {step}"))
        .collect()
    };
    for host in fleet.hosts() {
        assert_eq!(
            lines_of(&stderr, &host.name),
            per_host(&host.name),
            "{}'s lines, in order; stderr:\n{}",
            host.name,
            ran.stderr
        );
    }
    // The whole stderr, sorted (hosts interleave).
    insta::assert_snapshot!(
        "three_host_push_plain_lines_sorted",
        sorted(stderr.lines().map(str::to_string)).join("\n")
    );
    assert!(ran.stderr.ends_with('\n'), "{:?}", ran.stderr);
}

#[test]
fn verbose_text_diagnostics_never_split_a_plain_line_and_carry_no_escapes() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);

    let ran = run(support::deploy()
        .args(["push", "-i", path_str(&inventory), "-vv"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color"));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_no_escapes(&ran, "push -vv");
    // -v switches to plain lines; every stderr line is whole: a `HOST: ...` event line or a
    // `tracing` line (`<RFC 3339 time> LEVEL ...`).
    let levels = [
        " ERROR ", " WARN ", "  WARN ", " INFO ", "  INFO ", " DEBUG ", " TRACE ",
    ];
    for line in ran.stderr.lines() {
        let event = fleet
            .hosts()
            .iter()
            .any(|host| line.starts_with(&format!("{}: ", host.name)));
        let diagnostic = line.len() > 20
            && line.as_bytes()[4] == b'-'
            && line.as_bytes()[10] == b'T'
            && levels.iter().any(|level| line.contains(level));
        assert!(
            event || diagnostic,
            "a stderr line that is neither a host event nor a diagnostic: {line:?}\nstderr:\n{}",
            ran.stderr
        );
    }
    for host in fleet.hosts() {
        let lines = lines_of(&ran.stderr, &host.name);
        assert_eq!(
            lines.first().copied(),
            Some(format!("{}: connect", host.name).as_str()),
            "{}",
            ran.stderr
        );
        assert_eq!(
            lines.last().copied(),
            Some(format!("{}: ok (none) -> v1", host.name).as_str()),
            "{}",
            ran.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. JSON diagnostics and the JSON result

/// Parses every stderr line as a JSON object with `time`, `level` and `message`.
fn json_lines(ran: &Ran) -> Vec<serde_json::Map<String, Value>> {
    assert!(
        ran.stderr.is_empty() || ran.stderr.ends_with('\n'),
        "{:?}",
        ran.stderr
    );
    ran.stderr
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|error| {
                panic!(
                    "stderr line is not JSON ({error}): {line:?}\nstderr:\n{}",
                    ran.stderr
                )
            });
            let Value::Object(object) = value else {
                panic!("stderr line is not a JSON object: {line:?}");
            };
            for key in ["time", "level", "message"] {
                assert!(
                    object.get(key).is_some_and(Value::is_string),
                    "no string `{key}` in {line}"
                );
            }
            let time = object["time"].as_str().unwrap_or("");
            assert!(
                humantime::parse_rfc3339(time).is_ok(),
                "`time` is not RFC 3339: {line}"
            );
            assert!(
                ["error", "warn", "info", "debug", "trace"]
                    .contains(&object["level"].as_str().unwrap_or("")),
                "unknown level: {line}"
            );
            object
        })
        .collect()
}

/// The number of JSON documents in `text` (whitespace-separated).
fn json_documents(text: &str) -> usize {
    let mut documents = 0;
    for document in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        if let Err(error) = document {
            panic!("not JSON ({error}): {text}");
        }
        documents += 1;
    }
    documents
}

#[test]
fn json_logs_are_json_lines_with_host_step_and_run_id() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let inventory = path_str(&inventory);

    // --log-format json -v --output json: stderr only JSON lines, stdout one JSON document.
    let ran = run(support::deploy()
        .args([
            "push",
            "-i",
            inventory,
            "--log-format",
            "json",
            "-v",
            "--output",
            "json",
        ])
        .env_remove("NO_COLOR"));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_no_escapes(&ran, "--log-format json");
    assert_eq!(json_documents(&ran.stdout), 1, "stdout:\n{}", ran.stdout);
    let document = ran.json();
    assert!(document.is_object(), "{document:#}");
    assert_eq!(document["action"], "push");
    let id = document["id"]
        .as_str()
        .expect("the result has an id")
        .to_string();
    let lines = json_lines(&ran);

    let mut checks = Checks::default();
    for host in fleet.hosts() {
        let stepped: Vec<&serde_json::Map<String, Value>> = lines
            .iter()
            .filter(|line| line.get("host") == Some(&Value::from(host.name.as_str())))
            .filter(|line| line.get("step").is_some_and(Value::is_string))
            .collect();
        checks.check(
            !stepped.is_empty(),
            format!("no JSON line with `host` = {} and a `step`", host.name),
        );
        let steps: Vec<&str> = stepped
            .iter()
            .filter_map(|line| line["step"].as_str())
            .collect();
        for step in ["connect", "lock", "upload", "switch"] {
            checks.check(
                steps.contains(&step),
                format!(
                    "{}: no JSON line with step {step:?} (steps: {steps:?})",
                    host.name
                ),
            );
        }
    }
    // run_id (and service) apply to every line about a host of this run.
    let about_hosts: Vec<String> = lines
        .iter()
        .filter(|line| line.contains_key("host"))
        .map(|line| Value::Object((*line).clone()).to_string())
        .collect();
    let missing = |key: &str, value: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|line| line.contains_key("host"))
            .filter(|line| line.get(key) != Some(&Value::from(value)))
            .map(|line| Value::Object((*line).clone()).to_string())
            .collect()
    };
    let no_run_id = missing("run_id", &id);
    checks.check(
        no_run_id.is_empty(),
        format!(
            "{} of {} lines about a host lack `run_id` = the result's id {id}; first: {}",
            no_run_id.len(),
            about_hosts.len(),
            no_run_id.first().map(String::as_str).unwrap_or("")
        ),
    );
    let no_service = missing("service", "app");
    checks.check(
        no_service.is_empty(),
        format!(
            "{} of {} lines about a host lack `service` = \"app\"; first: {}",
            no_service.len(),
            about_hosts.len(),
            no_service.first().map(String::as_str).unwrap_or("")
        ),
    );
    checks.finish(&format!("stderr:\n{}", ran.stderr));
}

#[test]
fn json_logs_with_text_output_keep_json_off_stdout_and_text_off_stderr() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    let inventory = path_str(&inventory);

    // -vv: the most diagnostics, all JSON; stdout is the text table only.
    let ran = run(support::deploy().args(["push", "-i", inventory, "--log-format", "json", "-vv"]));
    assert_eq!(ran.code, 0, "{ran:?}");
    let lines = json_lines(&ran);
    assert!(
        lines
            .iter()
            .any(|line| line.get("level") == Some(&Value::from("debug"))),
        "-vv shows debug lines: {}",
        ran.stderr
    );
    assert!(
        ran.stdout.starts_with("HOST ") && ran.stdout.contains("push "),
        "stdout is the text summary: {}",
        ran.stdout
    );
    assert!(
        !ran.stdout
            .lines()
            .any(|line| line.trim_start().starts_with('{')),
        "no JSON on stdout with --output text: {}",
        ran.stdout
    );

    // --output json with text diagnostics: exactly one JSON document, whole stdout.
    let ran = run(support::deploy().args([
        "push",
        "-i",
        inventory,
        "--output",
        "json",
        "--no-progress",
        "--version",
        "v2",
    ]));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(json_documents(&ran.stdout), 1, "stdout:\n{}", ran.stdout);
    let document = ran.json();
    assert_eq!(
        document["hosts"].as_array().map(Vec::len),
        Some(3),
        "{document:#}"
    );
    assert!(
        !ran.stderr.contains('{'),
        "plain progress on stderr: {}",
        ran.stderr
    );

    // A fatal error (no inventory) is a JSON line too, and stdout stays empty.
    let missing = fleet.dir().join("missing.toml");
    let ran =
        run(support::deploy().args(["push", "-i", path_str(&missing), "--log-format", "json"]));
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stdout, "");
    let lines = json_lines(&ran);
    assert!(
        lines
            .iter()
            .any(|line| line.get("level") == Some(&Value::from("error"))
                && line["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("missing.toml")),
        "{}",
        ran.stderr
    );

    // -q with JSON logs: a successful run says nothing on stderr.
    let ran = run(support::deploy().args([
        "push",
        "-i",
        inventory,
        "--log-format",
        "json",
        "-q",
        "--version",
        "v3",
    ]));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stderr, "", "-q keeps a successful run quiet");
}

// ---------------------------------------------------------------------------------------------
// 3. Progress in a real terminal

#[test]
fn terminal_progress_shows_at_most_concurrency_host_lines_and_ends_with_the_summary() {
    let fleet = Fleet::start(6);
    // An after_switch hook that takes a moment (like a service restart) keeps each host in the
    // switch phase long enough for the frames to see which host lines are shown then.
    let inventory = fleet.write_inventory(&format!(
        "[deploy]\nconcurrency = 2\n\n{SERVICE}\n[services.app.hooks]\nafter_switch = [\"sleep 1\"]\n"
    ));
    big_tarball(fleet.dir(), "v1", 24);
    let script = terminal_script(
        fleet.dir(),
        "progress.sh",
        &[vec![
            "push".into(),
            "-i".into(),
            path_str(&inventory).into(),
        ]],
        false,
    );
    let tmux = Tmux::start(&script);
    let frames = tmux.frames_until_exit(false);
    let last = frames.last().expect("at least one frame").clone();
    drop(tmux);

    let dump = || -> String {
        frames
            .iter()
            .enumerate()
            .map(|(index, frame)| format!("--- frame {index}\n{}", frame.trim_end()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut checks = Checks::default();
    checks.check(
        last.lines().any(|line| line == "EXIT=0"),
        "the push exits 0 (EXIT=0 in the last frame)",
    );

    // The overall line.
    let overall: Vec<&str> = frames
        .iter()
        .filter_map(|frame| overall_line(frame))
        .collect();
    checks.check(
        !overall.is_empty(),
        "no frame shows the overall progress line (`deploy [...] N/6 hosts ...`)",
    );
    checks.check(
        overall
            .iter()
            .any(|line| line.contains("/6 staged") || line.contains("/6 ready")),
        format!("the overall line counts hosts against the selection: {overall:?}"),
    );

    // Host lines: at most `concurrency` at once, at least one in flight at some point.
    let counts: Vec<usize> = frames
        .iter()
        .map(|frame| host_lines(frame, &fleet).len())
        .collect();
    let widest = counts.iter().copied().max().unwrap_or(0);
    if let Some(index) = counts.iter().position(|&count| count > 2) {
        checks.check(
            false,
            format!(
                "frame {index} shows {} host progress lines, more than concurrency = 2:\n{}",
                counts[index],
                frames[index].trim_end()
            ),
        );
    }
    checks.check(
        widest >= 1,
        "no frame shows a progress line for a host in flight",
    );
    checks.check(
        counts.contains(&2),
        format!("no frame shows 2 hosts in flight at once (host lines per frame: {counts:?})"),
    );
    // During the upload a host line shows the step, bytes and rate.
    let uploading: Vec<&str> = frames
        .iter()
        .flat_map(|frame| host_lines(frame, &fleet))
        .filter(|line| line.contains("upload "))
        .collect();
    checks.check(
        uploading
            .iter()
            .any(|line| line.contains(" / ") && line.contains("MiB") && line.contains("/s")),
        format!("no host line shows upload bytes and rate: {uploading:?}"),
    );

    // The final frame: the summary table (the results once: no one-line result on stderr
    // when the table goes to the same terminal), no progress left.
    for host in fleet.hosts() {
        checks.check(
            !last
                .lines()
                .any(|line| line.starts_with(&format!("{}: ", host.name))),
            format!(
                "the last frame repeats {}'s result as a stderr line above the table",
                host.name
            ),
        );
        checks.check(
            last.lines()
                .any(|line| line.starts_with(&format!("{} ", host.name)) && line.contains(" ok ")),
            format!("the summary table has no `ok` row for {}", host.name),
        );
    }
    checks.check(
        last.lines()
            .any(|line| line.starts_with("HOST ") && line.contains("RESULT")),
        "the last frame has no summary table header",
    );
    checks.check(
        last.lines()
            .any(|line| line.starts_with("push ") && line.contains(": ok (6 hosts, 0 failed)")),
        "the last frame has no summary line `push RUN: ok (6 hosts, 0 failed)`",
    );
    checks.check(
        host_lines(&last, &fleet).is_empty() && overall_line(&last).is_none(),
        "progress lines left on the screen at the end",
    );

    // Issue 7 / 15: the overall line also shows bytes (of the total) and rate.
    checks.check(
        overall
            .iter()
            .any(|line| line.contains("MiB") && line.contains("/s")),
        format!("no overall line shows bytes and rate (issue 7: hosts done/failed/total, bytes, rate, elapsed): {:?}",
            overall.iter().take(5).collect::<Vec<_>>()),
    );
    checks.finish(&format!("frames:\n{}", dump()));
}

// ---------------------------------------------------------------------------------------------
// 4. NO_COLOR, help, completions

/// Runs, in tmux, a push with bars and a push with `-vv` text diagnostics; returns every frame
/// captured with its attributes (escape sequences) and scrollback.
fn colored_frames(fleet: &Fleet, inventory: &Path, first: &str, no_color: bool) -> Vec<String> {
    let second = format!("{first}b");
    let push = |version: &str, verbose: bool| -> Vec<String> {
        let mut args: Vec<String> = vec!["push".into(), "-i".into(), path_str(inventory).into()];
        args.extend(["--version".into(), version.to_string()]);
        if verbose {
            args.push("-vv".into());
        }
        args
    };
    let script = terminal_script(
        fleet.dir(),
        &format!("color-{first}.sh"),
        &[push(first, false), push(&second, true)],
        no_color,
    );
    let tmux = Tmux::start(&script);
    let frames = tmux.frames_until_exit(true);
    let last = frames.last().expect("a frame");
    assert!(
        last.lines().any(|line| line.starts_with("EXIT=00")),
        "both pushes exit 0:\n{last}"
    );
    frames
}

#[test]
fn no_color_is_honoured_on_a_terminal() {
    let fleet = Fleet::start(3);
    let inventory = fleet.write_inventory(SERVICE);
    big_tarball(fleet.dir(), "v1", 8);

    // Control: without NO_COLOR the same runs do color the terminal (so the capture sees it).
    let colored = colored_frames(&fleet, &inventory, "c1", false);
    assert!(
        colored.iter().any(|frame| frame.contains("\x1b[")),
        "control: no attributes at all without NO_COLOR; the check below would prove nothing:\n{}",
        colored.last().map(String::as_str).unwrap_or("")
    );

    let plain = colored_frames(&fleet, &inventory, "n1", true);
    for frame in &plain {
        assert!(
            !frame.contains("\x1b["),
            "escape sequences on the terminal with NO_COLOR=1:\n{frame:?}"
        );
    }
}

#[test]
fn help_has_examples_and_completions_are_printed() {
    let help = run(support::deploy().arg("--help"));
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("Examples"), "{}", help.stdout);
    assert!(help.stdout.contains("  deploy push "), "{}", help.stdout);
    assert_no_escapes(&help, "deploy --help");

    let push = run(support::deploy().args(["push", "--help"]));
    assert_eq!(push.code, 0, "{push:?}");
    assert!(push.stdout.contains("Examples"), "{}", push.stdout);
    assert!(push.stdout.contains("  deploy push "), "{}", push.stdout);

    for command in [
        "rollback",
        "status",
        "history",
        "diff",
        "prune",
        "unlock",
        "check",
        "completions",
    ] {
        let ran = run(support::deploy().args([command, "--help"]));
        assert_eq!(ran.code, 0, "{ran:?}");
        assert!(
            ran.stdout.contains("Example") && ran.stdout.contains(&format!("  deploy {command}")),
            "`deploy {command} --help` carries an example:\n{}",
            ran.stdout
        );
    }

    let bash = run(support::deploy().args(["completions", "bash"]));
    assert_eq!(bash.code, 0, "{bash:?}");
    assert!(bash.stdout.contains("complete"), "{}", bash.stdout);
    assert!(bash.stdout.contains("deploy"), "{}", bash.stdout);
    for command in ["push", "rollback", "status", "unlock"] {
        assert!(
            bash.stdout.contains(command),
            "bash completion lacks {command}"
        );
    }
    assert_eq!(bash.stderr, "");
    let zsh = run(support::deploy().args(["completions", "zsh"]));
    assert_eq!(zsh.code, 0, "{zsh:?}");
    assert!(zsh.stdout.contains("#compdef deploy"), "{}", zsh.stdout);
    let fish = run(support::deploy().args(["completions", "fish"]));
    assert_eq!(fish.code, 0, "{fish:?}");
    assert!(
        fish.stdout.contains("complete -c deploy"),
        "{}",
        fish.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Errors that say what to do

/// No Rust debug formatting or panic reaches the operator.
fn assert_no_debug_formatting(ran: &Ran, what: &str) {
    for line in ran.stderr.lines().chain(ran.stdout.lines()) {
        for needle in ["Error {", "Os {", "kind:", "panicked", "RUST_BACKTRACE"] {
            assert!(
                !line.contains(needle),
                "{what}: Rust debug formatting ({needle:?}) in output: {line:?}\nstdout:\n{}\nstderr:\n{}",
                ran.stdout,
                ran.stderr
            );
        }
    }
}

fn push_text(inventory: &Path) -> Ran {
    deploy_text(inventory, &["push"])
}

#[test]
fn a_held_lock_names_its_holder_and_deploy_unlock() {
    let fleet = Fleet::start(1);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    // Another run holds the lock: its holder line names a live process (this test).
    let lock = fleet.host(0).root.join("app/.deploy/lock");
    std::fs::create_dir_all(&lock).expect("mkdir lock");
    std::fs::write(
        lock.join("holder"),
        format!("{} alice@laptop other-run 1700000000\n", std::process::id()),
    )
    .expect("write holder");

    let ran = push_text(&inventory);
    assert_eq!(ran.code, 3, "a held lock and nothing else: exit 3; {ran:?}");
    assert_no_debug_formatting(&ran, "lock held");
    // The per-host line names the host and the step, the holder and what to do.
    let line = ran
        .stderr
        .lines()
        .find(|line| line.starts_with("web1: failed"))
        .unwrap_or_else(|| panic!("no `web1: failed` line:\n{}", ran.stderr));
    for needle in [
        "lock",
        "held by",
        "alice@laptop",
        "other-run",
        "deploy unlock",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
    // The summary row carries the same error.
    let row = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("web1 "))
        .unwrap_or_else(|| panic!("no web1 row:\n{}", ran.stdout));
    assert!(
        row.contains("failed") && row.contains("held by") && row.contains("deploy unlock"),
        "{row:?}"
    );
    assert!(lock.join("holder").exists(), "the other run's lock is kept");
}

#[test]
fn an_auth_failure_names_the_identities_tried() {
    let fleet = Fleet::start(1);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    // A key the host does not authorize, and one that does not exist.
    let stranger = fleet.dir().join("stranger_key");
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f"])
        .arg(&stranger)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(output.status.success(), "{output:?}");
    let missing = fleet.dir().join("missing_key");
    let text = fleet.inventory_text(SERVICE).replace(
        &format!("identity_files = [\"{}\"]", fleet.client_key().display()),
        &format!(
            "identity_files = [\"{}\", \"{}\"]",
            missing.display(),
            stranger.display()
        ),
    );
    assert!(
        text.contains("stranger_key"),
        "identity_files replaced:\n{text}"
    );
    let inventory = fleet.dir().join("stranger.toml");
    std::fs::write(&inventory, text).expect("write inventory");

    let ran = push_text(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_no_debug_formatting(&ran, "auth failure");
    let line = ran
        .stderr
        .lines()
        .find(|line| line.starts_with("web1: failed"))
        .unwrap_or_else(|| panic!("no `web1: failed` line:\n{}", ran.stderr));
    for needle in [
        "connect",
        "authentication",
        fleet.user(),
        path_str(&stranger),
        path_str(&missing),
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
    let row = ran
        .stdout
        .lines()
        .find(|line| line.starts_with("web1 "))
        .unwrap_or_else(|| panic!("no web1 row:\n{}", ran.stdout));
    assert!(row.contains(path_str(&stranger)), "{row:?}");
}

#[test]
fn connection_and_input_errors_carry_no_debug_formatting() {
    let mut fleet = Fleet::start(2);
    let inventory = fleet.write_inventory(SERVICE);
    tarball(fleet.dir(), "v1", &[("index.html", "one")]);
    fleet.stop(1);

    let ran = push_text(&inventory);
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_no_debug_formatting(&ran, "a host down");
    let line = ran
        .stderr
        .lines()
        .find(|line| line.starts_with("web2: failed"))
        .unwrap_or_else(|| panic!("no `web2: failed` line:\n{}", ran.stderr));
    assert!(line.contains("connect"), "names the step: {line:?}");

    for args in [
        vec!["push", "-i", "/nonexistent/deploy.toml"],
        vec![
            "push",
            "-i",
            path_str(&inventory),
            "--artifact",
            "/nonexistent.tar.gz",
            "--version",
            "v2",
        ],
        vec![
            "rollback",
            "-i",
            path_str(&inventory),
            "--to",
            "no-such-version",
            "--hosts",
            "web1",
        ],
        vec!["frobnicate"],
    ] {
        let ran = run(support::deploy().args(&args));
        assert_ne!(ran.code, 0, "{args:?}: {ran:?}");
        assert!(!ran.stderr.trim().is_empty(), "{args:?}: an error is shown");
        assert_no_debug_formatting(&ran, &format!("{args:?}"));
    }
}
