"""Bad codes and scales, for every function that takes them."""

import re

import numpy as np
import pytest

import rowquant as rq

N_ROWS, DIM = 5, 3
ONE_ID = np.zeros(1, np.int64)

CALLS = {
    "dequantize": lambda codes, scales: rq.dequantize(codes, scales),
    "take": lambda codes, scales: rq.take(codes, scales, ONE_ID),
    "embedding_bag": lambda codes, scales: rq.embedding_bag(codes, scales, ONE_ID, ONE_ID),
    "embedding_bag_2d": lambda codes, scales: rq.embedding_bag(codes, scales, ONE_ID[None]),
    "QuantizedEmbedding": lambda codes, scales: rq.QuantizedEmbedding(codes, scales),
}


def good_codes(shape=(N_ROWS, DIM)):
    return np.full(shape, 200, np.uint8)


def good_scales(n_rows=N_ROWS):
    return np.ones(n_rows, np.float32)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "float32", "float64", "bool"])
def test_codes_not_uint8(call, dtype):
    with pytest.raises(TypeError, match="codes"):
        CALLS[call](good_codes().astype(dtype), good_scales())


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("shape", [(), (N_ROWS,), (N_ROWS, DIM, 1), (1, N_ROWS, DIM)])
def test_codes_not_two_dimensional(call, shape):
    with pytest.raises(ValueError, match="codes"):
        CALLS[call](good_codes(shape), good_scales())


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", ["float64", "int16", "int32", "uint8", "complex64"])
def test_scales_not_float32_or_16_bits(call, dtype):
    # float16, and uint16 holding bfloat16 bits, are scales too (tests/test_scales16.py)
    with pytest.raises(TypeError, match="scales"):
        CALLS[call](good_codes(), good_scales().astype(dtype))


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("shape", [(), (N_ROWS + 1,), (N_ROWS - 1,), (N_ROWS, 1), (1, N_ROWS)])
def test_scales_of_wrong_shape(call, shape):
    with pytest.raises(ValueError, match="scales"):
        CALLS[call](good_codes(), np.ones(shape, np.float32))


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("bad", [-1.0, -1e-45, np.nan, np.inf, -np.inf],
                         ids=["negative", "negative_subnormal", "nan", "inf", "-inf"])
@pytest.mark.parametrize("row", [0, 3, N_ROWS - 1])
def test_scale_negative_or_not_finite(call, bad, row):
    scales = good_scales()
    scales[row] = bad
    with pytest.raises(ValueError, match=re.escape(f"scales[{row}]")):
        CALLS[call](good_codes(), scales)


@pytest.mark.parametrize("call", CALLS)
def test_first_bad_scale_is_named(call):
    scales = good_scales(40)
    scales[[17, 23, 31]] = [np.nan, -2.0, np.inf]
    with pytest.raises(ValueError, match=re.escape("scales[17]")):
        CALLS[call](good_codes((40, DIM)), scales)


# Each call of CALLS again, over every row of the table (ids out of order), returning rows.
IDS = np.array([3, 0, 4, 1, 2])
ROWS_OF = {
    "dequantize": lambda codes, scales: rq.dequantize(codes, scales),
    "take": lambda codes, scales: rq.take(codes, scales, IDS),
    "embedding_bag": lambda codes, scales: rq.embedding_bag(codes, scales, IDS, [0]),
    "embedding_bag_2d": lambda codes, scales: rq.embedding_bag(codes, scales, IDS[None]),
    "QuantizedEmbedding": lambda codes, scales: rq.QuantizedEmbedding(codes, scales).take(IDS),
}


@pytest.mark.parametrize("call", CALLS)
def test_zero_and_tiny_scales_are_valid(call):
    """Scales of 0, the smallest subnormal and near float32's maximum are accepted, and the rows
    are (code - 128) * scale rounded once to float32 (DESIGN.md section 1): zeros, multiples of
    2**-149, and +-inf where the product passes float32's range. Bags add the rows; the sums are
    exact here whatever the order (each column is dominated by its largest value)."""
    assert ROWS_OF.keys() == CALLS.keys()
    scales = np.array([0, 1e-45, 1, 3e38, 0], np.float32)
    codes = np.array(
        [[1, 128, 255], [0, 129, 200], [0, 77, 255], [129, 130, 0], [255, 0, 128]], np.uint8
    )
    with np.errstate(over="ignore"):
        # exact in float64 (an 8-bit integer times a float32), then one rounding
        rows = ((codes.astype(np.float64) - 128) * scales[:, None]).astype(np.float32)
        if call.startswith("embedding_bag"):
            expected = rows.astype(np.float64).sum(axis=0, keepdims=True).astype(np.float32)
        elif call == "dequantize":
            expected = rows
        else:
            expected = rows[IDS]
    assert rows[1, 0] == -(2.0**-142) and rows[1, 1] == 2.0**-149
    assert rows[3].tolist() == [np.float32(3e38), np.inf, -np.inf]
    np.testing.assert_array_equal(ROWS_OF[call](codes, scales), expected)
