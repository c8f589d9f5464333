//! The executor: the one module that sends planned work to a host.
//!
//! Owns one host's connection for one service during a run: connecting, reading facts, taking
//! and releasing the service lock, running lowered steps (streaming the artifact or manifest
//! where a step asks for it), appending history, and discarding staging after a failure. Every
//! remote call is bounded by the host's deadline and stops early on Ctrl-C. It decides nothing:
//! what to run comes from `plan`.

use std::path::Path;
use std::time::Instant;

use tokio::sync::watch;

use crate::facts::{self, Facts, LockHolder};
use crate::plan::{self, HistoryRecord, Input, Lowering, Step};
use crate::report::Events;
use crate::ssh::{Connector, Endpoint, Held, Output, Session, SshError};

/// Why a host's work stopped.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{step}: {message}")]
    Failed { step: String, message: String },
    #[error(
        "lock: {holder}; when that run is gone, `deploy unlock --hosts {host}` removes its lock"
    )]
    LockHeld { holder: String, host: String },
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

/// One host, one service, one run.
pub struct HostRun<'a> {
    pub session: std::sync::Arc<Session>,
    /// The host's inventory name.
    pub host: String,
    /// What progress lines call it ("web1", or "web1/myapp" when several services run).
    pub label: String,
    pub lowering: Lowering<'a>,
    pub events: Events,
    /// When the current working phase must end: `host_timeout` after it started. Waiting for
    /// other hosts between phases does not count against it (see `restart_deadline`).
    deadline: std::sync::Mutex<Instant>,
    host_timeout: std::time::Duration,
    pub interrupted: watch::Receiver<bool>,
    /// Descriptions of the planned steps that completed, in order (compared with dry-runs).
    executed: std::sync::Mutex<Vec<String>>,
    /// Artifact bytes sent to this host, including an upload that failed part way.
    uploaded: std::sync::atomic::AtomicU64,
}

