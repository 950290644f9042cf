"""Tables beyond one machine: quantize a Dask array block by block, on threads, processes or a
cluster, into sharded files or Zarr (``pip install 'rowquant[dask]'``).

Per-row quantization needs nothing but the row, so a Dask array chunked along its rows is
quantized one block at a time, each block where Dask schedules it. A block is quantized once,
into one uint8 array whose lines are the rows' bytes (``[codes | scale bytes]`` for 8-bit
rows, FBGEMM's fused ``[codes | float16 scale | float16 bias]`` for 4-bit and 2-bit ones), and
:attr:`DaskQuantized.codes` and :attr:`DaskQuantized.scales` are slices of that one array:
computing both computes each block once.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> import dask.array as da
>>> import rowquant as rq
>>> import rowquant.dask
>>> E = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
>>> x = da.from_array(E, chunks=(250, 16))
>>> q = rowquant.dask.quantize(x)
>>> q
DaskQuantized(rows=1000, dim=16, 4 blocks, rowwise-symmetric-u8)
>>> np.array_equal(q.codes.compute(), rq.quantize(E).codes)
True
>>> folder = tempfile.mkdtemp()
>>> written = q.to_safetensors_shards(folder, scheduler="sync")
>>> written.shards, written.rows
(4, 1000)
>>> table = rq.load(folder)
>>> np.array_equal(table.bag([[3, 999, 250]]), rq.quantize(E).bag([[3, 999, 250]]))
True
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import dask
import dask.array as da
from dask.callbacks import Callback
import numpy as np

from . import _checks, _shards
from ._error_report import ErrorAccumulator, ErrorReport
from ._keys import check_metadata
from ._nbit import NBitEmbedding
from ._quantize import quantize as quantize_table
from .table import QuantizedEmbedding

__all__ = ["DaskQuantized", "ShardsWritten", "error_report", "from_files", "quantize"]


class RechunkWarning(UserWarning):
    """The array was chunked across its columns and is rechunked into whole rows."""


def _quantize_options(bits: int, scale_dtype: str, scale_rounding: str,
                      range_search: bool) -> dict[str, Any]:
    if bits == 8:
        return {"scale_dtype": scale_dtype, "scale_rounding": scale_rounding}
    return {"bits": bits, "range_search": range_search}


def _table(values: np.ndarray, options: Mapping[str, Any]) -> QuantizedEmbedding:
    """``values`` quantized as :func:`rowquant.quantize` does, on this task's thread (Dask
    runs the tasks side by side)."""
    return quantize_table(values, threads=1, **options)


def _row_bytes(table: QuantizedEmbedding) -> np.ndarray:
    """``table``'s rows as one uint8 array, a line per row (see the module's notes)."""
    arrays = _shards.row_arrays(table)
    if len(arrays) == 1:
        return np.ascontiguousarray(arrays[0])
    codes, scales = arrays
    scale_bytes = np.ascontiguousarray(scales, dtype=scales.dtype.newbyteorder("<"))
    return np.concatenate([codes, scale_bytes.view(np.uint8).reshape(len(codes), -1)], axis=1)


def _from_row_bytes(rows: np.ndarray, like: QuantizedEmbedding) -> QuantizedEmbedding:
    """The table whose rows are ``rows`` (as :func:`_row_bytes` lays them out), of ``like``'s
    scheme and width."""
    if isinstance(like, NBitEmbedding):
        return _shards.table_of([np.ascontiguousarray(rows)], like)
    dim = like.shape[1]
    scales = np.ascontiguousarray(rows[:, dim:]).view(
        like.scales.dtype.newbyteorder("<")).reshape(-1).astype(like.scales.dtype)
    return _shards.table_of([np.ascontiguousarray(rows[:, :dim]), scales], like)


def _quantize_block(block: np.ndarray, options: Mapping[str, Any],
                    block_info: Any = None) -> np.ndarray:
    """One block's rows quantized, as one uint8 array (the task each block runs once)."""
    first = block_info[0]["array-location"][0][0] if block_info else 0
    return _row_bytes(_checked_table(block, options, first))


