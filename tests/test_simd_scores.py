"""The score kernels of every SIMD path give the reference's bits (rowquant.reference's lane
sums, integer dots and score step), through the backend entry the similarity layer calls: every
tail of columns, partial blocks of rows and of queries, more queries than one kernel call takes
(16) and more rows than one tile (128), strided rows, threads, codes and query codes at their
extremes, and rows wide enough to need the int32 sums split in chunks."""

import numpy as np
import pytest

import rowquant as rq
from rowquant import _api
from rowquant import reference as ref

pytestmark = pytest.mark.skipif(
    rq.backend_info()["backend"] != "c", reason="the numpy backend has no SIMD paths"
)
if rq.backend_info()["backend"] == "c":
    from rowquant._backend import kernels

    PATHS = _api.simd_paths()
else:
    PATHS = []

DIMS = (0, 1, 7, 8, 63, 64, 65, 83, 300)
# (rows, queries): empty tables, single rows and queries, partial blocks, and more than a tile of
# rows (128) and a kernel call of queries (16)
SHAPES = ((0, 3), (1, 1), (5, 17), (130, 40), (300, 5))


@pytest.fixture(params=PATHS or ["none"])
def simd_path(request):
    before = rq.backend_info()["simd"]
    yield _api.use_simd(request.param)
    _api.use_simd(before)


def assert_bits(got, expected):
    assert got.dtype == expected.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def scores(codes, scales, queries, precision, inverse, query_factors, threads=1):
    out = np.full((len(query_factors), codes.shape[0]), np.nan, np.float32)
    kernels.scores(codes, scales, queries, kernels.DOT_PRECISIONS[precision], inverse,
                   query_factors, out, threads)
    return out


def expected(codes, scales, queries, precision, inverse, query_factors):
    if precision == "exact":
        sums = ref.lane_sums(ref.dequantize(codes, scales), queries)
    else:
        sums = ref.integer_dots(codes, queries)
    return ref.scores(sums, ref.row_factors(scales, inverse, precision), query_factors)


def table(rng, n_rows, dim, strided):
    """Random codes (rows of a wider array when strided: a row stride other than dim) with
    codes 0 and 255 in the first and last rows, and scales over many binades."""
    if strided:
        codes = rng.integers(0, 256, (n_rows, dim + 7), dtype=np.uint8)[:, 3 : 3 + dim]
    else:
        codes = rng.integers(0, 256, (n_rows, dim), dtype=np.uint8)
    if n_rows:
        codes[0], codes[-1, ::2] = 0, 255
    scales = (rng.random(n_rows) * 2.0 ** rng.integers(-30, 30, n_rows)).astype(np.float32)
    return codes, scales


def queries_for(rng, precision, n_queries, dim):
    """Queries and query factors: float32 queries (exact) or their int8 query codes (fast),
    the first two set to 127 and -127 everywhere."""
    x = (rng.standard_normal((n_queries, dim)) * 2.0 ** rng.integers(-8, 8, (n_queries, 1)))
    x = x.astype(np.float32)
    if precision == "exact":
        return x, rng.random(n_queries) + 0.5
    small, query_scales = ref.query_codes(x)
    small[:2] = 127
    small[1:2] = -127
    return small, ref.query_factors(query_scales, None, n_queries)


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_scores_match_the_reference(simd_path, precision):
    rng = np.random.default_rng(7)
    for dim in DIMS:
        for k, (n_rows, n_queries) in enumerate(SHAPES):
            codes, scales = table(rng, n_rows, dim, strided=k % 2 == 1)
            queries, query_factors = queries_for(rng, precision, n_queries, dim)
            inverse = rng.random(n_rows) if k % 2 == 0 else None
            assert_bits(scores(codes, scales, queries, precision, inverse, query_factors),
                        expected(codes, scales, queries, precision, inverse, query_factors))


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_two_threads_give_the_same_bits(simd_path, precision):
    """Enough rows that the driver splits them between two threads (uneven shares, partial tiles)."""
    rng = np.random.default_rng(11)
    codes, scales = table(rng, 4001, 83, strided=True)
    queries, query_factors = queries_for(rng, precision, 20, 83)
    one = scores(codes, scales, queries, precision, None, query_factors, threads=1)
    assert_bits(scores(codes, scales, queries, precision, None, query_factors, threads=2), one)
    assert_bits(one, expected(codes, scales, queries, precision, None, query_factors))


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_extreme_codes_and_queries(simd_path, precision):
    """Codes 0 and 255 (which the quantizer never makes, but a loaded table may hold) against
    query codes -127 and 127, and float queries whose scores overflow float32."""
    rng = np.random.default_rng(13)
    for dim in (1, 8, 63, 83, 300):
        codes = np.zeros((9, dim), np.uint8)
        codes[1::2] = 255
        codes[4, ::3] = 128
        scales = np.array([1, 1, 0.5, 3e38 / 127, 2.0**-140, 1, 0, 7, 1e-3], np.float32)
        if precision == "exact":
            queries = np.array([np.full(dim, 3e38), np.full(dim, -1.0),
                                rng.standard_normal(dim)], np.float32)
            query_factors = np.ones(3)
        else:
            queries = np.array([np.full(dim, 127), np.full(dim, -127),
                                np.where(np.arange(dim) % 2, 127, -127)], np.int8)
            query_factors = np.array([1.0, 0.25, 3.0])
        assert_bits(scores(codes, scales, queries, precision, None, query_factors),
                    expected(codes, scales, queries, precision, None, query_factors))


@pytest.mark.parametrize("dim", [70000, 140000])
def test_fast_sums_wider_than_an_int32_chunk(simd_path, dim):
    """Rows over RQ_FAST_CHUNK (65536) columns: 255 * 127 * 70000 passes 2**31 (the raw sums of
    vpdpbusd), and 128 * 127 * 140000 does too (the centered sums), unless the kernels add
    their int32 sums into int64 chunk by chunk."""
    codes = np.full((3, dim), 255, np.uint8)
    codes[1] = 0
    codes[2, ::2] = 0
    scales = np.ones(3, np.float32)
    queries = np.full((5, dim), 127, np.int8)
    queries[1] = -127
    queries[2, 1::2] = -127
    queries[3, ::2] = -127
    queries[4, -5:] = -127
    query_factors = np.ones(5)
    got = scores(codes, scales, queries, "fast", None, query_factors)
    assert_bits(got, expected(codes, scales, queries, "fast", None, query_factors))
    assert got[0, 0] == np.float32(127 * 127 * dim)
