"""ONNX export: lookups bit for bit equal to take() under onnxruntime, bags within summation
tolerance of bag(), what the runtime does with ids rowquant would reject, the contrib operator,
argument errors, atomic writes and external data for large tables."""

import os
import re
import sys

import numpy as np
import pytest
from helpers import (ROW_KINDS, assert_same_bits, bag_error_bound, extreme_vectors, make_row,
                     random_table, unit_cosines)

import rowquant as rq
from rowquant import _atomic, _onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
InvalidArgument = ort.capi.onnxruntime_pybind11_state.InvalidArgument

DIMS = (1, 7, 300)  # 7 and 300 are not multiples of a GatherBlockQuantized block
LOOKUP_OPS = {"Gather", "Cast", "Sub", "Mul"}


def export(table, folder, name="model.onnx", **kwargs):
    """Export, check the file with onnx.checker and return its path."""
    path = os.path.join(folder, name)
    _onnx.to_onnx(table, path, **kwargs)
    onnx.checker.check_model(path)
    return path


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failures provoked below are expected: keep stderr quiet
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(path_or_session, **inputs):
    runner = session(path_or_session) if isinstance(path_or_session, str) else path_or_session
    (output,) = runner.run(None, {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()})
    return output


def awkward_table(dim, seed=0):
    """Rows of every kind the quantization tests use: subnormal and huge scales, exact ties,
    zero rows, one-hot rows..."""
    rng = np.random.default_rng(seed)
    rows = [make_row(kind, dim, rng) for kind in ROW_KINDS for _ in range(4)]
    return rq.quantize(np.stack(rows))


def table_of(rng, n_rows, dim):
    codes, scales = random_table(rng, n_rows, dim)
    return rq.QuantizedEmbedding(codes, scales)


def load(path):
    return onnx.load(path, load_external_data=False)


# --------------------------------------------------------------------------------------- lookups


@pytest.mark.parametrize("contrib", [False, True], ids=["standard", "contrib"])
@pytest.mark.parametrize("dim", DIMS)
def test_lookup_is_bit_exact(tmp_path, dim, contrib):
    qe = awkward_table(dim)
    n_rows = len(qe)
    ids = np.concatenate([np.arange(n_rows), np.random.default_rng(1).integers(0, n_rows, 500)])
    got = run(export(qe, str(tmp_path), contrib=contrib), ids=ids)
    assert_same_bits(got, qe.take(ids))


@pytest.mark.parametrize("contrib", [False, True], ids=["standard", "contrib"])
@pytest.mark.parametrize("shape", [(), (3, 4), (2, 3, 5), (0, 4), (0,)])
def test_lookup_keeps_the_shape_of_ids(tmp_path, shape, contrib):
    qe = awkward_table(7)
    ids = np.random.default_rng(2).integers(0, len(qe), shape)
    path = export(qe, str(tmp_path), contrib=contrib, ids_ndim=len(shape))
    got = run(path, ids=ids)
    assert got.shape == shape + (7,)
    assert_same_bits(got, qe.take(ids.reshape(-1)).reshape(shape + (7,)))
    declared = [d.dim_value or d.dim_param for d in load(path).graph.output[0].type.tensor_type
                .shape.dim]
    assert len(declared) == len(shape) + 1 and declared[-1] == 7


def test_lookup_takes_ids_of_the_rank_it_was_made_for(tmp_path):
    # ONNX fixes the rank of a graph input; onnx.checker rejects inputs of unknown rank
    path = export(awkward_table(7), str(tmp_path))
    with pytest.raises(InvalidArgument, match="rank"):
        run(path, ids=np.zeros((3, 4)))


@pytest.mark.parametrize("opset", [_onnx.MIN_OPSET_LOOKUP, _onnx.DEFAULT_OPSET, 21])
def test_lookup_opsets(tmp_path, opset):
    qe = awkward_table(7)
    path = export(qe, str(tmp_path), opset=opset)
    assert [(o.domain, o.version) for o in load(path).opset_import] == [("", opset)]
    ids = np.arange(len(qe))[::-1]
    assert_same_bits(run(path, ids=ids), qe.take(ids))


