"""Word-vector files (GloVe text, word2vec/fastText text, word2vec binary): read_vectors,
quantize_file, error_report and ``rowquant quantize`` on them.

Values are checked against independent parses: numpy's (``np.loadtxt`` / ``np.frombuffer`` on
the numbers, split here with plain ``str.split``) and gensim's ``load_word2vec_format`` on files
gensim writes itself; files are written by hand as explicit bytes. quantize_file must write the
bytes ``rq.quantize(E, keys=words).save`` writes. Every malformed file must raise a ValueError
naming the file and the line (a binary file's entry), and leave nothing at the output path.
"""

import io
import os
import struct

import numpy as np
import pytest

import rowquant as rq
from rowquant import cli
from rowquant._text import detect_format

WORDS = ["the", ",", "köln", "naïve", "日本", "new_york", "a", "b"]


def vectors(rows=len(WORDS), dim=5, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def text_lines(words, values, sep=" ", end="\n", fmt=repr):
    return "".join(word + sep + sep.join(fmt(float(v)) for v in row) + end
                   for word, row in zip(words, values))


def glove_bytes(words=WORDS, values=None, **kw):
    values = vectors(len(words)) if values is None else values
    return text_lines(words, values, **kw).encode("utf-8")


def word2vec_bytes(words=WORDS, values=None, **kw):
    values = vectors(len(words)) if values is None else values
    return f"{len(words)} {values.shape[1]}\n".encode() + glove_bytes(words, values, **kw)


def binary_bytes(words=WORDS, values=None, newline=b"\n", header=None):
    values = vectors(len(words)) if values is None else values
    header = f"{len(words)} {values.shape[1]}\n".encode() if header is None else header
    return header + b"".join(
        word.encode("utf-8") + b" " + np.asarray(row, "<f4").tobytes() + newline
        for word, row in zip(words, values)
    )


def numpy_parse(data: bytes, header: bool):
    """Words and float32 values of a text file, parsed independently: str.split, then
    np.loadtxt on the numbers (float64 rounded to float32)."""
    lines = [line for line in data.decode("utf-8-sig").splitlines() if line.strip()]
    lines = lines[1:] if header else lines
    words = [line.split()[0] for line in lines]
    numbers = "\n".join(" ".join(line.split()[1:]) for line in lines)
    values = np.loadtxt(io.StringIO(numbers), dtype=np.float64, ndmin=2).astype(np.float32)
    return values, words


def write(tmp_path, data: bytes, name="vectors.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    "make, header, kind",
    [(glove_bytes, False, "glove"), (word2vec_bytes, True, "word2vec")],
)
@pytest.mark.parametrize("variant", [
    {}, {"end": "\r\n"}, {"end": " \n"}, {"sep": "\t"}, {"fmt": lambda v: f"{v:.9e}"},
])
def test_text_round_trip_against_numpy(tmp_path, make, header, kind, variant):
    data = make(**variant)
    path = write(tmp_path, data)
    assert detect_format(data) == kind
    got, words = rq.read_vectors(path)
    expected, expected_words = numpy_parse(data, header)
    assert words == expected_words == WORDS
    assert got.dtype == np.float32 and got.shape == (len(WORDS), 5)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_values_round_once_from_float64(tmp_path):
    # 1.00000005960464477539062501 is just above the halfway point between two float32 values:
    # float64 first rounds it down onto the tie, which float32 then breaks to even (1.0); the
    # decimal value itself rounds up. numpy and gensim give 1.0, and so must rowquant.
    path = write(tmp_path, b"w 1.00000005960464477539062501 2\n")
    got, _ = rq.read_vectors(path)
    expected = np.float32(np.float64("1.00000005960464477539062501"))
    assert got[0, 0] == expected == np.float32(1.0)


@pytest.mark.parametrize("newline", [b"\n", b""])
def test_binary_round_trip(tmp_path, newline):
    values = vectors()
    path = write(tmp_path, binary_bytes(values=values, newline=newline), "v.bin")
    got, words = rq.read_vectors(path)
    assert words == WORDS
    np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32))


