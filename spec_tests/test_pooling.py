"""Conformance tests for the pooling family (SPEC section 4, POOL-*).

References are written from the SPEC formulas in float64 (the adaptive bin rule,
``-inf`` padding, torchvision's RoI sampling); torch and torchvision are extra
oracles where installed.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrops

# ---------------------------------------------------------------------------
# references, float64, straight from the clauses


def ref_bins(n: int, a: int) -> list[tuple[int, int]]:
    """POOL-ADAPTIVE: bin i of n over extent a is [floor(i a / n), ceil((i + 1) a / n))."""
    return [(math.floor(i * a / n), math.ceil((i + 1) * a / n)) for i in range(n)]


def ref_adaptive(x: np.ndarray, oh: int, ow: int, mode: str) -> np.ndarray:
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow))
    for i, (r0, r1) in enumerate(ref_bins(oh, h)):
        for j, (c0, c1) in enumerate(ref_bins(ow, w)):
            window = x[:, :, r0:r1, c0:c1]
            out[:, :, i, j] = window.max(axis=(2, 3)) if mode == "max" else window.mean(axis=(2, 3))
    return out


def ref_spp(x: np.ndarray, levels: tuple[int, ...], mode: str) -> np.ndarray:
    """POOL-SPP: levels concatenated in order, each flattened channel-major."""
    n = x.shape[0]
    return np.concatenate([ref_adaptive(x, lv, lv, mode).reshape(n, -1) for lv in levels], axis=1)


def ref_max_pool(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> np.ndarray:
    """POOL-MAX: -inf padding, floor((H + 2p - k) / s) + 1 outputs."""
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), -np.inf)
    padded[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]].max(axis=(2, 3))
    return out


def ref_sppf(x: np.ndarray, k: int) -> np.ndarray:
    """POOL-SPPF as SPP with kernels k, 2k - 1, 3k - 2."""
    pools = [ref_max_pool(x, (kk, kk), (1, 1), (kk // 2, kk // 2)) for kk in (k, 2 * k - 1, 3 * k - 2)]
    return np.concatenate([x.astype(np.float64), *pools], axis=1)


def ref_roi_align(x, rois, ph, pw, scale, ratio, aligned):
    """torchvision's roi_align (POOL-ROI), sample by sample, in float64."""
    x = x.astype(np.float64)
    _, c, h, w = x.shape
    out = np.zeros((len(rois), c, ph, pw))
    for k, (b, x1, y1, x2, y2) in enumerate(np.asarray(rois, np.float64)):
        off = 0.5 if aligned else 0.0
        sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ex - sx, ey - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph, rw / pw
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        count = max(gh * gw, 1)
        for i in range(ph):
            for j in range(pw):
                total = np.zeros(c)
                for iy in range(gh):
                    yy = sy + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = sx + j * bw + (ix + 0.5) * bw / gw
                        if yy < -1 or yy > h or xx < -1 or xx > w:
                            continue
                        yy2, xx2 = max(yy, 0.0), max(xx, 0.0)
                        yl, xl = int(yy2), int(xx2)
                        if yl >= h - 1:
                            yl = yh = h - 1
                            yy2 = float(yl)
                        else:
                            yh = yl + 1
                        if xl >= w - 1:
                            xl = xh = w - 1
                            xx2 = float(xl)
                        else:
                            xh = xl + 1
                        ly, lx = yy2 - yl, xx2 - xl
                        img = x[int(b)]
                        total += (
                            (1 - ly) * (1 - lx) * img[:, yl, xl]
                            + (1 - ly) * lx * img[:, yl, xh]
                            + ly * (1 - lx) * img[:, yh, xl]
                            + ly * lx * img[:, yh, xh]
                        )
                out[k, :, i, j] = total / count
    return out


