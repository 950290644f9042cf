"""The bag arithmetic of rq.reference: one fused multiply-add per id, as C's ``fmaf`` computes it.

``reference._fma32`` (any float32 operands) and ``reference._sum_rounded_once`` (the bag's own
path, for products of a small integer and a float32) are compared bit for bit with the C
library's ``fmaf`` on random values and on values built so that rounding the float64 sum to
float32 rounds twice and goes wrong: a test below proves that the naive emulation fails on them.
Then ``pool_bags`` is compared with an id-by-id loop of ``fmaf`` and with bags worked out in
fractions.Fraction, rounded to float32 once by integer arithmetic.
"""

import ctypes
import ctypes.util
import math
from fractions import Fraction

import numpy as np
import pytest
from helpers import FLOAT32_MAX, TINY, assert_same_bits, bits

from rowquant import reference


def _libm_fmaf():
    for name in ("libm.so.6", ctypes.util.find_library("m")):
        try:
            fmaf = ctypes.CDLL(name).fmaf
        except (OSError, TypeError, AttributeError):
            continue
        fmaf.restype = ctypes.c_float
        fmaf.argtypes = (ctypes.c_float, ctypes.c_float, ctypes.c_float)
        return fmaf
    return None


FMAF = _libm_fmaf()
pytestmark = pytest.mark.skipif(FMAF is None, reason="no C library fmaf to compare with")


def f32(values):
    return np.asarray(values, dtype=np.float32).reshape(-1)


def c_fmaf(a, b, c):
    """C's fmaf element by element over float32 arrays of one length."""
    operands = zip(f32(a).tolist(), f32(b).tolist(), f32(c).tolist())
    return f32([FMAF(x, y, z) for x, y, z in operands])


