//! Chaos test of `deploy push` (SPEC §3, §4, §6): the controller is killed (SIGKILL) or
//! interrupted (SIGTERM, SIGINT) at seeded random instants of a push, and at the instants a
//! host's `finalize` or `switch` progress line appears. After each signal, once the hosts are
//! quiet, every host must hold complete releases only, a `current` naming one of them and a last
//! history record that agrees with what is live; the next push (no signal, no `deploy unlock`)
//! must then succeed everywhere.
//!
//! Owns: the seeded PRNG (`DEPLOY_CHAOS_SEED` overrides [`DEFAULT_SEED`]), the three many-file
//! artifacts, the signal schedule, and the host-state invariants checked after every push.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Fleet};

/// The seed used unless `DEPLOY_CHAOS_SEED` (decimal or `0x` hex) says otherwise.
const DEFAULT_SEED: u64 = 0x00C0_FFEE_2024_0001;
/// Test hosts (`web1`..`web3`), all worked on at once.
const HOSTS: usize = 3;
/// Regular files in every artifact (nested two directories deep).
const FILES: usize = 3000;
/// Iterations per signal with a uniformly drawn delay.
const RANDOM_ITERATIONS: usize = 20;
/// Random delays are drawn from [0, DELAY_SPAN × a normal push's duration].
const DELAY_SPAN: f64 = 1.2;
/// The progress steps whose line triggers a signal, one iteration per (step, host).
const TARGETED_STEPS: [&str; 2] = ["finalize", "switch"];
/// How long one push may take before the test kills it and calls it a hang.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the hosts' sessions may outlive the controller before the state is checked anyway.
const QUIET_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);
/// Detailed violation reports shown in the failure message (all are counted).
const REPORTS_SHOWN: usize = 8;

// ---------------------------------------------------------------------------------------------
// Seeded randomness

fn seed() -> u64 {
    let Ok(text) = std::env::var("DEPLOY_CHAOS_SEED") else {
        return DEFAULT_SEED;
    };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.unwrap_or_else(|error| panic!("DEPLOY_CHAOS_SEED={text:?} is not a number: {error}"))
}

/// splitmix64: small, fast, and the same sequence for the same seed everywhere.
struct Random {
    state: u64,
}

