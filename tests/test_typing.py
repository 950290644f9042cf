"""The public API is typed: ``mypy --strict`` accepts a user's typed code (tests/typing/usage.py)
and rejects wrong calls (tests/typing/misuse.py), each on the line that makes it, among them an
unknown bag mode, which mypy used to let through."""

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import rowquant

pytest.importorskip("mypy")

EXAMPLES = Path(__file__).resolve().parent / "typing"


def run_mypy(path: Path) -> subprocess.CompletedProcess:
    # MYPYPATH: the folder holding the rowquant that this interpreter imports, for an editable
    # install (its import hook is not a path mypy can follow); an installed wheel mypy finds in
    # site-packages itself, and refuses site-packages on MYPYPATH
    env = dict(os.environ)
    package_parent = Path(rowquant.__file__).resolve().parents[1]
    site = {Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")}
    if package_parent not in site:
        env["MYPYPATH"] = str(package_parent)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes",
         "--follow-imports=silent", str(path)],
        capture_output=True, text=True, cwd=EXAMPLES, env=env,
    )


def test_typed_usage_passes_mypy_strict():
    done = run_mypy(EXAMPLES / "usage.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrong_calls_are_type_errors():
    done = run_mypy(EXAMPLES / "misuse.py")
    expected = {}
    for number, line in enumerate((EXAMPLES / "misuse.py").read_text().splitlines(), 1):
        found = re.search(r"# error: ([\w-]+)", line)
        if found:
            expected[number] = found.group(1)
    reported = {}
    for line in done.stdout.splitlines():
        found = re.match(r".*misuse\.py:(\d+): error: .*\[([\w-]+)\]$", line)
        if found:
            reported.setdefault(int(found.group(1)), found.group(2))
    assert reported == expected, done.stdout