def test_lookup_graph_is_gather_cast_sub_mul(tmp_path):
    qe = awkward_table(7)
    model = load(export(qe, str(tmp_path)))
    assert sorted(node.op_type for node in model.graph.node) == sorted(
        ["Less", "Where", "Gather", "Gather", "Cast", "Sub", "Mul"])
    # both gathers read the ids with the negative ones moved past the end
    (where,) = [node for node in model.graph.node if node.op_type == "Where"]
    gathers = [node for node in model.graph.node if node.op_type == "Gather"]
    assert [node.input[1] for node in gathers] == [where.output[0]] * 2
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(arrays["codes"], qe.codes)
    assert_same_bits(arrays["scales"], qe.scales.reshape(-1, 1))
    assert arrays["bias"].dtype == np.float32 and arrays["bias"] == 128
    assert arrays["n_rows"].dtype == np.int64 and arrays["n_rows"] == len(qe)


def test_out_of_range_ids_fail_the_standard_model(tmp_path):
    qe = awkward_table(7)
    n_rows = len(qe)
    session_ = session(export(qe, str(tmp_path)))
    for bad in (n_rows, n_rows + 1000, -n_rows - 1, np.iinfo(np.int64).max,
                np.iinfo(np.int64).min):
        with pytest.raises(InvalidArgument, match="out of data bounds"):
            run(session_, ids=[0, bad])
        with pytest.raises(IndexError):
            qe.take(np.array([0, bad]))


@pytest.mark.parametrize("pooling", [None, "sum", "mean"])
def test_negative_ids_fail_the_standard_model_as_rowquant_refuses_them(tmp_path, pooling):
    """ONNX's Gather counts -1 from the end; rowquant's rule, [0, N), holds in the model."""
    qe = awkward_table(7)
    n_rows = len(qe)
    session_ = session(export(qe, str(tmp_path), pooling=pooling))
    offsets = {} if pooling is None else {"offsets": [0, 1]}
    assert run(session_, ids=[0, n_rows - 1], **offsets).shape[0] == 2
    for bad in (-1, -n_rows, n_rows):
        with pytest.raises(InvalidArgument, match="out of data bounds"):
            run(session_, ids=[0, bad], **offsets)
        with pytest.raises(IndexError, match="out of range"):
            if pooling is None:
                qe.take(np.array([0, bad]))
            else:
                qe.bag(np.array([0, bad]), offsets["offsets"], mode=pooling)


@pytest.mark.parametrize("shape", [(), (2, 3)])
def test_negative_ids_give_zero_rows_with_contrib_like_every_id_outside(tmp_path, shape):
    qe = awkward_table(7)
    n_rows = len(qe)
    ids = np.random.default_rng(6).integers(0, n_rows, shape)
    path = export(qe, str(tmp_path), contrib=True, ids_ndim=len(shape))
    assert_same_bits(run(path, ids=ids), qe.take(ids.reshape(-1)).reshape(shape + (7,)))
    for bad in (-1, -n_rows, n_rows):
        got = run(path, ids=np.full(shape, bad))
        assert_same_bits(got, np.zeros(shape + (7,), np.float32))


def test_contrib_gives_zero_rows_for_out_of_range_ids(tmp_path):
    qe = awkward_table(300)
    n_rows = len(qe)
    ids = np.array([3, n_rows, -n_rows - 1, 10**12, np.iinfo(np.int64).min,
                    np.iinfo(np.int64).max, n_rows - 1])
    got = run(export(qe, str(tmp_path), contrib=True), ids=ids)
    assert_same_bits(got[[0, -1]], qe.take([3, n_rows - 1]))
    assert_same_bits(got[1:-1], np.zeros((5, 300), np.float32))  # +0.0, not an error


