"""Similarity on the codes: QuantizedEmbedding.dot, norms, search and most_similar.

The expected values come from outside the code under test: exact integer and float64 sums
(math.fsum), float64 search on the dequantized table, gensim's most_similar, and
rowquant.reference, whose own definitions are checked against those first. The SIMD paths are
compared with the scalar ones in test_simd_paths.py; .ci/run runs this file on every backend.
"""

import math

import numpy as np
import pytest
from helpers import assert_same_bits, random_table

import rowquant as rq
from rowquant import _backend, reference

PRECISIONS = ("exact", "fast")
METRICS = ("dot", "cosine")


def table(rng, n_rows, dim, **kwargs):
    codes, scales = random_table(rng, n_rows, dim, **kwargs)
    return rq.QuantizedEmbedding(codes, scales)


def expected_scores(qe, X, metric, precision):
    """The reference's scores, assembled from its definitions."""
    X = np.asarray(X, np.float32)
    X = X.reshape(1, -1) if X.ndim == 1 else X
    values = reference.dequantize(qe.codes, qe.scales)
    inverse = reference.inverse_norms(reference.norms(values)) if metric == "cosine" else None
    query_inverse = reference.inverse_norms(reference.norms(X)) if metric == "cosine" else None
    if precision == "exact":
        sums = reference.lane_sums(values, X)
        query_scales = None
    else:
        centered, query_scales = reference.query_codes(X)
        sums = reference.integer_dots(qe.codes, centered)
    return reference.scores(
        sums, reference.row_factors(qe.scales, inverse, precision),
        reference.query_factors(query_scales, query_inverse, len(X)),
    )


def float64_search(values, X, k):
    """Top-k of the float64 dot products of the dequantized rows, ties by smaller row."""
    products = X.astype(np.float64) @ values.astype(np.float64).T
    order = np.lexsort((np.broadcast_to(np.arange(values.shape[0]), products.shape), -products))
    return order[:, :k]


# ----------------------------------------------------------------------------- the definitions


def test_exact_sums_are_float64_arithmetic_within_the_documented_bound():
    rng = np.random.default_rng(1)
    qe = table(rng, 40, 83)
    X = (rng.standard_normal((5, 83)) * 10.0 ** rng.integers(-3, 3, (5, 1))).astype(np.float32)
    values = reference.dequantize(qe.codes, qe.scales).astype(np.float64)
    sums = reference.lane_sums(values.astype(np.float32), X)
    for b in range(len(X)):
        for i in range(len(values)):
            terms = values[i] * X[b].astype(np.float64)
            exact = math.fsum(terms)
            bound = 83 * 2.0**-52 * math.fsum(np.abs(terms))
            assert abs(sums[b, i] - exact) <= bound


def test_exact_scores_are_the_float64_dot_products_rounded_to_float32():
    rng = np.random.default_rng(2)
    qe = table(rng, 300, 64)
    X = rng.standard_normal((7, 64)).astype(np.float32)
    values = qe.dequantize().astype(np.float64)
    exact = np.array([[math.fsum(v * x) for v in values] for x in X.astype(np.float64)])
    got = qe.dot(X)
    ulps = np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32))
    assert ulps.max() <= 1.0  # normally 0: the float64 sum is far finer than a float32 step
    assert np.mean(got == exact.astype(np.float32)) > 0.99


def test_fast_scores_are_the_integer_dot_of_the_codes_scaled():
    rng = np.random.default_rng(3)
    qe = table(rng, 50, 37)
    X = rng.standard_normal((4, 37)).astype(np.float32)
    got = qe.dot(X, precision="fast")
    for b, x in enumerate(X):
        t = np.float32(np.abs(x).max() / np.float32(127))
        query = np.floor(x.astype(np.float64) / np.float64(t) + 128.5).astype(int) - 128
        assert np.abs(query).max() <= 127
        for i in range(len(qe)):
            integer = sum(int(c) * int(q) for c, q in zip(qe.codes[i].astype(int) - 128, query))
            expected = np.float32(integer * float(qe.scales[i]) * float(t))
            assert got[b, i] == expected


