"""Helpers shared by the rowquant tests: seed vectors, bitwise comparison, generators of awkward
float tables (for hypothesis), and an independent float64 model of embedding bags.

Generators draw a seed from hypothesis and build arrays with numpy: arrays of thousands of floats
are out of reach of element-by-element drawing, and the seed keeps every example reproducible.
"""

import json
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parent / "data"

FLOAT32_MAX = float(np.finfo(np.float32).max)
TINY = 2.0**-149  # the smallest positive (subnormal) float32
SMALLEST_NORMAL = 2.0**-126

INTEGER_DTYPES = (
    np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
)

# Odd sizes hit the scalar tails of vectorized loops; 0 the empty case.
AWKWARD_DIMS = (0, 1, 11, 97, 1536)


def load_seed():
    return json.loads((DATA / "seed_example.json").read_text())


def bits(a):
    """The bit patterns of a float32 array, so that -0.0 != 0.0 and NaN payloads count."""
    a = np.array(a, copy=True, order="C")
    assert a.dtype == np.float32, a.dtype
    return a.view(np.uint32)


def assert_same_bits(got, expected):
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == np.float32, got.dtype
    assert expected.dtype == np.float32, expected.dtype
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(bits(got), bits(expected))


def assert_same_codes(got, expected):
    got = np.asarray(got)
    assert got.dtype == np.uint8, got.dtype
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# Float tables


def make_row(kind, dim, rng):
    """One float32 row of ``dim`` values of the given kind (see ROW_KINDS)."""
    if dim == 0:
        return np.zeros(0, np.float32)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    where = rng.integers(dim)
    if kind == "uniform":
        # One magnitude per row, anywhere from subnormal to near the float32 maximum.
        row = rng.uniform(-1, 1, dim) * 2.0 ** int(rng.integers(-149, 128))
    elif kind == "normal_range":
        row = rng.uniform(-1, 1, dim) * 2.0 ** int(rng.integers(-100, 120))
        row[where] = sign * 2.0 ** int(rng.integers(-100, 120))
    elif kind == "wide":
        # Every element its own magnitude: most codes end up 128, a few far from it.
        row = rng.uniform(-1, 1, dim) * 2.0 ** rng.integers(-149, 128, dim).astype(np.float64)
    elif kind == "ties":
        # scale = odd j (< 2**16) times 2**e, so 127 * scale and every (k + 1/2) * scale are exact
        # float32 values: the row max is 127 * scale and the other entries are exact ties.
        scale = int(rng.integers(0, 2**15)) * 2 + 1
        scale *= 2.0 ** int(rng.integers(-148, 105))
        row = (rng.integers(-127, 127, dim) + 0.5) * scale
        row[where] = sign * 127 * scale
    elif kind == "zero":
        row = np.where(rng.random(dim) < 0.5, -0.0, 0.0)
    elif kind == "subnormal":
        # Integer multiples of the smallest subnormal: the scale is 0 or a coarse subnormal.
        largest = int(rng.integers(1, 20000))
        row = rng.integers(-largest, largest + 1, dim) * TINY
        row[where] = sign * largest * TINY
    elif kind == "huge":
        row = rng.uniform(-1, 1, dim) * FLOAT32_MAX
        row[where] = sign * FLOAT32_MAX
    elif kind == "one_hot":
        row = np.zeros(dim)
        row[where] = sign * rng.uniform(0.5, 1) * 2.0 ** int(rng.integers(-149, 128))
    elif kind == "constant":
        row = np.full(dim, sign * rng.uniform(0.5, 1) * 2.0 ** int(rng.integers(-140, 127)))
    else:
        raise AssertionError(kind)
    row = np.asarray(row, dtype=np.float64).astype(np.float32)
    assert np.isfinite(row).all()
    return row


ROW_KINDS = (
    "uniform", "normal_range", "wide", "ties", "zero", "subnormal", "huge", "one_hot", "constant",
)
# Rows whose scale is a normal float32 and whose max is below the float32 maximum: there the
# error bound of DESIGN.md holds without exception.
NORMAL_ROW_KINDS = ("normal_range", "ties_normal", "constant_normal")


