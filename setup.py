"""Declares the C extension; the metadata lives in pyproject.toml.

Flags: -O3 and -ffp-contract=off (no fused multiply-adds the arithmetic contract does not state),
never -ffast-math and never -march=native, so a wheel built here runs on any x86-64 and gives the
reference's bits. OpenMP is used when the compiler accepts -fopenmp; without it every kernel
runs single-threaded. ROWQUANT_SANITIZE=1 builds for .ci/sanitize instead: AddressSanitizer and
UndefinedBehaviorSanitizer checks around the kernels, at -O1 so the run stays quick and reports
keep their stack frames; the library must then run with libasan preloaded.
"""
import glob
import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILE_ARGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-Wall"]
LINK_ARGS = []
if os.environ.get("ROWQUANT_SANITIZE") == "1":
    SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                "-fno-omit-frame-pointer", "-g"]
    # the last -O wins; -fno-wrapv undoes Python's -fwrapv, under which UBSan ignores signed
    # overflow (an index product like row * stride that wraps would go unreported)
    COMPILE_ARGS = COMPILE_ARGS + SANITIZE + ["-O1", "-fno-wrapv"]
    LINK_ARGS = SANITIZE


def compiler_accepts(compiler, flag):
    """Whether compiling and linking a tiny OpenMP program with ``flag`` succeeds."""
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "probe.c")
        with open(source, "w") as handle:
            handle.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            objects = compiler.compile([source], output_dir=folder, extra_postargs=[flag])
            compiler.link_executable(objects, "probe", output_dir=folder, extra_postargs=[flag])
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        use_openmp = os.environ.get("ROWQUANT_OPENMP", "1") != "0" and compiler_accepts(
            self.compiler, "-fopenmp"
        )
        if not use_openmp:
            print("rowquant: building without OpenMP; kernels run on one thread", file=sys.stderr)
        for extension in self.extensions:
            if use_openmp:
                extension.extra_compile_args.append("-fopenmp")
                extension.extra_link_args.append("-fopenmp")
        super().build_extensions()


extension = Extension(
    "rowquant._ext",
    sources=["src/rowquant/_ext.pyx"] + sorted(glob.glob("csrc/*.c")),
    include_dirs=["csrc"],
    extra_compile_args=list(COMPILE_ARGS),
    extra_link_args=list(LINK_ARGS),
)

setup(
    ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)
