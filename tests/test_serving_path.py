"""The serving path of QuantizedEmbedding: ``take``, ``bag`` and ``dequantize`` hand the calls
the kernels can take as they are (int64 ids, a fitting out= or none, threads None or an int)
straight to the backend's Table, and every other call to the checked path of the plain-array
functions.

Each call here is made twice, on a table and through the function (``rq.take``,
``rq.embedding_bag``, ``rq.dequantize``, which always check), and the two must end alike: the
same bits, the same out= returned, or the same exception with the same message, with a given
out= left as it was. On the C backend the glue's Table is also asked directly which calls it
serves, so that a case meant for the serving path cannot slip through the checked one unseen,
and every call it declines must have written nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from helpers import random_table, unaligned_copy

import rowquant as rq
from rowquant import _backend

N_ROWS, DIM = 7, 5
CODES, SCALES = random_table(np.random.default_rng(12), N_ROWS, DIM)
IDS = np.array([5, 0, 2, 2, 6])
on_c = pytest.mark.skipif(_backend.name() != "c", reason="the C backend's Table")


@dataclass
class Call:
    """One call's arguments, made fresh for each run (a run may write into out=)."""

    args: dict[str, Any]
    codes: np.ndarray = field(default_factory=lambda: CODES)
    scales: np.ndarray = field(default_factory=lambda: SCALES)


def out_of(shape, dtype=np.float32):
    return np.full(shape, -3.25, dtype)


def read_only(array):
    array.flags.writeable = False
    return array


class Sub(np.ndarray):
    pass


def one_buffer(out_at, out_shape, n_ids=len(IDS)):
    """Codes at byte 0, scales at 512, ids at 1024, all in one buffer, and an out= of
    ``out_shape`` at byte ``out_at`` of it: over one of them, or just beside."""
    buffer = np.zeros(4096, np.uint8)
    codes = buffer[: N_ROWS * DIM].reshape(N_ROWS, DIM)
    codes[:] = CODES
    scales = buffer[512 : 512 + 4 * N_ROWS].view(np.float32)
    scales[:] = SCALES
    ids = buffer[1024 : 1024 + 8 * n_ids].view(np.int64)
    ids[:] = IDS[:n_ids] if n_ids <= len(IDS) else np.arange(n_ids) % N_ROWS
    size = int(np.prod(out_shape)) * 4
    out = buffer[out_at : out_at + size].view(np.float32).reshape(out_shape)
    return codes, scales, ids, out


def beside(out_at, shape=(len(IDS), DIM)):
    def make():
        codes, scales, ids, out = one_buffer(out_at, shape)
        return Call({"ids": ids, "out": out}, codes, scales)
    return make


IDS_END = 1024 + 8 * len(IDS)
OUT_BYTES = 4 * len(IDS) * DIM

