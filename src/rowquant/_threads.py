"""How many threads the kernels may use: ``set_num_threads`` / ``get_num_threads``.

The default is ``ROWQUANT_NUM_THREADS`` if set, else every core this process may run on. Kernels
still run small calls on one thread whatever the setting, so a batch-1 lookup never starts a
thread team. Results never depend on the thread count.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from . import _checks

__all__ = ["MAX_THREADS", "set_num_threads", "get_num_threads", "resolve_threads"]


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# The kernels take a C int; a call runs on at most 256 threads (csrc/team.h), whatever it asks.
MAX_THREADS = 2**31 - 1


def _positive_count(value: Any, name: str) -> int:
    return _checks.count(value, name, 1, MAX_THREADS)


def _initial_threads() -> int:
    setting = os.environ.get("ROWQUANT_NUM_THREADS", "").strip()
    if setting:
        try:
            return _positive_count(int(setting), "ROWQUANT_NUM_THREADS")
        except ValueError:
            warnings.warn(
                f"ignoring ROWQUANT_NUM_THREADS={setting!r}: not an integer in "
                f"[1, {MAX_THREADS}]",
                RuntimeWarning,
                stacklevel=2,
            )
    return _available_cores()


_num_threads = _initial_threads()


def set_num_threads(n: int) -> None:
    """Set how many threads rowquant's kernels may use when a call passes ``threads=None``.

    Examples
    --------
    >>> import rowquant as rq
    >>> previous = rq.get_num_threads()
    >>> rq.set_num_threads(1)
    >>> rq.get_num_threads()
    1
    >>> rq.set_num_threads(previous)
    """
    global _num_threads
    _num_threads = _positive_count(n, "the number of threads")


def get_num_threads() -> int:
    """How many threads the kernels may use by default (see :func:`set_num_threads`).

    Examples
    --------
    >>> import rowquant as rq
    >>> rq.get_num_threads() >= 1
    True
    """
    return _num_threads


def resolve_threads(threads: int | None) -> int:
    """The thread count for one call: ``threads`` if given, else the library default."""
    if threads is None:
        return _num_threads
    return _positive_count(threads, "threads")
