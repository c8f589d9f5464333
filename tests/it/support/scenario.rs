//! [`Scenario`]: a fleet with its inventory, and everything a test does to it by name: push a
//! release, run a command, look at what is live. A new scenario takes a few lines:
//!
//! ```ignore
//! let app = Scenario::new(3)
//!     .deploy_table("on_failure = \"continue\"")
//!     .service("[services.app.hooks]\nbefore_switch = [\"test $DEPLOY_HOST != web2\"]");
//! app.push("v1", &[("index.html", "one")]).expect_code(1);
//! assert_eq!(app.lives(), [Some("v1".into()), None, Some("v1".into())]);
//! ```
//!
//! The inventory is the fleet's `[ssh]` table and hosts, then [`Scenario::toml`], then
//! `[deploy]` with [`Scenario::deploy_table`], then `[services.app]` with `base_dir = "app"`
//! and [`Scenario::service`] (which may go on with sub-tables: `[services.app.hooks]`...). Each
//! of these replaces what it set before and rewrites `<fleet dir>/deploy.toml`.
//!
//! Every command runs with `-i deploy.toml --no-progress`; JSON output unless the method says
//! `text`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::runs::push_args;
use super::{
    Background, Fleet, Ran, TestHost, history_records, json_command, live_release, path_str, read,
    run, spawn_command, tarball, tree_snapshot,
};

/// The service every scenario defines.
pub const SERVICE: &str = "app";

pub struct Scenario {
    fleet: Fleet,
    toml: String,
    deploy_table: String,
    service: String,
    envs: Vec<(String, String)>,
    inventory: PathBuf,
    /// Versions built by [`Scenario::versioned_artifact`]: their `version.txt` must be there.
    versioned: RefCell<BTreeSet<String>>,
}

impl Scenario {
    /// Starts a fleet of `hosts` hosts (`web1`..) and writes an inventory with the service
    /// `app` (`base_dir = "app"`) on every host.
    pub fn new(hosts: usize) -> Scenario {
        Scenario::on(Fleet::start(hosts))
    }

    /// A scenario on a fleet already started.
    pub fn on(fleet: Fleet) -> Scenario {
        let inventory = fleet.dir().join("deploy.toml");
        let scenario = Scenario {
            fleet,
            toml: String::new(),
            deploy_table: String::new(),
            service: String::new(),
            envs: Vec::new(),
            inventory,
            versioned: RefCell::new(BTreeSet::new()),
        };
        scenario.write_inventory();
        scenario
    }

    // -----------------------------------------------------------------------------------------
    // The inventory and the environment

    /// Lines of `[services.app]` after `base_dir = "app"`.
    pub fn service(mut self, lines: &str) -> Scenario {
        self.service = with_newline(lines);
        self.write_inventory();
        self
    }

    /// The `[deploy]` table's lines (no table when empty).
    pub fn deploy_table(mut self, lines: &str) -> Scenario {
        self.deploy_table = with_newline(lines);
        self.write_inventory();
        self
    }

    /// TOML placed before `[deploy]` and the service: `[notify]`, more `[[hosts]]`...
    pub fn toml(mut self, text: &str) -> Scenario {
        self.toml = text.to_string();
        self.write_inventory();
        self
    }

