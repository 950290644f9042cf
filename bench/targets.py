"""Check full benchmark runs against rowquant's speed targets (issue 12), and against a baseline.

    python bench/run.py --full --json native.json
    python bench/run.py --full --isa avx2 --json avx2.json
    python bench/targets.py native.json avx2.json --baseline bench/baseline.json

Prints, for each run given, one line per target: MET or MISSED (NO DATA when the run has no
case for it, such as a run without --full or without two threads), the target, and its worst
case with the ratio that decides. Ratios come from one run, so they hold on a busy machine:
``peer time / rowquant time`` (above 1x rowquant is faster) or ``rowquant time / floor time``
(the memory-copy floor; 1x is copy speed). The targets, on the tables glove, bert, recsys and
cache, at every thread count measured unless one is named:

- bags (sum, mean, weighted; 512 and 8192 bags of 20): >= 1.3x FBGEMM, at 1 and at 2 threads;
- take of 4096 ids (allocating and out=): >= 1.5x FBGEMM; of 65536 ids, allocating: faster
  than np.take;
- take of 1 id: out= no slower than allocating, and both no slower than np.take;
- quantize: >= 3x FBGEMM's prepack on every table; <= 1.5x the copy floor on glove at 2 threads;
- dequantize into out=: <= 1.2x the copy floor on glove and bert; faster than FBGEMM's unpack
  on cache.

The second run (``--isa avx2``: rowquant and FBGEMM on their AVX2 kernels) is held to the same
targets. With ``--baseline``, the run of the same ``isa`` must not be slower than the baseline
in any case by more than ``--margin`` (default 10%, the noise of a shared machine); every case
past it is printed. Exit status: 0 when every target is met and nothing regressed, 1 otherwise,
2 for a usage error (a file that cannot be read).

Examples
--------
>>> check(TARGETS[0], [])
('NO DATA', 'bags >= 1.3x FBGEMM at 1 thread: no such case in this run')
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

from rowquant.benchmark import Case, format_time

Result = dict[str, Any]
TABLES = ("glove", "bert", "recsys", "cache")
MARGIN = 0.10
WIDTH = 100


@dataclasses.dataclass(frozen=True)
class Target:
    """``value(result, run)`` must be at least ``goal`` (``above``: more than it; ``below``:
    at most it) for every result of a run that ``select`` picks. ``value`` returns None for a
    result without the times it needs (a peer that did not run)."""

    text: str
    select: Callable[[Case], bool]
    value: Callable[[Result, dict[tuple[Any, ...], Result]], float | None]
    goal: float
    kind: str = "at least"  # or "above", "at most"

    def meets(self, value: float) -> bool:
        if self.kind == "at least":
            return value >= self.goal
        if self.kind == "above":
            return value > self.goal
        return value <= self.goal

    def worst(self, values: Iterable[float]) -> float:
        return max(values) if self.kind == "at most" else min(values)


def key(result: Result, **changes: Any) -> tuple[Any, ...]:
    """What identifies a case across runs: operation, table, threads and parameters."""
    params = {**result["params"], **changes}
    return (result["op"], result["table"], result["threads"], tuple(sorted(params.items())))


def case_of(result: Result) -> Case:
    return Case(result["op"], result["table"], result["threads"], **result["params"])


def over_rowquant(peer: str) -> Callable[[Result, Any], float | None]:
    """``peer time / rowquant time``: above 1, rowquant is faster."""

    def value(result: Result, run: Any) -> float | None:
        seconds = result.get(peer)
        return None if seconds is None else seconds / result["rowquant_s"]

    return value


def over_floor(result: Result, run: Any) -> float | None:
    """``rowquant time / floor time``: 1 is copy speed."""
    floor = result.get("floor_s")
    return None if not floor else result["rowquant_s"] / floor


def allocating_over_out(result: Result, run: dict[tuple[Any, ...], Result]) -> float | None:
    """The allocating take's time over the same take into ``out=``: at least 1, no slower."""
    allocating = run.get(key(result, out=False))
    return None if allocating is None else allocating["rowquant_s"] / result["rowquant_s"]


def _bags(threads: int) -> Callable[[Case], bool]:
    return lambda case: (case.op == "bag" and case.threads == threads
                         and case.mode in ("sum", "mean", "weighted")
                         and case.bags in (512, 8192) and case.length == 20)


TARGETS = [
    Target("bags >= 1.3x FBGEMM at 1 thread", _bags(1), over_rowquant("fbgemm_s"), 1.3),
    Target("bags >= 1.3x FBGEMM at 2 threads", _bags(2), over_rowquant("fbgemm_s"), 1.3),
    Target(
        "take 4096 ids >= 1.5x FBGEMM",
        lambda case: case.op == "take" and case.ids == 4096,
        over_rowquant("fbgemm_s"),
        1.5,
    ),
    Target(
        "take 65536 ids, allocating, faster than np.take",
        lambda case: case.op == "take" and case.ids == 65536 and not case.out,
        over_rowquant("np_take_s"),
        1.0,
        "above",
    ),
    Target(
        "take 1 id: out= no slower than allocating (allocating / out=)",
        lambda case: case.op == "take" and case.ids == 1 and bool(case.out),
        allocating_over_out,
        1.0,
    ),
    Target(
        "take 1 id no slower than np.take",
        lambda case: case.op == "take" and case.ids == 1,
        over_rowquant("np_take_s"),
        1.0,
    ),
    Target(
        "quantize >= 3x FBGEMM's prepack",
        lambda case: case.op == "quantize",
        over_rowquant("fbgemm_s"),
        3.0,
    ),
    Target(
        "quantize <= 1.5x the copy floor on glove at 2 threads",
        lambda case: case.op == "quantize" and case.table == "glove" and case.threads == 2,
        over_floor,
        1.5,
        "at most",
    ),
    Target(
        "dequantize into out= <= 1.2x the copy floor on glove and bert",
        lambda case: case.op == "dequantize" and bool(case.out) and case.table in ("glove", "bert"),
        over_floor,
        1.2,
        "at most",
    ),
    Target(
        "dequantize into out= faster than FBGEMM's unpack on cache",
        lambda case: case.op == "dequantize" and bool(case.out) and case.table == "cache",
        over_rowquant("fbgemm_s"),
        1.0,
        "above",
    ),
]