impl Random {
    fn new(seed: u64) -> Random {
        Random { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in [0, 1).
    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, bound).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for index in (1..items.len()).rev() {
            items.swap(index, self.below(index + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Artifacts

/// One prebuilt artifact: its `.tar.gz` and the regular files it holds (path -> content).
struct Artifact {
    /// `v1`, `v2`, `v3`: the prefix of every version pushed with this artifact.
    name: String,
    path: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

/// `<dir>/<name>.tar.gz` with [`FILES`] small files in `dNN/eN/` directories, every content
/// naming the artifact (so no two artifacts share a file's bytes).
fn build_artifact(dir: &Path, name: &str) -> Artifact {
    let mut files = BTreeMap::new();
    for number in 0..FILES {
        let path = format!(
            "d{:02}/e{}/f{:03}.txt",
            number / 300,
            number / 30 % 10,
            number
        );
        let content = format!("{name} file {number}\n").repeat(1 + number % 4);
        files.insert(path, content.into_bytes());
    }
    let path = dir.join(format!("{name}.tar.gz"));
    let output = File::create(&path).expect("create the artifact");
    let encoder = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    let directories: BTreeSet<String> = files
        .keys()
        .flat_map(|file| {
            let (first, _) = file.split_once('/').expect("nested path");
            let (second, _) = file.rsplit_once('/').expect("nested path");
            [format!("{first}/"), format!("{second}/")]
        })
        .collect();
    for directory in &directories {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(1_700_000_000);
        header.set_size(0);
        builder
            .append_data(&mut header, directory, std::io::empty())
            .expect("append a directory");
    }
    for (file, content) in &files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, file, content.as_slice())
            .expect("append a file");
    }
    builder
        .into_inner()
        .expect("finish the tar stream")
        .finish()
        .expect("finish the gzip stream");
    Artifact {
        name: name.to_string(),
        path,
        files,
    }
}

/// Why the tree at `release` is not exactly `artifact`'s files; `None` when it is.
fn release_mismatch(release: &Path, artifact: &Artifact) -> Option<String> {
    let mut found = BTreeSet::new();
    let mut odd = Vec::new();
    let mut different = Vec::new();
    let mut pending = vec![release.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let listing = match std::fs::read_dir(&directory) {
            Ok(listing) => listing,
            Err(error) => return Some(format!("cannot list {}: {error}", directory.display())),
        };
        for entry in listing.flatten() {
            let path = entry.path();
            let relative = path
                .strip_prefix(release)
                .expect("under the release")
                .to_string_lossy()
                .into_owned();
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(error) => return Some(format!("cannot stat {relative}: {error}")),
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                match artifact.files.get(&relative) {
                    Some(expected) => {
                        if std::fs::read(&path).ok().as_ref() != Some(expected) {
                            different.push(relative.clone());
                        }
                    }
                    None => odd.push(relative.clone()),
                }
                found.insert(relative);
            } else {
                odd.push(format!("{relative} (not a regular file)"));
            }
        }
    }
    let missing: Vec<&String> = artifact
        .files
        .keys()
        .filter(|file| !found.contains(*file))
        .collect();
    if missing.is_empty() && odd.is_empty() && different.is_empty() {
        return None;
    }
    let sample = |items: Vec<String>| -> String {
        let count = items.len();
        let shown: Vec<String> = items.into_iter().take(3).collect();
        format!("{count} {shown:?}")
    };
    Some(format!(
        "{} of {} files present; missing {}; not in the artifact {}; different content {}",
        found.len() - odd.len().min(found.len()),
        artifact.files.len(),
        sample(missing.into_iter().cloned().collect()),
        sample(odd),
        sample(different),
    ))
}

// ---------------------------------------------------------------------------------------------
// Processes and signals

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Kill,
    Terminate,
    Interrupt,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Terminate => "TERM",
            Signal::Interrupt => "INT",
        }
    }

    fn number(self) -> i32 {
        match self {
            Signal::Kill => 9,
            Signal::Terminate => 15,
            Signal::Interrupt => 2,
        }
    }
}

/// When the signal is sent.
#[derive(Clone, Debug)]
enum Moment {
    /// This long after the push was spawned.
    After(Duration),
    /// As soon as this exact stderr line (`web2: finalize`) is read.
    OnLine(String),
}

impl std::fmt::Display for Moment {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Moment::After(delay) => write!(formatter, "after {} ms", delay.as_millis()),
            Moment::OnLine(line) => write!(formatter, "on the line {line:?}"),
        }
    }
}

/// Parent PID and state of `pid`, from /proc.
fn process_stat(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((parent, state))
}

/// Whether `pid` (our unreaped child) has already exited.
fn has_exited(pid: u32) -> bool {
    !matches!(process_stat(pid), Some((_, state)) if state != 'Z' && state != 'X')
}

/// Live processes whose parent is `parent` (an sshd's per-connection processes).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(listing) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    listing
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            matches!(process_stat(pid), Some((ppid, state)) if ppid == parent && state != 'Z')
        })
        .collect()
}

/// Sends `signal` to `pid` with kill(1) (std has no kill(2) with a signal of our choice). The
/// caller guarantees `pid` is an unreaped child, so it cannot name another process.
fn send(signal: Signal, pid: u32) {
    let status = Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("kill(1) runs");
    assert!(
        status.success() || has_exited(pid),
        "kill -s {} {pid} failed: {status}",
        signal.name()
    );
}

/// What happened to one push.
struct Finished {
    status: ExitStatus,
    duration: Duration,
    /// When the signal was sent (since spawn), if it was.
    signalled: Option<Duration>,
    /// The process had already exited when the signal was due.
    exited_before_signal: bool,
    /// A `webN: ...` progress line had been read when the signal was sent.
    progress_seen: bool,
    stdout: String,
    stderr: Vec<String>,
}

