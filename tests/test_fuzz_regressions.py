"""What fuzzing the file readers found (``fuzz/fuzz_reader.py``, atheris), kept as regression tests,
and a replay of the committed fuzz corpus (``fuzz/corpus/reader/``) through the fuzz target's
contract check, so that the normal test run exercises every corpus file on both backends without
atheris. The contract (``fuzz/reader_contract.py``): ``ValueError`` naming the file, ``TypeError``
only from ``FloatSource`` for a non-float dtype, or a result that agrees with an independent
decoding of the bytes and lies inside the file (DESIGN.md sections 3 and 5)."""

import ast
import io
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import rowquant as rq
from rowquant import _safetensors
from rowquant._sources import FloatSource

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
CORPUS = FUZZ / "corpus" / "reader"
REPRODUCERS = Path(__file__).resolve().parent / "data" / "fuzz"
if str(FUZZ) not in sys.path:
    sys.path.insert(0, str(FUZZ))

import make_corpus  # noqa: E402
import reader_contract  # noqa: E402

METADATA = {"format": "rowquant", "version": "1", "scheme": "rowwise-symmetric-u8", "bias": "128"}


def safetensors_file(header, data=b""):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def npy_file(header_text: str, data=b""):
    text = header_text.encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def empty_table(dim):
    return safetensors_file({
        "__metadata__": METADATA,
        "scales": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        "codes": {"dtype": "U8", "shape": [0, dim], "data_offsets": [0, 0]},
    })


def header_error(content):
    """The ValueError message of read_header on ``content``."""
    with pytest.raises(ValueError) as info:
        _safetensors.read_header(io.BytesIO(content), len(content))
    return str(info.value)


def errors(tmp_path, content):
    """The ValueError messages of load (mapped and read) and FloatSource, after the whole
    contract check (which also runs read_header)."""
    path = tmp_path / "input.safetensors"
    path.write_bytes(content)
    reader_contract.check_bytes(content, str(path))
    messages = {}
    for mmap in (True, False):
        with pytest.raises(ValueError) as info:
            rq.load(path, mmap=mmap)
        messages[f"load(mmap={mmap})"] = str(info.value)
    with pytest.raises(ValueError) as info:
        FloatSource(path)
    messages["FloatSource"] = str(info.value)
    for where, message in messages.items():
        message.encode("utf-8")  # printable, as the CLI prints it
        assert str(path) in message, (where, message)
    return messages


# ----------------------------------------------------------------------------- safetensors headers


def test_a_dtype_that_is_not_a_string_is_a_value_error(tmp_path):
    # was TypeError: unhashable type: 'list' (the dtype was looked up in a dict)
    content = safetensors_file({"x": {"dtype": [1], "shape": [], "data_offsets": [0, 0]}})
    assert header_error(content) == "tensor 'x': unknown dtype [1]"
    for message in errors(tmp_path, content).values():
        assert "unknown dtype [1]" in message


@pytest.mark.parametrize("dtype", [{"a": 1}, 32, None, True])
def test_other_non_string_dtypes_are_value_errors(tmp_path, dtype):
    content = safetensors_file({"x": {"dtype": dtype, "shape": [], "data_offsets": [0, 0]}})
    assert "unknown dtype" in header_error(content)
    errors(tmp_path, content)


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_json_is_a_value_error(tmp_path, depth):
    # was RecursionError out of json.loads: a 100 MB header can nest arrays millions deep
    content = safetensors_file(b'{"a":' + b"[" * depth + b"]" * depth + b"}")
    assert "too deeply" in header_error(content)
    for message in errors(tmp_path, content).values():
        assert "too deeply" in message


def test_a_tensor_name_with_a_lone_surrogate_gives_a_printable_message(tmp_path):
    # JSON may spell \ud800; the message listing the tensors could not be printed (the CLI's
    # 'rowquant inspect' failed with UnicodeEncodeError)
    raw = b'{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    content = safetensors_file(raw, bytes(4))
    header = _safetensors.read_header(io.BytesIO(content), len(content))
    assert list(header.tensors) == ["\ud800"]  # the name is kept as it is
    messages = errors(tmp_path, content)
    assert "tensors: \\ud800 (F32 [1]))" in messages["load(mmap=True)"]
    assert "tensor '\\ud800' has shape [1]" in messages["FloatSource"]


def test_an_empty_tensor_may_not_claim_a_dimension_numpy_cannot_address(tmp_path):
    # [0, 2**70] spans 0 bytes, so the header was consistent, but numpy's
    # "Maximum allowed dimension exceeded" came out of load without the file's name
    for content in (
        empty_table(2**70),
        safetensors_file({"w": {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]}}),
    ):
        assert "is too large to address" in header_error(content)
        for message in errors(tmp_path, content).values():
            assert "is too large to address" in message


def test_an_empty_table_too_wide_for_a_float32_row_is_refused(tmp_path):
    # (0, 2**62) loaded, then take([]), dequantize() and bag([], [0]) raised numpy's
    # "array is too big": its rows as float32 would need 2**64 bytes each
    messages = errors(tmp_path, empty_table(2**62))
    assert "too many for a row of float32" in messages["load(mmap=True)"]
    assert "too many for a row of float32" in messages["load(mmap=False)"]
    qe = _loaded(tmp_path, empty_table(2**20))  # a wide empty table that fits stays valid
    assert qe.take([]).shape == (0, 2**20)
    assert not qe.bag([], [0]).any()


