//! The `status` roll-up: per service, how many hosts run each live release ("v6: 12 hosts; v5: 1
//! (web7)"), in the text view and as `rollup` in the JSON document.

use serde::Serialize;

use super::result::HostResult;

/// Host names listed for a version before the rest is counted only.
const NAMES_SHOWN: usize = 5;

/// One service's roll-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRollup {
    pub service: String,
    /// Most hosts first; ties in order of first appearance. `live` is null for hosts with no
    /// live release, and `"unreachable"` groups are kept apart (`reachable: false`).
    pub versions: Vec<VersionCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    pub live: Option<String>,
    pub reachable: bool,
    pub count: usize,
    pub hosts: Vec<String>,
}

/// Groups `status` host lines by service and live release.
pub fn rollup(hosts: &[HostResult]) -> Vec<ServiceRollup> {
    let mut services: Vec<ServiceRollup> = Vec::new();
    for host in hosts {
        let Some(view) = host.status() else { continue };
        let name = host.service.clone().unwrap_or_default();
        let index = match services.iter().position(|service| service.service == name) {
            Some(index) => index,
            None => {
                services.push(ServiceRollup {
                    service: name,
                    versions: Vec::new(),
                });
                services.len() - 1
            }
        };
        let versions = &mut services[index].versions;
        match versions
            .iter_mut()
            .find(|count| count.live == view.live && count.reachable == view.reachable)
        {
            Some(count) => {
                count.count += 1;
                count.hosts.push(host.host.clone());
            }
            None => versions.push(VersionCount {
                live: view.live.clone(),
                reachable: view.reachable,
                count: 1,
                hosts: vec![host.host.clone()],
            }),
        }
    }
    for service in &mut services {
        // Stable: ties keep their first-seen order.
        service
            .versions
            .sort_by_key(|count| std::cmp::Reverse(count.count));
    }
    services
}

/// `myapp: v6: 12 hosts; v5: 1 (web7); unreachable: 1 (web9)`: the largest group is counted,
/// the others name their hosts.
pub fn rollup_line(service: &ServiceRollup) -> String {
    let parts: Vec<String> = service
        .versions
        .iter()
        .enumerate()
        .map(|(index, count)| {
            let label = match (&count.live, count.reachable) {
                (_, false) => "unreachable".to_string(),
                (Some(live), true) => live.clone(),
                (None, true) => "no release".to_string(),
            };
            let noun = if count.count == 1 { "host" } else { "hosts" };
            if index == 0 && service.versions.len() > 1 && count.count > NAMES_SHOWN {
                format!("{label}: {} {noun}", count.count)
            } else {
                let mut names = count.hosts[..count.hosts.len().min(NAMES_SHOWN)].join(", ");
                if count.hosts.len() > NAMES_SHOWN {
                    names.push_str(&format!(", +{}", count.hosts.len() - NAMES_SHOWN));
                }
                format!("{label}: {} {noun} ({names})", count.count)
            }
        })
        .collect();
    format!("{}: {}", service.service, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Detail, Outcome, StatusView};

    fn host(name: &str, live: Option<&str>, reachable: bool) -> HostResult {
        let mut result = HostResult::new(Some("myapp"), name, Outcome::Ok);
        result.detail = Some(Detail::Status {
            view: StatusView {
                reachable,
                live: live.map(str::to_string),
                previous: None,
                releases: Vec::new(),
                lock: None,
                freeze: None,
                went_live: None,
            },
            drift: None,
        });
        result
    }

    #[test]
    fn the_largest_group_is_counted_and_the_others_named() {
        let mut hosts: Vec<HostResult> = (1..=12)
            .map(|index| host(&format!("web{index:02}"), Some("v6"), true))
            .collect();
        hosts.insert(6, host("web7", Some("v5"), true));
        hosts.push(host("web99", None, false));
        let rolled = rollup(&hosts);
        assert_eq!(rolled.len(), 1);
        assert_eq!(
            rollup_line(&rolled[0]),
            "myapp: v6: 12 hosts; v5: 1 host (web7); unreachable: 1 host (web99)"
        );
    }

    #[test]
    fn small_fleets_name_every_host() {
        let hosts = vec![
            host("web1", Some("v2"), true),
            host("web2", Some("v2"), true),
            host("web3", None, true),
        ];
        assert_eq!(
            rollup_line(&rollup(&hosts)[0]),
            "myapp: v2: 2 hosts (web1, web2); no release: 1 host (web3)"
        );
    }
}
