"""The MDP in the form the Rust kernels read (one CSR matrix per action and the
expected reward ``r (S, A)``), built from every input form ``ferrops.mdp``
accepts, with the checks of the model's arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from .. import _dispatch as d
from .._errors import type_error, value_error

if TYPE_CHECKING:
    from typing import TypeAlias, TypeGuard

    import scipy.sparse
    import torch

    from .._dispatch import Array, ArrayLike, Backend

    #: A ``scipy.sparse`` matrix or array.
    Sparse: TypeAlias = scipy.sparse.sparray | scipy.sparse.spmatrix

    #: One action's ``(S, S)`` matrix: dense, a tensor, or ``scipy.sparse``.
    Matrix: TypeAlias = ArrayLike | Sparse
    #: ``P``: a dense ``(A, S, S)`` array or tensor, or one matrix per action.
    Transitions: TypeAlias = ArrayLike | Sequence[Matrix]
    #: ``R``: ``(S,)``, ``(S, A)``, ``(A, S, S)``, or one ``(S, S)`` matrix per action.
    Rewards: TypeAlias = ArrayLike | Sequence[Matrix]

_INT32_MAX = np.iinfo(np.int32).max


def is_scipy_sparse(x: object) -> TypeGuard[Sparse]:
    return type(x).__module__.startswith("scipy.sparse")


@dataclass
class Model:
    """P as one CSR matrix per action, the expected reward ``r (S, A)``, and
    enough of the input to answer in its kind."""

    states: int
    actions: int
    indptr: list[np.ndarray]
    indices: list[np.ndarray]
    data: list[np.ndarray]
    reward: np.ndarray
    #: The dense (A, S, S) input, when P came dense (for the exact dense solve).
    dense: np.ndarray | None
    #: A tensor of the input: results come back as tensors on its device.
    reference: torch.Tensor | None
    #: The per-transition reward input (A, S, S) / list, if R came in that form.
    transition_reward: list[Matrix] | None

    @property
    def csr(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        return self.indptr, self.indices, self.data

    def out(self, x: np.ndarray) -> Array:
        return x if self.reference is None else d.like(x, self.reference)

    def step_rewards(self) -> list[np.ndarray]:
        """The reward of each stored transition, aligned with ``data``."""
        out = []
        for a in range(self.actions):
            rows = np.repeat(np.arange(self.states), np.diff(self.indptr[a]))
            if self.transition_reward is None:
                out.append(np.ascontiguousarray(self.reward[rows, a]))
            else:
                out.append(_gather(self.transition_reward[a], rows, self.indices[a]))
        return out


def _gather(matrix: Matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows, cols]`` as float64, for a dense or scipy.sparse matrix."""
    if is_scipy_sparse(matrix):
        values = np.asarray(matrix.tocsr()[rows, cols]).ravel()
    else:
        values = np.asarray(matrix)[rows, cols]
    return np.ascontiguousarray(values, dtype=np.float64)


def _tensor_to_numpy(function: str, argument: str, x: torch.Tensor) -> np.ndarray:
    if x.layout != d.torch_module().strided:
        raise type_error(function, argument, "dense tensors", f"layout {x.layout}")
    return d.float_array(function, argument, x)


