"""What the benchmark measures: the tables, the peers, and the cases (an operation on a table at
a thread count). Nothing here times anything; :mod:`rowquant.benchmark` runs the cases.

Examples
--------
>>> from rowquant._benchmark_cases import Case, plan
>>> cases = plan(tables=["cache"], threads=[1])
>>> len(cases), cases[1].label, cases[-1].label
(6, 'dequantize out=', 'bag 8192x20 sum')
>>> Case("take", "glove", 2, out=True, ids=4096, dist="zipf").describe()
'take 4096 zipf out= on glove at 2 threads'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from ._benchmark_machine import all_cores

__all__ = [
    "TABLES",
    "QUICK_TABLES",
    "FULL_TABLES",
    "PEERS",
    "PEER_OPS",
    "BAG_LENGTH",
    "BITS",
    "row_bytes",
    "Case",
    "plan",
    "result_key",
    "case_of",
]

#: Table shapes by name: (rows, dim).
TABLES = {
    "glove": (400_000, 300),
    "glove-100k": (100_000, 300),
    "bert": (30_522, 384),
    "recsys": (2_000_000, 64),
    "cache": (1_000, 64),
}
QUICK_TABLES = ("glove-100k", "cache")
FULL_TABLES = ("glove", "bert", "recsys", "cache")
#: The peers rowquant is timed against (``floor``: the memory-copy floor).
PEERS = ("reference", "torch", "fbgemm", "np.take", "floor")
#: The operations each peer can do.
PEER_OPS = {
    "reference": ("quantize", "dequantize", "take", "bag"),
    "torch": ("quantize",),
    "fbgemm": ("quantize", "dequantize", "take", "bag"),
    "np.take": ("take",),
    "floor": ("quantize", "dequantize", "take", "bag"),
}
BAG_LENGTH = 20
#: The code widths a run can measure (``rq.quantize(E, bits=...)``); FBGEMM has a kernel for each.
BITS = (8, 4, 2)


def row_bytes(dim: int, bits: int = 8) -> int:
    """Bytes of one stored row: 8-bit codes with a float32 scale, or ``bits``-bit codes packed
    into whole bytes with a float16 scale and a float16 bias.

    >>> row_bytes(300), row_bytes(300, 4), row_bytes(63, 2)
    (304, 154, 20)
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))}, got {bits!r}")
    return dim + 4 if bits == 8 else -(-dim * bits // 8) + 4


def result_key(peer: str) -> str:
    """The key of a peer's seconds in a result of :func:`rowquant.benchmark.run`.

    >>> result_key("np.take"), result_key("fbgemm")
    ('np_take_s', 'fbgemm_s')
    """
    return peer.replace(".", "_") + "_s"


@dataclasses.dataclass(frozen=True)
class Case:
    """One measurement: an operation on a named table at a thread count.

    ``out`` (dequantize, take): into a preallocated ``out=`` buffer rather than allocating.
    ``ids`` and ``dist`` (take): how many ids, drawn ``"uniform"`` or ``"zipf"``.
    ``bags``, ``length`` and ``mode`` (bag): ``bags`` bags of ``length`` ids,
    ``"sum"``, ``"mean"`` or ``"weighted"`` (a sum with one random weight per id).
    """

    op: str
    table: str
    threads: int
    out: bool | None = None
    ids: int | None = None
    dist: str | None = None
    bags: int | None = None
    length: int | None = None
    mode: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        """The operation's parameters (the fields that apply to it)."""
        skip = ("op", "table", "threads")
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in skip and getattr(self, field.name) is not None
        }

    @property
    def label(self) -> str:
        """A short description: ``"take 4096 zipf out="``, ``"bag 8192x20 mean"``."""
        words = [self.op]
        if self.op == "take":
            words += [str(self.ids), str(self.dist)]
        if self.op == "bag":
            words += [f"{self.bags}x{self.length}", str(self.mode)]
        if self.out:
            words.append("out=")
        return " ".join(words)

    def describe(self) -> str:
        """The label with the table and the thread count, for a sentence."""
        plural = "" if self.threads == 1 else "s"
        return f"{self.label} on {self.table} at {self.threads} thread{plural}"

    def traffic(self, n_rows: int, dim: int, bits: int = 8) -> tuple[int, int]:
        """Bytes the operation must read and write on a table of ``n_rows x dim`` stored with
        ``bits``-bit codes (see :func:`row_bytes`)."""
        row = row_bytes(dim, bits)
        if self.op == "quantize":
            return 4 * n_rows * dim, n_rows * row
        if self.op == "dequantize":
            return n_rows * row, 4 * n_rows * dim
        if self.op == "take":
            return self.n_ids * row, 4 * self.n_ids * dim
        if self.op == "bag":
            return self.n_bags * self.bag_length * row, 4 * self.n_bags * dim
        raise ValueError(f"unknown operation {self.op!r}")

    def without(self, *names: str) -> Case:
        """The same case with the fields ``names`` cleared (a key for shared measurements)."""
        cleared: dict[str, Any] = dict.fromkeys(names)
        return dataclasses.replace(self, **cleared)

    # The fields an operation needs, for the code that runs it (a case without them is a bug).
    @property
    def n_ids(self) -> int:
        return _given(self.ids, "ids", self)

    @property
    def id_dist(self) -> str:
        return _given(self.dist, "dist", self)

    @property
    def n_bags(self) -> int:
        return _given(self.bags, "bags", self)

    @property
    def bag_length(self) -> int:
        return _given(self.length, "length", self)