def make_normal_row(kind, dim, rng):
    if kind == "normal_range":
        return make_row("normal_range", dim, rng)
    if kind == "ties_normal":
        scale = (int(rng.integers(0, 2**15)) * 2 + 1) * 2.0 ** int(rng.integers(-120, 100))
        row = (rng.integers(-127, 127, dim) + 0.5) * scale
        row[rng.integers(dim)] = 127 * scale
        return row.astype(np.float32)
    if kind == "constant_normal":
        value = rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1) * 2.0 ** int(rng.integers(-110, 120))
        return np.full(dim, value, np.float32)
    raise AssertionError(kind)


@st.composite
def matrices(draw, kinds=ROW_KINDS, max_rows=9, dims=AWKWARD_DIMS, row_maker=make_row):
    """float32 C-contiguous (N, D) tables, N in [0, max_rows], rows of mixed kinds."""
    n_rows = draw(st.integers(0, max_rows))
    dim = draw(st.one_of(st.sampled_from(dims), st.integers(1, 40)))
    row_kinds = draw(st.lists(st.sampled_from(kinds), min_size=n_rows, max_size=n_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**63)))
    if n_rows == 0:
        return np.zeros((0, dim), np.float32)
    return np.stack([row_maker(kind, dim, rng) for kind in row_kinds])


def normal_matrices(max_rows=9):
    return matrices(kinds=NORMAL_ROW_KINDS, max_rows=max_rows, dims=(1, 11, 97, 1536),
                    row_maker=make_normal_row).filter(lambda E: E.size > 0)


LAYOUTS = (
    "c", "fortran", "transposed", "column_strided", "row_strided", "reversed", "big_endian",
    "big_endian_float64", "float64", "float64_inexact", "float16", "list", "unaligned",
)


def in_layout(E, layout, rng=None):
    """The float32 table E handed over in another memory layout, dtype or container.

    The library must quantize it exactly as ``np.ascontiguousarray(A, dtype=np.float32)``.
    """
    n_rows, dim = E.shape
    if layout == "c":
        return E.copy()
    if layout == "fortran":
        return np.asfortranarray(E)
    if layout == "transposed":
        return np.ascontiguousarray(E.T).T
    if layout == "column_strided":
        wide = np.full((n_rows, 2 * dim + 1), np.float32(7.0))
        wide[:, 1::2] = E
        return wide[:, 1::2]
    if layout == "row_strided":
        tall = np.full((2 * n_rows, dim), np.float32(7.0))
        tall[::2] = E
        return tall[::2]
    if layout == "reversed":
        return np.ascontiguousarray(E[::-1, ::-1])[::-1, ::-1]
    if layout == "big_endian":
        return E.astype(">f4")
    if layout == "float64":
        return E.astype(np.float64)
    if layout == "big_endian_float64":
        return np.asfortranarray(E.astype(">f8"))
    if layout == "float64_inexact":
        # Perturb below half a float32 ulp: the float64 values differ from E but round back to it.
        rng = rng or np.random.default_rng(0)
        E64 = E.astype(np.float64)
        nudged = E64 * (1 + rng.uniform(-(2.0**-26), 2.0**-26, E.shape))
        return np.where(np.abs(E64) < 2.0**127, nudged, E64)
    if layout == "float16":
        return np.clip(E, -65504, 65504).astype(np.float16)
    if layout == "list":
        return E.tolist() if n_rows else E.copy()
    if layout == "unaligned":
        return unaligned_copy(E)
    raise AssertionError(layout)


def unaligned_copy(array):
    """A C-contiguous copy of ``array`` whose data starts one byte past an aligned address."""
    raw = np.zeros(array.nbytes + 1, np.uint8)
    copy = raw[1:].view(array.dtype).reshape(array.shape)
    copy[...] = array
    assert array.itemsize == 1 or array.size == 0 or not copy.flags.aligned
    return copy


def as_float32(A):
    """What the contract says the library quantizes: A converted to float32 C order."""
    return np.ascontiguousarray(np.asarray(A), dtype=np.float32)


