//! Host selection: which hosts a `--hosts` selection (SPEC §1) names (names, tags, globs, `!x`,
//! `a:&b`: see `selector`), always in inventory order.

use super::location::shown;
use super::model::Inventory;
use super::selector::{Selector, combine};

impl Inventory {
    /// Resolves a `--hosts` selection to host indexes, in inventory order. `None` selects every
    /// host.
    pub fn select_hosts(&self, selection: Option<&str>) -> Result<Vec<usize>, String> {
        let Some(selection) = selection else {
            if self.hosts.is_empty() {
                return Err(format!("{} defines no hosts", self.file.display()));
            }
            return Ok((0..self.hosts.len()).collect());
        };
        let empty = || format!("the host selection `{}` selects no hosts", shown(selection));
        if selection.split(',').all(|term| term.trim().is_empty()) {
            return Err(empty());
        }
        let in_file = |message: String| format!("{message} in {}", self.file.display());
        let matched = Selector::parse(selection)
            .map_err(in_file)?
            .matched(&self.hosts)
            .map_err(in_file)?;
        let indexes = combine(&[matched], self.hosts.len());
        if indexes.is_empty() {
            return Err(empty());
        }
        Ok(indexes)
    }
}
