//! What this build and this CPU run with: the build record (`build.rs`) and the
//! SIMD level each kernel group picks automatically (`ferrops info`,
//! `ferrops bench --levels`).

use std::collections::BTreeMap;

use ferrops_core::simd::{self, Workload};
use pyo3::prelude::*;

/// What the extension was built with: compiler, profile, target, the CPU features
/// compiled in unconditionally (`target_features`) and the levels chosen at run
/// time (`dispatched_levels`), commit and date.
#[pyfunction]
fn build_info() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("rustc", env!("FERROPS_BUILD_RUSTC")),
        ("profile", env!("FERROPS_BUILD_PROFILE")),
        ("opt_level", env!("FERROPS_BUILD_OPT_LEVEL")),
        ("target", env!("FERROPS_BUILD_TARGET")),
        ("target_features", env!("FERROPS_BUILD_TARGET_FEATURES")),
        ("dispatched_levels", DISPATCHED_LEVELS),
        ("commit", env!("FERROPS_BUILD_COMMIT")),
        ("date", env!("FERROPS_BUILD_DATE")),
        ("pyo3", "abi3 (CPython >= 3.10)"),
    ])
}

/// The levels every dispatched kernel is compiled for (`simd.rs`'s macros).
#[cfg(target_arch = "x86_64")]
const DISPATCHED_LEVELS: &str = "scalar; avx2 (avx2, fma, bmi1, bmi2, popcnt); avx512 (avx512f, avx512bw, avx512vl, avx512dq); extension avx512bf16";
#[cfg(not(target_arch = "x86_64"))]
const DISPATCHED_LEVELS: &str = "scalar";

/// Returns to the automatic SIMD choice (`FERROPS_SIMD`'s level when set); returns
/// the level now active.
#[pyfunction]
fn reset_simd_level() -> &'static str {
    simd::reset_level().name()
}

/// The level `family`'s kernels run at under the automatic choice on this CPU.
#[pyfunction]
fn simd_auto_level(family: &str) -> &'static str {
    simd::automatic_level(Workload::parse(family)).name()
}

/// The CPU's microarchitecture as the per-kernel level table sees it.
#[pyfunction]
fn microarchitecture() -> &'static str {
    match simd::microarchitecture() {
        simd::Microarchitecture::Zen4 => "AMD Zen 4",
        simd::Microarchitecture::Other => "other",
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(reset_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(simd_auto_level, m)?)?;
    m.add_function(wrap_pyfunction!(microarchitecture, m)?)?;
    Ok(())
}
