//! The summary table: one row per host of a run (result, change, bytes, time, first error
//! line), the lines that say once what went wrong (`problems`: a fleet rollback and its cause,
//! identical errors grouped), and a closing line with the run's result and counts, shown after
//! `check` and real pushes and rollbacks.

use super::problems::{first_line, outcome_words, problem_lines};
use super::result::{Landing, Outcome, RunResult};
use super::table::table;
use crate::text::format_bytes;

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
        row.push(host.outcome.as_str().to_string());
        row.push(host.change());
        row.push(format_bytes(host.bytes));
        row.push(format!("{:.1}s", host.duration_ms as f64 / 1000.0));
        // A host switched back with the fleet: the line under the table says why, once.
        row.push(match (&host.error, host.landing) {
            (_, Landing::FleetRollback) | (None, _) => String::new(),
            (Some(error), _) => first_line(error).to_string(),
        });
        rows.push(row);
    }
    let mut text = table(&rows);
    for line in problem_lines(&result.hosts) {
        text.push_str(&crate::text::escape_line(&line));
        text.push('\n');
    }
    text.push_str(&closing_line(result));
    text.push('\n');
    text
}

/// `push RUN: failed (12 hosts, 1 failed, 11 rolled back)`: the run's result, then how many
/// hosts ended how (failed always, the others when there are any; ok is the rest).
pub fn closing_line(result: &RunResult) -> String {
    let count = |outcome: Outcome| {
        result
            .hosts
            .iter()
            .filter(|host| host.outcome == outcome)
            .count()
    };
    let mut counts = format!(
        "{} {}, {} failed",
        result.hosts.len(),
        if result.hosts.len() == 1 {
            "host"
        } else {
            "hosts"
        },
        count(Outcome::Failed)
    );
    for outcome in [Outcome::RolledBack, Outcome::Skipped, Outcome::Unchanged] {
        let number = count(outcome);
        if number > 0 {
            counts.push_str(&format!(", {number} {}", outcome_words(outcome)));
        }
    }
    format!(
        "{} {}: {}{} ({counts})",
        result.action,
        result.id,
        result.result.as_str(),
        if result.interrupted {
            ", interrupted"
        } else {
            ""
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostResult;

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

    fn host(name: &str, outcome: Outcome, landing: Landing, error: Option<&str>) -> HostResult {
        let mut host = HostResult::new(Some("app"), name, outcome);
        host.from = Some("v3".to_string());
        host.to = Some("v4".to_string());
        host.landing = landing;
        host.error = error.map(str::to_string);
        host
    }

    /// CHANGE says where each host ended; the fleet rollback is said once, with its cause.
    #[test]
    fn rows_say_where_hosts_ended_and_a_fleet_rollback_is_one_line() {
        let back = "switched back: 1 of 4 hosts failed (max_failures allows 0): web2";
        let hosts = vec![
            host(
                "web1",
                Outcome::RolledBack,
                Landing::FleetRollback,
                Some(back),
            ),
            host(
                "web2",
                Outcome::Failed,
                Landing::SwitchedBack,
                Some("health: failed 2 of 2 attempts: exit status 1; switched back to v3"),
            ),
            host(
                "web3",
                Outcome::RolledBack,
                Landing::FleetRollback,
                Some(back),
            ),
            host(
                "web4",
                Outcome::Failed,
                Landing::LeftOnTarget,
                Some("switching back failed: connection lost"),
            ),
            host(
                "web5",
                Outcome::Skipped,
                Landing::Implied,
                Some("start: interrupted"),
            ),
            host("web6", Outcome::Ok, Landing::Implied, None),
        ];
        let mut result = RunResult::new("run-1", "push", false, hosts);
        result.interrupted();
        insta::assert_snapshot!(render_table(&result), @r"
        HOST  SERVICE  RESULT       CHANGE                 BYTES  TIME  ERROR
        web1  app      rolled_back  v3 -> v4, back on v3   0 B    0.0s
        web2  app      failed       v3 -> v4, back on v3   0 B    0.0s  health: failed 2 of 2 attempts: exit status 1; switched back to v3
        web3  app      rolled_back  v3 -> v4, back on v3   0 B    0.0s
        web4  app      failed       v3 -> v4, left on v4   0 B    0.0s  switching back failed: connection lost
        web5  app      skipped      v3 -> v4, still on v3  0 B    0.0s  start: interrupted
        web6  app      ok           v3 -> v4               0 B    0.0s
        fleet rollback: 2 hosts failed (web2, web4), so 2 hosts were switched back: web1, web3
        push run-1: failed, interrupted (6 hosts, 2 failed, 2 rolled back, 1 skipped)
        ");
    }
}
