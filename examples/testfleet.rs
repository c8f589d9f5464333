//! A local fleet of real OpenSSH `sshd` hosts on 127.0.0.1, for `scripts/demo.sh` and
//! `scripts/bench.sh`: the integration tests' own fleet (`tests/it/support`), so the scripts
//! and the tests share one implementation (ports, host keys, strict known_hosts, each host
//! confined to its own directory).
//!
//! ```text
//! testfleet start N [PARENT_DIR] [--keep] [--quiet] [--first-deploy]
//! ```
//!
//! Starts hosts `web1`..`webN` in a new directory `deploy-fleet-XXXXXX` inside `PARENT_DIR`
//! (default: `$TMPDIR`, else `/tmp`) and writes there:
//!
//! - `deploy.toml`: the inventory's `[ssh]` table and one `[[hosts]]` entry per host (tags `web`
//!   and `odd`/`even`); append `[deploy]` and `[services.*]` to it;
//! - `fleet.env`: bash assignments `FLEET_DIR`, `FLEET_INVENTORY`, `FLEET_USER`,
//!   `FLEET_CLIENT_KEY`, `FLEET_KNOWN_HOSTS`, and the arrays `FLEET_NAMES`, `FLEET_PORTS`,
//!   `FLEET_ROOTS` (index 0 is `web1`);
//! - with `--first-deploy`: `controller/` for README.md's "Your first deploy" (`support::guide`:
//!   a home with `.ssh/config` and `known_hosts` for these hosts, an empty project directory,
//!   the guide's blocks as `controller/first-deploy.sh`, a `bin/` holding `deploy`, the binary
//!   `DEPLOY_TEST_BINARY` names), the guide's `sudo`/`systemctl` stand-ins on every host, and
//!   in `fleet.env` `GUIDE_HOME`, `GUIDE_PROJECT`, `GUIDE_SCRIPT`, `GUIDE_BIN`.
//!
//! Once every host accepts connections it prints the inventory's path, one line on stdout, and
//! stays up until its stdin reaches end of file (run it with stdin a pipe, or a terminal:
//! Ctrl-D) or it gets SIGTERM, SIGINT or SIGHUP. It then stops every sshd it started (by PID)
//! and removes the directory, unless `--keep` (or `DEPLOY_TEST_KEEP=1`). It says so on stderr,
//! unless `--quiet`. Exit status 0 after a clean stop, 2 on a usage error; a host that cannot
//! start is a panic naming its `sshd.log`.

#[allow(unused_imports)] // support allows dead_code itself
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use support::{FirstDeploy, Fleet, deploy_binary, path_str};

const USAGE: &str = "usage: testfleet start N [PARENT_DIR] [--keep] [--quiet] [--first-deploy]";

struct Options {
    hosts: usize,
    parent: PathBuf,
    keep: bool,
    quiet: bool,
    first_deploy: bool,
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1).collect()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("testfleet: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut fleet = Fleet::start_in(&options.parent, options.hosts);
    if options.keep {
        fleet.keep_dir();
    }
    let inventory = fleet.write_inventory("");
    let env_file = fleet.dir().join("fleet.env");
    let mut env = env_text(&fleet, &inventory);
    if options.first_deploy {
        let guide = FirstDeploy::prepare(&fleet, &deploy_binary());
        for (name, path) in [
            ("GUIDE_HOME", &guide.home),
            ("GUIDE_PROJECT", &guide.project),
            ("GUIDE_SCRIPT", &guide.script),
            ("GUIDE_BIN", &guide.bin),
        ] {
            let _ = writeln!(env, "{name}={}", sh_word(path_str(path)));
        }
    }
    std::fs::write(&env_file, env)
        .unwrap_or_else(|e| panic!("could not write {}: {e}", env_file.display()));
    println!("{}", inventory.display());
    if !options.quiet {
        eprintln!(
            "testfleet: {} hosts up in {}; close stdin or send SIGTERM to stop them",
            options.hosts,
            fleet.dir().display()
        );
    }
    let why = wait_for_the_end();
    if !options.quiet {
        eprintln!("testfleet: {why}: stopping the fleet");
    }
    drop(fleet);
    ExitCode::SUCCESS
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let (keep, quiet, first_deploy) = (flag("--keep"), flag("--quiet"), flag("--first-deploy"));
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !matches!(*arg, "--keep" | "--quiet" | "--first-deploy"))
        .collect();
    let (count, parent) = match words.as_slice() {
        ["start", count] => (count, std::env::temp_dir()),
        ["start", count, parent] => (count, PathBuf::from(parent)),
        _ => return Err("expected `start N [PARENT_DIR]`".to_string()),
    };
    let hosts = count
        .parse::<usize>()
        .ok()
        .filter(|&hosts| hosts >= 1)
        .ok_or_else(|| format!("N must be a positive number of hosts, not {count:?}"))?;
    if !parent.is_dir() {
        return Err(format!("{} is not a directory", parent.display()));
    }
    Ok(Options {
        hosts,
        parent,
        keep,
        quiet,
        first_deploy,
    })
}

/// `fleet.env`: bash assignments describing the fleet.
fn env_text(fleet: &Fleet, inventory: &std::path::Path) -> String {
    let mut text = String::from("# written by examples/testfleet.rs; source it from bash\n");
    for (name, value) in [
        ("FLEET_DIR", path_str(fleet.dir())),
        ("FLEET_INVENTORY", path_str(inventory)),
        ("FLEET_USER", fleet.user()),
        ("FLEET_CLIENT_KEY", path_str(fleet.client_key())),
        ("FLEET_KNOWN_HOSTS", path_str(fleet.known_hosts())),
    ] {
        let _ = writeln!(text, "{name}={}", sh_word(value));
    }
    let array = |values: Vec<String>| -> String {
        values
            .iter()
            .map(|value| sh_word(value))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let hosts = fleet.hosts();
    let _ = writeln!(
        text,
        "FLEET_NAMES=({})",
        array(hosts.iter().map(|host| host.name.clone()).collect())
    );
    let _ = writeln!(
        text,
        "FLEET_PORTS=({})",
        array(hosts.iter().map(|host| host.port.to_string()).collect())
    );
    let _ = writeln!(
        text,
        "FLEET_ROOTS=({})",
        array(
            hosts
                .iter()
                .map(|host| path_str(&host.root).to_string())
                .collect()
        )
    );
    text
}

/// A single-quoted shell word.
fn sh_word(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Blocks until stdin reaches end of file or a SIGTERM, SIGINT or SIGHUP arrives; says which.
fn wait_for_the_end() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the signal handlers");
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
        let mut hangup = signal(SignalKind::hangup()).expect("a SIGHUP handler");
        let (closed, stdin_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        });
        tokio::select! {
            _ = stdin_closed => "stdin closed",
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
            _ = hangup.recv() => "SIGHUP",
        }
    })
}
