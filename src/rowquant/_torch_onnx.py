"""ONNX translations of rowquant's PyTorch operators, for both of torch's exporters.

The graph is the one :func:`rowquant.to_onnx` writes (``Gather``, ``Cast``, ``Sub``, ``Mul`` for
lookups, the ``ScatterElements`` pooling for bags, negative ids refused; ``DequantizeLinear``
and a float32 ``Gemm`` for scores), built by the same code in :mod:`rowquant._onnx` through a
small adapter per exporter:

- the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) finds the symbolic
  functions registered here when ``rowquant.torch`` is imported;
- the ``torch.export``-based exporter (``dynamo=True``, torch's default) takes them from
  ``custom_translation_table=rowquant.torch.onnx_translation_table()`` (needs onnxscript).
  Without that table it stops with "No ONNX function found for rowquant.take": it never exports
  a constant.

What cannot be translated (an opset too old for the pooling, a rank of ids the graph does not
know) raises during the export.
"""

from collections.abc import Callable

from typing import Any

import numpy as np
import torch

from . import _checks, _onnx

__all__ = ["onnx_translation_table", "register_symbolics"]

_MODES = ("sum", "mean", "max")


def _min_opset(mode) -> int:
    return _onnx.MIN_OPSET_MAX_POOLING if mode == "max" else _onnx.MIN_OPSET_POOLING


