//! Runtime CPU-feature dispatch: the one place that defines the SIMD levels, the
//! CPU features each needs, and the query every hand-written kernel goes through.
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
//! forced level above what the CPU supports is clamped to the detected one;
//! [`reset_level`] returns to the automatic choice.
//!
//! The automatic choice is the highest level, except for the kernel groups
//! ([`Workload`]) measured to run faster one level lower on a microarchitecture:
//! their kernels call [`dispatch_for`], and the table is [`preferred_level`], the
//! one place such exceptions live. A forced level applies to every kernel as it
//! is, so each path can still be timed (`ferrops bench --levels`).
//!
//! Kernels written with intrinsics ask [`supports`] (a level) or
//! [`supports_extension`] (an [`Extension`] on top of a level) before calling
//! their `#[target_feature]` bodies, and mark those bodies with this module's
//! macros (`avx2_fn!`, `avx512_fn!`, `avx512_bf16_fn!`), so every feature set is
//! written once, here. They live in one file per instruction set and family:
//!
//! | instruction set | kernels |
//! |---|---|
//! | AVX2 + FMA | `attention/kernels/avx2.rs` (tile product, softmax step, `exp2`, dot), `segmentation/avx2.rs` (run detection, uint8 pairs) |
//! | AVX-512 F/BW/VL | `attention/kernels/avx512.rs` (tile product, softmax step, `exp2`) |
//! | AVX-512 BF16 | `attention/kernels/avx512_bf16.rs` (bfloat16 pair products, dot, packing) |
//!
//! Every other kernel is portable code compiled per level through [`dispatch`].

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;

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

/// The best level this CPU supports. Each level needs the features its kernels
/// are compiled with (see the macros below): AVX2 and FMA; for AVX-512 also F,
/// BW, VL and DQ (the dispatched bodies use DQ).
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

/// An instruction-set extension that kernels use on top of a level. It is not a
/// level of its own: a CPU can have the level without it, and using it is not
/// always the faster choice (see `attention::bf16`), so it is asked for apart
/// from the level ([`supports_extension`]); forcing a lower level turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// AVX-512 BF16: bfloat16 pair dot products (`VDPBF16PS`) and conversions.
    Avx512Bf16,
}

impl Extension {
    /// The level it extends: its kernels run only while that level is active.
    pub fn level(self) -> SimdLevel {
        match self {
            Extension::Avx512Bf16 => SimdLevel::Avx512,
        }
    }

