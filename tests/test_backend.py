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

