"""Numbers written for people: the helpers that ``repr`` and the command line share.

Examples
--------
>>> from rowquant._formatting import human_bytes
>>> human_bytes(24), human_bytes(68000), human_bytes(2_500_000_000_000)
('24 B', '68.0 kB', '2500.0 GB')
"""

from __future__ import annotations

__all__ = ["human_bytes"]


def human_bytes(n: float) -> str:
    """``n`` bytes in decimal units (B, kB, MB, GB), whole bytes or one decimal."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
