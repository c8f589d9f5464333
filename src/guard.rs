//! The downgrade guard (SPEC §4 step 1): whether a push would move a host back to a release
//! that went live there before, judged only from the host's own release log (`Facts::log`,
//! `.deploy/releases.log`, the record that also orders rollbacks). Pure.
//!
//! The rule: pushing V to a host whose live release is L is a downgrade when V went live on
//! that host by a push before L last went live by a push. Rollbacks and switch-backs do not
//! make a release newer, so going forward again after a rollback (or re-running a push whose
//! health check failed and was switched back) is not a downgrade; a stale inventory `version`
//! naming a release pushed long before the live one is.

use crate::inventory::Version;
use crate::remote::state::{Facts, LogAction};

/// A push that would be a downgrade on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downgrade {
    /// The release the push would make live.
    pub version: Version,
    /// When it last went live there by a push (unix seconds, from the host's log).
    pub went_live: u64,
    /// The live release, and when it went live by a push.
    pub live: Version,
    pub live_since: u64,
}

impl Downgrade {
    /// `v1 went live here at TIME, before the live v6 (pushed at TIME)`.
    pub fn describe(&self) -> String {
        let time = |seconds: u64| {
            crate::text::rfc3339_of_unix(seconds).unwrap_or_else(|| format!("{seconds} (unix)"))
        };
        format!(
            "{} went live here at {}, before the live {} (pushed at {}): a downgrade",
            self.version,
            time(self.went_live),
            self.live,
            time(self.live_since)
        )
    }
}

/// Whether pushing `version` to the host of `facts` is a downgrade (see the module header).
pub fn downgrade(facts: &Facts, version: &Version) -> Option<Downgrade> {
    let live = facts.live()?;
    if live == version {
        return None;
    }
    let pushed = |wanted: &Version, before: usize| {
        facts.log[..before]
            .iter()
            .rposition(|entry| entry.action == LogAction::Push && &entry.to == wanted)
    };
    let live_position = pushed(live, facts.log.len())?;
    let position = pushed(version, live_position)?;
    Some(Downgrade {
        version: version.clone(),
        went_live: facts.log[position].time,
        live: live.clone(),
        live_since: facts.log[live_position].time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::state;

    fn version(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    /// Facts of a host whose live release is `live`, with every release of the log complete.
    fn host(live: &str, log: &[&str]) -> Facts {
        let mut text = format!("base present\ncurrent releases/{live}\n");
        let mut seen = std::collections::BTreeSet::new();
        for line in log {
            let to = line.rsplit(' ').next().unwrap_or_default();
            if seen.insert(to.to_string()) {
                text.push_str(&format!("release {to} {}\n", "a".repeat(64)));
            }
            text.push_str(&format!("log {line}\n"));
        }
        state::parse(&text).expect("facts parse")
    }

    const SIX_PUSHES: [&str; 6] = [
        "100 push - v1",
        "200 push v1 v2",
        "300 push v2 v3",
        "400 push v3 v4",
        "500 push v4 v5",
        "600 push v5 v6",
    ];

    #[test]
    fn a_release_pushed_before_the_live_one_is_a_downgrade() {
        let facts = host("v6", &SIX_PUSHES);
        let found = downgrade(&facts, &version("v1")).expect("a downgrade");
        assert_eq!(
            found,
            Downgrade {
                version: version("v1"),
                went_live: 100,
                live: version("v6"),
                live_since: 600,
            }
        );
        assert_eq!(
            found.describe(),
            "v1 went live here at 1970-01-01T00:01:40Z, before the live v6 (pushed at \
             1970-01-01T00:10:00Z): a downgrade"
        );
        assert!(downgrade(&facts, &version("v5")).is_some());
    }

    #[test]
    fn new_live_and_unknown_releases_are_not_downgrades() {
        let facts = host("v6", &SIX_PUSHES);
        assert_eq!(downgrade(&facts, &version("v7")), None);
        assert_eq!(downgrade(&facts, &version("v6")), None, "unchanged");
        let fresh = state::parse("base absent\n").expect("facts parse");
        assert_eq!(downgrade(&fresh, &version("v1")), None);
        // Staged but never live.
        let staged = host("v1", &["100 push - v1", "150 stage v1 v2"]);
        assert_eq!(downgrade(&staged, &version("v2")), None);
    }

    #[test]
    fn going_forward_again_after_a_rollback_or_a_switch_back_is_not_a_downgrade() {
        // v3 -> v4 failed its health check and was switched back: re-running the push is safe.
        let switched_back = host(
            "v3",
            &[
                "100 push - v2",
                "200 push v2 v3",
                "300 push v3 v4",
                "301 rollback v4 v3",
            ],
        );
        assert_eq!(downgrade(&switched_back, &version("v4")), None);
        // ...but v2, pushed before v3, is.
        assert!(downgrade(&switched_back, &version("v2")).is_some());
        // A deliberate downgrade (allowed) makes the older release the reference.
        let downgraded = host("v1", &["100 push - v1", "200 push v1 v2", "300 push v2 v1"]);
        let found = downgrade(&downgraded, &version("v2")).expect("v2 went live before v1");
        assert_eq!((found.went_live, found.live_since), (200, 300));
    }
}
