//! The allocator side of saving memory with activation checkpointing.
//!
//! glibc gives each thread that allocates its own arena, and each arena
//! keeps its own freed blocks. Training allocates from the main thread and
//! from candle's pool workers, so the peak RSS holds a fragmented copy of
//! the step's working set per thread: on SmolLM2 at 4×256 with
//! checkpointing that was ~100 MB of a ~0.5 GB peak. When the user asks to
//! save memory, one shared arena is worth its little lock contention.

/// Limit glibc to one malloc arena. Call before the model loads: threads
/// that already have an arena keep it.
pub fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter under glibc's own
    // lock; M_ARENA_MAX changes where later arenas come from, nothing else.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