def ref_roi_pool(x, rois, ph, pw, scale):
    """torchvision's roi_pool (POOL-ROI): rounded corners, +1 size, floor/ceil bins."""
    x = x.astype(np.float64)
    _, c, h, w = x.shape
    out = np.zeros((len(rois), c, ph, pw))
    for k, (b, x1, y1, x2, y2) in enumerate(np.asarray(rois, np.float64)):
        rnd = lambda v: int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)  # noqa: E731 - half away from zero
        sx, sy, ex, ey = rnd(x1 * scale), rnd(y1 * scale), rnd(x2 * scale), rnd(y2 * scale)
        rw, rh = max(ex - sx + 1, 1), max(ey - sy + 1, 1)
        for i in range(ph):
            h0 = min(max(math.floor(i * rh / ph) + sy, 0), h)
            h1 = min(max(math.ceil((i + 1) * rh / ph) + sy, 0), h)
            for j in range(pw):
                w0 = min(max(math.floor(j * rw / pw) + sx, 0), w)
                w1 = min(max(math.ceil((j + 1) * rw / pw) + sx, 0), w)
                if h1 > h0 and w1 > w0:
                    out[k, :, i, j] = x[int(b), :, h0:h1, w0:w1].max(axis=(1, 2))
    return out


def feature_map(shape, seed=0, dtype=np.float32, distinct=False):
    rng = np.random.default_rng(seed)
    if distinct:
        return rng.permutation(int(np.prod(shape))).reshape(shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def close(got, want, dtype=np.float32):
    tol = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=tol)


SIZES = [(1, 1), (3, 5), (7, 7), (13, 17), (2, 9)]

# ---------------------------------------------------------------------------
# POOL-ADAPTIVE


@pytest.mark.spec("POOL-ADAPTIVE")
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("out", [(1, 1), (2, 3), (4, 4), (6, 6)])
def test_adaptive_pooling_follows_the_bin_formula(backend, mode, hw, out):
    x = feature_map((2, 3, *hw), seed=hw[0] * 31 + hw[1])
    fn = ferrops.adaptive_max_pool2d if mode == "max" else ferrops.adaptive_avg_pool2d
    got = backend.output(fn(backend.input(x), out, **backend.kwargs))
    assert got.shape == (2, 3, *out) and got.dtype == np.float32
    close(got, ref_adaptive(x, *out, mode))


@pytest.mark.spec("POOL-ADAPTIVE")
def test_adaptive_output_size_none_keeps_the_input_size_and_float64_stays(backend):
    x = feature_map((1, 2, 5, 6), dtype=np.float64)
    got = backend.output(ferrops.adaptive_avg_pool2d(backend.input(x), (None, 3), **backend.kwargs))
    assert got.dtype == np.float64
    close(got, ref_adaptive(x, 5, 3, "avg"), np.float64)


@pytest.mark.spec("POOL-ADAPTIVE", "POOL-MAX")
def test_adaptive_max_indices_point_at_the_first_maximum(backend):
    x = np.zeros((1, 2, 5, 7), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 3, 4] = 2.0  # a tie across a bin shared by both
    values, indices = ferrops.adaptive_max_pool2d(backend.input(x), (2, 2), return_indices=True, **backend.kwargs)
    values, indices = backend.output(values), backend.output(indices)
    assert indices.dtype == np.int64
    flat = x.reshape(1, 2, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, indices.reshape(1, 2, -1), 2).reshape(values.shape), values)
    for i, (r0, r1) in enumerate(ref_bins(2, 5)):
        for j, (c0, c1) in enumerate(ref_bins(2, 7)):
            window = x[0, 0, r0:r1, c0:c1]
            r, c = np.unravel_index(np.argmax(window), window.shape)  # argmax: first maximum
            assert indices[0, 0, i, j] == (r0 + r) * 7 + (c0 + c)


@pytest.mark.spec("POOL-ADAPTIVE")
def test_adaptive_matches_torch():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 4, 11, 9), seed=3)
    t = torch.from_numpy(x)
    for out in [(3, 3), (5, 2), (12, 10)]:
        np.testing.assert_array_equal(
            ferrops.adaptive_max_pool2d(x, out), torch.nn.functional.adaptive_max_pool2d(t, out).numpy()
        )
        v, i = ferrops.adaptive_max_pool2d(x, out, return_indices=True)
        np.testing.assert_array_equal(
            i, torch.nn.functional.adaptive_max_pool2d(t, out, return_indices=True)[1].numpy()
        )
        np.testing.assert_allclose(
            ferrops.adaptive_avg_pool2d(x, out),
            torch.nn.functional.adaptive_avg_pool2d(t, out).numpy(),
            rtol=1e-6,
            atol=1e-6,
        )


