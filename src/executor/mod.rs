//! The executor: the one module that sends planned work to a host.
//!
//! Owns one host's connection for one service during a run: connecting, reading facts, taking
//! and releasing the service lock, running lowered steps (streaming the artifact or manifest
//! where a step asks for it), appending history, discarding staging after a failure, and
//! switching a host back (through a new connection if the first one died). It decides nothing:
//! what to run comes from `plan`.
//!
//! Time: everything done for a host in a run shares one budget of `host_timeout` (time spent
//! waiting for other hosts does not count). Working steps stop a reserve (`Budget`) before the
//! budget ends, so the clean-up (stopping an abandoned step, discarding staging, the history
//! record, unlocking) fits inside it; only a switch back gets its own grace
//! (`SWITCH_BACK_GRACE`), since it is what keeps a fleet from staying split.
//!
//! Abandoning: a step given up on (host deadline, Ctrl-C) is stopped on the host and waited for
//! (`Lowering::stop_steps`) before anything else runs there.
//!
//! One idea per file: `error` (why a host's work stopped), `budget` (the host's time), `lock`
//! (taking and releasing the lock), `health` (the health check's attempts), `switch_back`
//! (switching back, reconnecting if needed); this file holds the run itself (connecting,
//! sending steps with their payload, stopping abandoned ones, history, clean-up).

mod budget;
mod delta;
mod error;
mod exec;
mod health;
mod lock;
mod reading;
mod switch_back;

use budget::Budget;
pub use error::HostError;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::plan::Step;
use crate::remote::history::HistoryRecord;
use crate::remote::scan;
use crate::remote::state::{self, Facts};
use crate::remote::steps::{self, Input, Lowering};
use crate::report::Events;
use crate::ssh::{Connector, Endpoint, Output, Session, SshError};

/// How long a switch back may take beyond the host's budget, reconnecting included.
pub const SWITCH_BACK_GRACE: Duration = Duration::from_secs(20);

/// Whether a run that selects `selected` hosts and works on `concurrency` at once sends uploads
/// over transfer connections of their own (see `HostRun::transfer_session`): whenever some hosts
/// wait at the barrier. A paced upload leaves ~86 KiB in the held connection's buffers for the
/// rest of the run (measured on 500 hosts at `-j 10`: 105.8 MiB peak without transfer
/// connections, 63.8 MiB with them), so waiting hosts must not carry one; and a rule that depends
/// on the fleet's size would make a push's cost per host depend on it too (tried: skipping
/// transfer connections up to 128 waiting hosts made 100 hosts 20% cheaper per host than 500,
/// and the push at 500 hosts 6.4x the push at 100).
pub fn uploads_on_transfer_connections(selected: usize, concurrency: usize) -> bool {
    selected > concurrency
}

/// Runs pure, CPU-heavy work (parsing and comparing listings and manifests of thousands of
/// files) on tokio's blocking pool. Every host's work is a future of one task
/// (`app::for_each`): such work done inline would run one host at a time, on one core, while
/// the other hosts' replies wait. At most one such piece of work per core runs at once
/// ([`CORES`]): more would not finish sooner, and each holds a host's parsed listings (a few
/// MiB for 5,000 files), so memory stays bounded by the cores, not by `concurrency`.
async fn off_task<T: Send + 'static>(
    step: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HostError> {
    let cores = CORES.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });
    let Ok(core) = cores.acquire().await else {
        return Err(HostError::failed(step, "the run is shutting down"));
    };
    // The permit goes with the work: a host given up on (deadline, Ctrl-C) while its work runs
    // does not free a core that is still busy.
    let work = move || {
        let _core = core;
        work()
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(HostError::failed(step, "the run is shutting down")),
    }
}

