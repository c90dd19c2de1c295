"""Driver of `flash_attn_with_kvcache` (ATT-KVCACHE). Oracle: ATT-REF in float64
over each sequence's first `cache_seqlens[b]` cache rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, assert_close, seeds
from .values import array_mutations, bool_mutations, float_mutations, int_mutations, opaque_mutations


@st.composite
def kvcache_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    b, hk, group, L, S, d = (draw(st.integers(lo, hi)) for lo, hi in ((1, 2), (1, 2), (1, 2), (1, 3), (1, 6), (1, 8)))
    return {
        "q": rng.standard_normal((b, L, hk * group, d)).astype(np.float32),
        "k_cache": rng.standard_normal((b, S, hk, d)).astype(np.float32),
        "v_cache": rng.standard_normal((b, S, hk, d)).astype(np.float32),
        "cache_seqlens": rng.integers(0, S + 1, b).astype(np.int32),
        "softmax_scale": draw(st.sampled_from([None, 0.3])),
    }


def kvcache_oracle(kwargs: dict[str, Any], result: Any) -> None:
    q, k, v = (np.asarray(kwargs[n], np.float64) for n in ("q", "k_cache", "v_cache"))
    b, L, hq, d = q.shape
    lens = np.broadcast_to(np.asarray(kwargs["cache_seqlens"]), (b,))
    scale = kwargs["softmax_scale"] if kwargs["softmax_scale"] is not None else 1 / np.sqrt(d)
    group = hq // k.shape[2]
    expected = np.zeros(q.shape)
    for s in range(b):
        keys, values = k[s, : lens[s]].repeat(group, axis=1), v[s, : lens[s]].repeat(group, axis=1)
        if lens[s] == 0:
            continue
        scores = np.einsum("lhd,shd->hls", q[s], keys) * scale
        p = np.exp(scores - scores.max(axis=-1, keepdims=True))
        expected[s] = np.einsum("hls,shd->lhd", p / p.sum(axis=-1, keepdims=True), values)
    assert_close(array_of(result, kwargs), expected, rtol=1e-3, atol=1e-4)


def kvcache_sane(kwargs: dict[str, Any], result: Any) -> None:
    out = result[0] if isinstance(result, tuple) else result
    q_shape = np.shape(kwargs["q"])
    assert np.shape(getattr(out, "array", out)) == q_shape[:3] + np.shape(kwargs["v_cache"])[3:], q_shape


KVCACHE = {
    "ferrops.flash_attn_with_kvcache": Driver(
        "ferrops:flash_attn_with_kvcache",
        kvcache_args(),
        {
            "q": array_mutations(),
            "k_cache": array_mutations(),
            "v_cache": array_mutations(),
            "cache_seqlens": [*array_mutations(floats=False), *int_mutations()],
            "softmax_scale": float_mutations(optional=True),
            "causal": bool_mutations(),
            "window_size": [*int_mutations(), *opaque_mutations()],
            "softcap": float_mutations(),
            "alibi_slopes": array_mutations(optional=True),
            "num_splits": int_mutations(),
            "return_softmax_lse": bool_mutations(),
            "return_lse": bool_mutations(),
        },
        ("flash_attn_with_kvcache",),
        oracle=kvcache_oracle,
        sane=kvcache_sane,
    ),
}
