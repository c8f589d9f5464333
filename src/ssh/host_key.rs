//! The host-key decision: whether the key or host certificate a server presents is trusted,
//! from the host's pin in the inventory, the known_hosts files (parsed once per run, shared
//! through [`KnownHosts`]) and the [`Trust`] policy (strict or accept-new); the russh handler
//! that asks for it is [`Verifier`]. A certificate is trusted only through a
//! `@cert-authority` line (never recorded by accept-new); its CA signature is checked here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::client;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};

use super::endpoint::Endpoint;
use super::error::SshError;
use super::known_hosts::{
    self, CertificateVerdict, KnownHosts, Matched, PresentedCertificate, PresentedKey, RevokedKey,
    Verdict,
};
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
    /// The run's parsed known_hosts files (for recording under accept-new).
    pub(super) known: Arc<KnownHosts>,
    /// The known_hosts lines that match this host ([`lookup`]), or why they could not be read.
    pub(super) matched: Result<Vec<Matched>, String>,
}

/// The known_hosts lines that match `endpoint`, looked up on a blocking thread (a hashed line
/// costs an HMAC per host, which must not hold up other hosts' handshakes).
pub(super) async fn lookup(
    known: &Arc<KnownHosts>,
    files: &[PathBuf],
    endpoint: &Endpoint,
) -> Result<Vec<Matched>, String> {
    let (known, files) = (known.clone(), files.to_vec());
    let (name, port) = known_hosts_name(endpoint);
    let name = name.to_string();
    known.read(&files).await;
    tokio::task::spawn_blocking(move || known.matching(&files, &name, port))
        .await
        .map_err(|error| format!("known_hosts lookup failed: {error}"))?
        .map_err(|error| error.to_string())
}

/// The name and port a host is looked up by in known_hosts (`HostKeyAlias`, else its address
/// and port); the name must be among a host certificate's principals.
pub(super) fn known_hosts_name(endpoint: &Endpoint) -> (&str, u16) {
    endpoint.known_hosts_name()
}

impl client::Handler for Verifier {
    type Error = SshError;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        let matched = self
            .matched
            .as_deref()
            .map_err(|error| SshError::HostKey(error.clone()))?;
        let decision = Decision {
            endpoint: &self.endpoint,
            trust: &self.trust,
            known: &self.known,
            matched,
        };
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                let (algorithm, blob) = openssh_fields(key)?;
                decision.plain_key(&algorithm, &blob)?;
            }
            PublicKeyOrCertificate::Certificate(certificate) => {
                decision.certificate(certificate, now())?;
            }
        }
        Ok(true)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `(algorithm, base64 blob)` of a public key, as in a known_hosts line.
fn openssh_fields(key: &PublicKey) -> Result<(String, String), SshError> {
    let openssh = key
        .to_openssh()
        .map_err(|error| SshError::HostKey(format!("unreadable host key: {error}")))?;
    let mut fields = openssh.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(algorithm), Some(blob)) => Ok((algorithm.to_string(), blob.to_string())),
        _ => Err(SshError::HostKey("unreadable host key".to_string())),
    }
}

fn key_data_fields(key: &KeyData) -> Result<(String, String), SshError> {
    openssh_fields(&PublicKey::from(key.clone()))
}

/// A time as RFC 3339 (UTC), or "forever" for OpenSSH's open end.
pub(super) fn time_text(seconds: u64) -> String {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .filter(|_| seconds < i64::MAX as u64)
        .map(|time| humantime::format_rfc3339_seconds(time).to_string())
        .unwrap_or_else(|| "forever".to_string())
}

/// One host-key decision: the host, the run's trust settings and the known_hosts lines that
/// matched the host.
struct Decision<'a> {
    endpoint: &'a Endpoint,
    trust: &'a Trust,
    known: &'a KnownHosts,
    matched: &'a [Matched],
}

