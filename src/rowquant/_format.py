"""The rowquant file format (DESIGN.md section 5), written from and read into arrays.

A table is a safetensors file: ``scales`` (F32 ``[N]``) then ``codes`` (U8 ``[N, D]``),
metadata ``format=rowquant, version=1, scheme=rowwise-symmetric-u8, bias=128``. The header is
padded so that the codes start on a 64-byte boundary of the file. A table with keys (words) adds
``key_offsets`` (I64 ``[N + 1]``) and ``keys`` (U8, the keys' UTF-8 bytes back to back) after the
codes; a table whose row norms were computed (for cosine similarity) may add ``norms`` (F32
``[N]``) last; free-form metadata (model name, source, licence) are more ``__metadata__``
entries beside the format's own. A table without keys or metadata is written byte for byte as before, and files
without them load as before. Files are written atomically
(:mod:`rowquant._atomic`). This module knows codes and scales, not
:class:`~rowquant.QuantizedEmbedding`: the table's ``save`` and :mod:`rowquant.io` both call it.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from rowquant import _format
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> codes, scales = np.full((2, 3), 128, np.uint8), np.zeros(2, np.float32)
>>> _format.write_table(path, codes, scales)
>>> os.path.getsize(path) == len(_format.table_header(2, 3)) + 2 * 4 + 2 * 3
True
>>> stored = _format.read_table(path, mmap=False)
>>> stored.codes.tolist(), stored.scales.tolist(), stored.keys, stored.metadata
([[128, 128, 128], [128, 128, 128]], [0.0, 0.0], None, {})
"""

from __future__ import annotations

import mmap as _mmap
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _atomic, _checks, _safetensors
from ._keys import RESERVED_METADATA, Keys, check_metadata
from ._chunks import DEFAULT_CHUNK_BYTES
from ._scheme import DEFAULT as DEFAULT_SCHEME
from ._scheme import SCHEMES, Scheme, symmetric_scheme_for

__all__ = ["CODES_ALIGNMENT", "METADATA", "StoredTable", "little_endian_f32",
           "little_endian_scales", "read_table", "table_header", "write_keys", "write_table"]

# what every rowquant file records; the scheme's part comes from its description
METADATA = {"format": "rowquant", "version": "1", **DEFAULT_SCHEME.metadata()}
CODES_ALIGNMENT = 64  # a cache line: rows whose width is a multiple of it then take whole lines


KEY_TENSORS = ("key_offsets", "keys")  # the optional vocabulary, after the codes
NORMS = "norms"  # the optional norms of the dequantized rows, last
# the scales tensor's dtype by how a scheme stores its scales (bfloat16 as its uint16 bits)
SCALE_TENSOR_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
_SCALE_FILE_DTYPES = {"F32": "<f4", "BF16": "<u2", "F16": "<f2"}


@dataclass(frozen=True)
class StoredTable:
    """What a rowquant file holds: the checked codes and scales, the keys if it has them, and
    its free-form metadata (the format's own entries left out)."""

    codes: np.ndarray
    scales: np.ndarray
    keys: Keys | None
    metadata: dict[str, str]
    norms: np.ndarray | None = None
    # 4-bit and 2-bit tables (rowquant._nbit_format): the float16 biases, the row width and the
    # scheme; None for 8-bit tables
    biases: np.ndarray | None = None
    dim: int | None = None
    scheme: Any = None
    rows: np.ndarray | None = None  # their fused rows, when the file holds them so


