"""Layer geometry (SPEC RF): the receptive field, jump and start of each layer of
stacked convolution and pooling layers.

It lived in :mod:`ferrops.segmentation` at first; ``ferrops.segmentation.receptive_field``
still works.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _dispatch as d
from ._errors import type_error, value_error

if TYPE_CHECKING:
    import torch

__all__ = ["receptive_field", "LayerReceptiveField"]

#: One value, or one per spatial axis.
PerAxis = int | tuple[int, ...]


class LayerReceptiveField(NamedTuple):
    """One layer of :func:`receptive_field`'s result: the layer's parameters and,
    at its output, the receptive field ``rf`` (input pixels), the ``jump`` (input
    pixels between neighbouring outputs) and ``start`` (centre of the first
    output's field, in input pixel coordinates where pixel 0 spans [0, 1])."""

    name: str
    kernel: PerAxis
    stride: PerAxis
    padding: PerAxis
    dilation: PerAxis
    rf: PerAxis
    jump: PerAxis
    start: float | tuple[float, ...]


def _as_int(function: str, where: str, v: object) -> int:
    try:
        return operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{function}(): {where}: expected ints, got {v!r}") from None


def _layer_from_module(module: torch.nn.Module) -> tuple[PerAxis, PerAxis, PerAxis, PerAxis] | None:
    """(kernel, stride, padding, dilation) of a conv/pool module, None for others."""
    import torch.nn as nn

    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    pool = (
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.LPPool1d,
        nn.LPPool2d,
    )
    uncovered = (
        nn.ConvTranspose1d,
        nn.ConvTranspose2d,
        nn.ConvTranspose3d,
        nn.AdaptiveAvgPool1d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool3d,
        nn.AdaptiveMaxPool1d,
        nn.AdaptiveMaxPool2d,
        nn.AdaptiveMaxPool3d,
        nn.FractionalMaxPool2d,
        nn.FractionalMaxPool3d,
    )
    if isinstance(module, uncovered):
        # Their window depends on the input size (or is random): no fixed k, s, p.
        raise value_error(
            "receptive_field",
            "layers",
            "convolution and pooling layers with a fixed kernel, stride and padding (pass the feature extractor, e.g. model.features)",
            type(module).__name__,
        )
    if isinstance(module, conv):
        if isinstance(module.padding, str):
            if module.padding == "valid":
                padding: Any = 0
            else:  # "same" (stride 1): torch pads d (k - 1) in total, the smaller half first
                padding = tuple(dd * (k - 1) // 2 for k, dd in zip(module.kernel_size, module.dilation))
        else:
            padding = module.padding
        return module.kernel_size, module.stride, padding, module.dilation
    if isinstance(module, pool):
        stride = module.stride if module.stride is not None else module.kernel_size
        dilation = getattr(module, "dilation", 1)
        return module.kernel_size, stride, getattr(module, "padding", 0), dilation
    return None


def receptive_field(layers: Sequence[Sequence[PerAxis]] | torch.nn.Module) -> list[LayerReceptiveField]:
    """Receptive field of stacked convolution/pooling layers (RF).

    With kernel ``k``, stride ``s``, padding ``p``, dilation ``d`` and
    ``k' = d (k - 1) + 1``: ``jump_l = jump_{l-1} s``, ``rf_l = rf_{l-1} +
    (k' - 1) jump_{l-1}``, ``start_l = start_{l-1} + ((k' - 1) / 2 - p) jump_{l-1}``,
    from ``rf_0 = 1``, ``jump_0 = 1``, ``start_0 = 0.5``.

    Args:
        layers: either a sequence of ``(kernel, stride[, padding[, dilation]])``
            tuples (padding 0 and dilation 1 by default; each entry an int or a
            per-axis tuple), or a ``torch.nn.Module`` whose Conv/MaxPool/AvgPool/
            LPPool submodules, in registration order (``named_modules()``), are
            the layers. Other modules count as pointwise and are skipped (ReLU,
            BatchNorm, Dropout...); adaptive and fractional pooling and
            transposed convolutions raise ``ValueError`` (no fixed window).

    Returns:
        list[LayerReceptiveField]: one entry per layer. ``rf`` and ``jump`` are
        ints, ``start`` a float; they are per-axis tuples when some layer has
        different values along different axes.
    """
    f = "receptive_field"
    specs: list[tuple[str, Any, Any, Any, Any]] = []
    if d.is_tensor(layers):
        raise type_error(f, "layers", "layer tuples or a torch.nn.Module", "a tensor")
    torch = d.torch_module()
    if torch is not None and isinstance(layers, torch.nn.Module):
        for name, module in layers.named_modules():
            spec = _layer_from_module(module)
            if spec is not None:
                specs.append((name or type(module).__name__, *spec))
    else:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise type_error(
                f,
                "layers",
                "a sequence of (kernel, stride, padding, dilation) tuples or a torch.nn.Module",
                type(layers).__name__,
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, (tuple, list)) or not 2 <= len(layer) <= 4:
                raise value_error(
                    f, "layers", "(kernel, stride[, padding[, dilation]]) tuples", f"layers[{i}] = {layer!r}"
                )
            k, s, p, dd = tuple(layer) + (0, 1)[len(layer) - 2 :]
            specs.append((str(i), k, s, p, dd))

    def axes(v: Any) -> tuple[Any, ...]:
        return tuple(v) if isinstance(v, (tuple, list)) else (v,)

    ndim = max((len(axes(v)) for spec in specs for v in spec[1:]), default=1)
    rf, jump, start = [1] * ndim, [1] * ndim, [0.5] * ndim
    rows: list[tuple[str, list[Any], list[int], list[int], list[float]]] = []
    for name, *params in specs:
        per_axis = []
        for what, v in zip(("kernel", "stride", "padding", "dilation"), params):
            vs = axes(v)
            if len(vs) not in (1, ndim):
                raise ValueError(f"{f}(): layer {name}: expected {what} with 1 or {ndim} values, got {v!r}")
            vs = vs * ndim if len(vs) == 1 else vs
            vs = tuple(_as_int(f, f"layer {name} {what}", x) for x in vs)
            low = 0 if what == "padding" else 1
            if any(x < low for x in vs):
                raise ValueError(f"{f}(): layer {name}: expected {what} >= {low}, got {v!r}")
            per_axis.append(vs)
        k, s, p, dl = per_axis
        for a in range(ndim):
            k_eff = dl[a] * (k[a] - 1) + 1
            start[a] = start[a] + ((k_eff - 1) / 2 - p[a]) * jump[a]
            rf[a] = rf[a] + (k_eff - 1) * jump[a]
            jump[a] = jump[a] * s[a]
        rows.append((name, per_axis, list(rf), list(jump), list(start)))
    uniform = all(len(set(vs)) == 1 for _, per_axis, *_ in rows for vs in per_axis)

    def out(v: Sequence[Any]) -> Any:
        return v[0] if uniform else tuple(v)

    return [
        LayerReceptiveField(name, out(k), out(s), out(p), out(dl), out(r), out(j), out(st))
        for name, (k, s, p, dl), r, j, st in rows
    ]
