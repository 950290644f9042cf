"""The rowquant file format (DESIGN.md section 5), written from and read into arrays.

A table is a safetensors file: ``scales`` (F32 ``[N]``) then ``codes`` (U8 ``[N, D]``),
metadata ``format=rowquant, version=1, scheme=rowwise-symmetric-u8, bias=128``. The header is
padded so that the codes start on a 64-byte boundary of the file. Files are written atomically
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
>>> codes_read, scales_read = _format.read_table(path, mmap=False)
>>> codes_read.tolist(), scales_read.tolist()
([[128, 128, 128], [128, 128, 128]], [0.0, 0.0])
"""

from __future__ import annotations

import mmap as _mmap
import os
import sys

import numpy as np

from . import _atomic, _checks, _safetensors
from ._chunks import DEFAULT_CHUNK_BYTES
from ._scheme import DEFAULT as DEFAULT_SCHEME
from ._scheme import SCHEMES

__all__ = ["CODES_ALIGNMENT", "METADATA", "little_endian_f32", "read_table", "table_header",
           "write_table"]

# what every rowquant file records; the scheme's part comes from its description
METADATA = {"format": "rowquant", "version": "1", **DEFAULT_SCHEME.metadata()}
CODES_ALIGNMENT = 64  # a cache line: rows whose width is a multiple of it then take whole lines


def table_header(rows: int, dim: int) -> bytes:
    """The header bytes of a rowquant file for a table of ``rows`` x ``dim``."""
    tensors = {"scales": ("F32", (rows,)), "codes": ("U8", (rows, dim))}
    return _safetensors.encode_header(tensors, METADATA, "codes", CODES_ALIGNMENT)


def little_endian_f32(scales: np.ndarray) -> np.ndarray:
    """The scales as the file stores them: little-endian float32, contiguous."""
    return np.ascontiguousarray(scales, dtype="<f4")


def write_table(path, codes: np.ndarray, scales: np.ndarray) -> None:
    """Write ``codes`` (uint8 ``(N, D)``) and ``scales`` (float32 ``(N,)``), already checked, to
    ``path`` as a rowquant file, atomically (:func:`rowquant._atomic.atomic_output`)."""
    rows, dim = codes.shape
    header = table_header(rows, dim)
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, header, 0)
        _atomic.write_all(fd, little_endian_f32(scales), len(header))
        offset = len(header) + 4 * rows
        if codes.flags.c_contiguous:
            _atomic.write_all(fd, codes, offset)
        else:  # rows with a stride: a bounded copy at a time
            step = max(1, DEFAULT_CHUNK_BYTES // max(dim, 1))
            for start in range(0, rows, step):
                block = np.ascontiguousarray(codes[start : start + step])
                _atomic.write_all(fd, block, offset + start * dim)


def _rowquant_tensors(header: _safetensors.Header):
    """The checked scales and codes tensors of a rowquant file's header."""
    fmt = header.metadata.get("format")
    names = ", ".join(t.describe() for _, t in sorted(header.tensors.items())) or "none"
    if fmt != "rowquant":
        raise ValueError(
            f"not a rowquant table (metadata format is {fmt!r}; tensors: {names}); "
            "make one with rowquant.quantize_file or 'rowquant quantize'"
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
    if header.metadata.get("bias") != str(scheme.bias):
        raise ValueError(
            f"unknown quantization bias {header.metadata.get('bias')!r} "
            f"(this rowquant knows {str(scheme.bias)!r})"
        )
    if set(header.tensors) != {"scales", "codes"}:
        raise ValueError(f"a rowquant table holds the tensors scales and codes, this one {names}")
    scales, codes = header.tensors["scales"], header.tensors["codes"]
    if scales.dtype != "F32" or len(scales.shape) != 1:
        raise ValueError(f"scales must be F32 [N], got {scales.dtype} {list(scales.shape)}")
    if codes.dtype != "U8" or len(codes.shape) != 2:
        raise ValueError(f"codes must be U8 [N, D], got {codes.dtype} {list(codes.shape)}")
    if scales.shape[0] != codes.shape[0]:
        raise ValueError(
            f"scales has {scales.shape[0]} rows but codes has {codes.shape[0]}: they must match"
        )
    if 4 * codes.shape[1] > sys.maxsize:  # an empty table can claim any width
        raise ValueError(f"codes has {codes.shape[1]} columns, too many for a row of float32")
    return scales, codes


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


def read_table(path, *, mmap: bool = True, validate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The checked (codes, scales) of the rowquant file at ``path``: views of a read-only memory
    map of it, or with ``mmap=False`` arrays read into memory; see :func:`rowquant.load`.
    Raises ``ValueError`` naming the file for anything that is not a valid rowquant table."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            header = _safetensors.read_header(file, size)
            scales_tensor, codes_tensor = _rowquant_tensors(header)
        except ValueError as error:
            raise ValueError(f"{os.fspath(path)}: {error}") from None
        rows, dim = codes_tensor.shape
        if mmap:
            buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
            scales = _safetensors.array_view(buffer, scales_tensor)
            codes = _safetensors.array_view(buffer, codes_tensor)
        else:
            scales = np.empty(rows, dtype="<f4")
            codes = _checks.cache_aligned_empty((rows, dim), np.uint8)
            _read_into(file, scales, scales_tensor.start)
            _read_into(file, codes, codes_tensor.start)
    if not scales.dtype.isnative or scales.ctypes.data % scales.itemsize:
        # another writer may leave the scales off a 4-byte boundary: the C kernels read them as
        # float32, so they get an aligned copy (4 bytes per row)
        scales = scales.astype(np.float32)
    try:
        codes, scales = _checks.codes_and_scales(codes, scales, check_values=validate)
    except ValueError as error:
        raise ValueError(f"{os.fspath(path)}: {error}") from None
    return codes, scales