def table_header(rows: int, dim: int, key_bytes: int | None = None,
                 metadata: dict[str, str] | None = None, norms: bool = False,
                 scheme: Scheme = DEFAULT_SCHEME) -> bytes:
    """The header bytes of a rowquant file for a table of ``rows`` x ``dim``; with
    ``key_bytes``, one that also holds ``rows`` keys of that many UTF-8 bytes in all (tensors
    ``key_offsets``, I64 ``[rows + 1]``, and ``keys``, U8 ``[key_bytes]``, after the codes, so
    that a file without keys is laid out as before). ``metadata`` are free-form entries
    (checked by :func:`rowquant._keys.check_metadata`), written beside the format's own. With
    ``norms``, a ``norms`` tensor (F32 ``[rows]``) comes last. A ``scheme`` with 16-bit
    scales stores them as BF16 or F16 ``[rows]`` and records its name."""
    tensors = {"scales": (SCALE_TENSOR_DTYPES[scheme.scale_format], (rows,)),
               "codes": ("U8", (rows, dim))}
    if key_bytes is not None:
        tensors["key_offsets"] = ("I64", (rows + 1,))
        tensors["keys"] = ("U8", (key_bytes,))
    if norms:
        tensors[NORMS] = ("F32", (rows,))
    entries = {**check_metadata(metadata), **METADATA, **scheme.metadata()}
    return _safetensors.encode_header(tensors, entries, "codes", CODES_ALIGNMENT)


def write_keys(fd: int, offset: int, keys: Keys) -> None:
    """Write ``keys`` as the file stores them (offsets as little-endian int64, then the UTF-8
    bytes) at ``offset`` of the open file ``fd``: the end of the codes."""
    _atomic.write_all(fd, np.ascontiguousarray(keys.offsets, dtype="<i8"), offset)
    _atomic.write_all(fd, np.ascontiguousarray(keys.utf8), offset + keys.offsets.nbytes)


def little_endian_f32(scales: np.ndarray) -> np.ndarray:
    """float32 scales (or norms) as the file stores them: little-endian, contiguous."""
    return np.ascontiguousarray(scales, dtype="<f4")


def little_endian_scales(scales: np.ndarray) -> np.ndarray:
    """Checked scales as the file stores them, little-endian and contiguous: float32, float16,
    or the uint16 bits of bfloat16."""
    return np.ascontiguousarray(scales, dtype=scales.dtype.newbyteorder("<"))


