"""Pooled lookups (embedding bags): hand-worked examples, then generated cases against a float64
model and against rq.reference, within a tolerance scaled to the bag size."""

import numpy as np
import pytest
from helpers import (
    bag_error_bound,
    BAG_FORMS,
    INTEGER_DTYPES,
    assert_bags_close,
    assert_same_bits,
    bag_cases,
    bag_kwargs,
    exact_bags,
)
from hypothesis import given, settings

import rowquant as rq

EXAMPLES = settings(max_examples=100, deadline=None)

# Rows that dequantize to small exact values (scale 1 and 0.5), so every bag below is exact.
CODES = np.array([[129, 130], [126, 128], [255, 1]], dtype=np.uint8)
SCALES = np.array([1, 1, 0.5], dtype=np.float32)
ROW0, ROW1, ROW2 = [1, 2], [-2, 0], [63.5, -63.5]
IDS = np.array([0, 1, 2, 0])  # bags [0, 1], [], [2, 0]


def bag_functions():
    qe = rq.QuantizedEmbedding(CODES, SCALES)
    return {
        "rq.embedding_bag": lambda *a, **kw: rq.embedding_bag(CODES, SCALES, *a, **kw),
        "qe.bag": qe.bag,
        "reference": lambda *a, **kw: rq.reference.embedding_bag(CODES, SCALES, *a, **kw),
    }


BAG_FUNCTIONS = list(bag_functions())


def run(name, *args, **kwargs):
    got = bag_functions()[name](*args, **kwargs)
    assert got.dtype == np.float32
    return got


