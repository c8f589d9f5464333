//! The operator's view: the one owner of the terminal.
//!
//! Owns the events that host workers send (step started, bytes uploaded, host finished), the
//! reporter task that turns them into progress bars on a terminal or plain `HOST: step` lines
//! otherwise (always on stderr), and the final result on stdout: a summary table or one JSON
//! document (SPEC §5). Workers never print. Also owns `escape_for_terminal`, the one way
//! host-supplied text is made safe for a terminal: every text rendering here (and the text views
//! of the commands) passes untrusted text through it; JSON output needs no escaping.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::Instrument;

/// Per-host result values of SPEC §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Unchanged,
    Failed,
    RolledBack,
    Skipped,
    Planned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Skipped => "skipped",
            Outcome::Planned => "planned",
        }
    }
}

/// Lock state as shown by `status` and dry-runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockView {
    pub operator: String,
    pub run_id: String,
    pub since: String,
    pub alive: bool,
}

/// One host's line of the result (SPEC §5 `hosts[]`), with the per-command extras.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub service: Option<String>,
    pub host: String,
    pub result: Outcome,
    pub from: Option<String>,
    pub to: Option<String>,
    pub bytes: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// Set when the failure was a lock held by another run (exit code 3).
    #[serde(skip)]
    pub lock_held: bool,
    /// Set when a history record of this host could not be written (exit code 1 at least).
    #[serde(skip)]
    pub history_lost: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckView>>,
    /// Planned steps (dry run) or the steps that completed (real run), one line each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<String>>,
    /// Facts and decisions worth showing (live release, lock, disk, why nothing changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
    /// `prune`: releases removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Vec<String>>,
    /// `diff` and `push --dry-run --diff`: file-level difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<crate::artifact::Diff>,
    /// `status --verify`: files changed on the host since the push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::artifact::Diff>,
    /// `history`: the host's records, newest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<crate::plan::HistoryRecord>>,
}

impl HostResult {
    pub fn new(service: Option<&str>, host: &str, result: Outcome) -> Self {
        HostResult {
            service: service.map(str::to_string),
            host: host.to_string(),
            result,
            from: None,
            to: None,
            bytes: 0,
            duration_ms: 0,
            error: None,
            lock_held: false,
            history_lost: false,
            status: None,
            checks: None,
            steps: None,
            notes: None,
            pruned: None,
            diff: None,
            drift: None,
            entries: None,
        }
    }
}

/// `status` fields (SPEC §5).
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub reachable: bool,
    pub live: Option<String>,
    pub previous: Option<String>,
    pub releases: Vec<String>,
    pub lock: Option<LockView>,
}

/// One `check` item.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    /// An optional tool that is absent: reported, but the host still passes.
    pub optional: bool,
    pub detail: String,
}

/// The whole result document (SPEC §5).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub id: String,
    pub action: String,
    pub dry_run: bool,
    pub result: Outcome,
    pub hosts: Vec<HostResult>,
}

impl RunResult {
    /// Overall result: failed if any host failed, rolled_back if the run rolled hosts back.
    pub fn new(id: &str, action: &str, dry_run: bool, hosts: Vec<HostResult>) -> Self {
        let result = if hosts.iter().any(|host| host.result == Outcome::Failed) {
            Outcome::Failed
        } else if hosts.iter().any(|host| host.result == Outcome::RolledBack) {
            Outcome::RolledBack
        } else {
            Outcome::Ok
        };
        RunResult {
            id: id.to_string(),
            action: action.to_string(),
            dry_run,
            result,
            hosts,
        }
    }

    /// Exit code of SPEC §6 (130 is decided by the caller).
    pub fn exit_code(&self) -> u8 {
        let failed: Vec<&HostResult> = self
            .hosts
            .iter()
            .filter(|host| {
                matches!(host.result, Outcome::Failed | Outcome::RolledBack)
                    || host.history_lost
                    || host.drift.as_ref().is_some_and(|drift| !drift.is_empty())
            })
            .collect();
        if failed.is_empty() {
            0
        } else if failed.iter().all(|host| host.lock_held) {
            3
        } else {
            1
        }
    }
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
    /// The host waits for other hosts (its progress line gives way until it works again).
    Idle { label: String, state: String },
    /// Like `Idle`, but nothing worth a line: the host waits for its turn between two steps of
    /// the same phase (locked, waiting to stage).
    Rest { label: String },
    /// The host finished (one line result).
    Done { label: String, summary: String },
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
                }
            }
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