def _csr_of(function: str, a: int, matrix: Matrix) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, indptr, indices, data)`` of one action's matrix: int32
    index arrays and float64 data, the input's own buffers where they already are."""
    if is_scipy_sparse(matrix):
        m = matrix.tocsr()
        n_rows, n_cols = m.shape
        if m.nnz > _INT32_MAX:
            raise value_error(function, "P", "at most 2^31 - 1 stored transitions per action", f"{m.nnz} in P[{a}]")
        indptr = np.ascontiguousarray(m.indptr, dtype=np.int32)
        indices = np.ascontiguousarray(m.indices, dtype=np.int32)
        data = np.ascontiguousarray(m.data, dtype=np.float64)
        return n_rows, n_cols, indptr, indices, data
    dense = _tensor_to_numpy(function, "P", matrix) if d.is_tensor(matrix) else d.host_array(function, "P", matrix)
    if dense.dtype.kind not in "fiub":
        raise type_error(function, "P", "real numbers", f"P[{a}] of dtype {dense.dtype}")
    if dense.ndim != 2:
        raise value_error(function, "P", f"P[{a}] of shape (S, S)", list(dense.shape))
    stored = dense != 0
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int32)
    np.cumsum(stored.sum(axis=1), out=indptr[1:])
    rows, cols = np.nonzero(stored)
    data = np.ascontiguousarray(dense[rows, cols], dtype=np.float64)
    return dense.shape[0], dense.shape[1], indptr, cols.astype(np.int32), data


def _split_actions(function: str, P: Transitions) -> tuple[list[Matrix], np.ndarray | None]:
    """The per-action matrices of ``P``, and ``P`` as a dense array when it is one."""
    if isinstance(P, (list, tuple)):
        if len(P) == 0:
            raise value_error(function, "P", "at least one action", "an empty list")
        return list(P), None
    if is_scipy_sparse(P):
        raise type_error(
            function, "P", "a list of A sparse (S, S) matrices (one per action)", f"a single {type(P).__name__}"
        )
    dense = _tensor_to_numpy(function, "P", P) if d.is_tensor(P) else d.host_array(function, "P", P)
    if dense.dtype.kind not in "fiub":
        raise type_error(function, "P", "real numbers", f"dtype {dense.dtype}")
    if dense.ndim != 3 or dense.shape[1] != dense.shape[2]:
        raise value_error(function, "P", "shape (A, S, S)", list(dense.shape))
    if dense.shape[0] == 0:
        raise value_error(function, "P", "at least one action", f"shape {list(dense.shape)}")
    # Each action costs its row offsets and three arrays' headers, however sparse:
    # a broadcast view of 2^40 actions is refused here, not after an endless loop.
    actions, states = dense.shape[0], dense.shape[1]
    d.check_allocation(function, f"the model of {actions} actions", actions * (4 * (states + 1) + 3 * 112))
    return list(dense), dense


def build_model(function: str, P: Transitions, R: Rewards) -> Model:
    matrices, dense = _split_actions(function, P)
    actions = len(matrices)
    indptr, indices, data = [], [], []
    states = None
    for a, m in enumerate(matrices):
        n_rows, n_cols, ip, ix, x = _csr_of(function, a, m)
        if n_rows != n_cols or (states is not None and n_rows != states):
            want = f"({states}, {states})" if states is not None else "(S, S)"
            raise value_error(function, "P", f"P[{a}] of shape {want}", [n_rows, n_cols])
        states = n_rows
        indptr.append(ip)
        indices.append(ix)
        data.append(x)
    assert states is not None
    reward, transition_reward = _expected_reward(function, R, states, actions, indptr, indices, data)
    tensors = d.tensors_in(P, R)
    reference = tensors[0] if tensors else None
    if dense is not None:
        dense = d.contiguous(function, "P", dense, np.dtype(np.float64))
    return Model(states, actions, indptr, indices, data, reward, dense, reference, transition_reward)


def _reward_shapes(states: int, actions: int) -> str:
    return f"(S,) = ({states},), (S, A) = ({states}, {actions}) or (A, S, S) = ({actions}, {states}, {states})"