def test_fast_scores_are_within_half_a_query_step_per_value():
    """The only approximation of fast is the query's rounding: |x_j - x^_j| <= t / 2."""
    rng = np.random.default_rng(4)
    qe = table(rng, 500, 96)
    X = rng.standard_normal((6, 96)).astype(np.float32)
    values = qe.dequantize().astype(np.float64)
    exact = X.astype(np.float64) @ values.T
    t = np.abs(X).max(axis=1) / 127
    bound = (np.abs(values).sum(axis=1)[None, :] * t[:, None] / 2) * (1 + 1e-5) + 1e-30
    err = np.abs(qe.dot(X, precision="fast") - exact)
    assert (err <= bound + np.spacing(np.abs(exact).astype(np.float32))).all()


@pytest.mark.parametrize("magnitude", [1e-44, 1e-40, 1e-30, 1e30, 3e37])
def test_fast_keeps_tiny_and_huge_queries(magnitude):
    """A query is scaled by a power of two before its 8 bits are taken: max / 127 would
    underflow for subnormal queries (scoring every row 0), and the scaling changes no code."""
    rng = np.random.default_rng(18)
    qe = table(rng, 300, 16, exponents=(0, 1))
    x = (rng.standard_normal(16) * magnitude).astype(np.float32)
    exact = qe.dot(x).astype(np.float64)
    fast = qe.dot(x, precision="fast").astype(np.float64)
    # the query's rounding, with its steps relative to its largest value (1/127), and for
    # subnormal queries the coarser steps of the values themselves
    values = qe.dequantize().astype(np.float64)
    step = np.abs(x).max() / 127 + (2.0**-149 if magnitude < 1e-37 else 0)
    bound = np.abs(values).sum(axis=1) * step / 2 * (1 + 1e-5)
    assert (np.abs(fast - exact) <= bound + np.spacing(np.abs(exact).astype(np.float32))).all()
    assert np.corrcoef(fast, exact)[0, 1] > 0.9
    centered, t = reference.query_codes(x[None])
    assert np.abs(centered).max() == 127


def test_integer_dots_are_exact_past_the_int32_chunk():
    """70000 columns of code 255 times query code 127, summed unshifted as vpdpbusd sums them
    (255 * 127 per column), overflow int32 unless the sum is split."""
    codes = np.full((3, 70000), 255, np.uint8)
    codes[1] = 1
    codes[2] = 128
    qe = rq.QuantizedEmbedding(codes, np.ones(3, np.float32))
    x = np.ones(70000, np.float32)
    got = qe.dot(x, precision="fast")
    assert got.tolist() == [127.0 * 70000, -127.0 * 70000, 0.0]
    assert_same_bits(qe.dot(x, precision="exact"), got)


def test_norms_are_float64_norms_of_the_dequantized_rows():
    rng = np.random.default_rng(5)
    qe = table(rng, 200, 50)
    norms = qe.norms()
    values = qe.dequantize().astype(np.float64)
    exact = np.sqrt([math.fsum(v * v) for v in values])
    ulps = np.abs(norms - exact) / np.spacing(exact.astype(np.float32) + 1e-45)
    assert ulps.max() <= 1.0
    assert norms.dtype == np.float32 and not norms.flags.writeable
    assert qe.norms() is norms  # kept
    assert_same_bits(norms, reference.norms(reference.dequantize(qe.codes, qe.scales)))


# ----------------------------------------------------------------------------- scores


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 8), (130, 83), (300, 64), (5, 0)])
def test_dot_equals_the_reference(shape, metric, precision):
    rng = np.random.default_rng(sum(shape))
    qe = table(rng, *shape)
    X = rng.standard_normal((21, shape[1])).astype(np.float32)  # more than one block of 16
    X[3] = 0
    expected = expected_scores(qe, X, metric, precision)
    for threads in (1, 2, 3):
        assert_same_bits(qe.dot(X, metric=metric, precision=precision, threads=threads),
                         expected)
    assert_same_bits(qe.dot(X[5], metric=metric, precision=precision), expected[5])


@pytest.mark.parametrize("precision", PRECISIONS)
def test_dot_on_given_rows(precision):
    rng = np.random.default_rng(6)
    qe = table(rng, 100, 20)
    X = rng.standard_normal((3, 20)).astype(np.float32)
    ids = [5, 99, 5, 0]
    full = qe.dot(X, precision=precision, metric="cosine")
    assert_same_bits(qe.dot(X, ids=ids, precision=precision, metric="cosine"), full[:, ids])
    assert qe.dot(X, ids=[]).shape == (3, 0)
    with pytest.raises(IndexError):
        qe.dot(X, ids=[100])


