//! Test fleet for the integration tests: real OpenSSH `sshd` processes on 127.0.0.1.
//!
//! Every test host is an `sshd` started by the test itself, with its own ed25519 host key, its own
//! port and its own login directory (`root`). All hosts run as the current user on this machine, so
//! each host's `ForceCommand` is a small generated script that `cd`s into that host's root before
//! running the requested command: remote relative paths resolve inside the host's own root and the
//! hosts are isolated from each other. Host keys are checked strictly through a generated
//! `known_hosts` file; nothing here accepts unknown host keys, and nothing talks to anything but
//! 127.0.0.1.
//!
//! Set `DEPLOY_TEST_KEEP=1` to keep a fleet's directory (configs, keys, `sshd.log`, host roots)
//! after the test; its path is printed on stderr.
//!
//! The rest of the test kit lives beside the fleet, one idea per file:
//!
//! | file | holds |
//! |---|---|
//! | `scenario.rs` | [`Scenario`]: a fleet, its inventory and the one `push`, `live`, `history`... |
//! | `runs.rs` | [`Ran`], running `deploy` (plain, JSON, text), the one `push` |
//! | `artifacts.rs` | tarball builders, sha256 |
//! | `trees.rs` | what is on a host: `live`, history records, tree snapshots, waiting |
//! | `filters.rs` | the one set of filters (ports, fleet dir, run ids, times, bytes) for whole-output snapshots |
//! | `http.rs` | the one test HTTP server (files, request counts, 404, configured replies) |
//! | `certificates.rs` | SSH certificate authorities, certificate-only hosts, a real `ssh-agent` |
//! | `guide.rs` | README.md's "Your first deploy" blocks, and a controller and host stand-ins to run them |
//!
//! This module is also compiled into `examples/testfleet.rs` (the fleet of `scripts/demo.sh`
//! and `scripts/bench.sh`), so it uses nothing that only exists in the test binary.

#![allow(dead_code)]

mod artifacts;
mod bastion;
pub mod certificates;
mod filters;
mod guide;
mod http;
mod relay;
mod runs;
mod scenario;
mod trees;

pub use artifacts::{big_tarball, many_files, sha256_file, sha256_hex, tarball};
pub use bastion::Bastion;
pub use filters::{Filters, redact, squeeze_columns};
pub use guide::{FirstDeploy, GUIDE_SERVICE, deploy_binary};
pub use http::{HttpServer, Reply};
pub use relay::Relay;
pub use runs::{Ran, deploy_json, deploy_text, json_command, push, run};
pub use scenario::Scenario;
pub use trees::{
    PATIENCE, entries, eventually, history_records, live_release, read, tree_metadata_snapshot,
    tree_snapshot, wait_until,
};

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const OPENSSH_MISSING: &str = "OpenSSH sshd not found: the integration tests need a real sshd. \
     Install it with `apt-get install openssh-server` (scripts/test.sh does this on Debian)";

/// How long a freshly started sshd may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll step while waiting for sshd.
const POLL: Duration = Duration::from_millis(20);
/// Grace period between SIGTERM and SIGKILL when stopping an sshd.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// Attempts with a new port when a freshly picked port turns out to be taken.
const PORT_ATTEMPTS: usize = 3;

/// The `deploy` binary under test, with a predictable environment: `NO_COLOR=1`, and no
/// `SSH_AUTH_SOCK` (so no agent keys are tried) and no `RUST_LOG`.
///
/// `DEPLOY_TEST_BINARY` points the suite at another build (for example the previous release, to
/// see a regression test fail there). Outside the test binary (the `testfleet` example, where
/// Cargo does not name the binary) it is required.
pub fn deploy() -> Command {
    let binary = std::env::var_os("DEPLOY_TEST_BINARY")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_deploy").map(PathBuf::from))
        .expect("no deploy binary: set DEPLOY_TEST_BINARY");
    let mut cmd = Command::new(binary);
    cmd.env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("RUST_LOG");
    cmd
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("could not bind 127.0.0.1:0 to pick a free port");
    listener
        .local_addr()
        .expect("could not read the local address of a bound listener")
        .port()
}

/// A set of real sshd test hosts named `web1`..`webN`, all on 127.0.0.1, living in one temp dir.
pub struct Fleet {
    temp: Option<tempfile::TempDir>,
    dir: PathBuf,
    hosts: Vec<TestHost>,
    client_key: PathBuf,
    known_hosts: PathBuf,
    user: String,
    keep: bool,
}

/// One test host: an sshd on 127.0.0.1:`port` whose logins run inside `root`.
pub struct TestHost {
    /// `web1`, `web2`, ...
    pub name: String,
    /// The port its sshd listens on (kept across stop / restart / rekey).
    pub port: u16,
    /// The host's own login directory: every remote command starts here.
    pub root: PathBuf,
    /// The host key sshd currently uses, as `ssh-ed25519 AAAA...` (no comment). After
    /// [`Fleet::rekey`] this is the NEW key, while the fleet's `known_hosts` keeps the old one.
    pub host_key_public: String,
    dir: PathBuf,
    authorized_key: String,
    file_size_limit_kb: Option<u64>,
    /// sshd_config lines placed before the generated ones (sshd keeps the first value of a
    /// keyword, so these win), set by [`Fleet::configure`].
    extra_config: String,
    child: Option<Child>,
}

