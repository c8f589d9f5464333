//! Why a host's work stopped: the typed error of every remote call, and whether the command it
//! names may still be running on the host (abandoned).

/// Why a host's work stopped.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{step}: {message}")]
    Failed { step: String, message: String },
    /// The SSH connection failed while the step ran (dropped, refused, broken).
    #[error("{step}: {message}")]
    Connection { step: String, message: String },
    #[error(
        "lock: {holder}; when that run is gone, `deploy unlock --hosts {host}` removes its lock"
    )]
    LockHeld {
        holder: String,
        host: String,
        /// The holder's run id.
        run_id: String,
    },
    /// A deploy freeze (`deploy lock`) is set on the host: not a run's lock.
    #[error("{freeze}; `deploy unlock --hosts {host}` lifts the freeze")]
    Frozen { freeze: String, host: String },
    #[error("{step}: host_timeout reached")]
    TimedOut { step: String },
    #[error("{step}: interrupted")]
    Interrupted { step: String },
    /// The run stopped this host's work because of other hosts (`max_failures` exceeded).
    #[error("{step}: stopped: {reason}")]
    Stopped { step: String, reason: String },
}

impl HostError {
    pub fn failed(step: &str, message: impl Into<String>) -> Self {
        HostError::Failed {
            step: step.to_string(),
            message: message.into(),
        }
    }

    /// The step the host's work stopped in.
    pub fn step(&self) -> &str {
        match self {
            HostError::Failed { step, .. }
            | HostError::Connection { step, .. }
            | HostError::TimedOut { step }
            | HostError::Interrupted { step }
            | HostError::Stopped { step, .. } => step,
            HostError::LockHeld { .. } | HostError::Frozen { .. } => "lock",
        }
    }

    /// What went wrong, without the step's name (a reason inside another message).
    pub fn message(&self) -> String {
        match self {
            HostError::Failed { message, .. } | HostError::Connection { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        }
    }

    /// Another run's lock or a freeze stopped the host (exit code 3 when nothing else failed).
    pub fn is_lock_held(&self) -> bool {
        matches!(self, HostError::LockHeld { .. } | HostError::Frozen { .. })
    }

    /// The remote command may still be running: the controller gave up on it.
    pub(super) fn abandoned(&self) -> bool {
        matches!(
            self,
            HostError::TimedOut { .. }
                | HostError::Interrupted { .. }
                | HostError::Stopped { .. }
                | HostError::Connection { .. }
        )
    }
}
