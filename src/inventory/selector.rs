//! Host selectors (SPEC §1), in `--hosts` and in a service's `hosts`: comma-separated terms,
//! each a host name, a tag or a glob (`web*`, `db-?`; `*` any run of characters, `?` one); their
//! union is selected. A term starting with `!` removes what it matches; `a:&b` keeps the hosts in
//! both a and b, `a:!b` those in a but not b (Ansible's spelling). A selection of only `!` terms
//! starts from every host (`!web3` is "every host but web3"). Every name, tag or glob must match
//! at least one host: a typo is an error, never an empty or silently smaller selection.

use super::location::shown;
use super::model::Host;

/// One parsed selector text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selector {
    include: Vec<Term>,
    exclude: Vec<Term>,
}

/// `a:&b:!c`: the first atom, narrowed by each next one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    first: String,
    rest: Vec<(Narrow, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Narrow {
    /// `:&x`
    Intersect,
    /// `:!x`
    Minus,
}

/// What one selector text matched: the hosts it adds (`None`: it has no positive term) and the
/// hosts it removes, as flags in inventory order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Matched {
    include: Option<Vec<bool>>,
    exclude: Vec<bool>,
}

impl Selector {
    pub(super) fn parse(text: &str) -> Result<Selector, String> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (negated, item) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            let mut parts = item.split(':');
            let first = atom(parts.next().unwrap_or(""), text)?;
            let mut rest = Vec::new();
            for part in parts {
                let narrow = if let Some(atom_text) = part.strip_prefix('&') {
                    (Narrow::Intersect, atom(atom_text, text)?)
                } else if let Some(atom_text) = part.strip_prefix('!') {
                    (Narrow::Minus, atom(atom_text, text)?)
                } else {
                    return Err(format!(
                        "selector `{}`: after `:` comes `&NAME` (intersection) or `!NAME` (minus), not `{}`",
                        shown(text),
                        shown(part)
                    ));
                };
                rest.push(narrow);
            }
            let term = Term { first, rest };
            if negated {
                exclude.push(term);
            } else {
                include.push(term);
            }
        }
        if include.is_empty() && exclude.is_empty() {
            return Err("the host selection is empty".to_string());
        }
        Ok(Selector { include, exclude })
    }

    /// The hosts each term matches; an atom that matches no host is an error naming it.
    pub(super) fn matched(&self, hosts: &[Host]) -> Result<Matched, String> {
        let union = |terms: &[Term]| -> Result<Vec<bool>, String> {
            let mut flags = vec![false; hosts.len()];
            for term in terms {
                for (index, flag) in term.matched(hosts)?.into_iter().enumerate() {
                    flags[index] |= flag;
                }
            }
            Ok(flags)
        };
        Ok(Matched {
            include: (!self.include.is_empty())
                .then(|| union(&self.include))
                .transpose()?,
            exclude: union(&self.exclude)?,
        })
    }
}

impl Term {
    fn matched(&self, hosts: &[Host]) -> Result<Vec<bool>, String> {
        let mut flags = atom_matches(hosts, &self.first)?;
        for (narrow, atom) in &self.rest {
            let other = atom_matches(hosts, atom)?;
            for (flag, other) in flags.iter_mut().zip(other) {
                *flag = match narrow {
                    Narrow::Intersect => *flag && other,
                    Narrow::Minus => *flag && !other,
                };
            }
        }
        Ok(flags)
    }
}

/// Host indexes, in inventory order, selected by several selector texts together (a service's
/// `hosts` list): the union of their positive terms (every host when none has one), minus every
/// `!` term.
pub(super) fn combine(matched: &[Matched], host_count: usize) -> Vec<usize> {
    let any_include = matched.iter().any(|one| one.include.is_some());
    (0..host_count)
        .filter(|&index| {
            let included = !any_include
                || matched
                    .iter()
                    .any(|one| one.include.as_ref().is_some_and(|flags| flags[index]));
            let excluded = matched.iter().any(|one| one.exclude[index]);
            included && !excluded
        })
        .collect()
}

fn atom(text: &str, selector: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "selector `{}` has an empty name after `!`, `:&` or `:!`",
            shown(selector)
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-*?".contains(*c)))
    {
        return Err(format!(
            "selector `{}` contains `{}`; names, tags and globs use A-Z a-z 0-9 . _ - * ?",
            shown(selector),
            bad.escape_debug()
        ));
    }
    Ok(text.to_string())
}

