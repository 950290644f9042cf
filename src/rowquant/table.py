"""QuantizedEmbedding: a quantized table that serves dequantized rows and bags on demand."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _api, _backend, _checks, _format, _gensim, _layouts, _similarity, _threads, reference
from ._api import BagMode
from ._formatting import human_bytes
from ._keys import Keys, check_metadata, keys_for_rows
from ._scheme import ROWWISE_U8, SCHEMES, Scheme, symmetric_scheme_for


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _is_words(key: Any) -> bool:
    """Whether an index names rows by word: a string, or a non-empty list, tuple or array of
    strings (a tuple of strings, since a table has no string columns)."""
    if isinstance(key, str):
        return True
    if isinstance(key, np.ndarray):
        return bool(key.dtype.kind == "U")
    if isinstance(key, (list, tuple)) and key:
        return all(isinstance(word, str) for word in key)
    return False


def _weights_per_word(weights: Iterable[ArrayLike], lengths: np.ndarray) -> np.ndarray:
    """One weight per word of the bags, from one list per bag, checked to match each bag."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
        raise TypeError("weights must give one list of floats per bag")
    per_bag = [np.asarray(bag_weights).reshape(-1) for bag_weights in weights]
    if len(per_bag) != len(lengths):
        raise ValueError(f"weights has {len(per_bag)} lists but there are {len(lengths)} bags")
    for position, (bag_weights, length) in enumerate(zip(per_bag, lengths.tolist())):
        if bag_weights.shape[0] != length:
            raise ValueError(
                f"weights[{position}] has {bag_weights.shape[0]} weights but bag {position} "
                f"has {length} words"
            )
    # one array: bag checks the values (floats, finite) as for any weights
    return np.concatenate(per_bag) if per_bag else np.empty(0, np.float32)


def _restore(cls: type[QuantizedEmbedding], codes: np.ndarray, scales: np.ndarray,
             keys: Keys | None, metadata: dict[str, str]) -> QuantizedEmbedding:
    """Unpickle a table: the arrays and keys were checked when it was made."""
    return cls._from_checked(*_checks.codes_and_scales(codes, scales), keys, metadata)