impl Finished {
    fn describe_status(&self) -> String {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => format!("{}", self.status),
        }
    }

    fn stderr_tail(&self, lines: usize) -> String {
        let start = self.stderr.len().saturating_sub(lines);
        self.stderr[start..].join("\n")
    }
}

/// What the stderr reader saw.
struct Reading {
    lines: Vec<String>,
    signalled: Option<Duration>,
    exited_before_signal: bool,
}

// ---------------------------------------------------------------------------------------------
// The chaos run

struct Chaos {
    seed: u64,
    random: Random,
    fleet: Fleet,
    inventory: PathBuf,
    artifacts: Vec<Artifact>,
    /// Extra push flags this build needs (`--allow-downgrade` where it exists).
    extra_flags: Vec<&'static str>,
    /// Index into `artifacts` of what every host is live on between iterations.
    live_artifact: usize,
    /// Versions pushed so far (each push gets a fresh version: `v2-017`).
    pushes: usize,
    /// Release directories already compared file by file: (host, version) -> inode.
    verified: HashMap<(usize, String), (u64, u64)>,
    violations: Vec<String>,
    /// Iterations whose push had ended before its signal was due.
    finished_before_signal: BTreeMap<&'static str, usize>,
    /// Iterations per signal.
    iterations: BTreeMap<&'static str, usize>,
    /// Exit 130 although some host stayed live on the version being pushed.
    interrupted_but_switched: Vec<String>,
    /// Hosts' sessions still running at [`QUIET_DEADLINE`] after the controller ended.
    slow_to_quiet: usize,
}

/// Names what an iteration did, for reports.
struct Iteration {
    number: usize,
    signal: Signal,
    moment: Moment,
    version: String,
    from: String,
}

impl Chaos {
    fn start(seed: u64) -> Chaos {
        let fleet = Fleet::start(HOSTS);
        let artifacts: Vec<Artifact> = ["v1", "v2", "v3"]
            .iter()
            .map(|name| build_artifact(fleet.dir(), name))
            .collect();
        let inventory = fleet.dir().join("chaos.toml");
        let text = fleet
            .inventory_text(&format!(
                "[deploy]\nconcurrency = {HOSTS}\nhost_timeout = \"60s\"\n\n\
                 [services.app]\nbase_dir = \"app\"\nkeep_releases = 3\n"
            ))
            .replace("connect_timeout = \"5s\"", "connect_timeout = \"2s\"");
        assert!(text.contains("connect_timeout = \"2s\""), "{text}");
        std::fs::write(&inventory, text).expect("write the inventory");
        let help = crate::run(support::deploy().args(["push", "--help"]));
        let extra_flags = if help.stdout.contains("--allow-downgrade") {
            vec!["--allow-downgrade"]
        } else {
            Vec::new()
        };
        Chaos {
            seed,
            random: Random::new(seed),
            fleet,
            inventory,
            artifacts,
            extra_flags,
            live_artifact: 0,
            pushes: 0,
            verified: HashMap::new(),
            violations: Vec::new(),
            finished_before_signal: BTreeMap::new(),
            iterations: BTreeMap::new(),
            interrupted_but_switched: Vec::new(),
            slow_to_quiet: 0,
        }
    }

    fn next_version(&mut self, artifact: usize) -> String {
        self.pushes += 1;
        format!("{}-{:03}", self.artifacts[artifact].name, self.pushes)
    }

    fn artifact_of(&self, version: &str) -> Option<&Artifact> {
        let (name, _) = version.split_once('-')?;
        self.artifacts.iter().find(|artifact| artifact.name == name)
    }

    fn app(&self, host: usize) -> PathBuf {
        self.fleet.host(host).root.join("app")
    }

