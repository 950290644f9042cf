"""Cosine of a finite query whose norm overflows float32: refused, as a row's is, instead of
scoring every row 0 (the inverse of an infinite norm is 0), on both backends and through the
torch operator."""

import numpy as np
import pytest

import rowquant as rq
from rowquant import _backend

TABLE = rq.quantize(np.array([[1, 0], [0, 2], [-1, -1]], np.float32))
BIG = [3e38, 3e38]  # each finite, the norm 4.2e38 is not


@pytest.fixture(params=["c", "numpy"])
def backend(request):
    if request.param == "c" and not _backend.compiled_available():
        pytest.skip("the C extension is not built")
    with _backend.using(request.param):
        yield request.param


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_cosine_refuses_a_query_whose_norm_overflows(backend, precision):
    table = rq.QuantizedEmbedding(TABLE.codes, TABLE.scales)
    message = "query 1's norm is beyond float32's range"
    with pytest.raises(ValueError, match=message):
        table.dot([[1.0, 0.0], BIG], metric="cosine", precision=precision)
    with pytest.raises(ValueError, match=message):
        table.search([[1.0, 0.0], BIG], k=2, metric="cosine", precision=precision)
    with pytest.raises(ValueError, match="query 0's norm"):
        table.most_similar(BIG, k=1)
    # the dot product is defined (and overflows to inf where the sum does), as are smaller
    # queries' cosines
    assert np.isinf(table.dot(BIG, precision=precision)[1])
    np.testing.assert_allclose(table.dot([3e37, 3e37], metric="cosine", precision=precision),
                               [2**-0.5, 2**-0.5, -1], rtol=2e-3)


def test_the_torch_operator_refuses_it_too():
    torch = pytest.importorskip("torch")
    from rowquant.torch import QuantizedLogits

    with pytest.raises(ValueError, match="query 0's norm is beyond float32's range"):
        QuantizedLogits(TABLE, metric="cosine")(torch.tensor(BIG))