impl Decision<'_> {
    fn lookup(&self) -> String {
        let (name, port) = known_hosts_name(self.endpoint);
        known_hosts::lookup_name(name, port)
    }

    fn files(&self) -> String {
        self.trust
            .known_hosts
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The inventory's `host_key` pin, when set, must name the presented (or certified) key.
    fn check_pin(&self, algorithm: &str, blob: &str) -> Result<(), SshError> {
        let Some(pin) = &self.endpoint.host_key_pin else {
            return Ok(());
        };
        let mut pinned = pin.split_whitespace();
        let matches = matches!(
            (pinned.next(), pinned.next()),
            (Some(pin_algorithm), Some(pin_blob))
                if known_hosts::algorithm_family(pin_algorithm)
                    == known_hosts::algorithm_family(algorithm)
                    && pin_blob == blob
        );
        if matches {
            return Ok(());
        }
        Err(SshError::HostKey(format!(
            "host key of {} ({}) does not match its `host_key` pin in the inventory: \
             the server presented {algorithm} {}. Refusing to connect.",
            self.endpoint.name,
            self.lookup(),
            known_hosts::fingerprint(blob)
        )))
    }

    fn plain_key(&self, algorithm: &str, blob: &str) -> Result<(), SshError> {
        self.check_pin(algorithm, blob)?;
        let presented = PresentedKey {
            algorithm,
            base64: blob,
        };
        match known_hosts::decide_key(self.matched, &presented) {
            Verdict::Unknown => self.unknown_key(&presented),
            verdict => self.known_key_outcome(verdict, algorithm, blob),
        }
    }

    /// Every verdict but `Unknown` (which depends on the policy, and on whether the key came
    /// in a certificate).
    fn known_key_outcome(
        &self,
        verdict: Verdict,
        algorithm: &str,
        blob: &str,
    ) -> Result<(), SshError> {
        let host = &self.endpoint.name;
        let lookup = self.lookup();
        let fingerprint = known_hosts::fingerprint(blob);
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
            Verdict::Unknown => Err(SshError::HostKey(format!(
                "host {host} ({lookup}) is not in any known_hosts file ({})",
                self.files()
            ))),
        }
    }

    /// A plain key no line mentions: recorded under accept-new, refused under strict.
    fn unknown_key(&self, presented: &PresentedKey) -> Result<(), SshError> {
        let host = &self.endpoint.name;
        let lookup = self.lookup();
        let algorithm = presented.algorithm;
        let fingerprint = known_hosts::fingerprint(presented.base64);
        match self.trust.policy {
            HostKeyPolicy::AcceptNew => {
                let Some(file) = self.trust.known_hosts.first() else {
                    return Err(SshError::HostKey(format!(
                        "host {host} ({lookup}) is unknown and no known_hosts file is configured to record it"
                    )));
                };
                self.known
                    .record(
                        file,
                        known_hosts_name(self.endpoint).0,
                        known_hosts_name(self.endpoint).1,
                        presented,
                    )
                    .map_err(|error| SshError::HostKey(error.to_string()))?;
                tracing::warn!(host = %host, "trusted new host key {algorithm} {fingerprint} and recorded it in {}", file.display());
                Ok(())
            }
            HostKeyPolicy::Strict => Err(SshError::HostKey(format!(
                "host {host} ({lookup}) is not in any known_hosts file ({}); it presented {algorithm} {fingerprint}. \
                 Verify the fingerprint, then add it with `ssh-keyscan -p {} {} >> {}` or set \
                 host_key_policy = \"accept-new\".",
                self.files(),
                self.endpoint.port,
                self.endpoint.address,
                self.trust
                    .known_hosts
                    .first()
                    .map(|path| path.display().to_string())
                    .unwrap_or_else(|| "~/.ssh/known_hosts".to_string()),
            ))),
        }
    }

    fn certificate(&self, certificate: &Certificate, now: u64) -> Result<(), SshError> {
        let (algorithm, blob) = key_data_fields(certificate.public_key())?;
        let (authority_algorithm, authority_blob) = key_data_fields(certificate.signature_key())?;
        self.check_pin(&algorithm, &blob)?;
        let presented = PresentedCertificate {
            key: PresentedKey {
                algorithm: &algorithm,
                base64: &blob,
            },
            authority: PresentedKey {
                algorithm: &authority_algorithm,
                base64: &authority_blob,
            },
            host_type: certificate.cert_type() == CertType::Host,
            principals: certificate.valid_principals(),
            valid_after: certificate.valid_after(),
            valid_before: certificate.valid_before(),
        };
        let (principal, _) = known_hosts_name(self.endpoint);
        let verdict = known_hosts::decide_certificate(self.matched, principal, &presented, now);
        let host = &self.endpoint.name;
        let lookup = self.lookup();
        let authority = format!(
            "{authority_algorithm} {}",
            known_hosts::fingerprint(&authority_blob)
        );
        let refuse = |text: String| Err(SshError::HostKey(format!("{text}. Refusing to connect.")));
        match verdict {
            CertificateVerdict::Trusted { .. } => {
                // The decision named this CA; now its signature over the certificate must hold.
                let trusted = certificate.signature_key().fingerprint(HashAlg::Sha256);
                match certificate.validate_at(now, [&trusted]) {
                    Ok(()) => Ok(()),
                    Err(_) => refuse(format!(
                        "host certificate of {host} ({lookup}) does not carry a valid signature of CA {authority}"
                    )),
                }
            }
            CertificateVerdict::Plain(Verdict::Unknown) => refuse(format!(
                "host {host} ({lookup}) presented a host certificate signed by an unknown CA \
                 ({authority}): no @cert-authority line for {lookup} in {} carries it{}",
                self.files(),
                if self.trust.policy == HostKeyPolicy::AcceptNew {
                    " (accept-new never records a certificate-signed host)"
                } else {
                    ""
                }
            )),
            CertificateVerdict::Plain(verdict) => {
                self.known_key_outcome(verdict, &algorithm, &blob)
            }
            CertificateVerdict::Revoked { which, file, line } => {
                let what = match which {
                    RevokedKey::Authority => format!(
                        "the CA key {authority} that signed the host certificate of {host} ({lookup})"
                    ),
                    RevokedKey::HostKey => format!(
                        "the host key of {host} ({lookup}, {algorithm} {}) in its certificate",
                        known_hosts::fingerprint(&blob)
                    ),
                };
                refuse(format!("{what} is REVOKED in {}:{line}", file.display()))
            }
            CertificateVerdict::NotHostCertificate => refuse(format!(
                "host {host} ({lookup}) presented a USER certificate (signed by {authority}) as its host key, \
                 not a host certificate"
            )),
            CertificateVerdict::WrongPrincipal { principals } => refuse(format!(
                "host certificate of {host} (signed by {authority}) is not valid for the name `{principal}`: \
                 it names {}",
                if principals.is_empty() {
                    "no principals".to_string()
                } else {
                    principals.join(", ")
                }
            )),
            CertificateVerdict::NotYetValid { valid_after } => refuse(format!(
                "host certificate of {host} ({lookup}, signed by {authority}) is not valid before {} \
                 (now {}); check the clocks",
                time_text(valid_after),
                time_text(now)
            )),
            CertificateVerdict::Expired { valid_before } => refuse(format!(
                "host certificate of {host} ({lookup}, signed by {authority}) expired at {} (now {})",
                time_text(valid_before),
                time_text(now)
            )),
        }
    }
}
