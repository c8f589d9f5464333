//! The validated inventory (SPEC §2): [`Inventory`] and its settings, hosts and services, and
//! [`Version`], the one type here with rules of its own. Built only by `validation`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::location::shown;

const VERSION_MAX_LENGTH: usize = 128;

/// A parsed, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it was read from (used in messages and to resolve relative artifact paths).
    pub file: PathBuf,
    pub ssh: SshSettings,
    pub deploy: DeploySettings,
    /// In inventory order; at least one.
    pub hosts: Vec<Host>,
    /// Sorted by name.
    pub services: Vec<Service>,
    pub notify: Option<Notify>,
}

/// `[ssh]`: connection settings shared by every host.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// Tilde-expanded; default `["~/.ssh/known_hosts"]`.
    pub known_hosts: Vec<PathBuf>,
    /// Default [`HostKeyPolicy::Strict`].
    pub host_key_policy: HostKeyPolicy,
    /// Default 10 s; never zero.
    pub connect_timeout: Duration,
    /// How hosts are reached: ssh_config file, jump hosts, proxy command (see `reach`).
    pub reach: super::reach::Reach,
}

/// What to do with a host key that is not in `known_hosts`. A changed key is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// `"strict"`: refuse unknown hosts.
    Strict,
    /// `"accept-new"`: trust and record unknown hosts.
    AcceptNew,
}

/// `[deploy]`: how a run proceeds across hosts.
#[derive(Debug, Clone)]
pub struct DeploySettings {
    /// Hosts worked on at once; default 10, at least 1.
    pub concurrency: usize,
    /// Deadline for all the work on one host in one run; default 5 min, never zero.
    pub host_timeout: Duration,
    /// Default [`OnFailure::Rollback`].
    pub on_failure: OnFailure,
    /// Default `Count(0)`.
    pub max_failures: MaxFailures,
    /// How many hosts switch at a time, in inventory order (default: all together).
    pub batch_size: super::BatchSize,
    /// Wait between two batches (default: none).
    pub batch_pause: Duration,
}

/// What happens when more hosts fail than `max_failures` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Rollback,
    Halt,
    Continue,
}

/// How many hosts may fail before `on_failure` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFailures {
    /// An absolute number of hosts.
    Count(usize),
    /// A percentage (0..=100) of the hosts in the run, rounded down.
    Percent(u8),
}

impl MaxFailures {
    /// The number of failed hosts that is still tolerated out of `total` hosts.
    pub fn allowed(&self, total: usize) -> usize {
        match *self {
            MaxFailures::Count(count) => count,
            MaxFailures::Percent(percent) => {
                let percent = u128::from(percent.min(100));
                // total * percent / 100 <= total, so the conversion back cannot fail.
                usize::try_from((total as u128) * percent / 100).unwrap_or(total)
            }
        }
    }
}

/// One `[[hosts]]` entry, with connection settings resolved against `[ssh]` and the defaults.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Tilde-expanded; tried after the ssh-agent, in order. May be empty (agent only).
    pub identity_files: Vec<PathBuf>,
    /// Without duplicates, in file order.
    pub tags: Vec<String>,
    /// Pinned key, normalized to `"<algorithm> <base64>"`.
    pub host_key: Option<String>,
    /// Per-host `proxy_jump` (validated; `"none"` kept), and where user/port/identity came from.
    pub reach: super::reach::HostReach,
    /// `env = { ... }`: exported to hooks, health checks, tasks and exec; wins over the service's.
    pub env: BTreeMap<String, String>,
}

/// One `[services.NAME]` table.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Indexes into [`Inventory::hosts`], in inventory order, never empty.
    pub hosts: Vec<usize>,
    /// Remote directory: absolute, or relative to the remote login directory. Normalized.
    pub base_dir: String,
    pub version: Option<Version>,
    pub artifact: Option<ArtifactSource>,
    /// Line of the `artifact` value (0 when there is none), for [`Inventory::check_artifact_files`].
    pub artifact_line: usize,
    pub sha256: Option<crate::manifest::Sha256>,
    pub fetch: Fetch,
    /// At least 1; default 5.
    pub keep_releases: usize,
    /// Normalized relative paths, unique.
    pub shared_paths: Vec<String>,
    /// `shared_files`: normalized relative paths of files in `shared/`, linked into every
    /// release; staging fails on a host where one is missing.
    pub shared_files: Vec<String>,
    /// `[services.NAME.env]`: exported to hooks, health checks, tasks and exec.
    pub env: BTreeMap<String, String>,
    /// Each of the service's hosts' own `env`, by host name (hosts without one left out).
    pub host_env: BTreeMap<String, BTreeMap<String, String>>,
    /// `[services.NAME.files]`: controller-side content put into `shared/` before the switch
    /// (each also linked into releases like a shared file).
    pub files: Vec<crate::inventory::UploadFile>,
    /// `[services.NAME.tasks]`: `deploy run NAME` runs the command.
    pub tasks: BTreeMap<String, String>,
    /// Whether the artifact may hold setuid/setgid members; default false (they are refused).
    pub allow_setid: bool,
    /// `strip_components`: leading directories dropped from every member name (as `tar
    /// --strip-components`). `None` (not set): a tarball whose members all sit under one top
    /// directory is refused; `Some(0)`: taken as it is.
    pub strip_components: Option<usize>,
    /// How a push reuses the live release's unchanged files; default `Hardlink`.
    pub delta: Delta,
    pub hooks: Hooks,
    pub health_check: Option<HealthCheck>,
}