def _checked_table(block: np.ndarray, options: Mapping[str, Any],
                   first: int) -> QuantizedEmbedding:
    """:func:`_table` of rows ``first ..`` of x: NaN or inf named by its row in x."""
    with np.errstate(over="ignore"):  # float64 past float32's range: named as overflowing
        finite = np.isfinite(block.astype(np.float32, copy=False))
    if not finite.all():
        raise _checks.nonfinite_error(block, finite, int(np.argmin(finite)), "x", first)
    return _table(block, options)


def _write_shard(rows: np.ndarray, original: np.ndarray | None, folder: str, name: str,
                 like: QuantizedEmbedding, metadata: dict[str, str]) -> dict[str, Any]:
    """Write one shard atomically (on the worker that holds its rows); its index entry, and
    its rows' part of the error report when ``original`` is given."""
    table = _from_row_bytes(rows, like)
    path = os.path.join(folder, name)
    table.save(path, metadata=metadata)
    entry: dict[str, Any] = {"file": name, "rows": len(table), "bytes": os.path.getsize(path)}
    if original is not None:
        entry["errors"] = _block_errors(np.asarray(original), table)
    return entry


def _block_errors(original: np.ndarray, table: QuantizedEmbedding) -> ErrorAccumulator:
    errors = ErrorAccumulator(len(table), table.shape[1])
    values = np.asarray(original, dtype=np.float32)
    errors.update(0, values, table.codes, table.scale_values(), table.dequantize())
    return errors


def _blocks_errors(block: np.ndarray, options: Mapping[str, Any], first: int) -> ErrorAccumulator:
    return _block_errors(block, _checked_table(block, options, first))


def _whole_rows(x: Any) -> da.Array:
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (rows, dim), got shape {x.shape}")
    if x.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"x must hold float16, float32 or float64, got dtype {x.dtype}")
    if any(np.isnan(c) for c in x.chunks[0]):
        raise ValueError("x has unknown chunk sizes; call x.compute_chunk_sizes() first")
    if len(x.chunks[1]) > 1:
        warnings.warn(
            f"x is chunked across its columns ({len(x.chunks[1])} column blocks); rechunked "
            "into whole rows, which moves data between workers: chunk rows only "
            "(chunks=(rows, -1)) to avoid it", RechunkWarning, stacklevel=3)
        x = x.rechunk({1: -1})
    return x


def quantize(x: Any, *, bits: int = 8, scale_dtype: str = "float32",
             scale_rounding: str = "nearest", range_search: bool = False) -> DaskQuantized:
    """Quantize the Dask array ``x`` (``(N, D)`` of float16, float32 or float64) lazily, block
    by block, as :func:`rowquant.quantize` would quantize the whole of it.

    Parameters
    ----------
    x : dask.array.Array
        Chunked along its rows (``chunks=(rows, -1)``); an array chunked across its columns
        is rechunked into whole rows, with a :class:`RechunkWarning`.
    bits, scale_dtype, scale_rounding, range_search
        As for :func:`rowquant.quantize`.

    Returns
    -------
    DaskQuantized
        Lazy: nothing is computed until its arrays are, or it is written.

    Raises
    ------
    TypeError
        ``x`` is not a Dask array of floats.
    ValueError
        ``x`` is not 2-D, its chunk sizes are unknown, or an option is invalid. NaN or inf
        in ``x`` raises when the block holding it is computed, naming the row and column
        within the block.
    """
    x = _whole_rows(x)
    options = _quantize_options(bits, scale_dtype, scale_rounding, range_search)
    like = _table(np.zeros((1, x.shape[1]), np.float32), options)  # checks the options
    width = _row_bytes(like).shape[1]
    rows = x.map_blocks(_quantize_block, options, dtype=np.uint8,
                        chunks=(x.chunks[0], (width,)), meta=np.empty((0, 0), np.uint8),
                        name="rowquant-quantize")
    return DaskQuantized(x, rows, like, options)


