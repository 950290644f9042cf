"""The ``rowquant`` command, run as a subprocess (``python -m rowquant``): help, a tiny benchmark
with its table (at most 100 columns, one ratio per peer, a summary) and its JSON output, the
instruction sets of ``--isa`` (FBGEMM's set in the environment before torch is imported), and
the exit status of usage errors and failures. No timing is checked."""

import json
import os
import subprocess
import sys

import pytest

import rowquant as rq
from rowquant import benchmark

TINY = ("--tables", "cache", "--budget", "0.001")


def rowquant(*args, timeout=60, env=None):
    return subprocess.run(
        [sys.executable, "-m", "rowquant", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )


def needs_avx2_kernels():
    info = rq.backend_info()
    if info["backend"] != "c" or "avx2" not in info["simd_available"]:
        pytest.skip("rowquant's avx2 kernels do not run here")


def test_bench_help_shows_the_options_and_examples():
    done = rowquant("bench", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--full", "--threads", "--json", "--tables", "--budget", "--isa", "examples:"):
        assert option in done.stdout
    assert "{native,avx2}" in done.stdout


def test_every_line_of_the_report_fits_100_columns():
    # every peer that can run here, at one thread and at two, and the summary
    done = rowquant("bench", *TINY, "--threads", "1", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    titles = next(line for line in lines if line.startswith("case "))
    assert titles.split() == ["case", "thr", "rowquant", "FBGEMM", "np.take", "torch", "ref",
                              "floor", "busy"]
    operations = ("quantize", "dequantize", "take", "bag")
    rows = [line for line in lines if line.split(" ")[0] in operations]
    assert len(rows) == 6 * 2
    for row in rows:  # label, threads, rowquant's time, then one ratio (or mark) per column
        cells = row.split("  ")
        cells = [cell.strip() for cell in cells if cell.strip()]
        assert len(cells) == 3 + 5 + 1, row
        assert all(cell.endswith("x") or cell in ("-", "skip", "n/a") for cell in cells[3:8]), row


def test_tiny_bench_prints_the_table_and_writes_json(tmp_path):
    path = tmp_path / "results.json"
    done = rowquant(
        "bench", "--tables", "cache", "--threads", "1", "--budget", "0.001",
        "--peers", "reference", "np.take", "floor", "--json", str(path),
    )
    assert done.returncode == 0, done.stderr
    info = rq.backend_info()  # --isa native: the best kernels, whatever ROWQUANT_SIMD says
    best = info["simd_available"][-1] if info["backend"] == "c" else "none (numpy backend)"
    assert f"SIMD: rowquant {best}; " in done.stdout
    assert "floor: the same for np.copyto" in done.stdout
    assert "-- cache: 1000 x 64 float32" in done.stdout
    report = json.loads(path.read_text())
    assert set(report) == {"machine", "isa", "results", "summary"}
    assert report["isa"] == "native"
    assert report["machine"]["backend"]["backend"] in ("c", "numpy")
    simd = report["machine"]["simd"]
    assert set(simd) == {"rowquant", "fbgemm", "fbgemm_guess", "fbgemm_basis"}
    assert simd["rowquant"] == report["machine"]["backend"]["simd"]
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
    # The summary: the reference and np.take with their worst case, and the copy floor.
    summary = report["summary"]
    assert set(summary) - {"contended"} == {"reference", "np.take", "floor"}  # contended: load
    assert summary["reference"]["cases"] == 6 and summary["np.take"]["cases"] == 3
    worst = summary["np.take"]["worst"]
    ratios = [r["np_take_s"] / r["rowquant_s"] for r in results if r["np_take_s"]]
    assert worst["ratio"] == pytest.approx(min(ratios), rel=1e-3)
    assert summary["np.take"]["faster"] == sum(ratio > 1 for ratio in ratios)
    cores = report["machine"]["cores"]
    contended = sum(r["threads"] + round(r["busy_elsewhere"], 1) > cores
                    for r in results if r["busy_elsewhere"] is not None)
    assert summary.get("contended", {"cases": 0})["cases"] == contended
    floors = [r["floor_s"] / r["rowquant_s"] for r in results]
    assert summary["floor"]["worst"]["ratio"] == pytest.approx(min(floors), rel=1e-3)
    text = " ".join(done.stdout.split())  # the sentences, whatever their line breaks
    assert (f"rowquant is faster than np.take in {summary['np.take']['faster']} of 3 cases; "
            f"slowest against np.take: {worst['case']} on cache at 1 thread") in text
    assert "copy floor: at worst rowquant takes" in text


def test_markdown_has_the_times_ratios_and_summary():
    done = rowquant("bench", *TINY, "--threads", "1", "--peers", "np.take", "floor",
                    "--markdown")
    assert done.returncode == 0, done.stderr
    markdown = done.stdout[done.stdout.index("| table |"):]
    lines = markdown.splitlines()
    assert lines[0].split(" | ")[1:5] == ["case", "threads", "rowquant", "FBGEMM"]
    take = next(line for line in lines if "| take 4096 uniform |" in line)
    assert " (" in take.split(" | ")[5] and take.split(" | ")[5].endswith("x)")  # np.take
    assert "- rowquant is faster than np.take in " in markdown
    assert "- copy floor: at worst rowquant takes " in markdown


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


@pytest.mark.parametrize("bits", [4, 2])
def test_bits_times_nbit_tables_against_fbgemms_nbit_operators(tmp_path, bits):
    pytest.importorskip("torch")
    path = tmp_path / "results.json"
    done = rowquant("bench", *TINY, "--threads", "1", "--bits", str(bits), "--json", str(path))
    assert done.returncode == 0, done.stderr
    assert f"{bits}-bit rows" in done.stdout
    results = json.loads(path.read_text())["results"]
    assert {r["bits"] for r in results} == {bits}
    # FBGEMM's N-bit operators read rowquant's bytes as its values (the layout check passed)
    assert all(r["fbgemm_s"] is not None for r in results)
    assert all(r["torch_s"] is None and "torch" not in r["missing"] for r in results)
    n_rows, dim = results[0]["shape"]
    row = -(-dim * bits // 8) + 4  # packed codes, float16 scale and bias
    dequantize = next(r for r in results if r["op"] == "dequantize")
    assert (dequantize["bytes_read"], dequantize["bytes_written"]) == (n_rows * row, 4 * n_rows * dim)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--bits", "3"],
        ["bench", "--no-such-option"],
        ["bench", "--threads", "0"],
        ["bench", "--tables", "nope"],
        ["bench", "--budget", "-1"],
        ["bench", "--isa", "avx512f"],
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


# The child records FBGEMM_ENABLE_INSTRUCTIONS as it is when torch is first imported.
SPY_ON_TORCH_IMPORT = """
import importlib.abc, json, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            seen.append(os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS"))
        return None
sys.meta_path.insert(0, Spy())
from rowquant.cli import main
status = main(sys.argv[1:])
print("torch imported with", json.dumps(seen))
sys.exit(status)
"""


def spy_on_torch_import(*args, env=None):
    return subprocess.run(
        [sys.executable, "-c", SPY_ON_TORCH_IMPORT, *args],
        capture_output=True, text=True, timeout=120,
        env=None if env is None else {**os.environ, **env},
    )


def test_isa_avx2_runs_both_sides_on_avx2(tmp_path):
    pytest.importorskip("torch")
    needs_avx2_kernels()
    path = tmp_path / "avx2.json"
    done = spy_on_torch_import("bench", *TINY, "--threads", "1", "--isa", "avx2",
                               "--peers", "fbgemm", "--json", str(path),
                               env={"ROWQUANT_SIMD": "scalar"})
    assert done.returncode == 0, done.stderr
    # FBGEMM's choice was in the environment before torch was imported, and torch once only
    assert done.stdout.endswith('torch imported with ["AVX2"]\n')
    assert "SIMD: rowquant avx2; FBGEMM avx2 (FBGEMM_ENABLE_INSTRUCTIONS=AVX2)" in done.stdout
    report = json.loads(path.read_text())
    assert report["isa"] == "avx2"
    assert report["machine"]["simd"] == {"rowquant": "avx2", "fbgemm": "avx2",
                                         "fbgemm_guess": False,
                                         "fbgemm_basis": "FBGEMM_ENABLE_INSTRUCTIONS=AVX2"}
    assert all(result["fbgemm_s"] is not None for result in report["results"])


def test_isa_native_is_each_sides_best_whatever_the_environment_says(tmp_path):
    pytest.importorskip("torch")
    needs_avx2_kernels()
    path = tmp_path / "native.json"
    asked_otherwise = {"ROWQUANT_SIMD": "scalar", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    done = spy_on_torch_import("bench", *TINY, "--threads", "1", "--peers", "fbgemm",
                               "--json", str(path), env=asked_otherwise)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("torch imported with [null]\n")  # the variable was unset
    simd = json.loads(path.read_text())["machine"]["simd"]
    assert simd["rowquant"] == rq.backend_info()["simd_available"][-1]  # the best one
    assert simd["fbgemm_basis"].endswith("FBGEMM_ENABLE_INSTRUCTIONS unset")


def test_isa_is_refused_when_torch_was_imported_with_another_setting():
    pytest.importorskip("torch")
    needs_avx2_kernels()
    code = (
        "import torch\n"
        "from rowquant import benchmark\n"
        "benchmark.run(tables=['cache'], threads=[1], budget=0.001, peers=['fbgemm'], isa='avx2')"
    )
    env = {name: value for name, value in os.environ.items()
           if name != "FBGEMM_ENABLE_INSTRUCTIONS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 1
    assert ("RuntimeError: isa 'avx2' needs FBGEMM_ENABLE_INSTRUCTIONS=AVX2 before torch is "
            "imported, but torch is already imported with FBGEMM_ENABLE_INSTRUCTIONS unset, so "
            "FBGEMM would not run the kernels asked for") in done.stderr
    # Imported with the setting asked for, or run without the torch peers, it runs.
    same = code.replace("import torch", "import os; os.environ['FBGEMM_ENABLE_INSTRUCTIONS'] = "
                        "'avx2'; import torch")
    without = code.replace("peers=['fbgemm']", "peers=['floor']")
    for code in (same, without):
        assert subprocess.run([sys.executable, "-c", code], timeout=120, env=env).returncode == 0


def test_isa_avx2_needs_the_compiled_kernels():
    done = rowquant("bench", *TINY, "--isa", "avx2", env={"ROWQUANT_PUREPYTHON": "1"})
    assert done.returncode == 1
    assert done.stderr == ("rowquant bench: error: isa 'avx2' runs rowquant's avx2 kernels, but "
                           "rowquant runs on numpy (ROWQUANT_PUREPYTHON is set)\n")
    assert done.stdout == ""  # refused before the header
