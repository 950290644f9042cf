"""Tables with keys (words) and free-form metadata: lookups by word, their errors, the keys and
metadata in files (written as two more tensors, read lazily, checked when corrupt), and the
errors for files of the wrong kind. Expected values come from numpy on the same rows and from
files built by hand with json/struct, not from rowquant's own writer."""

import json
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import rowquant as rq

WORDS = ["the", "king", "queen", "köln", "naïve café", "日本", "", "a\tb"]
METADATA = {"format": "rowquant", "version": "1", "scheme": "rowwise-symmetric-u8", "bias": "128"}


@pytest.fixture
def table():
    E = np.random.default_rng(7).standard_normal((len(WORDS), 6)).astype(np.float32)
    return E, rq.quantize(E, keys=WORDS)


# ------------------------------------------------------------------------- lookups by word


def test_words_index_rows_as_their_positions(table):
    E, qe = table
    plain = rq.quantize(E)
    for row, word in enumerate(WORDS):
        assert qe.index(word) == row
        np.testing.assert_array_equal(qe[word], plain[row])
        np.testing.assert_array_equal(qe.lookup(word), plain[row])
    words = ["queen", "日本", "queen", "the"]
    rows = [2, 5, 2, 0]
    np.testing.assert_array_equal(qe.index(words), rows)
    assert qe.index(words).dtype == np.int64
    np.testing.assert_array_equal(qe[words], plain.take(rows))
    np.testing.assert_array_equal(qe[tuple(words)], plain.take(rows))
    np.testing.assert_array_equal(qe[np.array(words)], plain.take(rows))
    np.testing.assert_array_equal(qe.lookup(words), plain.take(rows))


def test_integer_indexing_is_unchanged_on_a_keyed_table(table):
    E, qe = table
    plain = rq.quantize(E)
    for key in (3, -1, slice(1, 5, 2), [0, 2], np.array([True, False] * 4), (1, 2), []):
        np.testing.assert_array_equal(qe[key], plain[key])


def test_keys_behave_as_a_sequence(table):
    _, qe = table
    assert len(qe.keys) == len(WORDS)
    assert list(qe.keys) == WORDS and qe.keys.tolist() == WORDS
    assert qe.keys[3] == "köln" and qe.keys[-1] == "a\tb" and qe.keys[1:3] == ["king", "queen"]
    assert "queen" in qe.keys and "prince" not in qe.keys and 3 not in qe.keys
    assert dict(qe.key_to_index) == {word: i for i, word in enumerate(WORDS)}
    with pytest.raises(TypeError):
        qe.key_to_index["prince"] = 9  # read-only
    with pytest.raises(IndexError, match="key index 8 is out of range for 8 keys"):
        qe.keys[8]


def test_a_missing_word_is_a_key_error_naming_it(table):
    _, qe = table
    with pytest.raises(KeyError) as info:
        qe["prince"]
    assert str(info.value) == "'prince' is not a key of this table (8 keys)"
    with pytest.raises(KeyError, match=r"words\[2\] = 'princess' is not a key"):
        qe.index(["king", "queen", "princess"])
    with pytest.raises(KeyError, match=r"words\[1\] = 3 is not a string"):
        qe.index(["king", 3])
    with pytest.raises(KeyError, match="'Queen' is not a key"):
        qe.lookup("Queen")  # keys are case-sensitive


def test_a_table_without_keys_says_how_to_get_them():
    qe = rq.quantize(np.ones((2, 3), np.float32))
    assert qe.keys is None
    for call in (lambda: qe["king"], lambda: qe.index("king"), lambda: qe.key_to_index,
                 lambda: qe.bag_words([["king"]])):
        with pytest.raises(TypeError, match=r"this table has no keys: .*keys=words"):
            call()