impl Fleet {
    /// Generates a client key and starts `count` sshd hosts named `web1`..`webN`.
    ///
    /// Panics (never skips) when OpenSSH's `sshd` or `ssh-keygen` is missing, or when an sshd
    /// does not come up (the panic message carries its `sshd.log`).
    pub fn start(count: usize) -> Fleet {
        Fleet::start_in(&std::env::temp_dir(), count)
    }

    /// [`Fleet::start`], with the fleet's temp dir created inside `parent`.
    pub fn start_in(parent: &Path, count: usize) -> Fleet {
        sshd_program();
        ssh_keygen_program();
        ensure_privsep_dir();

        let temp = tempfile::Builder::new()
            .prefix("deploy-fleet-")
            .tempdir_in(parent)
            .unwrap_or_else(|e| {
                panic!(
                    "could not create the fleet's temp dir in {}: {e}",
                    parent.display()
                )
            });
        // Canonical, so that it equals what `pwd` prints on a host.
        let dir = temp
            .path()
            .canonicalize()
            .expect("could not canonicalize the fleet's temp dir");

        let client_key = dir.join("client_key");
        generate_key(&client_key);
        let authorized_key = public_key_of(&client_key);

        let mut fleet = Fleet {
            temp: Some(temp),
            known_hosts: dir.join("known_hosts"),
            dir,
            hosts: Vec::with_capacity(count),
            client_key,
            user: current_user(),
            keep: false,
        };
        for index in 0..count {
            // Pushed one by one so that a panic while starting host N still stops hosts 1..N-1
            // (Fleet's Drop runs during unwinding).
            let host = TestHost::create(&fleet.dir, index, &authorized_key);
            fleet.hosts.push(host);
            fleet.hosts[index].start_on_new_port();
        }
        fleet.write_known_hosts();
        fleet
    }

    /// The fleet's temp dir (holds `deploy.toml`, the keys, `known_hosts` and one dir per host).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps the fleet's directory when the fleet is dropped (as `DEPLOY_TEST_KEEP=1` does).
    pub fn keep_dir(&mut self) {
        self.keep = true;
    }

    /// Host `index`, 0-based: `host(0)` is `web1`.
    pub fn host(&self, index: usize) -> &TestHost {
        self.hosts.get(index).unwrap_or_else(|| {
            panic!(
                "fleet has {} hosts; there is no host index {index}",
                self.hosts.len()
            )
        })
    }

    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// The ed25519 client key (no passphrase) authorized on every host.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// A known_hosts file with one `[127.0.0.1]:PORT ssh-ed25519 ...` line per host, written when
    /// the fleet started (a later [`Fleet::rekey`] does not update it).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The user every host is logged into (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// An inventory for this fleet: the `[ssh]` table (current user, the client key, the fleet's
    /// known_hosts, `connect_timeout = "5s"`), one `[[hosts]]` entry per host (tags `web` and
    /// `odd`/`even` by the number in its name), then `rest` verbatim.
    pub fn inventory_text(&self, rest: &str) -> String {
        let mut text = format!(
            "[ssh]\nuser = {}\nidentity_files = [{}]\nknown_hosts = [{}]\nconnect_timeout = \"5s\"\n\n",
            toml_string(&self.user),
            toml_string(path_str(&self.client_key)),
            toml_string(path_str(&self.known_hosts)),
        );
        for (index, host) in self.hosts.iter().enumerate() {
            let parity = if index % 2 == 0 { "odd" } else { "even" };
            text.push_str(&format!(
                "[[hosts]]\nname = {}\naddress = \"127.0.0.1\"\nport = {}\ntags = [\"web\", \"{parity}\"]\n\n",
                toml_string(&host.name),
                host.port,
            ));
        }
        text.push_str(rest);
        text
    }

    /// Writes [`Fleet::inventory_text`] to `<dir>/deploy.toml` and returns that path.
    pub fn write_inventory(&self, rest: &str) -> PathBuf {
        let path = self.dir.join("deploy.toml");
        fs::write(&path, self.inventory_text(rest))
            .unwrap_or_else(|e| panic!("could not write {}: {e}", path.display()));
        path
    }

    /// Stops host `index`: SIGTERM to its sshd (and to the sessions it serves) by PID, SIGKILL
    /// after 2 s, and waits for it. Connections to its port are refused afterwards.
    /// No-op when already stopped.
    pub fn stop(&mut self, index: usize) {
        self.host_mut(index).stop();
    }

    /// Starts host `index` again on the same port with the same host key (stops it first if it
    /// is running).
    pub fn restart(&mut self, index: usize) {
        let host = self.host_mut(index);
        host.stop();
        host.start_on_same_port();
    }

