"""Tables of more than 2**31 values: lookups reach their last rows (no 32-bit index arithmetic
anywhere), and streaming quantization of such a table works chunk by chunk. The files are
sparse: only the rows the tests check hold data, so they cost little disk or time."""

import numpy as np
import pytest

import rowquant as rq
from rowquant import _format
from helpers import bag_error_bound

ROWS, DIM = 2**21 + 3, 1024  # 2**31 + 3072 values
assert ROWS * DIM > 2**31


def sparse_table(path, filled):
    """A rowquant file of ROWS x DIM whose codes are 0 (a hole in the file) except the rows in
    ``filled`` (row -> codes), with scale (row + 1) / 1024 on every row."""
    scales = (np.arange(ROWS, dtype=np.float32) + 1) / np.float32(1024)
    header = _format.table_header(ROWS, DIM)
    codes_at = len(header) + 4 * ROWS
    with open(path, "wb") as file:
        file.write(header)
        file.write(scales.tobytes())
        file.truncate(codes_at + ROWS * DIM)
        for row, codes in filled.items():
            file.seek(codes_at + row * DIM)
            file.write(codes.tobytes())
    return scales


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.safetensors"
    rng = np.random.default_rng(0)
    filled = {row: rng.integers(0, 256, DIM, dtype=np.uint8) for row in (0, 2**21, ROWS - 2, ROWS - 1)}
    scales = sparse_table(path, filled)
    return rq.load(path), filled, scales


def expected_row(codes, scale):
    return (codes.astype(np.float32) - np.float32(128)) * np.float32(scale)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.uint64])
def test_take_reaches_the_last_rows(big, dtype):
    qe, filled, scales = big
    assert qe.codes.size > 2**31
    rows = np.array([ROWS - 1, 0, 2**21, ROWS - 2], dtype=dtype)
    taken = qe.take(rows)
    for position, row in enumerate(rows.astype(np.int64)):
        np.testing.assert_array_equal(taken[position], expected_row(filled[row], scales[row]))
    # plain-array API too, with the ids at the top of the table in each dtype
    again = rq.take(qe.codes, qe.scales, rows)
    np.testing.assert_array_equal(again, taken)


def test_rows_past_2_31_bytes_that_are_holes_read_as_code_0(big):
    qe, _, scales = big
    row = ROWS - 4  # not filled: a hole in the file, which reads as zero bytes
    np.testing.assert_array_equal(qe.codes[row], 0)
    np.testing.assert_array_equal(qe.take([row])[0], np.float32(-128) * scales[row])


def test_bag_reaches_the_last_rows(big):
    qe, filled, scales = big
    ids = np.array([ROWS - 1, ROWS - 2, 0, ROWS - 1], dtype=np.int64)
    pooled = qe.bag(ids, [0, 2], mode="sum")
    first = expected_row(filled[ROWS - 1], scales[ROWS - 1]) + expected_row(
        filled[ROWS - 2], scales[ROWS - 2]
    )
    second = expected_row(filled[0], scales[0]) + expected_row(filled[ROWS - 1], scales[ROWS - 1])
    bound = bag_error_bound(scales[ids].astype(np.float64).reshape(2, 2).sum(1), 2)[:, None]
    assert (np.abs(pooled - np.stack([first, second])) <= bound).all()
    mean = qe.bag(ids.reshape(2, 2).astype(np.uint32), mode="mean")
    assert (np.abs(mean - np.stack([first, second]) / 2) <= bound).all()


def test_ids_past_the_end_of_a_big_table_are_rejected(big):
    qe = big[0]
    with pytest.raises(IndexError, match=f"ids\\[1\\] = {ROWS} is out of range"):
        qe.take(np.array([0, ROWS], dtype=np.uint32))
    with pytest.raises(IndexError, match=f"ids\\[0\\] = {2**64 - 1} is out of range"):
        qe.bag(np.array([2**64 - 1], dtype=np.uint64), [0])


def test_streaming_quantization_of_more_than_2_31_values(tmp_path):
    """A float16 .npy of ROWS x DIM (4 GiB, sparse: zeros except a few rows; float16 halves
    the page-cache work of reading the holes) quantized in chunks; the rows that hold data come
    out as in-memory quantization gives them."""
    rng = np.random.default_rng(1)
    filled = {row: rng.standard_normal(DIM).astype(np.float16) for row in (1, 2**21, ROWS - 1)}
    source = tmp_path / "E.npy"
    with open(source, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f2", "fortran_order": False, "shape": (ROWS, DIM)}
        )
        data_at = file.tell()
        file.truncate(data_at + ROWS * DIM * 2)
        for row, values in filled.items():
            file.seek(data_at + row * DIM * 2)
            file.write(values.tobytes())
    out = tmp_path / "out.safetensors"
    try:
        summary = rq.quantize_file(source, out, chunk_rows=1 << 17)
        assert (summary.rows, summary.dim) == (ROWS, DIM)
        qe = rq.load(out)
        rows = np.array(sorted(filled))
        expected = rq.quantize(np.stack([filled[row] for row in rows]))
        np.testing.assert_array_equal(qe.codes[rows], expected.codes)
        np.testing.assert_array_equal(qe.scales[rows], expected.scales)
        # zero rows in between: scale 0, codes 128
        assert qe.scales[ROWS - 2] == 0 and (qe.codes[ROWS - 2] == 128).all()
        assert qe.scales[2**21 + 1] == 0
        assert (qe.scales == 0).sum() == ROWS - len(filled)
    finally:
        out.unlink(missing_ok=True)
        source.unlink()
