"""The safetensors container, read and written without the ``safetensors`` package.

A file is an 8-byte little-endian header length H, H bytes of JSON (padding spaces allowed), then
the data section, which the tensors cover exactly, each at ``data_offsets`` ``[begin, end)``
relative to the start of that section. The reader trusts nothing: every length, type, shape and
offset is checked against the file's real size before any data is read, so a truncated, corrupted
or hostile file gives a ``ValueError`` and never a read outside the file.

Examples
--------
>>> import struct
>>> header = encode_header({"x": ("F32", (2, 3))}, {"k": "v"})
>>> struct.unpack("<Q", header[:8])[0] == len(header) - 8
True
>>> header[8:].rstrip(b" ")
b'{"__metadata__":{"k":"v"},"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'
>>> len(header) % 8
0
"""

from __future__ import annotations

import json
import math
import struct
import sys
from dataclasses import dataclass

import numpy as np

# The safetensors library refuses headers above 100 MB; so do we, before allocating one.
MAX_HEADER_BYTES = 100_000_000

# dtype names of the format, with their numpy equivalents (None: no numpy dtype) and sizes
DTYPES: dict[str, tuple[str | None, int]] = {
    "BOOL": ("|b1", 1),
    "U8": ("|u1", 1),
    "I8": ("|i1", 1),
    "F8_E5M2": (None, 1),
    "F8_E4M3": (None, 1),
    "I16": ("<i2", 2),
    "U16": ("<u2", 2),
    "F16": ("<f2", 2),
    "BF16": (None, 2),
    "I32": ("<i4", 4),
    "U32": ("<u4", 4),
    "F32": ("<f4", 4),
    "F64": ("<f8", 8),
    "I64": ("<i8", 8),
    "U64": ("<u8", 8),
}


