"""QuantizedEmbedding: attributes, numpy indexing on the dequantized table, pickling, repr."""

import pickle
import re

import numpy as np
import pytest
from helpers import assert_same_bits, assert_same_codes, random_table

import rowquant as rq

N_ROWS, DIM = 37, 11


@pytest.fixture
def table():
    codes, scales = random_table(np.random.default_rng(37), N_ROWS, DIM)
    return codes, scales, rq.QuantizedEmbedding(codes, scales)


def test_attributes(table):
    codes, scales, qe = table
    assert isinstance(qe, rq.QuantizedEmbedding)
    assert qe.shape == (N_ROWS, DIM)
    assert len(qe) == N_ROWS
    assert qe.nbytes == N_ROWS * DIM + 4 * N_ROWS
    assert qe.nbytes == qe.codes.nbytes + qe.scales.nbytes
    assert_same_codes(qe.codes, codes)
    assert_same_bits(qe.scales, scales)
    assert qe.codes.shape == (N_ROWS, DIM) and qe.scales.shape == (N_ROWS,)


def test_quantize_gives_a_table():
    E = np.random.default_rng(1).standard_normal((13, 97)).astype(np.float32)
    qe = rq.quantize(E)
    assert isinstance(qe, rq.QuantizedEmbedding)
    assert qe.shape == (13, 97) and len(qe) == 13
    assert qe.nbytes == 13 * 97 + 4 * 13


def test_codes_and_scales_are_read_only(table):
    _, _, qe = table
    assert not qe.codes.flags.writeable
    assert not qe.scales.flags.writeable
    with pytest.raises(ValueError):
        qe.codes[0, 0] = 7
    with pytest.raises(ValueError):
        qe.scales[0] = 7


def test_read_only_even_from_quantize():
    qe = rq.quantize(np.ones((3, 5), np.float32))
    assert not qe.codes.flags.writeable
    assert not qe.scales.flags.writeable


def test_constructor_accepts_read_only_arrays(table):
    _, _, qe = table
    again = rq.QuantizedEmbedding(qe.codes, qe.scales)
    assert_same_codes(again.codes, qe.codes)
    assert_same_bits(again.scales, qe.scales)


def test_repr_names_shape_and_compression_ratio():
    qe = rq.quantize(np.ones((37, 97), np.float32))
    text = repr(qe)
    numbers = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    assert 37 in numbers and 97 in numbers, text
    ratio = 4 * 97 / (97 + 4)  # float32 bytes over code bytes plus one scale per row: 3.84
    assert any(abs(x - ratio) <= 0.051 for x in numbers), text


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_repr_of_empty_tables(shape):
    qe = rq.quantize(np.zeros(shape, np.float32))
    assert isinstance(repr(qe), str)


INDEX_KEYS = [
    0,
    5,
    N_ROWS - 1,
    -1,
    -N_ROWS,
    np.int64(3),
    np.uint8(3),
    slice(None),
    slice(2, 9, 3),
    slice(None, None, -1),
    slice(-5, None),
    slice(30, 100),
    slice(5, 2),
    np.array([3, 1, 4, 1, 5, 9, 2, 6]),
    [3, 1, 4],
    np.array([-1, -2, 0]),
    np.array([], dtype=np.int64),
    np.array([[0, 1], [2, 36]]),
    np.arange(N_ROWS) % 3 == 0,
    np.zeros(N_ROWS, dtype=bool),
    np.array(4),
    (2, 3),
    (-1, -2),
    (slice(None), slice(1, 3)),
    (slice(None), 0),
    (slice(1, 8, 2), [0, 10, 3]),
    ([0, 1], [2, 3]),
    (np.array([[0, 1], [2, 3]]), 0),
    (np.arange(N_ROWS) % 2 == 1, slice(None, None, 2)),
    (5, np.arange(DIM) > 4),
    np.arange(N_ROWS * DIM).reshape(N_ROWS, DIM) % 5 == 0,
    True,
    False,
    np.True_,
    Ellipsis,
    (Ellipsis, 2),
    None,
    (None, 3),
    (slice(None), None, 4),
]


