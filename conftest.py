"""Collection rules for the whole repository: the doctests of the optional interop modules run
only where their dependency is installed (CI installs them; a bare install skips them)."""

import importlib.util

import pytest


collect_ignore = []
if importlib.util.find_spec("torch") is None:
    collect_ignore += ["src/rowquant/torch.py", "src/rowquant/_torch_ops.py",
                       "src/rowquant/_torch_onnx.py"]
if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    collect_ignore.append("src/rowquant/_onnx.py")
if importlib.util.find_spec("dask") is None:
    collect_ignore.append("src/rowquant/dask.py")
if importlib.util.find_spec("tokenizers") is None:  # the encoder's examples build tokenizers
    collect_ignore.append("src/rowquant/encoder.py")


def pytest_collection_modifyitems(config, items):
    """Doctests that build torch objects (named *torch*) are skipped without torch, the ONNX
    export through torch's default exporter without onnxscript and onnxruntime, and the gensim
    round trip without gensim."""
    if importlib.util.find_spec("gensim") is None:
        skip = pytest.mark.skip(reason="needs gensim (pip install 'rowquant[gensim]')")
        for item in items:
            if isinstance(item, pytest.DoctestItem) and item.name.endswith("from_gensim"):
                item.add_marker(skip)
    missing = {name for name in ("torch", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(name) is None}
    if "torch" in missing:
        skip = pytest.mark.skip(reason="needs torch (pip install 'rowquant[torch]')")
        for item in items:
            if isinstance(item, pytest.DoctestItem) and "torch" in item.name:
                item.add_marker(skip)
    elif missing:
        skip = pytest.mark.skip(reason="needs onnxscript and onnxruntime (pip install "
                                       "'rowquant[onnx]')")
        for item in items:
            if isinstance(item, pytest.DoctestItem) and item.name.endswith("translation_table"):
                item.add_marker(skip)
