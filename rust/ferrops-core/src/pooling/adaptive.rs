//! Adaptive max/average pooling (POOL-ADAPTIVE) and spatial pyramid pooling
//! (POOL-SPP).
//!
//! Rows first: for each output row bin the rows of the bin are combined
//! elementwise into one row (contiguous, vectorised), then each column bin of that
//! row is reduced. The vertical pass does `H x W` work per level, the horizontal
//! one only `n x W`; SPP runs all levels on a plane while it is in cache.

use rayon::prelude::*;

use super::window::planes_per_task;
use super::{adaptive_bin, beats, check_grad, has_nan, max_of, max_reduce, positive, strided_max, PoolReal, Shape};
use crate::buffer;
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch_for, SimdKernel, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Max,
    Avg,
}

impl PoolMode {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "max" => Ok(PoolMode::Max),
            "avg" => Ok(PoolMode::Avg),
            other => Err(FerropsError::value(function, "mode", "'max' or 'avg'", format!("'{other}'"))),
        }
    }
}

/// The adaptive bins of all levels along one axis, cut into segments: the union
/// of every bin edge splits the axis into segments, and each bin of each level is
/// a run of whole segments. Reducing each segment once and then combining
/// segments reads the plane once for all levels instead of once per level.
struct Segments {
    /// Segment `s` covers `[edges[s], edges[s + 1])`.
    edges: Vec<usize>,
    /// Per level, per bin: the segments `[first, end)` the bin spans.
    bins: Vec<Vec<(usize, usize)>>,
}

impl Segments {
    fn new(size: usize, counts: &[usize]) -> Segments {
        let mut edges: Vec<usize> = counts
            .iter()
            .flat_map(|&n| {
                (0..n).flat_map(move |i| {
                    let (start, end) = adaptive_bin(i, n, size);
                    [start, end]
                })
            })
            .collect();
        edges.sort_unstable();
        edges.dedup();
        let segment = |edge: usize| edges.partition_point(|&e| e < edge);
        let bins = counts
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|i| {
                        let (start, end) = adaptive_bin(i, n, size);
                        (segment(start), segment(end))
                    })
                    .collect()
            })
            .collect();
        Segments { edges, bins }
    }

    fn count(&self) -> usize {
        self.edges.len() - 1
    }
}

/// The plan shared by every plane of one call: levels `(oh, ow)` and their
/// segments along rows and columns.
struct Plan<'a> {
    h: usize,
    w: usize,
    levels: &'a [[usize; 2]],
    rows: Segments,
    cols: Segments,
    mode: PoolMode,
}

impl<'a> Plan<'a> {
    fn new(shape: Shape, levels: &'a [[usize; 2]], mode: PoolMode) -> Self {
        let heights: Vec<usize> = levels.iter().map(|l| l[0]).collect();
        let widths: Vec<usize> = levels.iter().map(|l| l[1]).collect();
        Plan {
            h: shape.h,
            w: shape.w,
            levels,
            rows: Segments::new(shape.h, &heights),
            cols: Segments::new(shape.w, &widths),
            mode,
        }
    }
}

/// Per-task scratch: one reduced row per row segment, one value per cell
/// (row segment x column segment).
struct Cells<T> {
    segment_rows: Vec<T>,
    cells: Vec<T>,
}

impl<T: PoolReal> Cells<T> {
    fn new(plan: &Plan) -> Self {
        Cells {
            segment_rows: vec![T::ZERO; plan.rows.count() * plan.w],
            cells: vec![T::ZERO; plan.rows.count() * plan.cols.count()],
        }
    }
}

/// One plane pooled at every level of `plan`, written level after level (each
/// bins row-major) into `dst`.
#[inline(always)]
fn pool_plane<T: PoolReal>(src: &[T], plan: &Plan, scratch: &mut Cells<T>, dst: &mut [T]) {
    match plan.mode {
        PoolMode::Max if has_nan(src) => pool_plane_with::<T, true>(src, plan, scratch, dst),
        _ => pool_plane_with::<T, false>(src, plan, scratch, dst),
    }
}