    /// Spawns `deploy -v push` of `version` and delivers `signal` at `moment` (if any); waits
    /// for the process to end.
    fn push(&self, version: &str, artifact: usize, signal: Option<(Signal, Moment)>) -> Finished {
        let stdout_path = self.fleet.dir().join("push.stdout");
        let mut child: Child = support::deploy()
            .args(["-v", "push", "-i"])
            .arg(&self.inventory)
            .args(["--version", version, "--artifact"])
            .arg(&self.artifacts[artifact].path)
            .args(["--output", "json", "--no-progress"])
            .args(&self.extra_flags)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create the stdout file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("deploy starts");
        let started = Instant::now();
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let progress_seen = Arc::new(AtomicBool::new(false));
        let trigger = match &signal {
            Some((signal, Moment::OnLine(line))) => Some((*signal, line.clone())),
            _ => None,
        };
        let (done, reading) = mpsc::channel();
        let seen = Arc::clone(&progress_seen);
        // The reader sends a line-triggered signal itself (the child is never reaped before
        // the reader has finished, so its PID cannot be reused meanwhile).
        thread::spawn(move || {
            let mut result = Reading {
                lines: Vec::new(),
                signalled: None,
                exited_before_signal: false,
            };
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("web") && line.contains(": ") {
                    seen.store(true, Ordering::SeqCst);
                }
                if let Some((signal, wanted)) = &trigger
                    && result.signalled.is_none()
                    && line == *wanted
                {
                    result.exited_before_signal = has_exited(pid);
                    send(*signal, pid);
                    result.signalled = Some(started.elapsed());
                }
                result.lines.push(line);
            }
            let _ = done.send(result);
        });

