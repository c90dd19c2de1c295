//! bfloat16 <-> float32 for attention's bfloat16 inputs: the kernel computes in
//! float32 (bfloat16 has 8 bits of mantissa), so inputs are widened once, in
//! parallel, and the output rounded back. bfloat16 is the top half of a float32,
//! so widening is exact and narrowing is a round to nearest even.

use rayon::prelude::*;

/// Elements per parallel piece (fixed, so the work split does not depend on the
/// thread count; each element's result does not depend on the split anyway).
const CHUNK: usize = 1 << 16;

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
        assert_eq!(back.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), exact.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one (1);
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(bf16_to_f32(&f32_to_bf16(&[1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, 1.0 + 1.1 / 256.0])), vec![1.0, 1.0 + 4.0 / 256.0, 1.0 + 2.0 / 256.0]);
        assert!(bf16_to_f32(&f32_to_bf16(&[f32::NAN, -f32::NAN])).iter().all(|x| x.is_nan()));
        assert_eq!(f32_to_bf16(&[f32::MAX])[0], 0x7F80, "rounds to infinity like torch");
    }
}
