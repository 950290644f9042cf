"""Static sentence embeddings over a quantized table: the texts of a batch are tokenized, and
their token rows are averaged in one fused mean bag straight from the uint8 codes, as model2vec's
``StaticModel.encode`` and sentence-transformers' ``StaticEmbedding`` average float rows.

The tokenizer comes from the ``tokenizers`` package (``pip install 'rowquant[encoder]'``);
importing rowquant does not import it, nor model2vec or torch.

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> vocab = {"[UNK]": 0, "red": 1, "green": 2, "apple": 3}
>>> tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
>>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
>>> E = np.array([[9, 9], [1, 0], [0, 1], [1, 1]], np.float32)
>>> encoder = rq.StaticEncoder(rq.quantize(E), tokenizer, normalize=False)
>>> encoder.encode(["red apple", "green pear", ""])    # "pear" is unknown: skipped
array([[1. , 0.5],
       [0. , 1. ],
       [0. , 0. ]], dtype=float32)
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _atomic, _safetensors, io
from ._api import quantize_rows
from .table import QuantizedEmbedding

__all__ = ["StaticEncoder"]

# the files of a model2vec model folder, and the rowquant table this module adds beside them
MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
TABLE_FILE = "embeddings.rowquant.safetensors"
DEFAULT_MAX_LENGTH = 512  # model2vec's


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as error:
        raise ImportError(
            "StaticEncoder needs the tokenizers package: pip install 'rowquant[encoder]'"
        ) from error
    return tokenizers


def _as_tokenizer(tokenizer: Any) -> Any:
    """A private copy of ``tokenizer`` (a ``tokenizers.Tokenizer``, or a transformers fast
    tokenizer, whose Rust tokenizer is taken), so that setting its truncation and padding
    changes nothing of the caller's."""
    tokenizers = _require_tokenizers()
    tokenizer = getattr(tokenizer, "backend_tokenizer", tokenizer)  # transformers' fast ones
    if not isinstance(tokenizer, tokenizers.Tokenizer):
        raise TypeError(
            "tokenizer must be a tokenizers.Tokenizer (or a transformers fast tokenizer), "
            f"got {type(tokenizer).__name__}"
        )
    return tokenizers.Tokenizer.from_str(tokenizer.to_str())


def _unknown_token_id(tokenizer: Any) -> int | None:
    """The id of the tokenizer's unknown token, found as model2vec 0.10 finds it."""
    unknown = getattr(tokenizer.model, "unk_token", None)
    if hasattr(tokenizer.model, "unk_token"):  # WordPiece, BPE, WordLevel
        return None if unknown is None else tokenizer.token_to_id(unknown)
    unk_id = json.loads(tokenizer.to_str())["model"].get("unk_id")  # Unigram
    return None if unk_id is None else int(unk_id)


def _positive_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def _texts(texts: Any) -> list[str]:
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a string or a sequence of strings, got "
                        f"{type(texts).__name__}")
    batch = list(texts)
    for position, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"texts[{position}] is a {type(text).__name__}, not a string")
    return batch


