"""Export a quantized table to ONNX: the same codes and scales, served by onnxruntime or any other
ONNX runtime, as a lookup or as embedding bags.

A lookup is four standard operators: ``Gather`` of the uint8 codes, ``Cast`` to float,
``Sub 128`` and ``Mul`` by the gathered scale. The cast and the subtraction are exact (integers
below 2**24), so the multiply is the only rounding, as in rowquant itself: the model returns the
bits of ``table.take(ids)``. Negative ids are first replaced by N (``Where(Less(ids, 0), N,
ids)``): ONNX's ``Gather`` would count them from the end, rowquant refuses them, and so does the
model, as it refuses any id past the table. Bags add each looked-up row into its bag with
``ScatterElements(reduction="add")`` (onnxruntime adds in id order, as rowquant does), then
divide by the bag size for ``"mean"``.
The contrib variant does the lookup in one onnxruntime operator,
``com.microsoft.GatherBlockQuantized``, reading the codes in place.

The graph is written once, against a small builder interface (``node``, ``constant``, ``fill``)
that :class:`_Graph` implements for :func:`to_onnx` and ``rowquant._torch_onnx`` implements over
torch's two ONNX exporters, so that an exported ``rowquant.torch`` module holds the same
operators as a model written here.

onnx is an optional dependency (``pip install 'rowquant[onnx]'``), imported on first use.
"""

from __future__ import annotations

import os

import numpy as np

from . import _atomic, _format
from ._scheme import ROWWISE_U8
from ._version import __version__
from .table import QuantizedEmbedding

__all__ = ["to_onnx"]

POOLINGS = ("sum", "mean")
SCORES = ("dot", "cosine")
DEFAULT_OPSET = 17
# Lookups use operators unchanged since opset 13; bags need ScatterElements with reduction (16).
# Scores need DequantizeLinear per axis and ReduceSum with its axes as an input: 13 too.
MIN_OPSET_LOOKUP = 13
MIN_OPSET_SCORES = 13
MIN_OPSET_POOLING = 16
MAX_IDS_NDIM = 64  # numpy's limit
# A protobuf message cannot exceed 2 GiB. Past this many bytes of table the codes, scales and
# zero points go to a data file beside the model (ONNX external data) instead of inside it.
INLINE_LIMIT_BYTES = 1_900_000_000
# Offsets of the arrays in the data file: a multiple of every page size and of Windows' mapping
# granularity, so that a runtime can map each array instead of reading it.
EXTERNAL_ALIGNMENT = 1 << 16
# ScatterElements with reduction="max" (bags of mode "max", exported from rowquant.torch)
MIN_OPSET_MAX_POOLING = 18
CONTRIB_DOMAIN = "com.microsoft"
BIAS = ROWWISE_U8.bias
# onnx.TensorProto data types, spelled out so that the graph code needs no onnx import
FLOAT = 1
INT64 = 7
DOUBLE = 11
_INT64_MAX = np.iinfo(np.int64).max


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(
            "rowquant.to_onnx needs the onnx package: pip install 'rowquant[onnx]'"
        ) from None
    return onnx


