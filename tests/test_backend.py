"""Which backend runs: ROWQUANT_PUREPYTHON=1 forces numpy, otherwise the C extension (always
built in CI). ROWQUANT_NUM_THREADS sets the default thread count."""

import ast
import os
import subprocess
import sys

import rowquant as rq

PURE = os.environ.get("ROWQUANT_PUREPYTHON") == "1"


def test_backend_matches_environment():
    info = rq.backend_info()
    assert info["backend"] == ("numpy" if PURE else "c")


def test_backend_info_keys():
    info = rq.backend_info()
    assert {"backend", "simd", "threads", "parallel"} <= set(info)
    assert info["backend"] in ("c", "numpy")


def run_python(code, **env_changes):
    env = dict(os.environ)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_pure_python_switch_in_a_fresh_process():
    printed = run_python("import rowquant; print(rowquant.backend_info())",
                         ROWQUANT_PUREPYTHON="1")
    assert ast.literal_eval(printed)["backend"] == "numpy", printed


def test_c_backend_without_the_switch():
    printed = run_python("import rowquant; print(rowquant.backend_info())",
                         ROWQUANT_PUREPYTHON=None)
    assert ast.literal_eval(printed)["backend"] == "c", printed


def test_both_backends_agree_in_fresh_processes():
    # The same seed example, quantized and dequantized by each backend in its own process.
    code = (
        "import numpy as np, rowquant as rq\n"
        "rng = np.random.default_rng(0)\n"
        "E = (rng.standard_normal((31, 97)) * 2.0 ** rng.integers(-140, 120, (31, 1)))"
        ".astype(np.float32)\n"
        "codes, scales = rq.quantize_rows(E)\n"
        "x = rq.dequantize(codes, scales)\n"
        "print(codes.tobytes().hex(), scales.tobytes().hex(), x.tobytes().hex())\n"
    )
    pure = run_python(code, ROWQUANT_PUREPYTHON="1")
    native = run_python(code, ROWQUANT_PUREPYTHON=None)
    assert pure == native


def test_num_threads_from_environment():
    printed = run_python("import rowquant; print(rowquant.get_num_threads())",
                         ROWQUANT_NUM_THREADS="3")
    assert printed == "3"



# ----------------------------------------------------------------------------- the seam

import inspect  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rowquant import _backend, _numpy_backend  # noqa: E402

SEAM = ("quantize_rows", "dequantize", "take", "bag", "simd_name", "simd_select",
        "simd_available", "nbit_dequantize", "nbit_take", "nbit_bag", "nbit_kernel_name")
needs_c = pytest.mark.skipif(not _backend.compiled_available(), reason="needs the C extension")


@needs_c
def test_both_backends_offer_the_same_functions_and_tables():
    from rowquant import _ext

    for name in SEAM:
        c_parameters = list(inspect.signature(getattr(_ext, name)).parameters)
        numpy_parameters = list(inspect.signature(getattr(_numpy_backend, name)).parameters)
        assert c_parameters == numpy_parameters, name
    for method in ("take", "dequantize", "bag"):
        c_parameters = list(inspect.signature(getattr(_ext.Table, method)).parameters)
        numpy_parameters = list(
            inspect.signature(getattr(_numpy_backend.Table, method)).parameters)
        assert c_parameters == numpy_parameters, f"Table.{method}"
    assert _ext.BAG_MODES == _numpy_backend.BAG_MODES  # the C enum, read by both layers
    from rowquant._scheme import ROWWISE_U8

    assert _ext.BIAS == ROWWISE_U8.bias == rq.reference.BIAS  # C's RQ_BIAS and the scheme


def test_using_switches_every_call_and_restores_it():
    before = _backend.name()
    with _backend.using("numpy"):
        assert _backend.name() == "numpy"
        assert rq.backend_info()["backend"] == "numpy"
    assert _backend.name() == before
    with pytest.raises(ValueError, match="'c' or 'numpy'"):
        with _backend.using("fortran"):
            pass


def test_public_modules_never_ask_which_backend_runs():
    """The public functions call the seam and never branch on the backend themselves."""
    import rowquant

    for path in sorted(__import__("pathlib").Path(rowquant.__file__).parent.glob("*.py")):
        if path.name in ("_backend.py", "_numpy_backend.py"):
            continue
        text = path.read_text()
        assert "_ext" not in text.replace("_extension", "").replace("_external", ""), path.name
        assert "_numpy_backend" not in text, path.name


@needs_c
@pytest.mark.parametrize("layout", ["fortran", "strided columns", "misaligned scales"])
def test_the_glue_refuses_arrays_the_kernels_cannot_read(layout):
    """Before, the glue read Fortran-order codes as if their rows were contiguous and returned
    wrong values; it now refuses them (the public functions copy such input first)."""
    from rowquant import _ext

    codes = np.asfortranarray(np.arange(12, dtype=np.uint8).reshape(3, 4) + 120)
    scales = np.ones(3, np.float32)
    if layout == "strided columns":
        codes = np.ascontiguousarray(np.repeat(codes, 2, axis=1))[:, ::2]
    if layout == "misaligned scales":
        codes = np.ascontiguousarray(codes)
        scales = np.zeros(13, np.uint8)[1:].view(np.float32)  # 3 floats off a 4-byte line
        scales[:] = 1.0
    out = np.empty((3, 4), np.float32)
    with pytest.raises(ValueError):
        _ext.dequantize(codes, scales, out, 1)
    with pytest.raises(ValueError):
        _ext.take(codes, scales, np.array([0, 2]), np.empty((2, 4), np.float32), 1)
    np.testing.assert_array_equal(
        rq.dequantize(codes, scales), rq.reference.dequantize(np.array(codes), np.array(scales)))