#[inline(always)]
fn pool_plane_with<T: PoolReal, const NAN: bool>(src: &[T], plan: &Plan, scratch: &mut Cells<T>, dst: &mut [T]) {
    let w = plan.w;
    let (row_edges, col_edges) = (&plan.rows.edges, &plan.cols.edges);
    let n_cols = plan.cols.count();
    let max = plan.mode == PoolMode::Max;
    // Rows first: each row segment reduced elementwise into one row (vectorised).
    for (s, row) in scratch.segment_rows.chunks_exact_mut(w).enumerate() {
        let (r0, r1) = (row_edges[s], row_edges[s + 1]);
        if max {
            strided_max::<T, NAN>(&src[r0 * w..], w, r1 - r0, row);
        } else {
            row.copy_from_slice(&src[r0 * w..r0 * w + w]);
            for r in r0 + 1..r1 {
                let next = &src[r * w..r * w + w];
                for j in 0..w {
                    row[j] += next[j];
                }
            }
        }
    }
    // Then each row segment cut into column segments: one value per cell.
    for (row, cells) in scratch.segment_rows.chunks_exact(w).zip(scratch.cells.chunks_exact_mut(n_cols)) {
        for (c, cell) in cells.iter_mut().enumerate() {
            let part = &row[col_edges[c]..col_edges[c + 1]];
            *cell = if max { max_reduce::<T, NAN>(part) } else { part.iter().fold(T::ZERO, |s, &v| s + v) };
        }
    }
    // Each bin of each level combines its cells.
    let mut at = 0;
    for (l, &[oh, ow]) in plan.levels.iter().enumerate() {
        for i in 0..oh {
            let (s0, s1) = plan.rows.bins[l][i];
            for j in 0..ow {
                let (c0, c1) = plan.cols.bins[l][j];
                let mut acc = scratch.cells[s0 * n_cols + c0];
                for s in s0..s1 {
                    let first = if s == s0 { c0 + 1 } else { c0 };
                    for &v in &scratch.cells[s * n_cols + first..s * n_cols + c1] {
                        acc = if max { max_of::<T, NAN>(acc, v) } else { acc + v };
                    }
                }
                dst[at] = if max {
                    acc
                } else {
                    // torch's order: the bin's sum divided by its height, then its width.
                    let (r0, r1) = adaptive_bin(i, oh, plan.h);
                    let (w0, w1) = adaptive_bin(j, ow, plan.w);
                    acc / T::from_f64((r1 - r0) as f64) / T::from_f64((w1 - w0) as f64)
                };
                at += 1;
            }
        }
    }
}

/// The flat index (within the plane) of the first arg max of bin `(i, j)`.
#[inline]
fn bin_arg_max<T: PoolReal>(src: &[T], h: usize, w: usize, oh: usize, ow: usize, i: usize, j: usize) -> usize {
    let (r0, r1) = adaptive_bin(i, oh, h);
    let (c0, c1) = adaptive_bin(j, ow, w);
    let mut arg = r0 * w + c0;
    let mut best = src[arg];
    for r in r0..r1 {
        for c in c0..c1 {
            if beats(src[r * w + c], best) {
                best = src[r * w + c];
                arg = r * w + c;
            }
        }
    }
    arg
}

/// Adds one plane's adaptive-pooling gradient `grad` (`oh x ow`) into `grad_in`.
fn adaptive_plane_backward<T: PoolReal>(
    src: &[T],
    h: usize,
    w: usize,
    [oh, ow]: [usize; 2],
    mode: PoolMode,
    grad: &[T],
    grad_in: &mut [T],
) {
    for i in 0..oh {
        let (r0, r1) = adaptive_bin(i, oh, h);
        for j in 0..ow {
            let g = grad[i * ow + j];
            match mode {
                PoolMode::Max => grad_in[bin_arg_max(src, h, w, oh, ow, i, j)] += g,
                PoolMode::Avg => {
                    let (c0, c1) = adaptive_bin(j, ow, w);
                    let share = g / T::from_f64((r1 - r0) as f64) / T::from_f64((c1 - c0) as f64);
                    for r in r0..r1 {
                        grad_in[r * w + c0..r * w + c1].iter_mut().for_each(|v| *v += share);
                    }
                }
            }
        }
    }
}

