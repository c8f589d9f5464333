//! The summary table: one row per host of a run (result, change, bytes, time, first error
//! line) and a closing line with the run's result, shown after `check` and real pushes and
//! rollbacks.

use super::result::{Outcome, RunResult};
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
        let change = match (&host.from, &host.to) {
            (None, None) => "-".to_string(),
            (from, to) => format!(
                "{} -> {}",
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            ),
        };
        row.push(host.outcome.as_str().to_string());
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
        .filter(|host| host.outcome == Outcome::Failed)
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
}
