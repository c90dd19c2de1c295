"""Conformance tests for the attention family (SPEC section 3, ATT-*).

The reference is written straight from ATT-REF and the option clauses in float64
(NumPy for values, torch for gradients by autograd); torch's
``scaled_dot_product_attention`` is an extra oracle where it covers the case.
Bad input and flash-attn's exact API are tested in ``test_attention_api.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrops

F = ferrops


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def reference(
    q, k, v, *, scale=None, bottom_right=True, window=(None, None), softcap=0.0, slopes=None, mask=None, xp=np
):
    """ATT-REF with every option, on ``[B, H, L, D]`` arrays in float64 (``xp`` is
    numpy or torch, for autograd). Returns ``(out [B, Hq, L, Dv], lse [B, Hq, L])``."""
    B, Hq, L, D = q.shape
    Hk, S = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    if xp is np:
        k, v = np.repeat(k, Hq // Hk, axis=1), np.repeat(v, Hq // Hk, axis=1)
        s = np.einsum("bhld,bhsd->bhls", q, k) * scale
    else:
        k, v = k.repeat_interleave(Hq // Hk, dim=1), v.repeat_interleave(Hq // Hk, dim=1)
        s = xp.einsum("bhld,bhsd->bhls", q, k) * scale
    if softcap > 0:
        s = softcap * xp.tanh(s / softcap)
    pos = np.arange(L)[:, None] + (S - L if bottom_right else 0)
    j = np.arange(S)[None, :]
    if slopes is not None:
        bias = -np.asarray(slopes, dtype=np.float64).reshape(B, Hq)[:, :, None, None] * np.abs(pos - j)
        s = s + (bias if xp is np else xp.from_numpy(bias))
    allowed = np.ones((L, S), dtype=bool)
    if window[0] is not None:
        allowed &= j >= pos - window[0]
    if window[1] is not None:
        allowed &= j <= pos + window[1]
    allowed = np.broadcast_to(allowed, (B, Hq, L, S))
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            allowed = allowed & np.broadcast_to(mask, (B, Hq, L, S))
        else:
            add = np.broadcast_to(mask.astype(np.float64), (B, Hq, L, S))
            s = s + (add if xp is np else xp.from_numpy(np.ascontiguousarray(add)))
    neg = -np.inf
    if xp is np:
        s = np.where(allowed, s, neg)
        m = s.max(axis=-1, keepdims=True) if S else np.full((B, Hq, L, 1), neg)
        shift = np.where(np.isfinite(m), m, 0.0)
        p = np.exp(s - shift)
        total = p.sum(axis=-1, keepdims=True)
        out = (p @ v) / np.where(total > 0, total, 1.0)
        with np.errstate(divide="ignore"):
            lse = (shift + np.log(total))[..., 0]
        return out, lse
    s = s.masked_fill(xp.from_numpy(np.ascontiguousarray(~allowed)), neg)
    m = s.amax(dim=-1, keepdim=True).detach()
    shift = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    p = xp.exp(s - shift)
    total = p.sum(dim=-1, keepdim=True)
    return (p @ v) / xp.where(total > 0, total, xp.ones_like(total)), None


def flash_causal(window, seqlen_k):
    """flash-attn's kernel runs causal (its ALiBi LSE convention) when the right window
    is 0 and the left one is unbounded or at least seqlen_k (its clamp)."""
    return window[1] == 0 and (window[0] is None or window[0] >= seqlen_k)


def flash_lse(lse, ref_opts, L, S, seqlen_k):
    """ATT-ALIBI's flash-attn LSE clause: with causal masking its kernel's bias is
    ``+slope * j``, so its LSE is ATT-REF's plus ``slope * (i + S - L)``."""
    slopes = ref_opts["slopes"]
    if slopes is None or not flash_causal(ref_opts["window"], seqlen_k):
        return lse
    position = np.arange(L) + S - L
    return lse + np.asarray(slopes, dtype=np.float64)[:, :, None] * position


def f64(x):
    return np.asarray(x, dtype=np.float64)