@dataclass(frozen=True)
class ShardsWritten:
    """What :meth:`DaskQuantized.to_safetensors_shards` wrote: the index's path, the number of
    shards, rows and bytes, the seconds taken, and the error report if asked for."""

    index: str
    shards: int
    rows: int
    dim: int
    bytes: int
    seconds: float
    report: ErrorReport | None = None


class DaskQuantized:
    """A lazily quantized Dask array (:func:`quantize`): :attr:`rows` (the rows' bytes, one
    uint8 line per row), :attr:`codes` and :attr:`scales` (and :attr:`biases` for 4-bit and
    2-bit rows) sliced from it, :meth:`compute` to one table in memory, and
    :meth:`to_safetensors_shards` and :meth:`to_zarr` to write it where it is computed."""

    def __init__(self, x: da.Array, rows: da.Array, like: QuantizedEmbedding,
                 options: Mapping[str, Any]):
        self.x = x
        self.rows = rows
        self._like = like
        self._options = dict(options)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.x.shape[0]), int(self.x.shape[1]))

    @property
    def scheme(self) -> Any:
        return self._like.scheme

    def __repr__(self) -> str:
        return (f"DaskQuantized(rows={self.shape[0]}, dim={self.shape[1]}, "
                f"{self.rows.numblocks[0]} blocks, {self.scheme.name})")

    def _slice(self, start: int, stop: int, dtype: Any, shape: tuple[int, ...] | None) -> da.Array:
        part = self.rows[:, start:stop]
        if dtype == np.uint8:
            return part

        def view(block: np.ndarray) -> np.ndarray:
            little = np.ascontiguousarray(block).view(np.dtype(dtype).newbyteorder("<"))
            return little.reshape(-1).astype(dtype)

        return part.map_blocks(view, dtype=dtype, drop_axis=1, meta=np.empty((0,), dtype))

    @property
    def codes(self) -> da.Array:
        """The codes, uint8 ``(N, D)`` (``(N, P)`` packed for 4-bit and 2-bit rows)."""
        return self._slice(0, self._like.codes.shape[1], np.uint8, None)

    @property
    def scales(self) -> da.Array:
        """The scales, one per row, of the table's scale dtype (as ``qe.scales``)."""
        start = self._like.codes.shape[1]
        dtype = self._like.scales.dtype
        return self._slice(start, start + dtype.itemsize, dtype, None)

    @property
    def biases(self) -> da.Array:
        """The biases of 4-bit and 2-bit rows (float16, one per row)."""
        if not isinstance(self._like, NBitEmbedding):
            raise AttributeError("8-bit rows have no biases")
        start = self._like.codes.shape[1] + 2
        return self._slice(start, start + 2, np.float16, None)

    def compute(self, **kwargs: Any) -> QuantizedEmbedding:
        """The whole table in memory, as :func:`rowquant.quantize` gives it (``kwargs`` go to
        ``dask.compute``)."""
        (rows,) = dask.compute(self.rows, **kwargs)
        return _from_row_bytes(rows, self._like)

    def _aligned(self, rows_per_shard: int | None) -> tuple[da.Array, da.Array]:
        if rows_per_shard is None:
            return self.rows, self.x
        if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, (int, np.integer)) \
                or rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
        return (self.rows.rechunk({0: int(rows_per_shard)}),
                self.x.rechunk({0: int(rows_per_shard)}))

    def to_safetensors_shards(
        self, folder: Any, rows_per_shard: int | None = None, *, prefix: str = "table",
        metadata: Mapping[str, str] | None = None, report: bool = False, progress: Any = None,
        **compute: Any,
    ) -> ShardsWritten:
        """Write the table as shards, one rowquant file per block of rows, and their index,
        each shard by the worker that computed it (see :mod:`rowquant._shards`).

        Each shard is byte for byte what ``rq.quantize(x[a:b]).save(path)`` writes for its
        rows, and is written atomically; the index is written last, only once every shard is
        on disk, so that a failed run leaves no index and :func:`rowquant.load` of the folder
        fails rather than opening part of the table. A task lost with its worker is run again
        by Dask and rewrites the same bytes.

        Parameters
        ----------
        folder : str or os.PathLike
            Created if missing. A table of the same ``prefix`` already there is replaced: its
            index is deleted first (a failed run leaves no table rather than a mix), and once
            the new index is written, shards of the old one that the new does not name.
        rows_per_shard : int, optional
            Rows per shard (the last may have fewer); default one shard per block of ``x``. A
            worker holds a shard's quantized rows while it writes them (68 bytes a row at
            D = 64), so this bounds its memory with the blocks' size.
        prefix : str, default "table"
            Shards are ``{prefix}-00001-of-00004.safetensors``, the index
            ``{prefix}.safetensors.index.json``.
        metadata : dict of str to str, optional
            Written into every shard, as :func:`rowquant.save` takes it.
        report : bool, default False
            Also measure the error (:class:`rowquant.ErrorReport`) in the same tasks.
        progress : bool or callable, optional
            ``True``: a progress bar on stderr; a callable gets ``(rows_done, rows_total)``
            as shards complete.
        **compute
            Passed to ``dask.compute`` (``scheduler=``, ...). With a ``dask.distributed``
            client active, the tasks run on its cluster.

        Returns
        -------
        ShardsWritten
        """
        started = time.perf_counter()
        checked = check_metadata(metadata)
        if not isinstance(prefix, str) or not prefix or os.sep in prefix:
            raise ValueError(f"prefix must be a file name prefix, got {prefix!r}")
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        # a table already here stops loading before any of its shards is replaced, so that a
        # run that fails midway cannot leave its index naming a mix of old and new shards
        _shards.remove_index(folder, prefix)
        rows, x = self._aligned(rows_per_shard)
        row_blocks = rows.to_delayed().ravel()
        x_blocks = x.to_delayed().ravel() if report else [None] * len(row_blocks)
        count = len(row_blocks)
        write = dask.delayed(_write_shard, pure=True)
        tasks = [
            write(block, original, folder, _shards.shard_name(prefix, number, count), self._like,
                  checked, dask_key_name=f"rowquant-shard-{prefix}-{number}-{rows.name}")
            for number, (block, original) in enumerate(zip(row_blocks, x_blocks))
        ]
        entries = _run(tasks, [int(c) for c in rows.chunks[0]], progress, folder, compute)
        errors = None
        if report:
            errors = ErrorAccumulator(self.shape[0], self.shape[1])
            start = 0
            for entry in entries:
                errors.absorb(start, entry.pop("errors"))
                start += entry["rows"]
        index = _shards.write_index(folder, prefix, entries, self.shape[1], self.scheme.name)
        _shards.remove_stale_shards(folder, prefix, [entry["file"] for entry in entries])
        return ShardsWritten(
            index=index, shards=count, rows=self.shape[0], dim=self.shape[1],
            bytes=sum(entry["bytes"] for entry in entries),
            seconds=time.perf_counter() - started,
            report=errors.finish() if errors is not None else None)

    def to_zarr(self, store: Any, *, overwrite: bool = False, **compute: Any) -> Any:
        """Write ``codes`` and ``scales`` (and ``biases``) as arrays of one Zarr group at
        ``store`` (a path or a Zarr store), each Zarr chunk one block of rows, written by the
        task that computed it; the group's attributes record the scheme and width. Returns the
        group. Needs ``zarr``.

        ``x`` is rechunked to equal blocks of rows first if its blocks differ in size (Zarr's
        chunks are regular), so that no two tasks write one chunk.
        """
        import zarr

        rows = self.rows
        size = int(rows.chunks[0][0])
        if any(int(c) != size for c in rows.chunks[0][:-1]) or int(rows.chunks[0][-1]) > size:
            rows = rows.rechunk({0: size})
        quantized = DaskQuantized(self.x, rows, self._like, self._options)
        group = zarr.open_group(store, mode="w" if overwrite else "w-")
        group.attrs.update({"format": "rowquant", "scheme": self.scheme.name,
                            "dim": self.shape[1], "rows": self.shape[0]})
        names = ["codes", "scales"] + (["biases"] if isinstance(self._like, NBitEmbedding)
                                       else [])
        sources = [getattr(quantized, name) for name in names]
        targets = [
            group.create_array(name, shape=source.shape, dtype=source.dtype,
                               chunks=(size,) + tuple(source.shape[1:]))
            for name, source in zip(names, sources)
        ]
        da.store(sources, cast(Any, targets), lock=False, **compute)
        return group


