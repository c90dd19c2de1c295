"""Backend selection and array conversion, shared by every kernel family.

The rule, in one place:

* NumPy arrays (and anything ``numpy.asarray`` accepts) and CPU tensors run in
  the Rust kernels, with the GIL released; contiguous inputs of a kernel dtype are
  passed without a copy.
* Tensors on another device (CUDA, MPS, ...) stay there and run the family's
  PyTorch implementation: a round trip through host memory would cost more than
  the kernel.
* ``backend="rust"`` / ``backend="torch"`` force one path. Forcing Rust on a CUDA
  tensor copies it to the host and the result back.
* Outputs are of the input's kind: NumPy in, NumPy out; tensor in, tensor out on
  the input's device.

Dtype rule for float kernels: float64 stays float64, float32 stays float32, and
every other real dtype (float16, bfloat16, integers, bool) is upcast to float32
before any arithmetic. With several inputs, float64 if any input is float64.
"""

from __future__ import annotations

import importlib
import numbers
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from ._errors import describe, memory_error, type_error, value_error

if TYPE_CHECKING:
    import torch
    from typing_extensions import TypeIs

    #: What the public functions take: anything ``numpy.asarray`` accepts, or a tensor.
    ArrayLike: TypeAlias = npt.ArrayLike | torch.Tensor
    #: What they return: the input's kind.
    Array: TypeAlias = np.ndarray | torch.Tensor
else:
    # torch is optional: at run time the aliases only name the NumPy side.
    ArrayLike = npt.ArrayLike
    Array = np.ndarray

Backend = Literal["auto", "rust", "torch"]
_BACKENDS = ("auto", "rust", "torch")


def torch_module() -> Any:
    """The torch module if the caller could have made tensors (it is imported)."""
    return sys.modules.get("torch")


def is_tensor(x: object) -> TypeIs[torch.Tensor]:
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def require_torch(function: str) -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{function}(): backend='torch' needs PyTorch; install it with pip install 'ferrops[torch]'"
        ) from exc
    return torch


def select_backend(
    function: str, backend: Backend, *inputs: object, rust_autograd: bool = False
) -> Literal["rust", "torch"]:
    """Which implementation runs ``function`` for these inputs.

    ``rust_autograd`` says whether the family wraps its Rust kernel in a
    ``torch.autograd.Function``; without one, tensors that need gradients go to the
    PyTorch implementation so that autograd keeps working.
    """
    if backend not in _BACKENDS:
        raise value_error(function, "backend", "one of 'auto', 'rust', 'torch'", repr(backend))
    tensors = [x for x in inputs if is_tensor(x)]
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"{function}(): expected all tensors on one device, got {sorted(map(str, devices))}")
    if backend == "torch":
        require_torch(function)
        return "torch"
    if backend == "rust":
        return "rust"
    if any(t.device.type != "cpu" for t in tensors):
        return "torch"
    if not rust_autograd and tensors:
        torch = torch_module()
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return "torch"
    return "rust"


#: The range of the 64-bit ints that kernels take.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_int(function: str, argument: str, value: object, minimum: int, expected: str) -> int:
    """``value`` as an int in ``[minimum, 2^63 - 1]`` (``minimum >= -2^63``);
    ``expected`` says what it is in the error (``"a positive count"``). Bools are
    refused; an int outside 64 bits would otherwise surface as an OverflowError
    from the binding."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(function, argument, "an int", describe(value))
    v = int(value)
    if INT64_MIN < minimum and v < minimum:
        raise value_error(function, argument, expected, value)
    if not INT64_MIN <= v <= INT64_MAX:
        raise value_error(function, argument, f"{expected} that fits in 64 bits", value)
    return v


def host_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as a NumPy array of its own dtype (no copy when it is one): a tensor
    detached and brought to the host (bfloat16, which NumPy lacks, as float32),
    anything else through ``np.asarray``. A ragged or non-numeric nested list is a
    TypeError naming the argument, not NumPy's own message."""
    if is_tensor(x):
        torch = torch_module()
        t = x.detach().cpu()
        return (converted_tensor(function, argument, t, torch.float32) if t.dtype == torch.bfloat16 else t).numpy()
    try:
        return np.asarray(x)
    except MemoryError:
        raise MemoryError(f"{function}(): argument '{argument}' is too large to convert to an array") from None
    except (ValueError, TypeError) as exc:
        raise type_error(function, argument, "an array of numbers", describe(x)) from exc


