"""No public function modifies its inputs, and read-only inputs are accepted."""

import numpy as np
import pytest
from helpers import LAYOUTS, in_layout, random_table

import rowquant as rq

N_ROWS, DIM = 23, 11


def snapshot(array):
    base = array
    while isinstance(base, np.ndarray) and base.base is not None and isinstance(
            base.base, np.ndarray):
        base = base.base
    return (array, array.dtype, array.shape, array.strides, array.flags.writeable,
            np.array(array, copy=True).tobytes(), base, np.array(base, copy=True).tobytes())


def assert_unchanged(saved):
    array, dtype, shape, strides, writeable, data, base, base_data = saved
    assert array.dtype == dtype and array.shape == shape and array.strides == strides
    assert array.flags.writeable == writeable
    assert np.array(array, copy=True).tobytes() == data
    assert np.array(base, copy=True).tobytes() == base_data


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    codes, scales = random_table(rng, N_ROWS, DIM)
    return {
        "codes": codes,
        "scales": scales,
        "ids": rng.integers(0, N_ROWS, 12),
        "ids_2d": rng.integers(0, N_ROWS, (3, 4)).astype(np.uint16),
        "offsets": np.array([0, 5, 5, 9]),
        "offsets_last": np.array([0, 5, 5, 9, 12], np.int32),
        "lengths": np.array([5, 0, 4, 3]),
        "weights": rng.uniform(-1, 1, 12).astype(np.float32),
        "weights_2d": rng.uniform(-1, 1, (3, 4)).astype(np.float32),
    }


def calls(x):
    qe = rq.QuantizedEmbedding(x["codes"], x["scales"])
    c, s = x["codes"], x["scales"]
    return {
        "dequantize": lambda: rq.dequantize(c, s),
        "take": lambda: rq.take(c, s, x["ids"]),
        "take_2d": lambda: rq.take(c, s, x["ids_2d"]),
        "bag_offsets": lambda: rq.embedding_bag(c, s, x["ids"], x["offsets"],
                                                weights=x["weights"], padding_idx=-2),
        "bag_last_offset": lambda: rq.embedding_bag(c, s, x["ids"], x["offsets_last"],
                                                    include_last_offset=True, mode="mean"),
        "bag_lengths": lambda: rq.embedding_bag(c, s, x["ids"], lengths=x["lengths"],
                                                weights=x["weights"]),
        "bag_2d": lambda: rq.embedding_bag(c, s, x["ids_2d"], weights=x["weights_2d"],
                                           padding_idx=3),
        "QuantizedEmbedding": lambda: rq.QuantizedEmbedding(c, s),
        "qe.take": lambda: qe.take(x["ids"]),
        "qe.getitem": lambda: qe[x["ids_2d"]],
        "qe.bag": lambda: qe.bag(x["ids"], x["offsets"], weights=x["weights"]),
        "qe.bag_lengths": lambda: qe.bag(x["ids"], lengths=x["lengths"], mode="mean"),
        "qe.dequantize": lambda: qe.dequantize(),
        "reference.dequantize": lambda: rq.reference.dequantize(c, s),
        "reference.take": lambda: rq.reference.take(c, s, x["ids_2d"]),
        "reference.embedding_bag": lambda: rq.reference.embedding_bag(
            c, s, x["ids"], lengths=x["lengths"], weights=x["weights"], padding_idx=-1),
    }


CALL_NAMES = list(calls(make_inputs()))


@pytest.mark.parametrize("name", CALL_NAMES)
def test_lookups_leave_inputs_unchanged(name):
    inputs = make_inputs()
    saved = [snapshot(a) for a in inputs.values()]
    calls(inputs)[name]()
    for entry in saved:
        assert_unchanged(entry)


@pytest.mark.parametrize("name", CALL_NAMES)
def test_read_only_inputs_are_accepted(name):
    inputs = make_inputs()
    expected = calls(inputs)[name]()
    for array in inputs.values():
        array.flags.writeable = False
    got = calls(inputs)[name]()
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "list"])
@pytest.mark.parametrize("quantize", [rq.quantize_rows, rq.quantize])
def test_quantize_leaves_its_input_unchanged(layout, quantize):
    E = np.random.default_rng(4).standard_normal((N_ROWS, DIM)).astype(np.float32)
    E[3] = 0
    E[4, ::2] = -0.0
    A = in_layout(E, layout)
    saved = snapshot(A)
    quantize(A)
    assert_unchanged(saved)
    A.flags.writeable = False
    quantize(A)


def test_reference_quantize_leaves_its_input_unchanged():
    E = np.random.default_rng(4).standard_normal((N_ROWS, DIM)).astype(np.float32)
    saved = snapshot(E)
    rq.reference.quantize_rows(E)
    assert_unchanged(saved)


def test_quantize_rows_with_buffers_leaves_its_input_unchanged():
    E = np.random.default_rng(5).standard_normal((N_ROWS, DIM)).astype(np.float32)
    saved = snapshot(E)
    rq.quantize_rows(E, codes_out=np.empty((N_ROWS, DIM), np.uint8),
                     scales_out=np.empty(N_ROWS, np.float32), threads=2)
    assert_unchanged(saved)


def test_failing_calls_leave_inputs_unchanged():
    E = np.random.default_rng(6).standard_normal((N_ROWS, DIM)).astype(np.float32)
    E[7, 3] = np.nan
    saved = snapshot(E)
    with pytest.raises(ValueError):
        rq.quantize_rows(E)
    with pytest.raises(ValueError):
        rq.quantize(E)
    assert_unchanged(saved)

    inputs = make_inputs()
    inputs["ids"][7] = N_ROWS
    saved = [snapshot(a) for a in inputs.values()]
    c, s = inputs["codes"], inputs["scales"]
    with pytest.raises(IndexError):
        rq.take(c, s, inputs["ids"])
    with pytest.raises(IndexError):
        rq.embedding_bag(c, s, inputs["ids"], inputs["offsets"], weights=inputs["weights"])
    with pytest.raises((ValueError, IndexError)):
        rq.embedding_bag(c, s, inputs["ids"], lengths=inputs["lengths"][:-1])
    for entry in saved:
        assert_unchanged(entry)


def test_quantize_leaves_a_list_unchanged():
    rows = [[1.5, -2.0, 0.25], [0.0, 3.0, -7.0]]
    copy = [list(row) for row in rows]
    rq.quantize_rows(rows)
    rq.quantize(rows)
    assert rows == copy
