"""The C kernels of 4-bit and 2-bit rows (csrc/nbit.c) on every SIMD path this processor runs:
bit for bit rowquant.reference's dequantize, take and bags (which tests/test_nbit.py proves
equal to FBGEMM's operators), at every width around the 8- and 16-value steps, with weights,
padding, empty bags, bad ids and threads."""

import numpy as np
import pytest
from helpers import assert_same_bits

import rowquant as rq
from rowquant import _api, _backend, reference

pytestmark = pytest.mark.skipif(
    rq.backend_info()["backend"] != "c", reason="the C kernels of the compiled backend"
)
PATHS = _api.simd_paths() if rq.backend_info()["backend"] == "c" else []
# 320 and 640 columns fill one and two AVX-512 bag passes; 321, 700 and 1001 need more
DIMS = (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 63, 64, 65, 100, 300, 320, 321,
        640, 700, 1001)
# the variant each 8-bit path runs for N-bit rows
NBIT_VARIANT = {"scalar": "scalar", "avx2": "avx2", "avx512": "avx512", "avx512vnni": "avx512"}


@pytest.fixture(params=PATHS or ["none"])
def simd_path(request):
    before = rq.backend_info()["simd"]
    yield _api.use_simd(request.param)
    _api.use_simd(before)


def nbit_table(rng, n_rows, dim, bits):
    """Packed rows of magnitudes over 40 binades, a constant row and a zero row, quantized by
    the reference."""
    E = rng.standard_normal((n_rows, dim)) * 2.0 ** rng.integers(-12, 12, (n_rows, 1))
    E[0] = 0
    E[1] = 3.5
    return reference.quantize_nbit(E.astype(np.float32), bits)


def test_each_path_runs_its_own_variant(simd_path):
    assert _backend.kernels.nbit_kernel_name() == NBIT_VARIANT[simd_path]


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", DIMS)
def test_dequantize_and_take_equal_the_reference(simd_path, bits, dim):
    rng = np.random.default_rng(dim * bits)
    codes, scales, biases = nbit_table(rng, 40, dim, bits)
    expected = reference.dequantize_nbit(codes, scales, biases, bits, dim)
    for threads in (1, 2):
        out = np.full((40, dim), np.nan, np.float32)
        _backend.kernels.nbit_dequantize(codes, scales, biases, bits, dim, out, threads)
        assert_same_bits(out, expected)
        ids = rng.integers(0, 40, 300)
        taken = np.full((300, dim), np.nan, np.float32)
        assert _backend.kernels.nbit_take(codes, scales, biases, bits, dim, ids, taken,
                                          threads) == -1
        assert_same_bits(taken, expected[ids])


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bags_equal_the_reference(simd_path, bits, dim, mode):
    rng = np.random.default_rng(dim * bits + len(mode))
    codes, scales, biases = nbit_table(rng, 30, dim, bits)
    lengths = rng.integers(0, 9, 40)
    lengths[3] = 0  # an empty bag
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, 30, int(bounds[-1])).astype(np.int64)
    ids[bounds[5]:bounds[6]] = 7  # a bag of nothing but padding
    weights = (rng.random(len(ids)) * 4 - 1).astype(np.float32)
    number = _backend.kernels.BAG_MODES[mode]
    for weighted in (False, True) if mode != "max" else (False,):
        for padding in (None, 7):
            w = weights if weighted else None
            expected = reference.pool_bags_nbit(codes, scales, biases, bits, dim, ids, bounds, w,
                                                mode, padding)
            for threads in (1, 2):
                out = np.full((40, dim), np.nan, np.float32)
                assert _backend.kernels.nbit_bag(
                    codes, scales, biases, bits, dim, ids, bounds, w, number,
                    -1 if padding is None else padding, out, threads) == -1
                assert_same_bits(out, expected)


@pytest.mark.parametrize("bits", [4, 2])
def test_bad_ids_leave_the_output_untouched(simd_path, bits):
    codes, scales, biases = nbit_table(np.random.default_rng(1), 10, 19, bits)
    ids = np.array([1, 2, 10, -1], np.int64)
    out = np.full((4, 19), 7, np.float32)
    assert _backend.kernels.nbit_take(codes, scales, biases, bits, 19, ids, out, 2) == 2
    bags = np.full((2, 19), 7, np.float32)
    assert _backend.kernels.nbit_bag(codes, scales, biases, bits, 19, ids[::-1].copy(),
                                     np.array([0, 2, 4]), None, 0, -1, bags, 2) == 0
    assert (out == 7).all() and (bags == 7).all()


