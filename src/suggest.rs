//! "Did you mean": the closest known name to a mistyped one (services, hosts, tags), for the
//! error that refuses the unknown name. Pure.
//!
//! A candidate is suggested when its edit distance (insertions, deletions, substitutions and
//! swaps of two neighbouring characters, compared case-insensitively) is at most a third of the
//! typed name's length (at least 1, at most 3), or when one name is the other with a prefix or
//! suffix dropped (`web` for `web1`); the closest wins, ties in the order given.

/// The closest of `candidates` to `typed`, when one is close enough.
pub fn closest<'a, I>(typed: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let typed_lower = typed.to_lowercase();
    let allowed = (typed.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        if candidate == typed {
            continue;
        }
        let lower = candidate.to_lowercase();
        if lower == typed_lower {
            return Some(candidate);
        }
        let distance = distance(&typed_lower, &lower);
        let affix = typed_lower.len() >= 3
            && lower.len() >= 3
            && (lower.starts_with(&typed_lower) || typed_lower.starts_with(&lower))
            && lower.len().abs_diff(typed_lower.len()) <= 3;
        if (distance == 0 || distance > allowed) && !affix {
            continue;
        }
        if best.is_none_or(|(shortest, _)| distance < shortest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// ` (did you mean `NAME`?)` for the closest candidate, or nothing.
pub fn hint<'a, I>(typed: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(typed, candidates)
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default()
}

/// Optimal string alignment distance over characters.
fn distance(left: &str, right: &str) -> usize {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    let width = right.len() + 1;
    let mut rows = vec![0usize; (left.len() + 1) * width];
    let at = |row: usize, column: usize| row * width + column;
    for row in 0..=left.len() {
        rows[at(row, 0)] = row;
    }
    for column in 0..=right.len() {
        rows[at(0, column)] = column;
    }
    for row in 1..=left.len() {
        for column in 1..=right.len() {
            let cost = usize::from(left[row - 1] != right[column - 1]);
            let mut best = (rows[at(row - 1, column)] + 1)
                .min(rows[at(row, column - 1)] + 1)
                .min(rows[at(row - 1, column - 1)] + cost);
            if row > 1
                && column > 1
                && left[row - 1] == right[column - 2]
                && left[row - 2] == right[column - 1]
            {
                best = best.min(rows[at(row - 2, column - 2)] + 1);
            }
            rows[at(row, column)] = best;
        }
    }
    rows[at(left.len(), right.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("myapp", "myapp"), 0);
        assert_eq!(distance("myap", "myapp"), 1);
        assert_eq!(distance("mpyapp", "myapp"), 1);
        assert_eq!(distance("maypp", "myapp"), 1);
        assert_eq!(distance("web9", "web1"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_the_closest_known_name() {
        let names = ["web1", "web2", "db1", "eu"];
        assert_eq!(closest("wbe1", names), Some("web1"));
        assert_eq!(closest("web3", names), Some("web1"));
        assert_eq!(closest("WEB2", names), Some("web2"));
        assert_eq!(closest("db", names), Some("db1"));
        assert_eq!(closest("web", names), Some("web1"));
        assert_eq!(closest("cache", names), None);
        assert_eq!(
            closest("web1", ["web1"]),
            None,
            "an exact name is not a typo"
        );
        assert_eq!(closest("x", ["y"]), Some("y"));
        assert_eq!(closest("x", ["yz"]), None);
        assert_eq!(closest("myapq", ["api", "myapp"]), Some("myapp"));
    }

    #[test]
    fn hints_are_empty_without_a_close_name() {
        assert_eq!(hint("myap", ["myapp"]), " (did you mean `myapp`?)");
        assert_eq!(hint("zzzzzz", ["myapp"]), "");
        assert_eq!(hint("anything", std::iter::empty()), "");
    }
}
