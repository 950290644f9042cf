"""The ``rowquant`` command.

Each command is a subparser registered by one ``_add_<command>`` function and run by one
``_run_<command>`` function that returns the exit status. Exit status: 0 on success, 1 on a
failure (a one-line message on stderr; ``--debug`` shows the traceback), 2 on a usage error
(argparse's convention).

Examples
--------
>>> from rowquant import cli
>>> args = cli.build_parser().parse_args(["bench", "--tables", "cache,bert", "--threads", "1", "2"])
>>> args.command, args.tables, args.threads
('bench', [['cache', 'bert']], [1, 2])
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ._formatting import human_bytes
from ._text import FORMATS as WORD_VECTOR_FORMATS
from ._threads import MAX_THREADS
from ._version import __version__

__all__ = ["main", "build_parser"]

_BENCH_EPILOG = """\
examples:
  rowquant bench                          quick run (under a minute): a 100000x300 table and a
                                          1000x64 one, at 1 thread and all cores
  rowquant bench --full --json out.json   every case on the glove, bert, recsys and cache
                                          tables (many minutes), results also saved as JSON
  rowquant bench --tables bert --threads 1
  rowquant bench --isa avx2               rowquant and FBGEMM both on their AVX2 kernels
  rowquant bench --bits 4                 4-bit rows against FBGEMM's 4-bit operators
  rowquant bench --peers reference floor  skip PyTorch (and its import)
  python -m rowquant bench --markdown     the table again at the end in Markdown, with times

Times are medians after a warm-up. The table gives rowquant's time and, for each peer, peer
time / rowquant time: above 1x rowquant is faster. The floor column is the time of np.copyto
moving the bytes the operation must read and write over rowquant's: near 1x is copy speed. A
summary follows the table; --json and --markdown also hold every peer's time. The header names
the SIMD path of rowquant and of FBGEMM (a best guess for FBGEMM, which cannot be asked, unless
FBGEMM_ENABLE_INSTRUCTIONS sets it). --isa overrides ROWQUANT_SIMD and sets
FBGEMM_ENABLE_INSTRUCTIONS (AVX2, or unset for native). See the rowquant.benchmark docstring.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _thread_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS}, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _names(choices):
    """An argparse type: one name, or several separated by commas, each from ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown name {(unknown or [text])[0]!r} (choose from {', '.join(choices)})"
            )
        return names

    return parse


def _flatten(groups):
    return None if groups is None else [name for group in groups for name in group]


def _command(commands, common, name: str, summary: str, description: str, epilog: str):
    """The subparser of one command: ``summary`` in the command list, ``description`` and the
    ``epilog`` of examples under its --help, laid out as written; --debug from ``common``."""
    return commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_bench(commands, common) -> None:
    from .benchmark import BITS, FULL_TABLES, ISAS, PEERS, QUICK_TABLES, TABLES

    parser = _command(
        commands,
        common,
        "bench",
        "time rowquant against numpy, PyTorch/FBGEMM and a memory-copy floor",
        "Time rowquant's quantize, dequantize, take and bag against numpy, PyTorch/FBGEMM\n"
        "and the memory-copy floor, all in the same run on the same data, and print the\n"
        "ratios.",
        _BENCH_EPILOG,
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"every case on the tables {', '.join(FULL_TABLES)} (many minutes); default: a "
        f"representative subset on {', '.join(QUICK_TABLES)}",
    )
    parser.add_argument(
        "--tables",
        nargs="+",
        type=_names(tuple(TABLES)),
        metavar="NAME",
        help=f"tables to use, from {', '.join(f'{k} ({n}x{d})' for k, (n, d) in TABLES.items())}",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        type=_thread_count,
        metavar="N",
        help="thread counts to measure (default: 1 and all cores)",
    )
    parser.add_argument(
        "--peers",
        nargs="+",
        type=_names(PEERS),
        metavar="NAME",
        help=f"peers to measure, from {', '.join(PEERS)} (default: all)",
    )
    parser.add_argument(
        "--budget",
        type=_positive_float,
        metavar="SECONDS",
        help="time spent on each measurement (default 0.1, or 0.25 with --full); small values "
        "give a fast, rough run",
    )
    parser.add_argument(
        "--isa",
        choices=ISAS,
        default="native",
        help="the kernels both sides run: native, the best each has for this CPU (default); "
        "avx2, the AVX2 kernels of both, like for like on an AVX-512 CPU",
    )
    parser.add_argument(
        "--bits",
        type=int,
        choices=BITS,
        default=8,
        help="the codes' width: 8, the paper's scheme (default); 4 or 2, packed rows with a "
        "float16 scale and bias, against FBGEMM's 4-bit and 2-bit operators",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results, times and summary to PATH as JSON"
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table again at the end in Markdown, with every peer's time",
    )
    parser.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from . import benchmark

    if args.json is not None:  # fail now, not after a long run
        if not args.json:
            raise ValueError("the --json path is empty")
        if os.path.isdir(args.json):
            raise OSError(f"cannot write {args.json}: it is a folder")
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            raise OSError(f"cannot write {args.json}: no folder {folder}")
    report = benchmark.bench(
        full=args.full,
        tables=_flatten(args.tables),
        threads=args.threads,
        budget=args.budget,
        peers=_flatten(args.peers),
        isa=args.isa,
        bits=args.bits,
    )
    if args.markdown:
        print()
        print(benchmark.format_markdown(report["results"], report["summary"]))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
            file.write("\n")
        print(f"\nresults written to {args.json}")
    return 0


_QUANTIZE_EPILOG = """\
examples:
  rowquant quantize glove.npy -o glove.safetensors
  rowquant quantize glove.6B.300d.txt -o glove.safetensors
  rowquant quantize cc.en.300.vec -o fasttext.safetensors
  rowquant quantize GoogleNews-vectors-negative300.bin -o word2vec.safetensors
  rowquant quantize model.safetensors --tensor embeddings.word_embeddings.weight -o words.safetensors
  rowquant quantize huge.npy -o huge.safetensors --chunk-rows 100000 --threads 2
  rowquant quantize glove.npy -o glove4.safetensors --bits 4 --range-search
  rowquant quantize glove.npy -o glove-bf16.safetensors --scale-dtype bfloat16
  rowquant quantize parts/ -o table/ --workers 2 --rows-per-shard 4000000
                          a folder of .npy files, on 2 worker processes, into shards

