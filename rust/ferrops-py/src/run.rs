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
use std::sync::{mpsc, Mutex, PoisonError};
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

/// Kernels whose `work` bound is below this many elementary steps (a backed-up
/// transition, a simulated step: 1 to 10 ns each) end within a few tens of
/// milliseconds, too soon for Ctrl-C to matter, and run on [`run_kernel`]'s path:
/// the thread the interruptible path starts (measured 50-100 us on a busy 2-core
/// machine) would be most of a small call's time. Above it that thread costs a
/// few percent of the bound at most; a call converging far below its bound pays
/// it in full. (Spawning the kernel onto the pool from the calling thread, a
/// `parallel::in_place_scope`, would cost no more than `run_kernel`'s hand-over.)
pub const INTERRUPTIBLE_ABOVE_WORK: u128 = 1 << 22;

/// How long the calling thread waits for the kernel between two looks at
/// Python's pending signals: Ctrl-C is answered within about this, and the GIL is
/// taken ten times a second at most.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// [`run_kernel`] for kernels that can run long. `kernel` gets the call's own
/// [`Cancel`] token and must look at it at coarse intervals (RUN-INTERRUPT); `work`
/// bounds its elementary steps (see [`INTERRUPTIBLE_ABOVE_WORK`]).
///
/// The kernel runs on ferrops' pool from a helper thread while the calling
/// thread, without the GIL, waits for it in [`SIGNAL_POLL`] slices, taking the GIL
/// between them to run Python's pending signal handlers. When a handler raises
/// (`KeyboardInterrupt` for Ctrl-C), the token is raised, the kernel is waited for
/// (it stops at its next look and its partial results are dropped), and the
/// handler's exception is what the call raises. Each call has its own token, so
/// concurrent calls never stop one another; in a thread other than the main one
/// Python runs no handlers and the call runs to its end.
pub fn run_kernel_interruptible<T, F>(py: Python<'_>, work: u128, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Cancel) -> ferrops_core::Result<T> + Send,
{
    if work < INTERRUPTIBLE_ABOVE_WORK {
        return run_kernel(py, || kernel(&Cancel::new()));
    }
    let cancel = Cancel::new();
    // Where the helper takes the kernel from, so that the calling thread still
    // has it if the helper cannot be started.
    let pending = Mutex::new(Some(kernel));
    let take = || pending.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (cancel, take) = (&cancel, &take);
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::sync_channel::<Outcome<T>>(1);
        let helper = std::thread::Builder::new().name("ferrops-call".to_string()).spawn_scoped(scope, move || {
            let kernel = take().expect("the kernel is taken once");
            let outcome = catch_unwind(AssertUnwindSafe(|| parallel::install(|| kernel(cancel))));
            // The receiver is gone only if the caller panicked; nothing to tell then.
            let _ = done.send(outcome);
        });
        if helper.is_err() {
            // No thread to spare (the system's limit): run without Ctrl-C.
            let kernel = take().expect("the helper never started");
            return run_kernel(py, || kernel(cancel));
        }
        let mut finished = finished;
        loop {
            let (receiver, waited) = py.detach(move || {
                let waited = finished.recv_timeout(SIGNAL_POLL);
                (finished, waited)
            });
            finished = receiver;
            match waited {
                Ok(outcome) => return raise(outcome),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(PyRuntimeError::new_err(
                        "internal error in ferrops: a kernel's thread ended without a result",
                    ));
                }
            }
            if let Err(signal) = py.check_signals() {
                cancel.raise();
                // The kernel's result, if it finished meanwhile, is dropped too:
                // the handler's exception is the call's outcome.
                let _ = py.detach(move || finished.recv());
                return Err(signal);
            }
        }
    })
}