def test_bag_words_is_bag_on_the_rows_of_the_words(table):
    _, qe = table
    sentences = [["the", "king"], [], ["queen", "queen", "日本"], ["köln"]]
    ids = [qe.index(words) for words in sentences]
    lengths = [len(words) for words in sentences]
    flat = np.concatenate(ids)
    for mode in ("sum", "mean", "max"):
        expected = qe.bag(flat, lengths=lengths, mode=mode)
        np.testing.assert_array_equal(qe.bag_words(sentences, mode=mode), expected)
    weights = [[0.5, 2.0], [], [1.0, -1.0, 3.0], [0.25]]
    np.testing.assert_array_equal(
        qe.bag_words(sentences, weights=weights),
        qe.bag(flat, lengths=lengths, weights=np.concatenate([np.array(w, np.float32)
                                                              for w in weights])),
    )
    np.testing.assert_array_equal(qe.bag_words([]), np.zeros((0, 6), np.float32))
    with pytest.raises(KeyError, match="'prince'"):
        qe.bag_words([["king"], ["prince"]])
    with pytest.raises(TypeError, match=r"bags\[1\] is a string; each bag is a list of words"):
        qe.bag_words([["king"], "the king"])
    with pytest.raises(TypeError, match="a list of bags"):
        qe.bag_words("the king")


def test_pool_is_one_bag(table):
    E, qe = table
    ids = [1, 2, 2, 5]
    for mode in ("sum", "mean", "max"):
        got = qe.pool(ids, mode=mode)
        assert got.shape == (6,)
        np.testing.assert_array_equal(got, qe.bag([ids], mode=mode)[0])
    np.testing.assert_array_equal(qe.pool([], mode="mean"), np.zeros(6, np.float32))
    np.testing.assert_array_equal(
        qe.pool(ids, weights=[1, 2, 3, 4]), qe.bag([ids], weights=[[1, 2, 3, 4]])[0]
    )
    # the mean of one sentence, against numpy on the dequantized rows
    expected = qe.dequantize()[ids].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(qe.pool(ids, mode="mean"), expected, rtol=1e-5, atol=1e-6)
    words = ["king", "queen", "queen", "日本"]
    np.testing.assert_array_equal(qe.pool(words, mode="mean"), qe.pool(ids, mode="mean"))
    with pytest.raises(TypeError, match="not one string"):
        qe.pool("king")
    with pytest.raises(KeyError, match="'prince'"):
        qe.pool(["king", "prince"])
    with pytest.raises(ValueError, match="pool takes one bag of ids"):
        qe.pool([[1, 2]])
    with pytest.raises(IndexError):
        qe.pool([1, 8])


# ------------------------------------------------------------------------- checking keys


@pytest.mark.parametrize(
    ("keys", "error", "fragment"),
    [
        (["a", "b", "a"], ValueError, "keys[2] = 'a' repeats keys[0]: keys must be unique"),
        (["a", 2, "c"], TypeError, "keys[1] is a int, keys must be strings"),
        ([b"a", "b", "c"], TypeError, "keys[0] is a bytes"),
        (["a", "b"], ValueError, "keys has 2 entries but the table has 3 rows"),
        ("abc", TypeError, "not one string"),
        (["a", "\ud800", "c"], ValueError, "keys[1] = '\\ud800' cannot be written as UTF-8"),
    ],
)
def test_bad_keys_are_refused(keys, error, fragment):
    with pytest.raises(error) as info:
        rq.quantize(np.ones((3, 2), np.float32), keys=keys)
    assert fragment in str(info.value)


def test_keys_from_a_numpy_array_and_a_generator():
    E = np.ones((3, 2), np.float32)
    assert rq.quantize(E, keys=np.array(["x", "y", "z"])).keys.tolist() == ["x", "y", "z"]
    assert rq.quantize(E, keys=(w for w in "xyz")).keys.tolist() == ["x", "y", "z"]
    assert type(rq.quantize(E, keys=np.array(["x", "y", "z"])).keys[0]) is str


@pytest.mark.parametrize(
    ("metadata", "error", "fragment"),
    [
        ({"format": "x"}, ValueError, "metadata name 'format' is the file format's own"),
        ({"bias": "1"}, ValueError, "is the file format's own"),
        ({"year": 2017}, TypeError, "metadata must map strings to strings"),
        ({1: "x"}, TypeError, "metadata must map strings to strings"),
        (["a"], TypeError, "metadata must be a dict of strings"),
    ],
)
def test_bad_metadata_is_refused(tmp_path, metadata, error, fragment):
    qe = rq.quantize(np.ones((3, 2), np.float32))
    for call in (lambda: rq.quantize(np.ones((3, 2), np.float32), metadata=metadata),
                 lambda: qe.save(tmp_path / "t.safetensors", metadata=metadata)):
        with pytest.raises(error) as info:
            call()
        assert fragment in str(info.value)
    assert not (tmp_path / "t.safetensors").exists()


# ------------------------------------------------------------------------- files