fn atom_matches(hosts: &[Host], atom: &str) -> Result<Vec<bool>, String> {
    let is_glob = atom.contains(['*', '?']);
    let flags: Vec<bool> = hosts
        .iter()
        .map(|host| {
            let matches = |word: &str| {
                if is_glob {
                    glob_matches(atom, word)
                } else {
                    atom == word
                }
            };
            matches(&host.name) || host.tags.iter().any(|tag| matches(tag))
        })
        .collect();
    if flags.iter().any(|flag| *flag) {
        Ok(flags)
    } else if is_glob {
        Err(format!("`{}` matches no host name or tag", shown(atom)))
    } else {
        let known = hosts
            .iter()
            .flat_map(|host| std::iter::once(&host.name).chain(host.tags.iter()))
            .map(String::as_str);
        Err(format!(
            "no host or tag named `{}`{}",
            shown(atom),
            crate::suggest::hint(atom, known)
        ))
    }
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself
/// (names and tags are ASCII: `text::wildcard_match` on their bytes).
pub(super) fn glob_matches(pattern: &str, text: &str) -> bool {
    crate::text::wildcard_match(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, tags: &[&str]) -> Host {
        Host {
            name: name.to_string(),
            address: "127.0.0.1".to_string(),
            port: 22,
            user: "deploy".to_string(),
            identity_files: Vec::new(),
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            host_key: None,
            reach: Default::default(),
            env: Default::default(),
        }
    }

    fn fleet() -> Vec<Host> {
        vec![
            host("web1", &["web", "eu"]),
            host("web2", &["web", "us"]),
            host("web3", &["web", "eu"]),
            host("db1", &["db", "eu"]),
        ]
    }

    fn select(text: &str) -> Result<Vec<String>, String> {
        let hosts = fleet();
        let matched = Selector::parse(text)?.matched(&hosts)?;
        Ok(combine(&[matched], hosts.len())
            .into_iter()
            .map(|index| hosts[index].name.clone())
            .collect())
    }

    #[test]
    fn unions_minus_intersections_and_globs() {
        assert_eq!(select("web1,db1").unwrap(), ["web1", "db1"]);
        assert_eq!(
            select("db1,web1").unwrap(),
            ["web1", "db1"],
            "inventory order"
        );
        assert_eq!(select("web,!web3").unwrap(), ["web1", "web2"]);
        assert_eq!(select("web:&eu").unwrap(), ["web1", "web3"]);
        assert_eq!(select("web:!eu").unwrap(), ["web2"]);
        assert_eq!(select("web*").unwrap(), ["web1", "web2", "web3"]);
        assert_eq!(select("w?b2").unwrap(), ["web2"]);
        assert_eq!(select("!web2").unwrap(), ["web1", "web3", "db1"]);
        assert_eq!(select("*:&eu,!db*").unwrap(), ["web1", "web3"]);
        assert_eq!(select(" web1 , web2 ").unwrap(), ["web1", "web2"]);
    }

    #[test]
    fn typos_and_bad_syntax_are_errors() {
        assert_eq!(
            select("web9").unwrap_err(),
            "no host or tag named `web9` (did you mean `web1`?)"
        );
        assert_eq!(select("cache").unwrap_err(), "no host or tag named `cache`");
        assert_eq!(
            select("cache*").unwrap_err(),
            "`cache*` matches no host name or tag"
        );
        assert!(select("web:eu").unwrap_err().contains("after `:`"));
        assert!(select("web:&").unwrap_err().contains("empty name"));
        assert!(select("!").unwrap_err().contains("empty name"));
        assert!(select("web;rm").unwrap_err().contains("contains `;`"));
        assert!(select(",").unwrap_err().contains("empty"));
    }

    #[test]
    fn an_empty_result_is_possible_and_left_to_the_caller() {
        assert_eq!(select("web1:&db").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("web*", "web"));
        assert!(glob_matches("*b*", "web12"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
        assert!(!glob_matches("web?", "web"));
        assert!(glob_matches("w*1?", "web12"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn host(name: String, tags: Vec<String>) -> Host {
        Host {
            name,
            address: "127.0.0.1".to_string(),
            port: 22,
            user: "deploy".to_string(),
            identity_files: Vec::new(),
            tags,
            host_key: None,
            reach: Default::default(),
            env: Default::default(),
        }
    }

    proptest! {
        /// Any selector text: parsed or refused, never a panic; what it selects is in
        /// inventory order, without duplicates, and never contains a host a `!` term names.
        #[test]
        fn any_selector_selects_in_order_or_is_refused(
            text in "[a-c*?!:&, ]{0,16}|\\PC{0,16}",
            names in proptest::collection::vec("[a-c]{1,2}", 1..6),
        ) {
            let hosts: Vec<Host> = names
                .iter()
                .enumerate()
                .map(|(index, name)| host(format!("{name}{index}"), vec![name.clone()]))
                .collect();
            if let Ok(selector) = Selector::parse(&text)
                && let Ok(matched) = selector.matched(&hosts)
            {
                let selected = combine(std::slice::from_ref(&matched), hosts.len());
                prop_assert!(selected.windows(2).all(|pair| pair[0] < pair[1]));
                for index in &selected {
                    prop_assert!(!matched.exclude[*index]);
                }
            }
        }

        /// A glob of the exact name matches it; `*` matches everything.
        #[test]
        fn globs_match_themselves_and_star_matches_all(text in "[a-z0-9.-]{0,12}") {
            prop_assert!(glob_matches(&text, &text));
            prop_assert!(glob_matches("*", &text));
            let prefix: String = text.chars().take(2).collect();
            let pattern = format!("{prefix}*");
            prop_assert!(glob_matches(&pattern, &text));
        }
    }
}