INPUT is a .npy file (float16/32/64), a .safetensors file (a 2-D F16, BF16, F32 or F64
tensor; --tensor picks one when there are several), or a word-vector file: GloVe text,
word2vec or fastText text (.vec, a header line 'N D' first) or word2vec binary (.bin). The
format is recognised by the content; --format names it when that is not enough (a GloVe file
whose first line is two numbers). Word-vector files keep their words as the table's keys, and
a fault in one (a line with too few values, a word given twice) is reported with its line.
A folder INPUT holds .npy or .safetensors files whose rows follow one another in name order;
a Zarr array's folder is read as Zarr. Those, --workers and --rows-per-shard run on Dask
(pip install 'rowquant[dask]'): --workers N starts a local cluster of N processes, each
reading, quantizing and (into shards) writing its own blocks of rows.
It is read in chunks, so tables larger than memory work. OUTPUT is written atomically: on any failure nothing is left at OUTPUT, and a file
already there stays as it was. A file replaced keeps its permissions; a symlink is written
through to its target; a device, named pipe or socket is refused. A run killed mid-write leaves
a hidden .OUTPUT.XXXXXXXX.partial file, which the next run writing OUTPUT deletes.
'rowquant inspect OUTPUT' shows the result.
"""

_INSPECT_EPILOG = """\
examples:
  rowquant inspect glove.safetensors
  rowquant inspect glove.safetensors --against glove.npy
  rowquant inspect model.safetensors          lists the tensors of any safetensors or .npy file
  rowquant inspect glove.safetensors --against glove.npy --json > report.json
  rowquant inspect glove.safetensors --against glove.npy --schemes   size and error per scheme
