"""What a benchmark ran on: the machine, the versions, how busy it was, and the SIMD path of
rowquant and of FBGEMM, which :func:`isa_selected` can set to the same instruction set.

rowquant says which kernels it runs (``backend_info()["simd"]``) and picks them with
:func:`rowquant._api.use_simd`. FBGEMM, inside PyTorch, can be asked neither, so its path is
worked out here as FBGEMM works it out (``fbgemmInstructionSet`` in its ``src/Utils.cc``): the
best the processor has (AVX-512 when it has avx512f, avx512bw, avx512dq and avx512vl; else
AVX2), unless the environment variable ``FBGEMM_ENABLE_INSTRUCTIONS`` names a set the processor
supports (``AVX2``, ``AVX512``, ``AVX512_E1``, ``AVX512_256``, ``AVX512_E1_256``; any case). The
``_256`` sets run AVX-512 instructions on 256-bit registers ("avx512-256" here), as do the
AVX-512 sets with ``FBGEMM_ENABLE_AVX512_256=1`` on some processors, which is not modelled.
FBGEMM reads the variable once per process, so it must be set before PyTorch is imported.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypedDict

import numpy as np

from ._api import backend_info
from ._backend import use_simd
from ._version import __version__

__all__ = [
    "ISAS",
    "FBGEMM_VARIABLE",
    "SimdInfo",
    "all_cores",
    "cpu_flags",
    "fbgemm_simd",
    "simd_info",
    "isa_selected",
    "machine_info",
    "cpu_clock",
    "cores_used_elsewhere",
]

#: The instruction-set choices of a run: ``native``, each side's best; ``avx2``, both on AVX2.
ISAS = ("native", "avx2")
FBGEMM_VARIABLE = "FBGEMM_ENABLE_INSTRUCTIONS"
# What FBGEMM sets FBGEMM_VARIABLE to for each choice (None: unset, FBGEMM picks its best).
_FBGEMM_SETTING: dict[str, str | None] = {"native": None, "avx2": "AVX2"}
# rowquant's kernels for each choice (None: its best).
_ROWQUANT_PATH: dict[str, str | None] = {"native": None, "avx2": "avx2"}

# FBGEMM's names for the variable's values (fbgemmEnvGetIsa), the sets it detects, the sets
# it lets the variable force once it has detected one (isaSupportMap), and the kernels each
# set runs, by register width (isZmm: 512-bit registers for avx512 and avx512_vnni only).
_FBGEMM_NAMES = {
    "AVX2": "avx2",
    "AVX512": "avx512",
    "AVX512_E1": "avx512_vnni",
    "AVX512_256": "avx512_ymm",
    "AVX512_E1_256": "avx512_vnni_ymm",
}
_FBGEMM_FORCIBLE = {
    "avx2": {"avx2"},
    "avx512": {"avx512", "avx512_ymm", "avx2"},
    "avx512_vnni": {"avx512_vnni", "avx512_vnni_ymm", "avx512", "avx512_ymm", "avx2"},
}
_FBGEMM_KERNELS = {
    "none": "none",
    "avx2": "avx2",
    "avx512": "avx512",
    "avx512_vnni": "avx512",
    "avx512_ymm": "avx512-256",
    "avx512_vnni_ymm": "avx512-256",
}
_AVX512_FLAGS = ("avx512f", "avx512bw", "avx512dq", "avx512vl")


class SimdInfo(TypedDict):
    """The SIMD paths of a run (``machine_info()["simd"]``).

    ``rowquant``: the kernels rowquant runs (None on its numpy backend); ``fbgemm``: those
    FBGEMM runs (``"avx512"``, ``"avx512-256"``, ``"avx2"``, ``"none"`` or ``"unknown"``);
    ``fbgemm_guess``: whether that is a guess from the processor's flags rather than the
    setting of ``FBGEMM_ENABLE_INSTRUCTIONS``; ``fbgemm_basis``: what it was worked out from.
    """

    rowquant: str | None
    fbgemm: str
    fbgemm_guess: bool
    fbgemm_basis: str


def all_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_flags() -> frozenset[str] | None:
    """The x86 feature flags of ``/proc/cpuinfo`` (``avx2``, ``avx512f``, ...), or None where
    there are none (another processor or operating system)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def fbgemm_simd(flags: Iterable[str] | None, setting: str | None) -> SimdInfo:
    """FBGEMM's SIMD path, worked out as FBGEMM chooses it (it cannot be asked).

    FBGEMM runs the best instruction set the processor has (AVX-512 with avx512f, avx512bw,
    avx512dq and avx512vl; else AVX2), unless ``FBGEMM_ENABLE_INSTRUCTIONS`` names one the
    processor supports (``AVX2``, ``AVX512``, ``AVX512_E1``, ``AVX512_256``, ``AVX512_E1_256``,
    any case; the ``_256`` ones run AVX-512 on 256-bit registers, ``"avx512-256"`` here).

    Parameters
    ----------
    flags : iterable of str or None
        The processor's x86 flags as ``/proc/cpuinfo`` spells them (:func:`cpu_flags`); None
        where unknown.
    setting : str or None
        The value of ``FBGEMM_ENABLE_INSTRUCTIONS``; None where it is unset.

    Returns
    -------
    SimdInfo
        ``fbgemm``, ``fbgemm_guess`` (True where the path comes from the flags alone) and
        ``fbgemm_basis`` (what it comes from); ``rowquant`` is None.

    Examples
    --------
    >>> from rowquant.benchmark import fbgemm_simd
    >>> avx512 = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl"}
    >>> fbgemm_simd(avx512, None)["fbgemm"], fbgemm_simd(avx512, "avx2")["fbgemm"]
    ('avx512', 'avx2')
    >>> fbgemm_simd({"avx2"}, "AVX512")["fbgemm"]   # more than this CPU has: ignored
    'avx2'
    >>> fbgemm_simd(avx512, None)["fbgemm_basis"]
    'best guess: /proc/cpuinfo has avx512f/bw/dq/vl; FBGEMM_ENABLE_INSTRUCTIONS unset'
    >>> fbgemm_simd(avx512, "AVX2")["fbgemm_guess"]
    False
    """
    setting = setting if setting is None else setting.strip()
    if flags is None:
        return SimdInfo(rowquant=None, fbgemm="unknown", fbgemm_guess=True,
                        fbgemm_basis="no x86 flags in /proc/cpuinfo")
    present = set(flags)
    if all(flag in present for flag in _AVX512_FLAGS):
        detected = "avx512_vnni" if "avx512_vnni" in present else "avx512"
        seen = "/proc/cpuinfo has avx512f/bw/dq/vl"
    elif "avx2" in present:
        detected, seen = "avx2", "/proc/cpuinfo has avx2, no avx512f/bw/dq/vl"
    else:
        detected, seen = "none", "/proc/cpuinfo has no avx2"
    if not setting:
        return SimdInfo(rowquant=None, fbgemm=_FBGEMM_KERNELS[detected], fbgemm_guess=True,
                        fbgemm_basis=f"best guess: {seen}; {FBGEMM_VARIABLE} unset")
    forced = _FBGEMM_NAMES.get(setting.upper())
    if forced is not None and forced in _FBGEMM_FORCIBLE.get(detected, ()):
        return SimdInfo(rowquant=None, fbgemm=_FBGEMM_KERNELS[forced], fbgemm_guess=False,
                        fbgemm_basis=f"{FBGEMM_VARIABLE}={setting}")
    why = "not a name FBGEMM knows" if forced is None else "this CPU lacks it"
    return SimdInfo(rowquant=None, fbgemm=_FBGEMM_KERNELS[detected], fbgemm_guess=True,
                    fbgemm_basis=f"best guess: {seen}; {FBGEMM_VARIABLE}={setting!r} is "
                    f"ignored ({why})")


