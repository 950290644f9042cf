"""Files of 4-bit and 2-bit tables: the rowquant format (:mod:`rowquant._format`) with the
tensor ``rows`` (U8 ``[N, P + 4]``, starting on a 64-byte boundary): FBGEMM's fused rows, each
its ``P`` packed code bytes, then its scale and its bias as little-endian float16, so that a
memory-mapped table serves a row with one read, as the table in memory does
(:class:`rowquant._nbit.NBitEmbedding`); then ``key_offsets`` and ``keys`` as for 8-bit tables;
metadata ``format=rowquant, version=1, scheme=rowwise-affine-u4-f16`` (or ``-u2-``) and ``dim``
(the number of values per row, which the packed width does not give). Files of the first
layout, with three tensors ``scales`` (F16 ``[N]``), ``biases`` (F16 ``[N]``) and ``codes`` (U8
``[N, P]``), still read (their arrays served as they are). 8-bit files are unchanged.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import rowquant as rq
>>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
>>> qe = rq.quantize(np.arange(10, dtype=np.float32).reshape(2, 5), bits=2)
>>> qe.save(path)
>>> back = rq.load(path)
>>> back, back.scheme.name, np.array_equal(back.dequantize(), qe.dequantize())
(QuantizedEmbedding(rows=2, dim=5, 2-bit, 12 B, 3.3x smaller than float32), 'rowwise-affine-u2-f16', True)
"""

from __future__ import annotations

import mmap as _mmap
import re

import numpy as np

import os

from . import _atomic, _safetensors
from ._format import CODES_ALIGNMENT, KEY_TENSORS, METADATA, StoredTable, write_keys
from ._keys import RESERVED_METADATA, Keys, check_metadata
from ._nbit_arrays import fused_views, nbit_arrays
from ._scheme import SCHEMES, Scheme

__all__ = ["is_nbit", "is_nbit_file", "nbit_header", "read_nbit_table", "write_nbit_table"]

_BASE = {"format": METADATA["format"], "version": METADATA["version"]}
_DIM = re.compile(r"(0|[1-9][0-9]{0,18})")


def is_nbit(header: _safetensors.Header) -> bool:
    """Whether a file's header names one of the affine schemes (its other entries unchecked)."""
    scheme = SCHEMES.get(header.metadata.get("scheme", ""))
    return header.metadata.get("format") == "rowquant" and scheme is not None and scheme.kind == "affine"


def is_nbit_file(path) -> bool:
    """Whether ``path`` is a safetensors file whose header names an affine scheme; False for
    anything unreadable (:func:`rowquant._format.read_table` then says what is wrong)."""
    try:
        with open(path, "rb") as file:
            header = _safetensors.read_header(file, os.fstat(file.fileno()).st_size)
    except (OSError, ValueError):
        return False
    return is_nbit(header)


def _read_tensor(file, tensor: _safetensors.Tensor) -> np.ndarray:
    """A tensor's bytes read into a new array."""
    file.seek(tensor.start)
    data = file.read(tensor.nbytes)
    if len(data) != tensor.nbytes:
        raise ValueError("the file ended early (it changed while being read)")
    dtype = _safetensors.DTYPES[tensor.dtype][0]
    return np.frombuffer(data, dtype).reshape(tensor.shape).copy()


def nbit_header(rows: int, width: int, dim: int, scheme: Scheme, key_bytes: int | None = None,
                metadata: dict[str, str] | None = None) -> bytes:
    """The header bytes of an N-bit table's file (see the module's notes)."""
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"rows": ("U8", (rows, width + 4))}
    if key_bytes is not None:
        tensors["key_offsets"] = ("I64", (rows + 1,))
        tensors["keys"] = ("U8", (key_bytes,))
    entries = check_metadata(metadata)
    if "dim" in entries:
        raise ValueError("metadata name 'dim' is written by rowquant itself in 4-bit and 2-bit "
                         "files; choose another")
    entries = {**entries, **_BASE, **scheme.metadata(), "dim": str(dim)}
    return _safetensors.encode_header(tensors, entries, "rows", CODES_ALIGNMENT)


def write_nbit_table(path, rows: np.ndarray, dim: int, scheme: Scheme, keys: Keys | None = None,
                     metadata: dict[str, str] | None = None) -> None:
    """Write a checked N-bit table, given as its fused rows (uint8 ``(N, P + 4)``), to ``path``
    atomically."""
    n_rows, row_bytes = rows.shape
    key_bytes = None if keys is None else keys.utf8.shape[0]
    header = nbit_header(n_rows, row_bytes - 4, dim, scheme, key_bytes, metadata)
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, header, 0)
        _atomic.write_all(fd, np.ascontiguousarray(rows), len(header))
        if keys is not None:
            write_keys(fd, len(header) + n_rows * row_bytes, keys)


