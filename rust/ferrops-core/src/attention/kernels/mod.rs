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
    /// The rows of positions `j..j + n` (`size` bytes an element; the last one
    /// repeated to fill four slots: read, never used), and prefetches into L2 of
    /// the rows `ahead` positions later: of every row for a 2-byte cache (35% less
    /// time for bfloat16, whose arithmetic per byte leaves the hardware prefetcher
    /// behind), else only where a new run starts (a paged cache's next block,
    /// which the hardware cannot guess: that row and the next), since a float32
    /// run streamed faster left to the hardware.
    ///
    /// # Safety
    /// The walk is as documented and `j + n <= rows.len()`, `n >= 1`.
    #[inline(always)]
    unsafe fn rows_at(&self, j: usize, n: usize, size: usize) -> [*const u8; POSITIONS] {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let row_bytes = self.heads_kv * self.dim * size;
        let len = self.rows.len();
        if self.ahead > 0 {
            for t in (j + self.ahead).min(len)..(j + n + self.ahead).min(len) {
                let every_row = size == 2;
                if every_row || self.rows[t] != self.rows[t - 1] + self.heads_kv {
                    for u in t..(t + if every_row { 1 } else { 2 }).min(len) {
                        let row = self.cache.add(self.rows[u] * self.dim * size) as *const i8;
                        let mut line = 0;
                        while line < row_bytes {
                            _mm_prefetch::<_MM_HINT_T1>(row.add(line));
                            line += 64;
                        }
                    }
                }
            }
        }
        let mut rows = [std::ptr::null(); POSITIONS];
        #[allow(clippy::needless_range_loop)]
        for t in 0..POSITIONS {
            rows[t] = self.cache.add(self.rows[j + t.min(n - 1)] * self.dim * size);
        }
        rows
    }
}

/// The rows moved `bytes` on.
#[inline(always)]
unsafe fn offset(rows: [*const u8; POSITIONS], bytes: usize) -> [*const u8; POSITIONS] {
    [rows[0].add(bytes), rows[1].add(bytes), rows[2].add(bytes), rows[3].add(bytes)]
}
