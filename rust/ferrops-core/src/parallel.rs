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
//!
//! # Thread count bound
//! A count may be at most [`max_threads`]: 1024, or the number of available cores
//! where that is larger. Threads beyond the cores give kernels nothing, and
//! starting tens of thousands of them (a typo, `set_num_threads(100000)`) takes
//! the process toward the system's thread limit for a long time while the caller
//! holds the GIL; 1024 start in milliseconds, and a fixed bound (rather than a
//! multiple of the cores) lets a script that sets, say, 8 threads run the same on
//! a one-core CI box. `set_num_threads` refuses a larger count (`ValueError`).
//! `FERROPS_NUM_THREADS` is read once, when the pool is first needed: a count
//! above the maximum is clamped to it and a value that is not a positive integer
//! is ignored (the core count is used), each with a warning on stderr, since an
//! environment variable should not make every kernel call fail.
//!
//! # Fork safety
//! `fork()` copies the pool's data into the child but not its threads, so a
//! kernel in the child would wait forever for workers that do not exist (torch's
//! `DataLoader` forks its workers by default on Linux). The pool therefore
//! belongs to a [`Slot`] tagged with the process's fork generation, a counter a
//! `pthread_atfork` child handler bumps. In a child the inherited slot is stale:
//! it is leaked untouched (its threads cannot be joined, and its lock may have
//! been held by a thread that no longer exists), and a fresh slot and pool with
//! the same thread count setting are made on first use. The handler only adds to
//! an atomic, which is async-signal-safe as a handler run inside `fork` must be.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::ensure;
use crate::error::{FerropsError, Result};

/// The smallest maximum thread count, whatever the number of cores (see the
/// module documentation).
pub const MAX_THREADS_FLOOR: usize = 1024;

/// The thread count `set_num_threads` set, or 0 for the default
/// (`FERROPS_NUM_THREADS`, else the core count). A child process built after a
/// fork uses it too.
static REQUESTED_THREADS: AtomicUsize = AtomicUsize::new(0);

/// How many forks lie between the first process that used ferrops and this one.
static FORK_GENERATION: AtomicUsize = AtomicUsize::new(0);

/// The slot of the current process (null before first use).
static CURRENT_SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// The pool of one process (one fork generation). Slots are leaked: one per
/// process, and a stale one must never be dropped (see the module documentation).
struct Slot {
    generation: usize,
    pool: RwLock<Option<Arc<ThreadPool>>>,
}

/// `value`, computed by `compute` on first use and cached in `cache` (0 until
/// then). An atomic rather than a `OnceLock`: a `OnceLock` caught mid-initialisation
/// by a fork would block the child forever, where a race here only computes twice.
fn cached(cache: &AtomicUsize, compute: impl FnOnce() -> usize) -> usize {
    match cache.load(Ordering::Relaxed) {
        0 => {
            let value = compute();
            cache.store(value, Ordering::Relaxed);
            value
        }
        value => value,
    }
}

