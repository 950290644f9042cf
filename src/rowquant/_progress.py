"""Progress of long work (quantizing files, writing shards): a tqdm bar, a callable, or
nothing."""

from __future__ import annotations

import sys

__all__ = ["progress_callback"]


def progress_callback(progress, total: int, description: str):
    """(update(done), close()) for progress=None/False, True (a tqdm bar on stderr) or a
    callable taking (rows_done, rows_total)."""
    if progress is None or progress is False:
        return (lambda done: None), (lambda: None)
    if progress is True:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=total, unit="rows", unit_scale=True, desc=description, file=sys.stderr,
                   dynamic_ncols=True, leave=False)
        last = [0]

        def update(done):
            bar.update(done - last[0])
            last[0] = done

        return update, bar.close
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    raise TypeError(f"progress must be None, a bool or a callable, got {type(progress).__name__}")