def test_keys_and_metadata_round_trip_through_a_file(tmp_path, table):
    E, qe = rq.quantize(table[0], keys=WORDS, metadata={"model": "toy"}), None
    path = tmp_path / "t.safetensors"
    rq.save(path, E, metadata={"licence": "Apache-2.0", "model": "toy v2"})
    for mmap in (True, False):
        loaded = rq.load(path, mmap=mmap)
        assert loaded.keys.tolist() == WORDS and loaded.keys == E.keys
        assert dict(loaded.metadata) == {"model": "toy v2", "licence": "Apache-2.0"}
        np.testing.assert_array_equal(loaded.codes, E.codes)
        np.testing.assert_array_equal(loaded["köln"], E["köln"])
    # saving again keeps both, and the table's own metadata are unchanged by save's
    assert dict(E.metadata) == {"model": "toy"}
    loaded.save(tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == path.read_bytes()


def test_the_file_holds_the_keys_as_utf8_bytes_and_offsets(tmp_path, table):
    _, qe = table
    path = tmp_path / "t.safetensors"
    qe.save(path, metadata={"source": "test"})
    from safetensors import safe_open
    from safetensors.numpy import load_file

    tensors = load_file(path)
    assert sorted(tensors) == ["codes", "key_offsets", "keys", "scales"]
    encoded = [word.encode("utf-8") for word in WORDS]
    assert tensors["keys"].tobytes() == b"".join(encoded)
    assert tensors["key_offsets"].dtype == np.int64
    np.testing.assert_array_equal(tensors["key_offsets"], np.cumsum([0] + [len(w) for w in encoded]))
    with safe_open(path, "np") as file:
        assert file.metadata() == {**METADATA, "source": "test"}
    # in the file: scales, codes (on a 64-byte boundary), then the keys' offsets and bytes
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + length])
    starts = {name: header[name]["data_offsets"][0] for name in tensors}
    assert sorted(starts, key=starts.get) == ["scales", "codes", "key_offsets", "keys"]
    assert (8 + length + starts["codes"]) % 64 == 0


def test_a_table_without_keys_is_written_as_before(tmp_path):
    E = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    path = tmp_path / "t.safetensors"
    rq.quantize(E).save(path)
    tensors_and_header = path.read_bytes()
    (length,) = struct.unpack("<Q", tensors_and_header[:8])
    header = json.loads(tensors_and_header[8 : 8 + length])
    assert header["__metadata__"] == METADATA and set(header) == {"__metadata__", "scales", "codes"}
    assert rq.load(path).keys is None and dict(rq.load(path).metadata) == {}


def test_loading_decodes_no_key_until_one_is_asked_for(tmp_path):
    words = [f"w{i}" for i in range(1000)]
    path = tmp_path / "t.safetensors"
    rq.quantize(np.ones((1000, 4), np.float32), keys=words).save(path)
    qe = rq.load(path)
    keys = qe.keys
    assert keys._mapping is None and keys._strings is None
    assert not keys.utf8.flags.owndata and not keys.offsets.flags.owndata  # views of the map
    assert keys[999] == "w999" and keys._mapping is None  # one key, decoded alone
    assert qe.index("w500") == 500 and keys._mapping is not None


def test_pickled_tables_keep_keys_and_metadata(table):
    _, qe = table
    qe = rq.QuantizedEmbedding(qe.codes, qe.scales, keys=WORDS, metadata={"m": "1"})
    back = pickle.loads(pickle.dumps(qe))
    assert back.keys.tolist() == WORDS and dict(back.metadata) == {"m": "1"}
    np.testing.assert_array_equal(back["queen"], qe["queen"])


# ------------------------------------------------------------------------- corrupt keys


ROWS, DIM = 3, 2
SCALES = np.array([1.0, 0.5, 0.0], np.float32)
CODES = np.arange(ROWS * DIM, dtype=np.uint8).reshape(ROWS, DIM) + 100