    /// Whether the CPU has it.
    pub fn detected(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        match self {
            Extension::Avx512Bf16 => std::arch::is_x86_feature_detected!("avx512bf16"),
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

// 0 = not yet initialised; otherwise a SimdLevel discriminant.
static ACTIVE: AtomicU8 = AtomicU8::new(0);
// Whether ACTIVE was forced (`FERROPS_SIMD` or `set_level`): then every kernel
// runs at it, with no per-workload exception.
static FORCED: AtomicBool = AtomicBool::new(false);

/// The level kernels run at now: the detected one, lowered by `FERROPS_SIMD` or
/// [`set_level`].
pub fn level() -> SimdLevel {
    match ACTIVE.load(Ordering::Relaxed) {
        0 => reset_level(),
        v => SimdLevel::from_u8(v),
    }
}

/// `FERROPS_SIMD`'s level, clamped to the detected one, when it names one.
fn level_from_env() -> Option<SimdLevel> {
    std::env::var("FERROPS_SIMD").ok().and_then(|v| SimdLevel::parse(&v)).map(|l| l.min(detected()))
}

/// Returns to the automatic choice (or to `FERROPS_SIMD`'s level, which stays
/// forced); returns the level now active.
pub fn reset_level() -> SimdLevel {
    let from_env = level_from_env();
    let chosen = from_env.unwrap_or_else(detected);
    FORCED.store(from_env.is_some(), Ordering::Relaxed);
    ACTIVE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// Forces a level (clamped to the detected one) for every kernel; returns the
/// level now active.
pub fn set_level(wanted: SimdLevel) -> SimdLevel {
    let chosen = wanted.min(detected());
    FORCED.store(true, Ordering::Relaxed);
    ACTIVE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// A group of kernels that picks its own level when none is forced, because on
/// some microarchitecture the highest level is not its fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// The pooling family (`pooling::*`): maxima and sums over rows of a plane.
    Pooling,
}

impl Workload {
    /// The family name the group is known by (`ferrops bench` families).
    pub fn parse(family: &str) -> Option<Workload> {
        match family {
            "pooling" => Some(Workload::Pooling),
            _ => None,
        }
    }
}

/// The microarchitectures with an exception in [`preferred_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Microarchitecture {
    /// AMD Zen 4 (family 19h with AVX-512): 512-bit operations run as two 256-bit
    /// halves.
    Zen4,
    Other,
}

/// The CPU's microarchitecture, as far as [`preferred_level`] needs to know it.
pub fn microarchitecture() -> Microarchitecture {
    static DETECTED: OnceLock<Microarchitecture> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::__cpuid;
            // Leaves 0 (vendor) and 1 (signature) exist on every x86-64 CPU.
            let (vendor, signature) = (__cpuid(0), __cpuid(1).eax);
            let amd = (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
            let base = (signature >> 8) & 0xf;
            let family = if base == 0xf { base + ((signature >> 20) & 0xff) } else { base };
            // Zen 3 is family 19h too, but has no AVX-512.
            if amd && family == 0x19 && detected() == SimdLevel::Avx512 {
                return Microarchitecture::Zen4;
            }
        }
        Microarchitecture::Other
    })
}

/// The level `workload` runs at when `level` is the automatic choice: the table of
/// per-microarchitecture exceptions, each with the measurement behind it.
pub fn preferred_level(workload: Workload, level: SimdLevel, cpu: Microarchitecture) -> SimdLevel {
    match (workload, level, cpu) {
        // Zen 4 (EPYC, AVX-512 with BF16), 1 thread, in cache, min of 40 alternating
        // rounds, ms at scalar / avx2 / avx512: `sppf` 1x16x64x64 k=5 0.262 / 0.172
        // / 0.203, `roi_pool` 0.243 / 0.204 / 0.237, `max_pool2d` k=3 s=2 0.077 /
        // 0.063 / 0.064, `adaptive_avg_pool2d` 0.041 / 0.042 / 0.045, SPP 0.039 /
        // 0.033 / 0.032: AVX-512 never wins by more than noise and loses up to 18%
        // (the 16x512x64x64 `sppf`: 122 ms at avx512, 86 ms at avx2). The
        // row maxima load each vector their previous pass stored; a 512-bit store
        // is two 256-bit halves on Zen 4 and the reload is not forwarded at full
        // speed. `ferrops bench --levels pooling` re-measures this on any CPU.
        (Workload::Pooling, SimdLevel::Avx512, Microarchitecture::Zen4) => SimdLevel::Avx2,
        _ => level,
    }
}

/// The level `workload`'s kernels run at now: the active level when forced,
/// else its [`preferred_level`].
pub fn level_for(workload: Workload) -> SimdLevel {
    let active = level();
    if FORCED.load(Ordering::Relaxed) {
        active
    } else {
        preferred_level(workload, active, microarchitecture())
    }
}

/// The level `workload` (None: every other kernel) runs at under the automatic
/// choice, whatever is forced now; `FERROPS_SIMD` is part of the automatic choice.
pub fn automatic_level(workload: Option<Workload>) -> SimdLevel {
    match (level_from_env(), workload) {
        (Some(forced), _) => forced,
        (None, Some(w)) => preferred_level(w, detected(), microarchitecture()),
        (None, None) => detected(),
    }
}

/// Whether kernels compiled for `wanted` may run now: the active level is at
/// least `wanted` (and so, by [`level`], the CPU has its features).
#[inline]
pub fn supports(wanted: SimdLevel) -> bool {
    level() >= wanted
}

/// Whether kernels using `extension` may run now: its level is active and the CPU
/// has the extension.
#[inline]
pub fn supports_extension(extension: Extension) -> bool {
    supports(extension.level()) && extension.detected()
}

// The `#[target_feature]` sets. The attribute takes only a string literal, so each
// set is a macro that puts it on the functions it wraps. The hand-written kernels
// get the vector features their intrinsics need (`avx512f` implies AVX2 and FMA);
// the dispatch trampolines below add the scalar bit-manipulation instructions
// every CPU of the level has (and AVX-512 DQ) for the portable bodies compiled
// through them.

/// Marks functions as AVX2 + FMA code ([`SimdLevel::Avx2`]).
macro_rules! avx2_fn {
    ($($item:item)*) => {$(
        #[target_feature(enable = "avx2,fma")]
        $item
    )*};
}
pub(crate) use avx2_fn;

/// Marks functions as AVX-512 F/BW/VL code ([`SimdLevel::Avx512`]).
macro_rules! avx512_fn {
    ($($item:item)*) => {$(
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
        $item
    )*};
}
pub(crate) use avx512_fn;

/// Marks functions as AVX-512 BF16 code ([`Extension::Avx512Bf16`]): the
/// AVX-512 set plus the extension.
macro_rules! avx512_bf16_fn {
    ($($item:item)*) => {$(
        $crate::simd::avx512_fn! {
            #[target_feature(enable = "avx512bf16")]
            $item
        }
    )*};
}
pub(crate) use avx512_bf16_fn;

/// A kernel body to be compiled once per SIMD level. Implementations must mark
/// `run` `#[inline(always)]` so that it is inlined into the feature-enabled callers.
pub trait SimdKernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the active level.
#[inline]
pub fn dispatch<K: SimdKernel>(kernel: K) -> K::Output {
    run_at(level(), kernel)
}

/// Runs `kernel`, one of `workload`'s, compiled for [`level_for`] that workload.
#[inline]
pub fn dispatch_for<K: SimdKernel>(workload: Workload, kernel: K) -> K::Output {
    run_at(level_for(workload), kernel)
}

#[inline]
fn run_at<K: SimdKernel>(level: SimdLevel, kernel: K) -> K::Output {
    match level {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: levels come from level(), never above detected(), so the CPU
        // has these features (preferred_level only lowers them).
        SimdLevel::Avx512 => unsafe { run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe { run_avx2(kernel) },
        _ => kernel.run(),
    }
}

avx512_fn! {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512dq,bmi1,bmi2,popcnt")]
    unsafe fn run_avx512<K: SimdKernel>(kernel: K) -> K::Output {
        kernel.run()
    }
}

avx2_fn! {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "bmi1,bmi2,popcnt")]
    unsafe fn run_avx2<K: SimdKernel>(kernel: K) -> K::Output {
        kernel.run()
    }
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
    fn supports_follows_the_active_level() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for wanted in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            let active = set_level(wanted);
            for l in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                assert_eq!(supports(l), l <= active);
            }
            let bf16 = Extension::Avx512Bf16;
            assert_eq!(supports_extension(bf16), active == SimdLevel::Avx512 && bf16.detected());
        }
        set_level(detected());
    }

    #[test]
    fn forcing_a_level_overrides_the_workload_table_and_reset_restores_it() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let zen4 = Microarchitecture::Zen4;
        assert_eq!(preferred_level(Workload::Pooling, SimdLevel::Avx512, zen4), SimdLevel::Avx2);
        assert_eq!(preferred_level(Workload::Pooling, SimdLevel::Avx2, zen4), SimdLevel::Avx2);
        let other = Microarchitecture::Other;
        assert_eq!(preferred_level(Workload::Pooling, SimdLevel::Avx512, other), SimdLevel::Avx512);
        set_level(SimdLevel::Avx512);
        assert_eq!(level_for(Workload::Pooling), SimdLevel::Avx512.min(detected()));
        let active = reset_level();
        if std::env::var_os("FERROPS_SIMD").is_none() {
            assert_eq!(active, detected());
            let expected = preferred_level(Workload::Pooling, detected(), microarchitecture());
            assert_eq!(level_for(Workload::Pooling), expected);
            assert_eq!(automatic_level(Some(Workload::Pooling)), expected);
        }
        assert_eq!(Workload::parse("pooling"), Some(Workload::Pooling));
        assert_eq!(Workload::parse("boxes"), None);
    }

    #[test]
    fn parse_round_trips() {
        for l in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
        }
        assert_eq!(SimdLevel::parse("sse9"), None);
    }
}