def test_dot_into_out():
    rng = np.random.default_rng(7)
    qe = table(rng, 30, 8)
    X = rng.standard_normal((2, 8)).astype(np.float32)
    out = np.empty((2, 30), np.float32)
    assert qe.dot(X, out=out) is out
    assert_same_bits(out, qe.dot(X))
    with pytest.raises(ValueError, match="shape"):
        qe.dot(X, out=np.empty((30, 2), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        qe.dot(X, out=np.empty((2, 30), np.float64))


def test_zero_rows_and_zero_queries_score_zero():
    codes = np.array([[128, 128], [255, 1]], np.uint8)
    qe = rq.QuantizedEmbedding(codes, np.array([0.0, 1.0], np.float32))
    assert qe.dot([1.0, 2.0]).tolist() == [0.0, -127.0]
    # fast: the query is [63.5, 127] / 127 * 2 on 8 bits, rounded to [64, 127] steps of 2 / 127
    assert qe.dot([1.0, 2.0], precision="fast").tolist() == [0.0, (64 - 127) * 127 * 2 / 127]
    for precision in PRECISIONS:
        assert qe.dot([1.0, 2.0], metric="cosine", precision=precision)[0] == 0.0
        assert qe.dot([0.0, 0.0], metric="cosine", precision=precision).tolist() == [0.0, 0.0]
    assert qe.norms()[0] == 0.0


def test_empty_tables():
    empty = rq.QuantizedEmbedding(np.empty((0, 4), np.uint8), np.empty(0, np.float32))
    for precision in PRECISIONS:
        assert empty.dot(np.ones((3, 4)), precision=precision).shape == (3, 0)
        scores, rows = empty.search(np.ones((3, 4)), 5, precision=precision, metric="cosine")
        assert scores.shape == rows.shape == (3, 0)
    assert empty.norms().shape == (0,)
    flat = rq.QuantizedEmbedding(np.empty((3, 0), np.uint8), np.zeros(3, np.float32))
    assert flat.dot(np.empty((2, 0))).tolist() == [[0.0] * 3] * 2
    assert flat.search(np.empty(0), 2)[1].tolist() == [0, 1]
    none = table(np.random.default_rng(0), 4, 3)
    assert none.dot(np.empty((0, 3))).shape == (0, 4)
    assert none.search(np.empty((0, 3)), 2)[0].shape == (0, 2)


@pytest.mark.parametrize(
    "queries, error, message",
    [
        ([1.0, float("nan"), 0.0], ValueError, r"queries\[1\] is nan"),
        ([[1.0, 0.0, 0.0], [0.0, float("inf"), 0.0]], ValueError, r"queries\[1, 1\] is inf"),
        ([1e39, 0.0, 0.0], ValueError, r"float32's range"),
        ([1.0, 2.0], ValueError, "2 values each but the table's rows have 3"),
        (np.ones((2, 2, 3)), ValueError, "one vector"),
        (["a", "b", "c"], TypeError, "real numbers"),
        ([True, False, True], TypeError, "real numbers"),
    ],
)
def test_bad_queries_are_refused(queries, error, message):
    qe = table(np.random.default_rng(0), 4, 3)
    for call in (qe.dot, qe.search):
        with pytest.raises(error, match=message):
            call(queries)


def test_bad_arguments_are_refused():
    qe = table(np.random.default_rng(0), 4, 3)
    with pytest.raises(ValueError, match="metric"):
        qe.dot([1, 2, 3], metric="l2")
    with pytest.raises(ValueError, match="precision"):
        qe.search([1, 2, 3], precision="int8")
    with pytest.raises(ValueError, match="k must be >= 0"):
        qe.search([1, 2, 3], -1)
    with pytest.raises(TypeError, match="k must be an integer"):
        qe.search([1, 2, 3], 2.5)
    with pytest.raises(IndexError):
        qe.search([1, 2, 3], exclude=[-1])
    with pytest.raises(ValueError, match="1-D"):
        qe.search([1, 2, 3], ids=[[0, 1]])


def test_cosine_refuses_rows_whose_norm_overflows():
    codes = np.array([[255] * 4, [200] * 4], np.uint8)
    qe = rq.QuantizedEmbedding(codes, np.array([3e38 / 127, 1.0], np.float32))
    assert np.isinf(qe.norms()[0])
    with pytest.raises(ValueError, match="row 0's norm is beyond float32's range"):
        qe.dot([1, 1, 1, 1], metric="cosine")
    assert qe.dot([1, 1, 1, 1])[1] == 72.0 * 4


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("metric", METRICS)
def test_search_is_the_top_k_of_dot(metric, precision):
    rng = np.random.default_rng(8)
    qe = table(rng, 3000, 40, exponents=(-2, 2))
    X = rng.standard_normal((20, 40)).astype(np.float32)
    expected_scores_, expected_rows = reference.top_k(
        expected_scores(qe, X, metric, precision), 10
    )
    for threads in (1, 2):
        scores, rows = qe.search(X, 10, metric=metric, precision=precision, threads=threads)
        np.testing.assert_array_equal(rows, expected_rows)
        assert_same_bits(scores, expected_scores_)
    scores, rows = qe.search(X[4], 10, metric=metric, precision=precision)
    assert rows.tolist() == expected_rows[4].tolist()


def test_exact_search_finds_the_float64_neighbours():
    rng = np.random.default_rng(9)
    qe = table(rng, 5000, 64, zero_rows=False, exponents=(0, 1))
    X = rng.standard_normal((50, 64)).astype(np.float32)
    _, rows = qe.search(X, 10)
    np.testing.assert_array_equal(rows, float64_search(qe.dequantize(), X, 10))


def test_fast_search_recall_against_exact():
    rng = np.random.default_rng(10)
    E = rng.standard_normal((20000, 64)).astype(np.float32)
    qe = rq.quantize(E)
    X = rng.standard_normal((200, 64)).astype(np.float32)
    _, exact = qe.search(X, 10)
    _, fast = qe.search(X, 10, precision="fast")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, fast)])
    assert recall >= 0.95  # bench/similarity.py measures it on larger tables


