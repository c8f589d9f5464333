//! Variables and tasks of the inventory (SPEC §2): `[services.NAME.env]` and a host's `env`
//! (exported to hooks, health checks, tasks and exec; the host's value wins), and
//! `[services.NAME.tasks]` (`deploy run NAME`).
//!
//! Decisions: a variable name is a shell identifier (`[A-Za-z_][A-Za-z0-9_]*`) and may not start
//! with `DEPLOY_` (those are the tool's own). A hook that is exactly the name of one of the
//! service's tasks runs that task's command (`after_switch = ["restart"]`); any other hook text is
//! a shell command as before.

use std::collections::BTreeMap;

use toml::Spanned;

use super::location::{InventoryError, Parser, shown};
use super::values::{NAME_CHARACTERS, is_name};

/// Whether `name` can be exported by `sh` and is not one of the tool's own.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The service's variables with the host's on top (the host wins).
pub fn merged_env(
    service: &BTreeMap<String, String>,
    host: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = service.clone();
    merged.extend(
        host.iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    merged
}

impl Parser<'_> {
    pub(super) fn env(
        &self,
        raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
        key: &str,
    ) -> Result<BTreeMap<String, String>, InventoryError> {
        let mut env = BTreeMap::new();
        for (name, value) in raw.into_iter().flatten() {
            let name_key = format!("{key}.{}", shown(name.get_ref()));
            if !is_variable_name(name.get_ref()) {
                return Err(self.error_at(
                    &name.span(),
                    name_key,
                    format!(
                        "variable name `{}` must be a shell name: A-Z a-z 0-9 _, not starting with a digit",
                        shown(name.get_ref())
                    ),
                ));
            }
            if name.get_ref().starts_with("DEPLOY_") {
                return Err(self.error_at(
                    &name.span(),
                    name_key,
                    "variables starting with DEPLOY_ are set by deploy itself",
                ));
            }
            if value.get_ref().contains('\0') {
                return Err(self.error_at(&value.span(), name_key, "value must not contain NUL"));
            }
            env.insert(name.get_ref().clone(), value.get_ref().clone());
        }
        Ok(env)
    }

    pub(super) fn tasks(
        &self,
        raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
        key: &str,
    ) -> Result<BTreeMap<String, String>, InventoryError> {
        let mut tasks = BTreeMap::new();
        for (name, command) in raw.into_iter().flatten() {
            let task_key = format!("{key}.{}", shown(name.get_ref()));
            if !is_name(name.get_ref()) {
                return Err(self.error_at(
                    &name.span(),
                    task_key,
                    format!(
                        "task name `{}` may only contain {NAME_CHARACTERS}",
                        shown(name.get_ref())
                    ),
                ));
            }
            let command = self.command(command, &task_key)?;
            tasks.insert(name.get_ref().clone(), command);
        }
        Ok(tasks)
    }
}

/// Hooks that name a task run that task's command.
pub(super) fn resolve_task_names(hooks: &mut [String], tasks: &BTreeMap<String, String>) {
    for hook in hooks {
        if let Some(command) = tasks.get(hook.trim()) {
            *hook = command.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert!(is_variable_name("RAILS_ENV"));
        assert!(is_variable_name("_x1"));
        assert!(!is_variable_name("1X"));
        assert!(!is_variable_name("A-B"));
        assert!(!is_variable_name(""));
    }

    #[test]
    fn host_values_win() {
        let service = BTreeMap::from([
            ("A".to_string(), "service".to_string()),
            ("B".to_string(), "service".to_string()),
        ]);
        let host = BTreeMap::from([("B".to_string(), "host".to_string())]);
        let merged = merged_env(&service, &host);
        assert_eq!(merged["A"], "service");
        assert_eq!(merged["B"], "host");
    }

    #[test]
    fn hooks_naming_tasks_run_their_commands() {
        let tasks = BTreeMap::from([("restart".to_string(), "systemctl restart app".to_string())]);
        let mut hooks = vec!["restart".to_string(), "echo restart".to_string()];
        resolve_task_names(&mut hooks, &tasks);
        assert_eq!(hooks, ["systemctl restart app", "echo restart"]);
    }
}
