//! The attention kernels written with intrinsics, one file per instruction set
//! (each used only where `simd::supports` or `simd::supports_extension` says so):
//! the float32 tile product, softmax step and exponentials in [`avx2`] and
//! [`avx512`] (called from `tile.rs`), the bfloat16 pair products in
//! [`avx512_bf16`] (called from `bf16.rs`), the decoding walks over a key/value
//! cache in [`avx2_decode`] and [`avx512_decode`] (called from `decode_task.rs`).

/// `2^f` for `f` in [-0.5, 0.5], highest degree first, evaluated by Horner's rule
/// with fused multiply-adds: the minimax fit (1.6e-7 relative) with the constant
/// term held at exactly 1, so that `2^0 = 1` exactly. The linear coefficient is
/// the fit's, 3 ulps below `ln 2`, not a rounded `ln 2`.
#[allow(clippy::approx_constant)]
const EXP2_POLYNOMIAL: [f32; 6] = [0.001_327_765_4, 0.009_671_974, 0.055_506_85, 0.240_222_32, 0.693_147, 1.0];

pub(super) mod avx2;
pub(super) mod avx2_decode;
pub(super) mod avx512;
pub(super) mod avx512_bf16;
pub(super) mod avx512_decode;

/// One decoding task's positions in a cache, for `avx2_decode` and `avx512_decode`.
pub(crate) struct Walk<'a> {
    /// The cache's first element.
    pub cache: *const u8,
    /// Each position's first head (its cache row times `heads_kv`), in the order
    /// the scores' columns take them: its `heads_kv * dim` elements, inside the
    /// cache, start at `rows[t] * dim`.
    pub rows: &'a [usize],
    pub heads_kv: usize,
    /// Elements per key head in a row.
    pub dim: usize,
    /// Query heads per key head.
    pub group: usize,
    /// Query positions of the task; query row `i * heads_q + g * group + r` is
    /// head `r` of group `g` at position `i`.
    pub query_positions: usize,
    pub heads_q: usize,
    /// How far ahead of the positions being read rows are prefetched.
    pub ahead: usize,
}

/// Cache positions the decoding kernels take at once.
const POSITIONS: usize = 4;

impl Walk<'_> {
    /// The rows of positions `j..j + n` (the last one repeated to fill four slots:
    /// read, never used), `size` bytes an element.
    ///
    /// # Safety
    /// The walk is as documented and `j + n <= rows.len()`, `n >= 1`.
    #[inline(always)]
    unsafe fn rows_at(&self, j: usize, n: usize, size: usize) -> [*const u8; POSITIONS] {
        let mut rows = [std::ptr::null(); POSITIONS];
        #[allow(clippy::needless_range_loop)]
        for t in 0..POSITIONS {
            rows[t] = self.cache.add(self.rows[j + t.min(n - 1)] * self.dim * size);
        }
        rows
    }

    /// Prefetches into L2 key head `g`'s slice of the rows `ahead` positions after
    /// `j..j + n` (`size` bytes an element). The kernels call it once per head, so
    /// the misses go out a few lines at a time between the arithmetic: a whole
    /// row's lines at once filled the miss buffers and stalled the core until they
    /// drained (bfloat16 took 1.55x the time, float32 1.2x). Every row is
    /// prefetched: a paged cache's next block, which the hardware prefetcher cannot
    /// guess, and the rows of a run too, which the hardware follows only within
    /// a 4 KiB page.
    ///
    /// # Safety
    /// The walk is as documented and `g < heads_kv`.
    #[inline(always)]
    unsafe fn prefetch_head(&self, j: usize, n: usize, g: usize, size: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let len = self.rows.len();
        let slice = self.dim * size;
        for t in (j + self.ahead).min(len)..(j + n + self.ahead).min(len) {
            let head = self.cache.add(self.rows[t] * slice + g * slice) as *const i8;
            let mut line = 0;
            while line < slice {
                _mm_prefetch::<_MM_HINT_T1>(head.add(line));
                line += 64;
            }
        }
    }
}

/// The rows moved `bytes` on.
#[inline(always)]
unsafe fn offset(rows: [*const u8; POSITIONS], bytes: usize) -> [*const u8; POSITIONS] {
    [rows[0].add(bytes), rows[1].add(bytes), rows[2].add(bytes), rows[3].add(bytes)]
}
