"""CLD3's own quantized embeddings (tests/data/cld3: all six tables of its language identifier,
extracted from github.com/google/cld3's src/lang_id_nn_params.cc, Apache-2.0), against CLD3's
arithmetic restated line for line in C (tests/data/cld3/cld3_arithmetic.c, compiled here)."""

import contextlib
import shutil
import subprocess
import sysconfig

import numpy as np
import pytest
from helpers import DATA, assert_bags_close, assert_same_bits, bag_error_bound

import rowquant as rq
from rowquant import _api, cld3, reference

CLD3 = DATA / "cld3"
TABLES = np.load(CLD3 / "cld3_embeddings.npz")
SHAPES = [(1000, 16), (5000, 16), (12, 8), (103, 8), (5000, 16), (100, 16)]


PATHS = _api.simd_paths() if rq.backend_info()["backend"] == "c" else [None]


@contextlib.contextmanager
def simd_path(name):
    if name is None:
        yield
        return
    before = rq.backend_info()["simd"]
    _api.use_simd(name)
    try:
        yield
    finally:
        _api.use_simd(before)


def cld3_table(i):
    return TABLES[f"table{i}_weights"], TABLES[f"table{i}_scales"]


@pytest.fixture(scope="module")
def cld3_program(tmp_path_factory):
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip("no C compiler to build CLD3's arithmetic")
    program = tmp_path_factory.mktemp("cld3") / "cld3_arithmetic"
    subprocess.run([compiler, "-O2", "-ffp-contract=off", "-std=c99", "-o", str(program),
                    str(CLD3 / "cld3_arithmetic.c")], check=True)
    return program


def run_cld3(program, weights, scales, ids, bounds, feature_weights):
    """(values, bags) as CLD3 computes them."""
    rows, cols = weights.shape
    payload = b"".join([
        np.array([rows, cols, len(bounds) - 1], np.int32).tobytes(),
        np.ascontiguousarray(weights).tobytes(), scales.astype("<u2").tobytes(),
        bounds.astype(np.int32).tobytes(), ids.astype(np.int32).tobytes(),
        feature_weights.astype(np.float32).tobytes(),
    ])
    done = subprocess.run([str(program)], input=payload, capture_output=True, check=True)
    out = np.frombuffer(done.stdout, np.float32)
    return out[: rows * cols].reshape(rows, cols), out[rows * cols :].reshape(-1, cols)


def test_the_extract_holds_cld3s_six_tables():
    assert [cld3_table(i)[0].shape for i in range(6)] == SHAPES
    assert sum(r * c for r, c in SHAPES) == 178520
    for i in range(6):
        weights, scales = cld3_table(i)
        assert weights.dtype == np.uint8 and scales.dtype == np.uint16
        # every row reaches 127 steps, or 128 through code 0 (never 256: no code past 255)
        steps = np.abs(weights.astype(np.int64) - 128).max(axis=1)
        assert set(np.unique(steps)) <= {127, 128}
        assert ((steps == 128) == (weights == 0).any(axis=1)).all()


@pytest.mark.parametrize("i", range(6))
def test_every_value_of_cld3s_tables_dequantizes_as_cld3(cld3_program, i):
    weights, scales = cld3_table(i)
    table = rq.from_cld3_arrays(weights, scales)
    assert table.scheme.name == "rowwise-symmetric-u8-bf16"
    assert np.shares_memory(table.scales, scales) or np.array_equal(table.scales, scales)
    rng = np.random.default_rng(i)
    lengths = rng.integers(0, 30, 64)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, len(weights), bounds[-1])
    feature_weights = rng.random(bounds[-1]).astype(np.float32)
    values, bags = run_cld3(cld3_program, weights, scales, ids, bounds, feature_weights)
    for name in PATHS:
        with simd_path(name):
            assert_same_bits(table.dequantize(), values)
            assert_same_bits(table.take(np.arange(len(table))[::-1]), values[::-1])
            assert_same_bits(rq.dequantize(weights, scales), values)
    # CLD3's order of a weighted bag, (q - 128) * (s * w) added term by term
    got = cld3.embedding_bag(table, ids, bounds[:-1], weights=feature_weights)
    assert_same_bits(got, bags)
    unweighted = run_cld3(cld3_program, weights, scales, ids, bounds,
                          np.ones(len(ids), np.float32))[1]
    assert_same_bits(cld3.embedding_bag(table, ids, bounds[:-1]), unweighted)
    # rowquant's own order (FBGEMM's) is within its documented bound of the exact sums, and
    # CLD3's within its own (each term and each addition rounded once: 256 L 2**-24 sum|f|)
    ours = table.bag(ids, bounds[:-1], weights=feature_weights)
    f = np.abs(table.scale_values()[ids].astype(np.float64) * feature_weights)
    factors = np.array([f[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])])
    bound = (bag_error_bound(factors, lengths) + 256 * (lengths + 1) * 2.0**-24 * factors)
    assert_bags_close(ours, bags, np.repeat(bound[:, None], weights.shape[1], axis=1))


