"""The scores operator (torch.ops.rowquant.scores) and rowquant.torch.QuantizedLogits, the tied
output layer: QuantizedEmbedding.dot's bits under eager calls and every capture (trace, script,
compile(fullgraph=True), export), tying to an embedding module's buffers, from_float, errors,
and the ONNX exports (both exporters) under onnxruntime within float32 GEMM rounding."""

import os
import re
import warnings

import numpy as np
import pytest
from helpers import assert_same_bits, capture, extreme_vectors, random_table, unit_cosines

import rowquant as rq

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rowquant.torch as rq_torch  # noqa: E402
from rowquant.torch import QuantizedEmbedding, QuantizedLogits  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]*` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
]

ROWS, DIM = 60, 11
# moderate magnitudes over 40 binades, and a zero row (its cosine is 0)
TABLE = rq.QuantizedEmbedding(*random_table(np.random.default_rng(0), ROWS, DIM))
METRICS = ("dot", "cosine")
PRECISIONS = ("exact", "fast")


def hidden(*shape, seed=0, dtype=torch.float32):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape)).to(dtype)


def expected_scores(h, metric="dot", precision="exact", table=TABLE):
    """QuantizedEmbedding.dot on hidden flattened to (B, D), back to hidden's shape."""
    queries = h.float().numpy().reshape(-1, table.shape[1])
    scores = table.dot(queries, metric=metric, precision=precision)
    return scores.reshape(*h.shape[:-1], table.shape[0])


def buffers(table=TABLE):
    return torch.from_numpy(table.codes.copy()), torch.from_numpy(table.scales.copy())


# ----------------------------------------------------------------------------------- operator


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", [(DIM,), (1, DIM), (7, DIM), (2, 3, DIM), (0, DIM),
                                   (2, 0, DIM)])
def test_operator_is_dot_bit_for_bit(shape, metric, precision):
    codes, scales = buffers()
    h = hidden(*shape)
    got = torch.ops.rowquant.scores(codes, scales, h, metric, precision)
    assert got.dtype == torch.float32 and got.shape == (*shape[:-1], ROWS)
    assert_same_bits(got.numpy(), expected_scores(h, metric, precision))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_operator_reads_other_float_dtypes_as_float32(dtype):
    codes, scales = buffers()
    h = hidden(4, DIM, dtype=dtype)
    got = torch.ops.rowquant.scores(codes, scales, h, "dot", "exact")
    assert_same_bits(got.numpy(), TABLE.dot(h.float().numpy()))


def test_operator_on_tables_without_rows_or_columns():
    empty = rq.quantize(np.zeros((0, DIM), np.float32))
    assert torch.ops.rowquant.scores(*buffers(empty), hidden(3, DIM), "cosine",
                                     "exact").shape == (3, 0)
    narrow = rq.quantize(np.zeros((5, 0), np.float32))
    got = torch.ops.rowquant.scores(*buffers(narrow), torch.zeros(2, 0), "dot", "fast")
    assert_same_bits(got.numpy(), np.zeros((2, 5), np.float32))


def test_operator_reads_the_table_in_place():
    """No copy of the table: scores follow a write through a numpy view of the buffers' memory
    (which bypasses torch's version counter, so use a fresh pair of tensors to be checked)."""
    codes, scales = buffers()
    h = hidden(2, DIM)
    before = torch.ops.rowquant.scores(codes, scales, h, "dot", "exact")
    scales.numpy()[3] *= 2  # torch's own memory, written by numpy
    after = torch.ops.rowquant.scores(codes, scales, h, "dot", "exact")
    doubled = TABLE.scales.copy()
    doubled[3] *= 2
    assert_same_bits(after.numpy(), rq.QuantizedEmbedding(TABLE.codes, doubled).dot(h.numpy()))
    assert not torch.equal(before[:, 3], after[:, 3])


def test_cosine_norms_are_computed_once_per_table_version(monkeypatch):
    from rowquant import _backend

    calls = []
    real = _backend.kernels.norms

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(_backend.kernels, "norms", counting)
    module = QuantizedLogits(TABLE, metric="cosine")
    for seed in range(4):
        module(hidden(3, DIM, seed=seed))
    assert len(calls) == 1
    with torch.no_grad():
        module.scales[7] *= 2  # in place: a new version, checked and normed again
    doubled = TABLE.scales.copy()
    doubled[7] *= 2
    expected = rq.QuantizedEmbedding(TABLE.codes, doubled).dot(hidden(3, DIM).numpy(),
                                                                metric="cosine")
    del calls[1:]  # that table's own norms
    assert_same_bits(module(hidden(3, DIM)).numpy(), expected)
    assert len(calls) == 2


def test_the_kept_norms_go_with_the_table():
    import gc

    from rowquant import _torch_ops

    codes, scales = buffers()
    torch.ops.rowquant.scores(codes, scales, hidden(DIM), "cosine", "exact")
    key = (id(codes), id(scales))
    assert "norms" in _torch_ops._checked[key][4]
    del codes
    gc.collect()
    assert key not in _torch_ops._checked


# ------------------------------------------------------------------------------------- module


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("metric", METRICS)
def test_module_is_dot_bit_for_bit(metric, precision):
    module = QuantizedLogits(TABLE, metric=metric, precision=precision)
    for h in (hidden(DIM), hidden(5, DIM), hidden(2, 4, DIM)):
        assert_same_bits(module(h).numpy(), expected_scores(h, metric, precision))


def test_bias_is_added_to_the_float32_scores():
    bias = hidden(ROWS, seed=5, dtype=torch.float64)
    module = QuantizedLogits(TABLE, bias=bias)
    assert module.bias.dtype == torch.float32 and module.bias.data_ptr() != bias.data_ptr()
    h = hidden(3, DIM)
    assert_same_bits(module(h).numpy(), TABLE.dot(h.numpy()) + bias.float().numpy())
    half = module.half()
    assert half.bias.dtype == torch.float32  # the cast is of the answer only
    assert torch.equal(half(h), torch.from_numpy(TABLE.dot(h.numpy()) + bias.float().numpy())
                       .half())


def test_module_answers_in_the_dtype_cast_to():
    module = QuantizedLogits(TABLE).to(torch.bfloat16)
    assert module.codes.dtype == torch.uint8 and module.scales.dtype == torch.float32
    got = module(hidden(2, DIM, dtype=torch.bfloat16))
    assert got.dtype == torch.bfloat16
    expected = TABLE.dot(hidden(2, DIM, dtype=torch.bfloat16).float().numpy())
    assert torch.equal(got, torch.from_numpy(expected).bfloat16())


def test_tying_to_an_embedding_module_shares_the_table():
    embedding = QuantizedEmbedding(TABLE)
    head = QuantizedLogits(embedding, metric="cosine")
    assert head.codes is embedding.codes and head.scales is embedding.scales
    assert head.codes.data_ptr() == embedding.codes.data_ptr()

    class TiedModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = QuantizedEmbedding(TABLE)
            self.head = QuantizedLogits(self.embed)

        def forward(self, ids):
            return self.head(self.embed(ids))

    model = TiedModel()
    ids = torch.tensor([[3, 1], [4, 1]])
    rows = TABLE.take(ids.numpy())
    assert_same_bits(model(ids).numpy(), TABLE.dot(rows.reshape(-1, DIM)).reshape(2, 2, ROWS))
    # one table: a change through the embedding is what the head scores
    with torch.no_grad():
        model.embed.scales[5] = 0.0
    assert bool((model.head(torch.ones(DIM))[5] == 0).item())
    # a state dict round trip (the table under both names) keeps the tie
    state = model.state_dict()
    assert state["embed.codes"].data_ptr() == state["head.codes"].data_ptr()
    other = TiedModel()
    other.load_state_dict(state)
    assert other.head.codes is other.embed.codes
    assert torch.equal(other(ids), model(ids))
    # the tied head answers in the embedding's dtype unless told otherwise
    assert QuantizedLogits(QuantizedEmbedding(TABLE).half())(hidden(DIM)).dtype == torch.float16
    assert QuantizedLogits(embedding.half(), output_dtype=torch.float32).output_dtype == \
        torch.float32


def test_from_float_linear_keeps_the_bias_and_dtype():
    torch.manual_seed(0)
    linear = nn.Linear(DIM, ROWS)
    head = QuantizedLogits.from_float(linear)
    assert repr(head) == f"QuantizedLogits(in_features={DIM}, out_features={ROWS}, bias=True)"
    table = rq.quantize(linear.weight.detach().numpy())
    assert torch.equal(head.codes, torch.from_numpy(table.codes.copy()))
    h = hidden(6, DIM)
    assert_same_bits(head(h).numpy(), table.dot(h.numpy()) + linear.bias.detach().numpy())
    # within half a step of each weight of the float layer
    error = (head(h) - linear(h)).abs().detach()
    bound = (head.scales.max() / 2) * h.abs().sum(-1, keepdim=True) * (1 + 1e-5) + 1e-6
    assert bool((error <= bound).all())
    no_bias = QuantizedLogits.from_float(nn.Linear(DIM, ROWS, bias=False).half())
    assert no_bias.bias is None and no_bias.output_dtype == torch.float16


def test_from_float_embedding_round_trip():
    embedding = nn.Embedding(ROWS, DIM)
    head = QuantizedLogits.from_float(embedding, metric="cosine", precision="fast")
    assert repr(head) == (f"QuantizedLogits(in_features={DIM}, out_features={ROWS}, "
                          "metric='cosine', precision='fast')")
    table = rq.quantize(embedding.weight.detach().numpy())
    h = hidden(3, DIM)
    assert_same_bits(head(h).numpy(), table.dot(h.numpy(), metric="cosine", precision="fast"))
    # the rows of an input embedding are nearest themselves under cosine
    exact = QuantizedLogits.from_float(embedding, metric="cosine")
    ids = torch.arange(ROWS)
    assert torch.equal(exact(QuantizedEmbedding.from_float(embedding)(ids)).argmax(-1), ids)


def test_construction_errors():
    with pytest.raises(TypeError, match="table must be a rowquant.QuantizedEmbedding"):
        QuantizedLogits(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="metric must be 'dot' or 'cosine', got 'l2'"):
        QuantizedLogits(TABLE, metric="l2")
    with pytest.raises(ValueError, match="precision must be 'exact' or 'fast', got 'int8'"):
        QuantizedLogits(TABLE, precision="int8")
    with pytest.raises(ValueError, match=rf"bias has shape \(3,\).*\({ROWS},\)"):
        QuantizedLogits(TABLE, bias=torch.zeros(3))
    with pytest.raises(TypeError, match="bias must be a floating-point tensor"):
        QuantizedLogits(TABLE, bias=torch.zeros(ROWS, dtype=torch.int64))
    with pytest.raises(TypeError, match="output_dtype must be a floating-point"):
        QuantizedLogits(TABLE, output_dtype=torch.int32)
    with pytest.raises(TypeError, match="expected a torch.nn.Embedding, got Conv1d"):
        QuantizedLogits.from_float(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="max_norm"):
        QuantizedLogits.from_float(nn.Embedding(4, 2, max_norm=1.0))
    broken = nn.Linear(2, 3)
    with torch.no_grad():
        broken.weight[1, 0] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        QuantizedLogits.from_float(broken)


def test_forward_errors():
    module = QuantizedLogits(TABLE)
    with pytest.raises(ValueError, match=f"hidden has 7 values in its last dimension but the "
                                         f"table's rows have {DIM}"):
        module(hidden(2, 7))
    with pytest.raises(ValueError, match="got a 0-d tensor"):
        module(torch.tensor(1.0))
    h = hidden(2, 3, DIM, dtype=torch.float64)
    h[1, 2, 4] = float("nan")
    with pytest.raises(ValueError, match=r"hidden\[1, 2, 4\] is nan: hidden must be finite"):
        module(h)
    h[1, 2, 4] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"hidden\[1, 2, 4\] is 1e\+300: .*float32's range"):
        module(h)
    with pytest.raises(TypeError, match="queries must hold real numbers, got dtype bool"):
        module(torch.ones(DIM, dtype=torch.bool))
    with torch.no_grad():
        module.scales[2] = -1.0
    with pytest.raises(ValueError, match=r"scales\[2\] = .*-1.* is not a valid scale"):
        module(hidden(DIM))


# ---------------------------------------------------------------------------------- captures


MODULES = {
    "dot": lambda: QuantizedLogits(TABLE),
    "cosine fast": lambda: QuantizedLogits(TABLE, metric="cosine", precision="fast"),
    "bias, float16": lambda: QuantizedLogits(TABLE, bias=hidden(ROWS, seed=9)).half(),
    "tied": lambda: QuantizedLogits(QuantizedEmbedding(TABLE), metric="cosine"),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("path", ["trace", "script", "compile", "export"])
def test_captured_modules_run_the_operator_on_new_hidden(path, name):
    module = MODULES[name]()
    captured_with = (hidden(2, 3, DIM),)
    captured = capture(path, module, captured_with, fixed_last_axes=1)
    if path != "compile":
        text = captured.code if path == "export" else str(captured.inlined_graph)
        assert re.search(r"rowquant[.:]+scores", text)
    for args in (captured_with, (hidden(5, 1, DIM, seed=1),), (hidden(1, 7, DIM, seed=2),)):
        got, expected = captured(*args), module(*args)
        assert got.dtype == module.output_dtype and got.shape == expected.shape
        assert torch.equal(got, expected)
    h = hidden(4, 2, DIM, seed=3)
    assert_same_bits(captured(h).float().numpy(), module(h).float().numpy())
    if name == "cosine fast":
        assert_same_bits(captured(h).numpy(), expected_scores(h, "cosine", "fast"))


@pytest.mark.parametrize("path", ["trace", "script", "compile"])
def test_captured_modules_refuse_bad_hidden(path):
    captured = capture(path, QuantizedLogits(TABLE), (hidden(2, DIM),), fixed_last_axes=1)
    error = RuntimeError if path in ("trace", "script") else ValueError
    bad = hidden(3, DIM)
    bad[2, 1] = float("inf")
    with pytest.raises(error, match=r"hidden\[2, 1\] is inf"):
        captured(bad)
    if path != "trace":  # a trace records the shapes it saw
        with pytest.raises((error, torch._dynamo.exc.TorchRuntimeError)
                           if path == "compile" else error, match="last dimension"):
            captured(hidden(3, DIM + 1))


# ------------------------------------------------------------------------------------------ ONNX

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# Both the runtime's float32 GEMM and numpy's float32 product sum D products in float32: each
# differs from the exact sum by at most gamma * sum_j |v_j x_j| (recursive summation's bound,
# gamma = D u / (1 - D u) with u = 2**-24; blocked and pairwise orders do better). rowquant's
# exact precision is within 2**-24 relative of the exact sum (one rounding; its float64 lanes add
# a negligible D 2**-52). Cosine adds a few float32 roundings of the norms and the products.
GAMMA = (DIM + 2) * 2.0**-24


def absolute_sums(h):
    """sum_j |v_ij x_bj| in float64, (B, N), for the queries flattened to (B, D)."""
    values = np.abs(TABLE.dequantize().astype(np.float64))
    return np.abs(h.reshape(-1, DIM).astype(np.float64)) @ values.T


def assert_within_gemm_rounding(got, h, metric, bias=None):
    """``got`` (B, N) against qe.dot(precision="exact") and against numpy's float32 product of
    the dequantized table, both within the float32 summation bound."""
    queries = h.reshape(-1, DIM)
    exact = TABLE.dot(queries, metric=metric).astype(np.float64)
    numpy32 = (queries @ TABLE.dequantize().T).astype(np.float64)
    bound = GAMMA * absolute_sums(queries)
    if metric == "cosine":
        row_norms = TABLE.norms().astype(np.float64)
        query_norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        inverse = np.outer(np.where(query_norms > 0, 1 / np.where(query_norms > 0, query_norms,
                                                                  1), 0),
                           np.where(row_norms > 0, 1 / np.where(row_norms > 0, row_norms, 1), 0))
        bound = bound * inverse + 8 * 2.0**-24 * np.abs(exact)
        numpy32 = numpy32 * inverse
    if bias is not None:
        exact = exact + bias
        numpy32 = numpy32 + bias
        bound = bound + 2.0**-24 * np.abs(exact)
    got = got.reshape(exact.shape).astype(np.float64)
    assert (np.abs(got - exact) <= bound + 2.0**-24 * np.abs(exact)).all()
    assert (np.abs(got - numpy32) <= 2 * bound + 2.0**-24 * np.abs(exact)).all()


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def export(exporter, module, args, path):
    if exporter == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates this exporter
            torch.onnx.export(module, args, path, dynamo=False, opset_version=17,
                              input_names=["hidden"],
                              dynamic_axes={"hidden": list(range(args[0].dim() - 1))})
    else:
        pytest.importorskip("onnxscript")
        dims = ({axis: torch.export.Dim.AUTO for axis in range(args[0].dim() - 1)},)
        torch.onnx.export(module.eval(), args, path, dynamo=True, dynamic_shapes=dims,
                          verbose=False, custom_translation_table=rq_torch.onnx_translation_table())
    onnx.checker.check_model(path)
    return path


def table_stays_uint8(path):
    """The model holds the codes as uint8 (N, D): the exporters did not fold the dequantized
    float table into an initializer."""
    initializers = {i.name: i for i in onnx.load(path).graph.initializer}
    shapes = {tuple(i.dims): i.data_type for i in initializers.values()}
    return shapes.get((ROWS, DIM)) == onnx.TensorProto.UINT8 and all(
        tuple(i.dims) != (ROWS, DIM) or i.data_type == onnx.TensorProto.UINT8
        for i in initializers.values())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("metric, precision", [("dot", "exact"), ("cosine", "exact"),
                                               ("dot", "fast")])
def test_onnx_export_scores_as_dot_within_float32_rounding(tmp_path, exporter, metric,
                                                            precision):
    module = QuantizedLogits(TABLE, metric=metric, precision=precision)
    path = export(exporter, module, (hidden(2, 3, DIM),), str(tmp_path / "m.onnx"))
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"DequantizeLinear", "Gemm"} <= ops and "MatMul" not in ops
    assert table_stays_uint8(path)
    runner = session(path)
    for shape, seed in (((2, 3, DIM), 0), ((5, 1, DIM), 1), ((1, 9, DIM), 2)):
        h = hidden(*shape, seed=seed).numpy()
        got = runner.run(None, {runner.get_inputs()[0].name: h})[0]
        assert got.shape == (*shape[:-1], ROWS) and got.dtype == np.float32
        assert_within_gemm_rounding(got, h, metric)
    # the zero row's cosine is 0, as rowquant's
    if metric == "cosine":
        zero_row = int(np.flatnonzero(TABLE.scales == 0)[0])
        assert (got[..., zero_row] == 0).all()


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_export_of_a_tied_model_with_bias(tmp_path, exporter):
    class TiedModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = QuantizedEmbedding(TABLE)
            self.head = QuantizedLogits(self.embed, bias=hidden(ROWS, seed=4))

        def forward(self, hidden_states):
            return self.head(hidden_states)

    model = TiedModel()
    path = export(exporter, model, (hidden(3, DIM),), str(tmp_path / "m.onnx"))
    assert table_stays_uint8(path)
    runner = session(path)
    h = hidden(6, DIM, seed=7).numpy()
    got = runner.run(None, {runner.get_inputs()[0].name: h})[0]
    assert_within_gemm_rounding(got, h, "dot", bias=model.head.bias.numpy().astype(np.float64))


def test_dynamo_export_without_the_translation_table_fails_loudly(tmp_path):
    pytest.importorskip("onnxscript")
    path = str(tmp_path / "m.onnx")
    with pytest.raises(torch.onnx.OnnxExporterError) as raised:
        torch.onnx.export(QuantizedLogits(TABLE).eval(), (hidden(2, DIM),), path, dynamo=True,
                          verbose=False)
    assert "rowquant.scores" in str(raised.value) + str(raised.value.__cause__)
    assert not os.path.exists(path)


def test_torchscript_export_needs_opset_13(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(torch.onnx.errors.UnsupportedOperatorError, match="opset version 12"):
            torch.onnx.export(QuantizedLogits(TABLE), (hidden(2, DIM),),
                              str(tmp_path / "m.onnx"), dynamo=False, opset_version=12)


def test_module_export_is_the_graph_to_onnx_writes(tmp_path):
    ours = str(tmp_path / "to_onnx.onnx")
    rq.to_onnx(TABLE, ours, scores="dot")
    exported = export("torchscript", QuantizedLogits(TABLE), (hidden(2, 3, DIM),),
                      str(tmp_path / "module.onnx"))

    def ops(path):
        return sorted(n.op_type for n in onnx.load(path).graph.node if n.op_type != "Constant")

    assert ops(exported) == ops(ours)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_onnx_cosine_of_vectors_whose_squares_leave_float32(tmp_path, exporter):
    """The exported graph normalizes rows and queries with float64 norms: huge, tiny and
    subnormal vectors score as the float64 cosine says, where float32 norms give inf, 0 or
    NaN."""
    table = rq.quantize(extreme_vectors(DIM, seed=3))
    queries = extreme_vectors(DIM, seed=4)
    path = export(exporter, QuantizedLogits(table, metric="cosine"),
                  (torch.from_numpy(queries),), str(tmp_path / "m.onnx"))
    runner = session(path)
    got = runner.run(None, {runner.get_inputs()[0].name: queries})[0]
    exact, bound = unit_cosines(table.dequantize(), queries)
    assert np.isfinite(got).all()
    assert (np.abs(got - exact) <= bound).all()