def _check_finite(function: str, values: np.ndarray, describe: Callable[[tuple[int, ...]], str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise value_error(function, "R", "finite rewards", describe(where))


def _expected_reward(
    function: str,
    R: Rewards,
    states: int,
    actions: int,
    indptr: list[np.ndarray],
    indices: list[np.ndarray],
    data: list[np.ndarray],
) -> tuple[np.ndarray, list[Matrix] | None]:
    """``r (S, A)`` float64, and the per-transition reward input when R is one."""
    if (
        isinstance(R, (list, tuple))
        and len(R) == actions
        and all(is_scipy_sparse(x) or len(d.shape_of(function, "R", x)) == 2 for x in R)
    ):
        per_transition = [x if is_scipy_sparse(x) else _numeric(function, x) for x in R]
    elif is_scipy_sparse(R):
        raise type_error(function, "R", _reward_shapes(states, actions), "a sparse matrix")
    else:
        # Not a list of per-action matrices: one array (or nested lists) of rewards.
        r = _numeric(function, cast("ArrayLike", R))
        if r.shape == (states,):
            _check_finite(function, r, lambda i: f"R[{i[0]}] = {r[i]} (state {i[0]})")
            return np.ascontiguousarray(np.repeat(r[:, None], actions, axis=1)), None
        if r.shape == (states, actions):
            _check_finite(function, r, lambda i: f"R[{i[0]}, {i[1]}] = {r[i]} (state {i[0]}, action {i[1]})")
            return np.ascontiguousarray(r), None
        if r.shape != (actions, states, states):
            raise value_error(function, "R", _reward_shapes(states, actions), list(r.shape))
        per_transition = list(r)
    reward = np.empty((states, actions))
    for a, m in enumerate(per_transition):
        if tuple(m.shape) != (states, states):
            raise value_error(function, "R", f"R[{a}] of shape ({states}, {states})", list(m.shape))
        rows = np.repeat(np.arange(states), np.diff(indptr[a]))
        values = _gather(m, rows, indices[a])
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise value_error(
                function,
                "R",
                "finite rewards",
                f"R[{a}][{rows[k]}, {indices[a][k]}] = {values[k]} (action {a}, state {rows[k]})",
            )
        reward[:, a] = np.bincount(rows, weights=data[a] * values, minlength=states)
    return reward, per_transition


def _numeric(function: str, x: ArrayLike) -> np.ndarray:
    a = _tensor_to_numpy(function, "R", x) if d.is_tensor(x) else d.host_array(function, "R", x)
    if a.dtype.kind not in "fiub":
        raise type_error(function, "R", "real numbers", f"dtype {a.dtype}")
    return d.contiguous(function, "R", a, np.dtype(np.float64))


def state_vector(function: str, argument: str, x: ArrayLike, states: int) -> np.ndarray:
    v = d.float_array(function, argument, x)
    if v.shape != (states,):
        raise value_error(function, argument, f"shape ({states},)", list(v.shape))
    return d.contiguous(function, argument, v, np.dtype(np.float64))


def policy_vector(function: str, policy: ArrayLike, states: int, actions: int, argument: str = "policy") -> np.ndarray:
    """``policy`` (the caller's ``argument``) as int64 actions, one per state."""
    pi = d.index_array(function, argument, policy)
    if pi.shape != (states,):
        raise value_error(function, argument, f"shape ({states},)", list(pi.shape))
    bad = (pi < 0) | (pi >= actions)
    if bad.any():
        s = int(np.argmax(bad))
        raise value_error(function, argument, f"actions in 0..{actions - 1}", f"{pi[s]} for state {s}")
    return pi


#: What a solver says when its values overflow float64 (as ferrops_core's
#: ``check_finite_values``): rewards near float64's limit, which the caller chose.
OVERFLOW_EXPECTED = (
    "rewards small enough for the values to stay finite in float64 (|V| grows to about max |R| / (1 - discount))"
)


def check_finite_values(function: str, V: np.ndarray) -> None:
    bad = ~np.isfinite(V)
    if bad.any():
        s = int(np.argmax(bad))
        raise value_error(function, "R", OVERFLOW_EXPECTED, f"V[{s}] = {V[s]}")


def torch_path(function: str, backend: Backend, *inputs: object) -> bool:
    """Whether ``function`` runs the PyTorch implementation (tensors may sit in
    lists of per-action matrices)."""
    return d.select_backend(function, backend, *d.tensors_in(*inputs)) == "torch"