def bhld(x):
    """[B, L, H, D] -> [B, H, L, D]"""
    return np.swapaxes(np.asarray(x), 1, 2)


# --------------------------------------------------------------------------- SDPA


@pytest.mark.spec("ATT-REF", "ATT-ONLINE", "ATT-CAUSAL")
@pytest.mark.parametrize("L,S,D", [(1, 1, 32), (7, 129, 64), (129, 7, 80), (200, 1000, 128), (1000, 33, 32)])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_reference(backend, L, S, D, causal):
    q, k, v = rand((2, 2, L, D), 1), rand((2, 2, S, D), 2), rand((2, 2, S, D), 3)
    got = backend.output(
        F.scaled_dot_product_attention(
            backend.input(q), backend.input(k), backend.input(v), is_causal=causal, **backend.kwargs
        )
    )
    want, _ = reference(f64(q), f64(k), f64(v), bottom_right=False, window=(None, 0 if causal else None))
    assert got.dtype == np.float32 and got.shape == (2, 2, L, D)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    if causal and L > S:
        # top-left: row i sees keys j <= i, so every row sees key 0.
        assert np.all(np.isfinite(got))


@pytest.mark.spec("ATT-REF")
def test_sdpa_agrees_with_torch():
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(rand((1, 3, 65, 40), s)) for s in (4, 5, 6))
    mask = torch.from_numpy(rand((65, 65), 7))
    for kwargs in ({}, {"is_causal": True}, {"attn_mask": mask}, {"scale": 0.3}):
        got = F.scaled_dot_product_attention(q, k, v, **kwargs)
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.spec("ATT-MASK")
@pytest.mark.parametrize("mask_shape", [(9, 11), (2, 1, 9, 11), (1, 3, 1, 11), (11,)])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_masks_broadcast(backend, mask_shape, kind):
    q, k, v = rand((2, 3, 9, 16), 1), rand((2, 3, 11, 16), 2), rand((2, 3, 11, 8), 3)
    rng = np.random.default_rng(4)
    mask = rng.random(mask_shape) > 0.3 if kind == "bool" else rng.standard_normal(mask_shape).astype(np.float32)
    got = backend.output(
        F.scaled_dot_product_attention(
            backend.input(q), backend.input(k), backend.input(v), attn_mask=backend.input(mask), **backend.kwargs
        )
    )
    want, _ = reference(f64(q), f64(k), f64(v), bottom_right=False, mask=mask)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.spec("ATT-MASK")
def test_fully_masked_rows_are_zero_not_nan(backend):
    q, k, v = rand((1, 2, 5, 8), 1), rand((1, 2, 6, 8), 2), rand((1, 2, 6, 8), 3)
    mask = np.ones((5, 6), dtype=bool)
    mask[2] = False
    additive = np.zeros((5, 6), dtype=np.float32)
    additive[4] = -np.inf
    for m in (mask, additive):
        got = backend.output(
            F.scaled_dot_product_attention(
                backend.input(q), backend.input(k), backend.input(v), attn_mask=backend.input(m), **backend.kwargs
            )
        )
        assert not np.isnan(got).any()
        row = 2 if m.dtype == bool else 4
        assert np.all(got[:, :, row] == 0)
    # FlashAttention layout: bottom-right causal with L > S leaves the first rows empty.
    qf, kf, vf = rand((1, 6, 2, 8), 4), rand((1, 3, 2, 8), 5), rand((1, 3, 2, 8), 6)
    out, lse = backend.output(
        F.flash_attn_func(
            backend.input(qf), backend.input(kf), backend.input(vf), causal=True, return_lse=True, **backend.kwargs
        )
    )
    assert np.all(out[:, :3] == 0) and np.all(lse[:, :, :3] == -np.inf) and np.all(np.isfinite(lse[:, :, 3:]))


