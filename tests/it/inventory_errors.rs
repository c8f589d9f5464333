//! Bad inventories and bad usage: exit code 2, one error naming `FILE:LINE: KEY: message`,
//! nothing on stdout, and no host contacted. The one host of these inventories points at a
//! local TCP listener that is never accepted from: any connection attempt would sit in its
//! backlog, so "nothing was contacted" is checked, not assumed.

use std::path::PathBuf;

use crate::support::{self, Filters, Ran, Sentinel, run, tarball};

/// A temp dir holding `deploy.toml`, and the sentinel listener its host `web1` points at.
struct Scratch {
    dir: tempfile::TempDir,
    sentinel: Sentinel,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("deploy-inventory-")
                .tempdir()
                .expect("temp dir"),
            sentinel: Sentinel::new(),
        }
    }

    fn dir(&self) -> String {
        self.dir
            .path()
            .to_str()
            .expect("utf-8 temp dir")
            .to_string()
    }

    fn port(&self) -> u16 {
        self.sentinel.port()
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("deploy.toml")
    }

    /// A valid inventory (see `the_base_inventory_is_valid_and_its_host_is_reachable`), 13 lines:
    ///
    /// ```text
    ///  1 [ssh]                      6 [[hosts]]              12 [services.app]
    ///  2 connect_timeout = "1s"     7 name = "web1"          13 base_dir = "app"
    ///  3 known_hosts = [...]        8 address = "127.0.0.1"
    ///  4 identity_files = [...]     9 port = PORT
    ///  5                           10 tags = ["web"]
    ///                              11
    /// ```
    fn base(&self) -> String {
        format!(
            "[ssh]\nconnect_timeout = \"1s\"\nknown_hosts = [\"{dir}/known_hosts\"]\n\
             identity_files = [\"{dir}/id_ed25519\"]\n\n\
             [[hosts]]\nname = \"web1\"\naddress = \"127.0.0.1\"\nport = {port}\ntags = [\"web\"]\n\n\
             [services.app]\nbase_dir = \"app\"\n",
            dir = self.dir(),
            port = self.port(),
        )
    }

    /// `base()` with `old` (which must occur) replaced by `new`.
    fn base_with(&self, old: &str, new: &str) -> String {
        let base = self.base();
        assert!(
            base.contains(old),
            "{old:?} not in the base inventory:\n{base}"
        );
        base.replacen(old, new, 1)
    }

    /// Writes `text` as `deploy.toml`, runs `deploy -i deploy.toml ARGS`.
    fn deploy(&self, text: &str, args: &[&str]) -> Ran {
        std::fs::write(self.inventory(), text).expect("write inventory");
        let inventory = self.inventory();
        let mut full = vec!["-i", inventory.to_str().expect("utf-8")];
        full.extend_from_slice(args);
        run(support::deploy().args(&full))
    }

    /// Runs `deploy -i deploy.toml ARGS` on `text` and checks the input-error contract: exit 2,
    /// empty stdout, nothing contacted, one `error: ` line on stderr (any other stderr line is a
    /// log line carrying the same message). Returns that message with the temp dir as `[DIR]`.
    fn error(&self, text: &str, args: &[&str]) -> String {
        let ran = self.deploy(text, args);
        assert_eq!(ran.code, 2, "{ran:?}");
        assert_eq!(ran.stdout, "", "{ran:?}");
        self.sentinel.assert_not_contacted(&ran);
        let stderr = self.redact(&ran.stderr);
        let messages: Vec<&str> = stderr
            .lines()
            .filter_map(|line| line.strip_prefix("error: "))
            .collect();
        assert_eq!(messages.len(), 1, "expected one `error: ` line:\n{stderr}");
        let message = messages[0];
        for line in stderr.lines() {
            assert!(
                line == format!("error: {message}")
                    || (line.contains(" ERROR ") && line.ends_with(message)),
                "unexpected stderr line {line:?} in:\n{stderr}"
            );
        }
        message.to_string()
    }

    /// `text` with the temp dir as `[DIR]`.
    fn redact(&self, text: &str) -> String {
        Filters::literal().dir(self.dir.path()).apply(text)
    }

    /// `error()` for `deploy check`.
    fn check_error(&self, text: &str) -> String {
        self.error(text, &["check"])
    }
}

// ---------------------------------------------------------------------------------------------
// The harness itself