# name -> (whether the Table serves it, a maker of the call's arguments)
TAKES: dict[str, tuple[bool, Callable[[], Call]]] = {
    "int64": (True, lambda: Call({"ids": IDS.copy()})),
    "int64 one id": (True, lambda: Call({"ids": np.array([3])})),
    "int64 no ids": (True, lambda: Call({"ids": np.array([], np.int64)})),
    "longlong": (True, lambda: Call({"ids": IDS.astype(np.longlong)})),
    "int64 out=": (True, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM))})),
    "int64 out= no ids": (True, lambda: Call({"ids": IDS[:0].copy(), "out": out_of((0, DIM))})),
    "threads=1": (True, lambda: Call({"ids": IDS.copy(), "threads": 1})),
    "threads=2 out=": (True, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM)),
                                           "threads": 2})),
    "threads=2**31-1": (True, lambda: Call({"ids": IDS.copy(), "threads": 2**31 - 1})),
    "out= just after ids": (True, beside(IDS_END)),
    "out= just before ids": (True, beside(1024 - OUT_BYTES)),
    # other ids: converted by the checked path
    "int32": (False, lambda: Call({"ids": IDS.astype(np.int32)})),
    "uint8": (False, lambda: Call({"ids": IDS.astype(np.uint8)})),
    "uint64": (False, lambda: Call({"ids": IDS.astype(np.uint64)})),
    "big-endian int64": (False, lambda: Call({"ids": IDS.astype(">i8")})),
    "0-d": (False, lambda: Call({"ids": np.array(3)})),
    "numpy scalar": (False, lambda: Call({"ids": np.int64(3)})),
    "python int": (False, lambda: Call({"ids": 3})),
    "2-D": (False, lambda: Call({"ids": IDS[:4].reshape(2, 2)})),
    "2-D out=": (False, lambda: Call({"ids": IDS[:4].reshape(2, 2), "out": out_of((2, 2, DIM))})),
    "2-D one column": (False, lambda: Call({"ids": IDS.reshape(-1, 1)})),
    "strided": (False, lambda: Call({"ids": IDS.copy()[::2]})),
    "misaligned": (False, lambda: Call({"ids": unaligned_copy(IDS)})),
    "list": (False, lambda: Call({"ids": IDS.tolist()})),
    "tuple": (False, lambda: Call({"ids": tuple(IDS.tolist())})),
    "subclass": (False, lambda: Call({"ids": IDS.copy().view(Sub)})),
    "read-only ids": (True, lambda: Call({"ids": read_only(IDS.copy())})),
    "out= subclass": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM)).view(Sub)})),
    "threads=np.int64": (False, lambda: Call({"ids": IDS.copy(), "threads": np.int64(2)})),
    # bad ids
    "id -1": (False, lambda: Call({"ids": np.array([1, -1])})),
    "id N": (False, lambda: Call({"ids": np.array([1, N_ROWS])})),
    "id 2**62 out=": (False, lambda: Call({"ids": np.array([0, 2**62, 1]),
                                           "out": out_of((3, DIM))})),
    "id N out=": (False, lambda: Call({"ids": np.array([0, 1, N_ROWS]),
                                       "out": out_of((3, DIM))})),
    "uint64 past int64 out=": (False, lambda: Call({"ids": np.array([1, 2**64 - 1], np.uint64),
                                                    "out": out_of((2, DIM))})),
    # 2**56 in big-endian bytes is 1 in little-endian: read unswapped, it would be a good id
    "big-endian id 2**56": (False, lambda: Call({"ids": np.array([2**56], ">i8"),
                                                 "out": out_of((1, DIM))})),
    "float ids": (False, lambda: Call({"ids": IDS.astype(np.float64)})),
    "bool ids": (False, lambda: Call({"ids": np.ones(3, bool)})),
    "None ids": (False, lambda: Call({"ids": None})),
    "ragged ids": (False, lambda: Call({"ids": [[1], [1, 2]]})),
    # unfit out=
    "out= float64": (False, lambda: Call({"ids": IDS.copy(),
                                          "out": out_of((5, DIM), np.float64)})),
    "out= float16": (False, lambda: Call({"ids": IDS.copy(),
                                          "out": out_of((5, DIM), np.float16)})),
    "out= int32": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM), np.int32)})),
    "out= big-endian": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM), ">f4")})),
    "out= Fortran": (False, lambda: Call({"ids": IDS.copy(),
                                          "out": np.asfortranarray(out_of((5, DIM)))})),
    "out= strided": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, 2 * DIM))[:, ::2]})),
    "out= padded rows": (False, lambda: Call({"ids": IDS.copy(),
                                              "out": out_of((5, DIM + 3))[:, :DIM]})),
    "out= read-only": (False, lambda: Call({"ids": IDS.copy(),
                                            "out": read_only(out_of((5, DIM)))})),
    "out= misaligned": (False, lambda: Call({"ids": IDS.copy(),
                                             "out": unaligned_copy(out_of((5, DIM)))})),
    "out= too many rows": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((6, DIM))})),
    "out= too few columns": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, DIM - 1))})),
    "out= flat": (False, lambda: Call({"ids": IDS.copy(), "out": out_of(5 * DIM)})),
    "out= 3-D": (False, lambda: Call({"ids": IDS.copy(), "out": out_of((5, 1, DIM))})),
    "out= a list": (False, lambda: Call({"ids": IDS.copy(), "out": [[0.0] * DIM] * 5})),
    "out= over the ids": (False, beside(1024)),
    "out= over the last id": (False, beside(IDS_END - 4)),
    "out= over the first id": (False, beside(1024 - OUT_BYTES + 4)),
    "out= over the codes": (False, beside(0)),
    "out= over the last code": (False, beside(N_ROWS * DIM - 1 - (N_ROWS * DIM - 1) % 4)),
    "out= over the scales": (False, beside(512)),
    # bad threads
    "threads=0": (False, lambda: Call({"ids": IDS.copy(), "threads": 0})),
    "threads=-1": (False, lambda: Call({"ids": IDS.copy(), "threads": -1})),
    "threads=2**31": (False, lambda: Call({"ids": IDS.copy(), "threads": 2**31})),
    "threads=2**64": (False, lambda: Call({"ids": IDS.copy(), "threads": 2**64})),
    "threads=True": (False, lambda: Call({"ids": IDS.copy(), "threads": True})),
    "threads=1.0": (False, lambda: Call({"ids": IDS.copy(), "threads": 1.0})),
    "threads='2'": (False, lambda: Call({"ids": IDS.copy(), "threads": "2"})),
}


