//! Host selection: which hosts a `--hosts` selection (SPEC §1) or a service's `hosts` names,
//! by host name or tag, always in inventory order.

use super::location::shown;
use super::model::{Host, Inventory};

impl Inventory {
    /// Resolves a `--hosts` selection (comma-separated host names and/or tags) to host indexes:
    /// the union, in inventory order. `None` selects every host.
    pub fn select_hosts(&self, selection: Option<&str>) -> Result<Vec<usize>, String> {
        let Some(selection) = selection else {
            if self.hosts.is_empty() {
                return Err(format!("{} defines no hosts", self.file.display()));
            }
            return Ok((0..self.hosts.len()).collect());
        };
        let mut selected = vec![false; self.hosts.len()];
        for selector in selection
            .split(',')
            .map(str::trim)
            .filter(|selector| !selector.is_empty())
        {
            let matched = hosts_matching(&self.hosts, selector).ok_or_else(|| {
                format!(
                    "no host or tag named `{}` in {}",
                    shown(selector),
                    self.file.display()
                )
            })?;
            for index in matched {
                selected[index] = true;
            }
        }
        let indexes: Vec<usize> = (0..selected.len())
            .filter(|index| selected[*index])
            .collect();
        if indexes.is_empty() {
            return Err(format!(
                "the host selection `{}` selects no hosts",
                shown(selection)
            ));
        }
        Ok(indexes)
    }
}

/// Host indexes matched by one selector (a host name or a tag), or `None` if it names neither.
pub(super) fn hosts_matching(hosts: &[Host], selector: &str) -> Option<Vec<usize>> {
    let matched: Vec<usize> = hosts
        .iter()
        .enumerate()
        .filter(|(_, host)| host.name == selector || host.tags.iter().any(|tag| tag == selector))
        .map(|(index, _)| index)
        .collect();
    (!matched.is_empty()).then_some(matched)
}