fn available_cores() -> usize {
    static CORES: AtomicUsize = AtomicUsize::new(0);
    cached(&CORES, || std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The largest thread count ferrops accepts: [`MAX_THREADS_FLOOR`] or the number
/// of available cores, whichever is larger.
pub fn max_threads() -> usize {
    MAX_THREADS_FLOOR.max(available_cores())
}

/// The thread count a `FERROPS_NUM_THREADS` value asks for, given the core count
/// and the maximum, and the warning to print when the value is not used as it is.
/// Unset or empty means the core count, silently.
fn threads_from_env(value: Option<&str>, cores: usize, max: usize) -> (usize, Option<String>) {
    let value = match value.map(str::trim) {
        None | Some("") => return (cores, None),
        Some(value) => value,
    };
    match value.parse::<u128>() {
        Ok(n) if n >= 1 && n <= max as u128 => (n as usize, None),
        Ok(n) if n > max as u128 => (
            max,
            Some(format!("ferrops: FERROPS_NUM_THREADS={n} is more than the maximum of {max} threads; using {max}")),
        ),
        _ => (
            cores,
            Some(format!(
                "ferrops: ignoring FERROPS_NUM_THREADS={value:?} (expected a positive integer); using {cores} threads, the core count"
            )),
        ),
    }
}

/// The thread count when `set_num_threads` has not been called, read once.
fn default_threads() -> usize {
    static DEFAULT: AtomicUsize = AtomicUsize::new(0);
    cached(&DEFAULT, || {
        let value = std::env::var("FERROPS_NUM_THREADS").ok();
        let (threads, warning) = threads_from_env(value.as_deref(), available_cores(), max_threads());
        if let Some(warning) = warning {
            eprintln!("{warning}");
        }
        threads
    })
}

fn requested_threads() -> usize {
    match REQUESTED_THREADS.load(Ordering::Relaxed) {
        0 => default_threads(),
        n => n,
    }
}

fn build(threads: usize) -> std::result::Result<Arc<ThreadPool>, rayon::ThreadPoolBuildError> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ferrops-{i}"))
        .build()
        .map(Arc::new)
}

/// Runs in the child right after `fork()`. Only adds to an atomic: a handler run
/// inside `fork` must be async-signal-safe.
#[cfg(target_os = "linux")]
unsafe extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Registers [`after_fork_in_child`] once, before the first pool exists. A flag,
/// not a `Once`: a `Once` caught mid-call by a fork would block the child forever.
#[cfg(target_os = "linux")]
fn watch_forks() {
    static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: registers a handler that only increments an atomic. If
        // registration fails (no memory), forks are simply not detected.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    }
}

/// Elsewhere forks are not detected: a forked child must not use ferrops (macOS'
/// Python starts multiprocessing workers by spawning, not forking).
#[cfg(not(target_os = "linux"))]
fn watch_forks() {}

/// This process's slot, made on first use in each process.
fn slot() -> &'static Slot {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    let current = CURRENT_SLOT.load(Ordering::Acquire);
    // SAFETY: a non-null CURRENT_SLOT points to a leaked, never-freed Slot.
    if let Some(slot) = unsafe { current.as_ref() } {
        if slot.generation == generation {
            return slot;
        }
    }
    watch_forks();
    let fresh = Box::into_raw(Box::new(Slot { generation, pool: RwLock::new(None) }));
    // Threads of one process race only to make the slot of the same generation: the
    // generation changes only in a new process. A stale slot is left to leak.
    match CURRENT_SLOT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` is now published and never freed.
        Ok(_) => unsafe { &*fresh },
        Err(winner) => {
            // SAFETY: `fresh` was never published; `winner` is a leaked Slot.
            unsafe {
                drop(Box::from_raw(fresh));
                &*winner
            }
        }
    }
}

fn pool() -> Arc<ThreadPool> {
    let slot = slot();
    if let Some(pool) = slot.pool.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
        return Arc::clone(pool);
    }
    let mut pool = slot.pool.write().unwrap_or_else(PoisonError::into_inner);
    // Kernels run under `catch_unwind` in the bindings, so a pool the system
    // cannot start becomes an error there.
    Arc::clone(pool.get_or_insert_with(|| build(requested_threads()).expect("starting ferrops' thread pool")))
}

/// Runs `f` inside ferrops' pool, so rayon calls in it use that pool's threads.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    pool().install(f)
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Sets the thread count: between 1 and [`max_threads`].
pub fn set_num_threads(threads: usize) -> Result<()> {
    const F: &str = "set_num_threads";
    ensure!(threads > 0, FerropsError::value(F, "n", "a positive thread count", "0"));
    let max = max_threads();
    ensure!(
        threads <= max,
        FerropsError::value(
            F,
            "n",
            format!("at most {max} threads (the larger of {MAX_THREADS_FLOOR} and the core count)"),
            threads.to_string(),
        )
    );
    let new = build(threads).map_err(|e| {
        FerropsError::value(F, "n", "a thread count the system can start", format!("{threads} ({e})"))
    })?;
    let mut pool = slot().pool.write().unwrap_or_else(PoisonError::into_inner);
    REQUESTED_THREADS.store(threads, Ordering::Relaxed);
    *pool = Some(new);
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

    #[test]
    fn thread_count_is_bounded_and_refused_at_once() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_num_threads(2).unwrap();
        let max = max_threads();
        assert!(max >= MAX_THREADS_FLOOR && max >= available_cores());
        for too_many in [max + 1, 100_000, usize::MAX] {
            let started = std::time::Instant::now();
            let err = set_num_threads(too_many).unwrap_err();
            assert!(started.elapsed().as_secs() < 1);
            assert_eq!(
                err.to_string(),
                format!(
                    "set_num_threads(): argument 'n': expected at most {max} threads \
                     (the larger of 1024 and the core count), got {too_many}"
                )
            );
        }
        // A refused count leaves the pool as it was.
        assert_eq!(num_threads(), 2);
    }

    #[test]
    fn environment_values_are_used_clamped_or_ignored() {
        assert_eq!(threads_from_env(None, 8, 1024), (8, None));
        assert_eq!(threads_from_env(Some(""), 8, 1024), (8, None));
        assert_eq!(threads_from_env(Some(" 3 "), 8, 1024), (3, None));
        assert_eq!(threads_from_env(Some("1024"), 8, 1024), (1024, None));
        let (threads, warning) = threads_from_env(Some("100000"), 8, 1024);
        assert_eq!(threads, 1024);
        assert!(warning.unwrap().contains("FERROPS_NUM_THREADS=100000 is more than the maximum of 1024"));
        for bad in ["0", "-2", "two", "1.5", "99999999999999999999999999999999999999999"] {
            let (threads, warning) = threads_from_env(Some(bad), 8, 1024);
            assert_eq!(threads, 8, "{bad}");
            assert!(warning.unwrap().contains("ignoring FERROPS_NUM_THREADS"), "{bad}");
        }
    }

    /// Forks while another thread holds the pool's lock, as a fork from one Python
    /// thread during another's kernel call can: the child must build its own pool
    /// (with the thread count set before the fork) and run a parallel kernel.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_forked_child_runs_kernels_on_a_fresh_pool() {
        use rayon::prelude::*;
        use std::sync::mpsc;
        use std::time::{Duration, Instant};

        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        set_num_threads(3).unwrap();
        let sum = || install(|| (0..100_000u64).into_par_iter().map(|i| i * i).sum::<u64>());
        let expected = sum();
        let (locked, release) = (mpsc::channel(), mpsc::channel::<()>());
        let holder = std::thread::spawn(move || {
            let _held = slot().pool.write().unwrap();
            locked.0.send(()).unwrap();
            release.1.recv().unwrap();
        });
        locked.1.recv().unwrap();
        // SAFETY: the child only runs ferrops code and leaves with `_exit`, without
        // unwinding or running the parent's destructors.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = num_threads() == 3 && sum() == expected;
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert!(pid > 0, "fork failed");
        release.0.send(()).unwrap();
        holder.join().unwrap();
        let started = Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: waits for the child made above, without blocking.
            let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if done == pid {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                // SAFETY: kills and reaps our own child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                panic!("the forked child hung");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
        // The parent's pool is untouched.
        assert_eq!(sum(), expected);
        set_num_threads(2).unwrap();
    }
}
