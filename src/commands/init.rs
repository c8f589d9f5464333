//! `deploy init` (SPEC §1): the first files of a project. A commented `deploy.toml` for one
//! service and its hosts (at `-i PATH`, default `./deploy.toml`), and beside it the host-side
//! samples: `deploy/systemd/NAME.service` (a unit that runs the service from
//! `<base_dir>/current`, with the host preparation in its comments) and
//! `deploy/health-check.sh` (the health check, which the inventory uploads into every release
//! through `[services.NAME.files]`). Then it names the next three commands.
//!
//! Never overwrites: when any of the three files exists, nothing is written and the error
//! names each one (exit 2). The text of the files lives in `init/` (templates with `@NAME@`
//! placeholders); [`render`] is pure and its inventory goes through the real inventory parser
//! before anything is written, so `init` never leaves a file that `check` would refuse.
//!
//! Decisions: `--hosts` (the global flag) names the hosts to write, `NAME` or `NAME=ADDRESS`,
//! comma-separated (ranges such as `web[1:3]` work; selectors do not); without it, one
//! placeholder host. The service defaults to `app`. The samples assume a `deploy` user on the
//! hosts and a `base_dir` relative to its home (`/home/deploy/NAME`), so no directory outside
//! that user's home has to be prepared.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::app::InputError;
use crate::cli::{Format, Global, InitArgs};
use crate::inventory;

const INVENTORY_TEMPLATE: &str = include_str!("init/deploy.toml");
const UNIT_TEMPLATE: &str = include_str!("init/unit.service");
const HEALTH_CHECK_TEMPLATE: &str = include_str!("init/health-check.sh");

/// The inventory path `-i` defaults to (cli.rs): commands printed for it need no `-i`.
const DEFAULT_INVENTORY: &str = "deploy.toml";
/// The home of the user the samples have deploy log in as (`deploy`).
const HOST_HOME: &str = "/home/deploy";
/// Where the health-check script lives, beside the inventory and in each release.
const HEALTH_CHECK_PATH: &str = "deploy/health-check.sh";

/// One host to write: its inventory name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    name: String,
    address: String,
}

/// A file `init` writes, relative to the inventory's directory (the inventory itself: its
/// file name).
#[derive(Debug)]
struct NewFile {
    relative: PathBuf,
    content: String,
    mode: u32,
    what: &'static str,
}

/// What `init` writes and what it prints after.
#[derive(Debug)]
struct Project {
    files: Vec<NewFile>,
    next: Vec<(String, &'static str)>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    action: &'static str,
    files: Vec<String>,
    next: Vec<&'a str>,
}

/// Writes the project's files and returns what to print on stdout: the files written and the
/// next commands (text or, with `--output json`, one JSON document).
pub fn run(global: &Global, arguments: &InitArgs) -> anyhow::Result<String> {
    let hosts = match &global.hosts {
        Some(text) => parse_hosts(text)?,
        None => Vec::new(),
    };
    let inventory_path = &global.inventory;
    let project = render(&arguments.service, &hosts, inventory_path)?;
    let directory = inventory_path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new(""));
    let paths: Vec<PathBuf> = project
        .files
        .iter()
        .map(|file| directory.join(&file.relative))
        .collect();
    refuse_existing(&paths)?;
    write_all(&project.files, &paths)?;

    if global.output == Format::Json {
        let report = JsonReport {
            action: "init",
            files: paths
                .iter()
                .map(|path| path.display().to_string())
                .collect(),
            next: project
                .next
                .iter()
                .map(|(command, _)| command.as_str())
                .collect(),
        };
        return Ok(serde_json::to_string_pretty(&report)? + "\n");
    }
    let mut text = String::new();
    let width = paths
        .iter()
        .map(|path| path.display().to_string().len())
        .max()
        .unwrap_or(0);
    for (path, file) in paths.iter().zip(&project.files) {
        let shown = path.display().to_string();
        text.push_str(&format!("wrote {shown:<width$}   {}\n", file.what));
    }
    text.push_str("\nnext:\n");
    let width = project
        .next
        .iter()
        .map(|(command, _)| command.len())
        .max()
        .unwrap_or(0);
    for (command, what) in &project.next {
        text.push_str(&format!("  {command:<width$}   {what}\n"));
    }
    Ok(text)
}

