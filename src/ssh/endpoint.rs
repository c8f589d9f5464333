//! The [`Endpoint`]: everything that identifies, reaches and authenticates one host (or one
//! jump host), resolved from the inventory, the ssh_config and the defaults (see `resolve`),
//! with where each value came from.

use std::path::PathBuf;
use std::time::Duration;

use crate::inventory::HostKeyPolicy;

/// Everything that identifies, reaches and authenticates one host.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The inventory's host name (a jump host: `jump host <spec>`), used in messages.
    pub name: String,
    /// The name typed after `ssh` (the inventory `address`, or a jump hop's host): `%n`.
    pub alias: String,
    /// Where to connect (`HostName` applied; no brackets): also the known_hosts name.
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// Certificates to offer (`CertificateFile`), besides each identity's `-cert.pub`
    /// (read by certificate authentication, `auth`).
    pub certificate_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: agent keys are used only when they are one of `identity_files`.
    pub identities_only: bool,
    pub agent: Agent,
    pub host_key_pin: Option<String>,
    /// The known_hosts files this host's key is checked against (and recorded in, first).
    pub known_hosts: Vec<PathBuf>,
    /// `HostKeyAlias`: the name looked up in known_hosts instead of `address:port`.
    pub host_key_alias: Option<String>,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    pub route: Route,
    /// `(key, value, where from)` for `deploy check -v`.
    pub origins: Vec<(String, String, String)>,
}

/// How the connection's byte stream is made.
#[derive(Debug, Clone)]
pub enum Route {
    /// TCP to `address:port` (each resolved address tried in turn).
    Direct,
    /// Through jump hosts, first one first; each a full endpoint of its own.
    Jump(Vec<Endpoint>),
    /// `sh -c <command>` (tokens already expanded): its stdin/stdout is the stream.
    Command(String),
}

/// Which ssh-agent to ask for keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// None (`IdentityAgent none`, or `SSH_AUTH_SOCK` unset or empty).
    None,
    Socket(PathBuf),
}

impl Agent {
    /// `SSH_AUTH_SOCK`, where an empty value means no agent.
    pub fn from_environment() -> Agent {
        match std::env::var_os("SSH_AUTH_SOCK") {
            Some(path) if !path.is_empty() => Agent::Socket(PathBuf::from(path)),
            _ => Agent::None,
        }
    }
}

impl Endpoint {
    /// The name and port looked up in known_hosts: `HostKeyAlias` (port 22, as OpenSSH
    /// writes it without a port), else `address:port`.
    pub fn known_hosts_name(&self) -> (&str, u16) {
        match &self.host_key_alias {
            Some(alias) => (alias.as_str(), 22),
            None => (self.address.as_str(), self.port),
        }
    }

    /// `user@address:port`, brackets around IPv6.
    pub fn destination(&self) -> String {
        if self.address.contains(':') {
            format!("{}@[{}]:{}", self.user, self.address, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.address, self.port)
        }
    }

    /// What identifies one SSH login to this endpoint (without the route to it).
    pub fn login_key(&self) -> String {
        match &self.host_key_alias {
            Some(alias) => format!("{} alias={alias}", self.destination()),
            None => self.destination(),
        }
    }
}