    /// Gives host `index` a NEW host key and restarts it with it. The fleet's known_hosts keeps the
    /// old key, so strict host key checking now fails for that host; `host_key_public` is updated
    /// to the new key.
    pub fn rekey(&mut self, index: usize) {
        let host = self.host_mut(index);
        host.stop();
        let key = host.host_key_path();
        generate_key(&key);
        host.host_key_public = public_key_of(&key);
        host.start_on_same_port();
    }

    /// Restarts host `index` with `lines` ahead of its generated sshd_config (they win over
    /// the generated ones, e.g. `AuthorizedKeysFile`, `HostCertificate`, `TrustedUserCAKeys`).
    pub fn configure(&mut self, index: usize, lines: &str) {
        let host = self.host_mut(index);
        host.stop();
        host.extra_config = lines.to_string();
        host.start_on_same_port();
    }

    /// Restarts host `index` so that every command there runs under a file size limit of
    /// `kilobytes` KiB (`ulimit -f`, in the shell's 512-byte blocks): writing a bigger file fails
    /// (SIGXFSZ), like a disk too small for a large artifact.
    pub fn limit_file_size(&mut self, index: usize, kilobytes: u64) {
        let host = self.host_mut(index);
        host.stop();
        host.file_size_limit_kb = Some(kilobytes);
        host.start_on_same_port();
    }

    /// Undoes [`Fleet::limit_file_size`] (restarts host `index` without a file size limit).
    pub fn unlimit_file_size(&mut self, index: usize) {
        let host = self.host_mut(index);
        host.stop();
        host.file_size_limit_kb = None;
        host.start_on_same_port();
    }

    /// The per-connection sshd processes of host `index`: descendants of its listening sshd
    /// that are sshd themselves (`sshd`, `sshd-session`, `sshd-auth`), found by walking down
    /// from the listener through sshd processes only. The shells and commands they run are not
    /// included. Empty when the host is stopped or has no connection.
    pub fn session_pids(&self, index: usize) -> Vec<u32> {
        let Some(listener) = self.host(index).pid() else {
            return Vec::new();
        };
        let table = process_table();
        let mut found = Vec::new();
        let mut stack = vec![listener];
        while let Some(parent) = stack.pop() {
            for (&pid, &(ppid, state)) in &table {
                if ppid == parent && state != 'Z' && !found.contains(&pid) && is_sshd_process(pid) {
                    found.push(pid);
                    stack.push(pid);
                }
            }
        }
        found.sort_unstable();
        found
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"KILL"`, ... as for `kill -s`) to every
    /// per-connection sshd process of host `index` ([`Fleet::session_pids`]), never to the
    /// listener nor to the commands under them: `STOP` freezes the host's open connections
    /// (TCP stays up, nothing answers; new connections still work), `CONT` thaws them, `KILL`
    /// drops them. Returns the PIDs signalled (empty: the host had no connection).
    pub fn signal_sessions(&self, index: usize, signal: &str) -> Vec<u32> {
        let pids = self.session_pids(index);
        send_signal(signal, &pids);
        pids
    }

    fn host_mut(&mut self, index: usize) -> &mut TestHost {
        let count = self.hosts.len();
        self.hosts
            .get_mut(index)
            .unwrap_or_else(|| panic!("fleet has {count} hosts; there is no host index {index}"))
    }

    fn write_known_hosts(&self) {
        let text: String = self
            .hosts
            .iter()
            .map(|h| format!("[127.0.0.1]:{} {}\n", h.port, h.host_key_public))
            .collect();
        fs::write(&self.known_hosts, text)
            .unwrap_or_else(|e| panic!("could not write {}: {e}", self.known_hosts.display()));
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Stop every host at once, so the 2 s SIGTERM grace is shared rather than per host.
        let children: Vec<Child> = self
            .hosts
            .iter_mut()
            .filter_map(|h| h.child.take())
            .collect();
        terminate(children);

        let Some(temp) = self.temp.take() else { return };
        if self.keep || keep_requested() {
            let path = temp.keep();
            eprintln!("keeping the test fleet's directory {}", path.display());
        } else {
            if thread::panicking() {
                eprintln!(
                    "test fleet directory {} is being removed; set DEPLOY_TEST_KEEP=1 to keep it \
                     (sshd logs: <dir>/webN/sshd.log)",
                    self.dir.display()
                );
            }
            if let Err(e) = temp.close() {
                eprintln!(
                    "warning: could not remove the test fleet's directory {}: {e}",
                    self.dir.display()
                );
            }
        }
    }
}

impl TestHost {
    fn create(fleet_dir: &Path, index: usize, authorized_key: &str) -> TestHost {
        let name = format!("web{}", index + 1);
        let dir = fleet_dir.join(&name);
        let root = dir.join("root");
        fs::create_dir_all(&root)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", root.display()));
        let mut host = TestHost {
            name,
            port: 0,
            root,
            host_key_public: String::new(),
            dir,
            authorized_key: authorized_key.to_string(),
            file_size_limit_kb: None,
            extra_config: String::new(),
            child: None,
        };
        let key = host.host_key_path();
        generate_key(&key);
        host.host_key_public = public_key_of(&key);
        host
    }

    /// This host's own directory (config, keys, `sshd.log`; `root` is inside it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// PID of the running sshd, `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Where sshd's stderr goes (`sshd -e`, appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// The content of `sshd.log` (empty if unreadable).
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The `[127.0.0.1]:PORT ssh-ed25519 ...` line for this host's current key.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key_public)
    }

