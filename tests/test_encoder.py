"""rowquant.StaticEncoder against the libraries it imitates: model2vec's ``StaticModel.encode``
and sentence-transformers' ``StaticEmbedding``, run on the dequantized table, give the expected
embeddings (within the bag error bound of README "The arithmetic", plus float32 rounding of the
peers' own means); texts cover empty strings, unknown words, texts past max_length, unicode.
Also: vocabulary-quantized model2vec models (token mapping and weights), save/load round trips
both ways, and the errors for bad arguments and folders that are not models. No network: the
tokenizers are built in memory."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import rowquant as rq

tokenizers = pytest.importorskip("tokenizers")

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "über", "naïve", "日本", "語", "🙂",
         "quick", "brown", "fox", "jumps", "over", "lazy", "encyclopaedia", "x"]

TEXTS = [
    "the cat sat on the mat",
    "",                                     # no token at all: zeros
    "   ",
    "unknownword another",                  # only unknown words: zeros too
    "the unknownword cat",                  # the unknown one is skipped, not averaged
    "über naïve 日本 語 🙂",
    "THE CAT",                              # a word-level tokenizer is case-sensitive
    " ".join(["quick brown fox jumps over the lazy dog"] * 40),   # 320 words > max_length
    "encyclopaedia encyclopaedia cat " * 30,  # long words: the character cut decides
    "x x a " * 40,                          # short words: max_length tokens decide
    "x",
]


def word_tokenizer():
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(WORDS)}}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return tokenizer


def wordpiece_tokenizer():
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    for piece in ["##s", "##ed", "##ing", "c", "##a", "##t", "d", "##o", "##g"]:
        vocab.setdefault(piece, len(vocab))
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tokenizer


def random_table(rows, dim=24, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def tolerance(qe, expected_norm_scale=1.0):
    """Per element: rowquant's mean bag bound for the largest rows (README) plus float32
    rounding of the peers' sums, for means of rows no larger than the table's largest value."""
    largest = float(np.abs(qe.dequantize()).max()) if qe.shape[0] else 0.0
    bag = 512 * 2.0**-24 * float(qe.scales.max()) * 4
    return (bag + 64 * 2.0**-24 * largest) * expected_norm_scale


@pytest.fixture(params=["wordlevel", "wordpiece"])
def tokenizer(request):
    return word_tokenizer() if request.param == "wordlevel" else wordpiece_tokenizer()


@pytest.fixture
def model2vec():
    return pytest.importorskip("model2vec")


# model2vec


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("max_length", [512, 16, None])
def test_encode_equals_model2vec(model2vec, tokenizer, normalize, max_length):
    qe = rq.quantize(random_table(tokenizer.get_vocab_size()))
    expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=normalize,
                                     max_length=max_length).encode(TEXTS)
    got = rq.StaticEncoder(qe, tokenizer, normalize=normalize, max_length=max_length).encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(TEXTS), qe.shape[1])
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance(qe, 8 if normalize else 1))
    # the empty and all-unknown texts are exactly zero in both
    assert not expected[[1, 2, 3]].any() and not got[[1, 2, 3]].any()
    # and the unknown word was dropped, not averaged as a row of its own
    assert (np.abs(expected[4] - expected[0]) > 0).any()


def test_truncation_matters_in_these_texts(model2vec):
    """The long texts are cut: model2vec with and without max_length disagree on them, so the
    max_length cases above check the truncation."""
    tokenizer = word_tokenizer()
    table = random_table(tokenizer.get_vocab_size())
    cut = model2vec.StaticModel(table, tokenizer, max_length=16).encode(TEXTS)
    whole = model2vec.StaticModel(table, tokenizer, max_length=None).encode(TEXTS)
    assert np.array_equal(cut[:7], whole[:7])
    assert not any(np.allclose(cut[i], whole[i]) for i in (7, 8, 9))


def test_one_string_gives_one_vector_and_batches_do_not_matter(model2vec):
    tokenizer = word_tokenizer()
    qe = rq.quantize(random_table(tokenizer.get_vocab_size()))
    encoder = rq.StaticEncoder(qe, tokenizer)
    one = encoder.encode("the cat sat")
    expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=True).encode("the cat sat")
    assert one.shape == expected.shape == (qe.shape[1],)
    np.testing.assert_allclose(one, expected, rtol=0, atol=tolerance(qe, 8))
    whole = encoder.encode(TEXTS)
    for batch_size in (1, 3, len(TEXTS), 1000):
        assert np.array_equal(encoder.encode(TEXTS, batch_size=batch_size), whole)
    assert np.array_equal(encoder.encode(iter(TEXTS)), whole)        # any iterable
    assert np.array_equal(encoder.encode(TEXTS, threads=1), whole)
    assert encoder.encode([]).shape == (0, qe.shape[1])


def test_vocabulary_quantized_model(model2vec):
    """model2vec's vocabulary quantization: rows shared through a token mapping, and one weight
    per token applied before the mean."""
    tokenizer = word_tokenizer()
    tokens = tokenizer.get_vocab_size()
    rng = np.random.default_rng(3)
    qe = rq.quantize(random_table(7, seed=4))
    mapping = rng.integers(0, 7, tokens)
    weights = rng.uniform(0.1, 3.0, tokens).astype(np.float32)
    for normalize in (True, False):
        expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=normalize,
                                         token_mapping=mapping, weights=weights).encode(TEXTS)
        got = rq.StaticEncoder(qe, tokenizer, normalize=normalize, token_mapping=mapping,
                               token_weights=weights).encode(TEXTS)
        np.testing.assert_allclose(got, expected, rtol=0, atol=3 * tolerance(qe, 8))


def test_from_model2vec_model_and_folder(model2vec, tmp_path):
    tokenizer = word_tokenizer()
    table = random_table(tokenizer.get_vocab_size(), seed=5)
    model = model2vec.StaticModel(table, tokenizer, normalize=True, max_length=16)
    model.save_pretrained(tmp_path / "m2v")
    qe = rq.quantize(table)
    expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=True,
                                     max_length=16).encode(TEXTS)
    for source in (model, tmp_path / "m2v", str(tmp_path / "m2v")):
        encoder = rq.StaticEncoder.from_model2vec(source)
        assert (encoder.normalize, encoder.max_length) == (True, 16)
        assert np.array_equal(encoder.table.codes, qe.codes)
        np.testing.assert_allclose(encoder.encode(TEXTS), expected, rtol=0, atol=tolerance(qe, 8))


def test_from_model2vec_float16_and_int8_tables(model2vec, tmp_path):
    tokenizer = word_tokenizer()
    table = random_table(tokenizer.get_vocab_size(), seed=6)
    for dtype in ("float16", "int8"):
        model = model2vec.StaticModel(table, tokenizer, normalize=True)
        model2vec.model.quantize_model(model, quantize_to=dtype).save_pretrained(tmp_path / dtype)
        loaded = model2vec.StaticModel.from_pretrained(tmp_path / dtype)
        assert loaded.embedding.dtype == np.dtype(dtype)
        encoder = rq.StaticEncoder.from_model2vec(tmp_path / dtype)
        qe = rq.quantize(loaded.embedding.astype(np.float32))
        assert np.array_equal(encoder.table.codes, qe.codes)
        expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=True).encode(TEXTS)
        np.testing.assert_allclose(encoder.encode(TEXTS), expected, rtol=0, atol=tolerance(qe, 8))


def test_save_is_loaded_by_model2vec_and_by_load(model2vec, tmp_path):
    tokenizer = word_tokenizer()
    qe = rq.quantize(random_table(tokenizer.get_vocab_size(), seed=7))
    encoder = rq.StaticEncoder(qe, tokenizer, normalize=False, max_length=16)
    encoder.save(tmp_path / "ours")
    theirs = model2vec.StaticModel.from_pretrained(tmp_path / "ours")
    assert theirs.embedding.dtype == np.float32
    assert np.array_equal(theirs.embedding, qe.dequantize())
    assert (theirs.normalize, theirs.max_length) == (False, 16)
    expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=False,
                                     max_length=16).encode(TEXTS)
    assert np.array_equal(theirs.encode(TEXTS), expected)

    loaded = rq.StaticEncoder.load(tmp_path / "ours")
    assert np.array_equal(loaded.table.codes, qe.codes)
    assert np.array_equal(loaded.table.scales, qe.scales)
    assert not loaded.table.codes.flags.writeable       # memory-mapped, not quantized again
    assert (loaded.normalize, loaded.max_length) == (False, 16)
    assert np.array_equal(loaded.encode(TEXTS), encoder.encode(TEXTS))


def test_save_keeps_token_mapping_and_weights(model2vec, tmp_path):
    tokenizer = word_tokenizer()
    tokens = tokenizer.get_vocab_size()
    rng = np.random.default_rng(8)
    qe = rq.quantize(random_table(5, seed=9))
    mapping, weights = rng.integers(0, 5, tokens), rng.uniform(0.5, 2, tokens).astype(np.float32)
    encoder = rq.StaticEncoder(qe, tokenizer, token_mapping=mapping, token_weights=weights)
    encoder.save(tmp_path / "vq")
    theirs = model2vec.StaticModel.from_pretrained(tmp_path / "vq")
    assert np.array_equal(theirs.token_mapping, mapping)
    assert np.array_equal(theirs.weights, weights)
    expected = model2vec.StaticModel(qe.dequantize(), tokenizer, normalize=True,
                                     token_mapping=mapping, weights=weights).encode(TEXTS)
    np.testing.assert_allclose(theirs.encode(TEXTS), expected, rtol=0, atol=1e-6)
    loaded = rq.StaticEncoder.load(tmp_path / "vq")
    assert np.array_equal(loaded.encode(TEXTS), encoder.encode(TEXTS))


def test_save_replaces_files_atomically(tmp_path):
    tokenizer = word_tokenizer()
    folder = tmp_path / "m"
    rq.StaticEncoder(rq.quantize(random_table(tokenizer.get_vocab_size())), tokenizer).save(folder)
    rq.StaticEncoder(rq.quantize(random_table(tokenizer.get_vocab_size(), seed=1)),
                     tokenizer).save(folder)                                  # over itself
    assert sorted(os.listdir(folder)) == ["config.json", "embeddings.rowquant.safetensors",
                                          "model.safetensors", "modules.json", "tokenizer.json"]
    assert np.array_equal(rq.StaticEncoder.load(folder).table.codes,
                          rq.quantize(random_table(tokenizer.get_vocab_size(), seed=1)).codes)


def test_save_refuses_the_folder_of_a_model_it_did_not_write(model2vec, tmp_path):
    tokenizer = word_tokenizer()
    table = random_table(tokenizer.get_vocab_size(), seed=2)
    model2vec.StaticModel(table, tokenizer).save_pretrained(tmp_path / "m2v")
    before = {name: (tmp_path / "m2v" / name).read_bytes() for name in os.listdir(tmp_path / "m2v")}
    encoder = rq.StaticEncoder.from_model2vec(tmp_path / "m2v")
    with pytest.raises(FileExistsError, match="holds a model that rowquant did not save"):
        encoder.save(tmp_path / "m2v")
    after = {name: (tmp_path / "m2v" / name).read_bytes() for name in os.listdir(tmp_path / "m2v")}
    assert after == before


# sentence-transformers


def static_embedding(tokenizer, table):
    pytest.importorskip("torch")
    modules = pytest.importorskip("sentence_transformers.sentence_transformer.modules")
    return modules.StaticEmbedding(tokenizer, embedding_weights=table)


@pytest.mark.parametrize("truncate", [None, 8])
def test_from_sentence_transformers_module(tokenizer, truncate):
    torch = pytest.importorskip("torch")
    table = random_table(tokenizer.get_vocab_size(), seed=10)
    if truncate:
        tokenizer.enable_truncation(truncate)
    qe = rq.quantize(table)
    module = static_embedding(tokenizer, qe.dequantize())
    with torch.no_grad():
        expected = module(module.preprocess(TEXTS))["sentence_embedding"].numpy()
    encoder = rq.StaticEncoder.from_sentence_transformers(static_embedding(tokenizer, table))
    assert np.array_equal(encoder.table.codes, qe.codes)
    assert not encoder.normalize and encoder.max_length == truncate
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, rtol=0, atol=tolerance(qe))
    # sentence-transformers keeps the unknown token: the all-unknown text is not zero
    assert expected[3].any()


def test_from_sentence_transformer_model_with_normalize():
    pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    tokenizer = word_tokenizer()
    qe = rq.quantize(random_table(tokenizer.get_vocab_size(), seed=11))
    normalize = st.sentence_transformer.modules.Normalize()
    model = st.SentenceTransformer(modules=[static_embedding(tokenizer, qe.dequantize()),
                                            normalize], device="cpu")
    expected = model.encode(TEXTS, convert_to_numpy=True)
    encoder = rq.StaticEncoder.from_sentence_transformers(model)
    assert encoder.normalize
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, rtol=0, atol=tolerance(qe, 8))


def test_from_sentence_transformers_refuses_other_modules():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="StaticEmbedding module.*got Linear"):
        rq.StaticEncoder.from_sentence_transformers(torch.nn.Linear(2, 2))


# errors


def test_bad_arguments():
    tokenizer = word_tokenizer()
    qe = rq.quantize(random_table(tokenizer.get_vocab_size()))
    with pytest.raises(TypeError, match="QuantizedEmbedding, got ndarray"):
        rq.StaticEncoder(qe.dequantize(), tokenizer)
    with pytest.raises(TypeError, match="tokenizers.Tokenizer.*got dict"):
        rq.StaticEncoder(qe, {"a": 0})
    with pytest.raises(ValueError, match="21 tokens but the table 5 rows"):
        rq.StaticEncoder(rq.quantize(random_table(5)), tokenizer)
    with pytest.raises(ValueError, match="max_length must be a positive integer or None, got 0"):
        rq.StaticEncoder(qe, tokenizer, max_length=0)
    with pytest.raises(ValueError, match=r"token_mapping holds rows outside \[0, 5\)"):
        rq.StaticEncoder(rq.quantize(random_table(5)), tokenizer, token_mapping=np.arange(21))
    with pytest.raises(ValueError, match=r"token_weights must be floats, one per token \(21\)"):
        rq.StaticEncoder(qe, tokenizer, token_weights=np.ones(3))
    encoder = rq.StaticEncoder(qe, tokenizer)
    with pytest.raises(TypeError, match=r"texts\[1\] is a int, not a string"):
        encoder.encode(["ok", 3])
    with pytest.raises(TypeError, match="texts must be a string or a sequence of strings"):
        encoder.encode(b"bytes")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        encoder.encode(["ok"], batch_size=0)


def test_the_callers_tokenizer_is_not_changed():
    tokenizer = word_tokenizer()
    before = tokenizer.to_str()
    rq.StaticEncoder(rq.quantize(random_table(tokenizer.get_vocab_size())), tokenizer,
                     max_length=4).encode(TEXTS)
    assert tokenizer.to_str() == before and tokenizer.truncation is None


def test_folders_that_are_not_models(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        rq.StaticEncoder.from_model2vec(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a model folder"):
        rq.StaticEncoder.load(tmp_path / "file")
    folder = tmp_path / "partial"
    folder.mkdir()
    word_tokenizer().save(str(folder / "tokenizer.json"))
    with pytest.raises(FileNotFoundError,
                       match="no model.safetensors and no config.json"):
        rq.StaticEncoder.from_model2vec(folder)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="model.safetensors is not a safetensors file"):
        rq.StaticEncoder.from_model2vec(folder)
    rq.quantize(np.ones((2, 2), np.float32)).save(folder / "model.safetensors")
    with pytest.raises(ValueError, match="has no 'embeddings' tensor"):
        rq.StaticEncoder.from_model2vec(folder)
    with pytest.raises(FileNotFoundError, match="no embeddings.rowquant.safetensors.*from_model2vec"):
        rq.StaticEncoder.load(folder)
    (folder / "config.json").write_text("[1")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        rq.StaticEncoder.from_model2vec(folder)


def test_importing_rowquant_imports_no_tokenizer_or_model_library():
    code = ("import sys, rowquant; "
            "print(json.dumps(sorted(m for m in ('tokenizers', 'model2vec', 'torch', "
            "'sentence_transformers') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                          text=True, check=True, env={**os.environ})
    assert json.loads(done.stdout) == []