/// The manifest a host's [`scan::RecordedManifest`] section holds for `version`, parsed off the task
/// (thousands of lines); an error naming `step` when none is recorded or it does not parse.
pub async fn recorded_manifest_of(
    step: &str,
    version: &crate::inventory::Version,
    section: scan::RecordedManifest,
) -> Result<crate::artifact::Manifest, HostError> {
    let text = match section {
        scan::RecordedManifest::Recorded(text) => text,
        scan::RecordedManifest::Absent => {
            return Err(HostError::failed(step, scan::no_manifest_recorded(version)));
        }
    };
    off_task(step, move || crate::artifact::Manifest::from_text(&text))
        .await?
        .map_err(|error| {
            HostError::failed(step, format!("recorded manifest of {version}: {error}"))
        })
}

/// One permit per core for [`off_task`].
static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// How long stopping an abandoned step may take (TERM, then KILL after 5 s, wait).
const STOP_GRACE: Duration = Duration::from_secs(12);

/// What a step streams, when it streams anything.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    pub artifact: &'a Path,
    pub artifact_size: u64,
    pub manifest: &'a str,
    /// `fetch = "host"`: the URL the host downloads (sent on stdin, never in a command line).
    pub url: Option<&'a str>,
    /// The service's `strip_components` (member streams name members as the manifest does).
    pub strip_components: usize,
    /// Delta streams shared by the hosts of the run (`None`: each host builds its own).
    pub streams: Option<&'a crate::artifact::SharedStreams>,
    /// What a `Verify` step reads: the NUL-separated files to hash (set by `verify_staged`).
    pub paths: &'a [u8],
}

impl Payload<'static> {
    /// For steps that stream nothing.
    pub fn none() -> Self {
        Payload {
            artifact: Path::new(""),
            artifact_size: 0,
            manifest: "",
            url: None,
            strip_components: 0,
            streams: None,
            paths: &[],
        }
    }
}

/// One host, one service, one run.
pub struct HostRun<'a> {
    session: std::sync::Mutex<Arc<Session>>,
    connector: &'a Connector,
    endpoint: Endpoint,
    /// The host's inventory name.
    pub host: String,
    /// What progress lines call it ("web1", or "web1/myapp" when several services run).
    pub label: String,
    pub lowering: Lowering<'a>,
    pub events: Events,
    budget: Budget,
    pub interrupted: watch::Receiver<bool>,
    /// Who takes locks in this run (set by `lock`, reused to re-lock after a reconnect).
    operator: std::sync::Mutex<String>,
    /// Descriptions of the planned steps that completed, in order (compared with dry-runs).
    executed: std::sync::Mutex<Vec<String>>,
    /// Artifact bytes sent to this host, including an upload that failed part way.
    uploaded: AtomicU64,
    /// A history record (or release-log line) could not be written on this host.
    history_lost: AtomicBool,
    /// How many steps were lowered for this host: each gets the next number, and a stop fences
    /// off every number up to the last one (see `Lowering::stop_steps`).
    steps: AtomicU64,
    /// The connection stopped answering: the next switch back reconnects first.
    broken: AtomicBool,
    /// Set while staging: says why the run stops the host's work (other hosts failed beyond
    /// `max_failures`); interruptible steps end with `HostError::Stopped` when it is set.
    stop: std::sync::Mutex<Option<watch::Receiver<Option<String>>>>,
    /// Uploads go over a transfer connection of their own (see `transfer_session`).
    own_transfer: AtomicBool,
}

