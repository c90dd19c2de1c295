//! The thread pool every kernel runs on.
//!
//! ferrops keeps its own rayon pool rather than the global one so that the thread
//! count can be changed at any time (`set_num_threads`) without touching other
//! libraries' use of rayon. Its initial size is `FERROPS_NUM_THREADS` when set,
//! otherwise the number of available cores.
//!
//! Kernels split work into pieces whose boundaries do not depend on the thread
//! count and combine partial results in a fixed order, so results are bitwise the
//! same for any number of threads.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{FerropsError, Result};

static POOL: OnceLock<RwLock<Arc<ThreadPool>>> = OnceLock::new();

fn build(threads: usize) -> std::result::Result<Arc<ThreadPool>, rayon::ThreadPoolBuildError> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ferrops-{i}"))
        .build()
        .map(Arc::new)
}

fn default_threads() -> usize {
    std::env::var("FERROPS_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn pool() -> Arc<ThreadPool> {
    // Kernels run under `catch_unwind` in the bindings, so a pool the system
    // cannot start becomes an error there.
    POOL.get_or_init(|| RwLock::new(build(default_threads()).expect("starting ferrops' thread pool")))
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Runs `f` inside ferrops' pool, so rayon calls in it use that pool's threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}

pub fn set_num_threads(threads: usize) -> Result<()> {
    if threads == 0 {
        return Err(FerropsError::value(
            "set_num_threads",
            "n",
            "a positive thread count",
            "0",
        ));
    }
    let pool = build(threads).map_err(|e| {
        FerropsError::value(
            "set_num_threads",
            "n",
            "a thread count the system can start",
            format!("{threads} ({e})"),
        )
    })?;
    let lock = POOL.get_or_init(|| RwLock::new(Arc::clone(&pool)));
    *lock.write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_can_change() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_num_threads(1).unwrap();
        assert_eq!(num_threads(), 1);
        assert_eq!(install(rayon::current_num_threads), 1);
        set_num_threads(2).unwrap();
        assert_eq!(install(rayon::current_num_threads), 2);
        assert!(set_num_threads(0).is_err());
    }
}