@pytest.mark.parametrize("dim", [1, 7, 16, 17, 300])
def test_contrib_model_is_one_gather_block_quantized(tmp_path, dim):
    qe = table_of(np.random.default_rng(3), 9, dim)
    model = load(export(qe, str(tmp_path), contrib=True))
    less, where, node = model.graph.node  # the first two move negative ids past the end
    assert (less.op_type, where.op_type) == ("Less", "Where")
    assert (node.domain, node.op_type) == ("com.microsoft", "GatherBlockQuantized")
    assert node.input[1] == where.output[0]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    block_size = {1: 16, 7: 16, 16: 16, 17: 32, 300: 512}[dim]
    assert attributes == {"bits": 8, "block_size": block_size, "gather_axis": 0,
                          "quantize_axis": 1}
    assert {(o.domain, o.version) for o in model.opset_import} == {
        ("", _onnx.DEFAULT_OPSET), ("com.microsoft", 1)}
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_array_equal(arrays["codes"], qe.codes)  # as they are: no padding
    assert_same_bits(arrays["scales"], qe.scales.reshape(9, 1))
    np.testing.assert_array_equal(arrays["zero_points"], np.full((9, 1), 128, np.uint8))


@pytest.mark.parametrize("contrib", [False, True], ids=["standard", "contrib"])
def test_table_without_rows(tmp_path, contrib):
    qe = rq.quantize(np.zeros((0, 5), np.float32))
    session_ = session(export(qe, str(tmp_path), contrib=contrib))
    assert run(session_, ids=np.zeros(0)).shape == (0, 5)
    if contrib:
        assert_same_bits(run(session_, ids=[0, -1]), np.zeros((2, 5), np.float32))
    else:
        with pytest.raises(InvalidArgument, match="out of data bounds"):
            run(session_, ids=[0])


@pytest.mark.parametrize("contrib", [False, True], ids=["standard", "contrib"])
def test_table_of_width_zero(tmp_path, contrib):
    qe = rq.quantize(np.zeros((4, 0), np.float32))
    got = run(export(qe, str(tmp_path), contrib=contrib), ids=[3, 0, 1])
    assert got.shape == (3, 0) and got.dtype == np.float32


# ------------------------------------------------------------------------------------------ bags

# Rows that dequantize to small exact values (scales 1 and 0.5): every bag below is exact.
EXACT = rq.QuantizedEmbedding(np.array([[129, 130], [126, 128], [255, 1]], np.uint8),
                              np.array([1, 1, 0.5], np.float32))


@pytest.mark.parametrize("mode, expected", [
    ("sum", [[-1, 2], [0, 0], [64.5, -61.5]]),
    ("mean", [[-0.5, 1], [0, 0], [32.25, -30.75]]),
])
def test_bags_by_hand(tmp_path, mode, expected):
    got = run(export(EXACT, str(tmp_path), pooling=mode), ids=[0, 1, 2, 0], offsets=[0, 2, 2])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array(expected, np.float32))


def bag_layouts(rng, n_rows):
    """(ids, offsets) pairs: fixed awkward layouts, then random ones with many empty bags and
    repeated ids."""
    fixed = [[3, 0, 1, 5, 0, 2], [0, 4, 2, 0], [0, 0, 3], [4, 0, 0], [7], [0], [0, 0, 0], [],
             [1] * 9, [40]]
    sizes = fixed + [list(rng.choice([0, 0, 1, 2, 5, 13], rng.integers(1, 12)))
                     for _ in range(60)]
    for bag_sizes in sizes:
        n_ids = int(sum(bag_sizes))
        pool = rng.integers(0, n_rows, rng.integers(1, 4))  # few distinct ids: many repeats
        ids = rng.choice(pool, n_ids) if rng.random() < 0.5 else rng.integers(0, n_rows, n_ids)
        offsets = np.concatenate([[0], np.cumsum(bag_sizes)[:-1]]).astype(np.int64)
        yield ids.astype(np.int64), offsets[: len(bag_sizes)]


