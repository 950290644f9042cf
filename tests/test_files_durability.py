"""Writes are atomic (an exception, an interrupt or a kill mid-write leaves no file at the target
and the previous file intact), streaming keeps memory bounded by the chunk, and a memory-mapped
load of a 1 GB table reads only what lookups touch. Memory is measured in subprocesses, from
the kernel's own counters."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rowquant as rq
from rowquant import _atomic, _format


def table(rows, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def partial_files(folder):
    return [name for name in os.listdir(folder) if name.endswith(".partial")]


def fail_on_write_number(monkeypatch, number, error):
    real = _atomic.write_all
    calls = []

    def write(*args):
        calls.append(1)
        if len(calls) == number:
            raise error
        return real(*args)

    monkeypatch.setattr(_atomic, "write_all", write)


@pytest.mark.parametrize("number", [1, 2, 3])
def test_save_failing_mid_write_leaves_the_previous_file(tmp_path, monkeypatch, number):
    path = tmp_path / "t.safetensors"
    rq.quantize(table(10, 4)).save(path)
    before = path.read_bytes()
    fail_on_write_number(monkeypatch, number, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        rq.quantize(table(20, 4, seed=1)).save(path)
    assert path.read_bytes() == before
    assert partial_files(tmp_path) == []


def test_save_failing_mid_write_creates_nothing(tmp_path, monkeypatch):
    fail_on_write_number(monkeypatch, 2, OSError(errno.EIO, "I/O error"))
    with pytest.raises(OSError):
        rq.quantize(table(10, 4)).save(tmp_path / "t")
    assert os.listdir(tmp_path) == []


def test_streaming_interrupted_by_ctrl_c_leaves_nothing(tmp_path):
    np.save(tmp_path / "E.npy", table(1000, 8))

    def interrupt(done, total):
        if done >= 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "out", chunk_rows=100, progress=interrupt)
    assert sorted(os.listdir(tmp_path)) == ["E.npy"]


KILLED_MID_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import rowquant as rq

    def kill(done, total):
        if done >= 2000:
            os.kill(os.getpid(), signal.SIGKILL)

    rq.quantize_file(sys.argv[1], sys.argv[2], chunk_rows=1000, progress=kill)
    """
)


def test_streaming_killed_mid_write_leaves_the_previous_file(tmp_path):
    np.save(tmp_path / "E.npy", table(10000, 16))
    out = tmp_path / "out"
    out.write_bytes(b"the previous file")
    result = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "E.npy"), str(out)],
        capture_output=True,
    )
    assert result.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"the previous file"
    # a kill cannot clean up: what it leaves is a hidden .partial file, never the target
    assert all(name.startswith(".out.") for name in partial_files(tmp_path))


MEASURE_STREAMING = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    import rowquant as rq

    src, dst = sys.argv[1], sys.argv[2]
    np.zeros(1)  # numpy fully loaded before the baseline
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    summary = rq.quantize_file(src, dst, chunk_rows=2048, report=True, threads=1)
    after_quantize = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = rq.error_report(src, dst, chunk_rows=2048)
    after_report = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "baseline_kb": baseline, "quantize_kb": after_quantize, "report_kb": after_report,
        "rows": summary.rows, "max_error": report.max_abs_error,
        "streamed_max_error": summary.report.max_abs_error,
    }))
    """
)


def write_npy_in_chunks(path, rows, dim, chunk=8192):
    """A float32 .npy written chunk by chunk, so this process never holds the whole table."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(
            file, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)}
        )
        for start in range(0, rows, chunk):
            count = min(chunk, rows - start)
            file.write(table(count, dim, seed=start).tobytes())


def test_streaming_memory_is_bounded_by_the_chunk(tmp_path):
    rows, dim = 160_000, 400  # 256 MB of float32; chunks of 2048 rows are 3.3 MB
    write_npy_in_chunks(tmp_path / "E.npy", rows, dim)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_STREAMING, str(tmp_path / "E.npy"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["rows"] == rows
    assert measured["max_error"] == measured["streamed_max_error"] > 0
    table_mb = rows * dim * 4 / 2**20
    # the whole table would add 256 MB (input) + 64 MB (codes); a chunk adds a few MB, plus
    # the per-row report arrays (16 bytes per row, 2.5 MB here)
    for stage in ("quantize_kb", "report_kb"):
        grown_mb = (measured[stage] - measured["baseline_kb"]) / 1024
        assert grown_mb < table_mb / 10, (stage, measured)


MEASURE_MAPPED_LOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import rowquant as rq

    def resident_mb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    np.zeros(1)
    before = resident_mb()
    qe = rq.load(sys.argv[1], mmap=True)
    rows = qe.shape[0]
    ids = np.array([0, 12345, rows - 1])
    taken = qe.take(ids)
    pooled = qe.bag(ids, [0])
    after = resident_mb()
    print(json.dumps({
        "grown_mb": after - before, "shape": list(qe.shape),
        "taken": taken[:, :3].tolist(), "pooled": pooled[0, :3].tolist(),
        "scales": qe.scales[ids].tolist(),
    }))
    """
)


def test_mapped_load_of_a_1gb_table_reads_only_what_is_looked_up(tmp_path):
    rows, dim = 262_144, 4096  # 1 GiB of codes, kept sparse on disk: all zero but the scales
    scales = (np.arange(rows, dtype=np.float32) + 1) / np.float32(1024)
    path = tmp_path / "big.safetensors"
    header = _format.table_header(rows, dim)
    with open(path, "wb") as file:
        file.write(header)
        file.write(scales.tobytes())
        file.truncate(len(header) + 4 * rows + rows * dim)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_MAPPED_LOAD, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["shape"] == [rows, dim]
    expected = [(0 - 128) * s for s in np.float32(scales[[0, 12345, rows - 1]])]
    assert measured["scales"] == [float(s) for s in scales[[0, 12345, rows - 1]]]
    assert [row[0] for row in measured["taken"]] == [float(np.float32(e)) for e in expected]
    pooled = np.float32(0)
    for e in expected:
        pooled = np.float32(pooled + np.float32(e))
    assert measured["pooled"][0] == pytest.approx(float(pooled), rel=1e-6)
    # validating the scales reads 1 MB; the codes (1 GiB) are not read, only 3 rows of them
    assert measured["grown_mb"] < 16, measured
