"""16-bit scales for the paper's 8-bit codes (schemes rowwise-symmetric-u8-bf16 and -f16).

The rule (rowquant.reference.quantize_rows_16) is checked against an independent model in exact
rational arithmetic; the kernels on every SIMD path against the reference and against the same
table with its scales widened to float32 (a 16-bit scale is only a storage of a float32 one);
files, the CLI, interop and the checks of bad scales as a user meets them.
"""

import json
import struct
import subprocess
import sys
import tracemalloc
from fractions import Fraction
from math import floor

import numpy as np
import pytest
from helpers import assert_same_bits

import rowquant as rq
from rowquant import _api, reference

C_BACKEND = rq.backend_info()["backend"] == "c"
PATHS = _api.simd_paths() if C_BACKEND else ["none"]


@pytest.fixture(params=PATHS)
def simd_path(request):
    if not C_BACKEND:
        yield None
        return
    before = rq.backend_info()["simd"]
    yield _api.use_simd(request.param)
    _api.use_simd(before)


# ------------------------------------------------------------------ an independent model


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def bf16_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits << 16))[0]


def neighbours(s32, scale_dtype):
    """The largest 16-bit scale <= s32 and the next one up, as (stored, value) pairs."""
    if scale_dtype == "bfloat16":
        low = f32_bits(s32) >> 16
        return [(low, bf16_value(low)), (low + 1, bf16_value(low + 1))]
    low = np.float16(s32)
    if float(low) > s32:
        low = np.nextafter(low, np.float16(0))
    high = np.nextafter(low, np.float16(np.inf))
    return [(low, float(low)), (high, float(high))]


def model_scale(row_max, scale_dtype, rounding):
    """The stored scale of a row before the fit rule (and the float32 scale)."""
    s32 = float(np.float32(row_max) / np.float32(127))
    (low, low_value), (high, high_value) = neighbours(s32, scale_dtype)
    if rounding == "truncate" or low_value == s32:
        return low, s32
    below, above = Fraction(s32) - Fraction(low_value), Fraction(high_value) - Fraction(s32)
    if below != above:
        return (low if below < above else high), s32
    low_bits = int(np.asarray(low).view(np.uint16)) if scale_dtype == "float16" else low
    return (low if low_bits % 2 == 0 else high), s32


def model_codes(row, scale):
    return [floor(Fraction(float(v)) / Fraction(scale) + Fraction(257, 2)) if scale else 128
            for v in row]


def model_quantize(E, scale_dtype, rounding):
    """(codes, stored scales) of the documented rule, in exact rational arithmetic."""
    codes, scales = [], []
    for row in E:
        row_max = float(np.abs(row).max()) if len(row) else 0.0
        stored, s32 = model_scale(row_max, scale_dtype, rounding)
        value = bf16_value(int(stored)) if scale_dtype == "bfloat16" else float(stored)
        row_codes = model_codes(row, value) if s32 else [128] * len(row)
        if s32 and (value == 0 or max(row_codes) > 255 or min(row_codes) < 0):
            stored = stored + 1 if scale_dtype == "bfloat16" else np.nextafter(
                np.float16(stored), np.float16(np.inf))
            value = bf16_value(int(stored)) if scale_dtype == "bfloat16" else float(stored)
            row_codes = model_codes(row, value)
        codes.append(row_codes)
        scales.append(stored)
    dtype = np.uint16 if scale_dtype == "bfloat16" else np.float16
    return np.array(codes, np.int64).reshape(len(E), -1), np.array(scales, dtype)


def awkward_table(seed, rows=60, dim=13):
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((rows, dim)) * 2.0 ** rng.integers(-12, 12, (rows, 1))
    E[0] = 0
    E[1, 0] = -1.00390625  # truncation lands on code 0 (see quantize_rows_16's example)
    E[1, 1:] = 0.5
    E[2] = -E[1]  # and on code 256: the scale steps up
    E[3] = rng.integers(-127, 128, dim).astype(np.float32) / 4  # ties
    return E.astype(np.float32)


