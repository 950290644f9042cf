"""Float tables in files, read in row chunks as float32: the inputs of
:func:`rowquant.quantize_file` and :func:`rowquant.error_report`.

Each input format has an opener: a function that checks the file's header and returns the
table as stored (:class:`Stored`), and a test that recognises the format from the file's first
bytes. :data:`OPENERS` lists them in the order they are tried; :class:`FloatSource` picks one
and reads any of them the same way. Binary formats map the file (:func:`map_array`), so that
only the chunk being read is in memory. A new array format is one opener function and one entry
in :data:`OPENERS`.

Word-vector files (GloVe, word2vec and fastText text, word2vec binary) must be parsed: they are
read by the sources of :mod:`rowquant._text_lines` and :mod:`rowquant._text_binary`, which
offer the same interface and add the words (``keys``). :func:`open_source` tells the formats
apart by content and returns the right source; the callers (:func:`rowquant.quantize_file`,
:func:`rowquant.error_report`, :func:`rowquant.read_vectors`) use it.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from rowquant._sources import FloatSource
>>> path = os.path.join(tempfile.mkdtemp(), "E.npy")
>>> np.save(path, np.arange(6, dtype=np.float16).reshape(3, 2))
>>> with FloatSource(path) as source:
...     values, stored = source.rows_float32(1, 3)
...     source.rows, source.dim, source.dtype_name, values.dtype
(3, 2, 'float16', dtype('float32'))
>>> values
array([[2., 3.],
       [4., 5.]], dtype=float32)
"""

from __future__ import annotations

import contextlib
import math
import mmap as _mmap
import os
import sys
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from . import _checks, _safetensors
from ._chunks import release_pages
from ._keys import Keys
from ._text import DESCRIPTIONS, FORMATS, WordVectorSource, detect_format, read_head
from ._text_binary import BinaryVectors
from ._text_lines import TextVectors

__all__ = ["FLOAT_DTYPES", "OPENERS", "FloatSource", "Opener", "Source", "Stored", "map_array",
           "open_source"]

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # the safetensors dtypes quantize reads
NPY_MAGIC = b"\x93NUMPY"
HEAD_BYTES = 64  # the bytes of a file that openers recognise their format by


@dataclass(frozen=True)
class Stored:
    """A 2-D float table as a file stores it, found by an opener.

    ``array`` is ``(rows, dim)`` in the stored dtype and order: a view of ``buffer`` (a memory
    map of the file, closed with the source) or an array in memory (``buffer`` None).
    ``dtype_name`` is the stored dtype as reported to the user (``"float16"``, ``"bfloat16"``);
    ``tensor`` the name of the tensor read, for files that hold several; ``bf16`` says that
    ``array`` holds bfloat16 values as their uint16 bits.
    """

    array: np.ndarray
    dtype_name: str
    buffer: _mmap.mmap | None = None
    tensor: str | None = None
    bf16: bool = False


@dataclass(frozen=True)
class Opener:
    """How to read one input format: ``recognises(head)`` tells from the file's first
    :data:`HEAD_BYTES` bytes (fewer in a shorter file) whether it is in this format, and
    ``open(file, size, tensor)`` reads the open binary ``file`` of ``size`` bytes (from any
    position: it seeks) and returns the table, or raises ``ValueError`` (``TypeError`` for a
    table that does not hold floats) with a message that need not name the file: the source
    adds it. ``tensor`` is the name the caller gave, if any."""

    name: str
    recognises: Callable[[bytes], bool]
    open: Callable[[BinaryIO, int, str | None], Stored]


def map_array(file: BinaryIO, shape: tuple[int, int], dtype: np.dtype, offset: int,
              fortran: bool = False) -> tuple[np.ndarray, _mmap.mmap]:
    """The array of ``shape`` and ``dtype`` stored at ``offset`` of ``file`` (in Fortran order
    with ``fortran``), over a read-only memory map of the whole file; and the map. The caller
    has checked that the file holds it."""
    buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
    array = np.ndarray(
        shape, dtype=dtype, buffer=buffer, offset=offset, order="F" if fortran else "C"
    )
    return array, buffer


# ----------------------------------------------------------------------------- .npy


