"""gensim's ``KeyedVectors`` to and from the arrays of a table: :func:`rowquant.from_gensim`
and :meth:`rowquant.QuantizedEmbedding.to_gensim`. gensim is imported only when a table is
turned into ``KeyedVectors``; reading one needs only its attributes.

Examples
--------
>>> import numpy as np
>>> from rowquant._gensim import vectors_and_keys
>>> class Vectors:   # anything with gensim's two attributes
...     vectors = np.eye(2, dtype=np.float32)
...     index_to_key = ["king", "queen"]
>>> vectors_and_keys(Vectors())
(array([[1., 0.],
       [0., 1.]], dtype=float32), ['king', 'queen'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["keyed_vectors", "vectors_and_keys"]


def vectors_and_keys(kv: Any) -> tuple[np.ndarray, list[Any]]:
    """The vectors ``(N, D)`` and the ``N`` keys of a gensim ``KeyedVectors`` (``kv.vectors``
    and ``kv.index_to_key``), checked to match."""
    try:
        vectors, keys = kv.vectors, list(kv.index_to_key)
    except AttributeError:
        raise TypeError(
            f"expected gensim KeyedVectors (with .vectors and .index_to_key), got "
            f"{type(kv).__name__}; for a Word2Vec or FastText model pass model.wv"
        ) from None
    if len(keys) != len(vectors):
        raise ValueError(f"the KeyedVectors have {len(vectors)} vectors but {len(keys)} keys")
    return vectors, keys


def keyed_vectors(vectors: np.ndarray, keys: list[str]) -> Any:
    """gensim ``KeyedVectors`` holding ``vectors`` (float32 ``(N, D)``) under ``keys``."""
    try:
        from gensim.models import KeyedVectors  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "to_gensim needs gensim, which is not installed: pip install gensim"
        ) from None
    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=np.float32)
    if len(keys):
        kv.add_vectors(keys, vectors)
    return kv
