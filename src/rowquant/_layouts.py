"""The layouts PyTorch uses, made from a table's codes and scales: FBGEMM's fused 8-bit
rowwise rows and per-channel quantized tensors. These work on arrays and know nothing of
:class:`~rowquant.QuantizedEmbedding`, so that both the table's methods and
:mod:`rowquant._interop` (which also converts back) call them. torch is imported only by the
function that needs it.

Examples
--------
>>> import numpy as np

from ._scheme import ROWWISE_U8

_BIAS = ROWWISE_U8.bias
>>> from rowquant._layouts import fbgemm_rows
>>> fbgemm_rows(np.array([[255, 64]], np.uint8), np.array([0.5], np.float32))  # 0.5, then -64
array([[255,  64,   0,   0,   0,  63,   0,   0, 128, 194]], dtype=uint8)
"""

from __future__ import annotations

import warnings

import numpy as np

from ._scheme import ROWWISE_U8

_BIAS = ROWWISE_U8.bias

__all__ = ["fbgemm_rows", "torch_per_channel"]

# torch 2.13 deprecates creating quint8 tensors (pytorch/pytorch#184982) and says so on every
# call; a caller who asked for one knows, and the README says it.
_TORCH_DEPRECATION = r".*quantized tensor creation functions.*deprecated"


def fbgemm_rows(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """FBGEMM's fused 8-bit rowwise layout of ``codes`` (uint8 ``(N, D)``) and ``scales``
    (float32 ``(N,)``): uint8 ``(N, D + 8)``, each row its D codes, then float32 scale = s and
    float32 bias = -128 * s (little-endian). See :func:`rowquant.to_fbgemm`."""
    rows, dim = codes.shape
    packed = np.empty((rows, dim + 8), dtype=np.uint8)
    packed[:, :dim] = codes
    scales = scales.astype("<f4")
    packed[:, dim : dim + 4] = scales.view(np.uint8).reshape(rows, 4)
    packed[:, dim + 4 :] = (np.float32(-_BIAS) * scales).astype("<f4").view(np.uint8).reshape(rows, 4)
    return packed


def torch_per_channel(codes: np.ndarray, scales: np.ndarray):
    """``codes`` and ``scales`` as a torch per-channel quantized tensor: quint8, axis 0, zero
    point 128. See :func:`rowquant.to_torch_quantized`."""
    import torch

    rows = codes.shape[0]
    codes_tensor = torch.from_numpy(np.array(codes, order="C"))
    scales_tensor = torch.from_numpy(scales.astype(np.float64))
    zero_points = torch.full((rows,), _BIAS, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_DEPRECATION, category=UserWarning)
        return torch._make_per_channel_quantized_tensor(codes_tensor, scales_tensor, zero_points, 0)
