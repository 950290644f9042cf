"""The file reader trusts nothing: truncated, padded, corrupted and hostile files give a
ValueError that says what is wrong, never a crash, another exception, or a read outside the file.
Headers here are built by hand with json/struct, independently of rowquant's writer."""

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rowquant as rq

METADATA = {"format": "rowquant", "version": "1", "scheme": "rowwise-symmetric-u8", "bias": "128"}
ROWS, DIM = 6, 5
SCALES = np.linspace(0.0, 1.0, ROWS, dtype=np.float32)
CODES = np.arange(ROWS * DIM, dtype=np.uint8).reshape(ROWS, DIM) + 100


def entries(**changes):
    """A valid header as a dict; keyword changes replace (or, with None, remove) entries."""
    header = {
        "__metadata__": dict(METADATA),
        "scales": {"dtype": "F32", "shape": [ROWS], "data_offsets": [0, 4 * ROWS]},
        "codes": {
            "dtype": "U8",
            "shape": [ROWS, DIM],
            "data_offsets": [4 * ROWS, 4 * ROWS + ROWS * DIM],
        },
    }
    for key, value in changes.items():
        if value is None:
            header.pop(key)
        else:
            header[key] = value
    return header


def file_bytes(header=None, data=None, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header or entries()).encode()
    if data is None:
        data = SCALES.tobytes() + CODES.tobytes()
    return struct.pack("<Q", len(text)) + text + data


def load_both(tmp_path, content):
    """Load with and without mmap; both must agree on raising ValueError (returns messages)."""
    path = tmp_path / "t.safetensors"
    path.write_bytes(content)
    messages = []
    for mmap in (True, False):
        with pytest.raises(ValueError) as info:
            rq.load(path, mmap=mmap)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    return messages[0]


def test_the_hand_made_file_is_valid(tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(file_bytes())
    qe = rq.load(path)
    np.testing.assert_array_equal(qe.codes, CODES)
    np.testing.assert_array_equal(qe.scales, SCALES)


def test_every_truncation_is_rejected(tmp_path):
    content = file_bytes()
    for length in range(len(content)):
        message = load_both(tmp_path, content[:length])
        assert str(tmp_path) in message  # names the file


def test_bytes_after_the_last_tensor_are_rejected(tmp_path):
    assert "bytes after its last tensor" in load_both(tmp_path, file_bytes() + b"\0")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "too few"),
        (struct.pack("<Q", 2**64 - 1) + b"{}", "only 2 follow"),
        (struct.pack("<Q", 5) + b"{}", "only 2 follow"),
        (file_bytes(raw_header=b"[1, 2]"), "not a JSON object"),
        (file_bytes(raw_header=b"{not json"), "not valid JSON"),
        (file_bytes(raw_header=b'{"a": \xff}'), "not UTF-8"),
        (file_bytes(raw_header=b'{"a": NaN}'), "NaN"),
        (file_bytes(raw_header=b'{"scales": 1, "scales": 2}'), "names 'scales' twice"),
    ],
)
def test_broken_headers(tmp_path, content, fragment):
    assert fragment in load_both(tmp_path, content)


def codes_entry(**fields):
    entry = entries()["codes"]
    entry.update(fields)
    return entry


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (entries(__metadata__=None), "not a rowquant table"),
        (entries(__metadata__={"format": "other"}), "metadata format is 'other'"),
        (entries(__metadata__=[1]), "__metadata__ must map strings to strings"),
        (entries(__metadata__={"format": 1}), "__metadata__ must map strings to strings"),
        (entries(__metadata__={**METADATA, "version": "2"}), "version '2'"),
        (entries(__metadata__={**METADATA, "scheme": "minmax"}), "scheme 'minmax'"),
        (entries(__metadata__={**METADATA, "bias": "0"}), "bias '0'"),
        (entries(codes=None), "bytes after its last tensor"),
        (entries(codes=codes_entry(dtype="I8")), "codes must be U8"),
        (entries(codes=codes_entry(dtype="BOGUS")), "unknown dtype 'BOGUS'"),
        (entries(codes=codes_entry(shape=[ROWS * DIM])), "codes must be U8 [N, D]"),
        (entries(codes=codes_entry(shape=[DIM, ROWS])), "scales has 6 rows but codes has 5"),
        (entries(codes=codes_entry(shape=[ROWS, DIM + 1])), "needs 36 bytes but its data_offsets span 30"),
        (entries(codes=codes_entry(shape=[ROWS, -DIM])), "non-negative integer"),
        (entries(codes=codes_entry(shape=[ROWS, True])), "non-negative integer"),
        (entries(codes=codes_entry(shape=[ROWS, 5.0])), "non-negative integer"),
        (entries(codes=codes_entry(shape="6x5")), "shape must be a list"),
        (entries(codes=codes_entry(data_offsets=[24])), "data_offsets must be [begin, end]"),
        (entries(codes=codes_entry(data_offsets=[54, 24])), "end before they begin"),
        (entries(codes=codes_entry(data_offsets=[-1, 29])), "non-negative integer"),
        (entries(codes=codes_entry(data_offsets=[20, 50])), "overlaps"),
        (entries(codes=codes_entry(data_offsets=[28, 58])), "leaves a gap"),
        (entries(codes=codes_entry(data_offsets=[2**63, 2**63 + 30])), "leaves a gap"),
        (entries(codes=codes_entry(extra=1)), "must have the keys dtype, shape and data_offsets"),
        (entries(codes=[1, 2]), "not an object"),
        (
            entries(scales={"dtype": "F16", "shape": [ROWS], "data_offsets": [0, 2 * ROWS]}),
            "leaves a gap",
        ),
        (
            entries(scales={"dtype": "F32", "shape": [ROWS, 1], "data_offsets": [0, 4 * ROWS]}),
            "scales must be F32 [N]",
        ),
        (
            entries(extra={"dtype": "U8", "shape": [0], "data_offsets": [54, 54]}),
            "holds the tensors scales and codes",
        ),
    ],
)
def test_headers_that_lie(tmp_path, header, fragment):
    assert fragment in load_both(tmp_path, file_bytes(header))


