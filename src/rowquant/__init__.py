"""rowquant: float32 embedding tables at one byte per value, with exact lookups at memory speed.

Per-row symmetric 8-bit quantization as in Botha et al. 2017 ("Natural Language Processing with
Small Feed-Forward Networks", section 2.2): each row keeps uint8 codes and one float32 scale,
``scale = max|row| / 127``, ``code = floor(value / scale + 128.5)``, and comes back as
``(code - 128) * scale``.

Examples
--------
>>> import numpy as np
>>> import rowquant as rq
>>> E = np.random.default_rng(0).standard_normal((1000, 64)).astype(np.float32)
>>> qe = rq.quantize(E)
>>> qe.shape, qe.nbytes
((1000, 64), 68000)
>>> rows = qe[[3, 1, 4]]                          # dequantized rows, float32 (3, 64)
>>> bags = qe.bag([[1, 5, 9], [2, 6, 5]], mode="mean")   # pooled, float32 (2, 64)
>>> bool(np.abs(rows - E[[3, 1, 4]]).max() <= qe.scales.max() / 2)
True
"""

from collections.abc import Iterable, Mapping
from typing import Any

from numpy.typing import ArrayLike

from . import reference
from ._api import (
    BackendInfo,
    BagMode,
    backend_info,
    dequantize,
    embedding_bag,
    quantize_rows,
    take,
)
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from ._onnx import to_onnx
from ._interop import from_fbgemm, from_torch_quantized, to_fbgemm, to_torch_quantized
from . import _gensim
from .io import QuantizeSummary, load, quantize_file, read_vectors, save
from .report import ErrorReport, error_report
from .table import QuantizedEmbedding
from ._quantize import quantize
from ._shards import ShardedTable
from .encoder import StaticEncoder
from .cld3 import from_cld3_arrays, to_cld3_arrays

__all__ = [
    "BackendInfo",
    "BagMode",
    "ErrorReport",
    "QuantizeSummary",
    "QuantizedEmbedding",
    "ShardedTable",
    "StaticEncoder",
    "backend_info",
    "from_cld3_arrays",
    "to_cld3_arrays",
    "dequantize",
    "embedding_bag",
    "error_report",
    "from_fbgemm",
    "from_gensim",
    "from_torch_quantized",
    "get_num_threads",
    "load",
    "quantize",
    "quantize_file",
    "quantize_rows",
    "read_vectors",
    "reference",
    "save",
    "set_num_threads",
    "take",
    "to_fbgemm",
    "to_onnx",
    "to_torch_quantized",
    "__version__",
]


def from_gensim(
    kv: Any,
    *,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> QuantizedEmbedding:
    """Quantize gensim ``KeyedVectors`` (``model.wv`` of a Word2Vec or FastText model, or what
    ``KeyedVectors.load_word2vec_format`` reads) into a table keyed by its words:
    ``rq.quantize(kv.vectors, keys=kv.index_to_key)``. gensim itself is not needed.
    :meth:`QuantizedEmbedding.to_gensim` goes back (to the dequantized vectors).

    Parameters
    ----------
    kv : gensim.models.KeyedVectors
        Its keys must be unique strings (gensim also allows integer keys, which rowquant
        refuses with a ``TypeError``).
    metadata : dict of str to str, optional
    threads : int, optional
        As for :func:`quantize`.

    Returns
    -------
    QuantizedEmbedding

    Raises
    ------
    TypeError
        ``kv`` has no ``vectors`` and ``index_to_key``, or a key is not a string.
    ValueError
        As :func:`quantize` (NaN or inf in the vectors, ...).

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> from gensim.models import KeyedVectors
    >>> kv = KeyedVectors(vector_size=2)
    >>> values = np.array([[1, 0.5], [0, 2]], np.float32)
    >>> kv.add_vectors(["king", "queen"], values)
    >>> qe = rq.from_gensim(kv)
    >>> qe["queen"]
    array([0., 2.], dtype=float32)
    >>> back = qe.to_gensim()
    >>> back["king"]
    array([1.      , 0.503937], dtype=float32)
    """
    vectors, words = _gensim.vectors_and_keys(kv)
    return quantize(vectors, keys=words, metadata=metadata, threads=threads)