# ---------------------------------------------------------------------------
# POOL-SPP


@pytest.mark.spec("POOL-SPP", "POOL-ADAPTIVE")
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("hw", SIZES)
def test_spp_is_levels_of_adaptive_bins_channel_major(backend, mode, hw):
    x = feature_map((2, 3, *hw), seed=7)
    got = backend.output(ferrops.spatial_pyramid_pool(backend.input(x), (4, 2, 1), mode, **backend.kwargs))
    assert got.shape == (2, 3 * 21)
    close(got, ref_spp(x, (4, 2, 1), mode))


@pytest.mark.spec("POOL-SPP")
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    levels=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    mode=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 2**16),
)
def test_spp_property_fixed_length_for_any_input_size(n, c, h, w, levels, mode, seed):
    x = feature_map((n, c, h, w), seed=seed)
    got = ferrops.spatial_pyramid_pool(x, levels, mode)
    assert got.shape == (n, c * sum(lv * lv for lv in levels))
    close(got, ref_spp(x, tuple(levels), mode))


@pytest.mark.spec("POOL-SPP")
def test_spp_matches_torch_adaptive_pools_and_concat():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 5, 13, 10), seed=11)
    t = torch.from_numpy(x)
    F = torch.nn.functional
    want = torch.cat([F.adaptive_max_pool2d(t, n).flatten(1) for n in (6, 3, 2, 1)], 1).numpy()
    np.testing.assert_array_equal(ferrops.spatial_pyramid_pool(x, (6, 3, 2, 1)), want)


# ---------------------------------------------------------------------------
# POOL-MAX


MAX_CASES = [
    ((3, 3), (1, 1), (1, 1)),
    ((2, 2), (2, 2), (0, 0)),
    ((3, 2), (2, 3), (1, 1)),
    ((5, 5), (1, 1), (2, 2)),
    ((1, 1), (1, 1), (0, 0)),
    ((4, 3), (3, 1), (2, 0)),
]


@pytest.mark.spec("POOL-MAX")
@pytest.mark.parametrize("k,s,p", MAX_CASES)
@pytest.mark.parametrize("hw", [(4, 4), (7, 9), (13, 6)])
def test_max_pool_pads_with_minus_infinity(backend, k, s, p, hw):
    x = feature_map((2, 3, *hw), seed=1)
    got = backend.output(ferrops.max_pool2d(backend.input(x), k, s, p, **backend.kwargs))
    np.testing.assert_array_equal(got, ref_max_pool(x, k, s, p).astype(np.float32))


@pytest.mark.spec("POOL-MAX")
def test_max_pool_propagates_nan_and_keeps_infinities(backend):
    x = feature_map((1, 1, 6, 6), seed=2)
    x[0, 0, 2, 3] = np.nan
    x[0, 0, 5, 0] = -np.inf
    x[0, 0, 0, 5] = np.inf
    got = backend.output(ferrops.max_pool2d(backend.input(x), 3, 1, 1, **backend.kwargs))
    want = ref_max_pool(x, (3, 3), (1, 1), (1, 1))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)].astype(np.float32))
    assert np.isnan(got).sum() == 9


@pytest.mark.spec("POOL-MAX")
def test_max_pool_stride_defaults_to_the_kernel_and_matches_torch():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 3, 11, 10), seed=4)
    np.testing.assert_array_equal(
        ferrops.max_pool2d(x, 3), torch.nn.functional.max_pool2d(torch.from_numpy(x), 3).numpy()
    )
    np.testing.assert_array_equal(
        ferrops.max_pool2d(x, (3, 2), (1, 2), (1, 1)),
        torch.nn.functional.max_pool2d(torch.from_numpy(x), (3, 2), (1, 2), (1, 1)).numpy(),
    )


# ---------------------------------------------------------------------------
# POOL-SPPF


@pytest.mark.spec("POOL-SPPF")
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("hw", [(1, 1), (5, 5), (9, 14), (20, 3)])
def test_sppf_equals_spp_with_growing_kernels(backend, k, hw):
    x = feature_map((2, 3, *hw), seed=5)
    got = backend.output(ferrops.sppf(backend.input(x), k, **backend.kwargs))
    assert got.shape == (2, 12, *hw)
    np.testing.assert_array_equal(got, ref_sppf(x, k).astype(np.float32))


