"""Results do not depend on the number of threads, bags included."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import assert_same_bits, assert_same_codes

import rowquant as rq

# Large enough that the kernels split every call across threads: they share work only from
# about 8 MB touched per call (csrc/rowquant.c, RQ_PARALLEL_MIN_BYTES); 7001x300 touches 10 MB
# in quantize and dequantize, and the ~10500 ids below 16-20 MB in take and bag.
N_ROWS, DIM = 7001, 300


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2003)
    E = (rng.standard_normal((N_ROWS, DIM)) * 2.0 ** rng.integers(-40, 40, (N_ROWS, 1)))
    E = E.astype(np.float32)
    E[::17] = 0
    codes, scales = rq.reference.quantize_rows(E)
    lengths = rng.integers(0, 7, 3001)
    ids = rng.integers(0, N_ROWS, lengths.sum())
    weights = rng.uniform(-1, 1, len(ids)).astype(np.float32)
    return E, codes, scales, ids, lengths, weights


def run_all(data, threads):
    E, codes, scales, ids, lengths, weights = data
    qe = rq.QuantizedEmbedding(codes, scales)
    kw = {} if threads == "default" else {"threads": threads}
    return {
        "quantize_rows": rq.quantize_rows(E, **kw),
        "quantize": (lambda t: (t.codes, t.scales))(rq.quantize(E, **kw)),
        "dequantize": rq.dequantize(codes, scales, **kw),
        "qe.dequantize": qe.dequantize(**kw),
        "take": rq.take(codes, scales, ids, **kw),
        "qe.take": qe.take(ids.reshape(-1, 1), **kw),
        "bag_sum": rq.embedding_bag(codes, scales, ids, lengths=lengths, weights=weights, **kw),
        "bag_mean": rq.embedding_bag(codes, scales, ids, lengths=lengths, mode="mean",
                                     padding_idx=int(ids[0]), **kw),
        "bag_max": rq.embedding_bag(codes, scales, ids, lengths=lengths, mode="max",
                                    padding_idx=int(ids[1]), **kw),
        "qe.bag": qe.bag(ids[: len(ids) // 7 * 7].reshape(-1, 7), **kw),
    }


def assert_same_results(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        if name.startswith("quantize"):
            assert_same_codes(got[name][0], expected[name][0])
            assert_same_bits(got[name][1], expected[name][1])
        else:
            assert_same_bits(got[name], expected[name])


def test_explicit_thread_counts_agree(data):
    one = run_all(data, 1)
    for threads in (2, 3, 8, None):
        assert_same_results(run_all(data, threads), one)


def test_results_match_the_reference(data):
    E, codes, scales, ids, lengths, weights = data
    got = run_all(data, 2)
    assert_same_codes(got["quantize_rows"][0], codes)
    assert_same_bits(got["quantize_rows"][1], scales)
    assert_same_bits(got["take"], rq.reference.take(codes, scales, ids))


def test_library_default(data, restore_num_threads):
    one = run_all(data, 1)
    rq.set_num_threads(1)
    assert rq.get_num_threads() == 1
    assert_same_results(run_all(data, "default"), one)
    rq.set_num_threads(2)
    assert rq.get_num_threads() == 2
    assert_same_results(run_all(data, "default"), one)


def test_default_is_at_least_one():
    assert isinstance(rq.get_num_threads(), int)
    assert rq.get_num_threads() >= 1


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_set_num_threads_rejects_non_positive(bad, restore_num_threads):
    before = rq.get_num_threads()
    with pytest.raises(ValueError):
        rq.set_num_threads(bad)
    assert rq.get_num_threads() == before


def test_concurrent_python_threads(data):
    # Kernels release the GIL: lookups from several Python threads at once must not interfere.
    _, codes, scales, ids, lengths, weights = data
    qe = rq.QuantizedEmbedding(codes, scales)
    expected_take = rq.take(codes, scales, ids, threads=1)
    expected_bag = rq.embedding_bag(codes, scales, ids, lengths=lengths, weights=weights,
                                    threads=1)

    def work(k):
        if k % 2:
            return "take", qe.take(ids, threads=2)
        return "bag", qe.bag(ids, lengths=lengths, weights=weights)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for kind, result in pool.map(work, range(16)):
            assert_same_bits(result, expected_take if kind == "take" else expected_bag)


def thread_calls():
    """Every public call that takes threads=, on a small table."""
    codes = np.full((4, 3), 128, np.uint8)
    scales = np.ones(4, np.float32)
    E = np.ones((4, 3), np.float32)
    qe = rq.QuantizedEmbedding(codes, scales)
    return {
        "quantize_rows": lambda t: rq.quantize_rows(E, threads=t),
        "quantize": lambda t: rq.quantize(E, threads=t),
        "dequantize": lambda t: rq.dequantize(codes, scales, threads=t),
        "qe.dequantize": lambda t: qe.dequantize(threads=t),
        "take": lambda t: rq.take(codes, scales, [1, 2], threads=t),
        "qe.take": lambda t: qe.take(np.array([1, 2]), threads=t),
        "qe.take out=": lambda t: qe.take([1], out=np.empty((1, 3), np.float32), threads=t),
        "embedding_bag": lambda t: rq.embedding_bag(codes, scales, [[1, 2]], threads=t),
        "qe.bag": lambda t: qe.bag([[1, 2]], threads=t),
    }


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("call", list(thread_calls()))
@pytest.mark.parametrize(
    "threads, error",
    [(0, ValueError), (-1, ValueError), (2**31, ValueError), (10**30, ValueError),
     ("2", TypeError), (1.0, TypeError), (True, TypeError)],
)
def test_bad_threads_get_the_same_error_on_both_backends(backend, call, threads, error):
    """threads= is checked before any work, on either backend: the numpy backend ignored it in
    take and bag, and counts of 2**31 or more passed the check and then failed inside the C
    glue with OverflowError."""
    from rowquant import _backend

    if backend == "c" and not _backend.compiled_available():
        pytest.skip("the C extension is not in use")
    with _backend.using(backend):
        with pytest.raises(error, match="threads"):
            thread_calls()[call](threads)


def test_largest_thread_count_is_accepted(restore_num_threads):
    """2**31 - 1 is a valid count (a call uses at most 256 threads whatever it asks)."""
    codes, scales = rq.quantize_rows(np.ones((4, 3), np.float32), threads=2**31 - 1)
    rq.set_num_threads(2**31 - 1)
    assert rq.get_num_threads() == 2**31 - 1
    assert_same_codes(rq.quantize_rows(np.ones((4, 3), np.float32))[0], codes)


@pytest.mark.parametrize("bad", [2**31, 10**20])
def test_set_num_threads_rejects_counts_past_a_c_int(bad, restore_num_threads):
    with pytest.raises(ValueError, match="at most 2147483647"):
        rq.set_num_threads(bad)


@pytest.mark.parametrize("setting", ["2147483648", "0", "many"])
def test_environment_thread_count_out_of_range_warns(setting):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import rowquant; print(rowquant.get_num_threads())"],
        env={**__import__("os").environ, "ROWQUANT_NUM_THREADS": setting},
        capture_output=True, text=True, check=True,
    )
    assert f"ignoring ROWQUANT_NUM_THREADS={setting!r}" in done.stderr
    assert int(done.stdout) >= 1


@pytest.mark.parametrize("command", [["bench"], ["quantize", "in.npy", "-o", "out.safetensors"]])
def test_command_line_thread_count_past_a_c_int_is_a_usage_error(command, capsys):
    from rowquant import cli

    with pytest.raises(SystemExit) as exit:
        cli.main([*command, "--threads", "2147483648"])
    assert exit.value.code == 2
    assert "must be at most 2147483647" in capsys.readouterr().err
