"""Quantized tables in files: save, load (memory-mapped), and streaming quantization of float
tables larger than memory.

A table is a safetensors file (DESIGN.md section 5): ``scales`` (F32 ``[N]``) then ``codes``
(U8 ``[N, D]``), metadata ``format=rowquant, version=1, scheme=rowwise-symmetric-u8, bias=128``.
The header is padded so that the codes start on a 64-byte boundary of the file. Files are written
to a temporary name in the target folder, flushed to disk and renamed into place: a failed or
interrupted write never leaves a partial file at the target path, and a file already there stays
as it was. A replaced file keeps its permissions (and owner and group where permitted), a
symlink is written through to its target, devices, pipes and sockets are refused, and the
temporary file of a writer killed mid-write is deleted by the next write to the same path
(:func:`rowquant._atomic.atomic_output` has the details).

This module is the public face of the files; the work is done by leaf modules that know
nothing of :class:`~rowquant.QuantizedEmbedding`: ``_format`` (the file layout, read and
written from codes and scales), ``_atomic`` (atomic writes), ``_sources`` (the float inputs,
one opener per format), ``_chunks`` (chunk sizes and releasing mapped pages) and
``_error_report`` (the error measured chunk by chunk).

Examples
--------
>>> import os, tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> import rowquant as rq
>>> E = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "table.safetensors")
>>> rq.quantize(E).save(path)
>>> qe = rq.load(path)                      # memory-mapped: only looked-up rows are read
>>> np.array_equal(qe.take([3, 1]), rq.quantize(E).take([3, 1]))
True
>>> np.save(os.path.join(folder, "E.npy"), E)
>>> summary = rq.quantize_file(os.path.join(folder, "E.npy"), os.path.join(folder, "s.safetensors"))
>>> summary.rows, summary.dim
(1000, 64)
>>> Path(folder, "s.safetensors").read_bytes() == Path(path).read_bytes()
True
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from . import _api, _atomic, _format, _nbit_format, _shards, reference
from ._chunks import rows_per_chunk
from ._error_report import ErrorAccumulator, ErrorReport
from ._keys import check_metadata
from ._nbit_arrays import fbgemm_nbit_rows, quantize_nbit, scheme_for_bits
from ._scheme import SYMMETRIC_SCHEMES
from ._sources import open_source
from ._open import load_table
from ._progress import progress_callback
from ._shards import ShardedTable
from .table import QuantizedEmbedding

__all__ = ["QuantizeSummary", "load", "quantize_file", "read_vectors", "save"]


def save(
    path, table: QuantizedEmbedding, *, metadata: Mapping[str, str] | None = None,
    norms: bool | None = None,
) -> None:
    """Write ``table`` to ``path`` as a rowquant safetensors file, atomically.

    The file holds ``scales`` (F32 ``[N]``) then ``codes`` (U8 ``[N, D]``) with rowquant's
    metadata, and for a table with keys ``key_offsets`` (I64 ``[N + 1]``) and ``keys`` (U8, the
    keys' UTF-8 bytes back to back) after them; it loads with ``safetensors.numpy.load_file``
    as well as :func:`load`.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write. Its folder must exist. A file already there is replaced only once the
        new one is completely written, and the new file keeps its permission bits (and owner
        and group where permitted); a new file gets ``0o666`` less the umask. A symbolic link
        is written through: its target is replaced and the link stays. See
        :func:`rowquant._atomic.atomic_output`.
    table : QuantizedEmbedding
    metadata : dict of str to str, optional
        Free-form entries for the file's ``__metadata__`` (model name, source, licence), stored
        with the table's own :attr:`~QuantizedEmbedding.metadata` (replacing those of the same
        name); :func:`load` gives them back as ``qe.metadata``.
    norms : bool, optional
        Store the rows' norms (``norms``, F32 ``[N]``, after the rest), which cosine similarity
        divides by, so that a loaded table has them without a pass over its codes: by default
        when the table has computed them (:meth:`QuantizedEmbedding.norms`), always with True
        (computing them if needed), never with False.

    Raises
    ------
    TypeError
        ``table`` is not a :class:`QuantizedEmbedding`.
    ValueError
        ``path`` is empty or ends in a path separator.
    OSError
        The folder is missing or not writable, ``path`` is a folder, or a device, named pipe
        or socket (``shutil.SpecialFileError``; it is left untouched), the disk is full, ...;
        nothing is left at ``path`` (a file that was there is unchanged).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.eye(3, dtype=np.float32))
    >>> path = os.path.join(tempfile.mkdtemp(), "eye.safetensors")
    >>> rq.save(path, qe)
    >>> rq.load(path).codes
    array([[255, 128, 128],
           [128, 255, 128],
           [128, 128, 255]], dtype=uint8)
    """
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}")
    table.save(path, metadata=metadata, norms=norms)


def load(path, *, mmap: bool = True, validate: bool = True) -> QuantizedEmbedding | ShardedTable:
    """Open a table written by :func:`save` or :func:`quantize_file`, or a sharded one.

    Parameters
    ----------
    path : str or os.PathLike
        A rowquant file; or a folder of shards with their index, or the index itself
        (``*.safetensors.index.json``, written by ``rowquant.dask``'s ``to_safetensors_shards``
        or ``quantize_file(..., workers=N)`` into a folder), opened as one
        :class:`~rowquant.ShardedTable`: every shard is checked against the index first, and a
        missing or truncated one is named in a ValueError.
    mmap : bool, default True
        Map the file into memory: ``codes`` and ``scales`` are zero-copy read-only views of it,
        opening takes milliseconds whatever the size, and only the rows that lookups touch are
        read from disk (the operating system caches them). With ``False`` the file is read into
        memory. A mapped file must not be truncated or rewritten in place while it is open
        (:func:`save` replaces files by renaming, which is safe).
    validate : bool, default True
        Check that every scale is finite and non-negative, which reads the scales (4 bytes per
        row, not the codes). ``False`` skips that for files you trust.

    Returns
    -------
    QuantizedEmbedding

    Raises
    ------
    ValueError
        The file is not a rowquant table, or is truncated or corrupted: every length, dtype,
        shape and offset in its header is checked against the file before anything is read.
    OSError
        The file cannot be opened.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> rq.quantize(np.arange(12, dtype=np.float32).reshape(3, 4)).save(path)
    >>> qe = rq.load(path)
    >>> qe
    QuantizedEmbedding(rows=3, dim=4, 24 B, 2.0x smaller than float32)
    >>> qe.codes.flags.writeable
    False
    >>> np.array_equal(rq.load(path, mmap=False).codes, qe.codes)
    True
    """
    if _shards.is_sharded(path):
        return _shards.load_sharded(path, mmap=mmap, validate=validate)
    return load_table(path, mmap=mmap, validate=validate)


# ----------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class QuantizeSummary:
    """What :func:`quantize_file` did: the table's shape, the sizes before and after (for a
    word-vector file, ``source_bytes`` is the file's size and ``source_dtype`` its format, e.g.
    ``"GloVe text"``), the time taken, the error report when one was asked for, and whether the
    table got the source's words as keys."""

    source: str
    output: str
    tensor: str | None
    rows: int
    dim: int
    source_dtype: str
    source_bytes: int
    output_bytes: int
    seconds: float
    report: ErrorReport | None = None
    keys: bool = False  # whether the table got words (a word-vector source) as keys