@pytest.mark.spec("POOL-SPPF")
def test_sppf_matches_yolov5_chain_in_torch():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 4, 16, 12), seed=6)
    t = torch.from_numpy(x)
    F = torch.nn.functional
    y1 = F.max_pool2d(t, 5, 1, 2)
    y2 = F.max_pool2d(y1, 5, 1, 2)
    want = torch.cat([t, y1, y2, F.max_pool2d(y2, 5, 1, 2)], 1).numpy()
    np.testing.assert_array_equal(ferrops.sppf(x), want)


# ---------------------------------------------------------------------------
# POOL-ROI

ROIS = np.array(
    [
        [0, 1.0, 1.0, 10.0, 8.0],
        [1, 0.5, 2.3, 16.0, 12.7],
        [1, 3.0, 3.0, 3.2, 3.1],
        [0, -3.0, -2.0, 20.0, 20.0],
        [1, 14.2, 10.1, 30.0, 30.0],
        [0, 6.0, 2.0, 4.0, 9.0],
    ],
    np.float32,
)


@pytest.mark.spec("POOL-ROI")
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [-1, 2])
@pytest.mark.parametrize("scale", [1.0, 0.7])
def test_roi_align_follows_torchvision_sampling(backend, aligned, ratio, scale):
    x = feature_map((2, 3, 13, 17), seed=8)
    got = backend.output(
        ferrops.roi_align(backend.input(x), backend.input(ROIS), (3, 4), scale, ratio, aligned, **backend.kwargs)
    )
    close(got, ref_roi_align(x, ROIS, 3, 4, scale, ratio, aligned))


@pytest.mark.spec("POOL-ROI")
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.7])
def test_roi_pool_follows_torchvision_bins(backend, scale):
    x = feature_map((2, 3, 13, 17), seed=9)
    got = backend.output(ferrops.roi_pool(backend.input(x), backend.input(ROIS), (3, 2), scale, **backend.kwargs))
    np.testing.assert_array_equal(got, ref_roi_pool(x, ROIS, 3, 2, scale).astype(np.float32))


@pytest.mark.spec("POOL-ROI")
def test_roi_ops_match_torchvision_and_accept_box_lists():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    x = feature_map((2, 3, 13, 17), seed=10)
    t, r = torch.from_numpy(x), torch.from_numpy(ROIS)
    for aligned in (False, True):
        np.testing.assert_allclose(
            ferrops.roi_align(x, ROIS, 4, 0.7, -1, aligned),
            tv.ops.roi_align(t, r, 4, 0.7, -1, aligned).numpy(),
            rtol=1e-6,
            atol=1e-6,
        )
    np.testing.assert_array_equal(ferrops.roi_pool(x, ROIS, (2, 3), 0.5), tv.ops.roi_pool(t, r, (2, 3), 0.5).numpy())
    per_image = [ROIS[ROIS[:, 0] == i, 1:] for i in range(2)]
    ordered = np.concatenate([ROIS[ROIS[:, 0] == i] for i in range(2)])
    np.testing.assert_array_equal(ferrops.roi_align(x, per_image, 2), ferrops.roi_align(x, ordered, 2))
    tensors = [torch.from_numpy(b) for b in per_image]
    np.testing.assert_array_equal(ferrops.roi_pool(t, tensors, 2).numpy(), tv.ops.roi_pool(t, tensors, 2).numpy())


# ---------------------------------------------------------------------------
# gradients


