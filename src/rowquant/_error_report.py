"""The measures of quantization error (:class:`ErrorReport`) and the accumulator that builds
them from row chunks (:class:`ErrorAccumulator`), so that tables larger than memory can be
measured as they are streamed: :func:`rowquant.quantize_file` while it writes,
:func:`rowquant.error_report` over arrays or files.

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> from rowquant._error_report import ErrorAccumulator
>>> E = np.array([[1.0, -0.5], [0.25, 0.0], [0.0, 0.0]], np.float32)
>>> codes, scales = rq.quantize_rows(E)
>>> accumulator = ErrorAccumulator(3, 2)
>>> accumulator.update(1, E[1:], codes[1:], scales[1:])   # chunks in any order
>>> accumulator.update(0, E[:1], codes[:1], scales[:1])
>>> report = accumulator.finish()
>>> report.rows, float(report.row_cosine[2]), report.worst_rows.tolist()
(3, 1.0, [0, 1, 2])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _api, _checks

__all__ = ["ErrorAccumulator", "ErrorReport"]

_BLOCK_VALUES = 1 << 18  # float64 work arrays of at most 2 MB each


@dataclass(frozen=True, eq=False)
class ErrorReport:
    """Errors of a quantized table against its original, overall and per row.

    Attributes
    ----------
    rows, dim : int
    max_abs_error : float
        Largest ``|original - dequantized|`` over the table (at most half the row's scale).
    mean_abs_error : float
    relative_error : float
        Frobenius norm of the error over that of the original.
    snr_db : float
        Signal-to-noise ratio, ``10 log10(sum original^2 / sum error^2)`` (inf when exact).
    cosine_min, cosine_p0_1, cosine_median : float
        Cosine similarity between original and dequantized rows: the smallest, the 0.1
        percentile and the median (rows that are zero in both count as 1).
    row_max_error, row_cosine, scales : ndarray, shape (rows,)
        Per row: the largest absolute error, the cosine similarity, the scale.
    worst_rows : ndarray of int64
        The rows with the lowest cosine similarity, worst first.
    worst_keys : tuple of str, or None
        The keys (words) of those rows, for a table with keys.
    """

    rows: int
    dim: int
    max_abs_error: float
    mean_abs_error: float
    relative_error: float
    snr_db: float
    cosine_min: float
    cosine_p0_1: float
    cosine_median: float
    row_max_error: np.ndarray = field(repr=False)
    row_cosine: np.ndarray = field(repr=False)
    scales: np.ndarray = field(repr=False)
    worst_rows: np.ndarray = field(repr=False)
    worst_keys: tuple[str, ...] | None = field(default=None, repr=False)

    def _key(self, position: int) -> str:
        """The key of the ``position``-th worst row, quoted, or '' for a table without keys."""
        return "" if self.worst_keys is None else repr(self.worst_keys[position])

    def to_dict(self) -> dict:
        """The report as JSON-ready values (NaN becomes None), the worst rows in detail."""

        def number(value):
            value = float(value)
            return None if math.isnan(value) else value

        return {
            "rows": self.rows,
            "dim": self.dim,
            "max_abs_error": number(self.max_abs_error),
            "mean_abs_error": number(self.mean_abs_error),
            "relative_error": number(self.relative_error),
            "snr_db": number(self.snr_db),
            "cosine": {
                "min": number(self.cosine_min),
                "p0.1": number(self.cosine_p0_1),
                "median": number(self.cosine_median),
            },
            "worst_rows": [
                {
                    "row": int(row),
                    **({} if self.worst_keys is None else {"key": self.worst_keys[position]}),
                    "cosine": number(self.row_cosine[row]),
                    "max_abs_error": number(self.row_max_error[row]),
                    "scale": number(self.scales[row]),
                }
                for position, row in enumerate(self.worst_rows)
            ],
        }

    def __str__(self) -> str:
        lines = [
            f"max |error|        {self.max_abs_error:.6g}",
            f"mean |error|       {self.mean_abs_error:.6g}",
            f"relative error     {self.relative_error:.6g} (Frobenius)",
            f"SNR                {self.snr_db:.2f} dB",
            f"cosine similarity  min {self.cosine_min:.6f}, 0.1% {self.cosine_p0_1:.6f}, "
            f"median {self.cosine_median:.6f}",
        ]
        if len(self.worst_rows):
            lines.append("worst rows (lowest cosine):")
            width = max((len(self._key(i)) for i in range(len(self.worst_rows))), default=0)
            for position, row in enumerate(self.worst_rows):
                key = f"{self._key(position):<{width}}  " if width else ""
                lines.append(
                    f"  row {int(row):<10d} {key}cosine {self.row_cosine[row]:.6f}  max |error| "
                    f"{self.row_max_error[row]:.6g}  scale {self.scales[row]:.6g}"
                )
        return "\n".join(lines)


class ErrorAccumulator:
    """Builds an :class:`ErrorReport` from row chunks given in any order, each exactly once."""

    def __init__(self, rows: int, dim: int, worst: int = 10):
        self.rows, self.dim, self.worst = rows, dim, worst
        self.row_max_error = np.zeros(rows, dtype=np.float32)
        self.row_cosine = np.ones(rows, dtype=np.float64)
        self.scales = np.zeros(rows, dtype=np.float32)
        self.abs_sum = 0.0
        self.squared_error = 0.0
        self.squared_original = 0.0

    def update(self, start: int, original: np.ndarray, codes: np.ndarray, scales: np.ndarray,
               dequantized: np.ndarray | None = None):
        """Add rows ``start ..`` of the table: their float32 original values and quantized
        codes and scales (8-bit), or for another scheme its ``dequantized`` rows and its scales
        (the codes are then not read)."""
        count = len(codes)
        finite = np.isfinite(original)
        if not finite.all():
            flat = int(np.argmin(finite))
            raise _checks.nonfinite_error(original, original, flat, "original", start)
        self.scales[start : start + count] = _checks.scale_values(scales)
        step = max(1, _BLOCK_VALUES // max(self.dim, 1))
        for first in range(0, count, step):
            last = min(count, first + step)
            if dequantized is None:
                values = _api.dequantize(codes[first:last], scales[first:last], threads=1)
            else:
                values = dequantized[first:last]
            exact = original[first:last].astype(np.float64)
            approx = values.astype(np.float64)
            error = exact - approx
            squared_error = np.einsum("ij,ij->i", error, error)
            squared_exact = np.einsum("ij,ij->i", exact, exact)
            squared_approx = np.einsum("ij,ij->i", approx, approx)
            dot = np.einsum("ij,ij->i", exact, approx)
            np.abs(error, out=error)
            rows = slice(start + first, start + last)
            if self.dim:
                self.row_max_error[rows] = error.max(axis=1)
            self.abs_sum += float(error.sum())
            self.squared_error += float(squared_error.sum())
            self.squared_original += float(squared_exact.sum())
            norms = np.sqrt(squared_exact * squared_approx)
            with np.errstate(invalid="ignore", divide="ignore"):
                cosine = np.where(norms > 0, dot / norms, 0.0)
            both_zero = (squared_exact == 0) & (squared_approx == 0)
            self.row_cosine[rows] = np.where(both_zero, 1.0, np.clip(cosine, -1.0, 1.0))

    def absorb(self, start: int, part: ErrorAccumulator) -> None:
        """Add the measures of ``part``, an accumulator of the rows ``start ..`` (filled
        elsewhere: a Dask task's block), as :meth:`update` of those rows would."""
        if part.dim != self.dim or start < 0 or start + part.rows > self.rows:
            raise ValueError(f"rows {start}..{start + part.rows} of width {part.dim} do not fit "
                             f"a table of {self.rows}x{self.dim}")
        rows = slice(start, start + part.rows)
        self.row_max_error[rows] = part.row_max_error
        self.row_cosine[rows] = part.row_cosine
        self.scales[rows] = part.scales
        self.abs_sum += part.abs_sum
        self.squared_error += part.squared_error
        self.squared_original += part.squared_original

    def finish(self, keys: Sequence[str] | None = None) -> ErrorReport:
        """The report; with ``keys`` (the table's, one per row), the worst rows' keys too."""
        values = self.rows * self.dim
        nan = float("nan")
        if self.squared_error == 0:
            relative, snr = 0.0, math.inf
        elif self.squared_original == 0:
            relative, snr = math.inf, -math.inf
        else:
            relative = math.sqrt(self.squared_error / self.squared_original)
            snr = 10 * math.log10(self.squared_original / self.squared_error)
        order = np.argsort(self.row_cosine, kind="stable")[: self.worst]
        return ErrorReport(
            rows=self.rows,
            dim=self.dim,
            max_abs_error=float(self.row_max_error.max()) if self.rows else 0.0,
            mean_abs_error=self.abs_sum / values if values else 0.0,
            relative_error=relative,
            snr_db=snr,
            cosine_min=float(self.row_cosine.min()) if self.rows else nan,
            cosine_p0_1=float(np.percentile(self.row_cosine, 0.1)) if self.rows else nan,
            cosine_median=float(np.median(self.row_cosine)) if self.rows else nan,
            row_max_error=self.row_max_error,
            row_cosine=self.row_cosine,
            scales=self.scales,
            worst_rows=order.astype(np.int64),
            worst_keys=None if keys is None else tuple(keys[int(row)] for row in order),
        )