        let mut signalled = None;
        let mut exited_before_signal = false;
        let mut progress_at_signal = false;
        if let Some((signal, Moment::After(delay))) = &signal {
            thread::sleep(delay.saturating_sub(started.elapsed()));
            exited_before_signal = has_exited(pid);
            progress_at_signal = progress_seen.load(Ordering::SeqCst);
            send(*signal, pid);
            signalled = Some(started.elapsed());
        }
        let reading = match reading.recv_timeout(RUN_DEADLINE) {
            Ok(reading) => reading,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "seed {:#x}: `deploy push --version {version}` did not end within {:?} \
                     (signal {signal:?}); killed it",
                    self.seed, RUN_DEADLINE
                );
            }
        };
        let status = child.wait().expect("wait for deploy");
        if reading.signalled.is_some() {
            signalled = reading.signalled;
            exited_before_signal = reading.exited_before_signal;
            progress_at_signal = true;
        }
        Finished {
            status,
            duration: started.elapsed(),
            signalled,
            exited_before_signal,
            progress_seen: progress_at_signal,
            stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            stderr: reading.lines,
        }
    }

    /// Waits until no host has an SSH session left (whatever the dead controller started on a
    /// host has finished), for up to [`QUIET_DEADLINE`].
    fn wait_until_quiet(&mut self) {
        let deadline = Instant::now() + QUIET_DEADLINE;
        let daemons: Vec<u32> = self
            .fleet
            .hosts()
            .iter()
            .filter_map(|host| host.pid())
            .collect();
        while daemons
            .iter()
            .any(|&daemon| !children_of(daemon).is_empty())
        {
            if Instant::now() > deadline {
                self.slow_to_quiet += 1;
                eprintln!(
                    "chaos: hosts still have sessions {QUIET_DEADLINE:?} after the controller ended"
                );
                return;
            }
            thread::sleep(POLL);
        }
    }

    /// The live version of host `index` and every invariant it breaks: (a) each
    /// `releases/*` is exactly its artifact's files, (b) `current` is a relative link to one of
    /// them, (c) the last history line is whole JSON that agrees with what is live.
    fn check_host(&mut self, index: usize) -> (Option<String>, Vec<String>) {
        let app = self.app(index);
        let mut problems = Vec::new();

        // (a) complete releases only.
        let releases = sorted_entries(&app.join("releases"));
        for name in &releases {
            let path = app.join("releases").join(name);
            let metadata = match std::fs::symlink_metadata(&path) {
                Ok(metadata) => metadata,
                Err(error) => {
                    problems.push(format!("releases/{name}: {error}"));
                    continue;
                }
            };
            if !metadata.is_dir() {
                problems.push(format!("releases/{name} is not a directory"));
                continue;
            }
            let Some(artifact) = self.artifact_of(name) else {
                problems.push(format!("releases/{name} is no version this test pushed"));
                continue;
            };
            // A release is never changed once named: a directory already compared file by
            // file (same inode) is not read again.
            let identity = (metadata.dev(), metadata.ino());
            if self.verified.get(&(index, name.clone())) == Some(&identity) {
                continue;
            }
            match release_mismatch(&path, artifact) {
                Some(mismatch) => problems.push(format!(
                    "releases/{name} is not a complete release of {}: {mismatch}",
                    artifact.name
                )),
                None => {
                    self.verified.insert((index, name.clone()), identity);
                }
            }
        }

        // (b) current names one of them, relatively.
        let live = match std::fs::read_link(app.join("current")) {
            Err(error) => {
                problems.push(format!("current: {error}"));
                None
            }
            Ok(target) => {
                let text = target.to_string_lossy().into_owned();
                match text.strip_prefix("releases/") {
                    Some(name) if releases.iter().any(|release| release == name) => {
                        Some(name.to_string())
                    }
                    _ => {
                        problems.push(format!(
                            "current -> {text}: not a relative link to one of releases/{releases:?}"
                        ));
                        None
                    }
                }
            }
        };

        // (c) the last history record agrees with what is live.
        match last_history_record(&app) {
            Err(problem) => problems.push(problem),
            Ok(record) => {
                if let Some(problem) = history_disagreement(&record, live.as_deref()) {
                    problems.push(problem);
                }
            }
        }
        (live, problems)
    }

    /// `ls releases`, `readlink current`, the last history line, staging and lock of every host.
    fn state_of_hosts(&self) -> String {
        let mut text = String::new();
        for (index, host) in self.fleet.hosts().iter().enumerate() {
            let app = self.app(index);
            let history = std::fs::read_to_string(app.join(".deploy/history.jsonl"))
                .unwrap_or_else(|error| format!("({error})"));
            let last = history.lines().last().unwrap_or("(empty)").to_string();
            text.push_str(&format!(
                "  {}: releases {:?}; current -> {}; staging {:?}; lock {}\n    last history line: {last}\n",
                host.name,
                sorted_entries(&app.join("releases")),
                std::fs::read_link(app.join("current"))
                    .map(|target| target.display().to_string())
                    .unwrap_or_else(|error| format!("({error})")),
                sorted_entries(&app.join(".deploy/staging")),
                std::fs::read_to_string(app.join(".deploy/lock/holder"))
                    .map(|holder| holder.trim().to_string())
                    .unwrap_or_else(|_| "none".to_string()),
            ));
        }
        text
    }

    fn violation(&mut self, iteration: &Iteration, problem: &str, run: &Finished) {
        let report = format!(
            "VIOLATION (seed {seed:#x}, iteration {number}, SIG{signal} {moment}, push {from} -> {version}):\n  {problem}\n\
             push: {status} after {duration} ms (signal sent at {signalled:?}, progress seen then: {progress})\n\
             hosts:\n{hosts}deploy stderr (last lines):\n{stderr}\ndeploy stdout:\n{stdout}",
            seed = self.seed,
            number = iteration.number,
            signal = iteration.signal.name(),
            moment = iteration.moment,
            from = iteration.from,
            version = iteration.version,
            status = run.describe_status(),
            duration = run.duration.as_millis(),
            signalled = run.signalled.map(|at| at.as_millis()),
            progress = run.progress_seen,
            hosts = self.state_of_hosts(),
            stderr = run.stderr_tail(25),
            stdout = trimmed(&run.stdout, 3000),
        );
        eprintln!("{report}");
        self.violations.push(report);
    }

    /// Checks every host; returns the live version of each.
    fn check_hosts(
        &mut self,
        iteration: &Iteration,
        run: &Finished,
        when: &str,
    ) -> Vec<Option<String>> {
        let mut lives = Vec::new();
        for index in 0..HOSTS {
            let (live, problems) = self.check_host(index);
            for problem in problems {
                let name = self.fleet.host(index).name.clone();
                self.violation(iteration, &format!("{when}, {name}: {problem}"), run);
            }
            lives.push(live);
        }
        lives
    }

    /// One iteration: a push to a fresh version of the next artifact with `signal` at
    /// `moment`, the invariants, then a push of the third artifact with no signal.
    fn iteration(&mut self, number: usize, signal: Signal, moment: Moment) {
        let target = (self.live_artifact + 1) % self.artifacts.len();
        let recovery = (self.live_artifact + 2) % self.artifacts.len();
        let from = self.lives_text();
        let version = self.next_version(target);
        let iteration = Iteration {
            number,
            signal,
            moment: moment.clone(),
            version: version.clone(),
            from,
        };
        *self.iterations.entry(signal.name()).or_default() += 1;

        let run = self.push(&version, target, Some((signal, moment.clone())));
        self.wait_until_quiet();
        if run.exited_before_signal || (run.signalled.is_none() && run.status.success()) {
            *self
                .finished_before_signal
                .entry(signal.name())
                .or_default() += 1;
        }
        if let Some(problem) = exit_problem(signal, &moment, &run) {
            self.violation(&iteration, &problem, &run);
        }
        let lives = self.check_hosts(&iteration, &run, "after the signal");
        if run.status.code() == Some(130)
            && lives.iter().any(|live| live.as_deref() == Some(&version))
        {
            self.interrupted_but_switched.push(format!(
                "iteration {number} (SIG{} {moment}): exit 130, live {lives:?}",
                signal.name()
            ));
        }

        // (d) the next push, to another version, succeeds without `deploy unlock`.
        let next = self.next_version(recovery);
        let after = self.push(&next, recovery, None);
        let recovery_iteration = Iteration {
            version: next.clone(),
            from: format!("{lives:?}"),
            ..iteration
        };
        if !after.status.success() {
            self.violation(
                &recovery_iteration,
                &format!(
                    "the next push (no signal) to {next} did not succeed: {}",
                    after.describe_status()
                ),
                &after,
            );
        }
        let lives = self.check_hosts(&recovery_iteration, &after, "after the next push");
        for (index, live) in lives.iter().enumerate() {
            if live.as_deref() != Some(next.as_str()) {
                let name = self.fleet.host(index).name.clone();
                self.violation(
                    &recovery_iteration,
                    &format!("after the next push, {name} is live on {live:?}, not {next}"),
                    &after,
                );
            }
        }
        self.live_artifact = recovery;
    }

    fn lives_text(&self) -> String {
        let lives: Vec<String> = (0..HOSTS)
            .map(|index| {
                std::fs::read_link(self.app(index).join("current"))
                    .map(|target| target.display().to_string().replace("releases/", ""))
                    .unwrap_or_else(|_| "none".to_string())
            })
            .collect();
        lives.join(",")
    }

    /// The plain push of `artifact` before any signal; returns how long it took.
    fn plain_push(&mut self, artifact: usize) -> Duration {
        let version = self.next_version(artifact);
        let run = self.push(&version, artifact, None);
        assert!(
            run.status.success(),
            "seed {:#x}: the plain push of {version} failed ({}):\n{}\n{}",
            self.seed,
            run.describe_status(),
            run.stderr_tail(40),
            run.stdout
        );
        for index in 0..HOSTS {
            let (live, problems) = self.check_host(index);
            assert!(
                problems.is_empty() && live.as_deref() == Some(version.as_str()),
                "seed {:#x}: after the plain push of {version}: live {live:?}, problems {problems:#?}\n{}",
                self.seed,
                self.state_of_hosts()
            );
        }
        self.live_artifact = artifact;
        run.duration
    }
}

