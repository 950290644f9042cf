"""rowquant's lookups as PyTorch operators, ``torch.ops.rowquant.take`` and
``torch.ops.rowquant.embedding_bag``, so that tracing, scripting, ``torch.compile`` and
``torch.export`` record a call to the kernels instead of baking one result into the graph.

Each operator runs rowquant's kernels on the tensors' memory (CPU tensors, no copies) and has a
fake implementation that gives the output's shape from the inputs' shapes alone, which is what
the compilers need. The table is checked as ``rowquant.QuantizedEmbedding`` checks it (uint8
codes, finite non-negative float32 scales), but the scan of the scales costs O(N), too much for
every call of a served model: a pair of tensors is scanned once, then again only after it
changed (see :func:`checked_table`).

Examples
--------
>>> import numpy as np, torch, rowquant as rq
>>> import rowquant.torch  # registers the operators
>>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
>>> codes, scales = torch.from_numpy(qe.codes.copy()), torch.from_numpy(qe.scales.copy())
>>> torch.ops.rowquant.take(codes, scales, torch.tensor([1, 0]))
tensor([[ 0.5039,  2.0000],
        [ 1.0000, -1.0000]])
>>> torch.ops.rowquant.embedding_bag(codes, scales, torch.tensor([[0, 1]]), None, None, "sum",
...                                  None, False)
tensor([[1.5039, 1.0000]])
"""

import weakref
from typing import Optional, cast

import numpy as np
import torch

from . import _checks
from ._api import BagMode
from .table import QuantizedEmbedding as _Table

__all__ = ["take", "embedding_bag"]

# How many (codes, scales) pairs to remember as checked (dead ones are dropped first).
_CHECKED_LIMIT = 64
# (id(codes), id(scales)) -> (weak codes, weak scales, their state when the scales were checked,
# whether the kernels read the tensors' memory as it is: no conversion of the layout needed)
_checked: dict = {}


def _array(tensor: torch.Tensor, name: str) -> np.ndarray:
    """The tensor's memory as a numpy array (no copy)."""
    if not tensor.is_cpu:
        raise ValueError(
            f"{name} is on {tensor.device}; rowquant's operators run on the CPU (move the "
            "module or the tensors with .cpu())"
        )
    return tensor.detach().numpy() if tensor.requires_grad else tensor.numpy()


def _state(tensor: torch.Tensor) -> tuple:
    # _version counts the in-place changes of the tensor and of every view of it
    return tensor.data_ptr(), tensor.shape, tensor.stride(), tensor._version


def checked_table(codes: torch.Tensor, scales: torch.Tensor) -> _Table:
    """The rowquant table over the tensors' memory, its scales scanned only when needed.

    The scan is skipped when these very tensors (alive, so their ids are theirs) passed it
    before and neither changed since: same memory, shape, strides and version counter. An
    in-place change (``module.scales[0] = nan``, ``load_state_dict``) bumps the counter, so the
    next call checks again. Tensors made under ``torch.inference_mode`` have no counter: they
    are checked every time. Writes that bypass torch (through a numpy view, or another process
    sharing the memory) are not seen.
    """
    codes_array, scales_array = _array(codes, "codes"), _array(scales, "scales")
    if codes.is_inference() or scales.is_inference():
        return _Table._from_checked(*_checks.codes_and_scales(codes_array, scales_array))
    key = (id(codes), id(scales))
    state = (_state(codes), _state(scales))
    entry = _checked.get(key)
    if entry is not None and entry[0]() is codes and entry[1]() is scales and entry[2] == state:
        if entry[3]:  # the kernels read these arrays as they are
            return _Table._from_checked(codes_array, scales_array)
        return _Table._from_checked(
            *_checks.codes_and_scales(codes_array, scales_array, check_values=False)
        )
    checked_codes, checked_scales = _checks.codes_and_scales(codes_array, scales_array)
    as_they_are = checked_codes is codes_array and checked_scales is scales_array
    _remember(key, (weakref.ref(codes), weakref.ref(scales), state, as_they_are))
    return _Table._from_checked(checked_codes, checked_scales)


def _remember(key: tuple, entry: tuple) -> None:
    if len(_checked) >= _CHECKED_LIMIT:
        for old_key, (weak_codes, weak_scales, *_) in list(_checked.items()):
            if weak_codes() is None or weak_scales() is None:
                _checked.pop(old_key, None)  # pop: another thread may have been first
        if len(_checked) >= _CHECKED_LIMIT:  # that many tables alive: check each once more
            _checked.clear()
    _checked[key] = entry


