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

from ._version import __version__

__all__ = ["main", "build_parser"]

_BENCH_EPILOG = """\
examples:
  rowquant bench                          quick run (under a minute): a 100000x300 table and a
                                          1000x64 one, at 1 thread and all cores
  rowquant bench --full --json out.json   every case on the glove, bert, recsys and cache
                                          tables (many minutes), results also saved as JSON
  rowquant bench --tables bert --threads 1
  rowquant bench --peers reference floor  skip PyTorch (and its import)
  python -m rowquant bench --markdown     the same table, in Markdown

Times are medians after a warm-up. Peer columns give the peer's time and peer/rowquant (above
1x rowquant is faster); rq/floor is rowquant's time over that of np.copyto moving the same
number of bytes as the operation must read and write. See the rowquant.benchmark docstring.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
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


def _add_bench(commands, common) -> None:
    from .benchmark import FULL_TABLES, PEERS, QUICK_TABLES, TABLES

    parser = commands.add_parser(
        "bench",
        parents=[common],
        help="time rowquant against numpy, PyTorch/FBGEMM and a memory-copy floor",
        description=(
            "Time rowquant's quantize, dequantize, take and bag against numpy, PyTorch/FBGEMM\n"
            "and the memory-copy floor, all in the same run on the same data, and print the\n"
            "ratios."
        ),
        epilog=_BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        type=_positive_int,
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
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    parser.add_argument(
        "--markdown", action="store_true", help="print the table in Markdown at the end"
    )
    parser.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from . import benchmark

    if args.json is not None:
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):  # fail now, not after a long run
            raise OSError(f"cannot write {args.json}: no folder {folder}")
    report = benchmark.bench(
        full=args.full,
        tables=_flatten(args.tables),
        threads=args.threads,
        budget=args.budget,
        peers=_flatten(args.peers),
    )
    if args.markdown:
        print()
        print(benchmark.format_markdown(report["results"]))
    if args.json is not None:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
            file.write("\n")
        print(f"\nresults written to {args.json}")
    return 0


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
    except Exception as error:
        if debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"rowquant {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