/// Why `run`'s exit does not fit `signal` sent at `moment`; `None` when it does.
fn exit_problem(signal: Signal, moment: &Moment, run: &Finished) -> Option<String> {
    let code = run.status.code();
    let killed_by = run.status.signal();
    if run.signalled.is_none() {
        // A line-triggered signal whose line never came.
        return Some(format!(
            "the trigger ({moment}) never appeared; the push ended with {}",
            run.describe_status()
        ));
    }
    if run.exited_before_signal {
        return (code != Some(0)).then(|| {
            format!(
                "the push ended before its signal with {}, not 0",
                run.describe_status()
            )
        });
    }
    let fits = match signal {
        Signal::Kill => killed_by == Some(Signal::Kill.number()) || code == Some(0),
        Signal::Terminate | Signal::Interrupt => {
            matches!(code, Some(0 | 130))
                || (!run.progress_seen && killed_by == Some(signal.number()))
        }
    };
    (!fits).then(|| {
        format!(
            "SIG{} {} progress lines: {}; expected {}",
            signal.name(),
            if run.progress_seen { "after" } else { "before" },
            run.describe_status(),
            match signal {
                Signal::Kill => "death by SIGKILL (or 0 if it had finished)",
                _ if run.progress_seen => "exit 130 (or 0 if it had finished)",
                _ => "exit 130 or 0, or death by the signal before the handler was installed",
            }
        )
    })
}