def ending(run, out):
    """How a call ended: its result's bits (and whether it is out), or its error; a given out=
    must come back unchanged from an error."""
    before = None if not isinstance(out, np.ndarray) else np.array(out, copy=True)
    try:
        result = run()
    except Exception as error:  # noqa: BLE001: the errors themselves are compared
        if before is not None:
            assert np.array(out, copy=True).tobytes() == before.tobytes(), "out= was written"
        return type(error), str(error)
    assert result.dtype == np.float32
    return "result", type(result), result.shape, result.tobytes(), result is out


def table_and_function_end_alike(make, method, function):
    on_table = make()
    qe = rq.QuantizedEmbedding(on_table.codes, on_table.scales)
    got = ending(lambda: method(qe, **on_table.args), on_table.args.get("out"))
    direct = make()
    expected = ending(lambda: function(direct.codes, direct.scales, **direct.args),
                      direct.args.get("out"))
    assert got == expected
    return got


@pytest.mark.parametrize("case", list(TAKES))
def test_take_ends_as_the_checked_function_does(case):
    got = table_and_function_end_alike(
        TAKES[case][1], rq.QuantizedEmbedding.take,
        lambda codes, scales, ids, **kw: rq.take(codes, scales, ids, **kw),
    )
    if got[0] == "result":
        call = TAKES[case][1]()
        ids = np.asarray(call.args["ids"])
        expected = rq.reference.take(CODES, SCALES, ids.reshape(-1)).reshape(ids.shape + (DIM,))
        assert got[3] == expected.tobytes()


def test_the_take_cases_cover_successes_and_each_error():
    endings = {
        case: table_and_function_end_alike(make, rq.QuantizedEmbedding.take, rq.take)[0]
        for case, (_, make) in TAKES.items()
    }
    assert {TypeError, ValueError, IndexError, "result"} == set(endings.values())
    assert all(endings[case] == "result" for case, (fast, _) in TAKES.items() if fast)


def table_for(call, default_threads=rq.get_num_threads):
    return _backend.kernels.Table(call.codes, call.scales, default_threads)


def assert_served_or_declined(fast, out, serve, expected):
    """Call serve(): a fast call returns the checked path's result (expected(), in out when one
    is given); any other returns None having left out exactly as it was."""
    before = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
    served = serve()
    if not fast:
        assert served is None
        if before is not None:
            assert np.array(out, copy=True).tobytes() == before.tobytes()
        return
    assert served is not None
    assert served is out or out is None
    wanted = expected()
    assert served.tobytes() == wanted.tobytes() and served.shape == wanted.shape


@on_c
@pytest.mark.parametrize("case", list(TAKES))
def test_the_table_serves_exactly_the_calls_it_should(case):
    """The Table serves the calls marked so (and returns what the checked path would), and
    declines every other having written nothing, so the checked path sees out= untouched."""
    fast, make = TAKES[case]
    call = make()
    out = call.args.get("out")
    assert_served_or_declined(
        fast, out,
        lambda: table_for(call).take(call.args["ids"], out, call.args.get("threads")),
        lambda: rq.take(call.codes, call.scales, call.args["ids"], threads=1),
    )


def refuse_to_read():
    raise RuntimeError("read the default thread count")


@on_c
def test_the_default_thread_count_is_read_per_call_only_for_threads_none():
    table = table_for(Call({}), refuse_to_read)
    for threads in (1, 3):
        assert table.take(IDS, None, threads) is not None
        assert table.bag(IDS.reshape(-1, 1), None, None, None, "sum", False, None, None,
                         threads) is not None
        assert table.dequantize(None, threads) is not None
    with pytest.raises(RuntimeError, match="default thread count"):
        table.take(IDS, None, None)
    with pytest.raises(RuntimeError, match="default thread count"):
        table.dequantize(None, None)
    # a call the Table declines anyway need not read it
    assert table.take(IDS.astype(np.int32), None, None) is None


