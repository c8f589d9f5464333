//! Diff views: the text lines of one file-level difference (counts, then paths), used by the
//! plan and status views and by the workers' one-line summaries, and the text view of
//! `deploy diff`.

use super::result::RunResult;

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

/// The text view of `diff`: per host, the counts and the paths (long lists cut with a count).
pub fn render_diff_view(result: &RunResult) -> String {
    let mut text = String::new();
    for host in &result.hosts {
        let service = host.service.as_deref().unwrap_or("");
        match (host.diff(), &host.error) {
            (Some(difference), _) => {
                let lines = render_diff(difference, 20);
                text.push_str(&format!(
                    "{} ({service}): {} -> {}: {}\n",
                    host.host,
                    host.from.as_deref().unwrap_or(""),
                    host.to.as_deref().unwrap_or(""),
                    lines[0]
                ));
                for line in &lines[1..] {
                    text.push_str(&format!("  {line}\n"));
                }
            }
            (None, Some(error)) => text.push_str(&format!(
                "{} ({service}): error: {}\n",
                host.host,
                crate::text::escape_for_terminal(error)
            )),
            (None, None) => {}
        }
    }
    text
}
