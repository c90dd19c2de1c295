//! Windowed max pooling (POOL-MAX) and SPPF (POOL-SPPF).
//!
//! Separable: for each output row, the rows of its window are combined
//! elementwise into one row (contiguous, vectorised across the row), which is
//! then reduced along its length with the horizontal window. A `k x k` window
//! costs `2k` vector maxes per output vector instead of `k^2` scalar ones, and the
//! plane stays in cache between the passes. SPPF chains three such pools per plane
//! while the plane is in cache, so the input is read from memory once.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{beats, check_grad, has_nan, max_of, positive, strided_max, PoolReal, Shape};
use crate::buffer;
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch_for, SimdKernel, Workload};
use crate::Real;

/// Elements per parallel task (whole planes, at least one): big enough to hide
/// the scheduling, small enough to balance 16x512 planes over many cores.
const ELEMENTS_PER_TASK: usize = 1 << 15;

pub(crate) fn planes_per_task(plane_len: usize) -> usize {
    (ELEMENTS_PER_TASK / plane_len.max(1)).max(1)
}

const MAX_KERNEL: usize = 1 << 20;

/// The geometry of a max pooling window over one `h x w` plane.
#[derive(Debug, Clone, Copy)]
struct Window {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Window {
    fn new(
        function: &'static str,
        h: usize,
        w: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> Result<Window> {
        for k in kernel {
            positive(function, "kernel_size", k)?;
            // Scratch rows are padded by the kernel; beyond this a window is
            // certainly a mistake, and must not become an allocation failure.
            if k > MAX_KERNEL {
                return Err(FerropsError::value(
                    function,
                    "kernel_size",
                    format!("at most {MAX_KERNEL}"),
                    k.to_string(),
                ));
            }
        }
        positive(function, "stride", stride[0])?;
        positive(function, "stride", stride[1])?;
        for axis in 0..2 {
            if padding[axis] > kernel[axis] / 2 {
                return Err(FerropsError::value(
                    function,
                    "padding",
                    format!("at most half the kernel size ({} for kernel {})", kernel[axis] / 2, kernel[axis]),
                    padding[axis].to_string(),
                ));
            }
        }
        let out = |size: usize, k: usize, s: usize, p: usize| (size + 2 * p).checked_sub(k).map(|span| span / s + 1);
        let (oh, ow) = match (out(h, kernel[0], stride[0], padding[0]), out(w, kernel[1], stride[1], padding[1])) {
            (Some(oh), Some(ow)) => (oh, ow),
            _ => {
                return Err(FerropsError::value(
                    function,
                    "input",
                    format!("a padded input of at least the kernel size {}x{}", kernel[0], kernel[1]),
                    format!("{}x{} padded by {}x{}", h, w, padding[0], padding[1]),
                ))
            }
        };
        Ok(Window {
            h,
            w,
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            ph: padding[0],
            pw: padding[1],
            oh,
            ow,
        })
    }

    /// Stride 1, padding `k / 2`: the output keeps the input's size. A window
    /// wider than `2 size + 1` covers the whole axis from every position, so the
    /// kernel is clipped to that (the same result, bounded scratch).
    fn same(h: usize, w: usize, k: usize) -> Window {
        let (kh, kw) = (k.min(2 * h + 1), k.min(2 * w + 1));
        Window { h, w, kh, kw, sh: 1, sw: 1, ph: kh / 2, pw: kw / 2, oh: h, ow: w }
    }

    /// The input rows `[start, end)` of output row `oy` (padding clipped; never
    /// empty because the padding is at most half the kernel).
    #[inline(always)]
    fn rows(&self, oy: usize) -> (usize, usize) {
        let start = oy * self.sh;
        (start.saturating_sub(self.ph), (start + self.kh - self.ph).min(self.h))
    }

    #[inline(always)]
    fn cols(&self, ox: usize) -> (usize, usize) {
        let start = ox * self.sw;
        (start.saturating_sub(self.pw), (start + self.kw - self.pw).min(self.w))
    }
}

/// Per-task scratch rows: the vertical maximum of one output row, padded with
/// -inf on both sides for the horizontal pass.
struct Scratch<T> {
    padded: Vec<T>,
}

impl<T: Real> Scratch<T> {
    fn new(g: &Window) -> Self {
        Scratch { padded: vec![T::from_f64(f64::NEG_INFINITY); g.w + 2 * g.pw + g.kw] }
    }
}

/// One output plane of max pooling: `dst` gets `g.oh x g.ow` values.
#[inline(always)]
fn max_pool_plane<T: PoolReal>(src: &[T], g: &Window, scratch: &mut Scratch<T>, dst: &mut [T]) {
    if has_nan(src) {
        max_pool_plane_with::<T, true>(src, g, scratch, dst)
    } else {
        max_pool_plane_with::<T, false>(src, g, scratch, dst)
    }
}

#[inline(always)]
fn max_pool_plane_with<T: PoolReal, const NAN: bool>(src: &[T], g: &Window, scratch: &mut Scratch<T>, dst: &mut [T]) {
    let (w, pw) = (g.w, g.pw);
    for (oy, dst_row) in dst.chunks_exact_mut(g.ow).enumerate() {
        let (r0, r1) = g.rows(oy);
        strided_max::<T, NAN>(&src[r0 * w..], w, r1 - r0, &mut scratch.padded[pw..pw + w]);
        let padded = &scratch.padded;
        if g.sw == 1 {
            strided_max::<T, NAN>(padded, 1, g.kw, dst_row);
        } else {
            for (ox, m) in dst_row.iter_mut().enumerate() {
                let window = &padded[ox * g.sw..ox * g.sw + g.kw];
                *m = window[1..].iter().fold(window[0], |acc, &v| max_of::<T, NAN>(acc, v));
            }
        }
    }
}

/// Scratch of the separable arg max: per input row and output column, the
/// window's best value along the row and its column.
struct ArgScratch<T> {
    values: Vec<T>,
    columns: Vec<u32>,
}

impl<T: Real> ArgScratch<T> {
    fn new(g: &Window) -> Self {
        ArgScratch { values: vec![T::ZERO; g.h * g.ow], columns: vec![0; g.h * g.ow] }
    }
}

/// Adds `grad` of each output of one plane to the arg max of its window
/// (POOL-MAX: the first maximum in row-major order; NaN wins as in torch),
/// summed in output order.
///
/// Separable, `kh + kw` comparisons per output instead of `kh x kw`: the arg max
/// along each row's window first, then along the window's rows. Scanning rows in
/// order and keeping a row only when it beats the best so far finds the first
/// row that holds the maximum, and within it the row pass found the first column.
fn max_pool_plane_backward<T: Real>(src: &[T], g: &Window, grad: &[T], grad_in: &mut [T], scratch: &mut ArgScratch<T>) {
    let (w, ow) = (g.w, g.ow);
    for r in 0..g.h {
        let row = &src[r * w..(r + 1) * w];
        for ox in 0..ow {
            let (c0, c1) = g.cols(ox);
            let (mut best, mut at) = (row[c0], c0);
            // Selects rather than branches: which element wins is data-dependent and
            // would mispredict.
            for (c, &v) in row.iter().enumerate().take(c1).skip(c0 + 1) {
                let take = beats(v, best);
                best = if take { v } else { best };
                at = if take { c } else { at };
            }
            scratch.values[r * ow + ox] = best;
            scratch.columns[r * ow + ox] = at as u32;
        }
    }
    for oy in 0..g.oh {
        let (r0, r1) = g.rows(oy);
        for ox in 0..ow {
            let (mut best, mut at) = (scratch.values[r0 * ow + ox], r0);
            for r in r0 + 1..r1 {
                let v = scratch.values[r * ow + ox];
                let take = beats(v, best);
                best = if take { v } else { best };
                at = if take { r } else { at };
            }
            grad_in[at * w + scratch.columns[at * ow + ox] as usize] += grad[oy * ow + ox];
        }
    }
}

/// Copies a finished plane into the (uninitialised) output. The output is far
/// larger than the caches and is not read again here, so the body of the copy
/// uses non-temporal stores: they skip reading each line before writing it, a
/// third of the memory traffic. Callers end their task with [`store_fence`].
#[inline(always)]
fn write_all<T: Copy>(dst: &mut [MaybeUninit<T>], src: &[T]) {
    assert_eq!(dst.len(), src.len());
    let bytes = std::mem::size_of_val(src);
    let (from, to) = (src.as_ptr().cast::<u8>(), dst.as_mut_ptr().cast::<u8>());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let head = to.align_offset(16).min(bytes);
        let body = (bytes - head) / 16;
        // SAFETY: all offsets stay below `bytes`, the common length of the two
        // buffers, which cannot overlap (`dst` is exclusively borrowed). The
        // streamed stores are 16-byte aligned (`head` aligns them); SSE2 is part of
        // every x86-64 CPU.
        unsafe {
            std::ptr::copy_nonoverlapping(from, to, head);
            for i in 0..body {
                let at = head + 16 * i;
                _mm_stream_si128(to.add(at).cast::<__m128i>(), _mm_loadu_si128(from.add(at).cast::<__m128i>()));
            }
            let done = head + 16 * body;
            std::ptr::copy_nonoverlapping(from.add(done), to.add(done), bytes - done);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: equal lengths, no overlap (`dst` is exclusively borrowed).
    unsafe {
        std::ptr::copy_nonoverlapping(from, to, bytes)
    }
}

/// Orders a task's non-temporal stores before the task is seen to be done.
#[inline(always)]
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of every x86-64 CPU.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

struct MaxPoolPlanes<'a, T> {
    src: &'a [T],
    dst: &'a mut [MaybeUninit<T>],
    g: Window,
}

impl<T: PoolReal> SimdKernel for MaxPoolPlanes<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let g = self.g;
        let mut scratch = Scratch::new(&g);
        let mut plane = vec![T::ZERO; g.oh * g.ow];
        for (src, dst) in self.src.chunks_exact(g.h * g.w).zip(self.dst.chunks_exact_mut(g.oh * g.ow)) {
            max_pool_plane(src, &g, &mut scratch, &mut plane);
            write_all(dst, &plane);
        }
        store_fence();
    }
}

