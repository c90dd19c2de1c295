//! Cooperative cancellation of long-running kernels (RUN-INTERRUPT).
//!
//! A kernel that can run for long (an iterative solver, a simulation) takes a
//! [`Cancel`] token and looks at it at coarse points: once per sweep, or once per
//! [`CHECK_INTERVAL`] units of work through a [`Checkpoint`]. Once the token is
//! raised the kernel returns [`FerropsError::Interrupted`] at its next look,
//! dropping its partial results: nothing it was given is written, so an
//! interrupted call leaves no state half-done.
//!
//! The token is per call: whoever runs the kernel (the Python binding, which
//! raises it when a signal handler raised an exception) owns it, so concurrent
//! calls never cancel one another. A look is one relaxed atomic load; results do
//! not depend on when or whether anyone looks.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{FerropsError, Name, Result};

/// Units of work (simulated steps, states backed up) between two looks at the
/// token through a [`Checkpoint`]: a few hundred microseconds of the cheapest
/// work, so a raised token is seen well within a second while the looks cost
/// nothing measurable.
pub const CHECK_INTERVAL: u64 = 1 << 16;

/// A per-call cancellation flag: raised from any thread, seen by the kernel at
/// its next [`check`](Cancel::check).
#[derive(Debug, Default)]
pub struct Cancel {
    raised: AtomicBool,
}

impl Cancel {
    pub const fn new() -> Self {
        Cancel { raised: AtomicBool::new(false) }
    }

    /// Asks the kernel holding this token to stop at its next look.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Relaxed);
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` naming `function` once the token is raised.
    #[inline]
    pub fn check(&self, function: &str) -> Result<()> {
        if self.is_raised() {
            return Err(FerropsError::interrupted(function.to_owned()));
        }
        Ok(())
    }

    /// A [`Checkpoint`] that looks at this token every [`CHECK_INTERVAL`] units.
    pub fn checkpoint<'a>(&'a self, function: &'a str) -> Checkpoint<'a> {
        Checkpoint { cancel: self, function, left: CHECK_INTERVAL }
    }
}

/// Counts work and looks at a [`Cancel`] token once per [`CHECK_INTERVAL`]
/// units, for loops whose single iterations are too fine to look at each (one
/// simulated step) but whose count has no bound (an episode of any length). One
/// per thread: parallel tasks clone their own.
#[derive(Debug, Clone)]
pub struct Checkpoint<'a> {
    cancel: &'a Cancel,
    function: &'a str,
    left: u64,
}

impl<'a> Checkpoint<'a> {
    /// The function whose errors this checkpoint reports.
    pub fn function(&self) -> &'a str {
        self.function
    }

    /// Records `work` units done; looks at the token when the interval is used up.
    #[inline(always)]
    pub fn tick(&mut self, work: u64) -> Result<()> {
        match self.left.checked_sub(work) {
            Some(left) if left > 0 => {
                self.left = left;
                Ok(())
            }
            _ => {
                self.left = CHECK_INTERVAL;
                self.cancel.check(self.function)
            }
        }
    }
}

impl FerropsError {
    /// `function` stopped because its caller raised its [`Cancel`] token.
    pub fn interrupted(function: impl Into<Name>) -> Self {
        FerropsError::Interrupted { function: function.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_token_stops_the_next_check() {
        let cancel = Cancel::new();
        assert_eq!(cancel.check("f"), Ok(()));
        cancel.raise();
        let err = cancel.check("f").unwrap_err();
        assert_eq!(err, FerropsError::interrupted("f"));
        assert_eq!(err.to_string(), "f(): interrupted");
    }

    #[test]
    fn a_checkpoint_looks_once_per_interval() {
        let cancel = Cancel::new();
        let mut checkpoint = cancel.checkpoint("f");
        cancel.raise();
        for _ in 0..CHECK_INTERVAL - 1 {
            assert!(checkpoint.tick(1).is_ok());
        }
        assert!(checkpoint.tick(1).is_err());
        // Work larger than the interval looks at once.
        let mut checkpoint = cancel.checkpoint("f");
        assert!(checkpoint.tick(CHECK_INTERVAL + 5).is_err());
    }

    #[test]
    fn a_token_raised_from_another_thread_stops_a_loop() {
        let cancel = Cancel::new();
        let stopped = std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                let mut checkpoint = cancel.checkpoint("f");
                let mut steps = 0u64;
                loop {
                    steps += 1;
                    if checkpoint.tick(1).is_err() {
                        return steps;
                    }
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            cancel.raise();
            worker.join().unwrap()
        });
        assert!(stopped > 0);
    }
}