def _bag(graph, codes, scales, ids, offsets, weights, mode, padding_idx, include_last_offset,
         shapes):
    """The shared checks of both exporters, then :func:`rowquant._onnx.bag_graph`. ``shapes``
    is ``(n_rows, dim, ids_ndim)``, read from the exporter's tensor types."""
    n_rows, dim, ids_ndim = shapes
    if mode not in _MODES:
        raise ValueError(f"mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if ids_ndim not in (1, 2):
        raise ValueError(
            f"rowquant::embedding_bag exports 1-D or 2-D input, got input of rank {ids_ndim}"
        )
    if weights is not None and mode != "sum":
        raise ValueError(f"per_sample_weights are only supported with mode='sum', got {mode!r}")
    return _onnx.bag_graph(
        graph, codes, scales, ids, offsets, weights, n_rows=n_rows, dim=dim, ids_ndim=ids_ndim,
        mode=mode, padding_row=_checks.padding_row(padding_idx, n_rows),
        include_last_offset=include_last_offset,
    )


# ------------------------------------------------------------------- TorchScript-based exporter


class _TorchScriptGraph:
    """rowquant._onnx's graph builder over the TorchScript exporter's graph context ``g``."""

    _SUFFIXES = {int: "i", float: "f", str: "s"}

    def __init__(self, g):
        self.g = g

    def node(self, op, inputs, output, **attributes):
        named = {f"{key}_{self._SUFFIXES[type(value)]}": value for key, value in attributes.items()}
        return self.g.op(op, *inputs, **named)

    def constant(self, name, value):
        return self.g.op("Constant", value_t=torch.from_numpy(np.array(value)))

    def fill(self, shape, value, dtype, output):
        return self.g.op("ConstantOfShape", shape,
                         value_t=torch.from_numpy(np.array([value], dtype=dtype)))

    def cast(self, value, onnx_type):
        """``value`` as ``onnx_type``, with no node when it is that already."""
        unknown = torch.onnx.JitScalarType.UNDEFINED
        scalar_type = torch.onnx.JitScalarType.from_value(value, unknown)
        if scalar_type != unknown and scalar_type.onnx_type() == onnx_type:
            return value
        return self.g.op("Cast", value, to_i=onnx_type)


def _sizes(value, what: str) -> list:
    sizes = torch.onnx.symbolic_helper._get_tensor_sizes(value)
    if sizes is None or (what == "codes" and None in sizes):
        raise ValueError(f"the ONNX export needs the shape of {what}, which the graph lost")
    return sizes


def _take_symbolic(g, codes, scales, ids):
    graph = _TorchScriptGraph(g)
    n_rows = _sizes(codes, "codes")[0]
    return _onnx.lookup_graph(graph, codes, scales, graph.cast(ids, _onnx.INT64), n_rows)


def _bag_symbolic(g, codes, scales, ids, offsets, per_sample_weights, mode, padding_idx,
                  include_last_offset):
    helper = torch.onnx.symbolic_helper
    mode = helper._get_const(mode, "s", "mode")
    if mode == "max" and g.opset < _onnx.MIN_OPSET_MAX_POOLING:
        raise ValueError(
            f"mode='max' exports to ONNX opset {_onnx.MIN_OPSET_MAX_POOLING} or later "
            f"(ScatterElements with reduction='max'), not {g.opset}: pass "
            f"opset_version={_onnx.MIN_OPSET_MAX_POOLING}"
        )
    graph = _TorchScriptGraph(g)
    n_rows, dim = _sizes(codes, "codes")
    weights = None
    if not helper._is_none(per_sample_weights):
        weights = graph.cast(per_sample_weights, _onnx.FLOAT)
    padding_row = None
    if not helper._is_none(padding_idx):
        padding_row = helper._get_const(padding_idx, "i", "padding_idx")
    return _bag(
        graph, codes, scales, graph.cast(ids, _onnx.INT64),
        None if helper._is_none(offsets) else graph.cast(offsets, _onnx.INT64), weights, mode,
        padding_row, helper._get_const(include_last_offset, "b", "include_last_offset"),
        (n_rows, dim, helper._get_tensor_rank(ids)),
    )


def _scores_metric(metric, precision) -> str:
    """The checks both exporters make of the scores' arguments: the graph is the float product
    for either precision (rowquant's fast integer kernels are not an ONNX graph)."""
    from . import _similarity

    _similarity.check_precision(precision)
    return _similarity.check_metric(metric)


def _scores_symbolic(g, codes, scales, hidden, metric, precision):
    helper = torch.onnx.symbolic_helper
    metric = _scores_metric(helper._get_const(metric, "s", "metric"),
                            helper._get_const(precision, "s", "precision"))
    graph = _TorchScriptGraph(g)
    n_rows, dim = _sizes(codes, "codes")
    return _onnx.scores_graph(graph, codes, scales, graph.cast(hidden, _onnx.FLOAT),
                              n_rows=n_rows, dim=dim, metric=metric)


def register_symbolics() -> None:
    """Make the TorchScript-based exporter translate rowquant's operators (from the oldest opset
    that has what they need: older ones get the exporter's "not supported" error)."""
    torch.onnx.register_custom_op_symbolic("rowquant::take", _take_symbolic,
                                           _onnx.MIN_OPSET_LOOKUP)
    torch.onnx.register_custom_op_symbolic("rowquant::embedding_bag", _bag_symbolic,
                                           _onnx.MIN_OPSET_POOLING)
    torch.onnx.register_custom_op_symbolic("rowquant::scores", _scores_symbolic,
                                           _onnx.MIN_OPSET_SCORES)


# ---------------------------------------------------------------------- torch.export-based exporter


class _OnnxScriptGraph:
    """rowquant._onnx's graph builder over onnxscript's opset 18, recording into the graph the
    exporter is translating."""

    op: Any  # onnxscript's opset18 and ir modules, imported when an export needs them
    ir: Any

    def __init__(self) -> None:
        from onnxscript import ir, opset18

        self.op, self.ir = opset18, ir

    def node(self, op, inputs, output, **attributes):
        return getattr(self.op, op)(*inputs, **attributes)

    def constant(self, name, value):
        return self.op.Constant(value=self.ir.tensor(np.array(value)))

    def fill(self, shape, value, dtype, output):
        return self.op.ConstantOfShape(shape, value=self.ir.tensor(np.array([value], dtype=dtype)))

    def cast(self, value, onnx_type):
        if value.dtype is not None and int(value.dtype) == onnx_type:
            return value
        return self.op.Cast(value, to=onnx_type)


def _static_sizes(value, what: str) -> list:
    sizes = [dim if isinstance(dim, int) else None for dim in value.shape]
    if None in sizes:
        raise ValueError(f"the ONNX export needs the shape of {what}, which the graph lost")
    return sizes


def _take_onnxscript(codes, scales, ids):
    graph = _OnnxScriptGraph()
    n_rows = _static_sizes(codes, "codes")[0]
    return _onnx.lookup_graph(graph, codes, scales, graph.cast(ids, _onnx.INT64), n_rows)


def _bag_onnxscript(codes, scales, ids, offsets, per_sample_weights, mode, padding_idx,
                    include_last_offset):
    graph = _OnnxScriptGraph()
    n_rows, dim = _static_sizes(codes, "codes")
    return _bag(
        graph, codes, scales, graph.cast(ids, _onnx.INT64),
        None if offsets is None else graph.cast(offsets, _onnx.INT64),
        None if per_sample_weights is None else graph.cast(per_sample_weights, _onnx.FLOAT),
        mode, padding_idx, include_last_offset, (n_rows, dim, len(ids.shape)),
    )


def _scores_onnxscript(codes, scales, hidden, metric, precision):
    graph = _OnnxScriptGraph()
    n_rows, dim = _static_sizes(codes, "codes")
    return _onnx.scores_graph(graph, codes, scales, graph.cast(hidden, _onnx.FLOAT),
                              n_rows=n_rows, dim=dim, metric=_scores_metric(metric, precision))


def onnx_translation_table() -> dict[Callable, Callable]:
    """The ONNX translations of rowquant's operators, for ``torch.onnx.export(...,
    dynamo=True, custom_translation_table=onnx_translation_table())``.

    torch's default exporter (``dynamo=True``) translates operators it does not know only from
    this table; without it, exporting a model that holds a ``rowquant.torch`` module fails
    with "No ONNX function found for rowquant.take" (or ``rowquant.embedding_bag``,
    ``rowquant.scores``). The TorchScript-based exporter (``dynamo=False``) needs no table.
    Both write the graph of :func:`rowquant.to_onnx`: lookups bit for bit equal to the
    module's, ids outside ``[0, N)`` (negative ones included) failing the run; scores of
    :class:`~rowquant.torch.QuantizedLogits` within float32 rounding of the module's. Bags of
    ``mode="max"`` need opset 18 or later.

    Returns
    -------
    dict
        ``{torch.ops.rowquant.take.default: ..., torch.ops.rowquant.embedding_bag.default:
        ..., torch.ops.rowquant.scores.default: ...}``, functions written with onnxscript's
        opset 18.

    Raises
    ------
    ImportError
        onnxscript is not installed (``pip install 'rowquant[onnx]'``).

    Examples
    --------
    >>> import numpy as np, onnxruntime, torch
    >>> from rowquant.torch import QuantizedEmbedding, onnx_translation_table
    >>> module = QuantizedEmbedding.from_float(torch.nn.Embedding(100, 8)).eval()
    >>> program = torch.onnx.export(
    ...     module, (torch.tensor([1, 2]),), dynamo=True, verbose=False,
    ...     dynamic_shapes=({0: torch.export.Dim("n")},),
    ...     custom_translation_table=onnx_translation_table())
    >>> session = onnxruntime.InferenceSession(program.model_proto.SerializeToString())
    >>> ids = torch.tensor([7, 99, 0])
    >>> rows = session.run(None, {"input": ids.numpy()})[0]
    >>> bool((rows == module(ids).numpy()).all())
    True
    """
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise ImportError(
            "exporting rowquant's operators with torch.onnx.export(dynamo=True) needs "
            "onnxscript: pip install 'rowquant[onnx]'"
        ) from None
    return {
        torch.ops.rowquant.take.default: _take_onnxscript,
        torch.ops.rowquant.embedding_bag.default: _bag_onnxscript,
        torch.ops.rowquant.scores.default: _scores_onnxscript,
    }
