//! The attention kernels written with intrinsics, one file per instruction set
//! (each used only where `simd::supports` or `simd::supports_extension` says so):
//! the float32 tile product, softmax step and exponentials in [`avx2`] and
//! [`avx512`] (called from `tile.rs`), the bfloat16 pair products in
//! [`avx512_bf16`] (called from `bf16.rs`), the decoding walks over a key/value
//! cache in [`avx512_decode`] (called from `decode_task.rs`).

/// `2^f` for `f` in [-0.5, 0.5], highest degree first, evaluated by Horner's rule
/// with fused multiply-adds: the minimax fit (1.6e-7 relative) with the constant
/// term held at exactly 1, so that `2^0 = 1` exactly. The linear coefficient is
/// the fit's, 3 ulps below `ln 2`, not a rounded `ln 2`.
#[allow(clippy::approx_constant)]
const EXP2_POLYNOMIAL: [f32; 6] = [0.001_327_765_4, 0.009_671_974, 0.055_506_85, 0.240_222_32, 0.693_147, 1.0];

pub(super) mod avx2;
pub(super) mod avx512;
pub(super) mod avx512_bf16;
pub(super) mod avx512_decode;
