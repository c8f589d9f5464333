//! Chaos test of `deploy push` (SPEC §3, §4, §6): the controller is killed (SIGKILL) or
//! interrupted (SIGTERM, SIGINT) at seeded random instants of a push, and at the instants a
//! host's `finalize` or `switch` progress line appears. After each signal and once the hosts'
//! SSH sessions have ended, every host must hold (a) complete releases only, (b) a `current`
//! naming one of them, (c) a last history record that agrees with what is live; (d) the next
//! push (no signal, no `deploy unlock`) must then succeed and leave every host live on it. The
//! exit status must fit the signal (SIGKILL: killed; SIGINT/SIGTERM: 130, or 0 if the run had
//! finished).
//!
//! Every push ships a fresh version (`v2-017`) whose content is one of three prebuilt artifacts
//! of [`FILES`] small files, so every push uploads, finalizes, switches and prunes. `v2` shares
//! all but 2% of its files with `v1`, and `v3` shares nothing: a push from `v1` to `v2` or back
//! is a delta push (only the changed files sent, the rest hard-linked from the live release,
//! the staged tree verified), the others are full pushes; the `verify` line of a delta push is
//! one of the targeted instants. Each signal
//! runs on its own three-host fleet, the three side by side; the hosts' base dirs live in
//! memory (`/dev/shm`).
//!
//! Owns: the seeded PRNG (`DEPLOY_CHAOS_SEED` overrides [`DEFAULT_SEED`]), the artifacts, the
//! signal schedule, the invariant checks (and a test of the checks themselves).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
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
const FILES: usize = 2000;
/// Iterations per signal with a uniformly drawn delay.
const RANDOM_ITERATIONS: usize = 20;
/// Random delays are drawn from [0, DELAY_SPAN × a normal push's duration].
const DELAY_SPAN: f64 = 1.2;
/// The progress steps whose line (`webN: step`) triggers a signal...
const TARGETED_STEPS: [&str; 3] = ["verify", "finalize", "switch"];
/// ...in this many iterations per step and signal, each on a host drawn at random.
const TARGETED_ITERATIONS: usize = 2;
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
    /// Directories the files are in (`d00`, `d00/e0`, ...).
    directories: BTreeSet<String>,
}

/// One file in [`SHARED_EVERY`] of an artifact built on another's files holds its own bytes.
const SHARED_EVERY: usize = 50;

/// `<dir>/<name>.tar.gz` with [`FILES`] small files in `dNN/eN/` directories. Every content
/// names the artifact, except that an artifact built `on` another holds that one's bytes in
/// all files but one in [`SHARED_EVERY`] (so a push between them is a delta push).
fn build_artifact(dir: &Path, name: &str, on: Option<&str>) -> Artifact {
    let mut files = BTreeMap::new();
    for number in 0..FILES {
        let path = format!(
            "d{:02}/e{}/f{number:04}.txt",
            number / 300,
            number / 30 % 10,
        );
        let owner = match on {
            Some(other) if number % SHARED_EVERY != 0 => other,
            _ => name,
        };
        let content = format!("{owner} file {number}\n").repeat(1 + number % 4);
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
        directories: directories
            .iter()
            .map(|directory| directory.trim_end_matches('/').to_string())
            .collect(),
    }
}

/// Whether the tree at `release` is exactly `artifact`'s files: each member read once, and
/// the tree holding as many entries, all files and directories. Cheap; [`release_mismatch`]
/// says what differs.
fn release_matches(release: &Path, artifact: &Artifact) -> bool {
    // Every member is far smaller than this: a full read means a bigger file.
    let mut buffer = [0u8; 1024];
    let contents_match = artifact.files.iter().all(|(path, expected)| {
        File::open(release.join(path))
            .and_then(|mut file| file.read(&mut buffer))
            .is_ok_and(|length| length < buffer.len() && buffer[..length] == expected[..])
    });
    if !contents_match {
        return false;
    }
    let mut entries = 0;
    let mut pending = vec![release.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&directory) else {
            return false;
        };
        for entry in listing {
            let Ok(kind) = entry.and_then(|entry| {
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push(entry.path());
                }
                Ok(kind)
            }) else {
                return false;
            };
            if !kind.is_dir() && !kind.is_file() {
                return false;
            }
            entries += 1;
        }
    }
    entries == artifact.files.len() + artifact.directories.len()
}