def keyed_file(offsets, utf8, offsets_dtype="I64", offsets_shape=None):
    """A rowquant file with keys, built by hand (not by rowquant's writer)."""
    offsets = np.asarray(offsets, np.int64)
    parts = [("scales", "F32", [ROWS], SCALES.tobytes()),
             ("codes", "U8", [ROWS, DIM], CODES.tobytes()),
             ("key_offsets", offsets_dtype, offsets_shape or [len(offsets)], offsets.tobytes()),
             ("keys", "U8", [len(utf8)], utf8)]
    header, data = {"__metadata__": METADATA}, b""
    for name, dtype, shape, raw in parts:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_a_hand_made_keyed_file_loads(tmp_path):
    path = tmp_path / "k.safetensors"
    path.write_bytes(keyed_file([0, 1, 3, 7], "añb€".encode()))
    for mmap in (True, False):
        qe = rq.load(path, mmap=mmap)
        assert qe.keys.tolist() == ["a", "ñ", "b€"]
        np.testing.assert_array_equal(qe["b€"], (CODES[2].astype(np.float32) - 128) * 0)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (keyed_file([0, 1, 2], b"abc"), "key_offsets must be I64 [4] (one more than the rows)"),
        (keyed_file([0, 1, 2, 3], b"abc", offsets_dtype="U64"), "key_offsets must be I64"),
        (keyed_file([0, 1, 2, 3], b"abc", offsets_shape=[2, 2]), "key_offsets must be I64 [4]"),
    ],
)
def test_key_tensors_of_the_wrong_shape_are_rejected_on_load(tmp_path, content, fragment):
    path = tmp_path / "k.safetensors"
    path.write_bytes(content)
    for mmap in (True, False):
        with pytest.raises(ValueError) as info:
            rq.load(path, mmap=mmap)
        assert str(path) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (keyed_file([0, 1, 2, 4], b"abc"), "key offsets must start at 0 and end at the 3 bytes"),
        (keyed_file([1, 1, 2, 3], b"abc"), "key offsets must start at 0"),
        (keyed_file([0, 2, 1, 3], b"abc"), "offsets[2] = 1 is below offsets[1] = 2"),
    ],
)
def test_bad_key_offsets_are_rejected_on_first_use(tmp_path, content, fragment):
    """Opening reads nothing of the vocabulary, so its offsets are checked when it is used:
    by any key, any lookup by word, and before the keys are written to another file."""
    path = tmp_path / "k.safetensors"
    path.write_bytes(content)
    uses = (lambda qe: qe.keys[0], lambda qe: qe.index("a"), lambda qe: list(qe.keys),
            lambda qe: qe.save(tmp_path / "copy.safetensors"))
    for mmap in (True, False):
        for use in uses:
            qe = rq.load(path, mmap=mmap)
            assert len(qe.keys) == 3
            with pytest.raises(ValueError) as info:
                use(qe)
            assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)
    assert not (tmp_path / "copy.safetensors").exists()


def test_keys_without_their_offsets_are_rejected(tmp_path):
    content = keyed_file([0, 1, 2, 3], b"abc")
    length = struct.unpack("<Q", content[:8])[0]
    header = json.loads(content[8 : 8 + length])
    del header["key_offsets"]
    header["keys"]["data_offsets"] = [header["codes"]["data_offsets"][1]] * 2
    header["keys"]["shape"] = [0]
    text = json.dumps(header).encode()
    path = tmp_path / "k.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + SCALES.tobytes() + CODES.tobytes())
    with pytest.raises(ValueError, match="and key_offsets and keys if it has keys"):
        rq.load(path)


def test_bad_utf8_and_repeated_keys_in_a_file_fail_when_read(tmp_path):
    path = tmp_path / "k.safetensors"
    path.write_bytes(keyed_file([0, 1, 2, 4], b"ab\xff\xfe"))
    qe = rq.load(path)  # loading reads no key
    assert qe.keys[0] == "a"
    with pytest.raises(ValueError, match=r"k.safetensors: key 2 \(b'\\xff\\xfe'\) is not valid UTF-8"):
        qe.keys[2]
    with pytest.raises(ValueError, match="key 2 .* is not valid UTF-8"):
        qe.index("a")
    path.write_bytes(keyed_file([0, 1, 2, 3], b"aba"))
    with pytest.raises(ValueError, match=r"key 2 \('a'\) repeats key 0: the keys are not unique"):
        rq.load(path).index("b")


# ------------------------------------------------------------------------- wrong kinds of file


def test_loading_a_float_npy_says_to_quantize_it_first(tmp_path):
    path = tmp_path / "E.npy"
    np.save(path, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError) as info:
        rq.load(path)
    message = str(info.value)
    assert "a .npy array (float32 (4, 3)), not a rowquant table; quantize it first" in message
    assert f"rowquant quantize {path} -o TABLE.safetensors" in message