def test_binary_words_with_spaces(tmp_path):
    words = ["new york", "a b c", "x"]
    values = vectors(3, 4)
    # vectors holding the space byte (0x20) and the newline byte (0x0a) among their bytes
    values[1, 0] = np.frombuffer(b" \n \n", "<f4")[0]
    path = write(tmp_path, binary_bytes(words, values), "v.bin")
    got, got_words = rq.read_vectors(path)
    assert got_words == words
    np.testing.assert_array_equal(got.view(np.uint32), values.view(np.uint32))


def test_binary_last_entry_without_newline(tmp_path):
    values = vectors(3, 4)
    data = binary_bytes(WORDS[:3], values)[:-1]
    got, words = rq.read_vectors(write(tmp_path, data, "v.bin"))
    assert words == WORDS[:3]
    np.testing.assert_array_equal(got, values)


def test_glove_words_with_spaces_keep_their_bytes(tmp_path):
    data = b"the 1 2\n. . . 3 4\nat  name@domain.com 5 6\nlast 7 8\n"
    got, words = rq.read_vectors(write(tmp_path, data))
    assert words == ["the", ". . .", "at  name@domain.com", "last"]
    np.testing.assert_array_equal(got, [[1, 2], [3, 4], [5, 6], [7, 8]])


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbfthe 1 2\nof 3 4\n",          # a byte-order mark
    b"the 1 2\nof 3 4",                        # no newline after a complete last line
    b"the 1 2\nof 3 4\n\n\n  \n",              # blank trailing lines
    b"the 1 2\n\n   \nof 3 4\n",               # blank lines between
    b"the 1 2\r\nof 3 4\r\n",                  # CRLF
    b"the\t1\t2\nof  3   4  \n",               # tabs and runs of spaces
])
def test_layout_variants(tmp_path, data):
    got, words = rq.read_vectors(write(tmp_path, data))
    assert words == ["the", "of"]
    np.testing.assert_array_equal(got, [[1, 2], [3, 4]])


def test_special_values_are_read_like_numpy(tmp_path):
    data = b"a 1e-45 -0.0 +.5 5. 1E3\nb nan inf -Infinity 3.4028235e38 1e-50\n"
    got, _ = rq.read_vectors(write(tmp_path, data))
    expected, _ = numpy_parse(data, header=False)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_format_overrides_detection(tmp_path):
    path = write(tmp_path, b"2 3\n4 5\n")  # two integers: a word2vec header unless told
    assert detect_format(path.read_bytes()) == "word2vec"
    with pytest.raises(ValueError, match="line 2"):
        rq.read_vectors(path)
    got, words = rq.read_vectors(path, format="glove")
    assert words == ["2", "4"] and got.tolist() == [[3.0], [5.0]]


def test_header_only_is_an_empty_table(tmp_path):
    src = write(tmp_path, b"0 300\n")
    got, words = rq.read_vectors(src)
    assert got.shape == (0, 300) and words == []
    summary = rq.quantize_file(src, tmp_path / "out.safetensors")
    assert (summary.rows, summary.dim) == (0, 300)
    assert rq.load(tmp_path / "out.safetensors").shape == (0, 300)


# ------------------------------------------------------------------------ gensim


gensim_formats = [
    pytest.param(False, "word2vec", id="text"),
    pytest.param(True, "word2vec-binary", id="binary"),
]


@pytest.mark.parametrize("binary, kind", gensim_formats)
def test_files_gensim_writes_read_as_gensim_reads_them(tmp_path, binary, kind):
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors(vector_size=7)
    kv.add_vectors(WORDS, vectors(len(WORDS), 7, seed=3))  # gensim splits words at spaces
    path = tmp_path / "v.bin"
    kv.save_word2vec_format(str(path), binary=binary)
    assert detect_format(path.read_bytes()[: 1 << 20]) == kind
    theirs = gensim.models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    got, words = rq.read_vectors(path)
    assert words == theirs.index_to_key == WORDS
    np.testing.assert_array_equal(got.view(np.uint32), theirs.vectors.view(np.uint32))


