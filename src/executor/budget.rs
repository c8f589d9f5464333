//! The time one host may take in one run: one budget of `host_timeout` for everything done for
//! it (clean-up included, a reserve kept for it at the end), with the time spent waiting for
//! other hosts left out.

use std::time::{Duration, Instant};

/// The time one host may take in one run; waiting for other hosts is not counted.
pub(super) struct Budget {
    deadline: std::sync::Mutex<(Instant, Option<Instant>)>,
    /// Kept back at the end of the budget for the clean-up.
    reserve: Duration,
}

impl Budget {
    pub(super) fn new(host_timeout: Duration) -> Budget {
        Budget {
            deadline: std::sync::Mutex::new((Instant::now() + host_timeout, None)),
            reserve: (host_timeout / 5).min(Duration::from_secs(10)),
        }
    }

    /// When everything for this host must be done (clean-up included).
    pub(super) fn end(&self) -> Instant {
        self.deadline
            .lock()
            .map(|deadline| deadline.0)
            .unwrap_or_else(|_| Instant::now())
    }

    /// When working steps must stop, leaving the reserve for clean-up.
    pub(super) fn work_end(&self) -> Instant {
        self.end() - self.reserve
    }

    /// The host starts waiting for others: the clock stops.
    pub(super) fn pause(&self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && deadline.1.is_none()
        {
            deadline.1 = Some(Instant::now());
        }
    }

    /// The host works again: the wait is added back.
    pub(super) fn resume(&self) {
        if let Ok(mut deadline) = self.deadline.lock()
            && let Some(since) = deadline.1.take()
        {
            deadline.0 += since.elapsed();
        }
    }
}
