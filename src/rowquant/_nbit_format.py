"""Files of 4-bit and 2-bit tables: the rowquant format (:mod:`rowquant._format`) with the
tensors ``scales`` (F16 ``[N]``), ``biases`` (F16 ``[N]``) and ``codes`` (U8 ``[N, P]``, the packed
rows, starting on a 64-byte boundary), then ``key_offsets`` and ``keys`` as for 8-bit tables;
metadata ``format=rowquant, version=1, scheme=rowwise-affine-u4-f16`` (or ``-u2-``) and ``dim``
(the number of values per row, which the packed width does not give). 8-bit files are unchanged.

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

from . import _atomic, _safetensors
from ._format import CODES_ALIGNMENT, KEY_TENSORS, METADATA, StoredTable, _read_into, write_keys
from ._keys import RESERVED_METADATA, Keys, check_metadata
from ._scheme import SCHEMES, Scheme

__all__ = ["is_nbit", "nbit_header", "read_nbit_table", "write_nbit_table"]

_BASE = {"format": METADATA["format"], "version": METADATA["version"]}
_DIM = re.compile(r"(0|[1-9][0-9]{0,18})")


def is_nbit(header: _safetensors.Header) -> bool:
    """Whether a file's header names one of the affine schemes (its other entries unchecked)."""
    scheme = SCHEMES.get(header.metadata.get("scheme", ""))
    return header.metadata.get("format") == "rowquant" and scheme is not None and scheme.kind == "affine"


def nbit_header(rows: int, width: int, dim: int, scheme: Scheme, key_bytes: int | None = None,
                metadata: dict[str, str] | None = None) -> bytes:
    """The header bytes of an N-bit table's file (see the module's notes)."""
    tensors = {"scales": ("F16", (rows,)), "biases": ("F16", (rows,)),
               "codes": ("U8", (rows, width))}
    if key_bytes is not None:
        tensors["key_offsets"] = ("I64", (rows + 1,))
        tensors["keys"] = ("U8", (key_bytes,))
    entries = check_metadata(metadata)
    if "dim" in entries:
        raise ValueError("metadata name 'dim' is written by rowquant itself in 4-bit and 2-bit "
                         "files; choose another")
    entries = {**entries, **_BASE, **scheme.metadata(), "dim": str(dim)}
    return _safetensors.encode_header(tensors, entries, "codes", CODES_ALIGNMENT)


def write_nbit_table(path, codes: np.ndarray, scales: np.ndarray, biases: np.ndarray, dim: int,
                     scheme: Scheme, keys: Keys | None = None,
                     metadata: dict[str, str] | None = None) -> None:
    """Write a checked N-bit table to ``path`` atomically."""
    rows, width = codes.shape
    key_bytes = None if keys is None else keys.utf8.shape[0]
    header = nbit_header(rows, width, dim, scheme, key_bytes, metadata)
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, header, 0)
        _atomic.write_all(fd, np.ascontiguousarray(scales, "<f2"), len(header))
        _atomic.write_all(fd, np.ascontiguousarray(biases, "<f2"), len(header) + 2 * rows)
        offset = len(header) + 4 * rows
        _atomic.write_all(fd, np.ascontiguousarray(codes), offset)
        offset += rows * width
        if keys is not None:
            write_keys(fd, offset, keys)


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
    if set(header.tensors) not in ({"scales", "biases", "codes"},
                                   {"scales", "biases", "codes", *KEY_TENSORS}):
        raise ValueError(
            f"a {scheme.name} table holds the tensors scales, biases and codes (and key_offsets "
            f"and keys if it has keys), this one {names}"
        )
    codes = header.tensors["codes"]
    if codes.dtype != "U8" or len(codes.shape) != 2:
        raise ValueError(f"codes must be U8 [N, P], got {codes.dtype} {list(codes.shape)}")
    rows, width = codes.shape
    expected = -(-dim // scheme.values_per_byte)
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
    if "keys" in header.tensors:
        offsets, keys = header.tensors["key_offsets"], header.tensors["keys"]
        if offsets.dtype != "I64" or offsets.shape != (rows + 1,):
            raise ValueError(
                f"key_offsets must be I64 [{rows + 1}] (one more than the rows), got "
                f"{offsets.dtype} {list(offsets.shape)}"
            )
        if keys.dtype != "U8" or len(keys.shape) != 1:
            raise ValueError(f"keys must be U8 [bytes], got {keys.dtype} {list(keys.shape)}")
    return scheme, dim


def read_nbit_table(file, header: _safetensors.Header, path: str, mmap: bool,
                    validate: bool) -> StoredTable:
    """The checked N-bit table of an open file whose header :func:`is_nbit`."""
    try:
        scheme, dim = _checked_tensors(header)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    names = ("scales", "biases", "codes", *(KEY_TENSORS if "keys" in header.tensors else ()))
    if mmap:
        buffer = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_READ)
        arrays = [_safetensors.array_view(buffer, header.tensors[name]) for name in names]
    else:
        arrays = []
        for name in names:
            tensor = header.tensors[name]
            array = np.empty(tensor.shape, _safetensors.DTYPES[tensor.dtype][0])
            _read_into(file, array, tensor.start)
            arrays.append(array)
    scales, biases, codes = arrays[:3]
    # float16 scales and biases as native aligned arrays (2 bytes per row each)
    scales, biases = (np.require(a, np.float16, ["C", "A"]) for a in (scales, biases))
    from ._nbit import nbit_arrays

    keys = None
    try:
        codes, scales, biases, dim = nbit_arrays(codes, scales, biases, dim, scheme,
                                                 check_values=validate)
        if len(arrays) > 3:
            keys = Keys(arrays[4], arrays[3], check=False, source=path)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    metadata = {name: value for name, value in header.metadata.items()
                if name not in RESERVED_METADATA and name != "dim"}
    return StoredTable(codes, scales, keys, metadata, None, biases=biases, dim=dim, scheme=scheme)