impl Service {
    /// The variables exported on `host`: the service's, with the host's own on top.
    pub fn variables(&self, host: &str) -> BTreeMap<String, String> {
        match self.host_env.get(host) {
            Some(host_env) => crate::inventory::merged_env(&self.env, host_env),
            None => self.env.clone(),
        }
    }
}

/// Where a release tarball comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactSource {
    /// A local file; a relative path in the inventory is resolved against the inventory's directory.
    Path(PathBuf),
    /// An `http://` or `https://` URL. May carry credentials in its query string: do not print it.
    Url(String),
}

/// Who downloads a URL artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Download once on the controller and push it to every host (default).
    Controller,
    /// Every host downloads the URL itself (requires `sha256`).
    Host,
}

/// `delta`: how a push reuses the files of the host's live release that the artifact did not
/// change (only the other files are sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Reused files are hard links to the live release's (no extra disk; shared inodes).
    Hardlink,
    /// Reused files are copied from the live release (for apps that write into their release).
    Copy,
    /// Always send the whole artifact.
    Off,
}

/// Shell commands run by `sh` on the host, in order, in the release directory.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before_switch: Vec<String>,
    pub after_switch: Vec<String>,
}

/// `[services.NAME.health_check]`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub command: String,
    /// At least 1; default 3.
    pub retries: u32,
    /// Default 2 s.
    pub interval: Duration,
    /// Default 5 s; never zero.
    pub timeout: Duration,
}

/// `[notify]`.
#[derive(Clone)]
pub struct Notify {
    /// A secret: never print it.
    pub webhook: String,
}

impl fmt::Debug for Notify {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Notify")
            .field("webhook", &"<redacted>")
            .finish()
    }
}

/// A release version: 1–128 characters from `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    /// Checks `text` against the version rules.
    pub fn parse(text: &str) -> Result<Version, String> {
        let length = text.chars().count();
        if length == 0 {
            return Err("version must not be empty".to_string());
        }
        if length > VERSION_MAX_LENGTH {
            return Err(format!(
                "version is {length} characters long; at most {VERSION_MAX_LENGTH} are allowed"
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|character| !(character.is_ascii_alphanumeric() || "._+-".contains(*character)))
        {
            return Err(format!(
                "version `{}` contains `{}`; only A-Z a-z 0-9 . _ + - are allowed",
                shown(text),
                bad.escape_debug()
            ));
        }
        if !text.starts_with(|character: char| character.is_ascii_alphanumeric()) {
            return Err(format!(
                "version `{}` must start with a letter or a digit",
                shown(text)
            ));
        }
        Ok(Version(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Version::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_failures_allowed() {
        assert_eq!(MaxFailures::Count(2).allowed(10), 2);
        assert_eq!(MaxFailures::Count(0).allowed(10), 0);
        assert_eq!(MaxFailures::Percent(10).allowed(10), 1);
        assert_eq!(MaxFailures::Percent(10).allowed(19), 1);
        assert_eq!(MaxFailures::Percent(10).allowed(20), 2);
        assert_eq!(MaxFailures::Percent(50).allowed(3), 1);
        assert_eq!(MaxFailures::Percent(100).allowed(7), 7);
        assert_eq!(MaxFailures::Percent(0).allowed(7), 0);
        assert_eq!(MaxFailures::Percent(100).allowed(usize::MAX), usize::MAX);
        assert_eq!(MaxFailures::Percent(250).allowed(4), 4, "clamped to 100%");
    }

    #[test]
    fn version_parse_edge_cases() {
        assert_eq!(
            Version::parse("v1.2.3+build_4").map(|version| version.as_str().to_string()),
            Ok("v1.2.3+build_4".to_string())
        );
        assert!(Version::parse("1").is_ok());
        assert!(Version::parse(&"a".repeat(128)).is_ok());
        assert!(Version::parse(&"a".repeat(129)).is_err());
        assert!(Version::parse("").is_err());
        assert!(Version::parse(".1").is_err());
        assert!(Version::parse("-1").is_err());
        assert!(Version::parse("+1").is_err());
        assert!(Version::parse("_1").is_err());
        assert!(Version::parse("1/2").is_err());
        assert!(Version::parse("1 2").is_err());
        assert!(Version::parse("1.2\n").is_err());
        assert!(Version::parse("é1").is_err());
        assert!(Version::parse("1.é").is_err());
        assert_eq!(
            "v2".parse::<Version>().map(|version| version.to_string()),
            Ok("v2".to_string())
        );
        assert!(Version::parse("v1") < Version::parse("v2"));
    }
}