def _torch_reference_grads(torch, tv):
    F = torch.nn.functional

    def sppf_chain(z):
        y1 = F.max_pool2d(z, 5, 1, 2)
        y2 = F.max_pool2d(y1, 5, 1, 2)
        return torch.cat([z, y1, y2, F.max_pool2d(y2, 5, 1, 2)], 1)

    boxes = torch.from_numpy(ROIS).double()
    return [
        ("sppf", lambda z: ferrops.sppf(z), sppf_chain),
        ("max_pool2d", lambda z: ferrops.max_pool2d(z, 3, 2, 1), lambda z: F.max_pool2d(z, 3, 2, 1)),
        ("adaptive_max", lambda z: ferrops.adaptive_max_pool2d(z, (4, 3)), lambda z: F.adaptive_max_pool2d(z, (4, 3))),
        ("adaptive_avg", lambda z: ferrops.adaptive_avg_pool2d(z, (4, 3)), lambda z: F.adaptive_avg_pool2d(z, (4, 3))),
        (
            "spp",
            lambda z: ferrops.spatial_pyramid_pool(z, (4, 2, 1), "avg"),
            lambda z: torch.cat([F.adaptive_avg_pool2d(z, n).flatten(1) for n in (4, 2, 1)], 1),
        ),
        (
            "spp_max",
            lambda z: ferrops.spatial_pyramid_pool(z, (3, 1)),
            lambda z: torch.cat([F.adaptive_max_pool2d(z, n).flatten(1) for n in (3, 1)], 1),
        ),
        (
            "roi_align",
            lambda z: ferrops.roi_align(z, boxes, 3, 0.7, 2, True),
            lambda z: tv.ops.roi_align(z, boxes, 3, 0.7, 2, True),
        ),
        ("roi_pool", lambda z: ferrops.roi_pool(z, boxes, 3, 0.7), lambda z: tv.ops.roi_pool(z, boxes, 3, 0.7)),
    ]


@pytest.mark.spec("POOL-MAX", "POOL-SPPF", "POOL-ADAPTIVE", "POOL-SPP", "POOL-ROI")
@pytest.mark.parametrize("ties", [False, True])
def test_gradients_run_in_rust_and_match_torch_autograd(ties):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    # Few distinct values: ties everywhere, so the first-arg-max rule decides.
    x = np.floor(feature_map((2, 3, 13, 17), seed=12) * 2) if ties else feature_map((2, 3, 13, 17), seed=12)
    for name, ours, theirs in _torch_reference_grads(torch, tv):
        z = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        out = ours(z)
        assert type(out.grad_fn).__name__ == "_RustFunctionBackward", name
        g = torch.from_numpy(feature_map(tuple(out.shape), seed=13, dtype=np.float64))
        (got,) = torch.autograd.grad(out, z, g)
        z2 = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ref = theirs(z2)
        (want,) = torch.autograd.grad(ref, z2, g)
        np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.spec("POOL-MAX")
def test_max_gradient_goes_to_the_first_arg_max_on_a_constant_map():
    torch = pytest.importorskip("torch")
    z = torch.zeros((1, 1, 4, 4), dtype=torch.float64, requires_grad=True)
    ferrops.max_pool2d(z, 2, 2).sum().backward()
    want = np.zeros((4, 4))
    want[::2, ::2] = 1.0  # the top-left of each window
    np.testing.assert_array_equal(z.grad[0, 0].numpy(), want)


@pytest.mark.spec("POOL-ADAPTIVE", "POOL-ROI")
def test_smooth_gradients_pass_gradcheck():
    torch = pytest.importorskip("torch")
    z = torch.tensor(feature_map((1, 2, 7, 6), seed=14, dtype=np.float64), requires_grad=True)
    boxes = torch.tensor([[0, 0.5, 1.2, 4.4, 5.1], [0, 2.0, 0.0, 5.5, 3.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ferrops.adaptive_avg_pool2d(t, (3, 4)), (z,))
    assert torch.autograd.gradcheck(lambda t: ferrops.spatial_pyramid_pool(t, (3, 1), "avg"), (z,))
    assert torch.autograd.gradcheck(lambda t: ferrops.roi_align(t, boxes, 2, 1.0, 2, True), (z,))


# ---------------------------------------------------------------------------
# dtypes, empty inputs, threads, modules


@pytest.mark.spec("POOL-SPPF", "POOL-SPP")
def test_low_precision_inputs_come_back_in_their_dtype():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 3, 9, 8), seed=15)
    for dtype in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(x).to(dtype)
        exact = t.float().numpy()
        out = ferrops.sppf(t)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out.float().numpy(), ref_sppf(exact, 5).astype(np.float32))
        spp = ferrops.spatial_pyramid_pool(t, (2, 1), "avg")
        assert spp.dtype == dtype
        np.testing.assert_allclose(spp.float().numpy(), ref_spp(exact, (2, 1), "avg"), rtol=1e-2, atol=1e-2)
        z = t.clone().requires_grad_()
        ferrops.max_pool2d(z, 3, 1, 1).sum().backward()
        assert z.grad.dtype == dtype and float(z.grad.float().sum()) == 2 * 3 * 9 * 8
    half = x.astype(np.float16)
    out = ferrops.max_pool2d(half, 2)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, ref_max_pool(half, (2, 2), (2, 2), (0, 0)).astype(np.float16))


