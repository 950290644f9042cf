"""Bad tables given to quantize / quantize_rows: the exception type and what its message names."""

import re

import numpy as np
import pytest

import rowquant as rq


def quantize_rows(E, **kwargs):
    return rq.quantize_rows(E, **kwargs)


def quantize(E, **kwargs):
    return rq.quantize(E, **kwargs)


QUANTIZERS = [quantize_rows, quantize]


@pytest.mark.parametrize("quantize", QUANTIZERS)
@pytest.mark.parametrize(
    "dtype", ["int8", "int32", "int64", "uint8", "uint64", "bool", "complex64", "complex128"])
def test_non_real_float_dtype_is_a_type_error(quantize, dtype):
    E = np.ones((3, 4), dtype=dtype)
    with pytest.raises(TypeError, match=rf"\b{dtype}\b"):
        quantize(E)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_object_dtype_is_a_type_error(quantize):
    E = np.empty((2, 2), dtype=object)
    E[:] = 1.5
    with pytest.raises(TypeError, match="object"):
        quantize(E)


@pytest.mark.parametrize("quantize", QUANTIZERS)
@pytest.mark.parametrize("shape", [(), (5,), (0,), (2, 3, 4), (1, 1, 1)])
def test_not_two_dimensional_is_a_value_error(quantize, shape):
    with pytest.raises(ValueError, match="2-D"):
        quantize(np.ones(shape, np.float32))


def position_pattern(row, column):
    # "row 2" must not match "row 20": the numbers end where the digits end.
    return rf"(?s)(?=.*\brow {row}\b)(?=.*\bcolumn {column}\b)"


NON_FINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("quantize", QUANTIZERS)
@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_names_row_and_column(quantize, bad):
    E = np.ones((30, 25), np.float32)
    E[21, 13] = bad
    with pytest.raises(ValueError, match=position_pattern(21, 13)):
        quantize(E)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_first_bad_element_in_row_major_order(quantize):
    # A later row has a bad value in an earlier column; the first in row-major order is (2, 7).
    E = np.ones((40, 11), np.float32)
    E[3, 0] = np.nan
    E[2, 7] = np.inf
    E[2, 9] = np.nan
    E[39, 0] = -np.inf
    for layout in (E, np.asfortranarray(E), E.astype(">f4"), E.astype(np.float64)):
        with pytest.raises(ValueError, match=position_pattern(2, 7)):
            quantize(layout)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_first_bad_element_in_a_big_table(quantize):
    # 12001x200 (12 MB of work) is split across two threads, rows 0-6000 and 6000-12000; each
    # share has a bad value, and the one in the first share is the one reported.
    E = np.ones((12001, 200), np.float32)
    E[5000, 150] = np.inf
    E[6001, 3] = np.nan
    E[11999, 5] = np.nan
    E[3000:, :] *= 2
    with pytest.raises(ValueError, match=position_pattern(5000, 150)):
        quantize(E, threads=2)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_non_finite_in_float16_input(quantize):
    E = np.ones((3, 5), np.float16)
    E[1, 4] = np.inf
    with pytest.raises(ValueError, match=position_pattern(1, 4)):
        quantize(E)


@pytest.mark.parametrize("quantize", QUANTIZERS)
@pytest.mark.parametrize("value", [1e39, -1e39, 1e300])
def test_float64_beyond_float32_range(quantize, value):
    E = np.ones((4, 6))
    E[1, 2] = value
    E[3, 0] = value
    with pytest.raises(ValueError, match=position_pattern(1, 2)):
        quantize(E)


def test_float64_that_rounds_to_the_float32_maximum_is_accepted():
    # Within half an ulp above the float32 maximum a float64 value converts to the maximum, not
    # to inf: it is quantized as np.asarray(E, np.float32) is.
    E = np.array([[np.finfo(np.float32).max * (1 + 2.0**-26), 1.0, -5e37]])
    expected_codes, expected_scales = rq.reference.quantize_rows(E.astype(np.float32))
    table = rq.quantize(E)
    for codes, scales in (rq.quantize_rows(E), (table.codes, table.scales)):
        np.testing.assert_array_equal(codes, expected_codes)
        np.testing.assert_array_equal(scales, expected_scales)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_non_finite_in_a_list(quantize):
    with pytest.raises(ValueError, match=position_pattern(0, 1)):
        quantize([[1.0, float("nan")], [2.0, 3.0]])


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_non_finite_in_strided_input_reports_logical_position(quantize):
    wide = np.ones((5, 20), np.float32)
    wide[3, 6] = np.nan  # column 3 of wide[:, ::2]
    wide[1, 7] = np.nan  # not part of the view
    with pytest.raises(ValueError, match=position_pattern(3, 3)):
        quantize(wide[:, ::2])


def test_messages_are_not_confused_by_size():
    # The position is the first bad element, not its flat index or a column of another row.
    E = np.ones((12, 12), np.float32)
    E[10, 1] = np.nan
    with pytest.raises(ValueError) as raised:
        rq.quantize_rows(E)
    message = str(raised.value)
    assert re.search(r"\brow 10\b", message) and re.search(r"\bcolumn 1\b", message), message
    assert "121" not in message, message