class StaticEncoder:
    """Sentence embeddings as the mean of token rows of a quantized table, computed as
    model2vec's ``StaticModel.encode`` computes them on the float table.

    Parameters
    ----------
    table : QuantizedEmbedding
        One row per token id of ``tokenizer`` (or per row that ``token_mapping`` points to).
    tokenizer : tokenizers.Tokenizer
        Copied: the encoder sets its own truncation and padding on the copy.
    normalize : bool, default True
        Scale each embedding to unit length (``x / (norm(x) + 1e-32)``, so empty texts stay
        zero). Note that model2vec's own constructor defaults to ``False``; its models say which
        in their ``config.json``, which :meth:`from_model2vec` reads.
    max_length : int or None, default 512
        Keep at most this many tokens per text (None: all). As model2vec does, each text is also
        cut to ``max_length`` times the median length of the vocabulary's tokens, in characters,
        before tokenizing (``cut_text=False`` turns that off).
    skip_unknown : bool, default True
        Drop the tokenizer's unknown token from the texts, as model2vec does (after the
        truncation to ``max_length``). sentence-transformers keeps it.
    cut_text : bool, default True
        See ``max_length``.
    token_mapping : array_like of int, optional
        The row of ``table`` for each token id (model2vec's vocabulary-quantized models).
    token_weights : array_like of float, optional
        A factor for each token id, applied to its row before averaging (the same models).

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    >>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> E = np.array([[0, 0, 0], [2, 0, -2], [0, 2, 0]], np.float32)
    >>> encoder = rq.StaticEncoder(rq.quantize(E), tokenizer)
    >>> encoder.encode("a a")                # one text: one vector, of unit length
    array([ 0.70710677,  0.        , -0.70710677], dtype=float32)
    >>> encoder.encode(["a b", "b", "c"], normalize=False)     # c is unknown: zeros
    array([[ 1.,  1., -1.],
           [ 0.,  2.,  0.],
           [ 0.,  0.,  0.]], dtype=float32)
    """

    def __init__(
        self,
        table: QuantizedEmbedding,
        tokenizer: Any,
        *,
        normalize: bool = True,
        max_length: int | None = DEFAULT_MAX_LENGTH,
        skip_unknown: bool = True,
        cut_text: bool = True,
        token_mapping: ArrayLike | None = None,
        token_weights: ArrayLike | None = None,
    ) -> None:
        if not isinstance(table, QuantizedEmbedding):
            raise TypeError(f"table must be a rowquant.QuantizedEmbedding, got "
                            f"{type(table).__name__}")
        self._tokenizer = _as_tokenizer(tokenizer)
        self._table = table
        self._normalize = bool(normalize)
        self._max_length = _positive_or_none(max_length, "max_length")
        self._skip_unknown = bool(skip_unknown)
        self._cut_text = bool(cut_text)
        vocab = self._tokenizer.get_vocab()
        rows = table.shape[0]
        self._token_mapping = self._check_mapping(token_mapping, len(vocab), rows)
        self._token_weights = self._check_weights(token_weights, len(vocab))
        if self._token_mapping is None and len(vocab) != rows:
            raise ValueError(f"the tokenizer has {len(vocab)} tokens but the table {rows} rows; "
                             "give one row per token, or a token_mapping")
        # model2vec's speed-up: a text longer than this many characters has more than max_length
        # tokens of median length, so the rest is cut before the tokenizer sees it
        median = int(np.median([len(token) for token in vocab])) if vocab else 0
        self._median_token_length = median
        self._unknown_id = _unknown_token_id(self._tokenizer) if skip_unknown else None
        self._tokenizer.no_padding()
        if self._max_length is None:
            self._tokenizer.no_truncation()
        else:
            self._tokenizer.enable_truncation(self._max_length)
        self._encode_batch = getattr(self._tokenizer, "encode_batch_fast",
                                     self._tokenizer.encode_batch)  # fast: tokenizers >= 0.21

    @staticmethod
    def _check_mapping(mapping: ArrayLike | None, tokens: int, rows: int) -> np.ndarray | None:
        if mapping is None:
            return None
        array = np.asarray(mapping)
        if array.dtype.kind not in "iu" or array.shape != (tokens,):
            raise ValueError(f"token_mapping must be integers, one per token ({tokens}), got "
                             f"{array.dtype} {array.shape}")
        if tokens and (array.min() < 0 or array.max() >= rows):
            raise ValueError(f"token_mapping holds rows outside [0, {rows}): "
                             f"{int(array.min())}..{int(array.max())}")
        return np.ascontiguousarray(array, dtype=np.int64)

    @staticmethod
    def _check_weights(weights: ArrayLike | None, tokens: int) -> np.ndarray | None:
        if weights is None:
            return None
        array = np.asarray(weights)
        if array.dtype.kind != "f" or array.shape != (tokens,):
            raise ValueError(f"token_weights must be floats, one per token ({tokens}), got "
                             f"{array.dtype} {array.shape}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError("token_weights must be finite")
        return array

    @property
    def table(self) -> QuantizedEmbedding:
        """The quantized table."""
        return self._table

    @property
    def tokenizer(self) -> Any:
        """The encoder's copy of the tokenizer, with its truncation set."""
        return self._tokenizer

    @property
    def dim(self) -> int:
        """Length of an embedding."""
        return self._table.shape[1]

    @property
    def normalize(self) -> bool:
        return self._normalize

    @property
    def max_length(self) -> int | None:
        return self._max_length

    def __repr__(self) -> str:
        return (f"StaticEncoder(tokens={self._tokenizer.get_vocab_size()}, dim={self.dim}, "
                f"normalize={self._normalize}, max_length={self._max_length})")

    def tokenize(self, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The token ids of all ``texts`` one after the other, and how many belong to each
        text: what :meth:`encode` averages (rows of the table, after ``token_mapping``)."""
        batch = _texts(texts)
        if self._cut_text and self._max_length is not None:
            cut = self._max_length * self._median_token_length
            batch = [text[:cut] for text in batch]
        encodings = [encoding.ids for encoding in self._encode_batch(batch, add_special_tokens=False)]
        lengths = np.fromiter(map(len, encodings), np.int64, len(encodings))
        ids = np.fromiter(chain.from_iterable(encodings), np.int64, int(lengths.sum()))
        if self._unknown_id is not None:
            known = ids != self._unknown_id
            if not known.all():
                text_of_id = np.repeat(np.arange(len(lengths)), lengths)
                lengths = np.bincount(text_of_id[known], minlength=len(lengths)).astype(np.int64)
                ids = ids[known]
        return ids, lengths

    def encode(self, texts: str | Iterable[str], *, batch_size: int = 1024,
               normalize: bool | None = None, threads: int | None = None) -> NDArray[np.float32]:
        """Embed ``texts``: float32 ``(len(texts), dim)``, or ``(dim,)`` for one string.

        Each batch of ``batch_size`` texts is tokenized at once and pooled in one mean bag over
        the quantized table; a text with no known token gets zeros.

        Parameters
        ----------
        texts : str or iterable of str
        batch_size : int, default 1024
        normalize : bool, optional
            Default: the encoder's ``normalize``.
        threads : int, optional
            Threads for the bags (see :meth:`QuantizedEmbedding.bag`); the tokenizer uses its
            own (``TOKENIZERS_PARALLELISM``, ``RAYON_NUM_THREADS``).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
        >>> tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> encoder = rq.StaticEncoder(rq.quantize(np.eye(2, dtype=np.float32)), tokenizer)
        >>> encoder.encode(["hi there", "there"]).tolist()
        [[0.0, 1.0], [0.0, 0.0]]
        """
        single = isinstance(texts, str)
        batch: list[str] = [texts] if isinstance(texts, str) else _texts(texts)
        size = _positive_or_none(batch_size, "batch_size")
        assert size is not None
        out = np.empty((len(batch), self.dim), np.float32)
        for start in range(0, len(batch), size):
            self._encode_into(batch[start : start + size], out[start : start + size], threads)
        if self._normalize if normalize is None else normalize:
            # model2vec's arithmetic, so that equal means give equal bits
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out[0] if single else out

    def _encode_into(self, texts: list[str], out: np.ndarray, threads: int | None) -> None:
        ids, lengths = self.tokenize(texts)
        offsets = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        if self._token_weights is None:
            rows = ids if self._token_mapping is None else self._token_mapping[ids]
            self._table.bag(rows, offsets, mode="mean", out=out, threads=threads)
            return
        weights = self._token_weights[ids]
        rows = ids if self._token_mapping is None else self._token_mapping[ids]
        self._table.bag(rows, offsets, weights=weights, mode="sum", out=out, threads=threads)
        out /= np.maximum(lengths, 1)[:, None]

    # loading and saving

    @classmethod
    def from_model2vec(cls, folder_or_model: Any) -> StaticEncoder:
        """An encoder for a model2vec model: a loaded ``model2vec.StaticModel``, or the folder
        of one (``model.safetensors``, ``tokenizer.json``, ``config.json``). The float table
        is quantized with :func:`rowquant.quantize` (int8 tables as their values); the
        model's ``normalize``, ``max_length``, token weights and token mapping are kept.

        Raises
        ------
        FileNotFoundError
            The folder does not exist, or lacks one of the three files (named).
        ValueError
            Its ``model.safetensors`` has no ``embeddings`` tensor, or is not a safetensors file.
        """
        if not isinstance(folder_or_model, (str, os.PathLike)):
            model = folder_or_model
            for needed in ("embedding", "tokenizer", "normalize", "max_length"):
                if not hasattr(model, needed):
                    raise TypeError("from_model2vec takes a model2vec.StaticModel or a folder, "
                                    f"got {type(model).__name__} (it has no {needed!r})")
            return cls(
                _quantized(np.asarray(model.embedding, dtype=np.float32)), model.tokenizer,
                normalize=model.normalize, max_length=model.max_length,
                token_mapping=getattr(model, "token_mapping", None),
                token_weights=getattr(model, "weights", None),
            )
        folder = Path(folder_or_model)
        config = _read_config(folder, MODEL_FILE)
        tensors = _read_tensors(folder / MODEL_FILE, {"embeddings", "weights", "mapping"})
        if "embeddings" not in tensors:
            raise ValueError(f"{folder / MODEL_FILE} has no 'embeddings' tensor, so it is not a "
                             "model2vec model")
        return cls(
            _quantized(tensors["embeddings"].astype(np.float32, copy=False)),
            _read_tokenizer(folder), **_settings(config),
            token_mapping=tensors.get("mapping"), token_weights=tensors.get("weights"),
        )

    @classmethod
    def from_sentence_transformers(cls, model_or_module: Any) -> StaticEncoder:
        """An encoder for a sentence-transformers ``StaticEmbedding`` module, or a
        ``SentenceTransformer`` whose first module is one, giving what it gives: the tokenizer's
        own truncation, unknown tokens kept, no cut of long texts, and unit length only when
        a ``Normalize`` module follows. The module's float weights are quantized with
        :func:`rowquant.quantize`.
        """
        module, normalize = _static_embedding_of(model_or_module)
        weights = module.embedding.weight.detach().to("cpu").float().numpy()
        truncation = module.tokenizer.truncation
        return cls(
            _quantized(weights), module.tokenizer, normalize=normalize,
            max_length=None if truncation is None else truncation["max_length"],
            skip_unknown=False, cut_text=False,
        )

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, mmap: bool = True) -> StaticEncoder:
        """Open a folder written by :meth:`save`: the quantized table is memory-mapped (see
        :func:`rowquant.load`), nothing is quantized again.

        Raises
        ------
        FileNotFoundError
            A file is missing (named); a model2vec folder without rowquant's table says to use
            :meth:`from_model2vec`.
        """
        folder = Path(folder)
        config = _read_config(folder, TABLE_FILE)
        table = io.load_table(folder / TABLE_FILE, mmap=mmap)
        extra = _read_tensors(folder / MODEL_FILE, {"weights", "mapping"}) \
            if (folder / MODEL_FILE).is_file() else {}
        return cls(table, _read_tokenizer(folder), **_settings(config),
                   token_mapping=extra.get("mapping"), token_weights=extra.get("weights"))

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write a folder that model2vec loads (``StaticModel.from_pretrained(folder)``: the
        dequantized float32 table in ``model.safetensors``, ``tokenizer.json``, ``config.json``)
        and :meth:`load` opens at once (the quantized table in
        ``embeddings.rowquant.safetensors``). Each file is written atomically; the folder is
        created if needed. A folder that holds a model not saved by rowquant (a
        ``model.safetensors`` without ``embeddings.rowquant.safetensors`` beside it: say the
        folder the encoder was made from) is refused with ``FileExistsError``, since its float
        table would be replaced by the dequantized one; a folder saved by rowquant is
        overwritten. sentence-transformers also loads the folder (``modules.json``), and
        gives what its ``StaticEmbedding`` gives: unknown tokens kept, long texts not cut.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import rowquant as rq
        >>> from tokenizers import Tokenizer, models
        >>> tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
        >>> encoder = rq.StaticEncoder(rq.quantize(np.eye(2, dtype=np.float32)), tokenizer)
        >>> folder = os.path.join(tempfile.mkdtemp(), "model")
        >>> encoder.save(folder)
        >>> sorted(os.listdir(folder))
        ['config.json', 'embeddings.rowquant.safetensors', 'model.safetensors', 'modules.json', 'tokenizer.json']
        >>> rq.StaticEncoder.load(folder).encode("hi").tolist()
        [0.0, 1.0]
        """
        folder = Path(folder)
        if (folder / MODEL_FILE).exists() and not (folder / TABLE_FILE).exists():
            raise FileExistsError(
                f"{folder} holds a model that rowquant did not save ({MODEL_FILE} without "
                f"{TABLE_FILE}): saving there would replace its float table with the "
                "dequantized one; save to another folder"
            )
        folder.mkdir(parents=True, exist_ok=True)
        self._table.save(folder / TABLE_FILE)
        tensors: dict[str, np.ndarray] = {"embeddings": self._table.dequantize()}
        if self._token_weights is not None:
            tensors["weights"] = self._token_weights
        if self._token_mapping is not None:
            tensors["mapping"] = self._token_mapping
        _write_tensors(folder / MODEL_FILE, tensors)
        config: dict[str, Any] = {"model_type": "model2vec", "architectures": ["StaticModel"],
                                  "normalize": self._normalize, "max_length": self._max_length,
                                  "embedding_dtype": "float32", "hidden_dim": self.dim}
        if self._token_mapping is not None:
            config["vocabulary_quantization"] = self._table.shape[0]
        if not (self._skip_unknown and self._cut_text):
            # model2vec always skips unknown tokens and cuts long texts; keep ours for load
            config["rowquant"] = {"skip_unknown": self._skip_unknown, "cut_text": self._cut_text}
        _write_text(folder / CONFIG_FILE, json.dumps(config, indent=4))
        # with the encoder's truncation, as model2vec saves it (sentence-transformers reads it)
        _write_text(folder / TOKENIZER_FILE, self._tokenizer.to_str())
        modules = [{"idx": 0, "name": "0", "path": ".",
                    "type": "sentence_transformers.models.StaticEmbedding"}]
        if self._normalize:
            modules.append({"idx": 1, "name": "1", "path": "1_Normalize",
                            "type": "sentence_transformers.models.Normalize"})
        _write_text(folder / "modules.json", json.dumps(modules, indent=4))


# helpers of loading and saving

def _quantized(weights: np.ndarray) -> QuantizedEmbedding:
    """A model's float table quantized (as :func:`rowquant.quantize`, which lives in the package
    that imports this module)."""
    codes, scales = quantize_rows(weights)
    return QuantizedEmbedding(codes, scales)


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    """The constructor's keywords from a model folder's config.json, with model2vec's
    defaults for what it leaves out (normalize False, max_length 512)."""
    ours = config.get("rowquant", {})
    return {
        "normalize": bool(config.get("normalize", False)),
        "max_length": config.get("max_length", DEFAULT_MAX_LENGTH),
        "skip_unknown": bool(ours.get("skip_unknown", True)),
        "cut_text": bool(ours.get("cut_text", True)),
    }


def _read_config(folder: Path, table_file: str) -> dict[str, Any]:
    if not folder.exists():
        raise FileNotFoundError(f"no such model folder: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a model folder")
    missing = [name for name in (table_file, TOKENIZER_FILE, CONFIG_FILE)
               if not (folder / name).is_file()]
    if missing:
        hint = (" (StaticEncoder.save writes it; for a model2vec model folder use "
                "StaticEncoder.from_model2vec)" if TABLE_FILE in missing else "")
        raise FileNotFoundError(f"{folder} is not a model folder: it has no "
                                f"{' and no '.join(missing)}{hint}")
    with open(folder / CONFIG_FILE, encoding="utf-8") as file:
        try:
            config = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{folder / CONFIG_FILE} must hold a JSON object")
    return config


def _read_tokenizer(folder: Path) -> Any:
    tokenizers = _require_tokenizers()
    try:
        return tokenizers.Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as error:  # tokenizers raises a bare Exception for bad files
        raise ValueError(f"{folder / TOKENIZER_FILE} is not a tokenizers file: {error}") from None


def _read_tensors(path: Path, names: set[str]) -> dict[str, np.ndarray]:
    """The tensors of ``names`` that the safetensors file ``path`` holds, copied to memory
    (BF16 widened to float32); the others are not read."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            header = _safetensors.read_header(file, size)
        except ValueError as error:
            raise ValueError(f"{path} is not a safetensors file: {error}") from None
        wanted = [header.tensors[name] for name in names if name in header.tensors]
        if not wanted or size == 0:
            return {}
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
            arrays = {}
            for tensor in wanted:
                view = _safetensors.array_view(buffer, tensor)
                arrays[tensor.name] = (_safetensors.bf16_to_float32(view)
                                       if tensor.dtype == "BF16" else np.array(view))
                del view  # the map closes only once no array points into it
            return arrays


def _write_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A safetensors file of ``tensors`` (little-endian, C order), written atomically."""
    codes = {np.dtype("<f4"): "F32", np.dtype("<i8"): "I64"}
    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    header = _safetensors.encode_header(
        {name: (codes[array.dtype], array.shape) for name, array in arrays.items()}, {})
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, header, 0)
        offset = len(header)
        for array in arrays.values():
            _atomic.write_all(fd, array, offset)
            offset += array.nbytes


def _write_text(path: Path, text: str) -> None:
    with _atomic.atomic_output(path) as fd:
        _atomic.write_all(fd, text.encode("utf-8"), 0)


def _static_embedding_of(model_or_module: Any) -> tuple[Any, bool]:
    """The StaticEmbedding module of a SentenceTransformer (its first module) or the module
    itself, and whether a Normalize module follows it."""
    modules = list(model_or_module) if hasattr(model_or_module, "_modules") and \
        hasattr(model_or_module, "__iter__") else [model_or_module]
    module = modules[0] if modules else None
    if module is None or type(module).__name__ != "StaticEmbedding" or \
            not hasattr(module, "embedding") or not hasattr(module, "tokenizer"):
        kind = type(module).__name__ if module is not None else "nothing"
        raise TypeError("from_sentence_transformers takes a StaticEmbedding module or a "
                        f"SentenceTransformer that starts with one, got {kind} first")
    normalize = any(type(later).__name__ == "Normalize" for later in modules[1:])
    return module, normalize