@pytest.mark.spec("POOL-SPP", "POOL-SPPF", "POOL-MAX", "POOL-ROI")
def test_empty_inputs_give_typed_empty_results(backend):
    x = np.zeros((0, 3, 8, 8), np.float32)
    assert backend.output(ferrops.sppf(backend.input(x), **backend.kwargs)).shape == (0, 12, 8, 8)
    assert backend.output(ferrops.spatial_pyramid_pool(backend.input(x), **backend.kwargs)).shape == (0, 63)
    assert backend.output(ferrops.max_pool2d(backend.input(x), 2, **backend.kwargs)).shape == (0, 3, 4, 4)
    out = backend.output(ferrops.adaptive_avg_pool2d(backend.input(x), 3, **backend.kwargs))
    assert out.shape == (0, 3, 3, 3) and out.dtype == np.float32
    feats = feature_map((1, 3, 8, 8))
    none = np.zeros((0, 5), np.float32)
    assert backend.output(ferrops.roi_align(backend.input(feats), backend.input(none), 2, **backend.kwargs)).shape == (
        0,
        3,
        2,
        2,
    )
    assert backend.output(ferrops.roi_pool(backend.input(feats), backend.input(none), 2, **backend.kwargs)).shape == (
        0,
        3,
        2,
        2,
    )


@pytest.mark.spec("POOL-SPPF", "POOL-SPP", "POOL-ROI")
def test_results_do_not_depend_on_the_thread_count():
    x = feature_map((3, 40, 21, 19), seed=16)
    x[1, 7, 3, 3] = np.nan
    before = ferrops.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            runs.append(
                [
                    ferrops.sppf(x),
                    ferrops.spatial_pyramid_pool(x, (4, 2, 1), "avg"),
                    ferrops.max_pool2d(x, 3, 2, 1),
                    ferrops.roi_align(x, ROIS[:, :] * [1, 1, 1, 1, 1], 3, 0.7, -1, True),
                ]
            )
    finally:
        ferrops.set_num_threads(before)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.spec("POOL-SPP", "POOL-SPPF")
def test_nn_modules_pool_and_backpropagate():
    torch = pytest.importorskip("torch")
    from ferrops.nn import SPP, SPPF

    x = torch.tensor(feature_map((2, 3, 11, 7), seed=17), requires_grad=True)
    net = torch.nn.Sequential(SPPF(5), SPP((2, 1), "max"))
    out = net(x)
    assert out.shape == (2, 12 * 5)
    np.testing.assert_array_equal(
        out.detach().numpy(), ref_spp(ref_sppf(x.detach().numpy(), 5), (2, 1), "max").astype(np.float32)
    )
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert "kernel_size=5" in repr(net)
    with pytest.raises(ValueError, match="sppf"):
        SPPF(4)
    with pytest.raises(ValueError, match="levels"):
        SPP((2, 0))


@pytest.mark.spec("POOL-SPPF")
def test_the_package_and_nn_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, ferrops, ferrops.nn\n"
        "print(ferrops.sppf(np.ones((1, 1, 3, 3), np.float32)).shape)\n"
        "try:\n    ferrops.nn.SPPF\nexcept ImportError:\n    print('no torch')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(1,", "4,", "3,", "3)", "no", "torch"]


# ---------------------------------------------------------------------------
# bad input