    /// `<dir>/bin`: first on `PATH` of every command run on this host (see [`TestHost::wrap_command`]).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// Makes `name` a wrapper on this host only: writes the executable `<dir>/bin/<name>`
    /// (`#!/bin/sh` + `body`), which every later command on this host finds before the real
    /// program (the login script puts `<dir>/bin` first on `PATH`; the fleet's hosts all run as
    /// the same user, so a system-wide wrapper would hit every host). The body calls the real
    /// program by absolute path, from [`real_program`]; prefer running it without `exec`, so the
    /// wrapper stays visible to [`TestHost::wrapper_processes`] until the real program is done.
    ///
    /// ```ignore
    /// let mv = support::real_program("mv");
    /// // 2 s pause only when the arguments name a release: widens the finalize window.
    /// host.wrap_command("mv", &format!("case \"$*\" in *releases/*) sleep 2;; esac\n{} \"$@\"", mv.display()));
    /// ```
    ///
    /// Takes effect for commands started from now on (no restart); replaced atomically.
    pub fn wrap_command(&self, name: &str, body: &str) {
        assert!(
            !name.is_empty() && !name.contains('/'),
            "wrap_command: {name:?} is not a command name"
        );
        let bin = self.bin_dir();
        fs::create_dir_all(&bin)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", bin.display()));
        let path = bin.join(name);
        let temporary = bin.join(format!(".{name}.tmp"));
        fs::write(&temporary, format!("#!/bin/sh\n{body}\n"))
            .unwrap_or_else(|e| panic!("could not write {}: {e}", temporary.display()));
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("could not chmod {}: {e}", temporary.display()));
        fs::rename(&temporary, &path)
            .unwrap_or_else(|e| panic!("could not install {}: {e}", path.display()));
    }

    /// Removes the wrapper `name` (the real program is used again). No-op if there is none.
    pub fn unwrap_command(&self, name: &str) {
        let _ = fs::remove_file(self.bin_dir().join(name));
    }

    /// PIDs of processes still running one of this host's wrappers (their command line names
    /// `<dir>/bin/`): a wrapper that sleeps outlives the session that started it, so wait for
    /// this to be empty before judging what a host's tree ends up as.
    pub fn wrapper_processes(&self) -> Vec<u32> {
        let bin = format!("{}/", path_str(&self.bin_dir()));
        processes_where(|process| process.cmdline.contains(&bin))
    }

    fn host_key_path(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }

    fn shell_path(&self) -> PathBuf {
        self.dir.join("shell")
    }

    fn sessions_path(&self) -> PathBuf {
        self.dir.join("sessions.log")
    }

    /// The first line of the command of every SSH session this host ran since the last
    /// `forget_sessions`, in order (logged by the login script).
    pub fn session_commands(&self) -> Vec<String> {
        fs::read_to_string(self.sessions_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `session_commands` afresh.
    pub fn forget_sessions(&self) {
        let _ = fs::remove_file(self.sessions_path());
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("sshd.pid")
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(vec![child]);
        }
    }

    fn start_on_new_port(&mut self) {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port();
            match self.launch() {
                Launch::Ready => return,
                Launch::Exited { log, .. } if is_bind_failure(&log) => last_log = log,
                failure => self.startup_failed(failure),
            }
        }
        panic!(
            "sshd for {} could not bind a free port in {PORT_ATTEMPTS} attempts; last sshd.log:\n{last_log}",
            self.name
        );
    }

    fn start_on_same_port(&mut self) {
        // The port must stay the same (known_hosts and inventories name it); if something grabbed
        // it in the meantime, wait a little for it to go away.
        let mut last_log = String::new();
        for attempt in 0..10 {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(200));
            }
            match self.launch() {
                Launch::Ready => return,
                Launch::Exited { log, .. } if is_bind_failure(&log) => last_log = log,
                failure => self.startup_failed(failure),
            }
        }
        panic!(
            "sshd for {} could not bind its port {} again; last sshd.log:\n{last_log}",
            self.name, self.port
        );
    }

    fn startup_failed(&self, failure: Launch) -> ! {
        match failure {
            Launch::Ready => unreachable!("startup_failed called on success"),
            Launch::Exited { status, log } => panic!(
                "sshd for {} (port {}) exited during startup ({status}); {}:\n{log}",
                self.name,
                self.port,
                self.log_path().display()
            ),
            Launch::TimedOut { log } => panic!(
                "sshd for {} did not accept connections on 127.0.0.1:{} within {:?}; {}:\n{log}",
                self.name,
                self.port,
                START_TIMEOUT,
                self.log_path().display()
            ),
        }
    }

    fn write_files(&self) {
        let shell = self.shell_path();
        let mut script = String::from("#!/bin/sh\n");
        script.push_str(&format!(
            "# test host {}: every ssh login runs here (sshd ForceCommand)\n",
            self.name
        ));
        script.push_str(&format!(
            "cd {} || exit 1\n",
            sh_quote(path_str(&self.root))
        ));
        // `<dir>/bin` first on PATH: a test drops wrapper commands there (`wrap_command`).
        let bin = self.bin_dir();
        fs::create_dir_all(&bin)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", bin.display()));
        script.push_str(&format!(
            "PATH={}:\"$PATH\"\nexport PATH\n",
            sh_quote(path_str(&bin))
        ));
        // Each session's first command line, for tests that count what a run sends
        // (`session_commands`); a builtin append, no process; before
        // `ulimit -f`, which would kill the shell once the log outgrew it.
        script.push_str(&format!(
            "nl='\n'\nprintf '%s\\n' \"${{SSH_ORIGINAL_COMMAND%%\"$nl\"*}}\" >> {} 2>/dev/null || :\n",
            sh_quote(path_str(&self.sessions_path()))
        ));
        if let Some(kb) = self.file_size_limit_kb {
            // POSIX `ulimit -f` counts 512-byte blocks.
            script.push_str(&format!("ulimit -f {} || exit 1\n", kb.saturating_mul(2)));
        }
        script.push_str("if [ -z \"$SSH_ORIGINAL_COMMAND\" ]; then exec /bin/sh; fi\n");
        script.push_str("exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n");
        fs::write(&shell, script)
            .unwrap_or_else(|e| panic!("could not write {}: {e}", shell.display()));
        fs::set_permissions(&shell, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("could not chmod {}: {e}", shell.display()));

        let authorized = self.dir.join("authorized_keys");
        fs::write(&authorized, format!("{}\n", self.authorized_key))
            .unwrap_or_else(|e| panic!("could not write {}: {e}", authorized.display()));

        let config = format!(
            "{extra}# sshd for test host {name}\n\
             Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {host_key}\n\
             PidFile {pid_file}\n\
             AuthorizedKeysFile {authorized}\n\
             UsePAM no\n\
             StrictModes no\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n\
             MaxStartups 100:30:200\n\
             MaxSessions 50\n\
             SetEnv SHLVL=1\n\
             LogLevel ERROR\n\
             ForceCommand {force}\n",
            extra = self.extra_config,
            name = self.name,
            port = self.port,
            host_key = config_quote(&self.host_key_path()),
            pid_file = config_quote(&self.pid_file()),
            authorized = config_quote(&authorized),
            // The rest of the line is run by the user's shell with -c.
            force = sh_quote(path_str(&shell)),
        );
        let config_path = self.config_path();
        fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("could not write {}: {e}", config_path.display()));
    }

    /// Starts sshd on `self.port` and waits until it is listening.
    fn launch(&mut self) -> Launch {
        assert!(self.child.is_none(), "{}: sshd already running", self.name);
        self.write_files();
        let pid_file = self.pid_file();
        let _ = fs::remove_file(&pid_file);

        let log_path = self.log_path();
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("could not open {}: {e}", log_path.display()));
        let log_out = log
            .try_clone()
            .unwrap_or_else(|e| panic!("could not dup {}: {e}", log_path.display()));
        let mut child = Command::new(sshd_program())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", sshd_program().display()));
        let pid = child.id();
        let read_log = || {
            let all = fs::read(&log_path).unwrap_or_default();
            let start = usize::try_from(log_start).unwrap_or(0).min(all.len());
            String::from_utf8_lossy(&all[start..]).into_owned()
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Launch::Exited {
                        status,
                        log: read_log(),
                    };
                }
                Ok(None) => {}
                Err(e) => panic!("could not check on sshd (pid {pid}): {e}"),
            }
            // sshd writes its PidFile only once it has bound its port, so a listener answering on
            // the port is ours (not another process that got the same port) once it exists.
            let pid_written = fs::read_to_string(&pid_file)
                .map(|s| s.trim() == pid.to_string())
                .unwrap_or(false);
            if pid_written && accepts_tcp(self.port) && matches!(child.try_wait(), Ok(None)) {
                self.child = Some(child);
                return Launch::Ready;
            }
            if Instant::now() >= deadline {
                terminate(vec![child]);
                return Launch::TimedOut { log: read_log() };
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Normally Fleet's Drop has already stopped it; this is the safety net.
        self.stop();
    }
}

