"""Two hazards of real deployments, each run in a fresh interpreter so that a crash or a hang
fails the test instead of killing or stalling the whole run:

* a process forked after a multi-threaded call (multiprocessing's default on Linux, Dask and
  gunicorn workers, DataLoader workers) keeps working, with all its threads, and so do
  forkserver and spawn children;
* a caller that changes its own ids while a lookup runs gets an IndexError or rows, never a
  crash: the kernels check every id they read, at the moment they read it.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import rowquant as rq

BACKEND_C = rq.backend_info()["backend"] == "c"


def run_python(code: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter (its own process group, so that a hung forked child
    is killed with it); a timeout fails the test with what the script printed."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"timed out after {timeout} s (a hang)\nstdout:\n{stdout}\nstderr:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


FORK_SCRIPT = """
import multiprocessing, os, sys
import numpy as np
import rowquant as rq

def count_threads():
    return len(os.listdir("/proc/self/task"))

def child_work(_):
    # a multi-threaded quantize (24 MB: shared across 2 threads), a big take and big bags
    E = np.random.default_rng(1).standard_normal((20000, 300), dtype=np.float32)
    qe = rq.quantize(E, threads=2)
    ids = np.random.default_rng(2).integers(0, 20000, 40000)
    rows = qe.take(ids, threads=2)
    bags = qe.bag(ids.reshape(-1, 20), threads=2)
    return (qe.codes.tobytes() == rq.quantize(E, threads=1).codes.tobytes(),
            rows.tobytes() == qe.take(ids, threads=1).tobytes(),
            bags.tobytes() == qe.bag(ids.reshape(-1, 20), threads=1).tobytes(),
            count_threads())

if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "{method}"
    # the parent's own multi-threaded call first: its worker threads do not survive a fork
    E = np.random.default_rng(0).standard_normal((20000, 300), dtype=np.float32)
    rq.quantize(E, threads=2)
    context = multiprocessing.get_context(method)
    with context.Pool(2) as pool:
        results = pool.map(child_work, range(2))
    for same_codes, same_rows, same_bags, threads in results:
        print(same_codes, same_rows, same_bags, threads)
"""


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_children_work_after_a_multithreaded_call_in_the_parent(method, tmp_path):
    script = tmp_path / "fork_script.py"
    script.write_text(textwrap.dedent(FORK_SCRIPT.replace("{method}", method)))
    done = run_python(f"import runpy, sys; sys.argv = [{str(script)!r}, {method!r}]; "
                      f"runpy.run_path({str(script)!r}, run_name='__main__')")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    results = [line.split() for line in lines if line.strip()]
    assert len(results) == 2, done.stdout
    for same_codes, same_rows, same_bags, threads in results:
        assert (same_codes, same_rows, same_bags) == ("True", "True", "True"), done.stdout
        if BACKEND_C and rq.backend_info().get("parallel", True):
            # the child's kernels ran on more than one thread: the pool was made anew
            assert int(threads) >= 2, done.stdout


MUTATION_SCRIPT = """
import threading, time
import numpy as np
import rowquant as rq

rng = np.random.default_rng(0)
qe = rq.quantize(rng.standard_normal((5000, 64), dtype=np.float32))
ids = rng.integers(0, 5000, 4096)
weights = np.ones(len(ids), np.float32)
offsets = np.arange(0, len(ids), 16)
stop = False

def flip():
    while not stop:
        ids[-1] = 1 << 40
        ids[-1] = 0

calls = {
    "qe.take": lambda: qe.take(ids),
    "qe.take out=": lambda: qe.take(ids, out=np.empty((len(ids), 64), np.float32)),
    "rq.take": lambda: rq.take(qe.codes, qe.scales, ids),
    "qe.bag": lambda: qe.bag(ids, offsets),
    "qe.bag mean": lambda: qe.bag(ids, offsets, mode="mean"),
    "qe.bag max": lambda: qe.bag(ids, offsets, mode="max"),
    "qe.bag weighted": lambda: qe.bag(ids, offsets, weights=weights),
    "qe.bag 2-D": lambda: qe.bag(ids.reshape(-1, 16), threads=2),
}
flipper = threading.Thread(target=flip)
flipper.start()
try:
    for name, call in calls.items():
        outcomes = {"ok": 0, "IndexError": 0}
        deadline = time.perf_counter() + {seconds}
        while time.perf_counter() < deadline:
            try:
                call()
                outcomes["ok"] += 1
            except IndexError:
                outcomes["IndexError"] += 1
        print(name, outcomes)
finally:
    stop = True
    flipper.join()
"""


def test_ids_changed_during_a_call_never_crash():
    """A thread flips ``ids[-1]`` between 2**40 and 0 while lookups read ``ids``: before the
    kernels checked each id as they read it, this crashed with SIGSEGV within a second."""
    done = run_python(MUTATION_SCRIPT.replace("{seconds}", "0.6"), timeout=300)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-3000:])
    assert done.stdout.count("\n") == 8, done.stdout
