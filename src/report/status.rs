//! The text view of `deploy status`: one row per (service, host), then each host's error and
//! drift (`status --verify`). Host-supplied fields (lock holder, release names, errors) are
//! escaped for the terminal.

use super::diff::render_diff;
use super::result::RunResult;
use super::table::table;
use crate::text::escape_for_terminal;

/// The text view of `status`: one row per (service, host) (`table` escapes every cell).
pub fn render_status(result: &RunResult) -> String {
    let mut rows = vec![
        [
            "HOST",
            "SERVICE",
            "REACHABLE",
            "LIVE",
            "PREVIOUS",
            "RELEASES",
            "LOCK",
            "FROZEN",
            "WENT LIVE",
        ]
        .map(str::to_string)
        .to_vec(),
    ];
    for host in &result.hosts {
        let Some(status) = host.status() else {
            continue;
        };
        rows.push(vec![
            host.host.clone(),
            host.service.clone().unwrap_or_default(),
            if status.reachable { "yes" } else { "no" }.to_string(),
            status.live.clone().unwrap_or_else(|| "-".to_string()),
            status.previous.clone().unwrap_or_else(|| "-".to_string()),
            status.releases.len().to_string(),
            status
                .lock
                .as_ref()
                .map(|lock| {
                    format!(
                        "{} (run {}, since {}{})",
                        lock.operator,
                        lock.run_id,
                        lock.since,
                        if lock.alive { "" } else { ", stale" }
                    )
                })
                .unwrap_or_else(|| "-".to_string()),
            status
                .freeze
                .as_ref()
                .map(|freeze| {
                    format!(
                        "by {} since {}: {}",
                        freeze.operator, freeze.since_text, freeze.message
                    )
                })
                .unwrap_or_else(|| "-".to_string()),
            status
                .went_live
                .as_ref()
                .map(|went| format!("{} by {} ({})", went.time, went.operator, went.action))
                .unwrap_or_else(|| "-".to_string()),
        ]);
    }
    let mut text = table(&rows);
    for service in result.rollup.iter().flatten() {
        text.push_str(&escape_for_terminal(&super::rollup::rollup_line(service)));
        text.push('\n');
    }
    for host in &result.hosts {
        if let Some(error) = &host.error {
            text.push_str(&format!("{}: {}\n", host.host, escape_for_terminal(error)));
        }
        if let Some(drift) = host.drift() {
            let lines = render_diff(drift, 20);
            if drift.is_empty() {
                text.push_str(&format!("{}: verified, no drift\n", host.host));
            } else {
                for line in &lines[1..] {
                    text.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Detail, HostResult, LockView, Outcome, StatusView};

    #[test]
    fn status_text_escapes_host_supplied_fields() {
        let mut host = HostResult::new(Some("app"), "web1", Outcome::Ok);
        host.detail = Some(Detail::Status {
            drift: None,
            view: StatusView {
                reachable: true,
                live: Some("v2\u{1b}[1A".to_string()),
                previous: Some("v1\r".to_string()),
                releases: vec!["v1".to_string(), "v2".to_string()],
                lock: Some(LockView {
                    operator: "\u{1b}]0;pwned\u{7}mallory".to_string(),
                    run_id: "run\u{9b}1".to_string(),
                    since: "an unknown time".to_string(),
                    alive: false,
                }),
                freeze: Some(Box::new(crate::remote::freeze::Freeze::parse(
                    "bob@desk 0 incident\u{1b}[2J",
                ))),
                went_live: None,
            },
        });
        host.error = Some("drift in v2: \u{1b}[2J\nsecond line".to_string());
        let mut result = RunResult::new("run-1", "status", false, vec![host]);
        result.rollup = Some(crate::report::rollup::rollup(&result.hosts));
        insta::assert_snapshot!(render_status(&result), @r"
        HOST  SERVICE  REACHABLE  LIVE       PREVIOUS  RELEASES  LOCK                                                                    FROZEN                                                   WENT LIVE
        web1  app      yes        v2\x1b[1A  v1\r      2         \x1b]0;pwned\x07mallory (run run\u{9b}1, since an unknown time, stale)  by bob@desk since 1970-01-01T00:00:00Z: incident\x1b[2J  -
        app: v2\x1b[1A: 1 host (web1)
        web1: drift in v2: \x1b[2J
        second line
        ");
    }
}