def naive(a, b, c):
    """The float64 product and sum, then float32: rounds twice."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (f32(a).astype(np.float64) * f32(b).astype(np.float64)
                + f32(c).astype(np.float64)).astype(np.float32)


def bag_path(a, b, c):
    """_sum_rounded_once as pool_bags calls it: float32 addends, exact float64 products of an
    integer and a float32 factor, one factor per row (here one row per case)."""
    a, b, c = f32(a)[:, None], f32(b), f32(c)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        products = a.astype(np.float64) * b.astype(np.float64)[:, None]
        return reference._sum_rounded_once(c, products, b).reshape(-1)


def assert_fma_bits(a, b, c):
    expected = c_fmaf(a, b, c)
    assert_same_bits(reference._fma32(f32(a), f32(b), f32(c)), expected)
    return expected


def ulp(value):
    return np.spacing(np.float32(abs(value)))


# ---------------------------------------------------------------------------------------------
# Operands, random and built


def random_operands(rng, n, integer_a=False):
    """Magnitudes from subnormal to huge, c near the product or far from it either way."""
    if integer_a:
        a = rng.integers(-128, 128, n).astype(np.float64)
    else:
        a = rng.uniform(-2, 2, n) * 2.0 ** rng.integers(-75, 64, n)
    b = rng.uniform(-2, 2, n) * 2.0 ** rng.integers(-75, 64, n)
    with np.errstate(over="ignore"):
        p = np.abs(a * b) + 2.0**-149
        c = rng.uniform(-2, 2, n) * p * 2.0 ** rng.integers(-60, 60, n).astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        return f32(a), f32(b), f32(np.clip(c, -FLOAT32_MAX, FLOAT32_MAX))


def midpoint_products(rng, n):
    """a * b exactly halfway between two float32 (25 significant bits), c a tiny float32 of
    either sign, lost in the float64 sum: its sign alone decides the correct rounding."""
    a, b, c = [], [], []
    while len(a) < n:
        i, j = int(rng.integers(2**11, 2**12)) | 1, int(rng.integers(2**12, 2**13)) | 1
        if (i * j).bit_length() != 25:
            continue
        ea, eb = (int(e) for e in rng.integers(-30, 30, 2))
        sign = 1 if rng.random() < 0.5 else -1
        top = (i * j).bit_length() - 1 + ea + eb  # the product's leading bit
        a.append(sign * i * 2.0**ea)
        b.append(j * 2.0**eb)
        c.append(float(rng.choice([-1, 1])) * 2.0 ** (top - int(rng.integers(55, 80))))
    return f32(a), f32(b), f32(c)


def half_ulp_products(rng, n):
    """c a float32, a * b = +-(ulp(c) / 2) (1 - 2**-2k): the exact sum is a float32 midpoint
    moved by less than half a float64 step, toward c for a positive product and away from it
    for a negative one."""
    a, b, c = [], [], []
    for _ in range(n):
        addend = np.float32(rng.uniform(1, 2) * 2.0 ** int(rng.integers(-60, 60)))
        addend = addend if rng.random() < 0.5 else -addend
        k = int(rng.integers(15, 24))
        shift = int(rng.integers(-10, 10))
        half = float(ulp(addend)) / 2
        a.append((1 + 2.0**-k) * 2.0**shift * (1 if rng.random() < 0.5 else -1))
        b.append((1 - 2.0**-k) * half * 2.0**-shift)
        c.append(addend)
    return f32(a), f32(b), f32(c)


def integer_half_ulp_products():
    """The bag's case: a code's integer times a float32 making 2**30 + 1 or 2**30 - 1 (times a
    power of two), c a float32 whose half ulp is that 2**30: the +-1 lies below float64's
    precision, and decides the rounding. 65 (of 2**30 + 1) and 77, 93, 99 (of 2**30 - 1) are
    the divisors between 64 and 128, which leave a cofactor under 2**24."""
    a, b, c = [], [], []
    for factor in (65, 77, 93, 99):
        tail = 1 if factor == 65 else -1
        cofactor, rest = divmod(2**30 + tail, factor)
        assert rest == 0 and cofactor < 2**24
        for scale_exponent in (-60, -20, 0, 30):
            for mantissa in (0, 1, 2, 3, 2**22 + 1, 2**23 - 2, 2**23 - 1):
                for sign_a, sign_c in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                    # c in [2**(54 + s), 2**(55 + s)): its half ulp is 2**(30 + s)
                    addend = (2**23 + mantissa) * 2.0 ** (31 + scale_exponent)
                    a.append(sign_a * factor)
                    b.append(cofactor * 2.0**scale_exponent)
                    c.append(sign_c * addend)
    return f32(a), f32(b), f32(c)


def integer_midpoint_products(rng, n):
    """3 * b with 25 significant bits (a midpoint), plus a tiny c of either sign."""
    a, b, c = [], [], []
    for _ in range(n):
        mantissa = int(rng.integers(2**23, (2**25 - 1) // 3)) | 1
        exponent = int(rng.integers(-80, 60))
        a.append(float(rng.choice([-3, 3])))
        b.append(mantissa * 2.0**exponent)
        c.append(float(rng.choice([-1, 1])) * 2.0 ** (exponent + 24 - int(rng.integers(55, 70))))
    return f32(a), f32(b), f32(c)


def subnormal_results():
    """Results below 2**-126, some of them halfway cases that the float64 sum lands on (a sum
    near 2**-127 keeps float64 bits only down to 2**-179)."""
    near_one = (1 + 2.0**-20, 1 - 2.0**-20)  # product 1 - 2**-40
    a, b, c = [], [], []
    for units in (2**22, 2**22 + 1, 2**22 + 2, 2**22 + 3, 2**21 + 1, 1, 2, 3):
        for sign_p in (1, -1):
            for sign_c in (1, -1):
                a.append(sign_p * near_one[0] * 2.0**-75)
                b.append(near_one[1] * 2.0**-75)  # a * b = +-(2**-150 - 2**-190)
                c.append(sign_c * units * TINY)
    # plain tiny operands
    for x, y, z in ((2.0**-75, 2.0**-75, 0.0), (2.0**-75, 2.0**-74, TINY),
                    (3 * 2.0**-76, 2.0**-74, -TINY), (2.0**-100, 2.0**-49, -5 * TINY),
                    (2.0**-80, 2.0**-80, 0.0),
                    (1.5, TINY, 0.0), (-1.5, TINY, 0.0), (0.5, TINY, 0.0), (2.5, TINY, 0.0),
                    (1.5, TINY, TINY), (0.75, 2.0**-125, -2.0**-126)):
        a.append(x)
        b.append(y)
        c.append(z)
    return f32(a), f32(b), f32(c)


# ---------------------------------------------------------------------------------------------
# _fma32 and the bag path against C


def test_random_operands_match_fmaf():
    rng = np.random.default_rng(1)
    a, b, c = random_operands(rng, 20000)
    assert_fma_bits(a, b, c)


def test_random_integer_operands_match_fmaf_on_both_paths():
    rng = np.random.default_rng(2)
    a, b, c = random_operands(rng, 20000, integer_a=True)
    expected = assert_fma_bits(a, b, c)
    assert_same_bits(bag_path(a, b, c), expected)


@pytest.mark.parametrize("build", [midpoint_products, half_ulp_products])
def test_double_rounding_cases_match_fmaf(build):
    a, b, c = build(np.random.default_rng(3), 4000)
    expected = assert_fma_bits(a, b, c)
    # the naive float64 sum gets a sizeable share of them wrong
    wrong = bits(naive(a, b, c)) != bits(expected)
    assert wrong.mean() > 0.2, wrong.mean()


@pytest.mark.parametrize("build", [
    integer_half_ulp_products, lambda: integer_midpoint_products(np.random.default_rng(4), 4000)
])
def test_double_rounding_cases_with_integer_a_match_fmaf_on_both_paths(build):
    a, b, c = build()
    expected = assert_fma_bits(a, b, c)
    assert_same_bits(bag_path(a, b, c), expected)
    wrong = bits(naive(a, b, c)) != bits(expected)
    assert wrong.mean() > 0.2, wrong.mean()


def test_subnormal_results_match_fmaf():
    a, b, c = subnormal_results()
    expected = assert_fma_bits(a, b, c)
    assert (np.abs(expected) < 2.0**-126).all()
    assert (bits(naive(a, b, c)) != bits(expected)).any()


def test_exact_ties_round_to_even():
    one, half_ulp = 1.0, 2.0**-24
    a = f32([1, 1, -1, -1, 1, 3, 3])
    b = f32([half_ulp, half_ulp, half_ulp, half_ulp, 3 * half_ulp, 2.0**23 + 1, 2.0**23 + 3])
    c = f32([one, one + 2**-23, -one, -one - 2**-23, one, 0, 0])
    expected = assert_fma_bits(a, b, c)
    # 1 + 2**-24 -> 1; 1 + 3 * 2**-24 -> 1 + 2**-22; 3 * (2**23 + 1) = 2**24 + 2**23 + 3 -> even
    assert expected.tolist() == [1, 1 + 2**-22, -1, -1 - 2**-22, 1 + 2**-22,
                                 2**24 + 2**23 + 4, 2**24 + 2**23 + 8]
    assert_same_bits(bag_path(a, b, c), expected)


def test_signed_zeros():
    values = (0.0, -0.0, 1.0, -1.0, 2.0)
    grid = np.array([(x, y, z) for x in values for y in values for z in values], np.float32)
    a, b, c = grid.T
    # exact cancellations give +0; -2**-150 rounds (to even) to -0
    a = np.concatenate([a, f32([1, -1, 3, 2.0**-75])])
    b = np.concatenate([b, f32([1, 1, -TINY, 2.0**-75])])
    c = np.concatenate([c, f32([-1, 1, 3 * TINY, -(2.0**-149)])])
    expected = assert_fma_bits(a, b, c)
    integer = a == np.round(a)  # the bag path's products: an integer times a float32
    assert_same_bits(bag_path(a[integer], b[integer], c[integer]), expected[integer])
    assert bits(expected[-4:]).tolist() == [0, 0, 0, 0x80000000]
    zero = expected == 0
    assert np.signbit(expected[zero]).any() and not np.signbit(expected[zero]).all()


def test_huge_and_overflowing():
    big, half_ulp_max = FLOAT32_MAX, 2.0**103  # float32's last step is 2**104
    a = f32([1, 1, 1, -1, 2.0**64, 2.0**100, 2.0**100, 2, 1, 1, 2.0**64, 127])
    b = f32([half_ulp_max, half_ulp_max * (1 - 2.0**-20), 2 * half_ulp_max, half_ulp_max,
             2.0**64, 2.0**100, -2.0**100, big, -big, big, -2.0**64, big])
    c = f32([big, big, big, -big, -(2.0**104), -big, big, -big, big, big, big, -big])
    expected = assert_fma_bits(a, b, c)
    assert_same_bits(bag_path(a[-1:], b[-1:], c[-1:]), expected[-1:])
    assert np.isinf(expected).any() and np.isfinite(expected).any()
    # 2**64 * 2**64 - 2**104, not a float32 on the way, is the largest float32
    assert expected[4] == big


def test_nan_and_inf():
    inf, nan = np.inf, np.nan
    payload = np.array([0x7FC12345], np.uint32).view(np.float32)[0]
    a = f32([0, inf, inf, 1, nan, 1, payload, 2, -inf, 1, inf, 0])
    b = f32([inf, 0, 1, 1, 1, 1, 1, 1, 2, inf, -1, 1])
    c = f32([1, 1, -inf, nan, 1, inf, 2, payload, 1, -inf, inf, -inf])
    expected = assert_fma_bits(a, b, c)
    assert np.isnan(expected).sum() == 9 and np.isinf(expected).sum() == 3
    # in a bag, inf and NaN come from a scale times a weight, or from the sum so far
    a, b = f32([0, 2, -3, 1, 0, 5, 7, 3]), f32([inf, inf, -inf, payload, 1, 1, 2, -inf])
    c = f32([1, -inf, -inf, 2, nan, inf, payload, 1])
    expected = c_fmaf(a, b, c)
    assert np.isnan(expected).sum() == 6 and np.isinf(expected).sum() == 2
    assert_same_bits(bag_path(a, b, c), expected)


def test_several_nans_give_nan():
    # Which payload wins when two operands are NaN differs between fmaf implementations.
    nan = np.float32(np.nan)
    payload = np.array([0x7FC12345], np.uint32).view(np.float32)[0]
    a, b, c = f32([nan, payload, nan]), f32([payload, 1, 1]), f32([1, nan, payload])
    assert np.isnan(c_fmaf(a, b, c)).all()
    assert np.isnan(reference._fma32(a, b, c)).all()


def test_fma32_shapes_and_scalars():
    x = np.float32(1 + 2.0**-12)
    got = reference._fma32(x, x, np.float32(2.0**-60))
    assert isinstance(got, np.float32) and got == np.float32(1 + 2.0**-11 + 2.0**-23)
    grid = reference._fma32(f32([1, 2])[:, None], f32([3, 4, 5]), np.float32(1))
    assert grid.dtype == np.float32 and grid.tolist() == [[4, 5, 6], [7, 9, 11]]


def test_bag_path_rows_of_one_factor():
    # 20 rows of 25 sums each, every row with its own factor; in place in a scratch array too
    rng = np.random.default_rng(5)
    factors = f32(rng.uniform(-2, 2, 20) * 2.0 ** rng.integers(-40, 40, 20))
    a = f32(rng.integers(-128, 128, (20, 25)))
    # rows 0-9 within 2**+-10 of their factor (proved exact), rows 10-19 anywhere
    spread = np.where(np.arange(20)[:, None] < 10, 10, 70)
    c = rng.uniform(-1, 1, (20, 25)) * 2.0 ** rng.integers(-spread, spread, (20, 25))
    c = f32(c * np.abs(factors.astype(np.float64))[:, None]).reshape(20, 25)
    products = a.reshape(20, 25).astype(np.float64) * factors.astype(np.float64)[:, None]
    expected = c_fmaf(a, np.repeat(factors, 25), c).reshape(20, 25)
    assert_same_bits(reference._sum_rounded_once(c, products, factors), expected)
    scratch = np.full((20, 25), np.nan)
    assert_same_bits(reference._sum_rounded_once(c, products, factors, scratch), expected)
    exact = reference._rows_sum_exactly(c, factors)
    assert exact[:10].all() and not exact[10:].any()


def test_rows_proved_exact_are_exact():
    # addends at and near both edges of the proof's range, and beyond them, factors normal and
    # subnormal: where a row is proved exact, its sum with every integer of a code is exact in
    # float64 (math.fsum would see a nonzero remainder)
    rng = np.random.default_rng(9)
    factors = [np.float32(rng.uniform(1, 2) * 2.0 ** int(e)) for e in rng.integers(-140, 90, 40)]
    checked = 0
    for factor in factors:
        w = float(factor)
        edges = [2.0**28 * w, 2.0**-21 * w, np.nextafter(np.float32(2.0**28 * w), np.float32(0)),
                 np.nextafter(np.float32(2.0**-21 * w), np.float32(np.inf)), w, -w / 3]
        beyond = [rng.uniform(1, 2) * 2.0**e * w for e in (-22, -25, -30, -45, 28.5, 30, 33, 40)]
        addends = f32([x for x in edges + beyond if TINY <= abs(x) <= FLOAT32_MAX])
        addends = np.concatenate([addends, -addends, [0.0]]).astype(np.float32)
        for x in addends:
            row = f32([x])[None, :]
            if not reference._rows_sum_exactly(row, f32([w]))[0]:
                # an edge that rounded to a float32 outside the range
                assert abs(float(x)) < 2.0**-21 * w or abs(float(x)) > 2.0**28 * w
                continue
            for k in range(-128, 129):
                total = float(x) + k * w
                assert math.fsum([float(x), k * w, -total]) == 0, (x, w, k)
            checked += 1
    assert checked > 400


# ---------------------------------------------------------------------------------------------
# pool_bags


def fmaf_bags(codes, scales, ids, bounds, weights=None, mode="sum", padding_idx=None):
    """The bag definition, id by id and column by column, with C's fmaf: the fast form (codes
    unshifted, the factors totalled beside, fmaf(-128, total, sum) at the end), and the centered
    form for a bag whose fast form is not finite."""
    out = np.zeros((len(bounds) - 1, codes.shape[1]), np.float32)
    for bag in range(len(bounds) - 1):
        for centered in (False, True):
            sums, total, count = [0.0] * codes.shape[1], np.float32(0), 0
            for k in range(bounds[bag], bounds[bag + 1]):
                row = int(ids[k])
                if row == padding_idx:
                    continue
                scaled = scales[row]
                with np.errstate(over="ignore"):
                    if weights is not None:
                        scaled = scaled * weights[k]  # float32 times float32: one rounding
                    total = np.float32(total + scaled)
                shift = 128 if centered else 0
                sums = [FMAF(float(int(q) - shift), float(scaled), s)
                        for q, s in zip(codes[row], sums)]
                count += 1
            if not centered:
                sums = [FMAF(-128.0, float(total), s) for s in sums]
            out[bag] = sums
            if np.isfinite(out[bag]).all():
                break
        if mode == "mean" and count:
            out[bag] /= np.float32(count)
    return out


def random_bags(rng, n_rows, dim, n_bags, max_length=9):
    codes = rng.integers(0, 256, (n_rows, dim), dtype=np.uint8)
    codes[:, ::5] = 128  # zero products
    scales = (rng.uniform(0.5, 1, n_rows) * 2.0 ** rng.integers(-30, 30, n_rows)).astype(np.float32)
    scales[0] = 0
    lengths = rng.integers(0, max_length + 1, n_bags)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, n_rows, bounds[-1]).astype(np.int64)
    return codes, scales, ids, bounds


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_pool_bags_is_fmaf_id_by_id(mode, weighted, padding_idx):
    rng = np.random.default_rng(6)
    codes, scales, ids, bounds = random_bags(rng, 12, 11, 40)
    weights = None
    if weighted:
        weights = (rng.uniform(-2, 2, len(ids)) * 2.0 ** rng.integers(-20, 20, len(ids)))
        weights = weights.astype(np.float32)
    got = reference.pool_bags(codes, scales, ids, bounds, weights, mode, padding_idx)
    assert_same_bits(got, fmaf_bags(codes, scales, ids, bounds, weights, mode, padding_idx))


def test_pool_bags_on_double_rounding_cases():
    # Row 0 holds big values, row 1 the integer half-ulp products: each bag [0, 1] makes fused
    # sums whose float64 sum lands near a float32 midpoint, which a naive float32(float64 sum)
    # rounds wrongly; the bags must still be fmaf's, id by id.
    a, b, c = integer_half_ulp_products()
    assert (bits(naive(a, b, c)) != bits(c_fmaf(a, b, c))).any()
    for i in range(len(a)):
        codes = np.array([[128 + int(np.sign(c[i]))], [128 + int(a[i])]], np.uint8)
        scales = f32([abs(c[i]), b[i]])
        ids, bounds = np.array([0, 1]), np.array([0, 2])
        got = reference.pool_bags(codes, scales, ids, bounds)
        assert_same_bits(got, fmaf_bags(codes, scales, ids, bounds))


def test_pool_bags_with_weights_that_overflow():
    # scale * weight overflows to inf: codes of 128 then give 0 * inf = NaN, as fmaf does
    codes = np.array([[128, 129, 1], [130, 128, 255]], np.uint8)
    scales = f32([2.0**100, 1.0])
    ids, bounds = np.array([0, 1, 1, 0]), np.array([0, 2, 4])
    weights = f32([2.0**100, 1, 1, -(2.0**100)])
    got = reference.pool_bags(codes, scales, ids, bounds, weights)
    assert_same_bits(got, fmaf_bags(codes, scales, ids, bounds, weights))
    assert np.isnan(got).any() and np.isinf(got).any()


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_pool_bags_does_not_depend_on_the_block_size(monkeypatch, mode):
    rng = np.random.default_rng(7)
    codes, scales, ids, bounds = random_bags(rng, 30, 13, 50)
    weights = rng.uniform(-1, 1, len(ids)).astype(np.float32) if mode == "sum" else None
    expected = reference.pool_bags(codes, scales, ids, bounds, weights, mode, padding_idx=2)
    for elements in (1, 13, 5 * 13, 7 * 13 + 3):
        monkeypatch.setattr(reference, "_BAG_BLOCK_ELEMENTS", elements)
        assert_same_bits(reference.pool_bags(codes, scales, ids, bounds, weights, mode, 2),
                         expected)


def test_pool_bags_across_blocks_is_fmaf_id_by_id():
    # 1536 columns: a block holds 21 bags, so 45 bags take three blocks
    rng = np.random.default_rng(8)
    codes, scales, ids, bounds = random_bags(rng, 20, 1536, 45, max_length=3)
    assert reference._BAG_BLOCK_ELEMENTS // 1536 < 45
    got = reference.pool_bags(codes, scales, ids, bounds)
    assert_same_bits(got, fmaf_bags(codes, scales, ids, bounds))


# ---------------------------------------------------------------------------------------------
# pool_bags against fractions


def float32_nearest(x):
    """The float32 nearest the rational x, ties to even: one rounding, in integers."""
    if x == 0:
        return np.float32(0.0)
    sign, x = (-1 if x < 0 else 1), abs(x)
    exponent = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** exponent > x:
        exponent -= 1
    while Fraction(2) ** (exponent + 1) <= x:
        exponent += 1
    quantum = Fraction(2) ** (max(exponent, -126) - 23)
    steps = x / quantum
    whole = math.floor(steps)
    if steps - whole > Fraction(1, 2) or (steps - whole == Fraction(1, 2) and whole % 2):
        whole += 1
    value = whole * quantum
    if value >= 2**128:
        return np.float32(sign * np.inf)
    assert float(value) == value  # a float32, so exactly a float64 too
    return np.float32(sign * float(value))


def fraction_bags(codes, scales, ids, bounds, weights=None, mode="sum", padding_idx=None):
    """fmaf_bags in fractions, each fused multiply-add rounded once by float32_nearest (finite
    bags only: the centered fallback is fmaf_bags' to check)."""
    out = np.zeros((len(bounds) - 1, codes.shape[1]), np.float32)
    for bag in range(len(bounds) - 1):
        for j in range(codes.shape[1]):
            total, factors, count = np.float32(0), np.float32(0), 0
            for k in range(bounds[bag], bounds[bag + 1]):
                row = int(ids[k])
                if row == padding_idx:
                    continue
                scaled = Fraction(float(scales[row]))
                if weights is not None:
                    scaled = Fraction(float(float32_nearest(scaled * Fraction(float(weights[k])))))
                exact = Fraction(float(total)) + int(codes[row, j]) * scaled
                total, count = float32_nearest(exact), count + 1
                factors = float32_nearest(Fraction(float(factors)) + scaled)
            total = float32_nearest(Fraction(float(total)) - 128 * Fraction(float(factors)))
            if mode == "mean" and count:
                total = float32_nearest(Fraction(float(total)) / count)
            out[bag, j] = total
    return out


# Row 0 is 2**24 in column 0; row 1 is 3 * float32(1/3) = 1 + 2**-25, which rounds to 1.0 on
# its own, and row 2 has a scale of 1/3 to be weighted. Rows 3 and 4 give other columns work.
HAND_CODES = np.array([[129, 128, 255], [131, 1, 130], [131, 129, 128],
                       [127, 200, 100], [128, 128, 128]], np.uint8)
HAND_SCALES = f32([2.0**24, 1 / 3, 1, 0.1, 5])


def test_pool_bags_by_hand():
    # Bag [0, 1], column 0: the unshifted sum 129 * 2**24 + 131 * float32(1/3) rounds to
    # 129 * 2**24 (a float32 step of 256 there), the total 2**24 + float32(1/3) to 2**24 (a step
    # of 2), and fmaf(-128, 2**24, 129 * 2**24) = 2**24: one step below the exact
    # 2**24 + 1.00000003, inside the bound of the scales. Column 1: 128 * 2**24 + 1 * (1/3)
    # rounds to 128 * 2**24, less 128 * 2**24: zero, where the exact value is -127 / 3.
    got = reference.pool_bags(HAND_CODES, HAND_SCALES, np.array([0, 1]), np.array([0, 2]))
    assert got[0, 0] == 2**24 and got[0, 1] == 0
    assert_same_bits(got, fraction_bags(HAND_CODES, HAND_SCALES, np.array([0, 1]),
                                        np.array([0, 2])))


def test_pool_bags_weighted_by_hand():
    # weight float32(1/3) on row 2 (scale 1): the factor is float32(1/3) and the bag takes the
    # same roundings as test_pool_bags_by_hand's column 0 with code 131
    weights = f32([1, 1 / 3])
    got = reference.pool_bags(HAND_CODES, HAND_SCALES, np.array([0, 2]), np.array([0, 2]),
                              weights)
    assert got[0, 0] == 2**24
    assert_same_bits(got, fraction_bags(HAND_CODES, HAND_SCALES, np.array([0, 2]),
                                        np.array([0, 2]), weights))


@pytest.mark.parametrize("mode", ["sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_pool_bags_against_fractions(mode, weighted):
    ids = np.array([0, 1, 4, 3, 1, 4, 4, 4, 0, 3, 2, 1, 1])
    bounds = np.array([0, 2, 2, 5, 8, 13])  # an empty bag, and one of padding only
    weights = f32([1, 0.3, 7, -1.5, 2.0**-20, 1 / 3, 2, 2, -0.75, 3, 1e-3, 1, 0.5])
    weights = weights if weighted else None
    got = reference.pool_bags(HAND_CODES, HAND_SCALES, ids, bounds, weights, mode, padding_idx=4)
    expected = fraction_bags(HAND_CODES, HAND_SCALES, ids, bounds, weights, mode, padding_idx=4)
    assert_same_bits(got, expected)
    assert (bits(got[1]) == 0).all() and (bits(got[3]) == 0).all() and (got[4] != 0).any()
    if mode == "mean":
        # bag 2 pooled ids 4 (padding), 3 and 1: two of them
        sums = fraction_bags(HAND_CODES, HAND_SCALES, ids, bounds, weights, "sum", padding_idx=4)
        assert_same_bits(got[2], sums[2] / np.float32(2))


def test_pool_bags_fall_back_to_the_centered_form_where_the_fast_one_overflows():
    # 255 * 2e36 is past float32's range, so the unshifted sum is inf; centered, the bag is
    # 127 * 2e36 - 127 * 1e36 and the like, all finite (tests/test_simd_paths.py: every path).
    codes = np.array([[255, 128, 1], [1, 200, 255]], np.uint8)
    scales = f32([2e36, 1e36])
    ids, bounds = np.array([0, 1, 0]), np.array([0, 2, 3])
    got = reference.pool_bags(codes, scales, ids, bounds)
    assert np.isfinite(got).all()
    assert_same_bits(got, fmaf_bags(codes, scales, ids, bounds))