def quantize_file(
    src,
    dst,
    *,
    tensor: str | None = None,
    chunk_rows: int | None = None,
    progress=None,
    threads: int | None = None,
    report: bool = False,
    format: str | None = None,
    metadata: Mapping[str, str] | None = None,
    bits: int = 8,
    range_search: bool = False,
    scale_dtype: str = "float32",
    scale_rounding: str = "nearest",
    workers: int | None = None,
    rows_per_shard: int | None = None,
) -> QuantizeSummary:
    """Quantize the float table in ``src`` into a rowquant file ``dst``, chunk by chunk.

    The output is byte for byte what ``rq.quantize(table, keys=words,
    metadata=metadata).save(dst)`` writes, but memory stays bounded by one chunk, not the
    table: the input is memory-mapped and rows already quantized are released as the work
    moves on, and the output is written as it is produced. Word-vector files keep their words:
    the table gets them as keys (``qe["king"]``).

    Parameters
    ----------
    src : str or os.PathLike
        A ``.npy`` file (float16, float32 or float64), a ``.safetensors`` file with a 2-D F16,
        BF16, F32 or F64 tensor, or a word-vector file: GloVe text (``word v1 ... vD`` per
        line), word2vec or fastText text (``.vec``: a header line ``N D``, then lines as in
        GloVe) or word2vec binary (``.bin``). The format is recognised by the file's content,
        not its name. Text is parsed in two passes (words and shape, then the numbers chunk
        by chunk, as float64 rounded once to float32); see :func:`read_vectors` for the rules.
    dst : str or os.PathLike
        The output file, written atomically as by :func:`save` (permissions of a file already
        there kept, symlinks written through, devices and pipes refused). If an earlier run
        writing ``dst`` was killed (``kill -9``, out of memory), its hidden
        ``.NAME.XXXXXXXX.partial`` file is deleted now; those of runs still writing are left.
    tensor : str, optional
        The tensor of a safetensors file to quantize; may be left out when it holds only one.
    chunk_rows : int, optional
        Rows per chunk; default enough for about 32 MB of float32.
    progress : bool or callable, optional
        ``True`` shows a progress bar on stderr (tqdm); a callable is called as
        ``progress(rows_done, rows_total)`` after each chunk.
    threads : int, optional
        Threads for the quantization; default :func:`rowquant.get_num_threads`.
    report : bool, default False
        Also measure the quantization error (:class:`rowquant.ErrorReport`, as
        :func:`rowquant.error_report` would give), at some extra cost per chunk.
    format : {"glove", "word2vec", "word2vec-binary"}, optional
        Read ``src`` as this word-vector format instead of recognising it (a GloVe file whose
        first line is two integers would otherwise be taken for a word2vec header).
    metadata : dict of str to str, optional
        Free-form entries for the file's metadata (model name, source, licence), as
        :func:`save` takes them; :func:`load` gives them back as ``qe.metadata``.
    bits : {8, 4, 2}, default 8
        4 or 2: FBGEMM's N-bit rows, as :func:`rowquant.quantize` with ``bits=`` makes them
        (the file is then what ``rq.quantize(table, bits=bits, range_search=range_search,
        keys=words, metadata=metadata).save(dst)`` writes).
    range_search : bool, default False
        With ``bits=4`` or ``2``: search each row's clipping range (see :func:`rowquant.quantize`).
    scale_dtype : {"float32", "bfloat16", "float16"}, default "float32"
        How 8-bit rows store their scales, and ``scale_rounding`` how 16-bit ones are rounded
        (``"nearest"`` or ``"truncate"``), as :func:`rowquant.quantize` takes them.
    scale_rounding : {"nearest", "truncate"}, default "nearest"
    workers : int, optional
        Quantize on a local Dask cluster of this many worker processes (``pip install
        'rowquant[dask]'``; see :mod:`rowquant.dask`), each reading, quantizing and, into a
        folder, writing its own blocks of rows. Without it, a folder or Zarr ``src`` is
        quantized on this process's threads.
    rows_per_shard : int, optional
        Write ``dst`` as a folder of shards of this many rows and their index (what
        :func:`load` opens as one :class:`~rowquant.ShardedTable`); so does a ``dst`` that does
        not end in ``.safetensors`` when ``src`` is a folder or a Zarr array, or with
        ``workers``. A folder or Zarr ``src``: its ``.npy`` and safetensors files' rows one
        after the other (in name order), or the Zarr array's.

    Returns
    -------
    QuantizeSummary

    Raises
    ------
    TypeError
        The tensor or array does not hold floats.
    ValueError
        ``src`` is empty, or in no format rowquant reads, or already a rowquant table, or a
        ``.npy`` or safetensors file that is truncated or corrupted; ``tensor`` names no tensor
        in it (the message lists them), the table is not 2-D, or it holds NaN or inf (the
        message names the row and column, and for word-vector files the line); a word-vector
        file has a line with too few or too many numbers, a field that is not a number, a word
        twice or not in UTF-8, a header that does not match its entries, or ends mid-entry
        (the message names the line, or a binary file's entry); ``dst`` is empty, ends in a
        path separator or is ``src``. Nothing is written at ``dst``.
    OSError
        ``src`` cannot be read or ``dst`` cannot be written (a missing folder; a folder, device,
        named pipe or socket at ``dst``; a full disk).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import rowquant as rq
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "E.npy"), np.ones((5000, 8), np.float16))
    >>> done = []
    >>> s = rq.quantize_file(os.path.join(folder, "E.npy"), os.path.join(folder, "E.safetensors"),
    ...                      chunk_rows=2000, progress=lambda rows, total: done.append(rows))
    >>> done, s.rows, s.dim, s.source_dtype
    ([2000, 4000, 5000], 5000, 8, 'float16')

    A GloVe file keeps its words:

    >>> with open(os.path.join(folder, "glove.txt"), "w", encoding="utf-8") as f:
    ...     _ = f.write("king 0.5 -1.25 2\\nqueen 0.25 2 -1.5\\n")
    >>> s = rq.quantize_file(os.path.join(folder, "glove.txt"),
    ...                      os.path.join(folder, "g.safetensors"))
    >>> s.rows, s.dim, s.source_dtype
    (2, 3, 'GloVe text')
    >>> rq.load(os.path.join(folder, "g.safetensors"))["queen"]
    array([ 0.2519685,  2.       , -1.496063 ], dtype=float32)
    """
    started = time.perf_counter()
    if os.path.exists(dst) and os.path.exists(src) and os.path.samefile(src, dst):
        raise ValueError(f"the output {os.fspath(dst)} is the input file; choose another path")
    checked_metadata = check_metadata(metadata)
    if workers is not None or rows_per_shard is not None or os.path.isdir(src):
        return _quantize_file_dask(src, dst, workers, rows_per_shard, tensor, chunk_rows,
                                   progress, threads, report, format, checked_metadata, bits,
                                   range_search, scale_dtype, scale_rounding, started)
    if not (isinstance(bits, int) and bits == 8):  # 4-bit and 2-bit rows
        _api.no_scale_options(scale_dtype, scale_rounding)
        return _quantize_file_nbit(src, dst, bits, range_search, tensor, chunk_rows, progress,
                                   report, format, checked_metadata, started)
    if range_search:
        raise ValueError("range_search=True applies to bits=4 or bits=2, not to 8-bit rows")
    scale_dtype, scale_rounding = _api.scale_options(scale_dtype, scale_rounding)
    scheme = SYMMETRIC_SCHEMES[scale_dtype]
    with open_source(src, tensor, format) as source:
        rows, dim = source.rows, source.dim
        keys = source.keys
        step = rows_per_chunk(chunk_rows, dim)
        header = _format.table_header(
            rows, dim, None if keys is None else keys.utf8.shape[0], checked_metadata,
            scheme=scheme,
        )
        scale_size = scheme.scale_dtype.itemsize
        scales_at, codes_at = len(header), len(header) + scale_size * rows
        codes = np.empty((min(step, rows), dim), dtype=np.uint8)
        scales = np.empty(min(step, rows), dtype=scheme.scale_dtype)
        errors = ErrorAccumulator(rows, dim) if report else None
        update, close = progress_callback(progress, rows, os.path.basename(os.fspath(src)))
        try:
            with _atomic.atomic_output(dst) as fd:
                _atomic.write_all(fd, header, 0)
                os.ftruncate(fd, codes_at + rows * dim)
                if keys is not None:
                    _format.write_keys(fd, codes_at + rows * dim, keys)
                for start in range(0, rows, step):
                    stop = min(rows, start + step)
                    count = stop - start
                    values, stored = source.rows_float32(start, stop)
                    if scale_dtype == "float32":
                        _api.quantize_checked(
                            values, codes[:count], scales[:count], threads,
                            original=stored, name=source.label, first_row=start,
                        )
                    else:
                        codes[:count], scales[:count] = _api.quantize_scales16(
                            values, scale_dtype, scale_rounding, original=stored,
                            name=source.label, first_row=start,
                        )
                    _atomic.write_all(
                        fd, _format.little_endian_scales(scales[:count]),
                        scales_at + scale_size * start,
                    )
                    _atomic.write_all(fd, codes[:count], codes_at + start * dim)
                    if errors is not None:
                        errors.update(start, values, codes[:count], scales[:count])
                    del values, stored
                    source.release(start, stop)
                    update(stop)
        finally:
            close()
        output_bytes = codes_at + rows * dim
        if keys is not None:
            output_bytes += keys.offsets.nbytes + keys.utf8.nbytes
        return QuantizeSummary(
            source=os.fspath(src),
            output=os.fspath(dst),
            tensor=source.tensor,
            rows=rows,
            dim=dim,
            source_dtype=source.dtype_name,
            source_bytes=source.nbytes,
            output_bytes=output_bytes,
            seconds=time.perf_counter() - started,
            report=errors.finish() if errors is not None else None,
            keys=keys is not None,
        )


