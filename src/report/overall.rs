//! The overall line of the progress bars: the run's phase and where the hosts stand in the
//! two-phase story (staged, switched, healthy, failed of the selection), bytes sent of the
//! expected total with rate and ETA. `Board` folds the workers' events into that state; it is
//! pure (the clock is passed in), so the reporter only draws what it returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::progress::Event;
use super::result::Outcome;
use crate::text::format_bytes;

/// What the run as a whole is doing (sent by the commands as they move on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The local artifact check (sha256, members) before any host is contacted.
    CheckingArtifact { what: String },
    /// Downloading a URL artifact on the controller.
    Downloading,
    /// Connecting to every host and taking its lock.
    Connecting,
    /// Staging the release; `bytes_each` is the artifact's size, the estimate for a host that
    /// has not planned its transfer yet.
    Staging { bytes_each: u64 },
    /// Switching batch `batch` of `of` (one batch: `of` is 1).
    Switching { batch: usize, of: usize },
    /// Switching back what this run switched (`on_failure = "rollback"`, or Ctrl-C).
    RollingBack,
    /// Pruning, history records, unlocking.
    Finishing,
}

impl Phase {
    /// A short name, for the `phase` field of diagnostics.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::CheckingArtifact { .. } => "checking artifact",
            Phase::Downloading => "downloading the artifact",
            Phase::Connecting => "connecting",
            Phase::Staging { .. } => "staging",
            Phase::Switching { .. } => "switching",
            Phase::RollingBack => "rolling back",
            Phase::Finishing => "finishing",
        }
    }
}

/// A point a host reached that the overall line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// Staged (or nothing to stage) and waiting at the barrier.
    Staged,
    /// Locked and ready to switch (rollback: nothing to stage).
    Ready,
    /// `current` names the new release.
    Switched,
    /// Hooks and health check passed after the switch.
    Healthy,
    /// Switched back to the release it had.
    SwitchedBack,
}

impl Milestone {
    /// The plain line of a host that waits for the others after reaching this point.
    pub fn waiting(self) -> &'static str {
        match self {
            Milestone::Staged => "staged; waiting for the other hosts",
            Milestone::Ready => "ready; waiting for the other hosts",
            Milestone::Switched | Milestone::Healthy => "switched; waiting for the other hosts",
            Milestone::SwitchedBack => "switched back; waiting for the other hosts",
        }
    }
}

#[derive(Debug, Default)]
struct HostState {
    staged: bool,
    switched: bool,
    healthy: bool,
    switched_back: bool,
    done: Option<Outcome>,
    /// The step the host is in (while it works).
    step: Option<String>,
    sent: u64,
    /// What its transfer will send, once planned.
    planned: Option<u64>,
}

/// The state behind the overall line.
#[derive(Debug)]
pub struct Board {
    total: usize,
    phase: Option<Phase>,
    /// Expected bytes for a host that has not planned yet.
    estimate: u64,
    hosts: HashMap<String, HostState>,
    first_byte: Option<Instant>,
    /// A rollback run has no staging: its hosts are `ready`.
    ready_only: bool,
}

impl Board {
    pub fn new(total: usize) -> Board {
        Board {
            total,
            phase: None,
            estimate: 0,
            hosts: HashMap::new(),
            first_byte: None,
            ready_only: false,
        }
    }

