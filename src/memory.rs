//! The process's own memory, as reports state it: resident now (the
//! server's `/healthz`) and at its peak (`gen`, `refresh`). Linux only
//! (`/proc/self/status`); `None` elsewhere. Cost: one small file read.
//! And the allocator's tuning, in one place: what a one-shot scan and a
//! long-running server each want of glibc's malloc.

/// Resident memory now (`VmRSS`), in bytes.
pub fn resident_bytes() -> Option<u64> {
    status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident memory so far (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// For a one-shot scan (the CLI's queries): a scan frees and allocates
/// the same column buffers file after file (about 1 MB each); glibc would
/// hand each back to the kernel and fault it in again (a third of a
/// group-by's time on 100 files). Keeping freed memory in the process
/// costs nothing there: the peak is the same. Call before any thread
/// starts; a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc tuning parameters, before any
    // thread of ours starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    KEEPING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Set by [`keep_freed_memory`]: this process keeps what it frees.
static KEEPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Bytes a worker thread's malloc arena is grown by at once.
const THREAD_HEAP: usize = 16 << 20;

/// For a pool thread of a process that keeps freed memory
/// ([`keep_freed_memory`]): grows the thread's malloc arena once by 16
/// MiB (allocated and freed; untouched pages cost no resident memory, and
/// the freed top is kept). glibc grows a thread's arena by exactly what
/// an allocation lacks, one `mprotect` each: reading 2,000 footers made
/// 4,000 of them (a quarter of a summary's system time on `many-n4a`).
/// A no-op otherwise, and off glibc.
pub fn grow_thread_heap() {
    if !KEEPING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain allocation, freed at once, never touched (kept
    // from being optimised away by `black_box`).
    unsafe {
        libc::free(std::hint::black_box(libc::malloc(THREAD_HEAP)));
    }
}

/// For a server: caps glibc's malloc arenas at two. By default glibc
/// gives each thread that allocates concurrently an arena of its own (up
/// to 8 per core); a server whose requests run on many threads (tokio's
/// blocking pool, the workspace pool) then keeps freed memory spread over
/// many arenas and its resident memory creeps up under load (measured
/// with `n4a-bench serve`: see the README). Call once at start; a no-op
/// off glibc.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tuning parameter; called once at
    // start, before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Bytes the allocator has handed out and not had back (glibc's
/// `mallinfo2`: in-use chunks of every arena plus mmapped ones), whatever
/// it keeps freed beside them. Unlike the resident size, this falls as
/// soon as memory is freed, so a cache sized from it does not chase
/// memory glibc merely keeps. Cost: each arena locked while its free
/// chunks are counted (3-5 ms measured for `n4a serve` on a 10M-row
/// workspace after its queries: other threads' allocations wait that
/// long). `None` off glibc.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The least of the last few measures of what a process holds beside its
/// cache: a measure taken while other queries run counts their working
/// memory too, which ends with them, so the least recent measure is the
/// steady part. A lasting rise (a workspace added) is the least after
/// [`Beside::WINDOW`] measures.
#[derive(Debug, Default)]
pub struct Beside {
    recent: std::collections::VecDeque<u64>,
}

impl Beside {
    /// Measures kept.
    pub const WINDOW: usize = 16;

    /// Adds a measure; returns the least of the last [`Self::WINDOW`].
    pub fn add(&mut self, bytes: u64) -> u64 {
        if self.recent.len() == Self::WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(bytes);
        self.recent.iter().copied().min().unwrap_or(bytes)
    }
}

/// Gives the allocator's freed pages back to the kernel (glibc's
/// `malloc_trim(0)`): each arena locked in turn while its free chunks are
/// `madvise`d away. Returns whether anything was given back. A no-op off
/// glibc.
pub fn give_back_freed() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory the allocator holds.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_is_at_least_resident() {
        let (now, peak) = (
            super::resident_bytes().unwrap(),
            super::peak_resident_bytes().unwrap(),
        );
        assert!(now > 0 && peak >= now);
    }

    /// The least of the last 16 measures: a spike from a running query
    /// does not count once it leaves the window; a lasting rise does.
    #[test]
    fn beside_is_the_least_of_the_recent_measures() {
        let mut b = super::Beside::default();
        assert_eq!(b.add(100), 100);
        assert_eq!(b.add(400), 100, "a spike is not the steady part");
        assert_eq!(b.add(90), 90);
        for _ in 0..super::Beside::WINDOW - 1 {
            assert_eq!(b.add(300), 90);
        }
        assert_eq!(
            b.add(300),
            300,
            "a lasting rise counts once the window passed"
        );
    }
}