def test_read_cld3_params_reads_cld3s_format(tmp_path):
    """A parameter source written as CLD3's generator writes it (four values a line, 'u'
    suffixes) from the extracted arrays reads back to the same tables."""
    lines = ["namespace chrome_lang_id {",
             "const int LangIdNNParams::kEmbeddingsNumRows[] = {"
             + ", ".join(str(r) for r, _ in SHAPES) + "};",
             "const int LangIdNNParams::kEmbeddingsNumCols[] = {"
             + ", ".join(str(c) for _, c in SHAPES) + "};"]

    def array(kind, name, values):
        body = ",\n".join("  " + ", ".join(f"{v}u" for v in values[k : k + 4])
                          for k in range(0, len(values), 4))
        return f"const {kind} LangIdNNParams::{name}[] = {{\n{body}\n}};\n"

    for i in range(6):
        weights, scales = cld3_table(i)
        lines.append(array("float16", f"kEmbeddingsQuantScales{i}", scales.tolist()))
        lines.append(array("uint8", f"kEmbeddingsWeights{i}", weights.reshape(-1).tolist()))
    lines.append("const float LangIdNNParams::kHiddenWeights0[] = {\n  0.5f, -2.3819335f\n};")
    path = tmp_path / "lang_id_nn_params.cc"
    path.write_text("\n".join(lines) + "}\n")
    tables = cld3.read_cld3_params(path)
    assert [t.shape for t in tables] == SHAPES
    for i, table in enumerate(tables):
        weights, scales = cld3_table(i)
        assert np.array_equal(table.codes, weights) and np.array_equal(table.scales, scales)
    broken = path.read_text().replace("kEmbeddingsWeights3", "kEmbeddingsWeightsX")
    path.write_text(broken)
    with pytest.raises(ValueError, match="no array kEmbeddingsWeights3"):
        cld3.read_cld3_params(path)


def test_to_cld3_arrays_round_trips_and_refuses_other_scales():
    weights, scales = cld3_table(2)
    w, s = rq.to_cld3_arrays(rq.from_cld3_arrays(weights.reshape(-1), scales, dim=8))
    assert np.array_equal(w, weights) and np.array_equal(s, scales)
    with pytest.raises(ValueError, match="quantize it with"):
        rq.to_cld3_arrays(rq.quantize(np.ones((2, 3), np.float32)))
    with pytest.raises(TypeError, match="uint16"):
        rq.from_cld3_arrays(weights, scales.astype(np.float32))
    with pytest.raises(ValueError, match="dim="):
        rq.from_cld3_arrays(weights.reshape(-1), scales)
    with pytest.raises(ValueError, match="not rows \\* dim"):
        rq.from_cld3_arrays(weights.reshape(-1), scales, dim=7)


def test_a_table_quantized_as_cld3_writes_its_scales():
    """Dequantized CLD3 rows whose largest value is 127 steps quantize back to the same codes
    and scales under CLD3's truncation; rows at 128 steps (code 0) come back within the bound."""
    weights, scales = cld3_table(0)
    values = reference.dequantize(weights, scales)
    again = rq.quantize(values, scale_dtype="bfloat16", scale_rounding="truncate")
    at_127 = np.abs(weights.astype(np.int64) - 128).max(axis=1) == 127
    assert np.array_equal(again.codes[at_127], weights[at_127])
    assert np.array_equal(again.scales[at_127], scales[at_127])
    assert_same_bits(again.dequantize()[at_127], values[at_127])
    bound = again.scale_values()[:, None] / 2
    assert (np.abs(again.dequantize() - values) <= bound * (1 + 2**-20)).all()


def test_cld3_bags_check_their_arguments():
    table = rq.from_cld3_arrays(*cld3_table(2))
    with pytest.raises(IndexError):
        cld3.embedding_bag(table, [0, 12], [0])
    with pytest.raises(ValueError, match="mode"):
        cld3.embedding_bag(table, [0, 1], [0], mode="max")
    mean = cld3.embedding_bag(table, [0, 1, 3], [0], mode="mean", padding_idx=3)
    total = cld3.embedding_bag(table, [0, 1], [0])
    assert_same_bits(mean, total / np.float32(2))