def _check_arguments(table, pooling, contrib, opset, ids_ndim, scores=None) -> int:
    """Raise for a bad argument before anything is built or written; return the opset to use."""
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}")
    if table.scheme.kind != "symmetric":
        raise NotImplementedError(
            f"to_onnx exports 8-bit tables only, not this {table.scheme.name} table"
        )
    if pooling is not None and not (isinstance(pooling, str) and pooling in POOLINGS):
        raise ValueError(f"pooling must be None, 'sum' or 'mean', got {pooling!r}")
    if not isinstance(contrib, (bool, np.bool_)):
        raise TypeError(f"contrib must be a bool, got {type(contrib).__name__}")
    if contrib and pooling is not None:
        raise ValueError(
            f"contrib=True exports lookups only; pooling={pooling!r} needs contrib=False"
        )
    if isinstance(ids_ndim, (bool, np.bool_)) or not isinstance(ids_ndim, (int, np.integer)):
        raise TypeError(f"ids_ndim must be an integer, got {type(ids_ndim).__name__}")
    if not 0 <= ids_ndim <= MAX_IDS_NDIM:
        raise ValueError(f"ids_ndim must be in [0, {MAX_IDS_NDIM}], got {ids_ndim}")
    if pooling is not None and ids_ndim != 1:
        raise ValueError(
            f"ids_ndim={ids_ndim} is for lookups; bags take 1-D ids and offsets (ids_ndim=1)"
        )
    if scores is not None:
        if not (isinstance(scores, str) and scores in SCORES):
            raise ValueError(f"scores must be None, 'dot' or 'cosine', got {scores!r}")
        if pooling is not None or contrib:
            given = f"pooling={pooling!r}" if pooling is not None else "contrib=True"
            raise ValueError(
                f"scores={scores!r} writes a model that scores queries against the table; "
                f"{given} is for models of lookups or bags"
            )
        if ids_ndim != 1:
            raise ValueError(f"ids_ndim={ids_ndim} is for lookups; a scoring model takes queries")
    if opset is None:
        return DEFAULT_OPSET
    if isinstance(opset, (bool, np.bool_)) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an integer, got {type(opset).__name__}")
    lowest = MIN_OPSET_LOOKUP if pooling is None else MIN_OPSET_POOLING
    if scores is not None:
        lowest = MIN_OPSET_SCORES
    if opset < lowest:
        needs = "lookups need" if pooling is None else f"pooling={pooling!r} needs"
        if scores is not None:
            needs = "scores need"
        raise ValueError(f"opset {opset} is too old: {needs} opset {lowest} or later")
    return int(opset)