def write_table(path, codes: np.ndarray, scales: np.ndarray, keys: Keys | None = None,
                metadata: dict[str, str] | None = None, norms: np.ndarray | None = None) -> None:
    """Write ``codes`` (uint8 ``(N, D)``) and ``scales`` (float32 ``(N,)``), already checked, and
    ``keys`` (``N`` of them) and the rows' ``norms`` if given, to ``path`` as a rowquant file
    with the free-form ``metadata``, atomically (:func:`rowquant._atomic.atomic_output`)."""
    rows, dim = codes.shape
    key_bytes = None if keys is None else keys.utf8.shape[0]
    header = table_header(rows, dim, key_bytes, metadata, norms is not None,
                          symmetric_scheme_for(scales))
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, header, 0)
        _atomic.write_all(fd, little_endian_scales(scales), len(header))
        offset = len(header) + scales.itemsize * rows
        if codes.flags.c_contiguous:
            _atomic.write_all(fd, codes, offset)
        else:  # rows with a stride: a bounded copy at a time
            step = max(1, DEFAULT_CHUNK_BYTES // max(dim, 1))
            for start in range(0, rows, step):
                block = np.ascontiguousarray(codes[start : start + step])
                _atomic.write_all(fd, block, offset + start * dim)
        offset += rows * dim
        if keys is not None:
            write_keys(fd, offset, keys)
            offset += keys.offsets.nbytes + keys.utf8.nbytes
        if norms is not None:
            _atomic.write_all(fd, little_endian_f32(norms), offset)


def _rowquant_tensors(header: _safetensors.Header, path: str):
    """The checked scales and codes tensors of a rowquant file's header."""
    fmt = header.metadata.get("format")
    names = ", ".join(t.describe() for _, t in sorted(header.tensors.items())) or "none"
    if fmt != "rowquant":
        floats = [name for name, t in sorted(header.tensors.items())
                  if t.dtype in ("F16", "BF16", "F32", "F64") and len(t.shape) == 2]
        tensor = floats[0] if len(header.tensors) > 1 and floats else None
        raise ValueError(
            f"a safetensors file but not a rowquant table (its metadata format is {fmt!r}; "
            f"tensors: {names}); "
            + _quantize_first(path, tensor)
        )
    version = header.metadata.get("version")
    if version != METADATA["version"]:
        raise ValueError(
            f"rowquant format version {version!r} is not one this rowquant reads "
            f"(it reads version {METADATA['version']})"
        )
    scheme = SCHEMES.get(header.metadata.get("scheme", ""))
    if scheme is None:
        known = ", ".join(repr(name) for name in SCHEMES)
        raise ValueError(
            f"unknown quantization scheme {header.metadata.get('scheme')!r} "
            f"(this rowquant knows {known})"
        )
    if scheme.kind != "symmetric":
        raise ValueError(f"a {scheme.bits}-bit table (scheme {scheme.name}): read it with "
                         "rowquant.load")
    if header.metadata.get("bias") != str(scheme.bias):
        raise ValueError(
            f"unknown quantization bias {header.metadata.get('bias')!r} "
            f"(this rowquant knows {str(scheme.bias)!r})"
        )
    if set(header.tensors) - {NORMS} not in ({"scales", "codes"},
                                             {"scales", "codes", *KEY_TENSORS}):
        raise ValueError(
            "a rowquant table holds the tensors scales and codes (and key_offsets and keys if it "
            f"has keys, and norms if they were stored), this one {names}"
        )
    scales, codes = header.tensors["scales"], header.tensors["codes"]
    scale_dtype = SCALE_TENSOR_DTYPES.get(scheme.scale_format)
    if scales.dtype != scale_dtype or len(scales.shape) != 1:
        raise ValueError(f"scales must be {scale_dtype} [N] for scheme {scheme.name}, got "
                         f"{scales.dtype} {list(scales.shape)}")
    if codes.dtype != "U8" or len(codes.shape) != 2:
        raise ValueError(f"codes must be U8 [N, D], got {codes.dtype} {list(codes.shape)}")
    if scales.shape[0] != codes.shape[0]:
        raise ValueError(
            f"scales has {scales.shape[0]} rows but codes has {codes.shape[0]}: they must match"
        )
    if 4 * codes.shape[1] > sys.maxsize:  # an empty table can claim any width
        raise ValueError(f"codes has {codes.shape[1]} columns, too many for a row of float32")
    if "keys" in header.tensors:
        offsets, keys = header.tensors["key_offsets"], header.tensors["keys"]
        if offsets.dtype != "I64" or offsets.shape != (codes.shape[0] + 1,):
            raise ValueError(
                f"key_offsets must be I64 [{codes.shape[0] + 1}] (one more than the rows), got "
                f"{offsets.dtype} {list(offsets.shape)}"
            )
        if keys.dtype != "U8" or len(keys.shape) != 1:
            raise ValueError(f"keys must be U8 [bytes], got {keys.dtype} {list(keys.shape)}")
    if NORMS in header.tensors:
        norms = header.tensors[NORMS]
        if norms.dtype != "F32" or norms.shape != (codes.shape[0],):
            raise ValueError(
                f"norms must be F32 [{codes.shape[0]}] (one per row), got {norms.dtype} "
                f"{list(norms.shape)}"
            )
    return scales, codes


def _quantize_first(path: str, tensor: str | None = None) -> str:
    option, argument = (f" --tensor {tensor}", f", tensor={tensor!r}") if tensor else ("", "")
    return (
        f"quantize it first: rowquant quantize {path}{option} -o TABLE.safetensors, or "
        f"rowquant.quantize_file({path!r}, 'TABLE.safetensors'{argument})"
    )


def _not_safetensors(file, error: ValueError, path: str) -> str:
    """Why a file whose safetensors header does not read is not a table: a float array or a
    word-vector text file gets told to be quantized first, anything else the header's fault."""
    file.seek(0)
    head = file.read(512)
    if head.startswith(b"\x93NUMPY"):
        try:
            shape, _, dtype = _npy_header(file)
        except ValueError:
            return f"a .npy file, not a rowquant table; {_quantize_first(path)}"
        return f"a .npy array ({dtype} {shape}), not a rowquant table; {_quantize_first(path)}"
    first_line = head.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if len(first_line) < len(head) and text.strip() and text.isprintable():
        return (
            "a text file (a word-vector file such as GloVe, word2vec or fastText?), not a "
            f"rowquant table; {_quantize_first(path)}"
        )
    return str(error)


def _npy_header(file) -> tuple[tuple[int, ...], bool, np.dtype]:
    file.seek(0)
    try:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(file)
        return np.lib.format.read_array_header_2_0(file)
    except Exception as error:  # any unreadable header: only the message changes
        raise ValueError(str(error)) from None


def _read_into(file, array: np.ndarray, offset: int) -> None:
    if array.size == 0:
        return
    view = array.reshape(-1).view(np.uint8).data  # a memoryview of the bytes
    file.seek(offset)
    while view.nbytes:
        count = file.readinto(view)
        if not count:
            raise ValueError("the file ended early (it changed while being read)")
        view = view[count:]


def read_table(path, *, mmap: bool = True, validate: bool = True) -> StoredTable:
    """The checked table of the rowquant file at ``path``: codes, scales and keys as views of a
    read-only memory map of it, or with ``mmap=False`` arrays read into memory; see
    :func:`rowquant.load`. Raises ``ValueError`` naming the file for anything that is not a
    valid rowquant table."""
    keys = None
    norms = None
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            header = _safetensors.read_header(file, size)
        except ValueError as error:
            why = _not_safetensors(file, error, os.fspath(path))
            raise ValueError(f"{os.fspath(path)}: {why}") from None
        try:
            scales_tensor, codes_tensor = _rowquant_tensors(header, os.fspath(path))
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}: {error}") from None
        rows, dim = codes_tensor.shape
        if mmap:
            buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
            scales = _safetensors.array_view(buffer, scales_tensor)
            codes = _safetensors.array_view(buffer, codes_tensor)
            if "keys" in header.tensors:
                # views: nothing of the vocabulary is read until a key is asked for
                key_arrays = [_safetensors.array_view(buffer, header.tensors[name])
                              for name in KEY_TENSORS]
            if NORMS in header.tensors:
                norms = _safetensors.array_view(buffer, header.tensors[NORMS])
        else:
            scales = np.empty(rows, dtype=_SCALE_FILE_DTYPES[scales_tensor.dtype])
            codes = _checks.cache_aligned_empty((rows, dim), np.uint8)
            _read_into(file, scales, scales_tensor.start)
            _read_into(file, codes, codes_tensor.start)
            if "keys" in header.tensors:
                key_arrays = []
                for name in KEY_TENSORS:
                    tensor = header.tensors[name]
                    array = np.empty(tensor.shape, _safetensors.DTYPES[tensor.dtype][0])
                    _read_into(file, array, tensor.start)
                    key_arrays.append(array)
            if NORMS in header.tensors:
                norms = np.empty(rows, dtype="<f4")
                _read_into(file, norms, header.tensors[NORMS].start)
    if not scales.dtype.isnative or scales.ctypes.data % scales.itemsize:
        # another writer may leave the scales off their items' boundary: the C kernels read
        # them as whole items, so they get an aligned native copy (2 or 4 bytes per row)
        scales = scales.astype(scales.dtype.newbyteorder("="))
    try:
        codes, scales = _checks.codes_and_scales(codes, scales, check_values=validate)
        if "keys" in header.tensors:
            offsets, utf8 = key_arrays
            # nothing of the vocabulary is read now: the offsets are checked on first use
            keys = Keys(utf8, offsets, check=False, source=os.fspath(path))
        if norms is not None:
            norms = _checked_norms(norms, validate)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    metadata = {
        name: value for name, value in header.metadata.items() if name not in RESERVED_METADATA
    }
    return StoredTable(codes, scales, keys, metadata, norms)


def _checked_norms(norms: np.ndarray, validate: bool) -> np.ndarray:
    """A file's stored norms as aligned native float32, checked to be non-negative (inf is a
    norm beyond float32's range) unless ``validate`` is False. They are trusted to be the
    table's: checking them against the codes would be the pass over the table they spare."""
    if not norms.dtype.isnative or norms.ctypes.data % norms.itemsize:
        norms = norms.astype(np.float32)
    if validate:
        bad = ~(norms >= 0)  # NaN too
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"norms[{row}] is {norms[row]}: a norm must be >= 0")
    return norms
