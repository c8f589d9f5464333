//! Validation: the raw, file-shaped values turned into an [`Inventory`], with the defaults
//! (SPEC §2) and every rule that relates values to each other (duplicate names, tags that are
//! host names, service host selectors, `fetch` requirements, nested shared paths); and, before a
//! run, the check that local artifact files exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::location::{InventoryError, Parser, shown};
use super::model::{
    ArtifactSource, Delta, DeploySettings, Fetch, HealthCheck, Hooks, Host, HostKeyPolicy,
    Inventory, MaxFailures, Notify, OnFailure, Service, SshSettings, Version,
};
use super::raw::{RawDeploy, RawHealthCheck, RawHost, RawInventory, RawNotify, RawService, RawSsh};
use super::selector::{Selector, combine};
use super::values::{
    NAME_CHARACTERS, check_http_url, expand_tilde, has_http_scheme, is_inside, is_name,
    normalize_base_dir, normalize_host_key, normalize_shared_path, parse_max_failures,
};

const DEFAULT_PORT: u16 = 22;
const DEFAULT_USER: &str = "root";
const DEFAULT_IDENTITY_FILES: [&str; 3] = ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"];
const DEFAULT_KNOWN_HOSTS: &str = "~/.ssh/known_hosts";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 10;
const DEFAULT_HOST_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_KEEP_RELEASES: usize = 5;
const DEFAULT_HEALTH_RETRIES: u32 = 3;
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const DURATION_EXAMPLES: &str = "for example \"10s\", \"5m\" or \"1h 30m\"";

/// Connection settings from `[ssh]` that a host entry may override.
struct ConnectionDefaults {
    user: String,
    port: u16,
    identity_files: Vec<PathBuf>,
}

