//! Progress: the events host workers send and the reporter task, the one owner of the terminal.
//!
//! Workers never print: they send `Event`s through a cloned `Events` handle (steps, bytes,
//! milestones such as staged or healthy, results), and the commands send the run's `Phase`.
//! The reporter task turns them into indicatif bars on a terminal (an overall line drawn from
//! `overall::Board` over one line per host being worked on), plain `HOST: step` lines
//! otherwise (always on stderr), or nothing but diagnostics (`--log-format json`: the events
//! are logged where they are sent, failures at `error`, switch-backs and lost records at
//! `warn`). A host's one-line result is not written on stderr when the summary table goes to
//! the same terminal (`show_results_on_stderr`). Every line drawn passes through
//! `escape_for_terminal`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::overall::{Board, Milestone, Phase};
use super::result::{HostResult, Outcome};
use crate::text::{escape_for_terminal, escape_line, format_bytes};

/// Whether hosts' one-line results are written on stderr (see `show_results_on_stderr`).
static RESULTS_ON_STDERR: AtomicBool = AtomicBool::new(true);

/// Set once at start: `false` when the text summary table will be printed on the same terminal
/// as stderr, so each result is shown once (in the table), not twice.
pub fn show_results_on_stderr(text_output: bool) {
    let same_terminal =
        text_output && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    RESULTS_ON_STDERR.store(!same_terminal, Ordering::Relaxed);
}

/// What workers tell the reporter.
#[derive(Debug, Clone)]
pub enum Event {
    /// A host started a step.
    Step { label: String, step: String },
    /// Upload progress: bytes sent so far of `total`.
    Bytes {
        label: String,
        /// "upload" or "download".
        verb: &'static str,
        sent: u64,
        total: u64,
    },
    /// A diagnostic line about a host.
    Note { label: String, message: String },
    /// The host waits for other hosts (its progress line gives way until it works again),
    /// after reaching `milestone` (`None`: a wait that counts nothing).
    Idle {
        label: String,
        milestone: Option<Milestone>,
    },
    /// The host reached a point the overall line counts, and goes on working.
    Reached { label: String, milestone: Milestone },
    /// The host's transfer will send `bytes` (0: nothing to send).
    Planned { label: String, bytes: u64 },
    /// The run moved on to `phase`.
    Phase { phase: Phase },
    /// Like `Idle`, but nothing worth a line: the host waits for its turn between two steps of
    /// the same phase (locked, waiting to stage).
    Rest { label: String },
    /// The host finished (one line result; `outcome` where the result is a `HostResult`).
    Done {
        label: String,
        summary: String,
        outcome: Option<Outcome>,
    },
    /// A line about the whole run (a batch starts, a pause between batches starts).
    Fleet { message: String },
    /// A pause between batches: what is left of it (a countdown on the overall line).
    Countdown { message: String },
}

/// Cheap handle that workers clone to send events.
///
/// With `--log-format json` the events are diagnostics instead: they are logged right here,
/// in the worker's span, so each line carries its `host`, `service` and `run_id`.
#[derive(Clone)]
pub struct Events {
    sender: mpsc::UnboundedSender<Event>,
    diagnostics: bool,
}

impl Events {
    fn send(&self, event: Event) {
        let _ = self.sender.send(event);
    }

    pub fn step(&self, label: &str, step: &str) {
        if self.diagnostics {
            tracing::info!(step, "{step}");
        }
        self.send(Event::Step {
            label: label.to_string(),
            step: step.to_string(),
        });
    }

    pub fn bytes(&self, label: &str, sent: u64, total: u64) {
        if self.diagnostics {
            tracing::debug!(step = "upload", sent, total, "upload progress");
        }
        self.send(Event::Bytes {
            label: label.to_string(),
            verb: "upload",
            sent,
            total,
        });
    }

    /// Download progress (a URL artifact fetched by the controller).
    pub fn downloaded(&self, label: &str, received: u64, total: u64) {
        if self.diagnostics {
            tracing::debug!(step = "download", received, total, "download progress");
        }
        self.send(Event::Bytes {
            label: label.to_string(),
            verb: "download",
            sent: received,
            total,
        });
    }

    /// A warning about a host (a `warn` diagnostic with `--log-format json`).
    pub fn note(&self, label: &str, message: &str) {
        if self.diagnostics {
            tracing::warn!("{message}");
        }
        self.send(Event::Note {
            label: label.to_string(),
            message: message.to_string(),
        });
    }

    /// A warning about a host's `step` (a lost history record: step `history`).
    pub fn warning(&self, label: &str, step: &str, message: &str) {
        if self.diagnostics {
            tracing::warn!(step, "{message}");
        }
        self.send(Event::Note {
            label: label.to_string(),
            message: message.to_string(),
        });
    }

    /// The host was switched back to the release it had (`message` says to what and why): a
    /// `warn` diagnostic; on the terminal its result line and the table say it.
    pub fn switched_back(&self, label: &str, message: &str) {
        if self.diagnostics {
            tracing::warn!(step = "switch back", "{message}");
        }
        self.reached(label, Milestone::SwitchedBack);
    }