def assert_bags_close(got, expected, qe, ids, offsets, mode):
    """Within the summation tolerance: the kernels' error (helpers.bag_error_bound) plus that of
    ONNX Runtime's float32 sum of the dequantized rows, at most 2 n 2**-24 sum_k |x_k| for n rows
    x_k (per column); mean adds one rounding."""
    assert got.dtype == np.float32 and got.shape == expected.shape
    ends = np.append(offsets[1:], len(ids))
    for bag, (start, end) in enumerate(zip(offsets, ends)):
        rows = qe.take(ids[start:end]).astype(np.float64)
        size = max(end - start, 1)
        bound = 2 * size * 2.0**-24 * np.abs(rows).sum(axis=0) + bag_error_bound(
            np.abs(qe.scales[ids[start:end]].astype(np.float64)).sum(), size)
        if mode == "mean":
            bound = bound / size + 2.0**-23 * np.abs(expected[bag])
        with np.errstate(invalid="ignore"):  # inf - inf where both overflowed
            error = np.abs(got[bag].astype(np.float64) - expected[bag])
        close = (got[bag] == expected[bag]) | (error <= bound)
        assert close.all(), (bag, got[bag], expected[bag], bound)


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("dim", DIMS)
def test_bags_match_rowquant(tmp_path, mode, dim):
    rng = np.random.default_rng(dim)
    qe = table_of(rng, 50, dim)
    session_ = session(export(qe, str(tmp_path), pooling=mode))
    for ids, offsets in bag_layouts(rng, len(qe)):
        got = run(session_, ids=ids, offsets=offsets)
        assert got.shape == (len(offsets), dim)
        expected = qe.bag(ids, offsets, mode=mode)
        assert_bags_close(got, expected, qe, ids, offsets, mode)
        empty = offsets == np.append(offsets[1:], len(ids))
        assert_same_bits(got[empty], np.zeros((empty.sum(), dim), np.float32))


@pytest.mark.parametrize("opset", [_onnx.MIN_OPSET_POOLING, 21])
def test_bag_opsets(tmp_path, opset):
    path = export(EXACT, str(tmp_path), pooling="mean", opset=opset)
    got = run(path, ids=[0, 1, 2, 0], offsets=[0, 2, 2])
    np.testing.assert_array_equal(got, np.array([[-0.5, 1], [0, 0], [32.25, -30.75]], np.float32))


def test_bag_graph_scales_with_ids_plus_bags(tmp_path):
    model = load(export(EXACT, str(tmp_path), pooling="mean"))
    ops = {node.op_type for node in model.graph.node}
    # no one-hot (bags x ids x dim) product, and no ScatterND: onnxruntime's CPU kernel adds
    # concurrently into the same row when indices repeat
    assert ops.isdisjoint({"MatMul", "Gemm", "OneHot", "Equal", "ScatterND"})
    assert "ScatterElements" in ops
    # one comparison, of each id with 0 (the negative ones are refused)
    (less,) = [node for node in model.graph.node if node.op_type == "Less"]
    assert less.input[0] == "ids"
    assert [i.name for i in model.graph.input] == ["ids", "offsets"]
    assert [o.name for o in model.graph.output] == ["pooled"]


def test_bag_table_without_rows(tmp_path):
    qe = rq.quantize(np.zeros((0, 3), np.float32))
    got = run(export(qe, str(tmp_path), pooling="mean"), ids=np.zeros(0), offsets=[0, 0])
    assert_same_bits(got, np.zeros((2, 3), np.float32))


def test_bag_offset_past_the_ids_fails(tmp_path):
    path = export(EXACT, str(tmp_path), pooling="sum")
    with pytest.raises(InvalidArgument, match="out of data bounds"):
        run(path, ids=[0, 1], offsets=[0, 3])


