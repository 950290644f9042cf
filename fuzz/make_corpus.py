"""Write the seed files of the reader fuzz corpus into ``fuzz/corpus/reader/``.

Seeds are small real files of every kind the readers meet: rowquant tables (from ``rq.save``),
safetensors files written by the ``safetensors`` package itself (several dtypes, several tensors,
metadata), a BF16 table, ``.npy`` files (float16/32/64, Fortran order, big-endian, format 2.0, an
integer one), and broken variants (truncated, bytes appended, scales made NaN or negative, header
fields changed). Names say what each file is; entries that the fuzzer found are named by their
SHA-1 and are left alone here.

Run from anywhere: ``python fuzz/make_corpus.py`` (needs numpy, rowquant and safetensors; the
output is the same on every run).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import safetensors.numpy

import rowquant as rq
from rowquant import _format, _safetensors

CORPUS = Path(__file__).resolve().parent / "corpus" / "reader"


def table(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def rowquant_bytes(E: np.ndarray) -> bytes:
    qe = rq.quantize(E)
    header = _format.table_header(*qe.shape)
    return header + qe.scales.astype("<f4").tobytes() + qe.codes.tobytes()


def keyed_bytes(qe) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.safetensors")
        qe.save(path)
        with open(path, "rb") as file:
            return file.read()


def safetensors_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None):
    return safetensors.numpy.save(tensors, metadata=metadata)


def npy_bytes(array: np.ndarray, version=None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def raw_safetensors(entries: dict, data: bytes) -> bytes:
    text = json.dumps(entries, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def with_header_length(content: bytes, length: int) -> bytes:
    return struct.pack("<Q", length) + content[8:]


def patched(content: bytes, at: int, replacement: bytes) -> bytes:
    return content[:at] + replacement + content[at + len(replacement):]


def seeds() -> dict[str, bytes]:
    files: dict[str, bytes] = {}

    # rowquant tables: odd widths, one row, empty tables, the seed example (ties, a zero row)
    for rows, dim in [(3, 4), (1, 1), (17, 65), (2, 130), (0, 5), (5, 0), (0, 0)]:
        files[f"rq_{rows}x{dim}.safetensors"] = rowquant_bytes(table(rows, dim, seed=rows + dim))
    seed = np.array(
        [[20000, 3000, 1000, 1000], [1999999, 20000, 1999999, 1999999], [0, 0, 0, 0]], np.float32
    )
    files["rq_seed_example.safetensors"] = rowquant_bytes(seed)
    valid = files["rq_3x4.safetensors"]

    # the same table, broken: every reader must say ValueError
    length = struct.unpack("<Q", valid[:8])[0]
    data_start = 8 + length
    files["rq_truncated_in_header.safetensors"] = valid[: 8 + length // 2]
    files["rq_truncated_in_data.safetensors"] = valid[:-3]
    files["rq_one_byte_appended.safetensors"] = valid + b"\0"
    files["rq_header_length_too_big.safetensors"] = with_header_length(valid, length + 12)
    files["rq_header_length_huge.safetensors"] = with_header_length(valid, 2**64 - 1)
    files["rq_scale_nan.safetensors"] = patched(valid, data_start, struct.pack("<f", np.nan))
    files["rq_scale_negative.safetensors"] = patched(valid, data_start + 4, struct.pack("<f", -1.0))
    files["rq_scale_huge.safetensors"] = patched(valid, data_start, struct.pack("<f", 3.0e38))
    files["rq_codes_zero.safetensors"] = valid[:-12] + bytes(12)
    def header_edited(old: bytes, new: bytes) -> bytes:  # same length: offsets stay right
        return valid[:8] + valid[8:data_start].replace(old, new) + valid[data_start:]

    files["rq_version_2.safetensors"] = header_edited(b'"version":"1"', b'"version":"2"')

    # stored norms (the last tensor), one of them negative
    normed = rq.quantize(table(4, 9, seed=3))
    normed.norms()
    files["rq_norms_4x9.safetensors"] = keyed_bytes(normed)
    norms_at = len(files["rq_norms_4x9.safetensors"]) - 16
    files["rq_norms_negative.safetensors"] = patched(
        files["rq_norms_4x9.safetensors"], norms_at + 4, struct.pack("<f", -2.0)
    )
    files["rq_codes_i8.safetensors"] = header_edited(b'"U8"', b'"I8"')
    files["rq_rows_mismatch.safetensors"] = header_edited(b'"shape":[3,4]', b'"shape":[4,3]')

    # tables with keys (words): unicode, an empty key; then bad offsets, bad UTF-8, a repeat
    keyed = rq.quantize(table(5, 3), keys=["the", "köln", "", "日本", "and"], metadata={"m": "1"})
    files["rq_keys_5x3.safetensors"] = keyed_valid = keyed_bytes(keyed)
    keys_at = len(keyed_valid) - len("theköln日本and".encode())
    files["rq_keys_bad_utf8.safetensors"] = patched(keyed_valid, keys_at, b"\xff")
    files["rq_keys_repeated.safetensors"] = patched(keyed_valid, len(keyed_valid) - 3, b"the")
    files["rq_keys_offsets_decreasing.safetensors"] = patched(  # offsets[3] = 1 < offsets[2]
        keyed_valid, keys_at - 8 * 3, struct.pack("<q", 1)
    )

    # 4-bit and 2-bit tables (odd widths, keys, an empty one), then broken: padding bits set,
    # an infinite scale, a dim that does not match the packed width
    for bits, rows, dim in [(4, 3, 5), (2, 4, 7), (4, 0, 3), (2, 2, 0)]:
        files[f"rq{bits}_{rows}x{dim}.safetensors"] = keyed_bytes(
            rq.quantize(table(rows, dim, seed=rows + dim), bits=bits))
    files["rq4_keys_3x5.safetensors"] = nbit_keyed = keyed_bytes(
        rq.quantize(table(3, 5), bits=4, range_search=True, keys=["a", "bé", "c"]))
    nbit_valid = files["rq4_3x5.safetensors"]
    nbit_rows_at = len(nbit_valid) - 3 * 7  # fused rows: 3 code bytes, scale, bias
    files["rq4_padding_bits.safetensors"] = patched(nbit_valid, nbit_rows_at + 2, b"\xf0")
    files["rq4_scale_inf.safetensors"] = patched(nbit_valid, nbit_rows_at + 3, b"\x00\x7c")
    nbit_start = 8 + struct.unpack("<Q", nbit_valid[:8])[0]
    files["rq4_dim_mismatch.safetensors"] = (
        nbit_valid[:8] + nbit_valid[8:nbit_start].replace(b'"dim":"5"', b'"dim":"7"')
        + nbit_valid[nbit_start:])
    del nbit_keyed

    # 8-bit tables with 16-bit scales (bfloat16, float16), then a bfloat16 scale made inf
    for scale_dtype in ("bfloat16", "float16"):
        files[f"rq_{scale_dtype}_4x6.safetensors"] = keyed_bytes(
            rq.quantize(table(4, 6, seed=3), scale_dtype=scale_dtype))
    bf16_valid = files["rq_bfloat16_4x6.safetensors"]
    bf16_start = 8 + struct.unpack("<Q", bf16_valid[:8])[0]
    files["rq_bfloat16_scale_inf.safetensors"] = patched(bf16_valid, bf16_start + 2, b"\x80\x7f")

    # word-vector files: GloVe text, word2vec text (CRLF), word2vec binary with a spaced word
    files["wv_glove.txt"] = "the 0.418 0.24968 -0.41242\nköln -1e-3 2 3.5\n, 0 0 0\n".encode()
    files["wv_word2vec.vec"] = b"2 3\r\nthe 1 2 3\r\nof 4 5 6\r\n"
    files["wv_word2vec.bin"] = (
        b"2 2\n" + b"new york " + np.array([1, -2], "<f4").tobytes() + b"\n"
        + b"the " + np.array([0.5, 3], "<f4").tobytes() + b"\n"
    )
    files["wv_glove_ragged.txt"] = b"a 1 2\nb 3\n"
    # review fixes: gensim 4's binary files (no newlines) with one value a word, a first word
    # that is not UTF-8, a word2vec text first word with a space, old Mac (CR-only) line ends
    files["wv_word2vec_nonewline.bin"] = b"3 1\n" + b"".join(
        word + b" " + np.array([value], "<f4").tobytes()
        for word, value in [(b"w0", 0.5), (b"w1", -1.25), (b"w2", 2.0)]
    )
    files["wv_glove_first_word_latin1.txt"] = b"caf\xe9 1 2\nb 3 4\n"
    files["wv_word2vec_spaced_first.vec"] = b"2 2\nnew york 1 2\nb 3 4\n"
    files["wv_glove_cr_only.txt"] = b"a 1 2\rb 3 4\r"

    # safetensors files from the safetensors package: the ones quantize_file reads
    files["st_f32_4x3.safetensors"] = safetensors_bytes({"w": table(4, 3)})
    files["st_f16_5x3.safetensors"] = safetensors_bytes({"w": table(5, 3).astype(np.float16)})
    files["st_f64_3x2.safetensors"] = safetensors_bytes({"w": table(3, 2).astype(np.float64)})
    files["st_i64_2x2.safetensors"] = safetensors_bytes(
        {"w": np.arange(4, dtype=np.int64).reshape(2, 2)}
    )
    files["st_f32_0x3.safetensors"] = safetensors_bytes({"w": np.zeros((0, 3), np.float32)})
    files["st_f32_1d.safetensors"] = safetensors_bytes({"w": np.ones(6, np.float32)})
    files["st_f32_3d.safetensors"] = safetensors_bytes({"w": np.ones((2, 2, 2), np.float32)})
    files["st_f32_nan_inf.safetensors"] = safetensors_bytes(
        {"w": np.array([[1, np.nan], [np.inf, -2]], np.float32)}
    )
    files["st_many_tensors.safetensors"] = safetensors_bytes(
        {
            "a": table(2, 3),
            "b": np.arange(4, dtype=np.uint8),
            "c": np.array(7, dtype=np.int32),
            "d": np.array([True, False]),
            "e": table(2, 2).astype(np.float16),
        },
        metadata={"source": "make_corpus", "format": "pt"},
    )
    files["st_empty.safetensors"] = safetensors_bytes({})
    bf16 = (table(3, 4).view(np.uint32) >> 16).astype("<u2")
    files["st_bf16_3x4.safetensors"] = (
        _safetensors.encode_header({"w": ("BF16", (3, 4))}, {}) + bf16.tobytes()
    )
    # a rowquant-shaped header over other tensors, and hand-made headers of unusual JSON
    files["st_rowquant_metadata_wrong_tensors.safetensors"] = raw_safetensors(
        {
            "__metadata__": dict(_format.METADATA),
            "w": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
        },
        bytes(8),
    )
    files["st_scalar_and_zero_dims.safetensors"] = raw_safetensors(
        {
            "s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
            "z": {"dtype": "U8", "shape": [0, 7, 3], "data_offsets": [8, 8]},
        },
        bytes(8),
    )

    # .npy files: quantize_file's other input
    files["npy_f32_3x4.npy"] = npy_bytes(table(3, 4))
    files["npy_f16_fortran_3x5.npy"] = npy_bytes(np.asfortranarray(table(3, 5).astype(np.float16)))
    files["npy_f64_2x2.npy"] = npy_bytes(table(2, 2).astype(np.float64))
    files["npy_f32_bigendian_2x3.npy"] = npy_bytes(table(2, 3).astype(">f4"))
    files["npy_f32_v2_2x2.npy"] = npy_bytes(table(2, 2), version=(2, 0))
    files["npy_i32_2x2.npy"] = npy_bytes(np.arange(4, dtype=np.int32).reshape(2, 2))
    files["npy_f32_1d.npy"] = npy_bytes(np.ones(3, np.float32))
    files["npy_f32_0x4.npy"] = npy_bytes(np.zeros((0, 4), np.float32))
    files["npy_truncated.npy"] = npy_bytes(table(3, 4))[:-5]
    return files


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    files = seeds()
    for name, content in files.items():
        (CORPUS / name).write_bytes(content)
    total = sum(len(content) for content in files.values())
    print(f"wrote {len(files)} seed files ({total} bytes) to {CORPUS}")


if __name__ == "__main__":
    main()