def _quantize_file_dask(src, dst, workers: int | None, rows_per_shard: int | None,
                        tensor: str | None, chunk_rows: int | None, progress, threads: int | None,
                        report: bool, format: str | None, metadata: dict[str, str], bits: object,
                        range_search: object, scale_dtype: str, scale_rounding: str,
                        started: float) -> QuantizeSummary:
    """:func:`rowquant.quantize_file` of a folder or Zarr array, or with workers or shards:
    the blocks quantized by Dask (:func:`rowquant.dask.quantize_file_on_workers`)."""
    if format is not None:
        raise ValueError("format= (word-vector files) is read without workers= or shards")
    if isinstance(bits, int) and bits == 8:
        if range_search:
            raise ValueError("range_search=True applies to bits=4 or bits=2, not to 8-bit rows")
        scale_dtype, scale_rounding = _api.scale_options(scale_dtype, scale_rounding)
        options: dict[str, object] = {"scale_dtype": scale_dtype, "scale_rounding": scale_rounding}
    else:
        _api.no_scale_options(scale_dtype, scale_rounding)
        scheme_for_bits(bits)
        options = {"bits": bits, "range_search": range_search}
    try:
        from . import dask as rq_dask
    except ImportError as error:
        raise ImportError(f"quantize_file with workers=, shards or a folder needs Dask "
                          f"(pip install 'rowquant[dask]'): {error}") from None
    rows, dim, dtype, source_bytes, output_bytes, errors, output = \
        rq_dask.quantize_file_on_workers(
            src, dst, workers=workers, tensor=tensor, chunk_rows=chunk_rows,
            rows_per_shard=rows_per_shard, progress=progress, threads=threads, report=report,
            metadata=metadata, options=options)
    return QuantizeSummary(source=os.fspath(src), output=output, tensor=tensor, rows=rows,
                           dim=dim, source_dtype=dtype, source_bytes=source_bytes,
                           output_bytes=output_bytes, seconds=time.perf_counter() - started,
                           report=errors, keys=False)