/// `--hosts` for init: `NAME` or `NAME=ADDRESS`, comma-separated. Each is checked by the
/// inventory's own rules (names, ranges, addresses), so what passes here passes `check`.
fn parse_hosts(text: &str) -> Result<Vec<HostEntry>, InputError> {
    let mut hosts: Vec<HostEntry> = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(InputError(format!(
                "--hosts {text:?}: an empty host name (init takes NAME or NAME=ADDRESS, comma-separated)"
            )));
        }
        let (name, address) = match item.split_once('=') {
            Some((name, address)) => (name.trim(), address.trim()),
            None => (item, item),
        };
        let entry = HostEntry {
            name: name.to_string(),
            address: address.to_string(),
        };
        let fragment = format!(
            "[[hosts]]\nname = {}\naddress = {}\n",
            toml_string(&entry.name),
            toml_string(&entry.address)
        );
        if let Err(error) = inventory::parse_str(&fragment, Path::new("--hosts")) {
            return Err(InputError(format!(
                "--hosts: `{item}`: {} (init takes host names, or NAME=ADDRESS, comma-separated; not selectors)",
                error.message
            )));
        }
        if hosts.iter().any(|host| host.name == entry.name) {
            return Err(InputError(format!(
                "--hosts: the host `{}` is named twice",
                entry.name
            )));
        }
        hosts.push(entry);
    }
    Ok(hosts)
}

/// The project's files and next commands, from plain values; the inventory is parsed and
/// validated here (as `inventory_path`) before it is returned.
fn render(
    service: &str,
    hosts: &[HostEntry],
    inventory_path: &Path,
) -> Result<Project, InputError> {
    check_service_name(service)?;
    let next = next_commands(inventory_path);
    let base = format!("{HOST_HOME}/{service}");
    let fill = |template: &str| {
        template
            .replace("@SERVICE_KEY@", &toml_key(service))
            .replace("@SERVICE@", service)
            .replace("@BASE@", &base)
            .replace("@HOME@", HOST_HOME)
    };
    let next_comment: String = next
        .iter()
        .map(|(command, what)| format!("#   {command:<40} {what}\n"))
        .collect();
    let inventory_text = fill(INVENTORY_TEMPLATE)
        .replace("@NEXT@\n", &next_comment)
        .replace("@HOSTS@\n", &hosts_block(hosts));
    if let Err(error) = inventory::parse_str(&inventory_text, inventory_path) {
        // The templates are tested; reaching this is a bug, not bad input.
        return Err(InputError(format!(
            "init: the generated inventory does not validate ({error}); please report this"
        )));
    }
    let file_name = inventory_path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_INVENTORY));
    Ok(Project {
        files: vec![
            NewFile {
                relative: file_name,
                content: inventory_text,
                mode: 0o644,
                what: "the inventory: hosts, the service, its hooks and health check",
            },
            NewFile {
                relative: PathBuf::from(format!("deploy/systemd/{service}.service")),
                content: fill(UNIT_TEMPLATE),
                mode: 0o644,
                what: "systemd unit: install it on each host (how: its first lines)",
            },
            NewFile {
                relative: PathBuf::from(HEALTH_CHECK_PATH),
                content: fill(HEALTH_CHECK_TEMPLATE),
                mode: 0o755,
                what: "health check: deploy sends it along with each release",
            },
        ],
        next,
    })
}

/// A service name also names a systemd unit and appears in the sudoers line: inventory name
/// characters, starting with a letter or digit (`-x` would read as an option). The whole
/// inventory is validated after rendering.
fn check_service_name(service: &str) -> Result<(), InputError> {
    let valid = service.starts_with(|c: char| c.is_ascii_alphanumeric())
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(InputError(format!(
            "--service {service:?}: a service name for init is A-Z a-z 0-9 . _ -, starting with a letter or digit (it names the systemd unit)"
        )))
    }
}

