//! [`SshError`]: the errors a caller of the SSH transport may branch on (connect, timeout, host
//! key, authentication, protocol, remote command), with their operator-facing messages.

use std::time::Duration;

/// Errors a caller may branch on. Display texts are the operator-facing messages.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("timed out after {} while {what}", humantime::format_duration(*after))]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    HostKey(String),
    #[error(
        "authentication as `{user}` failed; tried: {}",
        if tried.is_empty() { "nothing (no ssh-agent, no identity file)".to_string() } else { tried.join(", ") }
    )]
    Auth { user: String, tried: Vec<String> },
    #[error("ssh: {0}")]
    Protocol(String),
    /// The connection was dropped or reset (before the banner, as sshd's `MaxStartups` does
    /// under load): worth another try while connecting.
    #[error("ssh: {0}")]
    Dropped(String),
    #[error("remote command: {0}")]
    Command(String),
    #[error("{0}")]
    Local(String),
    /// A jump host on the way failed (its name first: `jump host ops@bastion: ...`).
    #[error("{hop}: {message}")]
    Jump { hop: String, message: String },
    /// The same host already failed to connect in this run.
    #[error("{0}")]
    Earlier(String),
}

impl From<russh::Error> for SshError {
    fn from(error: russh::Error) -> Self {
        match error {
            russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::IO(_)
            | russh::Error::SendError => SshError::Dropped(error.to_string()),
            other => SshError::Protocol(other.to_string()),
        }
    }
}
