"""Conformance tests for the attention family's argument contract (SPEC section 3,
ATT-*): clear errors for bad input, and flash-attn's own API (positional order,
return tuples, window_size types, causal ALiBi log-sum-exp, option types).

The float64 reference and input helpers are :mod:`spec_tests.test_attention`'s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferrops

from .test_attention import bhld, f64, rand, reference

F = ferrops


# --------------------------------------------------------------------------- bad input


@pytest.mark.spec("ATT-GQA", "ATT-MASK", "ATT-VARLEN")
def test_bad_input_is_a_clear_error(backend):
    i = backend.input
    kw = backend.kwargs
    q, k, v = rand((1, 4, 5, 8), 1), rand((1, 4, 6, 8), 2), rand((1, 4, 6, 8), 3)
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention\(\): argument 'key': expected head dim"):
        F.scaled_dot_product_attention(i(q), i(rand((1, 4, 6, 16), 2)), i(v), **kw)
    with pytest.raises(ValueError, match="argument 'key': expected 4 heads"):
        F.scaled_dot_product_attention(i(q), i(rand((1, 3, 6, 8), 2)), i(rand((1, 3, 6, 8), 3)), **kw)
    with pytest.raises(ValueError, match="heads dividing"):
        F.scaled_dot_product_attention(i(q), i(rand((1, 3, 6, 8), 2)), i(rand((1, 3, 6, 8), 3)), enable_gqa=True, **kw)
    with pytest.raises(ValueError, match="argument 'attn_mask': expected a shape broadcastable"):
        F.scaled_dot_product_attention(i(q), i(k), i(v), attn_mask=i(np.ones((5, 7), dtype=bool)), **kw)
    with pytest.raises(ValueError, match="is_causal"):
        F.scaled_dot_product_attention(i(q), i(k), i(v), attn_mask=i(np.ones((5, 6), dtype=bool)), is_causal=True, **kw)
    with pytest.raises(TypeError, match="one dtype"):
        F.scaled_dot_product_attention(i(q), i(k.astype(np.float64)), i(v), **kw)
    with pytest.raises(TypeError, match="argument 'query': expected a float16"):
        F.scaled_dot_product_attention(i(q.astype(np.int32)), i(k.astype(np.int32)), i(v.astype(np.int32)), **kw)
    qf, kf = rand((8, 4, 8), 1), rand((9, 2, 8), 2)
    cases = [
        (np.array([1, 8]), np.array([0, 9]), "cu_seqlens_q': expected a first entry of 0"),
        (np.array([0, 5, 3, 8]), np.array([0, 3, 4, 9]), "cu_seqlens_q': expected non-decreasing"),
        (np.array([0, 7]), np.array([0, 9]), "cu_seqlens_q': expected a last entry equal to the 8"),
        (np.array([0, 8]), np.array([0, 4, 9]), "cu_seqlens_k': expected 2 entries"),
    ]
    for cq, ck, msg in cases:
        with pytest.raises(ValueError, match=msg):
            F.flash_attn_varlen_func(i(qf), i(kf), i(kf), i(cq.astype(np.int32)), i(ck.astype(np.int32)), 9, 9, **kw)
    with pytest.raises(ValueError, match="max_seqlen_q"):
        F.flash_attn_varlen_func(
            i(qf), i(kf), i(kf), i(np.array([0, 8], np.int32)), i(np.array([0, 9], np.int32)), 4, 9, **kw
        )
    with pytest.raises(ValueError, match="heads dividing"):
        F.flash_attn_func(i(rand((1, 5, 3, 8), 1)), i(rand((1, 5, 2, 8), 1)), i(rand((1, 5, 2, 8), 1)), **kw)
    with pytest.raises(ValueError, match="window_size"):
        F.flash_attn_func(
            i(rand((1, 5, 2, 8), 1)), i(rand((1, 5, 2, 8), 1)), i(rand((1, 5, 2, 8), 1)), window_size=(-2, 0), **kw
        )
    with pytest.raises(ValueError, match="alibi_slopes"):
        F.flash_attn_func(
            i(rand((1, 5, 2, 8), 1)),
            i(rand((1, 5, 2, 8), 1)),
            i(rand((1, 5, 2, 8), 1)),
            alibi_slopes=i(np.ones(3, np.float32)),
            **kw,
        )


@pytest.mark.spec("ATT-REF")
def test_dropout_is_refused_on_the_rust_path():
    q = rand((1, 1, 4, 8), 1)
    with pytest.raises(ValueError, match="dropout_p"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)


@pytest.mark.spec("ATT-REF")
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_non_finite_query_key_value_are_rejected(backend, bad, which):
    # The tile max skips NaN: without the check a NaN key would be silently ignored.
    rng = np.random.default_rng(0)
    qkv = [rng.standard_normal((1, 6, 2, 8)).astype(np.float32) for _ in range(3)]
    qkv[which][0, 3, 1, 5] = bad
    sdpa_args = [backend.input(a.transpose(0, 2, 1, 3).copy()) for a in qkv]
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention\(\): argument '\w+': expected finite values"):
        ferrops.scaled_dot_product_attention(*sdpa_args, **backend.kwargs)
    flash_args = [backend.input(a) for a in qkv]
    with pytest.raises(ValueError, match=r"flash_attn_func\(\): argument '\w+': expected finite values"):
        ferrops.flash_attn_func(*flash_args, **backend.kwargs)
    packed = [backend.input(a[0]) for a in qkv]
    cu = backend.input(np.array([0, 6], np.int32))
    with pytest.raises(ValueError, match=r"flash_attn_varlen_func\(\): argument '\w+': expected finite values"):
        ferrops.flash_attn_varlen_func(*packed, cu, cu, 6, 6, **backend.kwargs)


# --------------------------------------------------------------------------- flash-attn's API, exactly


@pytest.mark.spec("ATT-REF", "ATT-CAUSAL")
def test_flash_positional_order_is_flash_attns(backend):
    """flash-attn's own call ``flash_attn_func(q, k, v, 0.0, causal=True)``: the fourth
    argument is dropout_p, not the scale (with scale 0 attention would be uniform)."""
    q, k, v = rand((1, 9, 2, 16), 1), rand((1, 9, 2, 16), 2, 2.0), rand((1, 9, 2, 16), 3)
    i = backend.input
    got = backend.output(F.flash_attn_func(i(q), i(k), i(v), 0.0, causal=True, **backend.kwargs))
    want, _ = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), window=(None, 0))
    np.testing.assert_allclose(got, bhld(want), atol=2e-5, rtol=1e-4)
    # Every flash-attn argument by position, varlen included.
    slopes = np.array([0.3, 0.1], np.float32)
    by_position = backend.output(
        F.flash_attn_func(i(q), i(k), i(v), 0.0, 0.2, True, (4, -1), 2.0, i(slopes), True, False, **backend.kwargs)
    )
    want, _ = reference(
        bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), scale=0.2, window=(4, 0), softcap=2.0, slopes=slopes[None]
    )
    np.testing.assert_allclose(by_position, bhld(want), atol=2e-5, rtol=1e-4)
    cu = i(np.array([0, 9], np.int32))
    packed = backend.output(
        F.flash_attn_varlen_func(
            i(q[0]),
            i(k[0]),
            i(v[0]),
            cu,
            cu,
            9,
            9,
            0.0,
            0.2,
            True,
            (4, -1),
            2.0,
            i(slopes),
            True,
            False,
            None,
            **backend.kwargs,
        )
    )
    np.testing.assert_allclose(packed, by_position[0], atol=2e-6, rtol=1e-5)


@pytest.mark.spec("ATT-REF")
def test_flash_return_attn_probs_is_flash_attns_triple(backend):
    q, k, v = rand((2, 5, 2, 8), 1), rand((2, 7, 2, 8), 2), rand((2, 7, 2, 8), 3)
    i = backend.input
    out, lse, s_dmask = backend.output(
        F.flash_attn_func(i(q), i(k), i(v), causal=True, return_attn_probs=True, **backend.kwargs)
    )
    want, want_lse = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), window=(None, 0))
    np.testing.assert_allclose(out, bhld(want), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(lse, want_lse, atol=2e-5, rtol=1e-5)
    # Without dropout flash-attn returns an empty S_dmask of q's dtype.
    assert s_dmask.shape == (0,) and s_dmask.dtype == np.float32
    cu = i(np.array([0, 5, 10], np.int32))
    cu_k = i(np.array([0, 7, 14], np.int32))
    triple = F.flash_attn_varlen_func(
        i(q.reshape(10, 2, 8)),
        i(k.reshape(14, 2, 8)),
        i(v.reshape(14, 2, 8)),
        cu,
        cu_k,
        5,
        7,
        causal=True,
        return_attn_probs=True,
        **backend.kwargs,
    )
    assert len(triple) == 3 and tuple(backend.output(triple[2]).shape) == (0,)
    np.testing.assert_allclose(backend.output(triple[1]), lse.transpose(1, 0, 2).reshape(2, 10), atol=1e-6)
    with pytest.raises(ValueError, match="return_attn_probs"):
        F.flash_attn_func(i(q), i(k), i(v), return_attn_probs=True, return_lse=True, **backend.kwargs)


@pytest.mark.spec("ATT-REF")
def test_flash_dropout_is_refused_on_the_rust_path_and_deterministic_accepted():
    q = rand((1, 4, 2, 8), 1)
    with pytest.raises(ValueError, match=r"flash_attn_func\(\): argument 'dropout_p'"):
        F.flash_attn_func(q, q, q, 0.1)
    cu = np.array([0, 4], np.int32)
    with pytest.raises(ValueError, match=r"flash_attn_varlen_func\(\): argument 'dropout_p'"):
        F.flash_attn_varlen_func(q[0], q[0], q[0], cu, cu, 4, 4, 0.1)
    with pytest.raises(ValueError, match="block_table"):
        F.flash_attn_varlen_func(q[0], q[0], q[0], cu, cu, 4, 4, block_table=np.zeros((1, 1), np.int32))
    assert np.array_equal(F.flash_attn_func(q, q, q, deterministic=True), F.flash_attn_func(q, q, q))


@pytest.mark.spec("ATT-WINDOW")
@pytest.mark.parametrize("kind", ["list", "ndarray", "tensor"])
def test_window_size_as_list_array_or_tensor(backend, kind):
    q, k, v = rand((1, 12, 2, 8), 1), rand((1, 15, 2, 8), 2), rand((1, 15, 2, 8), 3)
    window = {"list": [3, 2], "ndarray": np.array([3, 2]), "tensor": None}[kind]
    if kind == "tensor":
        torch = pytest.importorskip("torch")
        window = torch.tensor([3, 2])
    i = backend.input
    got = backend.output(F.flash_attn_func(i(q), i(k), i(v), window_size=window, **backend.kwargs))
    want = backend.output(F.flash_attn_func(i(q), i(k), i(v), window_size=(3, 2), **backend.kwargs))
    assert np.array_equal(got, want)
    ref, _ = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), window=(3, 2))
    np.testing.assert_allclose(got, bhld(ref), atol=2e-5, rtol=1e-4)
    for bad in ([3], [3.0, 2], np.array([3, -2]), "32"):
        with pytest.raises(ValueError, match="window_size"):
            F.flash_attn_func(i(q), i(k), i(v), window_size=bad, **backend.kwargs)


@pytest.mark.spec("ATT-ALIBI", "ATT-CAUSAL")
@pytest.mark.parametrize("L,S", [(9, 9), (5, 13), (13, 5)])
@pytest.mark.parametrize("window", [(-1, -1), (100, -1), (2, -1)])
def test_alibi_causal_lse_is_flash_attns(backend, L, S, window):
    """Causal with ALiBi: flash-attn's kernel adds ``+slope * j``, so its LSE is ATT-REF's
    plus ``slope * (i + S - L)``; outputs are unchanged. A window whose left side is
    at least S counts as none (flash-attn's clamp); a narrower one keeps ATT-REF's."""
    B, H = 2, 3
    q, k, v = rand((B, L, H, 8), 1), rand((B, S, H, 8), 2), rand((B, S, H, 8), 3)
    slopes = np.array([[0.5, 0.25, 0.125], [1.0, 0.75, 0.5]], np.float32)
    i = backend.input
    out, lse = backend.output(
        F.flash_attn_func(
            i(q), i(k), i(v), causal=True, window_size=window, alibi_slopes=i(slopes), return_lse=True, **backend.kwargs
        )
    )
    ref_window = (None if window[0] == -1 else window[0], 0)
    want, want_lse = reference(bhld(f64(q)), bhld(f64(k)), bhld(f64(v)), window=ref_window, slopes=slopes)
    np.testing.assert_allclose(out, bhld(want), atol=2e-5, rtol=1e-4)
    # Written out from the clause: log sum_j exp(scale q.k + slope j) over the keys row i sees.
    scores = np.einsum("bhld,bhsd->bhls", bhld(f64(q)), bhld(f64(k))) / math.sqrt(8)
    pos = np.arange(L)[:, None] + S - L
    j = np.arange(S)[None, :]
    seen = (j <= pos) & ((j >= pos - ref_window[0]) if ref_window[0] is not None else True)
    flash_bias = np.where(ref_window[0] is None or ref_window[0] >= S, 1.0, 0.0) * f64(slopes)[:, :, None, None] * j
    if not (ref_window[0] is None or ref_window[0] >= S):
        flash_bias = -f64(slopes)[:, :, None, None] * np.abs(pos - j)
    with np.errstate(divide="ignore"):
        flash_lse = np.log(np.where(seen, np.exp(scores + flash_bias), 0.0).sum(-1))
    np.testing.assert_allclose(lse, flash_lse, atol=3e-5, rtol=1e-5)
    empty = ~seen.any(-1)
    assert np.all(lse[:, :, empty] == -np.inf) and np.all(np.isfinite(lse[:, :, ~empty]))


@pytest.mark.spec("ATT-REF", "ATT-CAUSAL")
def test_boolean_options_refuse_strings(backend):
    q = rand((1, 4, 2, 8), 1)
    i = backend.input
    sdpa_q = q.transpose(0, 2, 1, 3).copy()
    for name in ("is_causal", "enable_gqa"):
        with pytest.raises(TypeError, match=rf"scaled_dot_product_attention\(\): argument '{name}': expected a bool"):
            F.scaled_dot_product_attention(i(sdpa_q), i(sdpa_q), i(sdpa_q), **{name: "false"}, **backend.kwargs)
    for name in ("causal", "deterministic", "return_attn_probs", "return_lse"):
        with pytest.raises(TypeError, match=rf"flash_attn_func\(\): argument '{name}': expected a bool"):
            F.flash_attn_func(i(q), i(q), i(q), **{name: "false"}, **backend.kwargs)
        cu = i(np.array([0, 4], np.int32))
        with pytest.raises(TypeError, match=rf"flash_attn_varlen_func\(\): argument '{name}'"):
            F.flash_attn_varlen_func(i(q[0]), i(q[0]), i(q[0]), cu, cu, 4, 4, **{name: "false"}, **backend.kwargs)
    # torch's rule: bools or the ints 0 and 1.
    assert np.array_equal(
        backend.output(F.flash_attn_func(i(q), i(q), i(q), causal=1, **backend.kwargs)),
        backend.output(F.flash_attn_func(i(q), i(q), i(q), causal=True, **backend.kwargs)),
    )
    with pytest.raises(TypeError, match="dropout_p"):
        F.scaled_dot_product_attention(i(sdpa_q), i(sdpa_q), i(sdpa_q), dropout_p="0", **backend.kwargs)


@pytest.mark.spec("ATT-MASK")
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_float_masks_with_plus_inf_or_nan_are_refused(backend, bad):
    q, k, v = rand((1, 2, 5, 8), 1), rand((1, 2, 6, 8), 2), rand((1, 2, 6, 8), 3)
    mask = np.zeros((5, 6), np.float32)
    mask[1, 2] = -np.inf  # -inf says "never attend": allowed
    i = backend.input
    got = backend.output(F.scaled_dot_product_attention(i(q), i(k), i(v), attn_mask=i(mask), **backend.kwargs))
    want, _ = reference(f64(q), f64(k), f64(v), bottom_right=False, mask=mask)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    mask[3, 4] = bad
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention\(\): argument 'attn_mask'.*attn_mask\[22\]"):
        F.scaled_dot_product_attention(i(q), i(k), i(v), attn_mask=i(mask), **backend.kwargs)