/// The three commands to run next, with `-i PATH` unless the inventory is the default one.
fn next_commands(inventory_path: &Path) -> Vec<(String, &'static str)> {
    let prefix = if inventory_path == Path::new(DEFAULT_INVENTORY) {
        "deploy".to_string()
    } else {
        format!(
            "deploy -i {}",
            shell_word(&inventory_path.display().to_string())
        )
    };
    vec![
        (
            format!("{prefix} check"),
            "connectivity, host keys, what the hosts need",
        ),
        (
            format!("{prefix} push --dry-run"),
            "what a push would do on each host (changes nothing)",
        ),
        (
            format!("{prefix} push"),
            "stage on every host, then switch, restart, health-check",
        ),
    ]
}

fn hosts_block(hosts: &[HostEntry]) -> String {
    if hosts.is_empty() {
        return "[[hosts]]\n\
                name = \"web1\"\n\
                address = \"192.0.2.11\"                   # a placeholder (a documentation address): your host's\n\
                \x20                                        # DNS name or IP address, or a Host of ~/.ssh/config\n\
                # tags = [\"web\"]\n\n"
            .to_string();
    }
    hosts
        .iter()
        .map(|host| {
            format!(
                "[[hosts]]\nname = {}\naddress = {:<30} # DNS name, IP address or a Host of ~/.ssh/config\n# tags = [\"web\"]\n\n",
                toml_string(&host.name),
                toml_string(&host.address),
            )
        })
        .collect()
}

/// A TOML basic string (quotes and escapes by the toml crate).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A TOML key: bare when it can be, quoted otherwise (a `.` would nest tables).
fn toml_key(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        text.to_string()
    } else {
        toml_string(text)
    }
}

/// `text` as one word for a shell command line shown to the operator.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/+:=@%,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Refuses (exit 2) when any of `paths` exists, naming every one of them.
fn refuse_existing(paths: &[PathBuf]) -> Result<(), InputError> {
    let existing: Vec<String> = paths
        .iter()
        .filter(|path| fs::symlink_metadata(path).is_ok())
        .map(|path| path.display().to_string())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    Err(InputError(format!(
        "init never overwrites: {} already exist{}; nothing was written (move {} away, or pass -i another.toml in another directory)",
        existing.join(", "),
        if existing.len() == 1 { "s" } else { "" },
        if existing.len() == 1 { "it" } else { "them" },
    )))
}

/// Creates each file (never replacing one: `O_EXCL`); on a failure removes what this call
/// created, so an error leaves nothing behind.
fn write_all(files: &[NewFile], paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut written: Vec<&Path> = Vec::new();
    for (file, path) in files.iter().zip(paths) {
        if let Err(error) = write_new(path, &file.content, file.mode) {
            for done in written {
                let _ = fs::remove_file(done);
            }
            return Err(error);
        }
        written.push(path);
    }
    Ok(())
}

