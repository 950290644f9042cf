"""Timings of the score kernels (``_backend.kernels.scores`` into a preallocated out) on
400000x300 random codes, for each SIMD path, at threads 1 and 2, against the floor of
``np.copyto`` of the 120 MB of codes and numpy's float32 ``E @ X.T`` ("blas"; its threads are
OPENBLAS_NUM_THREADS'). Best of a few runs each.

    python bench/scores.py [paths] [precisions] [query counts]
    python bench/scores.py avx512vnni,avx512 fast,exact,blas 1,64,1024
"""
import sys, time, numpy as np
from rowquant import _api, _backend, reference as ref
K = _backend.kernels
N, D = 400000, 300
rng = np.random.default_rng(1)
codes = rng.integers(0, 256, (N, D), dtype=np.uint8)
scales = (rng.random(N) * 0.01 + 0.001).astype(np.float32)
def best(f, reps):
    f(); ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
paths = [p for p in sys.argv[1].split(",")] if len(sys.argv) > 1 else _api.simd_paths()
precisions = sys.argv[2].split(",") if len(sys.argv) > 2 else ["fast", "exact"]
Bs = [int(b) for b in sys.argv[3].split(",")] if len(sys.argv) > 3 else [1, 64, 1024]
reps = {1: 10, 64: 5, 1024: 2}
dst = np.empty_like(codes)
print(f"copy floor np.copyto 120MB: {best(lambda: np.copyto(dst, codes), 10)*1e3:.2f} ms")
E = ref.dequantize(codes, scales)
for B in Bs:
    X = rng.standard_normal((B, D)).astype(np.float32)
    if "blas" in precisions:
        outb = np.empty((N, B), np.float32)
        tb = best(lambda: np.matmul(E, X.T, out=outb), reps.get(B, 2))
        print(f"B={B:5d} numpy E_float @ X.T: {tb*1e3:9.2f} ms")
    q, t = ref.query_codes(X)
    qf_fast = ref.query_factors(t, None, B)
    qf_exact = np.ones(B)
    out = np.empty((B, N), np.float32)
    for path in paths:
        _api.use_simd(path)
        for prec in precisions:
            if prec == "blas": continue
            qq, qf = (q, qf_fast) if prec == "fast" else (X, qf_exact)
            for th in (1, 2):
                tm = best(lambda: K.scores(codes, scales, qq, K.DOT_PRECISIONS[prec], None, qf, out, th), reps.get(B, 2))
                gbs = N * D / tm / 1e9
                print(f"B={B:5d} {path:11s} {prec:5s} threads={th}: {tm*1e3:9.2f} ms  ({gbs:6.2f} GB/s codes)")