def test_loading_a_plain_safetensors_model_says_what_it_holds(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"embeddings": np.ones((4, 3), np.float32), "bias": np.ones(3, np.float32)}, path)
    with pytest.raises(ValueError) as info:
        rq.load(path)
    message = str(info.value)
    assert "a safetensors file but not a rowquant table" in message
    assert "bias (F32 [3]), embeddings (F32 [4, 3])" in message
    assert f"rowquant quantize {path} --tensor embeddings -o TABLE.safetensors" in message


def test_loading_a_word_vector_text_file_says_to_quantize_it_first(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.418 0.24968\nof 0.70853 0.57088\n", encoding="utf-8")
    with pytest.raises(ValueError, match="a text file .* not a rowquant table; quantize it first"):
        rq.load(path)


# ------------------------------------------------------------------------- inspect and reports


def test_inspect_lists_the_keys_and_the_worst_rows_by_word(tmp_path, table):
    E, qe = table
    np.save(tmp_path / "E.npy", E)
    qe.save(tmp_path / "t.safetensors", metadata={"model": "toy"})
    result = subprocess.run(
        [sys.executable, "-m", "rowquant", "inspect", str(tmp_path / "t.safetensors"),
         "--against", str(tmp_path / "E.npy")],
        capture_output=True, text=True, timeout=60, encoding="utf-8",
    )
    assert result.returncode == 0, result.stderr
    assert "keys        8: 'the', 'king', 'queen', 'köln', 'naïve café', ..." in result.stdout
    assert "metadata    model: toy" in result.stdout
    report = rq.error_report(E, qe)
    worst = int(report.worst_rows[0])
    assert f"row {worst:<10d} {WORDS[worst]!r}" in result.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "rowquant", "inspect", "--json", str(tmp_path / "t.safetensors"),
         "--against", str(tmp_path / "E.npy")],
        capture_output=True, text=True, timeout=60, encoding="utf-8",
    )
    description = json.loads(as_json.stdout)
    assert description["keys"] == {"count": 8, "first": WORDS[:5]}
    assert [row["key"] for row in description["error"]["worst_rows"]] == [
        WORDS[row] for row in report.worst_rows
    ]


def test_error_report_names_the_worst_rows_keys(table):
    E, qe = table
    report = rq.error_report(E, qe, worst=3)
    assert report.worst_keys == tuple(WORDS[row] for row in report.worst_rows)
    assert rq.error_report(E, rq.quantize(E)).worst_keys is None


def test_bag_words_weights_must_match_each_bag(table):
    _, qe = table
    bags = [["the", "king"], ["queen"]]
    for weights, fragment in (
        ([[1.0], [2.0, 3.0]], "weights[0] has 1 weights but bag 0 has 2 words"),
        ([[1.0, 2.0]], "weights has 1 lists but there are 2 bags"),
        ([[1.0, 2.0], [3.0], [4.0]], "weights has 3 lists but there are 2 bags"),
    ):
        with pytest.raises(ValueError) as info:
            qe.bag_words(bags, weights=weights)
        assert fragment in str(info.value)
    with pytest.raises(TypeError, match="one list of floats per bag"):
        qe.bag_words(bags, weights=3.0)


def test_lookup_of_one_word_checks_out_as_take_does(table):
    _, qe = table
    out = np.full(6, np.nan, np.float32)
    assert qe.lookup("queen", out=out) is out
    np.testing.assert_array_equal(out, qe["queen"])
    for bad, error, fragment in (
        (np.zeros(6, np.int32), ValueError, "out must have dtype float32"),
        (np.zeros(6, np.float64), ValueError, "out must have dtype float32"),
        (np.zeros(5, np.float32), ValueError, "out must have shape (6,) for one word"),
        (np.zeros(12, np.float32)[::2], ValueError, "out"),
        ([0.0] * 6, ValueError, "out must be a numpy array"),
    ):
        with pytest.raises(error) as info:
            qe.lookup("queen", out=bad)
        assert fragment in str(info.value)
    frozen = np.zeros(6, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        qe.lookup("queen", out=frozen)


def test_in_asks_the_keys(table):
    E, qe = table
    assert "köln" in qe and "" in qe and "prince" not in qe and 3 not in qe
    assert "the" not in rq.quantize(E)  # no keys: nothing is a key