    /// `name=value` in the environment of every `deploy` run.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Scenario {
        let value = value.as_ref().to_string_lossy().into_owned();
        self.envs.push((name.to_string(), value));
        self
    }

    /// The inventory's text, as written to [`Scenario::inventory`].
    pub fn inventory_text(&self) -> String {
        let mut rest = self.toml.clone();
        if !self.deploy_table.is_empty() {
            rest.push_str(&format!("[deploy]\n{}\n", self.deploy_table));
        }
        rest.push_str(&format!(
            "[services.{SERVICE}]\nbase_dir = \"{SERVICE}\"\n{}",
            self.service
        ));
        self.fleet.inventory_text(&rest)
    }

    fn write_inventory(&self) {
        std::fs::write(&self.inventory, self.inventory_text()).unwrap_or_else(|error| {
            panic!("could not write {}: {error}", self.inventory.display())
        });
    }

    pub fn inventory(&self) -> &Path {
        &self.inventory
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub fn fleet_mut(&mut self) -> &mut Fleet {
        &mut self.fleet
    }

    /// Host `index`, 0-based: `host(0)` is `web1`.
    pub fn host(&self, index: usize) -> &TestHost {
        self.fleet.host(index)
    }

    pub fn hosts(&self) -> &[TestHost] {
        self.fleet.hosts()
    }

    /// The fleet's directory (artifacts are built there).
    pub fn dir(&self) -> &Path {
        self.fleet.dir()
    }

    // -----------------------------------------------------------------------------------------
    // Artifacts and runs

    /// `<dir>/<version>.tar.gz` holding `files`.
    pub fn artifact(&self, version: &str, files: &[(&str, &str)]) -> PathBuf {
        tarball(self.dir(), version, files)
    }

    /// Pushes `version` as an artifact holding `files`.
    pub fn push(&self, version: &str, files: &[(&str, &str)]) -> Ran {
        self.push_artifact(version, &self.artifact(version, files), &[])
    }

    /// `<dir>/<version>.tar.gz` holding only `version.txt` (= the version): wherever it goes
    /// live, [`Scenario::live`] checks the file says so.
    pub fn versioned_artifact(&self, version: &str) -> PathBuf {
        self.versioned.borrow_mut().insert(version.to_string());
        self.artifact(version, &[("version.txt", version)])
    }

    /// Pushes `version` as [`Scenario::versioned_artifact`].
    pub fn push_version(&self, version: &str) -> Ran {
        self.push_artifact(version, &self.versioned_artifact(version), &[])
    }

    /// `push --version VERSION --artifact ARTIFACT EXTRA`.
    pub fn push_artifact(&self, version: &str, artifact: &Path, extra: &[&str]) -> Ran {
        let mut args = push_args(version, artifact).to_vec();
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// `deploy -i INVENTORY --output json --no-progress ARGS`.
    pub fn json(&self, args: &[&str]) -> Ran {
        run(self.json_command().args(args))
    }

    /// `deploy -i INVENTORY --no-progress ARGS`, text output.
    pub fn text(&self, args: &[&str]) -> Ran {
        run(self
            .command()
            .args(["-i", path_str(&self.inventory), "--no-progress"])
            .args(args))
    }

    /// `deploy -i INVENTORY --output json --no-progress`, with the scenario's environment,
    /// ready for more arguments.
    pub fn json_command(&self) -> Command {
        let mut command = json_command(&self.inventory);
        command.envs(self.envs.iter().map(|(name, value)| (name, value)));
        command
    }

    /// `deploy` with the scenario's environment and no argument.
    pub fn command(&self) -> Command {
        let mut command = super::deploy();
        command.envs(self.envs.iter().map(|(name, value)| (name, value)));
        command
    }

    /// `push --version VERSION --artifact ARTIFACT EXTRA` in the background (JSON output;
    /// `tag` names its output files in the fleet's directory). With `-v` in `extra`, its
    /// stderr has one plain `HOST: STEP` line per step.
    pub fn spawn_push(
        &self,
        tag: &str,
        version: &str,
        artifact: &Path,
        extra: &[&str],
    ) -> Background {
        let mut command = self.json_command();
        command.args(extra).args(push_args(version, artifact));
        spawn_command(self.dir(), tag, command)
    }

    // -----------------------------------------------------------------------------------------
    // What the hosts hold

    /// The service's directory on host `index` (`<root>/app`).
    pub fn app(&self, index: usize) -> PathBuf {
        self.fleet.host(index).root.join(SERVICE)
    }

    /// The version live on host `index` (see [`live_release`]): `None` before any switch. For
    /// a [`Scenario::versioned_artifact`], its `version.txt` must say that version.
    pub fn live(&self, index: usize) -> Option<String> {
        let app = self.app(index);
        let version = live_release(&app)?;
        if self.versioned.borrow().contains(&version) {
            assert_eq!(
                read(app.join("current/version.txt")),
                version,
                "{}: the live release's version.txt",
                self.host(index).name
            );
        }
        Some(version)
    }

    /// [`Scenario::live`] of every host, in order.
    pub fn lives(&self) -> Vec<Option<String>> {
        (0..self.fleet.hosts().len())
            .map(|index| self.live(index))
            .collect()
    }

    /// Every history record of host `index`, oldest first.
    pub fn history(&self, index: usize) -> Vec<Value> {
        history_records(&self.app(index))
    }

    /// The last history record of host `index`; panics when there is none.
    pub fn last_record(&self, index: usize) -> Value {
        self.history(index)
            .pop()
            .unwrap_or_else(|| panic!("{}: no history record at all", self.host(index).name))
    }

    /// [`tree_snapshot`] of every host's root, in order: equal before and after means no host
    /// changed.
    pub fn snapshots(&self) -> Vec<BTreeMap<String, String>> {
        self.hosts()
            .iter()
            .map(|host| tree_snapshot(&host.root))
            .collect()
    }

    /// The index of the host named `name`.
    pub fn host_index(&self, name: &str) -> usize {
        self.fleet
            .hosts()
            .iter()
            .position(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name:?} in the fleet"))
    }
}

fn with_newline(lines: &str) -> String {
    if lines.is_empty() || lines.ends_with('\n') {
        lines.to_string()
    } else {
        format!("{lines}\n")
    }
}