/// Max pooling of an NCHW input (POOL-MAX, torch's `max_pool2d` without dilation
/// or ceil mode): `-inf` padding, NaN propagates. Returns the `[N, C, OH, OW]`
/// values and `(OH, OW)`.
pub fn max_pool2d<T: PoolReal>(
    x: &[T],
    shape: Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<(Vec<T>, [usize; 2])> {
    const F: &str = "max_pool2d";
    shape.check(F, "input", x.len())?;
    let g = Window::new(F, shape.h, shape.w, kernel, stride, padding)?;
    let dims = [shape.n, shape.c, g.oh, g.ow];
    if buffer::checked_len::<T>(F, "the output", &dims)? == 0 {
        return Ok((Vec::new(), [g.oh, g.ow]));
    }
    let per_task = planes_per_task(shape.plane_len());
    let out = buffer::try_filled(F, "the output", &dims, |out| {
        out.par_chunks_mut(per_task * g.oh * g.ow)
            .zip(x.par_chunks(per_task * shape.plane_len()))
            .for_each(|(dst, src)| dispatch_for(Workload::Pooling, MaxPoolPlanes { src, dst, g }));
    })?;
    Ok((out, [g.oh, g.ow]))
}

/// The gradient of [`max_pool2d`] with respect to its input: each output's
/// gradient goes to the first arg max of its window (row-major), summed where
/// windows overlap.
pub fn max_pool2d_backward<T: PoolReal>(
    x: &[T],
    shape: Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    grad_output: &[T],
) -> Result<Vec<T>> {
    const F: &str = "max_pool2d_backward";
    shape.check(F, "input", x.len())?;
    let g = Window::new(F, shape.h, shape.w, kernel, stride, padding)?;
    check_grad(F, &[shape.planes(), g.oh, g.ow], grad_output.len())?;
    let mut grad_in = vec![T::ZERO; x.len()];
    if grad_output.is_empty() {
        return Ok(grad_in);
    }
    grad_in
        .par_chunks_mut(shape.plane_len())
        .zip(x.par_chunks(shape.plane_len()))
        .zip(grad_output.par_chunks(g.oh * g.ow))
        .for_each_init(
            || ArgScratch::new(&g),
            |scratch, ((grad_in, src), grad)| max_pool_plane_backward(src, &g, grad, grad_in, scratch),
        );
    Ok(grad_in)
}

fn check_sppf_kernel(function: &'static str, k: usize) -> Result<()> {
    if k == 0 || k.is_multiple_of(2) {
        return Err(FerropsError::value(function, "kernel_size", "an odd positive kernel size", k.to_string()));
    }
    Ok(())
}

struct SppfPlanes<'a, T> {
    src: &'a [T],
    /// The four channel blocks of one batch item's output: x, y1, y2, y3.
    dst: [&'a mut [MaybeUninit<T>]; 4],
    g: Window,
}

impl<T: PoolReal> SimdKernel for SppfPlanes<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let g = self.g;
        let hw = g.h * g.w;
        let mut scratch = Scratch::new(&g);
        let mut y1 = vec![T::ZERO; hw];
        let mut y2 = vec![T::ZERO; hw];
        let mut y3 = vec![T::ZERO; hw];
        let [d0, d1, d2, d3] = self.dst;
        for (p, src) in self.src.chunks_exact(hw).enumerate() {
            let at = p * hw..(p + 1) * hw;
            write_all(&mut d0[at.clone()], src);
            max_pool_plane(src, &g, &mut scratch, &mut y1);
            write_all(&mut d1[at.clone()], &y1);
            max_pool_plane(&y1, &g, &mut scratch, &mut y2);
            write_all(&mut d2[at.clone()], &y2);
            max_pool_plane(&y2, &g, &mut scratch, &mut y3);
            write_all(&mut d3[at], &y3);
        }
        store_fence();
    }
}

