"""The cost of 16-bit scales: rowquant's lookups on one random table with float32, bfloat16 and
float16 scales (the same codes, so the same bytes read but 2 bytes per row), in one run.

Times are the best of ``--repeat`` calls; each line gives the 16-bit table's time over the
float32 table's (1.00: the same speed). The table is random (normal rows, scales from the rows),
400000 x 300 by default as ``rowquant bench``'s glove case.

    python bench/scales16.py
    python bench/scales16.py --rows 2000000 --dim 64 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import rowquant as rq


def best(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    values = rng.standard_normal((args.rows, args.dim), np.float32)
    wide = rq.quantize(values)
    tables = {"float32": wide}
    for scale_dtype in ("bfloat16", "float16"):
        tables[scale_dtype] = rq.quantize(values, scale_dtype=scale_dtype)
    del values
    out = np.empty((args.rows, args.dim), np.float32)
    take_ids = rng.integers(0, args.rows, 65536)
    bag_ids = rng.integers(0, args.rows, 8192 * 20)
    offsets = np.arange(0, len(bag_ids), 20)
    weights = rng.random(len(bag_ids)).astype(np.float32)
    cases = {
        "dequantize": lambda t: t.dequantize(out=out, threads=args.threads),
        "take 65536": lambda t: t.take(take_ids, threads=args.threads),
        "bag 8192x20 sum": lambda t: t.bag(bag_ids, offsets, threads=args.threads),
        "bag 8192x20 weighted": lambda t: t.bag(bag_ids, offsets, weights=weights,
                                                threads=args.threads),
        "bag 8192x20 max": lambda t: t.bag(bag_ids, offsets, mode="max", threads=args.threads),
    }
    print(f"random table {args.rows} x {args.dim}, {args.threads} thread(s), SIMD "
          f"{rq.backend_info()['simd']}, best of {args.repeat}")
    print(f"{'case':<22} {'float32':>10} {'bfloat16':>16} {'float16':>16}")
    for name, call in cases.items():
        times = {dtype: best(lambda: call(table), args.repeat) for dtype, table in tables.items()}
        base = times["float32"]
        cells = [f"{times[d] * 1e3:7.2f} ms {times[d] / base:4.2f}x" for d in ("bfloat16", "float16")]
        print(f"{name:<22} {base * 1e3:7.2f} ms {cells[0]:>16} {cells[1]:>16}")


if __name__ == "__main__":
    main()