def test_ties_go_to_the_smaller_row_across_threads():
    """20000 equal rows, shared between two threads: the first k rows win."""
    rng = np.random.default_rng(11)
    row = rq.quantize(rng.standard_normal((1, 64)).astype(np.float32))
    codes = np.repeat(row.codes, 20000, axis=0)
    scales = np.repeat(row.scales, 20000)
    codes[7777] = 255  # one better row
    qe = rq.QuantizedEmbedding(codes, scales)
    x = np.abs(rng.standard_normal(64)).astype(np.float32)
    for precision in PRECISIONS:
        for threads in (1, 2):
            scores, rows = qe.search(x, 5, precision=precision, threads=threads)
            assert rows.tolist() == [7777, 0, 1, 2, 3]
            assert scores[1] == scores[4] < scores[0]
    # the same for ids given out of order, and for the sorted path of large k
    assert qe.search(x, 3, ids=[9, 3, 7777, 5])[1].tolist() == [7777, 3, 5]
    assert qe.search(x, 19999)[1][:4].tolist() == [7777, 0, 1, 2]


def test_signed_zero_scores_tie():
    codes = np.array([[128, 128], [130, 126], [128, 128]], np.uint8)
    qe = rq.QuantizedEmbedding(codes, np.array([1.0, 1.0, 1.0], np.float32))
    assert qe.dot([1.0, 1.0]).tolist() == [0.0, 0.0, 0.0]  # -0.0 or +0.0, they are equal
    assert qe.search([1.0, 1.0], 3)[1].tolist() == [0, 1, 2]


@pytest.mark.parametrize("threads", [1, 2])
def test_nan_scores_rank_last_as_the_reference_sorts_them(threads):
    """A row holding float32's largest values dequantizes to inf and -inf, so its exact dot
    product can be inf - inf = NaN. The per-thread heaps must rank NaN below every number, as
    reference.top_k does: with NaN at a heap's root, no other score compared greater, and the
    search returned the table's first rows."""
    rng = np.random.default_rng(15)
    E = rng.standard_normal((20000, 64)).astype(np.float32)
    E[[0, 3, 10001], :2] = [3.4028235e38, -3.4028235e38]  # values inf and -inf
    qe = rq.quantize(E)
    X = np.abs(rng.standard_normal((2, 64))).astype(np.float32)
    X[1, :2] = 0  # 0 * inf: NaN too
    expected = expected_scores(qe, X, "dot", "exact")
    assert np.isnan(expected[:, [0, 3, 10001]]).all()
    for k in (5, 2000):  # the heaps, and the sorted path of large k
        scores, rows = qe.search(X, k, threads=threads)
        top_scores, top = reference.top_k(expected, k)
        np.testing.assert_array_equal(rows, top)
        assert_same_bits(scores, top_scores)
    # all NaN: the NaNs by row, as reference.top_k orders them
    scores, rows = qe.search(X, 3, ids=[10001, 3, 0, 5], threads=threads)
    assert rows.tolist() == [[5, 0, 3]] * 2 and np.isnan(scores[:, 1:]).all()