@pytest.mark.parametrize("key", INDEX_KEYS, ids=[repr(k)[:40] for k in INDEX_KEYS])
def test_indexing_follows_numpy(table, key):
    codes, scales, qe = table
    expected = rq.reference.dequantize(codes, scales)[key]
    got = qe[key]
    assert np.asarray(got).dtype == np.float32
    assert_same_bits(np.asarray(got), np.asarray(expected))


def test_scalar_index_gives_a_float32_scalar(table):
    codes, scales, qe = table
    value = qe[4, 7]
    assert np.ndim(value) == 0
    assert np.asarray(value).dtype == np.float32
    assert float(value) == float((np.float32(codes[4, 7]) - 128) * scales[4])


def test_rows_are_fresh_arrays(table):
    # A row handed out is the caller's to change: it is not a view of shared state.
    _, _, qe = table
    row = qe[2]
    before = row.copy()
    row[:] = 12345
    many = qe[[2, 2]]
    many[:] = -1
    assert_same_bits(qe[2], before)


BAD_KEYS = [N_ROWS, -N_ROWS - 1, 10**12, [0, N_ROWS], np.array([-N_ROWS - 1]), (0, DIM),
            (N_ROWS, 0), np.ones(N_ROWS + 1, dtype=bool)]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k)[:40] for k in BAD_KEYS])
def test_bad_index_raises_index_error(table, key):
    _, _, qe = table
    with pytest.raises(IndexError):
        qe[key]


def test_negative_indices_work_in_getitem_but_not_in_take(table):
    codes, scales, qe = table
    assert_same_bits(qe[np.array([-1])], rq.reference.dequantize(codes, scales)[[-1]])
    with pytest.raises(IndexError, match=re.escape("ids[0] = -1")):
        qe.take(np.array([-1]))


def test_take_and_dequantize_methods(table):
    codes, scales, qe = table
    ids = np.array([[5, 0, 36], [36, 36, 1]])
    assert_same_bits(qe.take(ids), rq.reference.take(codes, scales, ids))
    assert_same_bits(qe.dequantize(), rq.reference.dequantize(codes, scales))
    assert_same_bits(qe.take(ids, threads=1), rq.reference.take(codes, scales, ids))
    assert_same_bits(qe.dequantize(threads=2), rq.reference.dequantize(codes, scales))


def test_out_may_be_positional(table):
    codes, scales, qe = table
    ids = np.array([4, 4, 0])
    out = np.empty((3, DIM), np.float32)
    assert qe.take(ids, out) is out
    assert_same_bits(out, rq.reference.take(codes, scales, ids))
    whole = np.empty((N_ROWS, DIM), np.float32)
    assert qe.dequantize(whole) is whole
    assert_same_bits(whole, rq.reference.dequantize(codes, scales))


def test_take_accepts_a_list(table):
    codes, scales, qe = table
    assert_same_bits(qe.take([3, 1, 4]), rq.reference.take(codes, scales, np.array([3, 1, 4])))


@pytest.mark.parametrize("shape", [(37, 11), (0, 4), (3, 0), (0, 0)])
def test_pickle_round_trip(shape):
    codes, scales = rq.reference.quantize_rows(
        np.random.default_rng(2).standard_normal(shape).astype(np.float32))
    qe = rq.QuantizedEmbedding(codes, scales)
    back = pickle.loads(pickle.dumps(qe))
    assert isinstance(back, rq.QuantizedEmbedding)
    assert back.shape == shape
    assert_same_codes(back.codes, codes)
    assert_same_bits(back.scales, scales)
    assert not back.codes.flags.writeable and not back.scales.flags.writeable
    assert_same_bits(back.dequantize(), rq.reference.dequantize(codes, scales))


def test_pickle_of_strided_table():
    rng = np.random.default_rng(8)
    big_codes = rng.integers(1, 256, (10, 9), dtype=np.uint8)
    big_scales = rng.uniform(0, 1, 20).astype(np.float32)
    qe = rq.QuantizedEmbedding(big_codes[::2, 1::2], big_scales[::4])
    back = pickle.loads(pickle.dumps(qe, protocol=pickle.HIGHEST_PROTOCOL))
    assert_same_codes(back.codes, np.ascontiguousarray(big_codes[::2, 1::2]))
    assert_same_bits(back.scales, np.ascontiguousarray(big_scales[::4]))
