//! The one way bindings call into the core: [`run_kernel`] releases the GIL, runs
//! the closure on ferrops' thread pool, turns a panic into a Python exception
//! instead of aborting the interpreter, and raises the core's [`FerropsError`]
//! through [`BindingError`] (`ValueError`/`TypeError`/`MemoryError`). No binding
//! releases the GIL or maps errors by hand. It returns `PyResult`, which `?` takes
//! in bindings returning `PyResult` and [`BindingResult`](crate::error::BindingResult) alike.
//!
//! Kernels that can run for long (solvers, simulations) go through
//! [`run_kernel_interruptible`] instead, which keeps Ctrl-C working
//! (RUN-INTERRUPT): Python runs signal handlers only in the main thread, between
//! bytecodes, so a thread waiting in Rust must look for pending signals itself.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use ferrops_core::interrupt::Cancel;
use ferrops_core::parallel;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::error::BindingError;

/// What running a kernel under `catch_unwind` gives: its result, or a panic's payload.
type Outcome<T> = std::thread::Result<ferrops_core::Result<T>>;

fn raise<T>(outcome: Outcome<T>) -> PyResult<T> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(BindingError::from(err).into()),
        Err(payload) => Err(internal_error(payload)),
    }
}

fn internal_error(payload: Box<dyn Any + Send>) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    PyRuntimeError::new_err(format!("internal error in ferrops (please report it): {what}"))
}

pub fn run_kernel<T, F>(py: Python<'_>, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> ferrops_core::Result<T> + Send,
{
    raise(py.detach(|| catch_unwind(AssertUnwindSafe(|| parallel::install(kernel)))))
}

/// Kernels whose `work` estimate is below this (in nanoseconds of one thread:
/// see [`run_kernel_interruptible`]) end within a few milliseconds, too soon for
/// Ctrl-C to matter, and run on [`run_kernel`]'s path. The interruptible path
/// hands the kernel to the same pool, but its caller wakes up to take the result
/// from a channel and the pool's scope, which measured a few microseconds more
/// than [`run_kernel`]'s hand-over on a busy 2-core machine: under 0.1% of a call
/// this long, where a call of a few microseconds would pay it in full.
pub const INTERRUPTIBLE_ABOVE_WORK: u128 = 1 << 22;

/// How long the calling thread waits for the kernel between two looks at
/// Python's pending signals: Ctrl-C is answered within about this, and the GIL is
/// taken ten times a second at most.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// [`run_kernel`] for kernels that can run long. `kernel` gets the call's own
/// [`Cancel`] token and must look at it at coarse intervals (RUN-INTERRUPT).
/// `work` estimates the call's cost in nanoseconds of one thread (elementary
/// steps times what one costs), an upper bound where the kernel may stop early
/// (a solver's `max_iter`): below [`INTERRUPTIBLE_ABOVE_WORK`] the call takes
/// [`run_kernel`]'s path and cannot be interrupted.
///
/// The kernel runs on ferrops' pool ([`parallel::spawn_beside`]) while the
/// calling thread, without the GIL, waits for it in [`SIGNAL_POLL`] slices, taking
/// the GIL between them to run Python's pending signal handlers. When a handler
/// raises (`KeyboardInterrupt` for Ctrl-C), the token is raised, the kernel is
/// waited for (it stops at its next look and its partial results are dropped),
/// and the handler's exception is what the call raises. Each call has its own
/// token, so concurrent calls never stop one another; in a thread other than the
/// main one Python runs no handlers and the call runs to its end.
pub fn run_kernel_interruptible<T, F>(py: Python<'_>, work: u128, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Cancel) -> ferrops_core::Result<T> + Send,
{
    if work < INTERRUPTIBLE_ABOVE_WORK {
        return run_kernel(py, || kernel(&Cancel::new()));
    }
    let cancel = Cancel::new();
    let cancel = &cancel;
    let (done, finished) = mpsc::sync_channel::<Outcome<T>>(1);
    let job = move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| kernel(cancel)));
        // The receiver is gone only if the caller panicked; nothing to tell then.
        let _ = done.send(outcome);
    };
    let waited = py.detach(move || parallel::spawn_beside(job, || wait_for(&finished, cancel)));
    raise(waited?)
}

/// Waits for the kernel's outcome, running Python's signal handlers every
/// [`SIGNAL_POLL`]; a handler's exception raises `cancel` and, once the kernel
/// has stopped, is returned instead of the outcome.
fn wait_for<T>(finished: &mpsc::Receiver<Outcome<T>>, cancel: &Cancel) -> PyResult<Outcome<T>> {
    loop {
        match finished.recv_timeout(SIGNAL_POLL) {
            Ok(outcome) => return Ok(outcome),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err(
                    "internal error in ferrops: a kernel's thread ended without a result",
                ));
            }
        }
        if let Err(signal) = Python::attach(|py| py.check_signals()) {
            cancel.raise();
            // The kernel's result, if it finished meanwhile, is dropped too: the
            // handler's exception is the call's outcome.
            let _ = finished.recv();
            return Err(signal);
        }
    }
}
