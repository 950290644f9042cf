"""bench/targets.py on made-up runs: every target met, one missed (and named with its worst
case), a run without the cases a target needs, the --isa avx2 run, the baseline check, and
unreadable input. Nothing is timed: the runs are synthetic JSON with chosen times.

Run with ``python -m pytest bench/test_targets.py`` (``bench/`` is not in the default run).
"""

import json
import subprocess
import sys
from pathlib import Path

from rowquant import benchmark

TARGETS = Path(__file__).resolve().parent / "targets.py"
N_TARGETS = 10


def synthetic_run(isa="native", tables=benchmark.FULL_TABLES):
    """A full run on two threads where rowquant meets every target: FBGEMM 4x slower, np.take
    2x slower, rowquant at copy speed, the same time allocating and into out=."""
    results = []
    for case in benchmark.plan(full=True, tables=tables, threads=[1, 2]):
        results.append({
            "op": case.op, "table": case.table, "shape": list(benchmark.TABLES[case.table]),
            "params": case.params, "threads": case.threads, "rowquant_s": 1.0,
            "reference_s": 9.0, "torch_s": 5.0 if case.op == "quantize" else None,
            "fbgemm_s": 4.0, "np_take_s": 2.0 if case.op == "take" else None, "floor_s": 1.0,
            "missing": {}, "busy_elsewhere": 0.0,
        })
    simd = {"rowquant": isa if isa != "native" else "avx512", "fbgemm": "avx2",
            "fbgemm_guess": False, "fbgemm_basis": "made up"}
    return {"machine": {"simd": simd}, "isa": isa, "results": results, "summary": {}}


def find(run, op, table, threads, **params):
    """The one result of ``run`` for that case (``params``: those that pick it out)."""
    (found,) = [
        result for result in run["results"]
        if (result["op"], result["table"], result["threads"]) == (op, table, threads)
        and all(result["params"].get(name) == value for name, value in params.items())
    ]
    return found


def targets(tmp_path, *runs, args=()):
    paths = []
    for number, run in enumerate(runs):
        path = tmp_path / f"run{number}.json"
        path.write_text(json.dumps(run))
        paths.append(str(path))
    return subprocess.run([sys.executable, str(TARGETS), *paths, *args],
                          capture_output=True, text=True, timeout=60)


def lines_of(stdout):
    """The printed lines with those wrapped past 100 columns joined again."""
    lines = []
    for line in stdout.splitlines():
        if line.startswith(" " * 9):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def statuses(stdout):
    return [line.split()[0] for line in lines_of(stdout) if line[:1] not in ("=", " ")]


def test_every_target_met(tmp_path):
    done = targets(tmp_path, synthetic_run())
    assert done.returncode == 0, done.stdout + done.stderr
    assert statuses(done.stdout) == ["MET"] * N_TARGETS
    assert "bags >= 1.3x FBGEMM at 1 thread: worst 4.00x" in done.stdout
    assert "quantize <= 1.5x the copy floor on glove at 2 threads: worst 1.00x" in done.stdout
    assert all(len(line) <= 100 for line in done.stdout.splitlines())


def test_a_missed_target_names_its_worst_case(tmp_path):
    run = synthetic_run()
    find(run, "bag", "recsys", 2, bags=512, mode="mean")["fbgemm_s"] = 1.2
    find(run, "bag", "bert", 2, bags=8192, mode="sum")["fbgemm_s"] = 1.25  # missed, less so
    find(run, "quantize", "glove", 2)["floor_s"] = 0.5  # rowquant at twice the copy time
    done = targets(tmp_path, run)
    assert done.returncode == 1
    lines = lines_of(done.stdout)
    assert ("MISSED   bags >= 1.3x FBGEMM at 2 threads: worst 1.20x (bag 512x20 mean on recsys "
            "at 2 threads)") in lines
    assert "MET      bags >= 1.3x FBGEMM at 1 thread: worst 4.00x" in done.stdout
    assert ("MISSED   quantize <= 1.5x the copy floor on glove at 2 threads: worst 2.00x "
            "(quantize on glove at 2 threads)") in lines
    assert statuses(done.stdout).count("MISSED") == 2


def test_take_of_one_id_into_out_must_not_be_slower_than_allocating(tmp_path):
    run = synthetic_run()
    find(run, "take", "bert", 1, ids=1, dist="zipf", out=True)["rowquant_s"] = 1.25
    done = targets(tmp_path, run)
    assert done.returncode == 1
    assert ("MISSED   take 1 id: out= no slower than allocating (allocating / out=): worst 0.80x "
            "(take 1 zipf out= on bert at 1 thread)") in lines_of(done.stdout)


def test_a_quick_run_lacks_the_cases_of_some_targets(tmp_path):
    run = synthetic_run(tables=["cache"])
    run["results"] = [r for r in run["results"] if r["threads"] == 1]
    done = targets(tmp_path, run)
    assert done.returncode == 1
    assert ("NO DATA  bags >= 1.3x FBGEMM at 2 threads: no such case in this run"
            in lines_of(done.stdout))
    assert "MET      bags >= 1.3x FBGEMM at 1 thread" in done.stdout


def test_the_avx2_run_is_held_to_the_same_targets(tmp_path):
    avx2 = synthetic_run("avx2")
    find(avx2, "take", "cache", 1, ids=4096, dist="uniform", out=False)["fbgemm_s"] = 1.4
    done = targets(tmp_path, synthetic_run(), avx2)
    assert done.returncode == 1
    headings = [line for line in lines_of(done.stdout) if line.startswith("==")]
    assert [h.split(": ")[1] for h in headings] == [
        "--isa native, rowquant avx512, FBGEMM avx2", "--isa avx2, rowquant avx2, FBGEMM avx2"]
    assert statuses(done.stdout) == ["MET"] * N_TARGETS + ["MET"] * 2 + ["MISSED"] + ["MET"] * 7


def test_baseline_flags_each_case_slower_than_the_margin(tmp_path):
    baseline, run = synthetic_run(), synthetic_run()
    find(run, "quantize", "glove", 1)["rowquant_s"] = 1.25    # 25% slower: flagged
    find(run, "bag", "cache", 2, bags=512, mode="sum")["rowquant_s"] = 1.08  # within 10%
    base_path = tmp_path / "baseline.json"
    base_path.write_text(json.dumps(baseline))
    done = targets(tmp_path, run, args=["--baseline", str(base_path)])
    assert done.returncode == 1
    lines = lines_of(done.stdout)
    assert ("  slower: quantize on glove at 1 thread: 1.25 s, baseline 1.00 s (+25%)") in lines
    assert sum("slower:" in line for line in lines) == 1
    (verdict,) = [line for line in lines if "than the baseline by more than 10%" in line]
    assert verdict.startswith("MISSED") and "200 cases compared, largest change +25.0%" in verdict
    # A wider margin lets it pass; the targets themselves are still met.
    done = targets(tmp_path, run, args=["--baseline", str(base_path), "--margin", "0.3"])
    assert done.returncode == 0, done.stdout
    assert "slower:" not in done.stdout


def test_unreadable_input_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, str(TARGETS), str(tmp_path / "missing.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert "cannot read" in done.stderr and "missing.json" in done.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    done = subprocess.run([sys.executable, str(TARGETS), str(tmp_path / "list.json")],
                          capture_output=True, text=True, timeout=60)
    assert "is not the JSON of rowquant bench --json" in done.stderr
