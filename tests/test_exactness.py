"""The public functions equal rq.reference bit for bit, on every kind of input.

Under ROWQUANT_PUREPYTHON=1 the public functions run the reference themselves; the tests then
still check the conversions of inputs (dtypes, layouts) and the wiring of the table class.
"""

import numpy as np
from helpers import (
    bag_error_bound,
    LAYOUTS,
    as_float32,
    assert_same_bits,
    assert_same_codes,
    in_layout,
    matrices,
    unaligned_copy,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import rowquant as rq

EXAMPLES = settings(max_examples=80, deadline=None)


@EXAMPLES
@given(E=matrices(), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_quantize_rows_matches_reference(E, layout, seed):
    A = in_layout(E, layout, np.random.default_rng(seed))
    expected_codes, expected_scales = rq.reference.quantize_rows(as_float32(A))
    codes, scales = rq.quantize_rows(A)
    assert_same_codes(codes, expected_codes)
    assert_same_bits(scales, expected_scales)
    assert codes.flags.c_contiguous and scales.flags.c_contiguous


@EXAMPLES
@given(E=matrices(), layout=st.sampled_from(LAYOUTS))
def test_quantize_matches_reference(E, layout):
    A = in_layout(E, layout)
    expected_codes, expected_scales = rq.reference.quantize_rows(as_float32(A))
    qe = rq.quantize(A)
    assert qe.shape == E.shape
    assert_same_codes(qe.codes, expected_codes)
    assert_same_bits(qe.scales, expected_scales)


@EXAMPLES
@given(E=matrices())
def test_dequantize_matches_reference(E):
    codes, scales = rq.reference.quantize_rows(E)
    expected = rq.reference.dequantize(codes, scales)
    assert_same_bits(rq.dequantize(codes, scales), expected)
    assert_same_bits(rq.QuantizedEmbedding(codes, scales).dequantize(), expected)


@st.composite
def arbitrary_codes_and_scales(draw):
    """Codes and scales that quantize never produces: code 0, huge scales whose products
    overflow to inf, subnormal scales whose products round, signed zero scales."""
    rng = np.random.default_rng(draw(st.integers(0, 2**63)))
    n_rows = draw(st.integers(0, 12))
    dim = draw(st.sampled_from((0, 1, 11, 97, 1536, 5, 33)))
    codes = rng.integers(0, 256, (n_rows, dim), dtype=np.uint8)
    magnitudes = rng.uniform(0.5, 1, n_rows) * 2.0 ** rng.integers(-149, 128, n_rows)
    scales = np.where(rng.random(n_rows) < 0.1, 0.0, magnitudes).astype(np.float32)
    scales[rng.random(n_rows) < 0.1] = np.finfo(np.float32).max
    return codes, scales


@EXAMPLES
@given(table=arbitrary_codes_and_scales())
def test_dequantize_matches_reference_on_any_codes(table):
    codes, scales = table
    expected = rq.reference.dequantize(codes, scales)
    assert_same_bits(rq.dequantize(codes, scales), expected)


@EXAMPLES
@given(table=arbitrary_codes_and_scales(), seed=st.integers(0, 2**32 - 1),
       n_ids=st.sampled_from((0, 1, 2, 7, 64)))
def test_take_matches_reference(table, seed, n_ids):
    codes, scales = table
    if len(codes) == 0:
        n_ids = 0
    ids = np.random.default_rng(seed).integers(0, max(len(codes), 1), n_ids)
    expected = rq.reference.take(codes, scales, ids)
    assert_same_bits(rq.take(codes, scales, ids), expected)
    qe = rq.QuantizedEmbedding(codes, scales)
    assert_same_bits(qe.take(ids), expected)
    assert_same_bits(qe[ids], expected)


@EXAMPLES
@given(E=matrices(max_rows=5), layout=st.sampled_from(LAYOUTS))
def test_round_trip_matches_reference(E, layout):
    # quantize -> dequantize as one pipeline, against the reference pipeline on float32 C input.
    A = in_layout(E, layout)
    expected = rq.reference.dequantize(*rq.reference.quantize_rows(as_float32(A)))
    assert_same_bits(rq.quantize(A).dequantize(), expected)
    assert_same_bits(rq.dequantize(*rq.quantize_rows(A)), expected)


def test_strided_codes_and_scales_match_reference():
    # Views into bigger arrays (row strides, column strides, Fortran order) are valid tables.
    rng = np.random.default_rng(11)
    big_codes = rng.integers(0, 256, (22, 31), dtype=np.uint8)
    big_scales = rng.uniform(0, 3, 44).astype(np.float32)
    views = [
        (big_codes[::2, :], big_scales[::4]),
        (big_codes[1::2, 3::3], big_scales[1::4]),
        (np.asfortranarray(big_codes[:11]), big_scales[:11]),
        (big_codes[::-2, ::-1], big_scales[::-4]),
    ]
    ids = np.array([0, 10, 3, 3, 7])
    for codes, scales in views:
        dense_codes, dense_scales = np.ascontiguousarray(codes), np.ascontiguousarray(scales)
        expected = rq.reference.dequantize(dense_codes, dense_scales)
        assert_same_bits(rq.dequantize(codes, scales), expected)
        assert_same_bits(rq.take(codes, scales, ids), expected[ids])
        assert_same_bits(rq.QuantizedEmbedding(codes, scales)[ids], expected[ids])
        pooled = rq.embedding_bag(codes, scales, ids, np.array([0, 2]))
        rows = expected[ids].astype(np.float64)
        exact = np.stack([rows[:2].sum(axis=0), rows[2:].sum(axis=0)])
        factors = np.ascontiguousarray(scales)[ids].astype(np.float64)
        bound = bag_error_bound(np.array([[factors[:2].sum()], [factors[2:].sum()]]), 3)
        assert pooled.dtype == np.float32
        assert (np.abs(pooled - exact) <= bound + 1e-30).all()


def test_unaligned_codes_scales_and_ids():
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, (9, 13), dtype=np.uint8)
    scales = rng.uniform(0, 2, 9).astype(np.float32)
    ids = rng.integers(0, 9, 20)
    weights = rng.uniform(-1, 1, 20).astype(np.float32)
    expected = rq.reference.dequantize(codes, scales)
    odd_codes, odd_scales = unaligned_copy(codes), unaligned_copy(scales)
    odd_ids, odd_weights = unaligned_copy(ids), unaligned_copy(weights)
    assert_same_bits(rq.dequantize(odd_codes, odd_scales), expected)
    assert_same_bits(rq.take(odd_codes, odd_scales, odd_ids), expected[ids])
    pooled = rq.embedding_bag(codes, scales, ids, lengths=[7, 13], weights=weights)
    assert_same_bits(rq.embedding_bag(odd_codes, odd_scales, odd_ids, lengths=[7, 13],
                                      weights=odd_weights), pooled)
