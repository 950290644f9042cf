"""Bags agree with torch.nn.functional.embedding_bag on the dequantized float table."""

import numpy as np
import pytest
from helpers import assert_bags_close, bag_cases, bag_error_bound, bag_kwargs, exact_bags
from hypothesis import given, settings

import rowquant as rq

torch = pytest.importorskip("torch")


def torch_bag(codes, scales, call):
    table = torch.from_numpy(rq.dequantize(codes, scales))
    ids = np.asarray(call["ids"], dtype=np.int64)
    offsets = call["offsets"]
    if call["lengths"] is not None:
        offsets = np.concatenate([[0], np.cumsum(call["lengths"])[:-1]]).astype(np.int64)
    weights = call["weights"]
    return torch.nn.functional.embedding_bag(
        torch.from_numpy(ids),
        table,
        offsets=None if ids.ndim == 2 else torch.from_numpy(np.asarray(offsets, np.int64)),
        mode=call["mode"],
        per_sample_weights=None if weights is None else torch.from_numpy(weights),
        include_last_offset=call["include_last_offset"] if ids.ndim == 1 else False,
        padding_idx=call["padding_idx"],
    ).numpy()


@settings(max_examples=100, deadline=None)
@given(case=bag_cases())
def test_matches_torch(case):
    codes, scales, call = case["codes"], case["scales"], case["call"]
    ids = np.asarray(call["ids"])
    if call["lengths"] is not None and len(call["lengths"]) == 0:
        return  # no bags: torch needs at least one offset to express this
    if ids.ndim == 2 and ids.shape[1] == 0:
        return  # torch rejects bags of length 0 given as 2-D input ("step must be nonzero")
    expected = torch_bag(codes, scales, call)
    exact, bound = exact_bags(case)
    assert_bags_close(expected, exact, bound)
    got = rq.embedding_bag(codes, scales, call["ids"], **bag_kwargs(call))
    assert_bags_close(got, expected, 2 * bound)
    got = rq.QuantizedEmbedding(codes, scales).bag(call["ids"], **bag_kwargs(call))
    assert_bags_close(got, expected, 2 * bound)


@pytest.mark.parametrize("padding_idx", [None, 0, 3, -1, -5])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_matches_torch_on_a_larger_batch(mode, padding_idx):
    rng = np.random.default_rng(12)
    n_rows, dim = 211, 97
    codes, scales = rq.reference.quantize_rows(
        rng.standard_normal((n_rows, dim)).astype(np.float32))
    lengths = rng.integers(0, 40, 64)
    ids = rng.integers(0, 8, lengths.sum())  # few distinct rows: padding_idx appears often
    ids[::3] = rng.integers(0, n_rows, len(ids[::3]))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    expected = torch.nn.functional.embedding_bag(
        torch.from_numpy(ids), torch.from_numpy(rq.dequantize(codes, scales)),
        torch.from_numpy(offsets), mode=mode, padding_idx=padding_idx).numpy()
    got = rq.embedding_bag(codes, scales, ids, offsets, mode=mode, padding_idx=padding_idx)
    factors = np.append(scales[ids].astype(np.float64), 0.0)
    magnitude = np.add.reduceat(factors, offsets)[:, None]
    magnitude[lengths == 0] = 0
    # torch's own sum of the float rows errs by less than the kernels' (helpers.bag_error_bound)
    bound = np.broadcast_to(2 * bag_error_bound(magnitude, lengths[:, None]) + 1e-30, (64, dim))
    if mode == "mean":
        bound = bound / np.maximum(lengths, 1)[:, None] + 2.0**-24 * np.abs(expected)
    assert_bags_close(got, expected, bound)