@pytest.mark.parametrize("dim", [1, 2, 3, 4, 8])
def test_gensim_binary_without_newlines_and_short_vectors(tmp_path, dim):
    # gensim 4 writes no newline after a vector: a word ends at its first space, as gensim
    # reads it, even when a later space (a vector's byte, or the space before the last
    # entry's vector) is followed by 4 D bytes and the end of the file
    gensim = pytest.importorskip("gensim")
    for seed in range(20):
        count = 3 + seed % 5
        words = [f"w{i}" for i in range(count)]
        kv = gensim.models.KeyedVectors(vector_size=dim)
        kv.add_vectors(words, vectors(count, dim, seed=seed))
        path = tmp_path / f"g{seed}.bin"
        kv.save_word2vec_format(str(path), binary=True)
        assert path.stat().st_size == len(f"{count} {dim}\n") + sum(
            len(word) + 1 + 4 * dim for word in words)  # no newline after the vectors
        theirs = gensim.models.KeyedVectors.load_word2vec_format(str(path), binary=True)
        got, got_words = rq.read_vectors(path)
        assert got_words == theirs.index_to_key == words, seed
        np.testing.assert_array_equal(got.view(np.uint32), theirs.vectors.view(np.uint32))


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # gensim's no_header leaves a file open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_glove_text_read_as_gensim_reads_it(tmp_path):
    gensim = pytest.importorskip("gensim")
    path = write(tmp_path, glove_bytes(values=vectors(dim=11, seed=5), fmt=lambda v: f"{v:.7f}"))
    theirs = gensim.models.KeyedVectors.load_word2vec_format(str(path), no_header=True)
    got, words = rq.read_vectors(path)
    assert words == theirs.index_to_key
    np.testing.assert_array_equal(got.view(np.uint32), theirs.vectors.view(np.uint32))


def test_from_gensim_and_back():
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors(vector_size=6)
    values = vectors(len(WORDS), 6)
    kv.add_vectors(WORDS, values)
    qe = rq.from_gensim(kv, metadata={"model": "test"})
    expected = rq.quantize(values, keys=WORDS)
    np.testing.assert_array_equal(qe.codes, expected.codes)
    assert list(qe.keys) == WORDS and qe.metadata == {"model": "test"}
    back = qe.to_gensim()
    assert back.index_to_key == WORDS
    np.testing.assert_array_equal(back.vectors, qe.dequantize())
    assert back["köln"].tolist() == qe["köln"].tolist()


def test_to_gensim_needs_keys_and_says_when_gensim_is_missing(monkeypatch):
    with pytest.raises(ValueError, match="no keys"):
        rq.quantize(vectors()).to_gensim()
    monkeypatch.setitem(__import__("sys").modules, "gensim", None)
    monkeypatch.setitem(__import__("sys").modules, "gensim.models", None)
    with pytest.raises(ImportError, match="pip install gensim"):
        rq.quantize(vectors(), keys=WORDS).to_gensim()


def test_from_gensim_refuses_other_objects():
    with pytest.raises(TypeError, match="model.wv"):
        rq.from_gensim(np.zeros((2, 2)))


# ------------------------------------------------------------------------ quantize_file