@pytest.mark.spec("POOL-SPP", "POOL-SPPF", "POOL-MAX", "POOL-ROI", "POOL-ADAPTIVE")
def test_bad_arguments_raise_clear_errors(backend):
    x = backend.input(feature_map((1, 2, 6, 6)))
    kw = backend.kwargs
    three_d = backend.input(feature_map((2, 6, 6)))
    for call in (
        lambda: ferrops.sppf(three_d, **kw),
        lambda: ferrops.spatial_pyramid_pool(three_d, **kw),
        lambda: ferrops.max_pool2d(three_d, 2, **kw),
        lambda: ferrops.adaptive_avg_pool2d(three_d, 2, **kw),
    ):
        with pytest.raises(ValueError, match=r"\(\): argument 'input': expected a 4-D"):
            call()
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool\(\): argument 'levels'"):
        ferrops.spatial_pyramid_pool(x, (2, 0), **kw)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool\(\): argument 'levels'"):
        ferrops.spatial_pyramid_pool(x, (), **kw)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool\(\): argument 'mode'"):
        ferrops.spatial_pyramid_pool(x, (2,), "min", **kw)
    with pytest.raises(ValueError, match=r"sppf\(\): argument 'kernel_size': expected an odd"):
        ferrops.sppf(x, 4, **kw)
    with pytest.raises(ValueError, match=r"sppf\(\): argument 'kernel_size'"):
        ferrops.sppf(x, 0, **kw)
    with pytest.raises(TypeError, match=r"sppf\(\): argument 'kernel_size': expected an int"):
        ferrops.sppf(x, 5.0, **kw)
    with pytest.raises(ValueError, match=r"max_pool2d\(\): argument 'kernel_size'"):
        ferrops.max_pool2d(x, 0, **kw)
    with pytest.raises(
        ValueError, match=r"max_pool2d\(\): argument 'stride': expected an int of at least 1 that fits in 64 bits"
    ):
        ferrops.max_pool2d(x, 2, 2**70, **kw)
    with pytest.raises(ValueError, match=r"roi_align\(\): argument 'sampling_ratio'"):
        ferrops.roi_align(x, backend.input(np.zeros((1, 5), np.float32)), 2, sampling_ratio=2**70, **kw)
    with pytest.raises(ValueError, match=r"max_pool2d\(\): argument 'padding': expected at most half"):
        ferrops.max_pool2d(x, 3, 1, 2, **kw)
    with pytest.raises(ValueError, match=r"max_pool2d\(\): argument 'input'"):
        ferrops.max_pool2d(x, 7, **kw)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d\(\): argument 'output_size'"):
        ferrops.adaptive_max_pool2d(x, (0, 2), **kw)
    with pytest.raises(ValueError, match=r"roi_align\(\): argument 'boxes': expected a \[K, 5\]"):
        ferrops.roi_align(x, backend.input(np.zeros((3, 4), np.float32)), 2, **kw)
    with pytest.raises(ValueError, match=r"roi_pool\(\): argument 'boxes': expected a list of \[L, 4\]"):
        ferrops.roi_pool(x, [backend.input(np.zeros((3, 5), np.float32))], 2, **kw)
    with pytest.raises(ValueError, match=r"roi_align\(\): argument 'boxes': expected batch indices"):
        ferrops.roi_align(x, backend.input(np.array([[1, 0, 0, 2, 2]], np.float32)), 2, **kw)
    with pytest.raises(ValueError, match=r"roi_pool\(\): argument 'spatial_scale'"):
        ferrops.roi_pool(x, backend.input(np.array([[0, 0, 0, 2, 2]], np.float32)), 2, 0.0, **kw)


@pytest.mark.spec("POOL-ROI")
def test_roi_pool_ignores_nan_and_minus_infinity_like_torchvision():
    torch = pytest.importorskip("torch")
    x = feature_map((2, 3, 13, 17), seed=18)
    x[0, :, 2:6, 3:9] = np.nan
    x[1, 1, :, 10:] = -np.inf
    got = ferrops.roi_pool(x, ROIS, 3, 1.0)
    np.testing.assert_array_equal(got, ref_roi_pool_torchvision_rule(x, ROIS, 3, 3))
    z = torch.tensor(x, requires_grad=True)
    with_grad = ferrops.roi_pool(z, torch.from_numpy(ROIS), 3, 1.0)  # the arg max kernel
    np.testing.assert_array_equal(with_grad.detach().numpy(), got)
    tv = pytest.importorskip("torchvision")
    np.testing.assert_array_equal(got, tv.ops.roi_pool(torch.from_numpy(x), torch.from_numpy(ROIS), 3).numpy())


