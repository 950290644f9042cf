"""The worked example, the exact ties and the zero row of tests/data/seed_example.json.

Every quantizer the package exposes, the reference included, must reproduce them exactly.
"""

import numpy as np
import pytest
from helpers import assert_same_bits, assert_same_codes, load_seed

import rowquant as rq

SEED = load_seed()


def quantize_rows(E):
    return rq.quantize_rows(E)


def quantize_table(E):
    qe = rq.quantize(E)
    return qe.codes, qe.scales


def quantize_reference(E):
    return rq.reference.quantize_rows(E)


QUANTIZERS = [quantize_rows, quantize_table, quantize_reference]


def float32_from_hex(text):
    value = float.fromhex(text)
    assert float(np.float32(value)) == value, f"{text} is not a float32 value"
    return np.float32(value)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_example_codes_and_scales(quantize):
    example = SEED["example"]
    codes, scales = quantize(np.array(example["matrix"], dtype=np.float32))
    assert_same_codes(codes, np.array(example["codes"], dtype=np.uint8))
    from_hex = np.array([float32_from_hex(h) for h in example["scales_float32_hex"]])
    assert_same_bits(scales, from_hex)
    assert_same_bits(scales, np.array(example["scales"], dtype=np.float32))


def test_example_scales_are_one_float32_division():
    # 20000 / 127 = 157.48031496..., whose nearest float32 is 0x1.3af5ecp+7.
    assert float32_from_hex("0x1.3af5ecp+7") == np.float32(20000) / np.float32(127)
    assert float32_from_hex("0x1.ec2030p+13") == np.float32(1999999) / np.float32(127)


@pytest.mark.parametrize("quantize", [quantize_rows, quantize_table])
def test_example_from_python_lists(quantize):
    example = SEED["example"]
    codes, _ = quantize(example["matrix"])
    assert_same_codes(codes, np.array(example["codes"], dtype=np.uint8))


def dequantize_function(codes, scales):
    return rq.dequantize(codes, scales)


def dequantize_table(codes, scales):
    return rq.QuantizedEmbedding(codes, scales).dequantize()


def index_table(codes, scales):
    return rq.QuantizedEmbedding(codes, scales)[:]


def take_all(codes, scales):
    return rq.take(codes, scales, np.arange(len(codes)))


DEQUANTIZERS = [dequantize_function, dequantize_table, index_table, take_all,
                rq.reference.dequantize]


@pytest.mark.parametrize("dequantize", DEQUANTIZERS)
def test_example_dequantized(dequantize):
    example = SEED["example"]
    codes = np.array(example["codes"], dtype=np.uint8)
    scales = np.array([float32_from_hex(h) for h in example["scales_float32_hex"]])
    got = dequantize(codes, scales)
    assert_same_bits(got, np.array(example["dequantized"], dtype=np.float32))


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_ties_round_up(quantize):
    ties = SEED["ties"]
    row = np.array([ties["row"]], dtype=np.float32)
    # The row max is 127, so the scale is exactly 1 and row[j] / scale is exactly k + 1/2.
    assert np.abs(row).max() == 127
    codes, scales = quantize(row)
    assert_same_bits(scales, np.array([ties["scale"]], dtype=np.float32))
    assert_same_codes(codes, np.array([ties["codes"]], dtype=np.uint8))


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_ties_round_up_at_any_power_of_two_scale(quantize):
    ties = SEED["ties"]
    expected = np.array([ties["codes"]], dtype=np.uint8)
    for exponent in (-148, -140, -126, -20, 0, 3, 100):
        row = (np.array(ties["row"]) * 2.0**exponent).astype(np.float32)[None, :]
        codes, scales = quantize(row)
        assert scales[0] == np.float32(2.0**exponent), exponent
        assert_same_codes(codes, expected)


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_zero_row(quantize):
    zero = SEED["zero_row"]
    codes, scales = quantize(np.array([zero["row"]], dtype=np.float32))
    assert_same_codes(codes, np.array([zero["codes"]], dtype=np.uint8))
    assert_same_bits(scales, np.array([zero["scale"]], dtype=np.float32))
    for dequantize in DEQUANTIZERS:
        assert_same_bits(dequantize(codes, scales),
                         np.array([zero["dequantized"]], dtype=np.float32))


@pytest.mark.parametrize("quantize", QUANTIZERS)
def test_all_seed_rows_in_one_table(quantize):
    # Rows are independent: stacking the seed rows changes nothing.
    example, ties, zero = SEED["example"], SEED["ties"], SEED["zero_row"]
    width = len(ties["row"])
    pad = [0.0] * (width - 4)
    E = np.array([row + pad for row in example["matrix"]] + [ties["row"], zero["row"] + pad],
                 dtype=np.float32)
    codes, _ = quantize(E)
    assert_same_codes(codes[:3, :4], np.array(example["codes"], dtype=np.uint8))
    assert (codes[:3, 4:] == 128).all()
    assert_same_codes(codes[3], np.array(ties["codes"], dtype=np.uint8))
    assert (codes[4] == 128).all()
