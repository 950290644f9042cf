"""PyTorch tensors as inputs to the plain-array functions: taken as their data (detached from
autograd, on the CPU, bfloat16 widened exactly to float32), with the same results as the numpy
arrays they hold. Before, ``rq.quantize(nn.Embedding(...).weight)`` failed with torch's "Can't
call numpy() on Tensor that requires grad"."""

import numpy as np
import pytest
from helpers import assert_same_bits, assert_same_codes

import rowquant as rq

torch = pytest.importorskip("torch")


def test_quantize_a_parameter_that_requires_grad():
    embedding = torch.nn.Embedding(50, 12)
    assert embedding.weight.requires_grad
    qe = rq.quantize(embedding.weight)
    expected = rq.quantize(embedding.weight.detach().numpy())
    assert_same_codes(qe.codes, expected.codes)
    assert_same_bits(qe.scales, expected.scales)
    codes, scales = rq.quantize_rows(embedding.weight)
    assert_same_codes(codes, expected.codes)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_quantize_tensors_of_every_float_dtype(dtype):
    weight = torch.randn(30, 9, dtype=getattr(torch, dtype), requires_grad=True)
    as_float32 = weight.detach().float().numpy()  # exact for each of these dtypes' values
    qe = rq.quantize(weight)
    assert_same_codes(qe.codes, rq.quantize(as_float32).codes)


def test_integer_tensors_are_refused_like_integer_arrays():
    with pytest.raises(TypeError, match="dtype int64"):
        rq.quantize(torch.ones(3, 4, dtype=torch.int64))


def test_lookups_take_tensor_ids_offsets_weights_and_tables():
    qe = rq.quantize(np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32))
    ids = torch.tensor([3, 1, 4, 1, 5])
    offsets = torch.tensor([0, 2])
    weights = torch.tensor([0.5, 1.0, -2.0, 1.0, 3.0], requires_grad=True)
    assert_same_bits(qe.take(ids), qe.take(ids.numpy()))
    assert_same_bits(
        qe.bag(ids, offsets, weights=weights),
        qe.bag(ids.numpy(), offsets.numpy(), weights=weights.detach().numpy()),
    )
    codes, scales = torch.from_numpy(np.array(qe.codes)), torch.from_numpy(np.array(qe.scales))
    assert_same_bits(rq.take(codes, scales, ids), qe.take(ids.numpy()))
    assert_same_bits(rq.dequantize(codes, scales), qe.dequantize())