def ref_roi_pool_torchvision_rule(x, rois, ph, pw):
    """roi_pool where a bin's max starts at -FLT_MAX and only larger values win."""
    clean = np.where(np.isnan(x) | (x < -np.finfo(np.float32).max), -np.finfo(np.float32).max, x)
    return ref_roi_pool(clean, rois, ph, pw, 1.0).astype(np.float32)


@pytest.mark.spec("POOL-MAX")
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    data=st.data(),
)
def test_max_pool_property_matches_the_definition(h, w, kh, kw, sh, sw, data):
    ph = data.draw(st.integers(0, kh // 2))
    pw = data.draw(st.integers(0, kw // 2))
    if h + 2 * ph < kh or w + 2 * pw < kw:
        with pytest.raises(ValueError, match=r"max_pool2d\(\): argument 'input'"):
            ferrops.max_pool2d(np.zeros((1, 1, h, w), np.float32), (kh, kw), (sh, sw), (ph, pw))
        return
    x = np.floor(feature_map((2, 2, h, w), seed=h * 13 + w) * 2)  # ties
    got = ferrops.max_pool2d(x, (kh, kw), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(got, ref_max_pool(x, (kh, kw), (sh, sw), (ph, pw)).astype(np.float32))


@pytest.mark.spec("POOL-SPPF", "POOL-SPP")
def test_strided_and_channels_last_inputs_give_the_same_results():
    x = feature_map((2, 6, 9, 10), seed=19)
    view = x[:, ::2]  # a strided NumPy view
    np.testing.assert_array_equal(ferrops.sppf(view), ref_sppf(np.ascontiguousarray(view), 5).astype(np.float32))
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(ferrops.sppf(t).numpy(), ref_sppf(x, 5).astype(np.float32))
    np.testing.assert_allclose(
        ferrops.spatial_pyramid_pool(t, (3, 1), "avg").numpy(), ref_spp(x, (3, 1), "avg"), rtol=1e-5, atol=1e-6
    )


# ---------------------------------------------------------------------------
# SIMD levels: the automatic choice per workload (simd.rs) changes speed only


@pytest.mark.spec("POOL-SPPF", "POOL-MAX", "POOL-ADAPTIVE", "POOL-SPP", "POOL-ROI")
def test_pooling_is_bitwise_identical_at_every_simd_level_and_the_automatic_choice():
    from ferrops import _core

    rng = np.random.default_rng(71)
    x = rng.standard_normal((2, 5, 19, 70)).astype(np.float32)
    x_nan = x.copy()
    x_nan[1, 2, 7, 33] = np.nan
    rois = np.array([[0, 1.5, 2.0, 40.0, 15.0], [1, 0.0, 0.0, 69.0, 18.0], [1, 30.2, 4.4, 35.1, 9.9]], np.float32)

    def results() -> list[bytes]:
        out = []
        for inp in (x, x_nan, x.astype(np.float64)):
            out += [
                ferrops.sppf(inp, 5).tobytes(),
                ferrops.max_pool2d(inp, 3, 2, 1).tobytes(),
                ferrops.adaptive_max_pool2d(inp, (4, 9)).tobytes(),
                ferrops.adaptive_avg_pool2d(inp, 7).tobytes(),
                ferrops.spatial_pyramid_pool(inp, (4, 2, 1)).tobytes(),
                ferrops.roi_pool(inp, rois.astype(inp.dtype), 3, 0.5).tobytes(),
                ferrops.roi_align(inp, rois.astype(inp.dtype), 3, 0.5, 2, True).tobytes(),
            ]
        return out

    levels = ("scalar", "avx2", "avx512")
    try:
        runs = {level: (ferrops.set_simd_level(level), results()) for level in levels}
        _core.reset_simd_level()
        auto = results()
        assert _core.simd_auto_level("pooling") in levels
    finally:
        _core.reset_simd_level()
    for level, (active, run) in runs.items():
        assert run == auto, f"pooling at {level} (ran at {active}) differs from the automatic choice"