@pytest.mark.parametrize("make, name", [
    (glove_bytes, "g.txt"), (word2vec_bytes, "v.vec"), (binary_bytes, "v.bin"),
])
@pytest.mark.parametrize("chunk_rows", [None, 3])
def test_quantize_file_writes_what_quantize_and_save_write(tmp_path, make, name, chunk_rows):
    values = vectors(len(WORDS), 9, seed=1)
    src = write(tmp_path, make(values=values), name)
    summary = rq.quantize_file(src, tmp_path / "streamed.safetensors", chunk_rows=chunk_rows,
                               metadata={"source": name}, report=True)
    rq.quantize(values, keys=WORDS, metadata={"source": name}).save(tmp_path / "memory.safetensors")
    streamed = (tmp_path / "streamed.safetensors").read_bytes()
    assert streamed == (tmp_path / "memory.safetensors").read_bytes()
    assert summary.keys and summary.output_bytes == len(streamed)
    assert summary.source_bytes == src.stat().st_size
    assert summary.source_dtype in ("GloVe text", "word2vec text", "word2vec binary")
    assert summary.report.rows == len(WORDS)
    table = rq.load(tmp_path / "streamed.safetensors")
    np.testing.assert_array_equal(table["日本"], rq.quantize(values)[4])


def test_error_report_reads_text(tmp_path):
    values = vectors(len(WORDS), 9)
    src = write(tmp_path, glove_bytes(values=values))
    qe = rq.quantize(values, keys=WORDS)
    from_file = rq.error_report(src, qe, chunk_rows=3)
    in_memory = rq.error_report(values, qe)
    np.testing.assert_array_equal(from_file.row_cosine, in_memory.row_cosine)
    assert from_file.max_abs_error == in_memory.max_abs_error


def test_npy_input_writes_no_keys(tmp_path):
    np.save(tmp_path / "E.npy", vectors())
    summary = rq.quantize_file(tmp_path / "E.npy", tmp_path / "E.safetensors")
    assert not summary.keys and rq.load(tmp_path / "E.safetensors").keys is None


