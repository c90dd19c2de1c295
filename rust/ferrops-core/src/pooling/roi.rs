//! RoI pooling and RoI align (POOL-ROI), torchvision's CPU semantics: the same
//! rounding, bin edges, sampling grid and bilinear weights, computed in the
//! input's precision.
//!
//! Regions are `[K, 5]` rows `(batch_index, x1, y1, x2, y2)`. Forward kernels run
//! one region per task (all channels, sampling positions computed once); backward
//! kernels own blocks of input-gradient planes and add the regions' contributions
//! in region order, so results do not depend on the thread count.

use rayon::prelude::*;

use super::{check_grad, plane_bins, positive, strided_max, PoolReal, Shape};
use crate::buffer::{self, Zeroable};
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch_for, SimdKernel, Workload};
use crate::Real;

/// Channels per backward task: each task recomputes a region's sampling
/// positions once for its block, so blocks trade that cost against parallelism.
const CHANNELS_PER_TASK: usize = 16;

/// Checks the regions and returns each one's batch index.
fn check_rois<T: Real>(function: &'static str, rois: &[T], shape: Shape) -> Result<Vec<usize>> {
    if !rois.len().is_multiple_of(5) {
        return Err(FerropsError::value(
            function,
            "boxes",
            "a [K, 5] array of (batch_index, x1, y1, x2, y2) rows",
            format!("{} values, not a multiple of 5", rois.len()),
        ));
    }
    rois.chunks_exact(5)
        .enumerate()
        .map(|(k, r)| {
            if !r.iter().all(|v| v.is_finite()) {
                return Err(FerropsError::value(
                    function,
                    "boxes",
                    "finite values",
                    format!("box {k} = [{}, {}, {}, {}, {}]", r[0], r[1], r[2], r[3], r[4]),
                ));
            }
            let b = r[0].to_f64();
            if b < 0.0 || b.fract() != 0.0 || b >= shape.n as f64 {
                return Err(FerropsError::value(
                    function,
                    "boxes",
                    format!("batch indices that are integers in [0, {})", shape.n),
                    format!("{b} in box {k}"),
                ));
            }
            Ok(b as usize)
        })
        .collect()
}

fn check_common<T: Real>(
    function: &'static str,
    x: &[T],
    shape: Shape,
    rois: &[T],
    output_size: [usize; 2],
    spatial_scale: f64,
) -> Result<Vec<usize>> {
    shape.check(function, "input", x.len())?;
    positive(function, "output_size", output_size[0])?;
    positive(function, "output_size", output_size[1])?;
    if !spatial_scale.is_finite() || spatial_scale <= 0.0 {
        return Err(FerropsError::value(
            function,
            "spatial_scale",
            "a positive finite number",
            spatial_scale.to_string(),
        ));
    }
    let batch = check_rois(function, rois, shape)?;
    if !batch.is_empty() && shape.c > 0 && (shape.h == 0 || shape.w == 0) {
        return Err(FerropsError::value(
            function,
            "input",
            "a non-empty spatial size",
            format!("{}x{}", shape.h, shape.w),
        ));
    }
    buffer::checked_len::<T>(function, "the output", &[batch.len(), shape.c, output_size[0], output_size[1]])?;
    Ok(batch)
}

/// The bins of one region for RoI pooling: row bins `[h0, h1)` and column bins
/// `[w0, w1)`, clipped to the map (a bin may be empty).
struct PoolBins {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
}

impl PoolBins {
    fn new<T: Real>(roi: &[T], shape: Shape, [ph, pw]: [usize; 2], scale: T) -> PoolBins {
        // torchvision: corners rounded half away from zero, the +1 pixel size rule.
        let corner = |v: T| (v * scale).to_f64().round() as i64;
        let (x1, y1, x2, y2) = (corner(roi[1]), corner(roi[2]), corner(roi[3]), corner(roi[4]));
        let bins = |start: i64, end: i64, count: usize, size: usize| {
            // Saturating: absurd (but finite) boxes must not overflow.
            let bin =
                T::from_f64(end.saturating_sub(start).saturating_add(1).max(1) as f64) / T::from_f64(count as f64);
            let clip = |v: i64| v.clamp(0, size as i64) as usize;
            (0..count)
                .map(|i| {
                    let lo = (T::from_f64(i as f64) * bin).to_f64().floor() as i64;
                    let hi = (T::from_f64((i + 1) as f64) * bin).to_f64().ceil() as i64;
                    (clip(lo.saturating_add(start)), clip(hi.saturating_add(start)))
                })
                .collect()
        };
        PoolBins { rows: bins(y1, y2, ph, shape.h), cols: bins(x1, x2, pw, shape.w) }
    }

