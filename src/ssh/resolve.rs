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
                    let behind_user = user_from.map(|_| host.user.as_str());
                    Route::Jump(
                        hops.iter()
                            .map(|hop| self.hop(hop, behind_user, &endpoint.identity_files))
                            .collect(),
                    )
                }
            }
        };
        endpoint.origins = origins;
        Ok(endpoint)
    }

    /// A jump host: its spec's user and port, else ssh_config for its name, else the user the
    /// inventory sets for the host behind it (else the local user) and that host's identity
    /// files.
    fn hop(
        &self,
        hop: &JumpHop,
        behind_user: Option<&str>,
        behind_identities: &[PathBuf],
    ) -> Endpoint {
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
            .or(behind_user.map(str::to_string))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::parse_str;

    /// Endpoints of `inventory` (with `[ssh] config` pointing at a file holding `ssh_config`).
    fn endpoints(ssh_config: &str, inventory: &str) -> Vec<Endpoint> {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        std::fs::write(&config, ssh_config).expect("write config");
        let text = inventory.replace("CONFIG", &config.display().to_string());
        let inventory = parse_str(&text, Path::new("/i.toml")).expect("valid inventory");
        resolve_endpoints(&inventory).expect("resolves")
    }

    fn origin<'a>(endpoint: &'a Endpoint, key: &str) -> &'a str {
        endpoint
            .origins
            .iter()
            .find(|(name, _, _)| name == key)
            .map(|(_, _, from)| from.as_str())
            .unwrap_or_else(|| panic!("no origin for {key}: {:?}", endpoint.origins))
    }

    const CONFIG: &str = "Host alias\n  HostName 10.0.0.5\n  Port 2200\n  User cfguser\n  IdentityFile /keys/cfg\n  UserKnownHostsFile /kh/cfg\n  StrictHostKeyChecking accept-new\n  ConnectTimeout 3\n  ServerAliveInterval 7\n";

    #[test]
    fn the_ssh_config_fills_what_the_inventory_leaves_out() {
        let found = endpoints(
            CONFIG,
            "[ssh]\nconfig = \"CONFIG\"\n[[hosts]]\nname = \"a\"\naddress = \"alias\"\n",
        );
        let a = &found[0];
        assert_eq!(
            (a.address.as_str(), a.port, a.user.as_str()),
            ("10.0.0.5", 2200, "cfguser")
        );
        assert_eq!(a.identity_files, vec![PathBuf::from("/keys/cfg")]);
        assert_eq!(a.known_hosts, vec![PathBuf::from("/kh/cfg")]);
        assert_eq!(a.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(a.connect_timeout, Duration::from_secs(3));
        assert_eq!(a.keepalive_interval, Duration::from_secs(7));
        assert!(
            origin(a, "Port").ends_with("config:3"),
            "{}",
            origin(a, "Port")
        );
        assert_eq!(a.known_hosts_name(), ("10.0.0.5", 2200));
    }

    #[test]
    fn the_inventory_wins_host_entry_first() {
        let found = endpoints(
            CONFIG,
            "[ssh]\nconfig = \"CONFIG\"\nport = 2300\nuser = \"sshuser\"\nidentity_files = [\"/keys/ssh\"]\nknown_hosts = [\"/kh/ssh\"]\nhost_key_policy = \"strict\"\nconnect_timeout = \"9s\"\n\
             [[hosts]]\nname = \"a\"\naddress = \"alias\"\nport = 2400\nuser = \"hostuser\"\n\
             [[hosts]]\nname = \"b\"\naddress = \"alias\"\n",
        );
        let (a, b) = (&found[0], &found[1]);
        assert_eq!((a.port, a.user.as_str()), (2400, "hostuser"));
        assert_eq!(origin(a, "Port"), FROM_HOST);
        assert_eq!((b.port, b.user.as_str()), (2300, "sshuser"));
        assert_eq!(origin(b, "User"), FROM_SSH);
        for endpoint in [a, b] {
            // HostName is not an inventory key: the ssh_config's applies.
            assert_eq!(endpoint.address, "10.0.0.5");
            assert_eq!(endpoint.identity_files, vec![PathBuf::from("/keys/ssh")]);
            assert_eq!(endpoint.known_hosts, vec![PathBuf::from("/kh/ssh")]);
            assert_eq!(endpoint.host_key_policy, HostKeyPolicy::Strict);
            assert_eq!(endpoint.connect_timeout, Duration::from_secs(9));
        }
    }

    #[test]
    fn defaults_without_a_config() {
        let found = endpoints(
            "",
            "[ssh]\nconfig = false\n[[hosts]]\nname = \"a\"\naddress = \"[::1]\"\n",
        );
        let a = &found[0];
        assert_eq!((a.address.as_str(), a.port), ("::1", 22));
        assert_eq!(origin(a, "Port"), FROM_DEFAULT);
        assert!(matches!(a.route, Route::Direct));
        assert_eq!(a.host_key_policy, HostKeyPolicy::Strict);
    }

    #[test]
    fn strict_host_key_checking_no_never_weakens() {
        let found = endpoints(
            "Host *\n  StrictHostKeyChecking no\n",
            "[ssh]\nconfig = \"CONFIG\"\n[[hosts]]\nname = \"a\"\naddress = \"x\"\n",
        );
        assert_eq!(found[0].host_key_policy, HostKeyPolicy::Strict);
        assert!(origin(&found[0], "StrictHostKeyChecking").contains("ignored"));
    }

    #[test]
    fn jump_hosts_resolve_through_the_config_under_their_own_names() {
        let found = endpoints(
            "Host bastion\n  HostName 192.0.2.1\n  Port 2022\n  User ops\n  HostKeyAlias bastion-key\nHost web*\n  ProxyJump bastion,u2@inner:23\n",
            "[ssh]\nconfig = \"CONFIG\"\nuser = \"deploy\"\n[[hosts]]\nname = \"a\"\naddress = \"web1\"\n\
             [[hosts]]\nname = \"b\"\naddress = \"web2\"\nproxy_jump = \"none\"\n\
             [[hosts]]\nname = \"c\"\naddress = \"db1\"\n",
        );
        let Route::Jump(hops) = &found[0].route else {
            panic!("no jump: {:?}", found[0].route);
        };
        assert_eq!(hops.len(), 2);
        assert_eq!(
            (
                hops[0].address.as_str(),
                hops[0].port,
                hops[0].user.as_str()
            ),
            ("192.0.2.1", 2022, "ops")
        );
        assert_eq!(hops[0].known_hosts_name(), ("bastion-key", 22));
        assert_eq!(hops[0].name, "jump host bastion");
        assert_eq!(
            (
                hops[1].address.as_str(),
                hops[1].port,
                hops[1].user.as_str()
            ),
            ("inner", 23, "u2")
        );
        // The target is checked under its own name.
        assert_eq!(found[0].known_hosts_name(), ("web1", 22));
        assert!(matches!(found[1].route, Route::Direct), "none = direct");
        assert!(matches!(found[2].route, Route::Direct));
    }

    #[test]
    fn proxy_command_tokens_are_expanded_per_host() {
        let found = endpoints(
            "Host app\n  HostName 10.1.1.1\n  Port 2222\n  User me\n  ProxyCommand ssh -W %h:%p %r@b # %n\n",
            "[ssh]\nconfig = \"CONFIG\"\n[[hosts]]\nname = \"a\"\naddress = \"app\"\n",
        );
        let Route::Command(command) = &found[0].route else {
            panic!("no command: {:?}", found[0].route);
        };
        assert_eq!(command, "ssh -W 10.1.1.1:2222 me@b # app");
    }

    #[test]
    fn a_bad_proxy_jump_in_the_config_is_an_error_naming_the_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config");
        std::fs::write(&config, "Host *\n  ProxyJump a:0\n").expect("write");
        let text = format!(
            "[ssh]\nconfig = \"{}\"\n[[hosts]]\nname = \"a\"\naddress = \"x\"\n",
            config.display()
        );
        let inventory = parse_str(&text, Path::new("/i.toml")).expect("valid");
        let error = resolve_endpoints(&inventory).expect_err("refused");
        assert!(error.contains("host a: ProxyJump (ssh_config"), "{error}");
    }
}