def test_special_scales_and_biases_widen_exactly(simd_path):
    """Subnormal, negative, infinite and NaN float16 scales and biases, and -0: the C widening
    of each is numpy's (rq tables refuse non-finite ones; the kernels read what they get)."""
    halves = np.array([0, 0x8000, 1, 0x3ff, 0x400, 0x8001, 0x7bff, 0xfbff, 0x7c00, 0xfc00,
                       0x7e01, 0x3c00, 0xbc00, 0x0200], np.uint16).view(np.float16)
    n = len(halves)
    codes = np.full((n * n, 3), 0x1f, np.uint8)  # codes 15, 1, 15, 1, ... (4-bit, dim 5)
    scales, biases = np.repeat(halves, n), np.tile(halves, n)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = reference.dequantize_nbit(codes, scales, biases, 4, 5)
    out = np.empty((n * n, 5), np.float32)
    _backend.kernels.nbit_dequantize(codes, scales, biases, 4, 5, out, 1)
    assert_same_bits(out, expected)


def test_the_table_uses_the_c_kernels(monkeypatch):
    """QuantizedEmbedding's 4-bit lookups go through the compiled kernels (no numpy shim)."""
    from rowquant import _ext

    calls = []
    for name in ("nbit_bag", "nbit_take"):
        original = getattr(_ext, name)
        monkeypatch.setattr(_ext, name, lambda *args, _f=original, _n=name: (
            calls.append(_n), _f(*args))[1])
    E = np.random.default_rng(3).standard_normal((50, 33)).astype(np.float32)
    qe = rq.quantize(E, bits=4)
    codes, scales, biases = qe.codes, qe.scales, qe.biases
    ids = np.array([[3, 4, 49], [0, 0, 1]])
    assert_same_bits(qe.bag(ids), reference.pool_bags_nbit(
        codes, scales, biases, 4, 33, ids.reshape(-1), np.array([0, 3, 6])))
    assert_same_bits(qe.take([5, 6]), reference.take_nbit(codes, scales, biases, 4, 33,
                                                          np.array([5, 6])))
    assert calls == ["nbit_bag", "nbit_take"]


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [7, 64, 300, 333])
def test_fused_rows_and_separate_arrays_give_the_same_bits(simd_path, bits, dim):
    """Tables hold FBGEMM's fused rows, their scales and biases strided views into them (an odd
    stride for odd row widths: reads at any alignment); older files give separate arrays."""
    from rowquant._nbit_arrays import fbgemm_nbit_rows, fused_views

    rng = np.random.default_rng(dim + bits)
    codes, scales, biases = nbit_table(rng, 50, dim, bits)
    rows = fbgemm_nbit_rows(codes, scales, biases)
    views = fused_views(rows, codes.shape[1])
    assert views[1].strides == (rows.shape[1],) and np.shares_memory(views[1], rows)
    ids = rng.integers(0, 50, 200).astype(np.int64)
    bounds = np.arange(0, 201, 8, dtype=np.int64)
    weights = rng.random(200).astype(np.float32)
    for w in (None, weights):
        expected = reference.pool_bags_nbit(codes, scales, biases, bits, dim, ids, bounds, w)
        out = np.full((25, dim), np.nan, np.float32)
        assert _backend.kernels.nbit_bag(*views, bits, dim, ids, bounds, w, 0, -1, out, 1) == -1
        assert_same_bits(out, expected)
    taken = np.empty((200, dim), np.float32)
    assert _backend.kernels.nbit_take(*views, bits, dim, ids, taken, 1) == -1
    assert_same_bits(taken, reference.dequantize_nbit(codes, scales, biases, bits, dim)[ids])
    table = rq.quantize(reference.dequantize_nbit(codes, scales, biases, bits, dim), bits=bits)
    assert table.scales.base is not None and table.scales.strides == (rows.shape[1],)
