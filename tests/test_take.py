"""Row lookups (take, qe.take, qe[ids]) for every integer id dtype and any shape of ids."""

import numpy as np
import pytest
from helpers import INTEGER_DTYPES, assert_same_bits, random_table

import rowquant as rq

N_ROWS, DIM = 301, 97


@pytest.fixture(scope="module")
def table():
    codes, scales = random_table(np.random.default_rng(301), N_ROWS, DIM, exponents=(-30, 30))
    return codes, scales, rq.QuantizedEmbedding(codes, scales)


def ids_of(dtype, shape, seed=0):
    top = min(N_ROWS, int(np.iinfo(dtype).max) + 1)
    ids = np.random.default_rng(seed).integers(0, top, shape).astype(dtype)
    if ids.size:
        ids.flat[0] = top - 1
        ids.flat[-1] = 0
    return ids


def lookups(codes, scales, qe):
    return {
        "rq.take": lambda ids, **kw: rq.take(codes, scales, ids, **kw),
        "qe.take": lambda ids, **kw: qe.take(ids, **kw),
    }


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_integer_dtype(table, dtype):
    codes, scales, qe = table
    ids = ids_of(dtype, 41)
    expected = rq.reference.take(codes, scales, ids.astype(np.int64))
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)
    assert_same_bits(qe[ids], expected)


@pytest.mark.parametrize(
    "shape", [(), (0,), (1,), (7,), (3, 4), (2, 0, 3), (2, 3, 5), (1, 1, 1, 1)])
def test_any_shape_of_ids(table, shape):
    codes, scales, qe = table
    ids = ids_of(np.int64, shape, seed=len(shape))
    expected = rq.reference.take(codes, scales, ids)
    assert expected.shape == shape + (DIM,)
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)
    assert_same_bits(qe[ids], expected)


@pytest.mark.parametrize("dtype", [np.int32, np.uint64], ids=lambda d: np.dtype(d).name)
def test_non_contiguous_ids(table, dtype):
    codes, scales, qe = table
    ids = ids_of(dtype, (6, 10))[::2, ::-3]
    expected = rq.reference.take(codes, scales, np.ascontiguousarray(ids, dtype=np.int64))
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)


def test_big_endian_ids(table):
    codes, scales, qe = table
    ids = ids_of(np.int64, 17).astype(">i8")
    expected = rq.reference.take(codes, scales, ids.astype(np.int64))
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)


@pytest.mark.parametrize("shape", [(0,), (9,), (3, 4)])
def test_out_is_filled_and_returned(table, shape):
    codes, scales, qe = table
    ids = ids_of(np.int32, shape, seed=4)
    expected = rq.reference.take(codes, scales, ids.astype(np.int64))
    for take in lookups(codes, scales, qe).values():
        out = np.full(shape + (DIM,), np.float32(-7.5))
        result = take(ids, out=out)
        assert result is out
        assert_same_bits(out, expected)


def test_every_row_once(table):
    codes, scales, qe = table
    ids = np.random.default_rng(5).permutation(N_ROWS)
    expected = rq.reference.dequantize(codes, scales)[ids]
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)


def test_same_row_many_times(table):
    codes, scales, qe = table
    ids = np.full(1001, 17)
    expected = np.broadcast_to(rq.reference.dequantize(codes, scales)[17], (1001, DIM))
    for take in lookups(codes, scales, qe).values():
        assert_same_bits(take(ids), expected)
