"""Side-by-side benchmark of rowquant against numpy, PyTorch/FBGEMM and a memory-copy floor.

Every case (an operation on a table at a thread count) times rowquant and its peers in the same
run, on the same data, so the ratios hold on a busy machine where absolute times do not. Run it
with ``rowquant bench`` (see ``rowquant bench --help``), :func:`bench` or :func:`run`.

rowquant is timed as an application serves lookups: ``rq.quantize(E)``, then the methods of the
:class:`~rowquant.QuantizedEmbedding` it returns (``dequantize``, ``take``, ``bag``), whose table
was checked once when it was made. (The functions over plain arrays, such as
``rq.take(codes, scales, ids)``, check every scale on every call.)

How a time is taken: one warm-up call, then the median of repeated samples; each sample runs the
call enough times to last about a millisecond, and the number of samples adapts so that every
measurement lasts about ``budget`` seconds (at least 3 samples; peers that take longer than the
budget per call, such as the numpy reference on big tables, may use a single sample). Tables are
float32 standard-normal random values, generated once per table with a fixed seed and freed
before the next table. Ids are drawn once per table and count, with a fixed seed: uniform over
the rows, or Zipf with exponent 1.1 truncated to the table (``P(id = k)`` proportional to
``(k + 1) ** -1.1``: a few hot rows, as in a vocabulary sorted by frequency). Bags hold uniform
ids, and their weights are uniform in ``[0, 1)``.

The peers, each on the same table and ids:

``reference``
    :mod:`rowquant.reference`, the numpy implementation (single-threaded; it always allocates
    its result, also in the ``out=`` cases).
``torch``
    quantize only: ``torch.quantize_per_channel`` with rowquant's scales (``max|row| / 127``,
    computed in the timed call) and zero point 128, then ``int_repr()``.
``FBGEMM``
    PyTorch's quantized embedding-bag operators: ``embedding_bag_byte_prepack`` (quantize, from
    a float32 tensor), ``embedding_bag_byte_unpack`` (dequantize) and
    ``embedding_bag_byte_rowwise_offsets`` (take as bags of one id, and bags). The unpack and
    lookup operators read rowquant's own codes in FBGEMM's row layout
    ``[D codes | float32 scale | float32 bias]`` with ``scale = s`` and ``bias = -128 * s``, so
    they dequantize exactly as rowquant does; the layout is checked against :func:`rowquant.take`
    before use. FBGEMM ignores ``mode`` and always sums, so its "mean" times are those of a sum.
    ``torch.set_num_threads`` is set to the case's thread count.
``np.take``
    take only: ``np.take(E, ids, axis=0)`` on the float32 table (an unquantized lookup, reading
    four times the bytes), with ``out=`` in the ``out=`` cases (numpy buffers ``out=`` when
    ``mode="raise"``, its default, so that variant is rarely faster).
``floor``
    The memory-copy floor. For an operation that must read ``R`` bytes and write ``W`` bytes, the
    floor is the time of ``np.copyto(dst, src)`` between two preallocated uint8 buffers of
    ``(R + W) / 2`` bytes each, so that the copy moves the same ``R + W`` bytes. With ``threads``
    above 1 it is the faster of that copy and the same copy split into ``threads`` slices copied
    concurrently. ``R`` and ``W`` count the table bytes an operation cannot avoid: quantize reads
    ``4ND`` and writes ``ND + 4N``; dequantize reads ``ND + 4N`` and writes ``4ND``; a take of
    ``k`` ids reads ``k (D + 4)`` and writes ``4kD``; ``B`` bags of ``L`` ids read ``BL (D + 4)``
    and write ``4BD``. Ids, offsets and weights are not counted.

Every ratio is ``peer time / rowquant time``, the floor's included: above 1, rowquant is faster;
``floor / rowquant`` near 1 means the operation runs at copy speed (tiny cases are dominated by
call overhead instead). The printed table shows rowquant's time and these ratios; the JSON and
the Markdown table also hold every peer's time. A summary closes the report: in how many cases
rowquant is faster than each peer and the case where it compares worst, the worst
``rowquant / floor``, and how many cases ran with more threads than the cores other processes
left idle.

Instruction sets: ``isa="native"`` (the default) runs each side's best kernels for this
processor, whatever ``ROWQUANT_SIMD`` or ``FBGEMM_ENABLE_INSTRUCTIONS`` say; ``isa="avx2"``
runs rowquant's AVX2 kernels and sets ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` (before PyTorch is
imported: FBGEMM reads it once), for a like-for-like comparison on an AVX-512 machine.
:func:`machine_info` reports the path of each side (FBGEMM's as a best guess where it is one:
FBGEMM cannot be asked, see :func:`fbgemm_simd`). PyTorch's own kernels (``torch`` peer) keep
their choice (``ATEN_CPU_CAPABILITY``).

This module times the cases and runs the peers. What is measured (tables, peers, cases) is in
``_benchmark_cases``, what it ran on (machine, SIMD paths, ``isa``) in ``_benchmark_machine``,
and how it reads (table, summary, Markdown) in ``_benchmark_output``; the public names of all
three are here.

Examples
--------
>>> from rowquant import benchmark
>>> cases = benchmark.plan(tables=["cache"], threads=[1])
>>> len(cases), cases[3].label, cases[5].label
(6, 'take 4096 uniform', 'bag 8192x20 sum')
>>> cases[3].traffic(1000, 64)   # bytes read, bytes written
(278528, 1048576)
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TextIO

import numpy as np

from . import quantize, reference
from ._benchmark_cases import (
    BITS,
    FULL_TABLES,
    PEER_OPS,
    PEERS,
    QUICK_TABLES,
    TABLES,
    Case,
    plan,
    result_key,
)
from ._benchmark_machine import (
    ISAS,
    cores_used_elsewhere,
    cpu_clock,
    fbgemm_simd,
    isa_selected,
    machine_info,
)
from ._benchmark_output import (
    format_column_titles,
    format_header,
    format_markdown,
    format_row,
    format_summary,
    format_table,
    format_table_title,
    format_time,
    summarize,
)

__all__ = [
    "TABLES",
    "QUICK_TABLES",
    "FULL_TABLES",
    "PEERS",
    "BITS",
    "ISAS",
    "Case",
    "plan",
    "run",
    "machine_info",
    "fbgemm_simd",
    "bench",
    "summarize",
    "format_time",
    "format_header",
    "format_row",
    "format_table",
    "format_summary",
    "format_markdown",
]

QUICK_BUDGET = 0.1
FULL_BUDGET = 0.25
_SAMPLE_SECONDS = 1e-3  # calls shorter than this are looped within one sample
_MAX_SAMPLES = 200
_SPLIT_COPY_BYTES = 4 << 20  # below this a thread hand-off costs more than the copy
_ZIPF_EXPONENT = 1.1
_SEED = 2017
_torch_cache: list = []


def _import_torch():
    """(torch, None), or (None, why not). Imported on first use: it takes seconds."""
    if not _torch_cache:
        try:
            import torch
        except ImportError:
            _torch_cache.append((None, "not installed"))
        except Exception as error:  # a broken install should not stop the benchmark
            _torch_cache.append((None, f"import failed: {error}"))
        else:
            _torch_cache.append((torch, None))
    return _torch_cache[0]


def _time_call(fn: Callable[[], object], budget: float, min_samples: int = 3) -> float:
    """Median seconds per call of ``fn``, after a warm-up, in about ``budget`` seconds."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        if seconds < budget / 10:  # the warm-up may be slow (page faults): calibrate again
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
        seconds = max(seconds, 1e-8)
        loops = max(1, min(10_000, int(_SAMPLE_SECONDS / seconds)))
        n_samples = max(min_samples, min(_MAX_SAMPLES, int(budget / (loops * seconds))))
        samples = []
        for _ in range(n_samples):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            samples.append((time.perf_counter() - start) / loops)
        return statistics.median(samples)
    finally:
        if enabled:
            gc.enable()


