"""Declares the C extension; the metadata lives in pyproject.toml.

Flags: -O3 and -ffp-contract=off (no fused multiply-adds the arithmetic contract does not state),
never -ffast-math and never -march=native, so a wheel built here runs on any x86-64 and gives the
reference's bits. OpenMP is used when the compiler accepts -fopenmp; without it every kernel
runs single-threaded.
"""
import glob
import os
import sys
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILE_ARGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-Wall"]


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
)

setup(
    ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)
