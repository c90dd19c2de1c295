//! `ferrops._core`: thin PyO3 bindings over `ferrops-core`. Each binding extracts
//! and checks its arguments, calls the core through [`run::run_kernel`] and returns
//! NumPy arrays that take ownership of the core's buffers (no copy).

mod attention;
mod boxes;
mod convert;
mod detection;
mod error;
mod lvis;
mod mask;
mod mdp;
mod platform;
mod pooling;
mod run;
mod segmentation;

use ferrops_core::simd::{self, SimdLevel};
use ferrops_core::{parallel, FerropsError};
use pyo3::prelude::*;

use crate::error::BindingResult;

/// The SIMD level kernels run at: "avx512", "avx2" or "scalar".
#[pyfunction]
fn simd_level() -> &'static str {
    simd::level().name()
}

/// The best SIMD level this CPU supports.
#[pyfunction]
fn detected_simd_level() -> &'static str {
    simd::detected().name()
}

/// Forces a SIMD level (clamped to what the CPU supports); returns the active one.
#[pyfunction]
fn set_simd_level(level: &str) -> BindingResult<&'static str> {
    let Some(wanted) = SimdLevel::parse(level) else {
        let got = format!("'{level}'");
        return Err(FerropsError::value("set_simd_level", "level", "one of 'scalar', 'avx2', 'avx512'", got).into());
    };
    Ok(simd::set_level(wanted).name())
}

/// Whether bfloat16 attention runs on the CPU's bfloat16 dot products (AVX-512
/// BF16 at the active level) rather than widened to float32.
#[pyfunction]
fn bf16_dot_products() -> bool {
    ferrops_core::attention::bf16::native_dot_products()
}

#[pyfunction]
fn get_num_threads() -> usize {
    parallel::num_threads()
}

#[pyfunction]
fn set_num_threads(n: usize) -> BindingResult<()> {
    Ok(parallel::set_num_threads(n)?)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(detected_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(bf16_dot_products, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    attention::register(m)?;
    boxes::register(m)?;
    mask::register(m)?;
    mdp::register(m)?;
    segmentation::register(m)?;
    pooling::register(m)?;
    detection::register(m)?;
    platform::register(m)?;
    lvis::register(m)?;
    Ok(())
}
