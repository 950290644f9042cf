"""PyTorch interop, checked against the real torch 2.13 and its FBGEMM operators: the FBGEMM
fused rowwise layout, per-channel quantized tensors, and the rowquant.torch modules against
torch's own float modules on the dequantized weights."""

import re
import warnings

import numpy as np
import pytest

import rowquant as rq
from helpers import bag_error_bound

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from rowquant.torch import QuantizedEmbedding, QuantizedEmbeddingBag  # noqa: E402

ops = torch.ops.quantized


def awkward_table(rows=300, dim=37, seed=0):
    """Rows across magnitudes from 1e-30 to 1e30, two zero rows, a row of one repeated value."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((rows, dim)).astype(np.float32)
    values *= np.logspace(-30, 30, rows, dtype=np.float32)[:, None]
    values[[0, rows // 2]] = 0
    values[1] = -3.5
    return values


def bits(array):
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def bag_tolerance(reference_rows, bag_length):
    """Summation-order tolerance: a few float32 roundings of the largest partial sum."""
    return 4 * max(bag_length, 1) * float(np.abs(reference_rows).max(initial=0)) * 2.0**-23


@pytest.fixture(params=[(300, 37), (50, 1), (64, 300), (0, 8)], ids=lambda s: f"{s[0]}x{s[1]}")
def qe(request):
    rows, dim = request.param
    return rq.quantize(awkward_table(rows, dim) if rows else np.zeros((0, dim), np.float32))


# ----------------------------------------------------------------------------- FBGEMM layout


def test_fbgemm_layout(qe):
    packed = qe.to_fbgemm()
    rows, dim = qe.shape
    assert packed.shape == (rows, dim + 8) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed[:, :dim], qe.codes)
    scales = packed[:, dim : dim + 4].copy().view("<f4").reshape(rows)
    biases = packed[:, dim + 4 :].copy().view("<f4").reshape(rows)
    np.testing.assert_array_equal(bits(scales), bits(qe.scales))
    np.testing.assert_array_equal(biases, -128.0 * qe.scales.astype(np.float64))


def test_fbgemm_unpack_gives_our_values_bit_for_bit(qe):
    if qe.shape[0] == 0:
        pytest.skip("FBGEMM's unpack needs rows")
    unpacked = ops.embedding_bag_byte_unpack(torch.from_numpy(qe.to_fbgemm())).numpy()
    ours = qe.dequantize()
    # +0 and -0 differ only on zero-scale rows (FBGEMM adds a -0 bias); compare values there
    nonzero = qe.scales != 0
    np.testing.assert_array_equal(bits(unpacked[nonzero]), bits(ours[nonzero]))
    np.testing.assert_array_equal(unpacked[~nonzero], ours[~nonzero])


@pytest.mark.parametrize("weighted", [False, True])
def test_fbgemm_bags_match_ours(weighted):
    qe = rq.quantize(awkward_table(500, 33) / np.float32(1e25))  # magnitudes a sum can hold
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 500, 400)
    offsets = np.sort(rng.integers(0, 400, 40))
    offsets[0] = 0
    weights = rng.random(400, dtype=np.float32) if weighted else None
    theirs = ops.embedding_bag_byte_rowwise_offsets(
        torch.from_numpy(qe.to_fbgemm()),
        torch.from_numpy(ids),
        torch.from_numpy(offsets),
        mode=0,
        per_sample_weights=None if weights is None else torch.from_numpy(weights),
    ).numpy()
    ours = qe.bag(ids, offsets, weights=weights)
    rows = qe.take(ids) * (1 if weights is None else weights[:, None])
    longest = int(np.diff(np.append(offsets, 400)).max())
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=bag_tolerance(rows, longest))


def test_from_fbgemm_round_trip(qe):
    back = rq.from_fbgemm(qe.to_fbgemm())
    np.testing.assert_array_equal(back.codes, qe.codes)
    np.testing.assert_array_equal(bits(back.scales), bits(qe.scales))
    back = rq.from_fbgemm(torch.from_numpy(qe.to_fbgemm()))  # a torch tensor works too
    np.testing.assert_array_equal(back.codes, qe.codes)


def test_from_fbgemm_refuses_minmax_rows_unless_requantizing():
    weights = torch.from_numpy(awkward_table(100, 20) / np.float32(1e25))
    packed = ops.embedding_bag_byte_prepack(weights)
    biases = packed[:, -4:].numpy().copy().view("<f4").ravel()
    scales = packed[:, -8:-4].numpy().copy().view("<f4").ravel()
    first = int(np.argmax(biases != np.float32(-128) * scales))
    with pytest.raises(ValueError, match=rf"row {first} of the FBGEMM table has bias .*requantize=True"):
        rq.from_fbgemm(packed)
    requantized = rq.from_fbgemm(packed, requantize=True)
    expected = rq.quantize(ops.embedding_bag_byte_unpack(packed).numpy())
    np.testing.assert_array_equal(requantized.codes, expected.codes)
    np.testing.assert_array_equal(bits(requantized.scales), bits(expected.scales))


def test_from_fbgemm_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        rq.from_fbgemm(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, D \+ 8\)"):
        rq.from_fbgemm(np.zeros((2, 7), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, D \+ 8\)"):
        rq.from_fbgemm(np.zeros(12, np.uint8))
    packed = rq.quantize(np.ones((3, 2), np.float32)).to_fbgemm()
    packed[1, 2:6] = np.array([-1.0], "<f4").view(np.uint8)  # negative scale ...
    packed[1, 6:10] = np.array([128.0], "<f4").view(np.uint8)  # ... with the matching bias
    with pytest.raises(ValueError, match=r"scales\[1\] = .*-1.0"):
        rq.from_fbgemm(packed)


# ----------------------------------------------------------------------------- quantized tensors


def test_to_torch_quantized(qe):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's deprecation notice must not leak out
        qt = qe.to_torch_quantized()
    assert qt.dtype == torch.quint8 and qt.qscheme() == torch.per_channel_affine
    assert qt.q_per_channel_axis() == 0
    np.testing.assert_array_equal(qt.int_repr().numpy(), qe.codes)
    np.testing.assert_array_equal(qt.q_per_channel_zero_points().numpy(), 128)
    np.testing.assert_array_equal(qt.q_per_channel_scales().numpy(), qe.scales.astype(np.float64))
    np.testing.assert_array_equal(bits(qt.dequantize().numpy()), bits(qe.dequantize()))


def test_from_torch_quantized_round_trip(qe):
    back = rq.from_torch_quantized(qe.to_torch_quantized())
    np.testing.assert_array_equal(back.codes, qe.codes)
    np.testing.assert_array_equal(bits(back.scales), bits(qe.scales))


def quantize_per_channel(values, scales, zero_point=128):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.quantize_per_channel(
            torch.from_numpy(values),
            torch.from_numpy(scales.astype(np.float64)),
            torch.full((len(scales),), zero_point, dtype=torch.int64),
            0,
            torch.quint8,
        )


def test_the_documented_differences_of_torch_quantize_per_channel():
    """What the docs say about torch's own quantizer, checked: codes off by at most one (a few
    in 1e5), and a zero-scale row coded 0 rather than 128."""
    values = np.random.default_rng(5).standard_normal((20000, 64)).astype(np.float32)
    values[7] = 0
    qe = rq.quantize(values)
    theirs = quantize_per_channel(values, qe.scales).int_repr().numpy().astype(int)
    differ = theirs != qe.codes
    differ[7] = False
    assert np.abs(theirs - qe.codes)[~np.eye(1, 20000, 7, dtype=bool).ravel()].max() <= 1
    assert 0 < differ.mean() < 1e-4
    assert (theirs[7] == 0).all() and (qe.codes[7] == 128).all()


def test_from_torch_quantized_refuses_what_it_cannot_hold_exactly():
    values = awkward_table(20, 6) / np.float32(1e25)
    scales = rq.quantize(values).scales
    shifted = quantize_per_channel(values, scales, zero_point=127)
    with pytest.raises(ValueError, match="row 0 has zero point 127"):
        rq.from_torch_quantized(shifted)
    again = rq.from_torch_quantized(shifted, requantize=True)
    expected = rq.quantize(shifted.dequantize().numpy())
    np.testing.assert_array_equal(again.codes, expected.codes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        odd_scale = torch.quantize_per_channel(
            torch.ones(2, 3), torch.tensor([0.1, 0.5], dtype=torch.float64),
            torch.tensor([128, 128]), 0, torch.quint8,
        )
        per_tensor = torch.quantize_per_tensor(torch.ones(2, 3), 0.5, 128, torch.quint8)
        signed = torch.quantize_per_channel(
            torch.ones(2, 3), torch.tensor([0.5, 0.5], dtype=torch.float64),
            torch.tensor([0, 0]), 0, torch.qint8,
        )
        other_axis = torch.quantize_per_channel(
            torch.ones(2, 3), torch.tensor([0.5] * 3, dtype=torch.float64),
            torch.tensor([128] * 3), 1, torch.quint8,
        )
    with pytest.raises(ValueError, match="row 0 has scale 0.1, which float32 cannot hold"):
        rq.from_torch_quantized(odd_scale)
    with pytest.raises(ValueError, match="per-channel"):
        rq.from_torch_quantized(per_tensor)
    with pytest.raises(ValueError, match="quint8"):
        rq.from_torch_quantized(signed)
    with pytest.raises(ValueError, match="along axis 1"):
        rq.from_torch_quantized(other_axis)
    with pytest.raises(TypeError, match="quantized torch tensor"):
        rq.from_torch_quantized(torch.ones(2, 3))


# ----------------------------------------------------------------------------- modules


def float_modules(rows=200, dim=24, seed=0, **bag_args):
    torch.manual_seed(seed)
    return nn.Embedding(rows, dim), nn.EmbeddingBag(rows, dim, **bag_args)


def test_embedding_module_equals_torch_on_the_dequantized_weights():
    embedding, _ = float_modules()
    module = QuantizedEmbedding.from_float(embedding)
    weight = torch.from_numpy(module.table.dequantize())
    for ids in (torch.tensor([3, 1, 4]), torch.tensor([[0, 199], [5, 5]]), torch.tensor([], dtype=torch.long)):
        got = module(ids)
        want = nn.functional.embedding(ids, weight)
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.equal(got, want)
    assert torch.equal(module(torch.tensor([7], dtype=torch.int32)), weight[[7]])


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_bag_module_equals_torch_on_the_dequantized_weights(mode, padding_idx, include_last_offset):
    _, float_bag = float_modules(
        mode=mode, padding_idx=padding_idx, include_last_offset=include_last_offset
    )
    module = QuantizedEmbeddingBag.from_float(float_bag)
    assert (module.mode, module.padding_idx, module.include_last_offset) == (
        mode, padding_idx, include_last_offset,
    )
    reference = nn.EmbeddingBag.from_pretrained(
        torch.from_numpy(module.table.dequantize()), mode=mode, padding_idx=padding_idx,
        include_last_offset=include_last_offset,
    )
    rng = np.random.default_rng(2)
    ids = torch.from_numpy(rng.integers(0, 200, 60))
    ids[[5, 6, 50]] = 3  # the padding row, when there is one
    offsets = torch.tensor([0, 0, 10, 10, 25, 59] + ([60] if include_last_offset else []))
    got, want = module(ids, offsets), reference(ids, offsets)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=bag_tolerance(want.numpy(), 35))
    if mode == "sum":
        weights = torch.from_numpy(rng.random(60, dtype=np.float32))
        torch.testing.assert_close(
            module(ids, offsets, per_sample_weights=weights),
            reference(ids, offsets, per_sample_weights=weights),
            rtol=0, atol=bag_tolerance(want.numpy(), 35),
        )
    fixed = ids[:60].reshape(6, 10)
    torch.testing.assert_close(module(fixed), reference(fixed), rtol=0, atol=bag_tolerance(want.numpy(), 10))


def test_mean_is_honoured_where_torchs_quantized_bag_sums():
    _, float_bag = float_modules(mode="mean")
    module = QuantizedEmbeddingBag.from_float(float_bag)
    ids, offsets = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2])
    packed = torch.from_numpy(module.table.to_fbgemm())
    fbgemm_mean = ops.embedding_bag_byte_rowwise_offsets(packed, ids, offsets, mode=1)
    sums = module.table.bag(ids.numpy(), offsets.numpy(), mode="sum")
    torch.testing.assert_close(fbgemm_mean, torch.from_numpy(sums))  # mode=1 still sums
    torch.testing.assert_close(module(ids, offsets), torch.from_numpy(sums / 2))


def test_small_model_end_to_end():
    torch.manual_seed(3)
    float_model = nn.Sequential(nn.EmbeddingBag(500, 32, mode="mean"), nn.Linear(32, 4))
    model = nn.Sequential(QuantizedEmbeddingBag.from_float(float_model[0]), float_model[1])
    reference = nn.Sequential(
        nn.EmbeddingBag.from_pretrained(torch.from_numpy(model[0].table.dequantize()), mode="mean"),
        float_model[1],
    )
    batch = torch.from_numpy(np.random.default_rng(4).integers(0, 500, (16, 12)))
    with torch.no_grad():
        got, want, unquantized = model(batch), reference(batch), float_model(batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and quantization barely moves the model's output
    assert float((got - unquantized).abs().max()) < 0.01 * float(unquantized.abs().max())


def test_modules_share_memory_with_their_buffers_and_survive_state_dicts():
    embedding, _ = float_modules()
    module = QuantizedEmbedding.from_float(embedding)
    assert module.table.codes.__array_interface__["data"][0] == module.codes.data_ptr()
    other = QuantizedEmbedding.from_float(float_modules(seed=9)[0])
    ids = torch.tensor([1, 2, 3])
    assert not torch.equal(other(ids), module(ids))
    other.load_state_dict(module.state_dict())
    assert torch.equal(other(ids), module(ids))
    broken = module.state_dict()
    broken["scales"] = broken["scales"].clone()
    broken["scales"][4] = float("nan")
    other.load_state_dict(broken)
    with pytest.raises(ValueError, match=r"scales\[4\]"):
        other(ids)


def test_module_errors():
    embedding, float_bag = float_modules()
    module = QuantizedEmbeddingBag.from_float(float_bag)
    with pytest.raises(IndexError, match=r"ids\[1\] = 200 is out of range"):
        module(torch.tensor([0, 200]), torch.tensor([0]))
    with pytest.raises(ValueError, match="needs offsets"):
        module(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="offsets must be None"):
        module(torch.tensor([[0, 1]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="per_sample_weights has shape"):
        module(torch.tensor([0, 1]), torch.tensor([0]), per_sample_weights=torch.ones(3))
    with pytest.raises(ValueError, match="max_norm"):
        QuantizedEmbedding.from_float(nn.Embedding(10, 4, max_norm=1.0))
    with pytest.raises(TypeError, match="nn.Embedding"):
        QuantizedEmbedding.from_float(float_bag)
    with pytest.raises(TypeError, match="rowquant.QuantizedEmbedding"):
        QuantizedEmbedding(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mode must be 'sum', 'mean' or 'max', got 'min'"):
        QuantizedEmbeddingBag(module.table, mode="min")
    assert repr(QuantizedEmbedding.from_float(embedding)) == "QuantizedEmbedding(200, 24)"


# ------------------------------------------------------------------ module inputs as torch's


def dequantized_bag(module, **kwargs):
    """torch's own EmbeddingBag on the module's dequantized table."""
    weight = torch.from_numpy(module.table.dequantize())
    return nn.EmbeddingBag.from_pretrained(weight, **kwargs)


def test_weighted_fixed_size_bags_as_torch():
    _, float_bag = float_modules(mode="sum")
    module = QuantizedEmbeddingBag.from_float(float_bag)
    reference = dequantized_bag(module, mode="sum")
    rng = np.random.default_rng(7)
    ids = torch.from_numpy(rng.integers(0, 200, (3, 4)))
    weights = torch.from_numpy(rng.random((3, 4), dtype=np.float32))
    got = module(ids, per_sample_weights=weights)
    want = reference(ids, per_sample_weights=weights)
    torch.testing.assert_close(got, want, rtol=0, atol=bag_tolerance(want.numpy(), 4))
    flat = module(ids.reshape(-1), torch.tensor([0, 4, 8]), per_sample_weights=weights.reshape(-1))
    assert torch.equal(got, flat)
    with pytest.raises(ValueError, match=r"per_sample_weights has shape \(12,\), input has \(3, "):
        module(ids, per_sample_weights=weights.reshape(-1))


@pytest.mark.parametrize("shape", [(), (2, 2, 2)], ids=["0-d", "3-d"])
def test_bag_input_must_be_1d_or_2d_as_in_torch(shape):
    _, float_bag = float_modules()
    module = QuantizedEmbeddingBag.from_float(float_bag)
    ids = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError) as theirs:
        float_bag(ids)
    with pytest.raises(ValueError, match=f"input has to be 1D or 2D Tensor, but got Tensor of "
                                         f"dimension {len(shape)}") as ours:
        module(ids)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("shape", [(), (0,), (2, 3, 4), (1, 1, 1, 2)])
def test_embedding_takes_ids_of_any_shape_as_nn_embedding(shape):
    embedding, _ = float_modules()
    module = QuantizedEmbedding.from_float(embedding)
    ids = torch.from_numpy(np.random.default_rng(8).integers(0, 200, shape))
    got = module(ids)
    assert got.shape == shape + (24,)
    weight = torch.from_numpy(module.table.dequantize())
    assert torch.equal(got, nn.functional.embedding(ids, weight))


# ------------------------------------------------------------------------------- dtypes


CASTS = {
    "half": (lambda m: m.half(), torch.float16),
    "bfloat16": (lambda m: m.bfloat16(), torch.bfloat16),
    "double": (lambda m: m.double(), torch.float64),
    "to float16": (lambda m: m.to(torch.float16), torch.float16),
    "to dtype=bfloat16": (lambda m: m.to(dtype=torch.bfloat16), torch.bfloat16),
}


@pytest.mark.parametrize("cast", list(CASTS))
@pytest.mark.parametrize("kind", ["embedding", "bag"])
def test_casts_keep_the_table_and_answer_in_the_dtype_asked_for(cast, kind):
    embedding, float_bag = float_modules(mode="sum")
    if kind == "embedding":
        module, args = QuantizedEmbedding.from_float(embedding), (torch.tensor([[3, 1], [4, 1]]),)
    else:
        module, args = QuantizedEmbeddingBag.from_float(float_bag), (torch.tensor([3, 1, 4]),
                                                                     torch.tensor([0, 1]))
    codes, scales, float32_answer = module.codes.clone(), module.scales.clone(), module(*args)
    apply, dtype = CASTS[cast]
    assert apply(module) is module
    assert module.codes.dtype == torch.uint8 and torch.equal(module.codes, codes)
    assert module.scales.dtype == torch.float32 and torch.equal(module.scales, scales)
    got = module(*args)
    assert got.dtype == dtype and torch.equal(got, float32_answer.to(dtype))
    assert f"output_dtype={dtype}" in repr(module)
    module.float()  # and back
    assert module(*args).dtype == torch.float32 and torch.equal(module(*args), float32_answer)
    module.to("cpu")  # a move is not a cast
    assert module.output_dtype == torch.float32


def test_output_dtype_argument():
    table = rq.quantize(awkward_table(10, 4) / np.float32(1e25))
    module = QuantizedEmbeddingBag(table, mode="sum", output_dtype=torch.float64)
    ids, offsets = torch.tensor([1, 2, 3]), torch.tensor([0, 2])
    expected = table.bag(ids.numpy(), offsets.numpy())
    assert torch.equal(module(ids, offsets), torch.from_numpy(expected).double())
    assert QuantizedEmbedding(table, output_dtype=torch.bfloat16)(ids).dtype == torch.bfloat16
    for bad in (torch.int64, np.float32, "float16"):
        with pytest.raises(TypeError, match="output_dtype must be a floating-point torch.dtype"):
            QuantizedEmbedding(table, output_dtype=bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_from_float_of_other_float_dtypes(dtype):
    torch.manual_seed(4)
    embedding = nn.Embedding(30, 8).to(dtype)
    float_bag = nn.EmbeddingBag(30, 8, mode="mean").to(dtype)
    ids, offsets = torch.tensor([5, 0, 29, 5]), torch.tensor([0, 3])
    module = QuantizedEmbedding.from_float(embedding)
    expected = rq.quantize(embedding.weight.detach().float().numpy())
    assert module.output_dtype == dtype
    assert torch.equal(module(ids), torch.from_numpy(expected.take(ids.numpy())).to(dtype))
    bag = QuantizedEmbeddingBag.from_float(float_bag)
    pooled = bag(ids, offsets)
    assert pooled.dtype == dtype
    assert torch.equal(pooled, bag.float()(ids, offsets).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_per_sample_weights_of_other_float_dtypes(dtype):
    _, float_bag = float_modules(mode="sum")
    module = QuantizedEmbeddingBag.from_float(float_bag)
    ids, offsets = torch.tensor([3, 1, 4, 1]), torch.tensor([0, 2])
    weights = torch.tensor([0.5, 2.0, 1.25, -3.0], dtype=dtype)  # exact in every dtype
    assert torch.equal(module(ids, offsets, per_sample_weights=weights),
                       module(ids, offsets, per_sample_weights=weights.float()))


# ------------------------------------------------------------------------------ padding_idx


@pytest.mark.parametrize("kind", ["embedding", "bag"])
def test_padding_idx_outside_the_table_is_refused_as_torch_refuses_it(kind):
    table = rq.quantize(awkward_table(10, 4))
    make = QuantizedEmbedding if kind == "embedding" else QuantizedEmbeddingBag
    torch_module = nn.Embedding if kind == "embedding" else nn.EmbeddingBag
    for padding_idx in (10, 11, -11, -100):
        with pytest.raises(AssertionError):
            torch_module(10, 4, padding_idx=padding_idx)
        with pytest.raises(ValueError, match=re.escape(
                f"padding_idx = {padding_idx} is out of range for a table of 10 rows")):
            make(table, padding_idx=padding_idx)
    for padding_idx in (-10, -1, 0, 9):  # normalised as torch normalises them
        assert make(table, padding_idx=padding_idx).padding_idx == torch_module(
            10, 4, padding_idx=padding_idx).padding_idx
    with pytest.raises(TypeError, match="padding_idx must be an integer or None"):
        make(table, padding_idx=1.0)


def test_negative_padding_idx_leaves_out_the_last_row():
    _, float_bag = float_modules(mode="mean")
    module = QuantizedEmbeddingBag(rq.quantize(float_bag.weight.detach().numpy()), mode="mean",
                                   padding_idx=-1)
    assert module.padding_idx == 199
    ids, offsets = torch.tensor([199, 3, 199, 199]), torch.tensor([0, 2])
    pooled = module(ids, offsets)
    # 1 id counted: the row, up to the bag arithmetic's rounding (helpers.bag_error_bound)
    error = np.abs(pooled[0].numpy() - module.table.take([3])[0])
    assert (error <= bag_error_bound(float(module.table.scales[3]), 2)).all()
    assert torch.equal(pooled[1], torch.zeros(24))  # padding only


# ------------------------------------------------------------------------------------- max


@pytest.mark.parametrize("padding_idx", [None, 3])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_max_mode_equals_torch_exactly(padding_idx, include_last_offset):
    _, float_bag = float_modules(mode="max", padding_idx=padding_idx,
                                 include_last_offset=include_last_offset)
    module = QuantizedEmbeddingBag.from_float(float_bag)
    assert module.mode == "max"
    reference = dequantized_bag(module, mode="max", padding_idx=padding_idx,
                                include_last_offset=include_last_offset)
    rng = np.random.default_rng(9)
    ids = torch.from_numpy(rng.integers(0, 200, 40))
    ids[[0, 1, 20]] = 3  # bag 0 is padding only when padding_idx=3
    offsets = torch.tensor([0, 2, 2, 10, 39] + ([40] if include_last_offset else []))
    assert torch.equal(module(ids, offsets), reference(ids, offsets))  # a maximum is exact
    fixed = ids.reshape(5, 8)
    assert torch.equal(module(fixed), reference(fixed))
    with pytest.raises(ValueError, match="weights"):
        module(ids, offsets, per_sample_weights=torch.ones(40))


def test_max_norm_is_refused_by_both_from_floats():
    with pytest.raises(ValueError, match="max_norm renormalizes rows"):
        QuantizedEmbedding.from_float(nn.Embedding(10, 4, max_norm=1.0))
    with pytest.raises(ValueError, match="max_norm renormalizes rows"):
        QuantizedEmbeddingBag.from_float(nn.EmbeddingBag(10, 4, mode="max", max_norm=1.0))
