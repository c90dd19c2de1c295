//! ferrops-core: the pure-Rust kernels behind the `ferrops` Python package.
//!
//! No Python here: kernels take slices, validate their arguments and return
//! [`error::FerropsError`] on bad input. Threads come from [`parallel`], SIMD levels
//! from [`simd`]. One module per kernel family.

pub mod attention;
pub mod boxes;
pub mod buffer;
pub mod detection;
pub mod error;
pub mod finite;
pub mod interrupt;
pub mod mask;
pub mod mdp;
pub mod parallel;
pub mod pooling;
pub mod real;
pub mod segmentation;
pub mod simd;
#[cfg(test)]
pub(crate) mod test_rng;

pub use error::{FerropsError, Result};
pub use real::Real;

/// Serialises the unit tests that change process-wide settings (SIMD level, thread
/// count), which cargo would otherwise run concurrently.
#[cfg(test)]
pub(crate) static GLOBAL_SETTINGS_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