    /// The columns any non-empty bin covers, `[first, end)`.
    fn column_span(&self) -> (usize, usize) {
        let open = self.cols.iter().filter(|(a, b)| b > a);
        let first = open.clone().map(|c| c.0).min().unwrap_or(0);
        (first, open.map(|c| c.1).max().unwrap_or(first))
    }
}

/// torchvision starts each bin's maximum at -FLT_MAX (for float64 too): NaN and
/// -inf never win, and a bin of only those gives -FLT_MAX.
fn roi_pool_floor<T: Real>() -> T {
    T::from_f64(-(f32::MAX as f64))
}

/// The RoI-pool values of one plane for the regions of its image, separably:
/// each row bin's rows reduced elementwise over the region's columns
/// (vectorised), then each column bin of that row. `maxNum` ignores NaN, which
/// is torchvision's rule here.
struct RoiPoolPlane<'a, T> {
    plane: &'a [T],
    w: usize,
    regions: &'a [usize],
    bins: &'a [PoolBins],
    /// `regions.len()` blocks of `PH x PW` values.
    out: &'a mut [T],
}

impl<T: PoolReal> SimdKernel for RoiPoolPlane<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (w, plane) = (self.w, self.plane);
        let mut row = vec![T::ZERO; w];
        let floor = roi_pool_floor::<T>();
        let per_region = self.out.len() / self.regions.len().max(1);
        for (&k, out) in self.regions.iter().zip(self.out.chunks_exact_mut(per_region)) {
            let bins = &self.bins[k];
            let (first, end) = bins.column_span();
            let row = &mut row[..end - first];
            for (i, &(h0, h1)) in bins.rows.iter().enumerate() {
                let out_row = &mut out[i * bins.cols.len()..(i + 1) * bins.cols.len()];
                if h1 <= h0 || end <= first {
                    out_row.fill(T::ZERO);
                    continue;
                }
                strided_max::<T, false>(&plane[h0 * w + first..], w, h1 - h0, row);
                for (o, &(w0, w1)) in out_row.iter_mut().zip(&bins.cols) {
                    *o = if w1 <= w0 {
                        T::ZERO
                    } else {
                        row[w0 - first..w1 - first].iter().fold(floor, |m, &v| m.max_num(v))
                    };
                }
            }
        }
    }
}

/// A `[K, C, per]` result computed by blocks of `block` channel planes:
/// `fill(planes, regions, out)` gets the block's planes (contiguous), the regions
/// of their image (in input order) and `out` laid out `[region][channel of the
/// block][per]`. Visiting each block once keeps its planes in cache for all its
/// regions, where going region by region would fetch the region's window of every
/// channel from memory. The split depends only on the shapes, so results do not
/// depend on the thread count. `function` is named if the buffers cannot be
/// allocated.
fn channel_blocks<T: Real + Zeroable>(
    function: &'static str,
    x: &[T],
    shape: Shape,
    batch: &[usize],
    per: usize,
    block: usize,
    fill: impl Fn(&[T], &[usize], &mut [T]) + Sync,
) -> Result<Vec<T>> {
    let mut regions_of: Vec<Vec<usize>> = vec![Vec::new(); shape.n];
    let mut local = vec![0; batch.len()];
    for (k, &n) in batch.iter().enumerate() {
        local[k] = regions_of[n].len();
        regions_of[n].push(k);
    }
    // Staging `[N][channel block][regions of n][channels of the block][per]`,
    // then gathered into `[K][C][per]`.
    let dims = [batch.len(), shape.c, per];
    let mut staging = buffer::try_zeroed::<T>(function, "the output's staging copy", &dims)?;
    let mut image_start = Vec::with_capacity(shape.n);
    let mut at = 0;
    for regions in &regions_of {
        image_start.push(at);
        at += shape.c * regions.len() * per;
    }
    let hw = shape.plane_len();
    let mut tasks: Vec<(&[T], &[usize], &mut [T])> = Vec::new();
    let mut rest = staging.as_mut_slice();
    for (n, regions) in regions_of.iter().enumerate() {
        for first in (0..shape.c).step_by(block) {
            let channels = block.min(shape.c - first);
            let (mine, tail) = rest.split_at_mut(regions.len() * channels * per);
            rest = tail;
            if !regions.is_empty() {
                let planes = &x[(n * shape.c + first) * hw..(n * shape.c + first + channels) * hw];
                tasks.push((planes, regions, mine));
            }
        }
    }
    tasks.into_par_iter().for_each(|(planes, regions, out)| fill(planes, regions, out));
    let mut out = buffer::try_zeroed::<T>(function, "the output", &dims)?;
    out.par_chunks_mut((shape.c * per).max(1)).enumerate().for_each(|(k, out)| {
        let n = batch[k];
        let count = regions_of[n].len();
        for (c, values) in out.chunks_exact_mut(per).enumerate() {
            let (first, channels) = (c - c % block, block.min(shape.c - (c - c % block)));
            let at = image_start[n] + first * count * per + (local[k] * channels + c - first) * per;
            values.copy_from_slice(&staging[at..at + per]);
        }
    });
    Ok(out)
}