/// SPPF (POOL-SPPF): `concat(x, y1, y2, y3)` on channels with
/// `y1 = maxpool_{k,1,k/2}(x)`, `y2 = maxpool(y1)`, `y3 = maxpool(y2)`, computed
/// plane by plane while the plane is in cache. Returns `[N, 4C, H, W]`.
pub fn sppf<T: PoolReal>(x: &[T], shape: Shape, kernel_size: usize) -> Result<Vec<T>> {
    const F: &str = "sppf";
    shape.check(F, "input", x.len())?;
    check_sppf_kernel(F, kernel_size)?;
    let g = Window::same(shape.h, shape.w, kernel_size);
    if x.is_empty() {
        return Ok(Vec::new());
    }
    let hw = shape.plane_len();
    let per_task = planes_per_task(hw).min(shape.c);
    buffer::try_filled(F, "the output", &[shape.n, 4 * shape.c, shape.h, shape.w], |out| {
        out.par_chunks_mut(4 * shape.c * hw).zip(x.par_chunks(shape.c * hw)).for_each(|(out, x)| {
            let (d0, rest) = out.split_at_mut(shape.c * hw);
            let (d1, rest) = rest.split_at_mut(shape.c * hw);
            let (d2, d3) = rest.split_at_mut(shape.c * hw);
            let chunk = per_task * hw;
            (x.par_chunks(chunk), d0.par_chunks_mut(chunk), d1.par_chunks_mut(chunk))
                .into_par_iter()
                .zip((d2.par_chunks_mut(chunk), d3.par_chunks_mut(chunk)).into_par_iter())
                .for_each(|((src, d0, d1), (d2, d3))| {
                    dispatch_for(Workload::Pooling, SppfPlanes { src, dst: [d0, d1, d2, d3], g })
                });
        });
    })
}