@dataclass(frozen=True)
class Tensor:
    """One tensor of a safetensors file: its dtype name, shape, and absolute byte range in the
    file (already checked to lie inside it)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def nbytes(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        # JSON can spell lone surrogates (\ud800), which no output stream can print
        name = self.name.encode("utf-8", "backslashreplace").decode("utf-8")
        return f"{name} ({self.dtype} {list(self.shape)})"


@dataclass(frozen=True)
class Header:
    """A checked safetensors header: metadata strings, tensors in file order, file size."""

    metadata: dict[str, str]
    tensors: dict[str, Tensor]
    file_size: int


def encode_header(tensors: dict[str, tuple[str, tuple[int, ...]]], metadata: dict[str, str],
                  align_tensor: str | None = None, alignment: int = 8) -> bytes:
    """Length prefix and JSON header for ``tensors`` (name -> (dtype, shape)) laid out back to
    back in the given order. The JSON is padded with spaces so that the data section starts on an
    8-byte boundary, or, with ``align_tensor``, so that tensor starts on an ``alignment``-byte
    boundary of the file (a memory map then puts it on such a boundary in memory too)."""
    entries: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    before: dict[str, int] = {}
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * DTYPES[dtype][1]
        before[name] = offset
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(entries, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    target = before[align_tensor] if align_tensor is not None else 0
    modulus = alignment if align_tensor is not None else 8
    pad = -(8 + len(text) + target) % modulus
    text += b" " * pad
    return struct.pack("<Q", len(text)) + text


def _no_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the header names {repeated!r} twice")
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"the header holds the non-JSON constant {name}")


def _whole(value, what: str) -> int:
    # bool is an int in Python but not a number in the format
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def read_header(file, file_size: int) -> Header:
    """Read and check the header of the open binary ``file`` of ``file_size`` bytes. Raises
    ``ValueError`` saying what is wrong; reads nothing past the header."""
    if file_size < 8:
        raise ValueError(
            f"the file has {file_size} bytes, too few for a safetensors file "
            "(it starts with an 8-byte header length)"
        )
    file.seek(0)
    (length,) = struct.unpack("<Q", file.read(8))
    if length > file_size - 8:
        raise ValueError(
            f"the header length field says {length} bytes but only {file_size - 8} follow it "
            "(a truncated file, or not a safetensors file)"
        )
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"the header length {length} exceeds the format's limit of 100 MB")
    raw = file.read(length)
    if len(raw) != length:
        raise ValueError("the file ended inside its header")
    if not raw.lstrip(b" ").startswith(b"{"):
        raise ValueError("the header is not a JSON object (not a safetensors file)")
    try:
        entries = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except UnicodeDecodeError as error:
        raise ValueError(f"the header is not UTF-8 text: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"the header is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError("the header nests JSON arrays or objects too deeply") from None
    if not isinstance(entries, dict):
        raise ValueError("the header is not a JSON object")
    metadata = entries.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in metadata.items()
    ):
        raise ValueError("the header's __metadata__ must map strings to strings")
    data_start = 8 + length
    data_size = file_size - data_start
    tensors = []
    for name, entry in entries.items():
        tensors.append(_tensor(name, entry, data_start))
    tensors.sort(key=lambda tensor: (tensor.start, tensor.stop))
    covered = data_start
    for tensor in tensors:
        if tensor.start != covered:
            what = "overlaps the one before it" if tensor.start < covered else "leaves a gap"
            raise ValueError(f"tensor {tensor.name!r}: its data_offsets {what}")
        covered = tensor.stop
    if covered > file_size:
        raise ValueError(
            f"the tensors need {covered - data_start} bytes of data but the file holds "
            f"{data_size} (a truncated file)"
        )
    if covered < file_size:
        raise ValueError(
            f"the file has {file_size - covered} bytes after its last tensor (not a safetensors "
            "file, or one that was appended to)"
        )
    return Header(metadata, {tensor.name: tensor for tensor in tensors}, file_size)


def _tensor(name: str, entry, data_start: int) -> Tensor:
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {name!r}: its header entry is not an object")
    keys = set(entry)
    if keys != {"dtype", "shape", "data_offsets"}:
        raise ValueError(
            f"tensor {name!r}: its header entry must have the keys dtype, shape and "
            f"data_offsets, got {sorted(keys)}"
        )
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"tensor {name!r}: unknown dtype {dtype!r}")
    shape = entry["shape"]
    if not isinstance(shape, list):
        raise ValueError(f"tensor {name!r}: shape must be a list, got {shape!r}")
    shape = tuple(_whole(size, f"tensor {name!r}: a shape entry") for size in shape)
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise ValueError(f"tensor {name!r}: data_offsets must be [begin, end], got {offsets!r}")
    begin, end = (_whole(offset, f"tensor {name!r}: a data offset") for offset in offsets)
    if end < begin:
        raise ValueError(f"tensor {name!r}: data_offsets [{begin}, {end}] end before they begin")
    expected = math.prod(shape) * DTYPES[dtype][1]
    if end - begin != expected:
        raise ValueError(
            f"tensor {name!r}: {dtype} {list(shape)} needs {expected} bytes but its "
            f"data_offsets span {end - begin}"
        )
    # numpy makes no array, not even an empty one, whose non-zero dimensions multiply past this
    if math.prod(size for size in shape if size) * DTYPES[dtype][1] > sys.maxsize:
        raise ValueError(f"tensor {name!r}: {dtype} {list(shape)} is too large to address")
    return Tensor(name, dtype, shape, data_start + begin, data_start + end)


def array_view(buffer, tensor: Tensor) -> np.ndarray:
    """The tensor as a numpy array over ``buffer`` (a memory map of the whole file): no copy.
    BF16 comes as its raw uint16 bits (see :func:`bf16_to_float32`)."""
    dtype, _ = DTYPES[tensor.dtype]
    if dtype is None:
        dtype = "<u2" if tensor.dtype == "BF16" else "|u1"
    count = math.prod(tensor.shape)
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=tensor.start)
    return array.reshape(tensor.shape)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values given by their uint16 bits, as float32 (exact: bfloat16 is the top half
    of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)
