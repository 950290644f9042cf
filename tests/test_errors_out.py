"""out=, codes_out= and scales_out= buffers that cannot take the result."""

import numpy as np
import pytest
from helpers import random_table

import rowquant as rq

N_ROWS, DIM = 6, 5
CODES, SCALES = random_table(np.random.default_rng(6), N_ROWS, DIM)
TABLE = rq.QuantizedEmbedding(CODES, SCALES)
IDS = np.array([5, 0, 2, 2])
OFFSETS = np.array([0, 1, 1])

# name -> (call taking out=, the shape of a good out)
CALLS = {
    "dequantize": (lambda out: rq.dequantize(CODES, SCALES, out=out), (N_ROWS, DIM)),
    "take": (lambda out: rq.take(CODES, SCALES, IDS, out=out), (4, DIM)),
    "take_2d": (lambda out: rq.take(CODES, SCALES, IDS.reshape(2, 2), out=out), (2, 2, DIM)),
    "embedding_bag": (lambda out: rq.embedding_bag(CODES, SCALES, IDS, OFFSETS, out=out),
                      (3, DIM)),
    "qe.dequantize": (lambda out: TABLE.dequantize(out=out), (N_ROWS, DIM)),
    "qe.take": (lambda out: TABLE.take(IDS, out=out), (4, DIM)),
    "qe.bag": (lambda out: TABLE.bag(IDS, OFFSETS, out=out), (3, DIM)),
}


def bad_outs(shape):
    rows = shape[0]
    yield "too_many_rows", np.zeros((rows + 1,) + shape[1:], np.float32)
    yield "too_few_columns", np.zeros(shape[:-1] + (DIM - 1,), np.float32)
    yield "flat", np.zeros(int(np.prod(shape)), np.float32)
    yield "float64", np.zeros(shape, np.float64)
    yield "float16", np.zeros(shape, np.float16)
    yield "int32", np.zeros(shape, np.int32)
    yield "big_endian", np.zeros(shape, ">f4")
    yield "fortran", np.asfortranarray(np.zeros(shape, np.float32))
    yield "column_strided", np.zeros(shape[:-1] + (2 * DIM,), np.float32)[..., ::2]
    yield "row_padded", np.zeros(shape[:-1] + (DIM + 3,), np.float32)[..., :DIM]
    read_only = np.zeros(shape, np.float32)
    read_only.flags.writeable = False
    yield "read_only", read_only


CASES = [(call, kind) for call in CALLS for kind, _ in bad_outs(CALLS[call][1])]


@pytest.mark.parametrize("call,kind", CASES)
def test_bad_out(call, kind):
    function, shape = CALLS[call]
    out = dict(bad_outs(shape))[kind]
    snapshot = np.array(out, copy=True)
    with pytest.raises(ValueError, match="out"):
        function(out)
    np.testing.assert_array_equal(np.asarray(out), snapshot)


@pytest.mark.parametrize("call", CALLS)
def test_good_out_is_returned(call):
    function, shape = CALLS[call]
    out = np.full(shape, np.float32(np.nan))
    assert function(out) is out
    assert not np.isnan(out).any()


E = np.random.default_rng(1).standard_normal((N_ROWS, DIM)).astype(np.float32)


def bad_codes_outs():
    yield "wrong_shape", np.zeros((N_ROWS, DIM + 1), np.uint8)
    yield "transposed_shape", np.zeros((DIM, N_ROWS), np.uint8)
    yield "int8", np.zeros((N_ROWS, DIM), np.int8)
    yield "float32", np.zeros((N_ROWS, DIM), np.float32)
    yield "fortran", np.asfortranarray(np.zeros((N_ROWS, DIM), np.uint8))
    yield "strided", np.zeros((N_ROWS, 2 * DIM), np.uint8)[:, ::2]
    read_only = np.zeros((N_ROWS, DIM), np.uint8)
    read_only.flags.writeable = False
    yield "read_only", read_only


def bad_scales_outs():
    yield "wrong_shape", np.zeros(N_ROWS + 1, np.float32)
    yield "two_dimensional", np.zeros((N_ROWS, 1), np.float32)
    yield "float64", np.zeros(N_ROWS, np.float64)
    yield "big_endian", np.zeros(N_ROWS, ">f4")
    yield "strided", np.zeros(2 * N_ROWS, np.float32)[::2]
    read_only = np.zeros(N_ROWS, np.float32)
    read_only.flags.writeable = False
    yield "read_only", read_only


@pytest.mark.parametrize("kind", [kind for kind, _ in bad_codes_outs()])
def test_bad_codes_out(kind):
    codes_out = dict(bad_codes_outs())[kind]
    snapshot = codes_out.copy()
    with pytest.raises(ValueError, match="codes_out"):
        rq.quantize_rows(E, codes_out=codes_out)
    with pytest.raises(ValueError, match="codes_out"):
        rq.quantize_rows(E, codes_out=codes_out, scales_out=np.zeros(N_ROWS, np.float32))
    np.testing.assert_array_equal(codes_out, snapshot)


@pytest.mark.parametrize("kind", [kind for kind, _ in bad_scales_outs()])
def test_bad_scales_out(kind):
    scales_out = dict(bad_scales_outs())[kind]
    snapshot = scales_out.copy()
    with pytest.raises(ValueError, match="scales_out"):
        rq.quantize_rows(E, scales_out=scales_out)
    with pytest.raises(ValueError, match="scales_out"):
        rq.quantize_rows(E, codes_out=np.zeros((N_ROWS, DIM), np.uint8), scales_out=scales_out)
    np.testing.assert_array_equal(scales_out, snapshot)


