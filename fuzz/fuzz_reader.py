#!/usr/bin/env python3
"""Coverage-guided fuzzing of rowquant's file readers with atheris (libFuzzer for Python).

Each input is the whole content of a file. It is checked by ``reader_contract.check_bytes``:
``_safetensors.read_header`` on it in memory, then ``rowquant.load`` with and without mmap and
``rowquant._sources.FloatSource`` (all rows read in chunks as float32) on it as a real file. A
``ContractViolation``, or any exception other than the documented ``ValueError``/``TypeError``,
is a crash: libFuzzer writes the input to ``crash-<sha1>`` and stops.

Run it with the virtualenv active (``pip install -e '.[fuzz]'`` first) on a copy of the
committed corpus, which it extends; ``-fork`` and ``-merge`` start the script again by its path,
so run it as a program, not as ``python fuzz/fuzz_reader.py``::

    cp -r fuzz/corpus/reader /tmp/reader-corpus
    fuzz/fuzz_reader.py /tmp/reader-corpus -dict=fuzz/reader.dict -max_total_time=600 \
        -timeout=10 -rss_limit_mb=2048 -fork=2 -ignore_crashes=1

Replay files (a crash reproducer, say) with ``fuzz/fuzz_reader.py FILE...``. Add to the
committed corpus only the inputs of a run that reach new code::

    fuzz/fuzz_reader.py -set_cover_merge=1 fuzz/corpus/reader /tmp/reader-corpus

``fuzz/make_corpus.py`` writes the named seed files. ``.ci/fuzz`` does the bounded CI run;
``tests/test_fuzz_regressions.py`` replays the corpus through the same check without atheris.
"""

import os
import sys
import tempfile
import warnings

import atheris

import numpy  # noqa: F401  (first, outside the hook: all of numpy is not worth instrumenting)

with atheris.instrument_imports(include=["rowquant"]):
    import rowquant  # noqa: F401
    import rowquant.io  # noqa: F401

# FloatSource hands .npy headers to numpy's parser; its branches guide the search there too.
try:
    from numpy.lib import _format_impl as _npy_format  # numpy 2
except ImportError:
    from numpy.lib import format as _npy_format  # numpy 1

for function in (
    _npy_format.read_magic,
    _npy_format._read_array_header,
    _npy_format._filter_header,
    _npy_format.descr_to_dtype,
):
    atheris.instrument_func(function)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reader_contract  # noqa: E402

# numpy warns about .npy headers that need its Python 2 fallback; the fuzzer makes many
warnings.filterwarnings("ignore", message="Reading `.npy`")


def _scratch_path() -> str:
    """One path, rewritten for every input: an anonymous in-memory file where Linux has them
    (nothing is left behind when libFuzzer exits, which skips Python's atexit), else a file in
    a new temporary folder."""
    if hasattr(os, "memfd_create"):
        return f"/proc/self/fd/{os.memfd_create('rowquant-fuzz-input')}"
    return os.path.join(tempfile.mkdtemp(prefix="rowquant-fuzz-"), "input.safetensors")


_PATH = _scratch_path()


def TestOneInput(data: bytes) -> None:
    reader_contract.check_bytes(data, _PATH)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