/// Channels per block in [`channel_blocks`]: as many planes as fit in 256 KiB
/// (an L2 cache share), between 1 and 64.
fn block_channels<T>(shape: Shape) -> usize {
    (256 * 1024 / (shape.plane_len() * std::mem::size_of::<T>()).max(1)).clamp(1, 64)
}

/// RoI max pooling (torchvision's `roi_pool`): `[K, C, PH, PW]` values; an empty
/// bin gives 0.
pub fn roi_pool<T: PoolReal>(
    x: &[T],
    shape: Shape,
    rois: &[T],
    output_size: [usize; 2],
    spatial_scale: f64,
) -> Result<Vec<T>> {
    let batch = check_common("roi_pool", x, shape, rois, output_size, spatial_scale)?;
    let per = output_size[0] * output_size[1];
    if batch.is_empty() || shape.c == 0 {
        return Ok(Vec::new());
    }
    let scale = T::from_f64(spatial_scale);
    let bins: Vec<PoolBins> = rois.chunks_exact(5).map(|roi| PoolBins::new(roi, shape, output_size, scale)).collect();
    channel_blocks("roi_pool", x, shape, &batch, per, 1, |plane, regions, out| {
        dispatch_for(Workload::Pooling, RoiPoolPlane { plane, w: shape.w, regions, bins: &bins, out })
    })
}

/// [`roi_pool`] with, for the backward pass, the flat in-plane index of each
/// bin's first maximum (-1 for an empty bin or one without a value above
/// -FLT_MAX).
pub fn roi_pool_with_argmax<T: PoolReal>(
    x: &[T],
    shape: Shape,
    rois: &[T],
    output_size: [usize; 2],
    spatial_scale: f64,
) -> Result<(Vec<T>, Vec<i64>)> {
    const F: &str = "roi_pool";
    let batch = check_common(F, x, shape, rois, output_size, spatial_scale)?;
    let bins = output_size[0] * output_size[1];
    let per_roi = shape.c * bins;
    let dims = [batch.len(), shape.c, output_size[0], output_size[1]];
    let mut values = buffer::try_zeroed::<T>(F, "the output", &dims)?;
    let mut arg = buffer::try_from_elem::<i64>(F, "the output's arg maxes", &dims, -1)?;
    if values.is_empty() {
        return Ok((values, arg));
    }
    let scale = T::from_f64(spatial_scale);
    let lowest = roi_pool_floor::<T>();
    values.par_chunks_mut(per_roi).zip(arg.par_chunks_mut(per_roi)).enumerate().for_each(|(k, (values, arg))| {
        let pb = PoolBins::new(&rois[5 * k..5 * k + 5], shape, output_size, scale);
        let windows = pb.rows.iter().flat_map(|&(h0, h1)| pb.cols.iter().map(move |&(w0, w1)| (h0, h1, w0, w1)));
        let windows: Vec<_> = windows.collect();
        for c in 0..shape.c {
            let plane = &x[(batch[k] * shape.c + c) * shape.plane_len()..][..shape.plane_len()];
            for (b, &(h0, h1, w0, w1)) in windows.iter().enumerate() {
                if h1 <= h0 || w1 <= w0 {
                    continue;
                }
                let (mut best, mut at) = (lowest, -1i64);
                for r in h0..h1 {
                    for col in w0..w1 {
                        if plane[r * shape.w + col] > best {
                            best = plane[r * shape.w + col];
                            at = (r * shape.w + col) as i64;
                        }
                    }
                }
                values[c * bins + b] = best;
                arg[c * bins + b] = at;
            }
        }
    });
    Ok((values, arg))
}