def simd_info() -> SimdInfo:
    """The SIMD paths rowquant and FBGEMM run in this process now."""
    info = fbgemm_simd(cpu_flags(), os.environ.get(FBGEMM_VARIABLE))
    info["rowquant"] = backend_info()["simd"]
    return info


def _fbgemm_forced(setting: str | None) -> str | None:
    """The FBGEMM name ``setting`` stands for (None: unset or unknown, so FBGEMM's best)."""
    return None if not setting else _FBGEMM_NAMES.get(setting.strip().upper())


@contextlib.contextmanager
def isa_selected(isa: str, fbgemm: bool = True) -> Iterator[None]:
    """Run rowquant's kernels for ``isa`` (one of :data:`ISAS`) inside the block, and set
    ``FBGEMM_ENABLE_INSTRUCTIONS`` for it (``fbgemm``: PyTorch will be used) before PyTorch is
    imported; rowquant's previous kernels are restored at the end. ``"native"`` is each
    side's best, whatever ``ROWQUANT_SIMD`` and ``FBGEMM_ENABLE_INSTRUCTIONS`` said.

    Raises ValueError for an unknown ``isa``, RuntimeError when rowquant cannot run it (the
    processor lacks it, or the numpy backend runs) or when PyTorch was imported already with
    another setting (FBGEMM would not run what was asked).
    """
    if isa not in ISAS:
        raise ValueError(f"unknown isa {isa!r}; choose from {', '.join(ISAS)}")
    wanted = _FBGEMM_SETTING[isa]
    if fbgemm:
        current = os.environ.get(FBGEMM_VARIABLE)
        if "torch" in sys.modules:
            if _fbgemm_forced(current) != _fbgemm_forced(wanted):
                now = f"={current}" if current else " unset"
                needed = f"={wanted}" if wanted else " unset"
                raise RuntimeError(
                    f"isa {isa!r} needs {FBGEMM_VARIABLE}{needed} before torch is imported, "
                    f"but torch is already imported with {FBGEMM_VARIABLE}{now}, so FBGEMM "
                    "would not run the kernels asked for; run the benchmark in a new process "
                    "(rowquant bench --isa ...)"
                )
        elif wanted is None:
            os.environ.pop(FBGEMM_VARIABLE, None)
        else:
            os.environ[FBGEMM_VARIABLE] = wanted
    info = backend_info()
    path = _ROWQUANT_PATH[isa]
    if info["backend"] != "c":
        if path is not None:
            raise RuntimeError(
                f"isa {isa!r} runs rowquant's {path} kernels, but rowquant runs on numpy "
                f"({info.get('reason')})"
            )
        yield
        return
    before = info["simd"]
    try:
        use_simd(path)
    except ValueError as error:
        raise RuntimeError(f"isa {isa!r}: {error}") from None
    try:
        yield
    finally:
        use_simd(before)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, memory, versions, rowquant's backend and
    the SIMD paths of rowquant and FBGEMM (``simd``, a :class:`SimdInfo`).

    Examples
    --------
    >>> from rowquant import benchmark
    >>> info = benchmark.machine_info()
    >>> info["cores"] >= 1, info["backend"]["backend"] in ("c", "numpy")
    (True, True)
    >>> info["simd"]["rowquant"] == info["backend"]["simd"]
    True
    """
    return {
        "cpu": _cpu_model(),
        "cores": all_cores(),
        "memory_gb": _memory_gb(),
        "load_average": _load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _installed_version("torch"),
        "rowquant": __version__,
        "backend": backend_info(),
        "simd": simd_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages: other work on the machine skews multi-thread times."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _installed_version(package: str) -> str | None:
    """The installed version of ``package``, found without importing it (torch takes seconds)."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_clock() -> tuple[float, float, float] | None:
    """(CPU seconds used by every process on the machine, by this process, wall seconds), or None
    without ``/proc/stat``. Two readings tell how much CPU other processes took in between."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:9]]
        per_second = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = ticks[3] + ticks[4]  # idle and iowait
    ours = os.times()
    return (sum(ticks) - idle) / per_second, ours.user + ours.system, time.perf_counter()


def cores_used_elsewhere(
    start: tuple[float, float, float] | None, end: tuple[float, float, float] | None
) -> float | None:
    """Cores that other processes kept busy between two :func:`cpu_clock` readings (roughly:
    the clocks tick every 10 ms or so)."""
    if start is None or end is None or end[2] <= start[2]:
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return round(min(max(0.0, others / (end[2] - start[2])), all_cores()), 2)