# ------------------------------------------------------------------------------------ scores


def score_bound(table, queries, metric):
    """How far a float32 GEMM's scores may be from ``table.dot(queries, precision="exact")``:
    recursive float32 summation of D products is within gamma = (D + 2) 2**-24 of the exact sum
    of |v_j x_j| (blocked orders do better), rowquant's score within 2**-24 relative; cosine adds
    a few float32 roundings of norms and products relative to the score."""
    dim = table.shape[1]
    exact = table.dot(queries, metric=metric).astype(np.float64)
    values = np.abs(table.dequantize().astype(np.float64))
    bound = (dim + 2) * 2.0**-24 * (np.abs(queries.astype(np.float64)) @ values.T)
    if metric == "cosine":
        norms = table.norms().astype(np.float64)
        query_norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        inverse = np.outer(np.divide(1, query_norms, out=np.zeros_like(query_norms),
                                     where=query_norms > 0),
                           np.divide(1, norms, out=np.zeros_like(norms), where=norms > 0))
        bound = bound * inverse + 8 * 2.0**-24 * np.abs(exact)
    return exact, bound + 2.0**-24 * np.abs(exact)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("dim", DIMS)
def test_scores_within_float32_rounding_of_dot(tmp_path, dim, metric):
    rng = np.random.default_rng(dim)
    qe = table_of(rng, 50, dim)  # magnitudes over 40 binades, one zero row
    path = export(qe, str(tmp_path), scores=metric)
    assert {n.op_type for n in load(path).graph.node} >= {"DequantizeLinear", "Gemm"}
    assert {t.name: t.data_type for t in load(path).graph.initializer}["codes"] == \
        onnx.TensorProto.UINT8
    runner = session(path)
    queries = rng.standard_normal((9, dim)).astype(np.float32)
    queries[3] = 0  # a zero query scores 0
    (got,) = runner.run(None, {"queries": queries})
    assert got.shape == (9, 50) and got.dtype == np.float32
    exact, bound = score_bound(qe, queries, metric)
    assert (np.abs(got - exact) <= bound).all()
    # and the numpy float32 product of the dequantized table, within the same rounding twice
    float32 = queries @ qe.dequantize().T
    if metric == "dot":
        assert (np.abs(got - float32) <= 2 * bound).all()
    assert (got[3] == 0).all()
    if metric == "cosine":
        assert (got[:, qe.scales == 0] == 0).all()
    (none,) = runner.run(None, {"queries": np.zeros((0, dim), np.float32)})
    assert none.shape == (0, 50)


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("shape", [(5, 0), (0, 4), (0, 0)])
def test_scores_of_tables_without_rows_or_columns(tmp_path, shape, metric):
    qe = rq.quantize(np.zeros(shape, np.float32))
    queries = np.ones((3, shape[1]), np.float32)
    (got,) = session(export(qe, str(tmp_path), scores=metric)).run(None, {"queries": queries})
    assert_same_bits(got, qe.dot(queries, metric=metric))


def test_scores_metadata_and_external_data(tmp_path, monkeypatch):
    qe = table_of(np.random.default_rng(6), 40, 7)
    model = load(export(qe, str(tmp_path), "inline.onnx", scores="cosine"))
    props = {p.key: p.value for p in model.metadata_props}
    assert (props["scores"], props["pooling"], props["operator"]) == (
        "cosine", "none", "DequantizeLinear, Gemm")
    monkeypatch.setattr(_onnx, "INLINE_LIMIT_BYTES", 0)
    path = export(qe, str(tmp_path), scores="cosine")
    external = sorted(t.name for t in load(path).graph.initializer
                      if t.data_location == onnx.TensorProto.EXTERNAL)
    assert external == ["codes", "unit_scales"]
    queries = np.random.default_rng(7).standard_normal((3, 7)).astype(np.float32)
    (got,) = session(path).run(None, {"queries": queries})
    exact, bound = score_bound(qe, queries, "cosine")
    assert (np.abs(got - exact) <= bound).all()