def test_the_default_thread_count_follows_set_num_threads(restore_num_threads):
    qe = rq.QuantizedEmbedding(CODES, SCALES)
    expected = rq.take(CODES, SCALES, IDS)
    for count in (1, 2, 5):
        rq.set_num_threads(count)
        assert qe.take(IDS).tobytes() == expected.tobytes()


# ----------------------------------------------------------------------------- bags

OFFSETS = np.array([0, 2, 2])
WEIGHTS = np.linspace(-1, 2, len(IDS), dtype=np.float32)
MANY = 100  # more bags than the Table's bounds on the stack


def bag_call(**args):
    return lambda: Call({"ids": IDS.copy(), "offsets": OFFSETS.copy(), **args})


def bag_beside(out_at, **args):
    """Two bags of two ids (at byte 1024 of the buffer) and an out= at byte ``out_at``."""
    def make():
        codes, scales, ids, out = one_buffer(out_at, (2, DIM), n_ids=4)
        return Call({"ids": ids.reshape(2, 2), **args, "out": out}, codes, scales)
    return make


def many_bags(**args):
    ids = np.arange(3 * MANY) % N_ROWS
    return lambda: Call({"ids": ids, "offsets": np.arange(MANY) * 3, **args})


BAGS: dict[str, tuple[bool, Callable[[], Call]]] = {
    "offsets": (True, bag_call()),
    "offsets mean": (True, bag_call(mode="mean")),
    "offsets max": (True, bag_call(mode="max")),
    "offsets weighted": (True, bag_call(weights=WEIGHTS.copy())),
    "offsets out=": (True, bag_call(out=out_of((3, DIM)))),
    "include_last_offset": (True, bag_call(offsets=np.array([0, 2, 5]),
                                           include_last_offset=True)),
    "include_last_offset no bags": (True, lambda: Call({"ids": IDS[:0].copy(),
                                                        "offsets": np.array([0]),
                                                        "include_last_offset": True})),
    "2-D": (True, lambda: Call({"ids": IDS[:4].reshape(2, 2)})),
    "2-D no columns": (True, lambda: Call({"ids": np.zeros((3, 0), np.int64)})),
    "2-D include_last_offset ignored": (True, lambda: Call({"ids": IDS[:4].reshape(2, 2),
                                                           "include_last_offset": True})),
    "2-D weighted out=": (True, lambda: Call({"ids": IDS[:4].reshape(2, 2),
                                              "weights": WEIGHTS[:4].reshape(2, 2).copy(),
                                              "out": out_of((2, DIM))})),
    "padding_idx": (True, bag_call(padding_idx=2, mode="mean")),
    "padding_idx -1": (True, bag_call(padding_idx=-1)),
    "threads=2": (True, bag_call(threads=2)),
    "many bags": (True, many_bags()),
    "many bags, last offset": (True, lambda: Call({"ids": np.arange(3 * MANY) % N_ROWS,
                                                   "offsets": np.arange(MANY + 1) * 3,
                                                   "include_last_offset": True})),
    "2-D many bags": (True, lambda: Call({"ids": (np.arange(2 * MANY) % N_ROWS).reshape(MANY, 2)})),
    "out= just after the ids": (True, bag_beside(1024 + 32)),
    # converted or checked by the checked path
    "int32 ids": (False, bag_call(ids=IDS.astype(np.int32))),
    "list offsets": (False, bag_call(offsets=[0, 2, 2])),
    "int32 offsets": (False, bag_call(offsets=OFFSETS.astype(np.int32))),
    "float64 weights": (False, bag_call(weights=WEIGHTS.astype(np.float64))),
    "lengths": (False, lambda: Call({"ids": IDS.copy(), "lengths": np.array([2, 0, 3])})),
    "include_last_offset=1": (False, bag_call(offsets=np.array([0, 2, 5]),
                                              include_last_offset=1)),
    "padding_idx np.int64": (False, bag_call(padding_idx=np.int64(2))),
    "threads=np.int64": (False, bag_call(threads=np.int64(1))),
    "empty offsets, no ids": (False, lambda: Call({"ids": IDS[:0].copy(),
                                                   "offsets": np.array([], np.int64)})),
    # errors
    "bad id": (False, bag_call(ids=np.array([0, 1, 2, N_ROWS, 4]))),
    "bad id out=": (False, bag_call(ids=np.array([0, 1, -1, 3, 4]), out=out_of((3, DIM)))),
    "2-D bad id out=": (False, lambda: Call({"ids": np.array([[0, 1], [2, N_ROWS]]),
                                             "out": out_of((2, DIM))})),
    "offsets not from 0": (False, bag_call(offsets=np.array([1, 2, 2]))),
    "offsets decreasing": (False, bag_call(offsets=np.array([0, 3, 2]))),
    "offsets past the end": (False, bag_call(offsets=np.array([0, 2, 6]))),
    "offsets negative": (False, bag_call(offsets=np.array([0, -1, 2]))),
    "last offset short": (False, bag_call(offsets=np.array([0, 2, 4]), include_last_offset=True)),
    "empty offsets": (False, bag_call(offsets=np.array([], np.int64))),
    "empty offsets, last": (False, bag_call(offsets=np.array([], np.int64),
                                            include_last_offset=True)),
    "many bags decreasing at the end": (False, lambda: Call({
        "ids": np.arange(3 * MANY) % N_ROWS,
        "offsets": np.concatenate([np.arange(MANY - 1) * 3, [1]])})),
    "1-D ids without offsets": (False, lambda: Call({"ids": IDS.copy()})),
    "2-D ids with offsets": (False, bag_call(ids=IDS[:4].reshape(2, 2))),
    "offsets and lengths": (False, bag_call(lengths=np.array([2, 0, 3]))),
    "weights with mean": (False, bag_call(weights=WEIGHTS.copy(), mode="mean")),
    "weights too short": (False, bag_call(weights=WEIGHTS[:4].copy())),
    "weights 2-D for 1-D ids": (False, bag_call(weights=WEIGHTS.reshape(1, -1).copy())),
    "mode 'avg'": (False, bag_call(mode="avg")),
    "mode 0": (False, bag_call(mode=0)),
    "padding_idx N": (False, bag_call(padding_idx=N_ROWS)),
    "padding_idx -N-1": (False, bag_call(padding_idx=-N_ROWS - 1)),
    "padding_idx 2**70": (False, bag_call(padding_idx=2**70)),
    "padding_idx True": (False, bag_call(padding_idx=True)),
    "out= float64": (False, bag_call(out=out_of((3, DIM), np.float64))),
    "out= read-only": (False, bag_call(out=read_only(out_of((3, DIM))))),
    "out= Fortran": (False, bag_call(out=np.asfortranarray(out_of((3, DIM))))),
    "out= wrong shape": (False, bag_call(out=out_of((2, DIM)))),
    "out= over the ids": (False, bag_beside(1024)),
    "out= over the codes": (False, bag_beside(0)),
    "out= over the scales": (False, bag_beside(512)),
    "out= over the weights": (False, lambda: (lambda w: Call({
        "ids": IDS.copy(), "offsets": OFFSETS.copy(), "weights": w[:5],
        "out": w[4:19].reshape(3, DIM)}))(np.zeros(5 + 3 * DIM, np.float32))),
    "out= over the offsets": (False, lambda: (lambda b: Call({
        "ids": IDS.copy(), "offsets": b[:24].view(np.int64),
        "out": b[16:16 + 12 * DIM].view(np.float32).reshape(3, DIM)}))(
            np.zeros(256, np.uint8))),
    "threads=0": (False, bag_call(threads=0)),
    "threads=True": (False, bag_call(threads=True)),
}
TABLE_BAG_ARGS = ("ids", "offsets", "lengths", "weights", "mode", "include_last_offset",
                  "padding_idx", "out", "threads")
