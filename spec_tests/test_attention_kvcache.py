"""Conformance tests for attention over a key/value cache (SPEC section 3:
ATT-KVCACHE, ATT-PAGED, ATT-SPLITKV): ``ferrops.flash_attn_with_kvcache``.

The reference is ATT-REF written in float64 over each sequence's visible keys,
with FlashAttention's cache conventions (bottom-right alignment, appended keys
at ``cache_seqlens``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferrops

fa = ferrops.flash_attn_with_kvcache


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def reference(q, k_cache, v_cache, lens, *, starts=None, scale=None, window=(None, None), softcap=0.0, slopes=None,
              tree=None):  # fmt: skip
    """``(out [B, Lq, Hq, Dv], lse [B, Hq, Lq])`` in float64 from ATT-REF: sequence
    ``b`` attends to cache rows ``starts[b] .. lens[b] - 1`` of ``k_cache[b]``."""
    B, Lq, Hq, D = q.shape
    Hkv, Dv = k_cache.shape[2], v_cache.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    starts = np.zeros(B, int) if starts is None else starts
    out = np.zeros((B, Lq, Hq, Dv))
    lse = np.full((B, Hq, Lq), -np.inf)
    left, right = window
    for b in range(B):
        k = k_cache[b, starts[b] : lens[b]].astype(np.float64)
        v = v_cache[b, starts[b] : lens[b]].astype(np.float64)
        S = k.shape[0]
        pos = np.arange(Lq)[:, None] + S - Lq
        j = np.arange(S)[None, :]
        allowed = np.ones((Lq, S), bool)
        if left is not None:
            allowed &= j >= pos - left
        if right is not None:
            allowed &= j <= pos + right
        if tree is not None:
            t = tree if tree.ndim == 2 else tree[b]
            new = j - (S - Lq)
            allowed &= (new < 0) | t[:, np.clip(new[0], 0, Lq - 1)]
        for h in range(Hq):
            g = h // (Hq // Hkv)
            s = q[b, :, h].astype(np.float64) @ k[:, g].T * scale
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            if slopes is not None:
                s = s - slopes[h] * np.abs(pos - j)
            s = np.where(allowed, s, -np.inf)
            m = s.max(axis=1, keepdims=True, initial=-np.inf)
            seen = np.isfinite(m[:, 0])
            p = np.exp(s - np.where(np.isfinite(m), m, 0.0))
            l_ = p.sum(axis=1, keepdims=True)
            out[b, :, h] = np.where(seen[:, None], p @ v[:, g] / np.where(l_ > 0, l_, 1.0), 0.0)
            lse[b, h] = np.where(seen, m[:, 0] + np.log(np.where(l_[:, 0] > 0, l_[:, 0], 1.0)), -np.inf)
    return out, lse


def paged(cache, block_size, seed, spare=3):
    """``cache [B, S, H, D]`` as shuffled blocks: ``(blocks, block_table)``."""
    B, S = cache.shape[:2]
    per = -(-S // block_size)
    n = B * per + spare
    order = np.random.default_rng(seed).permutation(n)[: B * per].reshape(B, per)
    blocks = np.zeros((n, block_size) + cache.shape[2:], cache.dtype)
    for b in range(B):
        for t in range(per):
            rows = cache[b, t * block_size : (t + 1) * block_size]
            blocks[order[b, t], : len(rows)] = rows
    return blocks, order.astype(np.int32)


def case(B=2, Lq=1, Hq=8, Hkv=2, D=32, S=100, seed=0):
    return rand((B, Lq, Hq, D), seed), rand((B, S, Hkv, D), seed + 1), rand((B, S, Hkv, D), seed + 2)


@pytest.mark.spec("ATT-KVCACHE")
@pytest.mark.parametrize("ratio", [1, 4, 8])
@pytest.mark.parametrize("Lq", [1, 3])
def test_decoding_matches_the_reference_for_gqa_ratios(backend, ratio, Lq):
    q, kc, vc = case(B=3, Lq=Lq, Hq=8, Hkv=8 // ratio, S=300, seed=ratio)
    lens = np.array([1 + Lq, 300, 177], np.int32)
    out, lse = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=backend.input(lens),
            causal=True,
            return_softmax_lse=True,
            **backend.kwargs,
        )  # fmt: skip
    )
    ro, rl = reference(q, kc, vc, lens, window=(None, 0))
    np.testing.assert_allclose(out, ro, atol=2e-5)
    np.testing.assert_allclose(lse, rl, atol=2e-5)
    assert out.dtype == np.float32 and out.shape == (3, Lq, 8, 32) and lse.shape == (3, 8, Lq)
    out_again, lse_again = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=backend.input(lens),
            causal=True,
            return_lse=True,
            **backend.kwargs,
        )  # fmt: skip
    )
    np.testing.assert_array_equal(out_again, out)
    np.testing.assert_array_equal(lse_again, lse)


@pytest.mark.spec("ATT-KVCACHE")
def test_appended_keys_land_at_cache_seqlens_and_are_attended(backend):
    q, kc, vc = case(B=2, Lq=2, S=64, seed=4)
    k_new, v_new = rand((2, 2, 2, 32), 10), rand((2, 2, 2, 32), 11)
    before = np.array([5, 40], np.int32)
    expected_k, expected_v = kc.copy(), vc.copy()
    for b in range(2):
        expected_k[b, before[b] : before[b] + 2] = k_new[b]
        expected_v[b, before[b] : before[b] + 2] = v_new[b]
    k_in, v_in = backend.input(kc), backend.input(vc)
    out = fa(backend.input(q), k_in, v_in, backend.input(k_new), backend.input(v_new),
             cache_seqlens=backend.input(before), causal=True, **backend.kwargs)  # fmt: skip
    np.testing.assert_array_equal(backend.output(k_in), expected_k)
    np.testing.assert_array_equal(backend.output(v_in), expected_v)
    ro, _ = reference(q, expected_k, expected_v, before + 2, window=(None, 0))
    np.testing.assert_allclose(backend.output(out), ro, atol=2e-5)


@pytest.mark.spec("ATT-KVCACHE")
def test_an_empty_cache_gives_zero_or_the_new_tokens_only(backend):
    q, kc, vc = case(B=2, Lq=1, S=16, seed=5)
    out, lse = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=0,
            return_softmax_lse=True,
            **backend.kwargs,
        )  # fmt: skip
    )
    assert np.all(out == 0) and np.all(lse == -np.inf)
    k_new, v_new = rand((2, 1, 2, 32), 6), rand((2, 1, 2, 32), 7)
    out = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            backend.input(k_new),
            backend.input(v_new),
            cache_seqlens=0,
            **backend.kwargs,
        )  # fmt: skip
    )
    # One key: softmax weight 1 on it.
    np.testing.assert_allclose(out, np.repeat(v_new, 4, axis=2), atol=1e-6)


@pytest.mark.spec("ATT-KVCACHE")
@pytest.mark.parametrize(
    "options",
    [
        {"window_size": (20, 0)},
        {"window_size": (7, 3)},
        {"softcap": 2.0, "causal": True},
        {"alibi": True},
        {"softmax_scale": 0.3},
    ],
    ids=["window", "window-right", "softcap", "alibi", "scale"],
)
def test_options_follow_the_formula(backend, options):
    q, kc, vc = case(B=2, Lq=2, S=120, seed=8)
    lens = np.array([120, 61], np.int32)
    kwargs = dict(options)
    slopes = None
    if kwargs.pop("alibi", False):
        slopes = np.linspace(0.05, 0.4, 8)
        kwargs["alibi_slopes"] = backend.input(slopes)
    out = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=backend.input(lens),
            **kwargs,
            **backend.kwargs,
        )  # fmt: skip
    )
    window = options.get("window_size", (-1, 0 if options.get("causal") else -1))
    ro, _ = reference(q, kc, vc, lens, scale=options.get("softmax_scale"),
                      window=tuple(None if w == -1 else w for w in window), softcap=options.get("softcap", 0.0),
                      slopes=slopes)  # fmt: skip
    np.testing.assert_allclose(out, ro, atol=3e-5)


@pytest.mark.spec("ATT-KVCACHE")
def test_causal_alibi_lse_is_flash_attns(backend):
    q, kc, vc = case(B=1, Lq=2, S=50, seed=9)
    slopes = np.linspace(0.1, 0.8, 8)
    _, lse = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=50,
            causal=True,
            alibi_slopes=backend.input(slopes),
            return_softmax_lse=True,
            **backend.kwargs,
        )  # fmt: skip
    )
    _, rl = reference(q, kc, vc, np.array([50]), window=(None, 0), slopes=slopes)
    position = np.arange(2) + 48
    np.testing.assert_allclose(lse, rl + slopes[None, :, None] * position[None, None, :], rtol=1e-5)


@pytest.mark.spec("ATT-KVCACHE")
def test_tree_mask_limits_the_new_tokens_and_keeps_the_cache_visible(backend):
    Lq = 4
    q, kc, vc = case(B=2, Lq=Lq, S=40, seed=12)
    # A tree: 0 is the root, 1 and 2 its children, 3 a child of 1.
    tree = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 1]], bool)
    lens = np.array([40, 9], np.int32)
    out = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=backend.input(lens),
            tree_mask=backend.input(tree),
            **backend.kwargs,
        )  # fmt: skip
    )
    ro, _ = reference(q, kc, vc, lens, tree=tree)
    np.testing.assert_allclose(out, ro, atol=2e-5)
    per_batch = np.stack([tree, np.tril(np.ones((Lq, Lq), bool))])
    out = backend.output(
        fa(
            backend.input(q),
            backend.input(kc),
            backend.input(vc),
            cache_seqlens=backend.input(lens),
            tree_mask=backend.input(per_batch),
            **backend.kwargs,
        )  # fmt: skip
    )
    np.testing.assert_allclose(out, reference(q, kc, vc, lens, tree=per_batch)[0], atol=2e-5)


@pytest.mark.spec("ATT-KVCACHE")
def test_cache_batch_idx_and_leftpad(backend):
    q, kc, vc = case(B=2, Lq=1, S=30, seed=13)
    big_k, big_v = np.concatenate([rand((1, 30, 2, 32), 14), kc]), np.concatenate([rand((1, 30, 2, 32), 15), vc])
    idx = np.array([2, 1], np.int32)
    lens, starts = np.array([30, 22], np.int32), np.array([4, 0], np.int32)
    out = backend.output(
        fa(
            backend.input(q),
            backend.input(big_k),
            backend.input(big_v),
            cache_seqlens=backend.input(lens),
            cache_batch_idx=backend.input(idx),
            cache_leftpad=backend.input(starts),
            causal=True,
            **backend.kwargs,
        )  # fmt: skip
    )
    ro, _ = reference(q, big_k[idx], big_v[idx], lens, starts=starts, window=(None, 0))
    np.testing.assert_allclose(out, ro, atol=2e-5)


@pytest.mark.spec("ATT-KVCACHE")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_caches_accumulate_in_float32(dtype):
    torch = pytest.importorskip("torch")
    q, kc, vc = case(B=2, Lq=1, S=200, seed=16)
    tdt = getattr(torch, dtype)
    tq, tk, tv = (torch.from_numpy(x).to(tdt) for x in (q, kc, vc))
    lens = np.array([200, 57], np.int32)
    out = fa(tq, tk, tv, cache_seqlens=torch.from_numpy(lens))
    assert out.dtype == tdt
    ro, _ = reference(tq.double().numpy(), tk.double().numpy(), tv.double().numpy(), lens)
    # The inputs are exact; the only roundings are float32 sums and the output's.
    eps = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
    np.testing.assert_allclose(out.double().numpy(), ro, atol=2 * eps * np.abs(ro).max())
    torch_out = fa(tq, tk, tv, cache_seqlens=torch.from_numpy(lens), backend="torch")
    np.testing.assert_allclose(out.double().numpy(), torch_out.double().numpy(), atol=2 * eps * np.abs(ro).max())


@pytest.mark.spec("ATT-PAGED", "ATT-SPLITKV")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_caches_are_bitwise_equal_paged_and_on_any_thread_count(dtype):
    """D = 64 takes the bfloat16 dot products where the CPU has them."""
    torch = pytest.importorskip("torch")
    q, kc, vc = case(B=2, Lq=1, Hq=16, Hkv=4, D=64, S=700, seed=40)
    tdt = getattr(torch, dtype)
    tq, tk, tv = (torch.from_numpy(x).to(tdt) for x in (q, kc, vc))
    kb, vb = (torch.from_numpy(paged(t.view(torch.int16).numpy(), 16, 41)[0]).view(tdt) for t in (tk, tv))
    table = torch.from_numpy(paged(kc, 16, 41)[1])
    lens = torch.tensor([700, 301], dtype=torch.int32)
    before = ferrops.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            results.append(fa(tq, tk, tv, cache_seqlens=lens, return_softmax_lse=True))
            results.append(fa(tq, kb, vb, cache_seqlens=lens, block_table=table, return_softmax_lse=True))
    finally:
        ferrops.set_num_threads(before)
    for out, lse in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(lse, results[0][1])
    ro, _ = reference(tq.double().numpy(), tk.double().numpy(), tv.double().numpy(), lens.numpy())
    eps = 2.0**-8 if dtype == "bfloat16" else 2.0**-11
    np.testing.assert_allclose(results[0][0].double().numpy(), ro, atol=2 * eps * np.abs(ro).max())


@pytest.mark.spec("ATT-PAGED")
@pytest.mark.parametrize("block_size", [1, 16, 64])
def test_paged_and_contiguous_caches_give_identical_results(backend, block_size):
    q, kc, vc = case(B=3, Lq=2, S=150, seed=20)
    lens = np.array([150, 3, 97], np.int32)
    kb, table = paged(kc, block_size, 21)
    vb, _ = paged(vc, block_size, 21)
    kwargs = {"cache_seqlens": backend.input(lens), "causal": True, "return_softmax_lse": True, **backend.kwargs}
    out_c, lse_c = backend.output(fa(backend.input(q), backend.input(kc), backend.input(vc), **kwargs))
    out_p, lse_p = backend.output(
        fa(backend.input(q), backend.input(kb), backend.input(vb), block_table=backend.input(table), **kwargs)
    )
    np.testing.assert_array_equal(out_p, out_c)
    np.testing.assert_array_equal(lse_p, lse_c)
    np.testing.assert_allclose(out_c, reference(q, kc, vc, lens, window=(None, 0))[0], atol=2e-5)


@pytest.mark.spec("ATT-PAGED")
def test_paged_append_and_windows_crossing_blocks(backend):
    q, kc, vc = case(B=2, Lq=3, S=96, seed=22)
    k_new, v_new = rand((2, 3, 2, 32), 23), rand((2, 3, 2, 32), 24)
    before = np.array([14, 60], np.int32)  # appends cross the 16-row block boundary
    kb, table = paged(kc, 16, 25)
    vb, _ = paged(vc, 16, 25)
    k_in, v_in = backend.input(kb), backend.input(vb)
    out = backend.output(
        fa(
            backend.input(q),
            k_in,
            v_in,
            backend.input(k_new),
            backend.input(v_new),
            cache_seqlens=backend.input(before),
            block_table=backend.input(table),
            window_size=(21, 0),
            **backend.kwargs,
        )  # fmt: skip
    )
    expected_k, expected_v = kc.copy(), vc.copy()
    for b in range(2):
        expected_k[b, before[b] : before[b] + 3] = k_new[b]
        expected_v[b, before[b] : before[b] + 3] = v_new[b]
    blocks_k = backend.output(k_in)
    for b in range(2):
        for t in range(before[b] + 3):
            np.testing.assert_array_equal(blocks_k[table[b, t // 16], t % 16], expected_k[b, t])
    ro, _ = reference(q, expected_k, expected_v, before + 3, window=(21, 0))
    np.testing.assert_allclose(out, ro, atol=2e-5)


@pytest.mark.spec("ATT-SPLITKV")
def test_split_and_unsplit_agree_within_float32_rounding():
    q, kc, vc = case(B=2, Lq=2, S=2000, seed=30)
    lens = np.array([2000, 1333], np.int32)
    kwargs = {"cache_seqlens": lens, "causal": True, "return_softmax_lse": True}
    out1, lse1 = fa(q, kc, vc, num_splits=1, **kwargs)
    ro, rl = reference(q, kc, vc, lens, window=(None, 0))
    for splits in (0, 3, 7):
        out, lse = fa(q, kc, vc, num_splits=splits, **kwargs)
        np.testing.assert_allclose(out, out1, atol=3e-6)
        np.testing.assert_allclose(lse, lse1, atol=3e-6)
        np.testing.assert_allclose(out, ro, atol=1e-5)
        np.testing.assert_allclose(lse, rl, atol=1e-5)


@pytest.mark.spec("ATT-SPLITKV")
def test_results_are_bitwise_equal_for_one_and_two_threads():
    q, kc, vc = case(B=1, Lq=1, Hq=16, Hkv=4, D=64, S=5000, seed=31)
    before = ferrops.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            results.append(fa(q, kc, vc, cache_seqlens=4999, return_softmax_lse=True))
    finally:
        ferrops.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.spec("ATT-PAGED")
def test_block_table_past_num_blocks_is_refused(backend):
    q, kc, vc = case(B=2, S=32, seed=40)
    kb, table = paged(kc, 8, 41, spare=0)
    vb, _ = paged(vc, 8, 41, spare=0)
    bad = table.copy()
    bad[1, 2] = kb.shape[0]
    with pytest.raises(ValueError, match=r"flash_attn_with_kvcache\(\).*block_table.*block indices in \[0, 8\)"):
        fa(backend.input(q), backend.input(kb), backend.input(vb), cache_seqlens=32, block_table=backend.input(bad),
           **backend.kwargs)  # fmt: skip
    bad[1, 2] = -1
    with pytest.raises(ValueError, match="block_table"):
        fa(backend.input(q), backend.input(kb), backend.input(vb), cache_seqlens=32, block_table=backend.input(bad),
           **backend.kwargs)  # fmt: skip
    # Entries past a sequence's length are never read, so they may hold anything.
    short = table.copy()
    short[:, 3] = 1000
    out = fa(backend.input(q), backend.input(kb), backend.input(vb), cache_seqlens=24, block_table=backend.input(short),
             **backend.kwargs)  # fmt: skip
    np.testing.assert_allclose(backend.output(out), reference(q, kc, vc, np.array([24, 24]))[0], atol=2e-5)


@pytest.mark.spec("ATT-KVCACHE")
def test_lengths_beyond_the_cache_are_refused(backend):
    q, kc, vc = case(B=2, S=32, seed=42)
    with pytest.raises(ValueError, match=r"cache_seqlens.*\[0, 32\]"):
        fa(backend.input(q), backend.input(kc), backend.input(vc), cache_seqlens=33, **backend.kwargs)
    with pytest.raises(ValueError, match="cache_seqlens"):
        fa(backend.input(q), backend.input(kc), backend.input(vc), cache_seqlens=-1, **backend.kwargs)
    k_new = rand((2, 2, 2, 32), 43)
    with pytest.raises(ValueError, match="cache_seqlens"):
        fa(backend.input(q), backend.input(kc), backend.input(vc), backend.input(k_new), backend.input(k_new),
           cache_seqlens=31, **backend.kwargs)  # fmt: skip


@pytest.mark.spec("ATT-KVCACHE")
def test_mismatched_heads_and_dtypes_are_refused():
    q, kc, vc = case(B=2, Hq=8, Hkv=3, S=16, seed=44)
    with pytest.raises(ValueError, match="k_cache.*dividing q's 8"):
        fa(q, kc, vc)
    q, kc, vc = case(B=2, S=16, seed=45)
    with pytest.raises(TypeError, match="v_cache.*float32"):
        fa(q, kc, vc.astype(np.float16))
    with pytest.raises(TypeError, match="k_cache.*float32, bfloat16 or float16"):
        fa(q.astype(np.float64), kc.astype(np.float64), vc.astype(np.float64))
    with pytest.raises(ValueError, match="v_cache"):
        fa(q, kc, vc[:, :8])
    with pytest.raises(ValueError, match="rotary_cos"):
        fa(q, kc, vc, rotary_cos=np.ones((16, 16)))
    with pytest.raises(ValueError, match="k and v together"):
        fa(q, kc, vc, kc[:, :1])


@pytest.mark.spec("ATT-KVCACHE")
def test_empty_batch_gives_an_empty_result():
    q, kc, vc = case(B=0, S=8, seed=46)
    out, lse = fa(q, kc, vc, return_softmax_lse=True)
    assert out.shape == (0, 1, 8, 32) and out.dtype == np.float32 and lse.shape == (0, 8, 1)