    /// The host waits for the others after reaching `milestone`.
    pub fn idle(&self, label: &str, milestone: Milestone) {
        if self.diagnostics {
            tracing::info!("{}", milestone.waiting());
        }
        self.send(Event::Idle {
            label: label.to_string(),
            milestone: Some(milestone),
        });
    }

    pub fn rest(&self, label: &str) {
        self.send(Event::Rest {
            label: label.to_string(),
        });
    }

    /// The host reached `milestone` and goes on working.
    pub fn reached(&self, label: &str, milestone: Milestone) {
        self.send(Event::Reached {
            label: label.to_string(),
            milestone,
        });
    }

    /// The host's transfer will send `bytes`.
    pub fn planned(&self, label: &str, bytes: u64) {
        self.send(Event::Planned {
            label: label.to_string(),
            bytes,
        });
    }

    /// The run moved on to `phase` (an `info` diagnostic with a `phase` field).
    pub fn phase(&self, phase: Phase) {
        if self.diagnostics {
            tracing::info!(phase = phase.name(), "{}", phase.name());
        }
        self.send(Event::Phase { phase });
    }

    /// A line about the whole run, not one host.
    pub fn fleet(&self, message: &str) {
        if self.diagnostics {
            tracing::info!("{message}");
        }
        self.send(Event::Fleet {
            message: message.to_string(),
        });
    }

    /// The remaining time of a pause between batches (drawn on the overall line of the bars).
    pub fn countdown(&self, message: &str) {
        self.send(Event::Countdown {
            message: message.to_string(),
        });
    }

    /// A host finished with a one-line `summary` (commands whose result is not a change: a
    /// summary starting with `failed` is logged at `error`).
    pub fn done(&self, label: &str, summary: &str) {
        let failed = summary.starts_with("failed");
        if self.diagnostics {
            if failed {
                tracing::error!(result = "failed", "{summary}");
            } else {
                tracing::info!("{summary}");
            }
        }
        self.send(Event::Done {
            label: label.to_string(),
            summary: summary.to_string(),
            outcome: Some(if failed { Outcome::Failed } else { Outcome::Ok }),
        });
    }

    /// A host finished with `result`: its one-line result, logged at `error` when it failed,
    /// `warn` when it was switched back or skipped, with the host, service, failing step,
    /// change and error as fields.
    pub fn finished(&self, label: &str, result: &HostResult) {
        let summary = result.one_line();
        if self.diagnostics {
            let host = result.host.as_str();
            let service = result.service.as_deref().unwrap_or("");
            let step = result.step.as_deref().unwrap_or("result");
            let outcome = result.outcome.as_str();
            let from = result.from.as_deref().unwrap_or("");
            let to = result.to.as_deref().unwrap_or("");
            let error = result.error.as_deref().unwrap_or("");
            match result.outcome {
                Outcome::Failed => tracing::error!(
                    host,
                    service,
                    step,
                    result = outcome,
                    from,
                    to,
                    error,
                    "{summary}"
                ),
                Outcome::RolledBack | Outcome::Skipped => tracing::warn!(
                    host,
                    service,
                    step,
                    result = outcome,
                    from,
                    to,
                    error,
                    "{summary}"
                ),
                _ => tracing::info!(host, service, result = outcome, from, to, "{summary}"),
            }
        }
        self.send(Event::Done {
            label: label.to_string(),
            summary,
            outcome: Some(result.outcome),
        });
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars on the terminal (stderr).
    Bars,
    /// One plain line per event.
    Lines,
    /// Events become `info` diagnostics (`--log-format json`: stderr carries only JSON).
    Diagnostics,
    /// Only warnings, failures and switch-backs, as plain lines (`-q`).
    Silent,
}

impl ProgressMode {
    pub fn choose(no_progress: bool, verbose: u8, quiet: bool, json_logs: bool) -> Self {
        if json_logs {
            ProgressMode::Diagnostics
        } else if quiet {
            ProgressMode::Silent
        } else if no_progress || verbose > 0 || !std::io::stderr().is_terminal() {
            ProgressMode::Lines
        } else {
            ProgressMode::Bars
        }
    }
}

/// The reporter task: the only code that writes progress to the terminal.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub fn start(mode: ProgressMode, total_hosts: usize) -> (Events, Reporter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task =
            tokio::spawn(draw(mode, total_hosts, receiver).instrument(tracing::Span::current()));
        let events = Events {
            sender,
            diagnostics: mode == ProgressMode::Diagnostics,
        };
        (events, Reporter { task })
    }

    /// Waits until every event sent before the last `Events` handle was dropped is drawn.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

