//! What went wrong in a run, said once: the lines under the summary table that group hosts
//! instead of repeating them. A fleet rollback is one line naming the host(s) that caused it
//! and the hosts switched back; hosts that share an error (its first line) and outcome are one
//! line (`37 hosts failed: connect: connection refused (web1-web37)`); host lists are compact
//! (`web1, web3-web12`). Pure: results in, text lines out.

use super::result::{HostResult, Landing, Outcome};

/// At most this many names (or ranges) in a host list; the rest are counted.
const LISTED: usize = 8;

/// A host as lists name it: `web1`, or `web1/app` when the run has several services.
fn name(host: &HostResult, with_service: bool) -> String {
    match (&host.service, with_service) {
        (Some(service), true) => format!("{}/{service}", host.host),
        _ => host.host.clone(),
    }
}

/// The first line of a host's error (what grouping compares).
pub fn first_line(error: &str) -> &str {
    error.lines().next().unwrap_or("")
}

/// The lines under the table: one per fleet rollback (per service), then one per group of at
/// least two hosts that ended with the same outcome and error. A host alone with its error is
/// not repeated: its row says it.
pub fn problem_lines(hosts: &[HostResult]) -> Vec<String> {
    let services: Vec<Option<&str>> = {
        let mut services: Vec<Option<&str>> =
            hosts.iter().map(|host| host.service.as_deref()).collect();
        services.dedup();
        services
    };
    let with_service = {
        let mut distinct = services.clone();
        distinct.sort();
        distinct.dedup();
        distinct.len() > 1
    };
    let mut lines = Vec::new();
    for service in &services {
        let of_service = || {
            hosts
                .iter()
                .filter(move |host| host.service.as_deref() == *service)
        };
        let rolled: Vec<String> = of_service()
            .filter(|host| host.landing == Landing::FleetRollback)
            .map(|host| name(host, with_service))
            .collect();
        if rolled.is_empty() {
            continue;
        }
        let culprits: Vec<&HostResult> = of_service()
            .filter(|host| host.outcome == Outcome::Failed)
            .collect();
        let cause = match culprits.as_slice() {
            [] => "hosts failed".to_string(),
            [one] => format!(
                "{} failed ({})",
                name(one, with_service),
                first_line(one.error.as_deref().unwrap_or("no error recorded"))
            ),
            many => format!(
                "{} hosts failed ({})",
                many.len(),
                compact(
                    &many
                        .iter()
                        .map(|host| name(host, with_service))
                        .collect::<Vec<_>>()
                )
            ),
        };
        lines.push(format!(
            "fleet rollback: {cause}, so {} switched back: {}",
            count(rolled.len(), "host was", "hosts were"),
            compact(&rolled)
        ));
    }
    // Groups by outcome and cause, in the order they first appear. The cause is the error's
    // first line; lines that differ only in the middle (a host's own address in
    // `connect: cannot connect to 10.0.0.7:22: Connection refused`) share their step and their
    // last part, and the group shows just those (`connect: Connection refused`).
    struct Group<'a> {
        outcome: Outcome,
        key: (&'a str, &'a str),
        line: &'a str,
        same: bool,
        names: Vec<String>,
    }
    let mut groups: Vec<Group> = Vec::new();
    for host in hosts {
        let Some(error) = &host.error else { continue };
        if matches!(
            host.outcome,
            Outcome::Ok | Outcome::Unchanged | Outcome::Planned
        ) || host.landing == Landing::FleetRollback
        {
            continue;
        }
        let line = first_line(error);
        let key = cause(line);
        match groups
            .iter_mut()
            .find(|group| group.outcome == host.outcome && group.key == key)
        {
            Some(group) => {
                group.same &= group.line == line;
                group.names.push(name(host, with_service));
            }
            None => groups.push(Group {
                outcome: host.outcome,
                key,
                line,
                same: true,
                names: vec![name(host, with_service)],
            }),
        }
    }
    for group in groups {
        if group.names.len() < 2 {
            continue;
        }
        let error = if group.same {
            group.line.to_string()
        } else {
            format!("{}: {}", group.key.0, group.key.1)
        };
        lines.push(format!(
            "{} hosts {}: {error} ({})",
            group.names.len(),
            outcome_words(group.outcome),
            compact(&group.names)
        ));
    }
    lines
}

/// An error line's step (before the first `: `) and its last part (after the last `: `).
fn cause(line: &str) -> (&str, &str) {
    match (line.split_once(": "), line.rsplit_once(": ")) {
        (Some((step, _)), Some((_, last))) => (step, last),
        _ => (line, line),
    }
}

/// `rolled_back` as prose.
pub fn outcome_words(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::RolledBack => "rolled back",
        other => other.as_str(),
    }
}

fn count(number: usize, one: &str, many: &str) -> String {
    if number == 1 {
        format!("1 {one}")
    } else {
        format!("{number} {many}")
    }
}

