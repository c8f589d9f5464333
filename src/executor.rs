//! The executor: the one module that sends planned work to a host.
//!
//! Owns one host's connection for one service during a run: connecting, reading facts, taking
//! and releasing the service lock, running lowered steps (streaming the artifact or manifest
//! where a step asks for it), appending history, discarding staging after a failure, and
//! switching a host back (through a new connection if the first one died). It decides nothing:
//! what to run comes from `plan`.
//!
//! Time: everything done for a host in a run shares one budget of `host_timeout` (time spent
//! waiting for other hosts does not count). Working steps stop `cleanup_reserve` before the
//! budget ends, so the clean-up (stopping an abandoned step, discarding staging, the history
//! record, unlocking) fits inside it; only a switch back gets its own grace
//! (`SWITCH_BACK_GRACE`), since it is what keeps a fleet from staying split.
//!
//! Abandoning: a step given up on (host deadline, Ctrl-C) is stopped on the host and waited for
//! (`Lowering::stop_steps`) before anything else runs there.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::plan::Step;
use crate::remote::history::HistoryRecord;
use crate::remote::lock;
use crate::remote::scan;
use crate::remote::state::LockHolder;
use crate::remote::state::{self, Facts};
use crate::remote::steps::{self, Input, Lowering};
use crate::report::Events;
use crate::ssh::{Connector, Endpoint, Held, Output, Session, SshError};

/// How long a switch back may take beyond the host's budget, reconnecting included.
pub const SWITCH_BACK_GRACE: Duration = Duration::from_secs(20);

/// How long stopping an abandoned step may take (TERM, then KILL after 5 s, wait).
const STOP_GRACE: Duration = Duration::from_secs(12);

/// Why a host's work stopped.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{step}: {message}")]
    Failed { step: String, message: String },
    /// The SSH connection failed while the step ran (dropped, refused, broken).
    #[error("{step}: {message}")]
    Connection { step: String, message: String },
    #[error(
        "lock: {holder}; when that run is gone, `deploy unlock --hosts {host}` removes its lock"
    )]
    LockHeld {
        holder: String,
        host: String,
        /// The holder's run id.
        run_id: String,
    },
    #[error("{step}: host_timeout reached")]
    TimedOut { step: String },
    #[error("{step}: interrupted")]
    Interrupted { step: String },
}

impl HostError {
    pub fn failed(step: &str, message: impl Into<String>) -> Self {
        HostError::Failed {
            step: step.to_string(),
            message: message.into(),
        }
    }

    /// The remote command may still be running: the controller gave up on it.
    fn abandoned(&self) -> bool {
        matches!(
            self,
            HostError::TimedOut { .. }
                | HostError::Interrupted { .. }
                | HostError::Connection { .. }
        )
    }
}

/// What a step streams, when it streams anything.
pub struct Payload<'a> {
    pub artifact: &'a Path,
    pub artifact_size: u64,
    pub manifest: &'a str,
    /// `fetch = "host"`: the URL the host downloads (sent on stdin, never in a command line).
    pub url: Option<&'a str>,
}

impl Payload<'static> {
    /// For steps that stream nothing.
    pub fn none() -> Self {
        Payload {
            artifact: Path::new(""),
            artifact_size: 0,
            manifest: "",
            url: None,
        }
    }
}

/// The time one host may take in one run; waiting for other hosts is not counted.
struct Budget {
    deadline: std::sync::Mutex<(Instant, Option<Instant>)>,
    /// Kept back at the end of the budget for the clean-up.
    reserve: Duration,
}

impl Budget {
    fn new(host_timeout: Duration) -> Budget {
        Budget {
            deadline: std::sync::Mutex::new((Instant::now() + host_timeout, None)),
            reserve: (host_timeout / 5).min(Duration::from_secs(10)),
        }
    }

    /// When everything for this host must be done (clean-up included).
    fn end(&self) -> Instant {
        self.deadline
            .lock()
            .map(|deadline| deadline.0)
            .unwrap_or_else(|_| Instant::now())
    }

    /// When working steps must stop, leaving the reserve for clean-up.
    fn work_end(&self) -> Instant {
        self.end() - self.reserve
    }

    /// The host starts waiting for others: the clock stops.
    fn pause(&self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && deadline.1.is_none()
        {
            deadline.1 = Some(Instant::now());
        }
    }

