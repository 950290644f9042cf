"""Per-call overhead of the serving lookups (issue 12), as ratios against peers timed in the
same run: ``qe.take(ids)`` and ``qe.take(ids, out)`` against ``np.take(E, ids, axis=0)`` on the
float32 table, ``qe.dequantize(out)`` against FBGEMM's unpack and a one-bag ``qe.bag`` against
FBGEMM's bag op, on a 1000x64 table.

    python bench/overhead.py            # the GloVe-sized table (400000x300) and the 1000x64 one
    python bench/overhead.py --quick    # a 100000x300 table instead of the GloVe-sized one

Each case is one Python call repeated in a loop of about 2 ms; the cases take turns, round after
round, so a slow spell of a shared machine falls on all of them, and each reports the median of
its rounds. Times are per call. A ratio above 1x means the peer is slower than rowquant.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit

import numpy as np

import rowquant as rq


def loop_count(call, seconds=2e-3):
    number = 1
    while True:
        took = timeit.timeit(call, number=number)
        if took >= seconds / 4:
            return max(1, int(number * seconds / took))
        number *= 4


def warm_up(call, seconds=0.3):
    """Call for a while first (caches, lazy initialisation in the peers)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        call()


def measure(cases, rounds):
    """Median seconds per call of each case, the cases taking turns."""
    for call in cases.values():
        warm_up(call)
    numbers = {name: loop_count(call) for name, call in cases.items()}
    samples = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            samples[name].append(timeit.timeit(call, number=numbers[name]) / numbers[name])
    return {name: statistics.median(times) for name, times in samples.items()}


def take_cases(E, qe, n_ids, rng):
    ids = rng.integers(0, len(E), n_ids, dtype=np.int64)
    out = np.empty((n_ids, E.shape[1]), np.float32)
    return {
        f"np.take(E, ids, axis=0), {n_ids} ids": lambda: np.take(E, ids, axis=0),
        f"qe.take(ids), {n_ids} ids": lambda: qe.take(ids),
        f"qe.take(ids, out), {n_ids} ids": lambda: qe.take(ids, out),
    }


def fbgemm_ops():
    """FBGEMM's unpack and bag ops through torch, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    # one thread, as rowquant runs calls this small: with two, each call waits for torch's
    # OpenMP worker to wake, which on a shared machine takes from microseconds to milliseconds
    torch.set_num_threads(1)
    ops = torch.ops.quantized
    return torch, ops.embedding_bag_byte_unpack, ops.embedding_bag_byte_rowwise_offsets


def dequantize_cases(qe, fbgemm):
    """The whole small table, new and into out=, against FBGEMM's unpack of the same bytes in
    its fused layout."""
    n_rows, dim = qe.shape
    out = np.empty((n_rows, dim), np.float32)
    raw = np.empty(out.nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    aligned = raw[start : start + out.nbytes].view(np.float32).reshape(n_rows, dim)
    print(f"  (out= from np.empty starts {out.ctypes.data % 64} bytes past a 64-byte line)")
    cases = {}
    if fbgemm:
        torch, unpack, _ = fbgemm
        fused = torch.from_numpy(qe.to_fbgemm())
        cases["fbgemm embedding_bag_byte_unpack"] = lambda: unpack(fused)
    cases["qe.dequantize()"] = lambda: qe.dequantize()
    cases["qe.dequantize(out)"] = lambda: qe.dequantize(out)
    # the kernels store whole vectors: out= off a 64-byte line splits stores across two lines
    cases["qe.dequantize(out), out 64-byte aligned"] = lambda: qe.dequantize(aligned)
    return cases


def bag_cases(qe, fbgemm):
    """One bag of 20 ids, as 2-D ids and as ids with offsets, against FBGEMM's bag op."""
    n_rows, dim = qe.shape
    ids = np.random.default_rng(1).integers(0, n_rows, 20, dtype=np.int64)
    offsets = np.zeros(1, np.int64)
    out = np.empty((1, dim), np.float32)
    cases = {}
    if fbgemm:
        torch, _, lookup = fbgemm
        fused = torch.from_numpy(qe.to_fbgemm())
        ids_tensor, offsets_tensor = torch.from_numpy(ids), torch.from_numpy(offsets)
        cases["fbgemm embedding_bag_byte_rowwise_offsets"] = lambda: lookup(
            fused, ids_tensor, offsets_tensor)
    ids_2d = ids.reshape(1, 20)
    cases["qe.bag(ids (1, 20))"] = lambda: qe.bag(ids_2d)
    cases["qe.bag(ids (1, 20), out=out)"] = lambda: qe.bag(ids_2d, out=out)
    cases["qe.bag(ids (20,), offsets)"] = lambda: qe.bag(ids, offsets)
    return cases


def report(times, peer):
    width = max(map(len, times))
    for name, seconds in times.items():
        ratio = "" if name == peer else f"{times[peer] / seconds:6.2f}x"
        print(f"  {name:<{width}}  {seconds * 1e6:9.3f} us  {ratio}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 100000x300 table")
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args(argv)
    print(f"rowquant {rq.__file__}  {rq.backend_info()}")
    print(f"numpy {np.__version__}, Python {sys.version.split()[0]}")
    rng = np.random.default_rng(2017)
    n_rows = 100_000 if args.quick else 400_000
    E = rng.standard_normal((n_rows, 300), dtype=np.float32)
    qe = rq.quantize(E)
    for n_ids in (1, 64, 4096):
        cases = take_cases(E, qe, n_ids, rng)
        print(f"\ntake on {n_rows}x300, {n_ids} ids (ratio: np.take / case)")
        report(measure(cases, args.rounds), next(iter(cases)))
    del E, qe
    small = rq.quantize(rng.standard_normal((1000, 64), dtype=np.float32))
    fbgemm = fbgemm_ops()
    peer = "FBGEMM" if fbgemm else "the first case (no torch: no FBGEMM)"
    print(f"\ndequantize 1000x64 (ratio: {peer} / case)")
    cases = dequantize_cases(small, fbgemm)
    report(measure(cases, args.rounds), next(iter(cases)))
    print(f"\none bag of 20 ids on 1000x64 (ratio: {peer} / case)")
    cases = bag_cases(small, fbgemm)
    report(measure(cases, args.rounds), next(iter(cases)))

if __name__ == "__main__":
    main()