def expect(got, rows):
    np.testing.assert_array_equal(got, np.array(rows, dtype=np.float32))


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_sum_with_offsets_lengths_and_last_offset(name):
    expected = [[-1, 2], [0, 0], [64.5, -61.5]]
    expect(run(name, IDS, np.array([0, 2, 2])), expected)
    expect(run(name, IDS, lengths=np.array([2, 0, 2])), expected)
    expect(run(name, IDS, np.array([0, 2, 2, 4]), include_last_offset=True), expected)


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_offsets_may_end_with_empty_bags(name):
    expect(run(name, IDS, np.array([0, 4, 4])), [[63.5, -59.5], [0, 0], [0, 0]])
    expect(run(name, IDS, np.array([0, 4, 4]), include_last_offset=True),
           [[63.5, -59.5], [0, 0]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_mean(name):
    expect(run(name, IDS, np.array([0, 2, 2]), mode="mean"), [[-0.5, 1], [0, 0], [32.25, -30.75]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_max(name):
    expect(run(name, IDS, np.array([0, 2, 2]), mode="max"), [[1, 2], [0, 0], [63.5, 2]])
    expect(run(name, np.array([[1, 1], [2, 1]]), mode="max"), [[-2, 0], [63.5, 0]])
    expect(run(name, IDS, np.array([0, 2, 2]), mode="max", padding_idx=2),
           [[1, 2], [0, 0], [1, 2]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_max_keeps_the_first_of_equal_zeros(name):
    """-0.0 and +0.0 compare equal: the first row's zero stays, so every path gives one bit
    pattern (a row of scale 0 with codes below 128 dequantizes to -0.0)."""
    codes = np.array([[100, 128], [128, 100]], dtype=np.uint8)
    scales = np.zeros(2, dtype=np.float32)
    for ids, signs in (([0, 1], [True, False]), ([1, 0], [False, True])):
        if name == "qe.bag":
            got = rq.QuantizedEmbedding(codes, scales).bag(np.array([ids]), mode="max")
        elif name == "reference":
            got = rq.reference.embedding_bag(codes, scales, np.array([ids]), mode="max")
        else:
            got = rq.embedding_bag(codes, scales, np.array([ids]), mode="max")
        np.testing.assert_array_equal(np.signbit(got[0]), signs)


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_weights(name):
    weights = np.array([1, 2, 0.5, -1], dtype=np.float32)
    expect(run(name, IDS, np.array([0, 2, 2]), weights=weights),
           [[-3, 2], [0, 0], [30.75, -33.75]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_two_dimensional_ids(name):
    ids = np.array([[0, 1], [2, 0], [1, 1]])
    expect(run(name, ids), [[-1, 2], [64.5, -61.5], [-4, 0]])
    expect(run(name, ids, mode="mean"), [[-0.5, 1], [32.25, -30.75], [-2, 0]])
    weights = np.array([[1, 2], [0.5, -1], [0, 3]], dtype=np.float32)
    expect(run(name, ids, weights=weights), [[-3, 2], [30.75, -33.75], [-6, 0]])
    # include_last_offset means nothing without offsets
    expect(run(name, ids, include_last_offset=True), [[-1, 2], [64.5, -61.5], [-4, 0]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_padding_idx_skipped_and_not_counted(name):
    offsets = np.array([0, 2, 2])
    expect(run(name, IDS, offsets, padding_idx=0), [[-2, 0], [0, 0], [63.5, -63.5]])
    expect(run(name, IDS, offsets, padding_idx=0, mode="mean"), [[-2, 0], [0, 0], [63.5, -63.5]])
    # -1 is the last row, 2
    expect(run(name, IDS, offsets, padding_idx=-1, mode="mean"), [[-0.5, 1], [0, 0], [1, 2]])
    expect(run(name, IDS, offsets, padding_idx=-3), run(name, IDS, offsets, padding_idx=0))
    weights = np.array([1, 2, 0.5, -1], dtype=np.float32)
    expect(run(name, IDS, offsets, padding_idx=2, weights=weights), [[-3, 2], [0, 0], [-1, -2]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_all_padding_bags_are_zero(name):
    ids = np.array([1, 1, 0, 1])
    for mode in ("sum", "mean", "max"):
        got = run(name, ids, np.array([0, 2, 4]), padding_idx=1, mode=mode)
        expect(got, [[0, 0], [1, 2], [0, 0]])
        assert not np.signbit(got[[0, 2]]).any()
        got = run(name, np.array([[1, 1], [1, 1]]), padding_idx=1, mode=mode)
        expect(got, [[0, 0], [0, 0]])


@pytest.mark.parametrize("name", BAG_FUNCTIONS)
def test_empty_bags_are_zero(name):
    for mode in ("sum", "mean", "max"):
        expect(run(name, np.array([], np.int64), np.array([0, 0, 0]), mode=mode), [[0, 0]] * 3)
        expect(run(name, np.zeros((4, 0), np.int64), mode=mode), [[0, 0]] * 4)
        expect(run(name, np.array([], np.int64), lengths=np.array([0, 0]), mode=mode),
               [[0, 0]] * 2)


@EXAMPLES
@given(case=bag_cases())
def test_generated_bags(case):
    codes, scales, call = case["codes"], case["scales"], case["call"]
    exact, bound = exact_bags(case)
    reference = rq.reference.embedding_bag(codes, scales, call["ids"], **bag_kwargs(call))
    assert_bags_close(reference, exact, bound)
    got = rq.embedding_bag(codes, scales, call["ids"], **bag_kwargs(call))
    assert_bags_close(got, exact, bound)
    assert_bags_close(got, reference, 2 * bound)
    qe = rq.QuantizedEmbedding(codes, scales)
    assert_bags_close(qe.bag(call["ids"], **bag_kwargs(call)), reference, 2 * bound)


@settings(max_examples=30, deadline=None)
@given(case=bag_cases())
def test_out_is_filled_and_returned(case):
    codes, scales, call = case["codes"], case["scales"], case["call"]
    exact, bound = exact_bags(case)
    qe = rq.QuantizedEmbedding(codes, scales)
    for bag in (lambda **kw: rq.embedding_bag(codes, scales, call["ids"], **kw),
                lambda **kw: qe.bag(call["ids"], **kw)):
        out = np.full(exact.shape, np.float32(np.nan))
        result = bag(**bag_kwargs(call), out=out)
        assert result is out
        assert_bags_close(out, exact, bound)


@pytest.mark.parametrize("dtype", INTEGER_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("form", BAG_FORMS)
def test_id_and_offset_dtypes_do_not_change_the_result(dtype, form):
    # The same bags given with ids, offsets and lengths of any integer dtype pool identically.
    rng = np.random.default_rng(9)
    codes = rng.integers(1, 256, (120, 13), dtype=np.uint8)
    scales = rng.uniform(0, 2, 120).astype(np.float32)
    ids = rng.integers(0, 120, 24)
    if form == "2d":
        args, kwargs = (ids.reshape(4, 6),), {}
    elif form == "lengths":
        args, kwargs = (ids,), {"lengths": np.array([5, 0, 7, 12])}
    elif form == "offsets":
        args, kwargs = (ids, np.array([0, 5, 5, 12])), {}
    else:
        args, kwargs = (ids, np.array([0, 5, 5, 12, 24])), {"include_last_offset": True}
    expected = rq.embedding_bag(codes, scales, *args, **kwargs)
    converted = tuple(a.astype(dtype) for a in args)
    converted_kwargs = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else v)
                        for k, v in kwargs.items()}
    assert_same_bits(rq.embedding_bag(codes, scales, *converted, **converted_kwargs), expected)


def test_large_bags_stay_within_tolerance():
    # Long bags of one sign accumulate rounding: it must stay within helpers.bag_error_bound.
    rng = np.random.default_rng(10)
    codes = rng.integers(129, 256, (50, 97), dtype=np.uint8)
    scales = rng.uniform(0.5, 1, 50).astype(np.float32)
    ids = rng.integers(0, 50, 5000)
    lengths = np.array([1, 4999])
    for mode in ("sum", "mean"):
        got = rq.embedding_bag(codes, scales, ids, lengths=lengths, mode=mode)
        rows = rq.reference.take(codes, scales, ids).astype(np.float64)
        exact = np.stack([rows[:1].sum(0), rows[1:].sum(0)])
        if mode == "mean":
            exact /= lengths[:, None]
        factors = np.array([scales[ids[:1]].sum(), scales[ids[1:]].sum()], dtype=np.float64)
        bound = bag_error_bound(factors[:, None], lengths[:, None])
        if mode == "mean":
            bound = bound / lengths[:, None] + 2.0**-24 * np.abs(exact)
        assert (np.abs(got - exact) <= bound).all()


def test_strided_ids_offsets_and_weights():
    rng = np.random.default_rng(13)
    codes = rng.integers(1, 256, (40, 11), dtype=np.uint8)
    scales = rng.uniform(0, 2, 40).astype(np.float32)
    ids = rng.integers(0, 40, (2, 30))
    offsets = np.array([[0, 0], [4, 4], [4, 4], [11, 11]])
    weights = rng.uniform(-1, 1, (30, 2)).astype(np.float32)
    dense = (np.ascontiguousarray(ids[0, ::2]), np.ascontiguousarray(offsets[:, 1]),
             np.ascontiguousarray(weights[::2, 0]))
    expected = rq.embedding_bag(codes, scales, dense[0], dense[1], weights=dense[2])
    got = rq.embedding_bag(codes, scales, ids[0, ::2], offsets[:, 1], weights=weights[::2, 0])
    assert_same_bits(got, expected)
    got = rq.embedding_bag(codes, scales, ids[0, ::2], lengths=np.diff(
        np.append(offsets[:, 1], 15))[::-1][::-1], weights=weights[::2, 0])
    assert_same_bits(got, expected)