def test_codes_out_and_scales_out_are_filled_and_returned():
    expected_codes, expected_scales = rq.reference.quantize_rows(E)
    codes_out = np.zeros((N_ROWS, DIM), np.uint8)
    scales_out = np.full(N_ROWS, np.nan, np.float32)
    codes, scales = rq.quantize_rows(E, codes_out=codes_out, scales_out=scales_out)
    assert codes is codes_out and scales is scales_out
    np.testing.assert_array_equal(codes_out, expected_codes)
    np.testing.assert_array_equal(scales_out.view(np.uint32), expected_scales.view(np.uint32))
    # either buffer alone
    codes, scales = rq.quantize_rows(E, codes_out=np.zeros((N_ROWS, DIM), np.uint8))
    np.testing.assert_array_equal(codes, expected_codes)
    codes, scales = rq.quantize_rows(E, scales_out=np.zeros(N_ROWS, np.float32))
    np.testing.assert_array_equal(scales.view(np.uint32), expected_scales.view(np.uint32))


# Output buffers over the memory of a caller's input that the call first converts (so the
# kernels read a copy): the overlap must be found against the caller's array, or the call
# overwrites it. Each case builds fresh arrays over one byte buffer: (inputs to check, call).
def _buffer():
    return np.zeros(1 << 12, np.uint8)


def _converted_input_cases():
    def float64_values_codes_out():
        buffer = _buffer()
        E = buffer[: 8 * 4 * 8].view(np.float64).reshape(4, 8)
        E[:] = np.arange(32).reshape(4, 8)
        codes_out = buffer[:32].reshape(4, 8)
        return [E], lambda: rq.quantize_rows(E, codes_out=codes_out)

    def float64_values_scales_out():
        buffer = _buffer()
        E = buffer[: 8 * 4 * 8].view(np.float64).reshape(4, 8)
        E[:] = np.arange(32).reshape(4, 8)
        scales_out = buffer[16:32].view(np.float32)
        return [E], lambda: rq.quantize_rows(E, scales_out=scales_out)

    def strided_codes():
        buffer = _buffer()
        codes = buffer[: 4 * 16].reshape(4, 16)[:, ::2]  # rows not contiguous: copied
        codes[:] = 130
        scales = np.ones(4, np.float32)
        out = buffer[: 4 * 8 * 4].view(np.float32).reshape(4, 8)
        return [codes], lambda: rq.dequantize(codes, scales, out=out)

    def byte_swapped_scales():
        buffer = _buffer()
        codes = np.full((4, 8), 130, np.uint8)
        scales = buffer[:16].view(">f4")  # not native: copied
        scales[:] = 1.5
        out = buffer[: 2 * 8 * 4].view(np.float32).reshape(2, 8)
        return [scales], lambda: rq.take(codes, scales, [1, 2], out=out)

    def int32_offsets():
        buffer = _buffer()
        offsets = buffer[:8].view(np.int32)  # converted to int64 bounds
        offsets[:] = [0, 2]
        out = buffer[:64].view(np.float32).reshape(2, 8)
        return [offsets], lambda: rq.embedding_bag(CODES8, SCALES8, [1, 2, 3], offsets, out=out)

    def int64_offsets():
        buffer = _buffer()
        offsets = buffer[:16].view(np.int64)
        offsets[:] = [0, 2]
        out = buffer[:64].view(np.float32).reshape(2, 8)
        return [offsets], lambda: rq.embedding_bag(CODES8, SCALES8, [1, 2, 3], offsets, out=out)

    def lengths():
        buffer = _buffer()
        lengths = buffer[:16].view(np.int64)
        lengths[:] = [2, 1]
        out = buffer[:64].view(np.float32).reshape(2, 8)
        return [lengths], lambda: TABLE8.bag([1, 2, 3], lengths=lengths, out=out)

    def float64_weights():
        buffer = _buffer()
        weights = buffer[:24].view(np.float64)  # converted to float32
        weights[:] = [0.5, 2.0, -1.0]
        out = buffer[:64].view(np.float32).reshape(2, 8)
        return [weights], lambda: TABLE8.bag([1, 2, 3], [0, 2], weights=weights, out=out)

    return {f.__name__: f for f in (
        float64_values_codes_out, float64_values_scales_out, strided_codes,
        byte_swapped_scales, int32_offsets, int64_offsets, lengths, float64_weights,
    )}


CODES8 = np.full((4, 8), 130, np.uint8)
SCALES8 = np.ones(4, np.float32)
TABLE8 = rq.QuantizedEmbedding(CODES8, SCALES8)


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("case", list(_converted_input_cases()))
def test_out_over_an_input_that_was_converted_is_refused(backend, case):
    from rowquant import _backend

    if backend == "c" and not _backend.compiled_available():
        pytest.skip("the C extension is not in use")
    inputs, call = _converted_input_cases()[case]()
    before = [array.tobytes() for array in inputs]
    with _backend.using(backend):
        with pytest.raises(ValueError, match="overlaps an input"):
            call()
    assert [array.tobytes() for array in inputs] == before
