"""How far a quantized table is from the float table it came from, measured chunk by chunk so
that tables larger than memory (memory-mapped files) can be checked.

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> E = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
>>> report = rq.error_report(E, rq.quantize(E))
>>> bool(report.max_abs_error <= report.scales.max() / 2)
True
>>> bool(report.cosine_min > 0.999), bool(report.snr_db > 35)
(True, True)
"""

from __future__ import annotations

import os

import numpy as np

from . import _checks, io
from ._chunks import release_pages, rows_per_chunk
from ._error_report import ErrorAccumulator, ErrorReport
from ._sources import open_source
from .table import QuantizedEmbedding

__all__ = ["ErrorAccumulator", "ErrorReport", "error_report", "compare_schemes", "format_schemes",
           "SCHEME_CHOICES"]


def error_report(original, table, *, tensor=None, chunk_rows=None, worst: int = 10,
                 format: str | None = None) -> ErrorReport:
    """Measure how far ``table`` is from the float table it was quantized from.

    Parameters
    ----------
    original : array_like (N, D), or path of a ``.npy`` / ``.safetensors`` / word-vector file
        The float table. Files are memory-mapped and read chunk by chunk; word-vector files
        (GloVe, word2vec and fastText text, word2vec binary) are parsed chunk by chunk, as
        :func:`rowquant.quantize_file` reads them.
    table : QuantizedEmbedding, or path of a rowquant file (memory-mapped)
    tensor : str, optional
        The tensor of ``original`` when it is a safetensors file with several.
    chunk_rows : int, optional
        Rows per chunk (default: about 32 MB of float32).
    worst : int, default 10
        How many of the worst rows to list.
    format : {"glove", "word2vec", "word2vec-binary"}, optional
        The format of a word-vector ``original``, when its content does not tell it.

    Returns
    -------
    ErrorReport

    Raises
    ------
    ValueError
        The two tables differ in shape, or a file is unreadable (see :func:`rowquant.load`).

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> E = np.array([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0]], np.float32)
    >>> report = rq.error_report(E, rq.quantize(E), worst=1)
    >>> report.rows, report.dim, float(report.row_cosine[1])   # a zero row comes back exactly
    (2, 3, 1.0)
    >>> report.to_dict()["worst_rows"][0]["row"]
    0

    4-bit and 2-bit tables are measured the same way (``scales`` are then their float16 scales):

    >>> rq.error_report(E, rq.quantize(E, bits=2)).max_abs_error  # 0.25 at 1.5 steps -> 2
    0.25
    """
    if isinstance(table, (str, os.PathLike)):
        table = io.load_table(table)
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"table must be a QuantizedEmbedding or a path, got {type(table).__name__}")
    if isinstance(original, (str, os.PathLike)):
        source = open_source(original, tensor, format)
        shape = (source.rows, source.dim)
        read = source.rows_float32
        release, close = source.release, source.close
    else:
        values = _checks.float_matrix(original, "original")
        shape = values.shape
        read = lambda start, stop: (values[start:stop], values[start:stop])  # noqa: E731
        release, close = (lambda start, stop: None), (lambda: None)
    try:
        if shape != table.shape:
            raise ValueError(
                f"original has shape {shape} but the quantized table has {table.shape}"
            )
        rows, dim = shape
        step = rows_per_chunk(chunk_rows, dim)
        accumulator = ErrorAccumulator(rows, dim, worst)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            chunk, _ = read(start, stop)
            if table.scheme.kind == "affine":  # 4-bit and 2-bit rows: dequantized by the table
                accumulator.update(start, chunk, table.codes[start:stop],
                                   table.scales[start:stop].astype(np.float32),
                                   table.take(np.arange(start, stop)))
            else:
                accumulator.update(start, chunk, table.codes[start:stop], table.scales[start:stop])
            release(start, stop)
            release_pages(table.codes[start:stop])  # when the table is memory-mapped
        return accumulator.finish(table.keys)
    finally:
        close()


