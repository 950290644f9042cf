"""Bad offsets, lengths, weights, mode and padding_idx given to embedding_bag / qe.bag."""

import numpy as np
import pytest
from helpers import random_table

import rowquant as rq

N_ROWS, DIM = 9, 4
CODES, SCALES = random_table(np.random.default_rng(9), N_ROWS, DIM)
IDS = np.array([0, 1, 2, 3, 4, 5])  # 6 ids
IDS_2D = IDS.reshape(2, 3)


def embedding_bag(ids, *args, **kwargs):
    return rq.embedding_bag(CODES, SCALES, ids, *args, **kwargs)


def table_bag(ids, *args, **kwargs):
    return rq.QuantizedEmbedding(CODES, SCALES).bag(ids, *args, **kwargs)


BAGS = [embedding_bag, table_bag]

# (ids, keyword arguments, exception types, pattern the message must match)
BAD_CALLS = {
    "no_offsets_nor_lengths": (IDS, {}, ValueError, "offsets|lengths"),
    "offsets_and_lengths": (IDS, {"offsets": [0, 3], "lengths": [3, 3]}, ValueError,
                            "offsets|lengths"),
    "offsets_not_from_zero": (IDS, {"offsets": np.array([1, 3])}, ValueError, "offsets"),
    "offsets_negative": (IDS, {"offsets": np.array([-1, 0, 3])}, ValueError, "offsets"),
    "offsets_decreasing": (IDS, {"offsets": np.array([0, 4, 2])}, ValueError, "offsets"),
    "offsets_past_the_end": (IDS, {"offsets": np.array([0, 2, 7])}, ValueError, "offsets"),
    "offsets_empty_with_ids": (IDS, {"offsets": np.array([], np.int64)}, ValueError, "offsets"),
    "offsets_2d": (IDS, {"offsets": np.array([[0, 3]])}, ValueError, "offsets"),
    "offsets_float": (IDS, {"offsets": np.array([0.0, 3.0])}, (TypeError, ValueError),
                      "offsets"),
    "last_offset_short": (IDS, {"offsets": np.array([0, 2, 5]), "include_last_offset": True},
                          ValueError, "offsets"),
    "last_offset_long": (IDS, {"offsets": np.array([0, 2, 7]), "include_last_offset": True},
                         ValueError, "offsets"),
    "last_offset_missing": (IDS, {"offsets": np.array([], np.int64),
                                  "include_last_offset": True}, ValueError, "offsets"),
    "last_offset_decreasing": (IDS, {"offsets": np.array([0, 4, 3, 6]),
                                     "include_last_offset": True}, ValueError, "offsets"),
    "lengths_negative": (IDS, {"lengths": np.array([4, -1, 3])}, ValueError, "lengths"),
    "lengths_sum_short": (IDS, {"lengths": np.array([2, 2])}, ValueError, "lengths"),
    "lengths_sum_long": (IDS, {"lengths": np.array([4, 4])}, ValueError, "lengths"),
    "lengths_2d": (IDS, {"lengths": np.array([[3, 3]])}, ValueError, "lengths"),
    "lengths_float": (IDS, {"lengths": np.array([3.0, 3.0])}, (TypeError, ValueError),
                      "lengths"),
    "ids_2d_with_offsets": (IDS_2D, {"offsets": np.array([0, 3])}, ValueError, "offsets"),
    "ids_2d_with_lengths": (IDS_2D, {"lengths": np.array([3, 3])}, ValueError, "lengths"),
    "ids_3d": (IDS.reshape(1, 2, 3), {}, ValueError, "ids"),
    "ids_0d": (np.array(3), {"offsets": np.array([0])}, ValueError, "ids"),
    "weights_short": (IDS, {"offsets": [0, 3], "weights": np.ones(5, np.float32)}, ValueError,
                      "weights"),
    "weights_long": (IDS, {"offsets": [0, 3], "weights": np.ones(7, np.float32)}, ValueError,
                     "weights"),
    "weights_2d_for_1d_ids": (IDS, {"offsets": [0, 3], "weights": np.ones((2, 3), np.float32)},
                              ValueError, "weights"),
    "weights_1d_for_2d_ids": (IDS_2D, {"weights": np.ones(6, np.float32)}, ValueError,
                              "weights"),
    "weights_with_mean": (IDS, {"offsets": [0, 3], "weights": np.ones(6, np.float32),
                                "mode": "mean"}, ValueError, "weights"),
    "mode_min": (IDS, {"offsets": [0, 3], "mode": "min"}, ValueError, "mode"),
    "mode_list": (IDS, {"offsets": [0, 3], "mode": ["sum"]}, ValueError, "mode"),
    "mode_none": (IDS, {"offsets": [0, 3], "mode": None}, ValueError, "mode"),
    "weights_with_max": (IDS, {"offsets": [0, 3], "mode": "max", "weights": [1.0] * 6},
                         ValueError, "weights"),
    "mode_upper_case": (IDS, {"offsets": [0, 3], "mode": "SUM"}, ValueError, "mode"),
    "mode_unknown": (IDS, {"offsets": [0, 3], "mode": "median"}, ValueError, "mode"),
    "padding_idx_n": (IDS, {"offsets": [0, 3], "padding_idx": N_ROWS}, ValueError,
                      "padding_idx"),
    "padding_idx_large": (IDS, {"offsets": [0, 3], "padding_idx": 10**20}, ValueError,
                          "padding_idx"),
    "padding_idx_below_minus_n": (IDS, {"offsets": [0, 3], "padding_idx": -N_ROWS - 1},
                                  ValueError, "padding_idx"),
    "padding_idx_float": (IDS, {"offsets": [0, 3], "padding_idx": 1.5}, (TypeError, ValueError),
                          "padding_idx"),
}