class _Graph:
    """The nodes and initializers of the model being built. Table-sized arrays are kept apart
    from small constants: they go inside the model or to a data file beside it."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes = []
        self.constants = []
        self.table_arrays = {}

    def node(self, op, inputs, output, **attributes) -> str:
        self.nodes.append(
            self.onnx.helper.make_node(op, inputs, [output], name=output, **attributes)
        )
        return output

    def constant(self, name, value) -> str:
        self.constants.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def table_array(self, name, array) -> str:
        self.table_arrays[name] = array
        return name

    def fill(self, shape, value, dtype, output) -> str:
        """A tensor of the runtime ``shape`` (an int64 tensor) filled with ``value``."""
        filler = self.onnx.numpy_helper.from_array(np.array([value], dtype=dtype), "value")
        return self.node("ConstantOfShape", [shape], output, value=filler)


def _refuse_negative_ids(graph, ids, n_rows: int):
    """``ids`` with every negative id replaced by ``n_rows``.

    ONNX's Gather counts negative indices from the end, as numpy does; rowquant refuses them, as
    ``torch.nn.Embedding`` does. Past the end, the standard Gather fails the run and
    GatherBlockQuantized gives a row of zeros, as for every other id outside the table.
    """
    negative = graph.node("Less", [ids, graph.constant("first_id", np.int64(0))], "negative_ids")
    past_end = graph.constant("n_rows", np.int64(n_rows))
    return graph.node("Where", [negative, past_end, ids], "ids_or_past_end")


def _lookup(graph, codes, scales_column, ids, output):
    """Rows ``ids`` (int64, not negative) of the table, dequantized: ``ids.shape + (D,)`` float32.

    ``scales_column`` holds the scales as ``(N, 1)``, so that the gathered scales broadcast
    along each row without a reshape.
    """
    taken = graph.node("Gather", [codes, ids], "codes_taken", axis=0)
    codes_float = graph.node("Cast", [taken], "codes_float", to=FLOAT)
    centered = graph.node("Sub", [codes_float, graph.constant("bias", np.float32(BIAS))],
                          "centered")
    scales = graph.node("Gather", [scales_column, ids], "scales_taken", axis=0)
    return graph.node("Mul", [centered, scales], output)


def _lookup_contrib(graph, codes, scales, ids, output):
    """:func:`_lookup` in one onnxruntime operator, com.microsoft.GatherBlockQuantized, which
    reads the codes in place and gives zero rows for ids outside the table."""
    n_rows, dim = codes.shape
    # One block per row (block_size >= dim), so one scale and one zero point per row. The
    # kernel computes float(code - zero_point) * scale: the same single rounding.
    block_size = max(16, 1 << max(dim - 1, 0).bit_length())
    blocks = 1 if dim else 0
    graph.table_array("scales", scales.reshape(n_rows, 1)[:, :blocks])
    # The zero point is written out although 128 is the default for 8-bit uint8 data: some
    # execution providers have had the default wrong.
    graph.table_array("zero_points", np.full((n_rows, blocks), BIAS, dtype=np.uint8))
    return graph.node(
        "GatherBlockQuantized", ["codes", ids, "scales", "zero_points"], output,
        domain=CONTRIB_DOMAIN, bits=8, block_size=block_size, gather_axis=0, quantize_axis=1,
    )


def _pool(graph, rows, ids, offsets, output, dim, mode, weights=None, padding_row=None):
    """Sum, average or maximum of the rows of each bag, torch's embedding_bag with offsets.

    Bag b holds positions ``offsets[b]`` to ``offsets[b + 1]`` (or the end). A position's bag is
    the number of later bag starts at or before it: one mark per start ``offsets[1:]``, then a
    running sum, O(ids + bags). The rows are then added into zeros (or taken the maximum of,
    from -inf), the position's bag choosing the row. ScatterElements, not ScatterND:
    onnxruntime's CPU ScatterND adds concurrently into the same output row when indices repeat
    (microsoft/onnxruntime#23396).

    ``weights`` (float32, one per id) multiply the rows first. Ids equal to ``padding_row``
    count neither in the pooling nor in the bag sizes, which ``"mean"`` divides by and
    ``"max"`` needs to give empty bags zeros.
    """
    one = graph.constant("one", np.array([1], np.int64))
    n_ids = graph.node("Shape", [ids], "n_ids")
    later_starts = graph.node(
        "Slice", [offsets, one, graph.constant("no_end", np.array([_INT64_MAX], np.int64))],
        "later_starts",
    )
    # marks has one more place than there are ids: trailing empty bags start at len(ids)
    no_marks = graph.fill(graph.node("Add", [n_ids, one], "n_ids_plus_one"), 0, np.int64,
                          "no_marks")
    ones = graph.fill(graph.node("Shape", [later_starts], "n_later_starts"), 1, np.int64, "ones")
    marks = graph.node("ScatterElements", [no_marks, later_starts, ones], "marks", axis=0,
                       reduction="add")
    running = graph.node("CumSum", [marks, graph.constant("axis_0", np.int64(0))], "running")
    bag_of_id = graph.node(
        "Slice", [running, graph.constant("zero", np.array([0], np.int64)),
                  graph.constant("minus_one", np.array([-1], np.int64))],
        "bag_of_id",
    )
    # the value a bag starts from: the identity of its reduction
    start = -np.inf if mode == "max" else 0
    if weights is not None:
        rows = graph.node("Mul", [rows, graph.node("Unsqueeze", [weights, one], "weights_column")],
                          "weighted")
    kept = None
    if padding_row is not None:
        padding = graph.node("Equal", [ids, graph.constant("padding_row", np.int64(padding_row))],
                             "is_padding")
        kept = graph.node("Not", [padding], "kept")
        rows = graph.node("Where", [graph.node("Unsqueeze", [kept, one], "kept_column"), rows,
                                    graph.constant("left_out", np.float32(start))], "kept_rows")
    bag_column = graph.node("Unsqueeze", [bag_of_id, one], "bag_column")
    bag_of_value = graph.node("Expand", [bag_column, graph.node("Shape", [rows], "rows_shape")],
                              "bag_of_value")
    n_bags = graph.node("Shape", [offsets], "n_bags")
    pooled_shape = graph.node(
        "Concat", [n_bags, graph.constant("dim", np.array([dim], np.int64))],
        "pooled_shape", axis=0,
    )
    starts = graph.fill(pooled_shape, start, np.float32, "pooled_start")
    pooled = graph.node("ScatterElements", [starts, bag_of_value, rows],
                        output if mode == "sum" else "pooled_" + mode, axis=0,
                        reduction="max" if mode == "max" else "add")
    if mode == "sum":
        return pooled
    if kept is None:
        ends = graph.node("Concat", [later_starts, n_ids], "ends", axis=0)
        sizes = graph.node("Sub", [ends, offsets], "sizes")
    else:
        no_sizes = graph.fill(n_bags, 0, np.int64, "no_sizes")
        counts = graph.node("Cast", [kept], "kept_count", to=INT64)
        sizes = graph.node("ScatterElements", [no_sizes, bag_of_id, counts], "sizes", axis=0,
                           reduction="add")
    if mode == "max":  # empty bags are zero, not -inf
        filled = graph.node("Greater", [sizes, graph.constant("no_ids", np.int64(0))], "filled")
        return graph.node("Where", [graph.node("Unsqueeze", [filled, one], "filled_column"),
                                    pooled, graph.constant("empty", np.float32(0))], output)
    divisors = graph.node("Max", [sizes, one], "divisors")  # empty bags: 0 / 1
    divisors = graph.node("Cast", [divisors], "divisors_float", to=FLOAT)
    divisors = graph.node("Unsqueeze", [divisors, one], "divisors_column")
    return graph.node("Div", [pooled, divisors], output)


def _unit_vectors(graph, values, name: str):
    """The rows of the float32 matrix ``values`` (B, D) divided by their norms, zero rows left
    zero (cosine with a zero vector is 0, as in rowquant). The squares, sums and division are
    in float64, as rowquant computes norms, so that no norm overflows or underflows: a float32
    row's squared norm always fits a float64, where in float32 norms beyond ~1.8e19 overflow,
    below ~1e-19 vanish, and inverses of norms below ~3e-39 overflow. The unit rows are then
    rounded to float32 (values in [-1, 1])."""
    wide = graph.node("Cast", [values], f"{name}_float64", to=DOUBLE)
    squares = graph.node("Mul", [wide, wide], f"{name}_squares")
    sums = graph.node(
        "ReduceSum", [squares, graph.constant(f"{name}_axis", np.array([1], np.int64))],
        f"{name}_sums", keepdims=1,
    )
    norms = graph.node("Sqrt", [sums], f"{name}_norms")
    zero = graph.node("Equal", [norms, graph.constant(f"{name}_zero_norm", np.float64(0))],
                      f"{name}_zero")
    divisors = graph.node("Where", [zero, graph.constant(f"{name}_one", np.float64(1)), norms],
                          f"{name}_divisors")
    unit = graph.node("Div", [wide, divisors], f"{name}_unit_float64")
    return graph.node("Cast", [unit], f"{name}_unit", to=FLOAT)


def scores_graph(graph, codes, scales, queries, *, n_rows: int, dim: int, metric: str,
                 unit_scales: bool = False):
    """Scores of float32 ``queries`` (..., D) against every row: (..., N), the logits of a tied
    output layer. The table is dequantized by ``DequantizeLinear`` (per row: axis 0, the row
    scales and a zero point of 128 for every row; exact integers times the scale, rounded once,
    as rowquant dequantizes), then ``Gemm`` with the table transposed (``transB``: no copy of
    the table is transposed) on the queries flattened to (B, D). Cosine is the product of unit
    vectors: the queries divided by their norms in the graph (:func:`_unit_vectors`, float64),
    and the rows likewise, unless ``unit_scales`` says that ``scales`` are already the rows'
    scales divided by their norms (``to_onnx`` stores them so, computed once in float64). The
    sums are the runtime's float32 GEMM's, not rowquant's float64 lanes. A table of no rows or
    no columns gives zeros of the right shape."""
    n_rows_shape = graph.constant("n_rows_shape", np.array([n_rows], np.int64))
    # the shape of the scores: shape(queries)[:-1] + [N]
    leading = graph.node(
        "Slice", [graph.node("Shape", [queries], "queries_shape"),
                  graph.constant("from_first", np.array([0], np.int64)),
                  graph.constant("before_last", np.array([-1], np.int64))],
        "leading_shape",
    )
    shape = graph.node("Concat", [leading, n_rows_shape], "scores_shape", axis=0)
    if dim == 0 or n_rows == 0:  # zeros, or no scores: onnxruntime would refuse the Reshape
        return graph.fill(shape, 0, np.float32, "scores")
    zero_points = graph.fill(n_rows_shape, BIAS, np.uint8, "zero_points")
    values = graph.node("DequantizeLinear", [codes, scales, zero_points], "values", axis=0)
    flat = graph.node("Flatten", [queries], "queries_flat", axis=-1)  # (B, D)
    if metric == "cosine":
        flat = _unit_vectors(graph, flat, "queries")
        if not unit_scales:
            values = _unit_vectors(graph, values, "rows")
    scores = graph.node("Gemm", [flat, values], "dots", transB=1)
    return graph.node("Reshape", [scores, shape], "scores")


def lookup_graph(graph, codes, scales, ids, n_rows: int):
    """rowquant.torch's ``take`` on a graph whose table arrays are values: ``codes`` (N, D)
    uint8, ``scales`` (N,) float32, ``ids`` int64 of any shape."""
    scales_column = graph.node(
        "Unsqueeze", [scales, graph.constant("column_axis", np.array([1], np.int64))],
        "scales_column",
    )
    return _lookup(graph, codes, scales_column, _refuse_negative_ids(graph, ids, n_rows), "rows")


def bag_graph(
    graph, codes, scales, ids, offsets, weights, *, n_rows: int, dim: int, ids_ndim: int,
    mode: str, padding_row, include_last_offset: bool,
):
    """rowquant.torch's ``embedding_bag`` on a graph, as :func:`lookup_graph`: 1-D int64
    ``ids`` with ``offsets``, or 2-D ``ids`` (bags, length) and ``offsets`` None; ``weights``
    float32 of the shape of ids, or None; ``padding_row`` in ``[0, N)`` or None."""
    if ids_ndim == 2:
        shape = graph.node("Shape", [ids], "ids_shape")
        n_bags = graph.node("Gather", [shape, graph.constant("bag_axis", np.int64(0))], "bags")
        length = graph.node("Gather", [shape, graph.constant("length_axis", np.int64(1))],
                            "length")
        bag_numbers = graph.node(
            "Range", [graph.constant("first_bag", np.int64(0)), n_bags,
                      graph.constant("step", np.int64(1))], "bag_numbers",
        )
        offsets = graph.node("Mul", [bag_numbers, length], "fixed_offsets")
        flat = graph.constant("flat", np.array([-1], np.int64))
        ids = graph.node("Reshape", [ids, flat], "ids_flat")
        if weights is not None:
            weights = graph.node("Reshape", [weights, flat], "weights_flat")
    elif include_last_offset:  # the last offset only ends the last bag
        offsets = graph.node(
            "Slice", [offsets, graph.constant("from_start", np.array([0], np.int64)),
                      graph.constant("but_last", np.array([-1], np.int64))], "bag_starts",
        )
    rows = lookup_graph(graph, codes, scales, ids, n_rows)
    return _pool(graph, rows, ids, offsets, "pooled", dim, mode, weights, padding_row)


def _external_tensor(onnx, name, array, location, offset):
    tensor = onnx.TensorProto()
    tensor.name = name
    tensor.data_type = onnx.helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor.dims.extend(array.shape)
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", array.nbytes)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    return tensor


def _unit_scales(codes: np.ndarray, scales: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """Scales that dequantize each row to its unit vector: a row is ``(q - 128) * s``, so its
    direction is ``(q - 128) / sqrt(sum (q - 128)**2)``, whatever ``s`` (the dequantized values
    round ``(q - 128) * s`` to float32, a relative 2**-24 at most): ``1 / sqrt(S)`` with ``S``
    an exact integer, precise even where the row's float32 norm is subnormal. 0 for rows of
    zeros (all codes 128, or scale 0)."""
    unit = np.zeros(len(scales), np.float32)
    for start in range(0, len(scales), block):
        centered = codes[start:start + block].astype(np.int32) - BIAS
        squares = np.einsum("ij,ij->i", centered, centered, dtype=np.int64).astype(np.float64)
        part = unit[start:start + block]
        used = (squares > 0) & (scales[start:start + block] > 0)
        part[used] = 1 / np.sqrt(squares[used])
    return unit


def _scores_model_graph(graph, helper, TensorProto, table, metric):
    """The graph of ``to_onnx(table, path, scores=metric)``: its inputs and outputs."""
    n_rows, dim = table.shape
    codes = scales = None
    cosine = metric == "cosine"
    if n_rows * dim:  # else the scores are zeros or empty, and the graph reads no table
        codes = graph.table_array("codes", table.codes)
        if cosine:  # the rows' scales over their norms, computed once here
            from . import _similarity

            _similarity.inverse_norms_of(table.norms())  # refuses what rowquant refuses
            scales = graph.table_array(
                "unit_scales", _unit_scales(table.codes, table.scale_values()))
        else:
            scales = graph.table_array("scales", table.scale_values())
    scores_graph(graph, codes, scales, "queries", n_rows=n_rows, dim=dim, metric=metric,
                 unit_scales=cosine)
    inputs = [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["n_queries", dim])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n_queries", n_rows])]
    return inputs, outputs


def _build(onnx, table, pooling, contrib, opset, ids_ndim, data_name, scores=None):
    """The model, and the (offset, array) pieces of its data file when the table is too large to
    go inside it (else an empty list)."""
    helper, TensorProto = onnx.helper, onnx.TensorProto
    n_rows, dim = table.shape
    graph = _Graph(onnx)
    if scores is not None:
        inputs, outputs = _scores_model_graph(graph, helper, TensorProto, table, scores)
    else:
        inputs, outputs = _lookup_model_graph(graph, helper, TensorProto, table, pooling, contrib,
                                              ids_ndim)
    pieces = []
    if sum(array.nbytes for array in graph.table_arrays.values()) <= INLINE_LIMIT_BYTES:
        table_tensors = [onnx.numpy_helper.from_array(array, name)
                         for name, array in graph.table_arrays.items()]
    else:
        table_tensors, offset = [], 0
        for name, array in graph.table_arrays.items():
            table_tensors.append(_external_tensor(onnx, name, array, data_name, offset))
            pieces.append((offset, array))
            offset += -(-array.nbytes // EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT

    if scores is not None:
        kind, graph_name = f"{scores} scores of queries", f"rowquant_scores_{scores}"
    else:
        kind = "lookup" if pooling is None else f"{pooling} of bags"
        graph_name = f"rowquant_{'lookup' if pooling is None else 'bag_' + pooling}"
    graph_proto = helper.make_graph(
        graph.nodes, graph_name, inputs, outputs, initializer=table_tensors + graph.constants,
    )
    opsets = [helper.make_opsetid("", opset)]
    if contrib:
        opsets.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
    model = helper.make_model(
        graph_proto, opset_imports=opsets, producer_name="rowquant",
        producer_version=__version__,
        doc_string=f"rowquant table of {n_rows} rows x {dim}, uint8 codes and a float32 scale "
                   f"per row, value (code - 128) * scale: {kind}",
    )
    # the oldest IR version that can hold the opset, so that older runtimes load the model too
    model.ir_version = helper.find_min_ir_version_for(opsets, ignore_unknown=True)
    if scores is not None:
        operator = "DequantizeLinear, Gemm"
    else:
        operator = "com.microsoft.GatherBlockQuantized" if contrib else "Gather"
    props = {**_format.METADATA, "rows": str(n_rows), "dim": str(dim),
             "pooling": pooling or "none", "operator": operator}
    if scores is not None:
        props["scores"] = scores
    helper.set_model_props(model, props)
    return model, pieces


def _lookup_model_graph(graph, helper, TensorProto, table, pooling, contrib, ids_ndim):
    """The graph of a lookup or bag model: its inputs and outputs."""
    n_rows, dim = table.shape
    codes = graph.table_array("codes", table.codes)
    ids = _refuse_negative_ids(graph, "ids", n_rows)
    output = "rows" if pooling is None else "looked_up"
    if contrib:
        rows = _lookup_contrib(graph, table.codes, table.scale_values(), ids, output)
    else:
        scales = graph.table_array("scales", table.scale_values().reshape(n_rows, 1))
        rows = _lookup(graph, codes, scales, ids, output)
    if pooling is None:
        ids_dims = [f"ids_{axis}" for axis in range(ids_ndim)] if ids_ndim != 1 else ["n_ids"]
        inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ids_dims)]
        outputs = [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ids_dims + [dim])]
    else:
        inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n_ids"]),
                  helper.make_tensor_value_info("offsets", TensorProto.INT64, ["n_bags"])]
        _pool(graph, rows, "ids", "offsets", "pooled", dim, pooling)
        outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n_bags", dim])]
    return inputs, outputs


def to_onnx(table, path, *, pooling=None, contrib=False, opset=None, ids_ndim=1,
            scores=None) -> None:
    """Write ``table`` as an ONNX model that serves its lookups, bags or scores, atomically.

    ``pooling=None`` gives a lookup: input ``ids`` (int64), output ``rows`` (float32) of shape
    ``ids.shape + (D,)``, bit for bit ``table.take(ids)`` under onnxruntime. ``"sum"`` and
    ``"mean"`` give embedding bags with torch's ``embedding_bag`` semantics: inputs ``ids``
    (int64 ``[L]``) and ``offsets`` (int64 ``[B]``, starting at 0, non-decreasing, at most
    ``L``), output ``pooled`` (float32 ``[B, D]``); empty bags give zeros, ``"mean"`` divides by
    the bag's size. Bags equal ``table.bag(ids, offsets, mode=pooling)`` up to summation order.
    ``scores="dot"`` or ``"cosine"`` gives a model that scores queries against every row (the
    logits of a tied output layer): input ``queries`` (float32 ``[B, D]``), output ``scores``
    (float32 ``[B, N]``), :meth:`QuantizedEmbedding.dot` of that metric within float32 rounding
    (see Notes).

    Parameters
    ----------
    table : QuantizedEmbedding
    path : str or os.PathLike
        The model file. Its folder must exist; a file already there is replaced only once the
        new one is completely written.
    pooling : {None, "sum", "mean"}, default None
    contrib : bool, default False
        Look up with onnxruntime's ``com.microsoft.GatherBlockQuantized`` operator instead of
        standard ones (lookups only): one kernel that reads the codes in place, faster in
        onnxruntime, but the model runs on onnxruntime only, in versions whose operator takes
        8-bit uint8 data (added in mid-2025 by microsoft/onnxruntime#25214), and gives zero rows
        for ids outside ``[0, N)`` instead of failing.
    opset : int, optional
        The ONNX opset of the model; default 17. Lookups need 13 or later, bags 16 or later,
        and the installed onnx must know it.
    ids_ndim : int, default 1
        The number of dimensions of the ``ids`` input of a lookup (their sizes are free):
        ``ids_ndim=2`` takes ids of shape ``(batch, n)`` and returns ``(batch, n, D)``. ONNX
        fixes the rank of a model's inputs; bags take 1-D ids.
    scores : {None, "dot", "cosine"}, default None
        Write a scoring model instead of lookups (not with ``pooling`` or ``contrib``): the
        table dequantized by ``DequantizeLinear`` (per row, zero point 128), a float32 ``Gemm``
        with the queries; for cosine, unit vectors: rows stored with the scales that dequantize
        them to unit norm, and the queries divided by their norms in the graph (float64, so
        that no magnitude overflows or vanishes); opset 13 or later.

    Raises
    ------
    ImportError
        onnx is not installed.
    TypeError
        ``table`` is not a :class:`QuantizedEmbedding`, or ``opset``/``ids_ndim`` is not an
        integer.
    ValueError
        ``pooling`` is not None, "sum" or "mean"; ``contrib=True`` with pooling; ``scores`` not
        None, "dot" or "cosine", or given with pooling, ``contrib=True`` or ``ids_ndim``; an
        opset too old for the model or newer than onnx knows; ``ids_ndim`` outside [0, 64], or
        not 1 with pooling; cosine scores of a table with a row whose norm overflows float32.
        Nothing is written.
    OSError
        The folder is missing or not writable, the disk is full, ...; nothing is left at
        ``path`` (a file that was there is unchanged).

    Notes
    -----
    Ids follow rowquant's rule, ``[0, N)``: every negative id is replaced by N before the
    lookup, because ONNX's Gather would count it from the end as numpy does, where rowquant (and
    ``torch.nn.Embedding``) refuse it. With the standard operators onnxruntime then fails the
    run for any id outside ``[0, N)`` (its message quotes N for a negative id); with
    ``contrib=True`` such ids give rows of zeros. The models check nothing else as rowquant
    does: offsets that do not start at 0, decrease or pass ``len(ids)`` are not detected (an
    offset past ``len(ids)`` makes the run fail).

    Scores are summed by the runtime's float32 matrix product, not in rowquant's float64 lanes:
    a score differs from ``table.dot(queries, precision="exact")`` by the float32 rounding of a
    sum of D products, at most about ``D * 2**-24`` times ``sum_j |v_j x_j|`` (onnxruntime's
    blocked GEMM is usually far closer); for cosine the vectors are unit vectors (norms in
    float64, then rounded to float32), so the same bound holds with ``|v_j x_j|`` those of the
    unit vectors, plus a few float32 roundings of their values. The model scores this way for either precision of rowquant's (its
    ``"fast"`` integer kernels are not an ONNX graph). Queries are not checked: NaN gives NaN.

    A table of more than ``INLINE_LIMIT_BYTES`` (1.9 GB; a protobuf message cannot exceed
    2 GiB) is written as ONNX external data: the model at ``path`` refers to its arrays in a file
    ``path + ".data"`` beside it, each array at a 64 KiB-aligned offset. The data file is written
    (atomically) first, then the model. Load such a model from its path, not from bytes.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import onnxruntime as ort
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
    >>> path = os.path.join(tempfile.mkdtemp(), "table.onnx")
    >>> rq.to_onnx(qe, path)
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> session.run(None, {"ids": np.array([1, 0])})[0]
    array([[ 0.503937,  2.      ],
           [ 1.      , -1.      ]], dtype=float32)
    >>> rq.to_onnx(qe, path, pooling="sum")
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> session.run(None, {"ids": np.array([0, 1, 1]), "offsets": np.array([0, 1])})[0]
    array([[ 1.      , -1.      ],
           [ 1.007874,  4.      ]], dtype=float32)
    >>> rq.to_onnx(qe, path, scores="dot")
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> session.run(None, {"queries": np.array([[1.0, 0.5]], np.float32)})[0]
    array([[0.5     , 1.503937]], dtype=float32)
    >>> qe.dot([[1.0, 0.5]])
    array([[0.5     , 1.503937]], dtype=float32)
    """
    opset = _check_arguments(table, pooling, contrib, opset, ids_ndim, scores)
    onnx = _import_onnx()
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than the installed onnx knows ({newest})")
    path = os.fspath(path)
    data_name = os.path.basename(path) + ".data"
    with _atomic.atomic_output(path) as model_fd:  # fails here, before any work, without a folder
        model, pieces = _build(onnx, table, pooling, bool(contrib), opset, int(ids_ndim),
                               data_name, scores)
        if pieces:
            data_path = os.path.join(os.path.dirname(os.path.abspath(path)), data_name)
            with _atomic.atomic_output(data_path) as data_fd:
                for offset, array in pieces:  # external data is little-endian, as raw_data
                    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
                    _atomic.write_all(data_fd, little, offset)
        _atomic.write_all(model_fd, model.SerializeToString(), 0)
