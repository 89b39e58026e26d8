//! How the command asks the allocator to keep freed memory. glibc's malloc
//! serves blocks above 128 KiB with fresh `mmap`s and unmaps them on free, so
//! a batch of 4096 (arrays of 1 MiB) paid a page fault and a zeroed page for
//! every 4 KiB of every value on every run: a third of the MLP train step
//! (`perf record` on `batchgraph bench bench/mlp.graph --size 4096 --grad`).
//! Raising the mmap and trim thresholds keeps those blocks for reuse.

/// Keeps freed blocks of up to 32 MiB (glibc's largest mmap threshold) for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets malloc's tunables; it is called once, first thing in main.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Other allocators keep freed memory already.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
