//! The attention kernels written with intrinsics, one file per instruction set
//! (each used only where `simd::supports` or `simd::supports_extension` says so):
//! the float32 tile product, softmax step and exponentials in [`avx2`] and
//! [`avx512`] (called from `tile.rs`), the bfloat16 pair products in
//! [`avx512_bf16`] (called from `bf16.rs`).

pub(super) mod avx2;
pub(super) mod avx512;
pub(super) mod avx512_bf16;
