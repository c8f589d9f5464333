//! The host-key decision: whether the key a server presents is trusted, from the host's pin in
//! the inventory, the known_hosts files and the [`Trust`] policy (strict or accept-new); the
//! russh handler that asks for it is [`Verifier`].

use std::path::PathBuf;

use russh::client;
use russh::keys::PublicKeyOrCertificate;

use super::endpoint::Endpoint;
use super::error::SshError;
use super::known_hosts::{self, PresentedKey, Verdict};
use crate::inventory::HostKeyPolicy;

/// How host keys are trusted, shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Trust {
    pub known_hosts: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
}

/// The russh handler: decides whether the presented host key is trusted.
pub(super) struct Verifier {
    pub(super) endpoint: Endpoint,
    pub(super) trust: Trust,
}

impl client::Handler for Verifier {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return Err(SshError::HostKey(format!(
                    "host key of {} is a certificate; host certificates are not accepted",
                    self.endpoint.name
                )));
            }
        };
        let openssh = key
            .to_openssh()
            .map_err(|error| SshError::HostKey(format!("unreadable host key: {error}")))?;
        let mut fields = openssh.split_whitespace();
        let (Some(algorithm), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(SshError::HostKey("unreadable host key".to_string()));
        };
        decide_host_key(&self.endpoint, &self.trust, algorithm, blob).map(|()| true)
    }
}

/// The trust decision, separated from russh so it reads as policy.
fn decide_host_key(
    endpoint: &Endpoint,
    trust: &Trust,
    algorithm: &str,
    blob: &str,
) -> Result<(), SshError> {
    let presented = PresentedKey {
        algorithm,
        base64: blob,
    };
    let fingerprint = known_hosts::fingerprint(blob);
    let host = &endpoint.name;
    let (key_name, key_port) = endpoint.known_hosts_name();
    let lookup = known_hosts::lookup_name(key_name, key_port);

    if let Some(pin) = &endpoint.host_key_pin {
        let mut pinned = pin.split_whitespace();
        let matches = matches!(
            (pinned.next(), pinned.next()),
            (Some(pin_algorithm), Some(pin_blob))
                if known_hosts::algorithm_family(pin_algorithm)
                    == known_hosts::algorithm_family(algorithm)
                    && pin_blob == blob
        );
        if !matches {
            return Err(SshError::HostKey(format!(
                "host key of {host} ({lookup}) does not match its `host_key` pin in the inventory: \
                 the server presented {algorithm} {fingerprint}. Refusing to connect."
            )));
        }
    }

    let verdict = known_hosts::check(&trust.known_hosts, key_name, key_port, &presented)
        .map_err(|error| SshError::HostKey(error.to_string()))?;
    match verdict {
        Verdict::Trusted { .. } => Ok(()),
        Verdict::Revoked { file, line } => Err(SshError::HostKey(format!(
            "host key of {host} ({lookup}, {algorithm} {fingerprint}) is REVOKED in {}:{line}. Refusing to connect.",
            file.display()
        ))),
        Verdict::Changed { file, line } => Err(SshError::HostKey(format!(
            "HOST KEY CHANGED for {host} ({lookup}): the server presented {algorithm} {fingerprint}, \
             which differs from the key recorded in {}:{line}. This may be an attack. If the host was \
             really reinstalled, remove that line and verify the new key out of band.",
            file.display()
        ))),
        Verdict::OtherType {
            file,
            line,
            algorithm: known,
        } => Err(SshError::HostKey(format!(
            "host key of {host} ({lookup}) is recorded as {known} in {}:{line}, but the server \
             presented {algorithm} {fingerprint}. Refusing to connect; add the host's {algorithm} \
             key after verifying it.",
            file.display()
        ))),
        Verdict::Unknown => match trust.policy {
            HostKeyPolicy::AcceptNew => {
                let Some(file) = trust.known_hosts.first() else {
                    return Err(SshError::HostKey(format!(
                        "host {host} ({lookup}) is unknown and no known_hosts file is configured to record it"
                    )));
                };
                known_hosts::append(file, key_name, key_port, &presented)
                    .map_err(|error| SshError::HostKey(error.to_string()))?;
                tracing::warn!(host = %host, "trusted new host key {algorithm} {fingerprint} and recorded it in {}", file.display());
                Ok(())
            }
            HostKeyPolicy::Strict => Err(SshError::HostKey(format!(
                "host {host} ({lookup}) is not in any known_hosts file ({}); it presented {algorithm} {fingerprint}. \
                 Verify the fingerprint, then add it with `ssh-keyscan -p {} {} >> {}` or set \
                 host_key_policy = \"accept-new\".",
                trust
                    .known_hosts
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                endpoint.port,
                endpoint.address,
                trust
                    .known_hosts
                    .first()
                    .map(|path| path.display().to_string())
                    .unwrap_or_else(|| "~/.ssh/known_hosts".to_string()),
            ))),
        },
    }
}