/// The gradient of [`roi_pool`]: each bin's gradient added at its arg max.
pub fn roi_pool_backward<T: Real + Zeroable>(
    grad_output: &[T],
    argmax: &[i64],
    rois: &[T],
    shape: Shape,
    output_size: [usize; 2],
) -> Result<Vec<T>> {
    const F: &str = "roi_pool_backward";
    let batch = check_rois(F, rois, shape)?;
    buffer::checked_len::<T>(F, "the input gradient", &shape.dims())?;
    let bins = plane_bins::<T>(F, output_size)?;
    check_grad(F, &[batch.len(), shape.c, bins], grad_output.len())?;
    check_grad(F, &[grad_output.len()], argmax.len())?;
    if let Some(&bad) = argmax.iter().find(|&&a| a < -1 || a >= shape.plane_len() as i64) {
        return Err(FerropsError::value(
            F,
            "argmax",
            format!("indices in [-1, {})", shape.plane_len()),
            bad.to_string(),
        ));
    }
    scatter_by_blocks(F, shape, &batch, |k, c, plane| {
        let at = (k * shape.c + c) * bins;
        for (&g, &a) in grad_output[at..at + bins].iter().zip(&argmax[at..at + bins]) {
            if a >= 0 {
                plane[a as usize] += g;
            }
        }
    })
}

/// A zero input gradient whose planes are filled by `add(roi, channel, plane)`:
/// tasks own blocks of channels of one image and visit that image's regions in
/// order. `function` is named if the gradient cannot be allocated.
fn scatter_by_blocks<T: Real + Zeroable>(
    function: &'static str,
    shape: Shape,
    batch: &[usize],
    add: impl Fn(usize, usize, &mut [T]) + Sync,
) -> Result<Vec<T>> {
    let hw = shape.plane_len();
    let mut grad_in = buffer::try_zeroed::<T>(function, "the input gradient", &shape.dims())?;
    if grad_in.is_empty() {
        return Ok(grad_in);
    }
    let blocks_per_image = shape.c.div_ceil(CHANNELS_PER_TASK);
    let mut rois_of: Vec<Vec<usize>> = vec![Vec::new(); shape.n];
    for (k, &b) in batch.iter().enumerate() {
        rois_of[b].push(k);
    }
    let chunks: Vec<(usize, usize, &mut [T])> = grad_in
        .chunks_mut(shape.c * hw)
        .enumerate()
        .flat_map(|(n, image)| {
            image
                .chunks_mut(CHANNELS_PER_TASK * hw)
                .enumerate()
                .map(move |(block, planes)| (n, block * CHANNELS_PER_TASK, planes))
        })
        .collect();
    debug_assert_eq!(chunks.len(), shape.n * blocks_per_image);
    chunks.into_par_iter().for_each(|(n, first_channel, planes)| {
        for &k in &rois_of[n] {
            for (i, plane) in planes.chunks_mut(hw).enumerate() {
                add(k, first_channel + i, plane);
            }
        }
    });
    Ok(grad_in)
}

/// One bilinear sample: four in-plane positions and their weights (torchvision's
/// `bilinear_interpolate`); `None` outside the map's one-pixel margin.
#[inline]
fn bilinear<T: Real>(mut y: T, mut x: T, h: usize, w: usize) -> Option<([usize; 4], [T; 4])> {
    let (hf, wf) = (T::from_f64(h as f64), T::from_f64(w as f64));
    let minus_one = -T::ONE;
    if y < minus_one || y > hf || x < minus_one || x > wf {
        return None;
    }
    if y <= T::ZERO {
        y = T::ZERO;
    }
    if x <= T::ZERO {
        x = T::ZERO;
    }
    let mut y_low = y.to_f64() as usize;
    let mut x_low = x.to_f64() as usize;
    let y_high;
    let x_high;
    if y_low >= h - 1 {
        y_low = h - 1;
        y_high = h - 1;
        y = T::from_f64(y_low as f64);
    } else {
        y_high = y_low + 1;
    }
    if x_low >= w - 1 {
        x_low = w - 1;
        x_high = w - 1;
        x = T::from_f64(x_low as f64);
    } else {
        x_high = x_low + 1;
    }
    let ly = y - T::from_f64(y_low as f64);
    let lx = x - T::from_f64(x_low as f64);
    let (hy, hx) = (T::ONE - ly, T::ONE - lx);
    Some((
        [y_low * w + x_low, y_low * w + x_high, y_high * w + x_low, y_high * w + x_high],
        [hy * hx, hy * lx, ly * hx, ly * lx],
    ))
}