@torch.library.custom_op("rowquant::take", mutates_args=())
def take(codes: torch.Tensor, scales: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Dequantized rows ``ids`` of the table (``codes`` uint8 (N, D), ``scales`` float32 (N,)):
    float32 of shape ``ids.shape + (D,)``, as :meth:`rowquant.QuantizedEmbedding.take`.

    Raises as ``take`` does: IndexError for ids outside ``[0, N)``, TypeError for non-integer
    ids, ValueError for a bad table or tensors that are not on the CPU.
    """
    table = checked_table(codes, scales)
    return torch.from_numpy(table.take(_array(ids, "ids")))


@take.register_fake
def _take_shape(codes: torch.Tensor, scales: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return codes.new_empty((*ids.shape, codes.shape[1]), dtype=torch.float32)


def _bag_count(
    ids: torch.Tensor,
    offsets: Optional[torch.Tensor],
    per_sample_weights: Optional[torch.Tensor],
    include_last_offset: bool,
):
    """The number of bags, from the shapes alone (the fake and the real operator share it, so
    that compilers see the same errors as eager calls)."""
    if ids.dim() == 2:
        if offsets is not None:
            raise ValueError("offsets must be None when input is 2-D (fixed-size bags)")
        bags = ids.shape[0]
    elif ids.dim() == 1:
        if offsets is None:
            raise ValueError("1-D input needs offsets (or give 2-D input of fixed-size bags)")
        if offsets.dim() != 1:
            raise ValueError(f"offsets has to be a 1D Tensor, but got {offsets.dim()} dimensions")
        bags = offsets.shape[0] - int(include_last_offset)
    else:  # torch's own message
        raise ValueError(
            f"input has to be 1D or 2D Tensor, but got Tensor of dimension {ids.dim()}"
        )
    if per_sample_weights is not None and per_sample_weights.shape != ids.shape:
        raise ValueError(
            f"per_sample_weights has shape {tuple(per_sample_weights.shape)}, input has "
            f"{tuple(ids.shape)}: one weight per id"
        )
    return bags


@torch.library.custom_op("rowquant::embedding_bag", mutates_args=())
def embedding_bag(
    codes: torch.Tensor,
    scales: torch.Tensor,
    ids: torch.Tensor,
    offsets: Optional[torch.Tensor],
    per_sample_weights: Optional[torch.Tensor],
    mode: str,
    padding_idx: Optional[int],
    include_last_offset: bool,
) -> torch.Tensor:
    """Pooled lookup with the semantics of ``torch.nn.functional.embedding_bag``, as
    :func:`rowquant.embedding_bag`: float32 of shape (bags, D).

    ``ids`` 1-D with ``offsets``, or 2-D (bags, length) with ``offsets`` None; ``mode`` "sum",
    "mean" or "max"; ``per_sample_weights`` of the shape of ``ids``, with ``mode="sum"`` only
    (any float dtype: the kernels read them as float32); ``padding_idx`` a row (negative
    counts from the end) or None.
    """
    n_bags = _bag_count(ids, offsets, per_sample_weights, include_last_offset)
    table = checked_table(codes, scales)
    weights = None
    if per_sample_weights is not None:
        if per_sample_weights.is_floating_point():
            per_sample_weights = per_sample_weights.to(torch.float32)  # bf16 has no numpy dtype
        weights = _array(per_sample_weights, "per_sample_weights")
    out = torch.empty((max(n_bags, 0), codes.shape[1]), dtype=torch.float32)
    table.bag(
        _array(ids, "input"),
        None if offsets is None else _array(offsets, "offsets"),
        weights=weights,
        mode=cast(BagMode, mode),  # the kernels check it
        include_last_offset=include_last_offset if ids.dim() == 1 else False,
        padding_idx=padding_idx,
        out=out.numpy(),
    )
    return out


@embedding_bag.register_fake
def _embedding_bag_shape(
    codes: torch.Tensor,
    scales: torch.Tensor,
    ids: torch.Tensor,
    offsets: Optional[torch.Tensor],
    per_sample_weights: Optional[torch.Tensor],
    mode: str,
    padding_idx: Optional[int],
    include_last_offset: bool,
) -> torch.Tensor:
    n_bags = _bag_count(ids, offsets, per_sample_weights, include_last_offset)
    return codes.new_empty((n_bags, codes.shape[1]), dtype=torch.float32)