class _Table:
    """One generated table and everything the cases on it share: codes, FBGEMM's packed copy,
    ids, weights and output buffers, each made once."""

    def __init__(self, name: str, torch, bits: int = 8):
        self.name = name
        self.bits = bits
        self.n_rows, self.dim = TABLES[name]
        self.seed = _SEED + list(TABLES).index(name)
        rng = np.random.default_rng(self.seed)
        self.values = rng.standard_normal((self.n_rows, self.dim), dtype=np.float32)
        self.embedding = quantize(self.values, bits=bits)
        self.codes, self.scales = self.embedding.codes, self.embedding.scales
        self.biases = self.embedding.biases if bits != 8 else None
        self.torch = torch
        self.fbgemm_note = None
        self._ids: dict = {}
        self._buffers: dict = {}
        if torch is not None:
            self._pack_for_fbgemm()

    def _pack_for_fbgemm(self):
        torch = self.torch
        ops = getattr(torch.ops, "quantized", None)
        kind = "byte" if self.bits == 8 else f"{self.bits}bit"
        try:
            self.prepack = getattr(ops, f"embedding_bag_{kind}_prepack")
            self.unpack = getattr(ops, f"embedding_bag_{kind}_unpack")
            self.lookup = getattr(ops, f"embedding_bag_{kind}_rowwise_offsets")
        except (AttributeError, RuntimeError):
            self.fbgemm_note = "unavailable"
            return
        self.packed = torch.from_numpy(self.embedding.to_fbgemm())
        self.values_tensor = torch.from_numpy(self.values)
        self.zero_points = torch.full((self.n_rows,), 128, dtype=torch.long)
        # The comparison holds only if FBGEMM reads this layout as rowquant's values.
        ids = np.linspace(0, self.n_rows - 1, 16).astype(np.int64)
        theirs = self.lookup(
            self.packed, torch.from_numpy(ids), torch.arange(len(ids)), mode=0
        ).numpy()
        ours = self.embedding.take(ids)
        tolerance = 1e-6 * float(np.abs(self.values).max()) * 2
        if not np.allclose(theirs, ours, rtol=0, atol=tolerance):
            self.fbgemm_note = "layout check failed"

    def _rng(self, count: int, kind: int) -> np.random.Generator:
        # Seeded by what is drawn, so the same ids come back whichever cases run, in any order.
        return np.random.default_rng([self.seed, count, kind])

    def ids(self, count: int, dist: str) -> np.ndarray:
        """``count`` ids in [0, N), ``"uniform"`` or ``"zipf"``, drawn once with a fixed seed."""
        key = (count, dist)
        if key not in self._ids:
            if dist == "uniform":
                ids = self._rng(count, 0).integers(0, self.n_rows, count, dtype=np.int64)
            else:
                ids = _zipf_ids(self._rng(count, 1), count, self.n_rows)
            self._ids[key] = ids
        return self._ids[key]

    def weights(self, count: int) -> np.ndarray:
        """``count`` bag weights, uniform in [0, 1)."""
        key = ("weights", count)
        if key not in self._ids:
            self._ids[key] = self._rng(count, 2).random(count, dtype=np.float32)
        return self._ids[key]

    def buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 output buffer of ``shape``, shared by the cases that write that shape."""
        if shape not in self._buffers:
            self._buffers[shape] = np.zeros(shape, dtype=np.float32)
        return self._buffers[shape]


def _zipf_ids(rng: np.random.Generator, count: int, n_rows: int) -> np.ndarray:
    """Ids with ``P(id = k)`` proportional to ``(k + 1) ** -1.1`` for ``k`` in ``[0, n_rows)``.

    Drawn from the Zipf law truncated to the table rather than by clipping numpy's unbounded
    ``zipf``, which would pile about a quarter of the ids onto the last row of a big table.
    """
    weights = np.arange(1, n_rows + 1, dtype=np.float64) ** -_ZIPF_EXPONENT
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    ids = np.searchsorted(cumulative, rng.random(count), side="right")
    return np.minimum(ids, n_rows - 1).astype(np.int64)


def _rowquant_call(case: Case, table: _Table):
    embedding, threads = table.embedding, case.threads
    if case.op == "quantize":
        return lambda: quantize(table.values, threads=threads)
    if case.op == "dequantize":
        out = table.buffer(embedding.shape) if case.out else None
        return lambda: embedding.dequantize(out, threads=threads)
    if case.op == "take":
        ids = table.ids(case.n_ids, case.id_dist)
        out = table.buffer((case.n_ids, table.dim)) if case.out else None
        return lambda: embedding.take(ids, out, threads=threads)
    ids, offsets, weights, mode = _bag_inputs(case, table)
    return lambda: embedding.bag(ids, offsets, weights=weights, mode=mode, threads=threads)


def _bag_inputs(case: Case, table: _Table):
    ids = table.ids(case.n_bags * case.bag_length, "uniform")
    offsets = np.arange(0, case.n_bags * case.bag_length, case.bag_length, dtype=np.int64)
    weights = table.weights(len(ids)) if case.mode == "weighted" else None
    mode = "mean" if case.mode == "mean" else "sum"
    return ids, offsets, weights, mode


def _reference_call(case: Case, table: _Table):
    if table.bits != 8:
        return _nbit_reference_call(case, table)
    codes, scales = table.codes, table.scales
    if case.op == "quantize":
        return lambda: reference.quantize_rows(table.values)
    if case.op == "dequantize":
        return lambda: reference.dequantize(codes, scales)
    if case.op == "take":
        ids = table.ids(case.n_ids, case.id_dist)
        return lambda: reference.take(codes, scales, ids)
    ids, offsets, weights, mode = _bag_inputs(case, table)
    return lambda: reference.embedding_bag(codes, scales, ids, offsets, weights=weights, mode=mode)


def _nbit_reference_call(case: Case, table: _Table):
    """The reference's calls on a 4-bit or 2-bit table."""
    codes, scales, biases, bits, dim = table.codes, table.scales, table.biases, table.bits, table.dim
    assert biases is not None  # an N-bit table has them
    if case.op == "quantize":
        return lambda: reference.quantize_nbit(table.values, bits)
    if case.op == "dequantize":
        return lambda: reference.dequantize_nbit(codes, scales, biases, bits, dim)
    if case.op == "take":
        ids = table.ids(case.n_ids, case.id_dist)
        return lambda: reference.take_nbit(codes, scales, biases, bits, dim, ids)
    ids, offsets, weights, mode = _bag_inputs(case, table)
    bounds = np.append(offsets, len(ids))
    return lambda: reference.pool_bags_nbit(
        codes, scales, biases, bits, dim, ids, bounds, weights, mode
    )


