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

from . import reference
from ._api import backend_info, dequantize, embedding_bag, quantize_rows, take
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from ._onnx import to_onnx
from ._interop import from_fbgemm, from_torch_quantized, to_fbgemm, to_torch_quantized
from .io import QuantizeSummary, load, quantize_file, save
from .report import ErrorReport, error_report
from .table import QuantizedEmbedding

__all__ = [
    "ErrorReport",
    "QuantizeSummary",
    "QuantizedEmbedding",
    "backend_info",
    "dequantize",
    "embedding_bag",
    "error_report",
    "from_fbgemm",
    "from_torch_quantized",
    "get_num_threads",
    "load",
    "quantize",
    "quantize_file",
    "quantize_rows",
    "reference",
    "save",
    "set_num_threads",
    "take",
    "to_fbgemm",
    "to_onnx",
    "to_torch_quantized",
    "__version__",
]


def quantize(E, *, threads=None) -> QuantizedEmbedding:
    """Quantize a float table (N, D) into a :class:`QuantizedEmbedding`.

    See :func:`quantize_rows` for the arithmetic, the accepted inputs and the errors.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[20000, 3000, 1000, 1000]], np.float32))
    >>> qe.codes
    array([[255, 147, 134, 134]], dtype=uint8)
    >>> qe[0]
    array([20000.    ,  2992.126 ,   944.8819,   944.8819], dtype=float32)
    """
    codes, scales = quantize_rows(E, threads=threads)
    return QuantizedEmbedding._from_checked(codes, scales)