enum Launch {
    Ready,
    Exited { status: ExitStatus, log: String },
    TimedOut { log: String },
}

fn is_bind_failure(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Cannot bind any address")
}

fn accepts_tcp(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// A TCP listener on 127.0.0.1 that accepts connections and never sends (or reads) a byte:
/// an SSH server that hangs before its banner. Dropping it closes the listener and every
/// connection it accepted.
pub struct Blackhole {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("could not bind 127.0.0.1:0 for the blackhole listener");
        let port = listener
            .local_addr()
            .expect("could not read the blackhole listener's address")
            .port();
        listener
            .set_nonblocking(true)
            .expect("could not make the blackhole listener non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("blackhole-{port}"))
            .spawn(move || {
                let mut held = Vec::new();
                while !stop_flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                        Err(_) => thread::sleep(POLL),
                    }
                }
                drop(held);
            })
            .expect("could not spawn the blackhole thread");
        Blackhole {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TCP listener on 127.0.0.1 that nobody accepts from, named as a host of an inventory: any
/// connection attempt would sit in its backlog, so "no host was contacted" is checked, not
/// assumed.
pub struct Sentinel {
    listener: TcpListener,
}

impl Sentinel {
    pub fn new() -> Sentinel {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("could not bind 127.0.0.1:0 for the sentinel listener");
        listener
            .set_nonblocking(true)
            .expect("could not make the sentinel listener non-blocking");
        Sentinel { listener }
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("could not read the sentinel listener's address")
            .port()
    }

    /// A `[[hosts]]` entry named `name` pointing at the sentinel.
    pub fn host_entry(&self, name: &str) -> String {
        format!(
            "[[hosts]]\nname = {}\naddress = \"127.0.0.1\"\nport = {}\n\n",
            toml_string(name),
            self.port()
        )
    }

    /// Whether a connection is waiting in the backlog (takes it).
    pub fn contacted(&self) -> bool {
        match self.listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("sentinel listener: {e}"),
        }
    }

    /// Panics, with `ran`, if anything connected to the sentinel.
    pub fn assert_not_contacted(&self, ran: &Ran) {
        match self.listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("a host was contacted (from {peer}): {ran:?}"),
            Err(e) => panic!("sentinel listener: {e}"),
        }
    }
}

