//! The text view of `deploy exec` and `deploy run`: hosts whose output and exit code are the
//! same are printed once under their names (like `pssh -i` or Ansible's ad-hoc mode), then a
//! count line. Host output is escaped for the terminal.

use super::result::{Detail, HostResult, Outcome, RunResult};
use crate::remote::exec::{ExecOutput, group_outputs};
use crate::text::escape_for_terminal;

pub fn render_exec(result: &RunResult) -> String {
    let outputs: Vec<(String, &ExecOutput)> = result
        .hosts
        .iter()
        .filter_map(|host| match &host.detail {
            Some(Detail::Exec { output }) => Some((label(host), output)),
            _ => None,
        })
        .collect();
    let borrowed: Vec<(&str, &ExecOutput)> = outputs
        .iter()
        .map(|(label, output)| (label.as_str(), *output))
        .collect();
    let mut text = String::new();
    for (labels, output) in group_outputs(&borrowed) {
        let status = match (output.exit_code, &output.problem) {
            (Some(0), _) => "ok".to_string(),
            (_, Some(problem)) => format!("failed: {problem}"),
            (Some(code), None) => format!("exit {code}"),
            (None, None) => "failed".to_string(),
        };
        text.push_str(&format!(
            "== {} ({}) [{status}]\n",
            labels.join(", "),
            labels.len()
        ));
        for line in output.stdout.lines() {
            text.push_str(&format!("{}\n", escape_for_terminal(line)));
        }
        for line in output.stderr.lines() {
            text.push_str(&format!("stderr: {}\n", escape_for_terminal(line)));
        }
    }
    // Hosts that never ran the command (unreachable, interrupted).
    for host in &result.hosts {
        if !matches!(host.detail, Some(Detail::Exec { .. })) {
            text.push_str(&format!(
                "== {} [{}: {}]\n",
                label(host),
                host.outcome.as_str(),
                escape_for_terminal(host.error.as_deref().unwrap_or("did not run"))
            ));
        }
    }
    let failed = result
        .hosts
        .iter()
        .filter(|host| host.outcome != Outcome::Ok)
        .count();
    text.push_str(&format!(
        "{} hosts: {} ok, {failed} failed\n",
        result.hosts.len(),
        result.hosts.len() - failed
    ));
    text
}

fn label(host: &HostResult) -> String {
    host.host.clone()
}