def _npy_header(file, size):
    """(shape, fortran, dtype, offset) of the array of a .npy file, checked against the file."""
    file.seek(0)
    version = np.lib.format.read_magic(file)
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except (
        SyntaxError, TypeError, MemoryError, RecursionError, UnicodeError, tokenize.TokenError
    ) as error:
        # numpy parses the header with ast.literal_eval (and tokenize) and np.dtype, whose
        # errors on hostile text get out as these rather than as numpy's ValueError
        raise ValueError(
            f"the .npy header cannot be parsed ({type(error).__name__}: {error})"
        ) from None
    offset = file.tell()
    if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
        raise TypeError(
            f"the array has dtype {dtype}; quantize needs float16, float32 or float64"
        )
    if len(shape) != 2:
        raise ValueError(f"the array has shape {shape}; quantize needs a 2-D (rows, dim) one")
    # numpy's reader lets negative sizes and True through, and np.ndarray refuses them
    if any(type(size) is not int or size < 0 for size in shape) or (
        math.prod(size for size in shape if size) * dtype.itemsize > sys.maxsize
    ):
        raise ValueError(f"the array's shape {shape} is not a valid one")
    needed = offset + shape[0] * shape[1] * dtype.itemsize
    if size < needed:
        raise ValueError(f"the file has {size} bytes but its array needs {needed} (truncated)")
    return shape, fortran, dtype, offset


def open_npy(file: BinaryIO, size: int, tensor: str | None) -> Stored:
    """The array of a ``.npy`` file (float16, float32 or float64, 2-D, either order)."""
    if tensor is not None:
        raise ValueError(
            f"a tensor name ({tensor!r}) applies to safetensors files, and this is a .npy file"
        )
    shape, fortran, dtype, offset = _npy_header(file, size)
    array, buffer = map_array(file, shape, dtype, offset, fortran)
    return Stored(array, dtype.name, buffer)


# ----------------------------------------------------------------------------- safetensors


def open_safetensors(file: BinaryIO, size: int, name: str | None) -> Stored:
    """The 2-D float tensor ``name`` of a safetensors file (F16, BF16, F32 or F64), which may be
    left out when the file holds one tensor."""
    try:
        header = _safetensors.read_header(file, size)
    except ValueError as error:
        raise ValueError(f"not a .npy file, nor a readable safetensors file: {error}") from None
    if header.metadata.get("format") == "rowquant":
        raise ValueError(
            "the file is already a rowquant table: open it with rowquant.load, or quantize the "
            "float table it was made from"
        )
    listing = ", ".join(t.describe() for _, t in sorted(header.tensors.items()))
    if name is None:
        if len(header.tensors) != 1:
            raise ValueError(
                f"the file holds {len(header.tensors)} tensors; name the one to use "
                f"(tensors: {listing or 'none'})"
            )
        (tensor,) = header.tensors.values()
    elif name not in header.tensors:
        raise ValueError(f"no tensor named {name!r} (tensors: {listing or 'none'})")
    else:
        tensor = header.tensors[name]
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"tensor {tensor.name!r} has dtype {tensor.dtype}; quantize needs "
            f"a float tensor ({', '.join(FLOAT_DTYPES)})"
        )
    if len(tensor.shape) != 2:
        raise ValueError(
            f"tensor {tensor.name!r} has shape {list(tensor.shape)}; quantize needs a 2-D "
            "(rows, dim) one"
        )
    dtype_name = tensor.dtype.lower() if tensor.dtype == "BF16" else np.dtype(
        _safetensors.DTYPES[tensor.dtype][0]
    ).name
    dtype = np.dtype("<u2" if tensor.dtype == "BF16" else _safetensors.DTYPES[tensor.dtype][0])
    array, buffer = map_array(file, tensor.shape, dtype, tensor.start)
    return Stored(array, dtype_name, buffer, tensor=tensor.name, bf16=tensor.dtype == "BF16")


# ----------------------------------------------------------------------------- the sources

OPENERS: tuple[Opener, ...] = (
    Opener(".npy", lambda head: head.startswith(NPY_MAGIC), open_npy),
    # safetensors files start with their header's length, no magic number: the last resort
    Opener("safetensors", lambda head: True, open_safetensors),
)


