"""Properties of quantization that hold on any data: the error bound and the range of codes."""

import numpy as np
from helpers import FLOAT32_MAX, SMALLEST_NORMAL, TINY, matrices, normal_matrices
from hypothesis import given, settings

import rowquant as rq

EXAMPLES = settings(max_examples=60, deadline=None)


@EXAMPLES
@given(E=normal_matrices())
def test_error_at_most_half_a_step(E):
    # |E - x| <= s / 2 up to the final float32 rounding of x. Holds wherever the scale is a normal
    # float32 (the data here); see the tests below for the rows where it cannot.
    qe = rq.quantize(E)
    scales = qe.scales.astype(np.float64)
    assert (scales >= SMALLEST_NORMAL).all()
    error = np.abs(E.astype(np.float64) - qe.dequantize().astype(np.float64))
    assert (error <= scales[:, None] * (0.5 + 2.0**-15)).all()


def test_error_at_most_half_a_step_on_gaussian_tables():
    rng = np.random.default_rng(0)
    E = (rng.standard_normal((301, 97)) * 2.0 ** rng.integers(-60, 60, (301, 1)))
    E = E.astype(np.float32)
    codes, scales = rq.quantize_rows(E)
    x = rq.dequantize(codes, scales).astype(np.float64)
    bound = scales.astype(np.float64)[:, None] * (0.5 + 2.0**-15)
    assert (np.abs(E - x) <= bound).all()
    # and the bound is not vacuous: errors do come close to half a step
    assert (np.abs(E - x) >= 0.45 * scales.astype(np.float64)[:, None]).any()


@EXAMPLES
@given(E=matrices())
def test_codes_in_range_and_monotone(E):
    # Codes lie in [1, 255]: 0 never occurs, and the clamp never wraps. Within a row, a larger
    # value never gets a smaller code, and where the scale is a normal float32 (so max / s is
    # within a rounding of 127) the row max gets 255, or 1 if it is negative.
    codes, scales = rq.quantize_rows(E)
    assert codes.dtype == np.uint8
    assert (codes >= 1).all()
    for row, row_codes, scale in zip(E, codes, scales):
        if row.size == 0:
            continue
        order = np.argsort(row, kind="stable")
        assert (np.diff(row_codes[order].astype(int)) >= 0).all()
        if scale == 0:
            assert (row_codes == 128).all()
        if scale < SMALLEST_NORMAL:
            continue
        biggest = np.argmax(np.abs(row))
        assert row_codes[biggest] == (255 if row[biggest] > 0 else 1)


def test_codes_never_zero_on_random_tables():
    rng = np.random.default_rng(7)
    E = rng.uniform(-1, 1, (513, 11)).astype(np.float32)
    E[::2] *= -1
    codes, _ = rq.quantize_rows(E)
    assert codes.min() >= 1
    assert codes.min() == 1 and codes.max() == 255  # a row whose max is negative reaches 1


def test_codes_clamped_when_the_scale_is_a_coarse_subnormal():
    # max = 190 * 2**-149: max / 127 = 1.496 * 2**-149 rounds to a scale of 2**-149, so
    # floor(E / s + 128.5) would be 318 for the max and -61 for its negative: both clamp.
    steps = np.array([190, -190, 128, -128, 127, -127, 64, 0, -1])
    E = (steps * TINY).astype(np.float32)[None, :]
    for codes, scales in (rq.quantize_rows(E), rq.reference.quantize_rows(E)):
        assert scales[0] == np.float32(TINY)
        np.testing.assert_array_equal(codes[0], [255, 1, 255, 1, 255, 1, 192, 128, 127])


def test_zero_scale_rows_dequantize_to_zero():
    E = np.array([[0.0, -0.0, 0.0], [63 * TINY, -TINY, 0.0], [-63 * TINY, 7 * TINY, 0.0]],
                 dtype=np.float32)
    qe = rq.quantize(E)
    assert (qe.scales == 0).all()
    assert (qe.codes == 128).all()
    assert (qe.dequantize() == 0).all()


def test_largest_float32_row():
    # The scale of a row holding the float32 maximum is finite, and its codes are the extremes.
    E = np.array([[FLOAT32_MAX, -FLOAT32_MAX, 0.0, FLOAT32_MAX / 4]], dtype=np.float32)
    codes, scales = rq.quantize_rows(E)
    assert scales[0] == np.float32(FLOAT32_MAX) / np.float32(127)
    assert np.isfinite(scales).all()
    np.testing.assert_array_equal(codes[0], [255, 1, 128, 160])  # 31.75 + 128.5