def test_command_on_a_glove_file(tmp_path, capsys):
    values = vectors(len(WORDS), 9)
    src = write(tmp_path, glove_bytes(values=values))
    assert cli.main(["quantize", str(src), "-o", str(tmp_path / "out.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "GloVe text" in out and f"keys    {len(WORDS)} words" in out
    rq.quantize(values, keys=WORDS).save(tmp_path / "memory.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == (
        tmp_path / "memory.safetensors").read_bytes()


def test_command_format_option_and_its_errors(tmp_path, capsys):
    src = write(tmp_path, b"2 3\n4 5\n")
    out = tmp_path / "out.safetensors"
    assert cli.main(["quantize", str(src), "-o", str(out), "--format", "glove", "-q"]) == 0
    assert list(rq.load(out).keys) == ["2", "4"]
    bad = write(tmp_path, b"the 1 2\nof 3\n", "bad.txt")
    assert cli.main(["quantize", str(bad), "-o", str(tmp_path / "bad.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}, line 2: the word 'of' has 1 value" in err
    assert not (tmp_path / "bad.safetensors").exists()


# ------------------------------------------------------------------------ errors


def assert_refused(tmp_path, data, *fragments, name="bad.txt", format=None):
    """read_vectors and quantize_file both raise a ValueError naming the file and every
    fragment, and quantize_file leaves the folder as it was."""
    src = write(tmp_path, data, name)
    with pytest.raises(ValueError) as raised:
        rq.read_vectors(src, format=format)
    message = str(raised.value)
    assert message.startswith(str(src)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError) as raised_again:
        rq.quantize_file(src, tmp_path / "out.safetensors", format=format)
    assert str(raised_again.value) == message
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("data, fragments", [
    (b"a 1 2 3\nb 4 5\nc 6 7 8\n", ("line 2", "the word 'b' has 2 values, but line 1 has 3")),
    (b"a 1 2 3\nb 4 5 6 7\n", ("line 2", "the word 'b' has 4 values, but line 1 has 3")),
    (b"a 1 2\nb 3 4\nc 5", ("line 3", "the word 'c' has 1 value")),    # cut mid-line
    (b"a 1 2\r\nb 3 4\r\nc 5 x\r\n", ("line 3", "the word 'c': 'x' (value 2) is not a number")),
    (b"a 1 2\nb 1,5 2\n", ("line 2", "'1,5' (value 1) is not a number")),
    (b"a 1 2\nb 1_0 2\n", ("line 2", "'1_0' (value 1) is not a number")),
    (b"a 1 2\nb 3 4\nc 5 6\nb 7 8\n",
     ("line 4", "the word 'b' is there a second time, first on line 2")),
    (b"a 1 2\nb\xff\xfe 3 4\n", ("line 2", "is not valid UTF-8")),
    (b"3 2\na 1 2\nb 3 4\n", ("line 1", "the header says 3 words, but the file holds 2")),
    (b"1 2\na 1 2\nb 3 4\n", ("line 3", "the word 'b' is word 2, but the header (line 1) says")),
    (b"2 3\na 1 2\nb 3 4\n", ("line 2", "the word 'a' has 2 values, but the header (line 1) "
                                        "says 3")),
    (b"a 1 2\nb nan 4\n", ("line 2", "the word 'b' has nan as value 1 (row 1, column 0)")),
    (b"a 1 2\nb 3 -inf\n", ("line 2", "has -inf as value 2")),
    (b"a 1 2\nb 3 1e39\n", ("line 2", "1e+39, which overflows float32")),
    (b"id,name\n1,2\n", ("in no format rowquant reads",)),
])
def test_text_errors_name_the_line(tmp_path, data, fragments):
    if b"nan" in data or b"inf" in data or b"1e39" in data:
        # read_vectors keeps NaN and inf (as numpy and gensim do): only quantize refuses them
        src = write(tmp_path, data)
        assert rq.read_vectors(src)[0].shape == (2, 2)
        with pytest.raises(ValueError) as raised:
            rq.quantize_file(src, tmp_path / "out.safetensors")
        assert str(raised.value).startswith(f"{src}, ")
        for fragment in fragments:
            assert fragment in str(raised.value)
        assert not (tmp_path / "out.safetensors").exists()
        return
    assert_refused(tmp_path, data, *fragments)


def test_a_bad_field_far_from_the_start_is_found(tmp_path):
    lines = [f"w{i} {i} {i + 0.5}\n" for i in range(20000)]
    lines[15321] = "w15321 1 oops\n"
    assert_refused(tmp_path, "".join(lines).encode(), "line 15322", "'oops' (value 2)")


def test_a_failure_after_chunks_were_written_leaves_the_old_file(tmp_path):
    lines = [f"w{i} {i} {i + 0.5}\n" for i in range(20000)]
    lines[15321] = "w15321 1 nan\n"
    src = write(tmp_path, "".join(lines).encode())
    dst = tmp_path / "out.safetensors"
    dst.write_bytes(b"the previous file")
    written = []
    with pytest.raises(ValueError, match="line 15322: the word 'w15321' has nan as value 2"):
        rq.quantize_file(src, dst, chunk_rows=1000,
                         progress=lambda done, total: written.append(done))
    assert written[-1] == 15000  # fifteen chunks were written before the bad one
    assert dst.read_bytes() == b"the previous file"
    assert sorted(os.listdir(tmp_path)) == sorted([src.name, dst.name])


@pytest.mark.parametrize("cut", [1, 7, 19])
def test_binary_truncated_mid_vector(tmp_path, cut):
    data = binary_bytes(WORDS[:3], vectors(3, 5))
    assert_refused(tmp_path, data[: -cut - 1], "entry 3 (byte", "the word 'köln' needs 20 bytes",
                   "truncated", name="v.bin")


def test_binary_header_errors(tmp_path):
    data = binary_bytes(WORDS[:3], vectors(3, 5), header=b"4 5\n")
    assert_refused(tmp_path, data, "entry 4 (byte", "ends after 3 words", "holds 4",
                   name="v.bin", format="word2vec-binary")
    data = binary_bytes(WORDS[:3], vectors(3, 5), header=b"2 5\n")
    assert_refused(tmp_path, data, "says the file holds 2 words, but more follows",
                   name="v.bin")
    data = binary_bytes(WORDS[:3], vectors(3, 5), header=b"300000000000000 5\n")
    assert_refused(tmp_path, data, "entry 4 (byte", "holds 300000000000000", name="v.bin")


def test_binary_duplicate_and_utf8(tmp_path):
    data = binary_bytes(["a", "b", "a"], vectors(3, 2))
    assert_refused(tmp_path, data, "entry 3 (byte", "first on entry 1 (byte 4)", name="v.bin")
    data = binary_bytes(["a", "b"], vectors(2, 2)).replace(b"b ", b"\xc3 ")
    assert_refused(tmp_path, data, "entry 2", "not valid UTF-8", name="v.bin")


def test_wrong_kinds_of_file(tmp_path):
    empty = write(tmp_path, b"", "empty.txt")
    with pytest.raises(ValueError, match=f"^{empty}: the file is empty$"):
        rq.quantize_file(empty, tmp_path / "out.safetensors")
    table = tmp_path / "table.safetensors"
    rq.quantize(vectors(), keys=WORDS).save(table)
    with pytest.raises(ValueError, match="is already a rowquant table"):
        rq.quantize_file(table, tmp_path / "out.safetensors")
    with pytest.raises(ValueError, match="applies to safetensors files, and this is a GloVe"):
        rq.quantize_file(write(tmp_path, glove_bytes()), tmp_path / "o.safetensors", tensor="x")
    with pytest.raises(ValueError, match="format must be one of"):
        rq.read_vectors(table, format="fasttext")
    np.save(tmp_path / "E.npy", vectors())
    with pytest.raises(ValueError, match="holds no words"):
        rq.read_vectors(tmp_path / "E.npy")
    assert not (tmp_path / "out.safetensors").exists()


def test_glove_first_line_that_is_not_a_vector(tmp_path):
    assert_refused(tmp_path, b"hello world\nfoo 1 2\n", "no format rowquant reads")
    assert_refused(tmp_path, b"hello world\nfoo 1 2\n", "line 1", "not a word followed by "
                   "numbers", format="glove")
    assert_refused(tmp_path, b"the 1 2\n", "line 1", "not a word2vec header",
                   format="word2vec")


def test_binary_noise_keeps_the_safetensors_message(tmp_path):
    noise = np.random.default_rng(7).integers(0, 256, 1000, np.uint8).tobytes()
    src = write(tmp_path, noise, "noise.bin")
    with pytest.raises(ValueError, match="not a .npy file, nor a readable safetensors"):
        rq.quantize_file(src, tmp_path / "out.safetensors")


def test_detection_needs_only_the_first_line_and_entry():
    header = b"2 3\n"
    entry = b"w " + struct.pack("<3f", 1, 2, 3) + b"\n"
    assert detect_format(header + entry) == "word2vec-binary"
    assert detect_format(header + b"w 1 2 3\n") == "word2vec"
    assert detect_format(b"w 1 2 3\n") == "glove"
    assert detect_format(b"\x00\x01 2 3\n") is None


def test_first_word_not_utf8_is_named(tmp_path):
    # a word followed by numbers is GloVe whatever its bytes: the reader names the bad word
    data = b"caf\xe9 1 2\nb 3 4\n"
    assert detect_format(data) == "glove"
    assert_refused(tmp_path, data, "line 1: the word b'caf\\xe9' is not valid UTF-8")


def test_word2vec_text_whose_first_word_has_a_space(tmp_path):
    data = b"2 2\nnew york 1 2\nb 3 4\n"
    assert detect_format(data) == "word2vec"
    got, words = rq.read_vectors(write(tmp_path, data))
    assert words == ["new york", "b"]
    np.testing.assert_array_equal(got, [[1, 2], [3, 4]])


@pytest.mark.parametrize("header", [False, True])
def test_first_line_longer_than_the_sniffed_bytes(tmp_path, capsys, header):
    # 3 rows of 300000 values: each line is over 1 MiB, the bytes detection reads at first
    values = np.random.default_rng(4).integers(-8, 8, (3, 300000)) / 4
    lines = [f"w{i} " + " ".join(map(repr, row.tolist())) + "\n" for i, row in enumerate(values)]
    assert min(map(len, lines)) > 1 << 20
    head = "3 300000\n" if header else ""
    src = write(tmp_path, (head + "".join(lines)).encode())
    got, words = rq.read_vectors(src)
    assert words == ["w0", "w1", "w2"]
    np.testing.assert_array_equal(got, values.astype(np.float32))
    assert cli.main(["inspect", str(src)]) == 0
    kind = "word2vec text" if header else "GloVe text"
    assert f"a {kind} file, not a rowquant table: 3 words of 300,000 values" in \
        capsys.readouterr().out


@pytest.mark.parametrize("data, line", [
    (b"a 1 2\rb 3 4\r", "line 1"),              # old Mac line ends: one line
    (b"2 2\ra 1 2\rb 3 4\r", "line 1"),
    (b"a 1 2\nb 3\r4\nc 5 6\n", "line 2"),       # a CR inside a line
    (b"a 1 2\nb 3 4\rc 5 6\n", "line 2"),
])
def test_carriage_return_inside_a_line_is_refused(tmp_path, data, line):
    assert_refused(tmp_path, data, f"{line}: the line holds a carriage return",
                   "CR-only line ends are not read")


@pytest.mark.parametrize("run_bytes", [None, 1000])
def test_fast_and_slow_lines_mixed_in_chunks(tmp_path, monkeypatch, run_bytes):
    # most lines take numpy's fast path; the odd ones (a word with spaces, tabs, runs of
    # blanks, CRLF, a leading blank) the line-by-line one; chunks cut between them anywhere
    rng = np.random.default_rng(11)
    values = rng.standard_normal((3000, 4)).astype(np.float32)
    words, lines = [], []
    for i, row in enumerate(values):
        numbers = [repr(float(v)) for v in row]
        word = f"w{i}"
        if i % 97 == 5:
            word = f"w {i} x"
            line = word + " " + " ".join(numbers)
        elif i % 89 == 3:
            line = word + "\t" + "\t".join(numbers)
        elif i % 83 == 7:
            line = word + "   " + "  ".join(numbers) + "  "
        elif i % 79 == 2:
            line = " " + word + " " + " ".join(numbers) + "\r"
        else:
            line = word + " " + " ".join(numbers)
        words.append(word)
        lines.append(line + "\n")
    src = write(tmp_path, "".join(lines).encode())
    if run_bytes is not None:  # numpy's parser given a few lines at a time
        monkeypatch.setattr("rowquant._text_lines.RUN_BYTES", run_bytes)
    got, got_words = rq.read_vectors(src)
    assert got_words == words
    np.testing.assert_array_equal(got, values)
    for chunk_rows in (1, 7, 500):
        rq.quantize_file(src, tmp_path / "out.safetensors", chunk_rows=chunk_rows)
        rq.quantize(values, keys=words).save(tmp_path / "memory.safetensors")
        assert (tmp_path / "out.safetensors").read_bytes() == (
            tmp_path / "memory.safetensors").read_bytes()


def test_inspect_shows_a_word_vector_file(tmp_path, capsys):
    src = write(tmp_path, word2vec_bytes(values=vectors(dim=3)), "v.vec")
    assert cli.main(["inspect", str(src)]) == 0
    out = capsys.readouterr().out
    shown = ", ".join(repr(word) for word in WORDS[:5])
    assert (f"a word2vec text file, not a rowquant table: {len(WORDS)} words of 3 values "
            f"({shown}" in out)
    assert f"rowquant quantize {src} -o OUTPUT" in out
    table = tmp_path / "t.safetensors"
    rq.quantize_file(src, table)
    assert cli.main(["inspect", str(table), "--against", str(src)]) == 0
    assert "max |error|" in capsys.readouterr().out
