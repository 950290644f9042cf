"""Bad ids in take / bag: the error names the position and the true value, and nothing is
written to a given out= buffer."""

import re

import numpy as np
import pytest
from helpers import random_table

import rowquant as rq

N_ROWS, DIM = 7, 5
CODES, SCALES = random_table(np.random.default_rng(7), N_ROWS, DIM)
TABLE = rq.QuantizedEmbedding(CODES, SCALES)


def take(ids, out=None):
    return rq.take(CODES, SCALES, ids, out=out)


def table_take(ids, out=None):
    return TABLE.take(ids, out=out)


def bag(ids, out=None):
    # one bag per id (1-D), or one bag per row of ids (2-D)
    offsets = np.arange(len(ids)) if ids.ndim == 1 else None
    return rq.embedding_bag(CODES, SCALES, ids, offsets, out=out)


def table_bag(ids, out=None):
    offsets = np.arange(len(ids)) if ids.ndim == 1 else None
    return TABLE.bag(ids, offsets, out=out)


def bag_with_lengths(ids, out=None):
    if ids.ndim != 1:
        return rq.embedding_bag(CODES, SCALES, ids, out=out)
    return rq.embedding_bag(CODES, SCALES, ids, lengths=np.ones(len(ids), np.int64), out=out)


LOOKUPS = [take, table_take, bag, table_bag, bag_with_lengths]
BAG_LOOKUPS = [bag, table_bag, bag_with_lengths]


def out_shape(lookup, ids):
    if lookup in BAG_LOOKUPS:
        return (len(ids), DIM)
    return ids.shape + (DIM,)


def check_index_error(lookup, ids, message):
    """The call raises IndexError naming ``message``, and leaves a given out= untouched."""
    with pytest.raises(IndexError, match=re.escape(message)):
        lookup(ids)
    out = np.full(out_shape(lookup, ids), np.float32(-3.25))
    before = out.copy()
    with pytest.raises(IndexError, match=re.escape(message)):
        lookup(ids, out=out)
    assert out.tobytes() == before.tobytes()