def _quantize_file_nbit(src, dst, bits: object, range_search: object, tensor: str | None,
                       chunk_rows: int | None, progress, report: bool, format: str | None,
                       metadata: dict[str, str], started: float):
    """:func:`rowquant.quantize_file` with ``bits=4`` or ``2``: the same streaming, chunk by
    chunk, into the N-bit file layout (byte for byte what ``rq.quantize(table, bits=bits,
    range_search=range_search, keys=words, metadata=metadata).save(dst)`` writes)."""
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
        header = _nbit_format.nbit_header(rows, width, dim, scheme,
                             None if keys is None else keys.utf8.shape[0], metadata)
        rows_at, row_bytes = len(header), width + 4
        end = rows_at + rows * row_bytes
        errors = ErrorAccumulator(rows, dim) if report else None
        update, close = progress_callback(progress, rows, os.path.basename(os.fspath(src)))
        try:
            with _atomic.atomic_output(dst) as fd:
                _atomic.write_all(fd, header, 0)
                os.ftruncate(fd, end)
                if keys is not None:
                    _format.write_keys(fd, end, keys)
                for start in range(0, rows, step):
                    stop = min(rows, start + step)
                    values, stored = source.rows_float32(start, stop)
                    codes, scales, biases = quantize_nbit(values, scheme.bits, bool(range_search),
                                                          stored, source.label, start)
                    _atomic.write_all(fd, fbgemm_nbit_rows(codes, scales, biases),
                                      rows_at + start * row_bytes)
                    if errors is not None:
                        dequantized = reference.dequantize_nbit(codes, scales, biases,
                                                                scheme.bits, dim)
                        errors.update(start, values, codes, scales.astype(np.float32),
                                      dequantized)
                    del values, stored
                    source.release(start, stop)
                    update(stop)
        finally:
            close()
        output_bytes = end
        if keys is not None:
            output_bytes += keys.offsets.nbytes + keys.utf8.nbytes
        return QuantizeSummary(
            source=os.fspath(src), output=os.fspath(dst), tensor=source.tensor, rows=rows,
            dim=dim, source_dtype=source.dtype_name, source_bytes=source.nbytes,
            output_bytes=output_bytes, seconds=time.perf_counter() - started,
            report=errors.finish() if errors is not None else None, keys=keys is not None,
        )