def _loaded(tmp_path, content):
    path = tmp_path / "ok.safetensors"
    path.write_bytes(content)
    reader_contract.check_bytes(content, str(path))
    return rq.load(path)


# ----------------------------------------------------------------------------- .npy headers


NPY_BROKEN_HEADERS = {
    # found by atheris in its first minute: a header cut short in its dict, which sends
    # numpy to its Python 2 fallback, whose tokenizer raised tokenize.TokenError
    "unclosed_dict": "{'descr': '<f4', 'fortran_order': False, 'shape':" + " " * 36 + "\n",
    "unclosed_string": '"""abc\n',
    "unclosed_brackets": "[" * 50 + "\n",
    # ast.literal_eval builds the dict and fails on an unhashable key: TypeError
    "unhashable_key": "{[1]: 2}\n",
    "unhashable_dict_key": "{{}: 1}\n",
    # the parser's stack overflows on deep unary minus: MemoryError
    "deep_unary_minus": "-" * 9000 + "1\n",
}


@pytest.mark.filterwarnings("ignore:Reading `.npy`")
@pytest.mark.parametrize("name", sorted(NPY_BROKEN_HEADERS))
def test_npy_headers_numpy_cannot_parse_are_value_errors(tmp_path, name):
    content = npy_file(NPY_BROKEN_HEADERS[name], bytes(64))
    message = errors(tmp_path, content)["FloatSource"]
    assert "the .npy header cannot be parsed" in message


@pytest.mark.parametrize(
    "shape", ["(True, 2)", "(2, False)", "(-2, -2)", "(-1, 0)", f"(0, {2**62})"]
)
def test_npy_shapes_numpy_lets_through_are_value_errors(tmp_path, shape):
    # numpy's reader accepts any ints (bools included); np.ndarray then raised
    # "TypeError: an integer is required" for True, and ValueErrors without the file's name
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }\n" % shape
    message = errors(tmp_path, npy_file(text, bytes(16)))["FloatSource"]
    assert f"the array's shape {ast.literal_eval(shape)} is not a valid one" in message


def test_a_hand_written_npy_header_still_reads(tmp_path):
    text = "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 1), }\n"
    path = tmp_path / "ok.npy"
    content = npy_file(text, np.float16([1.5, -2]).tobytes())
    path.write_bytes(content)
    reader_contract.check_bytes(content, str(path))
    with FloatSource(path) as source:
        values, _ = source.rows_float32(0, 2)
        np.testing.assert_array_equal(values, [[1.5], [-2]])


def test_a_npy_dtype_with_a_lone_surrogate_is_a_value_error(tmp_path):
    # np.dtype raises UnicodeEncodeError, a ValueError, which FloatSource re-raised as
    # type(error)(message): UnicodeEncodeError takes 5 arguments, so a TypeError came out
    text = "{'descr': '<f\\ud800', 'fortran_order': False, 'shape': (1, 1), }\n"
    message = errors(tmp_path, npy_file(text, bytes(4)))["FloatSource"]
    assert "the .npy header cannot be parsed (UnicodeEncodeError" in message


# The inputs atheris found, byte for byte (named by what is wrong in them; libFuzzer named them
# crash-<sha1 of the content>), with the start of the message each must now give.
REPRODUCER_MESSAGES = {
    # the first minute of fuzzing: tokenize.TokenError out of numpy's Python 2 header fallback
    "npy_header_cut_in_its_dict.npy": "the .npy header cannot be parsed (TokenError",
    # a run of 8 minutes: descr '<f\ud8004', then "TypeError: function takes exactly 5 arguments"
    "npy_descr_lone_surrogate.npy": "the .npy header cannot be parsed (UnicodeEncodeError",
}


def test_every_reproducer_has_a_test():
    assert sorted(path.name for path in REPRODUCERS.iterdir()) == sorted(REPRODUCER_MESSAGES)


@pytest.mark.filterwarnings("ignore:Reading `.npy`")
@pytest.mark.parametrize("name", sorted(REPRODUCER_MESSAGES))
def test_reproducers_found_by_atheris(tmp_path, name):
    content = (REPRODUCERS / name).read_bytes()
    message = errors(tmp_path, content)["FloatSource"]
    assert message.startswith(f"{tmp_path / 'input.safetensors'}: {REPRODUCER_MESSAGES[name]}")


# ----------------------------------------------------------------------------- the corpus


CORPUS_FILES = sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []


def test_the_corpus_holds_the_seeds():
    """Every seed of make_corpus.py is in the corpus; rowquant's own files byte for byte (the
    quantization is exact on both backends, so they cannot drift)."""
    names = {path.name for path in CORPUS_FILES}
    for name, content in make_corpus.seeds().items():
        assert name in names, f"{name} is missing: run python fuzz/make_corpus.py"
        if name.startswith("rq_"):
            assert (CORPUS / name).read_bytes() == content, name


@pytest.mark.filterwarnings("ignore:Reading `.npy`")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=[path.name for path in CORPUS_FILES])
def test_corpus_file_meets_the_reader_contract(tmp_path, path):
    content = path.read_bytes()
    reader_contract.check_bytes(content, str(tmp_path / "input.safetensors"))