    fn host(&mut self, label: &str) -> &mut HostState {
        self.hosts.entry(label.to_string()).or_default()
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Phase { phase } => {
                if let Phase::Staging { bytes_each } = phase {
                    self.estimate = *bytes_each;
                }
                self.phase = Some(phase.clone());
            }
            Event::Step { label, step } => self.host(label).step = Some(step.clone()),
            Event::Bytes {
                label, sent, total, ..
            } => {
                self.first_byte.get_or_insert(now);
                let host = self.host(label);
                host.sent = *sent;
                // What this transfer sends, unless the host planned it already.
                host.planned.get_or_insert(*total);
            }
            Event::Planned { label, bytes } => self.host(label).planned = Some(*bytes),
            Event::Idle { label, milestone } => {
                let host = self.host(label);
                host.step = None;
                match milestone {
                    Some(Milestone::Staged) => host.staged = true,
                    Some(Milestone::Ready) => {
                        host.staged = true;
                        self.ready_only = true;
                    }
                    _ => {}
                }
            }
            Event::Rest { label } => self.host(label).step = None,
            Event::Reached { label, milestone } => {
                let host = self.host(label);
                match milestone {
                    Milestone::Staged | Milestone::Ready => host.staged = true,
                    Milestone::Switched => host.switched = true,
                    Milestone::Healthy => {
                        host.healthy = true;
                        host.step = None;
                    }
                    Milestone::SwitchedBack => host.switched_back = true,
                }
            }
            Event::Done { label, outcome, .. } => {
                let host = self.host(label);
                host.step = None;
                host.done = Some(outcome.unwrap_or(Outcome::Ok));
            }
            Event::Note { .. } | Event::Fleet { .. } | Event::Countdown { .. } => {}
        }
    }

    fn count(&self, test: impl Fn(&HostState) -> bool) -> usize {
        self.hosts.values().filter(|host| test(host)).count()
    }

    /// Bytes sent so far and the expected total: a host that finished staging (or the run)
    /// counts what it sent, one that planned its transfer what it will send, any other the
    /// artifact's size.
    pub fn bytes(&self) -> (u64, u64) {
        let sent: u64 = self.hosts.values().map(|host| host.sent).sum();
        let mut expected = 0u64;
        for host in self.hosts.values() {
            expected += if host.staged || host.done.is_some() {
                host.sent
            } else {
                host.planned.unwrap_or(self.estimate).max(host.sent)
            };
        }
        let unseen = self.total.saturating_sub(self.hosts.len()) as u64;
        expected += unseen * self.estimate;
        (sent, expected)
    }

    /// The bar: two halves, staging then the switch; each host moves one step per half (staged;
    /// healthy or finished).
    pub fn position(&self) -> (u64, u64) {
        let points: usize = self
            .hosts
            .values()
            .map(|host| {
                if host.done.is_some() || host.healthy {
                    2
                } else {
                    usize::from(host.staged)
                }
            })
            .sum();
        (points as u64, (self.total * 2).max(1) as u64)
    }

    /// The phase as shown: `staging, waiting for 4 hosts`, `switching batch 2/3`, `health
    /// checks, batch 2/3`.
    pub fn phase_text(&self) -> String {
        let Some(phase) = &self.phase else {
            return "starting".to_string();
        };
        match phase {
            Phase::CheckingArtifact { what } => format!("checking artifact {what}"),
            Phase::Staging { .. } => {
                let staged = self.count(|host| host.staged);
                let waiting = self
                    .total
                    .saturating_sub(self.count(|host| host.staged || host.done.is_some()));
                if staged > 0 && waiting > 0 {
                    format!(
                        "staging, waiting for {waiting} {}",
                        if waiting == 1 { "host" } else { "hosts" }
                    )
                } else {
                    "staging".to_string()
                }
            }
            Phase::Switching { batch, of } => {
                let checking = self
                    .count(|host| host.done.is_none() && host.step.as_deref() == Some("health"));
                let what = if checking > 0 {
                    "health checks"
                } else {
                    "switching"
                };
                if *of > 1 && checking > 0 {
                    format!("{what}, batch {batch}/{of}")
                } else if *of > 1 {
                    format!("{what} batch {batch}/{of}")
                } else {
                    what.to_string()
                }
            }
            other => other.name().to_string(),
        }
    }

    /// The overall line's message: phase, counts against the selection, bytes, rate, ETA.
    pub fn text(&self, now: Instant) -> String {
        let mut parts = vec![self.phase_text()];
        let local = matches!(
            self.phase,
            Some(Phase::CheckingArtifact { .. } | Phase::Downloading)
        );
        if local {
            let (sent, expected) = self.bytes();
            if expected > 0 {
                parts.push(format!(
                    "{} of {}",
                    format_bytes(sent),
                    format_bytes(expected)
                ));
            }
            return parts.join("  ");
        }
        let total = self.total;
        let staged = self.count(|host| host.staged);
        let switched = self.count(|host| host.switched);
        let healthy = self.count(|host| host.healthy);
        let back = self.count(|host| host.switched_back);
        let failed = self.count(|host| host.done == Some(Outcome::Failed));
        let skipped = self.count(|host| host.done == Some(Outcome::Skipped));
        let word = if self.ready_only { "ready" } else { "staged" };
        parts.push(format!("{staged}/{total} {word}"));
        let switching = matches!(
            self.phase,
            Some(Phase::Switching { .. } | Phase::RollingBack | Phase::Finishing)
        );
        if switching || switched > 0 {
            parts.push(format!("{switched}/{total} switched"));
            parts.push(format!("{healthy}/{total} healthy"));
        }
        if back > 0 {
            parts.push(format!("{back} switched back"));
        }
        if failed > 0 {
            parts.push(format!("{failed} failed"));
        }
        if skipped > 0 {
            parts.push(format!("{skipped} skipped"));
        }
        let (sent, expected) = self.bytes();
        if expected > 0 || sent > 0 {
            parts.push(format!(
                "{} of {}",
                format_bytes(sent),
                format_bytes(expected.max(sent))
            ));
            let staging = matches!(self.phase, Some(Phase::Staging { .. }));
            if let (true, Some(first)) = (staging, self.first_byte) {
                let seconds = now.saturating_duration_since(first).as_secs_f64();
                if seconds >= 0.5 {
                    let rate = sent as f64 / seconds;
                    parts.push(format!("{}/s", format_bytes(rate as u64)));
                    let left = expected.saturating_sub(sent);
                    if rate >= 1.0 && left > 0 {
                        parts.push(format!(
                            "ETA {}",
                            clock(Duration::from_secs_f64(left as f64 / rate))
                        ));
                    }
                }
            }
        }
        parts.join("  ")
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(label: &str, step: &str) -> Event {
        Event::Step {
            label: label.to_string(),
            step: step.to_string(),
        }
    }

    fn idle(label: &str, milestone: Milestone) -> Event {
        Event::Idle {
            label: label.to_string(),
            milestone: Some(milestone),
        }
    }

    fn reached(label: &str, milestone: Milestone) -> Event {
        Event::Reached {
            label: label.to_string(),
            milestone,
        }
    }

    /// The two-phase story, event by event, as the overall line tells it.
    #[test]
    fn the_overall_line_tells_the_phases() {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let mut board = Board::new(4);
        let mut lines = Vec::new();
        let apply = |board: &mut Board, event: Event, seconds: u64| {
            board.apply(&event, at(seconds));
        };
        apply(
            &mut board,
            Event::Phase {
                phase: Phase::Connecting,
            },
            0,
        );
        lines.push(board.text(at(0)));
        apply(
            &mut board,
            Event::Phase {
                phase: Phase::Staging {
                    bytes_each: 100 << 20,
                },
            },
            1,
        );
        lines.push(board.text(at(1)));
        apply(&mut board, step("web1", "upload"), 1);
        apply(
            &mut board,
            Event::Planned {
                label: "web1".into(),
                bytes: 100 << 20,
            },
            1,
        );
        apply(
            &mut board,
            Event::Planned {
                label: "web2".into(),
                bytes: 0,
            },
            1,
        );
        apply(
            &mut board,
            Event::Bytes {
                label: "web1".into(),
                verb: "upload",
                sent: 50 << 20,
                total: 100 << 20,
            },
            1,
        );
        apply(&mut board, idle("web2", Milestone::Staged), 2);
        lines.push(board.text(at(2)));
        apply(
            &mut board,
            Event::Done {
                label: "web4".into(),
                summary: "failed".into(),
                outcome: Some(Outcome::Failed),
            },
            2,
        );
        apply(&mut board, idle("web1", Milestone::Staged), 3);
        apply(&mut board, idle("web3", Milestone::Staged), 3);
        apply(
            &mut board,
            Event::Phase {
                phase: Phase::Switching { batch: 1, of: 2 },
            },
            3,
        );
        apply(&mut board, step("web1", "switch"), 3);
        apply(&mut board, reached("web1", Milestone::Switched), 3);
        apply(&mut board, step("web1", "health"), 3);
        lines.push(board.text(at(4)));
        apply(&mut board, reached("web1", Milestone::Healthy), 4);
        apply(
            &mut board,
            Event::Phase {
                phase: Phase::Switching { batch: 2, of: 2 },
            },
            4,
        );
        lines.push(board.text(at(4)));
        apply(
            &mut board,
            Event::Phase {
                phase: Phase::RollingBack,
            },
            5,
        );
        apply(&mut board, reached("web1", Milestone::SwitchedBack), 5);
        lines.push(board.text(at(5)));
        insta::assert_snapshot!(lines.join("\n"), @r"
        connecting  0/4 staged
        staging  0/4 staged  0 B of 400.0 MiB
        staging, waiting for 3 hosts  1/4 staged  50.0 MiB of 300.0 MiB  50.0 MiB/s  ETA 5s
        health checks, batch 1/2  3/4 staged  1/4 switched  0/4 healthy  1 failed  50.0 MiB of 50.0 MiB
        switching batch 2/2  3/4 staged  1/4 switched  1/4 healthy  1 failed  50.0 MiB of 50.0 MiB
        rolling back  3/4 staged  1/4 switched  1/4 healthy  1 switched back  1 failed  50.0 MiB of 50.0 MiB
        ");
        assert_eq!(board.position(), (6, 8));
    }

    #[test]
    fn clocks_are_short() {
        assert_eq!(clock(Duration::from_millis(4100)), "5s");
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }
}
