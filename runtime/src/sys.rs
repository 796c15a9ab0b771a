//! Process-level tuning for the CKKS workloads.
//!
//! Ciphertext-sized buffers (megabytes each) are above glibc's default mmap threshold, so
//! every temporary would be mapped, page-faulted in and unmapped again, which costs more
//! than the arithmetic. Raising the thresholds makes freed buffers reusable, the way the
//! peers' memory pools do.

/// Raises glibc's mmap threshold to 32 MiB (its maximum), keeps freed memory in the
/// process (trim threshold 2 GiB) and grows the heaps 512 MiB at a time. With the
/// earlier 256 MiB trim threshold the rayon threads' heaps were still returned and
/// faulted in again: a packed ResNet-20 image took 2.4 million page faults, against 0.9
/// million with these settings (~10 % of the evaluation's CPU time was the kernel
/// clearing pages; `perf stat -e page-faults`). Call once at start-up of a binary;
/// harmless elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tunables; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}
