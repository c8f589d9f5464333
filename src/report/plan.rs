//! The plan view: each host's notes, planned (or completed) steps, diff and error, shown for
//! dry runs and for the per-host messages of `prune` and `unlock`.

use super::diff::render_diff;
use super::result::{Outcome, RunResult};
use crate::text::{escape_for_terminal, escape_line};

/// The text view of a dry run (or of per-host messages): each host's plan lines.
pub fn render_plan(result: &RunResult) -> String {
    let mut text = String::new();
    for host in &result.hosts {
        let service = host.service.as_deref().unwrap_or("");
        text.push_str(&format!(
            "{} ({service}): {}\n",
            host.host,
            host.outcome.as_str()
        ));
        for line in host.notes.iter().flatten() {
            text.push_str(&format!("  {}\n", escape_line(line)));
        }
        for line in host.step_lines() {
            text.push_str(&format!("  - {}\n", escape_line(line)));
        }
        if let Some(difference) = host.diff() {
            for line in render_diff(difference, 20) {
                text.push_str(&format!("  diff: {line}\n"));
            }
        }
        if let Some(error) = &host.error
            && host.outcome == Outcome::Failed
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HostResult, render_table};

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
