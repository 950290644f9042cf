"""Collection rules for the whole repository: the doctests of the optional interop modules run
only where their dependency is installed (CI installs them; a bare install skips them)."""

import importlib.util

import pytest


collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore.append("src/rowquant/torch.py")
if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    collect_ignore.append("src/rowquant/_onnx.py")


def pytest_collection_modifyitems(config, items):
    """Doctests that build torch objects (named *torch*) are skipped without torch."""
    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(reason="needs torch (pip install 'rowquant[torch]')")
    for item in items:
        if isinstance(item, pytest.DoctestItem) and "torch" in item.name:
            item.add_marker(skip)