/// The samples of every bin of one region: `starts[b]..starts[b + 1]` index the
/// samples of bin `b`; `count` is the divisor of each bin's average.
struct AlignSamples<T> {
    positions: Vec<[usize; 4]>,
    weights: Vec<[T; 4]>,
    starts: Vec<usize>,
    count: T,
}

#[derive(Debug, Clone, Copy)]
struct AlignParams {
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
}

impl<T: Real> AlignSamples<T> {
    fn new(roi: &[T], shape: Shape, p: AlignParams) -> Self {
        let [ph, pw] = p.output_size;
        let scale = T::from_f64(p.spatial_scale);
        let offset = if p.aligned { T::from_f64(0.5) } else { T::ZERO };
        let (x1, y1) = (roi[1] * scale - offset, roi[2] * scale - offset);
        let (x2, y2) = (roi[3] * scale - offset, roi[4] * scale - offset);
        let (mut roi_w, mut roi_h) = (x2 - x1, y2 - y1);
        if !p.aligned {
            // Legacy mode: regions at least one pixel, as torchvision keeps it.
            if roi_w < T::ONE {
                roi_w = T::ONE;
            }
            if roi_h < T::ONE {
                roi_h = T::ONE;
            }
        }
        let bin_h = roi_h / T::from_f64(ph as f64);
        let bin_w = roi_w / T::from_f64(pw as f64);
        let grid = |extent: T, bins: usize| {
            if p.sampling_ratio > 0 {
                p.sampling_ratio
            } else {
                (extent / T::from_f64(bins as f64)).to_f64().ceil() as i64
            }
        };
        let (grid_h, grid_w) = (grid(roi_h, ph), grid(roi_w, pw));
        let count = T::from_f64((grid_h * grid_w).max(1) as f64);
        let samples_per_bin = (grid_h.max(0) * grid_w.max(0)) as usize;
        let mut positions = Vec::with_capacity(ph * pw * samples_per_bin);
        let mut weights = Vec::with_capacity(ph * pw * samples_per_bin);
        let mut starts = Vec::with_capacity(ph * pw + 1);
        let (gh, gw) = (T::from_f64(grid_h as f64), T::from_f64(grid_w as f64));
        for i in 0..ph {
            for j in 0..pw {
                starts.push(positions.len());
                for iy in 0..grid_h.max(0) {
                    let y = y1 + T::from_f64(i as f64) * bin_h + T::from_f64(iy as f64 + 0.5) * bin_h / gh;
                    for ix in 0..grid_w.max(0) {
                        let x = x1 + T::from_f64(j as f64) * bin_w + T::from_f64(ix as f64 + 0.5) * bin_w / gw;
                        if let Some((pos, wts)) = bilinear(y, x, shape.h, shape.w) {
                            positions.push(pos);
                            weights.push(wts);
                        }
                    }
                }
            }
        }
        starts.push(positions.len());
        AlignSamples { positions, weights, starts, count }
    }
}

/// The most bilinear samples one region may take (all bins): its sampling
/// positions are held in memory (48 bytes each), as torchvision's are.
const MAX_SAMPLES_PER_REGION: f64 = (1u64 << 24) as f64;

/// Rejects regions whose sampling grid would not fit in memory (a huge box with
/// adaptive sampling, or a huge `sampling_ratio`), instead of failing to allocate.
fn check_sampling<T: Real>(function: &'static str, rois: &[T], p: AlignParams) -> Result<()> {
    let [ph, pw] = p.output_size;
    for (k, roi) in rois.chunks_exact(5).enumerate() {
        let extent = |a: T, b: T| {
            let e = (b.to_f64() - a.to_f64()) * p.spatial_scale;
            if p.aligned {
                e
            } else {
                e.max(1.0)
            }
        };
        let grid = |e: f64, bins: usize| {
            if p.sampling_ratio > 0 {
                p.sampling_ratio as f64
            } else {
                (e / bins as f64).ceil().max(0.0)
            }
        };
        let samples = grid(extent(roi[2], roi[4]), ph) * grid(extent(roi[1], roi[3]), pw) * (ph * pw) as f64;
        if samples > MAX_SAMPLES_PER_REGION {
            return Err(FerropsError::value(
                function,
                "boxes",
                format!("regions of at most {MAX_SAMPLES_PER_REGION} bilinear samples (lower sampling_ratio or spatial_scale)"),
                format!("{samples} samples for box {k}"),
            ));
        }
    }
    Ok(())
}