def converted_tensor(function: str, argument: str, t: Any, dtype: Any) -> Any:
    """Tensor ``t`` in ``dtype`` (the same tensor when it already is); a copy the
    machine cannot hold is a MemoryError naming the argument, not torch's
    allocator's RuntimeError."""
    try:
        return t.to(dtype)
    except RuntimeError as exc:
        if "allocate" not in str(exc):
            raise
        raise memory_error(function, argument, t.shape, dtype) from None


def float_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as a NumPy float32/float64 array (the dtype rule above), no copy when
    it already is one. Contiguity is left to :func:`contiguous`."""
    if is_tensor(x):
        torch = torch_module()
        t = x.detach()
        if t.is_complex():
            raise type_error(function, argument, "real numbers", describe(x))
        if t.dtype not in (torch.float32, torch.float64):
            t = converted_tensor(function, argument, t, torch.float32)
        return t.cpu().numpy()
    a = host_array(function, argument, x)
    if a.dtype.kind not in "fiub":
        raise type_error(function, argument, "real numbers", describe(a))
    if a.dtype not in (np.float32, np.float64):
        a = contiguous(function, argument, a, np.dtype(np.float32))
    return a


def index_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as a contiguous int64 array; only integer inputs are accepted."""
    if is_tensor(x):
        torch = torch_module()
        t = x.detach()
        if t.dtype.is_floating_point or t.is_complex() or t.dtype == torch.bool:
            raise type_error(function, argument, "integers", describe(x))
        return contiguous(function, argument, t.cpu().numpy(), np.dtype(np.int64))
    a = host_array(function, argument, x)
    if a.dtype.kind not in "iu":
        raise type_error(function, argument, "integers", describe(a))
    return contiguous(function, argument, a, np.dtype(np.int64))


def kernel_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as the C-contiguous float32/float64 array a Rust kernel reads (the
    dtype rule above; no copy when it already is one)."""
    a = float_array(function, argument, x)
    return contiguous(function, argument, a, a.dtype)


def shape_of(function: str, argument: str, x: object) -> tuple[int, ...]:
    """The shape of an array, tensor or nested sequence (converted as
    :func:`host_array` converts it: a ragged list is an error naming the argument)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        shape = host_array(function, argument, x).shape
    return tuple(shape)


