"""Tables to and from the layouts PyTorch uses: FBGEMM's fused 8-bit rowwise rows and
per-channel quantized tensors. Both can hold rowquant's tables exactly (FBGEMM with
bias = -128 * scale, torch with zero point 128), so the conversions copy codes and scales
without rounding anything again. The layouts themselves are made from arrays by
:mod:`rowquant._layouts`. torch is imported only by the functions that need it."""

from __future__ import annotations

import numpy as np

from . import _api, _checks
from ._layouts import fbgemm_rows, torch_per_channel
from ._scheme import ROWWISE_U8
from .table import QuantizedEmbedding

_BIAS = ROWWISE_U8.bias

__all__ = ["from_fbgemm", "from_torch_quantized", "to_fbgemm", "to_torch_quantized"]


def _table(table) -> QuantizedEmbedding:
    if not isinstance(table, QuantizedEmbedding):
        raise TypeError(f"table must be a rowquant.QuantizedEmbedding, got {type(table).__name__}")
    return table


def to_fbgemm(table) -> np.ndarray:
    """The table in FBGEMM's fused 8-bit rowwise layout: uint8 ``(N, D + 8)``, each row its D
    codes, then float32 scale = s and float32 bias = -128 * s (little-endian).

    ``torch.ops.quantized.embedding_bag_byte_unpack`` and ``embedding_bag_byte_rowwise_offsets``
    read it and compute ``code * scale + bias``, which is exactly ``(code - 128) * scale``: the
    same values as :meth:`QuantizedEmbedding.dequantize`, bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[1.0, -0.5], [0.0, 0.0]], np.float32))
    >>> packed = qe.to_fbgemm()
    >>> packed.shape, packed.dtype
    ((2, 10), dtype('uint8'))
    >>> packed[:, 2:6].copy().view("<f4").ravel().tolist() == qe.scales.tolist()
    True
    >>> np.array_equal(rq.from_fbgemm(packed).codes, qe.codes)
    True
    """
    table = _table(table)
    if table.scheme.kind == "affine":  # 4-bit and 2-bit rows: FBGEMM's fused N-bit layout
        fused: np.ndarray = table.to_fbgemm()
        return fused
    return fbgemm_rows(table.codes, table.scale_values())