def read_vectors(path, *, format: str | None = None) -> tuple[NDArray[np.float32], list[str]]:
    """Read a word-vector file into memory: the vectors and their words.

    Parameters
    ----------
    path : str or os.PathLike
        A GloVe, word2vec or fastText text file, or a word2vec binary file.
    format : {"glove", "word2vec", "word2vec-binary"}, optional
        The file's format; by default it is recognised by the content:

        ``"glove"``
            No header; a line per word: the word, then its ``D`` values, separated by spaces
            (Stanford's ``glove.6B.50d.txt``).
        ``"word2vec"``
            A header line ``N D`` (words and values per word), then ``N`` lines as in GloVe:
            the text files of word2vec and gensim, and fastText's ``.vec`` files.
        ``"word2vec-binary"``
            A header line ``N D``, then per word its UTF-8 bytes, a space, ``D``
            little-endian float32 values and a newline (word2vec's and gensim's ``.bin``;
            files without the newlines are read too).

        A first line of two integers is taken for a word2vec header: a GloVe file whose first
        word is a number with a single value needs ``format="glove"``.

    Returns
    -------
    vectors : ndarray of float32, shape (N, D)
        Text values are parsed as float64 and rounded once to float32, as
        ``np.loadtxt(dtype=np.float32)`` and gensim's ``load_word2vec_format`` do (the same
        bits); NaN and inf are kept.
    words : list of str
        The words, in file order.

    Notes
    -----
    Text lines: values are separated by spaces or tabs; trailing blanks and ``\\r`` (CRLF
    files), blank lines and a UTF-8 byte-order mark are ignored. The vector is the last ``D``
    fields of a line and the word everything before them, so a word may hold spaces (GloVe
    840B has some); but a word whose last field is a number makes the line one with too many
    values. In binary files, a word ends at the first space followed by ``4 D`` bytes and a
    newline (or the end of the file), so words with spaces are read whole; in files whose
    entries have no newline, at the first space (as gensim reads them).

    Raises
    ------
    ValueError
        Naming the file and the line (1-based, as an editor counts; a binary file's entry and
        byte offset): a line with too few or too many values (a ragged row), a field that is
        not a number, a word given twice (both lines named) or not valid UTF-8, a header whose
        count or width does not match the entries, a binary file that ends mid-entry; or the
        file is in none of these formats.
    OSError
        The file cannot be read.

    See Also
    --------
    quantize_file : the same files quantized straight to a rowquant file, in bounded memory.
    from_gensim : a table from gensim's ``KeyedVectors``.

    Examples
    --------
    >>> import os, tempfile
    >>> import rowquant as rq
    >>> path = os.path.join(tempfile.mkdtemp(), "vectors.vec")
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("2 3\\nköln 0.5 -1.25 2\\nnew york 0.1 2 -1\\n")
    >>> vectors, words = rq.read_vectors(path)
    >>> words
    ['köln', 'new york']
    >>> vectors
    array([[ 0.5 , -1.25,  2.  ],
           [ 0.1 ,  2.  , -1.  ]], dtype=float32)
    >>> qe = rq.quantize(vectors, keys=words)
    >>> qe.index("new york")
    1
    """
    with open_source(path, format=format, finite=False) as source:
        if source.keys is None:
            raise ValueError(
                f"{os.fspath(path)}: a {source.dtype_name} array holds no words; read it with "
                "numpy (or quantize it with rowquant.quantize_file)"
            )
        vectors = np.empty((source.rows, source.dim), dtype=np.float32)
        step = rows_per_chunk(None, source.dim)
        for start in range(0, source.rows, step):
            stop = min(source.rows, start + step)
            vectors[start:stop] = source.rows_float32(start, stop)[0]
            source.release(start, stop)
        return vectors, source.keys.tolist()