@pytest.mark.spec("ATT-GQA")
def test_sdpa_gqa(backend):
    q, k, v = rand((2, 6, 17, 32), 1), rand((2, 2, 23, 32), 2), rand((2, 2, 23, 32), 3)
    got = backend.output(
        F.scaled_dot_product_attention(
            backend.input(q), backend.input(k), backend.input(v), is_causal=True, enable_gqa=True, **backend.kwargs
        )
    )
    want, _ = reference(f64(q), f64(k), f64(v), bottom_right=False, window=(None, 0))
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- FlashAttention API


FLASH_OPTIONS = [
    dict(),
    dict(causal=True),
    dict(window_size=(5, 3)),
    dict(window_size=(7, -1), causal=True),
    dict(softcap=1.5),
    dict(alibi=True),
    dict(causal=True, softcap=3.0, alibi=True, window_size=(20, 0), softmax_scale=0.2),
]


def _flash_kwargs(opts, heads, batch, per_sequence=False):
    kw = {k: v for k, v in opts.items() if k != "alibi"}
    slopes = None
    if opts.get("alibi"):
        slopes = (np.arange(1, heads + 1, dtype=np.float32) / heads) * 0.5
        if per_sequence:
            slopes = np.stack([slopes * (b + 1) for b in range(batch)])
        kw["alibi_slopes"] = slopes
    return kw, slopes


def _reference_options(kw, slopes, batch, heads):
    window = tuple(None if w == -1 else w for w in kw.get("window_size", (-1, -1)))
    if kw.get("causal"):
        window = (window[0], 0)
    s = None if slopes is None else np.broadcast_to(slopes, (batch, heads))
    return dict(scale=kw.get("softmax_scale"), window=window, softcap=kw.get("softcap", 0.0), slopes=s)