def check(target: Target, results: list[Result]) -> tuple[str, str]:
    """(``MET``, ``MISSED`` or ``NO DATA``, the line's text) for one target on one run."""
    run = {key(result): result for result in results}
    values = []
    for result in results:
        if result["table"] in TABLES and target.select(case_of(result)):
            value = target.value(result, run)
            if value is not None:
                values.append((value, result))
    if not values:
        return "NO DATA", f"{target.text}: no such case in this run"
    worst = target.worst(value for value, _ in values)
    result = next(result for value, result in values if value == worst)
    status = "MET" if all(target.meets(value) for value, _ in values) else "MISSED"
    return status, f"{target.text}: worst {worst:.2f}x ({case_of(result).describe()})"


def regressions(
    results: list[Result], baseline: list[Result], margin: float
) -> tuple[list[str], int, float | None]:
    """(a line per case slower than the baseline by more than ``margin``, the number of cases
    compared, the largest slowdown as a fraction or None)."""
    before = {key(result): result for result in baseline}
    lines, compared, largest = [], 0, None
    for result in results:
        old = before.get(key(result))
        if old is None:
            continue
        compared += 1
        slowdown = result["rowquant_s"] / old["rowquant_s"] - 1
        largest = slowdown if largest is None else max(largest, slowdown)
        if slowdown > margin:
            lines.append(
                f"  slower: {case_of(result).describe()}: {format_time(result['rowquant_s'])}"
                f", baseline {format_time(old['rowquant_s'])} ({slowdown:+.0%})"
            )
    return lines, compared, largest


def show(status: str, text: str) -> None:
    """One line per target (wrapped past :data:`WIDTH` columns, continuations indented)."""
    for line in textwrap.wrap(f"{status:<8} {text}", WIDTH, subsequent_indent=" " * 9):
        print(line)


def load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            report = json.load(file)
    except (OSError, ValueError) as error:
        raise SystemExit(f"targets.py: cannot read {path}: {error}") from None
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise SystemExit(f"targets.py: {path} is not the JSON of rowquant bench --json")
    return report


def describe_run(path: str, report: dict[str, Any]) -> str:
    machine = report.get("machine", {})
    simd = machine.get("simd", {})
    rowquant = simd.get("rowquant") or machine.get("backend", {}).get("simd") or "?"
    return (f"== {path}: --isa {report.get('isa', 'native')}, rowquant {rowquant}, "
            f"FBGEMM {simd.get('fbgemm', '?')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="targets.py",
        description="Check rowquant bench --full --json results against the targets of "
        "issue 12 (one line per target), and against a baseline run.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN.json",
                        help="the JSON of a full run, then optionally that of an --isa avx2 run")
    parser.add_argument("--baseline", metavar="BASE.json",
                        help="an earlier run: no case may be slower than it by more than MARGIN")
    parser.add_argument("--margin", type=float, default=MARGIN, metavar="MARGIN",
                        help=f"the noise allowed against the baseline (default {MARGIN})")
    args = parser.parse_args(argv)
    if len(args.runs) > 2:
        parser.error("give one run, or two: the native one and the --isa avx2 one")
    if not args.margin >= 0:
        parser.error(f"--margin must be at least 0, got {args.margin}")
    reports = {path: load(path) for path in args.runs}
    good = True
    for path, report in reports.items():
        print(textwrap.fill(describe_run(path, report), WIDTH, subsequent_indent=" " * 9))
        for target in TARGETS:
            status, text = check(target, report["results"])
            good &= status == "MET"
            show(status, text)
    if args.baseline is not None:
        baseline = load(args.baseline)
        isa = baseline.get("isa", "native")
        same = [path for path, report in reports.items() if report.get("isa", "native") == isa]
        path = same[0] if same else args.runs[0]
        print(textwrap.fill(f"== {path} against the baseline {args.baseline} (--isa {isa})",
                            WIDTH, subsequent_indent=" " * 9))
        if not same:
            print(f"  note: no run given with --isa {isa}; comparing {path} anyway")
        lines, compared, largest = regressions(
            reports[path]["results"], baseline["results"], args.margin)
        text = f"no case slower than the baseline by more than {args.margin:.0%}"
        if not compared:
            show("NO DATA", f"{text}: no case in common")
            good = False
        else:
            good &= not lines
            show("MISSED" if lines else "MET",
                 f"{text}: {compared} cases compared, largest change {largest:+.1%}")
            for line in lines:
                print(line)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
