//! Process limits: the open-file limit (`RLIMIT_NOFILE`) a run needs, raised at start, and
//! refused before any connection when even the hard limit is too low.
//!
//! What a host costs in file descriptors: one (the TCP socket of its SSH connection) for as
//! long as the run holds it. Changing commands (`push`, `rollback`) hold every selected host's
//! connection from the preflight to the end (the lock lives on it), so they need one per
//! selected host. A host being worked on may use two more at the same time: the connection an
//! upload streams on and the artifact file it reads. Other commands hold only the hosts being
//! worked on. A host reached through a ProxyCommand costs three instead of one (the child's
//! stdin, stdout and stderr pipes); a host behind a jump host costs none of its own (a channel
//! on the jump host's connection) but is counted as one. On top: `RESERVE` for the process itself (standard streams, the runtime's epoll
//! and wake-up descriptors, blocking threads, files read in passing).

/// Descriptors for the process itself, beyond the hosts.
const RESERVE: u64 = 64;

/// Extra descriptors of a host being worked on (its upload's connection, the artifact file).
const PER_ACTIVE_HOST: u64 = 2;

/// How many descriptors a run needs: `held` hosts connected at once (all selected hosts for a
/// changing command, else at most `concurrency`), `concurrency` of them worked on at a time.
pub fn descriptors_needed(held: usize, concurrency: usize) -> u64 {
    let active = concurrency.min(held) as u64;
    held as u64 + active * PER_ACTIVE_HOST + RESERVE
}

/// The soft and hard open-file limits.
fn current() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid pointer.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (status == 0).then_some((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft open-file limit to the hard limit (best effort); returns the soft limit now
/// in force, if it can be read.
pub fn raise_open_files() -> Option<u64> {
    let (soft, hard) = current()?;
    if soft < hard {
        let limit = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads one `rlimit` through a valid pointer.
        let status = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        if status == 0 {
            return Some(hard);
        }
    }
    Some(soft)
}

/// Why a run cannot hold the connections it needs under `limit`, or `None` when it can.
pub fn shortfall(needed: u64, limit: u64, hosts: usize) -> Option<String> {
    (needed > limit).then(|| {
        format!(
            "this run needs {needed} open files ({hosts} hosts connected at once, plus the uploads \
             in flight and {RESERVE} for the process) but the open-file limit is {limit} even \
             after raising it to the hard limit: raise it (as root: `ulimit -Hn {needed}; ulimit -n {needed}` \
             in the shell that runs deploy, `LimitNOFILE={needed}` for a systemd unit, or a `nofile` \
             line in /etc/security/limits.conf), or select fewer hosts (--hosts) or lower the concurrency (-j)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        assert_eq!(descriptors_needed(500, 10), 500 + 20 + RESERVE);
        assert_eq!(descriptors_needed(3, 10), 3 + 6 + RESERVE);
        assert_eq!(shortfall(100, 100, 10), None);
        let message = shortfall(584, 256, 500).expect("too low");
        assert!(message.contains("needs 584 open files"), "{message}");
        assert!(message.contains("limit is 256"), "{message}");
        assert!(message.contains("ulimit"), "{message}");
    }

    #[test]
    fn raising_never_lowers() {
        let before = current().expect("getrlimit").0;
        let after = raise_open_files().expect("getrlimit");
        assert!(after >= before);
    }
}