@pytest.mark.spec("ATT-CAUSAL", "ATT-WINDOW", "ATT-SOFTCAP", "ATT-ALIBI", "ATT-GQA", "ATT-REF")
@pytest.mark.parametrize("opts", FLASH_OPTIONS)
@pytest.mark.parametrize("L,S", [(37, 37), (20, 129), (129, 30)])
def test_flash_attn_func_matches_reference(backend, opts, L, S):
    B, Hq, Hk, D = 2, 4, 2, 32
    q, k, v = rand((B, L, Hq, D), 1), rand((B, S, Hk, D), 2, 2.0), rand((B, S, Hk, D), 3)
    kw, slopes = _flash_kwargs(opts, Hq, B, per_sequence=L == S)
    out, lse = backend.output(
        F.flash_attn_func(
            backend.input(q),
            backend.input(k),
            backend.input(v),
            return_lse=True,
            **{n: backend.input(x) if n == "alibi_slopes" else x for n, x in kw.items()},
            **backend.kwargs,
        )
    )
    ref_opts = _reference_options(kw, slopes, B, Hq)
    want, want_lse = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), **ref_opts)
    want_lse = flash_lse(want_lse, ref_opts, L, S, S)
    assert out.shape == (B, L, Hq, D) and lse.shape == (B, Hq, L)
    np.testing.assert_allclose(out, bhld(want), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(lse, want_lse, atol=2e-5, rtol=1e-5)


@pytest.mark.spec("ATT-VARLEN")
@pytest.mark.parametrize("opts", FLASH_OPTIONS)
def test_varlen_equals_each_sequence_alone(backend, opts):
    lens_q, lens_k = [5, 0, 130, 1, 64], [9, 4, 100, 1, 200]
    Hq, Hk, D = 4, 1, 16
    cu_q, cu_k = np.cumsum([0, *lens_q]).astype(np.int32), np.cumsum([0, *lens_k]).astype(np.int32)
    q, k, v = rand((cu_q[-1], Hq, D), 1), rand((cu_k[-1], Hk, D), 2), rand((cu_k[-1], Hk, D), 3)
    kw, slopes = _flash_kwargs(opts, Hq, len(lens_q), per_sequence=True)
    out, lse = backend.output(
        F.flash_attn_varlen_func(
            backend.input(q),
            backend.input(k),
            backend.input(v),
            backend.input(cu_q),
            backend.input(cu_k),
            max(lens_q),
            max(lens_k),
            return_lse=True,
            **{n: backend.input(x) if n == "alibi_slopes" else x for n, x in kw.items()},
            **backend.kwargs,
        )
    )
    assert out.shape == (cu_q[-1], Hq, D) and lse.shape == (Hq, cu_q[-1])
    for b in range(len(lens_q)):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        kw_b = dict(kw)
        if slopes is not None:
            kw_b["alibi_slopes"] = slopes[b]
        alone, alone_lse = F.flash_attn_func(q[None, qs], k[None, ks], v[None, ks], return_lse=True, **kw_b)
        np.testing.assert_allclose(out[qs], alone[0], atol=2e-6, rtol=1e-5)
        ref_opts = _reference_options(kw, None if slopes is None else slopes[b], 1, Hq)
        # flash-attn decides the ALiBi LSE convention with max_seqlen_k, a call alone with its own S.
        if slopes is None or flash_causal(ref_opts["window"], lens_k[b]) == flash_causal(
            ref_opts["window"], max(lens_k)
        ):
            np.testing.assert_allclose(lse[:, qs], alone_lse[0], atol=2e-6, rtol=1e-5)
        want, want_lse = reference(bhld(f64(q[None, qs])), bhld(f64(k[None, ks])), bhld(f64(v[None, ks])), **ref_opts)
        want_lse = flash_lse(want_lse, ref_opts, lens_q[b], lens_k[b], max(lens_k))
        np.testing.assert_allclose(out[qs], bhld(want)[0], atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(lse[:, qs], want_lse[0], atol=3e-5, rtol=1e-5)


@pytest.mark.spec("ATT-REF", "ATT-ONLINE")
@given(
    L=st.integers(1, 70),
    S=st.integers(1, 70),
    group=st.sampled_from([1, 2]),
    D=st.sampled_from([8, 24]),
    causal=st.booleans(),
    left=st.integers(-1, 40),
    softcap=st.sampled_from([0.0, 2.0]),
    seed=st.integers(0, 99),
)
def test_flash_attn_property(L, S, group, D, causal, left, softcap, seed):
    q, k, v = rand((1, L, 2 * group, D), seed), rand((1, S, 2, D), seed + 1, 3.0), rand((1, S, 2, D), seed + 2)
    kw = dict(causal=causal, window_size=(left, -1), softcap=softcap)
    out, lse = F.flash_attn_func(q, k, v, return_lse=True, **kw)
    want, want_lse = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), **_reference_options(kw, None, 1, 2 * group))
    np.testing.assert_allclose(out, bhld(want), atol=3e-5, rtol=1e-4)
    np.testing.assert_allclose(lse, want_lse, atol=3e-5, rtol=1e-5)
    assert not np.isnan(out).any()


@pytest.mark.spec("ATT-ONLINE")
def test_results_do_not_depend_on_thread_count():
    q, k, v = rand((1, 300, 4, 64), 1), rand((1, 500, 2, 64), 2), rand((1, 500, 2, 64), 3)
    before = ferrops.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            ferrops.set_num_threads(n)
            results.append(F.flash_attn_func(q, k, v, causal=True, softcap=5.0, return_lse=True))
    finally:
        ferrops.set_num_threads(before)
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])


@pytest.mark.spec("ATT-REF")
def test_float64_is_computed_in_float64(backend):
    q, k, v = (f64(rand((1, 2, 33, 16), s)) for s in (1, 2, 3))
    got = backend.output(
        F.scaled_dot_product_attention(
            backend.input(q), backend.input(k), backend.input(v), is_causal=True, **backend.kwargs
        )
    )
    want, _ = reference(q, k, v, bottom_right=False, window=(None, 0))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=1e-12)