/// Checks `out` and that the `[N, C, OH, OW]` output is one a buffer can hold
/// (so products of its dimensions do not overflow).
fn check_output_size<T>(function: &'static str, shape: Shape, out: [usize; 2]) -> Result<()> {
    positive(function, "output_size", out[0])?;
    positive(function, "output_size", out[1])?;
    if shape.planes() > 0 && (shape.h == 0 || shape.w == 0) {
        return Err(FerropsError::value(
            function,
            "input",
            "a non-empty spatial size",
            format!("{}x{}", shape.h, shape.w),
        ));
    }
    buffer::checked_len::<T>(function, "the output", &[shape.n, shape.c, out[0], out[1]])?;
    Ok(())
}

/// `dst` holds, per plane, every level pooled one after the other (`sum oh x ow`
/// values).
struct PoolPlanes<'a, T> {
    src: &'a [T],
    dst: &'a mut [T],
    plan: &'a Plan<'a>,
}

impl<T: PoolReal> SimdKernel for PoolPlanes<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let plan = self.plan;
        let per_plane: usize = plan.levels.iter().map(|l| l[0] * l[1]).sum();
        let mut scratch = Cells::new(plan);
        for (src, dst) in self.src.chunks_exact(plan.h * plan.w).zip(self.dst.chunks_exact_mut(per_plane)) {
            pool_plane(src, plan, &mut scratch, dst);
        }
    }
}

/// Each plane pooled at every level, `[planes, sum n^2]`, in a buffer of
/// `out_dims` (the same count, shaped as `function` returns it). The caller has
/// checked that count, so the sums and products here do not overflow.
fn pool_levels<T: PoolReal>(
    function: &'static str,
    x: &[T],
    shape: Shape,
    levels: &[[usize; 2]],
    mode: PoolMode,
    out_dims: &[usize],
) -> Result<Vec<T>> {
    let per_plane: usize = levels.iter().map(|l| l[0] * l[1]).sum();
    let mut out = buffer::try_zeroed::<T>(function, "the output", out_dims)?;
    if out.is_empty() {
        return Ok(out);
    }
    let plan = Plan::new(shape, levels, mode);
    let per_task = planes_per_task(shape.plane_len());
    out.par_chunks_mut(per_task * per_plane)
        .zip(x.par_chunks(per_task * shape.plane_len()))
        .for_each(|(dst, src)| dispatch_for(Workload::Pooling, PoolPlanes { src, dst, plan: &plan }));
    Ok(out)
}

/// Adaptive max or average pooling to `[N, C, OH, OW]` (POOL-ADAPTIVE; torch's
/// `adaptive_max_pool2d` / `adaptive_avg_pool2d`).
pub fn adaptive_pool2d<T: PoolReal>(x: &[T], shape: Shape, output_size: [usize; 2], mode: PoolMode) -> Result<Vec<T>> {
    let function = match mode {
        PoolMode::Max => "adaptive_max_pool2d",
        PoolMode::Avg => "adaptive_avg_pool2d",
    };
    shape.check(function, "input", x.len())?;
    check_output_size::<T>(function, shape, output_size)?;
    pool_levels(function, x, shape, &[output_size], mode, &[shape.n, shape.c, output_size[0], output_size[1]])
}