@pytest.mark.parametrize("scale_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("rounding", ["nearest", "truncate"])
@pytest.mark.parametrize("seed", range(4))
def test_the_rule_matches_an_exact_model(scale_dtype, rounding, seed):
    E = awkward_table(seed)
    codes, scales = reference.quantize_rows_16(E, scale_dtype, rounding)
    want_codes, want_scales = model_quantize(E, scale_dtype, rounding)
    assert np.array_equal(codes.astype(np.int64), want_codes)
    assert np.array_equal(scales.view(np.uint16), want_scales.view(np.uint16))
    table = rq.quantize(E, scale_dtype=scale_dtype, scale_rounding=rounding)
    assert np.array_equal(table.codes, codes)
    assert np.array_equal(table.scales.view(np.uint16), scales.view(np.uint16))


@pytest.mark.parametrize("scale_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("rounding", ["nearest", "truncate"])
def test_values_stay_within_half_the_stored_scale(scale_dtype, rounding):
    E = awkward_table(7, rows=400, dim=33)
    table = rq.quantize(E, scale_dtype=scale_dtype, scale_rounding=rounding)
    s = table.scale_values().astype(np.float64)
    error = np.abs(E.astype(np.float64) - table.dequantize().astype(np.float64))
    # the product (q - 128) * s is rounded once more to float32: half an ulp of the value
    ulp = np.spacing(np.abs(table.dequantize())).astype(np.float64) / 2
    assert (error <= s[:, None] / 2 + ulp).all()


def test_code_0_is_kept_and_code_256_steps_the_scale_up():
    E = np.array([[-1.00390625, 0.5, 0.25], [1.00390625, -0.5, 0.0]], np.float32)
    truncated = f32_bits(f32(1.00390625 / 127)) >> 16  # CLD3's truncation, by hand
    table = rq.quantize(E, scale_dtype="bfloat16", scale_rounding="truncate")
    assert table.scales[0] == truncated and table.codes[0, 0] == 0
    assert table.scales[1] == truncated + 1 and table.codes[1, 0] == 255
    assert table.scheme.name == "rowwise-symmetric-u8-bf16"
    assert table.scale_dtype == "bfloat16"


def test_float16_edge_rows():
    tiny = np.full((1, 4), 2e-7, np.float32)  # the float32 scale 1.6e-9 rounds to float16 0
    table = rq.quantize(tiny, scale_dtype="float16")
    assert table.scales[0] == np.float16(2.0**-24)  # stepped up to the smallest subnormal
    assert (table.codes != 128).all()
    assert np.all(np.abs(table.dequantize() - tiny) <= 2.0**-25)
    zeros = rq.quantize(np.zeros((2, 3), np.float32), scale_dtype="float16")
    assert (zeros.codes == 128).all() and (zeros.scales == 0).all()
    with pytest.raises(ValueError, match=r"row 1 .*past float16's range"):
        rq.quantize(np.array([[1, 2], [1e7, 0]], np.float32), scale_dtype="float16")
    huge = rq.quantize(np.array([[1e7, 0]], np.float32), scale_dtype="bfloat16")
    assert np.isfinite(huge.dequantize()).all()


def test_bad_options_and_inputs():
    E = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="scale_dtype must be one of"):
        rq.quantize(E, scale_dtype="float64")
    with pytest.raises(ValueError, match="scale_rounding must be"):
        rq.quantize(E, scale_dtype="bfloat16", scale_rounding="up")
    with pytest.raises(ValueError, match="applies to 16-bit scales"):
        rq.quantize(E, scale_rounding="truncate")
    E[1, 2] = np.nan
    with pytest.raises(ValueError, match="row 1, column 2"):
        rq.quantize(E, scale_dtype="bfloat16")


# ------------------------------------------------------------------ lookups, natively


def tables(seed=3, rows=300, dim=77):
    E = awkward_table(seed, rows, dim)
    for scale_dtype in ("bfloat16", "float16"):
        table = rq.quantize(E, scale_dtype=scale_dtype)
        wide = rq.QuantizedEmbedding(table.codes, table.scale_values())
        yield scale_dtype, table, wide


@pytest.mark.parametrize("threads", [1, 2])
def test_every_lookup_equals_the_widened_table_and_the_reference(simd_path, threads):
    rng = np.random.default_rng(5)
    for scale_dtype, table, wide in tables():
        codes, scales = table.codes, table.scales
        n = len(table)
        assert_same_bits(table.dequantize(threads=threads), reference.dequantize(codes, scales))
        assert_same_bits(table.dequantize(threads=threads), wide.dequantize())
        ids = rng.integers(0, n, 501)
        assert_same_bits(table.take(ids, threads=threads), reference.take(codes, scales, ids))
        assert_same_bits(rq.take(codes, scales, ids), wide.take(ids))
        offsets = np.concatenate([[0], np.sort(rng.integers(0, 502, 40))])
        weights = rng.standard_normal(501).astype(np.float32)
        for kwargs in ({}, {"mode": "mean", "padding_idx": 3}, {"weights": weights},
                       {"mode": "max"}):
            got = table.bag(ids, offsets, threads=threads, **kwargs)
            assert_same_bits(got, wide.bag(ids, offsets, **kwargs))
            assert_same_bits(got, reference.embedding_bag(codes, scales, ids, offsets, **kwargs))
            assert_same_bits(rq.embedding_bag(codes, scales, ids, offsets, **kwargs), got)
        queries = rng.standard_normal((5, table.shape[1])).astype(np.float32)
        assert_same_bits(table.norms(threads=threads), wide.norms())
        for precision in ("exact", "fast"):
            assert_same_bits(table.dot(queries, precision=precision, threads=threads),
                             wide.dot(queries, precision=precision))
            got_scores, got_ids = table.search(queries, k=7, metric="cosine",
                                               precision=precision, threads=threads)
            want_scores, want_ids = wide.search(queries, k=7, metric="cosine",
                                                precision=precision)
            assert np.array_equal(got_ids, want_ids)
            assert_same_bits(got_scores, want_scores)


def test_numpy_indexing_reads_16_bit_scales_as_their_values():
    # qe[rows, columns] dequantizes element by element: once read bfloat16's uint16 bits as
    # numbers (values 10^6 times too large) and computed float16 scales in float16
    for scale_dtype, table, wide in tables():
        full = wide.dequantize()
        for key in ((slice(None), slice(0, 5)), (3, slice(2, 7)), ([0, 4, 2], 1),
                    (np.arange(len(table)) % 3 == 0, -1)):
            assert_same_bits(table[key], full[key])


@pytest.mark.skipif(not C_BACKEND, reason="the numpy backend widens per call")
def test_a_lookup_does_not_copy_the_scales():
    rows = 1 << 20
    codes = np.full((rows, 1), 129, np.uint8)
    scales = np.full(rows, 0x3F80, np.uint16)  # bfloat16 1.0, 2 MB
    table = rq.QuantizedEmbedding(codes, scales)
    out = np.empty((rows, 1), np.float32)
    ids = np.arange(0, rows, 7)
    bag_out = np.empty((len(range(0, len(ids), 16)), 1), np.float32)

    def peak(call):
        call()  # warm: first calls may cache
        tracemalloc.start()
        call()
        found = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return found

    # the table's lookups allocate nothing the size of the table (a widened copy is 4 MB)
    assert peak(lambda: table.dequantize(out=out)) < 1 << 18
    assert peak(lambda: table.take(ids[:1000])) < 1 << 18
    assert peak(lambda: table.bag(ids, np.arange(0, len(ids), 16), out=bag_out)) < 1 << 18
    # the arrays API checks the scales each call, and costs no more with 16 bits than with 32
    # (give or take a few small Python objects, which threads other tests started, such as
    # Dask's, may allocate meanwhile: a widened copy would be 4 MB more)
    wide = np.ones(rows, np.float32)
    assert peak(lambda: rq.dequantize(codes, scales, out=out)) <= peak(
        lambda: rq.dequantize(codes, wide, out=out)) + (1 << 12)
    assert (out == 1).all()


def test_16_bit_scales_as_users_hold_them():
    torch = pytest.importorskip("torch")
    E = awkward_table(11)
    table = rq.quantize(E, scale_dtype="bfloat16")
    tensor = torch.from_numpy(table.scales.astype(np.int16)).view(torch.bfloat16)
    from_tensor = rq.QuantizedEmbedding(table.codes, tensor)
    assert from_tensor.scale_dtype == "bfloat16"
    assert np.array_equal(from_tensor.scales, table.scales)
    assert_same_bits(from_tensor.scale_values(), tensor.float().numpy())
    half = rq.QuantizedEmbedding(table.codes, table.scale_values().astype(np.float16))
    assert half.scheme.name == "rowwise-symmetric-u8-f16"
    with pytest.raises(ValueError, match="does not match scales"):
        rq.QuantizedEmbedding(table.codes, table.scales, scheme="rowwise-symmetric-u8")
    assert rq.QuantizedEmbedding(table.codes, table.scales,
                                 scheme="rowwise-symmetric-u8-bf16").scale_dtype == "bfloat16"


@pytest.mark.parametrize("bad, message", [
    (np.array([1.0, np.nan], np.float16), r"scales\[1\] = nan"),
    (np.array([1.0, -2.0], np.float16), r"scales\[1\] = -2.0"),
    (np.array([0x3F80, 0x7F80], np.uint16), r"scales\[1\] = inf"),  # bfloat16 inf
    (np.array([0x3F80, 0xBF80], np.uint16), r"scales\[1\] = -1.0"),
])
def test_bad_16_bit_scales_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        rq.QuantizedEmbedding(np.zeros((2, 3), np.uint8), bad)
    with pytest.raises(ValueError, match=message):
        rq.dequantize(np.zeros((2, 3), np.uint8), bad)


def test_other_scale_dtypes_are_refused():
    with pytest.raises(TypeError, match="scales must be float32, float16, or bfloat16"):
        rq.QuantizedEmbedding(np.zeros((2, 3), np.uint8), np.zeros(2, np.float64))
    with pytest.raises(TypeError, match="scales must be float32, float16, or bfloat16"):
        rq.take(np.zeros((2, 3), np.uint8), np.zeros(2, np.int16), [0])


# ------------------------------------------------------------------ files, CLI, interop


def header_of(path):
    with open(path, "rb") as file:
        size = struct.unpack("<Q", file.read(8))[0]
        return json.loads(file.read(size))


@pytest.mark.parametrize("scale_dtype, tensor_dtype", [("bfloat16", "BF16"), ("float16", "F16")])
@pytest.mark.parametrize("mmap", [True, False])
def test_files_store_the_scale_dtype(tmp_path, scale_dtype, tensor_dtype, mmap):
    E = awkward_table(2, rows=50, dim=8)
    table = rq.quantize(E, scale_dtype=scale_dtype, keys=[f"w{i}" for i in range(50)])
    path = tmp_path / "t.safetensors"
    table.save(path)
    header = header_of(path)
    assert header["scales"]["dtype"] == tensor_dtype and header["scales"]["shape"] == [50]
    assert header["__metadata__"]["scheme"] == table.scheme.name
    assert header["__metadata__"]["bias"] == "128"
    wide_path = tmp_path / "wide.safetensors"
    rq.QuantizedEmbedding(table.codes, table.scale_values(), keys=table.keys).save(wide_path)
    assert header_of(wide_path)["__metadata__"]["scheme"] == "rowwise-symmetric-u8"
    loaded = rq.load(path, mmap=mmap)
    assert loaded.scheme == table.scheme
    assert np.array_equal(loaded.scales.view(np.uint16), table.scales.view(np.uint16))
    assert_same_bits(loaded["w7"], table[7])
    assert path.stat().st_size < wide_path.stat().st_size
    streamed = tmp_path / "streamed.safetensors"
    np.save(tmp_path / "E.npy", E)
    rq.quantize_file(tmp_path / "E.npy", streamed, scale_dtype=scale_dtype, chunk_rows=7)
    rq.quantize(E, scale_dtype=scale_dtype).save(tmp_path / "whole.safetensors")
    assert streamed.read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


def test_a_file_whose_scales_do_not_match_its_scheme_is_refused(tmp_path):
    table = rq.quantize(awkward_table(1, rows=4, dim=3), scale_dtype="float16")
    path = tmp_path / "t.safetensors"
    table.save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"rowwise-symmetric-u8-f16")
    data[at : at + 24] = b"rowwise-symmetric-u8-bf1"  # an unknown scheme name
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="unknown quantization scheme"):
        rq.load(path)
    data[at : at + 24] = b"rowwise-symmetric-u8-f16"
    text = bytes(data).replace(b'"dtype":"F16"', b'"dtype":"U16"', 1)
    path.write_bytes(text)
    with pytest.raises(ValueError, match="scales must be F16"):
        rq.load(path)


