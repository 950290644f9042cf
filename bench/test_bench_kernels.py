"""pytest-benchmark cases: rowquant against its numpy reference and FBGEMM on a mid-size table.

Not part of the default test run (``testpaths`` holds ``tests`` and ``src/rowquant``). Run with

    python -m pytest bench --benchmark-only -q

and compare runs with pytest-benchmark's ``--benchmark-autosave`` / ``--benchmark-compare``.
Each group (``quantize``, ``dequantize``, ``take-4096``, ``bag-8192x20``) holds the same
operation on the same data, one thread each; every case also checks that its result is what
rowquant computes, so a peer is only timed when it does the same work. The whole-matrix benchmark
with ratios, thread counts and the memory-copy floor is ``rowquant bench``.
"""

import numpy as np
import pytest

import rowquant as rq
from rowquant import reference

N_ROWS, DIM = 100_000, 128
N_IDS = 4096
N_BAGS, BAG_LENGTH = 8192, 20


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2017)
    values = rng.standard_normal((N_ROWS, DIM), dtype=np.float32)
    embedding = rq.quantize(values)
    return {
        "values": values,
        "embedding": embedding,
        "ids": rng.integers(0, N_ROWS, N_IDS, dtype=np.int64),
        "bag_ids": rng.integers(0, N_ROWS, N_BAGS * BAG_LENGTH, dtype=np.int64),
        "offsets": np.arange(0, N_BAGS * BAG_LENGTH, BAG_LENGTH, dtype=np.int64),
    }


@pytest.fixture(scope="module")
def fbgemm(data):
    """FBGEMM's byte-rowwise operators on rowquant's own codes, in FBGEMM's row layout
    ``[codes | float32 scale | float32 bias]`` with bias ``-128 * scale``: FBGEMM then
    dequantizes exactly as rowquant does."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    embedding = data["embedding"]
    packed = np.empty((N_ROWS, DIM + 8), dtype=np.uint8)
    packed[:, :DIM] = embedding.codes
    scale_and_bias = packed[:, DIM:].view(np.float32)
    scale_and_bias[:, 0] = embedding.scales
    scale_and_bias[:, 1] = np.float32(-128) * embedding.scales
    ops = torch.ops.quantized
    return {
        "torch": torch,
        "packed": torch.from_numpy(packed),
        "prepack": ops.embedding_bag_byte_prepack,
        "unpack": ops.embedding_bag_byte_unpack,
        "lookup": ops.embedding_bag_byte_rowwise_offsets,
    }


def _bag_tolerance(embedding):
    # Sums of BAG_LENGTH rows may differ from rowquant's in the last bits by summation order.
    return BAG_LENGTH * 127 * float(embedding.scales.max()) * 2.0**-22


@pytest.mark.benchmark(group="quantize")
@pytest.mark.parametrize("implementation", ["rowquant", "reference", "fbgemm"])
def test_quantize(benchmark, data, implementation, request):
    values, embedding = data["values"], data["embedding"]
    if implementation == "rowquant":
        result = benchmark(rq.quantize, values, threads=1)
        assert np.array_equal(result.codes, embedding.codes)
    elif implementation == "reference":
        codes, scales = benchmark(reference.quantize_rows, values)
        assert np.array_equal(codes, embedding.codes)
    else:
        ops = request.getfixturevalue("fbgemm")
        packed = benchmark(ops["prepack"], ops["torch"].from_numpy(values))
        assert tuple(packed.shape) == (N_ROWS, DIM + 8)  # its own min/max scheme


@pytest.mark.benchmark(group="dequantize")
@pytest.mark.parametrize("implementation", ["rowquant", "reference", "fbgemm"])
def test_dequantize(benchmark, data, implementation, request):
    embedding = data["embedding"]
    expected = reference.dequantize(embedding.codes, embedding.scales)
    if implementation == "rowquant":
        out = np.empty((N_ROWS, DIM), dtype=np.float32)
        result = benchmark(embedding.dequantize, out, threads=1)
    elif implementation == "reference":
        result = benchmark(reference.dequantize, embedding.codes, embedding.scales)
    else:
        ops = request.getfixturevalue("fbgemm")
        result = benchmark(ops["unpack"], ops["packed"]).numpy()
    assert np.array_equal(result, expected)


@pytest.mark.benchmark(group="take-4096")
@pytest.mark.parametrize("implementation", ["rowquant", "reference", "fbgemm", "np.take"])
def test_take(benchmark, data, implementation, request):
    embedding, ids = data["embedding"], data["ids"]
    expected = reference.take(embedding.codes, embedding.scales, ids)
    if implementation == "rowquant":
        out = np.empty((N_IDS, DIM), dtype=np.float32)
        result = benchmark(embedding.take, ids, out, threads=1)
    elif implementation == "reference":
        result = benchmark(reference.take, embedding.codes, embedding.scales, ids)
    elif implementation == "fbgemm":
        ops = request.getfixturevalue("fbgemm")
        torch = ops["torch"]
        id_tensor, offsets = torch.from_numpy(ids), torch.arange(N_IDS)
        result = benchmark(ops["lookup"], ops["packed"], id_tensor, offsets, mode=0).numpy()
    else:  # the unquantized lookup, reading four times the bytes
        result = benchmark(np.take, data["values"], ids, axis=0)
        expected = data["values"][ids]
    assert np.array_equal(result, expected)


@pytest.mark.benchmark(group="bag-8192x20")
@pytest.mark.parametrize("implementation", ["rowquant", "reference", "fbgemm"])
def test_bag_sum(benchmark, data, implementation, request):
    embedding, ids, offsets = data["embedding"], data["bag_ids"], data["offsets"]
    codes, scales = embedding.codes, embedding.scales
    expected = reference.embedding_bag(codes, scales, ids, offsets)
    if implementation == "rowquant":
        result = benchmark(embedding.bag, ids, offsets, threads=1)
    elif implementation == "reference":
        result = benchmark(reference.embedding_bag, codes, scales, ids, offsets)
    else:
        ops = request.getfixturevalue("fbgemm")
        torch = ops["torch"]
        id_tensor, offset_tensor = torch.from_numpy(ids), torch.from_numpy(offsets)
        result = benchmark(ops["lookup"], ops["packed"], id_tensor, offset_tensor, mode=0).numpy()
    np.testing.assert_allclose(result, expected, rtol=0, atol=_bag_tolerance(embedding))