#[test]
fn the_base_inventory_is_valid_and_its_host_is_reachable() {
    // Without this, "nothing contacted" below could be vacuous.
    let scratch = Scratch::new();
    let ran = scratch.deploy(&scratch.base(), &["check", "--output", "json"]);
    assert_eq!(ran.code, 1, "{ran:?}");
    let entry = ran.host("web1");
    assert!(
        entry["error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{entry:#}"
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        scratch.sentinel.contacted(),
        "the host should have been contacted: {ran:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_key_at_top_level() {
    let scratch = Scratch::new();
    let text = format!("colour = \"blue\"\n{}", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:1: colour: unknown key `colour`, expected one of `ssh`, `deploy`, \
         `hosts`, `services`, `notify`"
    );
}

#[test]
fn unknown_top_level_table() {
    let scratch = Scratch::new();
    let text = format!("{}[sshh]\nuser = \"x\"\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: sshh: unknown key `sshh`, expected one of `ssh`, `deploy`, \
         `hosts`, `services`, `notify`"
    );
}

#[test]
fn unknown_key_inside_a_host() {
    let scratch = Scratch::new();
    let text = scratch.base_with("tags = [\"web\"]\n", "tags = [\"web\"]\nprot = 22\n");
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:11: hosts[0].prot: unknown key `prot`, expected one of `name`, \
         `address`, `port`, `user`, `identity_files`, `tags`, `host_key`, `proxy_jump`, `env`"
    );
}

#[test]
fn unknown_key_inside_a_service() {
    let scratch = Scratch::new();
    let text = format!("{}keep = 3\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.keep: unknown key `keep`, expected one of `hosts`, \
         `base_dir`, `version`, `artifact`, `sha256`, `fetch`, `keep_releases`, `shared_paths`, \
         `shared_files`, `env`, `files`, `tasks`, `allow_setid`, `strip_components`, `delta`, \
         `hooks`, `health_check`"
    );
}

#[test]
fn unknown_key_inside_a_service_subtable() {
    let scratch = Scratch::new();
    let text = format!(
        "{}[services.app.hooks]\nbefore_deploy = []\n",
        scratch.base()
    );
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:15: services.app.hooks.before_deploy: unknown key `before_deploy`, \
         expected `before_switch` or `after_switch`"
    );
}

// ---------------------------------------------------------------------------------------------
// Hosts

#[test]
fn duplicate_host_name() {
    let scratch = Scratch::new();
    let text = format!(
        "{}[[hosts]]\nname = \"web1\"\naddress = \"127.0.0.2\"\n",
        scratch.base()
    );
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:15: hosts[1].name: duplicate host name `web1` (first defined on line 7)"
    );
}

#[test]
fn port_out_of_range() {
    let scratch = Scratch::new();
    let port_line = format!("port = {}\n", scratch.port());
    for port in ["0", "70000", "-1"] {
        let text = scratch.base_with(&port_line, &format!("port = {port}\n"));
        assert_eq!(
            scratch.check_error(&text),
            format!("[DIR]/deploy.toml:9: hosts[0].port: port {port} is out of range (1 to 65535)")
        );
    }
    // The [ssh] default port is checked the same way.
    let text = scratch.base_with("[ssh]\n", "[ssh]\nport = 65536\n");
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:2: ssh.port: port 65536 is out of range (1 to 65535)"
    );
}

// ---------------------------------------------------------------------------------------------
// [ssh] and [deploy] values

#[test]
fn unparsable_duration() {
    let scratch = Scratch::new();
    let text = scratch.base_with("\"1s\"", "\"10 parsecs\"");
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:2: ssh.connect_timeout: invalid duration `10 parsecs`: unknown time \
         unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, \
         years (and few variations) (for example \"10s\", \"5m\" or \"1h 30m\")"
    );
    let text = format!("{}[deploy]\nhost_timeout = \"soon\"\n", scratch.base());
    let message = scratch.check_error(&text);
    assert!(
        message.starts_with("[DIR]/deploy.toml:15: deploy.host_timeout: invalid duration `soon`"),
        "{message}"
    );
}

#[test]
fn bad_on_failure_value() {
    let scratch = Scratch::new();
    let text = format!("{}[deploy]\non_failure = \"abort\"\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:15: deploy.on_failure: unknown on_failure `abort`; expected \
         \"rollback\", \"halt\" or \"continue\""
    );
}