def test_cosine_scores_refuse_a_norm_beyond_float32(tmp_path):
    big = np.full((2, 4), 3e38, np.float32)
    with pytest.raises(ValueError, match="row 0's norm is beyond float32's range"):
        _onnx.to_onnx(rq.quantize(big), os.path.join(tmp_path, "model.onnx"), scores="cosine")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------- metadata, big tables


@pytest.mark.parametrize("pooling, contrib, operator", [
    (None, False, "Gather"),
    ("sum", False, "Gather"),
    ("mean", False, "Gather"),
    (None, True, "com.microsoft.GatherBlockQuantized"),
])
def test_metadata(tmp_path, pooling, contrib, operator):
    qe = table_of(np.random.default_rng(4), 6, 5)
    model = load(export(qe, str(tmp_path), pooling=pooling, contrib=contrib))
    assert {p.key: p.value for p in model.metadata_props} == {
        "format": "rowquant", "version": "1", "scheme": "rowwise-symmetric-u8", "bias": "128",
        "rows": "6", "dim": "5", "pooling": pooling or "none", "operator": operator,
    }
    assert (model.producer_name, model.producer_version) == ("rowquant", rq.__version__)


@pytest.mark.parametrize("pooling, contrib", [(None, False), (None, True), ("sum", False)])
def test_large_tables_go_to_external_data(tmp_path, monkeypatch, pooling, contrib):
    qe = awkward_table(300)
    n_rows = len(qe)
    table_bytes = qe.codes.nbytes + qe.scales.nbytes + (n_rows if contrib else 0)
    monkeypatch.setattr(_onnx, "INLINE_LIMIT_BYTES", table_bytes)  # just fits: inline
    export(qe, str(tmp_path), "inline.onnx", pooling=pooling, contrib=contrib)
    monkeypatch.setattr(_onnx, "INLINE_LIMIT_BYTES", table_bytes - 1)
    path = export(qe, str(tmp_path), pooling=pooling, contrib=contrib)
    assert sorted(os.listdir(tmp_path)) == ["inline.onnx", "model.onnx", "model.onnx.data"]
    assert os.path.getsize(path) < 4096 < os.path.getsize(os.path.join(tmp_path, "inline.onnx"))

    external = [t for t in load(path).graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL]
    assert sorted(t.name for t in external) == sorted(
        ["codes", "scales"] + (["zero_points"] if contrib else []))
    for tensor in external:
        entries = {e.key: e.value for e in tensor.external_data}
        assert entries["location"] == "model.onnx.data"
        assert int(entries["offset"]) % _onnx.EXTERNAL_ALIGNMENT == 0

    ids = np.random.default_rng(5).integers(0, n_rows, 40)
    if pooling is None:
        assert_same_bits(run(path, ids=ids), qe.take(ids))
    else:
        offsets = np.array([0, 10, 10, 33])
        got = run(path, ids=ids, offsets=offsets)
        expected = qe.bag(ids, offsets, mode=pooling)
        assert_bags_close(got, expected, qe, ids, offsets, pooling)


# ------------------------------------------------------------------------ errors, atomic writes