@pytest.mark.spec("ATT-REF")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_follows_flash_attention_tolerance(dtype):
    """FlashAttention's rule: the error against the float64 reference is at most twice
    that of the same computation done by PyTorch in the low precision, plus a small
    absolute slack."""
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    q, k, v = (torch.from_numpy(rand((1, 150, 4, 64), s)).to(dt) for s in (1, 2, 3))
    for kw in (dict(), dict(causal=True, softcap=4.0)):
        out = F.flash_attn_func(q, k, v, **kw)
        assert out.dtype == dt
        if dtype == "float16" or not ferrops._core.bf16_dot_products():
            # Without bfloat16 dot products: computed in float32 from the exact
            # widening, rounded once at the end.
            assert torch.equal(out, F.flash_attn_func(q.float(), k.float(), v.float(), **kw).to(dt))
        ref_opts = _reference_options(kw, None, 1, 4)
        want, _ = reference(bhld(f64(q.double())), bhld(f64(k.double())), bhld(f64(v.double())), **ref_opts)
        low, _ = reference(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), **ref_opts, xp=torch)
        low_err = (low.transpose(1, 2).double().numpy() - bhld(want)).__abs__().max()
        err = np.abs(out.double().numpy() - bhld(want)).max()
        assert err <= 2 * low_err + 1e-5, (err, low_err)
    numpy_half = F.scaled_dot_product_attention(*(x.float().numpy().astype(np.float16) for x in (q, k, v)))
    assert numpy_half.dtype == np.float16


@pytest.mark.spec("ATT-REF")
def test_empty_inputs_give_typed_empty_results(backend):
    q, k, v = rand((2, 3, 0, 8), 1), rand((2, 3, 4, 8), 2), rand((2, 3, 4, 5), 3)
    got = backend.output(
        F.scaled_dot_product_attention(backend.input(q), backend.input(k), backend.input(v), **backend.kwargs)
    )
    assert got.shape == (2, 3, 0, 5) and got.dtype == np.float32
    no_keys = backend.output(
        F.flash_attn_func(
            backend.input(rand((1, 3, 2, 8), 1)),
            backend.input(rand((1, 0, 2, 8), 2)),
            backend.input(rand((1, 0, 2, 8), 3)),
            return_lse=True,
            **backend.kwargs,
        )
    )
    assert np.all(no_keys[0] == 0) and np.all(no_keys[1] == -np.inf)
    cu = np.array([0], dtype=np.int32)
    out, lse = backend.output(
        F.flash_attn_varlen_func(
            backend.input(rand((0, 2, 8), 1)),
            backend.input(rand((0, 2, 8), 2)),
            backend.input(rand((0, 2, 8), 3)),
            backend.input(cu),
            backend.input(cu),
            0,
            0,
            return_lse=True,
            **backend.kwargs,
        )
    )
    assert out.shape == (0, 2, 8) and lse.shape == (2, 0)


# --------------------------------------------------------------------------- gradients


def _torch_reference_grads(torch, q, k, v, grad, **ref_opts):
    """Gradients of the float64 reference (``[B, H, L, D]`` tensors) by autograd."""
    leaves = [x.detach().double().requires_grad_() for x in (q, k, v)]
    out, _ = reference(*leaves, **ref_opts, xp=torch)
    out.backward(grad.double())
    return [x.grad for x in leaves]


@pytest.mark.spec("ATT-BWD")
@pytest.mark.parametrize("impl", ["rust", "torch"])
@pytest.mark.parametrize("opts", [dict(causal=True), dict(window_size=(9, 4), softcap=2.0, alibi=True)])
def test_flash_gradients_match_autograd_of_reference(impl, opts):
    torch = pytest.importorskip("torch")
    B, L, S, Hq, Hk, D = 2, 70, 110, 4, 2, 24
    q, k, v = (
        torch.from_numpy(rand(shape, s)).requires_grad_()
        for shape, s in (((B, L, Hq, D), 1), ((B, S, Hk, D), 2), ((B, S, Hk, D), 3))
    )
    kw, slopes = _flash_kwargs(opts, Hq, B)
    out = F.flash_attn_func(q, k, v, backend=impl, **kw)
    grad = torch.from_numpy(rand(out.shape, 4))
    out.backward(grad)
    want = _torch_reference_grads(
        torch,
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        grad.transpose(1, 2),
        **_reference_options(kw, slopes, B, Hq),
    )
    for got, w in zip((q.grad, k.grad, v.grad), want):
        np.testing.assert_allclose(got.numpy(), w.transpose(1, 2).numpy(), atol=1e-4, rtol=1e-3)