#[test]
fn max_failures_above_one_hundred_percent() {
    let scratch = Scratch::new();
    for value in ["\"150%\"", "\"-1%\"", "-1", "\"ten\""] {
        let text = format!("{}[deploy]\nmax_failures = {value}\n", scratch.base());
        assert_eq!(
            scratch.check_error(&text),
            "[DIR]/deploy.toml:15: deploy.max_failures: max_failures must be a non-negative \
             integer or a percentage such as \"10%\" (0% to 100%)",
            "max_failures = {value}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Services

#[test]
fn invalid_version_in_the_inventory() {
    let scratch = Scratch::new();
    let long = "a".repeat(129);
    for (version, problem) in [
        (
            "../v1",
            "version `../v1` contains `/`; only A-Z a-z 0-9 . _ + - are allowed".to_string(),
        ),
        (
            ".v1",
            "version `.v1` must start with a letter or a digit".to_string(),
        ),
        (
            long.as_str(),
            "version is 129 characters long; at most 128 are allowed".to_string(),
        ),
        ("", "version must not be empty".to_string()),
    ] {
        let text = format!("{}version = \"{version}\"\n", scratch.base());
        assert_eq!(
            scratch.check_error(&text),
            format!("[DIR]/deploy.toml:14: services.app.version: {problem}"),
            "version {version:?}"
        );
    }
}

#[test]
fn invalid_version_on_the_command_line() {
    let scratch = Scratch::new();
    let artifact = tarball(scratch.dir.path(), "app", &[("index.html", "hi")]);
    let artifact = artifact.to_str().expect("utf-8");
    for (version, problem) in [
        (
            "../v1",
            "version `../v1` contains `/`; only A-Z a-z 0-9 . _ + - are allowed",
        ),
        (".v1", "version `.v1` must start with a letter or a digit"),
    ] {
        assert_eq!(
            scratch.error(
                &scratch.base(),
                &["push", "--version", version, "--artifact", artifact]
            ),
            format!("--version \"{version}\": {problem}")
        );
    }
}

#[test]
fn missing_artifact_file_for_push() {
    let scratch = Scratch::new();
    let text = format!(
        "{}version = \"v1\"\nartifact = \"dist/app-v1.tar.gz\"\n",
        scratch.base()
    );
    assert_eq!(
        scratch.error(&text, &["push"]),
        "[DIR]/deploy.toml:15: services.app.artifact: artifact file not found: \
         [DIR]/dist/app-v1.tar.gz"
    );
    // Also with --dry-run, which must not contact anything either before validating.
    assert_eq!(
        scratch.error(&text, &["push", "--dry-run"]),
        "[DIR]/deploy.toml:15: services.app.artifact: artifact file not found: \
         [DIR]/dist/app-v1.tar.gz"
    );
}

#[test]
fn missing_artifact_file_on_the_command_line() {
    let scratch = Scratch::new();
    let missing = format!("{}/nope.tar.gz", scratch.dir());
    assert_eq!(
        scratch.error(
            &scratch.base(),
            &["push", "--version", "v1", "--artifact", &missing]
        ),
        "--artifact: file not found: [DIR]/nope.tar.gz"
    );
}

#[test]
fn service_selecting_an_unknown_tag() {
    let scratch = Scratch::new();
    let text = format!("{}hosts = [\"web\", \"db\"]\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.hosts[1]: no host or tag named `db`"
    );
}

#[test]
fn service_selecting_no_hosts() {
    let scratch = Scratch::new();
    let text = format!("{}hosts = []\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.hosts: the service selects no hosts (omit `hosts` to \
         use every host)"
    );
}

#[test]
fn service_selecting_a_mistyped_tag_gets_a_suggestion() {
    let scratch = Scratch::new();
    let text = format!("{}hosts = [\"wbe\"]\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.hosts[0]: no host or tag named `wbe` (did you mean \
         `web`?)"
    );
}

#[test]
fn strip_components_must_be_a_non_negative_integer() {
    let scratch = Scratch::new();
    let text = format!("{}strip_components = -1\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.strip_components: strip_components must be at least \
         0, not -1"
    );
    let text = format!("{}strip_components = \"1\"\n", scratch.base());
    let message = scratch.check_error(&text);
    assert!(
        message.starts_with("[DIR]/deploy.toml:14: services.app.strip_components: "),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------------
// Host selection on the command line

#[test]
fn empty_host_selection_on_the_command_line() {
    let scratch = Scratch::new();
    assert_eq!(
        scratch.error(&scratch.base(), &["check", "--hosts", "nosuchhost"]),
        "no host or tag named `nosuchhost` in [DIR]/deploy.toml"
    );
    assert_eq!(
        scratch.error(&scratch.base(), &["status", "--hosts", "web,nosuchhost"]),
        "no host or tag named `nosuchhost` in [DIR]/deploy.toml"
    );
    assert_eq!(
        scratch.error(&scratch.base(), &["check", "--hosts", ","]),
        "the host selection `,` selects no hosts"
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed TOML

#[test]
fn malformed_toml_unterminated_string() {
    let scratch = Scratch::new();
    let text = scratch.base_with("address = \"127.0.0.1\"", "address = \"127.0.0.1");
    // The key is not recoverable from a broken value: the enclosing table is named.
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:8: hosts[0]: invalid TOML: invalid basic string, expected `\"`"
    );
}

#[test]
fn malformed_toml_duplicate_key() {
    let scratch = Scratch::new();
    let text = format!("{}base_dir = \"other\"\n", scratch.base());
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:14: services.app.base_dir: invalid TOML: duplicate key"
    );
}

#[test]
fn malformed_toml_broken_hosts_header_names_that_table() {
    let scratch = Scratch::new();
    // `[[hosts]` on line 6.
    let text = scratch.base_with("[[hosts]]\n", "[[hosts]\n");
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:6: hosts: invalid TOML: unclosed array table, expected `]`"
    );
}

#[test]
fn malformed_toml_broken_ssh_header_names_that_table() {
    let scratch = Scratch::new();
    // `[ssh` on line 1.
    let text = scratch.base_with("[ssh]\n", "[ssh\n");
    assert_eq!(
        scratch.check_error(&text),
        "[DIR]/deploy.toml:1: ssh: invalid TOML: unclosed table, expected `]`"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors without a line

#[test]
fn missing_inventory_file_does_not_print_line_zero_or_an_empty_key() {
    let scratch = Scratch::new();
    // There is no line and no key to name: `FILE:0: : ...` would be noise.
    let missing = format!("{}/nope.toml", scratch.dir());
    let ran = run(support::deploy().args(["check", "-i", &missing]));
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stdout, "");
    let stderr = scratch.redact(&ran.stderr);
    assert!(
        stderr.lines().any(|line| {
            line == "error: [DIR]/nope.toml: cannot read inventory: No such file or directory"
        }),
        "{stderr}"
    );
}

#[test]
fn missing_hosts_table_does_not_print_line_zero() {
    let scratch = Scratch::new();
    // No [[hosts]] at all: the key is known, there is no line.
    assert_eq!(
        scratch.check_error("[ssh]\nuser = \"deploy\"\n"),
        "[DIR]/deploy.toml: hosts: at least one [[hosts]] entry is required"
    );
}

// ---------------------------------------------------------------------------------------------
// Diagnostics format

#[test]
fn inventory_error_with_json_log_format_is_json_lines_only() {
    let scratch = Scratch::new();
    let port_line = format!("port = {}\n", scratch.port());
    let text = scratch.base_with(&port_line, "port = 0\n");
    let ran = scratch.deploy(&text, &["check", "--log-format", "json"]);
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stdout, "");
    scratch.sentinel.assert_not_contacted(&ran);
    // SPEC §5: with --log-format json every diagnostic is one JSON object per line on stderr,
    // with `time`, `level` and `message`.
    let mut problems = Vec::new();
    let mut errors = Vec::new();
    for line in ran.stderr.lines() {
        let Ok(object) = serde_json::from_str::<serde_json::Value>(line) else {
            problems.push(format!("not JSON: {line:?}"));
            continue;
        };
        for field in ["time", "level", "message"] {
            if !object[field].is_string() {
                problems.push(format!("no `{field}`: {line}"));
            }
        }
        if object["level"]
            .as_str()
            .is_some_and(|level| level.eq_ignore_ascii_case("error"))
        {
            errors.push(scratch.redact(object["message"].as_str().unwrap_or("")));
        }
    }
    assert_eq!(problems, Vec::<String>::new(), "stderr:\n{}", ran.stderr);
    assert_eq!(
        errors,
        ["[DIR]/deploy.toml:9: hosts[0].port: port 0 is out of range (1 to 65535)"],
        "stderr:\n{}",
        ran.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Command-line usage errors

#[test]
fn usage_errors_exit_2_without_contacting_anything() {
    let scratch = Scratch::new();
    for (args, first_line) in [
        (
            &["--concurrency", "0", "status"][..],
            "error: invalid value '0' for '--concurrency <N>': 0 is not in 1..=4294967295",
        ),
        (
            &["-j", "0", "check"][..],
            "error: invalid value '0' for '--concurrency <N>': 0 is not in 1..=4294967295",
        ),
        (
            &["status", "--frobnicate"][..],
            "error: unexpected argument '--frobnicate' found",
        ),
        (
            &["check", "--output", "yaml"][..],
            "error: invalid value 'yaml' for '--output <OUTPUT>'",
        ),
        (&["launch"][..], "error: unrecognized subcommand 'launch'"),
    ] {
        let ran = scratch.deploy(&scratch.base(), args);
        assert_eq!(ran.code, 2, "{args:?}: {ran:?}");
        assert_eq!(ran.stdout, "", "{args:?}");
        assert_eq!(
            ran.stderr.lines().next(),
            Some(first_line),
            "{args:?}: {}",
            ran.stderr
        );
        scratch.sentinel.assert_not_contacted(&ran);
    }
}