/// Adaptive max pooling with the flat `h * W + w` index of each bin's first arg
/// max in its plane (torch's `return_indices=True`).
pub fn adaptive_max_pool2d_with_indices<T: PoolReal>(
    x: &[T],
    shape: Shape,
    output_size: [usize; 2],
) -> Result<(Vec<T>, Vec<i64>)> {
    const F: &str = "adaptive_max_pool2d";
    shape.check(F, "input", x.len())?;
    check_output_size::<T>(F, shape, output_size)?;
    let [oh, ow] = output_size;
    let (h, w) = (shape.h, shape.w);
    let dims = [shape.n, shape.c, oh, ow];
    let mut indices = buffer::try_zeroed::<i64>(F, "the output's indices", &dims)?;
    if indices.is_empty() {
        return Ok((Vec::new(), indices));
    }
    indices.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(idx, src)| {
        for i in 0..oh {
            for j in 0..ow {
                idx[i * ow + j] = bin_arg_max(src, h, w, oh, ow, i, j) as i64;
            }
        }
    });
    let values = buffer::try_filled(F, "the output", &dims, |values| {
        for (o, (value, &i)) in values.iter_mut().zip(&indices).enumerate() {
            value.write(x[(o / (oh * ow)) * h * w + i as usize]);
        }
    })?;
    Ok((values, indices))
}

/// The gradient of [`adaptive_pool2d`] with respect to its input (max: to each
/// bin's first arg max; avg: spread evenly over the bin), summed over bins.
pub fn adaptive_pool2d_backward<T: PoolReal>(
    x: &[T],
    shape: Shape,
    output_size: [usize; 2],
    mode: PoolMode,
    grad_output: &[T],
) -> Result<Vec<T>> {
    const F: &str = "adaptive_pool2d_backward";
    shape.check(F, "input", x.len())?;
    check_output_size::<T>(F, shape, output_size)?;
    check_grad(F, &[shape.planes(), output_size[0], output_size[1]], grad_output.len())?;
    levels_backward(x, shape, &[output_size], mode, |plane, _| {
        &grad_output[plane * output_size[0] * output_size[1]..][..output_size[0] * output_size[1]]
    })
}

fn levels_backward<'g, T: PoolReal>(
    x: &[T],
    shape: Shape,
    levels: &[[usize; 2]],
    mode: PoolMode,
    grad_of: impl Fn(usize, usize) -> &'g [T] + Sync,
) -> Result<Vec<T>> {
    let (h, w) = (shape.h, shape.w);
    let mut grad_in = vec![T::ZERO; x.len()];
    if grad_in.is_empty() {
        return Ok(grad_in);
    }
    grad_in.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).enumerate().for_each(|(plane, (grad_in, src))| {
        for (l, &[oh, ow]) in levels.iter().enumerate() {
            adaptive_plane_backward(src, h, w, [oh, ow], mode, grad_of(plane, l), grad_in);
        }
    });
    Ok(grad_in)
}

fn check_levels(function: &'static str, levels: &[usize]) -> Result<()> {
    if levels.is_empty() {
        return Err(FerropsError::value(function, "levels", "at least one level", "none"));
    }
    if let Some(&bad) = levels.iter().find(|&&n| n == 0) {
        return Err(FerropsError::value(function, "levels", "levels of at least 1", bad.to_string()));
    }
    Ok(())
}

/// The values per plane of a spatial pyramid pooling output, `sum n^2`, when
/// the whole output, `[N, C * sum n^2]`, is one a buffer can hold.
fn spp_plane_len<T>(function: &'static str, shape: Shape, levels: &[usize]) -> Result<usize> {
    // In u128: n^2 < 2^128 for any n < 2^64; the sum and products saturate.
    let squares = levels.iter().fold(0u128, |sum, &n| sum.saturating_add(n as u128 * n as u128));
    let width = squares.saturating_mul(shape.c as u128);
    let too_large = || {
        let bytes = width.saturating_mul(shape.n as u128).saturating_mul(std::mem::size_of::<T>() as u128);
        FerropsError::out_of_memory(function, format!("the output of shape [{}, {width}]", shape.n), bytes)
    };
    let per_plane = usize::try_from(squares).map_err(|_| too_large())?;
    let width = usize::try_from(width).map_err(|_| too_large())?;
    buffer::checked_len::<T>(function, "the output", &[shape.n, width])?;
    Ok(per_plane)
}