/// Splits `web12` into (`web`, 12, width): the width is the digits written when the number is
/// zero-padded (`web08`: 2), 0 when it is not; names without a trailing number give none.
fn numbered(name: &str) -> Option<(&str, u64, usize)> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 18 {
        return None;
    }
    let (prefix, number) = name.split_at(name.len() - digits);
    let padded = number.len() > 1 && number.starts_with('0');
    Some((
        prefix,
        number.parse().ok()?,
        if padded { digits } else { 0 },
    ))
}

/// Names in their order, runs of three or more consecutive numbers with the same prefix
/// written as ranges (`web3-web12`), at most `LISTED` items then `and N more`.
pub fn compact(names: &[String]) -> String {
    // (text, how many names it stands for)
    let mut items: Vec<(String, usize)> = Vec::new();
    let mut index = 0;
    while index < names.len() {
        let mut end = index;
        if let Some((prefix, start, width)) = numbered(&names[index]) {
            while let Some(next) = names.get(end + 1) {
                match numbered(next) {
                    Some((next_prefix, number, next_width))
                        if next_prefix == prefix
                            && next_width == width
                            && number == start + (end + 1 - index) as u64 =>
                    {
                        end += 1
                    }
                    _ => break,
                }
            }
        }
        if end - index >= 2 {
            items.push((format!("{}-{}", names[index], names[end]), end - index + 1));
        } else {
            end = index;
            items.push((names[index].clone(), 1));
        }
        index = end + 1;
    }
    let shown: Vec<&str> = items
        .iter()
        .take(LISTED)
        .map(|(text, _)| text.as_str())
        .collect();
    let hidden: usize = items.iter().skip(LISTED).map(|(_, count)| count).sum();
    if hidden == 0 {
        shown.join(", ")
    } else {
        format!("{}, and {hidden} more", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn host_lists_are_compact() {
        assert_eq!(compact(&names(&["web1"])), "web1");
        assert_eq!(compact(&names(&["web1", "web2"])), "web1, web2");
        assert_eq!(
            compact(&names(&["web1", "web3", "web4", "web5", "db1"])),
            "web1, web3-web5, db1"
        );
        assert_eq!(compact(&names(&["web8", "web9", "web10"])), "web8-web10");
        // Zero-padded numbers make a range only with the same padding.
        assert_eq!(
            compact(&names(&["web07", "web08", "web09", "web10", "web11"])),
            "web07-web09, web10, web11"
        );
        let many: Vec<String> = (1..=20).map(|n| format!("h{}", n * 2)).collect();
        assert_eq!(
            compact(&many),
            "h2, h4, h6, h8, h10, h12, h14, h16, and 12 more"
        );
        let ranges: Vec<String> = ["a1", "a2", "a3"]
            .iter()
            .map(|name| name.to_string())
            .chain((1..=9).map(|n| format!("x{}", n * 2)))
            .chain((1..=5).map(|n| format!("z{n}")))
            .collect();
        assert_eq!(
            compact(&ranges),
            "a1-a3, x2, x4, x6, x8, x10, x12, x14, and 7 more"
        );
    }

    fn host(name: &str, outcome: Outcome, error: Option<&str>) -> HostResult {
        let mut host = HostResult::new(Some("app"), name, outcome);
        host.from = Some("v3".to_string());
        host.to = Some("v4".to_string());
        host.error = error.map(str::to_string);
        host
    }

    #[test]
    fn a_fleet_rollback_is_one_line_naming_its_cause() {
        let mut hosts: Vec<HostResult> = (1..=12)
            .map(|n| {
                let mut host = host(
                    &format!("web{n}"),
                    Outcome::RolledBack,
                    Some("switched back: 1 of 12 hosts failed (max_failures allows 0): web2"),
                );
                host.landing = Landing::FleetRollback;
                host
            })
            .collect();
        hosts[1] = host(
            "web2",
            Outcome::Failed,
            Some("health: failed 3 of 3 attempts: exit status 1; switched back to v3\nmore"),
        );
        hosts[1].landing = Landing::SwitchedBack;
        assert_eq!(
            problem_lines(&hosts),
            vec![
                "fleet rollback: web2 failed (health: failed 3 of 3 attempts: exit status 1; \
                 switched back to v3), so 11 hosts were switched back: web1, web3-web12"
            ]
        );
    }

    #[test]
    fn identical_errors_are_one_line_and_single_ones_stay_in_their_row() {
        let mut hosts: Vec<HostResult> = (1..=37)
            .map(|n| {
                host(
                    &format!("web{n}"),
                    Outcome::Failed,
                    Some(&format!(
                        "connect: cannot connect to 10.0.0.{n}:22: connection refused"
                    )),
                )
            })
            .collect();
        hosts.push(host("db1", Outcome::Failed, Some("lock: held by alice")));
        hosts.push(host("db2", Outcome::Skipped, Some("start: interrupted")));
        hosts.push(host("db3", Outcome::Skipped, Some("start: interrupted")));
        hosts.push(host("db4", Outcome::Ok, None));
        assert_eq!(
            problem_lines(&hosts),
            vec![
                "37 hosts failed: connect: connection refused (web1-web37)",
                "2 hosts skipped: start: interrupted (db2, db3)",
            ]
        );
    }
}