impl Parser<'_> {
    pub(super) fn build(&self, raw: RawInventory) -> Result<Inventory, InventoryError> {
        let raw_ssh = raw.ssh.unwrap_or_default();
        let (ssh, defaults) = self.ssh_settings(raw_ssh)?;
        let deploy = self.deploy_settings(raw.deploy.unwrap_or_default())?;
        let hosts = self.hosts(raw.hosts, &defaults)?;
        let mut services = Vec::new();
        for (name, raw_service) in raw.services.unwrap_or_default() {
            services.push(self.service(name, raw_service, &hosts)?);
        }
        services.sort_by(|left, right| left.name.cmp(&right.name));
        let notify = raw.notify.map(|notify| self.notify(notify)).transpose()?;
        Ok(Inventory {
            file: self.file.to_path_buf(),
            ssh,
            deploy,
            hosts,
            services,
            notify,
        })
    }

    fn ssh_settings(
        &self,
        raw: RawSsh,
    ) -> Result<(SshSettings, ConnectionDefaults), InventoryError> {
        let user = match &raw.user {
            Some(user) => self.user(user, "ssh.user")?,
            None => default_user(std::env::var("USER").ok()),
        };
        let port = match &raw.port {
            Some(port) => self.port(port, "ssh.port")?,
            None => DEFAULT_PORT,
        };
        let identity_files = match &raw.identity_files {
            Some(files) => self.local_paths(files, "ssh.identity_files")?,
            None => DEFAULT_IDENTITY_FILES
                .iter()
                .map(|path| expand_tilde(path))
                .collect(),
        };
        let known_hosts = match &raw.known_hosts {
            Some(files) => {
                if files.get_ref().is_empty() {
                    return Err(self.error_at(
                        &files.span(),
                        "ssh.known_hosts",
                        "at least one known_hosts file is required",
                    ));
                }
                self.local_paths(files.get_ref(), "ssh.known_hosts")?
            }
            None => vec![expand_tilde(DEFAULT_KNOWN_HOSTS)],
        };
        let host_key_policy = match &raw.host_key_policy {
            Some(policy) => match policy.get_ref().as_str() {
                "strict" => HostKeyPolicy::Strict,
                "accept-new" => HostKeyPolicy::AcceptNew,
                other => {
                    return Err(self.error_at(
                        &policy.span(),
                        "ssh.host_key_policy",
                        format!(
                            "unknown host_key_policy `{}`; expected \"strict\" or \"accept-new\"",
                            shown(other)
                        ),
                    ));
                }
            },
            None => HostKeyPolicy::Strict,
        };
        let connect_timeout = match &raw.connect_timeout {
            Some(timeout) => self.duration(timeout, "ssh.connect_timeout", false)?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let reach = self.reach(&raw)?;
        Ok((
            SshSettings {
                known_hosts,
                host_key_policy,
                connect_timeout,
                reach,
            },
            ConnectionDefaults {
                user,
                port,
                identity_files,
            },
        ))
    }

    fn deploy_settings(&self, raw: RawDeploy) -> Result<DeploySettings, InventoryError> {
        let concurrency = match &raw.concurrency {
            Some(concurrency) => self.count(concurrency, "deploy.concurrency", 1)?,
            None => DEFAULT_CONCURRENCY,
        };
        let host_timeout = match &raw.host_timeout {
            Some(timeout) => self.duration(timeout, "deploy.host_timeout", false)?,
            None => DEFAULT_HOST_TIMEOUT,
        };
        let on_failure = match &raw.on_failure {
            Some(value) => match value.get_ref().as_str() {
                "rollback" => OnFailure::Rollback,
                "halt" => OnFailure::Halt,
                "continue" => OnFailure::Continue,
                other => {
                    return Err(self.error_at(
                        &value.span(),
                        "deploy.on_failure",
                        format!(
                            "unknown on_failure `{}`; expected \"rollback\", \"halt\" or \"continue\"",
                            shown(other)
                        ),
                    ));
                }
            },
            None => OnFailure::Rollback,
        };
        let max_failures = match &raw.max_failures {
            Some(value) => parse_max_failures(value.get_ref()).ok_or_else(|| {
                self.error_at(
                    &value.span(),
                    "deploy.max_failures",
                    "max_failures must be a non-negative integer or a percentage such as \"10%\" (0% to 100%)",
                )
            })?,
            None => MaxFailures::Count(0),
        };
        let batch_size = match &raw.batch_size {
            Some(value) => super::rollout::parse_batch_size(value.get_ref())
                .map_err(|message| self.error_at(&value.span(), "deploy.batch_size", message))?,
            None => super::BatchSize::All,
        };
        let batch_pause = match &raw.batch_pause {
            Some(pause) => self.duration(pause, "deploy.batch_pause", true)?,
            None => Duration::ZERO,
        };
        Ok(DeploySettings {
            concurrency,
            host_timeout,
            on_failure,
            max_failures,
            batch_size,
            batch_pause,
        })
    }

    fn hosts(
        &self,
        raw: Option<Spanned<Vec<Spanned<RawHost>>>>,
        defaults: &ConnectionDefaults,
    ) -> Result<Vec<Host>, InventoryError> {
        const NO_HOSTS: &str = "at least one [[hosts]] entry is required";
        let Some(raw) = raw else {
            return Err(self.error_without_line("hosts", NO_HOSTS));
        };
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.is_empty() {
            return Err(self.error_at(&span, "hosts", NO_HOSTS));
        }
        let mut hosts = Vec::with_capacity(raw.len());
        let mut tag_spans = Vec::with_capacity(raw.len());
        let mut first_line_of_name: HashMap<String, usize> = HashMap::new();
        for (index, entry) in self.expand_ranges(raw)? {
            let key = format!("hosts[{index}]");
            let env = self.env(entry.env.as_ref(), &format!("{key}.env"))?;
            let name = self.name(&entry.name, &format!("{key}.name"), "host name")?;
            if let Some(first) = first_line_of_name.get(&name) {
                return Err(self.error_at(
                    &entry.name.span(),
                    format!("{key}.name"),
                    format!("duplicate host name `{name}` (first defined on line {first})"),
                ));
            }
            first_line_of_name.insert(name.clone(), self.line(entry.name.span().start));

            let address = &self.address(&entry.address, &format!("{key}.address"))?;
            let port = match &entry.port {
                Some(port) => self.port(port, &format!("{key}.port"))?,
                None => defaults.port,
            };
            let user = match &entry.user {
                Some(user) => self.user(user, &format!("{key}.user"))?,
                None => defaults.user.clone(),
            };
            let identity_files = match &entry.identity_files {
                Some(files) => self.local_paths(files, &format!("{key}.identity_files"))?,
                None => defaults.identity_files.clone(),
            };
            let mut tags: Vec<String> = Vec::new();
            let mut spans = Vec::new();
            for (tag_index, tag) in entry.tags.iter().flatten().enumerate() {
                let tag_key = format!("{key}.tags[{tag_index}]");
                let value = self.name(tag, &tag_key, "tag")?;
                if !tags.contains(&value) {
                    tags.push(value.clone());
                }
                spans.push((value, tag.span(), tag_key));
            }
            let host_key = match &entry.host_key {
                Some(host_key) => {
                    Some(normalize_host_key(host_key.get_ref()).map_err(|message| {
                        self.error_at(&host_key.span(), format!("{key}.host_key"), message)
                    })?)
                }
                None => None,
            };
            let reach = self.host_reach(&entry, &key)?;
            tag_spans.push(spans);
            hosts.push(Host {
                name,
                address: address.clone(),
                port,
                user,
                identity_files,
                tags,
                host_key,
                reach,
                env,
            });
        }
        for spans in &tag_spans {
            for (tag, span, key) in spans {
                if first_line_of_name.contains_key(tag) {
                    return Err(self.error_at(
                        span,
                        key.clone(),
                        format!(
                            "tag `{tag}` is also the name of a host; a --hosts selector would be ambiguous"
                        ),
                    ));
                }
            }
        }
        Ok(hosts)
    }

    fn service(
        &self,
        raw_name: Spanned<String>,
        raw: RawService,
        hosts: &[Host],
    ) -> Result<Service, InventoryError> {
        let name = self.name(
            &raw_name,
            &format!("services.{}", shown(raw_name.get_ref())),
            "service name",
        )?;
        let key = format!("services.{name}");

        let host_indexes = match &raw.hosts {
            None => (0..hosts.len()).collect(),
            Some(selectors) => {
                let mut matched = Vec::new();
                for (index, selector) in selectors.get_ref().iter().enumerate() {
                    let located = |message: String| {
                        self.error_at(&selector.span(), format!("{key}.hosts[{index}]"), message)
                    };
                    let parsed = Selector::parse(selector.get_ref()).map_err(located)?;
                    matched.push(parsed.matched(hosts).map_err(located)?);
                }
                // `hosts = []` selects nothing (an error below), not every host.
                let indexes = if matched.is_empty() {
                    Vec::new()
                } else {
                    combine(&matched, hosts.len())
                };
                if indexes.is_empty() {
                    return Err(self.error_at(
                        &selectors.span(),
                        format!("{key}.hosts"),
                        "the service selects no hosts (omit `hosts` to use every host)",
                    ));
                }
                indexes
            }
        };

        let base_dir = normalize_base_dir(raw.base_dir.get_ref()).map_err(|message| {
            self.error_at(&raw.base_dir.span(), format!("{key}.base_dir"), message)
        })?;

        let version = match &raw.version {
            Some(version) => Some(Version::parse(version.get_ref()).map_err(|message| {
                self.error_at(&version.span(), format!("{key}.version"), message)
            })?),
            None => None,
        };

        let (artifact, artifact_line) = match &raw.artifact {
            Some(artifact) => {
                let source = self
                    .artifact_source(artifact.get_ref())
                    .map_err(|message| {
                        self.error_at(&artifact.span(), format!("{key}.artifact"), message)
                    })?;
                (Some(source), self.line(artifact.span().start))
            }
            None => (None, 0),
        };

        let sha256 = match &raw.sha256 {
            Some(sha256) => {
                let value = sha256.get_ref().to_ascii_lowercase();
                let Ok(value) = crate::manifest::Sha256::parse(&value) else {
                    return Err(self.error_at(
                        &sha256.span(),
                        format!("{key}.sha256"),
                        "sha256 must be exactly 64 hexadecimal digits",
                    ));
                };
                Some(value)
            }
            None => None,
        };

        let fetch = match &raw.fetch {
            Some(fetch) => {
                let value = match fetch.get_ref().as_str() {
                    "controller" => Fetch::Controller,
                    "host" => Fetch::Host,
                    other => {
                        return Err(self.error_at(
                            &fetch.span(),
                            format!("{key}.fetch"),
                            format!(
                                "unknown fetch `{}`; expected \"controller\" or \"host\"",
                                shown(other)
                            ),
                        ));
                    }
                };
                if value == Fetch::Host {
                    if !matches!(artifact, Some(ArtifactSource::Url(_))) {
                        return Err(self.error_at(
                            &fetch.span(),
                            format!("{key}.fetch"),
                            "fetch = \"host\" requires the artifact to be an http(s) URL",
                        ));
                    }
                    if sha256.is_none() {
                        return Err(self.error_at(
                            &fetch.span(),
                            format!("{key}.fetch"),
                            "fetch = \"host\" requires sha256, so that each host can verify its download",
                        ));
                    }
                }
                value
            }
            None => Fetch::Controller,
        };

        let delta = match &raw.delta {
            Some(delta) => match delta.get_ref().as_str() {
                "hardlink" => Delta::Hardlink,
                "copy" => Delta::Copy,
                "off" => Delta::Off,
                other => {
                    return Err(self.error_at(
                        &delta.span(),
                        format!("{key}.delta"),
                        format!(
                            "unknown delta `{}`; expected \"hardlink\", \"copy\" or \"off\"",
                            shown(other)
                        ),
                    ));
                }
            },
            None => Delta::Hardlink,
        };

        let strip_components = raw
            .strip_components
            .as_ref()
            .map(|strip| self.count(strip, &format!("{key}.strip_components"), 0))
            .transpose()?;

        let keep_releases = match &raw.keep_releases {
            Some(keep) => self.count(keep, &format!("{key}.keep_releases"), 1)?,
            None => DEFAULT_KEEP_RELEASES,
        };

        let mut shared_paths: Vec<String> = Vec::new();
        for (index, path) in raw.shared_paths.iter().flatten().enumerate() {
            let path_key = format!("{key}.shared_paths[{index}]");
            let normalized = normalize_shared_path(path.get_ref())
                .map_err(|message| self.error_at(&path.span(), path_key.clone(), message))?;
            for existing in &shared_paths {
                let problem = if *existing == normalized {
                    Some(format!("duplicate shared path `{normalized}`"))
                } else if is_inside(&normalized, existing) {
                    Some(format!(
                        "shared path `{normalized}` is inside shared path `{existing}`"
                    ))
                } else if is_inside(existing, &normalized) {
                    Some(format!(
                        "shared path `{normalized}` contains shared path `{existing}`"
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(self.error_at(&path.span(), path_key, problem));
                }
            }
            shared_paths.push(normalized);
        }

        let mut shared_files = self.shared_files(raw.shared_files.as_ref(), &shared_paths, &key)?;
        let files = self.upload_files(raw.files.as_ref(), &key)?;
        // An uploaded file is linked into releases like a shared file (unless a shared path
        // directory holds it already).
        for file in &files {
            let linked = shared_files.contains(&file.path)
                || shared_paths.iter().any(|directory| {
                    super::values::is_inside(&file.path, directory) || *directory == file.path
                });
            if !linked {
                shared_files.push(file.path.clone());
            }
        }
        let env = self.env(raw.env.as_ref(), &format!("{key}.env"))?;
        let tasks = self.tasks(raw.tasks.as_ref(), &format!("{key}.tasks"))?;
        let mut hooks = match &raw.hooks {
            Some(hooks) => Hooks {
                before_switch: self
                    .commands(&hooks.before_switch, &format!("{key}.hooks.before_switch"))?,
                after_switch: self
                    .commands(&hooks.after_switch, &format!("{key}.hooks.after_switch"))?,
            },
            None => Hooks::default(),
        };

        super::variables::resolve_task_names(&mut hooks.before_switch, &tasks);
        super::variables::resolve_task_names(&mut hooks.after_switch, &tasks);

        let health_check = match &raw.health_check {
            Some(check) => Some(self.health_check(check, &format!("{key}.health_check"))?),
            None => None,
        };

        let host_env = host_indexes
            .iter()
            .map(|&index| &hosts[index])
            .filter(|host| !host.env.is_empty())
            .map(|host| (host.name.clone(), host.env.clone()))
            .collect();
        Ok(Service {
            name,
            hosts: host_indexes,
            base_dir,
            version,
            artifact,
            artifact_line,
            sha256,
            fetch,
            keep_releases,
            shared_paths,
            shared_files,
            env,
            host_env,
            files,
            tasks,
            allow_setid: raw.allow_setid.unwrap_or(false),
            strip_components,
            delta,
            hooks,
            health_check,
        })
    }

    fn health_check(&self, raw: &RawHealthCheck, key: &str) -> Result<HealthCheck, InventoryError> {
        let command = self.command(&raw.command, &format!("{key}.command"))?;
        let retries = match &raw.retries {
            Some(retries) => {
                let value = self.count(retries, &format!("{key}.retries"), 1)?;
                u32::try_from(value).map_err(|_| {
                    self.error_at(
                        &retries.span(),
                        format!("{key}.retries"),
                        format!("retries must be at most {}", u32::MAX),
                    )
                })?
            }
            None => DEFAULT_HEALTH_RETRIES,
        };
        let interval = match &raw.interval {
            Some(interval) => self.duration(interval, &format!("{key}.interval"), true)?,
            None => DEFAULT_HEALTH_INTERVAL,
        };
        let timeout = match &raw.timeout {
            Some(timeout) => self.duration(timeout, &format!("{key}.timeout"), false)?,
            None => DEFAULT_HEALTH_TIMEOUT,
        };
        Ok(HealthCheck {
            command,
            retries,
            interval,
            timeout,
        })
    }

    fn notify(&self, raw: RawNotify) -> Result<Notify, InventoryError> {
        // The webhook is a secret: the message must not contain it.
        if check_http_url(raw.webhook.get_ref()).is_err() {
            return Err(self.error_at(
                &raw.webhook.span(),
                "notify.webhook",
                "webhook must be an http(s) URL",
            ));
        }
        Ok(Notify {
            webhook: raw.webhook.into_inner(),
        })
    }

    fn artifact_source(&self, value: &str) -> Result<ArtifactSource, String> {
        if has_http_scheme(value) {
            // The URL may carry credentials: the messages do not echo it.
            check_http_url(value).map_err(|problem| format!("invalid artifact URL: {problem}"))?;
            return Ok(ArtifactSource::Url(value.to_string()));
        }
        if value.contains("://") {
            return Err(
                "artifact URLs must use http:// or https:// (otherwise give a local file path)"
                    .to_string(),
            );
        }
        if value.trim().is_empty() {
            return Err("artifact must not be empty".to_string());
        }
        if value.chars().any(char::is_control) {
            return Err("artifact path must not contain control characters".to_string());
        }
        let path = expand_tilde(value);
        let directory = self.file.parent().unwrap_or(Path::new(""));
        Ok(ArtifactSource::Path(if path.is_absolute() {
            path
        } else {
            directory.join(path)
        }))
    }

    fn name(
        &self,
        value: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Result<String, InventoryError> {
        let text = value.get_ref();
        if text.is_empty() {
            return Err(self.error_at(&value.span(), key, format!("{what} must not be empty")));
        }
        if !is_name(text) {
            return Err(self.error_at(
                &value.span(),
                key,
                format!(
                    "{what} `{}` may only contain {NAME_CHARACTERS}",
                    shown(text)
                ),
            ));
        }
        Ok(text.clone())
    }

    fn port(&self, value: &Spanned<i64>, key: &str) -> Result<u16, InventoryError> {
        let port = *value.get_ref();
        u16::try_from(port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| {
                self.error_at(
                    &value.span(),
                    key,
                    format!("port {port} is out of range (1 to 65535)"),
                )
            })
    }

    fn user(&self, value: &Spanned<String>, key: &str) -> Result<String, InventoryError> {
        let user = value.get_ref();
        if user.is_empty()
            || user
                .chars()
                .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(self.error_at(
                &value.span(),
                key,
                "user must be a non-empty login name without whitespace",
            ));
        }
        Ok(user.clone())
    }

    /// A non-negative integer that must be at least `minimum`.
    fn count(
        &self,
        value: &Spanned<i64>,
        key: &str,
        minimum: usize,
    ) -> Result<usize, InventoryError> {
        let number = *value.get_ref();
        usize::try_from(number)
            .ok()
            .filter(|count| *count >= minimum)
            .ok_or_else(|| {
                let field = key.rsplit('.').next().unwrap_or(key);
                self.error_at(
                    &value.span(),
                    key,
                    format!("{field} must be at least {minimum}, not {number}"),
                )
            })
    }

    fn duration(
        &self,
        value: &Spanned<String>,
        key: &str,
        allow_zero: bool,
    ) -> Result<Duration, InventoryError> {
        let duration = humantime::parse_duration(value.get_ref().trim()).map_err(|error| {
            self.error_at(
                &value.span(),
                key,
                format!(
                    "invalid duration `{}`: {error} ({DURATION_EXAMPLES})",
                    shown(value.get_ref())
                ),
            )
        })?;
        if !allow_zero && duration.is_zero() {
            return Err(self.error_at(&value.span(), key, "duration must be greater than zero"));
        }
        Ok(duration)
    }

    /// Controller-side paths, tilde-expanded.
    fn local_paths(
        &self,
        values: &[Spanned<String>],
        key: &str,
    ) -> Result<Vec<PathBuf>, InventoryError> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| {
                let text = value.get_ref();
                if text.trim().is_empty() || text.chars().any(char::is_control) {
                    Err(self.error_at(
                        &value.span(),
                        format!("{key}[{index}]"),
                        "path must be non-empty and free of control characters",
                    ))
                } else {
                    Ok(expand_tilde(text))
                }
            })
            .collect()
    }

    fn commands(
        &self,
        values: &[Spanned<String>],
        key: &str,
    ) -> Result<Vec<String>, InventoryError> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| self.command(value, &format!("{key}[{index}]")))
            .collect()
    }

    pub(super) fn command(
        &self,
        value: &Spanned<String>,
        key: &str,
    ) -> Result<String, InventoryError> {
        let command = value.get_ref();
        if command.trim().is_empty() {
            return Err(self.error_at(&value.span(), key, "command must not be empty"));
        }
        if command.contains('\0') {
            return Err(self.error_at(&value.span(), key, "command must not contain NUL"));
        }
        Ok(command.clone())
    }
}

