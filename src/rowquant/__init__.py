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
from ._quantize import quantize_table
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


def quantize(
    E: ArrayLike,
    *,
    bits: int = 8,
    range_search: bool = False,
    scale_dtype: str = "float32",
    scale_rounding: str = "nearest",
    keys: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> QuantizedEmbedding:
    """Quantize a float table ``(N, D)`` into a :class:`QuantizedEmbedding`: uint8 codes and one
    float32 scale per row, 4x smaller than float32, looked up without rebuilding the table.

    The arithmetic is that of Botha et al. 2017 (section 2.2), evaluated exactly:

    * ``scale[i] = float32(max_j |E[i, j]| / 127)``, one float32 division;
    * ``codes[i, j] = floor(E[i, j] / scale[i] + 128.5)``, exact ties rounding up (toward
      +inf), so codes lie in ``[1, 255]``;
    * an all-zero row (or one whose maximum is so small that ``max / 127`` underflows) gets
      scale 0 and codes 128;
    * lookups give back ``float32((codes - 128) * scale)``, within ``scale / 2`` of ``E``.

    Parameters
    ----------
    E : array_like of float, shape (N, D)
        float16, float32 or float64: a numpy array, anything ``np.asarray`` takes, or a PyTorch
        tensor (detached from autograd and moved to the CPU; bfloat16 is widened to float32,
        exactly). Strided, Fortran-order, byte-swapped and non-float32 tables are converted to
        float32 in C order first (a copy); float32 tables whose rows are contiguous are read
        in place. ``E`` is never modified.
    bits : {8, 4, 2}
        8 (the default) is the scheme described here. 4 and 2 give FBGEMM's N-bit rows
        (scheme ``rowwise-affine-u4-f16`` / ``rowwise-affine-u2-f16``): per row a float16 bias
        (the minimum) and a float16 scale ``(max - min) / (2**bits - 1)``, codes packed two or
        four to a byte; see :func:`rowquant.reference.quantize_nbit`. Rows whose minimum or
        scale is past float16's range (about 65504) are a ``ValueError``.
    range_search : bool
        For ``bits=4`` or ``2``: search each row's clipping range to lower its squared error
        (FBGEMM's greedy search, :func:`rowquant.reference.nbit_search_range`); never a larger
        error than min/max. Not for 8 bits.
    scale_dtype : {"float32", "bfloat16", "float16"}
        How an 8-bit table stores its scales. ``"bfloat16"`` (CLD3's format: the top half of
        a float32) and ``"float16"`` save 2 bytes per row: each row's float32 scale is rounded
        to 16 bits first, then its codes are computed exactly against the rounded scale, so
        values stay within half the stored scale (scheme ``rowwise-symmetric-u8-bf16`` /
        ``-f16``, see :func:`rowquant.reference.quantize_rows_16` for the rule at code 0 and
        256). ``qe.scales`` is then float16, or uint16 holding the bfloat16 bits. Rows of
        magnitude past ``127 * 65504`` are a ``ValueError`` with float16 scales. 16-bit scales
        are quantized in numpy (lookups run in C as for float32 scales).
    scale_rounding : {"nearest", "truncate"}
        For 16-bit scales: to nearest (ties to even), or toward zero as CLD3 writes them.
    keys : sequence of str, optional
        One word (key) per row, unique: the table then answers ``qe["king"]``,
        :meth:`~QuantizedEmbedding.index`, :meth:`~QuantizedEmbedding.lookup` and
        :meth:`~QuantizedEmbedding.bag_words`, and its file keeps the keys.
    metadata : dict of str to str, optional
        Free-form metadata (model name, source, licence) kept with the table and written to
        its file.
    threads : int, optional
        Threads to use, from 1 to 2**31 - 1 (a call uses at most 256); default
        :func:`rowquant.get_num_threads`. Tables under a few megabytes are quantized on one
        thread whatever is asked; the result never depends on the count.

    Returns
    -------
    QuantizedEmbedding
        ``qe.codes`` (uint8 ``(N, D)``) and ``qe.scales`` (float32 ``(N,)``), read-only; look
        rows up with ``qe[ids]``, :meth:`~QuantizedEmbedding.take` and
        :meth:`~QuantizedEmbedding.bag`, save with :meth:`~QuantizedEmbedding.save`.

    Raises
    ------
    TypeError
        ``E`` is not a floating-point array (integer, bool, complex, object).
    ValueError
        ``E`` is not 2-D, or holds NaN or inf, or a float64 value past float32's range (the
        message names the first such row and column); ``threads`` is out of range; ``keys``
        repeats a word or does not have one per row; ``metadata`` uses a name the format
        writes itself (``format``, ``version``, ``scheme``, ``bias``).

    See Also
    --------
    quantize_rows : the same into arrays of your own (``codes_out=``, ``scales_out=``).
    quantize_file : tables in ``.npy`` or safetensors files, streamed with bounded memory.
    error_report : how far the quantized table is from the original.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[20000, 3000, 1000, 1000], [0, 0, 0, 0]], np.float32))
    >>> qe.codes
    array([[255, 147, 134, 134],
           [128, 128, 128, 128]], dtype=uint8)
    >>> qe.scales
    array([157.48032,   0.     ], dtype=float32)
    >>> qe[0]
    array([20000.    ,  2992.126 ,   944.8819,   944.8819], dtype=float32)
    >>> rq.quantize(np.array([[127.0, 2.5, -2.5]])).codes    # exact ties round up
    array([[255, 131, 126]], dtype=uint8)
    >>> words = rq.quantize(np.array([[1, 0], [0, 2]], np.float32), keys=["king", "queen"])
    >>> words["queen"]
    array([0., 2.], dtype=float32)
    """
    return quantize_table(E, bits=bits, range_search=range_search, scale_dtype=scale_dtype,
                          scale_rounding=scale_rounding, keys=keys, metadata=metadata,
                          threads=threads)


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