async fn draw(
    mode: ProgressMode,
    total_hosts: usize,
    mut receiver: mpsc::UnboundedReceiver<Event>,
) {
    let results = RESULTS_ON_STDERR.load(Ordering::Relaxed);
    match mode {
        // Diagnostics were logged by the workers themselves (see `Events`).
        ProgressMode::Diagnostics => while receiver.recv().await.is_some() {},
        // `-q` silences only the progress: warnings, failures and switch-backs still show.
        ProgressMode::Lines | ProgressMode::Silent => {
            let quiet = mode == ProgressMode::Silent;
            let mut quarters: HashMap<String, u64> = HashMap::new();
            while let Some(event) = receiver.recv().await {
                let shown_when_quiet = match &event {
                    Event::Note { .. } => true,
                    Event::Done { outcome, .. } => {
                        matches!(outcome, Some(Outcome::Failed | Outcome::RolledBack))
                    }
                    _ => false,
                };
                if quiet && !shown_when_quiet {
                    continue;
                }
                if let Some(line) = plain_line(event, &mut quarters, results) {
                    // One write per line: lines never interleave.
                    let line = escape_for_terminal(&line);
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
        ProgressMode::Bars => draw_bars(total_hosts, receiver, results).await,
    }
}

/// The plain line of an event (`HOST: step`), if it has one. Uploads are reported at each
/// quarter (`quarters` keeps the last one per host), so plain output stays short.
fn plain_line(event: Event, quarters: &mut HashMap<String, u64>, results: bool) -> Option<String> {
    match event {
        Event::Step { label, step } => Some(format!("{label}: {step}")),
        Event::Bytes {
            label,
            verb,
            sent,
            total,
        } => {
            let quarter = (sent * 4).checked_div(total).unwrap_or(4);
            let last = quarters.entry(label.clone()).or_insert(0);
            (quarter > *last).then(|| {
                *last = quarter;
                format!(
                    "{label}: {verb} {} / {}",
                    format_bytes(sent),
                    format_bytes(total)
                )
            })
        }
        Event::Note { label, message } => Some(format!("{label}: {message}")),
        Event::Idle {
            label,
            milestone: Some(milestone),
        } => Some(format!("{label}: {}", milestone.waiting())),
        Event::Done { label, summary, .. } if results => Some(format!("{label}: {summary}")),
        Event::Fleet { message } => Some(message),
        _ => None,
    }
}

/// The bars: the overall line (phase, counts, bytes; `overall::Board`) over one line per host
/// being worked on. Hosts that wait give their line up, so there are never more host lines
/// than hosts worked on at once; everything is cleared at the end.
async fn draw_bars(
    total_hosts: usize,
    mut receiver: mpsc::UnboundedReceiver<Event>,
    results: bool,
) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new((total_hosts * 2).max(1) as u64));
    overall.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:20}] {elapsed:>4}  {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    overall.set_prefix("deploy");
    overall.enable_steady_tick(Duration::from_millis(200));
    let host_style = ProgressStyle::with_template("  {prefix:20} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut board = Board::new(total_hosts);
    // A pause's countdown replaces the board's text until the next event that is not one.
    let mut countdown: Option<String> = None;
    let remove = |bars: &mut HashMap<String, ProgressBar>, label: &str| {
        if let Some(bar) = bars.remove(label) {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
    };
    while let Some(event) = receiver.recv().await {
        let now = std::time::Instant::now();
        board.apply(&event, now);
        match event {
            Event::Step { label, step } => {
                let bar = bars.entry(label.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(host_style.clone());
                    bar.set_prefix(escape_line(&label).into_owned());
                    bar
                });
                bar.set_message(escape_line(&step).into_owned());
            }
            Event::Bytes {
                label,
                verb,
                sent,
                total,
            } => {
                if let Some(bar) = bars.get(&label) {
                    let elapsed = bar.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!(
                        "{verb} {} / {} ({}/s)",
                        format_bytes(sent),
                        format_bytes(total),
                        format_bytes((sent as f64 / elapsed) as u64)
                    ));
                }
            }
            Event::Note { label, message } => {
                let line = format!("{label}: {message}");
                multi.suspend(|| eprintln!("{}", escape_for_terminal(&line)));
            }
            Event::Idle { label, .. } | Event::Rest { label } => remove(&mut bars, &label),
            Event::Done { label, summary, .. } => {
                remove(&mut bars, &label);
                if results {
                    let line = format!("{label}: {summary}");
                    multi.suspend(|| eprintln!("{}", escape_for_terminal(&line)));
                }
            }
            Event::Fleet { message } => {
                multi.suspend(|| eprintln!("{}", escape_for_terminal(&message)));
            }
            Event::Countdown { message } => countdown = Some(message),
            // The pause is over when the next batch starts.
            Event::Phase { .. } => countdown = None,
            Event::Reached { .. } | Event::Planned { .. } => {}
        }
        let (position, length) = board.position();
        overall.set_length(length);
        overall.set_position(position);
        let text = match &countdown {
            Some(message) => message.clone(),
            None => board.text(now),
        };
        overall.set_message(escape_line(&text).into_owned());
    }
    for (_, bar) in bars.drain() {
        bar.finish_and_clear();
        multi.remove(&bar);
    }
    overall.finish_and_clear();
    multi.remove(&overall);
    let _ = multi.clear();
}