/// The last line of `.deploy/history.jsonl`, which must be one whole JSON object.
fn last_history_record(app: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(app.join(".deploy/history.jsonl"))
        .map_err(|error| format!(".deploy/history.jsonl: {error}"))?;
    if !text.ends_with('\n') {
        return Err(format!(
            "history does not end with a whole line: ...{:?}",
            trimmed_end(&text, 200)
        ));
    }
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| format!("the last history line is not a JSON object: {line:?}"))
}

/// Why `record` does not describe `live`; `None` when it does.
fn history_disagreement(record: &Value, live: Option<&str>) -> Option<String> {
    let field = |name: &str| record[name].as_str();
    let (from, to, result) = (field("from"), field("to"), field("result"));
    let error = field("error").unwrap_or("");
    let agrees = match result {
        Some("ok") => live == to,
        Some("rolled_back") => live == from,
        Some("failed") if error.contains("switching back failed") => live == from || live == to,
        Some("failed") => live == from,
        _ => false,
    };
    (!agrees).then(|| {
        format!(
            "live is {live:?} but the last history record says result {result:?}, from {from:?}, to {to:?}: {record}"
        )
    })
}

fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn trimmed(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn trimmed_end(text: &str, limit: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(limit)) {
        Some((start, _)) => &text[start..],
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
fn signals_at_any_instant_leave_complete_releases_and_a_truthful_history() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("chaos: seed {seed:#x} (set DEPLOY_CHAOS_SEED to replay another)");
    let mut chaos = Chaos::start(seed);

    chaos.plain_push(0);
    let normal = (chaos.plain_push(1) + chaos.plain_push(2)) / 2;
    let span = normal.mul_f64(DELAY_SPAN);
    eprintln!(
        "chaos: a normal push takes {} ms; random delays in [0, {} ms]",
        normal.as_millis(),
        span.as_millis()
    );

    let mut number = 0;
    for signal in [Signal::Kill, Signal::Terminate, Signal::Interrupt] {
        let mut moments: Vec<Moment> = (0..RANDOM_ITERATIONS)
            .map(|_| Moment::After(span.mul_f64(chaos.random.fraction())))
            .collect();
        for step in TARGETED_STEPS {
            for host in chaos.fleet.hosts() {
                moments.push(Moment::OnLine(format!("{}: {step}", host.name)));
            }
        }
        chaos.random.shuffle(&mut moments);
        for moment in moments {
            number += 1;
            chaos.iteration(number, signal, moment);
        }
    }

    let summary = format!(
        "chaos: seed {seed:#x}: iterations {:?}, ended before the signal {:?}, violations {}, \
         exit 130 with a host left on the new version {}, hosts slow to quiet {}, {:.1} s",
        chaos.iterations,
        chaos.finished_before_signal,
        chaos.violations.len(),
        chaos.interrupted_but_switched.len(),
        chaos.slow_to_quiet,
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    for note in &chaos.interrupted_but_switched {
        eprintln!("chaos: note: {note}");
    }
    assert!(
        chaos.violations.is_empty(),
        "{summary}\n\n{}{}",
        chaos
            .violations
            .iter()
            .take(REPORTS_SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n"),
        if chaos.violations.len() > REPORTS_SHOWN {
            format!(
                "\n\n... and {} more",
                chaos.violations.len() - REPORTS_SHOWN
            )
        } else {
            String::new()
        }
    );
}