impl Default for Sentinel {
    fn default() -> Sentinel {
        Sentinel::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Background runs of `deploy`

/// A `deploy` process running in the background; its stdout and stderr go to files (a pipe
/// nobody reads could fill and stall it). Killed (SIGKILL) if dropped while still running.
///
/// Run it with `-v` (and no terminal, which is always the case here) to get one plain
/// `HOST: STEP` line per step on stderr, then [`Background::wait_for_line`] /
/// [`Background::signal_at`] to act at an exact step.
pub struct Background {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

/// Starts `deploy ARGS` (see [`deploy`]) in the background, stdin closed, output in
/// `<dir>/<tag>.stdout` and `<dir>/<tag>.stderr`.
pub fn spawn_deploy(dir: &Path, tag: &str, args: &[&str]) -> Background {
    let mut command = deploy();
    command.args(args);
    spawn_command(dir, tag, command)
}

/// Starts `command` (a `deploy` command line, see [`deploy`]) in the background, as
/// [`spawn_deploy`] does.
pub fn spawn_command(dir: &Path, tag: &str, mut command: Command) -> Background {
    let stdout = dir.join(format!("{tag}.stdout"));
    let stderr = dir.join(format!("{tag}.stderr"));
    let create = |path: &Path| {
        fs::File::create(path)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", path.display()))
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(create(&stdout))
        .stderr(create(&stderr))
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {command:?}: {e}"));
    Background {
        child: Some(child),
        stdout,
        stderr,
        started: Instant::now(),
    }
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the run was already reaped")
    }

    /// Time since it was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// True once the process has exited (it is not reaped: [`Background::wait`] still works).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Waits until a whole line of its stderr equals `line` (e.g. `"web2: switch"`, ignoring
    /// trailing whitespace). Panics, with the stderr so far, if the process exits first or
    /// `patience` runs out.
    pub fn wait_for_line(&mut self, line: &str, patience: Duration) {
        self.wait_for_line_where(&format!("the line {line:?}"), |seen| seen == line, patience);
    }

    /// Waits until a whole line of its stderr (trailing whitespace removed) satisfies
    /// `matches`, and returns that line. `what` describes it for the panic message (the process
    /// exited first, or `patience` ran out).
    pub fn wait_for_line_where(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        patience: Duration,
    ) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let text = self.stderr_so_far();
            // Only lines already ended by a newline: the last one may be half written.
            let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
            if let Some(found) = complete
                .lines()
                .map(str::trim_end)
                .find(|seen| matches(seen))
            {
                return found.to_string();
            }
            if self.has_exited() {
                panic!(
                    "deploy exited before printing {what}; stderr:\n{}\nstdout:\n{}",
                    self.stderr_so_far(),
                    fs::read_to_string(&self.stdout).unwrap_or_default()
                );
            }
            if Instant::now() >= deadline {
                panic!("deploy did not print {what} within {patience:?}; stderr so far:\n{text}");
            }
            thread::sleep(POLL);
        }
    }

    /// Sends `signal` (`"INT"`, `"TERM"`, `"KILL"`, ...) to the process, by PID.
    pub fn signal(&self, signal: &str) {
        send_signal(signal, &[self.pid()]);
    }

    /// [`Background::wait_for_line`], then [`Background::signal`] at once.
    pub fn signal_at(&mut self, line: &str, signal: &str, patience: Duration) {
        self.wait_for_line(line, patience);
        self.signal(signal);
    }

    /// Waits for it to exit and returns what it did. If it is still running after `patience`,
    /// kills it (SIGKILL) and panics with its stderr.
    pub fn wait(mut self, patience: Duration) -> Ran {
        match self.wait_within(patience) {
            Some(ran) => ran,
            None => panic!(
                "deploy did not finish within {patience:?} (killed); stderr:\n{}",
                self.stderr_so_far()
            ),
        }
    }

    /// Like [`Background::wait`], but returns `None` (after killing it) instead of panicking
    /// when it is still running after `patience`.
    pub fn wait_within(&mut self, patience: Duration) -> Option<Ran> {
        let deadline = Instant::now() + patience;
        let mut child = self.child.take().expect("the run was already reaped");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(POLL),
                Err(e) => panic!("could not check on deploy (pid {}): {e}", child.id()),
            }
        }?;
        Some(Ran {
            code: status.code().unwrap_or(-1),
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr_so_far(),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mounts

/// A mount made by a test, unmounted (lazily, `umount -l`) when dropped. Needs root (tests run
/// as root here and in CI); panics with a clear message otherwise. Declare it AFTER the
/// [`Fleet`] whose host root it is under, so that it is dropped (unmounted) first.
pub struct MountGuard {
    dir: PathBuf,
}

impl MountGuard {
    /// Mounts a tmpfs of `kib` KiB on `dir` (created if missing): a small disk that fills up.
    pub fn tmpfs(dir: &Path, kib: u64) -> MountGuard {
        require_root("mounting a tmpfs");
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("could not create {}: {e}", dir.display()));
        run_mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kib}k"),
            "tmpfs",
            path_str(dir),
        ]);
        MountGuard {
            dir: dir.to_path_buf(),
        }
    }

    /// Makes the existing directory `dir` read-only (`mount --bind D D`, then
    /// `mount -o remount,bind,ro D`): every write under it fails with EROFS.
    pub fn read_only(dir: &Path) -> MountGuard {
        require_root("a read-only bind mount");
        run_mount(&["--bind", path_str(dir), path_str(dir)]);
        let guard = MountGuard {
            dir: dir.to_path_buf(),
        };
        run_mount(&["-o", "remount,bind,ro", path_str(dir)]);
        guard
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let result = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "warning: umount -l {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!(
                "warning: could not run umount -l {}: {e}",
                self.dir.display()
            ),
        }
    }
}