/// Spatial pyramid pooling (POOL-SPP): each level `n` pooled to `n x n` adaptive
/// bins, flattened channel-major, levels concatenated in order: `[N, C * sum n^2]`.
pub fn spatial_pyramid_pool<T: PoolReal>(x: &[T], shape: Shape, levels: &[usize], mode: PoolMode) -> Result<Vec<T>> {
    const F: &str = "spatial_pyramid_pool";
    shape.check(F, "input", x.len())?;
    check_levels(F, levels)?;
    check_output_size::<T>(F, shape, [1, 1])?;
    let per_plane = spp_plane_len::<T>(F, shape, levels)?;
    let out_dims = [shape.n, shape.c * per_plane];
    let squares: Vec<[usize; 2]> = levels.iter().map(|&n| [n, n]).collect();
    let pooled = pool_levels(F, x, shape, &squares, mode, &out_dims)?;
    // [planes, sum n^2] -> [N, levels of C x n^2]: small, a plain gather.
    let mut out = buffer::try_with_capacity(F, "the output", &out_dims)?;
    for b in 0..shape.n {
        let mut at = 0;
        for &n in levels {
            for c in 0..shape.c {
                out.extend_from_slice(&pooled[(b * shape.c + c) * per_plane + at..][..n * n]);
            }
            at += n * n;
        }
    }
    Ok(out)
}