def test_a_file_without_codes(tmp_path):
    message = load_both(tmp_path, file_bytes(entries(codes=None), data=SCALES.tobytes()))
    assert "holds the tensors scales and codes (and key_offsets and keys if it has keys, and norms if they were stored), this one scales (F32 [6])" in message


def test_data_shorter_than_the_header_claims(tmp_path):
    message = load_both(tmp_path, file_bytes(data=SCALES.tobytes() + CODES.tobytes()[:-1]))
    assert "truncated" in message


def test_huge_claimed_shape_is_rejected_before_any_allocation(tmp_path):
    n = 2**40
    header = entries(
        scales={"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
        codes={"dtype": "U8", "shape": [n, 2**20], "data_offsets": [4 * n, 4 * n + n * 2**20]},
    )
    assert "truncated" in load_both(tmp_path, file_bytes(header))


def valid_file():
    return file_bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.lists(
        st.tuples(st.integers(0, len(valid_file()) - 1), st.integers(0, 255)), max_size=6
    ),
    cut=st.one_of(st.none(), st.integers(0, len(valid_file()))),
    extra=st.binary(max_size=8),
)
def test_fuzzed_files_load_correctly_or_raise_value_error(tmp_path, mutations, cut, extra):
    content = bytearray(valid_file())
    for position, value in mutations:
        content[position] = value
    content = bytes(content[:cut]) + extra if cut is not None else bytes(content)
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(content)
    for mmap in (True, False):
        try:
            qe = rq.load(path, mmap=mmap)
        except ValueError:
            continue
        # accepted: then it is a consistent table that lies inside the file
        rows, dim = qe.shape
        assert 8 + 4 * rows + rows * dim <= len(content)
        assert np.all(qe.scales >= 0) and np.all(np.isfinite(qe.scales))
        if rows:
            qe.take(np.arange(rows))
            qe.bag(np.arange(rows), [0])


SOURCE_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}


def decode_source(content):
    """The one tensor of a safetensors file, decoded with struct/json/numpy only."""
    (length,) = struct.unpack("<Q", content[:8])
    header = json.loads(content[8 : 8 + length])
    header.pop("__metadata__", None)
    (entry,) = header.values()
    begin, end = entry["data_offsets"]
    data = content[8 + length + begin : 8 + length + end]
    if entry["dtype"] == "BF16":  # the top half of a float32
        values = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(data, SOURCE_DTYPES[entry["dtype"]])
    return values.reshape(entry["shape"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4))
def test_fuzzed_sources_of_quantize_file_raise_only_documented_errors(tmp_path, mutations):
    """A mutated source is refused with a documented error and no output, or quantized to
    exactly the bytes that quantizing its tensor in memory and saving it give."""
    import safetensors.numpy

    src = tmp_path / "src.safetensors"
    values = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    safetensors.numpy.save_file({"w": values}, str(src))
    content = bytearray(src.read_bytes())
    for position, value in mutations:
        if position < len(content):
            content[position] = value
    src.write_bytes(bytes(content))
    out = tmp_path / "out.safetensors"
    out.unlink(missing_ok=True)  # tmp_path is shared by the examples of one test
    try:
        rq.quantize_file(src, out)
    except (ValueError, TypeError):
        assert not out.exists()
    else:
        expected = tmp_path / "expected.safetensors"
        rq.quantize(decode_source(bytes(content))).save(expected)
        assert out.read_bytes() == expected.read_bytes()
