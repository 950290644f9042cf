"""rowquant.torch's modules captured by every PyTorch path (torch.jit.trace, torch.jit.script,
torch.compile(fullgraph=True), torch.export.export) and exported by both ONNX exporters: each
capture must hold the rowquant operator, so that ids it never saw give the eager answer, bit for
bit (a capture that baked one call's result into a constant fails here). Also: the operators'
once-per-version check of the scales, and what the exports refuse."""

import os
import re
import warnings

import numpy as np
import pytest
from helpers import assert_same_bits, capture

import rowquant as rq

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import rowquant.torch as rq_torch  # noqa: E402
from rowquant.torch import QuantizedEmbedding, QuantizedEmbeddingBag  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]*` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
]

ROWS, DIM = 60, 11
TABLE = rq.quantize(np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32))


def ids(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, ROWS, shape))


class WeightedFixedBags(nn.Module):
    """2-D bags with per_sample_weights, called with tensors only (tracing takes no None)."""

    def __init__(self, bag):
        super().__init__()
        self.bag = bag

    def forward(self, input: torch.Tensor, per_sample_weights: torch.Tensor) -> torch.Tensor:
        return self.bag(input, per_sample_weights=per_sample_weights)


def weights(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32))


# name -> (module, the arguments it is captured with, new arguments: other ids, other sizes)
CASES = {
    "lookup 1-D": (lambda: QuantizedEmbedding(TABLE), (ids(7),), (ids(5, seed=1),)),
    "lookup 2-D": (lambda: QuantizedEmbedding(TABLE), (ids(3, 4),), (ids(2, 6, seed=1),)),
    "bag sum": (
        lambda: QuantizedEmbeddingBag(TABLE, mode="sum"),
        (ids(9), torch.tensor([0, 3, 3])),
        (ids(12, seed=1), torch.tensor([0, 5, 6, 6, 11])),
    ),
    "bag mean, padding, last offset": (
        lambda: QuantizedEmbeddingBag(TABLE, mode="mean", padding_idx=2, include_last_offset=True),
        (ids(9), torch.tensor([0, 3, 3, 9])),
        (torch.tensor([2, 2, 5, 7, 2, 9, 40, 2]), torch.tensor([0, 2, 5, 8])),
    ),
    "bag max, padding": (
        lambda: QuantizedEmbeddingBag(TABLE, mode="max", padding_idx=-1),
        (ids(9), torch.tensor([0, 3, 3])),
        (torch.tensor([59, 59, 5, 7, 59, 9, 40]), torch.tensor([0, 2, 2, 6])),
    ),
    "bag mean 2-D": (
        lambda: QuantizedEmbeddingBag(TABLE, mode="mean"), (ids(3, 4),), (ids(5, 2, seed=1),),
    ),
    "bag sum weighted": (
        lambda: QuantizedEmbeddingBag(TABLE, mode="sum"),
        (ids(9), torch.tensor([0, 3, 3]), weights(9)),
        (ids(12, seed=1), torch.tensor([0, 5, 6, 6, 11]), weights(12, seed=1)),
    ),
    "bag sum weighted 2-D": (
        lambda: WeightedFixedBags(QuantizedEmbeddingBag(TABLE, mode="sum")),
        (ids(3, 4), weights(3, 4)),
        (ids(5, 2, seed=1), weights(5, 2, seed=1)),
    ),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    make, captured_with, new = CASES[request.param]
    return make(), captured_with, new


def operators_in(path, captured) -> str:
    """The text of the captured graph, where the rowquant operator must appear."""
    return captured.code if path == "export" else str(captured.inlined_graph)


@pytest.mark.parametrize("path", ["trace", "script", "compile", "export"])
def test_captured_modules_run_the_operator_on_new_ids(path, case):
    module, captured_with, new = case
    captured = capture(path, module, captured_with)
    if path != "compile":  # whose graph stays inside; fullgraph=True refuses graph breaks
        assert re.search(r"rowquant[.:]+(take|embedding_bag)", operators_in(path, captured))
    for args in (captured_with, new):
        got, expected = captured(*args), module(*args)
        assert got.dtype == torch.float32 and got.shape == expected.shape
        assert_same_bits(got.numpy(), expected.numpy())
    # and the eager answer is rowquant's
    if isinstance(module, QuantizedEmbedding):
        assert_same_bits(module(new[0]).numpy(), TABLE.take(new[0].numpy()))


@pytest.mark.parametrize("path", ["trace", "script", "compile", "export"])
def test_captured_modules_answer_in_the_dtype_cast_to(path):
    module = QuantizedEmbeddingBag(TABLE, mode="sum").half()
    captured = capture(path, module, (ids(6), torch.tensor([0, 2])))
    new = (ids(8, seed=2), torch.tensor([0, 1, 5]))
    got = captured(*new)
    assert got.dtype == torch.float16
    assert torch.equal(got, module(*new))
    assert torch.equal(got, torch.from_numpy(TABLE.bag(new[0].numpy(), new[1].numpy())).half())


@pytest.mark.parametrize("path", ["eager", "trace", "script", "compile"])
def test_scales_changed_after_the_first_call_are_checked_again(path):
    module = QuantizedEmbedding(TABLE)
    runner = module if path == "eager" else capture(path, module, (ids(4),))
    assert runner(ids(3)).shape == (3, DIM)
    module.scales[5] = float("nan")  # in place, after the table was checked
    # the TorchScript interpreter turns every error into its own RuntimeError
    error = RuntimeError if path in ("trace", "script") else ValueError
    with pytest.raises(error, match=r"scales\[5\] = .*nan.* not a valid scale"):
        runner(ids(3))
    module.scales[5] = float(TABLE.scales[5])
    assert_same_bits(runner(torch.tensor([5])).numpy(), TABLE.take([5]))


def test_repeated_calls_scan_the_scales_once(monkeypatch):
    from rowquant import _torch_ops

    scans = []
    real = _torch_ops._checks.codes_and_scales

    def counting(codes, scales, check_values=True):
        scans.append(check_values)
        return real(codes, scales, check_values=check_values)

    monkeypatch.setattr(_torch_ops._checks, "codes_and_scales", counting)
    module = QuantizedEmbeddingBag(TABLE, mode="sum")
    for seed in range(5):
        module(ids(6, seed=seed), torch.tensor([0, 3]))
    assert scans.count(True) == 1
    module.load_state_dict(module.state_dict())  # copies in place: a new version
    module(ids(6), torch.tensor([0, 3]))
    assert scans.count(True) == 2


def test_inference_mode_tensors_are_checked_every_time():
    with torch.inference_mode():
        module = QuantizedEmbedding(TABLE)  # inference tensors: no version counter
        module(ids(3))
        module.scales[1] = float("inf")
        with pytest.raises(ValueError, match=r"scales\[1\] = .*inf"):
            module(ids(3))


def test_operators_run_on_the_cpu_only():
    from rowquant import _torch_ops

    with pytest.raises(ValueError, match="ids is on meta; rowquant's operators run on the CPU"):
        _torch_ops._array(torch.empty(3, dtype=torch.int64, device="meta"), "ids")


def test_operators_called_directly():
    codes, scales = torch.from_numpy(TABLE.codes.copy()), torch.from_numpy(TABLE.scales.copy())
    new = ids(4, 5, seed=3)
    assert_same_bits(torch.ops.rowquant.take(codes, scales, new).numpy(),
                     TABLE.take(new.numpy()))
    pooled = torch.ops.rowquant.embedding_bag(codes, scales, new, None, None, "mean", None, False)
    assert_same_bits(pooled.numpy(), TABLE.bag(new.numpy(), mode="mean"))
    with pytest.raises(IndexError, match=r"ids\[1\] = 60 is out of range"):
        torch.ops.rowquant.take(codes, scales, torch.tensor([0, 60]))


# ------------------------------------------------------------------------------------------ ONNX

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
InvalidArgument = ort.capi.onnxruntime_pybind11_state.InvalidArgument


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failures provoked below are expected
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(runner, args):
    names = [i.name for i in runner.get_inputs()]
    return runner.run(None, {name: arg.numpy() for name, arg in zip(names, args)})[0]


def export_torchscript(module, args, path, opset=17):
    names = [f"input_{k}" for k in range(len(args))]
    axes = {name: list(range(arg.dim())) for name, arg in zip(names, args)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates this exporter
        torch.onnx.export(module, args, path, dynamo=False, opset_version=opset,
                          input_names=names, dynamic_axes=axes)
    onnx.checker.check_model(path)
    return path


def export_dynamo(module, args, path, **kwargs):
    dims = tuple({axis: torch.export.Dim.AUTO for axis in range(arg.dim())} for arg in args)
    torch.onnx.export(module.eval(), args, path, dynamo=True, dynamic_shapes=dims, verbose=False,
                      **kwargs)
    return path


def assert_like_eager(got, module, args):
    """Lookups and max bags bit for bit; sums and means within the summation tolerance."""
    expected = module(*args).numpy()
    bag = module.bag if isinstance(module, WeightedFixedBags) else module
    if isinstance(bag, QuantizedEmbedding) or bag.mode == "max":
        assert_same_bits(got, expected)
    else:
        largest = float(np.abs(TABLE.dequantize()).max())
        np.testing.assert_allclose(got, expected, rtol=0, atol=4 * 12 * largest * 2.0**-24)


def ops_of(path):
    return sorted(n.op_type for n in onnx.load(path).graph.node if n.op_type != "Constant")


def test_torchscript_export_runs_new_ids_as_eager(tmp_path, case):
    module, captured_with, new = case
    opset = 18 if getattr(module, "mode", None) == "max" else 17
    runner = session(export_torchscript(module, captured_with, str(tmp_path / "m.onnx"), opset))
    for args in (captured_with, new):
        assert_like_eager(run(runner, args), module, args)


@pytest.mark.parametrize("pooling", [None, "sum", "mean"])
def test_torchscript_export_is_the_graph_to_onnx_writes(tmp_path, pooling):
    ours = str(tmp_path / "to_onnx.onnx")
    rq.to_onnx(TABLE, ours, pooling=pooling)
    if pooling is None:
        module, args = QuantizedEmbedding(TABLE), (ids(5),)
    else:
        module, args = QuantizedEmbeddingBag(TABLE, mode=pooling), (ids(5), torch.tensor([0, 2]))
    exported = export_torchscript(module, args, str(tmp_path / "module.onnx"))
    # the module's scales enter as (N,), unsqueezed to to_onnx's (N, 1) by constant folding
    assert ops_of(exported) == ops_of(ours)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("bag", [False, True])
def test_exported_modules_refuse_negative_ids(tmp_path, exporter, bag):
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    module = QuantizedEmbeddingBag(TABLE, mode="sum") if bag else QuantizedEmbedding(TABLE)
    offsets = (torch.tensor([0, 1]),) if bag else ()
    args = (ids(4),) + offsets
    path = str(tmp_path / "m.onnx")
    if exporter == "dynamo":
        table = rq_torch.onnx_translation_table()
        export_dynamo(module, args, path, custom_translation_table=table)
    else:
        export_torchscript(module, args, path)
    runner = session(path)
    assert_like_eager(run(runner, args), module, args)
    for bad in (-1, -ROWS, ROWS):
        wrong = (torch.tensor([0, 1, bad, 3]),) + offsets
        with pytest.raises(InvalidArgument, match="out of data bounds"):
            run(runner, wrong)
        with pytest.raises(IndexError, match="out of range"):
            module(*wrong)


def test_torchscript_export_refuses_what_it_cannot_write(tmp_path):
    path = str(tmp_path / "m.onnx")
    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError, match="opset version 12"):
        export_torchscript(QuantizedEmbedding(TABLE), (ids(3),), path, opset=12)
    with pytest.raises(ValueError, match="mode='max' exports to ONNX opset 18 or later"):
        export_torchscript(QuantizedEmbeddingBag(TABLE, mode="max"),
                           (ids(3), torch.tensor([0])), path, opset=17)
    assert not os.path.exists(path)


@pytest.mark.parametrize("name", ["lookup 2-D", "bag mean, padding, last offset",
                                  "bag max, padding", "bag sum weighted 2-D"])
def test_dynamo_export_with_the_translation_table_runs_new_ids_as_eager(tmp_path, name):
    pytest.importorskip("onnxscript")
    make, captured_with, new = CASES[name]
    module = make()
    path = export_dynamo(module, captured_with, str(tmp_path / "m.onnx"),
                         custom_translation_table=rq_torch.onnx_translation_table())
    assert {"Less", "Where", "Gather", "Mul"} <= set(ops_of(path))
    runner = session(path)
    for args in (captured_with, new):
        assert_like_eager(run(runner, args), module, args)


def test_dynamo_export_without_the_translation_table_fails_loudly(tmp_path):
    pytest.importorskip("onnxscript")
    path = str(tmp_path / "m.onnx")
    with pytest.raises(torch.onnx.OnnxExporterError) as raised:
        export_dynamo(QuantizedEmbedding(TABLE), (ids(3),), path)
    assert "rowquant.take" in str(raised.value) or "rowquant.take" in str(raised.value.__cause__)
    assert not os.path.exists(path)


def test_translation_table_needs_onnxscript(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"needs onnxscript: pip install 'rowquant\[onnx\]'"):
        rq_torch.onnx_translation_table()
