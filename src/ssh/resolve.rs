//! Resolving each inventory host into its [`Endpoint`]: the inventory's values (host entry,
//! then `[ssh]`) win, then the OpenSSH client config (read once per run, asked with the host's
//! `address` as the name typed after `ssh`), then the built-in defaults. Jump hosts are
//! resolved the same way under their own names. Each value keeps where it came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Asker, ClientConfig, HostConfig, Setting};
use super::endpoint::{Agent, Endpoint, Route};
use super::proxy::{JumpHop, ProxyTokens, expand_proxy_command, parse_jumps};
use crate::inventory::{Host, HostKeyPolicy, Inventory};

const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
const DEFAULT_KEEPALIVE_MAX: usize = 3;

const FROM_HOST: &str = "inventory host entry";
const FROM_SSH: &str = "inventory [ssh]";
const FROM_DEFAULT: &str = "default";

/// The endpoint of every inventory host, in inventory order. Fails (exit 2) on an unreadable
/// or invalid ssh_config, or an invalid ProxyJump in it.
pub fn resolve_endpoints(inventory: &Inventory) -> Result<Vec<Endpoint>, String> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let config = match &inventory.ssh.reach.config {
        Some(path) => ClientConfig::load(path, &home)
            .map_err(|error| format!("ssh_config (inventory [ssh] config): {error}"))?,
        None => ClientConfig::default(),
    };
    let local_user = std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "root".to_string());
    let resolver = Resolver {
        inventory,
        config,
        home,
        local_user,
        warned: std::sync::Mutex::new(Vec::new()),
    };
    inventory
        .hosts
        .iter()
        .map(|host| resolver.host(host))
        .collect()
}

struct Resolver<'a> {
    inventory: &'a Inventory,
    config: ClientConfig,
    home: PathBuf,
    local_user: String,
    /// Origins of `StrictHostKeyChecking no` already warned about (once per line per run).
    warned: std::sync::Mutex<Vec<String>>,
}

/// A value and where it came from.
fn pick<T: Clone>(
    inventory: Option<(T, &str)>,
    config: Option<&Setting<T>>,
    default: T,
) -> (T, String) {
    match (inventory, config) {
        (Some((value, from)), _) => (value, from.to_string()),
        (None, Some(setting)) => (
            setting.value.clone(),
            format!("ssh_config {}", setting.origin),
        ),
        (None, None) => (default, FROM_DEFAULT.to_string()),
    }
}

fn level(host_set: bool, ssh_set: bool) -> Option<&'static str> {
    if host_set {
        Some(FROM_HOST)
    } else if ssh_set {
        Some(FROM_SSH)
    } else {
        None
    }
}

