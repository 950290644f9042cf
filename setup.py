"""Declares the C extension; the metadata lives in pyproject.toml.

Flags: -O3 and -ffp-contract=off (no fused multiply-adds the arithmetic contract does not state),
never -ffast-math and never -march=native, so a wheel built here runs on any x86-64 and gives the
reference's bits. Large calls are shared across POSIX threads of rowquant's own pool
(csrc/team.c), which, unlike OpenMP's, keeps working in processes forked after a multi-threaded
call. ROWQUANT_SANITIZE=1 builds for .ci/sanitize instead: AddressSanitizer and
UndefinedBehaviorSanitizer checks around the kernels, at -O1 so the run stays quick and reports
keep their stack frames; the library must then run with libasan preloaded.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

COMPILE_ARGS = [
    "-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-pthread"
]
LINK_ARGS = ["-pthread"]
if os.environ.get("ROWQUANT_SANITIZE") == "1":
    SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer", "-g"]
    # the last -O wins; -fno-wrapv undoes Python's -fwrapv, under which UBSan ignores signed
    # overflow (an index product like row * stride that wraps would go unreported)
    COMPILE_ARGS = COMPILE_ARGS + SANITIZE + ["-O1", "-fno-wrapv"]
    LINK_ARGS = LINK_ARGS + SANITIZE


extension = Extension(
    "rowquant._ext",
    sources=["src/rowquant/_ext.pyx"] + sorted(glob.glob("csrc/*.c")),
    # the glue reads arrays through numpy's C API (the serving path of QuantizedEmbedding)
    include_dirs=["csrc", numpy.get_include()],
    depends=sorted(glob.glob("csrc/*.h")),  # rebuild when only a header changed
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=list(COMPILE_ARGS),
    extra_link_args=list(LINK_ARGS),
    libraries=["m"],  # fmaf, for the scalar bag kernel on processors without FMA
)

setup(
    ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}),
)