class QuantizedEmbedding:
    """A float32 embedding table stored as uint8 codes and one float32 scale per row.

    Make one with :func:`rowquant.quantize`, or from existing arrays with
    ``QuantizedEmbedding(codes, scales)`` (checked: uint8 ``(N, D)`` codes, finite non-negative
    float32 ``(N,)`` scales). Rows come back dequantized, ``(codes - 128) * scale``, only those
    asked for: the float table is never rebuilt unless :meth:`dequantize` asks for it.

    Indexing follows numpy on the dequantized table: ``qe[i]`` and ``qe[-1]`` give one row,
    ``qe[2:9:3]``, ``qe[int_array]`` and ``qe[bool_mask]`` give rows, and ``qe[i, j]`` or
    ``qe[:, :8]`` index rows and columns.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> E = np.array([[20000, 3000, 1000, 1000], [1, -2, 3, -4], [0, 0, 0, 0]], np.float32)
    >>> qe = rq.quantize(E)
    >>> qe
    QuantizedEmbedding(rows=3, dim=4, 24 B, 2.0x smaller than float32)
    >>> qe[0]
    array([20000.    ,  2992.126 ,   944.8819,   944.8819], dtype=float32)
    >>> qe[[1, 2]]
    array([[ 1.007874, -2.015748,  2.992126, -4.      ],
           [ 0.      ,  0.      ,  0.      ,  0.      ]], dtype=float32)
    >>> qe.bag([[1, 2], [1, 1]], mode="mean")
    array([[ 0.503937, -1.007874,  1.496063, -2.      ],
           [ 1.007874, -2.015748,  2.992126, -4.      ]], dtype=float32)
    """

    __slots__ = ("_codes", "_scales", "_dim", "_kernels", "_keys", "_metadata", "_norms",
                 "_inverse_norms")

    # the classes of other schemes' tables by kind ("affine": rowquant._nbit's 4-bit and 2-bit
    # rows), which QuantizedEmbedding(...) makes when given their arrays
    _kinds: dict[str, type[QuantizedEmbedding]] = {}

    def __init_subclass__(cls, scheme_kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if scheme_kind is not None:
            QuantizedEmbedding._kinds[scheme_kind] = cls

    def __new__(cls, *args: Any, biases: ArrayLike | None = None, scheme: Any = None,
                **kwargs: Any) -> QuantizedEmbedding:
        # a table with biases (or an affine scheme) is one of 4-bit or 2-bit rows
        affine = getattr(SCHEMES.get(scheme) if isinstance(scheme, str) else scheme, "kind", "")
        if cls is QuantizedEmbedding and (biases is not None or affine == "affine"):
            return super().__new__(QuantizedEmbedding._kinds["affine"])
        return super().__new__(cls)

    def __init__(
        self,
        codes: ArrayLike,
        scales: ArrayLike,
        *,
        biases: ArrayLike | None = None,
        dim: int | None = None,
        scheme: str | Scheme | None = None,
        keys: Iterable[str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        codes, scales = _checks.codes_and_scales(codes, scales)
        if scheme is not None:
            expected = symmetric_scheme_for(scales)
            if scheme not in (expected, expected.name):
                found = SCHEMES.get(scheme) if isinstance(scheme, str) else scheme
                if getattr(found, "kind", "") == "affine":
                    raise ValueError(f"scheme {scheme!r} needs biases= (a 4-bit or 2-bit table)")
                raise ValueError(
                    f"scheme {scheme!r} does not match scales of dtype {scales.dtype} "
                    f"(scheme {expected.name!r}; bfloat16 scales are uint16 bits)"
                )
        if dim is not None and dim != codes.shape[1]:
            raise ValueError(f"dim={dim!r} but codes has {codes.shape[1]} columns")
        self._set_arrays(codes, scales, keys_for_rows(keys, codes.shape[0]), check_metadata(metadata))

    @classmethod
    def _from_checked(
        cls,
        codes: np.ndarray,
        scales: np.ndarray,
        keys: Keys | None = None,
        metadata: dict[str, str] | None = None,
        norms: np.ndarray | None = None,
    ) -> QuantizedEmbedding:
        table = cls.__new__(cls)
        table._set_arrays(codes, scales, keys, metadata or {})
        if norms is not None:  # a file's stored norms
            table._norms = _read_only(norms)
        return table

    def _set_arrays(
        self, codes: np.ndarray, scales: np.ndarray, keys: Keys | None, metadata: dict[str, str]
    ) -> None:
        self._codes = _read_only(codes)
        self._scales = _read_only(scales)
        self._dim = codes.shape[1]
        self._keys = keys
        self._metadata = MappingProxyType(dict(metadata))
        self._norms: np.ndarray | None = None  # computed on first use, or read from a file
        self._inverse_norms: np.ndarray | None = None
        # the backend's handle on the arrays, serving the lookups it can take as they are with
        # the least work per call (the library's default thread count read only when needed)
        self._kernels = _backend.kernels.Table(
            self._codes, self._scales, _threads.get_num_threads
        )

    @property
    def scheme(self) -> Scheme:
        """The quantization scheme (:mod:`rowquant._scheme`): ``rowwise-symmetric-u8`` here
        (``-bf16`` or ``-f16`` with 16-bit scales), ``rowwise-affine-u4-f16`` or
        ``rowwise-affine-u2-f16`` for ``rq.quantize(E, bits=4)`` or ``bits=2``."""
        return symmetric_scheme_for(self._scales)

    @property
    def scale_dtype(self) -> str:
        """How the scales are stored: ``"float32"``, ``"bfloat16"`` (``qe.scales`` then holds
        their bits as uint16) or ``"float16"``."""
        return self.scheme.scale_format

    def scale_values(self) -> NDArray[np.float32]:
        """The scales as float32 values, shape (N,): :attr:`scales` itself for float32 scales,
        16-bit ones widened exactly (a new array).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -127.0]], np.float32), scale_dtype="bfloat16")
        >>> qe.scales, qe.scale_values()
        (array([16256], dtype=uint16), array([1.], dtype=float32))
        """
        return _checks.scale_values(self._scales)

    @property
    def biases(self) -> NDArray[np.float16] | None:
        """The rows' float16 biases of a 4-bit or 2-bit table; None for 8-bit tables, whose
        zero point is the scheme's fixed code 128."""
        return None

    @property
    def codes(self) -> NDArray[np.uint8]:
        """uint8 codes, shape (N, D), read-only: ``floor(E / scale + 128.5)``."""
        return self._codes

    @property
    def scales(self) -> NDArray[np.float32]:
        """Scales, shape (N,), read-only: ``max|row| / 127``, float32; or rounded to 16 bits
        (``rq.quantize(E, scale_dtype=...)``): float16, or uint16 holding bfloat16 bits (see
        :attr:`scale_dtype` and :meth:`scale_values`)."""
        return self._scales

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, dim) of the table."""
        return self._codes.shape

    @property
    def nbytes(self) -> int:
        """Bytes held by codes and scales."""
        return self._codes.nbytes + self._scales.nbytes

    def __len__(self) -> int:
        rows: int = self._codes.shape[0]
        return rows

    def __repr__(self) -> str:
        n_rows, dim = self.shape
        float_bytes = 4 * n_rows * dim
        ratio = f", {float_bytes / self.nbytes:.1f}x smaller than float32" if self.nbytes else ""
        scales = "" if self._scales.dtype == np.float32 else f"{self.scale_dtype} scales, "
        return (f"QuantizedEmbedding(rows={n_rows}, dim={dim}, {scales}"
                f"{human_bytes(self.nbytes)}{ratio})")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (
            _restore,
            (type(self), np.array(self._codes), np.array(self._scales), self._keys,
             dict(self._metadata)),
        )

    @property
    def keys(self) -> Keys | None:
        """The table's keys (words), one per row, or None for a table without keys.

        A read-only sequence of strings: ``qe.keys[i]``, ``len(qe.keys)``, ``list(qe.keys)``,
        ``"king" in qe.keys``. A memory-mapped file's keys are decoded only when asked for.
        """
        return self._keys

    @property
    def key_to_index(self) -> Mapping[str, int]:
        """Key -> row, a read-only dict (as gensim's ``KeyedVectors.key_to_index``), built on
        first use. Raises ``TypeError`` for a table without keys."""
        return self._require_keys().mapping

    @property
    def metadata(self) -> Mapping[str, str]:
        """Free-form metadata (model name, source, licence, ...) given to :func:`rowquant.quantize`
        or :meth:`save`, or read from the file; read-only. :meth:`save` writes them again."""
        return self._metadata

    def _require_keys(self) -> Keys:
        if self._keys is None:
            raise TypeError(
                "this table has no keys: give it words with rq.quantize(E, keys=words), or "
                "read a word-vector file with rq.read_vectors or rq.quantize_file"
            )
        return self._keys

    @overload
    def index(self, words: str) -> int: ...  # type: ignore[overload-overlap]

    @overload
    def index(self, words: Iterable[str]) -> NDArray[np.int64]: ...

    def index(self, words: str | Iterable[str]) -> int | NDArray[np.int64]:
        """The row of a word, or the rows of a list of words (int64 array, in order).

        Raises
        ------
        KeyError
            A word is not a key (the message names it and its position).
        TypeError
            The table has no keys.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.eye(3, dtype=np.float32), keys=["king", "queen", "man"])
        >>> qe.index("queen"), qe.index(["man", "king"])
        (1, array([2, 0]))
        >>> qe.index(["king", "prince"])
        Traceback (most recent call last):
            ...
        rowquant._keys.MissingKeyError: words[1] = 'prince' is not a key of this table (3 keys)
        """
        keys = self._require_keys()
        return keys.index(words) if isinstance(words, str) else keys.rows(words)

    def lookup(
        self, words: str | Iterable[str], out: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """The dequantized rows of words: ``(D,)`` for one word, ``(len(words), D)`` for a list;
        ``qe.take(qe.index(words))``.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1, 0], [0, 2]], np.float32), keys=["a", "b"])
        >>> qe.lookup(["b", "a"])
        array([[0., 2.],
               [1., 0.]], dtype=float32)
        """
        rows = self.index(words)
        if isinstance(rows, int):
            if out is None:
                one: NDArray[np.float32] = self.take(np.array([rows]))[0]
                return one
            if not isinstance(out, np.ndarray):
                raise ValueError(f"out must be a numpy array, got {type(out).__name__}")
            if out.shape != (self._dim,):
                raise ValueError(
                    f"out must have shape ({self._dim},) for one word, got {out.shape}"
                )
            self.take(np.array([rows]), out[np.newaxis])  # take checks the rest of out
            return out
        return self.take(rows, out)

    def bag_words(
        self,
        bags: Iterable[Iterable[str]],
        *,
        weights: Iterable[ArrayLike] | None = None,
        mode: BagMode = "sum",
        out: NDArray[np.float32] | None = None,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Pooled rows of bags of words, ``(len(bags), D)``: one bag per list of words (or
        sentence split into words), pooled by ``mode`` as in :meth:`bag` in one call. An empty
        bag gives zeros. ``weights``, with ``mode="sum"``, give one list of floats per bag.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1, 0], [0, 2], [4, 4]], np.float32),
        ...                  keys=["the", "king", "queen"])
        >>> qe.bag_words(["the king".split(), ["queen"], []], mode="mean")
        array([[0.5, 1. ],
               [4. , 4. ],
               [0. , 0. ]], dtype=float32)
        """
        keys = self._require_keys()
        if isinstance(bags, str):
            raise TypeError("bag_words takes a list of bags, each a list of words")
        lists: list[list[str]] = []
        for position, bag in enumerate(bags):
            if isinstance(bag, str):
                raise TypeError(
                    f"bags[{position}] is a string; each bag is a list of words (split sentences "
                    "first: 'the king'.split())"
                )
            lists.append(list(bag))
        lengths = np.array([len(words) for words in lists], dtype=np.int64)
        ids = keys.rows([word for bag in lists for word in bag])
        flat_weights = None if weights is None else _weights_per_word(weights, lengths)
        return self.bag(ids, lengths=lengths, weights=flat_weights, mode=mode, out=out,
                        threads=threads)

    def pool(
        self,
        ids: ArrayLike | Iterable[str],
        *,
        weights: ArrayLike | None = None,
        mode: BagMode = "sum",
        padding_idx: int | None = None,
    ) -> NDArray[np.float32]:
        """One bag: the rows ``ids`` (1-D) pooled into one vector ``(D,)``, as :meth:`bag` pools
        each of its bags (``qe.bag([ids], mode=mode)[0]``). On a table with keys, ``ids`` may
        be words: pooling a sentence is ``qe.pool("the king is dead".split(), mode="mean")``.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
        >>> qe.pool([0, 1], mode="mean")
        array([0.7519686, 0.5      ], dtype=float32)
        >>> words = rq.quantize(np.array([[1, 0], [0, 2], [4, 4]], np.float32),
        ...                     keys=["the", "king", "queen"])
        >>> words.pool("the king".split(), mode="mean")
        array([0.5, 1. ], dtype=float32)
        """
        if isinstance(ids, str):
            raise TypeError("pool takes a list of words (or ids), not one string: split it")
        one_bag = (
            self._require_keys().rows(ids)  # type: ignore[arg-type]  # _is_words checked it
            if _is_words(ids) else _checks.as_array(ids)
        )
        if one_bag.size == 0 and one_bag.dtype.kind == "f":  # pool([]): numpy makes it float
            one_bag = one_bag.astype(np.int64)
        if one_bag.ndim != 1:
            raise ValueError(
                f"pool takes one bag of ids (1-D), got shape {one_bag.shape}; use bag for several"
            )
        pooled: NDArray[np.float32] = self.bag(
            one_bag, lengths=np.array([one_bag.shape[0]]), weights=weights, mode=mode,
            padding_idx=padding_idx,
        )[0]
        return pooled

    def take(
        self,
        ids: ArrayLike,
        out: NDArray[np.float32] | None = None,
        *,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Embedding lookup: dequantized rows ``ids`` (in ``[0, N)``), shape ``ids.shape + (D,)``.

        See :func:`rowquant.take`.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
        >>> qe.take([1, 0])
        array([[ 0.503937,  2.      ],
               [ 1.      , -1.      ]], dtype=float32)
        """
        # the serving path: a call the kernels take as they are goes straight to the backend;
        # any other (other ids, an unfit out= or threads=, a bad id) takes the checked path
        rows: NDArray[np.float32] | None = self._kernels.take(ids, out, threads)
        if rows is None:
            rows = _api.take_checked(self._codes, self._scales, ids, out, threads)
        return rows

    def bag(
        self,
        ids: ArrayLike,
        offsets: ArrayLike | None = None,
        *,
        lengths: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        mode: BagMode = "sum",
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        out: NDArray[np.float32] | None = None,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Pooled lookup with the semantics of ``torch.nn.functional.embedding_bag``.

        See :func:`rowquant.embedding_bag` for the arguments.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1.0, -1.0], [0.5, 2.0]], np.float32))
        >>> qe.bag([0, 1, 1], offsets=[0, 1])
        array([[ 1.      , -1.      ],
               [ 1.007874,  4.      ]], dtype=float32)
        """
        pooled: NDArray[np.float32] | None = self._kernels.bag(
            ids, offsets, lengths, weights, mode, include_last_offset, padding_idx, out, threads
        )
        if pooled is None:
            pooled = _api.bag_checked(
                self._codes, self._scales, ids, offsets, lengths, weights, mode,
                include_last_offset, padding_idx, out, threads,
            )
        return pooled

    def dequantize(
        self, out: NDArray[np.float32] | None = None, *, threads: int | None = None
    ) -> NDArray[np.float32]:
        """The whole float32 table, shape (N, D).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> rq.quantize(np.array([[1.0, -0.5]], np.float32)).dequantize()
        array([[ 1.      , -0.503937]], dtype=float32)
        """
        table: NDArray[np.float32] | None = self._kernels.dequantize(out, threads)
        if table is None:
            table = _api.dequantize_checked(self._codes, self._scales, out, threads)
        return table

    def norms(self, *, threads: int | None = None) -> NDArray[np.float32]:
        """The norm of every dequantized row, float32 ``(N,)``, read-only: computed on the first
        call and kept (a file written after it stores them, and :func:`rowquant.load` reads
        them back without the pass over the codes).

        Each norm is ``float32(sqrt(s))``, ``s`` the float64 sum of the row's dequantized values
        squared in the exact scores' order (:func:`rowquant.reference.norms`).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> rq.quantize(np.array([[3, 4], [0, 0]], np.float32)).norms()
        array([4.99528, 0.     ], dtype=float32)
        """
        if self._norms is None:
            norms = np.empty(self._codes.shape[0], np.float32)
            _backend.kernels.norms(self._codes, self._scales, norms, _threads.resolve_threads(threads))
            self._norms = _read_only(norms)
        return self._norms

    def _metric_norms(self, metric: object) -> np.ndarray | None:
        """The rows' inverse norms (float64) when metric is cosine, kept; None for dot."""
        if _similarity.check_metric(metric) == "dot":
            return None
        if self._inverse_norms is None:
            self._inverse_norms = _similarity.inverse_norms_of(self.norms())
        return self._inverse_norms

    def dot(
        self,
        queries: ArrayLike,
        *,
        ids: ArrayLike | None = None,
        metric: _similarity.Metric = "dot",
        precision: _similarity.Precision = "exact",
        out: NDArray[np.float32] | None = None,
        threads: int | None = None,
    ) -> NDArray[np.float32]:
        """Scores of queries against the rows, computed on the codes (the table is never
        dequantized): ``(N,)`` for one query ``(D,)``, ``(B, N)`` for a batch ``(B, D)``; with
        ``ids=``, against those rows only, in their order (``(len(ids),)`` or
        ``(B, len(ids))``). The logits of a tied output layer, or scores for re-ranking.

        Parameters
        ----------
        queries : array_like of float, shape (D,) or (B, D)
            Finite values (NaN or inf is a ``ValueError`` naming the position).
        ids : array_like of int, optional
            Rows to score, in ``[0, N)``.
        metric : {"dot", "cosine"}
            ``"cosine"`` divides each score by the row's norm (:meth:`norms`) and the query's;
            a zero row or query scores 0, a row or query whose norm overflows float32 is a
            ``ValueError``.
        precision : {"exact", "fast"}
            ``"exact"``: the float64 dot product of the dequantized row and the query (summed
            in a fixed order of 8 lanes) rounded once to float32. ``"fast"``: the query is
            quantized to 8 bits as a row is, and the integer dot product of the codes is
            scaled back (``vpdpbusd`` where the processor has it): about a 1e-3 relative
            error, and the same top-10 for about 98% of rows (see the README).
        out : ndarray of float32, optional
            Where to write the scores (C-contiguous, the result's shape).
        threads : int, optional
            Threads to share the rows among (default :func:`rowquant.get_num_threads`).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1, 0], [0, 2], [-1, -1]], np.float32))
        >>> qe.dot([1.0, 0.5])
        array([ 1. ,  1. , -1.5], dtype=float32)
        >>> qe.dot([[1.0, 0.5]], metric="cosine", ids=[2, 0])
        array([[-0.9486833,  0.8944272]], dtype=float32)
        """
        number = _similarity.check_precision(precision)
        inverse = self._metric_norms(metric)
        n_threads = _threads.resolve_threads(threads)
        matrix, single = _similarity.query_matrix(queries, self._dim)
        codes, scales = self._codes, self._scales
        if ids is not None:
            rows = _similarity.candidate_rows(ids, codes.shape[0], "ids")
            codes, scales = codes[rows], scales[rows]
            inverse = None if inverse is None else inverse[rows]
        shape = (codes.shape[0],) if single else (matrix.shape[0], codes.shape[0])
        out = _checks.output(out, shape, np.float32, "out", (self._codes, self._scales, queries))
        prepared, factors = _similarity.kernel_queries(matrix, number, inverse is not None)
        _similarity.scores(codes, scales, inverse, prepared, factors, number,
                           out.reshape(matrix.shape[0], codes.shape[0]), n_threads)
        return out

    def search(
        self,
        queries: ArrayLike,
        k: int = 10,
        *,
        metric: _similarity.Metric = "dot",
        precision: _similarity.Precision = "exact",
        ids: ArrayLike | None = None,
        exclude: ArrayLike | None = None,
        threads: int | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The k rows scoring highest against each query (exact nearest-neighbour search on the
        codes): ``(scores, rows)``, each ``(k,)`` for one query or ``(B, k)`` for a batch,
        best first, and among equal scores the smaller row first. Fewer than k (all of them)
        when the table has fewer rows to offer.

        The scores are :meth:`dot`'s. The codes are read once per call however many queries
        it has; the rows are shared among threads, each keeping its own k best per query,
        merged at the end.

        Parameters
        ----------
        queries : array_like of float, shape (D,) or (B, D)
        k : int
            How many rows per query (>= 0).
        metric, precision, threads
            As for :meth:`dot`.
        ids : array_like of int, optional
            Search these rows only (duplicates count once).
        exclude : array_like of int, optional
            Rows never returned (for example the query's own row).

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> qe = rq.quantize(np.array([[1, 0], [0, 2], [1, 1], [2, 0]], np.float32))
        >>> qe.search([1.0, 0.0], k=2)
        (array([2., 1.], dtype=float32), array([3, 0]))
        >>> qe.search([1.0, 0.0], k=2, metric="cosine", exclude=[3])
        (array([1.        , 0.70710677], dtype=float32), array([0, 2]))
        """
        return _similarity.search(
            self._codes, self._scales, self._metric_norms(metric), queries, k, metric,
            precision, ids, exclude, threads,
        )

    def most_similar(
        self,
        key_or_vector: str | int | ArrayLike,
        k: int = 10,
        *,
        metric: _similarity.Metric = "cosine",
        precision: _similarity.Precision = "exact",
        threads: int | None = None,
    ) -> list[tuple[str | int, float]]:
        """The k rows most similar to a word, a row or a vector, as gensim's ``most_similar``
        gives them: ``[(word, score), ...]`` best first for a table with keys, ``[(row,
        score), ...]`` without. A word or row number leaves itself out. Cosine by default.

        Examples
        --------
        >>> import numpy as np
        >>> import rowquant as rq
        >>> E = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
        >>> qe = rq.quantize(E, keys=["cat", "kitten", "dog", "rock"])
        >>> qe.most_similar("cat", k=2)
        [('kitten', 0.9939787983894348), ('dog', 0.0)]
        >>> qe.most_similar([0.0, 1.0], k=1)
        [('dog', 1.0)]
        """
        exclude = None
        if isinstance(key_or_vector, str):
            row = self.index(key_or_vector)
            exclude = [row]
            query: Any = self.take(row)
        elif isinstance(key_or_vector, (int, np.integer)) and not isinstance(key_or_vector, bool):
            row = int(key_or_vector)
            if not 0 <= row < len(self):
                raise IndexError(f"row {row} is out of range for a table of {len(self)} rows "
                                 f"(rows are in [0, {len(self)}))")
            exclude = [row]
            query = self.take(row)
        else:
            query = key_or_vector
            if np.ndim(_checks.as_array(query)) != 1:
                raise ValueError("most_similar takes one word, row or vector (D,); use search")
        scores, rows = self.search(query, k, metric=metric, precision=precision,
                                   exclude=exclude, threads=threads)
        names: list[Any] = (rows.tolist() if self._keys is None
                            else [self._keys[row] for row in rows.tolist()])
        return list(zip(names, scores.tolist()))

    def save(
        self, path, *, metadata: Mapping[str, str] | None = None, norms: bool | None = None
    ) -> None:
        """Write the table (and its keys, if it has them) to ``path`` as a safetensors file,
        atomically; see :func:`rowquant.save` and :func:`rowquant.load`. ``metadata`` (strings
        to strings: model name, source, licence) are stored with the table's own
        :attr:`metadata`, replacing those of the same name. The rows' :meth:`norms` are stored
        too (4 bytes per row) when they have been computed, or with ``norms=True`` (computed
        now if needed); ``norms=False`` leaves them out.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> import rowquant as rq
        >>> path = os.path.join(tempfile.mkdtemp(), "table.safetensors")
        >>> rq.quantize(np.ones((2, 3), np.float32)).save(path)
        >>> rq.load(path).shape
        (2, 3)
        """
        stored_norms = self.norms() if norms else None if norms is False else self._norms
        _format.write_table(path, self._codes, self._scales, self._keys,
                            self._file_metadata(metadata), stored_norms)

    def _file_metadata(self, metadata: Mapping[str, str] | None) -> dict[str, str]:
        """The table's metadata, with those given to ``save`` added or replacing them."""
        return {**self._metadata, **check_metadata(metadata)}

    def to_fbgemm(self) -> np.ndarray:
        """The table in FBGEMM's fused 8-bit rowwise layout; see :func:`rowquant.to_fbgemm`."""
        return _layouts.fbgemm_rows(self._codes, self._scales)

    def to_torch_quantized(self):
        """The table as a torch per-channel quantized tensor (quint8, zero point 128); see
        :func:`rowquant.to_torch_quantized`."""
        return _layouts.torch_per_channel(self._codes, self._scales)

    def to_gensim(self) -> Any:
        """The table as gensim ``KeyedVectors``: its keys and dequantized rows (float32); see
        :func:`rowquant.from_gensim`. Needs gensim (``ImportError`` saying so without it) and
        a table with keys (``ValueError`` without)."""
        if self._keys is None:
            raise ValueError("the table has no keys; gensim's KeyedVectors need one per row")
        return _gensim.keyed_vectors(self.dequantize(), self._keys.tolist())

    def __contains__(self, word: object) -> bool:
        """Whether ``word`` is a key of the table (``"king" in qe``, as in gensim); always False
        for a table without keys. Rows are not searched: use ``qe.keys`` for words."""
        return self._keys is not None and word in self._keys

    def __getitem__(self, key: Any) -> NDArray[np.float32]:
        n_rows = len(self)
        if _is_words(key):
            return self.lookup(key)
        if isinstance(key, slice):
            return self._slice_rows(key)
        if isinstance(key, bool):  # numpy treats True/False as a mask, not as rows 1/0
            return self._elements(key)
        try:
            row = operator.index(key)
        except TypeError:
            pass
        else:
            if not -n_rows <= row < n_rows:
                raise IndexError(f"index {row} is out of bounds for a table of {n_rows} rows")
            one: NDArray[np.float32] = self.take(np.array([row % n_rows]))[0]
            return one
        if not isinstance(key, tuple):
            rows = np.asarray(key)
            if rows.dtype == np.bool_ and rows.ndim == 1:
                if rows.shape[0] != n_rows:
                    raise IndexError(
                        f"boolean index has {rows.shape[0]} entries, the table has {n_rows} rows"
                    )
                return self.take(np.flatnonzero(rows))
            if rows.dtype.kind in "iu" and rows.size > 0:
                outside = (rows < -n_rows) | (rows >= n_rows)
                if outside.any():
                    value = rows.reshape(-1)[np.argmax(outside)]
                    raise IndexError(
                        f"index {value} is out of bounds for a table of {n_rows} rows"
                    )
                rows = rows.astype(np.int64)  # in [-n_rows, n_rows) now: no overflow below
                return self.take(np.where(rows < 0, rows + n_rows, rows))
        return self._elements(key)

    def _slice_rows(self, rows: slice) -> NDArray[np.float32]:
        """Rows selected by a slice, dequantized straight from a view of the codes."""
        codes = self._codes[rows]
        scales = np.ascontiguousarray(self._scales[rows])
        return _api.dequantize_checked(codes, scales, None, None)

    def _elements(self, key: Any) -> NDArray[np.float32]:
        """Any other numpy index, with exactly numpy's semantics on the dequantized table: find
        which (row, column) each result element comes from, then dequantize just those."""
        grid = np.broadcast_to(np.arange(len(self))[:, None], self.shape)[key]
        columns = np.broadcast_to(np.arange(self.shape[1]), self.shape)[key]
        # the scales widened to float32: 16-bit ones are float16, or bfloat16's uint16 bits
        return reference.dequantize_codes(self._codes[grid, columns], self.scale_values()[grid])