/// Human-readable byte counts (binary units).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The summary table (plain text, no escape codes; `table` escapes host-supplied cells).
pub fn render_table(result: &RunResult) -> String {
    let with_service = result.hosts.iter().any(|host| host.service.is_some());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["HOST".to_string()];
    if with_service {
        header.push("SERVICE".to_string());
    }
    header.extend(["RESULT", "CHANGE", "BYTES", "TIME", "ERROR"].map(str::to_string));
    rows.push(header);
    for host in &result.hosts {
        let mut row = vec![host.host.clone()];
        if with_service {
            row.push(host.service.clone().unwrap_or_default());
        }
        let change = match (&host.from, &host.to) {
            (None, None) => "-".to_string(),
            (from, to) => format!(
                "{} -> {}",
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            ),
        };
        row.push(host.result.as_str().to_string());
        row.push(change);
        row.push(format_bytes(host.bytes));
        row.push(format!("{:.1}s", host.duration_ms as f64 / 1000.0));
        row.push(
            host.error
                .as_deref()
                .map(|error| error.lines().next().unwrap_or("").to_string())
                .unwrap_or_default(),
        );
        rows.push(row);
    }
    let mut text = table(&rows);
    let failed = result
        .hosts
        .iter()
        .filter(|host| host.result == Outcome::Failed)
        .count();
    text.push_str(&format!(
        "{} {}: {} ({} {}, {} failed)\n",
        result.action,
        result.id,
        result.result.as_str(),
        result.hosts.len(),
        if result.hosts.len() == 1 {
            "host"
        } else {
            "hosts"
        },
        failed
    ));
    text
}

/// The text view of a dry run (or of per-host messages): each host's plan lines.
pub fn render_plan(result: &RunResult) -> String {
    let mut text = String::new();
    for host in &result.hosts {
        let service = host.service.as_deref().unwrap_or("");
        text.push_str(&format!(
            "{} ({service}): {}\n",
            host.host,
            host.result.as_str()
        ));
        for line in host.notes.iter().flatten() {
            text.push_str(&format!("  {}\n", escape_line(line)));
        }
        for line in host.steps.iter().flatten() {
            text.push_str(&format!("  - {}\n", escape_line(line)));
        }
        if let Some(difference) = &host.diff {
            for line in render_diff(difference, 20) {
                text.push_str(&format!("  diff: {line}\n"));
            }
        }
        if let Some(error) = &host.error
            && host.result == Outcome::Failed
        {
            text.push_str(&format!("  error: {}\n", escape_for_terminal(error)));
        }
    }
    if result.dry_run {
        text.push_str(&format!(
            "{} {} (dry run): nothing was changed on any host\n",
            result.action, result.id
        ));
    }
    text
}

/// Text lines for a file-level difference: counts, then paths (at most `limit` per list).
pub fn render_diff(diff: &crate::artifact::Diff, limit: usize) -> Vec<String> {
    let mut lines = vec![format!(
        "{} added, {} modified, {} removed",
        diff.added.len(),
        diff.modified.len(),
        diff.removed.len()
    )];
    for (sign, paths) in [
        ("+", &diff.added),
        ("~", &diff.modified),
        ("-", &diff.removed),
    ] {
        for path in paths.iter().take(limit) {
            lines.push(format!("{sign} {}", path.escape_debug()));
        }
        if paths.len() > limit {
            lines.push(format!("{sign} ... and {} more", paths.len() - limit));
        }
    }
    lines
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed. Every cell is shown
/// on one line with its control characters (newlines too) escaped, so host-supplied cells can
/// neither reach the terminal raw nor break the table.
pub fn table(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| escape_line(cell)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                let padding = widths[index] - cell.chars().count() + 2;
                line.push_str(&" ".repeat(padding));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Renders host-supplied (untrusted) text for a terminal (SPEC §5): every control character but
/// the newline — C0 controls, DEL and the C1 controls U+0080–U+009F — becomes a visible escape
/// (`\r`, `\t`, `\x1b`, `\x7f`, `\u{9b}`), so that no host can clear the screen, set the
/// window title or overwrite a line. Backslashes stay as they are: the result is for reading,
/// not for reversing, and escaping it again changes nothing. Text without control characters
/// is returned as it is.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    let kept = |character: char| character == '\n' || !character.is_control();
    if text.chars().all(kept) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for character in text.chars() {
        match character {
            character if kept(character) => escaped.push(character),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            // The rest of C0, and DEL.
            '\0'..='\x7f' => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(character));
            }
            // C1.
            _ => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(character));
            }
        }
    }
    Cow::Owned(escaped)
}