def from_fbgemm(packed, *, requantize: bool = False, bits: int = 8,
                dim: int | None = None) -> QuantizedEmbedding:
    """A table from FBGEMM's fused 8-bit rowwise layout (a numpy array or a CPU torch tensor,
    uint8 ``(N, D + 8)``), or with ``bits=4`` / ``bits=2`` from its fused N-bit rows (uint8
    ``(N, P + 4)``: P bytes of packed codes, float16 scale, float16 bias), taken exactly; their
    ``dim`` defaults to ``P * (8 // bits)`` (give the table's own when FBGEMM padded it).

    Rows whose bias is exactly -128 times their scale, as :func:`to_fbgemm` writes them, are
    taken as they are. Rows that ``embedding_bag_byte_prepack`` made from a row's min and max
    have another bias and no exact rowquant form: with ``requantize=False`` (the default) they
    raise ``ValueError`` naming the first one; with ``requantize=True`` the whole table is
    dequantized as FBGEMM does (``code * scale + bias``) and quantized again, which is lossy
    (each value moves by up to half of each scheme's step).

    Raises
    ------
    TypeError
        ``packed`` is not uint8.
    ValueError
        Not 2-D with at least 8 columns, or a row that cannot be taken exactly (see above), or a
        scale that is negative, NaN or infinite.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))
    >>> back = rq.from_fbgemm(qe.to_fbgemm())
    >>> np.array_equal(back.codes, qe.codes) and np.array_equal(back.scales, qe.scales)
    True
    >>> minmax = qe.to_fbgemm()
    >>> minmax[2, 10:14] = np.array([-1.5], "<f4").view(np.uint8)   # row 2's bias
    >>> rq.from_fbgemm(minmax)
    Traceback (most recent call last):
    ...
    ValueError: row 2 of the FBGEMM table has bias -1.5, not -128 * scale ...
    """
    if not (isinstance(bits, int) and bits == 8):
        if requantize:
            raise ValueError("requantize=True applies to 8-bit FBGEMM rows only")
        from ._nbit import from_fbgemm_nbit

        return from_fbgemm_nbit(packed, bits, dim)
    if dim is not None:
        raise ValueError("dim= applies to bits=4 or bits=2 (8-bit rows record their width)")
    array = np.asarray(packed)
    if array.dtype != np.uint8:
        raise TypeError(f"an FBGEMM table is uint8, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] < 8:
        raise ValueError(
            f"an FBGEMM table has shape (N, D + 8) with D >= 0, got shape {array.shape}"
        )
    rows, dim = array.shape[0], array.shape[1] - 8
    codes = np.ascontiguousarray(array[:, :dim])
    scales = np.ascontiguousarray(array[:, dim : dim + 4]).view("<f4").reshape(rows)
    biases = np.ascontiguousarray(array[:, dim + 4 :]).view("<f4").reshape(rows)
    scales, biases = scales.astype(np.float32), biases.astype(np.float32)
    if requantize:
        with np.errstate(over="ignore", invalid="ignore"):
            # FBGEMM's unpack rounds code * scale + bias once (an FMA); float64 holds the
            # product exactly
            values = (codes * scales[:, None].astype(np.float64) + biases[:, None]).astype(
                np.float32
            )
        codes, scales = _api.quantize_rows(values)
        return QuantizedEmbedding._from_checked(codes, scales)
    with np.errstate(over="ignore"):
        exact = np.float32(-_BIAS) * scales == biases
    if not exact.all():
        row = int(np.argmin(exact))
        raise ValueError(
            f"row {row} of the FBGEMM table has bias {float(biases[row])!r}, not -{_BIAS} * scale "
            f"({float(np.float32(-_BIAS) * scales[row])!r}): it was quantized from its min and "
            "max, which rowquant cannot hold exactly; from_fbgemm(..., requantize=True) "
            "dequantizes and quantizes it again (lossy)"
        )
    codes, scales = _checks.codes_and_scales(codes, scales)
    return QuantizedEmbedding._from_checked(codes, scales)


def to_torch_quantized(table):
    """The table as a torch per-channel quantized tensor: quint8, axis 0, zero point 128, the
    table's scales. Its ``int_repr()`` is the codes and its ``dequantize()`` gives the same
    values as :meth:`QuantizedEmbedding.dequantize`, bit for bit.

    torch 2.13 deprecates quantized tensors (pytorch/pytorch#184982); the warning it gives on
    every creation is silenced here.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.array([[1.0, -0.5]], np.float32))
    >>> qt = qe.to_torch_quantized()
    >>> qt.int_repr(), qt.q_per_channel_zero_points()
    (tensor([[255,  64]], dtype=torch.uint8), tensor([128]))
    """
    import torch  # noqa: F401  (first: without torch, an ImportError whatever the argument)

    table = _table(table)
    if table.scheme.kind == "affine":
        raise NotImplementedError(
            f"to_torch_quantized works on 8-bit tables only, not on this {table.scheme.name} "
            "table; rq.to_fbgemm gives FBGEMM's fused N-bit rows for torch's 4-bit/2-bit ops"
        )
    return torch_per_channel(table.codes, table.scale_values())


def from_torch_quantized(tensor, *, requantize: bool = False) -> QuantizedEmbedding:
    """A table from a 2-D torch per-channel quantized tensor (quint8, axis 0).

    Tensors with zero point 128 on every row and float32-representable scales, as
    :func:`to_torch_quantized` makes, are taken exactly. Others raise ``ValueError`` naming the
    first row that differs, or with ``requantize=True`` are dequantized by torch and quantized
    again (lossy). Note that ``torch.quantize_per_channel`` itself does not compute rowquant's
    codes: it rounds ties to even and multiplies by the inverse scale, so about 1e-5 of its
    codes differ by one from ``rowquant.quantize``, and a row whose scale is 0 gets code 0, not
    128.

    Examples
    --------
    >>> import numpy as np
    >>> import rowquant as rq
    >>> qe = rq.quantize(np.eye(3, dtype=np.float32))
    >>> back = rq.from_torch_quantized(qe.to_torch_quantized())
    >>> np.array_equal(back.codes, qe.codes)
    True
    """
    import torch

    if not isinstance(tensor, torch.Tensor) or not tensor.is_quantized:
        raise TypeError(f"expected a quantized torch tensor, got {type(tensor).__name__}")
    if tensor.qscheme() != torch.per_channel_affine or tensor.q_per_channel_axis() != 0:
        raise ValueError(
            f"expected a per-channel quantized tensor along axis 0, got {tensor.qscheme()}"
            + (
                f" along axis {tensor.q_per_channel_axis()}"
                if tensor.qscheme() == torch.per_channel_affine
                else ""
            )
        )
    if tensor.dtype != torch.quint8:
        raise ValueError(f"expected dtype torch.quint8, got {tensor.dtype}")
    if tensor.dim() != 2:
        raise ValueError(f"expected a 2-D (rows, dim) tensor, got shape {tuple(tensor.shape)}")
    if requantize:
        codes, scales = _api.quantize_rows(tensor.dequantize().numpy())
        return QuantizedEmbedding._from_checked(codes, scales)
    zero_points = tensor.q_per_channel_zero_points().numpy()
    if (zero_points != _BIAS).any():
        row = int(np.argmax(zero_points != _BIAS))
        raise ValueError(
            f"row {row} has zero point {int(zero_points[row])}; rowquant tables use {_BIAS} "
            "(from_torch_quantized(..., requantize=True) converts, lossily)"
        )
    scales64 = tensor.q_per_channel_scales().numpy()
    scales = scales64.astype(np.float32)
    if (scales.astype(np.float64) != scales64).any():
        row = int(np.argmax(scales.astype(np.float64) != scales64))
        raise ValueError(
            f"row {row} has scale {float(scales64[row])!r}, which float32 cannot hold "
            "(from_torch_quantized(..., requantize=True) converts, lossily)"
        )
    codes = tensor.int_repr().numpy()
    codes, scales = _checks.codes_and_scales(codes, scales)
    return QuantizedEmbedding._from_checked(np.array(codes), scales)
