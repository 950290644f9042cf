"""Arrays that start off their items' natural alignment (views of a byte buffer at an odd
offset) reach the C kernels only as aligned copies: C reads float32 and int64 through typed
pointers, and a misaligned one is undefined behaviour (UBSan reported it in .ci/sanitize).
Results equal those of the aligned arrays; a misaligned out= is refused."""

import numpy as np
import pytest

import rowquant as rq
from rowquant import _checks
from helpers import assert_same_bits


def misaligned(array):
    """A copy of ``array`` (C order) whose data starts 1 byte past an aligned address."""
    raw = np.zeros(array.nbytes + 1, np.uint8)[1:]
    view = raw.view(array.dtype).reshape(array.shape)
    view[...] = array
    assert not view.flags.aligned
    return view


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((50, 24)).astype(np.float32)
    qe = rq.quantize(E)
    ids = rng.integers(0, 50, 30)
    return E, qe, ids, rng.random(30, dtype=np.float32)


def test_checks_hand_the_kernels_aligned_arrays(data):
    E, qe, ids, weights = data
    assert _checks.float_matrix(misaligned(E)).flags.aligned
    _, scales = _checks.codes_and_scales(qe.codes, misaligned(qe.scales))
    assert scales.flags.aligned
    assert _checks.as_int64(misaligned(ids)).flags.aligned


def test_results_equal_those_of_aligned_arrays(data):
    E, qe, ids, weights = data
    codes, scales = rq.quantize_rows(misaligned(E))
    np.testing.assert_array_equal(codes, qe.codes)
    assert_same_bits(scales, qe.scales)
    odd_scales = misaligned(qe.scales)
    assert_same_bits(rq.take(qe.codes, odd_scales, misaligned(ids)), qe.take(ids))
    assert_same_bits(rq.dequantize(qe.codes, odd_scales), qe.dequantize())
    assert_same_bits(
        rq.embedding_bag(qe.codes, odd_scales, ids, [0, 10], weights=misaligned(weights)),
        qe.bag(ids, [0, 10], weights=weights),
    )
    table = rq.QuantizedEmbedding(qe.codes, odd_scales)
    assert_same_bits(table.take(misaligned(ids)), qe.take(ids))  # the serving fast path too


def test_misaligned_out_is_refused(data):
    E, qe, ids, _ = data
    out = misaligned(np.zeros((30, 24), np.float32))
    with pytest.raises(ValueError, match="out must be aligned to its 4-byte items"):
        qe.take(ids, out=out)
    with pytest.raises(ValueError, match="scales_out must be aligned"):
        rq.quantize_rows(E, scales_out=misaligned(np.zeros(50, np.float32)))


@pytest.mark.parametrize("offset", range(0, 64, 4))
def test_out_at_any_float_offset_from_a_cache_line(offset):
    # The AVX-512 dequantize stores the columns before out's first 64-byte line apart (masked),
    # then whole lines: every start within a line, and rows narrower and wider than a line.
    rng = np.random.default_rng(offset)
    for dim in (15, 16, 17, 64, 100, 300):
        codes = rng.integers(0, 256, (7, dim), dtype=np.uint8)
        scales = rng.uniform(0, 2, 7).astype(np.float32)
        space = np.zeros(7 * dim + 32, dtype=np.float32)
        start = (-space.ctypes.data % 64 + offset) % 64 // 4
        out = space[start : start + 7 * dim].reshape(7, dim)
        assert out.ctypes.data % 64 == offset
        qe = rq.QuantizedEmbedding(codes, scales)
        expected = rq.reference.dequantize(codes, scales)
        assert_same_bits(qe.dequantize(out), expected)
        assert_same_bits(qe.take(np.array([3, 0, 6]), out[:3]), expected[[3, 0, 6]])
        assert (space[:start] == 0).all() and (space[start + 7 * dim :] == 0).all()