def _torch_call(case: Case, table: _Table):
    torch, values, zero_points = table.torch, table.values_tensor, table.zero_points

    def quantize():
        scales = values.abs().amax(dim=1) / 127
        return torch.quantize_per_channel(values, scales, zero_points, 0, torch.quint8).int_repr()

    return quantize


def _fbgemm_call(case: Case, table: _Table):
    torch = table.torch
    if case.op == "quantize":
        values = table.values_tensor
        return lambda: table.prepack(values)
    if case.op == "dequantize":
        packed = table.packed
        return lambda: table.unpack(packed)
    if case.op == "take":
        ids = torch.from_numpy(table.ids(case.n_ids, case.id_dist))
        offsets = torch.arange(case.n_ids)
        return lambda: table.lookup(table.packed, ids, offsets, mode=0)
    ids, offsets, weights, mode = _bag_inputs(case, table)
    ids, offsets = torch.from_numpy(ids), torch.from_numpy(offsets)
    weights = torch.from_numpy(weights) if weights is not None else None
    number = 1 if mode == "mean" else 0
    return lambda: table.lookup(
        table.packed, ids, offsets, mode=number, per_sample_weights=weights
    )


def _np_take_call(case: Case, table: _Table):
    values, ids = table.values, table.ids(case.n_ids, case.id_dist)
    if case.out:
        out = table.buffer((case.n_ids, table.dim))
        return lambda: np.take(values, ids, axis=0, out=out)
    return lambda: np.take(values, ids, axis=0)