BAG_DEFAULTS = {"offsets": None, "lengths": None, "weights": None, "mode": "sum",
                "include_last_offset": False, "padding_idx": None, "out": None, "threads": None}


def embedding_bag(codes, scales, ids, offsets=None, **kw):
    return rq.embedding_bag(codes, scales, ids, offsets, **kw)


@pytest.mark.parametrize("case", list(BAGS))
def test_bag_ends_as_the_checked_function_does(case):
    table_and_function_end_alike(BAGS[case][1], rq.QuantizedEmbedding.bag, embedding_bag)


def test_the_bag_cases_cover_successes_and_each_error():
    endings = {
        case: table_and_function_end_alike(make, rq.QuantizedEmbedding.bag, embedding_bag)[0]
        for case, (_, make) in BAGS.items()
    }
    assert {TypeError, ValueError, IndexError, "result"} == set(endings.values())
    assert all(endings[case] == "result" for case, (fast, _) in BAGS.items() if fast)


@on_c
@pytest.mark.parametrize("case", list(BAGS))
def test_the_table_serves_exactly_the_bags_it_should(case):
    fast, make = BAGS[case]
    call = make()
    args = {**BAG_DEFAULTS, **call.args}
    checked = make()
    assert_served_or_declined(
        fast, args["out"],
        lambda: table_for(call).bag(*(args[name] for name in TABLE_BAG_ARGS)),
        lambda: embedding_bag(checked.codes, checked.scales, **checked.args),
    )