def _client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


class _ShardProgress(Callback):  # type: ignore[misc]
    """Calls ``update(rows_done)`` as the local scheduler finishes each shard's task."""

    def __init__(self, rows_of_key: dict[Any, int], update: Any):
        super().__init__()
        self.rows_of_key, self.update, self.done = rows_of_key, update, 0

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
        if key in self.rows_of_key:
            self.done += self.rows_of_key[key]
            self.update(self.done)


def _run(tasks: list[Any], sizes: list[int], progress: Any, what: str,
         compute: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Compute the shard tasks, reporting progress as they finish; their entries in order."""
    from ._progress import progress_callback

    update, close = progress_callback(progress, sum(sizes), os.path.basename(what))
    client = _client() if not compute.get("scheduler") else None
    try:
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            position = {future.key: number for number, future in enumerate(futures)}
            done = 0
            try:
                for future in as_completed(futures):
                    future.result()  # raises the task's error, naming it
                    done += sizes[position[future.key]]
                    update(done)
            except BaseException:
                client.cancel(futures)
                raise
            return list(client.gather(futures))
        if progress is None or progress is False:
            return list(dask.compute(*tasks, **compute))
        with _ShardProgress({task.key: size for task, size in zip(tasks, sizes)}, update):
            return list(dask.compute(*tasks, **compute))
    finally:
        close()


def error_report(x: Any, *, bits: int = 8, scale_dtype: str = "float32",
                 scale_rounding: str = "nearest", range_search: bool = False, worst: int = 10,
                 **compute: Any) -> ErrorReport:
    """The error of quantizing the Dask array ``x`` (:class:`rowquant.ErrorReport`), computed
    where its blocks are: each task quantizes its block and measures it, and only the per-row
    measures (16 bytes a row) and three sums per block come back. Options as for
    :func:`quantize`; ``compute`` goes to ``dask.compute`` (a ``distributed`` client, if
    active, runs it on its cluster).

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import rowquant as rq
    >>> import rowquant.dask
    >>> E = np.random.default_rng(0).standard_normal((1000, 16)).astype(np.float32)
    >>> report = rowquant.dask.error_report(da.from_array(E, chunks=(300, 16)), scheduler="sync")
    >>> single = rq.error_report(E, rq.quantize(E))
    >>> np.array_equal(report.row_cosine, single.row_cosine)
    True
    >>> bool(np.isclose(report.relative_error, single.relative_error, rtol=1e-12))
    True
    """
    x = _whole_rows(x)
    options = _quantize_options(bits, scale_dtype, scale_rounding, range_search)
    _table(np.zeros((1, x.shape[1]), np.float32), options)
    measure = dask.delayed(_blocks_errors, pure=True)
    firsts = np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]]).tolist()
    parts = dask.compute(*[measure(block, options, first)
                           for block, first in zip(x.to_delayed().ravel(), firsts)], **compute)
    errors = ErrorAccumulator(int(x.shape[0]), int(x.shape[1]), worst)
    start = 0
    for part in parts:
        errors.absorb(start, part)
        start += part.rows
    return errors.finish()


def from_files(path: Any, *, tensor: str | None = None, chunk_rows: int | None = None) -> da.Array:
    """A Dask array of the float table in ``path``: a ``.npy`` or safetensors file, a folder of
    them (their rows one after the other, files in name order; each of one 2-D float tensor,
    or of the tensor named ``tensor``, all of one width), or a Zarr array. Blocks of
    ``chunk_rows`` rows (default about 32 MB of float32), each read by the task that needs it
    (the files are memory-mapped there), so that workers read their own rows.
    """
    from ._chunks import rows_per_chunk
    from ._sources import open_source

    path = os.fspath(path)
    if _is_zarr(path):
        import zarr

        array = zarr.open_array(path, mode="r")
        x = da.from_zarr(array)
        if chunk_rows is not None:
            x = x.rechunk({0: int(chunk_rows), 1: -1})
        return x
    if os.path.isdir(path):
        files = sorted(name for name in os.listdir(path)
                       if name.endswith((".npy", ".safetensors")) and not name.startswith("."))
        if any(name.endswith(_shards.INDEX_SUFFIX) for name in os.listdir(path)):
            raise ValueError(f"{path} holds a rowquant sharded table, already quantized")
        if not files:
            raise ValueError(f"{path} holds no .npy or .safetensors files")
        paths = [os.path.join(path, name) for name in files]
    else:
        paths = [path]
    blocks = []
    dim = None
    for file in paths:
        with open_source(file, tensor, None) as source:
            if source.keys is not None:
                raise ValueError(f"{file}: word-vector files are read by rowquant.quantize_file "
                                 "without workers")
            rows, width = source.rows, source.dim
        if dim is None:
            dim = width
        elif width != dim:
            raise ValueError(f"{file} has rows of {width} values, the files before it {dim}")
        step = rows_per_chunk(chunk_rows, width)
        read = dask.delayed(_read_rows, pure=True)
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            blocks.append(da.from_delayed(read(file, tensor, start, stop),
                                          shape=(stop - start, width), dtype=np.float32))
    return da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]


def _read_rows(path: str, tensor: str | None, start: int, stop: int) -> np.ndarray:
    from ._sources import open_source

    with open_source(path, tensor, None) as source:
        values, _ = source.rows_float32(start, stop)
        return np.array(values, dtype=np.float32, copy=True)


def _is_zarr(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, marker)) for marker in ("zarr.json", ".zarray"))


def _one_file_layout(like: QuantizedEmbedding, rows: int,
                     metadata: dict[str, str]) -> tuple[bytes, int, Any]:
    """The header, the file's size and a writer ``write(fd, start, table)`` of a table's
    single file (as :func:`rowquant.quantize_file` lays it out), blocks written as they come."""
    from . import _atomic, _format, _nbit_format

    dim = like.shape[1]
    if isinstance(like, NBitEmbedding):
        width = like.codes.shape[1]
        header = _nbit_format.nbit_header(rows, width, dim, like.scheme, None, metadata)

        def write_rows(fd: int, start: int, table: QuantizedEmbedding) -> None:
            _atomic.write_all(fd, _shards.row_arrays(table)[0], len(header) + start * (width + 4))

        return header, len(header) + rows * (width + 4), write_rows
    header = _format.table_header(rows, dim, None, metadata, scheme=like.scheme)
    size = like.scales.dtype.itemsize
    codes_at = len(header) + size * rows

    def write(fd: int, start: int, table: QuantizedEmbedding) -> None:
        _atomic.write_all(fd, _format.little_endian_scales(table.scales), len(header) + size * start)
        _atomic.write_all(fd, np.ascontiguousarray(table.codes), codes_at + start * dim)

    return header, codes_at + rows * dim, write


def _to_one_file(q: DaskQuantized, dst: Any, metadata: dict[str, str], report: bool,
                 progress: Any, window: int, compute: Mapping[str, Any]) -> tuple[int, Any]:
    """Write ``q`` to the single file ``dst`` atomically: blocks computed where Dask runs them
    (at most ``window`` at a time held), written by this process in any order as they come.
    Returns the file's size and the error report (or None)."""
    from . import _atomic
    from ._progress import progress_callback

    rows_total = q.shape[0]
    header, end, write = _one_file_layout(q._like, rows_total, metadata)
    starts = np.concatenate([[0], np.cumsum(q.rows.chunks[0])[:-1]]).astype(int).tolist()
    row_blocks = q.rows.to_delayed().ravel()
    x_blocks = q.x.to_delayed().ravel()
    errors = ErrorAccumulator(rows_total, q.shape[1]) if report else None
    measure = dask.delayed(_block_errors_of_rows, pure=True)
    update, close = progress_callback(progress, rows_total, os.path.basename(os.fspath(dst)))
    client = _client() if not compute.get("scheduler") else None
    done = 0
    try:
        with _atomic.atomic_output(dst) as fd:
            _atomic.write_all(fd, header, 0)
            os.ftruncate(fd, end)
            for first in range(0, len(row_blocks), window):
                numbers = range(first, min(len(row_blocks), first + window))
                tasks = [row_blocks[n] if errors is None else
                         dask.delayed(tuple)([row_blocks[n], measure(row_blocks[n], x_blocks[n],
                                                                     q._like)])
                         for n in numbers]
                if client is not None:
                    results = client.gather(client.compute(tasks))
                else:
                    results = dask.compute(*tasks, **compute)
                for n, result in zip(numbers, results):
                    rows = result if errors is None else result[0]
                    write(fd, starts[n], _from_row_bytes(rows, q._like))
                    if errors is not None:
                        errors.absorb(starts[n], result[1])
                    done += len(rows)
                    update(done)
    finally:
        close()
    return end, errors.finish() if errors is not None else None


def _block_errors_of_rows(rows: np.ndarray, original: np.ndarray,
                          like: QuantizedEmbedding) -> ErrorAccumulator:
    return _block_errors(original, _from_row_bytes(rows, like))


def quantize_file_on_workers(src: Any, dst: Any, *, workers: int | None, tensor: str | None,
                             chunk_rows: int | None, rows_per_shard: int | None, progress: Any,
                             threads: int | None, report: bool, metadata: dict[str, str],
                             options: Mapping[str, Any]) -> tuple[Any, ...]:
    """:func:`rowquant.quantize_file` of a folder, a Zarr array, or with ``workers``: the
    blocks quantized by a local cluster of ``workers`` processes (or this process's threads),
    into a folder of shards (``dst`` not ending in ``.safetensors``, or ``rows_per_shard``
    given) or one file. Returns (rows, dim, source dtype, source bytes, output bytes, report,
    output path)."""
    from . import _threads

    x = from_files(src, tensor=tensor, chunk_rows=chunk_rows)
    source_bytes = _source_bytes(src)
    q = quantize(x, **options)
    shards = rows_per_shard is not None or not os.fspath(dst).endswith(".safetensors")
    if workers is None:
        compute: dict[str, Any] = {"scheduler": "threads",
                                   "num_workers": _threads.resolve_threads(threads)}
        return _write(q, dst, shards, rows_per_shard, metadata, report, progress, 2 * compute[
            "num_workers"], compute, source_bytes)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, Client(cluster):
        return _write(q, dst, shards, rows_per_shard, metadata, report, progress,
                      2 * int(workers), {}, source_bytes)


def _write(q: DaskQuantized, dst: Any, shards: bool, rows_per_shard: int | None,
           metadata: dict[str, str], report: bool, progress: Any, window: int,
           compute: dict[str, Any], source_bytes: int) -> tuple[Any, ...]:
    if shards:
        written = q.to_safetensors_shards(dst, rows_per_shard, metadata=metadata, report=report,
                                          progress=progress, **compute)
        output_bytes, errors, output = written.bytes, written.report, written.index
    else:
        output_bytes, errors = _to_one_file(q, dst, metadata, report, progress, window, compute)
        output = os.fspath(dst)
    return (q.shape[0], q.shape[1], str(q.x.dtype), source_bytes, output_bytes, errors, output)


def _source_bytes(src: Any) -> int:
    path = os.fspath(src)
    if os.path.isdir(path):
        return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())
    return os.path.getsize(path)