impl<'a> HostRun<'a> {
    /// Connects under the connector's timeout (which is also bounded by the host budget).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        connector: &'a Connector,
        endpoint: &Endpoint,
        label: String,
        lowering: Lowering<'a>,
        events: Events,
        host_timeout: Duration,
        interrupted: watch::Receiver<bool>,
    ) -> Result<HostRun<'a>, HostError> {
        let budget = Budget::new(host_timeout);
        events.step(&label, "connect");
        let mut interrupt = interrupted.clone();
        let session = tokio::select! {
            connected = tokio::time::timeout_at(budget.work_end().into(), connector.connect_shared(endpoint)) => match connected {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => return Err(HostError::failed("connect", error.to_string())),
                Err(_) => return Err(HostError::TimedOut { step: "connect".to_string() }),
            },
            _ = interrupt.wait_for(|stop| *stop) => {
                return Err(HostError::Interrupted { step: "connect".to_string() })
            }
        };
        Ok(HostRun {
            session: std::sync::Mutex::new(session),
            connector,
            endpoint: endpoint.clone(),
            host: endpoint.name.clone(),
            label,
            lowering,
            events,
            budget,
            interrupted,
            operator: std::sync::Mutex::new(String::new()),
            executed: std::sync::Mutex::new(Vec::new()),
            uploaded: AtomicU64::new(0),
            history_lost: AtomicBool::new(false),
            steps: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            stop: std::sync::Mutex::new(None),
            own_transfer: AtomicBool::new(false),
        })
    }

    fn session(&self) -> Arc<Session> {
        match self.session.lock() {
            Ok(session) => session.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The host waits for the other hosts after reaching `milestone` (staged, ready, or
    /// switched): its budget's clock stops.
    pub fn wait_for_others(&self, milestone: crate::report::Milestone) {
        self.budget.pause();
        self.events.idle(&self.label, milestone);
    }

    /// The host waits for its turn (no message; its progress line gives way): its budget's
    /// clock stops.
    pub fn pause(&self) {
        self.budget.pause();
        self.events.rest(&self.label);
    }

    /// The host works again after waiting: its budget's clock runs.
    pub fn resume(&self) {
        self.budget.resume();
    }

    /// Whether uploads use a transfer connection of their own (see
    /// [`uploads_on_transfer_connections`]): when every selected host is worked on at once,
    /// nothing waits and the extra handshake buys nothing.
    pub fn transfer_on_own_connection(&self, own: bool) {
        self.own_transfer.store(own, Ordering::Relaxed);
    }

    /// From now on, interruptible steps also end (`HostError::Stopped`) once `stop` holds a
    /// reason; `None` ends that.
    pub fn stop_on(&self, stop: Option<watch::Receiver<Option<String>>>) {
        if let Ok(mut current) = self.stop.lock() {
            *current = stop;
        }
    }

    /// Bounds `work` by `until` and, when `interruptible`, by Ctrl-C and the run's stop.
    async fn bounded<T>(
        &self,
        step: &str,
        until: Instant,
        interruptible: bool,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, HostError> {
        let mut interrupt = self.interrupted.clone();
        let stop = async move {
            if interruptible {
                let _ = interrupt.wait_for(|stop| *stop).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let halt = self.stop.lock().ok().and_then(|stop| stop.clone());
        let halt = async move {
            if let (true, Some(mut halt)) = (interruptible, halt)
                && let Ok(reason) = halt.wait_for(Option::is_some).await
            {
                return reason.clone().unwrap_or_default();
            }
            std::future::pending::<String>().await
        };
        tokio::select! {
            finished = tokio::time::timeout_at(until.into(), work) => match finished {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(HostError::Connection { step: step.to_string(), message: error.to_string() }),
                Err(_) => Err(HostError::TimedOut { step: step.to_string() }),
            },
            _ = stop => Err(HostError::Interrupted { step: step.to_string() }),
            reason = halt => Err(HostError::Stopped { step: step.to_string(), reason }),
        }
    }

    /// Runs a script that must succeed (read-only work: facts, history, manifests).
    pub async fn run(&self, step: &str, script: &str) -> Result<Output, HostError> {
        let session = self.session();
        let output = self
            .bounded(step, self.budget.work_end(), true, session.run(script))
            .await?;
        if output.success() {
            Ok(output)
        } else {
            Err(HostError::failed(step, output.failure_text()))
        }
    }

    /// Reads the service's state on the host.
    pub async fn facts(&self) -> Result<Facts, HostError> {
        self.events.step(&self.label, "read state");
        let output = self
            .run("read state", &state::command(self.lowering.base_dir))
            .await?;
        state::parse(&output.stdout_text()).map_err(|error| HostError::failed("read state", error))
    }

    /// The manifest recorded on the host when `version` was pushed (`diff`, `push --diff`,
    /// `status --verify`).
    pub async fn recorded_manifest(
        &self,
        step: &str,
        version: &crate::inventory::Version,
    ) -> Result<crate::artifact::Manifest, HostError> {
        let output = self
            .run(
                step,
                &scan::manifest_command(self.lowering.base_dir, version),
            )
            .await?;
        match scan::split_recorded_manifest(&output.stdout_text(), u64::MAX) {
            ("", Some(section)) => recorded_manifest_of(step, version, section).await,
            _ => Err(HostError::failed(
                step,
                format!("the host's answer for the manifest of {version} is cut short or garbled"),
            )),
        }
    }

    /// Runs one planned step; returns its output. A step abandoned on the deadline
    /// or Ctrl-C is stopped on the host before this returns. A switch is never abandoned on
    /// Ctrl-C (it takes milliseconds, and a half-known switch could not be undone).
    pub async fn execute(&self, step: &Step, payload: &Payload<'_>) -> Result<Output, HostError> {
        let name = step.name();
        self.events.step(&self.label, name);
        let interruptible = !matches!(step, Step::Switch { .. } | Step::Retract { .. });
        let outcome = self
            .send(step, payload, self.budget.work_end(), interruptible)
            .await;
        match outcome {
            Err(error) if error.abandoned() => {
                self.stop_abandoned().await;
                Err(error)
            }
            other => other,
        }
    }

    /// Sends one lowered step over the current session, bounded by `until`.
    async fn send(
        &self,
        step: &Step,
        payload: &Payload<'_>,
        until: Instant,
        interruptible: bool,
    ) -> Result<Output, HostError> {
        let name = step.name();
        let remote = self.lower(step);
        let session = self.session();
        let (output, _sent) = match remote.input {
            Input::Nothing => (
                self.bounded(name, until, interruptible, session.run(&remote.script))
                    .await?,
                0,
            ),
            Input::Paths => {
                self.bounded(
                    name,
                    until,
                    interruptible,
                    session.run_with_input(&remote.script, payload.paths, |_| {}),
                )
                .await?
            }
            Input::Manifest => {
                self.bounded(
                    name,
                    until,
                    interruptible,
                    session.run_with_input(&remote.script, payload.manifest.as_bytes(), |_| {}),
                )
                .await?
            }
            Input::Url => {
                let url = payload
                    .url
                    .ok_or_else(|| HostError::failed(name, "no URL to fetch"))?;
                let line = format!("{url}\n");
                self.bounded(
                    name,
                    until,
                    interruptible,
                    session.run_with_input(&remote.script, line.as_bytes(), |_| {}),
                )
                .await?
            }
            Input::Members => {
                // Waiting for a shared stream's build is bounded like the step.
                let stream = self
                    .bounded(name, until, interruptible, async {
                        Ok::<_, SshError>(delta::stream_for(step, payload).await)
                    })
                    .await?
                    .map_err(|error| HostError::failed(name, error))?;
                let total = delta::progress_total(step, payload);
                // Bulk data: on a transfer connection, like the artifact below.
                let session = self.transfer_session(name, until, interruptible).await?;
                self.upload(
                    &session,
                    name,
                    until,
                    interruptible,
                    &remote.script,
                    stream,
                    total,
                )
                .await?
            }
            Input::Artifact => {
                // The artifact travels on a connection of its own, closed when the step ends
                // (see `transfer_session`), when the run asks for it and it can be made.
                let session = self.transfer_session(name, until, interruptible).await?;
                let file = reading::ArtifactFile::open(payload.artifact).map_err(|error| {
                    HostError::failed(
                        name,
                        format!("cannot open {}: {error}", payload.artifact.display()),
                    )
                })?;
                self.upload(
                    &session,
                    name,
                    until,
                    interruptible,
                    &remote.script,
                    file,
                    payload.artifact_size,
                )
                .await?
            }
        };
        self.notice_lost_records(&output);
        if !output.success() {
            return Err(HostError::failed(name, failure_of(step, &output)));
        }
        self.completed(step);
        Ok(output)
    }

    /// Streams `input` into `script` on `session`, counting what went over the wire
    /// (`uploaded`) and reporting progress against `total`.
    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        session: &Session,
        name: &str,
        until: Instant,
        interruptible: bool,
        script: &str,
        input: impl tokio::io::AsyncRead + Unpin + Send,
        total: u64,
    ) -> Result<(Output, u64), HostError> {
        let events = self.events.clone();
        let label = self.label.clone();
        let uploaded = &self.uploaded;
        let before = uploaded.load(Ordering::Relaxed);
        self.bounded(
            name,
            until,
            interruptible,
            session.run_with_input(script, input, move |sent| {
                uploaded.store(before + sent, Ordering::Relaxed);
                events.bytes(&label, sent, total)
            }),
        )
        .await
    }

    /// A new connection to the host for one bulk transfer, bounded like the step. Memory stays
    /// bounded by concurrency, not by fleet size: russh keeps a connection's write buffer at
    /// the largest size it ever reached (up to the server's window, ~2 MiB for OpenSSH) for as
    /// long as the connection lives, and the host's own connection lives until the end of the
    /// run (it holds the lock). A transfer connection is dropped with its buffers as soon as
    /// the upload ends, so a host waiting at the barrier costs only its idle connection.
    /// When the host refuses a second connection (MaxStartups under load, a per-source limit),
    /// the upload uses the host's own connection after all: memory, not the host, pays.
    async fn transfer_session(
        &self,
        step: &str,
        until: Instant,
        interruptible: bool,
    ) -> Result<Arc<Session>, HostError> {
        if !self.own_transfer.load(Ordering::Relaxed) {
            return Ok(self.session());
        }
        match self
            .bounded(
                step,
                until,
                interruptible,
                self.connector.connect(&self.endpoint),
            )
            .await
        {
            Ok(session) => Ok(Arc::new(session)),
            Err(error @ (HostError::Interrupted { .. } | HostError::Stopped { .. })) => Err(error),
            Err(error) if Instant::now() >= until => Err(error),
            Err(error) => {
                tracing::debug!(
                    "no separate connection for the upload ({error}): using the host's connection"
                );
                Ok(self.session())
            }
        }
    }

    /// Warns (and remembers, for the exit code) when a step reported a record it could not write.
    fn notice_lost_records(&self, output: &Output) {
        for (marker, what) in [
            (steps::HISTORY_NOT_WRITTEN, "history record"),
            (steps::RELEASE_LOG_NOT_WRITTEN, "release log line"),
        ] {
            // Bytes, not text: a verify's output is a listing of thousands of files.
            if output
                .stdout
                .split(|byte| *byte == b'\n')
                .any(|line| line == marker.as_bytes())
            {
                self.history_lost.store(true, Ordering::Relaxed);
                self.events.warning(
                    &self.label,
                    "history",
                    &format!("warning: the {what} could not be written on the host (disk full?)"),
                );
            }
        }
    }

    /// Stops what this run left running on the host and waits for it (after a step was
    /// abandoned). Bounded; when the connection does not answer, the lock holder does it once
    /// the connection ends, and a switch back reconnects first.
    async fn stop_abandoned(&self) {
        let until = (Instant::now() + STOP_GRACE).min(
            self.budget
                .end()
                .max(Instant::now() + Duration::from_secs(3)),
        );
        let session = self.session();
        let stopped = if session.is_closed() {
            Err("the connection is closed".to_string())
        } else {
            match tokio::time::timeout_at(
                until.into(),
                session.run(&self.lowering.stop_steps(self.steps_started())),
            )
            .await
            {
                Ok(Ok(output)) if output.success() => Ok(()),
                Ok(Ok(output)) => Err(output.failure_text()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("the host did not answer".to_string()),
            }
        };
        if let Err(problem) = stopped {
            self.broken.store(true, Ordering::Relaxed);
            self.events.note(
                &self.label,
                &format!(
                    "warning: could not stop the abandoned step on the host ({problem}); the lock holder stops it when this connection ends"
                ),
            );
        }
    }

    /// `step` lowered with the next step number of this host.
    fn lower(&self, step: &Step) -> crate::remote::steps::Remote {
        self.numbered().lower(step)
    }

    /// The run's lowering values with the next step number of this host.
    fn numbered(&self) -> Lowering<'a> {
        let number = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        Lowering {
            step_number: number,
            ..self.lowering.clone()
        }
    }

    /// The number of the last step lowered so far: a stop fences off everything up to it.
    fn steps_started(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    fn completed(&self, step: &Step) {
        if let Ok(mut executed) = self.executed.lock() {
            executed.push(step.describe());
        }
    }

    /// Artifact bytes sent to this host so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Whether a history record or release-log line of this host was lost in this run.
    pub fn history_lost(&self) -> bool {
        self.history_lost.load(Ordering::Relaxed)
    }

    /// The planned steps that completed so far, described as in a dry run.
    pub fn executed(&self) -> Vec<String> {
        self.executed
            .lock()
            .map(|executed| executed.clone())
            .unwrap_or_default()
    }

    /// Appends one history record, then runs `then` (a planned step such as the prune) in the
    /// same remote command: one round trip for a host's last changes. Bounded by the host's
    /// budget (its clean-up reserve), not by Ctrl-C: history is written even then. A record
    /// that cannot be written is a warning and makes the run's exit code non-zero.
    pub async fn record(&self, record: Option<&HistoryRecord>, then: Option<&Step>) {
        let script = self.numbered().record_then(record, then);
        if script.is_empty() {
            return;
        }
        let until = self
            .budget
            .end()
            .max(Instant::now() + Duration::from_secs(2));
        let session = self.session();
        let problem = match tokio::time::timeout_at(until.into(), session.run(&script)).await {
            Ok(Ok(output)) => {
                self.notice_lost_records(&output);
                if output.success() {
                    if let Some(step) = then {
                        self.completed(step);
                    }
                    return;
                }
                output.failure_text()
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_string(),
        };
        if record.is_some() && !self.history_lost() {
            // The command did not come back: the record may or may not be on the host.
            self.history_lost.store(true, Ordering::Relaxed);
        }
        let what = match (record, then) {
            (Some(_), Some(step)) => format!("history and {}", step.name()),
            (Some(_), None) => "history".to_string(),
            (None, Some(step)) => step.name().to_string(),
            (None, None) => return,
        };
        self.events.warning(
            &self.label,
            "history",
            &format!("warning: {what} not written: {problem}"),
        );
    }

    /// Removes this run's staging directory (best effort, after a failure or Ctrl-C).
    pub async fn discard_staging(&self) {
        let until = self
            .budget
            .end()
            .max(Instant::now() + Duration::from_secs(2));
        let session = self.session();
        let _ =
            tokio::time::timeout_at(until.into(), session.run(&self.lowering.discard_staging()))
                .await;
    }

    /// Gives up this run's use of the host's connection (the last user closes it).
    pub async fn close(self) {
        let session = match self.session.into_inner() {
            Ok(session) => session,
            Err(poisoned) => poisoned.into_inner(),
        };
        Session::release(session).await;
    }
}

/// The error text of a failed step: exit status and stderr, plus the output's tail for hooks
/// and health checks (their output is what explains the failure), bounded in size.
pub(super) fn failure_of(step: &Step, output: &Output) -> String {
    let mut text = output.failure_text();
    if matches!(step, Step::Hook { .. } | Step::Health { .. }) {
        let stdout = output.stdout_text();
        let lines: Vec<&str> = stdout.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        if !tail.trim().is_empty() {
            text.push_str(&format!("; output: {}", tail.trim()));
        }
    }
    crate::text::shorten(&text, ERROR_TEXT_LIMIT)
}

/// Largest error text kept from a host (the start and the end of a longer one are kept).
pub const ERROR_TEXT_LIMIT: usize = 8 * 1024;

/// Elapsed milliseconds since `started`.
pub fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_move_to_transfer_connections_when_hosts_wait() {
        // Every host in flight at once: nothing waits.
        assert!(!uploads_on_transfer_connections(50, 50));
        assert!(!uploads_on_transfer_connections(10, 100));
        // Some hosts wait at the barrier: transfer connections, whatever the fleet's size.
        assert!(uploads_on_transfer_connections(51, 50));
        assert!(uploads_on_transfer_connections(100, 50));
        assert!(uploads_on_transfer_connections(500, 100));
    }
}