fn run_mount(args: &[&str]) {
    let output = Command::new("mount")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run mount {args:?}: {e}"));
    assert!(
        output.status.success(),
        "mount {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Panics unless the tests run as root (uid 0).
pub fn require_root(why: &str) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string();
    assert!(
        uid == "0",
        "{why} needs root: these tests run as root (in CI too), but the effective uid is {uid}"
    );
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One process of the process table (see [`processes_where`]).
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Its arguments joined by spaces (`sleep 4242`).
    pub cmdline: String,
    /// Its working directory (unreadable: empty).
    pub cwd: PathBuf,
}

/// PIDs of the live (not zombie) processes for which `matches` holds, from /proc.
pub fn processes_where(matches: impl Fn(&ProcessInfo) -> bool) -> Vec<u32> {
    let mut pids: Vec<u32> = process_table()
        .into_iter()
        .filter(|&(_, (_, state))| state != 'Z' && state != 'X')
        .filter_map(|(pid, (ppid, _))| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = raw
                .split(|&byte| byte == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let info = ProcessInfo {
                pid,
                ppid,
                cmdline,
                cwd,
            };
            matches(&info).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` (as for `kill -s`) to each of `pids`. Only for processes the test started
/// (directly or through its own hosts).
pub fn signal_pids(signal: &str, pids: &[u32]) {
    send_signal(signal, pids);
}

/// Whether `pid` is a live process (not a zombie).
pub fn is_alive(pid: u32) -> bool {
    process_alive(pid)
}

/// An absolute path to the real `name` (`mv`, `env`, `sleep`...) on the test's own `PATH`,
/// for wrapper bodies ([`TestHost::wrap_command`]). Panics if there is none.
pub fn real_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate.is_absolute()
                && fs::metadata(candidate)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no `{name}` program found on PATH"))
}

fn is_sshd_process(pid: u32) -> bool {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    matches!(comm.trim(), "sshd" | "sshd-session" | "sshd-auth")
}

/// SIGTERM each child and every process below it (per-connection sshd processes and the
/// sessions they run), by PID; SIGKILL whatever is still alive after [`TERM_GRACE`]; reap the
/// children.
fn terminate(mut children: Vec<Child>) {
    if children.is_empty() {
        return;
    }
    let roots: Vec<u32> = children.iter().map(Child::id).collect();
    let descendants = descendants_of(&roots);
    let mut targets = roots.clone();
    targets.extend(&descendants);
    send_signal("TERM", &targets);

    let deadline = Instant::now() + TERM_GRACE;
    loop {
        let children_done = children
            .iter_mut()
            .all(|c| !matches!(c.try_wait(), Ok(None)));
        let others_done = descendants.iter().all(|&p| !process_alive(p));
        if children_done && others_done {
            break;
        }
        if Instant::now() >= deadline {
            for child in children.iter_mut() {
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
            }
            let alive: Vec<u32> = descendants
                .iter()
                .copied()
                .filter(|&p| process_alive(p))
                .collect();
            send_signal("KILL", &alive);
            break;
        }
        thread::sleep(POLL);
    }
    for child in children.iter_mut() {
        let _ = child.wait();
    }
}

fn send_signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    // The shell's `kill` builtin: std has no kill(2) with a signal of our choice.
    let result = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("kill -s {signal} {} 2>/dev/null", list.join(" ")))
        .stdin(Stdio::null())
        .status();
    if let Err(e) = result {
        eprintln!("warning: could not run /bin/sh to send SIG{signal} to {list:?}: {e}");
    }
}

/// Parent PID and state of every process, from /proc.
fn process_table() -> HashMap<u32, (u32, char)> {
    let mut table = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(info) = read_stat(pid) {
            table.insert(pid, info);
        }
    }
    table
}

fn read_stat(pid: u32) -> Option<(u32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

fn descendants_of(roots: &[u32]) -> Vec<u32> {
    let table = process_table();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut stack: Vec<u32> = roots.to_vec();
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if !found.contains(&child) && !roots.contains(&child) {
                found.push(child);
                stack.push(child);
            }
        }
    }
    found
}

/// True while `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    matches!(read_stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

// ---------------------------------------------------------------------------------------------
// OpenSSH and the environment

fn sshd_program() -> &'static Path {
    static SSHD: OnceLock<PathBuf> = OnceLock::new();
    SSHD.get_or_init(|| {
        find_program("sshd", &["/usr/sbin/sshd"]).unwrap_or_else(|| {
            panic!("{OPENSSH_MISSING} (looked for /usr/sbin/sshd and `sshd` on PATH)")
        })
    })
}

fn ssh_keygen_program() -> &'static Path {
    static KEYGEN: OnceLock<PathBuf> = OnceLock::new();
    KEYGEN.get_or_init(|| {
        find_program("ssh-keygen", &["/usr/bin/ssh-keygen"]).unwrap_or_else(|| {
            panic!("{OPENSSH_MISSING} (ssh-keygen is missing: looked for /usr/bin/ssh-keygen and `ssh-keygen` on PATH)")
        })
    })
}

/// An absolute path to an executable: one of `preferred`, else `name` found on PATH
/// (sshd refuses to run from a relative path).
fn find_program(name: &str, preferred: &[&str]) -> Option<PathBuf> {
    let is_executable = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if let Some(found) = preferred.iter().map(Path::new).find(|p| is_executable(p)) {
        return Some(found.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .and_then(|p| p.canonicalize().ok())
}

/// sshd run as root needs its privilege separation directory.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if dir.is_dir() {
        return;
    }
    let created = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)));
    if let Err(e) = created {
        // Only fatal for sshd run as root; if it is, sshd's own error ends up in the panic.
        eprintln!("warning: could not create {}: {e}", dir.display());
    }
}

