"""Empty tables, empty ids and empty bags are valid and give empty or zero results."""

import numpy as np
import pytest

import rowquant as rq


@pytest.mark.parametrize("shape", [(0, 0), (0, 1), (0, 97), (1, 0), (5, 0)])
def test_quantize_empty_tables(shape):
    for codes, scales in (rq.quantize_rows(np.zeros(shape, np.float32)),
                          rq.quantize_rows(np.zeros(shape, np.float64)),
                          rq.reference.quantize_rows(np.zeros(shape, np.float32))):
        assert codes.shape == shape and codes.dtype == np.uint8
        assert scales.shape == shape[:1] and scales.dtype == np.float32
        # a row without values has max 0, hence scale 0
        np.testing.assert_array_equal(scales.view(np.uint32), 0)
    qe = rq.quantize(np.zeros(shape, np.float32))
    assert qe.shape == shape and len(qe) == shape[0] and qe.nbytes == 4 * shape[0]


@pytest.mark.parametrize("shape", [(0, 0), (0, 7), (4, 0)])
def test_dequantize_and_take_on_empty_tables(shape):
    codes, scales = np.zeros(shape, np.uint8), np.ones(shape[0], np.float32)
    qe = rq.QuantizedEmbedding(codes, scales)
    for result in (rq.dequantize(codes, scales), qe.dequantize(), qe[:]):
        assert result.shape == shape and result.dtype == np.float32
    empty_ids = np.zeros(0, np.int64)
    for result in (rq.take(codes, scales, empty_ids), qe.take(empty_ids), qe[empty_ids]):
        assert result.shape == (0, shape[1]) and result.dtype == np.float32
    result = rq.take(codes, scales, np.zeros((3, 0), np.int32))
    assert result.shape == (3, 0, shape[1])


def test_take_from_zero_width_table():
    codes, scales = np.zeros((4, 0), np.uint8), np.ones(4, np.float32)
    result = rq.take(codes, scales, np.array([3, 0, 0]))
    assert result.shape == (3, 0) and result.dtype == np.float32
    assert rq.QuantizedEmbedding(codes, scales)[2].shape == (0,)


BAGS_ON = {
    "embedding_bag": lambda codes, scales, *a, **kw: rq.embedding_bag(codes, scales, *a, **kw),
    "qe.bag": lambda codes, scales, *a, **kw: rq.QuantizedEmbedding(codes, scales).bag(*a, **kw),
    "reference": lambda codes, scales, *a, **kw: rq.reference.embedding_bag(
        codes, scales, *a, **kw),
}


@pytest.mark.parametrize("bag", BAGS_ON)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_empty_bags(bag, mode):
    codes, scales = np.full((3, 5), 200, np.uint8), np.ones(3, np.float32)
    no_ids = np.zeros(0, np.int64)
    cases = [
        ((no_ids, np.array([0, 0, 0])), {}, 3),
        ((no_ids, np.array([], np.int64)), {}, 0),
        ((no_ids, np.array([0])), {"include_last_offset": True}, 0),
        ((no_ids, np.array([0, 0, 0])), {"include_last_offset": True}, 2),
        ((no_ids,), {"lengths": np.array([0, 0])}, 2),
        ((no_ids,), {"lengths": np.array([], np.int64)}, 0),
        ((np.zeros((4, 0), np.int64),), {}, 4),
        ((np.zeros((0, 3), np.int64),), {}, 0),
        ((np.zeros((0, 0), np.int64),), {}, 0),
    ]
    for args, kwargs, n_bags in cases:
        result = BAGS_ON[bag](codes, scales, *args, mode=mode, **kwargs)
        assert result.shape == (n_bags, 5) and result.dtype == np.float32, (args, kwargs)
        assert (result == 0).all() and not np.signbit(result).any()


@pytest.mark.parametrize("bag", BAGS_ON)
def test_bags_on_zero_width_table(bag):
    codes, scales = np.zeros((3, 0), np.uint8), np.ones(3, np.float32)
    result = BAGS_ON[bag](codes, scales, np.array([0, 2, 1]), np.array([0, 1]))
    assert result.shape == (2, 0) and result.dtype == np.float32


def test_empty_bags_with_out():
    codes, scales = np.full((3, 5), 200, np.uint8), np.ones(3, np.float32)
    out = np.full((2, 5), np.float32(9))
    result = rq.embedding_bag(codes, scales, np.zeros(0, np.int64), np.array([0, 0]), out=out)
    assert result is out
    assert (out == 0).all()