def random_table(rng, n_rows, dim, exponents=(-20, 20), zero_rows=True):
    """A quantized table (codes, scales) of moderate magnitudes, built by the reference."""
    from rowquant import reference

    E = rng.standard_normal((n_rows, dim)) * 2.0 ** rng.integers(*exponents, (n_rows, 1))
    if zero_rows and n_rows > 2:
        E[rng.integers(n_rows)] = 0
    return reference.quantize_rows(E.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Embedding bags

BAG_FORMS = ("offsets", "offsets_last", "lengths", "2d")


@st.composite
def bag_cases(draw, forms=BAG_FORMS, weighted=None):
    """A table and one pooled lookup on it, with the bags it must produce.

    ``case["members"][b]`` lists the positions (into the flattened ids) of bag b: the ground truth
    from which the offsets / lengths / 2-D ids of the call were encoded.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**63)))
    n_rows = draw(st.integers(1, 30))
    dim = draw(st.one_of(st.sampled_from((1, 3, 11, 97)), st.integers(1, 20)))
    codes, scales = random_table(rng, n_rows, dim)
    form = draw(st.sampled_from(forms))
    if form == "2d":
        n_bags, length = draw(st.integers(0, 6)), draw(st.integers(0, 6))
        sizes = [length] * n_bags
    else:
        sizes = draw(st.lists(st.integers(0, 7), max_size=8))
    n_ids = sum(sizes)
    ids = rng.integers(0, n_rows, n_ids).astype(np.int64)

    padding_idx = draw(st.one_of(st.none(), st.integers(-n_rows, n_rows - 1)))
    if padding_idx is not None:
        padding_row = padding_idx % n_rows
        ids[rng.random(n_ids) < 0.3] = padding_row
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    members = [np.arange(starts[b], starts[b + 1]) for b in range(len(sizes))]
    if padding_idx is not None and members and draw(st.booleans()):
        ids[members[draw(st.integers(0, len(members) - 1))]] = padding_idx % n_rows

    mode = draw(st.sampled_from(("sum", "mean", "max")))
    use_weights = mode == "sum" and (draw(st.booleans()) if weighted is None else weighted)
    weights = rng.uniform(-2, 2, n_ids).astype(np.float32) if use_weights else None

    call = {"ids": ids, "offsets": None, "lengths": None, "weights": weights, "mode": mode,
            "include_last_offset": False, "padding_idx": padding_idx}
    if form == "offsets":
        call["offsets"] = starts[:-1].copy()
    elif form == "offsets_last":
        call["offsets"] = starts.copy()
        call["include_last_offset"] = True
    elif form == "lengths":
        call["lengths"] = np.asarray(sizes, dtype=np.int64)
    else:
        call["ids"] = ids.reshape(len(sizes), length)
        if weights is not None:
            call["weights"] = weights.reshape(len(sizes), length)
    return {"codes": codes, "scales": scales, "call": call, "members": members, "form": form}


def exact_bags(case):
    """The bags in float64 from the dequantized rows (each exact), and a per-element bound on the
    error of the kernels' float32 evaluation (:func:`bag_error_bound`), over the count for mean;
    max is exact."""
    from rowquant import reference

    codes, scales, call = case["codes"], case["scales"], case["call"]
    table = reference.dequantize(codes, scales).astype(np.float64)
    ids = np.asarray(call["ids"]).reshape(-1)
    weights = None if call["weights"] is None else np.asarray(call["weights"]).reshape(-1)
    padding = call["padding_idx"]
    padding = None if padding is None else padding % codes.shape[0]
    dim = codes.shape[1]
    value = np.zeros((len(case["members"]), dim))
    bound = np.zeros((len(case["members"]), dim))
    for b, positions in enumerate(case["members"]):
        kept = [p for p in positions if ids[p] != padding]
        factors = [float(scales[ids[p]]) * (1.0 if weights is None else float(weights[p]))
                   for p in kept]
        terms = np.array([table[ids[p]] * (1.0 if weights is None else float(weights[p]))
                          for p in kept]).reshape(len(kept), dim)
        total, magnitude = terms.sum(axis=0), float(np.abs(factors).sum())
        if call["mode"] == "max":  # exact: the largest of exact values
            value[b] = terms.max(axis=0) if kept else 0.0
            bound[b] = 1e-30
            continue
        if call["mode"] == "mean" and kept:
            total, magnitude = total / len(kept), magnitude / len(kept)
        value[b] = total
        bound[b] = bag_error_bound(magnitude, len(positions)) + 1e-30
    return value, bound


def bag_error_bound(factors, length):
    """How far a bag of ``length`` ids computed by the kernels may be from the exact sum, per
    element, for ``factors`` = sum over the bag of |scale * weight| (README, "Arithmetic").

    The kernels sum the unshifted codes, ``fma(q, f, sum)``, beside ``total += f``, and finish
    with ``fma(-128, total, sum)``: each of the L fused steps errs by at most 2**-24 of a partial
    sum no larger than 255 sum|f|, each of the L additions to total by 2**-24 sum|f|, which the
    finish multiplies by 128; rounding f = s * w moves each term by at most 128 |s w| 2**-24, and
    the finish rounds once more (at most 128 sum|f|). That is under 2**-24 (384 L + 384) sum|f|;
    512 leaves room for sum|f| against sum|s w|. The bags that take the centered form instead
    (their fast form overflowed) err by less. So the error stays far below the quantization
    step: a bag of L rows with steps s is already up to L s / 2 from the float rows."""
    return 512 * (np.asarray(length) + 1) * 2.0**-24 * np.asarray(factors)


def assert_bags_close(got, expected, bound):
    got = np.asarray(got)
    assert got.dtype == np.float32, got.dtype
    assert got.shape == bound.shape, (got.shape, bound.shape)
    error = np.abs(got.astype(np.float64) - np.asarray(expected, dtype=np.float64))
    worst = np.unravel_index(np.argmax(error - bound), error.shape) if error.size else None
    assert (error <= bound).all(), (worst, got[worst], expected[worst], bound[worst])


def bag_kwargs(call):
    """The keyword arguments of rq.embedding_bag / qe.bag for a case (ids passed separately)."""
    return {k: v for k, v in call.items() if k != "ids"}


def capture(path, module, args, fixed_last_axes=0):
    """``module`` captured by PyTorch's ``path``: "trace", "script", "compile" (a fresh
    dynamo cache: each module instance would otherwise recompile the same forward) or
    "export" (every axis of ``args`` dynamic but their last ``fixed_last_axes``)."""
    import torch

    if path == "trace":
        return torch.jit.trace(module, args)
    if path == "script":
        return torch.jit.script(module)
    if path == "compile":
        torch._dynamo.reset()
        return torch.compile(module, fullgraph=True, dynamic=True)
    if path == "export":
        dims = tuple({axis: torch.export.Dim.AUTO for axis in range(arg.dim() - fixed_last_axes)}
                     for arg in args)
        return torch.export.export(module, args, dynamic_shapes=dims).module()
    raise AssertionError(path)


def extreme_vectors(dim, seed):
    """Four float32 vectors whose norms float32 cannot square: huge (norm ~1e30), tiny
    (squares below float32's smallest), subnormal (norm below 3e-39, whose inverse overflows
    float32), and an ordinary one."""
    base = np.random.default_rng(seed).standard_normal((4, dim))
    return (base * np.array([1e30, 1e-25, 1e-41, 1.0])[:, None]).astype(np.float32)


def unit_cosines(rows, queries):
    """The cosines of float32 ``queries`` and ``rows`` in float64, and how far a float32 GEMM
    of their unit vectors may be from them: (D + 8) roundings of sum_j |u_j v_j| (the GEMM's,
    the unit values', a scale's). Zero rows score 0."""
    def unit(vectors):
        wide = np.asarray(vectors, np.float64)
        norms = np.linalg.norm(wide, axis=1)
        return wide / np.where(norms > 0, norms, 1)[:, None]

    u, v = unit(queries), unit(rows)
    return u @ v.T, (v.shape[1] + 8) * 2.0**-24 * (np.abs(u) @ np.abs(v).T)