    /// The host works again: the wait is added back.
    fn resume(&self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && let Some(since) = deadline.1.take()
        {
            deadline.0 += since.elapsed();
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
        })
    }

    fn session(&self) -> Arc<Session> {
        match self.session.lock() {
            Ok(session) => session.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The host waits for the other hosts (staged, or switched): its budget's clock stops.
    pub fn wait_for_others(&self, message: &str) {
        self.budget.pause();
        self.events.idle(&self.label, message);
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

    /// Bounds `work` by `until` and, when `interruptible`, by Ctrl-C.
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
        tokio::select! {
            finished = tokio::time::timeout_at(until.into(), work) => match finished {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(HostError::Connection { step: step.to_string(), message: error.to_string() }),
                Err(_) => Err(HostError::TimedOut { step: step.to_string() }),
            },
            _ = stop => Err(HostError::Interrupted { step: step.to_string() }),
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
        crate::artifact::Manifest::from_text(&output.stdout_text()).map_err(|error| {
            HostError::failed(step, format!("recorded manifest of {version}: {error}"))
        })
    }

    /// Takes the service lock and reads the service's state under it, in one remote command;
    /// the lock is held until `unlock` or until the session ends.
    pub async fn lock(&self, operator: &str, now: u64) -> Result<(Held, Facts), HostError> {
        self.events.step(&self.label, "lock");
        if let Ok(mut stored) = self.operator.lock() {
            *stored = operator.to_string();
        }
        let session = self.session();
        let (held, holder) = take_lock(
            &session,
            &self.lowering,
            operator,
            now,
            self.budget.work_end(),
            &self.host,
            &self.label,
        )
        .await?;
        let Some(held) = held else {
            return Err(holder.map_or_else(
                || HostError::failed("lock", "the lock was not taken"),
                |holder| HostError::LockHeld {
                    holder: holder.describe(),
                    host: self.host.clone(),
                    run_id: holder.run_id,
                },
            ));
        };
        match state::parse(&held.text) {
            Ok(facts) => Ok((held, facts)),
            Err(error) => {
                self.unlock(held).await;
                Err(HostError::failed("read state", error))
            }
        }
    }

    /// Runs one planned step; returns the bytes it uploaded. A step abandoned on the deadline
    /// or Ctrl-C is stopped on the host before this returns. A switch is never abandoned on
    /// Ctrl-C (it takes milliseconds, and a half-known switch could not be undone).
    pub async fn execute(&self, step: &Step, payload: &Payload<'_>) -> Result<u64, HostError> {
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
    ) -> Result<u64, HostError> {
        let name = step.name();
        let remote = self.lower(step);
        let session = self.session();
        let (output, sent) = match remote.input {
            Input::Nothing => (
                self.bounded(name, until, interruptible, session.run(&remote.script))
                    .await?,
                0,
            ),
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
            Input::Artifact => {
                let file = tokio::fs::File::open(payload.artifact)
                    .await
                    .map_err(|error| {
                        HostError::failed(
                            name,
                            format!("cannot open {}: {error}", payload.artifact.display()),
                        )
                    })?;
                let events = self.events.clone();
                let label = self.label.clone();
                let total = payload.artifact_size;
                let uploaded = &self.uploaded;
                let before = uploaded.load(Ordering::Relaxed);
                self.bounded(
                    name,
                    until,
                    interruptible,
                    session.run_with_input(&remote.script, file, move |sent| {
                        uploaded.store(before + sent, Ordering::Relaxed);
                        events.bytes(&label, sent, total)
                    }),
                )
                .await?
            }
        };
        self.notice_lost_records(&output);
        if !output.success() {
            return Err(HostError::failed(name, failure_of(step, &output)));
        }
        self.completed(step);
        Ok(sent)
    }

    /// Warns (and remembers, for the exit code) when a step reported a record it could not write.
    fn notice_lost_records(&self, output: &Output) {
        let stdout = output.stdout_text();
        for (marker, what) in [
            (steps::HISTORY_NOT_WRITTEN, "history record"),
            (steps::RELEASE_LOG_NOT_WRITTEN, "release log line"),
        ] {
            if stdout.lines().any(|line| line == marker) {
                self.history_lost.store(true, Ordering::Relaxed);
                self.events.note(
                    &self.label,
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
        let number = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        Lowering {
            step_number: number,
            ..self.lowering.clone()
        }
        .lower(step)
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

    /// Runs a `Step::Health` up to its attempt count, `interval` apart; each attempt is bounded
    /// on the host (`timeout`) and here (the same plus a margin).
    pub async fn health(&self, step: &Step, interval: Duration) -> Result<(), HostError> {
        let Step::Health {
            attempts,
            timeout_seconds,
            ..
        } = step
        else {
            return Err(HostError::failed("health", "not a health check step"));
        };
        self.events.step(&self.label, "health");
        let remote = self.lower(step);
        let limit = Duration::from_secs(timeout_seconds + 5);
        let mut last = String::new();
        for attempt in 1..=*attempts {
            let session = self.session();
            let outcome = self
                .bounded("health", self.budget.work_end(), true, async {
                    match tokio::time::timeout(limit, session.run(&remote.script)).await {
                        Ok(result) => result,
                        Err(_) => Ok(Output {
                            status: None,
                            signal: Some(format!("timed out after {timeout_seconds}s")),
                            ..Output::default()
                        }),
                    }
                })
                .await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(error) => {
                    if error.abandoned() {
                        self.stop_abandoned().await;
                    }
                    return Err(error);
                }
            };
            if outcome.success() {
                self.completed(step);
                return Ok(());
            }
            last = failure_of(step, &outcome);
            tracing::info!(host = %self.label, step = "health", "attempt {attempt} of {attempts} failed: {last}");
            if attempt < *attempts {
                self.bounded("health", self.budget.work_end(), true, async {
                    tokio::time::sleep(interval).await;
                    Ok(())
                })
                .await?;
            }
        }
        Err(HostError::failed(
            "health",
            format!("failed {attempts} of {attempts} attempts; last: {last}"),
        ))
    }

    /// Appends one history record, then runs `then` (a planned step such as the prune) in the
    /// same remote command: one round trip for a host's last changes. Bounded by the host's
    /// budget (its clean-up reserve), not by Ctrl-C: history is written even then. A record
    /// that cannot be written is a warning and makes the run's exit code non-zero.
    pub async fn record(&self, record: Option<&HistoryRecord>, then: Option<&Step>) {
        let mut script = String::new();
        if let Some(record) = record {
            script.push_str(&self.lowering.append_history(record));
        }
        if let Some(step) = then {
            // In a subshell: the step's own `exit` ends only its part of the script.
            script.push_str(&format!("(\n{}\n)\n", self.lower(step).script));
        }
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
        self.events.note(
            &self.label,
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

    /// Puts a switched host back: runs `steps` (the reverse switch with its history record,
    /// then the old release's `after_switch` hooks) outside Ctrl-C and beyond the budget, for
    /// at most `SWITCH_BACK_GRACE`. When the connection died or froze, it reconnects, takes
    /// the lock again (or finds it still held by this run), stops what the run left running
    /// there, and switches back through the new connection.
    pub async fn switch_back(&self, steps: &[Step]) -> Result<(), HostError> {
        let grace_end = Instant::now() + SWITCH_BACK_GRACE;
        if !self.broken.load(Ordering::Relaxed) && !self.session().is_closed() {
            // The first try gets half the grace, so a frozen connection leaves time to reconnect.
            let first_try = Instant::now() + SWITCH_BACK_GRACE / 2;
            match self.send_all(steps, first_try).await {
                Ok(()) => return Ok(()),
                Err(error) if !error.abandoned() => return Err(error),
                Err(error) => {
                    self.events.note(
                        &self.label,
                        &format!("warning: switching back failed ({error}); reconnecting"),
                    );
                }
            }
        }
        self.broken.store(true, Ordering::Relaxed);
        let relock = self.reconnect(grace_end).await?;
        let outcome = self.send_all(steps, grace_end).await;
        if let Some(held) = relock {
            self.unlock(held).await;
        }
        outcome
    }

    async fn send_all(&self, steps: &[Step], until: Instant) -> Result<(), HostError> {
        for step in steps {
            self.events.step(&self.label, step.name());
            self.send(step, &Payload::none(), until, false).await?;
        }
        Ok(())
    }

    /// A new connection to the host for the rest of this run, with the lock taken again (or
    /// found still held by this run) and the run's abandoned steps stopped.
    async fn reconnect(&self, until: Instant) -> Result<Option<Held>, HostError> {
        self.events.step(&self.label, "reconnect");
        let session =
            match tokio::time::timeout_at(until.into(), self.connector.connect(&self.endpoint))
                .await
            {
                Ok(Ok(session)) => Arc::new(session),
                Ok(Err(error)) => return Err(HostError::failed("reconnect", error.to_string())),
                Err(_) => {
                    return Err(HostError::TimedOut {
                        step: "reconnect".to_string(),
                    });
                }
            };
        let operator = self
            .operator
            .lock()
            .map(|operator| operator.clone())
            .unwrap_or_default();
        let (held, holder) = take_lock(
            &session,
            &self.lowering,
            &operator,
            self.lowering.now,
            until,
            &self.host,
            &self.label,
        )
        .await?;
        if held.is_none()
            && let Some(holder) = holder
            && holder.run_id != self.lowering.run_id
        {
            return Err(HostError::failed(
                "reconnect",
                format!(
                    "the lock was taken by another run ({}): not switching back",
                    holder.describe()
                ),
            ));
        }
        let stopped = tokio::time::timeout_at(
            until.into(),
            session.run(&self.lowering.stop_steps(self.steps_started())),
        )
        .await;
        if !matches!(stopped, Ok(Ok(ref output)) if output.success()) {
            self.events.note(
                &self.label,
                "warning: could not confirm that the abandoned step stopped",
            );
        }
        if let Ok(mut current) = self.session.lock() {
            *current = session;
        }
        self.broken.store(false, Ordering::Relaxed);
        Ok(held)
    }

    /// Releases a lock (closing the holder's stdin; it stops the run's leftover steps and
    /// removes the lock), waiting for it within the budget; a failure is logged.
    pub async fn unlock(&self, held: Held) {
        let until = self
            .budget
            .end()
            .max(Instant::now() + Duration::from_secs(2));
        match tokio::time::timeout_at(until.into(), held.release()).await {
            Ok(Ok(output)) if output.success() => {}
            Ok(Ok(output)) => {
                tracing::warn!(host = %self.label, "unlock: {}", output.failure_text())
            }
            Ok(Err(error)) => tracing::warn!(host = %self.label, "unlock: {error}"),
            Err(_) => {
                tracing::warn!(host = %self.label, "unlock: timed out (the lock ends with the session)")
            }
        }
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

/// Runs the lock script on `session`: `(Some(held), None)` when the lock is ours, `(None,
/// Some(holder))` when another run (or this run, on another connection) holds it.
async fn take_lock(
    session: &Session,
    lowering: &Lowering<'_>,
    operator: &str,
    now: u64,
    until: Instant,
    host: &str,
    label: &str,
) -> Result<(Option<Held>, Option<LockHolder>), HostError> {
    let script = lock::lock_script(lowering.base_dir, operator, lowering.run_id, now);
    let held =
        match tokio::time::timeout_at(until.into(), session.hold(&script, lock::LOCK_FACTS_END))
            .await
        {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                return Err(HostError::Connection {
                    step: "lock".to_string(),
                    message: error.to_string(),
                });
            }
            Err(_) => {
                return Err(HostError::TimedOut {
                    step: "lock".to_string(),
                });
            }
        };
    if held.first_line == "LOCKED" && held.finished.is_none() {
        return Ok((Some(held), None));
    }
    if let Some(holder) = held.first_line.strip_prefix("HELD ") {
        let holder = LockHolder::parse(holder, true);
        let _ = held.release().await;
        return Ok((None, Some(holder)));
    }
    let message = match held.first_line.strip_prefix("ERROR ") {
        Some(error) => error.to_string(),
        None => match held.release().await {
            Ok(output) => output.failure_text(),
            Err(error) => error.to_string(),
        },
    };
    tracing::debug!(host = %host, label = %label, "lock failed: {message}");
    Err(HostError::failed("lock", message))
}

/// The error text of a failed step: exit status and stderr, plus the output's tail for hooks
/// and health checks (their output is what explains the failure), bounded in size.
fn failure_of(step: &Step, output: &Output) -> String {
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
