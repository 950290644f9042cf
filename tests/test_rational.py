"""Codes against exact rational arithmetic, on values within a few ulps of exact ties.

``code = floor(E / s + 128.5)`` is evaluated with fractions.Fraction on the float32 values: no
floating-point shortcut (a float32 division, a reciprocal multiply) survives these rows.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
from helpers import TINY, assert_same_bits

import rowquant as rq

DIM = 97


def quantize_rows(E):
    return rq.quantize_rows(E)


def quantize_table(E):
    qe = rq.quantize(E)
    return qe.codes, qe.scales


QUANTIZERS = [quantize_rows, quantize_table, rq.reference.quantize_rows]


def exact_code(value, scale):
    if scale == 0:
        return 128
    code = math.floor(Fraction(float(value)) / Fraction(float(scale)) + Fraction(257, 2))
    assert 1 <= code <= 255, "test data must not need the subnormal clamp"
    return code


def exact_codes(E, scales):
    return np.array([[exact_code(v, s) for v in row] for row, s in zip(E, scales)],
                    dtype=np.uint8).reshape(E.shape)


def nudge(value, steps):
    """value moved by ``steps`` float32 ulps (negative: toward -inf)."""
    value = np.float32(value)
    direction = np.float32(np.inf if steps > 0 else -np.inf)
    for _ in range(abs(steps)):
        value = np.nextafter(value, direction)
    return value


def near_tie_row(scale, rng):
    """A row whose max is 127 * scale (a float32 value, so the row's scale is ``scale``) and whose
    other entries sit within two ulps of ties (k + 1/2) * scale, ties themselves included."""
    row_max = np.float32(127 * Fraction(float(scale)))
    assert Fraction(float(row_max)) == 127 * Fraction(float(scale))
    row = np.empty(DIM, np.float32)
    for j in range(DIM):
        k = int(rng.integers(-127, 127))
        tie = np.float32(float(Fraction(float(scale)) * (2 * k + 1) / 2))
        row[j] = nudge(tie, int(rng.integers(-2, 3)))
    row[rng.integers(DIM)] = row_max if rng.random() < 0.5 else -row_max
    assert np.abs(row).max() == row_max
    return row


def scales_to_try(rng):
    powers = [2.0**e for e in (-148, -140, -130, -127, -126, -125, -60, -1, 0, 1, 30, 100)]
    # Odd mantissas below 2**16: exact ties exist but 1 / scale is inexact.
    odd = [(int(rng.integers(0, 2**15)) * 2 + 1) * 2.0**e
           for e in (-148, -145, -135, -126, -90, -20, -3, 0, 5, 60, 104)]
    odd += [3.0, 5.0 * 2**-10, 7.0 * 2**20, 127.0, 65535.0 * 2**-16]
    return [np.float32(s) for s in powers + odd]


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_near_ties_exact_scales(quantize):
    rng = np.random.default_rng(1708)
    scales = scales_to_try(rng)
    E = np.stack([near_tie_row(s, rng) for s in scales])
    codes, got_scales = quantize(E)
    assert_same_bits(got_scales, np.array(scales, dtype=np.float32))
    np.testing.assert_array_equal(codes, exact_codes(E, scales))


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_near_ties_rounded_scales(quantize):
    # Row maxima with full 24-bit mantissas: the scale is a rounded quotient, ties (k + 1/2) * s
    # are not float32 values, and the entries are the float32 values closest to them.
    rng = np.random.default_rng(2017)
    rows, maxima = [], []
    for exponent in (-120, -100, -30, -5, 0, 7, 40, 120):
        for _ in range(3):
            row_max = np.float32(rng.uniform(1, 2) * 2.0**exponent)
            scale = Fraction(float(row_max / np.float32(127)))
            row = np.empty(DIM, np.float32)
            for j in range(DIM):
                tie = np.float32(float(scale * (2 * int(rng.integers(-126, 126)) + 1) / 2))
                row[j] = nudge(tie, int(rng.integers(-2, 3)))
            row[rng.integers(DIM)] = row_max
            rows.append(row)
            maxima.append(row_max)
    E = np.stack(rows)
    codes, scales = quantize(E)
    expected_scales = np.array([m / np.float32(127) for m in maxima], dtype=np.float32)
    assert_same_bits(scales, expected_scales)
    np.testing.assert_array_equal(codes, exact_codes(E, expected_scales))


def test_scale_is_one_rounded_division():
    # A row max whose float32 quotient by 127 differs from a float64 quotient rounded twice, or
    # from max * float32(1 / 127): the scale must be the single correctly rounded division.
    rng = np.random.default_rng(5)
    maxima = np.float32(rng.uniform(1, 2, 4000)) * np.float32(2.0**3)
    expected = maxima / np.float32(127)
    by_reciprocal = maxima * (np.float32(1) / np.float32(127))
    assert (expected != by_reciprocal).any(), "the data must tell the two apart"
    E = np.zeros((len(maxima), 3), np.float32)
    E[:, 1] = -maxima
    for quantize in QUANTIZERS:
        _, scales = quantize(E)
        assert_same_bits(scales, expected)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_zero_scale_only_below_half_the_smallest_step(quantize):
    # max = 63 * 2**-149: max / 127 < 2**-150 underflows to 0, every code is 128.
    # max = 64 * 2**-149: max / 127 rounds up to 2**-149, and codes count whole steps.
    values = np.array([63, -63, 5, 0, -1, 31, 32, -32], dtype=np.float64)
    below = (values * TINY).astype(np.float32)
    above = ((values + np.sign(values)) * TINY).astype(np.float32)
    above[0] = np.float32(64 * TINY)
    E = np.stack([below, above])
    codes, scales = quantize(E)
    assert_same_bits(scales, np.array([0, TINY], dtype=np.float32))
    assert (codes[0] == 128).all()
    np.testing.assert_array_equal(codes[1], exact_codes(E[1:], [np.float32(TINY)])[0])
    np.testing.assert_array_equal(codes[1], (128 + above / np.float32(TINY)).astype(np.uint8))


@pytest.mark.parametrize("quantize", [quantize_rows, quantize_table])
def test_float64_input_is_rounded_to_float32_first(quantize):
    # 2.5 - 2**-30 rounds to the float32 tie 2.5, which rounds up to code 131. Quantizing the
    # float64 value directly would give 130.
    E = np.array([[127.0, 2.5 - 2.0**-30, -(2.5 + 2.0**-30), 0.5 - 2.0**-40]], dtype=np.float64)
    codes, scales = quantize(E)
    assert scales[0] == 1
    np.testing.assert_array_equal(codes[0], [255, 131, 126, 129])


@pytest.mark.parametrize("dequantize", [rq.dequantize, rq.reference.dequantize])
def test_dequantized_is_the_exact_product_rounded_once(dequantize):
    # (code - 128) has 8 bits and the scale 24, so their product is exact in float64; one
    # rounding to float32 gives the contract's value, including overflow to inf and subnormals.
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (64, 33), dtype=np.uint8)
    scales = (rng.uniform(0.5, 1, 64) * 2.0 ** rng.integers(-149, 128, 64)).astype(np.float32)
    scales[:4] = [0, TINY, 3 * TINY, np.finfo(np.float32).max]
    product = (codes.astype(np.float64) - 128) * scales.astype(np.float64)[:, None]
    with np.errstate(over="ignore"):
        expected = product.astype(np.float32)
    assert_same_bits(dequantize(codes, scales), expected)