@pytest.mark.parametrize("k", [0, 1, 7, 8, 100])
def test_k_beyond_the_rows(k):
    rng = np.random.default_rng(12)
    qe = table(rng, 7, 5)
    X = rng.standard_normal((3, 5)).astype(np.float32)
    scores, rows = qe.search(X, k)
    assert scores.shape == rows.shape == (3, min(k, 7))
    full_scores, full_rows = reference.top_k(expected_scores(qe, X, "dot", "exact"), 7)
    np.testing.assert_array_equal(rows, full_rows[:, :k])
    assert_same_bits(scores, full_scores[:, :k])


def test_ids_and_exclude():
    rng = np.random.default_rng(13)
    qe = table(rng, 1000, 16)
    X = rng.standard_normal((4, 16)).astype(np.float32)
    all_scores = expected_scores(qe, X, "dot", "exact")
    subset = np.array([900, 3, 3, 450, 17, 18, 600])
    scores, rows = qe.search(X, 4, ids=subset, exclude=[17])
    allowed = np.array([3, 18, 450, 600, 900])
    top_scores, top = reference.top_k(all_scores[:, allowed], 4, ids=allowed)
    np.testing.assert_array_equal(rows, top)
    assert_same_bits(scores, top_scores)
    # exclude alone: the best rows other than those excluded
    best = reference.top_k(all_scores, 1)[1][:, 0]
    _, rows = qe.search(X, 3, exclude=best)
    assert not np.isin(rows, best).any()
    keep = np.setdiff1d(np.arange(1000), best)
    np.testing.assert_array_equal(rows, reference.top_k(all_scores[:, keep], 3, ids=keep)[1])
    # fewer candidates than k
    assert qe.search(X, 10, ids=[1, 2, 3], exclude=[2])[1].shape == (4, 2)
    assert qe.search(X[0], 5, exclude=np.arange(998))[1].tolist() in ([998, 999], [999, 998])


def test_errors_name_the_argument_that_is_out_of_range():
    """exclude= and most_similar's row were reported as ``ids[...]``, an argument the caller
    did not pass."""
    qe = table(np.random.default_rng(16), 5, 3)
    with pytest.raises(IndexError, match=r"^exclude\[1\] = 7 is out of range"):
        qe.search([1.0, 2.0, 3.0], 2, exclude=[1, 7])
    with pytest.raises(IndexError, match=r"^ids\[0\] = -1 is out of range"):
        qe.search([1.0, 2.0, 3.0], 2, ids=[-1], exclude=[1])
    for row in (-1, 5, np.int64(9)):
        with pytest.raises(IndexError, match=rf"^row {row} is out of range for a table of 5"):
            qe.most_similar(row)


def test_c_and_numpy_backends_agree():
    if not _backend.compiled_available():
        pytest.skip("the compiled backend is not built")
    rng = np.random.default_rng(14)
    codes, scales = random_table(rng, 700, 45)
    X = rng.standard_normal((18, 45)).astype(np.float32)
    results = {}
    for backend in ("c", "numpy"):
        with _backend.using(backend):
            qe = rq.QuantizedEmbedding(codes, scales)
            results[backend] = [
                (qe.dot(X, metric=m, precision=p), *qe.search(X, 6, metric=m, precision=p))
                for m in METRICS for p in PRECISIONS
            ] + [qe.norms()]
    for c, numpy in zip(results["c"][:-1], results["numpy"][:-1]):
        assert_same_bits(c[0], numpy[0])
        assert_same_bits(c[1], numpy[1])
        np.testing.assert_array_equal(c[2], numpy[2])
    assert_same_bits(results["c"][-1], results["numpy"][-1])


# ----------------------------------------------------------------------------- most_similar