fn align_params(
    function: &'static str,
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
) -> Result<AlignParams> {
    if sampling_ratio < -1 {
        return Err(FerropsError::value(
            function,
            "sampling_ratio",
            "a positive sample count, or 0 / -1 for adaptive",
            sampling_ratio.to_string(),
        ));
    }
    Ok(AlignParams { output_size, spatial_scale, sampling_ratio, aligned })
}

/// RoI align (torchvision's `roi_align`): each bin the average of bilinear
/// samples on a regular grid (`sampling_ratio` per side, or `ceil(bin size)` when
/// it is 0 or -1). Returns `[K, C, PH, PW]`.
pub fn roi_align<T: Real + Zeroable>(
    x: &[T],
    shape: Shape,
    rois: &[T],
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
) -> Result<Vec<T>> {
    const F: &str = "roi_align";
    let batch = check_common(F, x, shape, rois, output_size, spatial_scale)?;
    let p = align_params(F, output_size, spatial_scale, sampling_ratio, aligned)?;
    check_sampling(F, rois, p)?;
    let bins = output_size[0] * output_size[1];
    if batch.is_empty() || shape.c == 0 {
        return Ok(Vec::new());
    }
    let hw = shape.plane_len();
    channel_blocks(F, x, shape, &batch, bins, block_channels::<T>(shape), |planes, regions, out| {
        let channels = planes.len() / hw;
        for (&k, out) in regions.iter().zip(out.chunks_exact_mut(channels * bins)) {
            let s = AlignSamples::new(&rois[5 * k..5 * k + 5], shape, p);
            for (plane, out) in planes.chunks_exact(hw).zip(out.chunks_exact_mut(bins)) {
                for (b, o) in out.iter_mut().enumerate() {
                    let mut sum = T::ZERO;
                    for t in s.starts[b]..s.starts[b + 1] {
                        let (pos, w) = (s.positions[t], s.weights[t]);
                        sum +=
                            w[0] * plane[pos[0]] + w[1] * plane[pos[1]] + w[2] * plane[pos[2]] + w[3] * plane[pos[3]];
                    }
                    *o = sum / s.count;
                }
            }
        }
    })
}

/// The gradient of [`roi_align`] with respect to its input: each sample's share
/// `grad * weight / count` added at its four positions.
#[allow(clippy::too_many_arguments)]
pub fn roi_align_backward<T: Real + Zeroable>(
    grad_output: &[T],
    rois: &[T],
    shape: Shape,
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
) -> Result<Vec<T>> {
    const F: &str = "roi_align_backward";
    let batch = check_rois(F, rois, shape)?;
    buffer::checked_len::<T>(F, "the input gradient", &shape.dims())?;
    let bins = plane_bins::<T>(F, output_size)?;
    let p = align_params(F, output_size, spatial_scale, sampling_ratio, aligned)?;
    check_sampling(F, rois, p)?;
    check_grad(F, &[batch.len(), shape.c, bins], grad_output.len())?;
    if !batch.is_empty() && shape.c > 0 && (shape.h == 0 || shape.w == 0) {
        return Err(FerropsError::value(F, "input", "a non-empty spatial size", format!("{}x{}", shape.h, shape.w)));
    }
    // Sampling positions are per region; a task computes them once per region for
    // its block of channels.
    let samples: Vec<std::sync::OnceLock<AlignSamples<T>>> =
        (0..batch.len()).map(|_| std::sync::OnceLock::new()).collect();
    scatter_by_blocks(F, shape, &batch, |k, c, plane| {
        let s = samples[k].get_or_init(|| AlignSamples::new(&rois[5 * k..5 * k + 5], shape, p));
        let grad = &grad_output[(k * shape.c + c) * bins..][..bins];
        for (b, &g) in grad.iter().enumerate() {
            for t in s.starts[b]..s.starts[b + 1] {
                let (pos, w) = (s.positions[t], s.weights[t]);
                for q in 0..4 {
                    plane[pos[q]] += g * w[q] / s.count;
                }
            }
        }
    })
}

#[cfg(test)]
#[path = "roi_tests.rs"]
mod tests;