impl Resolver<'_> {
    fn query(&self, name: &str, user: Option<&str>) -> HostConfig {
        self.config.query(
            name,
            &Asker {
                user,
                local_user: &self.local_user,
                home: &self.home,
            },
        )
    }

    fn host(&self, host: &Host) -> Result<Endpoint, String> {
        let ssh = &self.inventory.ssh;
        let set = ssh.reach.set;
        let user_from = level(host.reach.user, set.user);
        let found = self.query(&host.address, user_from.map(|_| host.user.as_str()));
        let mut origins = Vec::new();
        let (address, from) = pick(None, found.host_name.as_ref(), host.address.clone());
        let address = unbracket(&address);
        origins.push(("HostName".to_string(), address.clone(), from));
        let (port, from) = pick(
            level(host.reach.port, set.port).map(|from| (host.port, from)),
            found.port.as_ref(),
            host.port,
        );
        origins.push(("Port".to_string(), port.to_string(), from));
        let (user, from) = pick(
            user_from.map(|from| (host.user.clone(), from)),
            found.user.as_ref(),
            host.user.clone(),
        );
        origins.push(("User".to_string(), user.clone(), from));
        let (identity_files, from): (Vec<PathBuf>, String) =
            match level(host.reach.identity_files, set.identity_files) {
                Some(from) => (host.identity_files.clone(), from.to_string()),
                None if !found.identity_files.is_empty() => (
                    found
                        .identity_files
                        .iter()
                        .map(|setting| setting.value.clone())
                        .collect(),
                    found
                        .identity_files
                        .iter()
                        .map(|setting| format!("ssh_config {}", setting.origin))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                None => (host.identity_files.clone(), FROM_DEFAULT.to_string()),
            };
        origins.push((
            "IdentityFile".to_string(),
            paths_text(&identity_files),
            from,
        ));

        let mut endpoint = self.common(&host.name, &host.address, &found, &mut origins);
        endpoint.address = address;
        endpoint.port = port;
        endpoint.user = user;
        endpoint.identity_files = identity_files;
        endpoint.host_key_pin = host.host_key.clone();

        // The route: host entry, then [ssh], then ssh_config (its first ProxyJump/ProxyCommand).
        let (route_text, from) = if let Some(jump) = &host.reach.proxy_jump {
            (Some(RouteText::Jump(jump.clone())), FROM_HOST.to_string())
        } else if let Some(jump) = &ssh.reach.proxy_jump {
            (Some(RouteText::Jump(jump.clone())), FROM_SSH.to_string())
        } else if let Some(command) = &ssh.reach.proxy_command {
            (
                Some(RouteText::Command(command.clone())),
                FROM_SSH.to_string(),
            )
        } else {
            match (&found.proxy_jump, &found.proxy_command) {
                (Some(jump), Some(command))
                    if command.origin.file == jump.origin.file
                        && command.origin.line < jump.origin.line =>
                {
                    (
                        Some(RouteText::Command(command.value.clone())),
                        format!("ssh_config {}", command.origin),
                    )
                }
                (Some(jump), _) => (
                    Some(RouteText::Jump(jump.value.clone())),
                    format!("ssh_config {}", jump.origin),
                ),
                (None, Some(command)) => (
                    Some(RouteText::Command(command.value.clone())),
                    format!("ssh_config {}", command.origin),
                ),
                (None, None) => (None, FROM_DEFAULT.to_string()),
            }
        };
        endpoint.route = match route_text {
            None => Route::Direct,
            Some(RouteText::Command(command)) if command.trim().eq_ignore_ascii_case("none") => {
                Route::Direct
            }
            Some(RouteText::Command(command)) => {
                origins.push(("ProxyCommand".to_string(), command.clone(), from));
                Route::Command(expand_proxy_command(
                    &command,
                    &ProxyTokens {
                        host: &endpoint.address,
                        port: endpoint.port,
                        user: &endpoint.user,
                        original: &host.address,
                    },
                ))
            }
            Some(RouteText::Jump(text)) => {
                let hops = parse_jumps(&text)
                    .map_err(|error| format!("host {}: ProxyJump ({from}): {error}", host.name))?;
                if hops.is_empty() {
                    Route::Direct
                } else {
                    origins.push(("ProxyJump".to_string(), text.clone(), from));
                    Route::Jump(
                        hops.iter()
                            .map(|hop| self.hop(hop, &endpoint.identity_files))
                            .collect(),
                    )
                }
            }
        };
        endpoint.origins = origins;
        Ok(endpoint)
    }

    /// A jump host: its spec's user and port, else ssh_config for its name, else the
    /// inventory's `[ssh]` user and the identity files of the host behind it.
    fn hop(&self, hop: &JumpHop, behind_identities: &[PathBuf]) -> Endpoint {
        let ssh = &self.inventory.ssh;
        let found = self.query(&hop.host, hop.user.as_deref());
        let name = format!("jump host {hop}");
        let mut origins = Vec::new();
        let mut endpoint = self.common(&name, &hop.host, &found, &mut origins);
        endpoint.address = unbracket(
            &found
                .host_name
                .as_ref()
                .map(|setting| setting.value.clone())
                .unwrap_or_else(|| hop.host.clone()),
        );
        endpoint.port = hop
            .port
            .or(found.port.as_ref().map(|setting| setting.value))
            .unwrap_or(22);
        endpoint.user = hop
            .user
            .clone()
            .or(found.user.as_ref().map(|setting| setting.value.clone()))
            .or(ssh.reach.set.user.then(|| {
                self.inventory
                    .hosts
                    .first()
                    .map(|host| host.user.clone())
                    .unwrap_or_default()
            }))
            .unwrap_or_else(|| self.local_user.clone());
        endpoint.identity_files = if found.identity_files.is_empty() {
            behind_identities.to_vec()
        } else {
            found
                .identity_files
                .iter()
                .map(|setting| setting.value.clone())
                .collect()
        };
        endpoint.origins = origins;
        endpoint
    }

    /// The values resolved the same way for hosts and jump hosts.
    fn common(
        &self,
        name: &str,
        alias: &str,
        found: &HostConfig,
        origins: &mut Vec<(String, String, String)>,
    ) -> Endpoint {
        let ssh = &self.inventory.ssh;
        let set = ssh.reach.set;
        let known_hosts = if set.known_hosts {
            (ssh.known_hosts.clone(), FROM_SSH.to_string())
        } else if found.user_known_hosts.is_some() || found.global_known_hosts.is_some() {
            let mut files = Vec::new();
            let mut from = Vec::new();
            match &found.user_known_hosts {
                Some(setting) => {
                    files.extend(setting.value.iter().cloned());
                    from.push(format!("ssh_config {}", setting.origin));
                }
                None => files.extend(ssh.known_hosts.iter().cloned()),
            }
            if let Some(setting) = &found.global_known_hosts {
                files.extend(setting.value.iter().cloned());
                from.push(format!("ssh_config {}", setting.origin));
            }
            files.retain(|file| file != Path::new("none"));
            (files, from.join(", "))
        } else {
            (ssh.known_hosts.clone(), FROM_DEFAULT.to_string())
        };
        origins.push((
            "UserKnownHostsFile".to_string(),
            paths_text(&known_hosts.0),
            known_hosts.1,
        ));
        let policy = if set.host_key_policy {
            (ssh.host_key_policy, FROM_SSH.to_string())
        } else if let Some(setting) = &found.strict_host_key_checking {
            let from = format!("ssh_config {}", setting.origin);
            match setting.value.as_str() {
                "accept-new" => (HostKeyPolicy::AcceptNew, from),
                "no" | "off" | "false" => {
                    self.warn_once(&from, &setting.value);
                    (
                        ssh.host_key_policy,
                        format!("{from} (`{}` ignored: never weakened)", setting.value),
                    )
                }
                _ => (HostKeyPolicy::Strict, from),
            }
        } else {
            (ssh.host_key_policy, FROM_DEFAULT.to_string())
        };
        origins.push((
            "StrictHostKeyChecking".to_string(),
            match policy.0 {
                HostKeyPolicy::Strict => "strict".to_string(),
                HostKeyPolicy::AcceptNew => "accept-new".to_string(),
            },
            policy.1,
        ));
        let (connect_timeout, from) = pick(
            set.connect_timeout
                .then_some((ssh.connect_timeout, FROM_SSH)),
            found
                .connect_timeout
                .as_ref()
                .filter(|setting| !setting.value.is_zero()),
            ssh.connect_timeout,
        );
        origins.push((
            "ConnectTimeout".to_string(),
            humantime::format_duration(connect_timeout).to_string(),
            from,
        ));
        let agent = match &found.identity_agent {
            Some(setting) if setting.value.eq_ignore_ascii_case("none") => Agent::None,
            Some(setting) if setting.value == "SSH_AUTH_SOCK" => Agent::from_environment(),
            Some(setting) if setting.value.is_empty() => Agent::None,
            Some(setting) => Agent::Socket(PathBuf::from(&setting.value)),
            None => Agent::from_environment(),
        };
        if let Some(setting) = &found.identity_agent {
            origins.push((
                "IdentityAgent".to_string(),
                setting.value.clone(),
                format!("ssh_config {}", setting.origin),
            ));
        }
        let keepalive_interval = found
            .server_alive_interval
            .as_ref()
            .map(|setting| setting.value)
            .filter(|interval| !interval.is_zero())
            .unwrap_or(DEFAULT_KEEPALIVE);
        let keepalive_max = found
            .server_alive_count_max
            .as_ref()
            .and_then(|setting| usize::try_from(setting.value).ok())
            .filter(|count| *count > 0)
            .unwrap_or(DEFAULT_KEEPALIVE_MAX);
        if let Some(setting) = &found.host_key_alias {
            origins.push((
                "HostKeyAlias".to_string(),
                setting.value.clone(),
                format!("ssh_config {}", setting.origin),
            ));
        }
        if !found.certificate_files.is_empty() {
            origins.push((
                "CertificateFile".to_string(),
                found
                    .certificate_files
                    .iter()
                    .map(|setting| setting.value.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                found
                    .certificate_files
                    .iter()
                    .map(|setting| format!("ssh_config {}", setting.origin))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if let Some(setting) = &found.identities_only {
            origins.push((
                "IdentitiesOnly".to_string(),
                if setting.value { "yes" } else { "no" }.to_string(),
                format!("ssh_config {}", setting.origin),
            ));
        }
        Endpoint {
            name: name.to_string(),
            alias: alias.to_string(),
            address: alias.to_string(),
            port: 22,
            user: String::new(),
            identity_files: Vec::new(),
            certificate_files: found
                .certificate_files
                .iter()
                .map(|setting| setting.value.clone())
                .collect(),
            identities_only: found
                .identities_only
                .as_ref()
                .is_some_and(|setting| setting.value),
            agent,
            host_key_pin: None,
            known_hosts: known_hosts.0,
            host_key_alias: found
                .host_key_alias
                .as_ref()
                .map(|setting| setting.value.clone()),
            host_key_policy: policy.0,
            connect_timeout,
            keepalive_interval,
            keepalive_max,
            route: Route::Direct,
            origins: Vec::new(),
        }
    }

    fn warn_once(&self, from: &str, value: &str) {
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !warned.iter().any(|seen| seen == from) {
            warned.push(from.to_string());
            tracing::warn!(
                "{from}: `StrictHostKeyChecking {value}` is ignored: deploy never weakens host-key \
                 verification (unknown hosts are refused unless [ssh] host_key_policy = \"accept-new\"; \
                 a changed key is always refused)"
            );
        }
    }
}

/// Logs (info, shown with `-v`) the host's effective connection values and where each came
/// from, its jump hosts' too.
pub fn log_origins(endpoint: &Endpoint) {
    let line = |who: &Endpoint| {
        let values = who
            .origins
            .iter()
            .map(|(key, value, from)| format!("{key} {} ({from})", value.escape_debug()))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::info!(host = %endpoint.name, "{} (address {}): {values}", who.name, who.alias);
    };
    line(endpoint);
    if let Route::Jump(hops) = &endpoint.route {
        for hop in hops {
            line(hop);
        }
    }
}

enum RouteText {
    Jump(String),
    Command(String),
}

/// `[::1]` written in a HostName: the brackets are not part of the address.
fn unbracket(address: &str) -> String {
    address
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(address)
        .to_string()
}

fn paths_text(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(none)".to_string();
    }
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