def test_most_similar_matches_gensim():
    gensim = pytest.importorskip("gensim")
    rng = np.random.default_rng(15)
    words = [f"w{i}" for i in range(2000)]
    qe = rq.quantize(rng.standard_normal((2000, 32)).astype(np.float32), keys=words)
    kv = gensim.models.KeyedVectors(32)
    kv.add_vectors(words, qe.dequantize())
    for word in ("w0", "w1234", "w1999"):
        ours = qe.most_similar(word, k=10)
        theirs = kv.most_similar(word, topn=10)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5)
    vector = rng.standard_normal(32).astype(np.float32)
    ours = qe.most_similar(vector, k=5)
    assert [w for w, _ in ours] == [w for w, _ in kv.similar_by_vector(vector, topn=5)]


def test_most_similar_by_row_and_without_keys():
    rng = np.random.default_rng(16)
    qe = table(rng, 50, 8, zero_rows=False)
    found = qe.most_similar(3, k=4)
    assert 3 not in [row for row, _ in found]
    scores, rows = qe.search(qe[3], 5, metric="cosine", exclude=[3])
    assert found == list(zip(rows[:4].tolist(), scores[:4].tolist()))
    assert [row for row, _ in qe.most_similar(qe[3], k=1)] == [3]
    with pytest.raises(TypeError, match="no keys"):
        qe.most_similar("cat")
    with pytest.raises(IndexError):
        qe.most_similar(50)
    with pytest.raises(ValueError, match="one word, row or vector"):
        qe.most_similar(np.ones((2, 8)))
    keyed = rq.quantize(np.eye(3, dtype=np.float32), keys=["a", "b", "c"])
    with pytest.raises(KeyError, match="'d'"):
        keyed.most_similar("d")


# ----------------------------------------------------------------------------- files


def test_norms_are_stored_and_read_back(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(17)
    qe = rq.quantize(rng.standard_normal((100, 12)).astype(np.float32), keys=[str(i) for i in range(100)])
    plain = tmp_path / "plain.safetensors"
    qe.save(plain)
    assert "norms" not in safetensors_numpy.load_file(plain)
    norms = qe.norms()
    path = tmp_path / "norms.safetensors"
    qe.save(path)
    tensors = safetensors_numpy.load_file(path)
    assert_same_bits(tensors["norms"], norms)
    for mmap in (True, False):
        loaded = rq.load(path, mmap=mmap)
        assert_same_bits(loaded.norms(), norms)
        assert loaded.keys[5] == "5"
        assert_same_bits(loaded.dot(qe[0], metric="cosine"), qe.dot(qe[0], metric="cosine"))
    qe.save(path, norms=False)
    assert "norms" not in safetensors_numpy.load_file(path)
    fresh = rq.load(plain)
    rq.save(path, fresh, norms=True)
    assert_same_bits(safetensors_numpy.load_file(path)["norms"], norms)


def test_stored_norms_are_what_cosine_uses(tmp_path):
    """load reads the norms instead of computing them: a file with other norms shows it."""
    from rowquant import _format

    codes = np.array([[255, 128], [128, 255]], np.uint8)
    scales = np.ones(2, np.float32)
    path = tmp_path / "t.safetensors"
    _format.write_table(path, codes, scales, norms=np.array([127.0, 254.0], np.float32))
    loaded = rq.load(path)
    assert loaded.dot([1.0, 1.0], metric="cosine").tolist() == pytest.approx(
        [1 / math.sqrt(2), 0.5 / math.sqrt(2)]
    )
    _format.write_table(path, codes, scales, norms=np.array([1.0, -1.0], np.float32))
    with pytest.raises(ValueError, match=r"norms\[1\] is -1.0"):
        rq.load(path)
    assert rq.load(path, validate=False).shape == (2, 2)


def test_search_with_a_large_k_sorts_blocks_in_bounded_memory():
    """The sorted path (large k) scores and sorts blocks of queries; its temporaries stay near
    the 70 MB _similarity's comment gives, whatever the number of queries."""
    import tracemalloc

    rng = np.random.default_rng(7)
    qe = rq.quantize(rng.standard_normal((20000, 16), dtype=np.float32))
    X = rng.standard_normal((600, 16), dtype=np.float32)
    tracemalloc.start()
    try:
        scores, ids = qe.search(X, k=2600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - scores.nbytes - ids.nbytes < 100e6
    expected_scores, expected_ids = rq.reference.top_k(qe.dot(X[:3]), 2600)
    assert_same_bits(scores[:3], expected_scores)
    np.testing.assert_array_equal(ids[:3], expected_ids)
