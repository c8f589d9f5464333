//! Progress: the events host workers send and the reporter task, the one owner of the terminal.
//!
//! Workers never print: they send `Event`s through a cloned `Events` handle. The reporter task
//! turns them into indicatif bars on a terminal, plain `HOST: step` lines otherwise (always on
//! stderr), or nothing but the workers' own tracing diagnostics (`--log-format json`). Every
//! line drawn passes through `escape_for_terminal`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::text::{escape_for_terminal, escape_line, format_bytes};

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
    /// The host waits for other hosts (its progress line gives way until it works again).
    Idle { label: String, state: String },
    /// Like `Idle`, but nothing worth a line: the host waits for its turn between two steps of
    /// the same phase (locked, waiting to stage).
    Rest { label: String },
    /// The host finished (one line result).
    Done { label: String, summary: String },
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
    pub fn step(&self, label: &str, step: &str) {
        if self.diagnostics {
            tracing::info!(step, "{step}");
        }
        let _ = self.sender.send(Event::Step {
            label: label.to_string(),
            step: step.to_string(),
        });
    }

    pub fn bytes(&self, label: &str, sent: u64, total: u64) {
        if self.diagnostics {
            tracing::debug!(step = "upload", sent, total, "upload progress");
        }
        let _ = self.sender.send(Event::Bytes {
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
        let _ = self.sender.send(Event::Bytes {
            label: label.to_string(),
            verb: "download",
            sent: received,
            total,
        });
    }

    pub fn note(&self, label: &str, message: &str) {
        if self.diagnostics {
            tracing::warn!("{message}");
        }
        let _ = self.sender.send(Event::Note {
            label: label.to_string(),
            message: message.to_string(),
        });
    }

    pub fn idle(&self, label: &str, state: &str) {
        if self.diagnostics {
            tracing::info!("{state}");
        }
        let _ = self.sender.send(Event::Idle {
            label: label.to_string(),
            state: state.to_string(),
        });
    }

    pub fn rest(&self, label: &str) {
        let _ = self.sender.send(Event::Rest {
            label: label.to_string(),
        });
    }

    /// A line about the whole run, not one host.
    pub fn fleet(&self, message: &str) {
        if self.diagnostics {
            tracing::info!("{message}");
        }
        let _ = self.sender.send(Event::Fleet {
            message: message.to_string(),
        });
    }

    /// The remaining time of a pause between batches (drawn on the overall line of the bars).
    pub fn countdown(&self, message: &str) {
        let _ = self.sender.send(Event::Countdown {
            message: message.to_string(),
        });
    }

    pub fn done(&self, label: &str, summary: &str) {
        if self.diagnostics {
            tracing::info!("{summary}");
        }
        let _ = self.sender.send(Event::Done {
            label: label.to_string(),
            summary: summary.to_string(),
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
    /// Nothing (quiet).
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
    match mode {
        ProgressMode::Silent => while receiver.recv().await.is_some() {},
        // Diagnostics were logged by the workers themselves (see `Events`).
        ProgressMode::Diagnostics => while receiver.recv().await.is_some() {},
        ProgressMode::Lines => {
            // Last reported quarter of each upload, so plain output stays short.
            let mut quarters: HashMap<String, u64> = HashMap::new();
            while let Some(event) = receiver.recv().await {
                let line = match event {
                    Event::Step { label, step } => Some(format!("{label}: {step}")),
                    Event::Bytes {
                        label,
                        verb,
                        sent,
                        total,
                    } => {
                        let quarter = (sent * 4).checked_div(total).unwrap_or(4);
                        let last = quarters.entry(label.clone()).or_insert(0);
                        if quarter > *last {
                            *last = quarter;
                            Some(format!(
                                "{label}: {verb} {} / {}",
                                format_bytes(sent),
                                format_bytes(total)
                            ))
                        } else {
                            None
                        }
                    }
                    Event::Note { label, message } => Some(format!("{label}: {message}")),
                    Event::Idle { label, state } => Some(format!("{label}: {state}")),
                    Event::Rest { .. } => None,
                    Event::Done { label, summary } => Some(format!("{label}: {summary}")),
                    Event::Fleet { message } => Some(message),
                    Event::Countdown { .. } => None,
                };
                if let Some(line) = line {
                    // One write per line: lines never interleave.
                    let line = escape_for_terminal(&line);
                    let mut stderr = std::io::stderr().lock();
                    let _ = writeln!(stderr, "{line}");
                }
            }
        }
        ProgressMode::Bars => {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total_hosts as u64));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} hosts  {elapsed}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.set_prefix("deploy");
            overall.enable_steady_tick(Duration::from_millis(200));
            let host_style = ProgressStyle::with_template("  {prefix:20} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let mut bars: HashMap<String, ProgressBar> = HashMap::new();
            let mut failed = 0u64;
            // Bytes moved per host so far: the overall line shows their sum and rate.
            let mut moved: HashMap<String, u64> = HashMap::new();
            let overall_message =
                |moved: &HashMap<String, u64>, failed: u64, overall: &ProgressBar| {
                    let total: u64 = moved.values().sum();
                    let elapsed = overall.elapsed().as_secs_f64().max(0.001);
                    let mut message = format!(
                        "{}  {}/s",
                        format_bytes(total),
                        format_bytes((total as f64 / elapsed) as u64)
                    );
                    if failed > 0 {
                        message.push_str(&format!("  {failed} failed"));
                    }
                    overall.set_message(message);
                };
            while let Some(event) = receiver.recv().await {
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
                        moved.insert(label.clone(), sent);
                        overall_message(&moved, failed, &overall);
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
                    Event::Idle { label, .. } | Event::Rest { label } => {
                        // Waiting hosts give way: at most `concurrency` host lines at a time.
                        if let Some(bar) = bars.remove(&label) {
                            bar.finish_and_clear();
                            multi.remove(&bar);
                        }
                    }
                    Event::Done { label, summary } => {
                        if let Some(bar) = bars.remove(&label) {
                            bar.finish_and_clear();
                            multi.remove(&bar);
                        }
                        if summary.starts_with("failed") {
                            failed += 1;
                        }
                        let line = format!("{label}: {summary}");
                        multi.suspend(|| eprintln!("{}", escape_for_terminal(&line)));
                        overall.inc(1);
                        overall_message(&moved, failed, &overall);
                    }
                    Event::Fleet { message } => {
                        multi.suspend(|| eprintln!("{}", escape_for_terminal(&message)));
                    }
                    Event::Countdown { message } => {
                        overall.set_message(escape_line(&message).into_owned());
                    }
                }
            }
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}