/// The gradient of [`spatial_pyramid_pool`] with respect to its input.
pub fn spatial_pyramid_pool_backward<T: PoolReal>(
    x: &[T],
    shape: Shape,
    levels: &[usize],
    mode: PoolMode,
    grad_output: &[T],
) -> Result<Vec<T>> {
    const F: &str = "spatial_pyramid_pool_backward";
    shape.check(F, "input", x.len())?;
    check_levels(F, levels)?;
    check_output_size::<T>(F, shape, [1, 1])?;
    let per_plane = spp_plane_len::<T>(F, shape, levels)?;
    check_grad(F, &[shape.planes(), per_plane], grad_output.len())?;
    let offsets: Vec<usize> = levels
        .iter()
        .scan(0, |at, &n| {
            let start = *at;
            *at += shape.c * n * n;
            Some(start)
        })
        .collect();
    let squares: Vec<[usize; 2]> = levels.iter().map(|&n| [n, n]).collect();
    levels_backward(x, shape, &squares, mode, |plane, l| {
        let (b, c) = (plane / shape.c, plane % shape.c);
        let n2 = levels[l] * levels[l];
        &grad_output[b * shape.c * per_plane + offsets[l] + c * n2..][..n2]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel;
    use crate::simd::{self, SimdLevel};

    fn naive(x: &[f64], s: Shape, oh: usize, ow: usize, mode: PoolMode) -> Vec<f64> {
        let mut out = Vec::new();
        for plane in x.chunks(s.h * s.w) {
            for i in 0..oh {
                let (r0, r1) = adaptive_bin(i, oh, s.h);
                for j in 0..ow {
                    let (c0, c1) = adaptive_bin(j, ow, s.w);
                    let vals: Vec<f64> = (r0..r1).flat_map(|r| (c0..c1).map(move |c| plane[r * s.w + c])).collect();
                    out.push(match mode {
                        PoolMode::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        PoolMode::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn outputs_too_large_to_allocate_are_out_of_memory_errors() {
        let s = Shape::new([1, 2, 6, 6]);
        let x = vec![0.0f32; s.len()];
        let oom = |e: FerropsError, function: &str| matches!(e, FerropsError::OutOfMemory { function: ref f, .. } if f == function);
        for size in [[1 << 17, 1 << 17], [1 << 32, 1 << 32], [usize::MAX, usize::MAX]] {
            assert!(oom(adaptive_pool2d(&x, s, size, PoolMode::Avg).unwrap_err(), "adaptive_avg_pool2d"));
            assert!(oom(adaptive_max_pool2d_with_indices(&x, s, size).unwrap_err(), "adaptive_max_pool2d"));
            let grad = adaptive_pool2d_backward(&x, s, size, PoolMode::Max, &[]).unwrap_err();
            // Refused as the forward output would be, or (on a machine that could
            // hold it) as a gradient of the wrong size.
            assert!(matches!(grad, FerropsError::InvalidValue { .. }) || oom(grad, "adaptive_pool2d_backward"));
        }
        // n^2 overflows usize at 2^32: once silently an empty output.
        for levels in [[1usize << 17], [1 << 31], [1 << 32], [usize::MAX]] {
            let err = spatial_pyramid_pool(&x, s, &levels, PoolMode::Max).unwrap_err();
            assert!(oom(err, "spatial_pyramid_pool"));
            assert!(spatial_pyramid_pool_backward(&x, s, &levels, PoolMode::Max, &[]).is_err());
        }
        let err = spatial_pyramid_pool(&x, s, &[1 << 32], PoolMode::Max).unwrap_err();
        assert_eq!(
            err.to_string(),
            "spatial_pyramid_pool(): the output of shape [1, 36893488147419103232] needs \
             147573952589676412928 bytes, more than can be allocated"
        );
    }

    #[test]
    fn adaptive_and_spp_match_the_bin_formula() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let s = Shape::new([2, 3, 5, 7]);
        let x: Vec<f64> = (0..s.len()).map(|i| ((i * 37) % 11) as f64 - 3.0).collect();
        for level in [SimdLevel::Scalar, SimdLevel::Avx512] {
            simd::set_level(level);
            for threads in [1, 2] {
                parallel::set_num_threads(threads).unwrap();
                for (oh, ow) in [(1, 1), (2, 3), (4, 4), (6, 9)] {
                    for mode in [PoolMode::Max, PoolMode::Avg] {
                        let got = parallel::install(|| adaptive_pool2d(&x, s, [oh, ow], mode)).unwrap();
                        let want = naive(&x, s, oh, ow, mode);
                        for (g, w) in got.iter().zip(&want) {
                            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
                        }
                    }
                }
            }
        }
        simd::set_level(simd::detected());
        let spp = spatial_pyramid_pool(&x, s, &[4, 2, 1], PoolMode::Max).unwrap();
        assert_eq!(spp.len(), s.n * s.c * 21);
        let l2 = naive(&x, s, 2, 2, PoolMode::Max);
        // batch 1, level 2 (after C * 16 values), channel 2.
        assert_eq!(&spp[s.c * 21 + s.c * 16 + 2 * 4..][..4], &l2[(s.c + 2) * 4..][..4]);
    }

    #[test]
    fn indices_and_gradients_agree() {
        let s = Shape::new([1, 2, 5, 5]);
        let x: Vec<f64> = (0..s.len()).map(|i| (i % 3) as f64).collect();
        let (values, idx) = adaptive_max_pool2d_with_indices(&x, s, [2, 2]).unwrap();
        assert_eq!(values, adaptive_pool2d(&x, s, [2, 2], PoolMode::Max).unwrap());
        let grad = vec![1.0; 8];
        let gi = adaptive_pool2d_backward(&x, s, [2, 2], PoolMode::Max, &grad).unwrap();
        for (o, &i) in idx.iter().enumerate() {
            assert!(gi[(o / 4) * 25 + i as usize] >= 1.0);
        }
        let ga = adaptive_pool2d_backward(&x, s, [2, 2], PoolMode::Avg, &grad).unwrap();
        assert!((ga.iter().sum::<f64>() - 8.0).abs() < 1e-12);
        assert!(spatial_pyramid_pool(&x, s, &[], PoolMode::Max).is_err());
        assert!(spatial_pyramid_pool(&x, s, &[2, 0], PoolMode::Max).is_err());
        assert!(adaptive_pool2d(&x, s, [0, 2], PoolMode::Avg).is_err());
    }
}