class FloatSource:
    """A 2-D float table in a file (a ``.npy`` file, or a tensor of a ``.safetensors`` file),
    read in row chunks as float32. Binary formats are memory-mapped, and ``release`` drops rows
    already processed from this process's memory, so streaming through a table larger than
    memory keeps memory bounded by the chunk.

    Parameters
    ----------
    path : str or os.PathLike
        The file; its format is recognised by its content (:data:`OPENERS`), not its name.
    tensor : str, optional
        The tensor to read, for formats that hold several.

    Raises
    ------
    ValueError
        The file is in no format rowquant reads, or is truncated or corrupted; ``tensor``
        names no tensor of it, or the table is not 2-D. The message starts with the path.
    TypeError
        The table does not hold floats.
    OSError
        The file cannot be opened.
    """

    keys: Keys | None = None  # arrays have no words; word-vector sources do

    def __init__(self, path, tensor: str | None = None):
        self.path = os.fspath(path)
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(HEAD_BYTES)
            opener = next(opener for opener in OPENERS if opener.recognises(head))
            try:
                stored = opener.open(file, size, tensor)
            except (ValueError, TypeError) as error:
                # not type(error): subclasses such as UnicodeEncodeError take other arguments
                kind = TypeError if isinstance(error, TypeError) else ValueError
                raise kind(f"{self.path}: {error}") from None
        self._array = stored.array
        self._buffer = stored.buffer
        self._bf16 = stored.bf16
        self.rows, self.dim = stored.array.shape
        self.nbytes = self.rows * self.dim * stored.array.itemsize
        self.tensor = stored.tensor
        self.dtype_name = stored.dtype_name
        # a Fortran-order table's rows are spread over all its pages: none can be released
        self._fortran = not stored.array.flags.c_contiguous
        self.label = self.path if self.tensor is None else f"tensor {self.tensor!r} of {self.path}"

    def rows_float32(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [start, stop) as float32 with contiguous rows (a view when the file holds native
        float32 in C order), and the same rows as stored (for error messages)."""
        stored = self._array[start:stop]
        if self._bf16:
            values = _safetensors.bf16_to_float32(stored)
            return values, values
        return _checks.float_matrix(stored), stored

    def release(self, start: int, stop: int) -> None:
        """Drop rows [start, stop) from this process's resident memory (they stay in the file
        and the page cache)."""
        if not self._fortran:
            release_pages(self._array[start:stop])

    def close(self) -> None:
        self._array = None  # type: ignore[assignment]  # closed: nothing may read it again
        if self._buffer is not None:
            with contextlib.suppress(BufferError):  # a caller still holds a view: the GC closes it
                self._buffer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- any input

Source = FloatSource | WordVectorSource  # what open_source returns: the same interface


def _is_safetensors(head: bytes, size: int) -> bool:
    """Whether ``head`` starts like a safetensors file: a header length that fits the file,
    then the JSON header's brace (so text, whose first 8 bytes make a huge length, is not)."""
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8


def _is_text(head: bytes) -> bool:
    """Whether ``head`` reads as UTF-8 text (a character cut by the end of ``head`` allowed)."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3 and error.reason == "unexpected end of data"
    return True


def open_source(path, tensor: str | None = None, format: str | None = None,
                finite: bool = True) -> Source:
    """The float table of the file at ``path``, open for reading in row chunks: a
    :class:`FloatSource` for ``.npy`` and safetensors files, a word-vector source for GloVe,
    word2vec and fastText text and word2vec binary files (with ``keys``), told apart by the
    file's content unless ``format`` (one of :data:`rowquant._text.FORMATS`) says which
    word-vector format it is. With ``finite`` (the default), a word-vector file's NaN or inf is
    an error naming its line.

    Raises ``ValueError`` naming the file for an empty file, a file in no format rowquant reads,
    a rowquant table (already quantized) and any fault of a word-vector file (with its line);
    otherwise as :class:`FloatSource`.

    Examples
    --------
    >>> import os, tempfile
    >>> from rowquant._sources import open_source
    >>> path = os.path.join(tempfile.mkdtemp(), "glove.txt")
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("king 0.5 -1.25\\nqueen 0.25 2\\n")
    >>> with open_source(path) as source:
    ...     source.rows, source.dim, source.dtype_name, list(source.keys)
    (2, 2, 'GloVe text', ['king', 'queen'])
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("king 0.5 -1.25\\nqueen 0.25\\n")
    >>> open_source(path)
    Traceback (most recent call last):
        ...
    ValueError: ...glove.txt, line 2: the word 'queen' has 1 value, but line 1 has 2
    """
    path = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise ValueError(
            f"format must be one of {', '.join(map(repr, FORMATS))} or None (recognise the "
            f"file by its content), got {format!r}"
        )
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = read_head(file, size) if format is None else b""
        if format is None:
            if not size:
                raise ValueError(f"{path}: the file is empty")
            if head.startswith(NPY_MAGIC) or _is_safetensors(head, size):
                return FloatSource(path, tensor)
            format = detect_format(head)
            if format is None:
                if _is_text(head):
                    raise ValueError(
                        f"{path}: a text file in no format rowquant reads: its first line is "
                        "neither a word2vec header 'N D' nor a word followed by numbers (GloVe)"
                    )
                return FloatSource(path, tensor)  # says why it is not .npy nor safetensors
        if tensor is not None:
            raise ValueError(
                f"{path}: a tensor name ({tensor!r}) applies to safetensors files, and this is "
                f"a {DESCRIPTIONS[format]} file"
            )
        if not size:
            raise ValueError(f"{path}: the file is empty")
        reader = BinaryVectors if format == "word2vec-binary" else TextVectors
        return reader(path, file, size, format, finite)