class _Floor:
    """Copy times by size (and thread count), measured once per run."""

    def __init__(self, budget: float):
        self.budget = budget
        self.times: dict = {}
        self.pool: ThreadPoolExecutor | None = None
        self.workers = 0

    def seconds(self, n_bytes: int, threads: int) -> float:
        size = max(1, (n_bytes + 1) // 2)
        best = self._measure(size, 1)
        if threads > 1 and size >= _SPLIT_COPY_BYTES:
            best = min(best, self._measure(size, threads))
        return best

    def _measure(self, size: int, threads: int) -> float:
        key = (size, threads)
        if key not in self.times:
            source = np.ones(size, dtype=np.uint8)
            target = np.zeros(size, dtype=np.uint8)
            if threads == 1:
                self.times[key] = _time_call(lambda: np.copyto(target, source), self.budget)
            else:
                if self.workers < threads - 1:
                    self.close()
                    self.pool = ThreadPoolExecutor(threads - 1)
                    self.workers = threads - 1
                bounds = np.linspace(0, size, threads + 1).astype(int)
                slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
                pool = self.pool

                def split_copy():
                    pending = [pool.submit(np.copyto, target[s], source[s]) for s in slices[1:]]
                    np.copyto(target[slices[0]], source[slices[0]])
                    for future in pending:
                        future.result()

                self.times[key] = _time_call(split_copy, self.budget)
            del source, target
        return self.times[key]

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
            self.workers = 0


_CALLS = {
    "reference": _reference_call,
    "torch": _torch_call,
    "fbgemm": _fbgemm_call,
    "np.take": _np_take_call,
}
# Peers whose time does not depend on the thread count (nor, for the reference, on out=): measured
# once and shared by the cases that differ only in that.
_SHARED = {"reference": ("threads", "out"), "np.take": ("threads",)}


def run(
    full: bool = False,
    *,
    tables: Iterable[str] | None = None,
    threads: Iterable[int] | None = None,
    budget: float | None = None,
    peers: Iterable[str] | None = None,
    isa: str = "native",
    bits: int = 8,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_table: Callable[[str, tuple[int, int], float], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure rowquant and its peers; return one dict per case.

    Parameters
    ----------
    full : bool
        Every case (many minutes); default a representative subset (well under a minute).
    tables : sequence of str, optional
        Names from :data:`TABLES`; see :func:`plan`.
    threads : sequence of int, optional
        Thread counts; default 1 and all cores.
    budget : float, optional
        Seconds per measurement (default 0.1, or 0.25 with ``full``).
    peers : sequence of str, optional
        The peers to measure, from :data:`PEERS`; default all of them.
    isa : str
        The instruction sets, from :data:`ISAS`: ``"native"``, each side's best kernels, or
        ``"avx2"``, rowquant's AVX2 kernels and FBGEMM's (``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``,
        set before PyTorch is imported; a process that imported PyTorch with another setting
        gets a RuntimeError). rowquant's previous kernels are restored at the end.
    bits : int
        The codes' width, from :data:`BITS`: 8 (the paper's scheme, the default), or 4 or 2
        (``rq.quantize(E, bits=4)``: packed codes with a float16 scale and bias per row, timed
        against FBGEMM's ``embedding_bag_4bit_*`` / ``embedding_bag_2bit_*`` operators on the
        same bytes; the ``torch`` peer has no such form and is left out).
    on_result : callable, optional
        Called with each result as soon as it is measured (to print progress).
    on_table : callable, optional
        Called with the name, shape and generation seconds of each table once it is made.

    Returns
    -------
    list of dict
        Each with ``op``, ``table``, ``shape``, ``params``, ``threads``, ``rowquant_s``, one
        ``<peer>_s`` per peer (``reference_s``, ``torch_s``, ``fbgemm_s``, ``np_take_s``,
        ``floor_s``: seconds, or None where the peer does not apply or could not run),
        ``bytes_read``, ``bytes_written``, ``missing`` (peer -> why it has no time, for
        peers that apply but did not run: ``"not installed"``, ``"skipped"``, ...) and
        ``busy_elsewhere``: how many cores other processes kept busy while the case was
        measured (from ``/proc/stat``; None where unknown). On a shared machine a case with
        ``threads`` above the idle cores waits for the busy ones, so its times mean little.

    Examples
    --------
    >>> from rowquant import benchmark
    >>> results = benchmark.run(tables=["cache"], threads=[1], budget=0.001,
    ...                         peers=["reference", "floor"])
    >>> [result["op"] for result in results]
    ['quantize', 'dequantize', 'take', 'take', 'take', 'bag']
    >>> results[0]["rowquant_s"] > 0, results[0]["missing"]
    (True, {'fbgemm': 'skipped', 'torch': 'skipped'})
    >>> benchmark.run(tables=["cache"], isa="avx512")
    Traceback (most recent call last):
    ValueError: unknown isa 'avx512'; choose from native, avx2
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits!r}")
    cases = plan(full, tables, threads)
    budget = (FULL_BUDGET if full else QUICK_BUDGET) if budget is None else float(budget)
    if not budget > 0:
        raise ValueError(f"budget must be a positive number of seconds, got {budget}")
    wanted = list(PEERS) if peers is None else list(dict.fromkeys(peers))
    unknown = [peer for peer in wanted if peer not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {unknown[0]!r}; the peers are {', '.join(PEERS)}")
    with isa_selected(isa, _uses_torch(wanted)):
        return _run_cases(cases, wanted, budget, bits, on_result, on_table)


def _uses_torch(peers: Iterable[str] | None) -> bool:
    return peers is None or bool({"torch", "fbgemm"} & set(peers))


def _run_cases(
    cases: list[Case],
    wanted: list[str],
    budget: float,
    bits: int,
    on_result: Callable[[dict[str, Any]], None] | None,
    on_table: Callable[[str, tuple[int, int], float], None] | None,
) -> list[dict[str, Any]]:
    torch, torch_reason = _import_torch() if _uses_torch(wanted) else (None, None)
    torch_threads = torch.get_num_threads() if torch is not None else None
    floor = _Floor(budget)
    shared: dict = {}
    results = []
    table = None
    try:
        for case in cases:
            if table is None or table.name != case.table:
                table = None
                gc.collect()
                start = time.perf_counter()
                table = _Table(case.table, torch, bits)
                if on_table is not None:
                    on_table(case.table, TABLES[case.table], time.perf_counter() - start)
            result = _measure_case(case, table, wanted, torch_reason, floor, shared, budget)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        table = None
        floor.close()
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)
        gc.collect()
    return results


def _measure_case(case, table, wanted, torch_reason, floor, shared, budget) -> dict:
    read, written = case.traffic(table.n_rows, table.dim, table.bits)
    clock = cpu_clock()
    result = {
        "op": case.op,
        "table": case.table,
        "shape": [table.n_rows, table.dim],
        "bits": table.bits,
        "params": case.params,
        "threads": case.threads,
        "rowquant_s": _time_call(_rowquant_call(case, table), budget),
    }
    missing = {}
    for peer in PEERS:
        seconds = None
        if case.op not in PEER_OPS[peer] or (peer == "torch" and table.bits != 8):
            pass
        elif peer not in wanted:
            missing[peer] = "skipped"
        elif peer in ("torch", "fbgemm") and table.torch is None:
            missing[peer] = torch_reason
        elif peer == "fbgemm" and table.fbgemm_note is not None:
            missing[peer] = table.fbgemm_note
        elif peer == "floor":
            seconds = floor.seconds(read + written, case.threads)
        else:
            key = (peer, case.without(*_SHARED.get(peer, ())))
            if key not in shared:
                shared[key] = _time_peer(peer, case, table, budget)
            seconds = shared[key]
        result[result_key(peer)] = seconds
    result["bytes_read"], result["bytes_written"] = read, written
    result["missing"] = dict(sorted(missing.items()))
    result["busy_elsewhere"] = cores_used_elsewhere(clock, cpu_clock())
    return result


def _time_peer(peer: str, case: Case, table: _Table, budget: float) -> float:
    call = _CALLS[peer](case, table)
    if peer in ("torch", "fbgemm"):
        table.torch.set_num_threads(case.threads)
    # The reference quantizes a big table in seconds: one sample after the warm-up is enough.
    min_samples = 1 if peer == "reference" else 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quint8 tensors
        return _time_call(call, budget, min_samples)


def bench(stream: TextIO | None = None, **options: Any) -> dict[str, Any]:
    """Run the benchmark and print the report as it goes: header, each row once measured, then
    the summary.

    Parameters
    ----------
    stream : file, optional
        Where to print; default ``sys.stdout``.
    **options
        Passed to :func:`run` (``isa`` included).

    Returns
    -------
    dict
        What ``rowquant bench --json`` writes: ``machine`` (:func:`machine_info`, taken with
        the run's instruction sets in place), ``isa``, ``results`` (:func:`run`) and
        ``summary`` (:func:`summarize`).
    """
    out = sys.stdout if stream is None else stream

    def show(line: str) -> None:
        print(line, file=out, flush=True)

    isa = options.pop("isa", "native")
    with isa_selected(isa, _uses_torch(options.get("peers"))):
        info = machine_info()
        show(format_header(info))
        bits = options.get("bits", 8)
        if bits != 8:
            show(f"codes       {bits}-bit rows (packed codes, float16 scale and bias per row), "
                 f"FBGEMM on its embedding_bag_{bits}bit_* operators")
        show("")
        show(format_column_titles())
        results = run(
            **options,
            isa=isa,
            on_table=lambda name, shape, seconds: show(format_table_title(name, shape, seconds)),
            on_result=lambda result: show(format_row(result)),
        )
    summary = summarize(results, info["cores"])
    show("")
    show(format_summary(summary))
    return {"machine": info, "isa": isa, "results": results, "summary": summary}