@pytest.mark.parametrize("kwargs, error, message", [
    ({"pooling": "max"}, ValueError, "pooling must be None, 'sum' or 'mean', got 'max'"),
    ({"pooling": "SUM"}, ValueError, "got 'SUM'"),
    ({"pooling": 1}, ValueError, "got 1"),
    ({"pooling": "sum", "contrib": True}, ValueError, "contrib=True exports lookups only"),
    ({"contrib": "yes"}, TypeError, "contrib must be a bool"),
    ({"opset": 12}, ValueError, "opset 12 is too old: lookups need opset 13"),
    ({"opset": 15, "pooling": "mean"}, ValueError, "pooling='mean' needs opset 16"),
    ({"opset": "17"}, TypeError, "opset must be an integer"),
    ({"opset": 10**6}, ValueError, "opset 1000000 is newer than the installed onnx knows"),
    ({"opset": True}, TypeError, "opset must be an integer"),
    ({"ids_ndim": -1}, ValueError, "ids_ndim must be in [0, 64], got -1"),
    ({"ids_ndim": 65}, ValueError, "got 65"),
    ({"ids_ndim": 2, "pooling": "sum"}, ValueError, "bags take 1-D ids"),
    ({"ids_ndim": 1.0}, TypeError, "ids_ndim must be an integer"),
    ({"scores": "l2"}, ValueError, "scores must be None, 'dot' or 'cosine', got 'l2'"),
    ({"scores": True}, ValueError, "got True"),
    ({"scores": "dot", "pooling": "sum"}, ValueError, "pooling='sum' is for models of lookups"),
    ({"scores": "dot", "contrib": True}, ValueError, "contrib=True is for models of lookups"),
    ({"scores": "cosine", "ids_ndim": 2}, ValueError, "a scoring model takes queries"),
    ({"scores": "dot", "opset": 12}, ValueError, "opset 12 is too old: scores need opset 13"),
])
def test_bad_arguments_raise_before_anything_is_written(tmp_path, kwargs, error, message):
    path = os.path.join(tmp_path, "model.onnx")
    with pytest.raises(error, match=re.escape(message)):
        _onnx.to_onnx(EXACT, path, **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("table", [EXACT.codes, (EXACT.codes, EXACT.scales), None])
def test_table_must_be_a_quantized_embedding(tmp_path, table):
    with pytest.raises(TypeError, match="table must be a rowquant.QuantizedEmbedding, got"):
        _onnx.to_onnx(table, os.path.join(tmp_path, "model.onnx"))
    assert os.listdir(tmp_path) == []


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        _onnx.to_onnx(EXACT, os.path.join(tmp_path, "missing", "model.onnx"))
    assert os.listdir(tmp_path) == []


def test_without_onnx(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'rowquant\[onnx\]'"):
        _onnx.to_onnx(EXACT, os.path.join(tmp_path, "model.onnx"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("external", [False, True])
def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch, external):
    path = os.path.join(tmp_path, "model.onnx")
    with open(path, "wb") as file:
        file.write(b"the previous model")

    def disk_full(fd, data, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic, "write_all", disk_full)
    if external:
        monkeypatch.setattr(_onnx, "INLINE_LIMIT_BYTES", 0)
    with pytest.raises(OSError, match="No space left"):
        _onnx.to_onnx(EXACT, path)
    assert os.listdir(tmp_path) == ["model.onnx"]
    with open(path, "rb") as file:
        assert file.read() == b"the previous model"


def test_export_replaces_a_file(tmp_path):
    path = os.path.join(tmp_path, "model.onnx")
    with open(path, "wb") as file:
        file.write(b"the previous model")
    export(EXACT, str(tmp_path))
    assert_same_bits(run(path, ids=[2]), EXACT.take([2]))
    assert os.listdir(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize("dim", [1, 7, 64])
def test_cosine_scores_of_vectors_whose_squares_leave_float32(tmp_path, dim):
    qe = rq.quantize(extreme_vectors(dim, seed=dim))
    queries = extreme_vectors(dim, seed=dim + 1)
    (got,) = session(export(qe, str(tmp_path), scores="cosine")).run(None, {"queries": queries})
    exact, bound = unit_cosines(qe.dequantize(), queries)
    assert np.isfinite(got).all()
    assert (np.abs(got - exact) <= bound).all()
    # a vector and itself: cosine 1 at every magnitude (within the bound)
    (own,) = session(export(qe, str(tmp_path), "own.onnx", scores="cosine")).run(
        None, {"queries": qe.dequantize()})
    assert np.allclose(np.diag(own), 1, rtol=0, atol=(dim + 9) * 2.0**-24)