@pytest.mark.spec("ATT-BWD", "ATT-MASK", "ATT-GQA")
@pytest.mark.parametrize("impl", ["rust", "torch"])
def test_sdpa_gradients_with_mask_and_gqa(impl):
    torch = pytest.importorskip("torch")
    q, k, v = (
        torch.from_numpy(rand(shape, s)).double().requires_grad_()
        for shape, s in (((2, 4, 50, 16), 1), ((2, 2, 61, 16), 2), ((2, 2, 61, 12), 3))
    )
    mask = np.random.default_rng(5).random((50, 61)) > 0.5
    mask[7] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.from_numpy(mask), enable_gqa=True, backend=impl)
    grad = torch.from_numpy(rand(out.shape, 4)).double()
    out.backward(grad)
    want = _torch_reference_grads(torch, q, k, v, grad, bottom_right=False, mask=mask)
    for got, w in zip((q.grad, k.grad, v.grad), want):
        np.testing.assert_allclose(got.numpy(), w.numpy(), atol=1e-10, rtol=1e-9)
        assert not torch.isnan(got).any()


@pytest.mark.spec("ATT-BWD", "ATT-VARLEN")
def test_varlen_gradients_equal_each_sequence_alone():
    torch = pytest.importorskip("torch")
    lens = [3, 40, 17]
    cu = torch.tensor(np.cumsum([0, *lens]), dtype=torch.int32)
    q, k, v = (torch.from_numpy(rand((sum(lens), 2, 16), s)).requires_grad_() for s in (1, 2, 3))
    out = F.flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True)
    grad = torch.from_numpy(rand(out.shape, 4))
    out.backward(grad)
    for b in range(len(lens)):
        sl = slice(int(cu[b]), int(cu[b + 1]))
        leaves = [x.detach()[sl][None].clone().requires_grad_() for x in (q, k, v)]
        F.flash_attn_func(*leaves, causal=True).backward(grad[sl][None])
        for whole, alone in zip((q.grad, k.grad, v.grad), leaves):
            np.testing.assert_allclose(whole[sl].numpy(), alone.grad[0].numpy(), atol=1e-6, rtol=1e-5)


@pytest.mark.spec("ATT-BWD")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("opts", [dict(), dict(softcap=2.0, alibi=True)])
def test_single_key_gradients_are_exact(dtype, opts):
    """Softmax over one key is 1 whatever the score, so dQ and dK are exactly 0 and dV
    is the sum of dO over the rows (flash-attn's tests compare these with no slack)."""
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    B, L, Hq, Hk, D = 2, 7, 4, 2, 24
    kw, _ = _flash_kwargs(opts, Hq, B)
    leaves = [
        torch.from_numpy(rand(shape, s, 2.0)).to(dt).requires_grad_()
        for shape, s in (((B, L, Hq, D), 1), ((B, 1, Hk, D), 2), ((B, 1, Hk, D), 3))
    ]
    q, k, v = leaves
    out = F.flash_attn_func(q, k, v, **{n: torch.from_numpy(x) if n == "alibi_slopes" else x for n, x in kw.items()})
    assert torch.equal(out, v.detach().repeat_interleave(Hq // Hk, dim=2).expand(B, L, Hq, D))
    grad = torch.from_numpy(rand(out.shape, 4)).to(dt)
    out.backward(grad)
    assert torch.count_nonzero(q.grad) == 0 and torch.count_nonzero(k.grad) == 0
    exact = grad.double().reshape(B, L, Hk, Hq // Hk, D).sum(dim=(1, 3), keepdim=False)[:, None]
    if dtype == "float32":
        torch.testing.assert_close(v.grad.double(), exact, atol=1e-6, rtol=1e-6)
    else:
        # Summed in float32 (exact for these few low-precision values), rounded once.
        assert torch.equal(v.grad, exact.to(dt))
