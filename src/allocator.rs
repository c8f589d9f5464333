//! The C heap's settings for a run over hundreds of hosts (glibc only; elsewhere nothing).
//!
//! Memory grows with the number of hosts only through each host's idle connection; what a
//! host being worked on allocates (upload buffers, a transfer connection) is freed when its
//! work ends. glibc's defaults keep much of that freed memory: one arena per thread that ever
//! allocated (the runtime's workers and blocking threads), each holding its own free lists,
//! and a threshold for returning large blocks to the system that rises each time one is
//! freed. Measured on a 500-host push at `-j 10` (`scripts/bench.sh --scale`): peak RSS
//! 68.6 MiB with the defaults, 64.0 MiB with one arena and a fixed 64 KiB threshold.

/// Blocks of this size and larger are mapped on their own and returned to the system when
/// freed (upload chunks, russh's write buffers of transfer connections).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const LARGE_BLOCK: libc::c_int = 64 * 1024;

/// One arena for every thread, and large blocks returned when freed. Call before any thread
/// starts. Best effort: a setting glibc refuses leaves its default.
pub fn compact() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists, as glibc recommends.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE_BLOCK);
    }
}
