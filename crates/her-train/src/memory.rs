//! The allocator side of training's memory.
//!
//! glibc gives each thread that allocates its own arena, and each arena
//! keeps its own freed blocks. Training allocates from the main thread and
//! from candle's pool workers (forward and backward run inside the pool),
//! so the peak RSS holds a fragmented copy of the step's working set per
//! thread: on SmolLM2 at 4×256 that was ~100 MB of a ~0.5 GB peak with
//! checkpointing, and up to ~1 GB of ~2 GB without. One shared arena costs
//! no measurable speed there (the step allocates a few hundred large
//! buffers, not millions of small ones).

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