fn default_user(environment_user: Option<String>) -> String {
    environment_user
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| DEFAULT_USER.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{load, parse_str};

    const FILE: &str = "/etc/deploy/prod.toml";

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        parse_str(text, Path::new(FILE))
    }

    fn parsed(text: &str) -> Inventory {
        match parse(text) {
            Ok(inventory) => inventory,
            Err(error) => panic!("expected a valid inventory, got: {error}"),
        }
    }

    /// Asserts that `text` fails with `key` on `line`; returns the message.
    #[track_caller]
    fn error(text: &str, key: &str, line: usize) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error at {key} on line {line}, but it parsed"),
            Err(error) => {
                assert_eq!(
                    (error.key.as_str(), error.line),
                    (key, line),
                    "wrong location for: {error}"
                );
                assert_eq!(error.file, Path::new(FILE));
                error.message
            }
        }
    }

    const ONE_HOST: &str = "[[hosts]]\nname = \"web1\"\naddress = \"10.0.0.11\"\n";

    const TWO_HOSTS: &str = r#"
[[hosts]]
name = "web1"
address = "10.0.0.11"
tags = ["web", "eu"]

[[hosts]]
name = "db1"
address = "10.0.0.21"
tags = ["db", "eu"]

"#;

    /// TWO_HOSTS (lines 1–11) followed by `service`, whose first line is line 12.
    fn with_service(service: &str) -> String {
        format!("{TWO_HOSTS}{service}")
    }

    fn expected_identity_files() -> Vec<PathBuf> {
        DEFAULT_IDENTITY_FILES
            .iter()
            .map(|path| expand_tilde(path))
            .collect()
    }

    // ----- valid inventories and defaults -----

    #[test]
    fn delta_is_hardlink_copy_or_off() {
        for (value, expected) in [
            ("\"hardlink\"", Delta::Hardlink),
            ("\"copy\"", Delta::Copy),
            ("\"off\"", Delta::Off),
        ] {
            let inventory = parsed(&with_service(&format!(
                "[services.app]\nbase_dir = \"/opt/app\"\ndelta = {value}\n"
            )));
            assert_eq!(inventory.services[0].delta, expected);
        }
        let default = parsed(&with_service("[services.app]\nbase_dir = \"/opt/app\"\n"));
        assert_eq!(default.services[0].delta, Delta::Hardlink);
        let message = error(
            &with_service("[services.app]\nbase_dir = \"/opt/app\"\ndelta = \"rsync\"\n"),
            "services.app.delta",
            14,
        );
        assert!(
            message.contains("expected \"hardlink\", \"copy\" or \"off\""),
            "{message}"
        );
    }

    #[test]
    fn minimal_inventory_has_every_default() {
        let inventory = parsed(&format!(
            "{ONE_HOST}[services.app]\nbase_dir = \"/opt/app\"\n"
        ));
        assert_eq!(inventory.file, Path::new(FILE));
        assert_eq!(
            inventory.ssh.known_hosts,
            vec![expand_tilde("~/.ssh/known_hosts")]
        );
        assert_eq!(inventory.ssh.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(inventory.ssh.connect_timeout, Duration::from_secs(10));
        assert_eq!(inventory.deploy.concurrency, 10);
        assert_eq!(inventory.deploy.host_timeout, Duration::from_secs(300));
        assert_eq!(inventory.deploy.on_failure, OnFailure::Rollback);
        assert_eq!(inventory.deploy.max_failures, MaxFailures::Count(0));
        assert_eq!(inventory.deploy.batch_size, super::super::BatchSize::All);
        assert!(inventory.notify.is_none());

        let [host] = inventory.hosts.as_slice() else {
            panic!("expected one host");
        };
        assert_eq!(host.name, "web1");
        assert_eq!(host.address, "10.0.0.11");
        assert_eq!(host.port, 22);
        assert_eq!(host.user, default_user(std::env::var("USER").ok()));
        assert_eq!(host.identity_files, expected_identity_files());
        assert!(host.tags.is_empty());
        assert_eq!(host.host_key, None);

        let [service] = inventory.services.as_slice() else {
            panic!("expected one service");
        };
        assert_eq!(service.name, "app");
        assert_eq!(service.hosts, vec![0]);
        assert_eq!(service.base_dir, "/opt/app");
        assert_eq!(service.version, None);
        assert_eq!(service.artifact, None);
        assert_eq!(service.artifact_line, 0);
        assert_eq!(service.sha256, None);
        assert_eq!(service.fetch, Fetch::Controller);
        assert_eq!(service.keep_releases, 5);
        assert!(service.shared_paths.is_empty());
        assert!(!service.allow_setid);
        assert!(service.hooks.before_switch.is_empty());
        assert!(service.hooks.after_switch.is_empty());
        assert!(service.health_check.is_none());
    }

    #[test]
    fn inventory_without_services_is_valid() {
        let inventory = parsed(ONE_HOST);
        assert!(inventory.services.is_empty());
    }

    #[test]
    fn full_inventory_parses_every_key() {
        let text = r#"
[ssh]
user = "deploy"
port = 2222
identity_files = ["~/.ssh/deploy_key", "/etc/deploy/key"]
known_hosts = ["/etc/deploy/known_hosts", "~/.ssh/known_hosts"]
host_key_policy = "accept-new"
connect_timeout = "1m 30s"

[deploy]
concurrency = 4
host_timeout = "1h"
on_failure = "halt"
max_failures = "25%"
batch_size = 2

[[hosts]]
name = "web1"
address = "web1.example.com"
tags = ["web", "eu", "web"]
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl  root@web1"

[[hosts]]
name = "web2"
address = "2001:db8::2"
port = 22
user = "admin"
identity_files = []
tags = ["web"]

[services.zeta]
hosts = ["web2"]
base_dir = "apps/zeta/"
artifact = "https://example.com/zeta.tar.gz?token=abc"
sha256 = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"
fetch = "host"

[services.alpha]
hosts = ["web"]
base_dir = "/opt//alpha/./"
version = "v1.2.3+build_4"
artifact = "dist/alpha.tar.gz"
keep_releases = 3
shared_paths = ["log/", "./config/app.env", "data//cache"]
allow_setid = true

[services.alpha.hooks]
before_switch = ["./migrate"]
after_switch = ["systemctl restart alpha", "echo done"]

[services.alpha.health_check]
command = "curl -fsS http://127.0.0.1:8080/healthz"
retries = 5
interval = "500ms"
timeout = "3s"

[notify]
webhook = "https://chat.example.com/hooks/secret-token"
"#;
        let inventory = parsed(text);
        assert_eq!(
            inventory.ssh.known_hosts,
            vec![
                PathBuf::from("/etc/deploy/known_hosts"),
                expand_tilde("~/.ssh/known_hosts")
            ]
        );
        assert_eq!(inventory.ssh.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(inventory.ssh.connect_timeout, Duration::from_secs(90));
        assert_eq!(inventory.deploy.concurrency, 4);
        assert_eq!(inventory.deploy.host_timeout, Duration::from_secs(3600));
        assert_eq!(inventory.deploy.on_failure, OnFailure::Halt);
        assert_eq!(inventory.deploy.max_failures, MaxFailures::Percent(25));
        assert_eq!(
            inventory.deploy.batch_size,
            super::super::BatchSize::Fixed(super::super::rollout::Size::Count(2))
        );

        let web1 = &inventory.hosts[0];
        assert_eq!(web1.port, 2222);
        assert_eq!(web1.user, "deploy");
        assert_eq!(
            web1.identity_files,
            vec![
                expand_tilde("~/.ssh/deploy_key"),
                PathBuf::from("/etc/deploy/key")
            ]
        );
        assert_eq!(web1.tags, vec!["web", "eu"]);
        assert_eq!(
            web1.host_key.as_deref(),
            Some(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
            )
        );
        let web2 = &inventory.hosts[1];
        assert_eq!(web2.address, "2001:db8::2");
        assert_eq!(web2.port, 22);
        assert_eq!(web2.user, "admin");
        assert!(web2.identity_files.is_empty());

        let names: Vec<&str> = inventory
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, vec!["alpha", "zeta"], "services are sorted by name");

        let alpha = &inventory.services[0];
        assert_eq!(alpha.hosts, vec![0, 1]);
        assert_eq!(alpha.base_dir, "/opt/alpha");
        assert_eq!(
            alpha.version.as_ref().map(Version::as_str),
            Some("v1.2.3+build_4")
        );
        assert_eq!(
            alpha.artifact,
            Some(ArtifactSource::Path(PathBuf::from(
                "/etc/deploy/dist/alpha.tar.gz"
            )))
        );
        assert_eq!(alpha.artifact_line, 42);
        assert_eq!(alpha.keep_releases, 3);
        assert_eq!(
            alpha.shared_paths,
            vec!["log", "config/app.env", "data/cache"]
        );
        assert!(alpha.allow_setid);
        assert_eq!(alpha.hooks.before_switch, vec!["./migrate"]);
        assert_eq!(
            alpha.hooks.after_switch,
            vec!["systemctl restart alpha", "echo done"]
        );
        let check = alpha.health_check.as_ref().map(|check| {
            (
                check.command.as_str(),
                check.retries,
                check.interval,
                check.timeout,
            )
        });
        assert_eq!(
            check,
            Some((
                "curl -fsS http://127.0.0.1:8080/healthz",
                5,
                Duration::from_millis(500),
                Duration::from_secs(3)
            ))
        );

        let zeta = &inventory.services[1];
        assert_eq!(zeta.hosts, vec![1]);
        assert_eq!(zeta.base_dir, "apps/zeta");
        assert_eq!(
            zeta.artifact,
            Some(ArtifactSource::Url(
                "https://example.com/zeta.tar.gz?token=abc".to_string()
            ))
        );
        assert_eq!(
            zeta.sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert_eq!(zeta.fetch, Fetch::Host);
        assert!(!zeta.allow_setid, "allow_setid defaults to false");

        let notify = inventory
            .notify
            .as_ref()
            .map(|notify| notify.webhook.as_str());
        assert_eq!(notify, Some("https://chat.example.com/hooks/secret-token"));
        assert!(
            !format!("{inventory:?}").contains("secret-token"),
            "Debug redacts the webhook"
        );
    }

    #[test]
    fn example_inventory_parses() {
        let text = include_str!("../../inventory.example.toml");
        let inventory = match parse_str(text, Path::new("inventory.example.toml")) {
            Ok(inventory) => inventory,
            Err(error) => panic!("inventory.example.toml is invalid: {error}"),
        };
        assert_eq!(inventory.hosts.len(), 2);
        assert_eq!(inventory.services.len(), 1);
        let service = &inventory.services[0];
        assert_eq!(
            service.artifact,
            Some(ArtifactSource::Path(PathBuf::from(
                "dist/myapp-v1.2.3.tar.gz"
            )))
        );
        assert!(service.version.is_some());
        assert!(service.health_check.is_some());
        assert!(inventory.notify.is_some());
    }

    // ----- file and syntax errors -----

    #[test]
    fn load_reports_a_missing_file() {
        let path = Path::new("/nonexistent/deploy-inventory-test/deploy.toml");
        let Err(error) = load(path) else {
            panic!("loading a missing file must fail");
        };
        assert_eq!(error.line, 0);
        assert_eq!(error.key, "");
        assert_eq!(
            error.message,
            "cannot read inventory: No such file or directory"
        );
        assert_eq!(
            error.to_string(),
            "/nonexistent/deploy-inventory-test/deploy.toml: cannot read inventory: No such file or directory"
        );
    }

    #[test]
    fn load_reads_a_file() {
        let directory = std::env::temp_dir().join(format!("inventory-test-{}", std::process::id()));
        let result = std::fs::create_dir_all(&directory)
            .and_then(|()| std::fs::write(directory.join("deploy.toml"), ONE_HOST));
        assert!(result.is_ok(), "cannot write the test file: {result:?}");
        let loaded = load(&directory.join("deploy.toml"));
        let _ = std::fs::remove_dir_all(&directory);
        assert_eq!(loaded.map(|inventory| inventory.hosts.len()).ok(), Some(1));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let message = error("[ssh]\nuser = \"deploy\"\nport = \n", "ssh.port", 3);
        assert!(message.starts_with("invalid TOML"), "{message}");
        error(
            "[[hosts]]\nname = \"web1\"\nname = \"web2\"\n",
            "hosts[0].name",
            3,
        );
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nbase_dir = \"/b\"\n"),
            "services.app.base_dir",
            14,
        );
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.hooks]\nafter_switch = []\nafter_switch = []\n",
            ),
            "services.app.hooks.after_switch",
            16,
        );
        error(&format!("{ONE_HOST}tags = [\"a\",\n"), "hosts[0]", 4);
    }

    #[test]
    fn error_display_format() {
        let Err(error) = parse(&format!("{ONE_HOST}port = 0\n")) else {
            panic!("port 0 must be rejected");
        };
        assert_eq!(
            error.to_string(),
            "/etc/deploy/prod.toml:4: hosts[0].port: port 0 is out of range (1 to 65535)"
        );
    }

    // ----- unknown keys and wrong types -----

    #[test]
    fn unknown_top_level_key() {
        let message = error(&format!("{ONE_HOST}\n[sshh]\nuser = \"x\"\n"), "sshh", 5);
        assert!(message.starts_with("unknown key `sshh`"), "{message}");
    }

    #[test]
    fn unknown_key_in_each_section() {
        error("[ssh]\nusr = \"x\"\n", "ssh.usr", 2);
        error("[deploy]\nparallel = 3\n", "deploy.parallel", 2);
        error(&format!("{TWO_HOSTS}prot = 22\n"), "hosts[1].prot", 12);
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nkeep = 3\n"),
            "services.app.keep",
            14,
        );
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\n[services.app.hooks]\nbefore = []\n"),
            "services.app.hooks.before",
            15,
        );
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.health_check]\ncommand = \"true\"\ntries = 2\n",
            ),
            "services.app.health_check.tries",
            16,
        );
        error(
            &format!("{ONE_HOST}[notify]\nwebhook = \"https://x\"\nchannel = \"ops\"\n"),
            "notify.channel",
            6,
        );
    }

    #[test]
    fn missing_required_keys() {
        error("[[hosts]]\nname = \"web1\"\n", "hosts[0].address", 1);
        error(
            &with_service("[services.app]\nversion = \"1\"\n"),
            "services.app.base_dir",
            12,
        );
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.health_check]\nretries = 2\n",
            ),
            "services.app.health_check.command",
            14,
        );
    }

    #[test]
    fn wrong_value_type() {
        let message = error(&format!("{ONE_HOST}port = \"22\"\n"), "hosts[0].port", 4);
        assert_eq!(message, "invalid type: string \"22\", expected an integer");
        error("[deploy]\nconcurrency = 2.5\n", "deploy.concurrency", 2);
        let message = error("ssh = 5\n", "ssh", 1);
        assert_eq!(message, "invalid type: integer `5`, expected a table");
        let message = error("[hosts]\nname = \"a\"\n", "hosts", 1);
        assert_eq!(message, "invalid type: table, expected an array");
        error(&format!("{ONE_HOST}tags = \"web\"\n"), "hosts[0].tags", 4);
    }

    // ----- hosts -----

    #[test]
    fn at_least_one_host() {
        let message = error("[ssh]\nuser = \"deploy\"\n", "hosts", 0);
        assert!(message.contains("at least one"), "{message}");
        error("hosts = []\n", "hosts", 1);
    }

    #[test]
    fn host_name_rules() {
        error(
            "[[hosts]]\nname = \"\"\naddress = \"a\"\n",
            "hosts[0].name",
            2,
        );
        let message = error(
            "[[hosts]]\nname = \"web 1\"\naddress = \"a\"\n",
            "hosts[0].name",
            2,
        );
        assert!(message.contains("A-Z a-z 0-9 . _ -"), "{message}");
        error(
            "[[hosts]]\nname = \"web/1\"\naddress = \"a\"\n",
            "hosts[0].name",
            2,
        );
        parsed("[[hosts]]\nname = \"Web-1.eu_west\"\naddress = \"a\"\n");
    }

    #[test]
    fn duplicate_host_name_points_at_the_second() {
        let text = format!("{ONE_HOST}\n[[hosts]]\nname = \"web1\"\naddress = \"10.0.0.12\"\n");
        let message = error(&text, "hosts[1].name", 6);
        assert!(message.contains("duplicate host name `web1`"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn host_address_rules() {
        error(
            "[[hosts]]\nname = \"a\"\naddress = \"\"\n",
            "hosts[0].address",
            3,
        );
        error(
            "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1 \"\n",
            "hosts[0].address",
            3,
        );
    }

    #[test]
    fn port_range() {
        error(&format!("{ONE_HOST}port = 0\n"), "hosts[0].port", 4);
        let message = error(&format!("{ONE_HOST}port = 70000\n"), "hosts[0].port", 4);
        assert!(message.contains("70000"), "{message}");
        error(&format!("{ONE_HOST}port = -1\n"), "hosts[0].port", 4);
        error(&format!("[ssh]\nport = 65536\n{ONE_HOST}"), "ssh.port", 2);
        assert_eq!(
            parsed(&format!("{ONE_HOST}port = 65535\n")).hosts[0].port,
            65535
        );
        assert_eq!(parsed(&format!("{ONE_HOST}port = 1\n")).hosts[0].port, 1);
    }

    #[test]
    fn user_rules() {
        error(&format!("{ONE_HOST}user = \"\"\n"), "hosts[0].user", 4);
        error(
            &format!("[ssh]\nuser = \"de ploy\"\n{ONE_HOST}"),
            "ssh.user",
            2,
        );
    }

    #[test]
    fn host_settings_override_ssh_settings() {
        let text = format!(
            "[ssh]\nuser = \"deploy\"\nport = 2200\nidentity_files = [\"/keys/a\"]\n{TWO_HOSTS}user = \"admin\"\nport = 2222\nidentity_files = [\"/keys/b\"]\n"
        );
        let inventory = parsed(&text);
        let web1 = &inventory.hosts[0];
        assert_eq!((web1.user.as_str(), web1.port), ("deploy", 2200));
        assert_eq!(web1.identity_files, vec![PathBuf::from("/keys/a")]);
        let db1 = &inventory.hosts[1];
        assert_eq!((db1.user.as_str(), db1.port), ("admin", 2222));
        assert_eq!(db1.identity_files, vec![PathBuf::from("/keys/b")]);
    }

    #[test]
    fn local_path_lists_reject_empty_entries() {
        error(
            &format!("[ssh]\nidentity_files = [\"\"]\n{ONE_HOST}"),
            "ssh.identity_files[0]",
            2,
        );
        error(
            &format!("[ssh]\nknown_hosts = []\n{ONE_HOST}"),
            "ssh.known_hosts",
            2,
        );
        error(
            &format!("{ONE_HOST}identity_files = [\"/a\", \" \"]\n"),
            "hosts[0].identity_files[1]",
            4,
        );
    }

    #[test]
    fn tag_rules() {
        error(
            &format!("{ONE_HOST}tags = [\"web\", \"e u\"]\n"),
            "hosts[0].tags[1]",
            4,
        );
        error(&format!("{ONE_HOST}tags = [\"\"]\n"), "hosts[0].tags[0]", 4);
    }

    #[test]
    fn tag_equal_to_a_host_name_is_ambiguous() {
        let text =
            format!("{TWO_HOSTS}\n[[hosts]]\nname = \"web2\"\naddress = \"b\"\ntags = [\"db1\"]\n");
        let message = error(&text, "hosts[2].tags[0]", 16);
        assert!(message.contains("ambiguous"), "{message}");
    }

    #[test]
    fn host_key_rules() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        for valid in [
            format!("ssh-ed25519 {key}"),
            format!("ecdsa-sha2-nistp256 {key} comment"),
            format!("sk-ssh-ed25519@openssh.com {key}"),
        ] {
            parsed(&format!("{ONE_HOST}host_key = \"{valid}\"\n"));
        }
        for invalid in [
            key.to_string(),
            format!("rsa {key}"),
            format!("ssh-ed25519 {key} two words"),
            "ssh-ed25519 not*base64".to_string(),
            "ssh-ed25519 AAA".to_string(),
            String::new(),
        ] {
            error(
                &format!("{ONE_HOST}host_key = \"{invalid}\"\n"),
                "hosts[0].host_key",
                4,
            );
        }
    }

    // ----- [ssh] and [deploy] -----

    #[test]
    fn host_key_policy_values() {
        error(
            &format!("[ssh]\nhost_key_policy = \"yes\"\n{ONE_HOST}"),
            "ssh.host_key_policy",
            2,
        );
        error(
            &format!("[ssh]\nhost_key_policy = \"Strict\"\n{ONE_HOST}"),
            "ssh.host_key_policy",
            2,
        );
        let inventory = parsed(&format!("[ssh]\nhost_key_policy = \"strict\"\n{ONE_HOST}"));
        assert_eq!(inventory.ssh.host_key_policy, HostKeyPolicy::Strict);
    }

    #[test]
    fn on_failure_values() {
        error(
            &format!("[deploy]\non_failure = \"abort\"\n{ONE_HOST}"),
            "deploy.on_failure",
            2,
        );
        for (text, expected) in [
            ("rollback", OnFailure::Rollback),
            ("halt", OnFailure::Halt),
            ("continue", OnFailure::Continue),
        ] {
            let inventory = parsed(&format!("[deploy]\non_failure = \"{text}\"\n{ONE_HOST}"));
            assert_eq!(inventory.deploy.on_failure, expected);
        }
    }

    #[test]
    fn durations() {
        let message = error(
            &format!("[ssh]\nconnect_timeout = \"10 parsecs\"\n{ONE_HOST}"),
            "ssh.connect_timeout",
            2,
        );
        assert!(message.contains("invalid duration"), "{message}");
        error(
            &format!("[ssh]\nconnect_timeout = \"0s\"\n{ONE_HOST}"),
            "ssh.connect_timeout",
            2,
        );
        error(
            &format!("[deploy]\nhost_timeout = \"0m\"\n{ONE_HOST}"),
            "deploy.host_timeout",
            2,
        );
        error(
            &format!("[deploy]\nhost_timeout = \"5\"\n{ONE_HOST}"),
            "deploy.host_timeout",
            2,
        );
        let inventory = parsed(&format!("[deploy]\nhost_timeout = \"1h 30m\"\n{ONE_HOST}"));
        assert_eq!(inventory.deploy.host_timeout, Duration::from_secs(5400));
    }

    #[test]
    fn max_failures_values() {
        for (value, expected) in [
            ("0", MaxFailures::Count(0)),
            ("3", MaxFailures::Count(3)),
            ("\"0%\"", MaxFailures::Percent(0)),
            ("\"10%\"", MaxFailures::Percent(10)),
            ("\"100%\"", MaxFailures::Percent(100)),
        ] {
            let inventory = parsed(&format!("[deploy]\nmax_failures = {value}\n{ONE_HOST}"));
            assert_eq!(inventory.deploy.max_failures, expected, "{value}");
        }
        for value in [
            "-1", "\"101%\"", "\"10\"", "\"%\"", "\"-5%\"", "\"1.5%\"", "\" 5%\"", "1.5", "true",
        ] {
            error(
                &format!("[deploy]\nmax_failures = {value}\n{ONE_HOST}"),
                "deploy.max_failures",
                2,
            );
        }
    }

    #[test]
    fn concurrency_and_batch_size() {
        error(
            &format!("[deploy]\nconcurrency = 0\n{ONE_HOST}"),
            "deploy.concurrency",
            2,
        );
        error(
            &format!("[deploy]\nbatch_size = -1\n{ONE_HOST}"),
            "deploy.batch_size",
            2,
        );
        let inventory = parsed(&format!(
            "[deploy]\nconcurrency = 1\nbatch_size = 0\n{ONE_HOST}"
        ));
        assert_eq!(
            (inventory.deploy.concurrency, inventory.deploy.batch_size),
            (1, super::super::BatchSize::All)
        );
    }

    // ----- services -----

    #[test]
    fn service_name_rules() {
        error(
            &with_service("[services.\"my app\"]\nbase_dir = \"/a\"\n"),
            "services.my app",
            12,
        );
        parsed(&with_service(
            "[services.\"my-app_2.0\"]\nbase_dir = \"/a\"\n",
        ));
    }

    #[test]
    fn service_host_selectors() {
        let inventory = parsed(&with_service(
            "[services.a]\nhosts = [\"db\"]\nbase_dir = \"/a\"\n[services.b]\nhosts = [\"db1\", \"web1\"]\nbase_dir = \"/b\"\n[services.c]\nhosts = [\"eu\"]\nbase_dir = \"/c\"\n",
        ));
        let selections: Vec<&[usize]> = inventory
            .services
            .iter()
            .map(|service| service.hosts.as_slice())
            .collect();
        assert_eq!(selections, vec![&[1][..], &[0, 1][..], &[0, 1][..]]);

        let message = error(
            &with_service("[services.app]\nhosts = [\"web\", \"asia\"]\nbase_dir = \"/a\"\n"),
            "services.app.hosts[1]",
            13,
        );
        assert!(message.contains("no host or tag named `asia`"), "{message}");
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nhosts = []\n"),
            "services.app.hosts",
            14,
        );
    }

    #[test]
    fn base_dir_rules() {
        let service =
            |base_dir: &str| with_service(&format!("[services.app]\nbase_dir = \"{base_dir}\"\n"));
        for invalid in [
            "",
            "/",
            "//",
            "/opt/../etc",
            "../app",
            "/opt/a\\nb",
            "/opt/a\\u0000b",
            "~",
            "~bob/app",
            ".",
            " /opt/a",
        ] {
            error(&service(invalid), "services.app.base_dir", 13);
        }
        for (valid, normalized) in [
            ("/opt/app", "/opt/app"),
            ("/opt/app/", "/opt/app"),
            ("apps/app", "apps/app"),
            ("./apps//app/.", "apps/app"),
            ("~/apps/app", "apps/app"),
            ("/srv/my app", "/srv/my app"),
        ] {
            assert_eq!(
                parsed(&service(valid)).services[0].base_dir,
                normalized,
                "{valid}"
            );
        }
    }

    #[test]
    fn version_in_inventory() {
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nversion = \".1\"\n"),
            "services.app.version",
            14,
        );
        let inventory = parsed(&with_service(
            "[services.app]\nbase_dir = \"/a\"\nversion = \"2024.01.02-rc1\"\n",
        ));
        assert_eq!(
            inventory.services[0]
                .version
                .as_ref()
                .map(|version| version.to_string()),
            Some("2024.01.02-rc1".to_string())
        );
    }

    #[test]
    fn artifact_sources() {
        let service = |artifact: &str| {
            with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\nartifact = \"{artifact}\"\n"
            ))
        };
        let artifact = |text: &str| parsed(&service(text)).services[0].artifact.clone();
        assert_eq!(
            artifact("https://example.com/a.tar.gz"),
            Some(ArtifactSource::Url(
                "https://example.com/a.tar.gz".to_string()
            ))
        );
        assert_eq!(
            artifact("http://10.0.0.1:8080/a.tar.gz"),
            Some(ArtifactSource::Url(
                "http://10.0.0.1:8080/a.tar.gz".to_string()
            ))
        );
        assert_eq!(
            artifact("/srv/a.tar.gz"),
            Some(ArtifactSource::Path(PathBuf::from("/srv/a.tar.gz")))
        );
        assert_eq!(
            artifact("dist/a.tar.gz"),
            Some(ArtifactSource::Path(PathBuf::from(
                "/etc/deploy/dist/a.tar.gz"
            )))
        );
        assert_eq!(
            artifact("~/a.tar.gz"),
            Some(ArtifactSource::Path(expand_tilde("~/a.tar.gz")))
        );
        assert_eq!(parsed(&service("a.tar.gz")).services[0].artifact_line, 14);

        let relative = parse_str(&service("dist/a.tar.gz"), Path::new("deploy.toml"));
        assert_eq!(
            relative
                .ok()
                .and_then(|inventory| inventory.services[0].artifact.clone()),
            Some(ArtifactSource::Path(PathBuf::from("dist/a.tar.gz")))
        );

        for invalid in [
            "",
            "ftp://example.com/a.tar.gz",
            "https://",
            "https:///a.tar.gz",
            "https://exa mple.com/a?token=s3cr3t",
        ] {
            let message = error(&service(invalid), "services.app.artifact", 14);
            assert!(!message.contains("s3cr3t"), "URL echoed: {message}");
        }
    }

    #[test]
    fn artifact_url_query_is_never_echoed() {
        let text = with_service(
            "[services.app]\nbase_dir = \"/a\"\nartifact = \"https://x.example.com/a.tar.gz?sig=s3cr3t\"\nfetch = \"host\"\n",
        );
        let Err(error) = parse(&text) else {
            panic!("fetch = host without sha256 must fail");
        };
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }

    #[test]
    fn sha256_rules() {
        let service = |sha256: &str| {
            with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\nsha256 = \"{sha256}\"\n"
            ))
        };
        let valid = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            parsed(&service(valid)).services[0].sha256.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        error(&service(&valid[1..]), "services.app.sha256", 14);
        error(&service(&format!("{valid}0")), "services.app.sha256", 14);
        error(
            &service(&valid.replace('A', "g")),
            "services.app.sha256",
            14,
        );
    }

    #[test]
    fn fetch_rules() {
        let sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let service =
            |body: &str| with_service(&format!("[services.app]\nbase_dir = \"/a\"\n{body}"));
        error(&service("fetch = \"ssh\"\n"), "services.app.fetch", 14);
        let message = error(
            &service(&format!(
                "artifact = \"dist/a.tar.gz\"\nsha256 = \"{sha256}\"\nfetch = \"host\"\n"
            )),
            "services.app.fetch",
            16,
        );
        assert!(message.contains("URL"), "{message}");
        error(
            &service(&format!("sha256 = \"{sha256}\"\nfetch = \"host\"\n")),
            "services.app.fetch",
            15,
        );
        let message = error(
            &service("artifact = \"https://example.com/a.tar.gz\"\nfetch = \"host\"\n"),
            "services.app.fetch",
            15,
        );
        assert!(message.contains("sha256"), "{message}");
        let inventory = parsed(&service(
            "artifact = \"https://example.com/a.tar.gz\"\nfetch = \"controller\"\n",
        ));
        assert_eq!(inventory.services[0].fetch, Fetch::Controller);
    }

    #[test]
    fn keep_releases_at_least_one() {
        error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nkeep_releases = 0\n"),
            "services.app.keep_releases",
            14,
        );
        let inventory = parsed(&with_service(
            "[services.app]\nbase_dir = \"/a\"\nkeep_releases = 1\n",
        ));
        assert_eq!(inventory.services[0].keep_releases, 1);
    }

    #[test]
    fn strip_components_is_a_non_negative_integer() {
        for (value, expected) in [("0", Some(0)), ("2", Some(2))] {
            let inventory = parsed(&with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\nstrip_components = {value}\n"
            )));
            assert_eq!(inventory.services[0].strip_components, expected);
        }
        let inventory = parsed(&with_service("[services.app]\nbase_dir = \"/a\"\n"));
        assert_eq!(inventory.services[0].strip_components, None);
        let message = error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nstrip_components = -1\n"),
            "services.app.strip_components",
            14,
        );
        assert!(message.contains("at least 0, not -1"), "{message}");
        for value in ["\"1\"", "1.5", "true"] {
            error(
                &with_service(&format!(
                    "[services.app]\nbase_dir = \"/a\"\nstrip_components = {value}\n"
                )),
                "services.app.strip_components",
                14,
            );
        }
    }

    #[test]
    fn allow_setid_is_a_boolean() {
        for (value, expected) in [("true", true), ("false", false)] {
            let inventory = parsed(&with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\nallow_setid = {value}\n"
            )));
            assert_eq!(inventory.services[0].allow_setid, expected);
        }
        for value in ["\"true\"", "1", "[true]"] {
            let message = error(
                &with_service(&format!(
                    "[services.app]\nbase_dir = \"/a\"\nallow_setid = {value}\n"
                )),
                "services.app.allow_setid",
                14,
            );
            assert!(message.contains("expected a boolean"), "{message}");
        }
        let message = error(
            &with_service("[services.app]\nbase_dir = \"/a\"\nallow_setuid = true\n"),
            "services.app.allow_setuid",
            14,
        );
        assert!(
            message.starts_with("unknown key `allow_setuid`"),
            "{message}"
        );
        // A service-level key only.
        error("[ssh]\nallow_setid = true\n", "ssh.allow_setid", 2);
        error(
            &format!("{ONE_HOST}allow_setid = true\n"),
            "hosts[0].allow_setid",
            4,
        );
    }

    #[test]
    fn shared_path_rules() {
        let service = |paths: &str| {
            with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\nshared_paths = [\n  \"log\",\n  {paths}\n]\n"
            ))
        };
        for invalid in [
            "\"\"",
            "\"./\"",
            "\"/etc/app.env\"",
            "\"../secrets\"",
            "\"config/../../x\"",
            "\"a\\nb\"",
            "\"a\\u0000b\"",
        ] {
            error(&service(invalid), "services.app.shared_paths[1]", 16);
        }
        let message = error(&service("\"./log/\""), "services.app.shared_paths[1]", 16);
        assert!(message.contains("duplicate shared path `log`"), "{message}");
        let message = error(&service("\"log/app\""), "services.app.shared_paths[1]", 16);
        assert!(message.contains("inside"), "{message}");
        let inventory = parsed(&service("\"logs\""));
        assert_eq!(inventory.services[0].shared_paths, vec!["log", "logs"]);
    }

    #[test]
    fn hook_and_health_check_commands_must_not_be_empty() {
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.hooks]\nafter_switch = [\"true\", \"  \"]\n",
            ),
            "services.app.hooks.after_switch[1]",
            15,
        );
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.hooks]\nbefore_switch = [\"\"]\n",
            ),
            "services.app.hooks.before_switch[0]",
            15,
        );
        error(
            &with_service(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.health_check]\ncommand = \"\"\n",
            ),
            "services.app.health_check.command",
            15,
        );
    }

    #[test]
    fn health_check_settings() {
        let service = |body: &str| {
            with_service(&format!(
                "[services.app]\nbase_dir = \"/a\"\n[services.app.health_check]\ncommand = \"true\"\n{body}"
            ))
        };
        error(
            &service("retries = 0\n"),
            "services.app.health_check.retries",
            16,
        );
        error(
            &service("retries = 5000000000\n"),
            "services.app.health_check.retries",
            16,
        );
        error(
            &service("interval = \"soon\"\n"),
            "services.app.health_check.interval",
            16,
        );
        error(
            &service("timeout = \"0s\"\n"),
            "services.app.health_check.timeout",
            16,
        );
        let inventory = parsed(&service("interval = \"0s\"\n"));
        let check = inventory.services[0]
            .health_check
            .as_ref()
            .map(|check| (check.retries, check.interval, check.timeout));
        assert_eq!(check, Some((3, Duration::ZERO, Duration::from_secs(5))));
    }

    // ----- [notify] -----

    #[test]
    fn webhook_must_be_http_and_is_never_echoed() {
        for invalid in [
            "ftp://chat.example.com/hooks/T0KEN",
            "chat.example.com/hooks/T0KEN",
            "https://",
            "https://chat example/T0KEN",
        ] {
            let text = format!("{ONE_HOST}[notify]\nwebhook = \"{invalid}\"\n");
            let Err(error) = parse(&text) else {
                panic!("webhook {invalid} must be rejected");
            };
            assert_eq!((error.key.as_str(), error.line), ("notify.webhook", 5));
            assert_eq!(error.message, "webhook must be an http(s) URL");
            assert!(!error.to_string().contains("T0KEN"), "{error}");
        }
        let inventory = parsed(&format!(
            "{ONE_HOST}[notify]\nwebhook = \"http://chat.example.com/hooks/T0KEN\"\n"
        ));
        assert!(!format!("{:?}", inventory.notify).contains("T0KEN"));
    }

    // ----- selection -----

    #[test]
    fn select_hosts_by_names_and_tags() {
        let text = format!(
            "{TWO_HOSTS}\n[[hosts]]\nname = \"web2\"\naddress = \"10.0.0.12\"\ntags = [\"web\", \"us\"]\n"
        );
        let inventory = parsed(&text);
        assert_eq!(inventory.select_hosts(None), Ok(vec![0, 1, 2]));
        assert_eq!(inventory.select_hosts(Some("web")), Ok(vec![0, 2]));
        assert_eq!(
            inventory.select_hosts(Some("web2,db1")),
            Ok(vec![1, 2]),
            "inventory order"
        );
        assert_eq!(inventory.select_hosts(Some("eu, us")), Ok(vec![0, 1, 2]));
        assert_eq!(
            inventory.select_hosts(Some("web1,web,web1")),
            Ok(vec![0, 2]),
            "union"
        );

        let Err(message) = inventory.select_hosts(Some("web1,asia")) else {
            panic!("unknown selector must fail");
        };
        assert_eq!(
            message,
            "no host or tag named `asia` in /etc/deploy/prod.toml"
        );
        assert!(inventory.select_hosts(Some("")).is_err());
        assert!(inventory.select_hosts(Some(" , ")).is_err());
        assert!(
            inventory.select_hosts(Some("WEB1")).is_err(),
            "names are case-sensitive"
        );
    }

    // ----- artifact files -----

    #[test]
    fn check_artifact_files_reports_a_missing_file() {
        let text = with_service(
            "[services.app]\nbase_dir = \"/a\"\nartifact = \"missing/app.tar.gz\"\n[services.web]\nbase_dir = \"/w\"\nartifact = \"https://example.com/w.tar.gz\"\n",
        );
        let inventory = match parse_str(&text, Path::new("/nonexistent/deploy-test/deploy.toml")) {
            Ok(inventory) => inventory,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            inventory
                .check_artifact_files(&[1])
                .map_err(|error| error.to_string()),
            Ok(())
        );
        assert_eq!(
            inventory
                .check_artifact_files(&[])
                .map_err(|error| error.to_string()),
            Ok(())
        );
        let Err(error) = inventory.check_artifact_files(&[0, 1]) else {
            panic!("a missing artifact must be reported");
        };
        assert_eq!(error.line, 14);
        assert_eq!(error.key, "services.app.artifact");
        assert_eq!(
            error.file,
            Path::new("/nonexistent/deploy-test/deploy.toml")
        );
        assert_eq!(
            error.message,
            "artifact file not found: /nonexistent/deploy-test/missing/app.tar.gz"
        );
        assert!(inventory.check_artifact_files(&[7]).is_err());
    }

    #[test]
    fn check_artifact_files_accepts_an_existing_file_and_rejects_a_directory() {
        let directory =
            std::env::temp_dir().join(format!("inventory-artifact-{}", std::process::id()));
        let written = std::fs::create_dir_all(directory.join("dist"))
            .and_then(|()| std::fs::write(directory.join("dist/app.tar.gz"), b"x"));
        assert!(written.is_ok(), "{written:?}");
        let text = with_service(
            "[services.app]\nbase_dir = \"/a\"\nartifact = \"dist/app.tar.gz\"\n[services.dir]\nbase_dir = \"/d\"\nartifact = \"dist\"\n",
        );
        let result = parse_str(&text, &directory.join("deploy.toml")).map(|inventory| {
            (
                inventory
                    .check_artifact_files(&[0])
                    .map_err(|error| error.message),
                inventory
                    .check_artifact_files(&[1])
                    .map_err(|error| error.message),
            )
        });
        let _ = std::fs::remove_dir_all(&directory);
        let Ok((file, folder)) = result else {
            panic!("inventory must parse: {result:?}");
        };
        assert_eq!(file, Ok(()));
        assert!(folder.is_err_and(|message| message.starts_with("artifact is not a regular file")));
    }

    // ----- helpers -----

    #[test]
    fn default_user_falls_back_to_root() {
        assert_eq!(default_user(Some("alice".to_string())), "alice");
        assert_eq!(default_user(None), "root");
        assert_eq!(default_user(Some(String::new())), "root");
    }
}

