"""Streaming a table in row chunks with bounded memory: how many rows a chunk holds, and how the
rows of a memory-mapped file already processed leave this process's resident memory.

Examples
--------
>>> from rowquant._chunks import rows_per_chunk
>>> rows_per_chunk(None, 300), rows_per_chunk(1000, 300)
(27962, 1000)
"""

from __future__ import annotations

import contextlib
import mmap as _mmap

from typing import Any

import numpy as np

__all__ = ["DEFAULT_CHUNK_BYTES", "release_pages", "rows_per_chunk"]

DEFAULT_CHUNK_BYTES = 32 << 20  # float32 bytes of input per chunk when chunk_rows is not given


def rows_per_chunk(chunk_rows, dim: int) -> int:
    """``chunk_rows`` checked (a positive integer), or, when it is None, the rows of ``dim``
    float32 values that fill :data:`DEFAULT_CHUNK_BYTES` (at least one)."""
    if chunk_rows is None:
        return max(1, DEFAULT_CHUNK_BYTES // (4 * max(dim, 1)))
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)):
        raise TypeError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows}")
    return int(chunk_rows)


def release_pages(rows: np.ndarray) -> None:
    """Drop the memory pages under ``rows`` (a contiguous view of a memory-mapped file, else
    nothing happens) from this process's resident memory: streaming through a mapped table then
    keeps it bounded by the chunk. The data stays in the file; touching it again reads it back."""
    base: Any = rows
    while isinstance(base, np.ndarray):
        base = base.base
    buffer = base.obj if isinstance(base, memoryview) else base
    if not isinstance(buffer, _mmap.mmap) or rows.size == 0 or not rows.flags.c_contiguous:
        return
    if not hasattr(buffer, "madvise"):
        return
    origin = np.frombuffer(buffer, dtype=np.uint8, count=1).ctypes.data
    first = rows.ctypes.data - origin
    page = _mmap.PAGESIZE
    begin = first // page * page
    end = (first + rows.nbytes) // page * page  # the partial last page may hold the next rows
    if end > begin:
        with contextlib.suppress(OSError, ValueError):
            buffer.madvise(_mmap.MADV_DONTNEED, begin, end - begin)
