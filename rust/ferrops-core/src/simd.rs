//! Runtime CPU-feature dispatch.
//!
//! One wheel must run on every x86-64 CPU, so kernels are compiled several times
//! (AVX-512, AVX2+FMA, baseline) and the best version the CPU supports is picked at
//! run time. A kernel is a value implementing [`SimdKernel`] whose `run` is
//! `#[inline(always)]`: [`dispatch`] calls it from inside a function compiled with
//! the wanted target features, so the inlined body is vectorised for that level.
//! Closures cannot be used for this: their bodies are separate functions that would
//! not inherit the features unless inlined, which nothing guarantees.
//!
//! The level can be forced (for tests and for comparing paths) with the environment
//! variable `FERROPS_SIMD=scalar|avx2|avx512`, read once, or with [`set_level`]. A
//! forced level above what the CPU supports is clamped to the detected one.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Scalar = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(SimdLevel::Scalar),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> SimdLevel {
        match v {
            3 => SimdLevel::Avx512,
            2 => SimdLevel::Avx2,
            _ => SimdLevel::Scalar,
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Scalar
}

// 0 = not yet initialised; otherwise a SimdLevel discriminant.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The level kernels run at now: the detected one, lowered by `FERROPS_SIMD` or
/// [`set_level`].
pub fn level() -> SimdLevel {
    match ACTIVE.load(Ordering::Relaxed) {
        0 => {
            let from_env = std::env::var("FERROPS_SIMD").ok().and_then(|v| SimdLevel::parse(&v));
            let chosen = from_env.map_or(detected(), |l| l.min(detected()));
            ACTIVE.store(chosen as u8, Ordering::Relaxed);
            chosen
        }
        v => SimdLevel::from_u8(v),
    }
}

/// Forces a level (clamped to the detected one); returns the level now active.
pub fn set_level(wanted: SimdLevel) -> SimdLevel {
    let chosen = wanted.min(detected());
    ACTIVE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// A kernel body to be compiled once per SIMD level. Implementations must mark
/// `run` `#[inline(always)]` so that it is inlined into the feature-enabled callers.
pub trait SimdKernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the active level.
#[inline]
pub fn dispatch<K: SimdKernel>(kernel: K) -> K::Output {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: level() never exceeds detected(), so the CPU has these features.
        SimdLevel::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi1,bmi2,popcnt")]
unsafe fn run_avx512<K: SimdKernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2,popcnt")]
unsafe fn run_avx2<K: SimdKernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sum<'a>(&'a [f32]);
    impl SimdKernel for Sum<'_> {
        type Output = f32;
        #[inline(always)]
        fn run(self) -> f32 {
            self.0.iter().sum()
        }
    }

    #[test]
    fn forced_level_is_clamped_and_dispatch_agrees_across_levels() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let mut results = Vec::new();
        for wanted in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            let got = set_level(wanted);
            assert!(got <= detected());
            assert_eq!(level(), got);
            results.push(dispatch(Sum(&data)).to_bits());
        }
        set_level(detected());
        assert!(results.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn parse_round_trips() {
        for l in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
        }
        assert_eq!(SimdLevel::parse("sse9"), None);
    }
}
