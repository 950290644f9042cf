"""What the README and the docstrings promise, checked: the main entry point documents itself
in full, and the README's statements about FBGEMM hold (its unpack and its one-id bags give
rowquant's values bit for bit; its bags of several ids sum in another order and differ in the
last bits, which the README used to deny)."""

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


FBGEMM_SENTENCE = "9,915 of 12,800"


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
    assert f"{differ:,} of {ours.size:,}" == FBGEMM_SENTENCE
    assert FBGEMM_SENTENCE in README.read_text()
    assert np.abs(theirs - ours).max() < 5e-6
    # one id per bag and the whole-table unpack: the same bits
    single = lookup(packed, torch.from_numpy(ids), torch.from_numpy(np.arange(len(ids)))).numpy()
    np.testing.assert_array_equal(single.view(np.uint32), qe.take(ids).view(np.uint32))
    unpacked = torch.ops.quantized.embedding_bag_byte_unpack(packed).numpy()
    np.testing.assert_array_equal(unpacked.view(np.uint32), qe.dequantize().view(np.uint32))
