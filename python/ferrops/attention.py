"""Attention (SPEC section 3): tiled online-softmax attention on the CPU.

Three entry points share one Rust kernel that never builds the ``L x S`` score
matrix (ATT-ONLINE):

* :func:`scaled_dot_product_attention`: torch's semantics and ``(..., H, L, E)``
  layout (top-left causal, boolean masks True = attend, additive float masks).
* :func:`flash_attn_func`: FlashAttention-2's semantics and ``(B, L, H, D)`` layout
  (bottom-right causal, sliding windows, softcap, ALiBi, GQA/MQA by head counts).
* :func:`flash_attn_varlen_func`: the same on packed ``(tokens, H, D)`` sequences
  delimited by ``cu_seqlens`` (ATT-VARLEN): no padding, no mask.

A query row that may attend to no key returns 0 with log-sum-exp ``-inf``, never
NaN (ATT-MASK). dtypes: float32 and float64 compute in their own precision;
float16 is computed in float32; bfloat16 in float32 or on the CPU's bfloat16 dot
products (AVX-512 BF16, accumulating in float32; the default on AMD CPUs, see the
README); both are returned in their dtype; query, key and value must share one dtype (as in torch).
Tensors that require grad are differentiable through a Rust backward pass that recomputes the
probabilities from the saved log-sum-exp (ATT-BWD); NumPy callers get the
forward pass. CUDA tensors run a PyTorch implementation on their device.
"""

from __future__ import annotations

# flash_attn_with_kvcache (``_kvcache``) shares these checks and conversions and
# reads them from this module.
from ._attention_args import _check_scale as _check_scale
from ._attention_args import _lse_result as _lse_result
from ._attention_args import _result as _result
from ._attention_flash import _check_softcap as _check_softcap
from ._attention_flash import _check_window as _check_window
from ._attention_flash import _flash_causal as _flash_causal
from ._attention_flash import _shift_lse as _shift_lse
from ._attention_flash import _slopes as _slopes
from ._attention_flash import flash_attn_func, flash_attn_varlen_func
from ._attention_sdpa import scaled_dot_product_attention
from ._kvcache import flash_attn_with_kvcache as flash_attn_with_kvcache

__all__ = ["scaled_dot_product_attention", "flash_attn_func", "flash_attn_varlen_func"]

# Public names report this module, where users import them from (reprs, pickles,
# help()), not the private file that defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