"""


def _add_quantize(commands, common) -> None:
    parser = _command(
        commands,
        common,
        "quantize",
        "quantize a float table (.npy, .safetensors, GloVe, word2vec, fastText) into a "
        "rowquant file",
        "Quantize a float embedding table from a file, chunk by chunk, into a\n"
        "rowquant safetensors file (uint8 codes and one float32 scale per row).",
        _QUANTIZE_EPILOG,
    )
    parser.add_argument(
        "input", metavar="INPUT",
        help="a .npy, .safetensors, GloVe, word2vec or fastText text, or word2vec binary file; "
        "or a folder of .npy and .safetensors files, or a Zarr array (with Dask)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="the rowquant file to write (through a symlink, its target is replaced)",
    )
    parser.add_argument(
        "--tensor", metavar="NAME", help="the tensor to quantize, for safetensors files"
    )
    parser.add_argument(
        "--format",
        choices=WORD_VECTOR_FORMATS,
        help="read INPUT as this word-vector format (default: recognised by its content; "
        "fastText .vec files are word2vec)",
    )
    parser.add_argument(
        "--threads", type=_thread_count, metavar="N", help="threads to use (default: all cores)"
    )
    parser.add_argument(
        "--chunk-rows",
        type=_positive_int,
        metavar="N",
        help="rows read and quantized at a time (default: about 32 MB of float32)",
    )
    parser.add_argument(
        "--bits", type=int, choices=(8, 4, 2), default=8,
        help="bits per value: 8 (default; float32 scale per row), or 4 or 2 (FBGEMM's N-bit "
        "rows: float16 scale and bias per row)",
    )
    parser.add_argument(
        "--range-search", action="store_true",
        help="with --bits 4 or 2: search each row's clipping range to lower its error",
    )
    parser.add_argument(
        "--scale-dtype", choices=("float32", "bfloat16", "float16"), default="float32",
        help="with --bits 8: how each row's scale is stored: float32 (default), or 16 bits, "
        "2 bytes per row fewer (bfloat16 as CLD3 stores them; float16 for rows up to "
        "127 * 65504); the codes are computed against the rounded scale",
    )
    parser.add_argument(
        "--scale-rounding", choices=("nearest", "truncate"), default="nearest",
        help="with a 16-bit --scale-dtype: round the scale to nearest (default) or toward "
        "zero, as CLD3 does",
    )
    parser.add_argument(
        "--workers", type=_positive_int, metavar="N",
        help="quantize on a local Dask cluster of N worker processes (pip install "
        "'rowquant[dask]'); OUTPUT not ending in .safetensors is then a folder of shards",
    )
    parser.add_argument(
        "--rows-per-shard", type=_positive_int, metavar="N",
        help="write OUTPUT as a folder of shards of N rows each and their index, which "
        "'rq.load(OUTPUT)' opens as one table (with Dask)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary"
    )
    parser.set_defaults(run=_run_quantize)


def _run_quantize(args) -> int:
    from .io import quantize_file

    summary = quantize_file(
        args.input,
        args.output,
        tensor=args.tensor,
        chunk_rows=args.chunk_rows,
        threads=args.threads,
        progress=not args.quiet and sys.stderr.isatty(),
        report=not args.quiet,
        format=args.format,
        bits=args.bits,
        range_search=args.range_search,
        scale_dtype=args.scale_dtype,
        scale_rounding=args.scale_rounding,
        workers=args.workers,
        rows_per_shard=args.rows_per_shard,
    )
    if args.quiet:
        return 0
    report = summary.report
    source = summary.tensor and f"{summary.source} [{summary.tensor}]" or summary.source
    seconds = max(summary.seconds, 1e-9)
    smaller = (
        f", {summary.source_bytes / summary.output_bytes:.2f}x smaller" if summary.source_bytes else ""
    )
    print(f"quantized {source} -> {summary.output}")
    if args.bits != 8:
        print(f"  scheme  {_SCHEME_OF_BITS[args.bits]}"
              + (", range search" if args.range_search else ""))
    elif args.scale_dtype != "float32":
        from ._scheme import SYMMETRIC_SCHEMES

        print(f"  scheme  {SYMMETRIC_SCHEMES[args.scale_dtype].name}, scales rounded "
              f"{'to nearest' if args.scale_rounding == 'nearest' else 'toward zero'}")
    print(f"  rows    {summary.rows:,}")
    print(f"  dim     {summary.dim:,}")
    if summary.keys:
        print(f"  keys    {summary.rows:,} words, from the file")
    print(
        f"  size    {human_bytes(summary.source_bytes)} ({summary.source_dtype}) -> "
        f"{human_bytes(summary.output_bytes)}{smaller}"
    )
    print(
        f"  time    {summary.seconds:.3g} s, {human_bytes(summary.source_bytes / seconds)}/s"
    )
    if report is not None and summary.rows and summary.dim:
        print(
            f"  error   max {report.max_abs_error:.4g}, mean {report.mean_abs_error:.4g} "
            f"(SNR {report.snr_db:.1f} dB, min row cosine {report.cosine_min:.6f})"
        )
    return 0


def _add_inspect(commands, common) -> None:
    parser = _command(
        commands,
        common,
        "inspect",
        "show a rowquant file's header, and its error against the original",
        "Show what a rowquant file holds (rows, dim, sizes, metadata, scales) and,\n"
        "with --against, how far it is from the float table it came from. Other .safetensors\n"
        "and .npy files get a list of their tensors.",
        _INSPECT_EPILOG,
    )
    parser.add_argument("file", metavar="FILE", help="a rowquant .safetensors file")
    parser.add_argument(
        "--against", metavar="ORIGINAL",
        help="the float table to compare (.npy, .safetensors, or a GloVe, word2vec or fastText "
        "file)"
    )
    parser.add_argument(
        "--tensor", metavar="NAME", help="the tensor of ORIGINAL, when it holds several"
    )
    parser.add_argument(
        "--schemes", action="store_true",
        help="with --against: also quantize ORIGINAL under each scheme (8-bit, 4-bit, 4-bit "
        "with range search, 2-bit) and compare their sizes and errors (the range search takes "
        "a while on large tables)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=_run_inspect)


_KEYS_SHOWN = 5  # the first keys inspect shows
_SCHEME_OF_BITS = {8: "rowwise-symmetric-u8", 4: "rowwise-affine-u4-f16", 2: "rowwise-affine-u2-f16"}
_FORMAT_METADATA = ("format", "version", "scheme", "bias")  # shown on the format line


def _describe_file(path: str) -> dict:
    """What the file holds: a rowquant table's header and scales, or any other file's tensors
    (a word-vector file's table, as its format, rows and dim)."""
    from . import _safetensors, io
    from ._sources import open_source
    from ._text import detect_format, read_head

    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        head = read_head(file, size)
        file.seek(0)
        if not head.startswith(b"\x93NUMPY") and detect_format(head) is not None:
            with open_source(path) as source:
                entry = {"name": None, "dtype": source.dtype_name,
                         "shape": [source.rows, source.dim]}
                words = {"format": source.format, "rows": source.rows, "dim": source.dim,
                         "first": source.keys[:_KEYS_SHOWN]}
            return {"file": path, "file_bytes": size, "rowquant": False, "tensors": [entry],
                    "word_vectors": words}
        if file.read(6) == b"\x93NUMPY":
            import numpy as np

            try:
                array = np.load(path, mmap_mode="r")
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from None
            return {
                "file": path,
                "file_bytes": size,
                "rowquant": False,
                "tensors": [{"name": None, "dtype": str(array.dtype), "shape": list(array.shape)}],
            }
        try:
            header = _safetensors.read_header(file, size)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    description = {
        "file": path,
        "file_bytes": size,
        "rowquant": header.metadata.get("format") == "rowquant",
        "metadata": header.metadata,
        "tensors": [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "offset": t.start}
            for t in header.tensors.values()
        ],
    }
    if description["rowquant"]:
        table = io.load_table(path)
        rows, dim = table.shape
        scales = table.scale_values()
        description.update(
            scheme=table.scheme.name,
            bits=table.scheme.bits,
            rows=rows,
            dim=dim,
            float32_bytes=4 * rows * dim,
            scales={
                "min": float(scales.min()) if rows else None,
                "max": float(scales.max()) if rows else None,
                "zero_rows": int((scales == 0).sum()),
            },
        )
        if table.keys is not None:
            description["keys"] = {
                "count": len(table.keys),
                "first": table.keys[:_KEYS_SHOWN],  # decodes these only
            }
    return description


