"""Quantize a table larger than this machine's memory into shards on a local Dask cluster, and
serve it with rq.load(folder).

The table is random: 10^8 x 64 float32 by default (25.6 GB, more than the 24 GB of the
project's machine), generated block by block from a seeded source (block k from
default_rng([2026, k])), never held whole. For each number of worker processes it reports:

- the time and rows per second of ``to_safetensors_shards`` (generation included: the
  generation alone is timed too, on one block in this process);
- the peak resident memory of each worker (ru_maxrss of the worker process, in MB and in chunks
  of the float32 input);
- the measured scheduler overhead per task (a batch of no-op tasks on the same cluster) and the
  model ``blocks x time per block / workers + tasks x overhead / workers`` against the time
  measured;

then opens the shards with ``rq.load(folder)`` (the time to open every shard and check it
against the index), checks two shards byte for byte against ``rq.quantize`` of their block
made again, and times a 65536-id take and 8192 bags of 20 on the sharded table against the
same calls on one shard's worth of rows.

    python bench/dask_shards.py                          # 10^8 x 64, 1 and 2 workers
    python bench/dask_shards.py --rows 2000000 --workers 2 --json out.json   # a quick run

Needs dask and distributed (``pip install -e '.[dask]'``) and free disk for the shards (68
bytes a row: 6.8 GB for 10^8 rows; each run's folder is deleted after it unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dask.array as da
import distributed

import rowquant as rq
import rowquant.dask as rqdask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scales16 import best  # noqa: E402  (best of n timings after a warm-up)

SEED = 2026


def generated(rows: int, dim: int, chunk: int) -> da.Array:
    """The random table, block k generated from default_rng([SEED, k]) where it is needed."""

    def block(block_info=None):
        (start, stop), _ = block_info[None]["array-location"]
        rng = np.random.default_rng([SEED, start // chunk])
        return rng.standard_normal((stop - start, dim), dtype=np.float32)

    chunks = (tuple(min(chunk, rows - a) for a in range(0, rows, chunk)), (dim,))
    return da.map_blocks(block, chunks=chunks, dtype=np.float32,
                         meta=np.empty((0, 0), np.float32), name="generated")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_block_seconds(dim: int, chunk: int, folder: str) -> dict[str, float]:
    """Generation, quantization and writing of one block, in this process (best of 3)."""
    times: dict[str, list[float]] = {"generate": [], "quantize": [], "write": []}
    for _ in range(3):
        start = time.perf_counter()
        values = np.random.default_rng([SEED, 0]).standard_normal((chunk, dim), dtype=np.float32)
        generated_at = time.perf_counter()
        table = rq.quantize(values, threads=1)
        quantized_at = time.perf_counter()
        table.save(os.path.join(folder, "one-block.safetensors"))
        written_at = time.perf_counter()
        times["generate"].append(generated_at - start)
        times["quantize"].append(quantized_at - generated_at)
        times["write"].append(written_at - quantized_at)
    os.remove(os.path.join(folder, "one-block.safetensors"))
    return {name: min(values) for name, values in times.items()}


def scheduler_overhead(client: distributed.Client, tasks: int = 2000) -> float:
    """Seconds per no-op task on this cluster (submission to result, all in flight at once)."""
    client.gather(client.map(int, range(100), pure=False))  # warm
    start = time.perf_counter()
    client.gather(client.map(int, range(tasks), pure=False))
    return (time.perf_counter() - start) / tasks


def run(rows: int, dim: int, chunk: int, workers: int, folder: str, block: dict[str, float]):
    x = generated(rows, dim, chunk)
    blocks = x.numblocks[0]
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address="127.0.0.1:0", host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        overhead = scheduler_overhead(client)
        start = time.perf_counter()
        written = rqdask.quantize(x).to_safetensors_shards(folder, progress=True)
        seconds = time.perf_counter() - start
        peaks = sorted(client.run(peak_rss_mb).values())
    per_block = block["generate"] + block["quantize"] + block["write"]
    # two tasks a block (generate, quantize and write), spread over the workers
    model = blocks * per_block / workers + 2 * blocks * overhead / workers
    chunk_mb = chunk * dim * 4 / 2**20
    return {
        "workers": workers, "rows": rows, "dim": dim, "blocks": blocks,
        "chunk_rows": chunk, "chunk_mb": chunk_mb, "seconds": seconds,
        "rows_per_second": rows / seconds, "input_gb": rows * dim * 4 / 1e9,
        "output_gb": written.bytes / 1e9, "shards": written.shards,
        "peak_worker_mb": peaks, "peak_worker_chunks": [p / chunk_mb for p in peaks],
        "scheduler_overhead_us": overhead * 1e6, "block_seconds": block,
        "model_seconds": model,
    }


def serve(folder: str, dim: int, chunk: int) -> dict[str, float]:
    start = time.perf_counter()
    table = rq.load(folder)
    opened = time.perf_counter() - start
    for k in (0, len(table.shards) - 1):  # two shards, byte for byte
        first = int(table.starts[k])
        count = len(table.shards[k])
        values = np.random.default_rng([SEED, k]).standard_normal((count, dim), dtype=np.float32)
        expected = os.path.join(folder, "expected.safetensors")
        rq.quantize(values).save(expected)
        name = f"table-{k + 1:05d}-of-{len(table.shards):05d}.safetensors"
        with open(expected, "rb") as a, open(os.path.join(folder, name), "rb") as b:
            assert a.read() == b.read(), f"shard {name} differs from quantize of its block"
        os.remove(expected)
        assert first == k * chunk
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(table), 65536)
    bags = rng.integers(0, len(table), (8192, 20))

    one = table.shards[0]
    local_ids, local_bags = ids % len(one), bags % len(one)
    return {
        "open_seconds": opened,
        "take_65536_s": best(lambda: table.take(ids), 5),
        "bag_8192x20_s": best(lambda: table.bag(bags), 5),
        "one_shard_take_65536_s": best(lambda: one.take(local_ids), 5),
        "one_shard_bag_8192x20_s": best(lambda: one.bag(local_bags), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10**8)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=2**20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--folder", default=None, help="where shards go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the last run's shards")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    base = args.folder or tempfile.mkdtemp(prefix="rowquant-shards-", dir="/var/tmp")
    os.makedirs(base, exist_ok=True)
    block = one_block_seconds(args.dim, args.chunk_rows, base)
    print(f"one block of {args.chunk_rows} x {args.dim}: generate {block['generate']:.3f} s, "
          f"quantize {block['quantize']:.3f} s, write {block['write']:.3f} s")
    results = []
    for number, workers in enumerate(args.workers):
        folder = os.path.join(base, f"w{workers}")
        result = run(args.rows, args.dim, args.chunk_rows, workers, folder, block)
        last = number == len(args.workers) - 1
        if last:
            result["serve"] = serve(folder, args.dim, args.chunk_rows)
        results.append(result)
        print(json.dumps(result, indent=1))
        if not (last and args.keep):
            shutil.rmtree(folder)
    if args.folder is None and not os.listdir(base):  # the temporary folder made above
        os.rmdir(base)
    print("\n| workers | rows | input | time | rows/s | peak per worker | overhead/task | model |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        peaks = ", ".join(f"{p:.0f} MB ({c:.1f} chunks)" for p, c in
                          zip(r["peak_worker_mb"], r["peak_worker_chunks"]))
        print(f"| {r['workers']} | {r['rows']:,} x {r['dim']} | {r['input_gb']:.1f} GB | "
              f"{r['seconds']:.1f} s | {r['rows_per_second'] / 1e6:.2f} M | {peaks} | "
              f"{r['scheduler_overhead_us']:.0f} us | {r['model_seconds']:.1f} s |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


if __name__ == "__main__":
    main()