impl<'a> HostRun<'a> {
    /// Connects under the connector's timeout (which is also bounded by the host deadline).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        connector: &Connector,
        endpoint: &Endpoint,
        label: String,
        lowering: Lowering<'a>,
        events: Events,
        host_timeout: std::time::Duration,
        interrupted: watch::Receiver<bool>,
    ) -> Result<HostRun<'a>, HostError> {
        let deadline = Instant::now() + host_timeout;
        events.step(&label, "connect");
        let mut interrupt = interrupted.clone();
        let session = tokio::select! {
            connected = tokio::time::timeout_at(deadline.into(), connector.connect_shared(endpoint)) => match connected {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => return Err(HostError::failed("connect", error.to_string())),
                Err(_) => return Err(HostError::TimedOut { step: "connect".to_string() }),
            },
            _ = interrupt.wait_for(|stop| *stop) => {
                return Err(HostError::Interrupted { step: "connect".to_string() })
            }
        };
        Ok(HostRun {
            session,
            host: endpoint.name.clone(),
            label,
            lowering,
            events,
            deadline: std::sync::Mutex::new(deadline),
            host_timeout,
            interrupted,
            executed: std::sync::Mutex::new(Vec::new()),
            uploaded: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Starts a new working phase (the switch after staging, the final clean-up): the host gets
    /// a full `host_timeout` for it, however long it waited for the other hosts.
    pub fn restart_deadline(&self) {
        if let Ok(mut deadline) = self.deadline.lock() {
            *deadline = Instant::now() + self.host_timeout;
        }
    }

    fn deadline(&self) -> Instant {
        self.deadline
            .lock()
            .map(|deadline| *deadline)
            .unwrap_or_else(|_| Instant::now())
    }

    /// Bounds `work` by the deadline and Ctrl-C.
    async fn bounded<T>(
        &self,
        step: &str,
        work: impl Future<Output = Result<T, SshError>>,
    ) -> Result<T, HostError> {
        let mut interrupt = self.interrupted.clone();
        tokio::select! {
            finished = tokio::time::timeout_at(self.deadline().into(), work) => match finished {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(HostError::failed(step, error.to_string())),
                Err(_) => Err(HostError::TimedOut { step: step.to_string() }),
            },
            _ = interrupt.wait_for(|stop| *stop) => Err(HostError::Interrupted { step: step.to_string() }),
        }
    }

    /// Runs a script that must succeed; returns its output.
    pub async fn run(&self, step: &str, script: &str) -> Result<Output, HostError> {
        let output = self.bounded(step, self.session.run(script)).await?;
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
            .run("read state", &facts::command(self.lowering.base_dir))
            .await?;
        facts::parse(&output.stdout_text()).map_err(|error| HostError::failed("read state", error))
    }

    /// Takes the service lock and reads the service's state under it, in one remote command;
    /// the lock is held until `unlock` or until the session ends.
    pub async fn lock(&self, operator: &str, now: u64) -> Result<(Held, Facts), HostError> {
        self.events.step(&self.label, "lock");
        let script = plan::lock_script(self.lowering.base_dir, operator, self.lowering.run_id, now);
        let held = self
            .bounded("lock", self.session.hold(&script, plan::LOCK_FACTS_END))
            .await?;
        if held.first_line == "LOCKED" && held.finished.is_none() {
            return match facts::parse(&held.text) {
                Ok(facts) => Ok((held, facts)),
                Err(error) => {
                    unlock(&self.label, held).await;
                    Err(HostError::failed("read state", error))
                }
            };
        }
        if let Some(holder) = held.first_line.strip_prefix("HELD ") {
            let holder = LockHolder::parse(holder, true).describe();
            let _ = held.release().await;
            return Err(HostError::LockHeld {
                holder,
                host: self.host.clone(),
            });
        }
        let message = match held.first_line.strip_prefix("ERROR ") {
            Some(error) => error.to_string(),
            None => match held.release().await {
                Ok(output) => output.failure_text(),
                Err(error) => error.to_string(),
            },
        };
        Err(HostError::failed("lock", message))
    }

    /// Runs one planned step; returns the bytes it uploaded.
    pub async fn execute(&self, step: &Step, payload: &Payload<'_>) -> Result<u64, HostError> {
        let name = step.name();
        self.events.step(&self.label, name);
        let remote = self.lowering.lower(step);
        let (output, sent) = match remote.input {
            Input::Nothing => (
                self.bounded(name, self.session.run(&remote.script)).await?,
                0,
            ),
            Input::Manifest => {
                self.bounded(
                    name,
                    self.session.run_with_input(
                        &remote.script,
                        payload.manifest.as_bytes(),
                        |_| {},
                    ),
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
                    self.session
                        .run_with_input(&remote.script, line.as_bytes(), |_| {}),
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
                let before = uploaded.load(std::sync::atomic::Ordering::Relaxed);
                self.bounded(
                    name,
                    self.session
                        .run_with_input(&remote.script, file, move |sent| {
                            uploaded.store(before + sent, std::sync::atomic::Ordering::Relaxed);
                            events.bytes(&label, sent, total)
                        }),
                )
                .await?
            }
        };
        if !output.success() {
            return Err(HostError::failed(name, failure_of(step, &output)));
        }
        self.completed(step);
        Ok(sent)
    }

    fn completed(&self, step: &Step) {
        if let Ok(mut executed) = self.executed.lock() {
            executed.push(step.describe());
        }
    }

    /// Artifact bytes sent to this host so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(std::sync::atomic::Ordering::Relaxed)
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
    pub async fn health(
        &self,
        step: &Step,
        interval: std::time::Duration,
    ) -> Result<(), HostError> {
        let Step::Health {
            attempts,
            timeout_seconds,
            ..
        } = step
        else {
            return Err(HostError::failed("health", "not a health check step"));
        };
        self.events.step(&self.label, "health");
        let remote = self.lowering.lower(step);
        let limit = std::time::Duration::from_secs(timeout_seconds + 5);
        let mut last = String::new();
        for attempt in 1..=*attempts {
            let outcome = self
                .bounded("health", async {
                    match tokio::time::timeout(limit, self.session.run(&remote.script)).await {
                        Ok(result) => result,
                        Err(_) => Ok(Output {
                            status: None,
                            signal: Some(format!("timed out after {timeout_seconds}s")),
                            ..Output::default()
                        }),
                    }
                })
                .await?;
            if outcome.success() {
                self.completed(step);
                return Ok(());
            }
            last = failure_of(step, &outcome);
            tracing::info!(host = %self.label, step = "health", "attempt {attempt} of {attempts} failed: {last}");
            if attempt < *attempts {
                self.bounded("health", async {
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
    /// same remote command: one round trip for a host's last changes. Not bounded by the
    /// deadline or Ctrl-C (history is written even then); a timeout of its own keeps a dead
    /// host from hanging the run. A failure is reported on the host's progress, not fatal.
    pub async fn record(&self, record: &HistoryRecord, then: Option<&Step>) {
        let mut script = self.lowering.append_history(record);
        if let Some(step) = then {
            script.push_str(&self.lowering.lower(step).script);
        }
        let limit = std::time::Duration::from_secs(if then.is_some() { 60 } else { 10 });
        let problem = match tokio::time::timeout(limit, self.session.run(&script)).await {
            Ok(Ok(output)) if output.success() => {
                if let Some(step) = then {
                    self.completed(step);
                }
                return;
            }
            Ok(Ok(output)) => output.failure_text(),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_string(),
        };
        let what = match then {
            Some(step) => format!("history and {}", step.name()),
            None => "history".to_string(),
        };
        self.events.note(
            &self.label,
            &format!("warning: {what} not written: {problem}"),
        );
    }

    /// Removes this run's staging directory (best effort, after a failure or Ctrl-C).
    pub async fn discard_staging(&self) {
        let script = self.lowering.discard_staging();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.session.run(&script),
        )
        .await;
    }

    /// Runs `step` outside the deadline and Ctrl-C (used to undo a switch during cleanup).
    pub async fn execute_unbounded(&self, step: &Step) -> Result<(), HostError> {
        let name = step.name();
        self.events.step(&self.label, name);
        let remote = self.lowering.lower(step);
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.session.run(&remote.script),
        )
        .await
        .map_err(|_| HostError::TimedOut {
            step: name.to_string(),
        })?
        .map_err(|error| HostError::failed(name, error.to_string()))?;
        if output.success() {
            self.completed(step);
            Ok(())
        } else {
            Err(HostError::failed(name, failure_of(step, &output)))
        }
    }

    /// Gives up this run's use of the host's connection (the last user closes it).
    pub async fn close(self) {
        Session::release(self.session).await;
    }
}

/// The error text of a failed step: exit status and stderr, plus the output's tail for hooks
/// and health checks (their output is what explains the failure).
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
    text
}

/// Releases a lock (closing the holder's stdin); a failure is logged.
pub async fn unlock(label: &str, held: Held) {
    match tokio::time::timeout(std::time::Duration::from_secs(10), held.release()).await {
        Ok(Ok(output)) if output.success() => {}
        Ok(Ok(output)) => tracing::warn!(host = %label, "unlock: {}", output.failure_text()),
        Ok(Err(error)) => tracing::warn!(host = %label, "unlock: {error}"),
        Err(_) => {
            tracing::warn!(host = %label, "unlock: timed out (the lock ends with the session)")
        }
    }
}

/// Elapsed milliseconds since `started`.
pub fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}
