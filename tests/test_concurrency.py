"""Several Python threads on one shared table (in memory and memory-mapped) doing take and bag
while others quantize: every result equals the one computed alone beforehand, whatever the
timing and threads=; and the kernels release the GIL, shown by a Python thread that keeps running
while a long kernel call is in flight. Bounded in time: each test stops by itself."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import rowquant as rq
from helpers import assert_same_bits

BACKEND_C = rq.backend_info()["backend"] == "c"


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((20000, 96)).astype(np.float32)
    qe = rq.quantize(values)
    path = tmp_path_factory.mktemp("concurrency") / "t.safetensors"
    qe.save(path)
    return values, qe, rq.load(path, mmap=True)


def make_jobs(values, count=48):
    """Jobs of every kind, each with its expected result computed up front on one thread."""
    rng = np.random.default_rng(1)
    n_rows = values.shape[0]
    jobs = []
    for k in range(count):
        kind = ("take", "bag", "mean", "weighted", "quantize", "dequantize")[k % 6]
        ids = rng.integers(0, n_rows, int(rng.integers(1, 6000)))
        offsets = np.unique(np.concatenate([[0], rng.integers(0, len(ids), 40)]))
        weights = rng.random(len(ids), dtype=np.float32)
        block = values[rng.integers(0, n_rows - 3000) :][:3000]
        jobs.append((kind, ids, offsets, weights, block, [1, 2, None][k % 3]))
    return jobs


def run_job(table, job):
    kind, ids, offsets, weights, block, threads = job
    if kind == "take":
        return table.take(ids, threads=threads)
    if kind == "bag":
        return table.bag(ids, offsets, threads=threads)
    if kind == "mean":
        return table.bag(ids, offsets, mode="mean", threads=threads)
    if kind == "weighted":
        return table.bag(ids, offsets, weights=weights, threads=threads)
    if kind == "quantize":
        codes, scales = rq.quantize_rows(block, threads=threads)
        return np.concatenate([codes.view(np.uint8).ravel(), scales.view(np.uint8)])
    return table[: len(ids) % 5000 + 1].copy()


@pytest.mark.parametrize("which", ["memory", "mmap"])
def test_shared_table_under_concurrent_load(tables, which):
    values, in_memory, mapped = tables
    table = in_memory if which == "memory" else mapped
    jobs = make_jobs(values)
    expected = [run_job(in_memory, (*job[:5], 1)) for job in jobs]
    order = np.random.default_rng(2).permutation(len(jobs) * 3) % len(jobs)
    deadline = time.monotonic() + 20  # a stuck run fails instead of hanging CI

    def work(index):
        assert time.monotonic() < deadline, "the stress run took too long"
        return index, run_job(table, jobs[index])

    with ThreadPoolExecutor(max_workers=6) as pool:
        for index, result in pool.map(work, order):
            got, want = result, expected[index]
            if got.dtype == np.float32:
                assert_same_bits(got, want)
            else:
                np.testing.assert_array_equal(got, want)


def python_progress_during(call):
    """Run ``call`` in a thread while this thread counts loop turns; the number of turns
    counted while the call was surely inside the kernel (its middle 80%)."""
    stamps = []
    span = {}

    def target():
        span["start"] = time.perf_counter()
        call()
        span["end"] = time.perf_counter()

    worker = threading.Thread(target=target)
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    start, end = span["start"], span["end"]
    margin = (end - start) * 0.1
    inside = [t for t in stamps if start + margin < t < end - margin]
    return len(inside), end - start


@pytest.mark.skipif(not BACKEND_C, reason="the numpy backend holds the GIL in numpy's own loops")
@pytest.mark.parametrize("kind", ["quantize", "dequantize", "take", "bag", "mmap bag"])
def test_kernels_release_the_gil(tables, kind):
    values, qe, mapped = tables
    big = np.tile(values, (10, 1))  # 200000 x 96: a call long enough to watch
    big_table = rq.quantize(big)
    ids = np.random.default_rng(3).integers(0, len(big), 400000)
    calls = {
        "quantize": lambda: rq.quantize_rows(big, threads=1),
        "dequantize": lambda: big_table.dequantize(threads=1),
        "take": lambda: big_table.take(ids, threads=1),
        "bag": lambda: big_table.bag(ids.reshape(-1, 20), threads=1),
        "mmap bag": lambda: mapped.bag(ids.reshape(-1, 20) % len(values), threads=1),
    }
    turns, seconds = python_progress_during(calls[kind])
    # Holding the GIL, the call would let this thread run only at its start and end; released,
    # this thread loops all along (hundreds of thousands of turns per second).
    assert seconds > 0.005, "the call was too short to tell"
    assert turns > 100, (turns, seconds)