/// Property tests: the parser never panics, whatever the text, and what it accepts is valid.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::inventory::{load, parse_str};
    use proptest::prelude::*;
    use std::io;

    const FILE: &str = "/etc/deploy/prod.toml";

    /// A valid inventory, one line per element, that mutations start from.
    const VALID: [&str; 25] = [
        "[ssh]",
        "user = \"deploy\"",
        "connect_timeout = \"5s\"",
        "[deploy]",
        "concurrency = 2",
        "max_failures = \"10%\"",
        "[[hosts]]",
        "name = \"web1\"",
        "address = \"10.0.0.1\"",
        "tags = [\"web\"]",
        "[[hosts]]",
        "name = \"db1\"",
        "address = \"10.0.0.2\"",
        "port = 2222",
        "[services.app]",
        "hosts = [\"web\"]",
        "base_dir = \"/opt/app\"",
        "version = \"v1\"",
        "artifact = \"https://example.com/app.tar.gz\"",
        "shared_paths = [\"log\"]",
        "allow_setid = true",
        "[services.app.health_check]",
        "command = \"true\"",
        "[notify]",
        "webhook = \"https://chat.example.com/hooks/x\"",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "name", "address", "port", "user", "tags", "host_key", "identity_files",
                "known_hosts", "host_key_policy", "connect_timeout", "concurrency",
                "host_timeout", "on_failure", "max_failures", "batch_size", "hosts", "base_dir",
                "version", "artifact", "sha256", "fetch", "keep_releases", "shared_paths",
                "allow_setid", "before_switch", "after_switch", "command", "retries", "interval",
                "timeout", "webhook", "ssh", "deploy", "services", "notify", "\"quoted key\"",
                "a.b", "",
            ])
            .prop_map(str::to_string),
            1 => "\\PC{0,12}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "true", "false", "0", "-1", "22", "65536", "99999999999999999999", "2.5", "nan",
                "inf", "1979-05-27T07:32:00Z", "[]", "[1, \"a\"]", "{}", "{ a = 1 }",
                "\"\"", "\"/\"", "\"..\"", "\"~/\"", "\"10%\"", "\"101%\"", "\"0s\"", "\"5m\"",
                "\"web\"", "\"web1\"", "[\"web\", \"nope\"]", "\"strict\"", "\"accept-new\"",
                "\"halt\"", "\"host\"", "\"controller\"", "\"https://x/\"", "\"http://\"",
                "\"ssh-ed25519 AAAA\"", "'''multi\nline'''", "\"\\u0000\"", "\"\\uD800\"",
            ])
            .prop_map(str::to_string),
            2 => "\"\\PC{0,20}\"",
            1 => "\\PC{0,20}",
        ]
    }

    /// One line of something TOML-shaped: a table header, `key = value`, or noise.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            2 => prop::sample::select(vec![
                "[ssh]", "[deploy]", "[[hosts]]", "[hosts]", "[services.app]",
                "[services.\"odd name\"]", "[services.app.hooks]",
                "[services.app.health_check]", "[[services.app]]", "[notify]", "[ssh",
                "[[hosts]", "[]", "[services]", "[services.app.hooks.extra]",
            ])
            .prop_map(str::to_string),
            4 => (key(), value()).prop_map(|(key, value)| format!("{key} = {value}")),
            1 => "\\PC{0,30}",
            1 => ".{0,30}",
        ]
    }

    /// The valid inventory with a few values changed, or lines replaced, inserted or removed.
    fn mutated() -> impl Strategy<Value = String> {
        let edit = (0..5u8, 0..VALID.len(), line(), value());
        prop::collection::vec(edit, 0..4).prop_map(|edits| {
            let mut lines: Vec<String> = VALID.iter().map(|line| (*line).to_string()).collect();
            for (operation, index, line, value) in edits {
                let index = index.min(lines.len().saturating_sub(1));
                match (operation, lines.get_mut(index)) {
                    (0, Some(existing)) => *existing = line,
                    (1, _) => lines.insert(index, line),
                    (2, Some(_)) => {
                        lines.remove(index);
                    }
                    (_, Some(existing)) => {
                        if let Some((key, _)) = existing.split_once(" = ") {
                            *existing = format!("{key} = {value}");
                        }
                    }
                    (_, None) => lines.push(line),
                }
            }
            lines.join("\n")
        })
    }

    fn toml_ish() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => mutated(),
            2 => prop::collection::vec(line(), 0..20).prop_map(|lines| lines.join("\n")),
        ]
    }

    /// What every parse result must satisfy: errors are located inside the text, inventories are
    /// consistent.
    fn check(text: &str) -> Result<(), TestCaseError> {
        let lines = text.split('\n').count();
        match parse_str(text, Path::new(FILE)) {
            Err(error) => {
                prop_assert_eq!(&error.file, Path::new(FILE));
                prop_assert!(
                    error.line <= lines,
                    "line {} of {lines}: {error}",
                    error.line
                );
                prop_assert!(!error.message.is_empty());
                prop_assert!(error.to_string().starts_with(FILE));
            }
            Ok(inventory) => {
                prop_assert!(!inventory.hosts.is_empty());
                prop_assert!(inventory.deploy.concurrency >= 1);
                prop_assert!(
                    inventory
                        .services
                        .windows(2)
                        .all(|pair| pair[0].name < pair[1].name)
                );
                for service in &inventory.services {
                    prop_assert!(!service.hosts.is_empty());
                    prop_assert!(
                        service
                            .hosts
                            .iter()
                            .all(|host| *host < inventory.hosts.len())
                    );
                    prop_assert!(service.keep_releases >= 1);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn toml_ish_text_never_panics(text in toml_ish()) {
            check(&text)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            check(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn host_selections_never_panic(selection in "[a-z0-9!:&*?,. -]{0,24}") {
            let inventory = match parse_str(&VALID[..21].join("\n"), Path::new(FILE)) {
                Ok(inventory) => inventory,
                Err(error) => return Err(TestCaseError::fail(error.to_string())),
            };
            if let Ok(selected) = inventory.select_hosts(Some(&selection)) {
                prop_assert!(selected.iter().all(|host| *host < inventory.hosts.len()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// `load` reads bytes from disk: invalid UTF-8 is an error, never a panic.
        #[test]
        fn load_never_panics_on_arbitrary_files(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let fail = |error: io::Error| TestCaseError::fail(error.to_string());
            let directory = tempfile::tempdir().map_err(fail)?;
            let path = directory.path().join("deploy.toml");
            std::fs::write(&path, &bytes).map_err(fail)?;
            if let Err(error) = load(&path) {
                prop_assert_eq!(error.file, path);
            }
        }
    }
}