/// Host-supplied text that must stay on one line (table cells, progress bar messages, plan
/// lines): `escape_for_terminal`, and newlines shown as `\n`.
fn escape_line(text: &str) -> Cow<'_, str> {
    match escape_for_terminal(text) {
        Cow::Borrowed(text) if !text.contains('\n') => Cow::Borrowed(text),
        escaped => Cow::Owned(escaped.replace('\n', "\\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human_readable() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(50 * 1024 * 1024), "50.0 MiB");
    }

    #[test]
    fn exit_codes_follow_the_spec() {
        let ok = HostResult::new(Some("app"), "web1", Outcome::Ok);
        let mut held = HostResult::new(Some("app"), "web2", Outcome::Failed);
        held.lock_held = true;
        let failed = HostResult::new(Some("app"), "web3", Outcome::Failed);
        assert_eq!(
            RunResult::new("r", "push", false, vec![ok.clone()]).exit_code(),
            0
        );
        assert_eq!(
            RunResult::new("r", "push", false, vec![ok.clone(), held.clone()]).exit_code(),
            3
        );
        assert_eq!(
            RunResult::new("r", "push", false, vec![held, failed.clone()]).exit_code(),
            1
        );
        let result = RunResult::new("r", "push", false, vec![ok, failed]);
        assert_eq!(result.result, Outcome::Failed);
    }

    #[test]
    fn table_is_aligned() {
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Ok);
        host.to = Some("v1".to_string());
        host.bytes = 2048;
        host.duration_ms = 1500;
        let result = RunResult::new("run-1", "push", false, vec![host]);
        insta::assert_snapshot!(render_table(&result), @r"
        HOST  SERVICE  RESULT  CHANGE        BYTES    TIME  ERROR
        web1  app      ok      (none) -> v1  2.0 KiB  1.5s
        push run-1: ok (1 host, 0 failed)
        ");
    }

    #[test]
    fn terminal_escapes_make_control_characters_visible() {
        let hostile = "a\u{1b}[2J\u{1b}]0;title\u{7}b\rc\td\u{7f}e\u{9b}f\u{85}g\\h\nnext line ü";
        insta::assert_snapshot!(escape_for_terminal(hostile), @r"
        a\x1b[2J\x1b]0;title\x07b\rc\td\x7fe\u{9b}f\u{85}g\h
        next line ü
        ");
        assert_eq!(escape_line("one\ntwo\u{1b}"), "one\\ntwo\\x1b");
    }

    #[test]
    fn terminal_escapes_leave_clean_text_alone_and_are_idempotent() {
        assert!(matches!(
            escape_for_terminal("plain text\nwith ünïcode and \\ backslash"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(escape_line("plain"), Cow::Borrowed(_)));
        let once = escape_for_terminal("x\u{1b}\u{0}\u{9f}\r\n").into_owned();
        assert_eq!(escape_for_terminal(&once), once);
        assert!(
            !once
                .chars()
                .any(|character| character != '\n' && character.is_control())
        );
    }

    #[test]
    fn table_cells_stay_on_one_line_and_aligned() {
        let rows = vec![
            vec!["NAME".to_string(), "VALUE".to_string(), "END".to_string()],
            vec![
                "evil\u{1b}[2J".to_string(),
                "two\nlines\r".to_string(),
                "x".to_string(),
            ],
            vec!["ok".to_string(), "fine".to_string(), "y".to_string()],
        ];
        insta::assert_snapshot!(table(&rows), @r"
        NAME         VALUE         END
        evil\x1b[2J  two\nlines\r  x
        ok           fine          y
        ");
    }

    #[test]
    fn host_supplied_text_is_escaped_in_the_table_and_the_plan() {
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Failed);
        host.error = Some("exit status 1: \u{1b}]0;pwned\u{7}boom\r\nweb2: ok".to_string());
        host.notes = Some(vec![
            "lock: held by \u{1b}[31mmallory\nweb2: ok".to_string(),
        ]);
        host.steps = Some(vec!["remove staging leftover \u{9b}2J".to_string()]);
        let result = RunResult::new("run-1", "push", false, vec![host]);
        insta::assert_snapshot!(render_table(&result), @r"
        HOST  SERVICE  RESULT  CHANGE  BYTES  TIME  ERROR
        web1  app      failed  -       0 B    0.0s  exit status 1: \x1b]0;pwned\x07boom
        push run-1: failed (1 host, 1 failed)
        ");
        insta::assert_snapshot!(render_plan(&result), @r"
        web1 (app): failed
          lock: held by \x1b[31mmallory\nweb2: ok
          - remove staging leftover \u{9b}2J
          error: exit status 1: \x1b]0;pwned\x07boom\r
        web2: ok
        ");
    }
}
