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
    #[error("remote command: {0}")]
    Command(String),
    #[error("{0}")]
    Local(String),
    /// The same host already failed to connect in this run.
    #[error("{0}")]
    Earlier(String),
}

impl From<russh::Error> for SshError {
    fn from(error: russh::Error) -> Self {
        SshError::Protocol(error.to_string())
    }
}
