//! What a statically linked build (scripts/build-static.sh: `crt-static`, glibc) needs from the
//! machine at run time, checked before a command that connects anywhere so that a missing
//! piece is one clear error instead of a panic deep inside the SSH library.
//!
//! Random numbers: the `getrandom` crate finds glibc's `getrandom()` with `dlsym`, which
//! finds nothing in a static binary, so it falls back to polling `/dev/random` and reading
//! `/dev/urandom`. Every Linux system has both; an empty chroot or a bare container may not.
//! A dynamically linked build never gets here (the check is compiled out).

/// The device files the random-number fallback opens, in the order it opens them.
const RANDOM_DEVICES: [&str; 2] = ["/dev/random", "/dev/urandom"];

/// In a static build, fails (naming the file and what to do) when a random device cannot be
/// opened; in a dynamic build, always succeeds.
pub fn check_random_source() -> anyhow::Result<()> {
    if !cfg!(target_feature = "crt-static") {
        return Ok(());
    }
    missing_device(&RANDOM_DEVICES).map_or(Ok(()), |(device, error)| {
        Err(anyhow::anyhow!(
            "cannot open {device}: {error}. This statically linked deploy takes its random numbers \
             from /dev/random and /dev/urandom (a static glibc binary cannot reach glibc's \
             getrandom()); in a chroot or a container, bind-mount both from the host"
        ))
    })
}

/// The first of `devices` that cannot be opened for reading, with the reason.
fn missing_device<'a>(devices: &[&'a str]) -> Option<(&'a str, std::io::Error)> {
    devices.iter().find_map(|device| {
        std::fs::File::open(device)
            .err()
            .map(|error| (*device, error))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_cannot_be_opened_is_named() {
        assert!(
            missing_device(&RANDOM_DEVICES).is_none(),
            "this machine has both"
        );
        let (device, error) =
            missing_device(&["/dev/urandom", "/nonexistent/urandom"]).expect("one is missing");
        assert_eq!(device, "/nonexistent/urandom");
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }
}