/// The gradient of [`sppf`] with respect to `x`, through the chain as autograd
/// would run it: `g_y2 += bwd(y2, g_y3)`, `g_y1 += bwd(y1, g_y2)`,
/// `g_x += bwd(x, g_y1)`, each backward sending gradients to the first arg max.
pub fn sppf_backward<T: PoolReal>(x: &[T], shape: Shape, kernel_size: usize, grad_output: &[T]) -> Result<Vec<T>> {
    const F: &str = "sppf_backward";
    shape.check(F, "input", x.len())?;
    check_sppf_kernel(F, kernel_size)?;
    check_grad(F, &[4, x.len()], grad_output.len())?;
    let g = Window::same(shape.h, shape.w, kernel_size);
    let mut grad_in = vec![T::ZERO; x.len()];
    if x.is_empty() {
        return Ok(grad_in);
    }
    let hw = shape.plane_len();
    let chw = shape.c * hw;
    grad_in.par_chunks_mut(hw).enumerate().zip(x.par_chunks(hw)).for_each(|((plane, grad_in), src)| {
        let (b, c) = (plane / shape.c, plane % shape.c);
        let grad_of = |block: usize| &grad_output[b * 4 * chw + block * chw + c * hw..][..hw];
        let mut scratch = Scratch::new(&g);
        let mut arg_scratch = ArgScratch::new(&g);
        let mut y1 = vec![T::ZERO; hw];
        let mut y2 = vec![T::ZERO; hw];
        max_pool_plane(src, &g, &mut scratch, &mut y1);
        max_pool_plane(&y1, &g, &mut scratch, &mut y2);
        // Each step: the pool's backward into zeros, then the branch's own gradient
        // added, the order in which autograd sums them.
        let mut upstream = grad_of(3).to_vec();
        let mut through = vec![T::ZERO; hw];
        for (source, block) in [(&y2, 2), (&y1, 1)] {
            through.fill(T::ZERO);
            max_pool_plane_backward(source, &g, &upstream, &mut through, &mut arg_scratch);
            for ((u, &t), &own) in upstream.iter_mut().zip(&through).zip(grad_of(block)) {
                *u = own + t;
            }
        }
        max_pool_plane_backward(src, &g, &upstream, grad_in, &mut arg_scratch);
        for (gi, &own) in grad_in.iter_mut().zip(grad_of(0)) {
            *gi = own + *gi;
        }
    });
    Ok(grad_in)
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