def test_cli_quantize_with_16_bit_scales(tmp_path):
    E = awkward_table(4, rows=30, dim=6)
    np.save(tmp_path / "E.npy", E)
    out = tmp_path / "E.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "rowquant", "quantize", str(tmp_path / "E.npy"), "-o", str(out),
         "--scale-dtype", "bfloat16", "--scale-rounding", "truncate"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    want = rq.quantize(E, scale_dtype="bfloat16", scale_rounding="truncate")
    got = rq.load(out)
    assert np.array_equal(got.codes, want.codes) and np.array_equal(got.scales, want.scales)
    shown = subprocess.run([sys.executable, "-m", "rowquant", "inspect", str(out)],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "rowwise-symmetric-u8-bf16" in shown.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rowquant", "quantize", str(tmp_path / "E.npy"), "-o", str(out),
         "--scale-dtype", "float64"], capture_output=True, text=True)
    assert bad.returncode != 0 and "float64" in bad.stderr


def test_torch_and_fbgemm_read_16_bit_tables():
    torch = pytest.importorskip("torch")
    from rowquant.torch import QuantizedEmbeddingBag

    table = rq.quantize(awkward_table(6, rows=40, dim=12), scale_dtype="bfloat16")
    widened = table.scale_values()
    packed = torch.from_numpy(rq.to_fbgemm(table))
    rows = torch.ops.quantized.embedding_bag_byte_unpack(packed).numpy()
    assert_same_bits(rows, reference.dequantize(table.codes, widened))
    module = QuantizedEmbeddingBag(table, mode="sum")
    ids = torch.tensor([1, 5, 7, 39, 0]), torch.tensor([0, 2])
    assert_same_bits(module(*ids).numpy(), table.bag(ids[0].numpy(), ids[1].numpy()))