def _checked_tensors(header: _safetensors.Header) -> tuple[Scheme, int]:
    """The scheme and dim of an N-bit file, its tensors checked against them."""
    if header.metadata.get("version") != METADATA["version"]:
        raise ValueError(
            f"rowquant format version {header.metadata.get('version')!r} is not one this "
            f"rowquant reads (it reads version {METADATA['version']})"
        )
    scheme = SCHEMES[header.metadata["scheme"]]
    if "bias" in header.metadata:
        raise ValueError(f"a {scheme.name} file has per-row biases, not a 'bias' entry")
    text = header.metadata.get("dim")
    if text is None or not _DIM.fullmatch(text):
        raise ValueError(f"a {scheme.name} file records its dim (an integer >= 0), got {text!r}")
    dim = int(text)
    names = ", ".join(t.describe() for _, t in sorted(header.tensors.items())) or "none"
    tensors = set(header.tensors) - set(KEY_TENSORS)
    if tensors not in ({"rows"}, {"scales", "biases", "codes"}) or (
            "keys" in header.tensors) != ("key_offsets" in header.tensors):
        raise ValueError(
            f"a {scheme.name} table holds the tensor rows (or, in the first layout, scales, "
            f"biases and codes), and key_offsets and keys if it has keys; this one {names}"
        )
    expected = -(-dim // scheme.values_per_byte)
    if tensors == {"rows"}:
        fused = header.tensors["rows"]
        if fused.dtype != "U8" or len(fused.shape) != 2:
            raise ValueError(f"rows must be U8 [N, P + 4], got {fused.dtype} {list(fused.shape)}")
        if fused.shape[1] != expected + 4:
            raise ValueError(
                f"rows has {fused.shape[1]} bytes per row, but dim={dim} at {scheme.bits} bits "
                f"packs into {expected} code bytes, plus 4 for the scale and bias"
            )
        rows = fused.shape[0]
        _check_keys(header, rows)
        return scheme, dim
    codes = header.tensors["codes"]
    if codes.dtype != "U8" or len(codes.shape) != 2:
        raise ValueError(f"codes must be U8 [N, P], got {codes.dtype} {list(codes.shape)}")
    rows, width = codes.shape
    if width != expected:
        raise ValueError(
            f"codes has {width} bytes per row, but dim={dim} at {scheme.bits} bits packs into "
            f"{expected}"
        )
    for name in ("scales", "biases"):
        tensor = header.tensors[name]
        if tensor.dtype != "F16" or tensor.shape != (rows,):
            raise ValueError(
                f"{name} must be F16 [{rows}] (one per row of codes), got {tensor.dtype} "
                f"{list(tensor.shape)}"
            )
    _check_keys(header, rows)
    return scheme, dim


def _check_keys(header: _safetensors.Header, rows: int) -> None:
    """The vocabulary's tensors, if the file has them, for ``rows`` rows."""
    if "keys" in header.tensors:
        offsets, keys = header.tensors["key_offsets"], header.tensors["keys"]
        if offsets.dtype != "I64" or offsets.shape != (rows + 1,):
            raise ValueError(
                f"key_offsets must be I64 [{rows + 1}] (one more than the rows), got "
                f"{offsets.dtype} {list(offsets.shape)}"
            )
        if keys.dtype != "U8" or len(keys.shape) != 1:
            raise ValueError(f"keys must be U8 [bytes], got {keys.dtype} {list(keys.shape)}")


def read_nbit_table(path, *, mmap: bool = True, validate: bool = True) -> StoredTable:
    """The checked N-bit table of the file at ``path`` (one that :func:`is_nbit_file`), as
    :func:`rowquant._format.read_table` reads 8-bit ones; ``ValueError`` naming the file."""
    with open(path, "rb") as file:
        try:
            header = _safetensors.read_header(file, os.fstat(file.fileno()).st_size)
            return _read_nbit(file, header, os.fspath(path), mmap, validate)
        except ValueError as error:
            message = str(error)
            if message.startswith(f"{os.fspath(path)}: "):
                raise
            raise ValueError(f"{os.fspath(path)}: {message}") from None


def _read_nbit(file, header: _safetensors.Header, path: str, mmap: bool,
               validate: bool) -> StoredTable:
    scheme, dim = _checked_tensors(header)
    fused = "rows" in header.tensors
    names = (("rows",) if fused else ("scales", "biases", "codes")) + (
        KEY_TENSORS if "keys" in header.tensors else ())
    if mmap:
        buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
        arrays = [_safetensors.array_view(buffer, header.tensors[name]) for name in names]
    else:
        arrays = [_read_tensor(file, header.tensors[name]) for name in names]
    rows = None
    if fused:  # views into the rows, served as they are
        rows = arrays[0]
        codes, scales, biases = fused_views(rows, rows.shape[1] - 4)
        arrays = [scales, biases, codes, *arrays[1:]]
    scales, biases, codes = arrays[:3]
    keys = None
    try:
        # checked (copies of strided scales and biases are made for the check only)
        checked = nbit_arrays(codes, scales, biases, dim, scheme, check_values=validate)
        if not fused:  # native aligned arrays of the first layout (2 bytes per row each)
            codes, scales, biases = checked[:3]
        if len(arrays) > 3:
            keys = Keys(arrays[4], arrays[3], check=False, source=path)
    except TypeError as error:
        raise ValueError(str(error)) from None
    metadata = {name: value for name, value in header.metadata.items()
                if name not in RESERVED_METADATA and name != "dim"}
    return StoredTable(codes, scales, keys, metadata, None, biases=biases, dim=dim, scheme=scheme,
                       rows=rows)

