"""Shared fixtures. The helpers themselves live in ``helpers.py`` beside this file."""

import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib, which does not put this folder on sys.path; the test
# modules import their shared helpers (``import helpers``) from here.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

import rowquant as rq  # noqa: E402


@pytest.fixture
def restore_num_threads():
    """Put the library-wide thread count back as it was, whatever the test did to it."""
    before = rq.get_num_threads()
    yield before
    rq.set_num_threads(before)
