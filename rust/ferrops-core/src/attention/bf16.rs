//! bfloat16 attention, two ways. The forward pass of `bf16_dot.rs` takes the
//! inputs as they are and multiplies pairs with AVX-512 BF16's `VDPBF16PS`. Otherwise the
//! inputs are widened to float32 once, in parallel (exactly: bfloat16 is the top
//! half of a float32), the float32 kernels run, and the output is rounded back to
//! nearest even. The log-sum-exp is float32 either way.
//!
//! Which is faster depends on the CPU, not just on whether it has the
//! instruction. On a Sapphire Rapids-class Xeon, `VDPBF16PS` sustained 0.74
//! instructions/ns against 3.5 for a 512-bit float32 FMA (12 independent chains
//! each), so a pair dot product does less than half an FMA's work per ns, and
//! widening measured faster (bf16 causal 1x8x4096x4096, D=64: 239-253 ms against
//! 270-273 ms on one thread). AMD's Zen 4 and later run 512-bit instructions as two
//! 256-bit halves, an FMA and a pair dot product alike, so the dot product does
//! twice the multiply-adds of an FMA per instruction there. The dot products are
//! therefore the default on AMD CPUs that have them and off elsewhere;
//! `FERROPS_BF16_DOT=1|0` (read once) or [`set_dot_products`] overrides that.

use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::bf16_dot;
use super::{attention_forward, Attention};
use crate::error::Result;
use crate::finite::check_all_finite_bf16;
use crate::interrupt::Cancel;
use crate::simd::{self, Extension};

/// Elements per parallel piece (fixed, so the work split does not depend on the
/// thread count; each element's result does not depend on the split anyway).
const CHUNK: usize = 1 << 16;

// 0 = not yet chosen; 1 = widen; 2 = dot products.
static DOT_PRODUCTS: AtomicU8 = AtomicU8::new(0);

/// Chooses the dot products (`Some(true)`), widening (`Some(false)`) or the
/// default for this CPU (`None`, see the module notes). The dot products also
/// need the CPU's AVX-512 BF16 and the AVX-512 SIMD level.
pub fn set_dot_products(choice: Option<bool>) {
    let value = match choice {
        Some(true) => 2,
        Some(false) => 1,
        None => {
            if default_dot_products() {
                2
            } else {
                1
            }
        }
    };
    DOT_PRODUCTS.store(value, Ordering::Relaxed);
}

fn default_dot_products() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // `__cpuid` is a safe function in recent Rust and unsafe in rust-version's.
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
        let vendor = unsafe { std::arch::x86_64::__cpuid(0) };
        // "AuthenticAMD", in EBX, EDX, ECX order.
        (vendor.ebx, vendor.edx, vendor.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether bfloat16 attention runs on the CPU's bfloat16 dot products (AVX-512
/// BF16, at the active SIMD level, and chosen) rather than widened to float32.
pub fn native_dot_products() -> bool {
    if DOT_PRODUCTS.load(Ordering::Relaxed) == 0 {
        match std::env::var("FERROPS_BF16_DOT").as_deref().map(str::trim) {
            Ok("1") => set_dot_products(Some(true)),
            Ok("0") => set_dot_products(Some(false)),
            _ => set_dot_products(None),
        }
    }
    DOT_PRODUCTS.load(Ordering::Relaxed) == 2 && simd::supports_extension(Extension::Avx512Bf16)
}

/// [`attention_forward`] for bfloat16 `q`, `k`, `v` given as their bits: the
/// output as bfloat16 bits and the (base-2) log-sum-exp as float32; `cancel` as
/// there.
pub fn attention_forward_bf16(
    att: &Attention<'_, f32>,
    q: &[u16],
    k: &[u16],
    v: &[u16],
    cancel: &Cancel,
) -> Result<(Vec<u16>, Vec<f32>)> {
    #[cfg(target_arch = "x86_64")]
    if native_dot_products() {
        let seqs = att.validate_shapes([q.len(), k.len(), v.len()])?;
        for (name, data) in [("query", q), ("key", k), ("value", v)] {
            att.named(check_all_finite_bf16("", name, data))?;
        }
        let dv_pad = super::tile::round_up(att.dim_v, super::tile::LANES);
        let (out, lse) = super::forward::run_tasks(
            att,
            &seqs,
            cancel,
            || bf16_dot::PackedTiles::new(att.dim_qk, dv_pad),
            |task, scratch, packed| bf16_dot::attend(att, &seqs, task, q, k, v, scratch, packed, cancel),
        )?;
        return Ok((f32_to_bf16(&out), lse));
    }
    let (out, lse) = attention_forward(att, &bf16_to_f32(q), &bf16_to_f32(k), &bf16_to_f32(v), cancel)?;
    Ok((f32_to_bf16(&out), lse))
}

pub fn bf16_to_f32(src: &[u16]) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
        for (o, &s) in o.iter_mut().zip(s) {
            *o = f32::from_bits((s as u32) << 16);
        }
    });
    out
}

pub fn f32_to_bf16(src: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; src.len()];
    out.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(o, s)| {
        for (o, &s) in o.iter_mut().zip(s) {
            *o = round_to_bf16(s);
        }
    });
    out
}

#[inline(always)]
fn round_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        // A quiet NaN of the same sign (rounding could carry into infinity).
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rounding() {
        let exact = [0.0f32, -0.0, 1.0, -2.5, 65280.0, f32::INFINITY, f32::NEG_INFINITY];
        let back = bf16_to_f32(&f32_to_bf16(&exact));
        assert_eq!(
            back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            exact.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one (1);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(
            bf16_to_f32(&f32_to_bf16(&[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, 1.0 + 1.1 / 256.0])),
            vec![1.0, 1.0 + 4.0 / 256.0, 1.0 + 2.0 / 256.0]
        );
        assert!(bf16_to_f32(&f32_to_bf16(&[f32::NAN, -f32::NAN])).iter().all(|x| x.is_nan()));
        assert_eq!(f32_to_bf16(&[f32::MAX])[0], 0x7F80, "rounds to infinity like torch");
    }
}
