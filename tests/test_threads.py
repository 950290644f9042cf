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