fn generate_key(path: &Path) {
    // ssh-keygen asks before overwriting: remove any previous key first.
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(pub_path(path));
    let output = Command::new(ssh_keygen_program())
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .args(["-C", "deploy-test"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", ssh_keygen_program().display()));
    assert!(
        output.status.success(),
        "ssh-keygen -f {} failed ({}): {}{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ssh-ed25519 AAAA...` (type and key, no comment) of the key pair at `private_key`.
fn public_key_of(private_key: &Path) -> String {
    let pub_path = pub_path(private_key);
    let text = fs::read_to_string(&pub_path)
        .unwrap_or_else(|e| panic!("could not read {}: {e}", pub_path.display()));
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    assert!(
        fields.len() == 2 && fields[0] == "ssh-ed25519",
        "unexpected public key in {}: {text:?}",
        pub_path.display()
    );
    fields.join(" ")
}

fn pub_path(private_key: &Path) -> PathBuf {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn current_user() -> String {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let from_id = Command::new("id")
            .arg("-un")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|u| !u.is_empty());
        from_id
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
            .expect("could not determine the current user name (`id -un`, $USER, $LOGNAME)")
    })
    .clone()
}

fn keep_requested() -> bool {
    std::env::var("DEPLOY_TEST_KEEP").is_ok_and(|v| v == "1")
}

/// `path` as UTF-8 (every path of a test fleet is); panics otherwise.
pub fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("test fleet path is not UTF-8: {}", path.display()))
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A single-quoted POSIX shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path as one sshd_config argument.
fn config_quote(path: &Path) -> String {
    let s = path_str(path);
    assert!(
        !s.contains('"') && !s.contains('%') && !s.contains('\n'),
        "test fleet path unusable in sshd_config: {s}"
    );
    format!("\"{s}\"")
}