#: The schemes :func:`compare_schemes` measures by default: a name and the arguments of
#: :func:`rowquant.quantize` / :func:`rowquant.quantize_file` that make it.
SCHEME_CHOICES: dict[str, dict] = {
    "8-bit": {},
    "8-bit, bfloat16 scale": {"scale_dtype": "bfloat16"},
    "8-bit, float16 scale": {"scale_dtype": "float16"},
    "4-bit": {"bits": 4},
    "4-bit range search": {"bits": 4, "range_search": True},
    "2-bit": {"bits": 2},
}


def compare_schemes(original, *, tensor=None, schemes=None, format=None, progress=None):
    """Quantize ``original`` under each scheme and measure each table's error against it.

    Each table is written by :func:`rowquant.quantize_file` to a temporary folder (memory
    stays bounded by a chunk, as there) and measured by :func:`error_report`, then deleted.

    Parameters
    ----------
    original : array_like (N, D), or path of a float table (see :func:`error_report`)
    tensor, format : optional
        As for :func:`error_report`.
    schemes : dict of str to dict, optional
        Names and quantize arguments; default :data:`SCHEME_CHOICES`.
    progress : callable, optional
        Called with each scheme's name before it is measured.

    Returns
    -------
    list of dict
        Per scheme: ``scheme`` (the name given), ``name`` (the scheme a file records),
        ``bytes`` (the file), ``bytes_per_row`` (codes and scales, without the file header),
        and the :class:`ErrorReport`'s ``relative_error``, ``max_abs_error``, ``snr_db``,
        ``cosine_min`` and ``cosine_median``.

    Examples
    --------
    >>> import numpy as np
    >>> from rowquant.report import compare_schemes
    >>> E = np.random.default_rng(0).standard_normal((500, 32)).astype(np.float32)
    >>> rows = compare_schemes(E, schemes={"8-bit": {}, "4-bit": {"bits": 4}})
    >>> [(row["scheme"], row["bytes_per_row"]) for row in rows]
    [('8-bit', 36), ('4-bit', 20)]
    >>> rows[0]["relative_error"] < rows[1]["relative_error"]
    True
    """
    import tempfile

    chosen = SCHEME_CHOICES if schemes is None else schemes
    source = original
    results = []
    with tempfile.TemporaryDirectory(prefix="rowquant-schemes-") as folder:
        if not isinstance(original, (str, os.PathLike)):
            source = os.path.join(folder, "original.npy")
            np.save(source, _checks.float_matrix(original, "original"))
        for label, arguments in chosen.items():
            if progress is not None:
                progress(label)
            path = os.path.join(folder, "table.safetensors")
            io.quantize_file(source, path, tensor=tensor, format=format, **arguments)
            table = io.load_table(path)
            report = error_report(source, table, tensor=tensor, format=format)
            rows = max(1, table.shape[0])
            row_bytes = (table.codes.nbytes + table.scales.nbytes
                         + (0 if table.biases is None else table.biases.nbytes)) // rows
            results.append({
                "scheme": label,
                "name": table.scheme.name,
                "bytes": os.path.getsize(path),
                "bytes_per_row": int(row_bytes),
                "relative_error": report.relative_error,
                "max_abs_error": report.max_abs_error,
                "snr_db": report.snr_db,
                "cosine_min": report.cosine_min,
                "cosine_median": report.cosine_median,
            })
            del table
            os.remove(path)
    return results


def format_schemes(results) -> str:
    """:func:`compare_schemes`' results as a text table."""
    lines = [f"{'scheme':<22} {'bytes/row':>9} {'rel. error':>10} {'max |error|':>11} "
             f"{'SNR dB':>7} {'cos min':>8} {'cos median':>10}"]
    for row in results:
        lines.append(
            f"{row['scheme']:<22} {row['bytes_per_row']:>9} {row['relative_error']:>10.4g} "
            f"{row['max_abs_error']:>11.4g} {row['snr_db']:>7.1f} {row['cosine_min']:>8.4f} "
            f"{row['cosine_median']:>10.6f}"
        )
    return "\n".join(lines)