@pytest.mark.parametrize("bag", BAGS)
@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_bag_arguments(bag, name):
    ids, kwargs, errors, pattern = BAD_CALLS[name]
    with pytest.raises(errors, match=pattern):
        bag(ids, **kwargs)


@pytest.mark.parametrize("bag", BAGS)
def test_bad_arguments_leave_out_untouched(bag):
    out = np.full((2, DIM), np.float32(5.5))
    before = out.tobytes()
    with pytest.raises(ValueError, match="lengths"):
        bag(IDS, lengths=np.array([2, 2]), out=out)
    with pytest.raises(ValueError, match="padding_idx"):
        bag(IDS, np.array([0, 3]), padding_idx=N_ROWS, out=out)
    assert out.tobytes() == before


@pytest.mark.parametrize("bag", BAGS)
@pytest.mark.parametrize("padding_idx", [-N_ROWS, -1, 0, N_ROWS - 1, np.int64(2), np.int32(-3)])
def test_valid_padding_idx_accepted(bag, padding_idx):
    got = bag(IDS, np.array([0, 3]), padding_idx=padding_idx)
    assert got.shape == (2, DIM)


# Lengths whose sum wraps around 2**64 to exactly len(ids): each must still be rejected. Run in a
# child process, because a kernel handed such bounds reads far outside ids and can crash.
OVERFLOWING_LENGTHS = [
    ("uint64", [2**64 - 1, 7], 6),
    ("uint64", [2**63 + 3, 2**63 + 3], 6),
    ("int64", [2**62, 2**62, 2**62, 2**62 + 6], 6),
    ("uint64", [2**63, 2**63], 0),
    ("int64", [2**62] * 4, 0),
]

CHILD = """
import numpy as np, rowquant as rq
codes, scales = np.full((9, 4), 200, np.uint8), np.ones(9, np.float32)
for dtype, lengths, n_ids in {cases!r}:
    ids, lengths = np.arange(n_ids) % 9, np.array(lengths, dtype=dtype)
    for bag in (lambda: rq.embedding_bag(codes, scales, ids, lengths=lengths),
                lambda: rq.QuantizedEmbedding(codes, scales).bag(ids, lengths=lengths)):
        try:
            bag()
        except ValueError as error:
            print("ValueError", "lengths" in str(error), flush=True)
        else:
            print("accepted", lengths.tolist(), flush=True)
"""


def test_lengths_whose_sum_overflows():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", CHILD.format(cases=OVERFLOWING_LENGTHS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert result.stdout.split("\n")[:-1] == ["ValueError True"] * 2 * len(OVERFLOWING_LENGTHS), (
        result.stdout)