def quantize_file_nbit(src, dst, bits: object, range_search: object, tensor: str | None,
                       chunk_rows: int | None, progress, report: bool, format: str | None,
                       metadata: dict[str, str], started: float):
    """:func:`rowquant.quantize_file` with ``bits=4`` or ``2``: the same streaming, chunk by
    chunk, into the N-bit file layout (byte for byte what ``rq.quantize(table, bits=bits,
    range_search=range_search, keys=words, metadata=metadata).save(dst)`` writes)."""
    import os
    import time

    from ._chunks import rows_per_chunk
    from ._error_report import ErrorAccumulator
    from ._nbit import quantize_nbit, scheme_for_bits
    from ._sources import open_source
    from .io import QuantizeSummary, _progress_callback

    scheme = scheme_for_bits(bits)
    if not isinstance(range_search, (bool, np.bool_)):
        raise TypeError(f"range_search must be True or False, got {range_search!r}")
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise ValueError(f"the output {os.fspath(dst)} is the input file; choose another path")
    with open_source(src, tensor, format) as source:
        rows, dim = source.rows, source.dim
        width = -(-dim // scheme.values_per_byte)
        keys = source.keys
        step = rows_per_chunk(chunk_rows, dim)
        header = nbit_header(rows, width, dim, scheme,
                             None if keys is None else keys.utf8.shape[0], metadata)
        scales_at, biases_at = len(header), len(header) + 2 * rows
        codes_at = len(header) + 4 * rows
        errors = ErrorAccumulator(rows, dim) if report else None
        update, close = _progress_callback(progress, rows, os.path.basename(os.fspath(src)))
        try:
            with _atomic.atomic_output(dst) as fd:
                _atomic.write_all(fd, header, 0)
                os.ftruncate(fd, codes_at + rows * width)
                if keys is not None:
                    write_keys(fd, codes_at + rows * width, keys)
                for start in range(0, rows, step):
                    stop = min(rows, start + step)
                    values, stored = source.rows_float32(start, stop)
                    codes, scales, biases = quantize_nbit(values, scheme.bits, bool(range_search),
                                                          stored, source.label, start)
                    _atomic.write_all(fd, np.ascontiguousarray(scales, "<f2"), scales_at + 2 * start)
                    _atomic.write_all(fd, np.ascontiguousarray(biases, "<f2"), biases_at + 2 * start)
                    _atomic.write_all(fd, codes, codes_at + start * width)
                    if errors is not None:
                        from . import reference

                        dequantized = reference.dequantize_nbit(codes, scales, biases,
                                                                scheme.bits, dim)
                        errors.update(start, values, codes, scales.astype(np.float32),
                                      dequantized)
                    del values, stored
                    source.release(start, stop)
                    update(stop)
        finally:
            close()
        output_bytes = codes_at + rows * width
        if keys is not None:
            output_bytes += keys.offsets.nbytes + keys.utf8.nbytes
        return QuantizeSummary(
            source=os.fspath(src), output=os.fspath(dst), tensor=source.tensor, rows=rows,
            dim=dim, source_dtype=source.dtype_name, source_bytes=source.nbytes,
            output_bytes=output_bytes, seconds=time.perf_counter() - started,
            report=errors.finish() if errors is not None else None, keys=keys is not None,
        )