def _run_inspect(args) -> int:
    from .report import error_report

    if args.tensor is not None and args.against is None:
        raise _UsageError("--tensor names a tensor of ORIGINAL: it needs --against")
    if args.schemes and args.against is None:
        raise _UsageError("--schemes quantizes ORIGINAL under each scheme: it needs --against")
    description = _describe_file(args.file)
    if args.against is not None:
        if not description["rowquant"]:
            raise ValueError(f"{args.file} is not a rowquant table; --against needs one")
        report = error_report(args.against, args.file, tensor=args.tensor)
        description["against"] = args.against
        description["error"] = report.to_dict()
        if args.schemes:
            from .report import compare_schemes

            description["schemes"] = compare_schemes(
                args.against, tensor=args.tensor,
                progress=None if args.json else lambda name: print(
                    f"measuring   {name} ...", file=sys.stderr, flush=True),
            )
    if args.json:
        print(json.dumps(description, indent=1))
        return 0
    print(f"file        {args.file} ({human_bytes(description['file_bytes'])})")
    if "word_vectors" in description:
        words = description["word_vectors"]
        shown = ", ".join(_printable(repr(word)) for word in words["first"])
        more = ", ..." if words["rows"] > len(words["first"]) else ""
        print(f"            a {description['tensors'][0]['dtype']} file, not a rowquant table: "
              f"{words['rows']:,} words of {words['dim']:,} values ({shown}{more})")
        print(f"make a rowquant table from it with: rowquant quantize {args.file} -o OUTPUT")
        return 0
    if not description["rowquant"]:
        print("            not a rowquant table; its tensors:")
        for tensor in description["tensors"]:
            name = _printable(tensor["name"]) if tensor["name"] is not None else "(the array)"
            print(f"  {name}  {tensor['dtype']} {tensor['shape']}")
        several = len(description["tensors"]) > 1
        print(
            "make a rowquant table from it with: rowquant quantize FILE "
            + ("--tensor NAME " if several else "")
            + "-o OUTPUT"
        )
        return 0
    metadata = description["metadata"]
    rows, dim = description["rows"], description["dim"]
    larger = (
        f" ({description['float32_bytes'] / description['file_bytes']:.2f}x larger)"
        if description["float32_bytes"]
        else ""
    )
    bias = f", bias {metadata['bias']}" if "bias" in metadata else ""
    print(
        f"format      rowquant version {metadata['version']}, {metadata['scheme']}{bias}"
        + ("" if description["bits"] == 8 else f" ({description['bits']}-bit rows)")
    )
    print(f"rows        {rows:,}")
    print(f"dim         {dim:,}")
    print(
        f"size        {human_bytes(description['file_bytes'])}; as float32 "
        f"{human_bytes(description['float32_bytes'])}{larger}"
    )
    if "keys" in description:
        keys = description["keys"]
        shown = ", ".join(_printable(repr(key)) for key in keys["first"])
        more = ", ..." if keys["count"] > len(keys["first"]) else ""
        print(f"keys        {keys['count']:,}: {shown}{more}")
    if any(tensor["name"] == "norms" for tensor in description["tensors"]):
        print("norms       stored: cosine similarity reads them instead of a pass over the codes")
    extra = {name: value for name, value in metadata.items() if name not in _FORMAT_METADATA
             and not (name == "dim" and description["bits"] != 8)}  # N-bit files' own dim
    for name, value in extra.items():
        print(f"metadata    {_printable(name)}: {_printable(value)}")
    scales = description["scales"]
    if rows:
        print(
            f"scales      min {scales['min']:.6g}, max {scales['max']:.6g}, "
            f"{scales['zero_rows']:,} all-zero rows"
        )
    for tensor in description["tensors"]:
        print(
            f"tensor      {_printable(tensor['name'])}: {tensor['dtype']} {tensor['shape']} "
            f"at byte {tensor['offset']:,}"
        )
    if args.against is not None:
        print(f"against     {args.against}")
        print(report)
    if args.schemes:
        from .report import format_schemes

        print()
        print(f"{args.against} under each scheme:")
        print(format_schemes(description["schemes"]))
    return 0


def _printable(text: str) -> str:
    """``text`` with what no stream can encode (JSON may spell lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _UsageError(Exception):
    """A combination of arguments argparse cannot check; exits 2 like its own errors."""


def _one_line(error: BaseException) -> str:
    """The message for a failure: an OSError as 'reason: file', anything else its first line."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rowquant`` command, one subparser per command."""
    # --debug is accepted before and after the command; SUPPRESS keeps the subparser from
    # resetting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback when the command fails",
    )
    parser = argparse.ArgumentParser(
        prog="rowquant",
        description="Exact per-row 8-bit quantization of float32 embedding tables.",
        epilog="Run 'rowquant COMMAND --help' for the options of a command.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"rowquant {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_quantize(commands, common)
    _add_inspect(commands, common)
    _add_bench(commands, common)
    return parser


def main(argv=None) -> int:
    """Run the ``rowquant`` command with ``argv`` (default ``sys.argv[1:]``); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"rowquant {args.command}: interrupted", file=sys.stderr)
        return 130
    except _UsageError as error:
        print(f"rowquant {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if debug:
            raise
        message = _one_line(error)
        print(f"rowquant {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
