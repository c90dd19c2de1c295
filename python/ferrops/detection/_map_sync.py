"""Gathering ``MeanAveragePrecision``'s state across torch.distributed ranks at
``compute()``, as torchmetrics' ``sync_on_compute`` does. The state is
per-image NumPy arrays and compressed masks, so it travels with
``all_gather_object`` (pickle) whatever the backend (gloo, NCCL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

State = dict[str, list[Any]]


def _world(process_group: Any) -> int:
    """The size of the group to gather over; 1 when torch.distributed is not
    installed, not available or not initialised."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 1
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return int(dist.get_world_size(group=process_group))


def _all_gather_object(state: State, process_group: Any) -> list[State]:
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size(group=process_group)
    dist.all_gather_object(gathered, state, group=process_group)
    return gathered


def gathered_state(
    state: State,
    sync_on_compute: bool,
    process_group: Any = None,
    dist_sync_fn: Callable[[State, Any], list[State]] | None = None,
) -> State:
    """Every rank's images in one state (``state`` itself when not synchronising).

    Images are interleaved as torchmetrics interleaves them: every rank's first
    image in rank order, then every rank's second, and so on (a rank with fewer
    images drops out once it has none left). Under a ``DistributedSampler``, which
    deals image ``i`` to rank ``i % world``, that is the dataset's order, so the
    result equals one process evaluating the whole dataset.
    """
    if not sync_on_compute or _world(process_group) == 1:
        return state
    states = (dist_sync_fn or _all_gather_object)(state, process_group)
    merged: State = {key: [] for key in state}
    longest = max(len(s["gt_labels"]) for s in states)
    for index in range(longest):
        for rank_state in states:
            if index < len(rank_state["gt_labels"]):
                for key in merged:
                    merged[key].append(rank_state[key][index])
    return merged