fn write_new(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("init: cannot create {}", parent.display()))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::Error::new(InputError(format!(
                    "init never overwrites: {} appeared while writing; nothing was kept",
                    path.display()
                )))
            } else {
                anyhow::Error::new(error).context(format!("init: cannot create {}", path.display()))
            }
        })?;
    file.write_all(content.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("init: cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Vec<HostEntry> {
        parse_hosts(text).expect("valid --hosts")
    }

    fn project(service: &str, host_list: &str) -> Project {
        let entries = if host_list.is_empty() {
            Vec::new()
        } else {
            hosts(host_list)
        };
        render(service, &entries, Path::new("deploy.toml")).expect("renders")
    }

    #[test]
    fn the_inventory_validates_with_the_hosts_and_service_given() {
        let project = project("myapp", "web1,web2=10.0.0.12");
        let inventory = inventory::parse_str(&project.files[0].content, Path::new("deploy.toml"))
            .expect("the generated inventory validates");
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "web2"]);
        assert_eq!(inventory.hosts[1].address, "10.0.0.12");
        let service = &inventory.services[0];
        assert_eq!(service.name, "myapp");
        assert_eq!(service.base_dir, "myapp");
        assert_eq!(
            service.version.as_ref().map(|v| v.to_string()),
            Some("1.0.0".into())
        );
        // The hook names the task; the model holds its command.
        assert_eq!(
            service.hooks.after_switch,
            ["sudo -n systemctl restart myapp"]
        );
        assert_eq!(service.files[0].path, HEALTH_CHECK_PATH);
        let check = service.health_check.as_ref().expect("a health check");
        assert_eq!(check.command, "sh deploy/health-check.sh");
    }

    #[test]
    fn without_hosts_one_placeholder_host_validates() {
        let project = project("app", "");
        let inventory = inventory::parse_str(&project.files[0].content, Path::new("deploy.toml"))
            .expect("validates");
        assert_eq!(inventory.hosts.len(), 1);
        assert_eq!(inventory.hosts[0].address, "192.0.2.11");
    }

    #[test]
    fn a_service_name_with_a_dot_is_a_quoted_key() {
        let project = project("my.app", "web1");
        assert!(project.files[0].content.contains("[services.\"my.app\"]"));
        let inventory = inventory::parse_str(&project.files[0].content, Path::new("deploy.toml"))
            .expect("validates");
        assert_eq!(inventory.services[0].name, "my.app");
        assert_eq!(
            project.files[1].relative,
            PathBuf::from("deploy/systemd/my.app.service")
        );
    }

    #[test]
    fn the_unit_runs_the_service_from_current() {
        let project = project("myapp", "web1");
        let unit = &project.files[1].content;
        assert!(
            unit.contains("\nWorkingDirectory=/home/deploy/myapp/current\n"),
            "{unit}"
        );
        assert!(
            unit.contains("\nExecStart=/home/deploy/myapp/current/bin/myapp\n"),
            "{unit}"
        );
        assert!(
            unit.contains("NOPASSWD: /usr/bin/systemctl restart myapp'"),
            "{unit}"
        );
        let script = &project.files[2].content;
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(
            script.contains("systemctl is-active --quiet myapp"),
            "{script}"
        );
        assert_eq!(project.files[2].mode, 0o755);
    }

    #[test]
    fn no_placeholder_is_left() {
        let project = project("myapp", "web1");
        for file in &project.files {
            for placeholder in ["@SERVICE", "@BASE@", "@HOME@", "@NEXT@", "@HOSTS@"] {
                assert!(
                    !file.content.contains(placeholder),
                    "{} keeps {placeholder}",
                    file.relative.display()
                );
            }
        }
    }

    #[test]
    fn next_commands_name_the_inventory_unless_it_is_the_default() {
        let plain: Vec<String> = next_commands(Path::new("deploy.toml"))
            .into_iter()
            .map(|(command, _)| command)
            .collect();
        assert_eq!(
            plain,
            ["deploy check", "deploy push --dry-run", "deploy push"]
        );
        let other: Vec<String> = next_commands(Path::new("ops/my prod.toml"))
            .into_iter()
            .map(|(command, _)| command)
            .collect();
        assert_eq!(other[0], "deploy -i 'ops/my prod.toml' check");
    }

    #[test]
    fn hosts_refuses_selectors_empty_items_and_repeats() {
        for bad in [
            "web*",
            "!web1",
            "a:&b",
            "web1,,web2",
            "a b",
            "web1,web1",
            "x=a:22",
        ] {
            assert!(parse_hosts(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(
            hosts(" web1 , db=10.0.0.9"),
            [
                HostEntry {
                    name: "web1".into(),
                    address: "web1".into()
                },
                HostEntry {
                    name: "db".into(),
                    address: "10.0.0.9".into()
                }
            ]
        );
    }

    #[test]
    fn service_names_that_cannot_name_a_unit_are_refused() {
        for bad in ["-x", ".x", "a b", "a/b", "", "a\"b"] {
            assert!(check_service_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_service_name("my_app-2.0").is_ok());
    }
}
