"""Every SIMD path this processor runs gives the reference's bits, and the same bits as every
other path, bags included. .ci/run also runs the whole suite with ROWQUANT_SIMD=scalar."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_bits, assert_same_codes, matrices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rowquant as rq
from rowquant import _api

pytestmark = pytest.mark.skipif(
    rq.backend_info()["backend"] != "c", reason="the numpy backend has no SIMD paths"
)
PATHS = _api.simd_paths() if rq.backend_info()["backend"] == "c" else []


@pytest.fixture(params=PATHS or ["none"])
def simd_path(request):
    before = rq.backend_info()["simd"]
    yield _api.use_simd(request.param)
    _api.use_simd(before)


def test_scalar_and_avx2_are_available_on_x86_64():
    assert "scalar" in PATHS
    if os.uname().machine == "x86_64" and "avx2" in Path("/proc/cpuinfo").read_text():
        assert "avx2" in PATHS


def test_avx512_processors_with_vnni_run_avx512vnni():
    """Asked of processes that run AVX-512 at all (valgrind hides it, not /proc/cpuinfo)."""
    if "avx512" not in PATHS:
        pytest.skip("this process runs no AVX-512")
    assert ("avx512vnni" in PATHS) == ("avx512_vnni" in Path("/proc/cpuinfo").read_text().split())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(E=matrices(max_rows=12), seed=st.integers(0, 2**32 - 1))
def test_every_path_matches_the_reference(simd_path, E, seed):
    rng = np.random.default_rng(seed)
    codes, scales = rq.quantize_rows(E)
    expected_codes, expected_scales = rq.reference.quantize_rows(E)
    assert_same_codes(codes, expected_codes)
    assert_same_bits(scales, expected_scales)
    assert_same_bits(rq.dequantize(codes, scales), rq.reference.dequantize(codes, scales))
    if len(E):
        ids = rng.integers(0, len(E), 37)
        assert_same_bits(rq.take(codes, scales, ids), rq.reference.take(codes, scales, ids))
        offsets = np.concatenate([[0], np.sort(rng.integers(0, 38, 5))])
        weights = rng.standard_normal(37).astype(np.float32)
        for kwargs in ({}, {"mode": "mean", "padding_idx": 0}, {"weights": weights},
                       {"mode": "max"}, {"mode": "max", "padding_idx": -1}):
            # bags are summed in id order with each term rounded as the reference rounds it, so
            # every path gives exactly the reference's bits (the contract only asks for less)
            assert_same_bits(
                rq.embedding_bag(codes, scales, ids, offsets, **kwargs),
                rq.reference.embedding_bag(codes, scales, ids, offsets, **kwargs),
            )


@pytest.mark.parametrize("dim", [3, 8, 11, 64, 97, 300])
def test_streamed_outputs_match_the_reference(simd_path, dim):
    """Whole-table outputs over 16 MB go through the non-temporal-store kernels, which assemble
    blocks that straddle two rows; large gathers (which do not stream) are checked too, into an
    out= offset by 4 bytes."""
    rng = np.random.default_rng(dim)
    n_rows = (17 << 20) // (4 * dim) + 3
    codes = rng.integers(0, 256, (n_rows, dim), dtype=np.uint8)
    scales = (rng.random(n_rows) * 2.0 ** rng.integers(-30, 30, n_rows)).astype(np.float32)
    scales[::7] = 0.0
    assert_same_bits(rq.dequantize(codes, scales, threads=2), rq.reference.dequantize(codes, scales))
    ids = rng.integers(0, n_rows, n_rows)
    out = np.empty(n_rows * dim + 1, np.float32)[1:].reshape(n_rows, dim)
    assert rq.take(codes, scales, ids, out=out) is out
    assert_same_bits(out, rq.reference.take(codes, scales, ids))


def test_unknown_or_unavailable_path_is_refused():
    with pytest.raises(ValueError, match="unknown SIMD path"):
        _api.use_simd("sse9")
    for path in ("avx512", "avx512vnni"):
        if path not in PATHS:
            with pytest.raises(ValueError, match=f"cannot run the {path} kernels"):
                _api.use_simd(path)


@pytest.mark.parametrize("path", PATHS)
def test_environment_variable_selects_the_path(path):
    env = dict(os.environ, ROWQUANT_SIMD=path)
    env.pop("ROWQUANT_PUREPYTHON", None)
    shown = subprocess.run(
        [sys.executable, "-c", "import rowquant; print(rowquant.backend_info()['simd'])"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert shown.stdout.strip() == path


def test_environment_variable_naming_a_missing_path_warns_and_keeps_the_best():
    """The child judges "best" by what its own processor offers: it may see more than this
    process does (valgrind hides AVX-512 from the program it runs, not from the children that
    program starts), so the expectation comes from the child, not from PATHS."""
    env = dict(os.environ, ROWQUANT_SIMD="sse9")
    env.pop("ROWQUANT_PUREPYTHON", None)
    shown = subprocess.run(
        [sys.executable, "-c", "import rowquant; info = rowquant.backend_info(); "
         "print(info['simd'], *info['simd_available'])"],
        env=env, capture_output=True, text=True, check=True,
    )
    chosen, *available = shown.stdout.split()
    assert chosen == available[-1]
    assert set(PATHS) <= set(available)
    assert "ignoring ROWQUANT_SIMD='sse9'" in shown.stderr


def test_every_path_falls_back_to_the_centered_bag_where_the_fast_one_overflows(simd_path):
    # 255 * 2e36 overflows the unshifted sum; the centered form keeps the bag finite. Wide rows
    # too, so that the vector loops and their tails take the fallback.
    rng = np.random.default_rng(5)
    for dim in (3, 17, 64, 300, 401):
        codes = rng.integers(0, 256, (4, dim), dtype=np.uint8)
        codes[:, 0], codes[:, 1], codes[:, -1] = 255, 130, 1  # column 1: finite only centered
        scales = np.array([2e36, 1e36, 1.0, 2e36], np.float32)
        ids, offsets = np.array([0, 1, 3, 2, 0, 3]), np.array([0, 3, 4])
        weights = rng.uniform(-1, 1, len(ids)).astype(np.float32)
        for kwargs in ({}, {"weights": weights}, {"mode": "mean"}):
            got = rq.embedding_bag(codes, scales, ids, offsets, **kwargs)
            assert np.isfinite(got[:, 1]).all()
            assert_same_bits(got, rq.reference.embedding_bag(codes, scales, ids, offsets, **kwargs))