@pytest.mark.parametrize("lookup", LOOKUPS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bool", "complex64"])
def test_ids_not_integer(lookup, dtype):
    with pytest.raises(TypeError, match="ids"):
        lookup(np.ones(3, dtype=dtype))


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_id_equal_to_row_count(lookup):
    check_index_error(lookup, np.array([0, 3, N_ROWS, -1, 9]), f"ids[2] = {N_ROWS}")


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_negative_id(lookup):
    check_index_error(lookup, np.array([1, -3, 900]), "ids[1] = -3")


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_last_id_bad(lookup):
    ids = np.zeros(1001, np.int64)
    ids[-1] = 10**12
    check_index_error(lookup, ids, f"ids[1000] = {10**12}")


@pytest.mark.parametrize("lookup", LOOKUPS)
@pytest.mark.parametrize("dtype,value", [
    ("int8", -128), ("int16", 300), ("int32", -(2**31)), ("int64", -(2**63)),
    ("uint8", 255), ("uint16", 65535), ("uint32", 2**32 - 1),
    ("uint64", 2**63 + 5), ("uint64", 2**64 - 1), ("uint64", 2**63),
])
def test_true_value_is_reported_for_every_dtype(lookup, dtype, value):
    ids = np.array([2, 6, value, 1], dtype=dtype)
    check_index_error(lookup, ids, f"ids[2] = {value}")


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_two_dimensional_position(lookup):
    ids = np.array([[0, 1, 2], [3, 4, 7]])
    check_index_error(lookup, ids, "ids[1, 2] = 7")


@pytest.mark.parametrize("lookup", [take, table_take])
def test_three_dimensional_position(lookup):
    ids = np.zeros((2, 3, 4), np.int64)
    ids[1, 2, 3] = -1
    ids[1, 0, 1] = 9
    check_index_error(lookup, ids, "ids[1, 0, 1] = 9")


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_strided_ids_report_logical_position(lookup):
    wide = np.zeros(20, np.int64)
    wide[7] = 50  # not part of the view
    wide[8] = 40  # position 4 of wide[::2]
    check_index_error(lookup, wide[::2], "ids[4] = 40")


def test_empty_table_has_no_valid_id():
    codes, scales = np.zeros((0, DIM), np.uint8), np.zeros(0, np.float32)
    with pytest.raises(IndexError, match=re.escape("ids[0] = 0")):
        rq.take(codes, scales, np.array([0]))
    with pytest.raises(IndexError, match=re.escape("ids[0] = 0")):
        rq.QuantizedEmbedding(codes, scales).take(np.array([0]))


def test_padding_idx_does_not_excuse_bad_ids():
    # A negative padding_idx counts from the end, negative ids do not: id -1 is an error even
    # when padding_idx names the last row.
    with pytest.raises(IndexError, match=re.escape("ids[1] = -1")):
        rq.embedding_bag(CODES, SCALES, np.array([0, -1]), np.array([0]),
                         padding_idx=N_ROWS - 1)


# Ids as objects other than an int64 ndarray: the table's fast path (a Cython memoryview over
# the ids) took None as an empty array, read a one-field record array as int64, and crashed on
# array.array and memoryview ids with AttributeError. Every lookup must treat them as rq.take
# does: convert what numpy converts, refuse the rest with TypeError, range-check with IndexError.
def _odd_ids():
    import array

    record = np.zeros(2, dtype=[("a", "<i8")])
    return {
        "None": (None, TypeError),
        "record": (record, TypeError),
        "string": ("12", TypeError),
        "object": (np.array([1, None], dtype=object), TypeError),
        "ragged": ([[1, 2], [3]], ValueError),
        "array.array in range": (array.array("q", [1, 6]), None),
        "array.array out of range": (array.array("q", [1, 99]), IndexError),
        "memoryview out of range": (memoryview(np.array([3, 99])), IndexError),
        "memoryview in range": (memoryview(np.array([3, 1], np.int32)), None),
        "int64 big-endian": (np.array([2, 4], ">i8"), None),
        "int64 non-contiguous": (np.arange(8)[::2][:3], None),
        "list": ([0, 6], None),
        "tuple out of range": ((0, 7), IndexError),
    }


@pytest.mark.parametrize("lookup", [take, table_take])
@pytest.mark.parametrize("case", list(_odd_ids()))
def test_ids_of_every_kind_get_the_same_answer(lookup, case):
    ids, error = _odd_ids()[case]
    if error is None:
        expected = rq.reference.take(CODES, SCALES, np.asarray(ids).astype(np.int64))
        np.testing.assert_array_equal(lookup(ids), expected)
    else:
        with pytest.raises(error, match="ids"):
            lookup(ids)


@pytest.mark.parametrize("case", list(_odd_ids()))
def test_odd_ids_in_bags(case):
    ids, error = _odd_ids()[case]
    if error in (None, IndexError):
        ids = np.asarray(ids)
        ids = ids.reshape(1, -1)
    for call in (lambda: TABLE.bag(ids), lambda: rq.embedding_bag(CODES, SCALES, ids)):
        if error is None:
            expected = rq.reference.embedding_bag(CODES, SCALES, np.asarray(ids).astype(np.int64))
            np.testing.assert_array_equal(call(), expected)
        else:
            with pytest.raises(error, match="ids"):
                call()


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_ragged_ids_say_how_to_pass_bags_of_different_sizes(lookup):
    with pytest.raises(ValueError, match="offsets= or lengths="):
        if lookup in BAG_LOOKUPS:
            TABLE.bag([[1, 2], [3]])
        else:
            lookup([[1, 2], [3]])


def test_negative_ids_are_refused_by_lookups_and_counted_from_the_end_by_indexing():
    """One rule: take and bag refuse negative ids (as torch.nn.Embedding does); qe[...] is
    numpy indexing on the dequantized table, where -1 is the last row."""
    for lookup in LOOKUPS:
        check_index_error(lookup, np.array([1, -1]), "ids[1] = -1 is out of range")
    np.testing.assert_array_equal(TABLE[-1], TABLE.take([N_ROWS - 1])[0])
    np.testing.assert_array_equal(TABLE[[-1, 0]], TABLE.take([N_ROWS - 1, 0]))