def case_of(result: dict[str, Any]) -> Case:
    """The case a result of :func:`rowquant.benchmark.run` (or its JSON) was measured for."""
    return Case(result["op"], result["table"], result["threads"], **result["params"])


T = TypeVar("T")


def _given(value: T | None, name: str, case: Case) -> T:
    if value is None:
        raise ValueError(f"the {case.op} case {case} has no {name}")
    return value


def _operations(full: bool) -> list[dict[str, Any]]:
    if not full:
        return [
            dict(op="quantize"),
            dict(op="dequantize", out=True),
            *(dict(op="take", ids=k, dist="uniform", out=False) for k in (1, 4096, 65536)),
            dict(op="bag", bags=8192, length=BAG_LENGTH, mode="sum"),
        ]
    return [
        dict(op="quantize"),
        *(dict(op="dequantize", out=out) for out in (True, False)),
        *(
            dict(op="take", ids=k, dist=dist, out=out)
            for k in (1, 64, 4096, 65536)
            for dist in ("uniform", "zipf")
            for out in (True, False)
        ),
        *(
            dict(op="bag", bags=bags, length=BAG_LENGTH, mode=mode)
            for bags in (512, 8192)
            for mode in ("sum", "mean", "weighted")
        ),
    ]


def plan(
    full: bool = False, tables: Iterable[str] | None = None, threads: Iterable[int] | None = None
) -> list[Case]:
    """The cases a run measures, grouped by table (each table is generated once).

    Parameters
    ----------
    full : bool
        Every operation of the benchmark; otherwise a representative subset: quantize,
        dequantize into ``out=``, takes of 1, 4096 and 65536 uniform ids, and 8192 bags of 20.
    tables : sequence of str, optional
        Names from :data:`TABLES`; default :data:`FULL_TABLES` or :data:`QUICK_TABLES`.
    threads : sequence of int, optional
        Thread counts; default 1 and all cores.

    Returns
    -------
    list of Case

    Examples
    --------
    >>> from rowquant import benchmark
    >>> len(benchmark.plan(full=True, tables=["bert"], threads=[1, 2]))
    50
    """
    names = list(tables) if tables is not None else list(FULL_TABLES if full else QUICK_TABLES)
    unknown = [name for name in names if name not in TABLES]
    if unknown:
        raise ValueError(f"unknown table {unknown[0]!r}; the tables are {', '.join(TABLES)}")
    counts = sorted({1, all_cores()}) if threads is None else list(dict.fromkeys(threads))
    if not counts or any(int(n) < 1 for n in counts):
        raise ValueError(f"thread counts must be at least 1, got {counts}")
    return [
        Case(table=name, threads=int(n), **operation)
        for name in dict.fromkeys(names)
        for operation in _operations(full)
        for n in counts
    ]