# ----------------------------------------------------------------------------- dequantize

def whole(out=None, threads=None, codes=CODES, scales=SCALES):
    args = {} if out is None else {"out": out}
    if threads is not None:
        args["threads"] = threads
    return lambda: Call(args, codes, scales)


def over_the_table(part):
    def make():
        codes, scales, _, out = one_buffer({"codes": 0, "scales": 512}[part], (N_ROWS, DIM))
        return Call({"out": out}, codes, scales)
    return make


DEQUANTIZES: dict[str, tuple[bool, Callable[[], Call]]] = {
    "new": (True, whole()),
    "out=": (True, lambda: whole(out_of((N_ROWS, DIM)))()),
    "threads=3": (True, whole(threads=3)),
    "empty table": (True, whole(codes=CODES[:0], scales=SCALES[:0])),
    "out= beside the scales": (True, lambda: (lambda parts: Call(
        {"out": parts[3]}, parts[0], parts[1]))(one_buffer(512 + 4 * N_ROWS, (N_ROWS, DIM)))),
    "out= subclass": (False, lambda: whole(out_of((N_ROWS, DIM)).view(Sub))()),
    "threads=np.int64": (False, whole(threads=np.int64(2))),
    "out= float64": (False, lambda: whole(out_of((N_ROWS, DIM), np.float64))()),
    "out= Fortran": (False, lambda: whole(np.asfortranarray(out_of((N_ROWS, DIM))))()),
    "out= read-only": (False, lambda: whole(read_only(out_of((N_ROWS, DIM))))()),
    "out= misaligned": (False, lambda: whole(unaligned_copy(out_of((N_ROWS, DIM))))()),
    "out= wrong shape": (False, lambda: whole(out_of((N_ROWS, DIM + 1)))()),
    "out= over the codes": (False, over_the_table("codes")),
    "out= over the scales": (False, over_the_table("scales")),
    "threads=0": (False, whole(threads=0)),
    "threads=1.0": (False, whole(threads=1.0)),
}


def dequantize(codes, scales, **kw):
    return rq.dequantize(codes, scales, **kw)


@pytest.mark.parametrize("case", list(DEQUANTIZES))
def test_dequantize_ends_as_the_checked_function_does(case):
    got = table_and_function_end_alike(
        DEQUANTIZES[case][1], rq.QuantizedEmbedding.dequantize, dequantize)
    assert (got[0] == "result") == (DEQUANTIZES[case][0] or "subclass" in case
                                    or "np.int64" in case)


@on_c
@pytest.mark.parametrize("case", list(DEQUANTIZES))
def test_the_table_serves_exactly_the_dequantizes_it_should(case):
    fast, make = DEQUANTIZES[case]
    call = make()
    out = call.args.get("out")
    assert_served_or_declined(
        fast, out,
        lambda: table_for(call).dequantize(out, call.args.get("threads")),
        lambda: rq.reference.dequantize(call.codes, call.scales),
    )


@on_c
def test_a_table_of_rows_in_reverse_order_knows_its_extent():
    """Codes whose rows run backwards (a negative row stride) span the bytes below their data
    pointer: an out= over their first row in memory overlaps them."""
    buffer = np.zeros(N_ROWS * DIM + 64, np.uint8)
    codes = buffer[: N_ROWS * DIM].reshape(N_ROWS, DIM)[::-1]
    codes[:] = CODES
    table = _backend.kernels.Table(codes, SCALES, rq.get_num_threads)
    out = buffer[:20].view(np.float32).reshape(1, DIM)  # the bytes of codes[-1]
    assert table.take(np.array([0]), out, 1) is None
    after = buffer[40:60].view(np.float32).reshape(1, DIM)  # past the codes' last byte, 34
    assert table.take(np.array([0]), after, 1) is after
    assert after.tobytes() == rq.reference.take(CODES, SCALES, np.array([0])).tobytes()
