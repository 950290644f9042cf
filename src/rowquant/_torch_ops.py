"""rowquant's lookups and scores as PyTorch operators, ``torch.ops.rowquant.take``,
``torch.ops.rowquant.embedding_bag`` and ``torch.ops.rowquant.scores``, so that tracing,
scripting, ``torch.compile`` and ``torch.export`` record a call to the kernels instead of
baking one result into the graph.

Each operator runs rowquant's kernels on the tensors' memory (CPU tensors, no copies) and has a
fake implementation that gives the output's shape from the inputs' shapes alone, which is what
the compilers need. The table is checked as ``rowquant.QuantizedEmbedding`` checks it (uint8
codes, finite non-negative float32 scales), but the scan of the scales costs O(N), too much for
every call of a served model: a pair of tensors is scanned once, then again only after it
changed (see :func:`checked_table`). So are the rows' norms, which cosine scores need.

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
>>> torch.ops.rowquant.scores(codes, scales, torch.tensor([[1.0, 0.5]]), "dot", "exact")
tensor([[0.5000, 1.5039]])
"""

import weakref
from typing import Optional, cast

import numpy as np
import torch

from . import _checks, _similarity
from ._api import BagMode
from .table import QuantizedEmbedding as _Table

__all__ = ["take", "embedding_bag", "scores"]

# How many (codes, scales) pairs to remember as checked (dead ones are dropped first).
_CHECKED_LIMIT = 64
# (id(codes), id(scales)) -> (weak codes, weak scales, their state when the scales were checked,
# whether the kernels read the tensors' memory as it is: no conversion of the layout needed,
# a dict holding the rows' "norms" once a cosine score computed them)
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


def checked_table(
    codes: torch.Tensor, scales: torch.Tensor, *, with_norms: bool = False
) -> _Table:
    """The rowquant table over the tensors' memory, its scales scanned only when needed; with
    ``with_norms``, holding the rows' norms (:meth:`rowquant.QuantizedEmbedding.norms`),
    computed only when needed too.

    The scan is skipped when these very tensors (alive, so their ids are theirs) passed it
    before and neither changed since: same memory, shape, strides and version counter. An
    in-place change (``module.scales[0] = nan``, ``load_state_dict``) bumps the counter, so the
    next call checks again (and computes the norms again). Tensors made under
    ``torch.inference_mode`` have no counter: they are checked, and their norms computed, every
    time. Writes that bypass torch (through a numpy view, or another process sharing the
    memory) are not seen.
    """
    codes_array, scales_array = _array(codes, "codes"), _array(scales, "scales")
    if codes.is_inference() or scales.is_inference():
        return _Table._from_checked(*_checks.codes_and_scales(codes_array, scales_array))
    key = (id(codes), id(scales))
    state = (_state(codes), _state(scales))
    entry = _checked.get(key)
    if entry is not None and entry[0]() is codes and entry[1]() is scales and entry[2] == state:
        kept = entry[4]
        if entry[3]:  # the kernels read these arrays as they are
            arrays = codes_array, scales_array
        else:
            arrays = _checks.codes_and_scales(codes_array, scales_array, check_values=False)
        table = _Table._from_checked(*arrays, norms=kept.get("norms"))
    else:
        checked_codes, checked_scales = _checks.codes_and_scales(codes_array, scales_array)
        as_they_are = checked_codes is codes_array and checked_scales is scales_array
        kept = {}
        forget = _forget(key)
        _remember(key, (weakref.ref(codes, forget), weakref.ref(scales, forget), state,
                        as_they_are, kept))
        table = _Table._from_checked(checked_codes, checked_scales)
    if with_norms and "norms" not in kept:
        kept["norms"] = table.norms()  # a new array: it keeps no tensor alive
    return table


def _forget(key: tuple):
    """A weakref callback dropping the entry of ``key`` once its codes or scales are gone, so
    that the norms kept for a table (4 bytes a row) go with it. Only that entry: the ids of
    dead tensors may already name a new pair."""

    def callback(ref: weakref.ref) -> None:
        entry = _checked.get(key)
        if entry is not None and (entry[0] is ref or entry[1] is ref):
            _checked.pop(key, None)

    return callback


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


def _scores_shape(codes: torch.Tensor, hidden: torch.Tensor, metric: str, precision: str):
    """The shape of the scores, ``hidden.shape[:-1] + (N,)``, from the shapes alone (the fake and
    the real operator share it, so that compilers see the same errors as eager calls)."""
    _similarity.check_metric(metric)
    _similarity.check_precision(precision)
    if hidden.dim() == 0:
        raise ValueError("hidden must have the table's width as its last dimension (..., D), "
                         "got a 0-d tensor")
    if hidden.shape[-1] != codes.shape[1]:
        raise ValueError(
            f"hidden has {hidden.shape[-1]} values in its last dimension but the table's rows "
            f"have {codes.shape[1]} (hidden is (..., D), the scores (..., N))"
        )
    return (*hidden.shape[:-1], codes.shape[0])


def _not_finite(hidden: torch.Tensor, queries: np.ndarray) -> Optional[ValueError]:
    """The error naming the first NaN or inf of ``hidden`` (by its position in hidden's own
    shape), or None when every value is finite in float32."""
    with np.errstate(over="ignore"):
        finite = np.isfinite(queries.astype(np.float32, copy=False))
    if finite.all():
        return None
    at = int(np.argmin(finite.reshape(-1)))
    value = hidden.reshape(-1)[at].item()
    return ValueError(
        f"hidden[{_checks.position(tuple(hidden.shape), at)}] is {value}: hidden must be finite "
        "(in float32's range)"
    )


@torch.library.custom_op("rowquant::scores", mutates_args=())
def scores(
    codes: torch.Tensor, scales: torch.Tensor, hidden: torch.Tensor, metric: str, precision: str
) -> torch.Tensor:
    """Scores of ``hidden`` (..., D) against every row of the table (``codes`` uint8 (N, D),
    ``scales`` float32 (N,)): float32 (..., N), the logits of a tied output layer, computed by
    :meth:`rowquant.QuantizedEmbedding.dot` (same kernels, same bits) with this ``metric``
    ("dot" or "cosine") and ``precision`` ("exact" or "fast").

    ``hidden`` of any float dtype is read as float32 (float64 rounded, values past float32's
    range refused). Raises ValueError for a last dimension other than D, NaN or inf in
    ``hidden``, an unknown metric or precision, a bad table or tensors not on the CPU.
    """
    shape = _scores_shape(codes, hidden, metric, precision)
    table = checked_table(codes, scales, with_norms=metric == "cosine")
    given = hidden
    if hidden.is_floating_point() and hidden.dtype != torch.float32:
        hidden = hidden.to(torch.float32)  # bf16 has no numpy dtype; float64 rounded as dot does
    n_queries = int(np.prod(shape[:-1], dtype=np.int64))
    queries = _array(hidden, "hidden").reshape(n_queries, codes.shape[1])
    out = torch.empty(shape, dtype=torch.float32)
    try:
        table.dot(queries, metric=cast(_similarity.Metric, metric),
                  precision=cast(_similarity.Precision, precision),
                  out=out.numpy().reshape(n_queries, codes.shape[0]))
    except ValueError:
        error = _not_finite(given, queries)
        if error is not None:
            raise error from None
        raise
    return out


@scores.register_fake
def _scores_fake(
    codes: torch.Tensor, scales: torch.Tensor, hidden: torch.Tensor, metric: str, precision: str
) -> torch.Tensor:
    return codes.new_empty(_scores_shape(codes, hidden, metric, precision), dtype=torch.float32)
