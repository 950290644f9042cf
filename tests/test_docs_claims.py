"""What the README and the docstrings promise, checked: the main entry point documents itself
in full, and the README's statements about FBGEMM hold (its unpack and its one-id bags give
rowquant's values bit for bit; its bags of several ids sum in another order and differ in the
last bits, by the amounts the README gives)."""

import re
from pathlib import Path

import numpy as np
import pytest

import rowquant as rq

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quantize_documents_itself():
    doc = rq.quantize.__doc__
    for section in ("Parameters", "Returns", "Raises", "Examples"):
        assert re.search(rf"^\s*{section}\n\s*-+$", doc, re.M), section
    for word in ("threads", "tensor", "TypeError", "ValueError", "ties"):
        assert word in doc, word


FBGEMM_SENTENCE = "12,515 of 12,800 values differ, by at most 1.9e-5"
ERRORS_SENTENCE = "at most 1.8e-5 from the exact sum, FBGEMM's 3.6e-6"


def test_fbgemm_bags_differ_in_the_last_bits_as_the_readme_says():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    qe = rq.quantize(rng.standard_normal((1000, 64)).astype(np.float32))
    packed = torch.from_numpy(qe.to_fbgemm())
    ids = rng.integers(0, 1000, 200 * 20)
    offsets = np.arange(0, len(ids), 20)
    lookup = torch.ops.quantized.embedding_bag_byte_rowwise_offsets
    theirs = lookup(packed, torch.from_numpy(ids), torch.from_numpy(offsets)).numpy()
    ours = qe.bag(ids, offsets)
    differ = int((theirs != ours).sum())
    gap = float(np.abs(theirs - ours).max())

    def short(x):  # 1.9e-5, as the README writes it
        return f"{x:.1e}".replace("e-0", "e-")

    assert f"{differ:,} of {ours.size:,} values differ, by at most {short(gap)}" == FBGEMM_SENTENCE
    exact = qe.take(ids).astype(np.float64).reshape(200, 20, 64).sum(axis=1)
    ours_error = float(np.abs(ours - exact).max())
    theirs_error = float(np.abs(theirs - exact).max())
    assert f"at most {short(ours_error)} from the exact sum, FBGEMM's {short(theirs_error)}" == (
        ERRORS_SENTENCE)
    text = " ".join(README.read_text().split())
    assert FBGEMM_SENTENCE in text and ERRORS_SENTENCE in text
    # one id per bag and the whole-table unpack: the same bits
    single = lookup(packed, torch.from_numpy(ids), torch.from_numpy(np.arange(len(ids)))).numpy()
    np.testing.assert_array_equal(single.view(np.uint32), qe.take(ids).view(np.uint32))
    unpacked = torch.ops.quantized.embedding_bag_byte_unpack(packed).numpy()
    np.testing.assert_array_equal(unpacked.view(np.uint32), qe.dequantize().view(np.uint32))
