//! Process-level tuning for the CKKS workloads.
//!
//! Ciphertext-sized buffers (megabytes each) are above glibc's default mmap threshold, so
//! every temporary would be mapped, page-faulted in and unmapped again, which costs more
//! than the arithmetic. Raising the thresholds makes freed buffers reusable, the way the
//! peers' memory pools do.

/// Raises glibc's mmap and trim thresholds to 32 MiB (its maximum). Call once at start-up
/// of a binary; harmless elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tunables; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
