"""The one Rust entry of the attention functions (:mod:`ferrops.attention`): the
options dict the kernels read (see ``attention_forward`` in ``_core.pyi``), the
``torch.autograd.Function`` around the forward and backward kernels (ATT-BWD), and
the refusal of dropout, which only the PyTorch implementation runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _core
from . import _dispatch as d
from ._attention_args import _result
from ._dispatch import Array
from ._errors import value_error

#: The kernels' log-sum-exp is in base 2; this turns it into the public natural log.
_LN2 = math.log(2.0)


def _options(
    function: str, layout: str, heads_q: int, heads_kv: int, dim_qk: int, dim_v: int, **kw: Any
) -> dict[str, Any]:
    options = dict(
        function=function,
        layout=layout,
        heads_q=heads_q,
        heads_kv=heads_kv,
        dim_qk=dim_qk,
        dim_v=dim_v,
        dense=None,
        cu_seqlens_q=None,
        cu_seqlens_k=None,
        scale=1.0,
        bottom_right=True,
        window_left=None,
        window_right=None,
        softcap=0.0,
        alibi_slopes=None,
        mask=None,
        mask_offsets=None,
        mask_row_stride=0,
        mask_col_stride=0,
    )
    options.update(kw)
    return options


def _kernel_arrays(options: dict[str, Any], q: Array, k: Array, v: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query, key and value as the float32/float64 arrays the Rust kernels read
    (float16 and bfloat16 upcast to float32)."""
    function = options["function"]
    return (
        d.kernel_array(function, "query", q),
        d.kernel_array(function, "key", k),
        d.kernel_array(function, "value", v),
    )


_AUTOGRAD_FUNCTION: Any = None


def _autograd_function() -> Any:
    """A ``torch.autograd.Function`` around the Rust kernels (built on first use, so
    this module imports without torch)."""
    global _AUTOGRAD_FUNCTION
    if _AUTOGRAD_FUNCTION is None:
        torch = d.require_torch("attention")
        function_base: Any = torch.autograd.Function

        class RustAttention(function_base):
            @staticmethod
            def forward(ctx: Any, q: Any, k: Any, v: Any, options: dict) -> Any:
                arrays = _kernel_arrays(options, q, k, v)
                out, lse2 = _core.attention_forward(arrays[0], arrays[1], arrays[2], options)
                ctx.arrays, ctx.out, ctx.lse2, ctx.options = arrays, out, lse2, options
                ctx.like = [(x.shape, x.dtype, x.device) for x in (q, k, v)]
                result = torch.from_numpy(out).to(device=q.device, dtype=q.dtype)
                lse2_t = torch.from_numpy(lse2)
                ctx.mark_non_differentiable(lse2_t)
                return result, lse2_t

            @staticmethod
            def backward(ctx: Any, grad_out: Any, _grad_lse: Any) -> Any:
                function = ctx.options["function"]
                g = d.contiguous(function, "grad", d.float_array(function, "grad", grad_out), ctx.out.dtype)
                aq, ak, av = ctx.arrays
                dq, dk, dv = _core.attention_backward(aq, ak, av, ctx.out, ctx.lse2, g, ctx.options)
                grads = [
                    torch.from_numpy(gr).reshape(shape).to(device=device, dtype=dtype)
                    for gr, (shape, dtype, device) in zip((dq, dk, dv), ctx.like)
                ]
                return grads[0], grads[1], grads[2], None

        _AUTOGRAD_FUNCTION = RustAttention
    return _AUTOGRAD_FUNCTION


def _run_rust(q: Array, k: Array, v: Array, options: dict[str, Any]) -> tuple[Array, np.ndarray]:
    """The Rust kernel on contiguous inputs in the given layout; returns the flat
    output in the query's kind and dtype, and the flat ``[Hq, total_q]`` lse (natural
    log: the kernels return it in base 2, the unit the backward pass recomputes the
    probabilities in, exactly)."""
    torch = d.torch_module()
    tensors = [x for x in (q, k, v) if d.is_tensor(x)]
    if tensors and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out, lse2 = _autograd_function().apply(q, k, v, options)
        return out, lse2.numpy() * _LN2
    if len(tensors) == 3 and all(t.dtype == torch.bfloat16 for t in tensors):
        # bfloat16 goes to Rust as its bits: the bfloat16 dot products read them
        # as they are, and widening in Rust, in parallel, costs less than
        # converting in torch first (more than a tenth of the kernel).
        bq, bk, bv = (np.ascontiguousarray(t.detach().cpu().view(torch.int16).numpy()).view(np.uint16) for t in tensors)
        out, lse2 = _core.attention_forward(bq, bk, bv, options)
        return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16).to(q.device), lse2 * _LN2
    aq, ak, av = _kernel_arrays(options, q, k, v)
    out, lse2 = _core.attention_forward(aq, ak, av, options)
    return _result(out, q), lse2 * _LN2


def _refuse_rust_dropout(function: str, dropout_p: float) -> None:
    if dropout_p > 0.0:
        raise value_error(
            function,
            "dropout_p",
            "0 on the Rust path (dropout runs only in the PyTorch implementation: CUDA tensors or backend='torch')",
            repr(dropout_p),
        )
