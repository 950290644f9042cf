"""Files: save/load round trips (mapped and read), compatibility with the real safetensors
package, the on-disk layout, streaming quantization == in-memory quantization byte for byte,
and the errors of quantize_file. Corrupted files are in test_files_corrupt.py, atomicity and
memory bounds in test_files_durability.py."""

import json
import os
import struct

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import rowquant as rq
from helpers import assert_same_bits

METADATA = {"format": "rowquant", "version": "1", "scheme": "rowwise-symmetric-u8", "bias": "128"}


def table(rows, dim, seed=0, zero_rows=()):
    values = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    values[list(zero_rows)] = 0
    return values


def parse(path):
    """Header JSON and the file offset where the data section starts, read with struct/json
    only: an independent view of the layout."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), 8 + length, data


@pytest.mark.parametrize("shape", [(1000, 64), (97, 11), (1, 1), (0, 5), (4, 0), (0, 0)])
@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path, shape, mmap):
    E = table(*shape, zero_rows=[0] if shape[0] else [])
    qe = rq.quantize(E)
    path = tmp_path / "t.safetensors"
    qe.save(path)
    back = rq.load(path, mmap=mmap)
    assert back.shape == shape
    np.testing.assert_array_equal(back.codes, qe.codes)
    assert_same_bits(back.scales, qe.scales)
    assert not back.codes.flags.writeable and not back.scales.flags.writeable
    if shape[0]:
        ids = np.arange(shape[0])[::-1]
        assert_same_bits(back.take(ids), qe.take(ids))
        assert_same_bits(back.bag(ids, [0]), qe.bag(ids, [0]))


def test_mmap_views_the_file_without_copying(tmp_path):
    path = tmp_path / "t.safetensors"
    rq.quantize(table(300, 64)).save(path)
    back = rq.load(path, mmap=True)
    base = back.codes
    while isinstance(base, np.ndarray):
        base = base.base
    import mmap

    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    # codes start on a 64-byte boundary in memory: rows of 64 codes each fill one cache line
    assert back.codes.__array_interface__["data"][0] % 64 == 0


def test_rq_save_and_method_write_the_same_bytes(tmp_path):
    qe = rq.quantize(table(50, 9))
    qe.save(tmp_path / "a")
    rq.save(tmp_path / "b", qe)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_layout_follows_the_design(tmp_path):
    E = table(37, 13, zero_rows=[5])
    qe = rq.quantize(E)
    path = tmp_path / "t.safetensors"
    qe.save(path)
    header, data_start, data = parse(path)
    assert header["__metadata__"] == METADATA
    assert header["scales"] == {"dtype": "F32", "shape": [37], "data_offsets": [0, 148]}
    assert header["codes"] == {"dtype": "U8", "shape": [37, 13], "data_offsets": [148, 148 + 481]}
    assert (data_start + 148) % 64 == 0  # codes aligned in the file
    assert data[data_start : data_start + 148] == qe.scales.astype("<f4").tobytes()
    assert data[data_start + 148 :] == qe.codes.tobytes()
    assert len(data) == data_start + 148 + 481


@pytest.mark.parametrize("rows", [1, 2, 3, 15, 16, 17, 1000])
def test_codes_are_cache_line_aligned_for_any_row_count(tmp_path, rows):
    rq.quantize(table(rows, 3)).save(tmp_path / "t")
    header, data_start, _ = parse(tmp_path / "t")
    assert (data_start + header["codes"]["data_offsets"][0]) % 64 == 0


def test_file_loads_with_the_safetensors_package(tmp_path):
    E = table(200, 33, zero_rows=[3])
    qe = rq.quantize(E)
    path = str(tmp_path / "t.safetensors")
    qe.save(path)
    loaded = safetensors.numpy.load_file(path)
    assert set(loaded) == {"scales", "codes"}
    np.testing.assert_array_equal(loaded["codes"], qe.codes)
    assert_same_bits(loaded["scales"], qe.scales)
    with safetensors.safe_open(path, framework="np") as handle:
        assert handle.metadata() == METADATA


def test_load_reads_a_file_written_by_the_safetensors_package(tmp_path):
    """Another writer may order and pad differently; the reader follows the offsets."""
    qe = rq.quantize(table(120, 17))
    path = str(tmp_path / "t.safetensors")
    safetensors.numpy.save_file(
        {"codes": np.ascontiguousarray(qe.codes), "scales": np.ascontiguousarray(qe.scales)},
        path,
        metadata=METADATA,
    )
    for mmap in (True, False):
        back = rq.load(path, mmap=mmap)
        np.testing.assert_array_equal(back.codes, qe.codes)
        assert_same_bits(back.scales, qe.scales)


def test_save_of_a_table_with_strided_codes(tmp_path):
    wide = rq.quantize(table(40, 30))
    codes = np.asarray(wide.codes)[:, 5:20]  # rows contiguous, stride 30
    qe = rq.QuantizedEmbedding(codes, wide.scales)
    assert not qe.codes.flags.c_contiguous
    qe.save(tmp_path / "t")
    back = rq.load(tmp_path / "t")
    np.testing.assert_array_equal(back.codes, codes)


def test_save_rejects_what_is_not_a_table(tmp_path):
    with pytest.raises(TypeError, match="QuantizedEmbedding"):
        rq.save(tmp_path / "t", np.zeros((2, 2), np.uint8))
    assert not (tmp_path / "t").exists()


def test_load_checks_scales_unless_told_not_to(tmp_path):
    qe = rq.quantize(table(10, 4))
    path = tmp_path / "t"
    qe.save(path)
    header, data_start, data = parse(path)
    bad = bytearray(data)
    bad[data_start + 4 * 7 : data_start + 4 * 8] = np.float32(-1.5).tobytes()
    path.write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"scales\[7\] = .*-1.5"):
        rq.load(path)
    assert rq.load(path, validate=False).scales[7] == np.float32(-1.5)


# ----------------------------------------------------------------------------- streaming


def in_memory_bytes(tmp_path, E):
    path = tmp_path / "expected.safetensors"
    rq.quantize(E).save(path)
    return path.read_bytes()


@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 64, 1000, 5000])
def test_streaming_npy_equals_in_memory(tmp_path, chunk_rows):
    E = table(1000, 37, zero_rows=[0, 999, 500])
    np.save(tmp_path / "E.npy", E)
    summary = rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=chunk_rows)
    assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, E)
    assert (summary.rows, summary.dim, summary.source_dtype) == (1000, 37, "float32")
    assert summary.source_bytes == E.nbytes
    assert summary.output_bytes == os.path.getsize(tmp_path / "out")
    assert summary.report is None


@pytest.mark.parametrize("dtype", ["<f2", ">f4", "<f8", ">f8"])
def test_streaming_npy_of_other_float_dtypes(tmp_path, dtype):
    E = (table(300, 21) * 100).astype(dtype)
    np.save(tmp_path / "E.npy", E)
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=64)
    assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, E.astype(np.float32))


def test_streaming_fortran_order_npy(tmp_path):
    E = np.asfortranarray(table(200, 19))
    np.save(tmp_path / "E.npy", E)
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=33)
    assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, np.ascontiguousarray(E))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_streaming_safetensors_tensor(tmp_path, dtype):
    E = table(250, 40, seed=3)
    src = str(tmp_path / "model.safetensors")
    safetensors.numpy.save_file(
        {"embeddings": E.astype(dtype), "other": np.arange(10, dtype=np.int64)}, src
    )
    summary = rq.quantize_file(src, tmp_path / "out", tensor="embeddings", chunk_rows=50)
    assert summary.tensor == "embeddings"
    assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, E.astype(dtype))


def test_streaming_bfloat16_tensor_written_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    weights = torch.from_numpy(table(130, 24, seed=4)).to(torch.bfloat16)
    src = str(tmp_path / "bf16.safetensors")
    safetensors.torch.save_file({"w": weights}, src)
    summary = rq.quantize_file(src, tmp_path / "out", chunk_rows=40)  # the only tensor
    assert summary.source_dtype == "bf16"
    expected = weights.float().numpy()  # bfloat16 -> float32 is exact
    assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, expected)


def test_streaming_empty_tables(tmp_path):
    for shape in [(0, 8), (8, 0)]:
        E = np.zeros(shape, np.float32)
        np.save(tmp_path / "E.npy", E)
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == in_memory_bytes(tmp_path, E)


def test_streaming_threads_do_not_change_the_bytes(tmp_path):
    E = table(3000, 300, seed=5)
    np.save(tmp_path / "E.npy", E)
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "one", threads=1)
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "two", threads=2, chunk_rows=1500)
    assert (tmp_path / "one").read_bytes() == (tmp_path / "two").read_bytes()


def test_streaming_progress_callback(tmp_path):
    np.save(tmp_path / "E.npy", table(1000, 4))
    calls = []
    rq.quantize_file(
        tmp_path / "E.npy", tmp_path / "out", chunk_rows=300,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]


def test_streaming_progress_bar_goes_to_stderr(tmp_path, capsys):
    np.save(tmp_path / "E.npy", table(1000, 4))
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=300, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "rows" in captured.err and "1.00k" in captured.err


def test_report_refuses_a_nonfinite_original(tmp_path):
    E = table(100, 6)
    qe = rq.quantize(E)
    E[70, 2] = np.inf
    with pytest.raises(ValueError, match="original has inf at row 70, column 2"):
        rq.error_report(E, qe, chunk_rows=32)


def test_streaming_report_matches_error_report(tmp_path):
    E = table(500, 31, seed=6)
    np.save(tmp_path / "E.npy", E)
    summary = rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=64, report=True)
    direct = rq.error_report(E, rq.quantize(E))
    streamed, whole = summary.report.to_dict(), direct.to_dict()
    # the per-row figures are the same numbers; the sums over the table only differ in order
    assert streamed["worst_rows"] == whole["worst_rows"]
    assert streamed["cosine"] == whole["cosine"]
    assert streamed["max_abs_error"] == whole["max_abs_error"]
    for key in ("mean_abs_error", "relative_error", "snr_db"):
        assert streamed[key] == pytest.approx(whole[key], rel=1e-12)


# ----------------------------------------------------------------------------- errors


def assert_nothing_written(tmp_path, keep=("E.npy", "src.safetensors")):
    left = sorted(name for name in os.listdir(tmp_path) if name not in keep)
    assert left == [], left


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_streaming_names_the_global_row_of_a_nonfinite_value(tmp_path, value):
    E = table(1000, 10)
    E[777, 4] = value
    np.save(tmp_path / "E.npy", E)
    with pytest.raises(ValueError, match=r"E\.npy has .*inf|nan") as info:
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=100)
    assert "row 777, column 4" in str(info.value)
    assert_nothing_written(tmp_path)


def test_streaming_float64_overflow_is_named(tmp_path):
    E = table(20, 3).astype(np.float64)
    E[13, 2] = 1e300
    np.save(tmp_path / "E.npy", E)
    with pytest.raises(ValueError, match=r"1e\+300, which overflows float32, at row 13, column 2"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=4)
    assert_nothing_written(tmp_path)


def test_failed_streaming_keeps_the_previous_output(tmp_path):
    good, bad = table(50, 5), table(50, 5, seed=1)
    bad[49, 0] = np.nan
    np.save(tmp_path / "E.npy", good)
    rq.quantize_file(tmp_path / "E.npy", tmp_path / "out")
    before = (tmp_path / "out").read_bytes()
    np.save(tmp_path / "E.npy", bad)
    with pytest.raises(ValueError, match="row 49"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=10)
    assert (tmp_path / "out").read_bytes() == before
    assert_nothing_written(tmp_path, keep=("E.npy", "out"))


def test_tensor_selection_errors_list_the_tensors(tmp_path):
    src = str(tmp_path / "src.safetensors")
    safetensors.numpy.save_file(
        {"a": table(3, 4), "b": np.zeros((2, 2), np.float16), "ids": np.arange(4, dtype=np.int64)},
        src,
    )
    with pytest.raises(ValueError, match=r"holds 3 tensors.*a \(F32 \[3, 4\]\).*b \(F16 \[2, 2\]\)"):
        rq.quantize_file(src, tmp_path / "out")
    with pytest.raises(ValueError, match=r"no tensor named 'c' \(tensors: a \(F32 \[3, 4\]\), b .*, ids \(I64 \[4\]\)\)"):
        rq.quantize_file(src, tmp_path / "out", tensor="c")
    with pytest.raises(TypeError, match="tensor 'ids' has dtype I64; quantize needs a float"):
        rq.quantize_file(src, tmp_path / "out", tensor="ids")
    assert_nothing_written(tmp_path)


def test_non_2d_and_non_float_sources(tmp_path):
    np.save(tmp_path / "E.npy", np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"shape \(5,\); quantize needs a 2-D"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out")
    np.save(tmp_path / "E.npy", np.zeros((5, 2), np.int32))
    with pytest.raises(TypeError, match="dtype int32"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out")
    src = str(tmp_path / "src.safetensors")
    safetensors.numpy.save_file({"v": np.zeros((2, 3, 4), np.float32)}, src)
    with pytest.raises(ValueError, match=r"shape \[2, 3, 4\]"):
        rq.quantize_file(src, tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_tensor_name_is_refused_for_npy(tmp_path):
    np.save(tmp_path / "E.npy", table(3, 3))
    with pytest.raises(ValueError, match="applies to safetensors files, and this is a .npy file"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", tensor="x")


def test_output_may_not_be_the_input(tmp_path):
    E = table(10, 3)
    np.save(tmp_path / "E.npy", E)
    before = (tmp_path / "E.npy").read_bytes()
    with pytest.raises(ValueError, match="is the input file"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "E.npy")
    assert (tmp_path / "E.npy").read_bytes() == before


@pytest.mark.parametrize("chunk_rows", [0, -3, 2.5, True, "8"])
def test_bad_chunk_rows(tmp_path, chunk_rows):
    np.save(tmp_path / "E.npy", table(10, 3))
    with pytest.raises((TypeError, ValueError), match="chunk_rows"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=chunk_rows)
    assert_nothing_written(tmp_path)


def test_missing_and_unwritable_paths(tmp_path):
    np.save(tmp_path / "E.npy", table(10, 3))
    with pytest.raises(FileNotFoundError):
        rq.quantize_file(tmp_path / "missing.npy", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no folder"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "nowhere" / "out")
    with pytest.raises(NotADirectoryError, match="E.npy is not a folder"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "E.npy" / "out")
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        rq.save(tmp_path / "dir", rq.quantize(table(2, 2)))
    assert_nothing_written(tmp_path, keep=("E.npy", "dir"))
    assert os.listdir(tmp_path / "dir") == []


def test_written_files_get_ordinary_permissions(tmp_path):
    rq.quantize(table(2, 2)).save(tmp_path / "t")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "t").st_mode & 0o777 == 0o666 & ~umask


def test_scales_off_a_4_byte_boundary_are_copied_aligned(tmp_path):
    """Another writer may put the scales anywhere; the kernels read them as float32."""
    qe = rq.quantize(table(9, 5))
    header = {
        "__metadata__": METADATA,
        "scales": {"dtype": "F32", "shape": [9], "data_offsets": [0, 36]},
        "codes": {"dtype": "U8", "shape": [9, 5], "data_offsets": [36, 81]},
    }
    text = json.dumps(header).encode()
    text += b" " * ((-(8 + len(text)) % 4) + 1)  # the data starts at 1 mod 4
    path = tmp_path / "t.safetensors"
    path.write_bytes(
        struct.pack("<Q", len(text)) + text + qe.scales.tobytes() + np.asarray(qe.codes).tobytes()
    )
    back = rq.load(path, mmap=True)
    assert back.scales.ctypes.data % 4 == 0
    assert_same_bits(back.scales, qe.scales)
    assert_same_bits(back.take([8, 0]), qe.take([8, 0]))