/// Why the tree at `release` is not exactly `artifact`'s files; `None` when it is.
fn release_mismatch(release: &Path, artifact: &Artifact) -> Option<String> {
    if release_matches(release, artifact) {
        return None;
    }
    let mut found = BTreeSet::new();
    let mut odd = Vec::new();
    let mut present = 0;
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
                if !artifact.directories.contains(&relative) {
                    odd.push(format!("{relative}/"));
                }
                pending.push(path);
            } else if kind.is_file() {
                match artifact.files.get(&relative) {
                    Some(expected) => {
                        present += 1;
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
        return Some("the tree changed while it was compared".to_string());
    }
    let sample = |items: Vec<String>| -> String {
        let count = items.len();
        let shown: Vec<String> = items.into_iter().take(3).collect();
        format!("{count} {shown:?}")
    };
    Some(format!(
        "{present} of {} files present; missing {}; not in the artifact {}; different content {}",
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

/// Whether `parent` (an sshd listener, single-threaded) has any child process left.
fn has_children(parent: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .is_ok_and(|children| !children.trim().is_empty())
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
    /// It did not end within [`RUN_DEADLINE`] and was killed.
    hung: bool,
    /// When the signal was sent (since spawn), if it was.
    signalled: Option<Duration>,
    /// The process had already exited when the signal was due.
    exited_before_signal: bool,
    /// A `webN: ...` progress line had been read when the signal was sent.
    progress_seen: bool,
    stdout: String,
    /// Every stderr line with when it was read (since spawn).
    stderr: Vec<(Duration, String)>,
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
        self.stderr[start..]
            .iter()
            .map(|(at, line)| format!("{:>6} ms  {line}", at.as_millis()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// When the first line ending with `: {step}` was read.
    fn first(&self, step: &str) -> Option<Duration> {
        let suffix = format!(": {step}");
        self.stderr
            .iter()
            .find(|(_, line)| line.starts_with("web") && line.ends_with(&suffix))
            .map(|(at, _)| *at)
    }
}

/// What the stderr reader saw.
#[derive(Default)]
struct Reading {
    lines: Vec<(Duration, String)>,
    signalled: Option<Duration>,
    exited_before_signal: bool,
}

// ---------------------------------------------------------------------------------------------
// The chaos run of one signal, on its own fleet

/// What the runs of one signal found.
#[derive(Default)]
struct Tally {
    iterations: usize,
    /// Iterations whose push had ended before its signal was due.
    ended_before_signal: usize,
    /// Random-instant iterations whose signal came before any host progress line.
    before_any_host: usize,
    violations: Vec<String>,
    /// Exit 130 although a host stayed live on the version being pushed.
    interrupted_but_switched: Vec<String>,
    /// Times the hosts still had sessions [`QUIET_DEADLINE`] after the controller ended.
    slow_to_quiet: usize,
    /// The longest the hosts' sessions outlived the controller.
    slowest_quiet: Duration,
    /// A normal push's duration on this fleet.
    normal: Duration,
    /// Time spent checking the hosts' trees.
    checking: Duration,
}

struct Chaos<'a> {
    seed: u64,
    signal: Signal,
    random: Random,
    fleet: Fleet,
    /// Where the hosts' `app` directories really live (dropped after the fleet has stopped).
    _trees: tempfile::TempDir,
    inventory: PathBuf,
    artifacts: &'a [Artifact],
    /// Index into `artifacts` of what every host is live on between iterations.
    live_artifact: usize,
    /// Versions pushed so far. Each push gets a fresh version (`v2-017`): never a downgrade,
    /// never already staged.
    pushes: usize,
    /// Release directories already compared file by file: (host, version) -> (dev, inode).
    verified: HashMap<(usize, String), (u64, u64)>,
    /// Broken release directories already reported: ((host, version), (dev, inode)).
    reported: HashSet<((usize, String), (u64, u64))>,
    tally: Tally,
}

/// Names what an iteration did, for reports.
struct Iteration {
    number: usize,
    moment: Moment,
    version: String,
    from: String,
}

impl<'a> Chaos<'a> {
    fn start(seed: u64, signal: Signal, artifacts: &'a [Artifact]) -> Chaos<'a> {
        let fleet = Fleet::start(HOSTS);
        // Each host's base dir is a link to a directory in memory: thousands of files created
        // and deleted per push make ext4's inode allocator the slowest part of a run otherwise.
        let trees = fast_temp_dir("deploy-chaos-trees-");
        for host in fleet.hosts() {
            let tree = trees.path().join(&host.name);
            std::fs::create_dir(&tree).expect("create a host's tree");
            std::os::unix::fs::symlink(&tree, host.root.join("app"))
                .expect("link the host's base dir");
        }
        let inventory = fleet.dir().join("chaos.toml");
        let text = fleet
            .inventory_text(&format!(
                "[deploy]\nconcurrency = {HOSTS}\nhost_timeout = \"60s\"\n\n\
                 [services.app]\nbase_dir = \"app\"\nkeep_releases = 3\n"
            ))
            // Generous: no host is unreachable here, and on a loaded machine (CI, the 2-core
            // test host with the suite running beside) a 2 s handshake timeout once failed
            // a healthy host.
            .replace("connect_timeout = \"5s\"", "connect_timeout = \"15s\"");
        assert!(text.contains("connect_timeout = \"15s\""), "{text}");
        std::fs::write(&inventory, text).expect("write the inventory");
        Chaos {
            seed,
            signal,
            // Each signal draws from its own stream of the one seed.
            random: Random::new(
                seed ^ (signal.number() as u64).wrapping_mul(0xA24B_AED4_963E_E407),
            ),
            fleet,
            _trees: trees,
            inventory,
            artifacts,
            live_artifact: 0,
            pushes: 0,
            verified: HashMap::new(),
            reported: HashSet::new(),
            tally: Tally::default(),
        }
    }

    fn next_version(&mut self, artifact: usize) -> String {
        self.pushes += 1;
        format!("{}-{:03}", self.artifacts[artifact].name, self.pushes)
    }

    fn artifact_of(&self, version: &str) -> Option<&'a Artifact> {
        let (name, _) = version.split_once('-')?;
        self.artifacts.iter().find(|artifact| artifact.name == name)
    }

    fn app(&self, host: usize) -> PathBuf {
        self.fleet.host(host).root.join("app")
    }

    /// Spawns `deploy -v push` of `version`, sends this run's signal at `moment` (if any), and
    /// waits for the process to end (killing it after [`RUN_DEADLINE`]).
    fn push(&self, version: &str, artifact: usize, moment: Option<&Moment>) -> Finished {
        let stdout_path = self.fleet.dir().join("push.stdout");
        let mut child: Child = support::deploy()
            .args(["-v", "push", "-i"])
            .arg(&self.inventory)
            .args(["--version", version, "--artifact"])
            .arg(&self.artifacts[artifact].path)
            .args(["--output", "json", "--no-progress"])
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create the stdout file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("deploy starts");
        let started = Instant::now();
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let progress_seen = Arc::new(AtomicBool::new(false));
        let trigger = match moment {
            Some(Moment::OnLine(line)) => Some((self.signal, line.clone())),
            _ => None,
        };
        let (done, reading) = mpsc::channel();
        let seen = Arc::clone(&progress_seen);
        // The reader sends a line-triggered signal itself. The child is reaped only after the
        // reader has finished, so its PID cannot name another process meanwhile.
        thread::spawn(move || {
            let mut result = Reading::default();
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
                result.lines.push((started.elapsed(), line));
            }
            let _ = done.send(result);
        });

        let mut signalled = None;
        let mut exited_before_signal = false;
        let mut progress_at_signal = false;
        if let Some(Moment::After(delay)) = moment {
            thread::sleep(delay.saturating_sub(started.elapsed()));
            exited_before_signal = has_exited(pid);
            progress_at_signal = progress_seen.load(Ordering::SeqCst);
            send(self.signal, pid);
            signalled = Some(started.elapsed());
        }
        let (reading, hung) = match reading.recv_timeout(RUN_DEADLINE) {
            Ok(reading) => (reading, false),
            Err(_) => {
                let _ = child.kill();
                let reading = reading.recv_timeout(RUN_DEADLINE).unwrap_or_default();
                (reading, true)
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
            hung,
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
        let started = Instant::now();
        let daemons: Vec<u32> = self
            .fleet
            .hosts()
            .iter()
            .filter_map(|host| host.pid())
            .collect();
        while daemons.iter().any(|&daemon| has_children(daemon)) {
            if started.elapsed() > QUIET_DEADLINE {
                self.tally.slow_to_quiet += 1;
                eprintln!(
                    "chaos SIG{}: hosts still have sessions {QUIET_DEADLINE:?} after the controller ended",
                    self.signal.name()
                );
                break;
            }
            thread::sleep(POLL);
        }
        self.tally.slowest_quiet = self.tally.slowest_quiet.max(started.elapsed());
    }

    /// The live version of host `index` and every invariant it breaks: (a) each
    /// `releases/*` is exactly its artifact's files, (b) `current` is a relative link to one of
    /// them, (c) the last history line is whole JSON that agrees with what is live.
    fn check_host(&mut self, index: usize) -> (Option<String>, Vec<String>) {
        let app = self.app(index);
        let mut problems = Vec::new();

        // (a) complete releases only. A release is never changed once named: a directory
        // already compared file by file (same inode) is not read again, and a broken one is
        // reported once, however long it stays.
        let releases = sorted_entries(&app.join("releases"));
        for name in &releases {
            let path = app.join("releases").join(name);
            let identity = match std::fs::symlink_metadata(&path) {
                Ok(metadata) => (metadata.dev(), metadata.ino()),
                Err(error) => {
                    problems.push(format!("releases/{name}: {error}"));
                    continue;
                }
            };
            let key = (index, name.clone());
            if self.verified.get(&key) == Some(&identity)
                || self.reported.contains(&(key.clone(), identity))
            {
                continue;
            }
            match self.release_problem(&path, name) {
                Some(problem) => {
                    problems.push(problem);
                    self.reported.insert((key, identity));
                }
                None => {
                    self.verified.insert(key, identity);
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

    /// Why `releases/<name>` at `path` is not a complete release; `None` when it is.
    fn release_problem(&self, path: &Path, name: &str) -> Option<String> {
        if !path.is_dir() || path.is_symlink() {
            return Some(format!("releases/{name} is not a directory"));
        }
        let Some(artifact) = self.artifact_of(name) else {
            return Some(format!("releases/{name} is no version this test pushed"));
        };
        release_mismatch(path, artifact).map(|mismatch| {
            format!(
                "releases/{name} is not a complete release of {}: {mismatch}",
                artifact.name
            )
        })
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
            "VIOLATION (seed {seed:#x}, SIG{signal} iteration {number}, signal {moment}, push {from} -> {version}):\n  {problem}\n\
             push: {status} after {duration} ms (signal sent at {signalled}, progress lines seen by then: {progress})\n\
             hosts:\n{hosts}deploy stderr (last lines, ms since spawn):\n{stderr}\ndeploy stdout:\n{stdout}",
            seed = self.seed,
            signal = self.signal.name(),
            number = iteration.number,
            moment = iteration.moment,
            from = iteration.from,
            version = iteration.version,
            status = run.describe_status(),
            duration = run.duration.as_millis(),
            signalled = run
                .signalled
                .map(|at| format!("{} ms", at.as_millis()))
                .unwrap_or_else(|| "never".to_string()),
            progress = run.progress_seen,
            hosts = self.state_of_hosts(),
            stderr = run.stderr_tail(25),
            stdout = trimmed(&run.stdout, 3000),
        );
        eprintln!(
            "chaos SIG{} iteration {}: VIOLATION: {problem}",
            self.signal.name(),
            iteration.number
        );
        self.tally.violations.push(report);
    }

    /// Checks every host; returns the live version of each.
    fn check_hosts(
        &mut self,
        iteration: &Iteration,
        run: &Finished,
        when: &str,
    ) -> Vec<Option<String>> {
        let started = Instant::now();
        let mut lives = Vec::new();
        let mut found = Vec::new();
        for index in 0..HOSTS {
            let (live, problems) = self.check_host(index);
            let name = &self.fleet.host(index).name;
            found.extend(
                problems
                    .into_iter()
                    .map(|problem| format!("{when}, {name}: {problem}")),
            );
            lives.push(live);
        }
        self.tally.checking += started.elapsed();
        for problem in found {
            self.violation(iteration, &problem, run);
        }
        lives
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

    /// A push with no signal, before the chaos; returns it after checking every host is live
    /// on its version.
    fn plain_push(&mut self, artifact: usize) -> Finished {
        let version = self.next_version(artifact);
        let run = self.push(&version, artifact, None);
        assert!(
            run.status.success() && !run.hung,
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
        run
    }

    /// One iteration: a push to a fresh version of the next artifact with the signal at
    /// `moment`, the invariants, then a push of the third artifact with no signal (d).
    /// A moment on a `verify` line needs a delta push: from `v1` to `v2` or back (after a plain
    /// push of `v1` when `v3` is live).
    fn iteration(&mut self, number: usize, moment: Moment) {
        let needs_delta = matches!(&moment, Moment::OnLine(line) if line.ends_with(": verify"));
        let (target, recovery) = if needs_delta {
            if self.live_artifact == 2 {
                self.plain_push(0);
            }
            let target = 1 - self.live_artifact;
            (target, 2)
        } else {
            (
                (self.live_artifact + 1) % self.artifacts.len(),
                (self.live_artifact + 2) % self.artifacts.len(),
            )
        };
        let iteration = Iteration {
            number,
            moment: moment.clone(),
            version: self.next_version(target),
            from: self.lives_text(),
        };
        self.tally.iterations += 1;

        let run = self.push(&iteration.version, target, Some(&moment));
        self.wait_until_quiet();
        if run.exited_before_signal {
            self.tally.ended_before_signal += 1;
        } else if matches!(moment, Moment::After(_)) && !run.progress_seen {
            self.tally.before_any_host += 1;
        }
        if let Some(problem) = exit_problem(self.signal, &moment, &run) {
            self.violation(&iteration, &problem, &run);
        }
        let lives = self.check_hosts(&iteration, &run, "after the signal");
        if run.status.code() == Some(130)
            && lives
                .iter()
                .any(|live| live.as_deref() == Some(iteration.version.as_str()))
        {
            self.tally.interrupted_but_switched.push(format!(
                "SIG{} iteration {number} ({moment}): exit 130, live {lives:?}",
                self.signal.name()
            ));
        }

        // (d) the next push, to another version, succeeds without `deploy unlock`.
        let next = Iteration {
            version: self.next_version(recovery),
            from: format!("{lives:?}"),
            ..iteration
        };
        let after = self.push(&next.version, recovery, None);
        self.wait_until_quiet();
        if !after.status.success() || after.hung {
            let problem = format!(
                "the next push (no signal) to {} did not succeed: {}{}",
                next.version,
                after.describe_status(),
                if after.hung { " (hung; killed)" } else { "" }
            );
            self.violation(&next, &problem, &after);
        }
        let lives = self.check_hosts(&next, &after, "after the next push");
        for (index, live) in lives.iter().enumerate() {
            if live.as_deref() != Some(next.version.as_str()) {
                let problem = format!(
                    "after the next push, {} is live on {live:?}, not {}",
                    self.fleet.host(index).name,
                    next.version
                );
                self.violation(&next, &problem, &after);
            }
        }
        self.live_artifact = recovery;
    }

    /// Three plain pushes (the last two time a normal push), then [`RANDOM_ITERATIONS`]
    /// random instants and [`TARGETED_ITERATIONS`] line-triggered instants per step, shuffled.
    fn run(mut self) -> Tally {
        self.plain_push(0);
        let timed = [self.plain_push(1), self.plain_push(2)];
        let normal = (timed[0].duration + timed[1].duration) / 2;
        let span = normal.mul_f64(DELAY_SPAN);
        let at = |run: &Finished, step: &str| {
            run.first(step)
                .map(|at| format!("{} ms", at.as_millis()))
                .unwrap_or_else(|| "-".to_string())
        };
        eprintln!(
            "chaos SIG{}: a normal push takes {} ms (first connect at {}, upload at {}, finalize at {}, \
             switch at {}); random delays in [0, {} ms]",
            self.signal.name(),
            normal.as_millis(),
            at(&timed[1], "connect"),
            at(&timed[1], "upload"),
            at(&timed[1], "finalize"),
            at(&timed[1], "switch"),
            span.as_millis()
        );
        self.tally.normal = normal;

        let mut moments: Vec<Moment> = (0..RANDOM_ITERATIONS)
            .map(|_| Moment::After(span.mul_f64(self.random.fraction())))
            .collect();
        for step in TARGETED_STEPS {
            for _ in 0..TARGETED_ITERATIONS {
                let host = &self.fleet.host(self.random.below(HOSTS)).name;
                moments.push(Moment::OnLine(format!("{host}: {step}")));
            }
        }
        self.random.shuffle(&mut moments);
        for (index, moment) in moments.into_iter().enumerate() {
            self.iteration(index + 1, moment);
        }
        self.tally
    }
}

/// Why `run`'s exit does not fit `signal` sent at `moment`; `None` when it does.
fn exit_problem(signal: Signal, moment: &Moment, run: &Finished) -> Option<String> {
    let code = run.status.code();
    let killed_by = run.status.signal();
    if run.hung {
        return Some(format!(
            "the push did not end within {RUN_DEADLINE:?} of its start (killed)"
        ));
    }
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

/// A temp dir in memory (`/dev/shm`) when there is one, else in the usual temp dir.
fn fast_temp_dir(prefix: &str) -> tempfile::TempDir {
    let builder = tempfile::Builder::new().prefix(prefix).clone();
    let memory = Path::new("/dev/shm");
    if memory.is_dir()
        && let Ok(dir) = builder.tempdir_in(memory)
    {
        return dir;
    }
    builder.tempdir().expect("a temp dir")
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
    let artifacts_dir = fast_temp_dir("deploy-chaos-artifacts-");
    let artifacts: Vec<Artifact> = [("v1", None), ("v2", Some("v1")), ("v3", None)]
        .iter()
        .map(|(name, on)| build_artifact(artifacts_dir.path(), name, *on))
        .collect();

    // One fleet per signal, run side by side: a push waits on sshd, the hosts' shells and its
    // own local phase (one core) a good part of the time.
    let signals = [Signal::Kill, Signal::Terminate, Signal::Interrupt];
    let tallies: Vec<(Signal, Tally)> = thread::scope(|scope| {
        let runs: Vec<_> = signals
            .iter()
            .map(|&signal| {
                let artifacts = &artifacts;
                scope.spawn(move || (signal, Chaos::start(seed, signal, artifacts).run()))
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });

    let per_signal: Vec<String> = tallies
        .iter()
        .map(|(signal, tally)| {
            format!(
                "SIG{} {} iterations ({} ended before the signal, {} random signals before any host line, \
                 normal push {} ms, checks {:.1} s): {} violations",
                signal.name(),
                tally.iterations,
                tally.ended_before_signal,
                tally.before_any_host,
                tally.normal.as_millis(),
                tally.checking.as_secs_f64(),
                tally.violations.len()
            )
        })
        .collect();
    let violations: Vec<&String> = tallies
        .iter()
        .flat_map(|(_, tally)| &tally.violations)
        .collect();
    let summary = format!(
        "chaos: seed {seed:#x}, {FILES} files x {HOSTS} hosts: {}; exit 130 with a host on the new version: {}; \
         sessions outlived the controller by at most {} ms, {} times by over {QUIET_DEADLINE:?}; {:.1} s",
        per_signal.join("; "),
        tallies
            .iter()
            .map(|(_, tally)| tally.interrupted_but_switched.len())
            .sum::<usize>(),
        tallies
            .iter()
            .map(|(_, tally)| tally.slowest_quiet.as_millis())
            .max()
            .unwrap_or(0),
        tallies
            .iter()
            .map(|(_, tally)| tally.slow_to_quiet)
            .sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    for (_, tally) in &tallies {
        for note in &tally.interrupted_but_switched {
            eprintln!("chaos: note: {note}");
        }
    }
    assert!(
        violations.is_empty(),
        "{summary}\n\n{}{}",
        violations
            .iter()
            .take(REPORTS_SHOWN)
            .map(|report| report.as_str())
            .collect::<Vec<_>>()
            .join("\n\n"),
        if violations.len() > REPORTS_SHOWN {
            format!("\n\n... and {} more", violations.len() - REPORTS_SHOWN)
        } else {
            String::new()
        }
    );
}

/// The invariant checks themselves: a vacuous check would let every chaos run pass.
#[test]
fn the_invariant_checks_see_broken_releases_and_untruthful_history() {
    let dir = fast_temp_dir("deploy-chaos-self-check-");
    let artifact = build_artifact(dir.path(), "v1", None);
    let release = dir.path().join("release");
    std::fs::create_dir(&release).expect("mkdir");
    assert!(
        release_mismatch(&release, &artifact).is_some_and(|text| text.contains("0 of")),
        "an empty release"
    );
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&artifact.path)
        .arg("-C")
        .arg(&release)
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar -x failed");
    assert_eq!(
        release_mismatch(&release, &artifact),
        None,
        "the whole release"
    );

    let (first, _) = artifact.files.iter().next().expect("a file");
    let (last, content) = artifact.files.iter().next_back().expect("a file");
    std::fs::write(release.join(last), &content[..content.len() - 1]).expect("truncate");
    assert!(
        release_mismatch(&release, &artifact).is_some(),
        "a truncated file"
    );
    std::fs::write(release.join(last), content).expect("restore");
    std::fs::remove_file(release.join(first)).expect("remove");
    std::os::unix::fs::symlink(release.join(last), release.join(first)).expect("symlink");
    assert!(
        release_mismatch(&release, &artifact).is_some_and(|text| text.contains("not a regular")),
        "a symlink instead of a file"
    );
    std::fs::remove_file(release.join(first)).expect("remove");
    std::fs::write(release.join(first), &artifact.files[first]).expect("restore");
    std::fs::create_dir(release.join("extra")).expect("mkdir");
    assert!(
        release_mismatch(&release, &artifact).is_some_and(|text| text.contains("extra/")),
        "an extra directory"
    );

    let record = |result: &str, error: Option<&str>| serde_json::json!({"from": "v1", "to": "v2", "result": result, "error": error});
    let cases = [
        ("ok", None, Some("v2"), true),
        ("ok", None, Some("v1"), false),
        ("rolled_back", None, Some("v1"), true),
        ("rolled_back", None, Some("v2"), false),
        ("failed", Some("switch: interrupted"), Some("v1"), true),
        ("failed", Some("switch: interrupted"), Some("v2"), false),
        (
            "failed",
            Some("x; switching back failed: y"),
            Some("v2"),
            true,
        ),
        ("failed", None, None, false),
    ];
    for (result, error, live, agrees) in cases {
        assert_eq!(
            history_disagreement(&record(result, error), live).is_none(),
            agrees,
            "result {result}, error {error:?}, live {live:?}"
        );
    }
}
