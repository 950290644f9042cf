"""How benchmark results read: the printed table (at most 100 columns), its Markdown twin and
the closing summary.

The printed table gives rowquant's time and one ratio per peer, ``peer time / rowquant time``
(above 1x, rowquant is faster); the copy floor is given the same way, ``floor time / rowquant
time`` (near 1x, rowquant runs at copy speed). The peers' own times are in the JSON and the
Markdown table.

Examples
--------
>>> from rowquant._benchmark_output import format_ratio
>>> format_ratio(0.678), format_ratio(13.26), format_ratio(866.4)
('0.68x', '13.3x', '866x')
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

from ._benchmark_cases import case_of, result_key

__all__ = [
    "WIDTH",
    "format_time",
    "format_ratio",
    "format_header",
    "format_column_titles",
    "format_table_title",
    "format_row",
    "format_table",
    "format_markdown",
    "summarize",
    "format_summary",
]

#: The widest line the printed report may have.
WIDTH = 100

# The printed columns after rowquant's time: the peers by weight (FBGEMM is the peer doing the
# same job), then the floor. Titles for the table, and names for sentences.
_COLUMNS = (
    ("fbgemm", "FBGEMM"),
    ("np.take", "np.take"),
    ("torch", "torch"),
    ("reference", "ref"),
    ("floor", "floor"),
)
_NAMES = {
    "fbgemm": "FBGEMM",
    "np.take": "np.take",
    "torch": "torch.quantize_per_channel",
    "reference": "the numpy reference",
}
_WIDTHS = {"case": 23, "threads": 3, "rowquant": 9, "peer": 8, "busy": 4}
_GAP = "  "


def format_time(seconds: float) -> str:
    """``seconds`` with three significant digits in a fitting unit.

    Examples
    --------
    >>> from rowquant.benchmark import format_time
    >>> format_time(0.0123), format_time(2.5e-6), format_time(3.0)
    ('12.3 ms', '2.50 us', '3.00 s')
    """
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        # Choose the unit and the digits after rounding, so 0.99999 s reads "1.00 s".
        if round(seconds / scale, 2) >= 1 or unit == "ns":
            value = seconds / scale
            digits = 2 if round(value, 2) < 10 else 1 if round(value, 1) < 100 else 0
            return f"{value:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def format_ratio(ratio: float) -> str:
    """A ratio with three significant digits and an ``x`` (digits chosen after rounding, so
    9.996 reads ``10.0x``)."""
    digits = 2 if round(ratio, 2) < 10 else 1 if round(ratio, 1) < 100 else 0
    return f"{ratio:.{digits}f}x"


# Joins the words of a phrase that a line should not break (textwrap breaks at ASCII spaces only).
_KEEP = "\N{NO-BREAK SPACE}"


def _wrap(paragraph: str) -> list[str]:
    """``paragraph`` in lines of at most :data:`WIDTH` columns, continuations indented."""
    lines = textwrap.wrap(paragraph, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return [line.replace(_KEEP, " ") for line in lines]


def _unbroken(phrase: str) -> str:
    return phrase.replace(" ", _KEEP)


def _simd_text(info: dict[str, Any]) -> str:
    simd = info.get("simd") or {}
    rowquant = simd.get("rowquant") or "none (numpy backend)"
    if not info.get("torch"):
        fbgemm = "FBGEMM not installed"
    else:
        fbgemm = f"FBGEMM {simd.get('fbgemm', 'unknown')} ({simd.get('fbgemm_basis', '?')})"
    return f"SIMD: rowquant {rowquant}; {fbgemm}"


def format_header(info: dict[str, Any]) -> str:
    """The lines above the table: the machine, the versions, the SIMD path of rowquant and
    FBGEMM, and how to read the columns."""
    backend = info["backend"]
    memory = f", {info['memory_gb']} GB" if info.get("memory_gb") else ""
    load = info.get("load_average")
    load_text = f", load average {' '.join(map(str, load))} at start" if load else ""
    why = f" ({backend['reason']})" if backend.get("reason") else ""
    paragraphs = [
        f"rowquant {info['rowquant']} benchmark, {info['date']}",
        f"cpu: {info['cpu']}, {info['cores']} cores{memory}{load_text}",
        f"{info['platform']}; python {info['python']}, numpy {info['numpy']}, "
        f"torch {info['torch'] or 'not installed'}",
        f"rowquant: {backend['backend']} backend{why}, {backend['threads']} threads by default",
        _simd_text(info),
        "peers: peer time / rowquant time, above 1x rowquant is faster (times: --json, "
        "--markdown)",
        "floor: the same for np.copyto moving the bytes the operation must read and write "
        "(1x: copy speed)",
        "busy: cores other processes kept busy; threads + busy above the cores means contention",
        "FBGEMM's 'mean' bags are sums: it ignores mode",
    ]
    return "\n".join(line for paragraph in paragraphs for line in _wrap(paragraph))


def _cells(*cells: str) -> str:
    return _GAP.join(cells)


def format_column_titles() -> str:
    """The line of column titles."""
    return _cells(
        "case".ljust(_WIDTHS["case"]),
        "thr".rjust(_WIDTHS["threads"]),
        "rowquant".rjust(_WIDTHS["rowquant"]),
        *(title.rjust(_WIDTHS["peer"]) for _, title in _COLUMNS),
        "busy".rjust(_WIDTHS["busy"]),
    )


def format_table_title(name: str, shape: tuple[int, int], seconds: float | None = None) -> str:
    """The line that opens the rows of one table: name, shape and float32 size."""
    n_rows, dim = shape
    size = 4 * n_rows * dim / 1e6
    made = f", generated in {seconds:.1f} s" if seconds is not None else ""
    title = f"-- {name}: {n_rows} x {dim} float32 ({size:.0f} MB){made} "
    return title.ljust(len(format_column_titles()), "-")


def _ratio(result: dict[str, Any], peer: str) -> float | None:
    """``peer time / rowquant time`` for one result, or None without a time."""
    seconds = result.get(result_key(peer))
    return None if seconds is None else float(seconds) / float(result["rowquant_s"])


def format_row(result: dict[str, Any]) -> str:
    """One line of the table for one result of :func:`rowquant.benchmark.run`: rowquant's time
    and one ratio per peer; ``-`` where the peer does not do the operation, ``skip`` where it
    was not asked for, ``n/a`` where it could not run (the summary says why)."""
    cells = [
        case_of(result).label.ljust(_WIDTHS["case"]),
        str(result["threads"]).rjust(_WIDTHS["threads"]),
        format_time(result["rowquant_s"]).rjust(_WIDTHS["rowquant"]),
    ]
    for peer, _ in _COLUMNS:
        ratio = _ratio(result, peer)
        if ratio is not None:
            text = format_ratio(ratio)
        elif peer in result["missing"]:
            text = "skip" if result["missing"][peer] == "skipped" else "n/a"
        else:
            text = "-"
        cells.append(text.rjust(_WIDTHS["peer"]))
    busy = result.get("busy_elsewhere")
    cells.append(("?" if busy is None else f"{busy:.1f}").rjust(_WIDTHS["busy"]))
    return _cells(*cells)


def _rows(results: Iterable[dict[str, Any]]) -> list[str]:
    lines = []
    table = None
    for result in results:
        if result["table"] != table:
            table = result["table"]
            lines.append(format_table_title(table, tuple(result["shape"])))
        lines.append(format_row(result))
    return lines


def format_table(results: list[dict[str, Any]], info: dict[str, Any] | None = None) -> str:
    """The whole report: header (if ``info`` is given), column titles, one row per result and
    the summary."""
    lines = [format_header(info), ""] if info is not None else []
    lines.append(format_column_titles())
    lines += _rows(results)
    cores = info.get("cores") if info is not None else None
    lines += ["", format_summary(summarize(results, cores))]
    return "\n".join(lines)


def summarize(results: list[dict[str, Any]], cores: int | None = None) -> dict[str, Any]:
    """The conclusion of a run, peer by peer (those with at least one time).

    For each peer: ``cases`` (how many have its time), ``faster`` (in how many rowquant is
    faster) and ``worst``, the case where rowquant compares worst (``case``, ``table``,
    ``threads``, ``ratio``: peer time / rowquant time). For ``floor``: ``cases``, ``worst``
    (the lowest floor time / rowquant time) and ``rowquant_over_floor``, its inverse. Then
    ``missing``: peer -> why it has no time where it applies (other than being skipped), and,
    given the machine's ``cores``, ``contended``: how many cases ran with ``threads`` plus the
    cores other processes kept busy above ``cores`` (``cases``, ``of``, ``cores``), where the
    times measure the contention more than the code.

    Examples
    --------
    >>> from rowquant.benchmark import format_summary, summarize
    >>> results = [
    ...     {"op": "quantize", "table": "cache", "threads": 1, "params": {},
    ...      "rowquant_s": 2e-5, "fbgemm_s": 4e-5, "floor_s": 1e-5, "missing": {},
    ...      "busy_elsewhere": 0.2},
    ...     {"op": "take", "table": "cache", "threads": 2,
    ...      "params": {"ids": 1, "dist": "uniform"},
    ...      "rowquant_s": 2e-6, "fbgemm_s": 1e-6, "floor_s": 5e-7, "missing": {},
    ...      "busy_elsewhere": 0.9},
    ... ]
    >>> summary = summarize(results, cores=2)
    >>> fbgemm = summary["fbgemm"]
    >>> fbgemm["faster"], fbgemm["cases"], fbgemm["worst"]["case"], fbgemm["worst"]["ratio"]
    (1, 2, 'take 1 uniform', 0.5)
    >>> print(format_summary(summary))
    rowquant is faster than FBGEMM in 1 of 2 cases; slowest against FBGEMM: take 1 uniform on
      cache at 2 threads (0.50x)
    copy floor: at worst rowquant takes 4.00x the copy time (floor 0.25x): take 1 uniform on
      cache at 2 threads
    contention: in 1 of 2 cases threads + busy exceeded the 2 cores, so their times measure the
      contention as much as the code
    """
    summary: dict[str, Any] = {}
    for peer, _ in _COLUMNS:
        measured = [(ratio, result) for result in results
                    if (ratio := _ratio(result, peer)) is not None]
        if not measured:
            continue
        ratio, result = min(measured, key=lambda pair: pair[0])
        worst = {"case": case_of(result).label, "table": result["table"],
                 "threads": result["threads"], "ratio": _significant(ratio)}
        if peer == "floor":
            summary[peer] = {"cases": len(measured), "worst": worst,
                             "rowquant_over_floor": _significant(1 / ratio)}
        else:
            faster = sum(1 for value, _ in measured if value > 1)
            summary[peer] = {"cases": len(measured), "faster": faster, "worst": worst}
    missing = {
        peer: reason
        for result in results
        for peer, reason in result.get("missing", {}).items()
        if reason != "skipped"
    }
    if missing:
        summary["missing"] = dict(sorted(missing.items()))
    if cores is not None:
        contended = [result for result in results if result.get("busy_elsewhere") is not None
                     and result["threads"] + round(result["busy_elsewhere"], 1) > cores]
        if contended:
            summary["contended"] = {"cases": len(contended), "of": len(results), "cores": cores}
    return summary


def _significant(ratio: float) -> float:
    """``ratio`` to four significant digits, for the JSON."""
    return float(f"{ratio:.4g}")


def _where(worst: dict[str, Any], ratio: str = "") -> str:
    """``"<case> on <table> at <n> threads"``, then ``ratio``, broken only after "on"."""
    plural = "" if worst["threads"] == 1 else "s"
    at = f"{worst['table']} at {worst['threads']} thread{plural}{ratio}"
    return f"{_unbroken(worst['case'])} on {_unbroken(at)}"


def _sentences(summary: dict[str, Any]) -> list[str]:
    sentences = []
    for peer, name in _NAMES.items():
        if peer in summary:
            entry = summary[peer]
            sentences.append(
                f"rowquant is faster than {name} in {entry['faster']} of {entry['cases']} cases; "
                f"slowest against {name}: "
                + _where(entry["worst"], f" ({format_ratio(entry['worst']['ratio'])})")
            )
    if "floor" in summary:
        floor = summary["floor"]
        sentences.append(
            f"copy floor: at worst rowquant takes {format_ratio(floor['rowquant_over_floor'])} "
            f"the copy time (floor {format_ratio(floor['worst']['ratio'])}): "
            f"{_where(floor['worst'])}"
        )
    for peer, reason in summary.get("missing", {}).items():
        sentences.append(f"not measured: {_NAMES.get(peer, peer)} ({reason})")
    if "contended" in summary:
        contended = summary["contended"]
        sentences.append(
            f"contention: in {contended['cases']} of {contended['of']} cases threads + busy "
            f"exceeded the {contended['cores']} cores, so their times measure the contention "
            "as much as the code"
        )
    return sentences


def format_summary(summary: dict[str, Any]) -> str:
    """The summary of :func:`summarize` as lines of at most :data:`WIDTH` columns."""
    return "\n".join(line for sentence in _sentences(summary) for line in _wrap(sentence))


def format_markdown(
    results: list[dict[str, Any]], summary: dict[str, Any] | None = None
) -> str:
    """The results as a Markdown table (for a README), each peer's time with peer/rowquant in
    brackets (the floor's with floor/rowquant), then the summary (default
    ``summarize(results)``) as a list."""
    titles = ["table", "case", "threads", "rowquant", *(title for _, title in _COLUMNS)]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for result in results:
        n_rows, dim = result["shape"]
        cells = [f"{result['table']} {n_rows}x{dim}", case_of(result).label,
                 str(result["threads"]), format_time(result["rowquant_s"])]
        for peer, _ in _COLUMNS:
            ratio = _ratio(result, peer)
            if ratio is None:
                cells.append(result["missing"].get(peer, ""))
            else:
                cells.append(f"{format_time(result[result_key(peer)])} ({format_ratio(ratio)})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    summary = summarize(results) if summary is None else summary
    lines += [f"- {sentence}" for sentence in _sentences(summary)]
    return "\n".join(lines)