def _physical_memory() -> int | None:
    """The machine's memory in bytes, where the OS says (None elsewhere)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None


def check_allocation(function: str, what: str, nbytes: int) -> None:
    """Raises MemoryError (in the Rust core's words) when ``what`` needs more bytes
    than the machine has. Allocating first would not tell: with overcommit a huge
    allocation succeeds and filling it pages the machine to a halt or wakes the
    OOM killer."""
    limit = _physical_memory()
    if limit is not None and nbytes > limit:
        raise MemoryError(f"{function}(): {what} needs {nbytes} bytes, more than can be allocated")


def common_float_dtype(*arrays: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if any(a.dtype == np.float64 for a in arrays) else np.dtype(np.float32)


def contiguous(
    function: str, argument: str, a: np.ndarray, dtype: np.dtype, order: Literal["C", "F"] = "C"
) -> np.ndarray:
    """``a`` (the value of ``argument``) contiguous in ``dtype`` and ``order`` (C, or
    Fortran for column-major kernels); the same object when it already is. A copy
    the machine cannot hold (a 2^40-row broadcast view, say) is a MemoryError naming
    the function, the argument and the bytes."""
    try:
        # Not np.ascontiguousarray, which turns a 0-d array into a 1-d one.
        return np.asarray(a, dtype=dtype, order=order)
    except MemoryError:
        raise memory_error(function, argument, a.shape, dtype) from None


def float_tensor(function: str, argument: str, x: object, device: Any = None) -> Any:
    """``x`` as a float32/float64 tensor (the dtype rule above) on ``device``
    (default: where it is; NumPy inputs go to the CPU without a copy)."""
    torch = torch_module()
    if is_tensor(x):
        if x.is_complex():
            raise type_error(function, argument, "real numbers", describe(x))
        t = x if x.dtype in (torch.float32, torch.float64) else converted_tensor(function, argument, x, torch.float32)
    else:
        a = float_array(function, argument, x)
        t = torch.from_numpy(contiguous(function, argument, a, a.dtype))
    return t if device is None else t.to(device)


def index_tensor(function: str, argument: str, x: object, device: Any = None) -> Any:
    torch = torch_module()
    if is_tensor(x):
        if x.dtype.is_floating_point or x.is_complex() or x.dtype == torch.bool:
            raise type_error(function, argument, "integers", describe(x))
        t = converted_tensor(function, argument, x, torch.int64)
    else:
        t = torch.from_numpy(index_array(function, argument, x))
    return t if device is None else t.to(device)


def torch_implementation(family: str) -> ModuleType:
    """The PyTorch implementation of a family (``ferrops._torch_<family>``), imported
    on first use so that ``import ferrops`` never imports torch."""
    return importlib.import_module(f"ferrops._torch_{family}")


def tensors_in(*inputs: object) -> list[Any]:
    """The tensors among ``inputs``, looking inside lists and tuples (a family that
    takes a list of per-action matrices, say), in order."""
    found: list[Any] = []
    for x in inputs:
        if isinstance(x, (list, tuple)):
            found.extend(tensors_in(*x))
        elif is_tensor(x):
            found.append(x)
    return found


def device_of(*inputs: object) -> Any:
    """The device of the first tensor among ``inputs`` (None if there is none)."""
    for x in inputs:
        if is_tensor(x):
            return x.device
    return None


def like(result: Any, reference: object) -> Any:
    """``result`` (a NumPy array or tensor) as the kind of ``reference``: a tensor
    on the reference's device, or a NumPy array."""
    if is_tensor(reference):
        torch = torch_module()
        t = result if is_tensor(result) else torch.from_numpy(result)
        return t.to(reference.device)
    if is_tensor(result):
        return result.detach().cpu().numpy()
    return result


def check_matrix(function: str, argument: str, x: object, width: int) -> None:
    """Raises unless ``x`` has shape ``[N, width]``."""
    shape = shape_of(function, argument, x)
    if len(shape) != 2 or shape[1] != width:
        raise value_error(function, argument, f"shape [N, {width}]", list(shape))


def check_vector(function: str, argument: str, x: object, length: int | None = None) -> None:
    """Raises unless ``x`` is 1-D (of ``length`` when given)."""
    shape = shape_of(function, argument, x)
    if len(shape) != 1 or (length is not None and shape[0] != length):
        want = f"[{length}]" if length is not None else "[N]"
        raise value_error(function, argument, f"shape {want}", list(shape))


def check_float(function: str, argument: str, value: object) -> float:
    """``value`` as a float: a real number (Python, NumPy, a one-element tensor).
    Strings are refused although ``float("0.5")`` would take them: an option read
    from a config file as text must fail loudly, not be parsed behind the user's back."""
    if isinstance(value, (str, bytes, bytearray)):
        raise type_error(function, argument, "a number", describe(value))
    dtype = getattr(value, "dtype", None)
    if isinstance(value, complex) or getattr(dtype, "kind", None) == "c" or getattr(dtype, "is_complex", False):
        # float() would keep the real part of a NumPy complex, with only a warning
        raise type_error(function, argument, "a real number", describe(value))
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:  # an int beyond float range
        got = f"an int of {int(value).bit_length()} bits"  # type: ignore[call-overload]
        raise value_error(function, argument, "a number within float range", got) from None
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: torch's, for a tensor of several elements
        raise type_error(function, argument, "a number", describe(value)) from exc


def check_bool(function: str, argument: str, value: object) -> bool:
    """``value`` as a bool: ``True``/``False`` (Python or NumPy) or the ints 0 and 1,
    as torch accepts. Anything else is refused: ``bool("false")`` is True, so a
    string would silently switch the option on."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise type_error(function, argument, "a bool", repr(value) if isinstance(value, (str, int)) else describe(value))


def check_unit_interval(function: str, argument: str, value: object) -> float:
    """A float in [0, 1]."""
    v = check_float(function, argument, value)
    if not 0.0 <= v <= 1.0:
        raise value_error(function, argument, "a value in [0, 1]", repr(value))
    return v
