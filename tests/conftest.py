"""Shared fixtures. The helpers themselves live in ``helpers.py`` beside this file, which the
test modules import as ``import helpers`` (pyproject.toml's ``pythonpath`` puts this folder on
``sys.path``)."""

import pytest

import rowquant as rq


@pytest.fixture
def restore_num_threads():
    """Put the library-wide thread count back as it was, whatever the test did to it."""
    before = rq.get_num_threads()
    yield before
    rq.set_num_threads(before)
