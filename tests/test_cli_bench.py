"""The ``rowquant`` command, run as a subprocess (``python -m rowquant``): help, a tiny benchmark
with its JSON output, and the exit status of usage errors and failures. No timing is checked."""

import json
import subprocess
import sys

import pytest

from rowquant import benchmark


def rowquant(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "rowquant", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_help_shows_the_options_and_examples():
    done = rowquant("bench", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--full", "--threads", "--json", "--tables", "--budget", "examples:"):
        assert option in done.stdout


def test_tiny_bench_prints_the_table_and_writes_json(tmp_path):
    path = tmp_path / "results.json"
    done = rowquant(
        "bench", "--tables", "cache", "--threads", "1", "--budget", "0.001",
        "--peers", "reference", "np.take", "floor", "--json", str(path),
    )
    assert done.returncode == 0, done.stderr
    assert "rowquant backend:" in done.stdout
    assert "rowquant" in done.stdout and "rq/floor" in done.stdout
    assert "-- cache: 1000 x 64 float32" in done.stdout
    report = json.loads(path.read_text())
    assert set(report) == {"machine", "results"}
    assert report["machine"]["backend"]["backend"] in ("c", "numpy")
    results = report["results"]
    assert [r["op"] for r in results] == ["quantize", "dequantize", "take", "take", "take", "bag"]
    for result in results:
        assert result["table"] == "cache" and result["shape"] == [1000, 64]
        assert result["threads"] == 1
        assert result["rowquant_s"] > 0 and result["reference_s"] > 0 and result["floor_s"] > 0
        assert result["torch_s"] is None and result["fbgemm_s"] is None
        assert result["missing"]["fbgemm"] == "skipped"
        assert (result["np_take_s"] is not None) == (result["op"] == "take")
    assert [r["params"].get("ids") for r in results[2:5]] == [1, 4096, 65536]
    assert results[5]["params"] == {"bags": 8192, "length": 20, "mode": "sum"}
    # Each row of the table is printed: the labels of the quick cases appear in order.
    labels = [benchmark.Case(r["op"], r["table"], r["threads"], **r["params"]).label
              for r in results]
    positions = [done.stdout.index(label + " ") for label in labels]
    assert positions == sorted(positions)


def test_torch_peers_run_on_rowquant_codes(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "results.json"
    done = rowquant(
        "bench", "--tables", "cache", "--threads", "1", "--budget", "0.001",
        "--peers", "torch", "fbgemm", "--json", str(path),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(path.read_text())["results"]
    # FBGEMM's layout check passed, so every operation has an FBGEMM time.
    assert all(r["fbgemm_s"] is not None for r in results)
    assert [r["torch_s"] is not None for r in results] == [r["op"] == "quantize" for r in results]
    assert all(r["missing"] == {"floor": "skipped", "np.take": "skipped", "reference": "skipped"}
               or r["op"] != "take" for r in results)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--no-such-option"],
        ["bench", "--threads", "0"],
        ["bench", "--tables", "nope"],
        ["bench", "--budget", "-1"],
        ["no-such-command"],
        [],
    ],
)
def test_usage_errors_exit_2(args):
    done = rowquant(*args)
    assert done.returncode == 2
    assert "usage: rowquant" in done.stderr


def test_a_failure_exits_1_with_one_line_and_no_traceback(tmp_path):
    missing = tmp_path / "no" / "such" / "folder" / "results.json"
    done = rowquant("bench", "--tables", "cache", "--json", str(missing))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("rowquant bench: error: ") and "no folder" in done.stderr
    assert done.stdout == ""  # it failed before measuring anything


def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "no" / "folder" / "results.json"
    done = rowquant("bench", "--debug", "--json", str(missing))
    assert done.returncode == 1
    assert "Traceback" in done.stderr
